use autodiff::differentiate;

#[differentiate]
fn f(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for v in x.iter().map(|v| v * 2.0) {
        s += v;
    }
    s
}

// The item of a walk that writes, bound again in its body.
#[differentiate]
fn g(x: &[f64]) -> f64 {
    let mut y = x.to_vec();
    let mut s = 0.0;
    for v in y.iter_mut() {
        *v *= 2.0;
        let v = 1.0;
        s += v;
    }
    y[0] + s
}

fn main() {}
