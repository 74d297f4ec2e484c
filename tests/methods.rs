//! `#[differentiate]` on methods: `&self` (or `self`) is a constant the body reads fields and
//! constant methods of, the companions are methods beside the annotated one, and a call
//! `self.energy(x)` or `model.energy(x)` from differentiated code goes through the method
//! `energy_pullback` written beside `energy`. Each gradient against central finite differences
//! and an analytic value.
#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;

mod common;
use common::{assert_close, fd};

/// A chain of springs between neighbouring points on a line.
pub struct Chain {
    k: f64,
    rest: f64,
    /// One stiffness factor per spring.
    factors: Vec<f64>,
}

impl Chain {
    /// One spring's energy: a method differentiated like a function of `r`.
    #[differentiate]
    pub fn spring(&self, r: f64, factor: f64) -> f64 {
        let stretch = r - self.rest;
        0.5 * self.k * factor * stretch * stretch
    }

    /// The chain's energy, through the method above.
    #[differentiate(wrt(x))]
    pub fn energy(&self, x: &[f64]) -> f64 {
        let mut e = 0.0;
        for i in 0..self.factors.len() {
            e += self.spring(x[i + 1] - x[i], self.factors[i]);
        }
        e
    }

    /// A constant method read by differentiated code.
    fn scale(&self) -> f64 {
        self.k.sqrt()
    }

    /// Fields and constant methods read inline, and a by-reference argument.
    #[differentiate]
    fn tension(&self, x: &[f64], w: f64) -> f64 {
        let mut t = 0.0;
        for i in 0..self.factors.len() {
            let r = x[i + 1] - x[i];
            t += self.factors[i] * (r - self.rest).powi(2) * self.scale();
        }
        w * t + self.energy(x)
    }
}

/// A free function calling a method of a constant parameter.
#[differentiate(wrt(x))]
fn doubled(chain: &Chain, x: &[f64]) -> f64 {
    2.0 * chain.energy(x) + x[0] * x[0]
}

fn chain() -> Chain {
    Chain {
        k: 3.0,
        rest: 0.5,
        factors: vec![1.0, 0.7, 1.3],
    }
}

/// `dE/dx` of the chain, written out: each spring pulls its two ends.
fn chain_gradient(c: &Chain, x: &[f64]) -> Vec<f64> {
    let mut g = vec![0.0; x.len()];
    for i in 0..c.factors.len() {
        let f = c.k * c.factors[i] * (x[i + 1] - x[i] - c.rest);
        g[i + 1] += f;
        g[i] -= f;
    }
    g
}

#[test]
fn methods_match_finite_differences_and_the_analytic_gradient() {
    let c = chain();
    let x = [0.1, 0.9, 1.2, 2.0];
    // One spring: both arguments differentiated.
    let (dr, df) = c.spring_grad(0.8, 1.5);
    assert_close(&[dr, df], &[3.0 * 1.5 * 0.3, 0.5 * 3.0 * 0.09], 1e-12);
    // The chain, through `self.spring(..)`.
    let (value, g) = c.energy_value_and_grad(&x);
    assert_eq!(value, c.energy(&x));
    assert_close(&g, &chain_gradient(&c, &x), 1e-12);
    assert_close(&g, &fd(&|v| c.energy(v), &x), 1e-6);
    // The pullback scales, with `()` for nothing: the receiver is not in it.
    let ((), gp) = c.energy_pullback(&x, 2.0);
    assert_close(&gp, &g.iter().map(|v| 2.0 * v).collect::<Vec<_>>(), 1e-12);
    // Fields, constant methods and another method, with a second parameter.
    let (gx, gw) = c.tension_grad(&x, 0.3);
    assert_close(&gx, &fd(&|v| c.tension(v, 0.3), &x), 1e-6);
    let fw = fd(&|w| c.tension(&x, w[0]), &[0.3]);
    assert_close(&[gw], &fw, 1e-6);
    // A free function calling a method of its constant parameter.
    let g = doubled_grad(&c, &x);
    let mut want: Vec<f64> = chain_gradient(&c, &x).iter().map(|v| 2.0 * v).collect();
    want[0] += 2.0 * x[0];
    assert_close(&g, &want, 1e-12);
    assert_close(&g, &fd(&|v| doubled(&c, v), &x), 1e-6);
}

/// A potential supplies its value; the trait's provided method is differentiated once, and
/// every implementation gets `value_pullback` with it.
pub trait Potential {
    fn depth(&self) -> f64;
    fn width(&self) -> f64;

    /// A Morse-like well, written once for every potential.
    #[differentiate]
    fn value(&self, r: f64) -> f64 {
        let e = (-(r - 1.0) / self.width()).exp();
        self.depth() * (1.0 - e) * (1.0 - e)
    }
}

pub struct Morse {
    depth: f64,
    width: f64,
}

impl Potential for Morse {
    fn depth(&self) -> f64 {
        self.depth
    }
    fn width(&self) -> f64 {
        self.width
    }
}

/// Particles on a line interacting by a potential the type chooses: a generic `impl` with a
/// differentiated method, calling the trait's method of a field.
pub struct Pairs<P: Potential> {
    potential: P,
}

impl<P: Potential> Pairs<P> {
    #[differentiate]
    pub fn energy(&self, x: &[f64]) -> f64 {
        let mut e = 0.0;
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let r = (x[j] - x[i]).abs();
                e += self.potential.value(r);
            }
        }
        e
    }
}

#[test]
fn trait_methods_and_generic_impls_match_finite_differences() {
    let m = Morse {
        depth: 1.5,
        width: 0.8,
    };
    // `d/dr` of `D (1 - e)^2` with `e = exp(-(r - 1) / w)`: `2 D (1 - e) e / w`.
    let r: f64 = 1.7;
    let e = (-(r - 1.0) / 0.8).exp();
    assert_close(
        &[m.value_grad(r)],
        &[2.0 * 1.5 * (1.0 - e) * e / 0.8],
        1e-12,
    );
    let pairs = Pairs { potential: m };
    let x = [0.0, 1.1, 2.5, 2.9];
    let (value, g) = pairs.energy_value_and_grad(&x);
    assert_eq!(value, pairs.energy(&x));
    assert_close(&g, &fd(&|v| pairs.energy(v), &x), 1e-6);
    // Translation invariance: the forces sum to zero.
    assert!(g.iter().sum::<f64>().abs() < 1e-12);
}

/// A `Copy` value taken by value, and a hand-written pullback named on a method.
#[derive(Clone, Copy)]
pub struct Soft {
    beta: f64,
}

impl Soft {
    /// `softplus(beta x) / beta`, by value.
    #[differentiate]
    pub fn plus(self, x: f64) -> f64 {
        (1.0 + (self.beta * x).exp()).ln() / self.beta
    }

    /// The same function, its derivative written by hand: the logistic of `beta x`.
    #[differentiate(pullback = plus_by_hand_derivative)]
    pub fn plus_by_hand(&self, x: f64) -> f64 {
        (1.0 + (self.beta * x).exp()).ln() / self.beta
    }

    /// A method's pullback gives the receiver's gradient first: `()` here.
    pub fn plus_by_hand_derivative(&self, x: f64, d: f64) -> ((), f64) {
        ((), d / (1.0 + (-self.beta * x).exp()))
    }

    /// A hand-written pullback named by the convention: nothing forwards to it.
    #[differentiate(pullback = minus_pullback)]
    pub fn minus(&self, x: f64) -> f64 {
        -x * self.beta
    }

    pub fn minus_pullback(&self, _x: f64, d: f64) -> ((), f64) {
        ((), -d * self.beta)
    }

    /// Calls all three, the second through `plus_by_hand_pullback` (which forwards to the
    /// hand-written one).
    #[differentiate]
    pub fn both(self, x: f64, y: f64) -> f64 {
        self.plus(x * y) + 3.0 * self.plus_by_hand(y) + self.minus(x)
    }
}

#[test]
fn receivers_by_value_and_hand_written_method_pullbacks_match() {
    let s = Soft { beta: 2.0 };
    let logistic = |v: f64| 1.0 / (1.0 + (-2.0 * v).exp());
    assert_close(&[s.plus_grad(0.3)], &[logistic(0.3)], 1e-12);
    assert_close(&[s.plus_by_hand_grad(0.3)], &[logistic(0.3)], 1e-12);
    assert_eq!(s.plus_by_hand_pullback(0.3, 2.0), ((), 2.0 * logistic(0.3)));
    let (gx, gy) = s.both_grad(0.3, -0.4);
    let want = [
        -0.4 * logistic(-0.12) - 2.0,
        0.3 * logistic(-0.12) + 3.0 * logistic(-0.4),
    ];
    assert_close(&[gx, gy], &want, 1e-12);
    let f = fd(&|v| s.both(v[0], v[1]), &[0.3, -0.4]);
    assert_close(&[gx, gy], &f, 1e-6);
}

/// Receivers that are locals: one picked per iteration of a loop, one computed once.
pub struct Mixture {
    parts: Vec<Chain>,
}

impl Mixture {
    #[differentiate]
    pub fn energy(&self, x: &[f64], w: f64) -> f64 {
        let mut e = 0.0;
        for k in 0..self.parts.len() {
            let part = &self.parts[k];
            e += w * part.energy(x);
        }
        let first = &self.parts[0];
        e + first.energy(x) * first.energy(x)
    }
}

#[test]
fn local_receivers_match_finite_differences() {
    let mut other = chain();
    other.k = 0.5;
    other.rest = 0.2;
    let m = Mixture {
        parts: vec![chain(), other],
    };
    let x = [0.1, 0.9, 1.2, 2.0];
    let (gx, gw) = m.energy_grad(&x, 0.7);
    assert_close(&gx, &fd(&|v| m.energy(v, 0.7), &x), 1e-6);
    assert_close(&[gw], &fd(&|w| m.energy(&x, w[0]), &[0.7]), 1e-6);
    let c = chain();
    let mut want: Vec<f64> = m.parts[0].energy_grad(&x);
    let scale = 0.7 + 2.0 * c.energy(&x);
    want.iter_mut()
        .zip(m.parts[1].energy_grad(&x))
        .for_each(|(a, b)| *a = *a * scale + 0.7 * b);
    assert_close(&gx, &want, 1e-12);
}

/// A trait whose implementations each differentiate their own method: the trait declares the
/// pullback, and `#[differentiate(pullback_only)]` on each implementation writes it.
pub trait Pair {
    fn energy(&self, r: f64) -> f64;
    fn energy_pullback(&self, r: f64, d_out: f64) -> ((), f64);
}

pub struct Harmonic {
    k: f64,
}

impl Pair for Harmonic {
    #[differentiate(pullback_only)]
    fn energy(&self, r: f64) -> f64 {
        0.5 * self.k * (r - 1.0) * (r - 1.0)
    }
}

pub struct SoftSphere {
    eps: f64,
}

impl Pair for SoftSphere {
    #[differentiate(pullback_only)]
    fn energy(&self, r: f64) -> f64 {
        self.eps / r.powi(6)
    }
}

/// Through a trait object: `p.energy_pullback(..)` by dynamic dispatch.
#[differentiate(wrt(x))]
fn chain_energy(p: &dyn Pair, x: &[f64]) -> f64 {
    let mut e = 0.0;
    for i in 0..x.len() - 1 {
        e += p.energy(x[i + 1] - x[i]);
    }
    e
}

/// Through a generic `impl`.
pub struct Ring<P: Pair> {
    pair: P,
}

impl<P: Pair> Ring<P> {
    #[differentiate]
    pub fn energy(&self, x: &[f64]) -> f64 {
        let n = x.len();
        let mut e = 0.0;
        for i in 0..n {
            e += self.pair.energy(x[(i + 1) % n] - x[i] + 1.0);
        }
        e
    }
}

#[test]
fn trait_implementations_with_generated_pullbacks_match_finite_differences() {
    let x = [0.0, 1.2, 2.1, 3.5];
    let h = Harmonic { k: 2.0 };
    let s = SoftSphere { eps: 0.5 };
    assert_eq!(h.energy_pullback(1.5, 2.0), ((), 2.0 * 2.0 * 0.5));
    for p in [&h as &dyn Pair, &s] {
        let g = chain_energy_grad(p, &x);
        assert_close(&g, &fd(&|v| chain_energy(p, v), &x), 1e-6);
    }
    let ring = Ring {
        pair: SoftSphere { eps: 0.5 },
    };
    let ((), g) = ring.energy_pullback(&x, 1.0);
    assert_close(&g, &fd(&|v| ring.energy(v), &x), 1e-6);
    assert!(g.iter().sum::<f64>().abs() < 1e-12);
}

/// Associated functions without `self`: found by their naming `Self` (or by the `associated`
/// option), their companions stand beside them, and `Self::f(..)` / `Type::f(..)` calls go
/// through `f_pullback`.
pub struct Units;

impl Units {
    /// A pair energy that names `Self` (its constant).
    #[differentiate]
    pub fn morse(r: f64) -> f64 {
        let e = (-(r - Self::R0)).exp();
        (1.0 - e) * (1.0 - e)
    }

    const R0: f64 = 1.2;

    /// Names nothing of `Self`: the option says where it stands.
    #[differentiate(associated)]
    pub fn square(r: f64) -> f64 {
        r * r
    }

    /// Calls both, by `Self::` and by the type's name.
    #[differentiate]
    pub fn both(r: f64, s: f64) -> f64 {
        Self::morse(r) * Units::square(s)
    }
}

#[test]
fn associated_functions_match_the_analytic_gradient() {
    let (r, s) = (1.5, 0.7);
    let e = (-(r - 1.2f64)).exp();
    let dm = 2.0 * (1.0 - e) * e;
    assert_close(&[Units::morse_grad(r)], &[dm], 1e-12);
    assert_close(&[Units::square_grad(s)], &[2.0 * s], 1e-12);
    let (gr, gs) = Units::both_grad(r, s);
    let m = Units::morse(r);
    assert_close(&[gr, gs], &[dm * s * s, m * 2.0 * s], 1e-12);
    assert_close(&[gr, gs], &fd(&|v| Units::both(v[0], v[1]), &[r, s]), 1e-6);
}

/// A vector-valued method of a trait implementation, its pullback declared by the trait.
pub trait Warp {
    fn warp(&self, x: &[f64]) -> Vec<f64>;
    fn warp_pullback(&self, x: &[f64], d_out: Vec<f64>) -> ((), Vec<f64>);
}

pub struct Sine {
    k: f64,
}

impl Warp for Sine {
    #[differentiate(pullback_only)]
    fn warp(&self, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for i in 0..x.len() {
            y[i] = (self.k * x[i]).sin();
        }
        y
    }
}

/// Through a trait object.
#[differentiate(wrt(x))]
fn warped_norm(w: &dyn Warp, x: &[f64]) -> f64 {
    let y = w.warp(x);
    let mut s = 0.0;
    for i in 0..y.len() {
        s += y[i] * y[i];
    }
    s
}

#[test]
fn vector_valued_trait_methods_match_finite_differences() {
    let w = Sine { k: 1.3 };
    let x = [0.2, -0.5, 0.9];
    let g = warped_norm_grad(&w, &x);
    let want: Vec<f64> = x
        .iter()
        .map(|v| 2.0 * (1.3 * v).sin() * (1.3 * v).cos() * 1.3)
        .collect();
    assert_close(&g, &want, 1e-12);
    assert_close(&g, &fd(&|v| warped_norm(&w, v), &x), 1e-6);
}
