use autodiff::differentiate;

struct Model {
    calls: usize,
}

impl Model {
    #[differentiate]
    fn energy(&mut self, x: f64) -> f64 {
        x * x * self.calls as f64
    }
}

fn main() {}
