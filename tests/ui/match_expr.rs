use autodiff::differentiate;

// `match` patterns may not bind values: the arm would read a binding.
#[differentiate]
fn f(x: f64, k: Option<u8>) -> f64 {
    match k {
        Some(n) => x * n as f64,
        None => x,
    }
}

fn main() {}
