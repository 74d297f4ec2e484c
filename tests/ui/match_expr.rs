use autodiff::differentiate;

// A `match` pattern may bind values that are not differentiated, or a differentiated value
// whole (the scrutinee, or an element of a tuple scrutinee); `v` binds the inside of `Some(x)`.
#[differentiate]
fn f(x: f64, k: u8) -> f64 {
    match (k, Some(x)) {
        (0, Some(v)) => v * 2.0,
        _ => x,
    }
}

fn main() {}
