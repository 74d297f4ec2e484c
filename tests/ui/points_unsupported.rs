use autodiff::differentiate;

// Element writes into a buffer of points.
#[differentiate]
fn forces_sum(x: &[[f64; 3]]) -> f64 {
    let mut f = vec![[0.0; 3]; x.len()];
    for i in 0..x.len() {
        f[i][0] += x[i][0];
    }
    f[0][0]
}

// Points returned.
#[differentiate]
fn shifted(x: &[[f64; 3]]) -> Vec<[f64; 3]> {
    x.to_vec()
}

// Arrays of arrays of differentiated values.
#[differentiate]
fn nested(x: &[f64]) -> f64 {
    let p = [[x[0], x[1]], [x[2], x[3]]];
    p[0][0] * p[1][1]
}

fn main() {}
