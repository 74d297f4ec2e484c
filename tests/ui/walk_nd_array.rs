use autodiff::differentiate;
use autodiff::ndarray::Array2;

// A two-dimensional array's elements are not walked by index.
#[differentiate]
fn l2(w: &Array2<f64>) -> f64 {
    w.iter().map(|v| v * v).sum::<f64>()
}

fn main() {}
