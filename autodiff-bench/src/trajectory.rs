//! A time-stepping loop that keeps its trajectory row by row and reads its last state back:
//! `s_0 = x`, `s_t = tanh(W s_{t-1})`, value `sum_t |s_t|^2`, with its gradient by hand. The
//! generated gradient copies only the row each step reads (not the whole trajectory), so its
//! cost grows with the steps, like the primal's.
use autodiff::differentiate;
use autodiff::ndarray::{Array1, Array2, Axis};

#[differentiate]
pub fn trajectory(x: &Array1<f64>, w: &Array2<f64>, steps: usize) -> f64 {
    let mut states = Array2::<f64>::zeros((steps + 1, x.len()));
    states.row_mut(0).assign(x);
    for t in 1..steps + 1 {
        let next = w.dot(&states.row(t - 1)).mapv(f64::tanh);
        states.row_mut(t).assign(&next);
    }
    (&states * &states).sum()
}

/// Its gradient by hand: the states forward, then `g = 2 s_t + W^T ((1 - s_t^2) g_t)` backward,
/// `d W += ((1 - s_t^2) g_t) s_{t-1}^T`.
pub fn trajectory_hand(
    x: &Array1<f64>,
    w: &Array2<f64>,
    steps: usize,
) -> (Array1<f64>, Array2<f64>) {
    let mut states = Array2::<f64>::zeros((steps + 1, x.len()));
    states.row_mut(0).assign(x);
    for t in 1..steps + 1 {
        let next = w.dot(&states.row(t - 1)).mapv(f64::tanh);
        states.row_mut(t).assign(&next);
    }
    let mut dw = Array2::<f64>::zeros(w.raw_dim());
    let mut g = states.row(steps).mapv(|s| 2.0 * s);
    for t in (1..steps + 1).rev() {
        let s = states.row(t);
        let pre = &g * &s.mapv(|v| 1.0 - v * v);
        let prev = states.row(t - 1);
        dw += &pre
            .view()
            .insert_axis(Axis(1))
            .dot(&prev.insert_axis(Axis(0)));
        g = w.t().dot(&pre) + prev.mapv(|v| 2.0 * v);
    }
    (g, dw)
}

/// A deterministic problem: `n` states, weights small enough that the states stay moderate.
pub fn problem(n: usize) -> (Array1<f64>, Array2<f64>) {
    let x = Array1::from_shape_fn(n, |i| (i as f64 * 0.37).sin());
    let w = Array2::from_shape_fn((n, n), |(i, j)| {
        ((i * 7 + j * 3) % 11) as f64 / (11.0 * n as f64) * 8.0 - 0.3 / n as f64
    });
    (x, w)
}
