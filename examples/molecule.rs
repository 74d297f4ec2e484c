//! A small molecule relaxed by gradient descent: positions as points (`Vec<[f64; 3]>`), bonds
//! and angles as index lists walked with patterns, a force field in a struct, and a
//! non-bonded pair term generic over its potential. The forces come from the generated
//! gradient (`energy_grad`), checked once against finite differences before the descent.
use autodiff::{differentiate, Differentiable};

/// A pair potential: implementations write `energy_pullback` with `pullback_only`.
pub trait Pair {
    fn energy(&self, r: f64) -> f64;
    fn energy_pullback(&self, r: f64, d_out: f64) -> ((), f64);
}

/// A soft repulsion between atoms that are not bonded.
pub struct Repulsion {
    strength: f64,
}

impl Pair for Repulsion {
    #[differentiate(pullback_only)]
    fn energy(&self, r: f64) -> f64 {
        self.strength / (r * r * r * r)
    }
}

/// Bond and angle parameters (with a gradient of their own: `wrt(ff)` would give one).
#[derive(Clone, Debug, Differentiable)]
pub struct ForceField {
    k_bond: f64,
    r0: f64,
    k_angle: f64,
    theta0: f64,
}

#[differentiate]
fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[differentiate]
fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The molecule's energy: bonds, angles, and the generic pair term between atoms three or
/// more bonds apart along the chain.
#[differentiate(wrt(x))]
fn energy<P: Pair>(
    ff: &ForceField,
    pair: &P,
    x: &[[f64; 3]],
    bonds: &[(usize, usize)],
    angles: &[(usize, usize, usize)],
) -> f64 {
    let mut e = 0.0;
    for &(i, j) in bonds {
        let d = sub(x[i], x[j]);
        e += 0.5 * ff.k_bond * (dot(&d, &d).sqrt() - ff.r0).powi(2);
    }
    for &(i, j, k) in angles {
        let (a, b) = (sub(x[i], x[j]), sub(x[k], x[j]));
        let cos = dot(&a, &b) / (dot(&a, &a) * dot(&b, &b)).sqrt();
        e += 0.5 * ff.k_angle * (cos.clamp(-1.0, 1.0).acos() - ff.theta0).powi(2);
    }
    for (i, &p) in x.iter().enumerate() {
        for &q in x.iter().skip(i + 3) {
            let d = sub(p, q);
            e += pair.energy(dot(&d, &d).sqrt());
        }
    }
    e
}

fn main() {
    // A chain of six atoms, bent out of its equilibrium shape.
    let mut x: Vec<[f64; 3]> = (0..6)
        .map(|i| {
            let t = i as f64;
            [1.3 * t, 0.4 * (t * 1.7).sin(), 0.3 * (t * 0.9).cos()]
        })
        .collect();
    let bonds: Vec<(usize, usize)> = (0..5).map(|i| (i, i + 1)).collect();
    let angles: Vec<(usize, usize, usize)> = (0..4).map(|i| (i, i + 1, i + 2)).collect();
    let ff = ForceField {
        k_bond: 50.0,
        r0: 1.0,
        k_angle: 5.0,
        theta0: 1.9,
    };
    let pair = Repulsion { strength: 0.05 };

    // The gradient against central finite differences, once.
    let g = energy_grad(&ff, &pair, &x, &bonds, &angles);
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    let unflat = |v: &[f64]| -> Vec<[f64; 3]> { v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect() };
    let fd = autodiff::check::central_difference(
        |v| energy(&ff, &pair, &unflat(v), &bonds, &angles),
        &flat,
        1e-6,
    );
    let worst = g
        .iter()
        .flatten()
        .zip(&fd)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max);
    println!("gradient against finite differences: max relative error {worst:.1e}");
    assert!(worst < 1e-6);

    // Steepest descent with a fixed step: the energy falls to the relaxed shape's.
    let step = 0.004;
    for it in 0..=2000 {
        let (e, g) = energy_value_and_grad(&ff, &pair, &x, &bonds, &angles);
        if it % 400 == 0 {
            println!("step {it:4}: energy {e:.6}");
        }
        for (p, d) in x.iter_mut().zip(&g) {
            for k in 0..3 {
                p[k] -= step * d[k];
            }
        }
    }
    let d = sub(x[1], x[0]);
    println!(
        "first bond after relaxing: {:.4} (rest length 1.0)",
        dot(&d, &d).sqrt()
    );
}
