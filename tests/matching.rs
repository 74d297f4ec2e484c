//! `match`, `if let` and `let .. else` in differentiated code: on configuration enums (with
//! and without parameters), integers, tuples and comparisons, with or-patterns, ranges,
//! constants, guards, bindings, nesting, values, statements and early returns, against central
//! finite differences.
#![allow(
    clippy::needless_range_loop,
    clippy::assign_op_pattern,
    clippy::redundant_pattern_matching
)]
use autodiff::differentiate;

mod common;
use common::{assert_close, fd};

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

/// A pair potential picked by an enum whose variants carry their parameters (constants).
#[derive(Clone, Copy, Debug)]
pub enum Potential {
    LennardJones { epsilon: f64, sigma: f64 },
    Harmonic(f64, f64),
    Soft { strength: f64 },
    Free,
}

#[differentiate]
pub fn pair_energy(pos: &[f64], potential: &Potential) -> f64 {
    let n = pos.len();
    let mut e = 0.0;
    for a in 0..n {
        for b in (a + 1)..n {
            let r = (pos[a] - pos[b]).abs() + 0.5;
            e += match potential {
                Potential::LennardJones { epsilon, sigma } => {
                    let s6 = (sigma / r).powi(6);
                    4.0 * epsilon * (s6 * s6 - s6)
                }
                Potential::Harmonic(k, r0) => 0.5 * k * (r - r0) * (r - r0),
                Potential::Soft { strength: s } if *s > 0.0 => s / r,
                Potential::Soft { .. } | Potential::Free => 0.0,
            };
        }
    }
    e
}

#[test]
fn bindings_of_constant_parameters() {
    let pos = [0.1, 1.3, 2.9, 4.2];
    for p in [
        Potential::LennardJones {
            epsilon: 1.5,
            sigma: 1.1,
        },
        Potential::Harmonic(2.0, 1.2),
        Potential::Soft { strength: 0.7 },
        Potential::Soft { strength: -0.7 },
        Potential::Free,
    ] {
        let (value, g) = pair_energy_value_and_grad(&pos, &p);
        assert_eq!(value, pair_energy(&pos, &p), "{p:?}");
        assert_close(&g, &fd(&|x| pair_energy(x, &p), &pos), 1e-6);
    }
    // Independent: two particles 1 apart (r = 1.5) in a harmonic well of rest length 1.2 and
    // stiffness 2 pull together with force 2 * 0.3.
    let g = pair_energy_grad(&[0.0, 1.0], &Potential::Harmonic(2.0, 1.2));
    assert!(
        (g[0] + 0.6).abs() < 1e-14 && (g[1] - 0.6).abs() < 1e-14,
        "{g:?}"
    );
}

/// Bindings of integers: an `Option`, a guard that reads the binding, `@` with a range in a
/// tuple, a `mut` binding, a binding that shadows a local the last arm reads, and an
/// or-pattern whose alternatives bind the same name.
#[differentiate]
pub fn scheduled(x: f64, y: f64, steps: Option<usize>, n: usize) -> f64 {
    let k = 10usize;
    let w = match steps {
        Some(k) if k > 2 => k as f64 * x,
        Some(k) => x / (k as f64 + 1.0),
        None => k as f64 * y,
    };
    let v = match (n, x > y) {
        (m @ 1..=4, true) => x * m as f64,
        (mut m, _) => {
            m += 1;
            y / m as f64
        }
    };
    // An or-pattern whose alternatives bind the same name.
    let u = match (x > 0.5, n % 3) {
        (false, j) | (_, j @ 1) => (j + 1) as f64 * y,
        _ => x,
    };
    w * v + w.sin() + u
}

#[test]
fn bindings_of_integers_with_guards_and_shadowing() {
    for steps in [None, Some(0), Some(2), Some(5)] {
        for n in [0, 2, 4, 7] {
            for (x, y) in [(0.9, 0.3), (0.2, 1.4)] {
                let (dx, dy) = scheduled_grad(x, y, steps, n);
                let want = fd(&|v| scheduled(v[0], v[1], steps, n), &[x, y]);
                assert_close(&[dx, dy], &want, 1e-7);
            }
        }
    }
    // Independent: `None` reads the local `k = 10`, not a binding: w = 10 y; n = 0 gives
    // v = y / 1 and u = x, so the value is 10 y^2 + sin(10 y) + x, d/dx = 1 and
    // d/dy = 20 y + 10 cos(10 y).
    let (dx, dy) = scheduled_grad(0.9, 0.3, None, 0);
    assert_eq!(dx, 1.0);
    assert!(
        (dy - (20.0 * 0.3 + 10.0 * (3.0f64).cos())).abs() < 1e-13,
        "{dy}"
    );
}

const LIMIT: usize = 4;

/// `if let` (with an `else if let` chain, a range binding, a constant) and `let .. else` (on a tuple holding
/// a comparison of a differentiated value, and with a type on the pattern).
#[differentiate]
pub fn optional(x: f64, y: f64, scale: Option<f64>, steps: Option<usize>) -> f64 {
    let mut v = x * y;
    if let Some(s) = scale {
        v = v * s;
    }
    // A constant in a pattern, not a binding.
    if let Some(LIMIT) = steps {
        v = v * 3.0;
    }
    let w = if let Some(k @ 1..=5) = steps {
        v * k as f64
    } else if let Some(_) = steps {
        v.sin()
    } else {
        v + x
    };
    let (Some(n), true) = (steps, x > 0.0) else {
        return w * 2.0;
    };
    let Some(s): Option<f64> = scale else {
        return w - y * n as f64;
    };
    w + n as f64 * y * s
}

#[test]
fn if_let_and_let_else() {
    for scale in [None, Some(0.5), Some(-1.5)] {
        for steps in [None, Some(0), Some(3), Some(LIMIT), Some(9)] {
            for (x, y) in [(0.8, 0.3), (-0.6, 1.2)] {
                let (value, (dx, dy)) = optional_value_and_grad(x, y, scale, steps);
                assert_eq!(value, optional(x, y, scale, steps));
                let want = fd(&|v| optional(v[0], v[1], scale, steps), &[x, y]);
                assert_close(&[dx, dy], &want, 1e-7);
            }
        }
    }
    // Independent: no scale, no steps: w = xy + x, returned doubled: (2y + 2, 2x).
    let (dx, dy) = optional_grad(0.8, 0.3, None, None);
    assert!((dx - 2.6).abs() < 1e-15 && (dy - 1.6).abs() < 1e-15);
}

/// `while let`: a Newton iteration that stops when the step count runs out, reading the next
/// budget through an `Option`.
#[differentiate]
fn newton_sqrt(a: f64, steps: usize) -> f64 {
    let mut x = a.max(1.0);
    let mut left = Some(steps);
    while let Some(n) = left {
        x = 0.5 * (x + a / x);
        left = if n > 1 { Some(n - 1) } else { None };
    }
    x
}

#[test]
fn while_let_loops_match_the_analytic_gradient() {
    for a in [0.5, 2.0, 9.0] {
        let g = newton_sqrt_grad(a, 30);
        assert_close(&[g], &[0.5 / a.sqrt()], 1e-9);
        assert_close(&[g], &fd(&|v| newton_sqrt(v[0], 30), &[a]), 1e-6);
    }
    // Two steps from x = a.max(1): the derivative of the iterate itself.
    let g = newton_sqrt_grad(4.0, 2);
    let f = fd(&|v| newton_sqrt(v[0], 2), &[4.0]);
    assert_close(&[g], &f, 1e-6);
}

/// Patterns binding a differentiated value whole: the scrutinee (`v if v < 0.0`), elements of
/// a tuple scrutinee (`(p, q) if p > q`), in `if let` and `let .. else` too.
#[differentiate]
fn whole_bindings(x: f64, y: f64, k: usize) -> f64 {
    let a = match x {
        v if v < 0.0 => -v,
        v => v * v,
    };
    let b = match (x, y) {
        (p, q) if p > q => p - q,
        (p, q) => q * p,
    };
    let c = if let (v, 0) = (y, k % 2) { v * 3.0 } else { y };
    let (w, 1) = (x * y, k) else {
        return a + b + c;
    };
    a + b + c + w.sin()
}

#[test]
fn whole_bindings_of_differentiated_values_match_finite_differences() {
    for (x, y) in [(-1.5, 0.5), (2.0, 1.0), (0.5, 3.0)] {
        for k in [0, 1, 2] {
            let (gx, gy, ()) = whole_bindings_pullback(x, y, k, 1.0);
            let want = fd(&|v| whole_bindings(v[0], v[1], k), &[x, y]);
            assert_close(&[gx, gy], &want, 1e-7);
        }
    }
}
