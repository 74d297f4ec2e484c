use autodiff::differentiate;

#[differentiate]
fn f(x: &[f64]) -> f64 {
    let k = x[0];
    x[k as usize] * 2.0
}

fn main() {}
