use autodiff::differentiate;

#[differentiate(pullback = |x: f64, d: f64| d * 2.0 * x)]
fn g(x: f64) -> f64 {
    x * x
}

fn main() {}
