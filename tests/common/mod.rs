//! Helpers the integration tests share: central finite differences and a relative comparison.
#![allow(dead_code)]

/// Central differences of `f` at `x`, one entry per coordinate.
pub fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    autodiff::check::central_difference(f, x, 1e-6)
}

/// `got` equals `want` entry by entry, to `tol` relative (absolute below 1).
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "entry {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
        );
    }
}
