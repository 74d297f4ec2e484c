use autodiff::differentiate;
use std::io::Write;

#[differentiate]
fn f(x: f64) -> f64 {
    let v = vec![x; 3];
    format!("{x}");
    write!(std::io::sink(), "{x}").unwrap();
    v[0] + dbg!(x)
}

fn main() {}
