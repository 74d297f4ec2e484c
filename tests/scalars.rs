//! Where scalars and arrays meet: the macro writes the rules of values it proves to be plain
//! floats out inline (`scalars.rs`) and keeps the generic runtime path for everything else.
//! Each function here sits at the edge of that proof (a scalar times an array, an element of
//! a constant slice, `n as f64`, a reduction, a closure reading an outer scalar, a carried value
//! started from an element, a struct field, an `f32` function); each gradient is checked
//! against central finite differences. A wrong classification is a compile error here, a
//! wrong written-out rule a failed comparison.
#![allow(clippy::needless_range_loop)]

use autodiff::check::central_difference;
use autodiff::differentiate;
use autodiff::ndarray::{Array1, Array2};

fn assert_close(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: gradient length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{name}[{i}]: got {g}, finite differences {w}"
        );
    }
}

/// A scalar times an array, an array reduced to a scalar, the scalar used again.
#[differentiate]
fn scaled_sum(s: f64, a: &Array1<f64>) -> f64 {
    let b = a * s;
    let t = b.sum();
    let u = t * s + a.mean().unwrap() / s;
    u * u.sin()
}

#[test]
fn scalar_times_array_and_reductions() {
    let a = Array1::from(vec![0.3, -1.2, 0.7, 2.0]);
    let s = 0.8;
    let (gs, ga) = scaled_sum_grad(s, &a);
    let pack = |v: &[f64]| (v[0], Array1::from(v[1..].to_vec()));
    let point: Vec<f64> = std::iter::once(s).chain(a.iter().copied()).collect();
    let fd = central_difference(
        |v| {
            let (s, a) = pack(v);
            scaled_sum(s, &a)
        },
        &point,
        1e-6,
    );
    let got: Vec<f64> = std::iter::once(gs).chain(ga.iter().copied()).collect();
    assert_close("scaled_sum", &got, &fd, 1e-6);
}

/// Elements of a constant slice and a constant matrix, and integer code cast to a float, as
/// operands of differentiated arithmetic.
#[differentiate(wrt(x))]
fn weighted(x: &[f64], w: &[f64], m: &Array2<f64>, n: usize) -> f64 {
    let mut acc = 0.0;
    for i in 0..x.len() {
        let k = (i % n) as f64;
        acc += w[i] * x[i].powi(2) + m[[i % 2, i % 3]] * x[i] / (1.0 + k);
    }
    acc.sqrt()
}

#[test]
fn constant_elements_and_casts() {
    let x = [0.5, 1.5, -0.25, 2.0, 1.0];
    let w = [1.0, 0.5, 2.0, -0.3, 0.7];
    let m = Array2::from_shape_fn((2, 3), |(i, j)| 0.25 + i as f64 - 0.5 * j as f64);
    let g = weighted_grad(&x, &w, &m, 3);
    let fd = central_difference(|v| weighted(v, &w, &m, 3), &x, 1e-6);
    assert_close("weighted", &g, &fd, 1e-6);
}

/// A `mapv` closure reading a constant scalar computed outside it, then the array summed into
/// a carried scalar that starts from an element.
#[differentiate]
fn mapped(x: &Array1<f64>, c: f64, n: usize) -> f64 {
    let k = n as f64 * 0.5;
    let y = x.mapv(|v| (v * k).tanh());
    let mut s = x[0];
    for i in 0..y.len() {
        s += y[i] * c;
    }
    s
}

#[test]
fn closures_and_carried_elements() {
    let x = Array1::from(vec![0.1, -0.4, 0.9]);
    let c = 0.6;
    let (gx, gc) = mapped_grad(&x, c, 3);
    let point: Vec<f64> = x.iter().copied().chain(std::iter::once(c)).collect();
    let fd = central_difference(
        |v| mapped(&Array1::from(v[..3].to_vec()), v[3], 3),
        &point,
        1e-6,
    );
    let got: Vec<f64> = gx.iter().copied().chain(std::iter::once(gc)).collect();
    assert_close("mapped", &got, &fd, 1e-6);
}

#[derive(Clone, Copy)]
struct Params {
    scale: f64,
}

/// A struct field (not classified: the generic path) next to written-out scalar rules, and a
/// float buffer whose elements are scalars.
#[differentiate(wrt(x))]
fn buffered(x: &[f64], p: Params) -> f64 {
    let mut b = vec![0.0; x.len()];
    for i in 0..x.len() {
        b[i] = x[i].exp() * p.scale;
    }
    let mut t = 0.0;
    for i in 0..x.len() {
        t += b[i] * b[i] - p.scale * x[i];
    }
    t
}

#[test]
fn fields_and_float_buffers() {
    let x = [0.2, -0.1, 0.4];
    let p = Params { scale: 1.3 };
    let g = buffered_grad(&x, p);
    let fd = central_difference(|v| buffered(v, p), &x, 1e-6);
    assert_close("buffered", &g, &fd, 1e-6);
}

/// An `f32` function: literals and written-out rules in `f32`.
#[differentiate]
fn single(x: f32, y: f32) -> f32 {
    let a = (x * y + 0.5).sin();
    let b = if a > 0.0 { a.sqrt() } else { -a };
    b * x.exp() - y / (1.0 + x * x)
}

#[test]
fn single_precision() {
    let (x, y) = (0.7f32, 1.1f32);
    let (gx, gy) = single_grad(x, y);
    let fd = central_difference(
        |v| single(v[0] as f32, v[1] as f32) as f64,
        &[x as f64, y as f64],
        1e-3,
    );
    assert_close("single", &[gx as f64, gy as f64], &fd, 2e-3);
}

const START: [f64; 3] = [0.5, 0.0, -0.5];

/// A buffer that starts as a copy of a named constant array (a path, not a literal: not a
/// scalar).
#[differentiate]
fn from_constant(x: &[f64]) -> f64 {
    let mut v = START.to_vec();
    for i in 0..3 {
        v[i] += x[i] * x[i];
    }
    v[0] * v[1] - v[2].sin()
}

#[test]
fn buffers_from_constant_arrays() {
    let x = [0.3, -0.8, 1.1];
    let g = from_constant_grad(&x);
    let fd = central_difference(from_constant, &x, 1e-6);
    assert_close("from_constant", &g, &fd, 1e-6);
}

/// Copies and parts of a constant slice (`data.to_vec()`, `&data[a..b]`): containers of
/// floats, so their elements are scalars; the copy becomes a buffer that differentiated values
/// are written into.
#[differentiate(wrt(x))]
fn from_constant_slices(x: &[f64], data: &[f64]) -> f64 {
    let mut st = data.to_vec();
    let part = &data[1..3];
    let mut s = 0.0;
    for i in 0..2 {
        st[i] = st[i + 1] * x[i] + part[i];
        s += (st[i] * part[1 - i]).sin();
    }
    s * st[0]
}

#[test]
fn copies_and_parts_of_constant_slices() {
    let (x, data) = ([0.4, -1.3], [0.2, 0.9, -0.6, 1.4]);
    let g = from_constant_slices_grad(&x, &data);
    let fd = central_difference(|x| from_constant_slices(x, &data), &x, 1e-6);
    assert_close("from_constant_slices", &g, &fd, 1e-6);
}

/// A sign chosen by branches among literals (`-1.0` among them) and one-operand float methods
/// of a known scalar in passive code (`t.powi(j as i32)`, `t.sqrt()`), as GradBench's `llsq`
/// writes them: known scalars, whose products are written out inline (`r.max(0.0)`, a method
/// of two operands, is not classified and keeps the runtime's generic path).
#[differentiate(wrt(x))]
fn signed_powers(x: &[f64], n: usize) -> f64 {
    let mut sum = 0.0;
    for i in 0..n {
        let t = -1.0 + i as f64 * 2.0 / (n as f64 - 1.0);
        let sign = if t > 0.0 {
            1.0
        } else if t < 0.0 {
            -1.0
        } else {
            0.0
        };
        let r = t.sqrt();
        let mut inner = sign;
        for j in 0..x.len() {
            inner -= x[j] * t.powi(j as i32) + 0.1 * x[j] * r.max(0.0);
        }
        sum += inner * inner;
    }
    sum / 2.0
}

#[test]
fn literal_signs_and_passive_methods() {
    let x = vec![0.4, -0.3, 0.2, 0.7];
    let g = signed_powers_grad(&x, 7);
    let fd = central_difference(|v: &[f64]| signed_powers(v, 7), &x, 1e-6);
    assert_close("signed_powers", &g, &fd, 1e-6);
}

/// Sums and copies whose operand is used nowhere else take the sum's adjoint as their own
/// (`Reverse::contribute_as_is`): straight-line chains of them, a subtraction (whose right
/// operand's adjoint is negated, not passed on), one inside a loop body and one in an `if` arm,
/// an element update `buf[i] += t`, and operands used twice or in a nested block, which keep
/// adjoints of their own.
#[differentiate]
fn passed_on(x: &[f64], y: f64) -> f64 {
    let a = x[0] * y;
    let b = a + x[1];
    let c = b;
    let d = c - x[2].sin();
    let e = d + y;
    let twice = e.cos();
    let f = twice + twice * y;
    let mut buf = vec![0.0; x.len()];
    let mut s = f;
    for i in 0..x.len() {
        let t = x[i] * x[i];
        let u = t + s * 0.5;
        buf[i] += u;
        if u > 0.0 {
            let v = u.tanh();
            s = v + s * 0.9;
        } else {
            let w = u * f;
            s = w - s;
        }
    }
    // Used once, but in a nested block (an `if` arm, a loop's body; the last loop runs fused
    // with its reverse): each arm or iteration adds into its adjoint.
    // A loop's value after it, used once by a sum: its adjoint is the loop's to carry.
    let mut acc = 0.0;
    for i in 0..x.len() {
        acc += (x[i] * y).sin();
    }
    let sa = acc + s;
    let k = y * y;
    let mut total = if sa > 0.0 {
        let m = k + sa;
        m * 0.5
    } else {
        sa
    };
    for i in 0..buf.len() {
        total += buf[i] * a;
    }
    let g = x[0] * y;
    for i in 0..x.len() {
        let h = g + x[i];
        total += h * h * 0.1;
    }
    total
}

#[test]
fn adjoints_passed_on_as_they_are() {
    for (x, y) in [
        (vec![0.3, -0.7, 1.1, 0.4], 0.9),
        (vec![-0.5, 0.2, -1.3, 0.8, 0.1], -1.2),
    ] {
        let (gx, gy) = passed_on_grad(&x, y);
        let fd = central_difference(|v: &[f64]| passed_on(v, y), &x, 1e-6);
        assert_close("passed_on (x)", &gx, &fd, 1e-6);
        let fdy = central_difference(|v: &[f64]| passed_on(&x, v[0]), &[y], 1e-6);
        assert_close("passed_on (y)", &[gy], &fdy, 1e-6);
    }
}
