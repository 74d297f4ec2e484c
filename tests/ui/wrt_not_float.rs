use autodiff::differentiate;

#[differentiate(wrt(n))]
fn f(x: f64, n: usize) -> f64 {
    x * n as f64
}

#[differentiate(wrt(z))]
fn g(x: f64) -> f64 {
    x
}

fn main() {}
