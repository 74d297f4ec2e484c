use autodiff::differentiate;
use autodiff::ndarray::{Array1, Array2, Axis};

#[differentiate]
fn j(x: &Array2<f64>, y: &Array2<f64>, w: &Array2<f64>) -> f64 {
    (y - &x.dot(w)).sum()
}

#[test]
fn pytorch_matrix_seed() {
    let x = Array2::ones((2, 4));
    let y = Array2::ones((2, 1));
    let w = Array2::ones((4, 1));
    let (dx, dy, dw) = j_grad(&x, &y, &w);
    assert_eq!(dx, Array2::from_elem((2, 4), -1.0));
    assert_eq!(dy, Array2::from_elem((2, 1), 1.0));
    assert_eq!(dw, Array2::from_elem((4, 1), -2.0));
}

#[differentiate]
fn mixed(h: &Array2<f64>, b: &Array1<f64>, s: f64) -> f64 {
    let z = (h + b) * s;
    let m = z.mapv(|v| v.max(0.0) * 2.0);
    let e = z.mapv(f64::exp);
    (m.sum_axis(Axis(0)).mean().unwrap() + e.t().sum()) / s + z.tanh().sum()
}

#[test]
fn broadcasting_and_mapv() {
    let h = Array2::from_shape_fn((3, 2), |(i, j)| 0.3 * i as f64 - 0.2 * j as f64 + 0.1);
    let b = Array1::from_vec(vec![0.5, -0.4]);
    let s = 1.3;
    let (dh, db, ds) = mixed_grad(&h, &b, s);
    let eps = 1e-6;
    for i in 0..3 {
        for k in 0..2 {
            let mut hp = h.clone();
            hp[[i, k]] += eps;
            let mut hm = h.clone();
            hm[[i, k]] -= eps;
            let fd = (mixed(&hp, &b, s) - mixed(&hm, &b, s)) / (2.0 * eps);
            assert!(
                (dh[[i, k]] - fd).abs() < 1e-6,
                "dh[{i},{k}] {} vs {fd}",
                dh[[i, k]]
            );
        }
    }
    for k in 0..2 {
        let mut bp = b.clone();
        bp[k] += eps;
        let mut bm = b.clone();
        bm[k] -= eps;
        let fd = (mixed(&h, &bp, s) - mixed(&h, &bm, s)) / (2.0 * eps);
        assert!((db[k] - fd).abs() < 1e-6, "db[{k}] {} vs {fd}", db[k]);
    }
    let fd = (mixed(&h, &b, s + eps) - mixed(&h, &b, s - eps)) / (2.0 * eps);
    assert!((ds - fd).abs() < 1e-6, "ds {ds} vs {fd}");
}
