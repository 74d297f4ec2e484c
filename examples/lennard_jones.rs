//! Molecular dynamics with forces from a generated gradient: a short velocity-Verlet run of
//! Lennard-Jones particles, printing the total energy, which the integrator conserves.
use autodiff::differentiate;

/// Lennard-Jones energy (reduced units) of particles at `x`: 3 coordinates each.
#[differentiate]
fn energy(x: &[f64]) -> f64 {
    let n = x.len() / 3;
    let mut e = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = x[3 * i] - x[3 * j];
            let dy = x[3 * i + 1] - x[3 * j + 1];
            let dz = x[3 * i + 2] - x[3 * j + 2];
            let r2 = dx * dx + dy * dy + dz * dz;
            let s6 = 1.0 / (r2 * r2 * r2);
            e += 4.0 * (s6 * s6 - s6);
        }
    }
    e
}

fn main() {
    // 27 particles on a slightly perturbed cubic lattice near the potential's minimum.
    let side = 3;
    let spacing = 1.12;
    let mut x = Vec::new();
    for a in 0..side {
        for b in 0..side {
            for c in 0..side {
                let p = (a * 9 + b * 3 + c) as f64;
                x.extend([
                    spacing * a as f64 + 0.02 * (p * 1.7).sin(),
                    spacing * b as f64 + 0.02 * (p * 2.3).cos(),
                    spacing * c as f64 - 0.02 * (p * 0.9).sin(),
                ]);
            }
        }
    }
    let mut v = vec![0.0; x.len()];
    let dt = 0.002;
    let (mut potential, mut grad) = energy_value_and_grad(&x);
    let kinetic = |v: &[f64]| 0.5 * v.iter().map(|u| u * u).sum::<f64>();
    let start = potential + kinetic(&v);
    println!("step      potential       kinetic         total");
    for step in 0..=2000 {
        if step % 250 == 0 {
            let k = kinetic(&v);
            println!(
                "{step:4}  {potential:14.8}  {k:12.8}  {:14.8}",
                potential + k
            );
        }
        // Velocity Verlet: forces are minus the gradient.
        for i in 0..x.len() {
            v[i] -= 0.5 * dt * grad[i];
            x[i] += dt * v[i];
        }
        (potential, grad) = energy_value_and_grad(&x);
        for i in 0..x.len() {
            v[i] -= 0.5 * dt * grad[i];
        }
    }
    let end = potential + kinetic(&v);
    println!(
        "relative energy drift over the run: {:.2e}",
        ((end - start) / start).abs()
    );
    assert_eq!(energy(&x), potential);
}
