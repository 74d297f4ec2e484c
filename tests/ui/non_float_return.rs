use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> (f64, usize) {
    (x, 1)
}

fn main() {}
