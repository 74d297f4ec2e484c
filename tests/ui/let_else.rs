use autodiff::differentiate;

// A `let ... else` pattern may bind values that are not differentiated, or a differentiated
// value whole; `v` binds the inside of `Some(x)`.
#[differentiate]
fn f(x: f64, k: usize) -> f64 {
    let (Some(v), 1) = (Some(x), k) else { return x };
    v * 2.0
}

fn main() {}
