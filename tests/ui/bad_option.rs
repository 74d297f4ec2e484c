use autodiff::differentiate;

#[differentiate(with_respect_to(x))]
fn f(x: f64) -> f64 {
    x
}

fn main() {}

fn g_pullback(x: f64, d: f64) -> f64 {
    x * d
}

#[differentiate(pullback_only, pullback = g_pullback)]
fn g(x: f64) -> f64 {
    x * x
}

// `float = ..` takes a name (a type parameter or an alias), not a path.
#[differentiate(float = core::primitive::f64)]
fn h(x: f64) -> f64 {
    x * x
}
