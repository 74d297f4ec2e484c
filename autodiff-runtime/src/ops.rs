//! Primitives that plain Rust lacks, each written next to its adjoint.
//!
//! Every `op` here has an `op_pullback` beside it that follows the custom-derivative convention
//! of `#[differentiate]`: `fn op(x) -> y` has `fn op_pullback(x, d_out) -> dx`. A differentiated
//! body may therefore call `autodiff::ops::op(..)` like any annotated function, and the same
//! functions run outside differentiated code too.

use crate::Real;

/// `max(x, 0)`.
#[inline]
pub fn relu<F: Real>(x: F) -> F {
    if x > F::from_f64(0.0) {
        x
    } else {
        F::from_f64(0.0)
    }
}

/// Pullback of [`relu`]: `d_out` where `x > 0`, zero elsewhere (zero at the kink, as JAX).
#[inline]
pub fn relu_pullback<F: Real>(x: F, d_out: F) -> F {
    if x > F::from_f64(0.0) {
        d_out
    } else {
        F::from_f64(0.0) * d_out
    }
}

/// The logistic function `1 / (1 + e^-x)`, computed without overflow for large `|x|`.
#[inline]
pub fn sigmoid<F: Real>(x: F) -> F {
    let v = x.to_f64();
    F::from_f64(if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    })
}

/// Pullback of [`sigmoid`]: `d_out * s * (1 - s)`.
#[inline]
pub fn sigmoid_pullback<F: Real>(x: F, d_out: F) -> F {
    let s = sigmoid(x);
    d_out * s * (F::from_f64(1.0) - s)
}

/// `ln(1 + e^x)`, computed without overflow for large `|x|`.
#[inline]
pub fn softplus<F: Real>(x: F) -> F {
    let v = x.to_f64();
    F::from_f64(v.max(0.0) + (-v.abs()).exp().ln_1p())
}

/// Pullback of [`softplus`]: `d_out * sigmoid(x)`.
#[inline]
pub fn softplus_pullback<F: Real>(x: F, d_out: F) -> F {
    d_out * sigmoid(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn central(f: impl Fn(f64) -> f64, x: f64) -> f64 {
        let h = 1e-6;
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn pullbacks_match_finite_differences() {
        for &x in &[-30.0, -2.5, -0.3, 0.4, 1.7, 30.0] {
            assert!((relu_pullback(x, 1.0) - central(relu, x)).abs() < 1e-6);
            assert!((sigmoid_pullback(x, 1.0) - central(sigmoid, x)).abs() < 1e-6);
            assert!((softplus_pullback(x, 1.0) - central(softplus, x)).abs() < 1e-6);
        }
        assert_eq!(relu_pullback(0.0, 1.0), 0.0);
        assert_eq!(sigmoid(0.0f32), 0.5);
        assert!((softplus(1000.0f64) - 1000.0).abs() < 1e-9);
        assert!(softplus(-1000.0f64) >= 0.0);
    }
}
