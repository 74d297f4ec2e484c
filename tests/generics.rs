//! Generic functions: type parameters (a potential, a weight function), const parameters (a
//! dimension) and `where` clauses pass through to every companion, and calls with or without
//! a turbofish go through the generic pullback. Each gradient against central finite
//! differences and an analytic value.
#![allow(clippy::needless_range_loop)]
use autodiff::{differentiate, Differentiable, StructGradient};

mod common;
use common::{assert_close, fd};

/// A pair potential whose implementations write their own pullbacks.
pub trait Potential {
    fn energy(&self, r: f64) -> f64;
    fn energy_pullback(&self, r: f64, d_out: f64) -> ((), f64);
    /// The distance beyond which the pair is left out.
    fn cutoff(&self) -> f64;
}

pub struct LennardJones {
    epsilon: f64,
    sigma: f64,
}

impl Potential for LennardJones {
    #[differentiate(pullback_only)]
    fn energy(&self, r: f64) -> f64 {
        let s6 = (self.sigma / r).powi(6);
        4.0 * self.epsilon * (s6 * s6 - s6)
    }

    fn cutoff(&self) -> f64 {
        2.5 * self.sigma
    }
}

pub struct Harmonic {
    k: f64,
    r0: f64,
}

impl Potential for Harmonic {
    #[differentiate(pullback_only)]
    fn energy(&self, r: f64) -> f64 {
        0.5 * self.k * (r - self.r0) * (r - self.r0)
    }

    fn cutoff(&self) -> f64 {
        f64::INFINITY
    }
}

/// The pair energy of particles in `D` dimensions (flat positions), for any potential.
#[differentiate(wrt(x))]
pub fn pair_energy<P: Potential, const D: usize>(p: &P, x: &[f64]) -> f64 {
    let n = x.len() / D;
    let mut e = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let mut r2 = 0.0;
            for k in 0..D {
                let d = x[i * D + k] - x[j * D + k];
                r2 += d * d;
            }
            let r = r2.sqrt();
            if r < p.cutoff() {
                e += p.energy(r);
            }
        }
    }
    e
}

/// Calls of the generic function: the dimension by turbofish, the potential inferred.
#[differentiate(wrt(x))]
pub fn two_potentials(lj: &LennardJones, springs: &Harmonic, x: &[f64], w: f64) -> f64 {
    pair_energy::<_, 3>(lj, x) + w * pair_energy::<Harmonic, 3>(springs, x)
}

/// A weight function as a type parameter, bounded in a `where` clause and called in the body.
#[differentiate]
pub fn weighted_norm<W>(weight: &W, x: &[f64]) -> f64
where
    W: Fn(usize) -> f64,
{
    let mut s = 0.0;
    for i in 0..x.len() {
        s += weight(i) * x[i] * x[i];
    }
    s.sqrt()
}

/// A const parameter the arguments do not determine: the companions name it when they call
/// each other, and callers give it by turbofish.
#[differentiate]
pub fn leading_sum_of_squares<const N: usize>(x: &[f64], scale: f64) -> f64 {
    let mut s = 0.0;
    for i in 0..N {
        s += x[i] * x[i];
    }
    scale * s
}

/// `impl Trait` in argument position, with a lifetime.
#[differentiate(wrt(x))]
pub fn through_impl<'a>(p: &'a impl Potential, x: &'a [f64]) -> f64 {
    pair_energy::<_, 2>(p, x)
}

/// A model whose parameters are a struct: implementations write `predict_pullback`, which
/// gives the model's gradient first.
pub trait Model {
    fn predict(&self, x: f64) -> f64;
    fn predict_pullback(&self, x: f64, d_out: f64) -> (Self, f64)
    where
        Self: Sized;
}

#[derive(Clone, Debug, Differentiable)]
pub struct Line {
    a: f64,
    b: f64,
}

impl Model for Line {
    #[differentiate(wrt(self), pullback_only)]
    fn predict(&self, x: f64) -> f64 {
        self.a * x + self.b
    }
}

#[derive(Clone, Debug, Differentiable)]
pub struct Polynomial {
    coefficients: Vec<f64>,
}

impl Model for Polynomial {
    #[differentiate(wrt(self), pullback_only)]
    fn predict(&self, x: f64) -> f64 {
        let mut y = 0.0;
        for c in self.coefficients.iter().rev() {
            y = y * x + c;
        }
        y
    }
}

/// A least-squares loss of any model: the gradient is a value of the model's type (the
/// companions carry the bound `M: StructGradient<f64>`, which the derive gives).
#[differentiate(wrt(model))]
pub fn squared_error<M: Model>(model: &M, xs: &[f64], ys: &[f64]) -> f64 {
    let mut l = 0.0;
    for i in 0..xs.len() {
        let r = model.predict(xs[i]) - ys[i];
        l += r * r;
    }
    l / xs.len() as f64
}

/// Generic code calling the gradient states the same bound.
fn descend<M: Model + StructGradient<f64>>(model: &M, xs: &[f64], ys: &[f64]) -> M {
    squared_error_grad(model, xs, ys)
}

fn cube(n: usize) -> Vec<f64> {
    // 2 x 2 x 2 points near a lattice of spacing 1.1, shifted a little so no pair is symmetric.
    let mut x = Vec::new();
    for i in 0..n {
        x.push(1.1 * (i % 2) as f64 + 0.03 * i as f64);
        x.push(1.1 * ((i / 2) % 2) as f64 - 0.02 * i as f64);
        x.push(1.1 * (i / 4) as f64 + 0.01 * (i * i) as f64);
    }
    x
}

#[test]
fn generic_functions_match_finite_differences_and_analytic_gradients() {
    let lj = LennardJones {
        epsilon: 1.0,
        sigma: 1.0,
    };
    let springs = Harmonic { k: 3.0, r0: 1.2 };
    let x = cube(8);

    // Two particles: the gradient of one pair's energy is -+ E'(r) (x_i - x_j) / r.
    let pair = [0.1, 0.2, -0.3, 1.0, 0.9, 0.4];
    let g = pair_energy_grad::<_, 3>(&springs, &pair);
    let d: Vec<f64> = (0..3).map(|k| pair[k] - pair[3 + k]).collect();
    let r = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    let de = springs.k * (r - springs.r0);
    let want: Vec<f64> = (0..6)
        .map(|i| match i < 3 {
            true => de * d[i] / r,
            false => -de * d[i - 3] / r,
        })
        .collect();
    assert_close(&g, &want, 1e-12);

    let (value, g) = pair_energy_value_and_grad::<LennardJones, 3>(&lj, &x);
    assert_eq!(value, pair_energy::<LennardJones, 3>(&lj, &x));
    assert_close(&g, &fd(&|x| pair_energy::<_, 3>(&lj, x), &x), 1e-6);

    // The same positions read as 4 points in 6 dimensions: a different function.
    let g6 = pair_energy_grad::<_, 6>(&springs, &x[..24]);
    assert_close(
        &g6,
        &fd(&|x| pair_energy::<_, 6>(&springs, x), &x[..24]),
        1e-6,
    );

    let w = 0.7;
    let g = two_potentials_grad(&lj, &springs, &x, w);
    let f = |x: &[f64]| two_potentials(&lj, &springs, x, w);
    assert_close(&g, &fd(&f, &x), 1e-6);
    // The pullback covers `w` too: d/dw is the springs' energy.
    let ((), (), d_x, d_w) = two_potentials_pullback(&lj, &springs, &x, w, 2.0);
    let scaled: Vec<f64> = fd(&f, &x).iter().map(|v| 2.0 * v).collect();
    assert_close(&d_x, &scaled, 1e-6);
    assert_close(&[d_w], &[2.0 * pair_energy::<_, 3>(&springs, &x)], 1e-12);

    let g = through_impl_grad(&springs, &x[..8]);
    assert_close(&g, &fd(&|x| through_impl(&springs, x), &x[..8]), 1e-6);
}

#[test]
fn type_and_const_parameters_reach_every_companion() {
    let x = [0.5, -1.5, 2.0, 0.25];
    let weight = |i: usize| 1.0 + i as f64;
    // d/dx_i sqrt(sum w_i x_i^2) = w_i x_i / s.
    let s = weighted_norm(&weight, &x);
    let want: Vec<f64> = (0..4).map(|i| weight(i) * x[i] / s).collect();
    let ((), g) = weighted_norm_pullback(&weight, &x, 1.0);
    assert_close(&g, &want, 1e-12);
    assert_close(
        &weighted_norm_grad(&weight, &x),
        &fd(&|x| weighted_norm(&weight, x), &x),
        1e-6,
    );

    // Only the first N entries count: the others' gradients are zero.
    let (g, d_scale) = leading_sum_of_squares_grad::<2>(&x, 3.0);
    assert_close(&g, &[3.0, -9.0, 0.0, 0.0], 1e-12);
    assert_close(&[d_scale], &[x[0] * x[0] + x[1] * x[1]], 1e-12);
    let (value, (g3, _)) = leading_sum_of_squares_value_and_grad::<3>(&x, 1.0);
    assert_eq!(value, 0.25 + 2.25 + 4.0);
    assert_close(&g3, &[1.0, -3.0, 4.0, 0.0], 1e-12);
    let (p, _) = leading_sum_of_squares_pullback::<3>(&x, 1.0, 0.5);
    assert_close(&p, &[0.5, -1.5, 2.0, 0.0], 1e-12);
}

#[test]
fn generic_models_get_gradients_of_their_own_type() {
    let xs = [-1.0, -0.3, 0.4, 1.2, 2.0];
    let ys = [0.5, 0.1, -0.2, 0.9, 3.0];
    let line = Line { a: 0.8, b: -0.1 };
    // d/da mean (a x + b - y)^2 = 2 mean(r x), d/db = 2 mean(r).
    let g = descend(&line, &xs, &ys);
    let r: Vec<f64> = (0..5).map(|i| line.a * xs[i] + line.b - ys[i]).collect();
    let want_a = 2.0 * (0..5).map(|i| r[i] * xs[i]).sum::<f64>() / 5.0;
    let want_b = 2.0 * r.iter().sum::<f64>() / 5.0;
    assert_close(&[g.a, g.b], &[want_a, want_b], 1e-12);

    let poly = Polynomial {
        coefficients: vec![0.3, -0.5, 0.25, 0.1],
    };
    let (value, g) = squared_error_value_and_grad(&poly, &xs, &ys);
    assert_eq!(value, squared_error(&poly, &xs, &ys));
    let f = |c: &[f64]| {
        let p = Polynomial {
            coefficients: c.to_vec(),
        };
        squared_error(&p, &xs, &ys)
    };
    assert_close(&g.coefficients, &fd(&f, &poly.coefficients), 1e-6);
}

/// Weights per residual, not differentiated: a type parameter of the model below.
pub trait Weights {
    fn weight(&self, i: usize) -> f64;
}

#[derive(Clone)]
pub struct Rising;

impl Weights for Rising {
    fn weight(&self, i: usize) -> f64 {
        1.0 + i as f64
    }
}

/// A struct with a type parameter deriving `Differentiable`: its float fields differentiated,
/// the field of type `W` a constant (marked), copied into the gradient.
#[derive(Clone, Differentiable)]
pub struct WeightedFit<W> {
    c: Vec<f64>,
    scale: f64,
    #[differentiable(constant)]
    weights: W,
}

/// Generic over the weights: the companions require `WeightedFit<W>: StructGradient<f64>`,
/// which the derive gives for any `W: Clone`. (A field read as a method's receiver is
/// differentiated, its method's pullback called: the weights are read through a parameter.)
#[differentiate(wrt(fit))]
pub fn weighted_misfit<W: Weights + Clone>(fit: &WeightedFit<W>, weights: &W, x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let r = fit.scale * fit.c[i] - x[i];
        s += weights.weight(i) * r * r;
    }
    s
}

/// A nested struct of a type parameter's type: its gradient a value of its own type.
#[derive(Clone, Debug, Differentiable)]
pub struct Inner {
    w: Vec<f64>,
}

#[derive(Clone, Debug, Differentiable)]
pub struct Outer<L> {
    layer: L,
    bias: f64,
}

#[differentiate(wrt(o, x))]
pub fn outer_energy(o: &Outer<Inner>, x: f64) -> f64 {
    o.layer.w[0] * x * x + o.layer.w[1] * o.bias + o.bias * o.bias
}

#[test]
fn structs_with_type_parameters_derive_differentiable() {
    let fit = WeightedFit {
        c: vec![0.5, -1.0, 2.0],
        scale: 1.5,
        weights: Rising,
    };
    let x = [0.2, -1.1, 2.5];
    let g: WeightedFit<Rising> = weighted_misfit_grad(&fit, &fit.weights, &x);
    let r: Vec<f64> = (0..3).map(|i| fit.scale * fit.c[i] - x[i]).collect();
    let want_c: Vec<f64> = (0..3)
        .map(|i| 2.0 * (1.0 + i as f64) * r[i] * fit.scale)
        .collect();
    let want_scale: f64 = (0..3)
        .map(|i| 2.0 * (1.0 + i as f64) * r[i] * fit.c[i])
        .sum();
    assert_close(&g.c, &want_c, 1e-12);
    assert_close(&[g.scale], &[want_scale], 1e-12);
    // Against finite differences too, over the coefficients and the scale.
    let mut all = fit.c.clone();
    all.push(fit.scale);
    let at = |w: &[f64]| {
        let f = WeightedFit {
            c: w[..3].to_vec(),
            scale: w[3],
            weights: Rising,
        };
        weighted_misfit(&f, &Rising, &x)
    };
    let want = fd(&at, &all);
    assert_close(&g.c, &want[..3], 1e-7);
    assert_close(&[g.scale], &want[3..], 1e-7);

    let o = Outer {
        layer: Inner { w: vec![0.7, -0.3] },
        bias: 0.4,
    };
    let (g, gx) = outer_energy_value_and_grad(&o, 1.5).1;
    assert_close(&g.layer.w, &[1.5 * 1.5, o.bias], 1e-12);
    assert_close(&[g.bias], &[o.layer.w[1] + 2.0 * o.bias], 1e-12);
    assert_close(&[gx], &[2.0 * o.layer.w[0] * 1.5], 1e-12);
}
