//! Explicit time steps of a chain of masses and springs, written on slices the way simulation
//! code often is: each step reads the positions at `i - 1`, `i` and `i + 1` (a stencil), then
//! updates the velocities and the positions in place. Value: `sum x_i^2` at the end. With its
//! gradient by hand: the positions of every step kept in one array, then the steps reversed.
#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;

#[differentiate]
pub fn springs(x0: &[f64], k: f64, dt: f64, steps: usize) -> f64 {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut v = vec![0.0; n];
    for _ in 0..steps {
        for i in 1..n - 1 {
            v[i] += dt * k * (x[i - 1] - 2.0 * x[i] + x[i + 1]) * (1.0 + 0.1 * x[i] * x[i]);
        }
        for i in 0..n {
            x[i] += dt * v[i];
        }
    }
    let mut e = 0.0;
    for i in 0..n {
        e += x[i] * x[i];
    }
    e
}

/// Its gradient by hand, with respect to `x0`, `k` and `dt`.
pub fn springs_hand(x0: &[f64], k: f64, dt: f64, steps: usize) -> (Vec<f64>, f64, f64) {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut v = vec![0.0; n];
    // The positions at the start of each step, and the velocities at its end.
    let mut xs = Vec::with_capacity(steps * n);
    let mut vs = Vec::with_capacity(steps * n);
    for _ in 0..steps {
        xs.extend_from_slice(&x);
        for i in 1..n - 1 {
            v[i] += dt * k * (x[i - 1] - 2.0 * x[i] + x[i + 1]) * (1.0 + 0.1 * x[i] * x[i]);
        }
        vs.extend_from_slice(&v);
        for i in 0..n {
            x[i] += dt * v[i];
        }
    }
    let mut gx: Vec<f64> = x.iter().map(|a| 2.0 * a).collect();
    let mut gv = vec![0.0; n];
    let (mut gk, mut gdt) = (0.0, 0.0);
    for t in (0..steps).rev() {
        let (xt, vt) = (&xs[t * n..(t + 1) * n], &vs[t * n..(t + 1) * n]);
        // x += dt v
        for i in 0..n {
            gv[i] += dt * gx[i];
            gdt += gx[i] * vt[i];
        }
        // v += dt k lap(x) (1 + 0.1 x^2)
        for i in 1..n - 1 {
            let lap = xt[i - 1] - 2.0 * xt[i] + xt[i + 1];
            let s = 1.0 + 0.1 * xt[i] * xt[i];
            let c = gv[i] * dt * k;
            gx[i - 1] += c * s;
            gx[i] += c * (0.2 * xt[i] * lap - 2.0 * s);
            gx[i + 1] += c * s;
            gk += gv[i] * dt * lap * s;
            gdt += gv[i] * k * lap * s;
        }
    }
    (gx, gk, gdt)
}

/// A deterministic chain of `n` masses.
pub fn chain(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 7) % 13) as f64 / 13.0 - 0.5).collect()
}
