use autodiff::differentiate;

#[differentiate]
fn f(x: &[f64], mut y: Vec<f64>) -> f64 {
    y[0] = x[0];
    y[0] * 2.0
}

fn main() {}
