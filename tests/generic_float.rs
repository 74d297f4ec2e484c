//! Functions generic over their float type, `fn f<F: Real>(x: F) -> F`: written once, the
//! gradient instantiated for `f64` and for `f32`. Each against the analytic gradient and
//! central finite differences (in `f64`), and the `f32` instance against the `f64` one.
#![allow(clippy::needless_range_loop)]
use autodiff::{differentiate, ndarray, Differentiable, Real};
use ndarray::Array1;

mod common;
use common::{assert_close, fd};

/// Scalar math of every kind, constants written `F::from_f64`.
#[differentiate]
fn mixed<F: Real>(x: F, y: F) -> F {
    let a = x.sqrt() * y.powi(3) + x.ln() / y.tanh();
    let b = F::cbrt(x).max(y).to_degrees() + x.hypot(y) - F::atan2(y, x);
    a.powf(F::from_f64(1.5)) + (x * y).exp() + b * F::from_f64(0.25) + (x - y).abs()
}

fn mixed_by_hand(x: f64, y: f64) -> [f64; 2] {
    let (s, t) = (x.sqrt(), y.tanh());
    let a = s * y.powi(3) + x.ln() / t;
    let da = 1.5 * a.sqrt();
    let dadx = 0.5 / s * y.powi(3) + 1.0 / (x * t);
    let dady = 3.0 * s * y * y - x.ln() / (t * t) * (1.0 - t * t);
    let e = (x * y).exp();
    // cbrt(x) < y at the test points: max is y.
    assert!(x.cbrt() < y);
    let deg = 180.0 / std::f64::consts::PI;
    let h = x.hypot(y);
    let r2 = x * x + y * y;
    let sign = (x - y).signum();
    [
        da * dadx + y * e + 0.25 * (x / h + y / r2) + sign,
        da * dady + x * e + 0.25 * (deg + y / h - x / r2) - sign,
    ]
}

/// The extended Rosenbrock function over a slice, with a `where` clause.
#[differentiate]
fn rosenbrock<F>(x: &[F]) -> F
where
    F: Real,
{
    let mut s = F::zero();
    for i in 0..x.len() / 2 {
        let t = x[2 * i + 1] - x[2 * i] * x[2 * i];
        let u = F::one() - x[2 * i];
        s += F::from_f64(100.0) * t * t + u * u;
    }
    s
}

fn rosenbrock_by_hand(x: &[f64]) -> Vec<f64> {
    let mut g = vec![0.0; x.len()];
    for i in 0..x.len() / 2 {
        let t = x[2 * i + 1] - x[2 * i] * x[2 * i];
        g[2 * i] = -400.0 * t * x[2 * i] - 2.0 * (1.0 - x[2 * i]);
        g[2 * i + 1] = 200.0 * t;
    }
    g
}

/// A pair energy over points, calling another generic function by its pullback.
#[differentiate]
fn pair<F: Real>(r2: F) -> F {
    let s6 = (r2 * r2 * r2).recip();
    F::from_f64(4.0) * (s6 * s6 - s6)
}

#[differentiate]
fn cluster<F: Real>(p: &[[F; 3]]) -> F {
    let mut e = F::zero();
    for i in 0..p.len() {
        for j in i + 1..p.len() {
            let mut r2 = F::zero();
            for k in 0..3 {
                let d = p[i][k] - p[j][k];
                r2 += d * d;
            }
            e += pair(r2);
        }
    }
    e
}

/// A buffer, iterator sums and an early return.
#[differentiate]
fn smoothed<F: Real>(x: &[F], steps: usize) -> F {
    let n = x.len();
    let mut u = x.to_vec();
    let mut next = vec![F::zero(); n];
    for _ in 0..steps {
        for i in 0..n {
            let l = u[(i + n - 1) % n];
            let r = u[(i + 1) % n];
            next[i] = F::from_f64(0.5) * u[i] + F::from_f64(0.25) * (l + r);
        }
        std::mem::swap(&mut u, &mut next);
    }
    if n == 0 {
        return F::zero();
    }
    let mean = u.iter().sum::<F>() / F::from_usize(n);
    u.iter().map(|v| (*v - mean).powi(2)).sum::<F>() + x.iter().map(|v| v.sin()).sum::<F>()
}

/// ndarray operations on a generic element type.
#[differentiate]
fn softplus_sum<F: Real>(x: &Array1<F>, w: &Array1<F>) -> F {
    let z = x * w;
    z.mapv(|v| (F::one() + v.exp()).ln()).sum() + x.dot(w) * F::from_f64(0.5)
}

/// A struct generic over its float, differentiated with respect to its fields.
#[derive(Differentiable, Clone, Debug)]
pub struct Line<F: Real> {
    pub w: F,
    pub b: F,
    pub offsets: Vec<F>,
}

#[differentiate(wrt(m))]
fn squared_error<F: Real>(m: &Line<F>, x: &[F]) -> F {
    let mut s = F::zero();
    for i in 0..x.len() {
        let r = m.w * x[i] + m.b + m.offsets[i];
        s += r * r;
    }
    s
}

/// A float named by a type alias, `float = Scalar`: literals as usual (the alias is `f64`).
type Scalar = f64;

#[differentiate(float = Scalar)]
fn aliased(x: &[Scalar], a: &Array1<Scalar>) -> Scalar {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += 2.0 * x[i].sin() + x[i] * x[i] / 3.0;
    }
    s + (a * 2.0 + 1.0).mapv(|v| v.exp()).sum() * 0.5
}

/// A method of an `impl` generic over the float, which the method's own generics do not name:
/// `float = F`.
pub struct Spring<F> {
    pub k: F,
}

impl<F: Real> Spring<F> {
    #[differentiate(float = F)]
    pub fn energy(&self, x: &[F]) -> F {
        let mut e = F::zero();
        for i in 1..x.len() {
            e += self.k * (x[i] - x[i - 1]).powi(2) * F::from_f64(0.5);
        }
        e
    }
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn scalar_math_matches_the_analytic_gradient_in_both_precisions() {
    for (x, y) in [(0.7, 1.3), (2.0, 1.9), (1.4, 1.6)] {
        let (dx, dy) = mixed_grad(x, y);
        let want = mixed_by_hand(x, y);
        assert_close(&[dx, dy], &want, 1e-10);
        let f = |v: &[f64]| mixed(v[0], v[1]);
        assert_close(&[dx, dy], &fd(&f, &[x, y]), 1e-6);
        let (dx32, dy32) = mixed_grad(x as f32, y as f32);
        assert_close(&widen(&[dx32, dy32]), &want, 1e-4);
        let (v32, _) = mixed_value_and_grad(x as f32, y as f32);
        assert!(((v32 as f64) - mixed(x, y)).abs() < 1e-4 * mixed(x, y).abs());
    }
}

#[test]
fn slice_loops_match_the_analytic_gradient_in_both_precisions() {
    let x: Vec<f64> = (0..10).map(|i| 0.3 + 0.1 * i as f64).collect();
    let g = rosenbrock_grad(&x);
    assert_close(&g, &rosenbrock_by_hand(&x), 1e-12);
    assert_close(&g, &fd(&|v| rosenbrock(v), &x), 1e-6);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let g32 = rosenbrock_grad(&x32);
    assert_close(&widen(&g32), &g, 1e-4);
}

#[test]
fn points_and_calls_match_finite_differences() {
    let p = vec![
        [0.0, 0.0, 0.0],
        [1.1, 0.1, 0.0],
        [0.2, 1.0, 0.1],
        [0.9, 1.2, 0.8],
    ];
    let g = cluster_grad(&p);
    let flat: Vec<f64> = p.iter().flatten().copied().collect();
    let f = |v: &[f64]| {
        let q: Vec<[f64; 3]> = v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        cluster(&q)
    };
    let got: Vec<f64> = g.iter().flatten().copied().collect();
    assert_close(&got, &fd(&f, &flat), 1e-6);
    // The forces sum to zero (translation invariance).
    for k in 0..3 {
        assert!(g.iter().map(|gi| gi[k]).sum::<f64>().abs() < 1e-9);
    }
    let p32: Vec<[f32; 3]> = p.iter().map(|q| q.map(|v| v as f32)).collect();
    let g32: Vec<f64> = cluster_grad(&p32)
        .iter()
        .flatten()
        .map(|&v| v as f64)
        .collect();
    assert_close(&g32, &got, 1e-3);
}

#[test]
fn buffers_and_sums_match_finite_differences() {
    let x: Vec<f64> = (0..7).map(|i| (i as f64 * 0.9).sin()).collect();
    for steps in [0, 1, 3] {
        let g = smoothed_grad(&x, steps);
        assert_close(&g, &fd(&|v| smoothed(v, steps), &x), 1e-6);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let g32 = smoothed_grad(&x32, steps);
        assert_close(&widen(&g32), &g, 1e-4);
    }
}

#[test]
fn arrays_match_the_analytic_gradient() {
    let x = Array1::from(vec![0.3, -1.2, 0.8]);
    let w = Array1::from(vec![1.5, 0.4, -0.7]);
    let (gx, gw) = softplus_sum_grad(&x, &w);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    for i in 0..3 {
        let s = sig(x[i] * w[i]);
        assert!((gx[i] - (s * w[i] + 0.5 * w[i])).abs() < 1e-12);
        assert!((gw[i] - (s * x[i] + 0.5 * x[i])).abs() < 1e-12);
    }
    let x32 = x.mapv(|v| v as f32);
    let w32 = w.mapv(|v| v as f32);
    let (gx32, _) = softplus_sum_grad(&x32, &w32);
    for i in 0..3 {
        assert!((gx32[i] as f64 - gx[i]).abs() < 1e-5);
    }
}

#[test]
fn structs_generic_over_their_float_match_the_analytic_gradient() {
    let x = [1.0, 2.0, -0.5];
    let m = Line {
        w: 0.5,
        b: 0.1,
        offsets: vec![0.2, 0.3, -0.4],
    };
    let g = squared_error_grad(&m, &x);
    let r: Vec<f64> = (0..3).map(|i| m.w * x[i] + m.b + m.offsets[i]).collect();
    let dw: f64 = (0..3).map(|i| 2.0 * r[i] * x[i]).sum();
    let db: f64 = r.iter().map(|ri| 2.0 * ri).sum();
    assert_close(&[g.w, g.b], &[dw, db], 1e-12);
    assert_close(
        &g.offsets,
        &r.iter().map(|ri| 2.0 * ri).collect::<Vec<_>>(),
        1e-12,
    );
    let m32 = Line {
        w: 0.5f32,
        b: 0.1,
        offsets: vec![0.2, 0.3, -0.4],
    };
    let g32 = squared_error_grad(&m32, &[1.0, 2.0, -0.5]);
    assert_close(&widen(&[g32.w, g32.b]), &[dw, db], 1e-5);
}

#[test]
fn floats_named_by_the_option_match_the_analytic_gradient() {
    let x = [0.5, 1.0, -0.3];
    let a = Array1::from(vec![0.1, 0.2]);
    let (gx, ga) = aliased_grad(&x, &a);
    let want: Vec<f64> = x.iter().map(|v| 2.0 * v.cos() + 2.0 * v / 3.0).collect();
    assert_close(&gx, &want, 1e-12);
    let want: Vec<f64> = a.iter().map(|v| (2.0 * v + 1.0).exp()).collect();
    assert_close(ga.as_slice().unwrap(), &want, 1e-12);
    for k in [2.0f32, 0.5] {
        let spring = Spring { k };
        let g = spring.energy_grad(&[0.0, 1.0, 3.0]);
        // -k (x1 - x0), k (x1 - x0) - k (x2 - x1), k (x2 - x1).
        assert_close(&widen(&g), &[-k as f64, -(k as f64), 2.0 * k as f64], 1e-6);
    }
}

#[derive(Differentiable, Clone, Debug)]
pub struct Poly<F: Real> {
    pub c: Vec<F>,
    pub scale: F,
}

impl<F: Real> Poly<F> {
    #[differentiate(float = F, wrt(self))]
    pub fn loss(&self, xs: &[F], ys: &[F]) -> F {
        let mut s = F::zero();
        for k in 0..xs.len() {
            let mut p = F::zero();
            for j in (0..self.c.len()).rev() {
                p = p * xs[k] + self.c[j];
            }
            let r = p * self.scale - ys[k];
            s += r * r;
        }
        s
    }
}

/// A method of `impl<F: Real> Poly<F>` differentiated with respect to `self` (`float = F`,
/// `wrt(self)`), against the gradient by hand, in both precisions.
#[test]
fn methods_of_generic_structs_match_the_gradient_by_hand() {
    let m = Poly {
        c: vec![0.5, -1.0, 0.25],
        scale: 2.0,
    };
    let xs = [0.0, 1.0, 2.0];
    let ys = [1.0, 0.0, 3.0];
    let g = m.loss_grad(&xs, &ys);
    let mut gc = vec![0.0; 3];
    let mut gs = 0.0;
    for k in 0..3 {
        let p: f64 = (0..3).map(|j| m.c[j] * xs[k].powi(j as i32)).sum();
        let r = p * m.scale - ys[k];
        for j in 0..3 {
            gc[j] += 2.0 * r * m.scale * xs[k].powi(j as i32);
        }
        gs += 2.0 * r * p;
    }
    assert_close(&g.c, &gc, 1e-12);
    assert_close(&[g.scale], &[gs], 1e-12);
    let m32 = Poly {
        c: vec![0.5f32, -1.0, 0.25],
        scale: 2.0,
    };
    let g32 = m32.loss_grad(&[0.0, 1.0, 2.0], &[1.0, 0.0, 3.0]);
    assert!((g32.scale as f64 - gs).abs() < 1e-4);
}
