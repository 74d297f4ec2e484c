use autodiff::differentiate;

// Element writes into a nested container that is not a buffer of points.
#[differentiate]
fn nested_vec(x: &[f64]) -> f64 {
    let mut m = vec![vec![0.0; 3]; x.len()];
    for i in 0..x.len() {
        m[i][0] = x[i];
    }
    m[0][0]
}

// A whole point written into a buffer whose width is not a number.
#[differentiate]
fn generic_row<const D: usize>(x: &[[f64; D]]) -> f64 {
    let mut y = x.to_vec();
    y[0] = x[1];
    y[0][0]
}

// A buffer of points sliced.
#[differentiate]
fn sliced(x: &[[f64; 3]]) -> f64 {
    let mut y = x.to_vec();
    y[0][1] = 2.0 * x[1][1];
    let part = &y[1..];
    part[0][0]
}

// A whole row written into a buffer of rows.
#[differentiate]
fn row_written(x: &[f64]) -> f64 {
    let mut g = vec![vec![0.0; 2]; x.len()];
    g[0] = vec![x[0], x[1]];
    g[0][0]
}

// Arrays of arrays of arrays of differentiated values.
#[differentiate]
fn nested(x: &[f64]) -> f64 {
    let p = [[[x[0], x[1]]], [[x[2], x[3]]]];
    p[0][0][0] * p[1][0][1]
}

fn main() {}
