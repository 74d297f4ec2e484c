use autodiff::differentiate;

// A `let ... else` pattern may bind values that are not differentiated; `v` binds `x`.
#[differentiate]
fn f(x: f64, k: usize) -> f64 {
    let (v, 1) = (x, k) else { return x };
    v * 2.0
}

fn main() {}
