use autodiff::differentiate;

fn apply(g: impl Fn(f64) -> f64, x: f64) -> f64 {
    g(x)
}

#[differentiate]
fn f(x: f64) -> f64 {
    let g = |v: f64| v * 2.0;
    apply(g, x) + g(x)
}

fn main() {}
