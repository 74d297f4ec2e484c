//! A loop over a matrix's rows (per-sample code): `sum_i sum_j tanh(x_ij w_j)`, with its
//! gradient by hand. The reverse of `x.row(i)` adds into one row of `x`'s adjoint, so the
//! generated gradient's cost grows with the rows, like the primal's.
use autodiff::differentiate;
use autodiff::ndarray::{Array1, Array2};

#[differentiate]
pub fn per_row(x: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let mut s = 0.0;
    for i in 0..x.nrows() {
        s += (&x.row(i) * w).mapv(f64::tanh).sum();
    }
    s
}

/// Its gradient by hand: `d x_ij = (1 - t_ij^2) w_j`, `d w_j = sum_i (1 - t_ij^2) x_ij`.
pub fn per_row_hand(x: &Array2<f64>, w: &Array1<f64>) -> (Array2<f64>, Array1<f64>) {
    let mut gx = Array2::zeros(x.raw_dim());
    let mut gw = Array1::zeros(w.raw_dim());
    for ((i, j), &v) in x.indexed_iter() {
        let t = (v * w[j]).tanh();
        let s = 1.0 - t * t;
        gx[[i, j]] = s * w[j];
        gw[j] += s * v;
    }
    (gx, gw)
}

/// A deterministic `n x d` problem.
pub fn problem(n: usize, d: usize) -> (Array2<f64>, Array1<f64>) {
    let x = Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.5);
    let w = Array1::from_shape_fn(d, |j| j as f64 / d as f64 - 0.4);
    (x, w)
}
