#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;
#[differentiate(wrt(logits))]
fn xent(logits: &[f64], target: usize) -> f64 {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln() + m;
    lse - logits[target]
}
#[differentiate(wrt(w, x))]
fn layer(w: &[f64], x: &[f64], d: usize) -> f64 {
    let n = w.len() / d;
    let mut y = vec![0.0; n];
    for i in 0..n {
        let row = &w[i * d..(i + 1) * d];
        y[i] = row.iter().zip(x).map(|(a, b)| a * b).sum();
    }
    let probs: Vec<f64> = y.iter().map(|v| v.tanh()).collect();
    probs.iter().enumerate().map(|(i, &v)| if i == 0 { v - 1.0 } else { v * v }).sum::<f64>()
}
#[differentiate]
fn f2(y: [f64; 2]) -> [f64; 2] { [y[1], -y[0] - 0.1 * y[1]] }
#[differentiate(wrt(y))]
fn rk4(y: [f64; 2], h: f64, steps: usize) -> f64 {
    let mut y = y;
    for _ in 0..steps {
        let k1 = f2(y);
        let k2 = f2([y[0] + 0.5 * h * k1[0], y[1] + 0.5 * h * k1[1]]);
        let k3 = f2([y[0] + 0.5 * h * k2[0], y[1] + 0.5 * h * k2[1]]);
        let k4 = f2([y[0] + h * k3[0], y[1] + h * k3[1]]);
        y = [y[0] + h / 6.0 * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0]), y[1] + h / 6.0 * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])];
    }
    y[0] * y[0] + y[1]
}
#[test]
fn t() {
    let l = [0.5, -1.0, 2.0, 0.3];
    let g = xent_grad(&l, 2);
    let fd = autodiff::check::central_difference(|v| xent(v, 2), &l, 1e-6);
    println!("{g:?}\n{fd:?}");
    let w = [0.5, -1.0, 2.0, 0.3, 0.1, 0.7];
    let x = [0.2, -0.4];
    let (gw, gx) = layer_grad(&w, &x, 2);
    println!("{gw:?} {gx:?}\n{:?}", autodiff::check::central_difference(|v| layer(v, &x, 2), &w, 1e-6));
    let g = rk4_grad([1.0, 0.5], 0.1, 20);
    println!("{g:?} {:?}", autodiff::check::central_difference(|v| rk4([v[0], v[1]], 0.1, 20), &[1.0, 0.5], 1e-6));
}
