//! The same workloads for the peer crates: num-dual (forward mode, one pass per input), and
//! the tape-based reverse-mode crates `reverse` and `ad_trait`. Each function is the
//! annotated one with the number type swapped; [`lj!`] and [`rosenbrock!`] stamp the one
//! body out for each type.
// `x = x + ..`: not every peer number type implements `+=`.
#![allow(clippy::assign_op_pattern, clippy::needless_range_loop)]

use gradbench_autodiff::evals::gmm::Wishart;
use num_dual::Dual64;

/// Extended Rosenbrock over any number type; `c` makes a constant of it.
macro_rules! rosenbrock {
    ($x:expr, $c:expr, $zero:expr) => {{
        let (x, c) = ($x, $c);
        let mut s = $zero;
        for i in 0..x.len() - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = c(1.0) - x[i];
            s = s + c(100.0) * a * a + b * b;
        }
        s
    }};
}

/// The Lennard-Jones energy over any number type; `c` makes a constant of it, `zero` starts
/// the sum.
macro_rules! lj {
    ($x:expr, $c:expr, $zero:expr) => {{
        let (x, c) = ($x, $c);
        let n = x.len() / 3;
        let mut e = $zero;
        for i in 0..n {
            for j in (i + 1)..n {
                let dx = x[3 * i] - x[3 * j];
                let dy = x[3 * i + 1] - x[3 * j + 1];
                let dz = x[3 * i + 2] - x[3 * j + 2];
                let r2 = dx * dx + dy * dy + dz * dz;
                let s6 = c(1.0) / (r2 * r2 * r2);
                e = e + c(4.0) * (s6 * s6 - s6);
            }
        }
        e
    }};
}

/// Forward mode: one pass per input, each seeding one direction.
fn num_dual_gradient(x: &[f64], f: impl Fn(&[Dual64]) -> Dual64) -> Vec<f64> {
    let mut xd: Vec<Dual64> = x.iter().map(|&v| Dual64::from_re(v)).collect();
    (0..x.len())
        .map(|i| {
            xd[i].eps = 1.0;
            let d = f(&xd).eps;
            xd[i].eps = 0.0;
            d
        })
        .collect()
}

pub fn rosenbrock_num_dual(x: &[f64]) -> Vec<f64> {
    num_dual_gradient(x, |x| rosenbrock!(x, Dual64::from_re, Dual64::from_re(0.0)))
}

pub fn lennard_jones_num_dual(x: &[f64]) -> Vec<f64> {
    num_dual_gradient(x, |x| lj!(x, Dual64::from_re, Dual64::from_re(0.0)))
}

/// `reverse`: a fresh tape per gradient.
fn reverse_gradient(
    x: &[f64],
    f: impl for<'a> Fn(&[reverse::Var<'a>]) -> reverse::Var<'a>,
) -> Vec<f64> {
    let tape = reverse::Tape::new();
    let vars = tape.add_vars(x);
    let out = f(&vars);
    use reverse::Gradient;
    out.grad().wrt(&vars)
}

pub fn rosenbrock_reverse(x: &[f64]) -> Vec<f64> {
    reverse_gradient(x, |x| rosenbrock!(x, |v: f64| v, x[0] * 0.0))
}

pub fn lennard_jones_reverse(x: &[f64]) -> Vec<f64> {
    reverse_gradient(x, |x| lj!(x, |v: f64| v, x[0] * 0.0))
}

/// `ad_trait`'s reverse mode (`adr`): variables on its global graph, reset per gradient.
fn ad_trait_gradient(
    x: &[f64],
    f: impl Fn(&[ad_trait::reverse_ad::adr::adr]) -> ad_trait::reverse_ad::adr::adr,
) -> Vec<f64> {
    use ad_trait::reverse_ad::adr::adr;
    let vars: Vec<adr> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| adr::new_variable(v, i == 0))
        .collect();
    let out = f(&vars);
    let grad = out.get_backwards_mode_grad();
    vars.iter().map(|v| grad.wrt(v)).collect()
}

pub fn rosenbrock_ad_trait(x: &[f64]) -> Vec<f64> {
    use ad_trait::reverse_ad::adr::adr;
    use ad_trait::AD;
    ad_trait_gradient(x, |x| rosenbrock!(x, adr::constant, adr::constant(0.0)))
}

pub fn lennard_jones_ad_trait(x: &[f64]) -> Vec<f64> {
    use ad_trait::reverse_ad::adr::adr;
    use ad_trait::AD;
    ad_trait_gradient(x, |x| lj!(x, adr::constant, adr::constant(0.0)))
}

/// Log-sum-exp of a slice, shifted by its maximum.
macro_rules! lse {
    ($v:expr, $zero:expr) => {{
        let v = $v;
        let mut mx = v[0];
        for &e in &v[1..] {
            if e > mx {
                mx = e;
            }
        }
        let mut s = $zero;
        for &e in v {
            s = s + (e - mx).exp();
        }
        s.ln() + mx
    }};
}

/// The GMM objective (the GradBench tool's, constants included) over any number type; `c`
/// makes a constant, `zero` a zero of it. Inputs are slices of that type, data `x` is `f64`.
macro_rules! gmm {
    ($t:ty, $alpha:expr, $mu:expr, $q:expr, $l:expr, $x:expr, ($d:expr, $k:expr, $n:expr), $w:expr, $c:expr, $zero:expr) => {{
        let (alpha, mu, q, l, x, c, zero) = ($alpha, $mu, $q, $l, $x, $c, $zero);
        let (d, k, n, w): (usize, usize, usize, Wishart) = ($d, $k, $n, $w);
        let l_sz = d * (d - 1) / 2;
        let qdiag: Vec<$t> = q.iter().map(|v| v.exp()).collect();
        let sum_qs: Vec<$t> = (0..k)
            .map(|ik| {
                let mut s = zero;
                for j in 0..d {
                    s = s + q[ik * d + j];
                }
                s
            })
            .collect();
        let mut slse = zero;
        let mut main_term = vec![zero; k];
        for ix in 0..n {
            for ik in 0..k {
                let mut sq = zero;
                for j in 0..d {
                    let mut s = qdiag[ik * d + j] * (c(x[ix * d + j]) - mu[ik * d + j]);
                    for i in 0..j {
                        s = s + l[ik * l_sz + i * (2 * d - i - 1) / 2 + j - i - 1]
                            * (c(x[ix * d + i]) - mu[ik * d + i]);
                    }
                    sq = sq + s * s;
                }
                main_term[ik] = alpha[ik] + sum_qs[ik] - c(0.5) * sq;
            }
            slse = slse + lse!(&main_term[..], zero);
        }
        let mut prior = zero;
        for ik in 0..k {
            let mut frob = zero;
            for j in 0..d {
                frob = frob + qdiag[ik * d + j] * qdiag[ik * d + j];
            }
            for j in 0..l_sz {
                frob = frob + l[ik * l_sz + j] * l[ik * l_sz + j];
            }
            prior = prior + c(0.5 * w.gamma * w.gamma) * frob - c(w.m as f64) * sum_qs[ik];
        }
        let constant = crate::gmm::constant_term(d, k, n, w);
        slse - c(n as f64) * lse!(alpha, zero) - prior + c(constant)
    }};
}

/// Concatenated `(alpha, mu, q, l)` and where each part starts.
fn gmm_params(alpha: &[f64], mu: &[f64], q: &[f64], l: &[f64]) -> (Vec<f64>, [usize; 4]) {
    let a = alpha.len();
    let starts = [
        a,
        a + mu.len(),
        a + mu.len() + q.len(),
        a + mu.len() + q.len() + l.len(),
    ];
    ([alpha, mu, q, l].concat(), starts)
}

#[allow(clippy::too_many_arguments)]
pub fn gmm_reverse(
    alpha: &[f64],
    mu: &[f64],
    q: &[f64],
    l: &[f64],
    x: &[f64],
    d: usize,
    k: usize,
    n: usize,
    w: Wishart,
) -> Vec<f64> {
    let (p, s) = gmm_params(alpha, mu, q, l);
    reverse_gradient(&p, |v| {
        gmm!(
            reverse::Var,
            &v[..s[0]],
            &v[s[0]..s[1]],
            &v[s[1]..s[2]],
            &v[s[2]..],
            x,
            (d, k, n),
            w,
            |v: f64| v,
            v[0] * 0.0
        )
    })
}

#[allow(clippy::too_many_arguments)]
pub fn gmm_ad_trait(
    alpha: &[f64],
    mu: &[f64],
    q: &[f64],
    l: &[f64],
    x: &[f64],
    d: usize,
    k: usize,
    n: usize,
    w: Wishart,
) -> Vec<f64> {
    use ad_trait::nalgebra::ComplexField;
    use ad_trait::reverse_ad::adr::adr;
    use ad_trait::AD;
    let (p, s) = gmm_params(alpha, mu, q, l);
    ad_trait_gradient(&p, |v| {
        gmm!(
            adr,
            &v[..s[0]],
            &v[s[0]..s[1]],
            &v[s[1]..s[2]],
            &v[s[2]..],
            x,
            (d, k, n),
            w,
            adr::constant,
            adr::constant(0.0)
        )
    })
}

/// The MLP loss in candle (CPU): inputs, labels and the four weights as variables.
pub struct CandleMlp {
    x: candle_core::Tensor,
    y: candle_core::Tensor,
    weights: [candle_core::Var; 4],
}

impl CandleMlp {
    /// The same problem as `mlp::problem`, copied into candle tensors.
    pub fn new(p: &crate::mlp::Problem) -> candle_core::Result<CandleMlp> {
        use candle_core::{Device, Tensor, Var};
        let cpu = Device::Cpu;
        let (x, y, w1, b1, w2, b2) = p;
        let t2 = |a: &autodiff::ndarray::Array2<f64>| {
            Tensor::from_slice(&a.iter().copied().collect::<Vec<f64>>(), a.dim(), &cpu)
        };
        let v2 = |a: &autodiff::ndarray::Array2<f64>| {
            Var::from_slice(&a.iter().copied().collect::<Vec<f64>>(), a.dim(), &cpu)
        };
        let v1 = |a: &autodiff::ndarray::Array1<f64>| {
            Var::from_slice(&a.iter().copied().collect::<Vec<f64>>(), a.len(), &cpu)
        };
        Ok(CandleMlp {
            x: t2(x)?,
            y: t2(y)?,
            weights: [v2(w1)?, v1(b1)?, v2(w2)?, v1(b2)?],
        })
    }

    /// The gradient with respect to `(w1, b1, w2, b2)`, by candle's autograd.
    pub fn gradient(&self) -> candle_core::Result<Vec<candle_core::Tensor>> {
        let [w1, b1, w2, b2] = &self.weights;
        let h = self.x.matmul(w1)?.broadcast_add(b1)?.tanh()?;
        let logits = h.matmul(w2)?.broadcast_add(b2)?;
        // log-softmax; the shift is a constant (it cancels), so it is detached.
        let shifted = logits.broadcast_sub(&logits.max_keepdim(1)?.detach())?;
        let log_p = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(1)?.log()?)?;
        let batch = self.x.dims()[0] as f64;
        let loss = (log_p * &self.y)?.sum_all()?.affine(-1.0 / batch, 0.0)?;
        let grads = loss.backward()?;
        self.weights
            .iter()
            .map(|w| {
                grads
                    .get(w)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))
            })
            .collect()
    }
}

/// Candle's gradients, flattened in `(w1, b1, w2, b2)` order.
pub fn flatten_candle(g: &[candle_core::Tensor]) -> Vec<f64> {
    g.iter()
        .flat_map(|t| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f64>())
                .unwrap_or_default()
        })
        .collect()
}

/// The GMM objective in candle (CPU), the ndarray formulation's operations: per component
/// the centred points, `Q (x - mu)` as a broadcast product plus a matrix product with the
/// triangular factor (from the packed row by the constant matrix `tri`), then log-sum-exp over
/// components of the concatenated `n x k` main terms.
pub struct CandleGmm {
    x: candle_core::Tensor,
    tri_t: candle_core::Tensor,
    params: [candle_core::Var; 4],
    d: usize,
    wishart: Wishart,
    constant: f64,
}

impl CandleGmm {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        alpha: &[f64],
        mu: &[f64],
        q: &[f64],
        l: &[f64],
        x: &[f64],
        (d, k, n): (usize, usize, usize),
        wishart: Wishart,
    ) -> candle_core::Result<CandleGmm> {
        use candle_core::{Device, Tensor, Var};
        let cpu = Device::Cpu;
        let l_sz = d * (d - 1) / 2;
        let (tri, constant) = crate::gmm::ndarray_constants(d, k, n, wishart);
        let tri_t = Tensor::from_slice(
            &tri.t().iter().copied().collect::<Vec<f64>>(),
            (l_sz, d * d),
            &cpu,
        )?;
        Ok(CandleGmm {
            x: Tensor::from_slice(x, (n, d), &cpu)?,
            tri_t,
            params: [
                Var::from_slice(alpha, k, &cpu)?,
                Var::from_slice(mu, (k, d), &cpu)?,
                Var::from_slice(q, (k, d), &cpu)?,
                Var::from_slice(l, (k, l_sz), &cpu)?,
            ],
            d,
            wishart,
            constant,
        })
    }

    /// `(d alpha, d mu, d q, d l)` flattened, by candle's autograd.
    pub fn gradient(&self) -> candle_core::Result<Vec<candle_core::Tensor>> {
        use candle_core::Tensor;
        let [alpha, mu, q, l] = &self.params;
        let (d, k, n) = (self.d, alpha.dims()[0], self.x.dims()[0]);
        let lse_rows = |m: &Tensor| -> candle_core::Result<Tensor> {
            let mx = m.max_keepdim(1)?.detach();
            m.broadcast_sub(&mx)?.exp()?.sum_keepdim(1)?.log()? + mx
        };
        let mut columns = Vec::with_capacity(k);
        for ik in 0..k {
            let xc = self.x.broadcast_sub(&mu.narrow(0, ik, 1)?)?;
            let qk = q.narrow(0, ik, 1)?;
            let lk = l.narrow(0, ik, 1)?.matmul(&self.tri_t)?.reshape((d, d))?;
            let qx = (xc.broadcast_mul(&qk.exp()?)? + xc.matmul(&lk.t()?)?)?;
            let shift = (alpha.narrow(0, ik, 1)? + qk.sum_all()?.reshape(1)?)?;
            let t = qx
                .sqr()?
                .sum_keepdim(1)?
                .affine(-0.5, 0.0)?
                .broadcast_add(&shift)?;
            columns.push(t);
        }
        let main = Tensor::cat(&columns, 1)?;
        let lse_points = lse_rows(&main)?.sum_all()?;
        let lse_alpha = lse_rows(&alpha.reshape((1, k))?)?.sum_all()?;
        let g2 = self.wishart.gamma * self.wishart.gamma;
        let frobenius = (q.exp()?.sqr()?.sum_all()? + l.sqr()?.sum_all()?)?;
        let prior = (frobenius.affine(0.5 * g2, 0.0)?
            - q.sum_all()?.affine(self.wishart.m as f64, 0.0)?)?;
        let value = ((lse_points - lse_alpha.affine(n as f64, 0.0)?)? - prior)?
            .affine(1.0, self.constant)?;
        let grads = value.backward()?;
        self.params
            .iter()
            .map(|p| {
                grads
                    .get(p)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))
            })
            .collect()
    }
}
