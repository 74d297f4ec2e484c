use autodiff::{differentiate, Differentiable};

#[derive(Differentiable)]
struct Scaled {
    k: f64,
}

impl Scaled {
    /// Differentiated with respect to `x` only: the receiver's entry is `()`.
    #[differentiate]
    fn apply(&self, x: f64) -> f64 {
        self.k * x
    }
}

/// `s` is differentiated, but `apply` gives no gradient for its receiver.
#[differentiate(wrt(s))]
fn through(s: &Scaled, x: f64) -> f64 {
    s.apply(x)
}

fn main() {}
