use autodiff::differentiate;

struct Model;

fn energy_by_hand(_m: &Model, x: f64, d: f64) -> f64 {
    2.0 * x * d
}

impl Model {
    #[differentiate(pullback = crate::energy_by_hand)]
    fn energy(&self, x: f64) -> f64 {
        x * x
    }
}

fn main() {}
