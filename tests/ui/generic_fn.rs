use autodiff::{differentiate, Real};

// Generic over the float type without the bound `Real`: the macro cannot tell it is the float.
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

// Generic over the float type, with a parameter in another float: mixed precision.
#[differentiate]
fn scaled<F: Real>(x: F, s: f64) -> F {
    x * F::from_f64(s)
}

fn main() {}
