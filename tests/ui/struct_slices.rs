use autodiff::{differentiate, Differentiable};

#[derive(Clone, Differentiable)]
struct Body {
    pos: [f64; 3],
    mass: f64,
}

#[differentiate(wrt(b))]
fn kinetic(b: &Body) -> f64 {
    b.mass * b.pos[0]
}

/// An element bound whole to a local and read through it.
#[differentiate(wrt(bodies))]
fn bound_whole(bodies: &[Body]) -> f64 {
    let mut e = 0.0;
    for b in bodies.iter() {
        let c = b;
        e += c.mass * kinetic(b);
    }
    e
}

/// Takes a body as a constant: its pullback gives no gradient for it.
#[differentiate(wrt(x))]
fn weighted(b: &Body, x: f64) -> f64 {
    b.mass * x
}

/// Passes a differentiated element to `weighted`.
#[differentiate(wrt(bodies))]
fn passes_element(bodies: &[Body], x: f64) -> f64 {
    weighted(&bodies[0], x) + bodies[1].mass
}

/// The slice in an iterator chain the macro does not write as element reads.
#[differentiate(wrt(bodies))]
fn skipped(bodies: &[Body], x: &[f64]) -> f64 {
    let mut e = 0.0;
    for b in bodies.iter().chain(bodies.iter()) {
        e += b.mass * x[0];
    }
    e
}

/// A float field read where a constant stands (a cast to an index).
#[differentiate(wrt(bodies))]
fn mass_as_index(bodies: &[Body], x: &[f64]) -> f64 {
    x[bodies[0].mass as usize] * bodies[1].mass
}

struct Plain {
    w: f64,
}

/// Elements that do not derive `Differentiable`.
#[differentiate(wrt(items))]
fn plain(items: &[Plain]) -> f64 {
    items[0].w * 2.0
}

#[derive(Clone, Differentiable)]
struct Cell {
    w: autodiff::ndarray::Array1<f64>,
    q: f32,
}

/// An ndarray field read by index, and an `f32` field in `f64` arithmetic.
#[differentiate(wrt(cells))]
fn cells(cells: &[Cell], x: f64) -> f64 {
    cells[0].w[1] * x + cells[1].q * x
}

/// Takes the slice as a constant (no `wrt`): its pullback gives no gradient for it.
#[differentiate]
fn heaviest(bodies: &[Body], x: f64) -> f64 {
    bodies[0].mass * x
}

/// Passes its differentiated slice to `heaviest`.
#[differentiate(wrt(bodies))]
fn passes(bodies: &[Body]) -> f64 {
    heaviest(bodies, 2.0) + bodies[1].mass
}

fn main() {}
