use autodiff::differentiate;

#[differentiate(wrt(x), pullback = g_pullback)]
fn g(x: f64, y: f64) -> f64 {
    x * y
}

fn g_pullback(x: f64, y: f64, d_out: f64) -> (f64, f64) {
    (d_out * y, d_out * x)
}

fn main() {}
