use autodiff::differentiate;

#[differentiate]
fn f(x: &[f64]) -> f64 {
    let mut v = vec![0.0; 4];
    for i in 0..4 {
        v[i] = x[i] * x[i];
    }
    let part = &v[1..3];
    part[0] + part[1]
}

fn main() {}
