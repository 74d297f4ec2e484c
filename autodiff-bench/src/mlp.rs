//! The MLP loss of the benchmarks and tests: the annotated function, and the same loss with a
//! backprop written by hand (the floor the generated gradient must reach).
use autodiff::ndarray::{Array1, Array2, Axis};
use autodiff::ops;
use autodiff::{differentiate, Differentiable};

/// Mean softmax cross-entropy of a one-hidden-layer tanh network.
#[differentiate(wrt(w1, b1, w2, b2))]
pub fn loss(
    x: &Array2<f64>,
    y: &Array2<f64>,
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    w2: &Array2<f64>,
    b2: &Array1<f64>,
) -> f64 {
    let h = (x.dot(w1) + b1).tanh();
    let logits = h.dot(w2) + b2;
    let log_p = ops::log_softmax(&logits);
    -(&log_p * y).sum() / (x.nrows() as f64)
}

/// The same network as a struct deriving `Differentiable`, its loss a method differentiated
/// with respect to `self`: the gradient is an `Mlp`. Measured beside the free function, to show
/// the struct costs nothing.
#[derive(Clone, Debug, Differentiable)]
pub struct Mlp {
    pub w1: Array2<f64>,
    pub b1: Array1<f64>,
    pub w2: Array2<f64>,
    pub b2: Array1<f64>,
}

impl Mlp {
    /// [`loss`] with the weights read from `self`.
    #[differentiate(wrt(self))]
    pub fn loss(&self, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
        let h = (x.dot(&self.w1) + &self.b1).tanh();
        let logits = h.dot(&self.w2) + &self.b2;
        let log_p = ops::log_softmax(&logits);
        -(&log_p * y).sum() / (x.nrows() as f64)
    }
}

pub type Grads = (Array2<f64>, Array1<f64>, Array2<f64>, Array1<f64>);
/// Inputs, one-hot labels, and the weights `(w1, b1, w2, b2)`.
pub type Problem = (
    Array2<f64>,
    Array2<f64>,
    Array2<f64>,
    Array1<f64>,
    Array2<f64>,
    Array1<f64>,
);

/// The same loss and its gradient, by hand: the usual backprop with in-place updates.
pub fn hand_value_and_grad(
    x: &Array2<f64>,
    y: &Array2<f64>,
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    w2: &Array2<f64>,
    b2: &Array1<f64>,
) -> (f64, Grads) {
    let n = x.nrows() as f64;
    let mut h = x.dot(w1);
    h += b1;
    h.mapv_inplace(f64::tanh);
    let mut logits = h.dot(w2);
    logits += b2;
    // Softmax and log-softmax per row, then the cross-entropy.
    let mut value = 0.0;
    for (mut row, t) in logits.rows_mut().into_iter().zip(y.rows()) {
        let m = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        value -= row
            .iter()
            .zip(t.iter())
            .map(|(v, t)| (v - lse) * t)
            .sum::<f64>();
        // Gradient of the mean cross-entropy with respect to the logits: (softmax - y) / n.
        let total: f64 = t.sum();
        row.zip_mut_with(&t, |v, &t| *v = ((*v - lse).exp() * total - t) / n);
    }
    let d_logits = logits;
    let dw2 = h.t().dot(&d_logits);
    let db2 = d_logits.sum_axis(Axis(0));
    let mut dz = d_logits.dot(&w2.t());
    dz.zip_mut_with(&h, |d, &h| *d *= 1.0 - h * h);
    let dw1 = x.t().dot(&dz);
    let db1 = dz.sum_axis(Axis(0));
    (value / n, (dw1, db1, dw2, db2))
}

/// Deterministic inputs: a batch of `batch` rows of `inputs` features, one-hot labels over
/// `classes`, and weights for a `hidden`-unit layer.
pub fn problem(batch: usize, inputs: usize, hidden: usize, classes: usize) -> Problem {
    let mut s = 12345u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let x = Array2::from_shape_fn((batch, inputs), |_| next());
    let y = Array2::from_shape_fn((batch, classes), |(i, j)| {
        if (i * 7 + 3) % classes == j {
            1.0
        } else {
            0.0
        }
    });
    let scale1 = 1.0 / (inputs as f64).sqrt();
    let scale2 = 1.0 / (hidden as f64).sqrt();
    let w1 = Array2::from_shape_fn((inputs, hidden), |_| next() * scale1);
    let b1 = Array1::from_shape_fn(hidden, |_| next() * 0.1);
    let w2 = Array2::from_shape_fn((hidden, classes), |_| next() * scale2);
    let b2 = Array1::from_shape_fn(classes, |_| next() * 0.1);
    (x, y, w1, b1, w2, b2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The struct's method and the free function compute the same gradient, operation for
    /// operation.
    #[test]
    fn the_struct_and_the_function_give_the_same_gradient() {
        let (x, y, w1, b1, w2, b2) = problem(8, 5, 6, 3);
        let (g1, g2, g3, g4) = loss_grad(&x, &y, &w1, &b1, &w2, &b2);
        let model = Mlp { w1, b1, w2, b2 };
        let g = model.loss_grad(&x, &y);
        assert_eq!((g.w1, g.b1, g.w2, g.b2), (g1, g2, g3, g4));
    }
}
