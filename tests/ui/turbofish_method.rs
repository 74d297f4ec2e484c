use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    x.max::<>(1.0)
}

fn main() {}
