use autodiff::differentiate;

#[differentiate]
fn f(x: f64, k: Option<usize>) -> f64 {
    let Some(n) = k else { return x };
    x * n as f64
}

fn main() {}
