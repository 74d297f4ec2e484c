use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    (x as f32).sin() as f64
}

fn main() {}
