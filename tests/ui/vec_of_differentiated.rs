use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    let mut v = vec![x; 3];
    v[0] = 1.0;
    v[1] + v[2]
}

fn main() {}
