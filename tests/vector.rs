//! Vector-valued functions (returning an owned array or `Vec`): `f_pullback` takes the
//! output's adjoint, `f_jacobian` gives one gradient per output element. Against central
//! finite differences and analytic Jacobians.
#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;
use autodiff::ndarray::{array, Array1, Array2};

mod common;
use common::{assert_close, fd};

/// The residuals of a damped spring's position samples: one per sample, a `Vec` built by
/// index.
#[differentiate(wrt(k, c))]
fn residuals(k: f64, c: f64, t: &[f64], observed: &[f64]) -> Vec<f64> {
    let mut r = vec![0.0; t.len()];
    for i in 0..t.len() {
        r[i] = (-c * t[i]).exp() * (k * t[i]).cos() - observed[i];
    }
    r
}

/// A nonlinear map of the plane, as arrays: `(x0 x1, sin x0 + x1^2, exp(x1))`.
#[differentiate]
fn map(x: &Array1<f64>) -> Array1<f64> {
    let a = x[0] * x[1];
    let b = x[0].sin() + x[1] * x[1];
    let c = x[1].exp();
    let mut out = Array1::zeros(3);
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out
}

/// Array operations end to end: `tanh(W x + b)`.
#[differentiate(wrt(w, x))]
fn layer(w: &Array2<f64>, b: &Array1<f64>, x: &Array1<f64>) -> Array1<f64> {
    (w.dot(x) + b).mapv(f64::tanh)
}

#[test]
fn jacobians_of_vector_valued_functions_match_finite_differences() {
    let t = [0.0, 0.5, 1.0, 1.5];
    let observed = [1.0, 0.6, 0.1, -0.3];
    let (k, c) = (2.0, 0.3);
    let jac = residuals_jacobian(k, c, &t, &observed);
    assert_eq!(jac.len(), 4);
    for (i, (dk, dc)) in jac.iter().enumerate() {
        let want_k = -(-c * t[i]).exp() * (k * t[i]).sin() * t[i];
        let want_c = -t[i] * (-c * t[i]).exp() * (k * t[i]).cos();
        assert_close(&[*dk, *dc], &[want_k, want_c], 1e-12);
    }
    // The pullback: the Jacobian's rows weighted by the output's adjoint.
    let d = [1.0, -2.0, 0.5, 3.0];
    let (dk, dc, _, _) = residuals_pullback(k, c, &t, &observed, d.to_vec());
    let wk: f64 = jac.iter().zip(&d).map(|(g, w)| g.0 * w).sum();
    let wc: f64 = jac.iter().zip(&d).map(|(g, w)| g.1 * w).sum();
    assert_close(&[dk, dc], &[wk, wc], 1e-12);

    let x: Array1<f64> = array![0.7, -0.4];
    let jac = map_jacobian(&x);
    let want = [[x[1], x[0]], [x[0].cos(), 2.0 * x[1]], [0.0, x[1].exp()]];
    for i in 0..3 {
        assert_close(jac[i].as_slice().unwrap(), &want[i], 1e-12);
    }

    let w = array![[0.2, -0.4], [0.7, 0.1], [-0.3, 0.5]];
    let b = array![0.1, -0.2, 0.05];
    let jac = layer_jacobian(&w, &b, &x);
    for i in 0..3 {
        let f = fd(
            &|v| layer(&w, &b, &Array1::from(v.to_vec()))[i],
            x.as_slice().unwrap(),
        );
        assert_close(jac[i].1.as_slice().unwrap(), &f, 1e-6);
        let flat: Vec<f64> = w.iter().copied().collect();
        let f = fd(
            &|v| layer(&Array2::from_shape_vec((3, 2), v.to_vec()).unwrap(), &b, &x)[i],
            &flat,
        );
        assert_close(&jac[i].0.iter().copied().collect::<Vec<_>>(), &f, 1e-6);
    }
}

/// A scalar loss through a vector-valued function: the sum of squared residuals.
#[differentiate(wrt(k, c))]
fn misfit(k: f64, c: f64, t: &[f64], observed: &[f64]) -> f64 {
    let r = residuals(k, c, t, observed);
    let mut s = 0.0;
    for i in 0..r.len() {
        s += r[i] * r[i];
    }
    s
}

/// The same through an array-valued one.
#[differentiate]
fn layer_energy(w: &Array2<f64>, b: &Array1<f64>, x: &Array1<f64>) -> f64 {
    let h = layer(w, b, x);
    (&h * &h).sum() + h[0]
}

#[test]
fn calls_of_vector_valued_functions_match_finite_differences() {
    let t = [0.0, 0.5, 1.0, 1.5];
    let observed = [1.0, 0.6, 0.1, -0.3];
    let (gk, gc) = misfit_grad(2.0, 0.3, &t, &observed);
    // `2 J^T r`: the Jacobian's rows weighted by twice the residuals.
    let r = residuals(2.0, 0.3, &t, &observed);
    let jac = residuals_jacobian(2.0, 0.3, &t, &observed);
    let wk: f64 = jac.iter().zip(&r).map(|(g, r)| 2.0 * r * g.0).sum();
    let wc: f64 = jac.iter().zip(&r).map(|(g, r)| 2.0 * r * g.1).sum();
    assert_close(&[gk, gc], &[wk, wc], 1e-12);
    let f = fd(&|v| misfit(v[0], v[1], &t, &observed), &[2.0, 0.3]);
    assert_close(&[gk, gc], &f, 1e-6);

    let w = array![[0.2, -0.4], [0.7, 0.1], [-0.3, 0.5]];
    let b: Array1<f64> = array![0.1, -0.2, 0.05];
    let x: Array1<f64> = array![0.7, -0.4];
    let (_, gb, gx) = layer_energy_grad(&w, &b, &x);
    let f = fd(
        &|v| layer_energy(&w, &Array1::from(v.to_vec()), &x),
        b.as_slice().unwrap(),
    );
    assert_close(gb.as_slice().unwrap(), &f, 1e-6);
    let f = fd(
        &|v| layer_energy(&w, &b, &Array1::from(v.to_vec())),
        x.as_slice().unwrap(),
    );
    assert_close(gx.as_slice().unwrap(), &f, 1e-6);
}

/// A vector-valued function with a hand-written pullback (a vector-Jacobian product).
#[differentiate(pullback = squares_vjp)]
fn squares(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v * v).collect()
}

fn squares_vjp(x: &[f64], d_out: Vec<f64>) -> Vec<f64> {
    x.iter().zip(&d_out).map(|(x, d)| 2.0 * x * d).collect()
}

/// Calls it from differentiated code.
#[differentiate]
fn weighted_squares(x: &[f64]) -> f64 {
    let s = squares(x);
    3.0 * s[0] + s[1] * s[2]
}

#[test]
fn hand_written_vector_pullbacks_give_jacobians_and_gradients() {
    let x = [0.5, -1.5, 2.0];
    let jac = squares_jacobian(&x);
    for (i, row) in jac.iter().enumerate() {
        let want: Vec<f64> = (0..3)
            .map(|j| if i == j { 2.0 * x[i] } else { 0.0 })
            .collect();
        assert_close(row, &want, 1e-15);
    }
    let g = weighted_squares_grad(&x);
    let want = [
        6.0 * x[0],
        2.0 * x[1] * x[2] * x[2],
        2.0 * x[2] * x[1] * x[1],
    ];
    assert_close(&g, &want, 1e-12);
    assert_close(&g, &fd(&|v| weighted_squares(v), &x), 1e-6);
}

/// A function returning a tuple of floats: its Jacobian (one row per element, each a tuple of
/// the parameters' gradients) and pullback (taking the tuple's adjoint).
#[differentiate]
pub fn polar(x: f64, y: f64) -> (f64, f64) {
    ((x * x + y * y).sqrt(), y.atan2(x))
}

/// Three outputs, an early `return` of a tuple, a tail through an `if` and a call forwarded.
#[differentiate]
pub fn moments(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    if var > 100.0 {
        return (mean, var, 0.0);
    }
    (mean, var, var.sqrt())
}

#[differentiate]
pub fn polar_or_swapped(x: f64, y: f64) -> (f64, f64) {
    if x > 0.0 {
        polar(x, y)
    } else {
        (y, x)
    }
}

/// Differentiated code taking the tuples apart (`let (r, t) = polar(x, y);`).
#[differentiate]
pub fn through_polar(x: f64, y: f64) -> f64 {
    let (r, t) = polar(x, y);
    let (_, t2) = polar(r, t);
    r * t + t2
}

#[test]
fn functions_returning_tuples_have_jacobians_and_pullbacks() {
    let (x, y) = (3.0, 4.0);
    let r2: f64 = x * x + y * y;
    let r = r2.sqrt();
    let jac = polar_jacobian(x, y);
    assert_close(&[jac[0].0, jac[0].1], &[x / r, y / r], 1e-12);
    assert_close(&[jac[1].0, jac[1].1], &[-y / r2, x / r2], 1e-12);
    let (px, py) = polar_pullback(x, y, (2.0, -1.0));
    assert_close(
        &[px, py],
        &[2.0 * x / r + y / r2, 2.0 * y / r - x / r2],
        1e-12,
    );
    // Forwarded through an `if`; the other arm swaps.
    let jac = polar_or_swapped_jacobian(x, y);
    assert_close(&[jac[1].0, jac[1].1], &[-y / r2, x / r2], 1e-12);
    let jac = polar_or_swapped_jacobian(-1.0, 2.0);
    assert_close(
        &[jac[0].0, jac[0].1, jac[1].0, jac[1].1],
        &[0.0, 1.0, 1.0, 0.0],
        1e-12,
    );

    let v = [1.0, 2.0, 4.0];
    let jac = moments_jacobian(&v);
    let mean = 7.0 / 3.0;
    let var: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 3.0;
    for (i, vi) in v.iter().enumerate() {
        assert!((jac[0][i] - 1.0 / 3.0).abs() < 1e-12);
        let dvar = 2.0 * (vi - mean) / 3.0;
        assert!((jac[1][i] - dvar).abs() < 1e-12);
        assert!((jac[2][i] - dvar / (2.0 * var.sqrt())).abs() < 1e-12);
    }

    let (gx, gy) = through_polar_grad(0.7, 1.3);
    let want = fd(&|w| through_polar(w[0], w[1]), &[0.7, 1.3]);
    assert_close(&[gx, gy], &want, 1e-7);
}
