//! The call workload: the hand-written gradient (the benchmark's floor) and the generated one
//! against central finite differences.
use autodiff_bench::calls::{problem, wave_energy, wave_energy_grad, wave_energy_hand};

#[test]
fn call_gradients_match_finite_differences() {
    let x = problem(7);
    let hand = wave_energy_hand(&x);
    let generated = wave_energy_grad(&x);
    let h = 1e-6;
    for i in 0..x.len() {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += h;
        down[i] -= h;
        let want = (wave_energy(&up) - wave_energy(&down)) / (2.0 * h);
        assert!(
            (generated[i] - want).abs() < 1e-8,
            "x[{i}]: generated {}, fd {want}",
            generated[i]
        );
        assert!(
            (hand[i] - want).abs() < 1e-8,
            "x[{i}]: by hand {}, fd {want}",
            hand[i]
        );
    }
}
