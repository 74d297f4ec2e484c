use autodiff::differentiate;

#[differentiate]
fn f(x: &[f64]) -> f64 {
    let mut ends = vec![0usize; 2];
    ends[0] = 2;
    let mut s = 0.0;
    for j in 0..ends[0] {
        s += x[j] * x[j];
    }
    s
}

fn main() {}
