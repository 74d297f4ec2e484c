use autodiff::differentiate;

// Sorting inside a loop: the order could change from one iteration to the next.
#[differentiate]
fn in_a_loop(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    for _ in 0..2 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[0] = v[1] * 2.0;
    }
    v[0]
}

// A comparator other than `partial_cmp` / `total_cmp` of the two elements.
#[differentiate]
fn scaled_comparator(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(|a, b| (a * 2.0).partial_cmp(b).unwrap());
    v[0]
}

fn main() {}
