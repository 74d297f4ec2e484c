use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    let a = 2.0;
    let g = |v: f64| v * a;
    let a = 3.0;
    g(x) + a
}

#[differentiate]
fn h(x: f64) -> f64 {
    let g = |v: f64| {
        if v > 1.0 {
            return v;
        }
        v * v
    };
    g(x)
}

fn main() {}
