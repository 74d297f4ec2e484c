use autodiff::differentiate;

// A `Vec` walked in the loop that pushes to it.
#[differentiate]
fn walked_while_pushing(x: &[f64]) -> f64 {
    let mut out = Vec::new();
    let mut s = 0.0;
    for v in x {
        out.push(*v);
        s += out.iter().sum::<f64>();
    }
    s
}

// A push into a `Vec` that did not start empty.
#[differentiate]
fn pushed_onto_a_copy(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.push(x[0] * 2.0);
    v[0] + v[v.len() - 1]
}

fn main() {}
