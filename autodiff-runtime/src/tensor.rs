//! Tensor primitives as generated code calls them, each next to its adjoint.
//!
//! Forward helpers take every operand by reference (read through [`Val`]) so that the forward
//! sweep never moves a value the reverse sweep still needs, and they dispatch on the operand
//! types, so the same call serves scalars, arrays and any mix of the two. Adjoint helpers take
//! `(operands.., dy, constants..)` and return the contribution to one operand; none reads the
//! output, so the reverse sweep need not keep it (a matrix product's, say).

use crate::adjoint::{Accumulate, HasDim};
use crate::value::{Contribution, Val};
use crate::Real;
use ndarray::linalg::{general_mat_mul, general_mat_vec_mul, Dot};
use ndarray::{
    Array, Array1, Array2, ArrayBase, ArrayView, ArrayView2, ArrayViewMut, Axis, Data, DataMut,
    DimMax, Dimension, Ix1, Ix2, RemoveAxis, SliceArg,
};

// ----- element-wise arithmetic ---------------------------------------------------------------

/// `+ - * /` between scalars and arrays, with ndarray's broadcasting.
pub trait Arith<Rhs: ?Sized> {
    /// The result type.
    type Output;
    /// `self + rhs`.
    fn add_(&self, rhs: &Rhs) -> Self::Output;
    /// `self - rhs`.
    fn sub_(&self, rhs: &Rhs) -> Self::Output;
    /// `self * rhs`.
    fn mul_(&self, rhs: &Rhs) -> Self::Output;
    /// `self / rhs`.
    fn div_(&self, rhs: &Rhs) -> Self::Output;
    /// `self % rhs`.
    fn rem_(&self, rhs: &Rhs) -> Self::Output;
}

/// Unary minus on a scalar or an array.
pub trait Negate {
    /// The result type.
    type Output;
    /// `-self`.
    fn neg_(&self) -> Self::Output;
}

macro_rules! scalar_arith {
    ($($t:ident),*) => {$(
        impl Arith<$t> for $t {
            type Output = $t;
            #[inline(always)]
            fn add_(&self, r: &$t) -> $t { *self + *r }
            #[inline(always)]
            fn sub_(&self, r: &$t) -> $t { *self - *r }
            #[inline(always)]
            fn mul_(&self, r: &$t) -> $t { *self * *r }
            #[inline(always)]
            fn div_(&self, r: &$t) -> $t { *self / *r }
            #[inline(always)]
            fn rem_(&self, r: &$t) -> $t { *self % *r }
        }
        impl<S: Data<Elem = $t>, D: Dimension> Arith<$t> for ArrayBase<S, D> {
            type Output = Array<$t, D>;
            fn add_(&self, r: &$t) -> Array<$t, D> { self + *r }
            fn sub_(&self, r: &$t) -> Array<$t, D> { self - *r }
            fn mul_(&self, r: &$t) -> Array<$t, D> { self * *r }
            fn div_(&self, r: &$t) -> Array<$t, D> { self / *r }
            fn rem_(&self, r: &$t) -> Array<$t, D> { self % *r }
        }
        impl<S: Data<Elem = $t>, D: Dimension> Arith<ArrayBase<S, D>> for $t {
            type Output = Array<$t, D>;
            fn add_(&self, r: &ArrayBase<S, D>) -> Array<$t, D> { *self + r }
            fn sub_(&self, r: &ArrayBase<S, D>) -> Array<$t, D> { *self - r }
            fn mul_(&self, r: &ArrayBase<S, D>) -> Array<$t, D> { *self * r }
            fn div_(&self, r: &ArrayBase<S, D>) -> Array<$t, D> { *self / r }
            fn rem_(&self, r: &ArrayBase<S, D>) -> Array<$t, D> { r.mapv(|v| *self % v) }
        }
        impl Negate for $t {
            type Output = $t;
            #[inline(always)]
            fn neg_(&self) -> $t { -*self }
        }
    )*};
}
scalar_arith!(f32, f64);

impl<F: Real, S1, S2, D1, D2> Arith<ArrayBase<S2, D2>> for ArrayBase<S1, D1>
where
    S1: Data<Elem = F>,
    S2: Data<Elem = F>,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    type Output = Array<F, <D1 as DimMax<D2>>::Output>;
    fn add_(&self, r: &ArrayBase<S2, D2>) -> Self::Output {
        check_broadcast("+", self.shape(), r.shape());
        self + r
    }
    fn sub_(&self, r: &ArrayBase<S2, D2>) -> Self::Output {
        check_broadcast("-", self.shape(), r.shape());
        self - r
    }
    fn mul_(&self, r: &ArrayBase<S2, D2>) -> Self::Output {
        check_broadcast("*", self.shape(), r.shape());
        self * r
    }
    fn div_(&self, r: &ArrayBase<S2, D2>) -> Self::Output {
        check_broadcast("/", self.shape(), r.shape());
        self / r
    }
    fn rem_(&self, r: &ArrayBase<S2, D2>) -> Self::Output {
        check_broadcast("%", self.shape(), r.shape());
        self % r
    }
}

impl<F: Real, S: Data<Elem = F>, D: Dimension> Negate for ArrayBase<S, D> {
    type Output = Array<F, D>;
    fn neg_(&self) -> Array<F, D> {
        self.mapv(|v| -v)
    }
}

/// Panics, naming the operation and both shapes, where ndarray would panic with only
/// "incompatible shapes".
fn check_broadcast(op: &str, a: &[usize], b: &[usize]) {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        if i + s.len() >= n {
            s[i + s.len() - n]
        } else {
            1
        }
    };
    if (0..n).any(|i| at(a, i) != at(b, i) && at(a, i) != 1 && at(b, i) != 1) {
        panic!("autodiff: `{op}` of arrays of shapes {a:?} and {b:?}: ShapeError/IncompatibleShape: incompatible shapes");
    }
}

macro_rules! binary_fn {
    ($($name:ident => $method:ident, $doc:literal;)*) => {$(
        #[doc = $doc]
        #[inline(always)]
        pub fn $name<A: Val + ?Sized, B: Val + ?Sized>(a: &A, b: &B) -> <A::Canon as Arith<B::Canon>>::Output
        where
            A::Canon: Arith<B::Canon>,
        {
            a.canon().$method(b.canon())
        }
    )*};
}
binary_fn! {
    add => add_, "`a + b` for scalars and arrays (broadcasting). Adjoint: `dy` to each, reduced to its shape.";
    sub => sub_, "`a - b` for scalars and arrays (broadcasting). Adjoint: `dy` and `-dy`.";
    mul => mul_, "`a * b` element-wise (broadcasting). Adjoint: the `mul` rule of the macro's table.";
    div => div_, "`a / b` element-wise (broadcasting). Adjoint: the `div` rule of the macro's table.";
    rem => rem_, "`a % b` element-wise (broadcasting). Adjoint: the `rem` rule of the macro's table.";
}

/// `+ - * /` reusing the left operand's storage where the right one broadcasts to its shape:
/// the forward sweep's `y = v + b` where nothing reads `v` afterwards (its shape aside), as
/// `v += &b` would be by hand. The elements are those of [`Arith`] (`a + b` each), so values
/// stay bit-identical; where the right operand is the larger, a new array is built as
/// [`Arith`] does.
pub trait ArithOwned<Rhs: ?Sized>: Sized {
    /// The result type.
    type Output;
    /// `self + rhs`.
    fn add_owned_(self, rhs: &Rhs) -> Self::Output;
    /// `self - rhs`.
    fn sub_owned_(self, rhs: &Rhs) -> Self::Output;
    /// `self * rhs`.
    fn mul_owned_(self, rhs: &Rhs) -> Self::Output;
    /// `self / rhs`.
    fn div_owned_(self, rhs: &Rhs) -> Self::Output;
}

macro_rules! scalar_arith_owned {
    ($($t:ident),*) => {$(
        // A scalar on the left: nothing to reuse.
        impl<R: ?Sized> ArithOwned<R> for $t
        where
            $t: Arith<R>,
        {
            type Output = <$t as Arith<R>>::Output;
            #[inline(always)]
            fn add_owned_(self, r: &R) -> Self::Output { self.add_(r) }
            #[inline(always)]
            fn sub_owned_(self, r: &R) -> Self::Output { self.sub_(r) }
            #[inline(always)]
            fn mul_owned_(self, r: &R) -> Self::Output { self.mul_(r) }
            #[inline(always)]
            fn div_owned_(self, r: &R) -> Self::Output { self.div_(r) }
        }
        impl<S: Data<Elem = $t>, D: Dimension> ArithOwned<$t> for ArrayBase<S, D> {
            type Output = Array<$t, D>;
            fn add_owned_(self, r: &$t) -> Array<$t, D> { each(self, |x| x + *r) }
            fn sub_owned_(self, r: &$t) -> Array<$t, D> { each(self, |x| x - *r) }
            fn mul_owned_(self, r: &$t) -> Array<$t, D> { each(self, |x| x * *r) }
            fn div_owned_(self, r: &$t) -> Array<$t, D> { each(self, |x| x / *r) }
        }
    )*};
}
scalar_arith_owned!(f32, f64);

/// A reference on the left: nothing to reuse.
impl<T: Val + ?Sized, R: ?Sized> ArithOwned<R> for &T
where
    T::Canon: Arith<R>,
{
    type Output = <T::Canon as Arith<R>>::Output;
    fn add_owned_(self, r: &R) -> Self::Output {
        self.canon().add_(r)
    }
    fn sub_owned_(self, r: &R) -> Self::Output {
        self.canon().sub_(r)
    }
    fn mul_owned_(self, r: &R) -> Self::Output {
        self.canon().mul_(r)
    }
    fn div_owned_(self, r: &R) -> Self::Output {
        self.canon().div_(r)
    }
}

impl<F: Real, S1, S2, D1, D2> ArithOwned<ArrayBase<S2, D2>> for ArrayBase<S1, D1>
where
    S1: Data<Elem = F>,
    S2: Data<Elem = F>,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    type Output = Array<F, <D1 as DimMax<D2>>::Output>;
    fn add_owned_(self, r: &ArrayBase<S2, D2>) -> Self::Output {
        pairwise(self, r, |a, b| a + b, |a, r| a.add_(r))
    }
    fn sub_owned_(self, r: &ArrayBase<S2, D2>) -> Self::Output {
        pairwise(self, r, |a, b| a - b, |a, r| a.sub_(r))
    }
    fn mul_owned_(self, r: &ArrayBase<S2, D2>) -> Self::Output {
        pairwise(self, r, |a, b| a * b, |a, r| a.mul_(r))
    }
    fn div_owned_(self, r: &ArrayBase<S2, D2>) -> Self::Output {
        pairwise(self, r, |a, b| a / b, |a, r| a.div_(r))
    }
}

/// `f` of each element, in `a`'s storage (a view's elements are copied first).
fn each<F: Real, S: Data<Elem = F>, D: Dimension>(
    a: ArrayBase<S, D>,
    f: impl Fn(F) -> F,
) -> Array<F, D> {
    let mut a = a.into_owned();
    a.mapv_inplace(f);
    a
}

/// `f` of each pair of elements, in `a`'s storage when `b` broadcasts to `a`'s shape; else
/// `apart`, the by-reference operation (a new array of the broadcast shape).
fn pairwise<F, S1, S2, D1, D2>(
    a: ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
    f: impl Fn(F, F) -> F,
    apart: impl FnOnce(&ArrayBase<S1, D1>, &ArrayBase<S2, D2>) -> Array<F, <D1 as DimMax<D2>>::Output>,
) -> Array<F, <D1 as DimMax<D2>>::Output>
where
    F: Real,
    S1: Data<Elem = F>,
    S2: Data<Elem = F>,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    if b.ndim() <= a.ndim() && b.broadcast(a.raw_dim()).is_some() {
        let mut own = a.into_owned();
        own.zip_mut_with(b, |x, &y| *x = f(*x, y));
        match own.into_dimensionality() {
            Ok(out) => out,
            Err(e) => unreachable!("the broadcast shape has the left operand's dimension: {e}"),
        }
    } else {
        apart(&a, b)
    }
}

macro_rules! binary_owned_fn {
    ($($name:ident => $method:ident, $doc:literal;)*) => {$(
        #[doc = $doc]
        #[inline(always)]
        pub fn $name<A, B: Val + ?Sized>(a: A, b: &B) -> <A as ArithOwned<B::Canon>>::Output
        where
            A: ArithOwned<B::Canon>,
        {
            a.$method(b.canon())
        }
    )*};
}
binary_owned_fn! {
    add_owned => add_owned_, "[`add`] reusing `a`'s storage ([`ArithOwned`]).";
    sub_owned => sub_owned_, "[`sub`] reusing `a`'s storage ([`ArithOwned`]).";
    mul_owned => mul_owned_, "[`mul`] reusing `a`'s storage ([`ArithOwned`]).";
    div_owned => div_owned_, "[`div`] reusing `a`'s storage ([`ArithOwned`]).";
}

/// `-x`. Adjoint: `-dy`.
#[inline(always)]
pub fn neg<X: Val + ?Sized>(x: &X) -> <X::Canon as Negate>::Output
where
    X::Canon: Negate,
{
    x.canon().neg_()
}

// ----- matrix products -----------------------------------------------------------------------

/// `a.dot(b)` for matrix-matrix, matrix-vector, vector-matrix and vector-vector.
#[inline]
pub fn dot<A: Val + ?Sized, B: Val + ?Sized>(
    a: &A,
    b: &B,
) -> <A::Canon as Product<B::Canon>>::Output
where
    A::Canon: Product<B::Canon>,
{
    a.canon().product(b.canon())
}

/// ndarray's `Dot`, with a small matrix-matrix product (the seed's `2x4` by `4x1`) as plain
/// loops, as its adjoints run ([`DotLhs`], [`DotRhs`]): matrixmultiply's packing and dispatch
/// cost more than the arithmetic there. The loops accumulate each element as matrixmultiply's
/// kernel for this machine does (fused multiply-adds or separate ones, in order), so the value
/// is ndarray's to the bit; where that kernel is not known, ndarray computes it.
pub trait Product<B: ?Sized> {
    /// The product's type: ndarray's.
    type Output;
    /// `self.dot(b)`.
    fn product(&self, b: &B) -> Self::Output;
}

impl<F, S1, S2> Product<ArrayBase<S2, Ix2>> for ArrayBase<S1, Ix2>
where
    F: Real,
    S1: Data<Elem = F>,
    S2: Data<Elem = F>,
{
    type Output = Array2<F>;
    #[inline]
    fn product(&self, b: &ArrayBase<S2, Ix2>) -> Array2<F> {
        let ((m, k), n) = (self.dim(), b.ncols());
        let small = b.nrows() == k
            && k <= KERNEL_DEPTH
            && m.saturating_mul(n).saturating_mul(k) <= SMALL_PRODUCT;
        match kernel_accumulation() {
            Some(fused) if small => Array2::from_shape_fn((m, n), |(i, j)| {
                let mut s = F::zero();
                for p in 0..k {
                    let (x, y) = (self[[i, p]], b[[p, j]]);
                    s = if fused {
                        x.fused_mul_add(y, s)
                    } else {
                        s + x * y
                    };
                }
                s
            }),
            _ => self.dot(b),
        }
    }
}

/// The depth matrixmultiply's kernels take in one pass (its `KC`, 256 for `f32` and `f64`):
/// a product at most this deep accumulates each element in one run over `k`.
const KERNEL_DEPTH: usize = 256;

/// How matrixmultiply's kernel for this machine accumulates (as its own dispatch chooses):
/// `Some(true)` with fused multiply-adds (FMA with AVX2, or AVX-512), `Some(false)` with
/// separate ones (AVX), `None` for the others (not reproduced: ndarray computes those).
fn kernel_accumulation() -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            || (std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("avx2"))
        {
            return Some(true);
        }
        if std::arch::is_x86_feature_detected!("avx") {
            return Some(false);
        }
    }
    None
}

macro_rules! ndarray_products {
    ($(($da:ty, $db:ty)),*) => {$(
        impl<F, S1, S2> Product<ArrayBase<S2, $db>> for ArrayBase<S1, $da>
        where
            F: Real,
            S1: Data<Elem = F>,
            S2: Data<Elem = F>,
            ArrayBase<S1, $da>: Dot<ArrayBase<S2, $db>>,
        {
            type Output = <ArrayBase<S1, $da> as Dot<ArrayBase<S2, $db>>>::Output;
            #[inline]
            fn product(&self, b: &ArrayBase<S2, $db>) -> Self::Output {
                self.dot(b)
            }
        }
    )*};
}
ndarray_products!((Ix2, Ix1), (Ix1, Ix2), (Ix1, Ix1));

/// `da` of `c = a.dot(b)` given `dc`, for each combination of dimensions: implemented on `a`'s
/// dimension, which is all it reads of `a` (the reverse sweep can keep `a`'s shape alone).
pub trait DotLhs<B: ?Sized, DC: ?Sized> {
    /// `a`'s adjoint type.
    type Out;
    /// `da`: for matrices `dc · bᵀ`.
    fn dot_lhs(&self, b: &B, dc: &DC) -> Self::Out;
}

/// `db` of `c = a.dot(b)` given `dc`: implemented on `b`'s dimension, all it reads of `b`.
pub trait DotRhs<A: ?Sized, DC: ?Sized> {
    /// `b`'s adjoint type.
    type Out;
    /// `db`: for matrices `aᵀ · dc`.
    fn dot_rhs(&self, a: &A, dc: &DC) -> Self::Out;
}

// Matrix times matrix: `da = dc bᵀ`, `db = aᵀ dc`.
impl<F, S2, S3> DotLhs<ArrayBase<S2, Ix2>, ArrayBase<S3, Ix2>> for Ix2
where
    F: Real,
    S2: Data<Elem = F>,
    S3: Data<Elem = F>,
{
    type Out = Array2<F>;
    fn dot_lhs(&self, b: &ArrayBase<S2, Ix2>, dc: &ArrayBase<S3, Ix2>) -> Array2<F> {
        // GEMM on a transposed view: no transposed copy.
        let mut da = Array2::zeros(*self);
        mat_mul_into(&dc.view(), &b.t(), &mut da);
        da
    }
}

impl<F, S1, S3> DotRhs<ArrayBase<S1, Ix2>, ArrayBase<S3, Ix2>> for Ix2
where
    F: Real,
    S1: Data<Elem = F>,
    S3: Data<Elem = F>,
{
    type Out = Array2<F>;
    fn dot_rhs(&self, a: &ArrayBase<S1, Ix2>, dc: &ArrayBase<S3, Ix2>) -> Array2<F> {
        let mut db = Array2::zeros(*self);
        mat_mul_into(&a.t(), &dc.view(), &mut db);
        db
    }
}

// Matrix times vector: `da = dc ⊗ b`, `db = aᵀ dc`.
impl<F, S2, S3> DotLhs<ArrayBase<S2, Ix1>, ArrayBase<S3, Ix1>> for Ix2
where
    F: Real,
    S2: Data<Elem = F>,
    S3: Data<Elem = F>,
{
    type Out = Array2<F>;
    fn dot_lhs(&self, b: &ArrayBase<S2, Ix1>, dc: &ArrayBase<S3, Ix1>) -> Array2<F> {
        outer(dc, b)
    }
}

impl<F, S1, S3> DotRhs<ArrayBase<S1, Ix2>, ArrayBase<S3, Ix1>> for Ix1
where
    F: Real,
    S1: Data<Elem = F>,
    S3: Data<Elem = F>,
{
    type Out = Array1<F>;
    fn dot_rhs(&self, a: &ArrayBase<S1, Ix2>, dc: &ArrayBase<S3, Ix1>) -> Array1<F> {
        let mut db = Array1::zeros(*self);
        general_mat_vec_mul(F::from_f64(1.0), &a.t(), dc, F::from_f64(0.0), &mut db);
        db
    }
}

// Vector times matrix: `da = b dc`, `db = a ⊗ dc`.
impl<F, S2, S3> DotLhs<ArrayBase<S2, Ix2>, ArrayBase<S3, Ix1>> for Ix1
where
    F: Real,
    S2: Data<Elem = F>,
    S3: Data<Elem = F>,
{
    type Out = Array1<F>;
    fn dot_lhs(&self, b: &ArrayBase<S2, Ix2>, dc: &ArrayBase<S3, Ix1>) -> Array1<F> {
        let mut da = Array1::zeros(*self);
        general_mat_vec_mul(F::from_f64(1.0), b, dc, F::from_f64(0.0), &mut da);
        da
    }
}

impl<F, S1, S3> DotRhs<ArrayBase<S1, Ix1>, ArrayBase<S3, Ix1>> for Ix2
where
    F: Real,
    S1: Data<Elem = F>,
    S3: Data<Elem = F>,
{
    type Out = Array2<F>;
    fn dot_rhs(&self, a: &ArrayBase<S1, Ix1>, dc: &ArrayBase<S3, Ix1>) -> Array2<F> {
        outer(a, dc)
    }
}

// Vector times vector: `da = dc b`, `db = dc a`.
impl<F, S2> DotLhs<ArrayBase<S2, Ix1>, F> for Ix1
where
    F: Real,
    S2: Data<Elem = F>,
{
    type Out = Array1<F>;
    fn dot_lhs(&self, b: &ArrayBase<S2, Ix1>, dc: &F) -> Array1<F> {
        b.mapv(|v| v * *dc)
    }
}

impl<F, S1> DotRhs<ArrayBase<S1, Ix1>, F> for Ix1
where
    F: Real,
    S1: Data<Elem = F>,
{
    type Out = Array1<F>;
    fn dot_rhs(&self, a: &ArrayBase<S1, Ix1>, dc: &F) -> Array1<F> {
        a.mapv(|v| v * *dc)
    }
}

fn outer<F: Real, S1: Data<Elem = F>, S2: Data<Elem = F>>(
    u: &ArrayBase<S1, Ix1>,
    v: &ArrayBase<S2, Ix1>,
) -> Array2<F> {
    let mut out = Array2::zeros((u.len(), v.len()));
    for (mut row, &ui) in out.rows_mut().into_iter().zip(u.iter()) {
        row.zip_mut_with(v, |o, &vj| *o = ui * vj);
    }
    out
}

/// Products of at most this many multiply-adds run as plain loops.
const SMALL_PRODUCT: usize = 512;

/// `out = a . b`, `out` of the product's shape. A small product (the seed's `2x4` by `4x1`)
/// runs as plain loops: matrixmultiply's packing buffer and dispatch cost more than its
/// arithmetic there. Shapes that do not fit go to ndarray, which panics naming them.
fn mat_mul_into<F: Real>(a: &ArrayView2<'_, F>, b: &ArrayView2<'_, F>, out: &mut Array2<F>) {
    let ((m, k), n) = (a.dim(), b.ncols());
    let small = m.saturating_mul(n).saturating_mul(k) <= SMALL_PRODUCT;
    if b.nrows() == k && out.dim() == (m, n) && small {
        for ((i, j), o) in out.indexed_iter_mut() {
            let mut s = F::zero();
            for p in 0..k {
                s += a[[i, p]] * b[[p, j]];
            }
            *o = s;
        }
    } else {
        general_mat_mul(F::one(), a, b, F::zero(), out);
    }
}

/// Adjoint of `a.dot(b)` with respect to `a`: reads `a`'s shape (`a` or its [`Shape`](crate::adjoint::Shape), through [`HasDim`]), `b`
/// and `dy`.
#[inline]
pub fn dot_lhs_adj<A, B, DY>(a: &A, b: &B, dy: &DY) -> <A::Dim as DotLhs<B::Canon, DY::Canon>>::Out
where
    A: HasDim + ?Sized,
    B: Val + ?Sized,
    DY: Val + ?Sized,
    A::Dim: DotLhs<B::Canon, DY::Canon>,
{
    a.dim_of().dot_lhs(b.canon(), dy.canon())
}

/// Adjoint of `a.dot(b)` with respect to `b`: reads `a`, `b`'s shape and `dy`.
#[inline]
pub fn dot_rhs_adj<A, B, DY>(a: &A, b: &B, dy: &DY) -> <B::Dim as DotRhs<A::Canon, DY::Canon>>::Out
where
    A: Val + ?Sized,
    B: HasDim + ?Sized,
    DY: Val + ?Sized,
    B::Dim: DotRhs<A::Canon, DY::Canon>,
{
    b.dim_of().dot_rhs(a.canon(), dy.canon())
}

// ----- shape operations ----------------------------------------------------------------------

/// Adjoint of `x.t()` and `x.reversed_axes()`: the adjoint with its axes reversed back.
pub fn t_adj<
    X: ?Sized,
    F: Real,
    S: Data<Elem = F>,
    D: Dimension,
    DY: Val<Canon = ArrayBase<S, D>> + ?Sized,
>(
    _x: &X,
    dy: &DY,
) -> Array<F, D> {
    dy.canon().view().reversed_axes().to_owned()
}

/// Adjoint of `x.diag()` (the main diagonal of a matrix, as a view): `dy` on the diagonal of a
/// zero matrix of `x`'s shape.
pub fn diag_adj<
    F: Real,
    X: HasDim<Elem = F, Dim = Ix2> + ?Sized,
    S: Data<Elem = F>,
    DY: Val<Canon = ArrayBase<S, Ix1>> + ?Sized,
>(
    x: &X,
    dy: &DY,
) -> Array<F, Ix2> {
    let mut dx = Array::zeros(x.dim_of());
    dx.diag_mut().assign(dy.canon());
    dx
}

/// `x.reversed_axes()` on a view, so that `x` stays available to the reverse sweep.
pub fn reversed_axes<
    'a,
    F: 'a,
    S: Data<Elem = F> + 'a,
    D: Dimension + 'a,
    X: Val<Canon = ArrayBase<S, D>> + ?Sized,
>(
    x: &'a X,
) -> ArrayView<'a, F, D> {
    x.canon().view().reversed_axes()
}

/// `x.insert_axis(axis)` on a view.
pub fn insert_axis<
    'a,
    F: 'a,
    S: Data<Elem = F> + 'a,
    D: Dimension + 'a,
    X: Val<Canon = ArrayBase<S, D>> + ?Sized,
>(
    x: &'a X,
    axis: Axis,
) -> ArrayView<'a, F, D::Larger> {
    x.canon().view().insert_axis(axis)
}

/// Adjoint of `x.insert_axis(axis)`: the adjoint with that axis removed.
pub fn insert_axis_adj<
    X: ?Sized,
    F: Real,
    S: Data<Elem = F>,
    D: Dimension + RemoveAxis,
    DY: Val<Canon = ArrayBase<S, D>> + ?Sized,
>(
    _x: &X,
    dy: &DY,
    axis: Axis,
) -> Array<F, D::Smaller> {
    dy.canon().view().remove_axis(axis).to_owned()
}

/// `x.into_shape_with_order(shape)` on a view.
pub fn into_shape_with_order<
    'a,
    F: 'a,
    S: Data<Elem = F> + 'a,
    D: Dimension + 'a,
    X: Val<Canon = ArrayBase<S, D>> + ?Sized,
    E: ndarray::ShapeArg,
>(
    x: &'a X,
    shape: E,
) -> Result<ArrayView<'a, F, E::Dim>, ndarray::ShapeError> {
    x.canon().view().into_shape_with_order(shape)
}

/// Adjoint of a reshape (`into_shape_with_order`, `to_shape`): the adjoint in `x`'s shape.
pub fn reshape_adj<
    F: Real,
    X: HasDim<Elem = F> + ?Sized,
    S: Data<Elem = F>,
    E: Dimension,
    DY: Val<Canon = ArrayBase<S, E>> + ?Sized,
    Sh,
>(
    x: &X,
    dy: &DY,
    _shape: Sh,
) -> Array<F, X::Dim> {
    let (dy, dim) = (dy.canon(), x.dim_of());
    match dy.to_shape(dim.clone()) {
        Ok(v) => v.into_owned(),
        Err(e) => panic!(
            "autodiff: reshaping an adjoint of shape {:?} back to {:?}: {e}",
            dy.shape(),
            dim.slice()
        ),
    }
}

// ----- reductions ----------------------------------------------------------------------------

/// Adjoint of `x.sum()`: `dy` in every element.
pub fn sum_adj<F: Real, X: HasDim<Elem = F> + ?Sized, DY: Val<Canon = F> + ?Sized>(
    x: &X,
    dy: &DY,
) -> Array<F, X::Dim> {
    Array::from_elem(x.dim_of(), *dy.canon())
}

/// Adjoint of `x.mean()`: `dy / n` in every element.
pub fn mean_adj<F: Real, X: HasDim<Elem = F> + ?Sized, DY: Val<Canon = F> + ?Sized>(
    x: &X,
    dy: &DY,
) -> Array<F, X::Dim> {
    let dim = x.dim_of();
    let n = F::from_f64(dim.size() as f64);
    Array::from_elem(dim, *dy.canon() / n)
}

/// Adjoint of `x.sum_axis(axis)`: `dy` spread back along `axis`.
pub fn sum_axis_adj<F, X, S, DY>(x: &X, dy: &DY, axis: Axis) -> Array<F, X::Dim>
where
    F: Real,
    X: HasDim<Elem = F> + ?Sized,
    X::Dim: RemoveAxis,
    S: Data<Elem = F>,
    DY: Val<Canon = ArrayBase<S, <X::Dim as Dimension>::Smaller>> + ?Sized,
{
    let dim = x.dim_of();
    let spread = dy.canon().view().insert_axis(axis);
    match spread.broadcast(dim.clone()) {
        Some(b) => b.to_owned(),
        None => panic!(
            "autodiff: sum_axis adjoint of shape {:?} does not fit {:?}",
            dy.canon().shape(),
            dim.slice()
        ),
    }
}

/// Adjoint of `x.mean_axis(axis)`: `dy / n` spread back along `axis`.
pub fn mean_axis_adj<F, X, S, DY>(x: &X, dy: &DY, axis: Axis) -> Array<F, X::Dim>
where
    F: Real,
    X: HasDim<Elem = F> + ?Sized,
    X::Dim: RemoveAxis,
    S: Data<Elem = F>,
    DY: Val<Canon = ArrayBase<S, <X::Dim as Dimension>::Smaller>> + ?Sized,
{
    let n = F::from_f64(x.dim_of().slice()[axis.index()] as f64);
    let mut out = sum_axis_adj(x, dy, axis);
    out.mapv_inplace(|v| v / n);
    out
}

// ----- rows and columns ----------------------------------------------------------------------

/// Adjoint of `x.row(k)`, in place: adds `dy` (the row's adjoint, or its one contribution)
/// into row `k` of `x`'s adjoint `dx`. Only that row is touched, so a loop over a matrix's
/// rows costs in its reverse sweep what the rows cost, not a whole matrix per row.
pub fn row_acc<F: Real, SD: DataMut<Elem = F>, C: Contribution<F>>(
    dx: &mut ArrayBase<SD, Ix2>,
    dy: C,
    k: usize,
) {
    dx.row_mut(k).accumulate(dy);
}

/// A store into a view of an array buffer, `b.row_mut(k).assign(&v)` (`column_mut`,
/// `slice_mut`), with `v` read through references (so its type is inferred from its own
/// definition, not from `assign`'s parameter). Panics as `assign` does.
pub fn assign<F, D, V, S, E>(mut view: ArrayViewMut<'_, F, D>, v: &V)
where
    F: Real,
    D: Dimension,
    V: Val<Canon = ArrayBase<S, E>> + ?Sized,
    S: Data<Elem = F>,
    E: Dimension,
{
    view.assign(v.canon());
}

/// Adjoint of a store into a view of an array buffer (`b.row_mut(k).assign(&v)`, `column_mut`,
/// `slice_mut`), given the same view of the buffer's adjoint: its contents, which flow to `v`,
/// and zeros left in their place, since the store overwrote what the view held.
pub fn take_view<F: Real, D: Dimension>(mut dview: ArrayViewMut<'_, F, D>) -> Array<F, D> {
    let taken = dview.to_owned();
    dview.fill(F::from_f64(0.0));
    taken
}

/// Adjoint of `x.slice(info)` (`info` is `s![..]`), in place: adds `dy` into that part of
/// `x`'s adjoint `dx`.
pub fn slice_acc<
    F: Real,
    SD: DataMut<Elem = F>,
    D: Dimension,
    I: SliceArg<D>,
    C: Contribution<F>,
>(
    dx: &mut ArrayBase<SD, D>,
    dy: C,
    info: I,
) {
    dx.slice_mut(info).accumulate(dy);
}

/// Adjoint of `x.column(k)`, in place: adds `dy` into column `k` of `x`'s adjoint `dx`.
pub fn column_acc<F: Real, SD: DataMut<Elem = F>, C: Contribution<F>>(
    dx: &mut ArrayBase<SD, Ix2>,
    dy: C,
    k: usize,
) {
    dx.column_mut(k).accumulate(dy);
}

// ----- sorting ----------------------------------------------------------------------------

/// The order that sorts `v`, stably: its `k`-th entry is the index of the element that
/// `v.sort_by(|a, b| a.partial_cmp(b).unwrap())` puts at `k` (`descending`: the comparison
/// reversed; `total`: `total_cmp`, which orders NaN, where `partial_cmp` panics as the sort
/// would). A sort of differentiated values is this permutation applied (`v[k] = old[order[k]]`,
/// written by the macro's `desugar`): piecewise constant, so it has no derivative of its own,
/// and each element's adjoint goes back to where the element came from.
pub fn sorted_order<F: Real, V: AsRef<[F]> + ?Sized>(
    v: &V,
    descending: bool,
    total: bool,
) -> Vec<usize> {
    let v = v.as_ref();
    let mut order: Vec<usize> = (0..v.len()).collect();
    let compare = |a: F, b: F| {
        match total {
        true => a.to_f64().total_cmp(&b.to_f64()),
        false => a.partial_cmp(&b).unwrap_or_else(|| {
            panic!("autodiff: sorting compared {a:?} with {b:?} by `partial_cmp`, which orders no NaN (the sort itself would panic there)")
        }),
    }
    };
    order.sort_by(|&i, &j| match descending {
        false => compare(v[i], v[j]),
        true => compare(v[j], v[i]),
    });
    order
}

// ----- parts of slices -----------------------------------------------------------------------

/// `&x[start..end]` of a slice, `Vec` or fixed-size array (`end == usize::MAX`: to the end).
/// Panics, naming the range and the length, where indexing would.
#[inline]
pub fn range<F, X: AsRef<[F]> + ?Sized>(x: &X, start: usize, end: usize) -> &[F] {
    let x = x.as_ref();
    let end = if end == usize::MAX { x.len() } else { end };
    match x.get(start..end) {
        Some(part) => part,
        None => panic!(
            "autodiff: slice `[{start}..{end}]` of a slice of length {}: range out of bounds",
            x.len()
        ),
    }
}

/// Adjoint of `&x[start..end]`, in place: adds `dy` into that part of `x`'s adjoint `dx`.
#[inline]
pub fn range_acc<F: Real, DX: AsMut<[F]> + ?Sized, DY: AsRef<[F]> + ?Sized>(
    dx: &mut DX,
    dy: &DY,
    start: usize,
    end: usize,
) {
    let (dx, dy) = (dx.as_mut(), dy.as_ref());
    let end = if end == usize::MAX { dx.len() } else { end };
    let part = &mut dx[start..end];
    assert_eq!(
        part.len(),
        dy.len(),
        "autodiff: adjoint of a slice `[{start}..{end}]` of length {} has length {}",
        part.len(),
        dy.len()
    );
    for (d, &v) in part.iter_mut().zip(dy) {
        *d += v;
    }
}

// ----- buffers of points, kept flat ----------------------------------------------------------
// A local buffer of points (`let mut f = vec![[0.0; 3]; n];`, written `f[i][k] += ..`) is kept
// as one flat `Vec` by the generated code (`f[3 * i + k]`), so that its element writes and
// reads are those of any buffer of floats. `flatten` makes one from points (`x.to_vec()` of a
// `&[[f64; 3]]` parameter), `unflatten` reads one back as points where it is used whole (passed
// to a call, returned); each adjoint adds into its operand's adjoint in place.

/// The number of coordinates per point of a flat buffer of points, as a type (`Width::<3>`).
#[derive(Clone, Copy, Debug)]
pub struct Width<const N: usize>;

/// Points `x` as one flat `Vec`: point `i`'s coordinate `k` at `N * i + k`.
#[inline]
pub fn flatten<F: Real, const N: usize, X: AsRef<[[F; N]]> + ?Sized>(x: &X, _: Width<N>) -> Vec<F> {
    x.as_ref().as_flattened().to_vec()
}

/// Adjoint of [`flatten`], in place: adds the flat `dy` into the points' adjoint `dx`.
#[inline]
pub fn flatten_acc<F: Real, const N: usize, DX: AsMut<[[F; N]]> + ?Sized, DY: AsRef<[F]>>(
    dx: &mut DX,
    dy: DY,
    _: Width<N>,
) {
    let (dx, dy) = (dx.as_mut(), dy.as_ref());
    assert_eq!(
        dx.len() * N,
        dy.len(),
        "autodiff: adjoint of {} points of {N} coordinates kept flat has length {}",
        dx.len(),
        dy.len()
    );
    for (d, &v) in dx.as_flattened_mut().iter_mut().zip(dy) {
        *d += v;
    }
}

/// The flat buffer `x` read back as points of `N` coordinates. Panics if its length is not a
/// multiple of `N`.
#[inline]
pub fn unflatten<F: Real, const N: usize, X: AsRef<[F]> + ?Sized>(
    x: &X,
    _: Width<N>,
) -> Vec<[F; N]> {
    let (points, rest) = x.as_ref().as_chunks::<N>();
    assert!(
        rest.is_empty(),
        "autodiff: a flat buffer of length {} read as points of {N} coordinates",
        x.as_ref().len()
    );
    points.to_vec()
}

/// Adjoint of [`unflatten`], in place: adds the points' adjoint `dy` into the flat buffer's
/// adjoint `dx`.
#[inline]
pub fn unflatten_acc<F: Real, const N: usize, DX: AsMut<[F]> + ?Sized, DY: AsRef<[[F; N]]>>(
    dx: &mut DX,
    dy: DY,
    _: Width<N>,
) {
    let (dx, dy) = (dx.as_mut(), dy.as_ref().as_flattened());
    assert_eq!(
        dx.len(),
        dy.len(),
        "autodiff: adjoint of a flat buffer of length {} read as points has {} coordinates",
        dx.len(),
        dy.len()
    );
    for (d, &v) in dx.iter_mut().zip(dy) {
        *d += v;
    }
}

// ----- `Vec`s built by `push` ---------------------------------------------------------------

/// A `push` as the generated code writes it: `v[i] = x`, `v` extended with zeros to hold it
/// first when it is shorter (the forward sweep pushes in order; an iteration run again from a
/// restored buffer writes the same element).
#[inline]
pub fn set_grow<F: Copy + Default>(v: &mut Vec<F>, i: usize, x: F) {
    if v.len() <= i {
        v.resize(i + 1, F::default());
    }
    v[i] = x;
}

// ----- buffers of rows, kept flat ------------------------------------------------------------
// A local `Vec<Vec<F>>` written element by element (`let mut g = vec![vec![0.0; m]; n];`, then
// `g[i][j] += ..`, or a copy of a `&[Vec<F>]` parameter) is kept flat like a buffer of points,
// its width known only at run time.

/// The common length of rows (0 for none). Panics, naming the lengths, when they differ: a
/// buffer written `g[i][j]` is kept flat.
#[inline]
pub fn row_width<F>(x: &[Vec<F>]) -> usize {
    let width = x.first().map_or(0, Vec::len);
    if let Some((i, row)) = x.iter().enumerate().find(|(_, r)| r.len() != width) {
        panic!(
            "autodiff: rows copied into a buffer written `g[i][j]` must have one length: row 0 has {width}, row {i} has {}",
            row.len()
        );
    }
    width
}

/// Rows `x` as one flat `Vec`: row `i`'s element `j` at `width * i + j`.
#[inline]
pub fn flatten_rows<F: Real>(x: &[Vec<F>]) -> Vec<F> {
    row_width(x);
    x.concat()
}

/// Adjoint of [`flatten_rows`], in place: adds the flat `dy` into the rows' adjoint `dx`.
#[inline]
pub fn flatten_rows_acc<F: Real, DY: AsRef<[F]>>(dx: &mut [Vec<F>], dy: DY) {
    let dy = dy.as_ref();
    let total: usize = dx.iter().map(Vec::len).sum();
    assert_eq!(
        total,
        dy.len(),
        "autodiff: adjoint of {} rows kept flat has length {}",
        dx.len(),
        dy.len()
    );
    let mut at = 0;
    for row in dx.iter_mut() {
        for d in row.iter_mut() {
            *d += dy[at];
            at += 1;
        }
    }
}

/// The flat buffer `x` read back as `rows` rows of `width`. Panics unless its length is
/// `width * rows`.
#[inline]
pub fn unflatten_rows<F: Real, X: AsRef<[F]> + ?Sized>(
    x: &X,
    width: usize,
    rows: usize,
) -> Vec<Vec<F>> {
    let x = x.as_ref();
    assert_eq!(
        x.len(),
        width * rows,
        "autodiff: a flat buffer of length {} read as {rows} rows of {width}",
        x.len()
    );
    (0..rows)
        .map(|i| x[i * width..(i + 1) * width].to_vec())
        .collect()
}

/// Adjoint of [`unflatten_rows`], in place: adds the rows' adjoint `dy` into the flat buffer's
/// adjoint `dx`.
#[inline]
pub fn unflatten_rows_acc<F: Real, DX: AsMut<[F]> + ?Sized, DY: AsRef<[Vec<F>]>>(
    dx: &mut DX,
    dy: DY,
    width: usize,
    rows: usize,
) {
    let (dx, dy) = (dx.as_mut(), dy.as_ref());
    assert!(
        dy.len() == rows && dy.iter().all(|r| r.len() == width) && dx.len() == width * rows,
        "autodiff: adjoint of {rows} rows of {width} added into a flat buffer of length {}",
        dx.len()
    );
    for (i, row) in dy.iter().enumerate() {
        for (d, v) in dx[i * width..(i + 1) * width].iter_mut().zip(row) {
            *d += *v;
        }
    }
}
