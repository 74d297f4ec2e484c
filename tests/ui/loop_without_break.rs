use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    let mut s = x;
    loop {
        s = s * 0.5;
    }
}

fn main() {}
