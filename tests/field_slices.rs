//! Structs holding `Vec`s of structs (`struct System { bodies: Vec<Body>, .. }`, both deriving
//! `Differentiable`), differentiated with respect to the outer struct: the body reads the
//! inner elements' fields (`self.bodies[i].mass`, `for b in &sys.bodies`), and the gradient's
//! `bodies` holds each element's gradient. Against central finite differences, an analytic
//! gradient and the same function over the slice as a parameter.
#![allow(clippy::needless_range_loop)]
use autodiff::{differentiate, Differentiable};

mod common;
use common::{assert_close, fd};

#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Body {
    pos: [f64; 3],
    vel: [f64; 3],
    mass: f64,
    id: usize,
}

/// Bodies under gravity of strength `g`, with a name (a constant).
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct System {
    bodies: Vec<Body>,
    g: f64,
    steps: usize,
}

impl System {
    /// The energy: kinetic by a walk of `self.bodies`, potential by index.
    #[differentiate(wrt(self))]
    pub fn energy(&self) -> f64 {
        let mut e = 0.0;
        for b in &self.bodies {
            e += 0.5 * b.mass * (b.vel[0] * b.vel[0] + b.vel[1] * b.vel[1] + b.vel[2] * b.vel[2]);
        }
        for i in 0..self.bodies.len() {
            for j in i + 1..self.bodies.len() {
                let mut r2 = 0.0;
                for k in 0..3 {
                    let d = self.bodies[i].pos[k] - self.bodies[j].pos[k];
                    r2 += d * d;
                }
                e -= self.g * self.bodies[i].mass * self.bodies[j].mass / r2.sqrt();
            }
        }
        e
    }
}

/// The same energy over the slice as a parameter.
#[differentiate(wrt(bodies, g))]
fn energy_of(bodies: &[Body], g: f64) -> f64 {
    let mut e = 0.0;
    for b in bodies {
        e += 0.5 * b.mass * (b.vel[0] * b.vel[0] + b.vel[1] * b.vel[1] + b.vel[2] * b.vel[2]);
    }
    for i in 0..bodies.len() {
        for j in i + 1..bodies.len() {
            let mut r2 = 0.0;
            for k in 0..3 {
                let d = bodies[i].pos[k] - bodies[j].pos[k];
                r2 += d * d;
            }
            e -= g * bodies[i].mass * bodies[j].mass / r2.sqrt();
        }
    }
    e
}

fn system(n: usize) -> System {
    let bodies = (0..n)
        .map(|i| {
            let t = i as f64;
            Body {
                pos: [t.cos() * (1.0 + t), (1.3 * t).sin(), 0.3 * t],
                vel: [0.1 * t, -0.2 + 0.05 * t, 0.05 * t * t],
                mass: 1.0 + 0.5 * t,
                id: 10 + i,
            }
        })
        .collect();
    System {
        bodies,
        g: 1.3,
        steps: 20,
    }
}

/// The differentiable numbers of a system, in order (each body's pos, vel, mass; then g).
fn flat(s: &System) -> Vec<f64> {
    let mut v: Vec<f64> = s
        .bodies
        .iter()
        .flat_map(|b| b.pos.iter().chain(&b.vel).copied().chain([b.mass]))
        .collect();
    v.push(s.g);
    v
}

/// `s` with its differentiable numbers taken from `v` (as [`flat`] lays them out).
fn with(s: &System, v: &[f64]) -> System {
    let bodies = s
        .bodies
        .iter()
        .zip(v.chunks(7))
        .map(|(b, c)| Body {
            pos: [c[0], c[1], c[2]],
            vel: [c[3], c[4], c[5]],
            mass: c[6],
            id: b.id,
        })
        .collect();
    System {
        bodies,
        g: v[v.len() - 1],
        steps: s.steps,
    }
}

#[test]
fn a_system_of_bodies_matches_finite_differences_and_the_slice_parameter() {
    let s = system(5);
    let g = s.energy_grad();
    assert_eq!(g.bodies.len(), 5);
    // Constants copied.
    assert_eq!(g.steps, s.steps);
    assert!(g.bodies.iter().zip(&s.bodies).all(|(g, b)| g.id == b.id));
    let want = fd(&|v: &[f64]| with(&s, v).energy(), &flat(&s));
    assert_close(&flat(&g), &want, 1e-6);
    // The same function over the slice as a parameter.
    let (gb, gg) = energy_of_grad(&s.bodies, s.g);
    assert_eq!(g.bodies, gb);
    assert_close(&[g.g], &[gg], 1e-12);
    // Analytically: d/dvel = m v.
    for (gi, bi) in g.bodies.iter().zip(&s.bodies) {
        assert_close(&gi.vel, &bi.vel.map(|v| bi.mass * v), 1e-12);
    }
    // Value and pullback.
    let (value, g2) = s.energy_value_and_grad();
    assert_eq!(value, s.energy());
    assert_eq!(g2, g);
    let pb = s.energy_pullback(2.0);
    assert_close(
        &flat(&pb),
        &flat(&g).iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        1e-12,
    );
}

/// The kinetic energy over a slice, differentiated with respect to it (called with a field).
#[differentiate(wrt(bodies))]
fn kinetic(bodies: &[Body]) -> f64 {
    bodies
        .iter()
        .map(|b| 0.5 * b.mass * (b.vel[0] * b.vel[0] + b.vel[1] * b.vel[1] + b.vel[2] * b.vel[2]))
        .sum()
}

/// A system read every way: bindings, enumerated and zipped walks, windows, the field passed
/// whole to a differentiated function, the whole system to a method, a `Vec` of floats beside.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Chain {
    links: Vec<Link>,
    weights: Vec<f64>,
    stiffness: f64,
}

#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Link {
    x: f64,
    rest: f64,
    kind: usize,
}

impl Chain {
    #[differentiate(wrt(self))]
    pub fn stretch(&self) -> f64 {
        let mut e = 0.0;
        for w in self.links.windows(2) {
            let d = w[1].x - w[0].x - w[0].rest;
            e += self.stiffness * d * d;
        }
        e
    }

    #[differentiate(wrt(self, x))]
    pub fn energy(&self, x: &[f64]) -> f64 {
        let mut e = self.stretch();
        for (i, l) in self.links.iter().enumerate() {
            let w = self.weights[i];
            if l.kind == 1 {
                e += w * (l.x - x[i]).powi(2);
            } else {
                e += w * l.x.sin() * x[i];
            }
        }
        for (l, xi) in self.links.iter().zip(x) {
            e += 0.1 * l.rest * xi;
        }
        let first = &self.links[0];
        let last = &self.links[self.links.len() - 1];
        e + first.x * last.x + self.weights.iter().map(|w| w * w).sum::<f64>()
    }
}

fn chain() -> Chain {
    Chain {
        links: (0..4)
            .map(|i| Link {
                x: 0.3 + 1.1 * i as f64,
                rest: 0.9 + 0.05 * i as f64,
                kind: i % 2,
            })
            .collect(),
        weights: vec![0.5, -0.3, 0.8, 1.2],
        stiffness: 2.5,
    }
}

fn chain_flat(c: &Chain) -> Vec<f64> {
    let mut v: Vec<f64> = c.links.iter().flat_map(|l| [l.x, l.rest]).collect();
    v.extend(&c.weights);
    v.push(c.stiffness);
    v
}

fn chain_with(c: &Chain, v: &[f64]) -> Chain {
    let n = c.links.len();
    Chain {
        links: c
            .links
            .iter()
            .zip(v.chunks(2))
            .map(|(l, p)| Link {
                x: p[0],
                rest: p[1],
                kind: l.kind,
            })
            .collect(),
        weights: v[2 * n..3 * n].to_vec(),
        stiffness: v[3 * n],
    }
}

#[test]
fn a_chain_read_every_way_matches_finite_differences() {
    let c = chain();
    let x = [0.2, -0.4, 1.5, 0.7];
    let (gc, gx) = c.energy_grad(&x);
    assert!(gc.links.iter().zip(&c.links).all(|(g, l)| g.kind == l.kind));
    let want = fd(&|v: &[f64]| chain_with(&c, v).energy(&x), &chain_flat(&c));
    assert_close(&chain_flat(&gc), &want, 1e-6);
    assert_close(&gx, &fd(&|v: &[f64]| c.energy(v), &x), 1e-6);
    // The method called whole adds its gradient into the same fields.
    let gs = c.stretch_grad();
    let want = fd(&|v: &[f64]| chain_with(&c, v).stretch(), &chain_flat(&c));
    assert_close(&chain_flat(&gs), &want, 1e-6);
}

/// A system nested in another struct, its field passed whole to a function over the slice.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct World {
    system: System,
    scale: f64,
}

#[differentiate(wrt(world))]
fn world_energy(world: &World) -> f64 {
    let mut p = 0.0;
    for b in world.system.bodies.iter() {
        p += b.mass * b.pos[2];
    }
    world.scale * (kinetic(&world.system.bodies) + world.system.g * p)
}

#[test]
fn a_nested_field_passed_whole_matches_finite_differences() {
    let w = World {
        system: system(4),
        scale: 0.7,
    };
    let g = world_energy_grad(&w);
    let f = |v: &[f64]| {
        let n = v.len();
        world_energy(&World {
            system: with(&w.system, &v[..n - 1]),
            scale: v[n - 1],
        })
    };
    let mut x = flat(&w.system);
    x.push(w.scale);
    let mut got = flat(&g.system);
    got.push(g.scale);
    assert_close(&got, &fd(&f, &x), 1e-6);
    assert_eq!(g.system.steps, w.system.steps);
}

impl System {
    /// The kinetic energy after `self.steps` steps of semi-implicit Euler, the state collected
    /// out of the structs, `self.g` read in the loop, struct patterns at the end.
    #[differentiate(wrt(self))]
    pub fn stepped(&self, dt: f64) -> f64 {
        let n = self.bodies.len();
        let mut pos: Vec<[f64; 3]> = self.bodies.iter().map(|b| b.pos).collect();
        let mut vel: Vec<[f64; 3]> = self.bodies.iter().map(|b| b.vel).collect();
        for _ in 0..self.steps {
            for i in 0..n {
                for j in 0..n {
                    if i != j {
                        let mut r2 = 0.0;
                        for k in 0..3 {
                            let d = pos[j][k] - pos[i][k];
                            r2 += d * d;
                        }
                        let s = self.g * self.bodies[j].mass / (r2 * r2.sqrt());
                        for k in 0..3 {
                            vel[i][k] += dt * s * (pos[j][k] - pos[i][k]);
                        }
                    }
                }
            }
            for i in 0..n {
                for k in 0..3 {
                    pos[i][k] += dt * vel[i][k];
                }
            }
        }
        let mut e = 0.0;
        for (i, Body { mass, .. }) in self.bodies.iter().enumerate() {
            let v = vel[i];
            e += 0.5 * mass * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        }
        e
    }
}

#[test]
fn a_system_stepped_in_time_matches_finite_differences() {
    let s = system(4);
    let g = s.stepped_grad(0.01);
    let want = fd(&|v: &[f64]| with(&s, v).stepped(0.01), &flat(&s));
    assert_close(&flat(&g), &want, 1e-5);
    assert_eq!(g.steps, s.steps);
}

/// Generic over the float: a struct of particles generic over `F`.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Particle<F: autodiff::Real> {
    x: [F; 2],
    q: F,
}

#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Cloud<F: autodiff::Real> {
    particles: Vec<Particle<F>>,
    softening: F,
}

#[differentiate(wrt(cloud))]
fn coulomb<F: autodiff::Real>(cloud: &Cloud<F>) -> F {
    let mut e = F::zero();
    for i in 0..cloud.particles.len() {
        let p = &cloud.particles[i];
        for j in 0..i {
            let dx = p.x[0] - cloud.particles[j].x[0];
            let dy = p.x[1] - cloud.particles[j].x[1];
            let r2 = dx * dx + dy * dy + cloud.softening * cloud.softening;
            e += p.q * cloud.particles[j].q / r2.sqrt();
        }
    }
    e
}

#[test]
fn a_generic_cloud_matches_finite_differences_in_f64_and_f32() {
    let cloud = |v: &[f64]| Cloud {
        particles: v[..v.len() - 1]
            .chunks(3)
            .map(|c| Particle {
                x: [c[0], c[1]],
                q: c[2],
            })
            .collect(),
        softening: v[v.len() - 1],
    };
    let x = [0.1, 0.2, 1.0, 1.3, -0.4, -0.5, -0.7, 0.9, 0.8, 0.3];
    let g = coulomb_grad(&cloud(&x));
    let mut got: Vec<f64> = g
        .particles
        .iter()
        .flat_map(|p| [p.x[0], p.x[1], p.q])
        .collect();
    got.push(g.softening);
    assert_close(&got, &fd(&|v: &[f64]| coulomb(&cloud(v)), &x), 1e-6);
    let c32 = Cloud {
        particles: cloud(&x)
            .particles
            .iter()
            .map(|p| Particle {
                x: [p.x[0] as f32, p.x[1] as f32],
                q: p.q as f32,
            })
            .collect(),
        softening: 0.3f32,
    };
    let g32 = coulomb_grad(&c32);
    for (a, b) in g32.particles.iter().zip(&g.particles) {
        assert!((a.q as f64 - b.q).abs() < 1e-4 * (1.0 + b.q.abs()));
    }
}

impl Body {
    /// One body's kinetic energy, differentiated with respect to `self`.
    #[differentiate(wrt(self))]
    pub fn kinetic(&self) -> f64 {
        0.5 * self.mass
            * (self.vel[0] * self.vel[0] + self.vel[1] * self.vel[1] + self.vel[2] * self.vel[2])
    }
}

/// The potential of one pair.
#[differentiate(wrt(a, b))]
fn pair_potential(a: &Body, b: &Body, g: f64) -> f64 {
    let mut r2 = 0.0;
    for k in 0..3 {
        let d = a.pos[k] - b.pos[k];
        r2 += d * d;
    }
    -g * a.mass * b.mass / r2.sqrt()
}

impl System {
    /// The energy through the elements' method and a function of a pair: the field read only
    /// through elements passed whole.
    #[differentiate(wrt(self))]
    pub fn energy_by_parts(&self) -> f64 {
        let mut e = 0.0;
        for i in 0..self.bodies.len() {
            e += self.bodies[i].kinetic();
        }
        for (i, a) in self.bodies.iter().enumerate() {
            for b in self.bodies.iter().skip(i + 1) {
                e += pair_potential(a, b, self.g);
            }
        }
        e
    }
}

#[test]
fn elements_of_a_field_passed_whole_match_the_inline_energy() {
    let s = system(5);
    let want = s.energy_grad();
    let g = s.energy_by_parts_grad();
    assert_close(&flat(&g), &flat(&want), 1e-12);
    assert_eq!(g.steps, s.steps);
    assert!(g.bodies.iter().zip(&s.bodies).all(|(g, b)| g.id == b.id));
}

impl System {
    /// The same energy with the field's elements only passed whole (no field of an element
    /// read here): through the method and the pair function.
    #[differentiate(wrt(self))]
    pub fn energy_passed(&self) -> f64 {
        let mut e = 0.0;
        for b in &self.bodies {
            e += b.kinetic();
        }
        for (i, a) in self.bodies.iter().enumerate() {
            for b in self.bodies.iter().skip(i + 1) {
                e += pair_potential(a, b, self.g);
            }
        }
        e
    }
}

/// Points in a field passed whole to a function: the same mechanism, each point's gradient
/// from the pullback.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Polygon {
    corners: Vec<[f64; 2]>,
    scale: f64,
}

#[differentiate]
fn norm2(p: &[f64; 2]) -> f64 {
    (p[0] * p[0] + p[1] * p[1]).sqrt()
}

#[differentiate(wrt(poly))]
fn spread(poly: &Polygon) -> f64 {
    let mut s = 0.0;
    for c in &poly.corners {
        s += norm2(c);
    }
    s * poly.scale
}

#[test]
fn elements_only_passed_whole_match_the_inline_energy() {
    let s = system(4);
    let want = s.energy_grad();
    let g = s.energy_passed_grad();
    assert_close(&flat(&g), &flat(&want), 1e-12);
    let p = Polygon {
        corners: vec![[1.0, 2.0], [-0.5, 0.3], [0.2, -1.1]],
        scale: 1.5,
    };
    let g = spread_grad(&p);
    for (gc, c) in g.corners.iter().zip(&p.corners) {
        let r = (c[0] * c[0] + c[1] * c[1]).sqrt();
        assert_close(gc, &[1.5 * c[0] / r, 1.5 * c[1] / r], 1e-12);
    }
    let total: f64 = p
        .corners
        .iter()
        .map(|c| (c[0] * c[0] + c[1] * c[1]).sqrt())
        .sum();
    assert_close(&[g.scale], &[total], 1e-12);
}

impl System {
    /// The pair loop's sum scaled after it (its gradients computed for a unit adjoint, then
    /// scaled element by element).
    #[differentiate(wrt(self))]
    pub fn potential_scaled(&self) -> f64 {
        let mut e = 0.0;
        for (i, a) in self.bodies.iter().enumerate() {
            for b in self.bodies.iter().skip(i + 1) {
                e += pair_potential(a, b, 1.0);
            }
        }
        self.g * e
    }
}

#[test]
fn a_pair_loop_scaled_after_it_matches_finite_differences() {
    let s = system(4);
    let g = s.potential_scaled_grad();
    let want = fd(&|v: &[f64]| with(&s, v).potential_scaled(), &flat(&s));
    assert_close(&flat(&g), &want, 1e-6);
}

/// Two fields of structs in one struct, taken by value and zipped with each other, beside a
/// `Vec` of floats walked the same way, a local named like the name the macro gives a field,
/// and a closure over an element.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Scene {
    bodies: Vec<Body>,
    probes: Vec<Link>,
    weights: Vec<f64>,
}

#[differentiate(wrt(scene, x))]
fn scene_energy(scene: Scene, x: &[f64]) -> f64 {
    let scene_bodies = 0.5;
    let weight = |b: &Body| b.mass * scene_bodies;
    let mut e = 0.0;
    for (i, (b, p)) in scene.bodies.iter().zip(&scene.probes).enumerate() {
        e += weight(b) * p.x * scene.weights[i] + b.vel[0] * p.rest;
    }
    for (l, xi) in scene.probes.iter().zip(x) {
        e += l.x * xi;
    }
    for w in &scene.weights {
        e += w * w;
    }
    let zipped: f64 = scene
        .bodies
        .iter()
        .zip(scene.probes.iter())
        .map(|(b, p)| b.mass * p.rest)
        .sum();
    e + scene.bodies.iter().map(|b| b.pos[1]).sum::<f64>() + zipped
}

#[test]
fn two_fields_of_structs_in_one_struct_match_finite_differences() {
    let s = system(3);
    let scene = Scene {
        bodies: s.bodies.clone(),
        probes: chain().links[..3].to_vec(),
        weights: vec![0.5, 1.5, -0.7],
    };
    let x = [0.3, -0.2, 0.9];
    let (g, gx) = scene_energy_grad(scene.clone(), &x);
    let flat = |s: &Scene| -> Vec<f64> {
        let mut v: Vec<f64> = s
            .bodies
            .iter()
            .flat_map(|b| b.pos.iter().chain(&b.vel).copied().chain([b.mass]))
            .collect();
        v.extend(s.probes.iter().flat_map(|l| [l.x, l.rest]));
        v.extend(&s.weights);
        v
    };
    let with = |v: &[f64]| -> Scene {
        let mut out = scene.clone();
        for (b, c) in out.bodies.iter_mut().zip(v.chunks(7)) {
            b.pos = [c[0], c[1], c[2]];
            b.vel = [c[3], c[4], c[5]];
            b.mass = c[6];
        }
        for (l, c) in out.probes.iter_mut().zip(v[21..].chunks(2)) {
            l.x = c[0];
            l.rest = c[1];
        }
        out.weights = v[27..].to_vec();
        out
    };
    let want = fd(&|v: &[f64]| scene_energy(with(v), &x), &flat(&scene));
    assert_close(&flat(&g), &want, 1e-6);
    assert_close(
        &gx,
        &fd(&|v: &[f64]| scene_energy(scene.clone(), v), &x),
        1e-6,
    );
    assert!(g
        .probes
        .iter()
        .zip(&scene.probes)
        .all(|(g, l)| g.kind == l.kind));
}

/// Rows of a `Vec` of `Vec`s in a struct, passed whole to a function over a slice.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Table {
    rows: Vec<Vec<f64>>,
    bias: f64,
}

#[differentiate(wrt(v))]
fn row_energy(v: &[f64]) -> f64 {
    v.iter().map(|t| t * t * t).sum::<f64>()
}

#[differentiate(wrt(t))]
fn table_energy(t: &Table) -> f64 {
    let mut e = 0.0;
    for r in &t.rows {
        e += row_energy(r);
    }
    e * t.bias
}

#[test]
fn rows_passed_whole_match_the_analytic_gradient() {
    let t = Table {
        rows: vec![vec![1.0, 2.0], vec![-0.5, 0.25, 3.0]],
        bias: 0.5,
    };
    let g = table_energy_grad(&t);
    for (gr, r) in g.rows.iter().zip(&t.rows) {
        let want: Vec<f64> = r.iter().map(|v| 0.5 * 3.0 * v * v).collect();
        assert_close(gr, &want, 1e-12);
    }
    let total: f64 = t.rows.iter().flatten().map(|v| v * v * v).sum();
    assert_close(&[g.bias], &[total], 1e-12);
}
