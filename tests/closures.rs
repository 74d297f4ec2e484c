//! Closures bound by `let` and called by name, inlined at their calls: against central finite
//! differences and analytic gradients.
#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;
use autodiff::ndarray::{array, Array1};

mod common;
use common::{assert_close, fd};

/// A pair potential as a local closure, called in a double loop.
#[differentiate]
fn lennard_jones(x: &[f64]) -> f64 {
    let n = x.len() / 3;
    let lj = |r2: f64| {
        let s6 = 1.0 / (r2 * r2 * r2);
        4.0 * (s6 * s6 - s6)
    };
    let mut e = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let mut r2 = 0.0;
            for k in 0..3 {
                let d = x[3 * i + k] - x[3 * j + k];
                r2 += d * d;
            }
            e += lj(r2);
        }
    }
    e
}

/// Several parameters (swapped at a call), a typed return, a closure calling another, one
/// reading a parameter and a local, and a constant closure.
#[differentiate]
fn composed(x: f64, y: f64, k: usize) -> f64 {
    let scale = 0.5 * k as f64;
    let sq = |v: f64| v * v;
    let mix = |a: f64, b: f64| -> f64 { sq(a) * b + scale * x };
    let twice = |n: usize| 2 * n;
    let (a, b) = (x.sin(), y);
    mix(a, b) + mix(b, a) + twice(k) as f64 * sq(y)
}

#[test]
fn inlined_closures_match_finite_differences_and_analytic_gradients() {
    let x = [0.0, 0.1, 0.2, 1.1, 0.0, -0.1, 0.3, 1.2, 0.4];
    let g = lennard_jones_grad(&x);
    assert_close(&g, &fd(&|v| lennard_jones(v), &x), 1e-6);
    // Forces between particles sum to zero.
    for k in 0..3 {
        assert!((g[k] + g[3 + k] + g[6 + k]).abs() < 1e-9);
    }
    let (x, y, k) = (0.7, -0.4, 3);
    let (gx, gy) = composed_grad(x, y, k);
    let s = f64::sin(x);
    // d/dx [s^2 y + 1.5 x + y^2 s + 1.5 x + 6 y^2] and d/dy.
    let want_x = 2.0 * s * x.cos() * y + 1.5 + y * y * x.cos() + 1.5;
    let want_y = s * s + 2.0 * y * s + 12.0 * y;
    assert_close(&[gx, gy], &[want_x, want_y], 1e-12);
    let f = fd(&|v| composed(v[0], v[1], k), &[x, y]);
    assert_close(&[gx, gy], &f, 1e-6);
}

/// Closures over slices (parts of a parameter passed by reference), and one inside `mapv`.
#[differentiate]
fn parts(x: &[f64], a: &Array1<f64>) -> f64 {
    let dot = |u: &[f64], w: &[f64]| {
        let mut s = 0.0;
        for i in 0..u.len() {
            s += u[i] * w[i];
        }
        s
    };
    let act = |v: f64| 2.0 * v.tanh();
    dot(&x[0..2], &x[2..4]) + dot(x, x) + a.mapv(|v| act(v) * v).sum()
}

#[test]
fn closures_over_slices_and_in_mapv_match_finite_differences() {
    let x = [0.3, -0.2, 0.5, 0.9];
    let a = array![0.1, -0.7, 1.3];
    let (gx, ga) = parts_grad(&x, &a);
    let want_x = [
        x[2] + 2.0 * x[0],
        x[3] + 2.0 * x[1],
        x[0] + 2.0 * x[2],
        x[1] + 2.0 * x[3],
    ];
    assert_close(&gx, &want_x, 1e-12);
    let fa = fd(
        &|v| parts(&x, &Array1::from(v.to_vec())),
        a.as_slice().unwrap(),
    );
    assert_close(ga.as_slice().unwrap(), &fa, 1e-6);
}

/// A closure reading `b` beside other closures whose parameters are named `b` (a comparator,
/// a `mapv`): those bind `b` only in their own bodies, which do not call it, so it is inlined.
#[differentiate]
fn closure_beside_closure_parameters(x: &[f64], b: f64) -> f64 {
    let scaled = |t: f64| b * t;
    let top = *x.iter().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap();
    let k = x.iter().position(|&b| b < 0.0).unwrap_or(0);
    scaled(top) + scaled(x[k])
}

#[test]
fn closures_beside_closure_parameters_of_the_same_name_match_the_analytic_gradient() {
    let x = [0.5, 2.0, -1.0];
    let (gx, gb) = closure_beside_closure_parameters_grad(&x, 1.5);
    // top = x[1], the first negative element x[2]: b x[1] + b x[2].
    assert_close(&gx, &[0.0, 1.5, 1.5], 1e-12);
    assert_close(&[gb], &[2.0 - 1.0], 1e-12);
}

/// A closure reading a name shadowed before it: every call sees the binding the closure sees.
#[differentiate]
fn closure_after_shadowing(x: f64) -> f64 {
    let a = x * 2.0;
    let a = a + 1.0;
    let g = |v: f64| v * a;
    g(x) + g(1.0)
}

#[test]
fn closures_after_shadowing_match_the_analytic_gradient() {
    for x in [0.5, -1.25] {
        // (2x + 1) x + (2x + 1): 4x + 3.
        assert_close(&[closure_after_shadowing_grad(x)], &[4.0 * x + 3.0], 1e-12);
    }
}
