use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    fn helper(v: f64) -> f64 {
        v * 2.0
    }
    helper(x)
}

fn main() {}
