//! Gravitating bodies as structs: how the kinetic energy after a short integration depends on
//! every body's initial position, velocity and mass, one gradient call; and the same bodies
//! held in a `System` whose total energy is written per body and per pair; both checked
//! against central finite differences.
#![allow(clippy::needless_range_loop)]
use autodiff::{differentiate, Differentiable};

/// A body: position, velocity, mass, and a name that is no float (copied into the gradient).
#[derive(Clone, Debug, Differentiable)]
pub struct Body {
    pos: [f64; 3],
    vel: [f64; 3],
    mass: f64,
    #[differentiable(constant)]
    name: &'static str,
}

/// The kinetic energy after `steps` semi-implicit Euler steps of length `dt`.
#[differentiate(wrt(bodies))]
fn kinetic_after(bodies: &[Body], dt: f64, steps: usize) -> f64 {
    let n = bodies.len();
    let mut pos: Vec<[f64; 3]> = bodies.iter().map(|b| b.pos).collect();
    let mut vel: Vec<[f64; 3]> = bodies.iter().map(|b| b.vel).collect();
    for _ in 0..steps {
        for i in 0..n {
            for (j, other) in bodies.iter().enumerate() {
                if i != j {
                    let mut r2 = 0.01; // softening
                    for k in 0..3 {
                        let d = pos[j][k] - pos[i][k];
                        r2 += d * d;
                    }
                    let s = other.mass / (r2 * r2.sqrt());
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
    for (Body { mass, .. }, v) in bodies.iter().zip(&vel) {
        e += 0.5 * mass * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    }
    e
}

/// The same three bodies held in a system, as a fixed-size array, beside the gravitational
/// constant: its energy through each body's method and a function of each pair,
/// differentiated with respect to the whole system (`wrt(self)`; the gradient is a `System`,
/// its `bodies` an array of three gradients).
#[derive(Clone, Debug, Differentiable)]
pub struct System {
    bodies: [Body; 3],
    g: f64,
}

impl Body {
    /// The body's kinetic energy.
    #[differentiate(wrt(self))]
    fn kinetic(&self) -> f64 {
        let v = self.vel;
        0.5 * self.mass * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    }
}

/// The (softened) potential energy of a pair.
#[differentiate(wrt(a, b, g))]
fn potential(a: &Body, b: &Body, g: f64) -> f64 {
    let mut r2 = 0.01;
    for k in 0..3 {
        let d = a.pos[k] - b.pos[k];
        r2 += d * d;
    }
    -g * a.mass * b.mass / r2.sqrt()
}

impl System {
    /// The total energy: every body's kinetic energy, every pair's potential.
    #[differentiate(wrt(self))]
    fn energy(&self) -> f64 {
        let mut e = 0.0;
        for b in &self.bodies {
            e += b.kinetic();
        }
        for (i, a) in self.bodies.iter().enumerate() {
            for b in self.bodies.iter().skip(i + 1) {
                e += potential(a, b, self.g);
            }
        }
        e
    }
}

/// The largest relative difference between `sys`'s energy gradient and central finite
/// differences, over every body's position and mass and `g`.
fn system_check(sys: &System) -> f64 {
    let grad = sys.energy_grad();
    let h = 1e-6;
    let fd = |change: &dyn Fn(&mut System, f64)| {
        let (mut up, mut down) = (sys.clone(), sys.clone());
        change(&mut up, h);
        change(&mut down, -h);
        (up.energy() - down.energy()) / (2.0 * h)
    };
    let mut worst: f64 = 0.0;
    let mut compare =
        |got: f64, want: f64| worst = worst.max((got - want).abs() / want.abs().max(1.0));
    for i in 0..sys.bodies.len() {
        for k in 0..3 {
            compare(grad.bodies[i].pos[k], fd(&|s, d| s.bodies[i].pos[k] += d));
        }
        compare(grad.bodies[i].mass, fd(&|s, d| s.bodies[i].mass += d));
    }
    compare(grad.g, fd(&|s, d| s.g += d));
    println!("system: E = {:.6}, dE/dg = {:.6}", sys.energy(), grad.g);
    worst
}

fn main() {
    let bodies = [
        Body {
            pos: [0.0, 0.0, 0.0],
            vel: [0.0, 0.0, 0.0],
            mass: 10.0,
            name: "sun",
        },
        Body {
            pos: [1.0, 0.0, 0.0],
            vel: [0.0, 3.0, 0.0],
            mass: 0.1,
            name: "inner",
        },
        Body {
            pos: [0.0, 2.0, 0.1],
            vel: [-2.2, 0.0, 0.0],
            mass: 0.2,
            name: "outer",
        },
    ];
    let (dt, steps) = (0.01, 100);
    let (e, grad) = kinetic_after_value_and_grad(&bodies, dt, steps);
    println!("kinetic energy after {steps} steps: {e:.6}");
    let mut worst: f64 = 0.0;
    for (b, g) in bodies.iter().zip(&grad) {
        println!(
            "{:>6}: dE/dpos = {:>9.4?}  dE/dvel = {:>9.4?}  dE/dmass = {:9.4}",
            g.name, g.pos, g.vel, g.mass
        );
        // Central finite differences of the same function, field by field.
        let h = 1e-6;
        let fd = |change: &dyn Fn(&mut Body, f64)| {
            let (mut up, mut down) = (bodies.clone(), bodies.clone());
            let i = bodies.iter().position(|o| o.name == b.name).unwrap_or(0);
            change(&mut up[i], h);
            change(&mut down[i], -h);
            (kinetic_after(&up, dt, steps) - kinetic_after(&down, dt, steps)) / (2.0 * h)
        };
        for k in 0..3 {
            let want = fd(&|b, d| b.pos[k] += d);
            worst = worst.max((g.pos[k] - want).abs() / want.abs().max(1.0));
            let want = fd(&|b, d| b.vel[k] += d);
            worst = worst.max((g.vel[k] - want).abs() / want.abs().max(1.0));
        }
        let want = fd(&|b, d| b.mass += d);
        worst = worst.max((g.mass - want).abs() / want.abs().max(1.0));
    }
    let system = System { bodies, g: 1.0 };
    worst = worst.max(system_check(&system));
    println!("largest difference from central finite differences: {worst:.1e}");
    assert!(
        worst < 1e-5,
        "the gradient disagrees with finite differences"
    );
}
