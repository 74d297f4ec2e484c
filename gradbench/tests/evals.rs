//! Each eval's derivative against central finite differences on small inputs, and each
//! primal against values computed independently.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]
use gradbench_autodiff::evals::{det, gmm, hello, llsq, lse, lstm, ode};

fn wave(len: usize, phase: f64, scale: f64) -> Vec<f64> {
    (0..len)
        .map(|i| scale * (0.7 * i as f64 + phase).sin())
        .collect()
}

/// Central differences of `f` at `x`, step 1e-6.
fn fd(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    autodiff::check::central_difference(&f, x, 1e-6)
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

#[test]
fn hello_square_and_its_derivative() {
    for x in [-2.5, 0.0, 1.0, 3.0] {
        assert_eq!(hello::square(x), x * x);
        assert_eq!(hello::square_grad(x), 2.0 * x);
    }
}

#[test]
fn lse_primal_and_gradient() {
    let x = wave(7, 0.3, 2.0);
    let naive = x.iter().map(|v| v.exp()).sum::<f64>().ln();
    assert!((lse::lse(&x) - naive).abs() < 1e-12);
    // The gradient is the softmax.
    let softmax: Vec<f64> = x.iter().map(|v| (v - naive).exp()).collect();
    assert_close("lse gradient", &lse::lse_grad(&x), &softmax, 1e-12);
    assert_close("lse gradient", &lse::lse_grad(&x), &fd(lse::lse, &x), 1e-7);
}

#[test]
fn llsq_primal_and_gradient() {
    let (x, n) = (wave(4, 0.1, 0.5), 7);
    // Independently: residuals r_i = sign(t_i) - sum_j x_j t_i^j at t_i = -1 + 2i/(n-1).
    let mut want = 0.0;
    for i in 0..n {
        let t = -1.0 + 2.0 * i as f64 / (n as f64 - 1.0);
        let p: f64 = x
            .iter()
            .enumerate()
            .map(|(j, c)| c * t.powi(j as i32))
            .sum();
        want += (t.signum() * (t != 0.0) as i32 as f64 - p).powi(2) / 2.0;
    }
    assert!((llsq::llsq(&x, n) - want).abs() < 1e-12);
    let g = llsq::llsq_grad(&x, n);
    assert_close("llsq gradient", &g, &fd(|x| llsq::llsq(x, n), &x), 1e-7);
}

#[test]
fn ode_primal_and_gradient() {
    // For n <= 4 the solution is a polynomial of degree <= 4 in t, which fourth-order
    // Runge-Kutta integrates exactly: y_i(2) = x_0 .. x_i 2^(i+1) / (i+1)!.
    let x = [0.5, 0.6, 0.7, 0.8];
    let mut exact = Vec::new();
    let (mut prod, mut fact, mut pow) = (1.0, 1.0, 1.0);
    for (i, xi) in x.iter().enumerate() {
        prod *= xi;
        fact *= (i + 1) as f64;
        pow *= 2.0;
        exact.push(prod * pow / fact);
    }
    assert_close("ode primal", &ode::primal(&x, 3), &exact, 1e-12);
    // GradBench's reference gradient of the last component: y_r / x_i.
    let last = exact[3];
    let want: Vec<f64> = x.iter().map(|xi| last / xi).collect();
    assert_close("ode gradient", &ode::last_grad(&x, 3), &want, 1e-12);
    // And, past the exact range, finite differences.
    let x = wave(9, 0.4, 0.5);
    assert_close(
        "ode gradient",
        &ode::last_grad(&x, 5),
        &fd(|x| ode::last(x, 5), &x),
        1e-7,
    );
}

/// ADBench's GMM objective, written a second time the way the C++ reference is: explicit
/// `Qdiags`, `xcentered`, `Qxcentered` and `main_term` arrays.
fn gmm_reference(
    alpha: &[f64],
    mu: &[f64],
    q: &[f64],
    l: &[f64],
    x: &[f64],
    (d, k, n): (usize, usize, usize),
    gamma: f64,
    m: usize,
) -> f64 {
    let lse = |v: &[f64]| {
        let mx = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        v.iter().map(|a| (a - mx).exp()).sum::<f64>().ln() + mx
    };
    let l_sz = d * (d - 1) / 2;
    let qdiags: Vec<f64> = q.iter().map(|v| v.exp()).collect();
    let sum_qs: Vec<f64> = (0..k).map(|i| q[i * d..(i + 1) * d].iter().sum()).collect();
    let mut slse = 0.0;
    for ix in 0..n {
        let mut main_term = vec![0.0; k];
        for ik in 0..k {
            let xc: Vec<f64> = (0..d).map(|j| x[ix * d + j] - mu[ik * d + j]).collect();
            let mut qx: Vec<f64> = (0..d).map(|j| qdiags[ik * d + j] * xc[j]).collect();
            let mut idx = 0;
            for i in 0..d {
                for j in i + 1..d {
                    qx[j] += l[ik * l_sz + idx] * xc[i];
                    idx += 1;
                }
            }
            main_term[ik] = alpha[ik] + sum_qs[ik] - 0.5 * qx.iter().map(|v| v * v).sum::<f64>();
        }
        slse += lse(&main_term);
    }
    // The Wishart prior: C uses the multivariate log-gamma, through ln Γ by Stirling's series
    // (independent of the Lanczos form in the tool).
    fn ln_gamma(x: f64) -> f64 {
        // Shift up, then Stirling.
        let (mut x, mut acc) = (x, 0.0);
        while x < 10.0 {
            acc -= x.ln();
            x += 1.0;
        }
        let pi = std::f64::consts::PI;
        acc + (x - 0.5) * x.ln() - x + 0.5 * (2.0 * pi).ln() + 1.0 / (12.0 * x)
            - 1.0 / (360.0 * x.powi(3))
            + 1.0 / (1260.0 * x.powi(5))
    }
    let nn = (d + m + 1) as f64;
    let mut lmg = 0.25 * d as f64 * (d as f64 - 1.0) * std::f64::consts::PI.ln();
    for j in 1..=d {
        lmg += ln_gamma(0.5 * nn + 0.5 * (1.0 - j as f64));
    }
    let c = nn * d as f64 * (gamma.ln() - 0.5 * 2f64.ln()) - lmg;
    let mut prior = 0.0;
    for ik in 0..k {
        let frob: f64 = qdiags[ik * d..(ik + 1) * d]
            .iter()
            .map(|v| v * v)
            .sum::<f64>()
            + l[ik * l_sz..(ik + 1) * l_sz]
                .iter()
                .map(|v| v * v)
                .sum::<f64>();
        prior += 0.5 * gamma * gamma * frob - m as f64 * sum_qs[ik];
    }
    -((n * d) as f64) * 0.5 * (2.0 * std::f64::consts::PI).ln() + slse - n as f64 * lse(alpha)
        + (k as f64 * c - prior)
}

#[test]
fn gmm_objective_and_jacobian() {
    for (d, k, n, gamma, m) in [(3, 4, 5, 1.0, 0), (2, 3, 6, 0.7, 2), (4, 2, 3, 1.3, 1)] {
        let l_sz = d * (d - 1) / 2;
        let alpha = wave(k, 0.1, 1.0);
        let mu = wave(k * d, 0.2, 1.0);
        let q = wave(k * d, 0.3, 0.3);
        let l = wave(k * l_sz, 0.4, 1.0);
        let x = wave(n * d, 0.5, 1.0);
        let w = gmm::Wishart { gamma, m };
        let got = gmm::objective(&alpha, &mu, &q, &l, &x, d, k, n, w);
        let want = gmm_reference(&alpha, &mu, &q, &l, &x, (d, k, n), gamma, m);
        assert!(
            (got - want).abs() < 1e-9 * want.abs().max(1.0),
            "{got} vs {want}"
        );

        let (ga, gm, gq, gl) = gmm::objective_grad(&alpha, &mu, &q, &l, &x, d, k, n, w);
        let f = |a: &[f64], mu_: &[f64], q_: &[f64], l_: &[f64]| {
            gmm::objective(a, mu_, q_, l_, &x, d, k, n, w)
        };
        assert_close("d alpha", &ga, &fd(|a| f(a, &mu, &q, &l), &alpha), 1e-6);
        assert_close("d mu", &gm, &fd(|v| f(&alpha, v, &q, &l), &mu), 1e-6);
        assert_close("d q", &gq, &fd(|v| f(&alpha, &mu, v, &l), &q), 1e-6);
        assert_close("d l", &gl, &fd(|v| f(&alpha, &mu, &q, v), &l), 1e-6);
    }
}

/// The LSTM loss written a second time, with per-layer hidden and cell vectors as ADBench's
/// structures hold them.
fn lstm_reference(
    main: &[f64],
    extra: &[f64],
    state: &[f64],
    seq: &[f64],
    l: usize,
    c: usize,
    b: usize,
) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut hidden: Vec<Vec<f64>> = (0..l)
        .map(|i| state[2 * b * i..2 * b * i + b].to_vec())
        .collect();
    let mut cell: Vec<Vec<f64>> = (0..l)
        .map(|i| state[2 * b * i + b..2 * b * (i + 1)].to_vec())
        .collect();
    let mut total = 0.0;
    for t in 0..c - 1 {
        let mut input: Vec<f64> = (0..b).map(|i| seq[t * b + i] * extra[i]).collect();
        for layer in 0..l {
            let p = &main[8 * b * layer..8 * b * (layer + 1)];
            let (w, bias) = (&p[..4 * b], &p[4 * b..]);
            for i in 0..b {
                let forget = sigmoid(input[i] * w[i] + bias[i]);
                let ingate = sigmoid(hidden[layer][i] * w[b + i] + bias[b + i]);
                let outgate = sigmoid(input[i] * w[2 * b + i] + bias[2 * b + i]);
                let change = (hidden[layer][i] * w[3 * b + i] + bias[3 * b + i]).tanh();
                cell[layer][i] = cell[layer][i] * forget + ingate * change;
                hidden[layer][i] = outgate * cell[layer][i].tanh();
            }
            input = hidden[layer].clone();
        }
        let ypred: Vec<f64> = (0..b)
            .map(|i| input[i] * extra[b + i] + extra[2 * b + i])
            .collect();
        let lse = (ypred.iter().map(|v| v.exp()).sum::<f64>() + 2.0).ln();
        for i in 0..b {
            total += seq[(t + 1) * b + i] * (ypred[i] - lse);
        }
    }
    -total / ((c - 1) * b) as f64
}

#[test]
fn lstm_objective_and_jacobian() {
    for (l, c, b) in [(1, 3, 2), (2, 4, 3)] {
        let main = wave(8 * l * b, 0.1, 0.8);
        let extra = wave(3 * b, 0.2, 0.9);
        let state = wave(2 * l * b, 0.3, 0.5);
        let seq = wave(c * b, 0.4, 1.0);
        let got = lstm::objective(&main, &extra, &state, &seq, l, c, b);
        let want = lstm_reference(&main, &extra, &state, &seq, l, c, b);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        let (g_main, g_extra) = lstm::objective_grad(&main, &extra, &state, &seq, l, c, b);
        let fd_main = fd(|m| lstm::objective(m, &extra, &state, &seq, l, c, b), &main);
        let fd_extra = fd(|e| lstm::objective(&main, e, &state, &seq, l, c, b), &extra);
        assert_close("d main", &g_main, &fd_main, 1e-7);
        assert_close("d extra", &g_extra, &fd_extra, 1e-7);
    }
}

/// The reference's algorithm, independently: expansion by minors along the first row,
/// recursively, on explicit copies of the minors.
fn det_by_minors(a: &[f64], n: usize) -> f64 {
    if n == 1 {
        return a[0];
    }
    let mut total = 0.0;
    for j in 0..n {
        let minor: Vec<f64> = (1..n)
            .flat_map(|r| (0..n).filter(move |&c| c != j).map(move |c| (r, c)))
            .map(|(r, c)| a[r * n + c])
            .collect();
        let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
        total += sign * a[j] * det_by_minors(&minor, n - 1);
    }
    total
}

#[test]
fn det_primal_and_gradient() {
    for n in 1..=6 {
        let a = wave(n * n, 0.3 * n as f64, 1.0);
        let want = det_by_minors(&a, n);
        assert!(
            (det::det(&a, n) - want).abs() <= 1e-12 * want.abs().max(1.0),
            "ell = {n}"
        );
        // d det / d a_ij = (-1)^(i+j) det(minor_ij), each minor by the recursion above.
        let mut cofactors = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let minor: Vec<f64> = (0..n)
                    .filter(|&r| r != i)
                    .flat_map(|r| (0..n).filter(move |&c| c != j).map(move |c| (r, c)))
                    .map(|(r, c)| a[r * n + c])
                    .collect();
                let sign = if (i + j) % 2 == 0 { 1.0 } else { -1.0 };
                cofactors[i * n + j] = if n == 1 {
                    1.0
                } else {
                    sign * det_by_minors(&minor, n - 1)
                };
            }
        }
        let grad = det::det_grad(&a, n);
        assert_close("det gradient vs cofactors", &grad, &cofactors, 1e-12);
        if n <= 4 {
            assert_close(
                "det gradient vs FD",
                &grad,
                &fd(|v| det::det(v, n), &a),
                1e-7,
            );
        }
    }
}
