//! Every entry of the rules table, in f64 and f32, against central finite differences on
//! random inputs inside the rule's domain (proptest). The f32 gradient is compared with the
//! f64 finite differences at the same point, with an f32-sized tolerance.
use autodiff::differentiate;
use proptest::prelude::*;

fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64], i: usize) -> f64 {
    let h = 1e-6 * x[i].abs().max(1.0);
    let mut p = x.to_vec();
    p[i] = x[i] + h;
    let up = f(&p);
    p[i] = x[i] - h;
    let down = f(&p);
    (up - down) / (2.0 * h)
}

fn check(
    name: &str,
    x: &[f64],
    g64: &[f64],
    g32: &[f32],
    f: &dyn Fn(&[f64]) -> f64,
) -> Result<(), TestCaseError> {
    for i in 0..x.len() {
        let want = fd(f, x, i);
        let scale = want.abs().max(1.0);
        prop_assert!(
            (g64[i] - want).abs() <= 1e-5 * scale,
            "{name} f64 d/dx{i} at {x:?}: got {}, finite differences {want}",
            g64[i]
        );
        prop_assert!(
            (g32[i] as f64 - want).abs() <= 2e-3 * scale,
            "{name} f32 d/dx{i} at {x:?}: got {}, finite differences {want}",
            g32[i]
        );
    }
    Ok(())
}

/// Away from the jumps of floor, ceil, round, trunc and signum (integers and half-integers).
fn off_jumps(x: f64) -> bool {
    (x - x.round()).abs() > 1e-3 && ((x - x.floor()) - 0.5).abs() > 1e-3
}

macro_rules! rule {
    ($test:ident, [$a:ident in $alo:literal .. $ahi:literal], where $assume:expr, $body:expr) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f64_version($a: f64) -> f64 {
                $body
            }
            #[differentiate]
            fn f32_version($a: f32) -> f32 {
                $body
            }
            proptest! {
                #[test]
                fn against_finite_differences($a in $alo..$ahi) {
                    let $a = ($a as f32) as f64;
                    prop_assume!($assume);
                    let (g64, g32) = (f64_version_grad($a), f32_version_grad($a as f32));
                    check(stringify!($test), &[$a], &[g64], &[g32], &|v: &[f64]| f64_version(v[0]))?;
                }
            }
        }
    };
    ($test:ident, [$a:ident in $alo:literal .. $ahi:literal], $body:expr) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f64_version($a: f64) -> f64 {
                $body
            }
            #[differentiate]
            fn f32_version($a: f32) -> f32 {
                $body
            }
            proptest! {
                #[test]
                fn against_finite_differences($a in $alo..$ahi) {
                    let $a = ($a as f32) as f64;
                    let (g64, g32) = (f64_version_grad($a), f32_version_grad($a as f32));
                    check(stringify!($test), &[$a], &[g64], &[g32], &|v: &[f64]| f64_version(v[0]))?;
                }
            }
        }
    };
    ($test:ident, [$a:ident in $alo:literal .. $ahi:literal, $b:ident in $blo:literal .. $bhi:literal], $assume:expr, $body:expr) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f64_version($a: f64, $b: f64) -> f64 {
                $body
            }
            #[differentiate]
            fn f32_version($a: f32, $b: f32) -> f32 {
                $body
            }
            proptest! {
                #[test]
                fn against_finite_differences($a in $alo..$ahi, $b in $blo..$bhi) {
                    let ($a, $b) = (($a as f32) as f64, ($b as f32) as f64);
                    prop_assume!($assume);
                    let (d0, d1) = f64_version_grad($a, $b);
                    let (e0, e1) = f32_version_grad($a as f32, $b as f32);
                    check(stringify!($test), &[$a, $b], &[d0, d1], &[e0, e1], &|v: &[f64]| f64_version(v[0], v[1]))?;
                }
            }
        }
    };
    ($test:ident, [$a:ident in $alo:literal .. $ahi:literal, $b:ident in $blo:literal .. $bhi:literal, $c:ident in $clo:literal .. $chi:literal], $assume:expr, $body:expr) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f64_version($a: f64, $b: f64, $c: f64) -> f64 {
                $body
            }
            #[differentiate]
            fn f32_version($a: f32, $b: f32, $c: f32) -> f32 {
                $body
            }
            proptest! {
                #[test]
                fn against_finite_differences($a in $alo..$ahi, $b in $blo..$bhi, $c in $clo..$chi) {
                    let ($a, $b, $c) = (($a as f32) as f64, ($b as f32) as f64, ($c as f32) as f64);
                    prop_assume!($assume);
                    let (d0, d1, d2) = f64_version_grad($a, $b, $c);
                    let (e0, e1, e2) = f32_version_grad($a as f32, $b as f32, $c as f32);
                    check(stringify!($test), &[$a, $b, $c], &[d0, d1, d2], &[e0, e1, e2], &|v: &[f64]| f64_version(v[0], v[1], v[2]))?;
                }
            }
        }
    };
}

// Operators.
rule!(add, [a in -5.0..5.0, b in -5.0..5.0], true, a + b);
rule!(sub, [a in -5.0..5.0, b in -5.0..5.0], true, a - b);
rule!(mul, [a in -5.0..5.0, b in -5.0..5.0], true, a * b);
rule!(div, [a in -5.0..5.0, b in 0.5..5.0], true, a / b);
rule!(rem, [a in -5.0..5.0, b in 0.5..3.0], off_jumps(a / b), (a % b) * b);
rule!(rem_negative_divisor, [a in -5.0..5.0, b in -3.0..-0.5], off_jumps(a / b), (a % b) * a);
// A reciprocal written as a quotient (its own adjoint template, no second division).
rule!(div_of_one, [x in -5.0..5.0], where x.abs() > 0.2, 1.0 / x);
rule!(neg, [x in -5.0..5.0], -x);
// One operand read twice or three times by a rule: its contributions are added together first.
rule!(square, [x in -5.0..5.0], x * x);
rule!(mul_add_repeated, [x in -2.0..2.0], x.mul_add(x, x));
rule!(mul_add_first_and_last, [x in -2.0..2.0], x.mul_add(2.0 * x + 1.0, x));
// Powers and roots.
rule!(powi, [x in -3.0..3.0], x.powi(3));
rule!(powi_negative, [x in 0.5..3.0], x.powi(-2));
rule!(powi_zero, [x in -3.0..3.0], x.powi(0) + x);
rule!(powf, [a in 0.2..3.0, b in -2.0..2.0], true, a.powf(b));
rule!(sqrt, [x in 0.1..10.0], x.sqrt());
rule!(cbrt, [x in 0.1..10.0], x.cbrt());
rule!(recip, [x in 0.2..5.0], x.recip());
rule!(to_degrees, [x in -4.0..4.0], x.to_degrees());
rule!(to_radians, [x in -400.0..400.0], x.to_radians() * x);
rule!(hypot, [a in -3.0..3.0, b in -3.0..3.0], a.abs() + b.abs() > 0.1, a.hypot(b));
// Exponentials and logarithms.
rule!(exp, [x in -3.0..3.0], x.exp());
rule!(exp2, [x in -3.0..3.0], x.exp2());
rule!(exp_m1, [x in -3.0..3.0], x.exp_m1());
rule!(ln, [x in 0.1..10.0], x.ln());
rule!(ln_1p, [x in -0.8..5.0], x.ln_1p());
rule!(log, [a in 0.2..10.0, b in 1.5..10.0], true, a.log(b));
rule!(log2, [x in 0.1..10.0], x.log2());
rule!(log10, [x in 0.1..10.0], x.log10());
// Trigonometry.
rule!(sin, [x in -6.0..6.0], x.sin());
rule!(cos, [x in -6.0..6.0], x.cos());
rule!(tan, [x in -1.3..1.3], x.tan());
rule!(asin, [x in -0.9..0.9], x.asin());
rule!(acos, [x in -0.9..0.9], x.acos());
rule!(atan, [x in -5.0..5.0], x.atan());
rule!(atan2, [a in -3.0..3.0, b in -3.0..3.0], a.abs() + b.abs() > 0.1 && !(b < 0.0 && a.abs() < 0.01), a.atan2(b));
// Hyperbolic functions.
rule!(sinh, [x in -3.0..3.0], x.sinh());
rule!(cosh, [x in -3.0..3.0], x.cosh());
rule!(tanh, [x in -3.0..3.0], x.tanh());
rule!(asinh, [x in -5.0..5.0], x.asinh());
rule!(acosh, [x in 1.2..5.0], x.acosh());
rule!(atanh, [x in -0.9..0.9], x.atanh());
// Piecewise functions, away from their kinks.
rule!(abs, [x in -5.0..5.0], where x.abs() > 1e-3, x.abs());
rule!(max, [a in -5.0..5.0, b in -5.0..5.0], (a - b).abs() > 1e-3, a.max(b));
rule!(min, [a in -5.0..5.0, b in -5.0..5.0], (a - b).abs() > 1e-3, a.min(b));
rule!(clamp, [x in -5.0..5.0, lo in -3.0..0.0, hi in 0.5..3.0], (x - lo).abs() > 1e-3 && (x - hi).abs() > 1e-3, x.clamp(lo, hi));
rule!(mul_add, [a in -3.0..3.0, b in -3.0..3.0, c in -3.0..3.0], true, a.mul_add(b, c));
rule!(fract, [x in -5.0..5.0], where off_jumps(x), x.fract() * x);
rule!(copysign, [a in -3.0..3.0, b in -3.0..3.0], a.abs() > 1e-3 && b.abs() > 1e-3, a.copysign(b) * b);
rule!(rem_euclid, [a in -5.0..5.0, b in 0.5..3.0], off_jumps(a / b), a.rem_euclid(b) * b);
rule!(rem_euclid_negative_divisor, [a in -5.0..5.0, b in -3.0..-0.5], off_jumps(a / b), a.rem_euclid(b) * a);
// `sin_cos` taken apart by a `let`: the sine and the cosine of one angle.
rule!(sin_cos, [x in -6.0..6.0], { let (s, c) = (x * 0.7).sin_cos(); s * c + s });
// Piecewise constant: zero derivative (plus `x` so there is something to check).
rule!(signum, [x in -5.0..5.0], where off_jumps(x), x.signum() + x);
rule!(floor, [x in -5.0..5.0], where off_jumps(x), x.floor() * 2.0 + x);
rule!(ceil, [x in -5.0..5.0], where off_jumps(x), x.ceil() + x);
rule!(round, [x in -5.0..5.0], where off_jumps(x), x.round() + x);
rule!(trunc, [x in -5.0..5.0], where off_jumps(x), x.trunc() + x);
