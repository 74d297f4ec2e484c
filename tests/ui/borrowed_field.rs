use autodiff::{differentiate, Differentiable};

/// A model borrowing its data.
#[derive(Clone, Differentiable)]
struct Fit<'a> {
    w: Vec<f64>,
    #[differentiable(constant)]
    data: &'a [f64],
}

impl<'a> Fit<'a> {
    /// The borrowed data read as a differentiated value: it has no gradient (read it as
    /// `self.data[i].stop_gradient()`).
    #[differentiate(wrt(self))]
    fn loss(&self) -> f64 {
        let mut s = 0.0;
        for i in 0..self.data.len() {
            s += self.w[i] * self.data[i];
        }
        s
    }
}

fn main() {}
