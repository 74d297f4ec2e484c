//! The GMM objective's gradient written by hand, ADBench's way: per point, the centred point
//! and `Q (x - mu)` of every component kept, then the softmax weights, then each component's
//! contributions. The annotated objective is the GradBench tool's
//! (`gradbench_autodiff::evals::gmm::objective`).
#![allow(clippy::needless_range_loop)]

use gradbench_autodiff::evals::gmm::Wishart;

/// `(d alpha, d mu, d q, d l)` of the GMM objective.
#[allow(clippy::too_many_arguments)]
pub fn gradient_hand(
    alpha: &[f64],
    mu: &[f64],
    q: &[f64],
    l: &[f64],
    x: &[f64],
    d: usize,
    k: usize,
    n: usize,
    wishart: Wishart,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let l_sz = d * (d - 1) / 2;
    let qdiag: Vec<f64> = q.iter().map(|v| v.exp()).collect();
    let sum_qs: Vec<f64> = q.chunks(d).map(|c| c.iter().sum()).collect();
    let (mut ga, mut gmu) = (vec![0.0; k], vec![0.0; k * d]);
    let (mut gq, mut gl) = (vec![0.0; k * d], vec![0.0; k * l_sz]);
    let (mut xc, mut qx) = (vec![0.0; k * d], vec![0.0; k * d]);
    let (mut main_term, mut dxc) = (vec![0.0; k], vec![0.0; d]);
    for xi in x.chunks(d).take(n) {
        for ik in 0..k {
            let (xck, qxk) = (&mut xc[ik * d..(ik + 1) * d], &mut qx[ik * d..(ik + 1) * d]);
            let (muk, qdk) = (&mu[ik * d..(ik + 1) * d], &qdiag[ik * d..(ik + 1) * d]);
            for j in 0..d {
                xck[j] = xi[j] - muk[j];
                qxk[j] = qdk[j] * xck[j];
            }
            let lk = &l[ik * l_sz..(ik + 1) * l_sz];
            let mut idx = 0;
            for i in 0..d {
                for j in i + 1..d {
                    qxk[j] += lk[idx] * xck[i];
                    idx += 1;
                }
            }
            let sq: f64 = qxk.iter().map(|v| v * v).sum();
            main_term[ik] = alpha[ik] + sum_qs[ik] - 0.5 * sq;
        }
        let mx = main_term.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let se: f64 = main_term.iter().map(|t| (t - mx).exp()).sum();
        for ik in 0..k {
            let w = (main_term[ik] - mx).exp() / se;
            ga[ik] += w;
            let (xck, qxk) = (&xc[ik * d..(ik + 1) * d], &qx[ik * d..(ik + 1) * d]);
            let qdk = &qdiag[ik * d..(ik + 1) * d];
            let gqk = &mut gq[ik * d..(ik + 1) * d];
            // The adjoint of Q (x - mu) is -w Q (x - mu).
            for j in 0..d {
                let g = -w * qxk[j];
                gqk[j] += w + g * qdk[j] * xck[j];
                dxc[j] = qdk[j] * g;
            }
            let (lk, glk) = (
                &l[ik * l_sz..(ik + 1) * l_sz],
                &mut gl[ik * l_sz..(ik + 1) * l_sz],
            );
            let mut idx = 0;
            for i in 0..d {
                for j in i + 1..d {
                    let g = -w * qxk[j];
                    glk[idx] += g * xck[i];
                    dxc[i] += lk[idx] * g;
                    idx += 1;
                }
            }
            for (gm, dx) in gmu[ik * d..(ik + 1) * d].iter_mut().zip(&dxc) {
                *gm -= dx;
            }
        }
    }
    // -n logsumexp(alpha).
    let amx = alpha.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ase: f64 = alpha.iter().map(|a| (a - amx).exp()).sum();
    for (g, a) in ga.iter_mut().zip(alpha) {
        *g -= n as f64 * (a - amx).exp() / ase;
    }
    // The Wishart prior: -(gamma^2 / 2 (|exp(q)|^2 + |l|^2) - m sum(q)).
    let (g2, m) = (wishart.gamma * wishart.gamma, wishart.m as f64);
    for (g, qd) in gq.iter_mut().zip(&qdiag) {
        *g += m - g2 * qd * qd;
    }
    for (g, li) in gl.iter_mut().zip(l) {
        *g -= g2 * li;
    }
    (ga, gmu, gq, gl)
}
