//! Programs as users write them, in the idioms clippy and the standard library suggest
//! (folds, `collect`, `zip`, fixed-size arrays), each gradient against central finite
//! differences.
#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;

mod common;
use common::{assert_close, fd};

/// A softmax cross-entropy, shifted by the maximum found with `fold(.., f64::max)`.
#[differentiate(wrt(logits))]
pub fn cross_entropy(logits: &[f64], target: usize) -> f64 {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln() + m;
    lse - logits[target]
}

/// A layer over a flat weight slice: each row a part of it zipped with the input, the
/// activations collected into a `Vec`, then an enumerated reduction.
#[differentiate(wrt(w, x))]
pub fn flat_layer(w: &[f64], x: &[f64], d: usize) -> f64 {
    let n = w.len() / d;
    let mut y = vec![0.0; n];
    for i in 0..n {
        let row = &w[i * d..(i + 1) * d];
        y[i] = row.iter().zip(x).map(|(a, b)| a * b).sum();
    }
    let activations: Vec<f64> = y.iter().map(|v| v.tanh()).collect();
    activations
        .iter()
        .enumerate()
        .map(|(i, &v)| if i == 0 { v - 1.0 } else { v * v })
        .sum::<f64>()
}

/// A damped oscillator's right-hand side, `[f64; 2]` in and out.
#[differentiate]
pub fn oscillator(y: [f64; 2]) -> [f64; 2] {
    [y[1], -y[0] - 0.1 * y[1]]
}

/// Classic Runge-Kutta steps over a fixed-size state, the stages as array literals.
#[differentiate(wrt(y0))]
pub fn rk4(y0: [f64; 2], h: f64, steps: usize) -> f64 {
    let mut y = y0;
    for _ in 0..steps {
        let k1 = oscillator(y);
        let k2 = oscillator([y[0] + 0.5 * h * k1[0], y[1] + 0.5 * h * k1[1]]);
        let k3 = oscillator([y[0] + 0.5 * h * k2[0], y[1] + 0.5 * h * k2[1]]);
        let k4 = oscillator([y[0] + h * k3[0], y[1] + h * k3[1]]);
        y = [
            y[0] + h / 6.0 * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0]),
            y[1] + h / 6.0 * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1]),
        ];
    }
    y[0] * y[0] + y[1]
}

#[test]
fn a_cross_entropy_matches_softmax_minus_one_hot() {
    let logits = [0.5, -1.0, 2.0, 0.3];
    let g = cross_entropy_grad(&logits, 2);
    let z: f64 = logits.iter().map(|l| l.exp()).sum();
    let want: Vec<f64> = (0..4)
        .map(|i| logits[i].exp() / z - (i == 2) as u8 as f64)
        .collect();
    assert_close(&g, &want, 1e-12);
    assert_close(&g, &fd(&|v| cross_entropy(v, 2), &logits), 1e-7);
}

#[test]
fn a_flat_layer_with_collected_activations_matches_finite_differences() {
    let w = [0.5, -1.0, 2.0, 0.3, 0.1, 0.7];
    let x = [0.2, -0.4];
    let (gw, gx) = flat_layer_grad(&w, &x, 2);
    assert_close(&gw, &fd(&|v| flat_layer(v, &x, 2), &w), 1e-7);
    assert_close(&gx, &fd(&|v| flat_layer(&w, v, 2), &x), 1e-7);
}

#[test]
fn runge_kutta_over_fixed_size_arrays_matches_finite_differences() {
    let g = rk4_grad([1.0, 0.5], 0.1, 20);
    let want = fd(&|v| rk4([v[0], v[1]], 0.1, 20), &[1.0, 0.5]);
    assert_close(&g, &want, 1e-7);
}
