use autodiff::differentiate;

fn scale(v: &mut f64) {
    *v *= 2.0;
}

#[differentiate]
fn f(x: f64) -> f64 {
    let mut y = x;
    scale(&mut y);
    y
}

fn main() {}
