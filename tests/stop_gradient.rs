//! `x.stop_gradient()`: the value, with derivative zero; what only it reads is left out of the
//! reverse sweep (adjoint liveness, `autodiff-macros/src/useful.rs`).
#![allow(clippy::needless_range_loop)]
use autodiff::ndarray::{array, Array1};
use autodiff::{differentiate, StopGradient};

#[differentiate]
fn times_constant_self(x: f64) -> f64 {
    x * x.stop_gradient() + x.stop_gradient().sin()
}

/// Log-sum-exp shifted by its running maximum, the shift a constant: the value does not
/// depend on the shift, so the gradient is softmax, and finite differences agree.
#[differentiate]
fn lse(x: &[f64]) -> f64 {
    let mut m = x[0];
    for i in 1..x.len() {
        m = m.max(x[i]);
    }
    let m = m.stop_gradient();
    let mut s = 0.0;
    for i in 0..x.len() {
        s += (x[i] - m).exp();
    }
    s.ln() + m
}

/// The same shift inside a loop over rows of data, as GMM's objective uses it.
#[differentiate(wrt(w))]
fn rows_lse(w: &[f64], data: &[f64], n: usize, k: usize) -> f64 {
    let mut terms = vec![0.0; k];
    let mut total = 0.0;
    for r in 0..n {
        for j in 0..k {
            terms[j] = w[j] * data[r * k + j];
        }
        let mut m = terms[0];
        for j in 1..k {
            m = m.max(terms[j]);
        }
        let m = m.stop_gradient();
        let mut s = 0.0;
        for j in 0..k {
            s += (terms[j] - m).exp();
        }
        total += s.ln() + m;
    }
    total
}

#[differentiate]
fn arrays(a: &Array1<f64>) -> f64 {
    (a * &a.stop_gradient()).sum() + a.stop_gradient().sum()
}

#[test]
fn the_stopped_factor_is_a_constant() {
    for x in [-1.3, 0.2, 2.5] {
        let (v, g) = times_constant_self_value_and_grad(x);
        assert_eq!(v, x * x + x.sin());
        assert!((g - x).abs() < 1e-15, "{g} vs {x}");
    }
    let a = array![0.5, -1.25, 2.0];
    assert_eq!(arrays_grad(&a), a);
}

#[test]
fn shifted_log_sum_exp_is_softmax_and_matches_finite_differences() {
    let x = [0.3, -1.2, 2.2, 2.2, 0.9];
    let g = lse_grad(&x);
    let total: f64 = x.iter().map(|v| v.exp()).sum();
    let fd = autodiff::check::central_difference(lse, &x, 1e-6);
    for i in 0..x.len() {
        let softmax = x[i].exp() / total;
        assert!((g[i] - softmax).abs() < 1e-14, "{} vs {softmax}", g[i]);
        assert!((g[i] - fd[i]).abs() < 1e-8, "{} vs {}", g[i], fd[i]);
    }

    let (n, k) = (4, 3);
    let data: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.7).sin()).collect();
    let w = [0.4, -0.8, 1.5];
    let g = rows_lse_grad(&w, &data, n, k);
    let fd = autodiff::check::central_difference(|w: &[f64]| rows_lse(w, &data, n, k), &w, 1e-6);
    for j in 0..k {
        assert!((g[j] - fd[j]).abs() < 1e-8, "{} vs {}", g[j], fd[j]);
    }
}

#[test]
fn arrays_copy_their_value() {
    let a: Array1<f64> = array![1.0, 2.0];
    let b = a.stop_gradient();
    assert_eq!(a, b);
    assert_eq!(3.5f32.stop_gradient(), 3.5);
}
