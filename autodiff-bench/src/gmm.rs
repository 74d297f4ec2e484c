//! The GMM objective's gradient written by hand, ADBench's way with one change: per point,
//! `Q (x - mu)` of every component kept, then the softmax weights, then each component's
//! contributions; `Q (x - mu)` is computed as `Q x - Q mu` with `Q mu` once per component, as
//! the annotated objective does. The annotated objective is the GradBench tool's
//! (`gradbench_autodiff::evals::gmm::objective`).
#![allow(clippy::needless_range_loop)]

use autodiff::ndarray::{Array1, Array2, Axis};
use autodiff::ops;
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
    // `Q mu` of every component once: each point's `Q (x - mu)` is `Q x - Q mu`, so the
    // per-point reverse adds into the factor's adjoint and `Q mu`'s alone.
    let mut qmu = vec![0.0; k * d];
    for ik in 0..k {
        let (muk, qdk) = (&mu[ik * d..(ik + 1) * d], &qdiag[ik * d..(ik + 1) * d]);
        let (lk, qmuk) = (
            &l[ik * l_sz..(ik + 1) * l_sz],
            &mut qmu[ik * d..(ik + 1) * d],
        );
        for j in 0..d {
            qmuk[j] = qdk[j] * muk[j];
        }
        let mut idx = 0;
        for i in 0..d {
            for j in i + 1..d {
                qmuk[j] += lk[idx] * muk[i];
                idx += 1;
            }
        }
    }
    let mut gqmu = vec![0.0; k * d];
    let mut qx = vec![0.0; k * d];
    let mut main_term = vec![0.0; k];
    for xi in x.chunks(d).take(n) {
        for ik in 0..k {
            let qxk = &mut qx[ik * d..(ik + 1) * d];
            let (qmuk, qdk) = (&qmu[ik * d..(ik + 1) * d], &qdiag[ik * d..(ik + 1) * d]);
            for j in 0..d {
                qxk[j] = qdk[j] * xi[j] - qmuk[j];
            }
            let lk = &l[ik * l_sz..(ik + 1) * l_sz];
            let mut idx = 0;
            for i in 0..d {
                for j in i + 1..d {
                    qxk[j] += lk[idx] * xi[i];
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
            let qxk = &qx[ik * d..(ik + 1) * d];
            let qdk = &qdiag[ik * d..(ik + 1) * d];
            let (gqk, gqmuk) = (
                &mut gq[ik * d..(ik + 1) * d],
                &mut gqmu[ik * d..(ik + 1) * d],
            );
            // The adjoint of `Q x - Q mu` is -w (Q x - Q mu).
            for j in 0..d {
                let g = -w * qxk[j];
                gqk[j] += w + g * qdk[j] * xi[j];
                gqmuk[j] -= g;
            }
            let glk = &mut gl[ik * l_sz..(ik + 1) * l_sz];
            let mut idx = 0;
            for i in 0..d {
                for j in i + 1..d {
                    glk[idx] += -w * qxk[j] * xi[i];
                    idx += 1;
                }
            }
        }
    }
    // `Q mu`'s adjoint through the factor, once per component.
    for ik in 0..k {
        let (muk, qdk) = (&mu[ik * d..(ik + 1) * d], &qdiag[ik * d..(ik + 1) * d]);
        let gqmuk = &gqmu[ik * d..(ik + 1) * d];
        let lk = &l[ik * l_sz..(ik + 1) * l_sz];
        for j in 0..d {
            gq[ik * d + j] += gqmuk[j] * qdk[j] * muk[j];
            gmu[ik * d + j] += gqmuk[j] * qdk[j];
        }
        let mut idx = 0;
        for i in 0..d {
            for j in i + 1..d {
                gl[ik * l_sz + idx] += gqmuk[j] * muk[i];
                gmu[ik * d + i] += gqmuk[j] * lk[idx];
                idx += 1;
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

/// The GMM objective again, written with ndarray operations: per component, the centred points
/// as one `n x d` array, `Q (x - mu)` as a broadcast product plus one matrix product with the
/// triangular factor (built from the packed `l` row by a constant 0/1 matrix `tri`), and the
/// log-sum-exp over components through `log_softmax` of the `n x k` matrix of main terms
/// (each component's column stored into it by `main.column_mut(ik).assign(&t)`). Same parameters and value as
/// the loop version; `constant` is its `-n d/2 ln 2 pi + k C` term.
#[autodiff::differentiate(wrt(alpha, mu, q, l))]
#[allow(clippy::too_many_arguments)]
pub fn objective_ndarray(
    alpha: &Array1<f64>,
    mu: &Array2<f64>,
    q: &Array2<f64>,
    l: &Array2<f64>,
    x: &Array2<f64>,
    tri: &Array2<f64>,
    wishart: Wishart,
    constant: f64,
) -> f64 {
    let n = x.nrows();
    let d = x.ncols();
    let k = alpha.len();
    let mut main = Array2::<f64>::zeros((n, k));
    for ik in 0..k {
        let xc = x - &mu.row(ik);
        let lk = tri.dot(&l.row(ik)).into_shape_with_order((d, d)).unwrap();
        let qx = &xc * &q.row(ik).mapv(f64::exp) + xc.dot(&lk.t());
        let t = (&qx * &qx).sum_axis(Axis(1)) * -0.5 + (alpha[ik] + q.row(ik).sum());
        main.column_mut(ik).assign(&t);
    }
    let lse_points = (&main.column(0) - &ops::log_softmax(&main).column(0)).sum();
    let qd = q.mapv(f64::exp);
    let frobenius = (&qd * &qd).sum() + (l * l).sum();
    let prior = 0.5 * wishart.gamma * wishart.gamma * frobenius - wishart.m as f64 * q.sum();
    constant + lse_points - n as f64 * ops::logsumexp(alpha) - prior
}

/// The gradient of [`objective_ndarray`] by hand, in the same ndarray operations (the floor
/// for that style: one array per operation, each component's `Q (x - mu)` computed again in
/// the backward pass as the generated gradient does, where the loop version keeps scalars in
/// registers): `(d alpha, d mu, d q, d l)`.
#[allow(clippy::too_many_arguments)]
pub fn gradient_hand_ndarray(
    alpha: &Array1<f64>,
    mu: &Array2<f64>,
    q: &Array2<f64>,
    l: &Array2<f64>,
    x: &Array2<f64>,
    tri: &Array2<f64>,
    wishart: Wishart,
) -> (Array1<f64>, Array2<f64>, Array2<f64>, Array2<f64>) {
    let n = x.nrows();
    let d = x.ncols();
    let k = alpha.len();
    // Forward: each component's log-density column.
    let mut main = Array2::<f64>::zeros((n, k));
    for ik in 0..k {
        let (_, _, _, qx) = component(mu, q, l, x, tri, ik);
        let t = (&qx * &qx).sum_axis(Axis(1)) * -0.5 + (alpha[ik] + q.row(ik).sum());
        main.column_mut(ik).assign(&t);
    }
    // The points' log-sum-exps: each row's softmax is the adjoint of its column.
    let mut w = main;
    for mut row in w.rows_mut() {
        let mx = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - mx).exp());
        let s = row.sum();
        row /= s;
    }
    let amx = alpha.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let ea = alpha.mapv(|a| (a - amx).exp());
    let d_alpha = w.sum_axis(Axis(0)) - &ea * (n as f64 / ea.sum());
    let g2 = wishart.gamma * wishart.gamma;
    let qd = q.mapv(f64::exp);
    let mut d_q = &qd * &qd * -g2 + wishart.m as f64;
    let mut d_l = l * -g2;
    let mut d_mu = Array2::<f64>::zeros(mu.raw_dim());
    // Backward, component by component.
    for ik in 0..k {
        let dt = w.column(ik);
        let (xc, lk, e, qx) = component(mu, q, l, x, tri, ik);
        let dqx = qx * dt.insert_axis(Axis(1)) * -1.0;
        let de = (&dqx * &xc).sum_axis(Axis(0));
        let dlk = dqx.t().dot(&xc);
        let dxc = &dqx * &e + dqx.dot(&lk);
        let dsum = dt.sum();
        let mut dq = d_q.row_mut(ik);
        dq += &(de * &e);
        dq += dsum;
        d_l.row_mut(ik).scaled_add(
            1.0,
            &tri.t().dot(&dlk.into_shape_with_order(d * d).unwrap()),
        );
        d_mu.row_mut(ik).assign(&-dxc.sum_axis(Axis(0)));
    }
    (d_alpha, d_mu, d_q, d_l)
}

/// Component `ik`'s centred points `x - mu`, triangular factor, exp'ed diagonal and
/// `Q (x - mu)`, for [`gradient_hand_ndarray`]'s forward and backward passes.
fn component(
    mu: &Array2<f64>,
    q: &Array2<f64>,
    l: &Array2<f64>,
    x: &Array2<f64>,
    tri: &Array2<f64>,
    ik: usize,
) -> (Array2<f64>, Array2<f64>, Array1<f64>, Array2<f64>) {
    let d = x.ncols();
    let xc = x - &mu.row(ik);
    let lk = tri.dot(&l.row(ik)).into_shape_with_order((d, d)).unwrap();
    let e = q.row(ik).mapv(f64::exp);
    let qx = &xc * &e + xc.dot(&lk.t());
    (xc, lk, e, qx)
}

/// The constant inputs of [`objective_ndarray`] for dimension `d` and `k` components: the
/// packing matrix `tri` (`d*d x d(d-1)/2`) and the constant term.
pub fn ndarray_constants(d: usize, k: usize, n: usize, w: Wishart) -> (Array2<f64>, f64) {
    let l_sz = d * (d - 1) / 2;
    let mut tri = Array2::zeros((d * d, l_sz));
    let mut p = 0;
    for i in 0..d {
        for j in i + 1..d {
            tri[[j * d + i, p]] = 1.0;
            p += 1;
        }
    }
    (tri, constant_term(d, k, n, w))
}

/// The objective's terms that no parameter changes: `-n d/2 ln 2 pi + k C`, with `C` the
/// Wishart prior's constant.
pub fn constant_term(d: usize, k: usize, n: usize, w: Wishart) -> f64 {
    -((n * d) as f64) * 0.5 * (2.0 * std::f64::consts::PI).ln()
        + k as f64 * gradbench_autodiff::evals::gmm::wishart_constant(d, w.gamma, w.m)
}

/// A deterministic GMM problem (smooth waves of moderate size): the flat parameters and
/// points, as the loop version takes them.
pub struct Problem {
    pub d: usize,
    pub k: usize,
    pub n: usize,
    pub alpha: Vec<f64>,
    pub mu: Vec<f64>,
    pub q: Vec<f64>,
    pub l: Vec<f64>,
    pub x: Vec<f64>,
}

/// The arrays of the ndarray version: `alpha`, then `mu`, `q`, `l` and `x` as matrices.
pub type Arrays = (
    Array1<f64>,
    Array2<f64>,
    Array2<f64>,
    Array2<f64>,
    Array2<f64>,
);

impl Problem {
    /// `d` dimensions, `k` components, `n` points; `l_scale` scales the off-diagonal factors.
    pub fn new(d: usize, k: usize, n: usize, l_scale: f64) -> Problem {
        let wave = |len: usize, phase: f64, scale: f64| -> Vec<f64> {
            (0..len)
                .map(|i| scale * (0.7 * i as f64 + phase).sin())
                .collect()
        };
        let l_sz = d * (d - 1) / 2;
        Problem {
            d,
            k,
            n,
            alpha: wave(k, 0.1, 1.0),
            mu: wave(k * d, 0.2, 1.0),
            q: wave(k * d, 0.3, 0.3),
            l: wave(k * l_sz, 0.4, l_scale),
            x: wave(n * d, 0.5, 1.0),
        }
    }

    pub fn arrays(&self) -> Arrays {
        let (d, k, n) = (self.d, self.k, self.n);
        let a2 = |v: &[f64], r: usize, c: usize| {
            Array2::from_shape_vec((r, c), v.to_vec()).expect("sizes match")
        };
        (
            Array1::from_vec(self.alpha.clone()),
            a2(&self.mu, k, d),
            a2(&self.q, k, d),
            a2(&self.l, k, d * (d - 1) / 2),
            a2(&self.x, n, d),
        )
    }
}
