use autodiff::differentiate;

// An `if let` pattern may bind values that are not differentiated; `v` binds `x`.
#[differentiate]
fn f(x: f64, k: u8) -> f64 {
    if let (v, 0) = (x, k) {
        v * 2.0
    } else {
        x
    }
}

fn main() {}
