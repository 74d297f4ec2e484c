//! Fixed-size arrays of structs (`&[Body; 3]`, `[Body; N]`, a field `bodies: [Body; 3]`):
//! read like slices of structs, field by field; the gradient is an array of the same length.
//! Checked against central finite differences and the same functions over slices.
#![allow(clippy::needless_range_loop)]
mod common;

use autodiff::{differentiate, Differentiable};
use common::{assert_close, fd};

#[derive(Clone, Debug, Differentiable)]
pub struct Body {
    pub pos: [f64; 3],
    pub mass: f64,
    pub id: usize,
}

/// Bodies from a flat vector: position then mass, four numbers per body.
fn bodies<const N: usize>(v: &[f64]) -> [Body; N] {
    core::array::from_fn(|i| Body {
        pos: [v[4 * i], v[4 * i + 1], v[4 * i + 2]],
        mass: v[4 * i + 3],
        id: i,
    })
}

fn flat(g: &[Body]) -> Vec<f64> {
    g.iter()
        .flat_map(|b| [b.pos[0], b.pos[1], b.pos[2], b.mass])
        .collect()
}

fn point(n: usize) -> Vec<f64> {
    (0..4 * n)
        .map(|k| 0.3 + 0.37 * k as f64 + 0.1 * (k as f64).sin())
        .collect()
}

/// Pairs by index, then a walk over the bodies.
#[differentiate(wrt(bodies))]
fn energy(bodies: &[Body; 3]) -> f64 {
    let mut e = 0.0;
    for i in 0..bodies.len() {
        for j in (i + 1)..3 {
            let d = bodies[i].pos[0] - bodies[j].pos[0];
            e += bodies[i].mass * bodies[j].mass / (d * d + 0.5);
        }
    }
    for b in bodies.iter() {
        e += 0.5 * b.mass * b.pos[1] * b.pos[1];
    }
    e
}

/// The same over a slice.
#[differentiate(wrt(bodies))]
fn energy_slice(bodies: &[Body]) -> f64 {
    let mut e = 0.0;
    for i in 0..bodies.len() {
        for j in (i + 1)..3 {
            let d = bodies[i].pos[0] - bodies[j].pos[0];
            e += bodies[i].mass * bodies[j].mass / (d * d + 0.5);
        }
    }
    for b in bodies.iter() {
        e += 0.5 * b.mass * b.pos[1] * b.pos[1];
    }
    e
}

#[test]
fn arrays_of_structs_match_finite_differences_and_slices() {
    let v = point(3);
    let b: [Body; 3] = bodies(&v);
    let g = energy_grad(&b);
    let want = fd(&|w: &[f64]| energy(&bodies::<3>(w)), &v);
    assert_close(&flat(&g), &want, 1e-6);
    assert_close(&flat(&g), &flat(&energy_slice_grad(&b)), 1e-14);
    // Constant fields keep their values in the gradient, as for slices.
    assert_eq!(g[2].id, 2);
    let (value, _) = energy_value_and_grad(&b);
    assert_eq!(value, energy(&b));
}

#[differentiate(wrt(b))]
fn kinetic(b: &Body) -> f64 {
    0.5 * b.mass * b.pos[2] * b.pos[2]
}

#[differentiate(wrt(a, b))]
fn pair(a: &Body, b: &Body) -> f64 {
    (a.pos[0] - b.pos[0]).powi(2) * a.mass * b.mass
}

/// An array taken by value, its elements passed whole to differentiated functions.
#[differentiate(wrt(bodies, k))]
fn by_value(bodies: [Body; 2], k: f64) -> f64 {
    let mut e = k * pair(&bodies[0], &bodies[1]);
    for b in &bodies {
        e += kinetic(b);
    }
    e
}

/// The array passed whole to a function taking the array: its gradient, an array, added in.
#[differentiate(wrt(bodies))]
fn passes_array(bodies: &[Body; 3]) -> f64 {
    energy(bodies) * 2.0 + bodies[0].mass * bodies[1].pos[2]
}

/// Generic over the length.
#[differentiate(wrt(bodies))]
fn spread<const N: usize>(bodies: &[Body; N]) -> f64 {
    let mut s = 0.0;
    for i in 1..N {
        s += (bodies[i].pos[0] - bodies[i - 1].pos[0]).powi(2) * bodies[i].mass;
    }
    s
}

#[test]
fn arrays_passed_by_value_whole_and_generic_match_finite_differences() {
    let v = point(3);
    let (g, dk) = by_value_grad(bodies(&v[..8]), 1.5);
    let want = fd(
        &|w: &[f64]| by_value(bodies(&w[..8]), w[8]),
        &[&v[..8], &[1.5]].concat(),
    );
    let mut got = flat(&g);
    got.push(dk);
    assert_close(&got, &want, 1e-6);
    let (pb, dk2) = by_value_pullback(bodies(&v[..8]), 1.5, 2.0);
    assert_close(
        &flat(&pb),
        &flat(&g).iter().map(|x| 2.0 * x).collect::<Vec<_>>(),
        1e-14,
    );
    assert_close(&[dk2], &[2.0 * dk], 1e-14);

    let b: [Body; 3] = bodies(&v);
    let want = fd(&|w: &[f64]| passes_array(&bodies::<3>(w)), &v);
    assert_close(&flat(&passes_array_grad(&b)), &want, 1e-6);

    let v4 = point(4);
    let b4: [Body; 4] = bodies(&v4);
    let want = fd(&|w: &[f64]| spread(&bodies::<4>(w)), &v4);
    assert_close(&flat(&spread_grad(&b4)), &want, 1e-6);
}

/// A struct holding an array of structs, differentiated with respect to `self`.
#[derive(Clone, Debug, Differentiable)]
pub struct Trio {
    pub bodies: [Body; 3],
    pub g: f64,
}

impl Trio {
    #[differentiate(wrt(self))]
    pub fn potential(&self) -> f64 {
        let mut e = 0.0;
        for i in 0..3 {
            for j in (i + 1)..3 {
                e += self.g * pair(&self.bodies[i], &self.bodies[j]);
            }
            e += self.bodies[i].mass * self.bodies[i].pos[1];
        }
        e
    }
}

#[test]
fn struct_fields_holding_arrays_of_structs_match_finite_differences() {
    let v = point(3);
    let trio = |w: &[f64]| Trio {
        bodies: bodies(w),
        g: w[12],
    };
    let p = [&v[..], &[0.7]].concat();
    let g = trio(&p).potential_grad();
    let mut got = flat(&g.bodies);
    got.push(g.g);
    let want = fd(&|w: &[f64]| trio(w).potential(), &p);
    assert_close(&got, &want, 1e-6);
    // The derive's zero, add and scale of the array field, element by element.
    let mut z = autodiff::__rt::zero_like(&trio(&p));
    assert_eq!(flat(&z.bodies), vec![0.0; 12]);
    autodiff::__rt::acc(&mut z, g.clone());
    let twice = autodiff::__rt::scale(z, 2.0);
    assert_close(
        &flat(&twice.bodies),
        &flat(&g.bodies).iter().map(|x| 2.0 * x).collect::<Vec<_>>(),
        1e-15,
    );
}
