use autodiff::differentiate;

#[differentiate]
fn f(x: f64, k: Option<u8>) -> f64 {
    if let Some(_) = k {
        x * 2.0
    } else {
        x
    }
}

fn main() {}
