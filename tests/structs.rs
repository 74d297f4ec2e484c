//! Struct parameters differentiated as a whole (`wrt(p)` with `Params` deriving
//! `Differentiable`): the gradient is a `Params` whose fields are the gradients of the fields
//! the body reads; integer fields read in ranges and indices are constants. Against central
//! finite differences and analytic gradients.
#![allow(clippy::needless_range_loop)]
use autodiff::ndarray::{array, Array1, Array2};
use autodiff::{differentiate, Differentiable, StopGradient};

mod common;
use common::{assert_close, fd};

/// A linear model with a scale, and configuration read as constants.
#[derive(Clone, Debug, Differentiable)]
pub struct Linear {
    w: Vec<f64>,
    b: f64,
    scale: f64,
    /// How many of the inputs the model reads (a constant: a range's bound).
    n: usize,
    /// Never read by the loss: its gradient stays zero.
    unused: f64,
    /// Read through `stop_gradient`: its gradient is zero.
    label: f64,
    /// A configuration value without a gradient, copied into the gradient.
    #[differentiable(constant)]
    kind: Kind,
    /// A flag read in a condition with `&&`.
    biased: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Squared,
    Absolute,
}

/// Squared error of a linear model on one sample.
#[differentiate(wrt(p))]
fn loss(p: &Linear, x: &[f64], y: f64) -> f64 {
    let mut s = if p.biased && y > -10.0 { p.b } else { 0.0 };
    for i in 0..x.len().min(p.n) {
        s += p.w[i] * x[i];
    }
    // The last weight counted twice (an integer field beside an integer).
    s += p.w[p.n - 1] * x[p.n - 1];
    let r = p.scale * s - y;
    let e = match p.kind {
        Kind::Squared => r * r,
        Kind::Absolute => r.abs(),
    };
    e + p.label.stop_gradient()
}

fn model() -> Linear {
    Linear {
        w: vec![0.5, -0.3, 0.8],
        b: 0.1,
        scale: 1.5,
        n: 3,
        unused: 7.0,
        label: 2.0,
        kind: Kind::Squared,
        biased: true,
    }
}

#[test]
fn struct_gradients_match_the_analytic_gradient_and_finite_differences() {
    let p = model();
    let x = [1.0, 2.0, -1.0];
    let y = 0.4;
    let g = loss_grad(&p, &x, y);
    let s = p.b + p.w.iter().zip(&x).map(|(w, x)| w * x).sum::<f64>() + p.w[2] * x[2];
    let r = p.scale * s - y;
    let mut want_w: Vec<f64> = x.iter().map(|xi| 2.0 * r * p.scale * xi).collect();
    want_w[2] *= 2.0;
    assert_close(&g.w, &want_w, 1e-12);
    assert_close(&[g.b, g.scale], &[2.0 * r * p.scale, 2.0 * r * s], 1e-12);
    // Constants are copied, fields never read have a zero gradient.
    assert_eq!(
        (g.n, g.unused, g.label, g.kind, g.biased),
        (3, 0.0, 0.0, Kind::Squared, true)
    );
    // Finite differences over the float fields, one at a time.
    let flat = [p.w[0], p.w[1], p.w[2], p.b, p.scale];
    let f = fd(
        &|v| {
            let mut q = model();
            q.w = v[..3].to_vec();
            q.b = v[3];
            q.scale = v[4];
            loss(&q, &x, y)
        },
        &flat,
    );
    assert_close(&[g.w[0], g.w[1], g.w[2], g.b, g.scale], &f, 1e-6);
    // The pullback scales every differentiated field.
    let (pb, _, _) = loss_pullback(&p, &x, y, 3.0);
    assert_close(
        &pb.w,
        &g.w.iter().map(|v| 3.0 * v).collect::<Vec<_>>(),
        1e-12,
    );
    assert_eq!(pb.n, 3);
}

/// Weights walked by their length and by `iter()`: reading a field's size (`p.w.len()` in a
/// range) does not make it a constant, nor does comparing it inside `&&` or `!`.
#[derive(Clone, Debug, Differentiable)]
pub struct Weights {
    w: Vec<f64>,
    decay: f64,
}

#[differentiate(wrt(p, x))]
fn penalised(p: &Weights, x: &[f64]) -> f64 {
    if p.w.is_empty() {
        return 0.0;
    }
    let mut s = 0.0;
    for i in 0..p.w.len() {
        s += p.w[i] * x[i];
    }
    for w in p.w.iter().rev() {
        s += p.decay * w * w;
    }
    // Fields compared inside `&&` and `!` are read as values (they had been taken for flags).
    if p.decay > 0.0 && !(p.w[0] > 10.0 || p.w.is_empty()) {
        s += 0.5 * p.decay;
    }
    s
}

#[test]
fn fields_walked_by_their_length_are_differentiated() {
    let p = Weights {
        w: vec![0.5, -1.5, 2.0],
        decay: 0.1,
    };
    let x = [1.0, 3.0, -2.0];
    // d/dw_i = x_i + 2 decay w_i, d/d decay = sum w_i^2 + 0.5.
    let (g, d_x) = penalised_grad(&p, &x);
    let want: Vec<f64> = (0..3).map(|i| x[i] + 2.0 * p.decay * p.w[i]).collect();
    assert_close(&g.w, &want, 1e-12);
    assert_close(&[g.decay], &[0.25 + 2.25 + 4.0 + 0.5], 1e-12);
    assert_close(&d_x, &p.w, 1e-12);
}

/// A network whose layers are arrays, passed by value, with a nested struct.
#[derive(Clone, Differentiable)]
pub struct Layer {
    w: Array2<f64>,
    b: Array1<f64>,
}

#[derive(Clone, Differentiable)]
pub struct Net {
    hidden: Layer,
    out: Array1<f64>,
    temperature: f64,
}

/// A one-hidden-layer network's output, reading the nested layer through a differentiated
/// call that takes it whole.
#[differentiate(wrt(layer))]
fn hidden(layer: &Layer, x: &Array1<f64>) -> f64 {
    (layer.w.dot(x) + &layer.b).mapv(f64::tanh).sum()
}

#[differentiate(wrt(net))]
fn score(net: &Net, x: &Array1<f64>) -> f64 {
    let h = (net.hidden.w.dot(x) + &net.hidden.b).mapv(f64::tanh);
    (h.dot(&net.out) / net.temperature).exp() + hidden(&net.hidden, x)
}

#[test]
fn nested_structs_and_calls_taking_a_struct_whole_match_finite_differences() {
    let net = Net {
        hidden: Layer {
            w: array![[0.2, -0.4], [0.7, 0.1], [-0.3, 0.5]],
            b: array![0.1, -0.2, 0.05],
        },
        out: array![0.6, -0.8, 0.3],
        temperature: 2.0,
    };
    let x = array![0.9, -0.6];
    let g = score_grad(&net, &x);
    // The network's floats in one order, for the value and for its gradient alike.
    let flatten_net = |n: &Net| -> Vec<f64> {
        n.hidden
            .w
            .iter()
            .chain(&n.hidden.b)
            .chain(&n.out)
            .copied()
            .chain([n.temperature])
            .collect()
    };
    let flat = flatten_net(&net);
    let f = fd(
        &|v| {
            let mut n = net.clone();
            n.hidden.w = Array2::from_shape_vec((3, 2), v[..6].to_vec()).unwrap();
            n.hidden.b = Array1::from(v[6..9].to_vec());
            n.out = Array1::from(v[9..12].to_vec());
            n.temperature = v[12];
            score(&n, &x)
        },
        &flat,
    );
    assert_close(&flatten_net(&g), &f, 1e-6);
}

/// A model whose methods are differentiated with respect to the model itself (`wrt(self)`).
#[derive(Clone, Differentiable)]
pub struct Mlp {
    w1: Array2<f64>,
    b1: Array1<f64>,
    w2: Array1<f64>,
    b2: f64,
}

impl Mlp {
    #[differentiate(wrt(self))]
    pub fn predict(&self, x: &Array1<f64>) -> f64 {
        (self.w1.dot(x) + &self.b1).mapv(f64::tanh).dot(&self.w2) + self.b2
    }

    /// Mean squared error over a batch, through `predict` (whose pullback gives the model's
    /// gradient first).
    #[differentiate(wrt(self))]
    pub fn loss(&self, xs: &Array2<f64>, ys: &[f64]) -> f64 {
        let mut l = 0.0;
        for i in 0..ys.len() {
            let r = self.predict(&xs.row(i).to_owned()) - ys[i];
            l += r * r;
        }
        l / ys.len() as f64
    }
}

/// A free function calling a method of its differentiated struct parameter.
#[differentiate(wrt(m, lambda))]
fn regularized(m: &Mlp, xs: &Array2<f64>, ys: &[f64], lambda: f64) -> f64 {
    m.loss(xs, ys) + lambda * (m.w1.mapv(|v| v * v).sum() + m.b2 * m.b2)
}

fn mlp() -> Mlp {
    Mlp {
        w1: array![[0.2, -0.4], [0.7, 0.1], [-0.3, 0.5]],
        b1: array![0.1, -0.2, 0.05],
        w2: array![0.6, -0.8, 0.3],
        b2: 0.2,
    }
}

fn flatten(m: &Mlp) -> Vec<f64> {
    m.w1.iter()
        .chain(&m.b1)
        .chain(&m.w2)
        .copied()
        .chain([m.b2])
        .collect()
}

fn unflatten(v: &[f64]) -> Mlp {
    Mlp {
        w1: Array2::from_shape_vec((3, 2), v[..6].to_vec()).unwrap(),
        b1: Array1::from(v[6..9].to_vec()),
        w2: Array1::from(v[9..12].to_vec()),
        b2: v[12],
    }
}

#[test]
fn methods_differentiated_with_respect_to_self_match_finite_differences() {
    let m = mlp();
    let xs = array![[0.9, -0.6], [0.1, 0.4], [-0.5, 0.8], [0.3, 0.3]];
    let ys = [0.5, -0.2, 0.1, 0.7];
    let g = m.loss_grad(&xs, &ys);
    let f = fd(&|v| unflatten(v).loss(&xs, &ys), &flatten(&m));
    assert_close(&flatten(&g), &f, 1e-6);
    // `predict` alone: `d/d b2` is 1, and its pullback gives the model first, then `x`.
    let x = array![0.9, -0.6];
    let (gm, gx) = m.predict_pullback(&x, 2.0);
    assert_eq!(gm.b2, 2.0);
    let fx = fd(
        &|v| m.predict(&Array1::from(v.to_vec())),
        x.as_slice().unwrap(),
    );
    assert_close(
        gx.as_slice().unwrap(),
        &fx.iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        1e-6,
    );
    // Through a free function, with a second differentiated parameter.
    let (gr, gl) = regularized_grad(&m, &xs, &ys, 0.3);
    let f = fd(&|v| regularized(&unflatten(v), &xs, &ys, 0.3), &flatten(&m));
    assert_close(&flatten(&gr), &f, 1e-6);
    let want_l = m.w1.mapv(|v| v * v).sum() + m.b2 * m.b2;
    assert_close(&[gl], &[want_l], 1e-12);
}

impl Mlp {
    /// The hidden layer's activations: a vector-valued method, differentiated with respect to
    /// the model and the input.
    #[differentiate(wrt(self, x))]
    pub fn features(&self, x: &Array1<f64>) -> Array1<f64> {
        (self.w1.dot(x) + &self.b1).mapv(f64::tanh)
    }
}

#[test]
fn vector_valued_methods_match_finite_differences() {
    let m = mlp();
    let x: Array1<f64> = array![0.9, -0.6];
    let jac = m.features_jacobian(&x);
    assert_eq!(jac.len(), 3);
    for (i, (gm, gx)) in jac.iter().enumerate() {
        let f = fd(&|v| unflatten(v).features(&x)[i], &flatten(&m));
        assert_close(&flatten(gm), &f, 1e-6);
        let f = fd(
            &|v| m.features(&Array1::from(v.to_vec()))[i],
            x.as_slice().unwrap(),
        );
        assert_close(gx.as_slice().unwrap(), &f, 1e-6);
    }
    // The pullback weighs the rows.
    let d: Array1<f64> = array![1.0, -2.0, 0.5];
    let (gm, _) = m.features_pullback(&x, d.clone());
    let want: Vec<f64> = (0..13)
        .map(|j| (0..3).map(|i| d[i] * flatten(&jac[i].0)[j]).sum())
        .collect();
    assert_close(&flatten(&gm), &want, 1e-12);
}

/// The README's example: a struct, a method differentiated with respect to it and its input, a
/// local closure and a walk of windows.
#[derive(Clone, Differentiable)]
pub struct Spring {
    k: f64,
    rest: f64,
}

impl Spring {
    #[differentiate(wrt(self, x))]
    pub fn energy(&self, x: &[f64]) -> f64 {
        let pair = |r: f64| 0.5 * self.k * (r - self.rest).powi(2);
        let mut e = 0.0;
        for w in x.windows(2) {
            e += pair(w[1] - w[0]);
        }
        e
    }
}

#[test]
fn the_readme_spring_matches_finite_differences() {
    let s = Spring { k: 3.0, rest: 0.5 };
    let x = [0.0, 0.7, 1.1, 1.9];
    let (g, dx) = s.energy_grad(&x);
    let f = fd(
        &|v| {
            Spring {
                k: v[0],
                rest: v[1],
            }
            .energy(&x)
        },
        &[s.k, s.rest],
    );
    assert_close(&[g.k, g.rest], &f, 1e-6);
    assert_close(&dx, &fd(&|v| s.energy(v), &x), 1e-6);
}

/// A tuple struct (a newtype of weights with a bias and a count), nested in a named one.
#[derive(Clone, Debug, Differentiable)]
pub struct Newtype(Vec<f64>, f64, usize);

#[derive(Clone, Debug, Differentiable)]
pub struct Scaled {
    w: Newtype,
    scale: f64,
}

#[differentiate(wrt(m))]
fn scaled_square(m: &Scaled, x: &[f64]) -> f64 {
    let mut s = m.w.1;
    for i in 0..m.w.2 {
        s += m.w.0[i] * x[i];
    }
    m.scale * s * s
}

#[test]
fn tuple_structs_match_the_analytic_gradient() {
    let m = Scaled {
        w: Newtype(vec![0.5, -1.0, 2.0], 0.3, 2),
        scale: 1.5,
    };
    let x = [1.0, 2.0, 3.0];
    let g = scaled_square_grad(&m, &x);
    // s = b + w0 x0 + w1 x1 (the count is 2): d/dw_i = 2 scale s x_i, d/db = 2 scale s,
    // d/dscale = s^2; the third weight is not read, the count is copied.
    let s = 0.3 + 0.5 - 2.0;
    assert_close(&g.w.0, &[3.0 * s, 6.0 * s, 0.0], 1e-12);
    assert_close(&[g.w.1, g.scale], &[3.0 * s, s * s], 1e-12);
    assert_eq!(g.w.2, 2);
    let f = |v: &[f64]| {
        let m = Scaled {
            w: Newtype(v[..3].to_vec(), v[3], 2),
            scale: v[4],
        };
        scaled_square(&m, &x)
    };
    let flat = [0.5, -1.0, 2.0, 0.3, 1.5];
    let got = [g.w.0[0], g.w.0[1], g.w.0[2], g.w.1, g.scale];
    assert_close(&got, &fd(&f, &flat), 1e-6);
}

/// A model with an optional regularisation weight: an `Option` field is a constant, read by
/// `if let`.
#[derive(Clone, Debug, Differentiable)]
pub struct Ridge {
    w: Vec<f64>,
    reg: Option<f64>,
}

impl Ridge {
    #[differentiate(wrt(self))]
    fn loss(&self, x: &[f64], y: f64) -> f64 {
        let mut p = 0.0;
        for i in 0..x.len() {
            p += self.w[i] * x[i];
        }
        let mut l = (p - y) * (p - y);
        if let Some(r) = self.reg {
            l += r * self.w.iter().map(|v| v * v).sum::<f64>();
        }
        l
    }
}

#[test]
fn option_fields_are_constants() {
    let x = [1.0, 1.0];
    for reg in [Some(0.5), None] {
        let m = Ridge {
            w: vec![1.0, 2.0],
            reg,
        };
        let g = m.loss_grad(&x, 1.0);
        // d/dw_i = 2 (p - y) x_i + 2 r w_i, with p = 3.
        let r = reg.unwrap_or(0.0);
        assert_close(&g.w, &[4.0 + 2.0 * r, 4.0 + 4.0 * r], 1e-12);
        assert_eq!(g.reg, reg);
    }
}

/// Fields in `match` scrutinees: an enum matched against its variants (a constant), and float
/// fields bound whole by an arm (`(k, w) if k > w`, `v if v > 0.0`), which are differentiated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Single,
    Double,
}

#[derive(Clone, Debug, Differentiable)]
pub struct Switch {
    w: Vec<f64>,
    a: f64,
    #[differentiable(constant)]
    mode: Mode,
}

impl Switch {
    #[differentiate(wrt(self))]
    fn value(&self, b: f64) -> f64 {
        let m = match (self.w[1], self.a * b) {
            (k, w) if k > w => k - w,
            (k, w) => w * 0.5 + k,
        };
        let n = match self.mode {
            Mode::Single => 1.0,
            Mode::Double => 2.0,
        };
        m * n
            + match self.w[0] {
                v if v > 0.0 => v * v,
                v => -v,
            }
    }
}

#[test]
fn fields_bound_whole_by_match_arms_are_differentiated() {
    let s = Switch {
        w: vec![0.5, 2.0],
        a: 1.5,
        mode: Mode::Double,
    };
    // w1 > a b: m = w1 - a b, doubled; w0 > 0: w0^2.
    let g = s.value_grad(0.7);
    assert_close(&g.w, &[1.0, 2.0], 1e-12);
    assert_close(&[g.a], &[-1.4], 1e-12);
    assert_eq!(g.mode, Mode::Double);
}

/// A search over a differentiated field's values (`position`), its result an index: the field
/// is read as a value elsewhere (the search had made it a constant, which the constant-field
/// check stopped at compile time).
#[derive(Clone, Differentiable)]
pub struct Samples {
    w: Vec<f64>,
    scale: f64,
}

impl Samples {
    #[differentiate(wrt(self))]
    pub fn picked(&self) -> f64 {
        let at = self.w.iter().position(|&v| v > self.scale).unwrap_or(0);
        self.w[at] * self.w[0] * self.scale
    }
}

#[test]
fn searches_over_fields_are_constants_of_the_values() {
    let s = Samples {
        w: vec![0.2, 0.4, 1.5, 0.9],
        scale: 0.5,
    };
    // at = 2: w2 w0 scale.
    let g = s.picked_grad();
    assert_close(&g.w, &[1.5 * 0.5, 0.0, 0.2 * 0.5, 0.0], 1e-12);
    assert_close(&[g.scale], &[1.5 * 0.2], 1e-12);
}

/// A struct with two float fields, read inside `vec![..]`.
#[derive(Clone, Debug, Differentiable)]
pub struct Affine {
    b: f64,
    s: f64,
}

/// Fields read inside `vec![..]` (had been "fields of differentiated values": the scan of the
/// fields did not look inside the macro).
#[differentiate(wrt(p))]
#[allow(clippy::useless_vec)]
fn affine_in_vec(p: &Affine, x: f64) -> f64 {
    let v = vec![p.b * x, p.s];
    v[0] + v[1] * v[1]
}

#[test]
fn fields_read_inside_vec_macros_match_the_analytic_gradient() {
    let g = affine_in_vec_grad(&Affine { b: 2.0, s: 3.0 }, 1.5);
    assert_eq!((g.b, g.s), (1.5, 6.0));
}

/// Values the macro cannot type where they come from, found to be floats by where they go:
/// a struct's array and `Vec` fields read by index, results of differentiated calls summed,
/// merged by an `if`, carried by a loop and passed to float methods; an ndarray field read by
/// index beside them.
#[derive(Clone, Debug, Differentiable)]
pub struct Mixed {
    p: [f64; 3],
    w: Vec<f64>,
    a: Array1<f64>,
}

#[differentiate]
fn cube(x: f64) -> f64 {
    x * x * x
}

#[differentiate(wrt(m, x))]
fn mixed(m: &Mixed, x: f64) -> f64 {
    let d = m.p[0] - m.p[1] * m.w[0];
    let mut s = 0.0;
    for i in 0..m.w.len() {
        s += cube(m.w[i] * x) + m.a[i] * m.p[2];
    }
    let t = if x > 0.0 { cube(d) } else { cube(x) * d };
    let r = cube(s).sin() * t;
    r + d * d + m.a[1] * cube(x)
}

#[test]
fn values_typed_by_where_they_go_match_finite_differences() {
    let m = Mixed {
        p: [0.3, -0.8, 1.2],
        w: vec![0.5, -0.25, 0.75],
        a: array![1.0, -2.0, 0.5],
    };
    let flat = |m: &Mixed| -> Vec<f64> {
        let mut v = m.p.to_vec();
        v.extend(&m.w);
        v.extend(m.a.iter());
        v
    };
    let with = |v: &[f64]| Mixed {
        p: [v[0], v[1], v[2]],
        w: v[3..6].to_vec(),
        a: Array1::from(v[6..9].to_vec()),
    };
    for x in [0.7, -0.4] {
        let (g, gx) = mixed_grad(&m, x);
        let want = fd(&|v: &[f64]| mixed(&with(v), x), &flat(&m));
        assert_close(&flat(&g), &want, 1e-6);
        assert_close(&[gx], &fd(&|v: &[f64]| mixed(&m, v[0]), &[x]), 1e-6);
    }
}

/// A model borrowing its data (a lifetime parameter; the borrowed fields marked constant and
/// read as constants), its weights owned and differentiated.
#[derive(Clone, Debug, Differentiable)]
pub struct BorrowedFit<'a> {
    pub w: Vec<f64>,
    pub b: f64,
    #[differentiable(constant)]
    pub data: &'a [f64],
    #[differentiable(constant)]
    pub label: &'a str,
}

impl<'a> BorrowedFit<'a> {
    #[differentiate(wrt(self))]
    pub fn loss(&self) -> f64 {
        let mut s = 0.0;
        for i in 0..self.data.len() {
            let r = self.w[i % self.w.len()] * self.data[i].stop_gradient() + self.b - 1.0;
            s += r * r;
        }
        s
    }
}

#[differentiate(wrt(fit, k))]
fn borrowed_scaled<'a>(fit: &BorrowedFit<'a>, k: f64) -> f64 {
    k * fit.loss() + fit.b * fit.b
}

#[test]
fn structs_borrowing_their_data_match_finite_differences() {
    let data = [0.5, -1.0, 2.0, 0.25, 1.5];
    let fit = BorrowedFit {
        w: vec![0.3, -0.7],
        b: 0.2,
        data: &data,
        label: "demo",
    };
    let with = |v: &[f64]| BorrowedFit {
        w: v[..2].to_vec(),
        b: v[2],
        ..fit.clone()
    };
    let p = [0.3, -0.7, 0.2];
    let g = fit.loss_grad();
    let want = fd(&|v: &[f64]| with(v).loss(), &p);
    assert_close(&[g.w[0], g.w[1], g.b], &want, 1e-6);
    // The borrowed fields are the same data in the gradient.
    assert!(std::ptr::eq(g.data, &data[..]) && g.label == "demo");
    let (gf, gk) = borrowed_scaled_grad(&fit, 1.5);
    let want = fd(&|v: &[f64]| borrowed_scaled(&with(v), 1.5), &p);
    assert_close(&[gf.w[0], gf.w[1], gf.b], &want, 1e-6);
    assert_close(&[gk], &[fit.loss()], 1e-14);
}
