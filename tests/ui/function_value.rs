use autodiff::differentiate;

// A function passed as a value and called with a differentiated argument: its derivative is
// unknown. (Called with constants only, it is plain code: `weight(i)` in `tests/generics.rs`.)
#[differentiate(wrt(a))]
fn integrate(f: impl Fn(f64) -> f64, a: f64) -> f64 {
    f(a) * a
}

fn main() {}
