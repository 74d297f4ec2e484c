//! The MLP loss's generated gradient against a backprop written by hand.
#[path = "../autodiff-bench/src/mlp.rs"]
mod mlp;

#[test]
fn generated_gradient_matches_hand_written_backprop() {
    let (x, y, w1, b1, w2, b2) = mlp::problem(16, 12, 10, 4);
    let (v, (dw1, db1, dw2, db2)) = mlp::loss_value_and_grad(&x, &y, &w1, &b1, &w2, &b2);
    let (hv, (hw1, hb1, hw2, hb2)) = mlp::hand_value_and_grad(&x, &y, &w1, &b1, &w2, &b2);
    assert!((v - hv).abs() < 1e-12, "{v} {hv}");
    assert!((v - mlp::loss(&x, &y, &w1, &b1, &w2, &b2)).abs() < 1e-12);
    let close = |a: &autodiff::ndarray::ArrayD<f64>, b: &autodiff::ndarray::ArrayD<f64>| {
        a.iter().zip(b.iter()).all(|(a, b)| (a - b).abs() < 1e-12)
    };
    assert!(close(&dw1.into_dyn(), &hw1.into_dyn()));
    assert!(close(&db1.into_dyn(), &hb1.into_dyn()));
    assert!(close(&dw2.into_dyn(), &hw2.into_dyn()));
    assert!(close(&db2.into_dyn(), &hb2.into_dyn()));
}
