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

#[test]
fn ndarray_gmm_matches_the_loop_version() {
    use autodiff::ndarray::{Array1, Array2};
    use autodiff_bench::gmm::{ndarray_constants, objective_ndarray, objective_ndarray_grad};
    for (d, k, n, gamma, m) in [(3, 4, 5, 1.0, 0), (2, 3, 6, 0.7, 2), (4, 2, 3, 1.3, 1)] {
        let l_sz = d * (d - 1) / 2;
        let (alpha, mu, q) = (
            wave(k, 0.1, 1.0),
            wave(k * d, 0.2, 1.0),
            wave(k * d, 0.3, 0.3),
        );
        let (l, x) = (wave(k * l_sz, 0.4, 1.0), wave(n * d, 0.5, 1.0));
        let w = Wishart { gamma, m };
        let a2 =
            |v: &[f64], r: usize, c: usize| Array2::from_shape_vec((r, c), v.to_vec()).unwrap();
        let (aa, am, aq, al, ax) = (
            Array1::from_vec(alpha.clone()),
            a2(&mu, k, d),
            a2(&q, k, d),
            a2(&l, k, l_sz),
            a2(&x, n, d),
        );
        let (tri, unit, constant) = ndarray_constants(d, k, n, w);
        let got = objective_ndarray(&aa, &am, &aq, &al, &ax, &tri, &unit, w, constant);
        let want = objective(&alpha, &mu, &q, &l, &x, d, k, n, w);
        assert!(
            (got - want).abs() <= 1e-10 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        let (ga, gm, gq, gl) =
            objective_ndarray_grad(&aa, &am, &aq, &al, &ax, &tri, &unit, w, constant);
        let (ha, hm, hq, hl) = gradient_hand(&alpha, &mu, &q, &l, &x, d, k, n, w);
        for (got, want) in [
            (ga.to_vec(), ha),
            (gm.iter().copied().collect(), hm),
            (gq.iter().copied().collect(), hq),
            (gl.iter().copied().collect(), hl),
        ] {
            for (g, h) in got.iter().zip(&want) {
                assert!((g - h).abs() <= 1e-10 * h.abs().max(1.0), "{g} vs {h}");
            }
        }
    }
}
