use autodiff::differentiate;

#[differentiate]
fn f(x: &[f64]) -> f64 {
    let mut s = 0.0;
    'outer: for i in 0..x.len() {
        s += x[i];
        if s > 1.0 {
            break 'outer;
        }
    }
    s
}

fn main() {}
