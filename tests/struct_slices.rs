//! Slices of structs differentiated field by field (`wrt(bodies)` with `bodies: &[Body]`,
//! `Vec<Body>` or `&Vec<Body>`, `Body` deriving `Differentiable`): the gradient is a
//! `Vec<Body>`, each element's fields the gradients of that element's. Against central finite
//! differences, analytic gradients and a hand-written adjoint.
#![allow(clippy::needless_range_loop)]
use autodiff::{differentiate, Differentiable};

mod common;
use common::{assert_close, fd};

/// A particle: its position and velocity, its mass, and an id that is no float (a constant,
/// copied into the gradient).
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Body {
    pos: [f64; 3],
    vel: [f64; 3],
    mass: f64,
    id: usize,
}

/// The energy of gravitating bodies: kinetic (a walk) plus pairwise potential (by index).
#[differentiate(wrt(bodies))]
fn energy(bodies: &[Body], g: f64) -> f64 {
    let mut e = 0.0;
    for b in bodies.iter() {
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

fn bodies(n: usize) -> Vec<Body> {
    (0..n)
        .map(|i| {
            let t = i as f64;
            Body {
                pos: [t.cos() * (1.0 + t), (1.3 * t).sin(), 0.3 * t],
                vel: [0.1 * t, -0.2 + 0.05 * t, 0.05 * t * t],
                mass: 1.0 + 0.5 * t,
                id: 10 + i,
            }
        })
        .collect()
}

/// The differentiable fields of every body, in order (pos, vel, mass).
fn flat(bodies: &[Body]) -> Vec<f64> {
    bodies
        .iter()
        .flat_map(|b| b.pos.iter().chain(&b.vel).copied().chain([b.mass]))
        .collect()
}

/// `bodies` with their differentiable fields taken from `v` (as [`flat`] lays them out).
fn with(bodies: &[Body], v: &[f64]) -> Vec<Body> {
    bodies
        .iter()
        .zip(v.chunks(7))
        .map(|(b, c)| Body {
            pos: [c[0], c[1], c[2]],
            vel: [c[3], c[4], c[5]],
            mass: c[6],
            id: b.id,
        })
        .collect()
}

#[test]
fn gravitating_bodies_match_finite_differences_and_the_analytic_gradient() {
    let b = bodies(5);
    let g = energy_grad(&b, 1.3);
    assert_eq!(g.len(), b.len());
    // Constant fields are copied into the gradient.
    assert!(g.iter().zip(&b).all(|(g, b)| g.id == b.id));
    let want = fd(&|v: &[f64]| energy(&with(&b, v), 1.3), &flat(&b));
    assert_close(&flat(&g), &want, 1e-6);
    // Analytically: d/dvel = m v; the forces sum to zero.
    for (gi, bi) in g.iter().zip(&b) {
        let v = bi.vel.map(|v| bi.mass * v);
        assert_close(&gi.vel, &v, 1e-12);
    }
    for k in 0..3 {
        let total: f64 = g.iter().map(|gi| gi.pos[k]).sum();
        assert!(total.abs() < 1e-12, "{total}");
    }
    // The value and the pullback agree.
    let (value, g2) = energy_value_and_grad(&b, 1.3);
    assert_eq!(value, energy(&b, 1.3));
    assert_eq!(g2, g);
    let (pb, _) = energy_pullback(&b, 1.3, 2.0);
    assert_close(
        &flat(&pb),
        &flat(&g).iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        1e-12,
    );
    assert!(pb.iter().zip(&b).all(|(g, b)| g.id == b.id));
}

/// The same energy by hand: the gradient of every body's fields.
fn energy_by_hand(bodies: &[Body], g: f64) -> Vec<Body> {
    let mut out: Vec<Body> = bodies
        .iter()
        .map(|b| Body {
            pos: [0.0; 3],
            vel: b.vel.map(|v| b.mass * v),
            mass: 0.5 * b.vel.iter().map(|v| v * v).sum::<f64>(),
            id: b.id,
        })
        .collect();
    for i in 0..bodies.len() {
        for j in i + 1..bodies.len() {
            let d: Vec<f64> = (0..3)
                .map(|k| bodies[i].pos[k] - bodies[j].pos[k])
                .collect();
            let r = d.iter().map(|v| v * v).sum::<f64>().sqrt();
            let (mi, mj) = (bodies[i].mass, bodies[j].mass);
            out[i].mass -= g * mj / r;
            out[j].mass -= g * mi / r;
            for k in 0..3 {
                let f = g * mi * mj * d[k] / (r * r * r);
                out[i].pos[k] += f;
                out[j].pos[k] -= f;
            }
        }
    }
    out
}

#[test]
fn gravitating_bodies_match_the_hand_written_adjoint() {
    let b = bodies(8);
    let g = energy_grad(&b, 0.7);
    let want = energy_by_hand(&b, 0.7);
    assert_close(&flat(&g), &flat(&want), 1e-12);
}

/// A kind of spring, matched on (a constant).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Law {
    Hooke,
    Quartic,
}

/// A spring's parameters, nested in a node.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Spring {
    k: f64,
    rest: f64,
}

/// A node of a chain: its position, weights per dimension, a nested spring, and constants.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Node {
    x: f64,
    w: Vec<f64>,
    spring: Spring,
    #[differentiable(constant)]
    law: Law,
    next: usize,
}

/// Every way to read the elements: enumerated walks, maps summed, bindings, fields of nested
/// structs, rows of `Vec` fields, constants in indices and `match`, with a slice parameter
/// differentiated beside it.
#[differentiate(wrt(nodes, x))]
fn chain(nodes: Vec<Node>, x: &[f64]) -> f64 {
    let mut e = 0.0;
    for (i, n) in nodes.iter().enumerate() {
        let m = &nodes[n.next];
        let r = m.x - n.x - n.spring.rest;
        e += match n.law {
            Law::Hooke => 0.5 * n.spring.k * r * r,
            Law::Quartic => 0.25 * n.spring.k * r * r * r * r,
        } * x[i];
    }
    let weights: f64 = nodes
        .iter()
        .map(|n| n.w[0] * n.w[0] + n.w[1] * n.x)
        .sum::<f64>();
    let first = &nodes[0];
    e + weights * first.spring.k + nodes[nodes.len() - 1].w[1].sin()
}

fn nodes() -> Vec<Node> {
    (0..4)
        .map(|i| {
            let t = i as f64;
            Node {
                x: 0.9 * t + 0.1 * t * t,
                w: vec![0.3 + 0.1 * t, -0.2 * t],
                spring: Spring {
                    k: 1.0 + 0.25 * t,
                    rest: 0.5 + 0.05 * t,
                },
                law: if i % 2 == 0 { Law::Hooke } else { Law::Quartic },
                next: (i + 1) % 4,
            }
        })
        .collect()
}

fn node_flat(nodes: &[Node]) -> Vec<f64> {
    nodes
        .iter()
        .flat_map(|n| [n.x, n.w[0], n.w[1], n.spring.k, n.spring.rest])
        .collect()
}

fn node_with(nodes: &[Node], v: &[f64]) -> Vec<Node> {
    nodes
        .iter()
        .zip(v.chunks(5))
        .map(|(n, c)| Node {
            x: c[0],
            w: vec![c[1], c[2]],
            spring: Spring {
                k: c[3],
                rest: c[4],
            },
            ..n.clone()
        })
        .collect()
}

#[test]
fn every_way_of_reading_elements_matches_finite_differences() {
    let n = nodes();
    let x = [1.0, 0.5, 2.0, 1.5];
    let (gn, gx) = chain_grad(n.clone(), &x);
    assert!(gn
        .iter()
        .zip(&n)
        .all(|(g, n)| g.law == n.law && g.next == n.next));
    let want = fd(&|v: &[f64]| chain(node_with(&n, v), &x), &node_flat(&n));
    assert_close(&node_flat(&gn), &want, 1e-6);
    let want_x = fd(&|v: &[f64]| chain(n.clone(), v), &x);
    assert_close(&gx, &want_x, 1e-6);
}

/// A `&Vec` of structs (as a caller may hold them), and an element's index read from another element (a constant).
#[differentiate(wrt(nodes))]
#[allow(clippy::ptr_arg)]
fn stretched(nodes: &Vec<Node>) -> f64 {
    let mut s = 0.0;
    for i in 0..nodes.len() {
        let d = nodes[nodes[i].next].x - nodes[i].x;
        s += nodes[i].spring.k * d * d;
    }
    s
}

#[test]
fn vec_references_and_indices_read_from_elements_match_the_analytic_gradient() {
    let n = nodes();
    let g = stretched_grad(&n);
    for i in 0..n.len() {
        let next = n[i].next;
        let prev = (i + n.len() - 1) % n.len();
        let d = n[next].x - n[i].x;
        let d_prev = n[i].x - n[prev].x;
        let dx = -2.0 * n[i].spring.k * d + 2.0 * n[prev].spring.k * d_prev;
        assert!((g[i].x - dx).abs() < 1e-12, "{} {dx}", g[i].x);
        assert!((g[i].spring.k - d * d).abs() < 1e-12);
        // Not read: zero.
        assert_eq!(g[i].spring.rest, 0.0);
        assert_eq!(g[i].w, vec![0.0, 0.0]);
    }
}

/// A particle generic over its float.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Particle<F: autodiff::Real> {
    x: [F; 2],
    q: F,
}

/// A Coulomb-like energy with a closure over an element, generic over the float.
#[differentiate(wrt(ps))]
fn coulomb<F: autodiff::Real>(ps: &[Particle<F>]) -> F {
    let self_energy = |p: &Particle<F>| p.q * p.q * F::from_f64(0.5);
    let mut e = F::zero();
    for i in 0..ps.len() {
        e += self_energy(&ps[i]);
        for j in 0..i {
            let dx = ps[i].x[0] - ps[j].x[0];
            let dy = ps[i].x[1] - ps[j].x[1];
            e += ps[i].q * ps[j].q / (dx * dx + dy * dy).sqrt();
        }
    }
    e
}

#[test]
fn generic_particles_and_closures_over_elements_match_finite_differences() {
    let ps: Vec<Particle<f64>> = (0..4)
        .map(|i| {
            let t = i as f64;
            Particle {
                x: [t.cos() * 2.0, (0.7 * t).sin() + t],
                q: if i % 2 == 0 { 1.0 + 0.1 * t } else { -0.8 },
            }
        })
        .collect();
    let flat = |ps: &[Particle<f64>]| -> Vec<f64> {
        ps.iter().flat_map(|p| [p.x[0], p.x[1], p.q]).collect()
    };
    let with = |v: &[f64]| -> Vec<Particle<f64>> {
        v.chunks(3)
            .map(|c| Particle {
                x: [c[0], c[1]],
                q: c[2],
            })
            .collect()
    };
    let g = coulomb_grad(&ps);
    let want = fd(&|v: &[f64]| coulomb(&with(v)), &flat(&ps));
    assert_close(&flat(&g), &want, 1e-6);
    // In `f32`, against the `f64` gradient.
    let ps32: Vec<Particle<f32>> = ps
        .iter()
        .map(|p| Particle {
            x: p.x.map(|v| v as f32),
            q: p.q as f32,
        })
        .collect();
    let g32 = coulomb_grad(&ps32);
    for (a, b) in g32.iter().zip(&g) {
        assert!((a.q as f64 - b.q).abs() < 1e-3 * b.q.abs().max(1.0));
        assert!((a.x[0] as f64 - b.x[0]).abs() < 1e-3 * b.x[0].abs().max(1.0));
    }
}

/// The kinetic energy alone.
#[differentiate(wrt(bodies))]
fn kinetic(bodies: &[Body]) -> f64 {
    bodies
        .iter()
        .map(|b| 0.5 * b.mass * (b.vel[0] * b.vel[0] + b.vel[1] * b.vel[1] + b.vel[2] * b.vel[2]))
        .sum::<f64>()
}

/// The potential energy alone, a method of a constant configuration.
pub struct Gravity {
    g: f64,
}

impl Gravity {
    #[differentiate(wrt(bodies))]
    fn potential(&self, bodies: &[Body]) -> f64 {
        let mut e = 0.0;
        for i in 0..bodies.len() {
            for j in i + 1..bodies.len() {
                let mut r2 = 0.0;
                for k in 0..3 {
                    let d = bodies[i].pos[k] - bodies[j].pos[k];
                    r2 += d * d;
                }
                e -= self.g * bodies[i].mass * bodies[j].mass / r2.sqrt();
            }
        }
        e
    }
}

/// The energy composed of both, passing the slice whole, and a field read beside them.
#[differentiate(wrt(bodies))]
#[allow(clippy::needless_borrow)]
fn composed(bodies: &[Body], gravity: &Gravity) -> f64 {
    let mut e = kinetic(bodies) + gravity.potential(bodies);
    for i in 0..bodies.len() {
        e += 0.0 * bodies[i].mass;
    }
    e * 2.0 - kinetic(&bodies)
}

#[test]
fn slices_passed_whole_to_differentiated_functions_match_the_whole_gradient() {
    let b = bodies(6);
    let g = composed_grad(&b, &Gravity { g: 1.3 });
    // `2 (T + V) - T = T + 2 V`: the energy's gradient plus the potential's again.
    let e = energy_grad(&b, 1.3);
    let v = Gravity { g: 1.3 }.potential_grad(&b);
    let want: Vec<f64> = flat(&e).iter().zip(flat(&v)).map(|(a, b)| a + b).collect();
    assert_close(&flat(&g), &want, 1e-12);
    assert!(g.iter().zip(&b).all(|(g, b)| g.id == b.id));
    let fd_want = fd(
        &|v: &[f64]| composed(&with(&b, v), &Gravity { g: 1.3 }),
        &flat(&b),
    );
    assert_close(&flat(&g), &fd_want, 1e-6);
}

/// The kinetic and spring energies read through struct patterns: a walk binding fields by
/// reference (read as `*mass` too), an enumerated walk with a nested pattern, and a `let` of
/// an element with a constant field.
#[differentiate(wrt(bodies, nodes))]
fn patterns(bodies: &[Body], nodes: &[Node]) -> f64 {
    let mut e = 0.0;
    for Body { vel, mass, .. } in bodies.iter() {
        e += 0.5 * *mass * (vel[0] * vel[0] + vel[1] * vel[1]) + mass * vel[2] * vel[2] * 0.5;
    }
    for (
        i,
        Node {
            x,
            spring: Spring { k, .. },
            ..
        },
    ) in nodes.iter().enumerate()
    {
        e += k * x * x * (i + 1) as f64;
    }
    let Body { pos, mass, id, .. } = &bodies[0];
    if *mass > 0.0 {
        e += pos[0] * pos[1] * mass * *id as f64;
    }
    e
}

#[test]
fn struct_patterns_match_finite_differences() {
    let b = bodies(4);
    let n = nodes();
    let (gb, gn) = patterns_grad(&b, &n);
    let want = fd(&|v: &[f64]| patterns(&with(&b, v), &n), &flat(&b));
    assert_close(&flat(&gb), &want, 1e-6);
    let want = fd(&|v: &[f64]| patterns(&b, &node_with(&n, v)), &node_flat(&n));
    assert_close(&node_flat(&gn), &want, 1e-6);
}

/// Gravitating bodies stepped in time (semi-implicit Euler), their state copied out of the
/// structs into buffers of points: the kinetic energy at the end.
#[differentiate(wrt(bodies))]
fn stepped(bodies: &[Body], dt: f64, steps: usize) -> f64 {
    let n = bodies.len();
    let mut pos = vec![[0.0; 3]; n];
    let mut vel = vec![[0.0; 3]; n];
    for i in 0..n {
        pos[i] = bodies[i].pos;
        for k in 0..3 {
            vel[i][k] = bodies[i].vel[k];
        }
    }
    for _ in 0..steps {
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let mut r2 = 0.0;
                    for k in 0..3 {
                        let d = pos[j][k] - pos[i][k];
                        r2 += d * d;
                    }
                    let s = bodies[j].mass / (r2 * r2.sqrt());
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
    for i in 0..n {
        let v = vel[i];
        e += 0.5 * bodies[i].mass * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    }
    e
}

#[test]
fn bodies_stepped_in_time_match_finite_differences() {
    let b = bodies(4);
    let g = stepped_grad(&b, 0.01, 20);
    let want = fd(&|v: &[f64]| stepped(&with(&b, v), 0.01, 20), &flat(&b));
    assert_close(&flat(&g), &want, 1e-5);
}

/// The same steps, the state collected out of the structs (`.map(|b| b.pos).collect()`, a
/// typed `let`), the masses too.
#[differentiate(wrt(bodies))]
fn stepped_collected(bodies: &[Body], dt: f64, steps: usize) -> f64 {
    let n = bodies.len();
    let mut pos: Vec<[f64; 3]> = bodies.iter().map(|b| b.pos).collect();
    let mut vel = bodies.iter().map(|b| b.vel).collect::<Vec<[f64; 3]>>();
    let mass: Vec<f64> = bodies.iter().map(|b| b.mass).collect();
    for _ in 0..steps {
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let mut r2 = 0.0;
                    for k in 0..3 {
                        let d = pos[j][k] - pos[i][k];
                        r2 += d * d;
                    }
                    let s = mass[j] / (r2 * r2.sqrt());
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
    for i in 0..n {
        let v = vel[i];
        e += 0.5 * mass[i] * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    }
    e
}

#[test]
fn state_collected_out_of_structs_matches_the_indexed_copy() {
    let b = bodies(4);
    let g = stepped_collected_grad(&b, 0.01, 20);
    let want = stepped_grad(&b, 0.01, 20);
    assert_close(&flat(&g), &flat(&want), 1e-12);
    assert_eq!(stepped_collected(&b, 0.01, 20), stepped(&b, 0.01, 20));
}

/// Reads inside `vec![..]`: rows of differentiated values, and a walk's element (a read left
/// inside the macro had been a constant, its gradient lost: the differential run at
/// 1 824 000).
#[differentiate(wrt(bodies))]
#[allow(clippy::useless_vec)]
fn inside_vec(bodies: &[Body], a: f64) -> f64 {
    let rows = vec![
        [bodies[0].pos[0] * a, bodies[0].pos[1]],
        [bodies[1].pos[2], bodies[1].mass],
    ];
    let mut e = rows[0][0] * rows[1][1] + rows[0][1] * rows[1][0];
    for b in bodies.iter() {
        let v = vec![b.mass, b.vel[0] * b.vel[1]];
        e += v[0] * v[1];
    }
    e
}

#[test]
fn reads_inside_vec_macros_match_finite_differences() {
    let b = bodies(3);
    let g = inside_vec_grad(&b, 0.7);
    let want = fd(&|v: &[f64]| inside_vec(&with(&b, v), 0.7), &flat(&b));
    assert_close(&flat(&g), &want, 1e-6);
    assert!(g[0].pos[0] != 0.0 && g[1].mass != 0.0);
}

/// Walks zipping a slice of structs with a slice of floats, on either side, enumerated, and a
/// zipped map.
#[differentiate(wrt(bodies, w))]
fn zipped(bodies: &[Body], w: &[f64]) -> f64 {
    let mut e = 0.0;
    for (b, &v) in bodies.iter().zip(w) {
        e += b.mass * v * b.vel[0];
    }
    for (i, (v, Body { pos, .. })) in w.iter().zip(bodies.iter()).enumerate() {
        e += v * pos[1] * (i + 1) as f64;
    }
    e + bodies
        .iter()
        .zip(w.iter())
        .map(|(b, v)| b.pos[2] * v.sin())
        .sum::<f64>()
}

#[test]
fn zipped_walks_match_finite_differences() {
    let b = bodies(4);
    // Shorter than the bodies: the walks stop at the shorter side.
    let w = [0.5, -1.0, 2.0];
    let (gb, gw) = zipped_grad(&b, &w);
    let want = fd(&|v: &[f64]| zipped(&with(&b, v), &w), &flat(&b));
    assert_close(&flat(&gb), &want, 1e-6);
    let want = fd(&|v: &[f64]| zipped(&b, v), &w);
    assert_close(&gw, &want, 1e-6);
    assert_eq!(gb[3].mass, 0.0);
}

/// Walks cut by `skip` and `take` (a range of indices), and those the desugaring writes as
/// index loops with the element bound (`rev`, `filter`, `step_by`): the element's bindings
/// are read as its fields.
#[differentiate(wrt(bodies))]
fn chained(bodies: &[Body]) -> f64 {
    let mut e = 0.0;
    for b in bodies.iter().skip(1) {
        e += b.mass * b.vel[0];
    }
    for (i, b) in bodies.iter().enumerate().take(2) {
        e += b.pos[0] * (i + 1) as f64;
    }
    for b in bodies.iter().rev() {
        e = e * 0.9 + b.vel[1];
    }
    for b in bodies.iter().filter(|b| b.id % 2 == 0) {
        e += b.pos[2].sin();
    }
    for b in bodies.iter().step_by(2) {
        e += b.mass * b.pos[1];
    }
    for (i, b) in bodies.iter().enumerate().skip(1).take(3) {
        e += b.vel[2] * i as f64;
    }
    e
}

#[test]
fn chained_walks_match_finite_differences() {
    let b = bodies(5);
    let g = chained_grad(&b);
    let want = fd(&|v: &[f64]| chained(&with(&b, v)), &flat(&b));
    assert_close(&flat(&g), &want, 1e-6);
}

/// The potential written with the pair-loop idiom clippy suggests: `enumerate`, then
/// `skip(i + 1)`, elements taken apart by patterns.
#[differentiate(wrt(bodies))]
fn potential_idiom(bodies: &[Body], g: f64) -> f64 {
    let mut e = 0.0;
    for (i, a) in bodies.iter().enumerate() {
        for Body { pos, mass, .. } in bodies.iter().skip(i + 1) {
            let r2: f64 = (0..3).map(|k| (a.pos[k] - pos[k]).powi(2)).sum();
            e -= g * a.mass * mass / r2.sqrt();
        }
    }
    e
}

#[test]
fn the_pair_loop_idiom_matches_the_indexed_potential() {
    let b = bodies(6);
    let g = potential_idiom_grad(&b, 1.3);
    let want = Gravity { g: 1.3 }.potential_grad(&b);
    assert_close(&flat(&g), &flat(&want), 1e-12);
}

/// An element with a point, a row and a float.
#[derive(Clone, Differentiable)]
pub struct Cell3 {
    pos: [f64; 3],
    w: Vec<f64>,
    m: f64,
}

fn cells() -> Vec<Cell3> {
    (0..3)
        .map(|i| Cell3 {
            pos: [0.1 * i as f64, 0.3, -0.2 + i as f64],
            w: vec![0.5, i as f64],
            m: 1.0 + i as f64,
        })
        .collect()
}

/// The differentiable numbers of cells, in order (pos, w, m).
fn cells_flat(ps: &[Cell3]) -> Vec<f64> {
    ps.iter()
        .flat_map(|p| {
            p.pos
                .iter()
                .copied()
                .chain(p.w.iter().copied())
                .chain([p.m])
        })
        .collect()
}

/// Cells of two weights with their numbers taken from `v` (as [`cells_flat`] lays them out).
fn cells_with(v: &[f64]) -> Vec<Cell3> {
    v.chunks(6)
        .map(|c| Cell3 {
            pos: [c[0], c[1], c[2]],
            w: vec![c[3], c[4]],
            m: c[5],
        })
        .collect()
}

/// Fields read as containers: walked, summed, copied (`bodies[i].pos.iter()`, `.len()`).
#[differentiate(wrt(ps))]
fn containers(ps: &[Cell3]) -> f64 {
    let mut e = 0.0;
    for i in 0..ps.len() {
        e += ps[i].pos.iter().sum::<f64>() * ps[i].m;
        e += ps[i].w.iter().map(|v| v * v).sum::<f64>();
        for v in ps[i].pos.iter() {
            e += v.sin();
        }
        let p = ps[i].pos;
        e += p[0] * p[2];
    }
    e
}

#[test]
fn fields_read_as_containers_match_finite_differences() {
    let ps = cells();
    let g = containers_grad(&ps);
    let want = fd(&|v: &[f64]| containers(&cells_with(v)), &cells_flat(&ps));
    assert_close(&cells_flat(&g), &want, 1e-6);
}

/// A sum of squares.
#[differentiate]
fn sq(v: &[f64]) -> f64 {
    v.iter().map(|t| t * t).sum::<f64>()
}

/// A product of a point's first two coordinates plus the third.
#[differentiate]
fn n3(v: &[f64; 3]) -> f64 {
    v[0] * v[1] + v[2]
}

/// Fields passed by reference to differentiated functions (`sq(&p.w)`, `n3(&p.pos)`).
#[differentiate(wrt(ps))]
fn containers_passed(ps: &[Cell3]) -> f64 {
    let mut e = 0.0;
    for p in ps {
        e += sq(&p.w) * n3(&p.pos) + p.m;
    }
    e
}

#[test]
fn fields_passed_to_functions_match_finite_differences() {
    let ps = cells();
    let gr = containers_passed_grad(&ps);
    let want = fd(
        &|v: &[f64]| containers_passed(&cells_with(v)),
        &cells_flat(&ps),
    );
    assert_close(&cells_flat(&gr), &want, 1e-6);
}

/// A chain of nodes by windows (springs between neighbours): `for w in nodes.windows(2)`,
/// enumerated, mapped, chunks (the last one shorter) and a part bound by hand (`let part =
/// &nodes[1..];`).
#[differentiate(wrt(nodes))]
fn windowed(nodes: &[Node]) -> f64 {
    let mut e = 0.0;
    for w in nodes.windows(2) {
        let d = w[1].x - w[0].x - w[0].spring.rest;
        e += 0.5 * w[0].spring.k * d * d;
    }
    for (i, w) in nodes.windows(3).enumerate() {
        e += (w[2].x - 2.0 * w[1].x + w[0].x) * (i + 1) as f64 * w.len() as f64;
    }
    e += nodes.windows(2).map(|w| w[0].w[0] * w[1].w[1]).sum::<f64>();
    for c in nodes.chunks(3) {
        e += c[0].x * c[c.len() - 1].x.sin();
    }
    let part = &nodes[1..];
    e + part[0].x * part[part.len() - 1].spring.k
}

#[test]
fn windows_of_structs_match_finite_differences() {
    let n = nodes();
    let g = windowed_grad(&n);
    let want = fd(&|v: &[f64]| windowed(&node_with(&n, v)), &node_flat(&n));
    assert_close(&node_flat(&g), &want, 1e-6);
}

/// One body's kinetic energy.
#[differentiate(wrt(b))]
fn body_kinetic(b: &Body) -> f64 {
    0.5 * b.mass * (b.vel[0] * b.vel[0] + b.vel[1] * b.vel[1] + b.vel[2] * b.vel[2])
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

/// The energy of `energy` written per body and per pair: elements passed whole to
/// differentiated functions, from a walk, by index, from a binding and a pair loop.
#[differentiate(wrt(bodies))]
fn energy_by_parts(bodies: &[Body], g: f64) -> f64 {
    let mut e = 0.0;
    for b in bodies.iter() {
        e += body_kinetic(b);
    }
    for i in 0..bodies.len() {
        let a = &bodies[i];
        for j in i + 1..bodies.len() {
            e += pair_potential(a, &bodies[j], g);
        }
    }
    e
}

/// The same by the pair-loop idiom, a field read beside.
#[differentiate(wrt(bodies))]
fn energy_by_pairs(bodies: &[Body], g: f64) -> f64 {
    let mut e: f64 = bodies.iter().map(body_kinetic).sum();
    for (i, a) in bodies.iter().enumerate() {
        for b in bodies.iter().skip(i + 1) {
            e += pair_potential(a, b, g) + 0.0 * b.mass;
        }
    }
    e
}

#[test]
fn elements_passed_whole_to_differentiated_functions_match_the_inline_energy() {
    let b = bodies(5);
    let want = energy_grad(&b, 1.3);
    let g = energy_by_parts_grad(&b, 1.3);
    assert_close(&flat(&g), &flat(&want), 1e-12);
    assert!(g.iter().zip(&b).all(|(g, b)| g.id == b.id));
    let g = energy_by_pairs_grad(&b, 1.3);
    assert_close(&flat(&g), &flat(&want), 1e-12);
    let f = fd(&|v: &[f64]| energy_by_pairs(&with(&b, v), 1.3), &flat(&b));
    assert_close(&flat(&g), &f, 1e-6);
    let (pb, _) = energy_by_parts_pullback(&b, 1.3, -2.0);
    assert_close(
        &flat(&pb),
        &flat(&want).iter().map(|v| -2.0 * v).collect::<Vec<_>>(),
        1e-12,
    );
}

impl Body {
    /// The kinetic energy as a method differentiated with respect to `self`.
    #[differentiate(wrt(self))]
    fn kinetic(&self) -> f64 {
        0.5 * self.mass
            * (self.vel[0] * self.vel[0] + self.vel[1] * self.vel[1] + self.vel[2] * self.vel[2])
    }

    /// The potential of a pair, differentiated with respect to both.
    #[differentiate(wrt(self, other))]
    fn potential(&self, other: &Body, g: f64) -> f64 {
        pair_potential(self, other, g)
    }
}

/// The energy through the elements' methods.
#[differentiate(wrt(bodies))]
fn energy_by_methods(bodies: &[Body], g: f64) -> f64 {
    let mut e = 0.0;
    for b in bodies {
        e += b.kinetic();
    }
    for i in 0..bodies.len() {
        for j in i + 1..bodies.len() {
            e += bodies[i].potential(&bodies[j], g);
        }
    }
    e
}

#[test]
fn elements_methods_match_the_inline_energy() {
    let b = bodies(5);
    let want = energy_grad(&b, 1.3);
    let g = energy_by_methods_grad(&b, 1.3);
    assert_close(&flat(&g), &flat(&want), 1e-12);
}

impl Spring {
    /// A spring's energy at an extension, a method differentiated with respect to both.
    #[differentiate(wrt(self, d))]
    fn energy(&self, d: f64) -> f64 {
        0.5 * self.k * (d - self.rest) * (d - self.rest)
    }
}

/// The same energy as a function of the spring.
#[differentiate(wrt(s, d))]
fn spring_energy(s: &Spring, d: f64) -> f64 {
    0.5 * s.k * (d - s.rest) * (d - s.rest)
}

/// Nested structs of the elements passed whole: to a function, and as a method's receiver.
#[differentiate(wrt(nodes))]
fn springs(nodes: &[Node]) -> f64 {
    let mut e = 0.0;
    for i in 0..nodes.len() - 1 {
        let d = nodes[i + 1].x - nodes[i].x;
        e += spring_energy(&nodes[i].spring, d) + nodes[i + 1].spring.energy(d);
    }
    for n in nodes {
        let s = &n.spring;
        e += s.energy(n.x) * n.spring.k;
    }
    // Bound to a name: read, passed and called through it.
    for (i, Node { spring, .. }) in nodes.iter().enumerate() {
        let s = &nodes[i].spring;
        e += 0.1 * (spring_energy(s, 0.5) + spring.energy(1.5) + s.k);
    }
    e
}

/// The same, written out.
#[differentiate(wrt(nodes))]
fn springs_inline(nodes: &[Node]) -> f64 {
    let mut e = 0.0;
    for i in 0..nodes.len() - 1 {
        let d = nodes[i + 1].x - nodes[i].x;
        let (ka, ra) = (nodes[i].spring.k, nodes[i].spring.rest);
        let (kb, rb) = (nodes[i + 1].spring.k, nodes[i + 1].spring.rest);
        e += 0.5 * ka * (d - ra) * (d - ra) + 0.5 * kb * (d - rb) * (d - rb);
    }
    for n in nodes {
        e += 0.5 * n.spring.k * (n.x - n.spring.rest) * (n.x - n.spring.rest) * n.spring.k;
    }
    for n in nodes {
        let (k, r) = (n.spring.k, n.spring.rest);
        e += 0.1 * (0.5 * k * (0.5 - r) * (0.5 - r) + 0.5 * k * (1.5 - r) * (1.5 - r) + k);
    }
    e
}

#[test]
fn nested_structs_passed_whole_match_the_inline_energy() {
    let n = nodes();
    let g = springs_grad(&n);
    let want = springs_inline_grad(&n);
    assert_close(&node_flat(&g), &node_flat(&want), 1e-12);
    let f = fd(&|v: &[f64]| springs(&node_with(&n, v)), &node_flat(&n));
    assert_close(&node_flat(&g), &f, 1e-6);
    assert!(g.iter().zip(&n).all(|(g, n)| g.next == n.next));
}

/// Elements' nested structs and the elements passed whole in a loop whose result is scaled
/// after it (the loop reversed at once for a unit adjoint, its gradients scaled after).
#[differentiate(wrt(nodes))]
fn springs_squared(nodes: &[Node]) -> f64 {
    let mut e = 0.0;
    for n in nodes {
        e += n.spring.energy(n.x) + n.x * n.x;
    }
    e * e
}

#[differentiate(wrt(nodes))]
fn springs_squared_inline(nodes: &[Node]) -> f64 {
    let mut e = 0.0;
    for n in nodes {
        e += 0.5 * n.spring.k * (n.x - n.spring.rest) * (n.x - n.spring.rest) + n.x * n.x;
    }
    e * e
}

#[differentiate(wrt(bodies))]
fn energy_by_parts_squared(bodies: &[Body]) -> f64 {
    let mut e = 0.0;
    for b in bodies {
        e += body_kinetic(b);
    }
    e * e
}

#[differentiate(wrt(bodies))]
fn kinetic_squared(bodies: &[Body]) -> f64 {
    let e = kinetic(bodies);
    e * e
}

#[test]
fn gradients_of_loops_scaled_after_them_match_the_inline_ones() {
    let n = nodes();
    let g = springs_squared_grad(&n);
    assert_close(
        &node_flat(&g),
        &node_flat(&springs_squared_inline_grad(&n)),
        1e-12,
    );
    let b = bodies(5);
    let g = energy_by_parts_squared_grad(&b);
    assert_close(&flat(&g), &flat(&kinetic_squared_grad(&b)), 1e-12);
}
