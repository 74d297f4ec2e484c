//! `match` in differentiated code: on configuration enums, integers, tuples and comparisons,
//! with or-patterns, ranges, constants, guards, nesting, values, statements and early returns,
//! against central finite differences.
#![allow(clippy::needless_range_loop, clippy::assign_op_pattern)]
use autodiff::differentiate;

fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    autodiff::check::central_difference(f, x, 1e-6)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "entry {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

/// A loss picked by a configuration enum (a constant parameter).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    Squared,
    LogCosh,
    SmoothL1,
}

#[differentiate]
pub fn loss(pred: &[f64], target: &[f64], kind: Loss) -> f64 {
    let mut s = 0.0;
    for i in 0..pred.len() {
        let r = pred[i] - target[i];
        s += match kind {
            Loss::Squared => r * r,
            Loss::LogCosh => r.cosh().ln(),
            Loss::SmoothL1 => {
                if r.abs() < 1.0 {
                    0.5 * r * r
                } else {
                    r.abs() - 0.5
                }
            }
        };
    }
    s / pred.len() as f64
}

#[test]
fn a_configuration_enum_picks_the_formula() {
    let pred = [0.3, -1.7, 2.4, 0.05];
    let target = [0.1, 0.2, 0.3, -0.4];
    for kind in [Loss::Squared, Loss::LogCosh, Loss::SmoothL1] {
        let (value, (dp, dt)) = loss_value_and_grad(&pred, &target, kind);
        assert_eq!(value, loss(&pred, &target, kind), "{kind:?}");
        let want_p = fd(&|p| loss(p, &target, kind), &pred);
        let want_t = fd(&|t| loss(&pred, t, kind), &target);
        assert_close(&dp, &want_p, 1e-7);
        assert_close(&dt, &want_t, 1e-7);
    }
    // Independent: the squared loss's gradient is 2 r / n.
    let (dp, _) = loss_grad(&pred, &target, Loss::Squared);
    for i in 0..4 {
        assert!((dp[i] - 2.0 * (pred[i] - target[i]) / 4.0).abs() < 1e-15);
    }
}

/// Statements in a loop on a computed integer (or-patterns, a guard that compares a
/// differentiated value, a block arm), then a `match` with a range and an early `return`.
#[differentiate]
pub fn stepped(x: f64, n: usize) -> f64 {
    let mut y = x;
    for k in 0..n {
        match k % 4 {
            0 => y = y * 1.1,
            1 | 2 if y > 0.5 => y += y.sin(),
            1 | 2 => y -= 0.25 * y * y,
            _ => {
                y = y.tanh() * 2.0;
            }
        }
    }
    match n {
        0 => return x * 3.0,
        1..=3 => {}
        _ => y = y * 0.5,
    }
    y
}

#[test]
fn statement_matches_in_loops_with_guards_ranges_and_returns() {
    for n in [0, 1, 3, 4, 9] {
        for x in [0.2, 0.45, 0.8, 1.3] {
            let g = stepped_grad(x, n);
            let want = fd(&|v| stepped(v[0], n), &[x]);
            assert_close(&[g], &want, 1e-7);
            assert_eq!(stepped_value_and_grad(x, n).0, stepped(x, n));
        }
    }
    // Independent: no steps returns 3x.
    assert_eq!(stepped_grad(0.7, 0), 3.0);
}

const WIDE: usize = 3;

/// A `match` as a value: a constant pattern, tuple scrutinees (one holding a comparison of a
/// differentiated value), a nested `match`, and one on a comparison of differentiated values.
#[differentiate]
pub fn picked(x: f64, y: f64, m: usize, j: usize) -> f64 {
    let w = match m {
        WIDE => x * y,
        0 => x,
        _ => y.exp(),
    };
    let v = match (m, j) {
        (0, _) => w + y,
        (_, 0) => match j + m {
            1 | 2 => w * w,
            _ => w - x,
        },
        _ => w * 3.0,
    };
    let larger = match x > y {
        true => x,
        false => y,
    };
    let signed = match (j, x > 0.0) {
        (0, true) => x,
        (_, false) => -y,
        _ => 0.5,
    };
    v * larger * signed
}

#[test]
fn value_matches_on_constants_tuples_and_comparisons() {
    for m in [0, 1, 2, 3, 4] {
        for j in [0, 1, 2] {
            for (x, y) in [(0.7, -0.4), (-0.3, 1.1)] {
                let (dx, dy) = picked_grad(x, y, m, j);
                let want = fd(&|v| picked(v[0], v[1], m, j), &[x, y]);
                assert_close(&[dx, dy], &want, 1e-7);
            }
        }
    }
    // Independent: m = 0, j = 1, x > y > 0 gives (x + y) * x * 0.5, whose gradient is
    // ((2x + y) / 2, x / 2).
    let (dx, dy) = picked_grad(0.7, 0.4, 0, 1);
    assert!((dx - (2.0 * 0.7 + 0.4) / 2.0).abs() < 1e-15 && (dy - 0.35).abs() < 1e-15);
}

/// A scrutinee that is a call (computed once) and an element of a constant table.
fn phase(k: usize) -> u8 {
    (k * 7 % 3) as u8
}

#[differentiate]
pub fn tabled(x: &[f64], table: &[u8]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let t = match table[i] {
            0 => x[i],
            1 => x[i] * x[i],
            _ => x[i].sin(),
        };
        s += match phase(i) {
            0 => t,
            _ => 2.0 * t,
        };
    }
    s
}

#[test]
fn scrutinees_that_are_calls_and_table_elements() {
    let x = [0.3, -0.8, 1.2, 0.5, 2.0];
    let table = [2u8, 0, 1, 1, 2];
    let g = tabled_grad(&x, &table);
    let want = fd(&|v| tabled(v, &table), &x);
    assert_close(&g, &want, 1e-7);
}
