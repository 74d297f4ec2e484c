use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    x.midpoint(2.0)
}

/// `sin_cos` only taken apart by a `let`.
#[differentiate]
fn g(x: f64) -> f64 {
    x.sin_cos().0 + f64::sin_cos(x).1
}

fn main() {}
