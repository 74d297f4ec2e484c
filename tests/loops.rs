//! Loops, indexing, buffers, composition and custom derivatives.
use autodiff::differentiate;

fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    autodiff::check::central_difference(f, x, 1e-6)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "entry {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}");
    }
}

#[differentiate]
fn rosenbrock(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        s += 100.0 * a * a + b * b;
    }
    s
}

fn rosenbrock_hand(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut g = vec![0.0; n];
    for i in 0..n - 1 {
        let a = x[i + 1] - x[i] * x[i];
        g[i] += -400.0 * a * x[i] - 2.0 * (1.0 - x[i]);
        g[i + 1] += 200.0 * a;
    }
    g
}

#[test]
fn rosenbrock_matches_the_hand_written_gradient() {
    let x: Vec<f64> = (0..7).map(|i| 0.3 * i as f64 - 0.8).collect();
    let (v, g) = rosenbrock_value_and_grad(&x);
    assert_eq!(v, rosenbrock(&x));
    assert_close(&g, &rosenbrock_hand(&x), 1e-12);
}
