//! The hand-written GMM gradient against central finite differences (it is the floor the
//! benchmarks compare the generated gradient with, so it must be right too).
use autodiff_bench::gmm::gradient_hand;
use gradbench_autodiff::evals::gmm::{objective, Wishart};

fn wave(len: usize, phase: f64, scale: f64) -> Vec<f64> {
    (0..len)
        .map(|i| scale * (0.7 * i as f64 + phase).sin())
        .collect()
}

#[test]
fn hand_written_gmm_gradient_matches_finite_differences() {
    for (d, k, n, gamma, m) in [(3, 4, 5, 1.0, 0), (2, 3, 6, 0.7, 2), (4, 2, 3, 1.3, 1)] {
        let l_sz = d * (d - 1) / 2;
        let (alpha, mu, q) = (
            wave(k, 0.1, 1.0),
            wave(k * d, 0.2, 1.0),
            wave(k * d, 0.3, 0.3),
        );
        let (l, x) = (wave(k * l_sz, 0.4, 1.0), wave(n * d, 0.5, 1.0));
        let w = Wishart { gamma, m };
        let (ga, gm, gq, gl) = gradient_hand(&alpha, &mu, &q, &l, &x, d, k, n, w);
        let f = |a: &[f64], mu_: &[f64], q_: &[f64], l_: &[f64]| {
            objective(a, mu_, q_, l_, &x, d, k, n, w)
        };
        let check = |got: &[f64], fd: Vec<f64>| {
            for (g, f) in got.iter().zip(&fd) {
                assert!((g - f).abs() <= 1e-6 * f.abs().max(1.0), "{g} vs {f}");
            }
        };
        let fd =
            |h: &dyn Fn(&[f64]) -> f64, v: &[f64]| autodiff::check::central_difference(h, v, 1e-6);
        check(&ga, fd(&|v| f(v, &mu, &q, &l), &alpha));
        check(&gm, fd(&|v| f(&alpha, v, &q, &l), &mu));
        check(&gq, fd(&|v| f(&alpha, &mu, v, &l), &q));
        check(&gl, fd(&|v| f(&alpha, &mu, &q, v), &l));
    }
}
