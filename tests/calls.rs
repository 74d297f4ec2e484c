//! Calls to differentiated functions returning one float run the callee once: the forward
//! sweep takes its value and its pullback for a unit adjoint in one call
//! (`g::value_and_pullback`), which the reverse sweep scales. Checked here by counting the
//! callee's runs, and against finite differences and analytic gradients wherever a call can
//! stand: straight-line code, `if` arms, loops fused with their reverse, loops reversed from
//! a tape, checkpointed loops, and every kind of argument.
// Index loops are the forms under test.
#![allow(clippy::needless_range_loop, clippy::manual_memcpy)]
mod common;

use autodiff::differentiate;
use autodiff::ndarray::{array, Array1};
use common::{assert_close, fd};
use std::cell::Cell;

thread_local! {
    /// How many times `tick` ran (its value), and its pullback.
    static TICKS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The identity, counting its runs; its body is not read (a hand-written pullback).
#[differentiate(pullback = tick_pullback)]
fn tick(x: f64) -> f64 {
    TICKS.with(|t| t.set((t.get().0 + 1, t.get().1)));
    x
}

fn tick_pullback(_x: f64, d_out: f64) -> f64 {
    TICKS.with(|t| t.set((t.get().0, t.get().1 + 1)));
    d_out
}

fn ticks<T>(run: impl FnOnce() -> T) -> (T, (usize, usize)) {
    TICKS.with(|t| t.set((0, 0)));
    let out = run();
    (out, TICKS.with(|t| t.get()))
}

/// `sin(x)^2`, through `tick`: a run of `wave` (or its gradient) runs `tick` once.
#[differentiate]
fn wave(x: f64) -> f64 {
    let s = tick(x).sin();
    s * s
}

/// `wave` called in straight-line code.
#[differentiate]
fn twice(x: f64, y: f64) -> f64 {
    let a = wave(x);
    let b = wave(y);
    a * b + a
}

/// `wave` called per term of a sum (a loop run fused with its reverse).
#[differentiate]
fn waves(x: &[f64]) -> f64 {
    let mut e = 0.0;
    for i in 0..x.len() {
        e += wave(x[i]) * (i as f64 + 1.0);
    }
    e
}

#[test]
fn each_call_runs_the_callee_once() {
    let (x, y) = (0.7, -1.3);
    // The gradient of `wave` itself: one run of `tick`, one of its pullback.
    let (g, n) = ticks(|| wave_grad(x));
    assert_close(&[g], &[2.0 * x.sin() * x.cos()], 1e-12);
    assert_eq!(n, (1, 1));
    // Each call of `wave` in `twice` runs `wave` (and so `tick`) once, not once for the value
    // and again inside the pullback.
    let ((da, db), n) = ticks(|| twice_grad(x, y));
    let w = |t: f64| t.sin() * t.sin();
    let dw = |t: f64| 2.0 * t.sin() * t.cos();
    assert_close(&[da, db], &[dw(x) * w(y) + dw(x), w(x) * dw(y)], 1e-12);
    assert_eq!(n, (2, 2));
    let xs = [0.3, -0.8, 1.9, 2.4];
    let (g, n) = ticks(|| waves_grad(&xs));
    let want: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, &t)| dw(t) * (i as f64 + 1.0))
        .collect();
    assert_close(&g, &want, 1e-12);
    assert_eq!(n, (4, 4));
}

/// `wave` called in both arms of an `if` and in a loop whose reverse reads a tape (the carried
/// value is used nonlinearly), a `while` loop with `break`.
#[differentiate]
fn branched(x: f64, y: f64) -> f64 {
    let mut acc = if x > 0.0 { wave(x) * y } else { wave(y) - x };
    let mut k = 0;
    while k < 5 {
        acc = (acc * 0.5 + wave(acc * y)).sin();
        if acc > 10.0 {
            break;
        }
        k += 1;
    }
    acc
}

#[test]
fn calls_in_branches_and_taped_loops_match_finite_differences() {
    for p in [[0.7, -1.1], [-0.4, 0.9]] {
        let (dx, dy) = branched_grad(p[0], p[1]);
        let want = fd(&|v: &[f64]| branched(v[0], v[1]), &p);
        assert_close(&[dx, dy], &want, 1e-6);
        let (value, _) = branched_value_and_grad(p[0], p[1]);
        assert_eq!(value, branched(p[0], p[1]));
    }
}

/// A step function called inside a checkpointed time loop that writes a buffer.
#[differentiate]
fn relax(u: f64, k: f64) -> f64 {
    u - 0.1 * k * (u * u - 1.0) * u
}

#[differentiate(checkpoint)]
fn relaxed(x: &[f64], k: f64) -> f64 {
    let n = x.len();
    let mut u = vec![0.0; n];
    for i in 0..n {
        u[i] = x[i];
    }
    for _ in 0..4 {
        for i in 0..n {
            u[i] = relax(u[i], k);
        }
    }
    let mut s = 0.0;
    for i in 0..n {
        s += u[i] * u[i] * (i as f64 + 1.0);
    }
    s
}

#[test]
fn calls_in_checkpointed_loops_match_finite_differences() {
    let x = [0.3, -0.6, 0.9];
    let k = 0.8;
    let (dx, dk) = relaxed_grad(&x, k);
    let mut p = x.to_vec();
    p.push(k);
    let want = fd(&|v: &[f64]| relaxed(&v[..3], v[3]), &p);
    let mut got = dx.clone();
    got.push(dk);
    assert_close(&got, &want, 1e-6);
}

/// A body with a gradient for every kind of argument.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct Spring {
    pub k: f64,
    pub rest: f64,
}

/// A slice, a struct, an array by reference, a scalar and an integer constant; `wrt` leaves
/// out `w`, so the pullback has a sweep of its own (the value then runs first).
#[differentiate(wrt(x, s, a))]
fn mixed(x: &[f64], s: &Spring, a: &Array1<f64>, w: f64, n: usize) -> f64 {
    let mut e = 0.0;
    for i in 0..n {
        let d = x[i] - s.rest;
        e += 0.5 * s.k * d * d * w;
    }
    e + a.dot(a) * w
}

/// A function named like its first parameter, generic over a dimension.
#[differentiate]
fn norm<const N: usize>(norm: &[f64; N]) -> f64 {
    let mut s = 0.0;
    for i in 0..N {
        s += norm[i] * norm[i];
    }
    s.sqrt()
}

#[differentiate(wrt(x, s, a, w))]
fn uses_all(x: &[f64], s: &Spring, a: &Array1<f64>, w: f64) -> f64 {
    let p = [x[0], x[1], w];
    let m = mixed(x, s, a, w, 2) + norm::<3>(&p);
    let q = autodiff::ops::sigmoid(w * m) + autodiff::ops::logsumexp(a);
    m * q + autodiff::ops::matmul(a, a)
}

#[test]
fn calls_with_every_kind_of_argument_match_finite_differences() {
    let x = [0.4, -0.7, 1.2];
    let s = Spring { k: 1.7, rest: 0.2 };
    let a = array![0.3, -0.5];
    let w = 0.6;
    let (dx, ds, da, dw) = uses_all_grad(&x, &s, &a, w);
    let pack = |v: &[f64]| -> (Vec<f64>, Spring, Array1<f64>, f64) {
        (
            v[..3].to_vec(),
            Spring {
                k: v[3],
                rest: v[4],
            },
            array![v[5], v[6]],
            v[7],
        )
    };
    let p = [x[0], x[1], x[2], s.k, s.rest, a[0], a[1], w];
    let want = fd(
        &|v: &[f64]| {
            let (x, s, a, w) = pack(v);
            uses_all(&x, &s, &a, w)
        },
        &p,
    );
    let got = [dx[0], dx[1], dx[2], ds.k, ds.rest, da[0], da[1], dw];
    assert_close(&got, &want, 1e-6);
}

/// Generic over the float: the unit adjoint is the callee's float.
#[differentiate(float = F)]
fn bump<F: autodiff::Real>(x: F) -> F {
    x * x * x
}

#[differentiate(float = F)]
fn bumps<F: autodiff::Real>(x: F, y: F) -> F {
    bump(x) * y + bump(y)
}

#[differentiate]
fn narrow(x: f32, y: f32) -> f32 {
    bump(x) / (1.0 + bump(y) * bump(y))
}

#[test]
fn calls_generic_over_the_float_match_the_analytic_gradient() {
    let (dx, dy) = bumps_grad(0.5f64, -1.5f64);
    assert_close(&[dx, dy], &[3.0 * 0.25 * -1.5, 0.125 + 3.0 * 2.25], 1e-12);
    let (x, y) = (0.5f32, 0.8f32);
    let (dx, dy) = narrow_grad(x, y);
    let den = 1.0 + y.powi(6);
    let want = [
        3.0 * x * x / den,
        -x.powi(3) * 6.0 * y.powi(5) / (den * den),
    ];
    assert!((dx - want[0]).abs() < 1e-5 && (dy - want[1]).abs() < 1e-5);
}
