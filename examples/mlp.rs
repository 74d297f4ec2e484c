//! A small multilayer perceptron with softmax cross-entropy, trained by plain gradient descent
//! on the gradient `#[differentiate]` writes for its loss.
//!
//! The data set is synthetic: points in the plane labelled by which of three interleaved
//! spirals they lie on.
use autodiff::differentiate;
use autodiff::ndarray::{Array1, Array2};
use autodiff::ops;

/// Mean softmax cross-entropy of a one-hidden-layer tanh network.
#[differentiate(wrt(w1, b1, w2, b2))]
fn loss(
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

/// A small deterministic pseudo-random generator, so the example needs no extra crate.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn spirals(points_per_class: usize, classes: usize, rng: &mut Lcg) -> (Array2<f64>, Array2<f64>) {
    let n = points_per_class * classes;
    let mut x = Array2::zeros((n, 2));
    let mut y = Array2::zeros((n, classes));
    for c in 0..classes {
        for i in 0..points_per_class {
            let r = i as f64 / points_per_class as f64;
            let t = c as f64 * 4.0 + 4.0 * r + 0.2 * (rng.next() - 0.5);
            let row = c * points_per_class + i;
            x[[row, 0]] = r * t.sin();
            x[[row, 1]] = r * t.cos();
            y[[row, c]] = 1.0;
        }
    }
    (x, y)
}

fn accuracy(
    x: &Array2<f64>,
    y: &Array2<f64>,
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    w2: &Array2<f64>,
    b2: &Array1<f64>,
) -> f64 {
    let logits = (x.dot(w1) + b1).tanh().dot(w2) + b2;
    let argmax = |r: autodiff::ndarray::ArrayView1<f64>| {
        r.iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > r[best] { i } else { best })
    };
    let right = logits
        .rows()
        .into_iter()
        .zip(y.rows())
        .filter(|(l, t)| argmax(*l) == argmax(*t))
        .count();
    right as f64 / x.nrows() as f64
}

fn main() {
    let mut rng = Lcg(7);
    let (x, y) = spirals(100, 3, &mut rng);
    let hidden = 64;
    let mut w1 = Array2::from_shape_fn((2, hidden), |_| rng.next() - 0.5);
    let mut b1 = Array1::zeros(hidden);
    let mut w2 = Array2::from_shape_fn((hidden, 3), |_| (rng.next() - 0.5) * 0.1);
    let mut b2 = Array1::zeros(3);

    let rate = 1.0;
    for step in 0..=2000 {
        let (value, (dw1, db1, dw2, db2)) = loss_value_and_grad(&x, &y, &w1, &b1, &w2, &b2);
        if step % 250 == 0 {
            println!(
                "step {step:4}: loss {value:.4}, accuracy {:.1}%",
                100.0 * accuracy(&x, &y, &w1, &b1, &w2, &b2)
            );
        }
        w1.scaled_add(-rate, &dw1);
        b1.scaled_add(-rate, &db1);
        w2.scaled_add(-rate, &dw2);
        b2.scaled_add(-rate, &db2);
    }
    println!(
        "final loss {:.4} (the loss function itself agrees: {:.4})",
        loss(&x, &y, &w1, &b1, &w2, &b2),
        loss_value_and_grad(&x, &y, &w1, &b1, &w2, &b2).0
    );
}
