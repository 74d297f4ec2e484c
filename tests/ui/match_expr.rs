use autodiff::differentiate;

// A `match` pattern may bind values that are not differentiated; `v` binds `x`.
#[differentiate]
fn f(x: f64, k: u8) -> f64 {
    match (k, x) {
        (0, v) => v * 2.0,
        _ => x,
    }
}

fn main() {}
