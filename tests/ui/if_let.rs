use autodiff::differentiate;

// An `if let` pattern may bind values that are not differentiated, or a differentiated value
// whole; `v` binds the inside of `Some(x)`.
#[differentiate]
fn f(x: f64, k: u8) -> f64 {
    if let (Some(v), 0) = (Some(x), k) {
        v * 2.0
    } else {
        x
    }
}

fn main() {}
