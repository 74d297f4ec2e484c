//! A function calling another differentiated function whose body is a loop: the call's value
//! and its pullback come from one run of the callee (`g::value_and_pullback`), not one run for
//! the value and another inside the pullback. With its gradient by hand.
#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;

/// `sum x_i sin(x_i)`.
#[differentiate]
pub fn wave_sum(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += x[i].sin() * x[i];
    }
    s
}

/// `s.sqrt() + s` of `s = wave_sum(x)`.
#[differentiate]
pub fn wave_energy(x: &[f64]) -> f64 {
    let s = wave_sum(x);
    s.sqrt() + s
}

/// Its gradient by hand: one pass for the sum and its derivatives, then one scaling them.
pub fn wave_energy_hand(x: &[f64]) -> Vec<f64> {
    let mut s = 0.0;
    let mut g = vec![0.0; x.len()];
    for i in 0..x.len() {
        let (sin, cos) = x[i].sin_cos();
        s += sin * x[i];
        g[i] = cos * x[i] + sin;
    }
    let d = 0.5 / s.sqrt() + 1.0;
    for v in &mut g {
        *v *= d;
    }
    g
}

/// Points where the sum is positive.
pub fn problem(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 + 0.4 * (i as f64 * 0.37).sin())
        .collect()
}
