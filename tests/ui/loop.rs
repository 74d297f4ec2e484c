use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    let mut s = 0.0;
    for _ in 0..3 {
        s += x;
    }
    s
}

fn main() {}
