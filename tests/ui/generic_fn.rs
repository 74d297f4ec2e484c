use autodiff::differentiate;

// Generic over the float type: the gradient is computed in `f64` or `f32`, written out.
#[differentiate]
fn product<F: Copy + std::ops::Mul<Output = F>>(x: F, y: F) -> F {
    x * y
}

pub trait Model {
    fn value(x: f64) -> f64;
}

// A qualified path in a call.
#[differentiate]
fn through<M: Model>(x: f64) -> f64 {
    <M as Model>::value(x)
}

fn main() {}
