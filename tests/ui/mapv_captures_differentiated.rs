use autodiff::differentiate;
use autodiff::ndarray::Array1;

#[differentiate]
fn f(a: &Array1<f64>, s: f64) -> f64 {
    a.mapv(|v| v * s).sum()
}

fn main() {}
