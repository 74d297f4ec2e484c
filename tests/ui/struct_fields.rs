use autodiff::{differentiate, Differentiable};

#[derive(Differentiable)]
struct Model {
    w: Vec<f64>,
    count: usize,
}

/// `count` is read as a value (not in a range, an index or a cast): differentiated, and a
/// `usize` has no gradient. (`0..m.count` or `m.count as f64` would read it as a constant.)
#[differentiate(wrt(m))]
fn loss(m: &Model, x: &[f64]) -> f64 {
    let k = m.count;
    let mut s = 0.0;
    for i in 0..x.len() {
        s += m.w[i] * x[i];
    }
    s / k as f64
}

struct Plain {
    w: f64,
}

/// A struct that does not derive `Differentiable`.
#[differentiate(wrt(p))]
fn plain(p: &Plain, x: f64) -> f64 {
    p.w * x
}

#[derive(Differentiable)]
struct Borrowed<'a> {
    w: &'a [f64],
}

#[derive(Differentiable)]
struct Marked {
    #[differentiable(constant)]
    w: f64,
}

#[derive(Differentiable)]
struct Scaled {
    s: f64,
    t: f64,
}

/// A float field read where the macro takes it for a constant (a cast): its gradient would be
/// lost, so it is a compile error at the read. (A `match` scrutinee an arm binds whole,
/// `match p.t { t if t > 0.0 => .., _ => .. }`, is differentiated.)
#[differentiate(wrt(p))]
fn scaled(p: &Scaled, x: f64) -> f64 {
    let y = (p.s as f64) * x;
    match p.t {
        t if t > 0.0 => y * t,
        _ => y,
    }
}

#[derive(Differentiable)]
struct Weighted {
    w: Vec<f64>,
}

/// A `Vec` of floats read inside a cast (an index computed from the weights): its gradient
/// would be lost too.
#[differentiate(wrt(p))]
fn weighted(p: &Weighted, x: &[f64]) -> f64 {
    let k = p.w.iter().sum::<f64>() as usize;
    x[k] * p.w[0]
}

fn main() {}

