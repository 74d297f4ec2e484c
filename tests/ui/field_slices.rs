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

/// An element of a field walked, passed whole to a function.
#[differentiate(wrt(sys))]
fn whole_element(sys: &System) -> f64 {
    let mut e = 0.0;
    for b in &sys.bodies {
        e += kinetic(b) * b.mass;
    }
    e * sys.g
}

/// An element's method: its gradient would need the method's pullback.
impl Body {
    #[differentiate(wrt(self))]
    fn weight(&self) -> f64 {
        self.mass * 9.81
    }
}

#[differentiate(wrt(sys))]
fn element_method(sys: &System) -> f64 {
    sys.bodies[0].weight() * sys.g
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

