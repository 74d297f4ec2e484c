//! The seed's two examples (PyTorch's autograd tutorial), for latency, with their gradients
//! by hand.
use autodiff::differentiate;
use autodiff::ndarray::Array2;

/// `y = (x + 2)^2 + 3`.
#[differentiate]
pub fn square_plus(x: f64) -> f64 {
    (x + 2.0).powi(2) + 3.0
}

pub fn square_plus_hand(x: f64) -> f64 {
    2.0 * (x + 2.0)
}

/// `J = sum(y - x @ W)`.
#[differentiate]
pub fn j(x: &Array2<f64>, y: &Array2<f64>, w: &Array2<f64>) -> f64 {
    (y - &x.dot(w)).sum()
}

/// Its gradient by hand: `-1 W^T` for `x`, ones for `y`, `-x^T 1` for `W`.
pub fn j_hand(
    x: &Array2<f64>,
    y: &Array2<f64>,
    w: &Array2<f64>,
) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let ones = Array2::<f64>::ones(y.raw_dim());
    (-ones.dot(&w.t()), ones.clone(), -x.t().dot(&ones))
}
