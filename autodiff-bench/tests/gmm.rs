//! The hand-written GMM gradient against central finite differences (it is the floor the
//! benchmarks compare the generated gradient with, so it must be right too), and the GMM
//! written with ndarray operations against the loop version and the hand-written gradient.
use autodiff_bench::gmm::{
    gradient_hand, gradient_hand_ndarray, ndarray_constants, objective_ndarray,
    objective_ndarray_grad, Problem,
};
use gradbench_autodiff::evals::gmm::{objective, Wishart};

const CASES: [(usize, usize, usize, f64, usize); 3] =
    [(3, 4, 5, 1.0, 0), (2, 3, 6, 0.7, 2), (4, 2, 3, 1.3, 1)];

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn hand_written_gmm_gradient_matches_finite_differences() {
    for (d, k, n, gamma, m) in CASES {
        let p = Problem::new(d, k, n, 1.0);
        let (alpha, mu, q, l, x) = (&p.alpha, &p.mu, &p.q, &p.l, &p.x);
        let w = Wishart { gamma, m };
        let (ga, gm, gq, gl) = gradient_hand(alpha, mu, q, l, x, d, k, n, w);
        let f = |a: &[f64], mu_: &[f64], q_: &[f64], l_: &[f64]| {
            objective(a, mu_, q_, l_, x, d, k, n, w)
        };
        let fd =
            |h: &dyn Fn(&[f64]) -> f64, v: &[f64]| autodiff::check::central_difference(h, v, 1e-6);
        assert_close(&ga, &fd(&|v| f(v, mu, q, l), alpha), 1e-6);
        assert_close(&gm, &fd(&|v| f(alpha, v, q, l), mu), 1e-6);
        assert_close(&gq, &fd(&|v| f(alpha, mu, v, l), q), 1e-6);
        assert_close(&gl, &fd(&|v| f(alpha, mu, q, v), l), 1e-6);
    }
}

#[test]
fn ndarray_gmm_matches_the_loop_version() {
    for (d, k, n, gamma, m) in CASES {
        let p = Problem::new(d, k, n, 1.0);
        let (aa, am, aq, al, ax) = p.arrays();
        let w = Wishart { gamma, m };
        let (tri, constant) = ndarray_constants(d, k, n, w);
        let got = objective_ndarray(&aa, &am, &aq, &al, &ax, &tri, w, constant);
        let want = objective(&p.alpha, &p.mu, &p.q, &p.l, &p.x, d, k, n, w);
        assert!(
            (got - want).abs() <= 1e-10 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        let (ga, gm, gq, gl) = objective_ndarray_grad(&aa, &am, &aq, &al, &ax, &tri, w, constant);
        let (ha, hm, hq, hl) = gradient_hand(&p.alpha, &p.mu, &p.q, &p.l, &p.x, d, k, n, w);
        assert_close(&ga.to_vec(), &ha, 1e-10);
        assert_close(&gm.iter().copied().collect::<Vec<_>>(), &hm, 1e-10);
        assert_close(&gq.iter().copied().collect::<Vec<_>>(), &hq, 1e-10);
        assert_close(&gl.iter().copied().collect::<Vec<_>>(), &hl, 1e-10);
        // The report's other floor, written by hand in the ndarray operations.
        let (na, nm, nq, nl) = gradient_hand_ndarray(&aa, &am, &aq, &al, &ax, &tri, w);
        assert_close(&na.to_vec(), &ha, 1e-10);
        assert_close(&nm.iter().copied().collect::<Vec<_>>(), &hm, 1e-10);
        assert_close(&nq.iter().copied().collect::<Vec<_>>(), &hq, 1e-10);
        assert_close(&nl.iter().copied().collect::<Vec<_>>(), &hl, 1e-10);
    }
}
