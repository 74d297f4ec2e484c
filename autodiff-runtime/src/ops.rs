//! Primitives that plain Rust and ndarray lack, each written next to its adjoint.
//!
//! Every `op` here has an `op_pullback` beside it (`fn op(x) -> y` has
//! `fn op_pullback(x, d_out) -> dx`) and `op_value_and_pullback(x, d_out) -> (y, dx)` (the
//! value and the pullback in one call, which differentiated code takes in the forward sweep
//! where `op` returns one float) and, like every function `#[differentiate]` annotates, a
//! companion `op` in the type namespace whose `op::pullback` is that pullback: a differentiated
//! body calls `autodiff::ops::op(..)` (or an imported or renamed `op`) like any annotated
//! function, and the same functions run outside differentiated code too. They take scalars,
//! arrays, views or references to them alike.

use crate::adjoint::HasDim;
use crate::tensor::{dot, dot_lhs_adj, dot_rhs_adj, DotLhs, DotRhs, Product};
use crate::value::Val;
use crate::Real;
use ndarray::{Array, ArrayBase, Axis, Data, DataMut, Dimension, Zip};

/// The companions: `op::pullback` is `op_pullback`, so that one `use` of `op` (renamed or not)
/// brings the derivative with the function. Modules, not the macro's forwarding types, since
/// the pullbacks here are generic.
macro_rules! companions {
    ($($op:ident => $pullback:ident, $both:ident),* $(,)?) => {$(
        #[doc(hidden)]
        pub mod $op {
            pub use super::$pullback as pullback;
            pub use super::$both as value_and_pullback;
        }
    )*};
}
companions!(
    relu => relu_pullback, relu_value_and_pullback,
    sigmoid => sigmoid_pullback, sigmoid_value_and_pullback,
    softplus => softplus_pullback, softplus_value_and_pullback,
    logsumexp => logsumexp_pullback, logsumexp_value_and_pullback,
    softmax => softmax_pullback, softmax_value_and_pullback,
    log_softmax => log_softmax_pullback, log_softmax_value_and_pullback,
    matmul => matmul_pullback, matmul_value_and_pullback,
);

/// `op_value_and_pullback` of the element-wise ops: the value, then the pullback.
macro_rules! elementwise_value_and_pullback {
    ($($op:ident, $pullback:ident => $both:ident),* $(,)?) => {$(
        #[doc = concat!("[`", stringify!($op), "`] and [`", stringify!($pullback), "`] in one call.")]
        pub fn $both<X: Val>(x: X, d_out: Owned<X>) -> (Owned<X>, Owned<X>)
        where
            X::Canon: MapElems,
        {
            ($op(&x), $pullback(x, d_out))
        }
    )*};
}
elementwise_value_and_pullback!(
    relu, relu_pullback => relu_value_and_pullback,
    sigmoid, sigmoid_pullback => sigmoid_value_and_pullback,
    softplus, softplus_pullback => softplus_value_and_pullback,
);

/// `op_value_and_pullback` of the ops over a whole array or its last axis.
macro_rules! array_value_and_pullback {
    ($($op:ident, $pullback:ident, $out:ty, $d_out:ty => $both:ident),* $(,)?) => {$(
        #[doc = concat!("[`", stringify!($op), "`] and [`", stringify!($pullback), "`] in one call.")]
        pub fn $both<F: Real, S: Data<Elem = F>, D: Dimension, X: Val<Canon = ArrayBase<S, D>>>(
            x: X,
            d_out: $d_out,
        ) -> ($out, Array<F, D>) {
            ($op(&x), $pullback(x, d_out))
        }
    )*};
}
array_value_and_pullback!(
    logsumexp, logsumexp_pullback, F, F => logsumexp_value_and_pullback,
    softmax, softmax_pullback, Array<F, D>, Array<F, D> => softmax_value_and_pullback,
    log_softmax, log_softmax_pullback, Array<F, D>, Array<F, D> => log_softmax_value_and_pullback,
);

/// Scalars and arrays, element by element.
pub trait MapElems {
    /// The element type.
    type Elem: Real;
    /// The owned result of an element-wise map: the scalar itself, or an owned array.
    type Owned;
    /// `f` applied to every element.
    fn map_elems(&self, f: impl Fn(Self::Elem) -> Self::Elem) -> Self::Owned;
    /// `f(x, d)` for every element `x` of `self` and the matching element `d` of `other`.
    fn zip_elems(
        &self,
        other: &Self::Owned,
        f: impl Fn(Self::Elem, Self::Elem) -> Self::Elem,
    ) -> Self::Owned;
}

macro_rules! scalar_map {
    ($($t:ident),*) => {$(
        impl MapElems for $t {
            type Elem = $t;
            type Owned = $t;
            #[inline(always)]
            fn map_elems(&self, f: impl Fn($t) -> $t) -> $t {
                f(*self)
            }
            #[inline(always)]
            fn zip_elems(&self, other: &$t, f: impl Fn($t, $t) -> $t) -> $t {
                f(*self, *other)
            }
        }
    )*};
}
scalar_map!(f32, f64);

impl<F: Real, S: Data<Elem = F>, D: Dimension> MapElems for ArrayBase<S, D> {
    type Elem = F;
    type Owned = Array<F, D>;
    fn map_elems(&self, f: impl Fn(F) -> F) -> Array<F, D> {
        self.mapv(f)
    }
    fn zip_elems(&self, other: &Array<F, D>, f: impl Fn(F, F) -> F) -> Array<F, D> {
        if self.shape() != other.shape() {
            panic!(
                "autodiff: pullback adjoint of shape {:?} for an input of shape {:?}",
                other.shape(),
                self.shape()
            );
        }
        Zip::from(self).and(other).map_collect(|&x, &d| f(x, d))
    }
}

/// The element-wise result type of `X`.
pub type Owned<X> = <<X as Val>::Canon as MapElems>::Owned;

fn relu1<F: Real>(x: F) -> F {
    if x > F::from_f64(0.0) {
        x
    } else {
        F::from_f64(0.0)
    }
}

fn relu_adjoint<F: Real>(x: F, d: F) -> F {
    if x > F::from_f64(0.0) {
        d
    } else {
        F::from_f64(0.0) * d
    }
}

fn sigmoid1<F: Real>(x: F) -> F {
    let v = x.to_f64();
    F::from_f64(if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    })
}

fn softplus1<F: Real>(x: F) -> F {
    let v = x.to_f64();
    F::from_f64(v.max(0.0) + (-v.abs()).exp().ln_1p())
}

/// `x.stop_gradient()`: the value of `x`, which differentiated code treats as a constant (JAX's
/// `stop_gradient`, PyTorch's `detach`). Its derivative is zero, and `#[differentiate]` does
/// not differentiate what only it reads: the shift of a log-sum-exp,
/// `(x[i] - m.stop_gradient()).exp()` with `m` a running maximum, leaves the maximum's loop
/// out of the reverse sweep (its gradient is zero anyway, mathematically). Scalars and arrays;
/// an array's value is copied.
pub trait StopGradient {
    /// The scalar, or an owned array.
    type Output;
    /// The value, as a constant for differentiation.
    fn stop_gradient(&self) -> Self::Output;
}

impl<T: MapElems> StopGradient for T {
    type Output = T::Owned;
    #[inline(always)]
    fn stop_gradient(&self) -> T::Owned {
        self.map_elems(|v| v)
    }
}

/// `max(x, 0)`, element-wise.
pub fn relu<X: Val>(x: X) -> Owned<X>
where
    X::Canon: MapElems,
{
    x.canon().map_elems(relu1)
}

/// Pullback of [`relu`]: `d_out` where `x > 0`, zero elsewhere (zero at the kink, as JAX).
pub fn relu_pullback<X: Val>(x: X, d_out: Owned<X>) -> Owned<X>
where
    X::Canon: MapElems,
{
    x.canon().zip_elems(&d_out, relu_adjoint)
}

/// The logistic function `1 / (1 + e^-x)`, element-wise, without overflow for large `|x|`.
pub fn sigmoid<X: Val>(x: X) -> Owned<X>
where
    X::Canon: MapElems,
{
    x.canon().map_elems(sigmoid1)
}

/// Pullback of [`sigmoid`]: `d_out * s * (1 - s)`.
pub fn sigmoid_pullback<X: Val>(x: X, d_out: Owned<X>) -> Owned<X>
where
    X::Canon: MapElems,
{
    x.canon().zip_elems(&d_out, |x, d| {
        let s = sigmoid1(x);
        d * s * (F1::one(s) - s)
    })
}

/// `ln(1 + e^x)`, element-wise, without overflow for large `|x|`.
pub fn softplus<X: Val>(x: X) -> Owned<X>
where
    X::Canon: MapElems,
{
    x.canon().map_elems(softplus1)
}

/// Pullback of [`softplus`]: `d_out * sigmoid(x)`.
pub fn softplus_pullback<X: Val>(x: X, d_out: Owned<X>) -> Owned<X>
where
    X::Canon: MapElems,
{
    x.canon().zip_elems(&d_out, |x, d| d * sigmoid1(x))
}

/// `1` in the type of a value.
trait F1 {
    fn one(self) -> Self;
}
impl<F: Real> F1 for F {
    fn one(self) -> F {
        F::from_f64(1.0)
    }
}

fn lse_of<'a, F: Real + 'a>(values: impl Iterator<Item = &'a F> + Clone) -> F {
    let m = values
        .clone()
        .fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
    if m == f64::NEG_INFINITY || m.is_nan() {
        return F::from_f64(m);
    }
    F::from_f64(m + values.map(|v| (v.to_f64() - m).exp()).sum::<f64>().ln())
}

/// `ln(sum(exp(x)))` over all elements, computed stably (shifted by the maximum).
pub fn logsumexp<F: Real, S: Data<Elem = F>, D: Dimension, X: Val<Canon = ArrayBase<S, D>>>(
    x: X,
) -> F {
    lse_of(x.canon().iter())
}

/// Pullback of [`logsumexp`]: `d_out * softmax(x)` over all elements.
pub fn logsumexp_pullback<
    F: Real,
    S: Data<Elem = F>,
    D: Dimension,
    X: Val<Canon = ArrayBase<S, D>>,
>(
    x: X,
    d_out: F,
) -> Array<F, D> {
    let mut out = x.canon().to_owned();
    let scale = d_out.to_f64() / shifted_exps(&mut out);
    out.mapv_inplace(|e| F::from_f64(e.to_f64() * scale));
    out
}

fn last_axis<S: ndarray::RawData, D: Dimension>(x: &ArrayBase<S, D>, op: &str) -> Axis {
    if x.ndim() == 0 {
        panic!(
            "autodiff::ops::{op}: needs an array with at least one axis, got a 0-dimensional one"
        );
    }
    Axis(x.ndim() - 1)
}

/// Softmax along the last axis (row-wise for a matrix), computed stably.
pub fn softmax<F: Real, S: Data<Elem = F>, D: Dimension, X: Val<Canon = ArrayBase<S, D>>>(
    x: X,
) -> Array<F, D> {
    let x = x.canon();
    let axis = last_axis(x, "softmax");
    let mut out = x.to_owned();
    for mut lane in out.lanes_mut(axis) {
        let total = shifted_exps(&mut lane);
        lane.mapv_inplace(|e| F::from_f64(e.to_f64() / total));
    }
    out
}

/// Writes `exp(v - max)` over every element (one `exp` each, the maximum making them stable)
/// and returns their sum: the softmax is each divided by it.
fn shifted_exps<F: Real, S: DataMut<Elem = F>, D: Dimension>(a: &mut ArrayBase<S, D>) -> f64 {
    let m = a.fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
    let mut total = 0.0;
    a.mapv_inplace(|v| {
        let e = (v.to_f64() - m).exp();
        total += e;
        F::from_f64(e)
    });
    total
}

/// Pullback of [`softmax`]: `s * (d - sum(d * s))` along the last axis.
pub fn softmax_pullback<
    F: Real,
    S: Data<Elem = F>,
    D: Dimension,
    X: Val<Canon = ArrayBase<S, D>>,
>(
    x: X,
    d_out: Array<F, D>,
) -> Array<F, D> {
    let s = softmax(x.canon());
    check_shape("softmax", s.shape(), d_out.shape());
    let axis = last_axis(&s, "softmax");
    let mut out = d_out;
    for (mut d, s) in out.lanes_mut(axis).into_iter().zip(s.lanes(axis)) {
        let dot = d
            .iter()
            .zip(s.iter())
            .fold(F::from_f64(0.0), |acc, (&d, &s)| acc + d * s);
        Zip::from(&mut d)
            .and(&s)
            .for_each(|d, &s| *d = s * (*d - dot));
    }
    out
}

/// Log-softmax along the last axis (row-wise for a matrix), computed stably.
pub fn log_softmax<F: Real, S: Data<Elem = F>, D: Dimension, X: Val<Canon = ArrayBase<S, D>>>(
    x: X,
) -> Array<F, D> {
    let x = x.canon();
    let axis = last_axis(x, "log_softmax");
    let mut out = x.to_owned();
    for mut lane in out.lanes_mut(axis) {
        let l = lse_of(lane.iter());
        lane.mapv_inplace(|v| v - l);
    }
    out
}

/// Pullback of [`log_softmax`]: `d - softmax(x) * sum(d)` along the last axis.
pub fn log_softmax_pullback<
    F: Real,
    S: Data<Elem = F>,
    D: Dimension,
    X: Val<Canon = ArrayBase<S, D>>,
>(
    x: X,
    d_out: Array<F, D>,
) -> Array<F, D> {
    let s = softmax(x.canon());
    check_shape("log_softmax", s.shape(), d_out.shape());
    let axis = last_axis(&s, "log_softmax");
    let mut out = d_out;
    for (mut d, s) in out.lanes_mut(axis).into_iter().zip(s.lanes(axis)) {
        let total = d.iter().fold(F::from_f64(0.0), |acc, &d| acc + d);
        Zip::from(&mut d).and(&s).for_each(|d, &s| *d -= s * total);
    }
    out
}

fn check_shape(op: &str, x: &[usize], d: &[usize]) {
    if x != d {
        panic!("autodiff::ops::{op}_pullback: d_out has shape {d:?} but the input has shape {x:?}");
    }
}

/// The matrix product, the same as ndarray's `a.dot(b)`: matrix-matrix, matrix-vector,
/// vector-matrix and vector-vector.
pub fn matmul<A: Val, B: Val>(a: A, b: B) -> <A::Canon as Product<B::Canon>>::Output
where
    A::Canon: Product<B::Canon>,
{
    dot(&a, &b)
}

/// Pullback of [`matmul`]: `(d_out · bᵀ, aᵀ · d_out)` for matrices, through GEMM on transposed
/// views.
#[allow(clippy::type_complexity)]
pub fn matmul_pullback<A: Val + HasDim, B: Val + HasDim, DC>(
    a: A,
    b: B,
    d_out: DC,
) -> (
    <A::Dim as DotLhs<B::Canon, DC>>::Out,
    <B::Dim as DotRhs<A::Canon, DC>>::Out,
)
where
    A::Dim: DotLhs<B::Canon, DC>,
    B::Dim: DotRhs<A::Canon, DC>,
    DC: Val<Canon = DC>,
{
    (dot_lhs_adj(&a, &b, &d_out), dot_rhs_adj(&a, &b, &d_out))
}

/// [`matmul`] and [`matmul_pullback`] in one call.
#[allow(clippy::type_complexity)]
pub fn matmul_value_and_pullback<A: Val + HasDim, B: Val + HasDim, DC>(
    a: A,
    b: B,
    d_out: DC,
) -> (
    <A::Canon as Product<B::Canon>>::Output,
    (
        <A::Dim as DotLhs<B::Canon, DC>>::Out,
        <B::Dim as DotRhs<A::Canon, DC>>::Out,
    ),
)
where
    A::Canon: Product<B::Canon>,
    A::Dim: DotLhs<B::Canon, DC>,
    B::Dim: DotRhs<A::Canon, DC>,
    DC: Val<Canon = DC>,
{
    (dot(&a, &b), matmul_pullback(a, b, d_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    fn central(f: impl Fn(f64) -> f64, x: f64) -> f64 {
        let h = 1e-6;
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn scalar_pullbacks_match_finite_differences() {
        for &x in &[-30.0, -2.5, -0.3, 0.4, 1.7, 30.0] {
            assert!((relu_pullback(x, 1.0) - central(relu, x)).abs() < 1e-6);
            assert!((sigmoid_pullback(x, 1.0) - central(sigmoid, x)).abs() < 1e-6);
            assert!((softplus_pullback(x, 1.0) - central(softplus, x)).abs() < 1e-6);
        }
        assert_eq!(relu_pullback(0.0, 1.0), 0.0);
        assert_eq!(sigmoid(0.0f32), 0.5);
        assert!((softplus(1000.0f64) - 1000.0).abs() < 1e-9);
        assert!(softplus(-1000.0f64) >= 0.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_are_stable() {
        let x = array![[1000.0, 1000.0], [0.0, -1000.0]];
        let s: Array2<f64> = softmax(&x);
        assert!((s[[0, 0]] - 0.5).abs() < 1e-12 && (s[[1, 0]] - 1.0).abs() < 1e-12);
        let l: Array2<f64> = log_softmax(&x);
        assert!((l[[0, 1]] + 2f64.ln()).abs() < 1e-12);
        assert!((logsumexp(&array![1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
    }

    #[test]
    fn matmul_pullback_matches_the_transposed_products() {
        let a: Array2<f64> = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let b: Array2<f64> = array![[1.0, -1.0, 0.5], [2.0, 0.0, 1.0]];
        let d = Array2::from_elem((3, 3), 1.0);
        let (da, db) = matmul_pullback(&a, &b, d.clone());
        assert_eq!(da, d.dot(&b.t()));
        assert_eq!(db, a.t().dot(&d));
    }
}
