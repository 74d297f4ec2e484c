use autodiff::differentiate;

#[differentiate]
fn f(x: &[f64]) -> f64 {
    for i in 0..x.len() {
        if x[i] > 1.0 {
            return x[i];
        }
    }
    0.0
}

fn main() {}
