//! `gmm`: the Gaussian mixture model objective of ADBench; `objective` and `jacobian` (the
//! gradient with respect to `alpha`, `mu`, `q` and `l`).
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use crate::protocol::{measure, parse, timed, Evaluated, Runs};
use autodiff::{differentiate, StopGradient};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy)]
pub struct Wishart {
    pub gamma: f64,
    pub m: usize,
}
#[differentiate(wrt(alpha, mu, q, l))]
pub fn objective(
    alpha: &[f64],
    mu: &[f64],
    q: &[f64],
    l: &[f64],
    x: &[f64],
    d: usize,
    k: usize,
    n: usize,
    wishart: Wishart,
) -> f64 {
    let gamma = wishart.gamma;
    let m = wishart.m;
    let l_sz = d * (d - 1) / 2;
    let mut qdiag = vec![0.0; d * k];
    let mut sum_qs = vec![0.0; k];
    for ik in 0..k {
        let mut s = 0.0;
        for j in 0..d {
            qdiag[ik * d + j] = q[ik * d + j].exp();
            s += q[ik * d + j];
        }
        sum_qs[ik] = s;
    }
    // Each component's factor applied to its mean, once: `Q (x - mu)` is computed as
    // `Q x - Q mu`, so the point loop reads the data `x` (which has no adjoint) and its reverse
    // adds into the factor's adjoint alone, `mu`'s adjoint gathering in `qmu`'s (see README).
    let mut qmu = vec![0.0; k * d];
    for ik in 0..k {
        for j in 0..d {
            let mut s = qdiag[ik * d + j] * mu[ik * d + j];
            for i in 0..j {
                s += l[ik * l_sz + i * (2 * d - i - 1) / 2 + j - i - 1] * mu[ik * d + i];
            }
            qmu[ik * d + j] = s;
        }
    }
    let mut slse = 0.0;
    let mut main_term = vec![0.0; k];
    for ix in 0..n {
        let xi = &x[ix * d..(ix + 1) * d];
        for ik in 0..k {
            let mut sq = 0.0;
            for j in 0..d {
                let mut s = qdiag[ik * d + j] * xi[j] - qmu[ik * d + j];
                // One past the packed index of `L[j][i]`, stepped from `i` to `i + 1`.
                let mut p = ik * l_sz + j;
                for i in 0..j {
                    s += l[p - 1] * xi[i];
                    p += d - i - 2;
                }
                sq += s * s;
            }
            main_term[ik] = alpha[ik] + sum_qs[ik] - 0.5 * sq;
        }
        // The shift is a constant for differentiation (as JAX's `logsumexp` makes it): the
        // value does not depend on it, and its loop is left out of the reverse sweep.
        let mut mx = main_term[0];
        for ik in 1..k {
            mx = mx.max(main_term[ik]);
        }
        let mx = mx.stop_gradient();
        let mut se = 0.0;
        for ik in 0..k {
            se += (main_term[ik] - mx).exp();
        }
        slse += se.ln() + mx;
    }
    let mut amx = alpha[0];
    for ik in 1..k {
        amx = amx.max(alpha[ik]);
    }
    let amx = amx.stop_gradient();
    let mut ase = 0.0;
    for ik in 0..k {
        ase += (alpha[ik] - amx).exp();
    }
    let lse_alpha = ase.ln() + amx;
    let mut prior = 0.0;
    for ik in 0..k {
        let mut frob = 0.0;
        for j in 0..d {
            frob += qdiag[ik * d + j] * qdiag[ik * d + j];
        }
        for j in 0..l_sz {
            frob += l[ik * l_sz + j] * l[ik * l_sz + j];
        }
        prior += 0.5 * gamma * gamma * frob - m as f64 * sum_qs[ik];
    }
    let constant = -((n * d) as f64) * 0.5 * (2.0 * std::f64::consts::PI).ln();
    constant + slse - n as f64 * lse_alpha - prior + k as f64 * wishart_constant(d, gamma, m)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The Wishart prior's constant for one component.
pub fn wishart_constant(d: usize, gamma: f64, m: usize) -> f64 {
    let n = (d + m + 1) as f64;
    let p = d as f64;
    let mut lg = 0.25 * p * (p - 1.0) * std::f64::consts::PI.ln();
    for j in 1..=d {
        lg += ln_gamma(0.5 * n + 0.5 * (1.0 - j as f64));
    }
    n * p * (gamma.ln() - 0.5 * 2f64.ln()) - lg
}

#[derive(Deserialize)]
struct Input {
    d: usize,
    k: usize,
    n: usize,
    alpha: Vec<f64>,
    mu: Vec<Vec<f64>>,
    q: Vec<Vec<f64>>,
    l: Vec<Vec<f64>>,
    x: Vec<Vec<f64>>,
    gamma: f64,
    m: usize,
}

/// The jacobian's output: the gradient in the input's shapes.
#[derive(Serialize)]
pub struct Jacobian {
    pub alpha: Vec<f64>,
    pub mu: Vec<Vec<f64>>,
    pub q: Vec<Vec<f64>>,
    pub l: Vec<Vec<f64>>,
}

fn rows(flat: &[f64], width: usize) -> Vec<Vec<f64>> {
    if width == 0 {
        return vec![Vec::new(); flat.len()];
    }
    flat.chunks(width).map(<[f64]>::to_vec).collect()
}

pub fn evaluate(function: &str, input: &Value) -> Result<Evaluated, String> {
    let i: Input = parse(input)?;
    let (d, k, n) = (i.d, i.k, i.n);
    let flat = |rows: &[Vec<f64>], count: usize, width: usize, name: &str| {
        if rows.len() != count || rows.iter().any(|r| r.len() != width) {
            return Err(format!("gmm: `{name}` should be {count} rows of {width}"));
        }
        Ok(rows.concat())
    };
    let l_sz = d * d.saturating_sub(1) / 2;
    let mu = flat(&i.mu, k, d, "mu")?;
    let q = flat(&i.q, k, d, "q")?;
    let l = flat(&i.l, k, l_sz, "l")?;
    let x = flat(&i.x, n, d, "x")?;
    if i.alpha.len() != k || k == 0 || d == 0 {
        return Err(format!(
            "gmm: `alpha` should have k = {k} > 0 entries, d > 0"
        ));
    }
    let (alpha, w) = (
        i.alpha,
        Wishart {
            gamma: i.gamma,
            m: i.m,
        },
    );
    let runs = Runs::of(input);
    match function {
        "objective" => timed(runs, || objective(&alpha, &mu, &q, &l, &x, d, k, n, w)),
        "jacobian" => {
            let ((ga, gm, gq, gl), timings) =
                measure(runs, || objective_grad(&alpha, &mu, &q, &l, &x, d, k, n, w));
            let jacobian = Jacobian {
                alpha: ga,
                mu: rows(&gm, d),
                q: rows(&gq, d),
                l: rows(&gl, l_sz),
            };
            let output = serde_json::to_value(jacobian).map_err(|e| e.to_string())?;
            Ok(Evaluated { output, timings })
        }
        _ => super::unknown("gmm", function),
    }
}
