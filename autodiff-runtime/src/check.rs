//! A finite-difference gradient checker, for users' own tests (like PyTorch's `gradcheck`).

/// Central finite differences of `f` at `x`: one partial derivative per coordinate.
///
/// The step for coordinate `i` is `h * max(1, |x[i]|)`.
pub fn central_difference(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            let step = h * x[i].abs().max(1.0);
            probe[i] = x[i] + step;
            let up = f(&probe);
            probe[i] = x[i] - step;
            let down = f(&probe);
            probe[i] = x[i];
            (up - down) / (2.0 * step)
        })
        .collect()
}

/// Checks `grad` against central finite differences of `f` at `x`.
///
/// Passes when every coordinate satisfies `|grad - fd| <= tol * max(1, |fd|)`; otherwise the
/// error names the first coordinate that does not.
pub fn check_gradient(
    f: impl Fn(&[f64]) -> f64,
    x: &[f64],
    grad: &[f64],
    tol: f64,
) -> Result<(), String> {
    if grad.len() != x.len() {
        return Err(format!(
            "check_gradient: the gradient has {} entries but the point has {}",
            grad.len(),
            x.len()
        ));
    }
    let fd = central_difference(f, x, 1e-6);
    for (i, (&g, &d)) in grad.iter().zip(&fd).enumerate() {
        let within = (g - d).abs() <= tol * d.abs().max(1.0);
        if !within {
            return Err(format!(
                "check_gradient: coordinate {i}: gradient {g} but finite differences give {d} (tolerance {tol})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_right_gradient_and_rejects_a_wrong_one() {
        let f = |x: &[f64]| x[0] * x[0] + 3.0 * x[1];
        assert!(check_gradient(f, &[2.0, 1.0], &[4.0, 3.0], 1e-6).is_ok());
        let err = check_gradient(f, &[2.0, 1.0], &[4.0, 2.0], 1e-6).unwrap_err();
        assert!(err.contains("coordinate 1"), "{err}");
        assert!(check_gradient(f, &[2.0, 1.0], &[4.0], 1e-6).is_err());
    }
}
