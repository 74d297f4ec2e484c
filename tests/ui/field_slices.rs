use autodiff::{differentiate, Differentiable};

#[derive(Clone, Differentiable)]
struct Body {
    pos: [f64; 3],
    mass: f64,
}

#[derive(Clone, Differentiable)]
struct System {
    bodies: Vec<Body>,
    g: f64,
}

#[differentiate(wrt(b))]
fn kinetic(b: &Body) -> f64 {
    b.mass * b.pos[0]
}

/// An element of a field walked, bound whole to a local.
#[differentiate(wrt(sys))]
fn bound_whole(sys: &System) -> f64 {
    let mut e = 0.0;
    for b in &sys.bodies {
        let c = b;
        e += kinetic(c) * b.mass;
    }
    e * sys.g
}

impl Body {
    /// Not differentiated with respect to `self`.
    #[differentiate(wrt(x))]
    fn weight(&self, x: f64) -> f64 {
        self.mass * x
    }
}

/// An element's method whose pullback gives no gradient for its receiver.
#[differentiate(wrt(sys))]
fn element_method(sys: &System) -> f64 {
    sys.bodies[0].weight(9.81) * sys.g
}

#[derive(Clone, Copy)]
enum Kind {
    Heavy,
    Light,
}

/// A `Vec` of a type that does not derive `Differentiable`: mark it constant.
#[derive(Clone, Differentiable)]
struct Labelled {
    kinds: Vec<Kind>,
    w: f64,
}

fn main() {}

