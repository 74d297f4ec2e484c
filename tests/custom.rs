//! Custom derivatives: `#[differentiate(pullback = p)]` names a hand-written pullback. Calls
//! from differentiated code go through it, and `f_grad` / `f_value_and_grad` are the pullback
//! at `d_out = 1`, checked here against finite differences.
use autodiff::differentiate;
use autodiff::ndarray::{array, Array1};

/// `sqrt(x^2 + eps)`.
#[differentiate(pullback = soft_abs_pullback)]
fn soft_abs(x: f64, eps: f64) -> f64 {
    (x * x + eps).sqrt()
}

fn soft_abs_pullback(x: f64, eps: f64, d_out: f64) -> (f64, f64) {
    let y = soft_abs(x, eps);
    (d_out * x / y, d_out * 0.5 / y)
}

/// `s * sum(v^n)`, with an owned array (copied for the value's call), a constant and a scalar.
#[differentiate(pullback = powered_pullback)]
fn powered(v: Array1<f64>, n: i32, s: f64) -> f64 {
    s * v.mapv(|t| t.powi(n)).sum()
}

fn powered_pullback(v: Array1<f64>, n: i32, s: f64, d_out: f64) -> (Array1<f64>, (), f64) {
    let dv = v.mapv(|t| d_out * s * n as f64 * t.powi(n - 1));
    (dv, (), d_out * v.mapv(|t| t.powi(n)).sum())
}

#[differentiate]
fn uses_both(x: f64, v: &Array1<f64>) -> f64 {
    soft_abs(x, 0.2) * powered(v.clone(), 3, x)
}

fn central(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-6;
    (f(x + h) - f(x - h)) / (2.0 * h)
}

#[test]
fn grad_and_value_and_grad_of_hand_written_pullbacks() {
    let (x, eps) = (0.7, 0.3);
    let (value, (gx, geps)) = soft_abs_value_and_grad(x, eps);
    assert_eq!(value, soft_abs(x, eps));
    assert_eq!(soft_abs_grad(x, eps), (gx, geps));
    assert!((gx - central(|t| soft_abs(t, eps), x)).abs() < 1e-8);
    assert!((geps - central(|t| soft_abs(x, t), eps)).abs() < 1e-8);

    let v = array![0.5, -1.2, 2.0];
    let (value, (gv, gs)) = powered_value_and_grad(v.clone(), 3, 1.5);
    assert_eq!(value, powered(v.clone(), 3, 1.5));
    for k in 0..3 {
        let f = |t: f64| {
            let mut w = v.clone();
            w[k] = t;
            powered(w, 3, 1.5)
        };
        assert!((gv[k] - central(f, v[k])).abs() < 1e-6, "v[{k}]");
    }
    assert!((gs - central(|t| powered(v.clone(), 3, t), 1.5)).abs() < 1e-8);
}

#[test]
fn calls_go_through_hand_written_pullbacks() {
    let x = 0.4;
    let v: Array1<f64> = array![0.3, -0.8];
    let (gx, gv) = uses_both_grad(x, &v);
    assert!((gx - central(|t| uses_both(t, &v), x)).abs() < 1e-7);
    for k in 0..2 {
        let f = |t: f64| {
            let mut w = v.clone();
            w[k] = t;
            uses_both(x, &w)
        };
        assert!((gv[k] - central(f, v[k])).abs() < 1e-7, "v[{k}]");
    }
}
