use autodiff::differentiate;

trait Pair {
    #[differentiate]
    fn energy(&self, r: f64) -> f64;
}

fn main() {}
