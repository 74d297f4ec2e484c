//! The type-generic plumbing that generated gradient code calls.
//!
//! `#[differentiate]` sees the written types of a function's parameters but never the types of
//! its locals. So it does not emit type-specific code: it emits calls to the functions here, and
//! rustc picks the implementation for each value's type. For `f32`/`f64` every function is a
//! trivial `#[inline(always)]` wrapper, so after monomorphisation a scalar gradient is the same
//! handful of register operations a person would write; for arrays they allocate only the
//! adjoints themselves.
//!
//! - [`zero_like`]: the zero adjoint of a value (same type and shape).
//! - [`init`]: the adjoint of a value from its first contribution (an owned contribution of the
//!   right shape is moved, not copied).
//! - [`acc`]: add a further contribution into an adjoint.
//! - [`pb1`], [`pb2`], [`pb3`]: apply an element-wise pullback rule, written for scalars in the
//!   macro's rules table, to scalars or, element by element with broadcasting, to arrays;
//!   [`acc_pb1`], [`acc_pb2`], [`acc_pb3`] add the result into an existing adjoint, in place
//!   (no array for the contribution) where the adjoint is an array of the output's shape.
//! - [`Branch`]: which arm of an `if` ran, with the values its reverse sweep needs.
//!
//! Broadcasting is undone where adjoints meet their values: a contribution shaped like the
//! broadcast result is summed back to the value's shape.

use crate::value::{reduce_to, to_dim, Broadcast, Contribution, Val};
use crate::Real;
use ndarray::{
    Array, ArrayBase, ArrayView, ArrayViewMutD, CowArray, Data, DataMut, Dimension, RawData, Zip,
};

/// A value that can carry an adjoint.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no gradient",
    label = "read here as a differentiated value",
    note = "differentiated values are `f64` / `f32`, ndarray arrays and `Vec`s of them, and structs that derive `autodiff::Differentiable`; a struct field read only in ranges, indices, casts or comparisons with integers is a constant"
)]
pub trait Differentiable {
    /// The type of the adjoint: `F` for a scalar `F`, `Array<F, D>` for an array or view.
    type Adjoint;
    /// The adjoint that is zero everywhere, shaped like `self`.
    fn zero_adjoint(&self) -> Self::Adjoint;
    /// The same, but for a struct's fields named in `spared`, which the caller writes whole
    /// next (a `Vec` of structs' gradient moved in): left empty, not allocated.
    #[doc(hidden)]
    #[inline(always)]
    fn zero_adjoint_sparing(&self, _spared: &[&str]) -> Self::Adjoint {
        self.zero_adjoint()
    }
}

/// The zero gradient of a struct whose fields named in `spared` the caller writes next
/// ([`Differentiable::zero_adjoint_sparing`]).
#[inline(always)]
pub fn zero_sparing<V: Differentiable + ?Sized>(v: &V, spared: &[&str]) -> V::Adjoint {
    v.zero_adjoint_sparing(spared)
}

/// Builds an adjoint from its first contribution, reshaping it to the value where needed.
pub trait AdjointFrom<C>: Differentiable {
    /// The adjoint of `self` whose only contribution so far is `c`.
    fn adjoint_from(&self, c: C) -> Self::Adjoint;
}

/// Adds a contribution into an adjoint.
pub trait Accumulate<C> {
    /// `self += c`, reduced to `self`'s shape where needed.
    fn accumulate(&mut self, c: C);
}

/// An adjoint that element-wise rules can add into in place: its elements when it is an array.
pub trait AccTarget<F> {
    /// The elements, for an array adjoint; `None` for a scalar or a `Vec`.
    fn elements(&mut self) -> Option<ArrayViewMutD<'_, F>>;
}

impl<F: Real, D: Dimension> AccTarget<F> for Array<F, D> {
    #[inline(always)]
    fn elements(&mut self) -> Option<ArrayViewMutD<'_, F>> {
        Some(self.view_mut().into_dyn())
    }
}

impl<F> AccTarget<F> for Vec<F> {
    #[inline(always)]
    fn elements(&mut self) -> Option<ArrayViewMutD<'_, F>> {
        None
    }
}

macro_rules! scalar_plumbing {
    ($($t:ident),*) => {$(
        impl Differentiable for $t {
            type Adjoint = $t;
            #[inline(always)]
            fn zero_adjoint(&self) -> $t {
                0.0
            }
        }
        impl AdjointFrom<$t> for $t {
            #[inline(always)]
            fn adjoint_from(&self, c: $t) -> $t {
                c
            }
        }
        impl AdjointFrom<&$t> for $t {
            #[inline(always)]
            fn adjoint_from(&self, c: &$t) -> $t {
                *c
            }
        }
        impl Accumulate<$t> for $t {
            #[inline(always)]
            fn accumulate(&mut self, c: $t) {
                *self += c;
            }
        }
        impl Accumulate<&$t> for $t {
            #[inline(always)]
            fn accumulate(&mut self, c: &$t) {
                *self += *c;
            }
        }
        // An array contribution to a scalar: the scalar was broadcast over the array.
        impl<S: Data<Elem = $t>, D: Dimension> AdjointFrom<ArrayBase<S, D>> for $t {
            fn adjoint_from(&self, c: ArrayBase<S, D>) -> $t {
                c.sum()
            }
        }
        impl<S: Data<Elem = $t>, D: Dimension> AdjointFrom<&ArrayBase<S, D>> for $t {
            fn adjoint_from(&self, c: &ArrayBase<S, D>) -> $t {
                c.sum()
            }
        }
        impl<S: Data<Elem = $t>, D: Dimension> Accumulate<ArrayBase<S, D>> for $t {
            fn accumulate(&mut self, c: ArrayBase<S, D>) {
                *self += c.sum();
            }
        }
        impl<S: Data<Elem = $t>, D: Dimension> Accumulate<&ArrayBase<S, D>> for $t {
            fn accumulate(&mut self, c: &ArrayBase<S, D>) {
                *self += c.sum();
            }
        }
    )*};
}
scalar_plumbing!(f32, f64);

impl<F: Real, S: Data<Elem = F>, D: Dimension> Differentiable for ArrayBase<S, D> {
    type Adjoint = Array<F, D>;
    fn zero_adjoint(&self) -> Array<F, D> {
        Array::zeros(self.raw_dim())
    }
}

impl<F: Real, S: Data<Elem = F>, D: Dimension, C: Contribution<F>> AdjointFrom<C>
    for ArrayBase<S, D>
{
    fn adjoint_from(&self, c: C) -> Array<F, D> {
        if c.shape_of() == self.shape() {
            c.into_owned_as()
        } else {
            to_dim(reduce_to(c.view_dyn(), self.shape()))
        }
    }
}

// Any mutable array: an adjoint, or a row or part of one (`__rt::row_acc`).
impl<F: Real, S: DataMut<Elem = F>, D: Dimension, C: Contribution<F>> Accumulate<C>
    for ArrayBase<S, D>
{
    fn accumulate(&mut self, c: C) {
        // In the adjoint's own dimension type: ndarray adds contiguous arrays as slices.
        if c.shape_of() == self.shape() {
            self.zip_mut_with(&c.view_as::<D>(), |a, &b| *a += b);
        } else {
            let r: Array<F, D> = to_dim(reduce_to(c.view_dyn(), self.shape()));
            self.zip_mut_with(&r, |a, &b| *a += b);
        }
    }
}

impl<T: Differentiable + ?Sized> Differentiable for &T {
    type Adjoint = T::Adjoint;
    #[inline(always)]
    fn zero_adjoint(&self) -> T::Adjoint {
        (**self).zero_adjoint()
    }
    #[inline(always)]
    fn zero_adjoint_sparing(&self, spared: &[&str]) -> T::Adjoint {
        (**self).zero_adjoint_sparing(spared)
    }
}

impl<C, T: AdjointFrom<C> + ?Sized> AdjointFrom<C> for &T {
    #[inline(always)]
    fn adjoint_from(&self, c: C) -> T::Adjoint {
        (**self).adjoint_from(c)
    }
}

/// A field of a differentiated struct parameter, as generated code reads it before the
/// forward sweep: `(&Field(&p.b)).get()` is the value itself when the field is `Copy` (a float,
/// [`FieldByValue`]), else a reference to it ([`FieldByRef`]), picked by method resolution
/// (the by-value method is found first, where its `Copy` bound holds).
pub struct Field<'a, T: ?Sized>(pub &'a T);

/// [`Field`] of a `Copy` value: the value.
pub trait FieldByValue {
    type Out;
    fn get(&self) -> Self::Out;
}

impl<T: Copy> FieldByValue for Field<'_, T> {
    type Out = T;
    #[inline(always)]
    fn get(&self) -> T {
        *self.0
    }
}

/// [`Field`] of any other value: a reference to it.
pub trait FieldByRef<'a> {
    type Out;
    fn get(&self) -> Self::Out;
}

impl<'a, T: ?Sized> FieldByRef<'a> for &Field<'a, T> {
    type Out = &'a T;
    #[inline(always)]
    fn get(&self) -> &'a T {
        self.0
    }
}

/// A field of a differentiated struct that the body reads where the macro takes it for a
/// constant (a cast, a range's bound, an index, a `match` scrutinee, beside an integer): the
/// macro sees no field types, so generated code checks it is not a float, whose gradient would
/// be lost. `constant_field((&ConstantProbe(&p.n)).probe())` compiles for anything but `f64`
/// and `f32`, picked by method resolution like [`Field`].
pub struct ConstantProbe<'a, T: ?Sized>(pub &'a T);

/// What [`ConstantProbe`] of a float gives: not a [`ConstantField`].
pub struct FloatReadAsConstant;

/// [`ConstantProbe`] of a float, or of an array or `Vec` of floats.
pub trait FloatProbe {
    fn probe(&self) -> FloatReadAsConstant;
}

impl FloatProbe for ConstantProbe<'_, f64> {
    #[inline(always)]
    fn probe(&self) -> FloatReadAsConstant {
        FloatReadAsConstant
    }
}

impl FloatProbe for ConstantProbe<'_, f32> {
    #[inline(always)]
    fn probe(&self) -> FloatReadAsConstant {
        FloatReadAsConstant
    }
}

// Containers of floats too: a `Vec<f64>` field read where a constant stands would lose its
// gradient the same way.
impl<F: Real> FloatProbe for ConstantProbe<'_, Vec<F>> {
    #[inline(always)]
    fn probe(&self) -> FloatReadAsConstant {
        FloatReadAsConstant
    }
}

impl<F: Real, const N: usize> FloatProbe for ConstantProbe<'_, [F; N]> {
    #[inline(always)]
    fn probe(&self) -> FloatReadAsConstant {
        FloatReadAsConstant
    }
}

impl<F: Real, S: Data<Elem = F>, D: Dimension> FloatProbe for ConstantProbe<'_, ArrayBase<S, D>> {
    #[inline(always)]
    fn probe(&self) -> FloatReadAsConstant {
        FloatReadAsConstant
    }
}

/// [`ConstantProbe`] of anything else.
pub trait OtherProbe {
    #[inline(always)]
    fn probe(&self) {}
}

impl<T: ?Sized> OtherProbe for &ConstantProbe<'_, T> {}

/// What a [`ConstantProbe`] gives for a field that may be read as a constant.
#[diagnostic::on_unimplemented(
    message = "a field of floats is read here where #[differentiate] takes it for a constant (a cast, a range's bound, an index, a `match` scrutinee, beside an integer), so its gradient would be lost",
    label = "a field of floats read as a constant",
    note = "bind the field to a local first (`let s = p.s;`) and use the local here"
)]
pub trait ConstantField {}

impl ConstantField for () {}

/// Compiles when a field read as a constant is not a float ([`ConstantProbe`]).
#[inline(always)]
pub fn constant_field<C: ConstantField>(_: C) {}

/// A column of a slice of structs differentiated field by field (`wrt(bodies)` with
/// `bodies: &[Body]`): the values of one field, `field(&bodies[i])` for every `i`, which
/// generated code reads before the forward sweep (`bodies[i].pos[k]` is `column[i][k]`).
/// (`F`, the function's float, as [`float_column`] and [`point_column`] take it.)
pub fn column<F, T, C>(xs: &[T], field: impl Fn(&T) -> C) -> Vec<C> {
    xs.iter().map(field).collect()
}

/// A column of floats: [`column`] of a field that the body reads in float arithmetic
/// (`bodies[i].mass * v`), which generated code writes as scalar arithmetic.
pub fn float_column<F, T, C: FloatField<F>>(xs: &[T], field: impl Fn(&T) -> C) -> Vec<C> {
    xs.iter().map(field).collect()
}

/// A column of points or rows: [`column`] of a field that the body reads by index
/// (`bodies[i].pos[k]`), whose elements generated code reads as floats.
pub fn point_column<F, T, C: PointField<F>>(xs: &[T], field: impl Fn(&T) -> C) -> Vec<C> {
    xs.iter().map(field).collect()
}

/// A field of the elements of a slice of structs read in float arithmetic: the float itself.
#[diagnostic::on_unimplemented(
    message = "a field of the elements of a differentiated slice of structs is read in float arithmetic (`bodies[i].mass * v`), but it is `{Self}`, not `{F}`",
    label = "read as a float",
    note = "#[differentiate] reads such a field as the function's float; bind other values to a local first"
)]
pub trait FloatField<F> {}

impl<F: Real> FloatField<F> for F {}

/// A field of the elements of a slice of structs read by index: an array or `Vec` of floats.
#[diagnostic::on_unimplemented(
    message = "a field of the elements of a differentiated slice of structs is read by index (`bodies[i].pos[k]`), but it is `{Self}`, not an array or `Vec` of `{F}`",
    label = "read by index",
    note = "#[differentiate] reads such a field as `[F; N]` or `Vec<F>` (a point, a row)"
)]
pub trait PointField<F> {}

impl<F: Real, const N: usize> PointField<F> for [F; N] {}

impl<F: Real> PointField<F> for Vec<F> {}

/// The gradient of a slice of structs, each element's gradient zero (a value of the struct:
/// constant fields copied, differentiated ones zero), before generated code moves each column's
/// adjoint into its field ([`set_column`], [`acc_column`]).
pub fn zero_elements<F, T: StructGradient<F>>(xs: &[T]) -> Vec<T> {
    xs.iter().map(Differentiable::zero_adjoint).collect()
}

/// The zero gradient of a fixed-size array of structs: each element's.
#[inline]
pub fn zero_array<F, T: StructGradient<F>, const N: usize>(xs: &[T; N]) -> [T; N] {
    xs.each_ref().map(Differentiable::zero_adjoint)
}

/// Moves a column's adjoint into its field of each element's gradient.
#[inline]
pub fn set_column<T, C>(
    gradient: &mut [T],
    column: Vec<C>,
    mut field: impl FnMut(&mut T) -> &mut C,
) {
    for (g, c) in gradient.iter_mut().zip(column) {
        *field(g) = c;
    }
}

/// Adds a column's adjoint into its field of each element's gradient (a field inside one
/// already written: `layer.w` after `layer`).
#[inline]
pub fn acc_column<T, C, A: Accumulate<C>>(
    gradient: &mut [T],
    column: Vec<C>,
    mut field: impl FnMut(&mut T) -> &mut A,
) {
    for (g, c) in gradient.iter_mut().zip(column) {
        field(g).accumulate(c);
    }
}

/// Adds a gradient of a slice of structs (a function's, which the slice was passed to whole)
/// into another, element by element.
pub fn acc_elements<T: Accumulate<T>, G: ElementsGradient<T>>(gradient: &mut [T], other: G) {
    other.add_into(gradient);
}

/// `g`, the gradient a function's pullback gave for `slice` of structs passed to it whole for a
/// unit adjoint ([`ElementsGradient`]), scaled by `by` element by element.
#[inline(always)]
pub fn scale_elements_of<T: Scale<F>, F: Copy, G: ElementsGradient<T>>(
    _slice: &[T],
    g: G,
    by: F,
) -> Vec<T> {
    g.scaled(by)
}

/// What a function's pullback gives for a slice of structs passed to it whole: a `Vec` of the
/// struct when the function differentiates it (names it in `wrt`).
#[diagnostic::on_unimplemented(
    message = "the called function's pullback gives `{Self}` for a slice of structs that is differentiated here",
    label = "no gradient for the slice",
    note = "name the slice in the called function's `wrt` (`#[differentiate(wrt(bodies))]`), so that its pullback gives the slice's gradient"
)]
pub trait ElementsGradient<T> {
    /// Itself as a `Vec`, one gradient per element.
    fn into_vec(self) -> Vec<T>;
    /// Itself scaled by `by`, element by element, in its own type.
    fn scale_each<F: Copy>(self, by: F) -> Self
    where
        T: Scale<F>;
    /// Adds itself into `gradient`, element by element.
    fn add_into(self, gradient: &mut [T])
    where
        Self: Sized,
        T: Accumulate<T>,
    {
        let own = self.into_vec();
        assert_eq!(
            gradient.len(),
            own.len(),
            "adding the gradient of a slice of structs: {} elements into {}",
            own.len(),
            gradient.len()
        );
        for (g, o) in gradient.iter_mut().zip(own) {
            g.accumulate(o);
        }
    }
    /// Itself scaled by `by`, element by element, as a `Vec`.
    fn scaled<F: Copy>(self, by: F) -> Vec<T>
    where
        Self: Sized,
        T: Scale<F>,
    {
        self.into_vec().into_iter().map(|g| g.scale(by)).collect()
    }
}

/// The adjoint of `slice` of structs whose first contribution is `g`, a gradient of it
/// ([`ElementsGradient`]): `g` itself, as a `Vec`.
#[inline]
pub fn elements_from<T, G: ElementsGradient<T>>(slice: &[T], g: G) -> Vec<T> {
    let own = g.into_vec();
    assert_eq!(
        own.len(),
        slice.len(),
        "the gradient of a slice of structs: {} elements for {}",
        own.len(),
        slice.len()
    );
    own
}

impl<T: Accumulate<T>> ElementsGradient<T> for Vec<T> {
    fn into_vec(self) -> Vec<T> {
        self
    }

    fn scale_each<F: Copy>(self, by: F) -> Vec<T>
    where
        T: Scale<F>,
    {
        self.scaled(by)
    }
}

/// A fixed-size array of structs' gradient (`[Body; 3]`), an array of the same length.
impl<T: Accumulate<T>, const N: usize> ElementsGradient<T> for [T; N] {
    fn into_vec(self) -> Vec<T> {
        self.into()
    }

    fn scale_each<F: Copy>(self, by: F) -> [T; N]
    where
        T: Scale<F>,
    {
        self.map(|g| g.scale(by))
    }
}

/// The gradient of a slice or array of structs scaled by `by` (a pullback's entry): each
/// element's.
#[inline]
pub fn scale_elements<T: StructGradient<F>, F: Copy, G: ElementsGradient<T>>(
    gradient: G,
    by: F,
) -> G {
    gradient.scale_each(by)
}

/// A struct field's gradient, of the field's own type: a field the body reads as a
/// differentiated value holds its adjoint. A borrowed field (`data: &'a [f64]`) cannot.
#[diagnostic::on_unimplemented(
    message = "a struct field of type `{Self}` is read as a differentiated value, whose gradient is `{D}`",
    label = "a field read in differentiated arithmetic",
    note = "a field holds its own gradient, so a field read as a differentiated value must be owned and of the function's float; read borrowed data (`data: &'a [f64]`) as a constant, `self.data[i].stop_gradient()` (with `use autodiff::StopGradient;`), or own it (`Vec<f64>`) to differentiate it"
)]
pub trait FieldGradient<D> {
    /// The adjoint as the field's value.
    fn from_adjoint(d: D) -> Self;
}

impl<D> FieldGradient<D> for D {
    #[inline(always)]
    fn from_adjoint(d: D) -> D {
        d
    }
}

/// `d`, the adjoint of a struct's field, as that field's gradient ([`FieldGradient`]).
#[inline(always)]
pub fn field_gradient<D, T: FieldGradient<D>>(d: D) -> T {
    T::from_adjoint(d)
}

/// A container of structs' gradients built from a `Vec` of them: the `Vec` itself, or a
/// fixed-size array of its length (a struct's field `bodies: [Body; 3]`).
pub trait FromElements<T> {
    /// The container holding `gradient`'s elements.
    fn from_elements(gradient: Vec<T>) -> Self;
}

impl<T> FromElements<T> for Vec<T> {
    #[inline(always)]
    fn from_elements(gradient: Vec<T>) -> Vec<T> {
        gradient
    }
}

impl<T, const N: usize> FromElements<T> for [T; N] {
    #[inline]
    fn from_elements(gradient: Vec<T>) -> [T; N] {
        into_array(gradient)
    }
}

/// `gradient` as the container its place holds ([`FromElements`]).
#[inline(always)]
pub fn into_elements<T, C: FromElements<T>>(gradient: Vec<T>) -> C {
    C::from_elements(gradient)
}

/// The gradient of a fixed-size array of structs, gathered as a `Vec` of its length.
#[inline]
pub fn into_array<T, const N: usize>(gradient: Vec<T>) -> [T; N] {
    let n = gradient.len();
    match gradient.try_into() {
        Ok(array) => array,
        Err(_) => panic!("autodiff: the gradient of an array of {N} structs has {n} elements"),
    }
}

/// Compiles when no field a slice of structs' elements are read by where #[differentiate]
/// takes them for constants is a float ([`ConstantProbe`] of the field of an element; the
/// closure is never called).
#[inline(always)]
pub fn constant_column<T, C: ConstantField>(_: &[T], _: impl Fn(&T) -> C) {}

/// What differentiated code needs of a struct whose type is a type parameter (`wrt(m)` with
/// `m: &M`, a generic model): its gradient is a value of the same type, made, added into and
/// scaled like any struct's. `#[derive(Differentiable)]` gives all of it; the macro adds the
/// bound `M: StructGradient<F>` to the companions (not to the function itself).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is differentiated as a struct here but does not derive `Differentiable`",
    note = "add `#[derive(Differentiable)]` to the struct (its gradient is a value of the same struct), or mark a field holding it that has no gradient `#[differentiable(constant)]`"
)]
pub trait StructGradient<F>:
    Differentiable<Adjoint = Self> + AdjointFrom<Self> + Accumulate<Self> + Scale<F> + Sized
{
}

impl<F, T> StructGradient<F> for T where
    T: Differentiable<Adjoint = T> + AdjointFrom<T> + Accumulate<T> + Scale<F>
{
}

/// The gradient a method's pullback gives for its receiver, when the receiver is differentiated
/// (a struct in `wrt`): the method must have been differentiated with respect to `self` too.
#[diagnostic::on_unimplemented(
    message = "the called method's pullback gives no gradient for its receiver (`{Self}`), which is differentiated here",
    label = "the method is called on a differentiated struct",
    note = "annotate the method `#[differentiate(wrt(self, ..))]`: its pullback then gives the receiver's gradient first"
)]
pub trait ReceiverGradient {}

impl<T: Differentiable> ReceiverGradient for T {}

/// The gradient a function's pullback gives for an element of a slice of structs passed to it
/// (`kinetic(&bodies[i])`): the function must differentiate that parameter.
#[diagnostic::on_unimplemented(
    message = "the called function's pullback gives `{Self}` for an element of a slice of structs that is differentiated here",
    label = "no gradient for the element",
    note = "name the parameter in the called function's `wrt` (`#[differentiate(wrt(b))]`), so that its pullback gives the element's gradient"
)]
pub trait ElementGradient {}

impl<T: Differentiable> ElementGradient for T {}

/// `g`, the gradient of an element of a slice of structs ([`ElementGradient`]).
#[inline(always)]
pub fn element_gradient<G: ElementGradient>(g: G) -> G {
    g
}

/// `g`, the gradient of a method's receiver ([`ReceiverGradient`]).
#[inline(always)]
pub fn receiver_gradient<G: ReceiverGradient>(g: G) -> G {
    g
}

/// The zero adjoint of `v`.
#[inline(always)]
pub fn zero_like<V: Differentiable + ?Sized>(v: &V) -> V::Adjoint {
    v.zero_adjoint()
}

/// The adjoint of `v` whose first contribution is `c`.
#[inline(always)]
pub fn init<V: AdjointFrom<C> + ?Sized, C>(v: &V, c: C) -> V::Adjoint {
    v.adjoint_from(c)
}

/// The shape of a value an adjoint is built for (empty for a scalar).
pub trait HasShape {
    /// Its shape.
    fn shape_of_value(&self) -> &[usize];
}

impl HasShape for f64 {
    #[inline(always)]
    fn shape_of_value(&self) -> &[usize] {
        &[]
    }
}

impl HasShape for f32 {
    #[inline(always)]
    fn shape_of_value(&self) -> &[usize] {
        &[]
    }
}

impl<S: RawData, D: Dimension> HasShape for ArrayBase<S, D> {
    #[inline(always)]
    fn shape_of_value(&self) -> &[usize] {
        self.shape()
    }
}

impl<F, D: Dimension> HasShape for Shape<F, D> {
    #[inline(always)]
    fn shape_of_value(&self) -> &[usize] {
        self.dim.slice()
    }
}

impl<T: HasShape + ?Sized> HasShape for &T {
    #[inline(always)]
    fn shape_of_value(&self) -> &[usize] {
        (**self).shape_of_value()
    }
}

/// The adjoint `dy` of `a + b` as `b`'s first contribution, lent: a view of `dy` when `b` has
/// its shape, `dy` reduced to `b`'s shape otherwise (`b` was broadcast). The other operand
/// takes `dy` itself once `b`'s own adjoints, which read this by reference, are done: no copy
/// for two operands of the same shape.
pub fn lend<'a, V, F, D>(v: &V, dy: &'a Array<F, D>) -> CowArray<'a, F, V::Dim>
where
    V: HasDim<Elem = F> + AdjointFrom<&'a Array<F, D>, Adjoint = Array<F, V::Dim>> + ?Sized,
    F: Real,
    D: Dimension,
{
    let dim = v.dim_of();
    if dim.slice() == dy.shape() {
        if let Ok(view) = dy.view().into_dimensionality::<V::Dim>() {
            return CowArray::from(view);
        }
    }
    CowArray::from(v.adjoint_from(dy))
}

/// The first contributions of one adjoint `dy` to both operands of `a + b` or `a - b`
/// (`plus`: each operand's sign), neither of which has an adjoint yet. The operand shaped like
/// `dy` takes it by value; the other reads it first, which sums it over that operand's
/// broadcast axes (`x.dot(w) + b`: the product's adjoint is `dy` itself, not a copy) or copies
/// it when both operands have `dy`'s shape. A negative sign negates the built adjoint in place.
#[inline]
pub fn init_pair<V0, V1, C>(v0: &V0, v1: &V1, dy: C, plus: [bool; 2]) -> (V0::Adjoint, V1::Adjoint)
where
    V0: ?Sized + HasShape + AdjointFrom<C> + for<'a> AdjointFrom<&'a C>,
    V1: ?Sized + HasShape + AdjointFrom<C> + for<'a> AdjointFrom<&'a C>,
    V0::Adjoint: std::ops::Neg<Output = V0::Adjoint>,
    V1::Adjoint: std::ops::Neg<Output = V1::Adjoint>,
    C: HasShape,
{
    let sign0 = |a: V0::Adjoint| if plus[0] { a } else { -a };
    let sign1 = |a: V1::Adjoint| if plus[1] { a } else { -a };
    if v1.shape_of_value() == dy.shape_of_value() && v0.shape_of_value() != dy.shape_of_value() {
        let a0 = sign0(v0.adjoint_from(&dy));
        (a0, sign1(v1.adjoint_from(dy)))
    } else {
        let a1 = sign1(v1.adjoint_from(&dy));
        (sign0(v0.adjoint_from(dy)), a1)
    }
}

/// A gradient scaled by the output's adjoint: `f_pullback(.., d_out)` is `f_grad(..)` scaled
/// by `d_out` when both cover the same parameters, so one body serves both.
pub trait Scale<F> {
    fn scale(self, by: F) -> Self;
}

impl Scale<f64> for f64 {
    #[inline(always)]
    fn scale(self, by: f64) -> f64 {
        self * by
    }
}

impl Scale<f32> for f32 {
    #[inline(always)]
    fn scale(self, by: f32) -> f32 {
        self * by
    }
}

impl<F> Scale<F> for () {
    #[inline(always)]
    fn scale(self, _: F) {}
}

// An array scaled by one (the usual adjoint of a loss) is left as it is: `v * 1.0` is `v`
// for every float, so skipping the pass changes no bit.
impl<F: Real> Scale<F> for Vec<F> {
    #[inline]
    fn scale(mut self, by: F) -> Vec<F> {
        if by != F::one() {
            for v in &mut self {
                *v *= by;
            }
        }
        self
    }
}

impl<F: Real, D: Dimension> Scale<F> for Array<F, D> {
    #[inline]
    fn scale(mut self, by: F) -> Array<F, D> {
        if by != F::one() {
            self.mapv_inplace(|v| v * by);
        }
        self
    }
}

/// The unit adjoint of a float output: a call's pullback taken in the forward sweep with its
/// value (`g::value_and_pullback(.., __rt::unit())`), scaled by the reverse sweep.
#[inline(always)]
pub fn unit<F: Real>() -> F {
    F::one()
}

/// `g` scaled by `by`.
#[inline(always)]
pub fn scale<G: Scale<F>, F>(g: G, by: F) -> G {
    g.scale(by)
}

/// `*adjoint += c`.
#[inline(always)]
pub fn acc<A: Accumulate<C> + ?Sized, C>(adjoint: &mut A, c: C) {
    adjoint.accumulate(c)
}

/// A one-input element-wise pullback, implemented by the type of the output adjoint `dy`.
pub trait Pullback1<F, X: ?Sized, Y: ?Sized> {
    /// The contribution to `x`'s adjoint.
    type Out;
    /// Applies the scalar rule `rule(x, y, dy)` element by element.
    fn apply(x: &X, y: &Y, dy: &Self, rule: impl Fn(F, F, F) -> F) -> Self::Out;
    /// `dst += apply(..)`; arrays override it to add in place.
    #[inline(always)]
    fn apply_acc<T: AccTarget<F> + Accumulate<Self::Out> + ?Sized>(
        dst: &mut T,
        x: &X,
        y: &Y,
        dy: &Self,
        rule: impl Fn(F, F, F) -> F,
    ) {
        dst.accumulate(Self::apply(x, y, dy, rule))
    }
}

/// A two-input element-wise pullback (operands broadcast), implemented by `dy`'s type.
pub trait Pullback2<F, A: ?Sized, B: ?Sized, Y: ?Sized> {
    /// The contribution to the adjoint of the operand the rule is for, shaped like `dy`.
    type Out;
    /// Applies the scalar rule `rule(a, b, y, dy)` element by element.
    fn apply(a: &A, b: &B, y: &Y, dy: &Self, rule: impl Fn(F, F, F, F) -> F) -> Self::Out;
    /// `dst += apply(..)`; arrays override it to add in place.
    #[inline(always)]
    fn apply_acc<T: AccTarget<F> + Accumulate<Self::Out> + ?Sized>(
        dst: &mut T,
        a: &A,
        b: &B,
        y: &Y,
        dy: &Self,
        rule: impl Fn(F, F, F, F) -> F,
    ) {
        dst.accumulate(Self::apply(a, b, y, dy, rule))
    }
}

/// A three-input element-wise pullback (operands broadcast), implemented by `dy`'s type.
pub trait Pullback3<F, A: ?Sized, B: ?Sized, C: ?Sized, Y: ?Sized> {
    /// The contribution to the adjoint of the operand the rule is for, shaped like `dy`.
    type Out;
    /// Applies the scalar rule `rule(a, b, c, y, dy)` element by element.
    fn apply(a: &A, b: &B, c: &C, y: &Y, dy: &Self, rule: impl Fn(F, F, F, F, F) -> F)
        -> Self::Out;
    /// `dst += apply(..)`; arrays override it to add in place.
    #[inline(always)]
    fn apply_acc<T: AccTarget<F> + Accumulate<Self::Out> + ?Sized>(
        dst: &mut T,
        a: &A,
        b: &B,
        c: &C,
        y: &Y,
        dy: &Self,
        rule: impl Fn(F, F, F, F, F) -> F,
    ) {
        dst.accumulate(Self::apply(a, b, c, y, dy, rule))
    }
}

macro_rules! scalar_pullbacks {
    ($($t:ident),*) => {$(
        impl AccTarget<$t> for $t {
            #[inline(always)]
            fn elements(&mut self) -> Option<ArrayViewMutD<'_, $t>> {
                None
            }
        }
        impl Pullback1<$t, $t, $t> for $t {
            type Out = $t;
            #[inline(always)]
            fn apply(x: &$t, y: &$t, dy: &$t, rule: impl Fn($t, $t, $t) -> $t) -> $t {
                rule(*x, *y, *dy)
            }
        }
        impl Pullback2<$t, $t, $t, $t> for $t {
            type Out = $t;
            #[inline(always)]
            fn apply(a: &$t, b: &$t, y: &$t, dy: &$t, rule: impl Fn($t, $t, $t, $t) -> $t) -> $t {
                rule(*a, *b, *y, *dy)
            }
        }
        impl Pullback3<$t, $t, $t, $t, $t> for $t {
            type Out = $t;
            #[inline(always)]
            fn apply(a: &$t, b: &$t, c: &$t, y: &$t, dy: &$t, rule: impl Fn($t, $t, $t, $t, $t) -> $t) -> $t {
                rule(*a, *b, *c, *y, *dy)
            }
        }
    )*};
}
scalar_pullbacks!(f32, f64);

impl<F: Real, S, D, X, Y> Pullback1<F, X, Y> for ArrayBase<S, D>
where
    S: Data<Elem = F>,
    D: Dimension,
    X: Broadcast<F> + ?Sized,
    Y: Broadcast<F> + ?Sized,
{
    type Out = Array<F, D>;
    fn apply(x: &X, y: &Y, dy: &Self, rule: impl Fn(F, F, F) -> F) -> Array<F, D> {
        let dim = dy.raw_dim();
        let (x, y) = (x.broadcast_to(&dim), y.broadcast_to(&dim));
        Zip::from(&x)
            .and(&y)
            .and(dy)
            .map_collect(|&x, &y, &d| rule(x, y, d))
    }
    fn apply_acc<T: AccTarget<F> + Accumulate<Array<F, D>> + ?Sized>(
        dst: &mut T,
        x: &X,
        y: &Y,
        dy: &Self,
        rule: impl Fn(F, F, F) -> F,
    ) {
        if let Some(mut out) = same_shape::<F, D>(dst, dy.shape()) {
            let dim = dy.raw_dim();
            let (x, y) = (x.broadcast_to(&dim), y.broadcast_to(&dim));
            Zip::from(&mut out)
                .and(&x)
                .and(&y)
                .and(dy)
                .for_each(|o, &x, &y, &d| *o += rule(x, y, d));
            return;
        }
        dst.accumulate(<Self as Pullback1<F, X, Y>>::apply(x, y, dy, rule))
    }
}

impl<F: Real, S, D, A, B, Y> Pullback2<F, A, B, Y> for ArrayBase<S, D>
where
    S: Data<Elem = F>,
    Y: Broadcast<F> + ?Sized,
    D: Dimension,
    A: Broadcast<F> + ?Sized,
    B: Broadcast<F> + ?Sized,
{
    type Out = Array<F, D>;
    fn apply(a: &A, b: &B, y: &Y, dy: &Self, rule: impl Fn(F, F, F, F) -> F) -> Array<F, D> {
        let dim = dy.raw_dim();
        let (a, b, y) = (
            a.broadcast_to(&dim),
            b.broadcast_to(&dim),
            y.broadcast_to(&dim),
        );
        Zip::from(&a)
            .and(&b)
            .and(&y)
            .and(dy)
            .map_collect(|&a, &b, &y, &d| rule(a, b, y, d))
    }
    fn apply_acc<T: AccTarget<F> + Accumulate<Array<F, D>> + ?Sized>(
        dst: &mut T,
        a: &A,
        b: &B,
        y: &Y,
        dy: &Self,
        rule: impl Fn(F, F, F, F) -> F,
    ) {
        if let Some(mut out) = same_shape::<F, D>(dst, dy.shape()) {
            let dim = dy.raw_dim();
            let (a, b, y) = (
                a.broadcast_to(&dim),
                b.broadcast_to(&dim),
                y.broadcast_to(&dim),
            );
            Zip::from(&mut out)
                .and(&a)
                .and(&b)
                .and(&y)
                .and(dy)
                .for_each(|o, &a, &b, &y, &d| *o += rule(a, b, y, d));
            return;
        }
        dst.accumulate(<Self as Pullback2<F, A, B, Y>>::apply(a, b, y, dy, rule))
    }
}

impl<F: Real, S, D, A, B, C, Y> Pullback3<F, A, B, C, Y> for ArrayBase<S, D>
where
    S: Data<Elem = F>,
    Y: Broadcast<F> + ?Sized,
    D: Dimension,
    A: Broadcast<F> + ?Sized,
    B: Broadcast<F> + ?Sized,
    C: Broadcast<F> + ?Sized,
{
    type Out = Array<F, D>;
    fn apply(
        a: &A,
        b: &B,
        c: &C,
        y: &Y,
        dy: &Self,
        rule: impl Fn(F, F, F, F, F) -> F,
    ) -> Array<F, D> {
        let dim = dy.raw_dim();
        let (a, b, c, y) = (
            a.broadcast_to(&dim),
            b.broadcast_to(&dim),
            c.broadcast_to(&dim),
            y.broadcast_to(&dim),
        );
        Zip::from(&a)
            .and(&b)
            .and(&c)
            .and(&y)
            .and(dy)
            .map_collect(|&a, &b, &c, &y, &d| rule(a, b, c, y, d))
    }
    fn apply_acc<T: AccTarget<F> + Accumulate<Array<F, D>> + ?Sized>(
        dst: &mut T,
        a: &A,
        b: &B,
        c: &C,
        y: &Y,
        dy: &Self,
        rule: impl Fn(F, F, F, F, F) -> F,
    ) {
        if let Some(mut out) = same_shape::<F, D>(dst, dy.shape()) {
            let dim = dy.raw_dim();
            let (a, b, c, y) = (
                a.broadcast_to(&dim),
                b.broadcast_to(&dim),
                c.broadcast_to(&dim),
                y.broadcast_to(&dim),
            );
            Zip::from(&mut out)
                .and(&a)
                .and(&b)
                .and(&c)
                .and(&y)
                .and(dy)
                .for_each(|o, &a, &b, &c, &y, &d| *o += rule(a, b, c, y, d));
            return;
        }
        dst.accumulate(<Self as Pullback3<F, A, B, C, Y>>::apply(
            a, b, c, y, dy, rule,
        ))
    }
}

/// `dst`'s elements with `dy`'s dimension type, when `dst` is an array of exactly `dy`'s shape
/// (then an element-wise contribution adds into it directly; otherwise it is reduced first).
fn same_shape<'a, F: 'a, D: Dimension>(
    dst: &'a mut (impl AccTarget<F> + ?Sized),
    shape: &[usize],
) -> Option<ndarray::ArrayViewMut<'a, F, D>> {
    dst.elements()
        .filter(|e| e.shape() == shape)
        .and_then(|e| e.into_dimensionality::<D>().ok())
}

/// Applies a one-input rule from the macro's table: the contribution to `x`'s adjoint.
#[inline(always)]
pub fn pb1<F, X, Y, D>(
    x: &X,
    y: &Y,
    dy: &D,
    rule: impl Fn(F, F, F) -> F,
) -> <D::Canon as Pullback1<F, X::Canon, Y::Canon>>::Out
where
    X: Val + ?Sized,
    Y: Val + ?Sized,
    D: Val + ?Sized,
    D::Canon: Pullback1<F, X::Canon, Y::Canon>,
{
    <D::Canon as Pullback1<F, X::Canon, Y::Canon>>::apply(x.canon(), y.canon(), dy.canon(), rule)
}

/// Applies a two-input rule from the macro's table.
#[inline(always)]
pub fn pb2<F, A, B, Y, D>(
    a: &A,
    b: &B,
    y: &Y,
    dy: &D,
    rule: impl Fn(F, F, F, F) -> F,
) -> <D::Canon as Pullback2<F, A::Canon, B::Canon, Y::Canon>>::Out
where
    A: Val + ?Sized,
    B: Val + ?Sized,
    Y: Val + ?Sized,
    D: Val + ?Sized,
    D::Canon: Pullback2<F, A::Canon, B::Canon, Y::Canon>,
{
    <D::Canon as Pullback2<F, A::Canon, B::Canon, Y::Canon>>::apply(
        a.canon(),
        b.canon(),
        y.canon(),
        dy.canon(),
        rule,
    )
}

/// Applies a three-input rule from the macro's table.
#[inline(always)]
#[allow(clippy::type_complexity)]
pub fn pb3<F, A, B, C, Y, D>(
    a: &A,
    b: &B,
    c: &C,
    y: &Y,
    dy: &D,
    rule: impl Fn(F, F, F, F, F) -> F,
) -> <D::Canon as Pullback3<F, A::Canon, B::Canon, C::Canon, Y::Canon>>::Out
where
    A: Val + ?Sized,
    B: Val + ?Sized,
    C: Val + ?Sized,
    Y: Val + ?Sized,
    D: Val + ?Sized,
    D::Canon: Pullback3<F, A::Canon, B::Canon, C::Canon, Y::Canon>,
{
    <D::Canon as Pullback3<F, A::Canon, B::Canon, C::Canon, Y::Canon>>::apply(
        a.canon(),
        b.canon(),
        c.canon(),
        y.canon(),
        dy.canon(),
        rule,
    )
}

/// Element-wise pullbacks that write their contribution over the output's adjoint `dy`, for
/// its last use (the macro frees an adjoint after its statement, so nothing reads it after):
/// no array is allocated for the contribution. Owned arrays rewrite their elements, the
/// operands broadcast to them; scalars apply the rule. One trait per operand count, as
/// [`Pullback1`] .. [`Pullback3`], implemented by `dy`'s type.
pub trait Rewrite1<F, X: ?Sized, Y: ?Sized>: Sized {
    /// `dy[i] = rule(x[i], y[i], dy[i])`.
    fn rewrite(x: &X, y: &Y, dy: Self, rule: impl Fn(F, F, F) -> F) -> Self;
}

/// The two-operand [`Rewrite1`].
pub trait Rewrite2<F, A: ?Sized, B: ?Sized, Y: ?Sized>: Sized {
    /// `dy[i] = rule(a[i], b[i], y[i], dy[i])`.
    fn rewrite(a: &A, b: &B, y: &Y, dy: Self, rule: impl Fn(F, F, F, F) -> F) -> Self;
}

/// The three-operand [`Rewrite1`].
pub trait Rewrite3<F, A: ?Sized, B: ?Sized, C: ?Sized, Y: ?Sized>: Sized {
    /// `dy[i] = rule(a[i], b[i], c[i], y[i], dy[i])`.
    fn rewrite(a: &A, b: &B, c: &C, y: &Y, dy: Self, rule: impl Fn(F, F, F, F, F) -> F) -> Self;
}

impl<F: Real, D: Dimension, X, Y> Rewrite1<F, X, Y> for Array<F, D>
where
    X: Broadcast<F> + ?Sized,
    Y: Broadcast<F> + ?Sized,
{
    fn rewrite(x: &X, y: &Y, dy: Self, rule: impl Fn(F, F, F) -> F) -> Self {
        // One loop over three slices is the only code made for each rule (a `Zip` here made
        // its whole machinery again for every closure, a third of an ndarray function's
        // debug build); the rest is shared by every rule of the same operand types.
        let mut operands = Operands1::new(x, y, dy);
        let (x, y, d) = operands.slices();
        for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
            *d = rule(x, y, *d);
        }
        operands.dy
    }
}

/// The operands of [`Rewrite1`] for arrays: `x` and `y` broadcast to `dy`'s shape, all three
/// as they are when they share one contiguous memory layout (a unary operation's operand,
/// value and adjoint always do), else in standard layout (copies), so that their slices in
/// memory order match element by element.
struct Operands1<'a, F, D: Dimension> {
    x: CowArray<'a, F, D>,
    y: CowArray<'a, F, D>,
    dy: Array<F, D>,
}

impl<'a, F: Real, D: Dimension> Operands1<'a, F, D> {
    #[inline]
    fn new<X: Broadcast<F> + ?Sized, Y: Broadcast<F> + ?Sized>(
        x: &'a X,
        y: &'a Y,
        dy: Array<F, D>,
    ) -> Self {
        let dim = dy.raw_dim();
        let (x, y) = (x.broadcast_to(&dim), y.broadcast_to(&dim));
        let contiguous = x.as_slice_memory_order().is_some()
            && y.as_slice_memory_order().is_some()
            && dy.as_slice_memory_order().is_some();
        if contiguous && x.strides() == dy.strides() && y.strides() == dy.strides() {
            return Operands1 {
                x: x.into(),
                y: y.into(),
                dy,
            };
        }
        let standard = |v: ArrayView<'a, F, D>| -> CowArray<'a, F, D> {
            if v.is_standard_layout() {
                v.into()
            } else {
                v.as_standard_layout().into_owned().into()
            }
        };
        let dy = if dy.is_standard_layout() {
            dy
        } else {
            dy.as_standard_layout().into_owned()
        };
        Operands1 {
            x: standard(x),
            y: standard(y),
            dy,
        }
    }

    /// The three arrays' elements in memory order, element `i` of each at index `i`.
    #[inline]
    fn slices(&mut self) -> (&[F], &[F], &mut [F]) {
        match (
            self.x.as_slice_memory_order(),
            self.y.as_slice_memory_order(),
            self.dy.as_slice_memory_order_mut(),
        ) {
            (Some(x), Some(y), Some(d)) if x.len() == d.len() && y.len() == d.len() => (x, y, d),
            _ => unreachable!("autodiff: an element-wise pullback's arrays are not contiguous"),
        }
    }
}

impl<F: Real, D: Dimension, A, B, Y> Rewrite2<F, A, B, Y> for Array<F, D>
where
    A: Broadcast<F> + ?Sized,
    B: Broadcast<F> + ?Sized,
    Y: Broadcast<F> + ?Sized,
{
    fn rewrite(a: &A, b: &B, y: &Y, mut dy: Self, rule: impl Fn(F, F, F, F) -> F) -> Self {
        let dim = dy.raw_dim();
        let (a, b, y) = (
            a.broadcast_to(&dim),
            b.broadcast_to(&dim),
            y.broadcast_to(&dim),
        );
        Zip::from(&mut dy)
            .and(&a)
            .and(&b)
            .and(&y)
            .for_each(|d, &a, &b, &y| *d = rule(a, b, y, *d));
        dy
    }
}

impl<F: Real, D: Dimension, A, B, C, Y> Rewrite3<F, A, B, C, Y> for Array<F, D>
where
    A: Broadcast<F> + ?Sized,
    B: Broadcast<F> + ?Sized,
    C: Broadcast<F> + ?Sized,
    Y: Broadcast<F> + ?Sized,
{
    fn rewrite(
        a: &A,
        b: &B,
        c: &C,
        y: &Y,
        mut dy: Self,
        rule: impl Fn(F, F, F, F, F) -> F,
    ) -> Self {
        let dim = dy.raw_dim();
        let (a, b, c, y) = (
            a.broadcast_to(&dim),
            b.broadcast_to(&dim),
            c.broadcast_to(&dim),
            y.broadcast_to(&dim),
        );
        Zip::from(&mut dy)
            .and(&a)
            .and(&b)
            .and(&c)
            .and(&y)
            .for_each(|d, &a, &b, &c, &y| *d = rule(a, b, c, y, *d));
        dy
    }
}

macro_rules! scalar_rewrites {
    ($($t:ident),*) => {$(
        impl Rewrite1<$t, $t, $t> for $t {
            #[inline(always)]
            fn rewrite(x: &$t, y: &$t, dy: $t, rule: impl Fn($t, $t, $t) -> $t) -> $t {
                rule(*x, *y, dy)
            }
        }
        impl Rewrite2<$t, $t, $t, $t> for $t {
            #[inline(always)]
            fn rewrite(a: &$t, b: &$t, y: &$t, dy: $t, rule: impl Fn($t, $t, $t, $t) -> $t) -> $t {
                rule(*a, *b, *y, dy)
            }
        }
        impl Rewrite3<$t, $t, $t, $t, $t> for $t {
            #[inline(always)]
            fn rewrite(a: &$t, b: &$t, c: &$t, y: &$t, dy: $t, rule: impl Fn($t, $t, $t, $t, $t) -> $t) -> $t {
                rule(*a, *b, *c, *y, dy)
            }
        }
    )*};
}
scalar_rewrites!(f32, f64);

/// `pb1` at the last use of `dy`, written over it ([`Rewrite1`]).
#[inline(always)]
pub fn pb1_owned<F, X, Y, D>(x: &X, y: &Y, dy: D, rule: impl Fn(F, F, F) -> F) -> D
where
    X: Val + ?Sized,
    Y: Val + ?Sized,
    D: Rewrite1<F, X::Canon, Y::Canon>,
{
    D::rewrite(x.canon(), y.canon(), dy, rule)
}

/// `pb2` at the last use of `dy`, written over it ([`Rewrite2`]).
#[inline(always)]
pub fn pb2_owned<F, A, B, Y, D>(a: &A, b: &B, y: &Y, dy: D, rule: impl Fn(F, F, F, F) -> F) -> D
where
    A: Val + ?Sized,
    B: Val + ?Sized,
    Y: Val + ?Sized,
    D: Rewrite2<F, A::Canon, B::Canon, Y::Canon>,
{
    D::rewrite(a.canon(), b.canon(), y.canon(), dy, rule)
}

/// `pb3` at the last use of `dy`, written over it ([`Rewrite3`]).
#[inline(always)]
pub fn pb3_owned<F, A, B, C, Y, D>(
    a: &A,
    b: &B,
    c: &C,
    y: &Y,
    dy: D,
    rule: impl Fn(F, F, F, F, F) -> F,
) -> D
where
    A: Val + ?Sized,
    B: Val + ?Sized,
    C: Val + ?Sized,
    Y: Val + ?Sized,
    D: Rewrite3<F, A::Canon, B::Canon, C::Canon, Y::Canon>,
{
    D::rewrite(a.canon(), b.canon(), c.canon(), y.canon(), dy, rule)
}

/// `dst += pb1(x, y, dy, rule)`, adding into `dst` in place when it is an array of `dy`'s shape.
#[inline(always)]
pub fn acc_pb1<F, T, X, Y, D>(dst: &mut T, x: &X, y: &Y, dy: &D, rule: impl Fn(F, F, F) -> F)
where
    X: Val + ?Sized,
    Y: Val + ?Sized,
    D: Val + ?Sized,
    D::Canon: Pullback1<F, X::Canon, Y::Canon>,
    T: AccTarget<F> + Accumulate<<D::Canon as Pullback1<F, X::Canon, Y::Canon>>::Out> + ?Sized,
{
    <D::Canon as Pullback1<F, X::Canon, Y::Canon>>::apply_acc(
        dst,
        x.canon(),
        y.canon(),
        dy.canon(),
        rule,
    )
}

/// `dst += pb2(a, b, y, dy, rule)`, in place when `dst` is an array of `dy`'s shape.
#[inline(always)]
pub fn acc_pb2<F, T, A, B, Y, D>(
    dst: &mut T,
    a: &A,
    b: &B,
    y: &Y,
    dy: &D,
    rule: impl Fn(F, F, F, F) -> F,
) where
    A: Val + ?Sized,
    B: Val + ?Sized,
    Y: Val + ?Sized,
    D: Val + ?Sized,
    D::Canon: Pullback2<F, A::Canon, B::Canon, Y::Canon>,
    T: AccTarget<F>
        + Accumulate<<D::Canon as Pullback2<F, A::Canon, B::Canon, Y::Canon>>::Out>
        + ?Sized,
{
    <D::Canon as Pullback2<F, A::Canon, B::Canon, Y::Canon>>::apply_acc(
        dst,
        a.canon(),
        b.canon(),
        y.canon(),
        dy.canon(),
        rule,
    )
}

/// `dst += pb3(a, b, c, y, dy, rule)`, in place when `dst` is an array of `dy`'s shape.
#[inline(always)]
pub fn acc_pb3<F, T, A, B, C, Y, D>(
    dst: &mut T,
    a: &A,
    b: &B,
    c: &C,
    y: &Y,
    dy: &D,
    rule: impl Fn(F, F, F, F, F) -> F,
) where
    A: Val + ?Sized,
    B: Val + ?Sized,
    C: Val + ?Sized,
    Y: Val + ?Sized,
    D: Val + ?Sized,
    D::Canon: Pullback3<F, A::Canon, B::Canon, C::Canon, Y::Canon>,
    T: AccTarget<F>
        + Accumulate<<D::Canon as Pullback3<F, A::Canon, B::Canon, C::Canon, Y::Canon>>::Out>
        + ?Sized,
{
    <D::Canon as Pullback3<F, A::Canon, B::Canon, C::Canon, Y::Canon>>::apply_acc(
        dst,
        a.canon(),
        b.canon(),
        c.canon(),
        y.canon(),
        dy.canon(),
        rule,
    )
}

/// Which arm of an `if` the forward sweep took, holding the values that arm's reverse sweep
/// needs. Its type is inferred, so the macro never names the types of the saved values.
#[derive(Debug, Clone)]
pub enum Branch<A, B> {
    /// The `if` arm ran.
    Then(A),
    /// The `else` arm ran (or the missing `else` of an `if` without one).
    Else(B),
}

/// What the reverse sweep keeps of a value whose shape alone it needs: the value itself for a
/// scalar, its dimension for an array. The forward sweep can then free the array early.
pub trait Likeness {
    /// The kept form.
    type Like;
    /// The kept form of `self`.
    fn like(&self) -> Self::Like;
}

/// The shape (and element type) of an array whose values are no longer needed.
#[derive(Debug, Clone)]
pub struct Shape<F, D> {
    dim: D,
    elem: std::marker::PhantomData<F>,
}

macro_rules! scalar_likeness {
    ($($t:ident),*) => {$(
        impl Likeness for $t {
            type Like = $t;
            #[inline(always)]
            fn like(&self) -> $t {
                *self
            }
        }
    )*};
}
scalar_likeness!(f32, f64);

impl<F: Real, S: Data<Elem = F>, D: Dimension> Likeness for ArrayBase<S, D> {
    type Like = Shape<F, D>;
    fn like(&self) -> Shape<F, D> {
        Shape {
            dim: self.raw_dim(),
            elem: std::marker::PhantomData,
        }
    }
}

impl<T: Likeness + ?Sized> Likeness for &T {
    type Like = T::Like;
    #[inline(always)]
    fn like(&self) -> T::Like {
        (**self).like()
    }
}

/// The dimension of an array, or of the [`Shape`] kept of it: what an adjoint that reads only
/// its operand's shape takes (`sum_adj`, `reshape_adj`, ..).
pub trait HasDim {
    /// The element type.
    type Elem;
    /// The dimension type.
    type Dim: Dimension;
    /// The dimension.
    fn dim_of(&self) -> Self::Dim;
}

impl<S: RawData, D: Dimension> HasDim for ArrayBase<S, D> {
    type Elem = S::Elem;
    type Dim = D;
    #[inline(always)]
    fn dim_of(&self) -> D {
        self.raw_dim()
    }
}

impl<F, D: Dimension> HasDim for Shape<F, D> {
    type Elem = F;
    type Dim = D;
    #[inline(always)]
    fn dim_of(&self) -> D {
        self.dim.clone()
    }
}

impl<T: HasDim + ?Sized> HasDim for &T {
    type Elem = T::Elem;
    type Dim = T::Dim;
    #[inline(always)]
    fn dim_of(&self) -> T::Dim {
        (**self).dim_of()
    }
}

impl<F: Real, D: Dimension> Differentiable for Shape<F, D> {
    type Adjoint = Array<F, D>;
    fn zero_adjoint(&self) -> Array<F, D> {
        Array::zeros(self.dim.clone())
    }
}

impl<F: Real, D: Dimension, C: Contribution<F>> AdjointFrom<C> for Shape<F, D> {
    fn adjoint_from(&self, c: C) -> Array<F, D> {
        if c.shape_of() == self.dim.slice() {
            c.into_owned_as()
        } else {
            to_dim(reduce_to(c.view_dyn(), self.dim.slice()))
        }
    }
}

/// The kept form of `v` (see [`Likeness`]).
#[inline(always)]
pub fn like<V: Likeness + ?Sized>(v: &V) -> V::Like {
    v.like()
}

/// Frees a value whose shape alone the rest of the sweep reads, keeping that shape.
#[inline(always)]
pub fn into_like<V: Likeness>(v: V) -> V::Like {
    v.like()
}

/// The value of a vector-valued function (an owned array or `Vec`), for its Jacobian: how many
/// elements it has, and the adjoint that is one at element `k` (in logical order) and zero
/// elsewhere, whose pullback is row `k` of the Jacobian.
pub trait VectorOutput: Sized {
    fn elements(&self) -> usize;
    fn unit(&self, k: usize) -> Self;
}

impl<F: Real> VectorOutput for Vec<F> {
    fn elements(&self) -> usize {
        self.len()
    }
    fn unit(&self, k: usize) -> Vec<F> {
        let mut e = vec![F::from_f64(0.0); self.len()];
        e[k] = F::one();
        e
    }
}

impl<F: Real, D: Dimension> VectorOutput for Array<F, D> {
    fn elements(&self) -> usize {
        self.len()
    }
    fn unit(&self, k: usize) -> Array<F, D> {
        let mut e = Array::zeros(self.raw_dim());
        if let Some(v) = e.iter_mut().nth(k) {
            *v = F::one();
        }
        e
    }
}

/// The other arm of a `match` that takes a binding out of the scrutinee in the arm whose test
/// it passed (`desugar.rs`): never reached.
#[cold]
#[track_caller]
pub fn unreachable_arm<T>() -> T {
    unreachable!("autodiff: a `match` arm ran whose pattern its test had ruled out (a bug in autodiff; please report it)")
}

/// Frees a value the rest of the sweep no longer needs (a no-op for scalars).
#[inline(always)]
pub fn release<T>(value: T) {
    drop(value)
}

// ----- slices and vectors ---------------------------------------------------------------------

impl<F: Real> Differentiable for [F] {
    type Adjoint = Vec<F>;
    fn zero_adjoint(&self) -> Vec<F> {
        vec![F::from_f64(0.0); self.len()]
    }
}

impl<F: Real> Differentiable for Vec<F> {
    type Adjoint = Vec<F>;
    fn zero_adjoint(&self) -> Vec<F> {
        vec![F::from_f64(0.0); self.len()]
    }
}

/// The length of a vector whose values are no longer needed.
#[derive(Debug, Clone)]
pub struct Length<F> {
    len: usize,
    elem: std::marker::PhantomData<F>,
}

impl<F: Real> Likeness for [F] {
    type Like = Length<F>;
    fn like(&self) -> Length<F> {
        Length {
            len: self.len(),
            elem: std::marker::PhantomData,
        }
    }
}

impl<F: Real> Likeness for Vec<F> {
    type Like = Length<F>;
    fn like(&self) -> Length<F> {
        self.as_slice().like()
    }
}

impl<F: Real> Differentiable for Length<F> {
    type Adjoint = Vec<F>;
    fn zero_adjoint(&self) -> Vec<F> {
        vec![F::from_f64(0.0); self.len]
    }
}

fn vec_from<F: Real>(len: usize, c: &[F]) -> Vec<F> {
    if c.len() != len {
        panic!(
            "autodiff: an adjoint of length {} for a vector of length {len}",
            c.len()
        );
    }
    c.to_vec()
}

macro_rules! vec_adjoints {
    ($($owner:ty),*) => {$(
        impl<F: Real> AdjointFrom<Vec<F>> for $owner {
            fn adjoint_from(&self, c: Vec<F>) -> Vec<F> {
                if c.len() != self.len() {
                    panic!("autodiff: an adjoint of length {} for a vector of length {}", c.len(), self.len());
                }
                c
            }
        }
        impl<F: Real> AdjointFrom<&Vec<F>> for $owner {
            fn adjoint_from(&self, c: &Vec<F>) -> Vec<F> {
                vec_from(self.len(), c)
            }
        }
        impl<F: Real> AdjointFrom<&[F]> for $owner {
            fn adjoint_from(&self, c: &[F]) -> Vec<F> {
                vec_from(self.len(), c)
            }
        }
    )*};
}
vec_adjoints!([F], Vec<F>);

impl<F: Real> AdjointFrom<Vec<F>> for Length<F> {
    fn adjoint_from(&self, c: Vec<F>) -> Vec<F> {
        if c.len() != self.len {
            panic!(
                "autodiff: an adjoint of length {} for a vector of length {}",
                c.len(),
                self.len
            );
        }
        c
    }
}

impl<F: Real> AdjointFrom<&Vec<F>> for Length<F> {
    fn adjoint_from(&self, c: &Vec<F>) -> Vec<F> {
        vec_from(self.len, c)
    }
}

impl<F: Real> Accumulate<Vec<F>> for Vec<F> {
    fn accumulate(&mut self, c: Vec<F>) {
        self.accumulate(&c)
    }
}

impl<F: Real> Accumulate<&Vec<F>> for Vec<F> {
    fn accumulate(&mut self, c: &Vec<F>) {
        if c.len() != self.len() {
            panic!(
                "autodiff: an adjoint of length {} added into one of length {}",
                c.len(),
                self.len()
            );
        }
        for (a, b) in self.iter_mut().zip(c) {
            *a += *b;
        }
    }
}

// ----- fixed-size arrays ----------------------------------------------------------------------
// `[F; N]` (a parameter `x: &[f64; 3]` or `[f64; 3]`) is read like a slice, and its adjoint
// is an `[F; N]` too: on the stack, no allocation. Calls that take it as a slice give back a
// `Vec`, added in with a length check.

impl<F: Real, const N: usize> Differentiable for [F; N] {
    type Adjoint = [F; N];
    #[inline(always)]
    fn zero_adjoint(&self) -> [F; N] {
        [F::from_f64(0.0); N]
    }
}

/// The length of a fixed-size array whose values are no longer needed: nothing at run time.
#[derive(Debug, Clone, Copy)]
pub struct FixedLength<F, const N: usize>(std::marker::PhantomData<F>);

impl<F: Real, const N: usize> Likeness for [F; N] {
    type Like = FixedLength<F, N>;
    #[inline(always)]
    fn like(&self) -> FixedLength<F, N> {
        FixedLength(std::marker::PhantomData)
    }
}

impl<F: Real, const N: usize> Differentiable for FixedLength<F, N> {
    type Adjoint = [F; N];
    #[inline(always)]
    fn zero_adjoint(&self) -> [F; N] {
        [F::from_f64(0.0); N]
    }
}

fn fixed_from<F: Real, const N: usize>(c: &[F]) -> [F; N] {
    match <[F; N]>::try_from(c) {
        Ok(a) => a,
        Err(_) => panic!(
            "autodiff: an adjoint of length {} for an array of length {N}",
            c.len()
        ),
    }
}

macro_rules! fixed_adjoints {
    ($($owner:ty),*) => {$(
        impl<F: Real, const N: usize> AdjointFrom<[F; N]> for $owner {
            #[inline(always)]
            fn adjoint_from(&self, c: [F; N]) -> [F; N] {
                c
            }
        }
        impl<F: Real, const N: usize> AdjointFrom<&[F; N]> for $owner {
            #[inline(always)]
            fn adjoint_from(&self, c: &[F; N]) -> [F; N] {
                *c
            }
        }
        impl<F: Real, const N: usize> AdjointFrom<Vec<F>> for $owner {
            fn adjoint_from(&self, c: Vec<F>) -> [F; N] {
                fixed_from(&c)
            }
        }
        impl<F: Real, const N: usize> AdjointFrom<&Vec<F>> for $owner {
            fn adjoint_from(&self, c: &Vec<F>) -> [F; N] {
                fixed_from(c)
            }
        }
        impl<F: Real, const N: usize> AdjointFrom<&[F]> for $owner {
            fn adjoint_from(&self, c: &[F]) -> [F; N] {
                fixed_from(c)
            }
        }
    )*};
}
fixed_adjoints!([F; N], FixedLength<F, N>);

impl<F: Real, const N: usize> Accumulate<[F; N]> for [F; N] {
    #[inline(always)]
    fn accumulate(&mut self, c: [F; N]) {
        for (a, b) in self.iter_mut().zip(c) {
            *a += b;
        }
    }
}

impl<F: Real, const N: usize> Accumulate<&[F; N]> for [F; N] {
    #[inline(always)]
    fn accumulate(&mut self, c: &[F; N]) {
        self.accumulate(*c)
    }
}

impl<F: Real, const N: usize> Accumulate<&[F]> for [F; N] {
    fn accumulate(&mut self, c: &[F]) {
        if c.len() != N {
            panic!(
                "autodiff: an adjoint of length {} added into an array of length {N}",
                c.len()
            );
        }
        for (a, b) in self.iter_mut().zip(c) {
            *a += *b;
        }
    }
}

impl<F: Real, const N: usize> Accumulate<Vec<F>> for [F; N] {
    fn accumulate(&mut self, c: Vec<F>) {
        self.accumulate(c.as_slice())
    }
}

impl<F: Real, const N: usize> Accumulate<&Vec<F>> for [F; N] {
    fn accumulate(&mut self, c: &Vec<F>) {
        self.accumulate(c.as_slice())
    }
}

impl<F: Real, const N: usize> Scale<F> for [F; N] {
    #[inline]
    fn scale(mut self, by: F) -> [F; N] {
        if by != F::one() {
            for v in &mut self {
                *v *= by;
            }
        }
        self
    }
}

impl<F: Real, const N: usize> VectorOutput for [F; N] {
    fn elements(&self) -> usize {
        N
    }
    fn unit(&self, k: usize) -> [F; N] {
        let mut e = [F::from_f64(0.0); N];
        e[k] = F::one();
        e
    }
}

/// Points returned (`-> Vec<[f64; 3]>`): the Jacobian's rows follow the coordinates in order,
/// point by point.
impl<F: Real, const N: usize> VectorOutput for Vec<[F; N]> {
    fn elements(&self) -> usize {
        self.len() * N
    }
    fn unit(&self, k: usize) -> Vec<[F; N]> {
        let mut e = vec![[F::from_f64(0.0); N]; self.len()];
        e[k / N][k % N] = F::one();
        e
    }
}

// ----- rows: slices and vectors of `Vec`s ------------------------------------------------------
// `&[Vec<F>]` or `Vec<Vec<F>>` (a matrix as nested `Vec`s, read `w[i][j]`): the adjoint is a
// `Vec<Vec<F>>` of the same row lengths.

impl<F: Real> Differentiable for [Vec<F>] {
    type Adjoint = Vec<Vec<F>>;
    fn zero_adjoint(&self) -> Vec<Vec<F>> {
        self.iter()
            .map(|r| vec![F::from_f64(0.0); r.len()])
            .collect()
    }
}

impl<F: Real> Differentiable for Vec<Vec<F>> {
    type Adjoint = Vec<Vec<F>>;
    fn zero_adjoint(&self) -> Vec<Vec<F>> {
        self.as_slice().zero_adjoint()
    }
}

/// The row lengths of rows whose values are no longer needed.
#[derive(Debug, Clone)]
pub struct RowLengths<F> {
    lens: Vec<usize>,
    elem: std::marker::PhantomData<F>,
}

impl<F: Real> Likeness for [Vec<F>] {
    type Like = RowLengths<F>;
    fn like(&self) -> RowLengths<F> {
        RowLengths {
            lens: self.iter().map(Vec::len).collect(),
            elem: std::marker::PhantomData,
        }
    }
}

impl<F: Real> Likeness for Vec<Vec<F>> {
    type Like = RowLengths<F>;
    fn like(&self) -> RowLengths<F> {
        self.as_slice().like()
    }
}

impl<F: Real> Differentiable for RowLengths<F> {
    type Adjoint = Vec<Vec<F>>;
    fn zero_adjoint(&self) -> Vec<Vec<F>> {
        self.lens
            .iter()
            .map(|&n| vec![F::from_f64(0.0); n])
            .collect()
    }
}

/// Panics unless an adjoint of rows of `given` lengths fits rows of `lens`.
fn check_rows<F>(lens: impl Iterator<Item = usize>, c: &[Vec<F>]) {
    let lens: Vec<usize> = lens.collect();
    let given: Vec<usize> = c.iter().map(Vec::len).collect();
    if lens != given {
        panic!("autodiff: an adjoint of rows of lengths {given:?} for rows of lengths {lens:?}");
    }
}

macro_rules! row_adjoints {
    ($($owner:ty),*) => {$(
        impl<F: Real> AdjointFrom<Vec<Vec<F>>> for $owner {
            fn adjoint_from(&self, c: Vec<Vec<F>>) -> Vec<Vec<F>> {
                check_rows(self.iter().map(Vec::len), &c);
                c
            }
        }
        impl<F: Real> AdjointFrom<&Vec<Vec<F>>> for $owner {
            fn adjoint_from(&self, c: &Vec<Vec<F>>) -> Vec<Vec<F>> {
                check_rows(self.iter().map(Vec::len), c);
                c.clone()
            }
        }
    )*};
}
row_adjoints!([Vec<F>], Vec<Vec<F>>);

impl<F: Real> AdjointFrom<Vec<Vec<F>>> for RowLengths<F> {
    fn adjoint_from(&self, c: Vec<Vec<F>>) -> Vec<Vec<F>> {
        check_rows(self.lens.iter().copied(), &c);
        c
    }
}

impl<F: Real> AdjointFrom<&Vec<Vec<F>>> for RowLengths<F> {
    fn adjoint_from(&self, c: &Vec<Vec<F>>) -> Vec<Vec<F>> {
        check_rows(self.lens.iter().copied(), c);
        c.clone()
    }
}

impl<F: Real> Accumulate<Vec<Vec<F>>> for Vec<Vec<F>> {
    fn accumulate(&mut self, c: Vec<Vec<F>>) {
        self.accumulate(&c)
    }
}

impl<F: Real> Accumulate<&Vec<Vec<F>>> for Vec<Vec<F>> {
    fn accumulate(&mut self, c: &Vec<Vec<F>>) {
        check_rows(self.iter().map(Vec::len), c);
        for (a, b) in self.iter_mut().zip(c) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += *y;
            }
        }
    }
}

impl<F: Real> Scale<F> for Vec<Vec<F>> {
    #[inline]
    fn scale(mut self, by: F) -> Vec<Vec<F>> {
        if by != F::one() {
            for row in &mut self {
                for v in row {
                    *v *= by;
                }
            }
        }
        self
    }
}

/// A tuple of floats returned (`-> (f64, f64)`): the Jacobian's rows follow its elements.
macro_rules! tuple_output {
    ($n:literal: $($k:tt),+) => {
        impl<F: Real> VectorOutput for ($(tuple_output!(@float $k F),)+) {
            fn elements(&self) -> usize {
                $n
            }
            fn unit(&self, k: usize) -> Self {
                ($(if k == $k { F::one() } else { F::from_f64(0.0) },)+)
            }
        }
    };
    (@float $k:tt $f:ident) => { $f };
}

tuple_output!(2: 0, 1);
tuple_output!(3: 0, 1, 2);
tuple_output!(4: 0, 1, 2, 3);
tuple_output!(5: 0, 1, 2, 3, 4);
tuple_output!(6: 0, 1, 2, 3, 4, 5);
tuple_output!(7: 0, 1, 2, 3, 4, 5, 6);
tuple_output!(8: 0, 1, 2, 3, 4, 5, 6, 7);
tuple_output!(9: 0, 1, 2, 3, 4, 5, 6, 7, 8);
tuple_output!(10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
tuple_output!(11: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
tuple_output!(12: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);

// ----- slices and vectors of fixed-size arrays ----------------------------------------------
// `&[[F; N]]` or `Vec<[F; N]>` (positions as 3-vectors, `x[i][k]`): the adjoint is a
// `Vec<[F; N]>`, each element read like a fixed-size array.

impl<F: Real, const N: usize> Differentiable for [[F; N]] {
    type Adjoint = Vec<[F; N]>;
    fn zero_adjoint(&self) -> Vec<[F; N]> {
        vec![[F::from_f64(0.0); N]; self.len()]
    }
}

impl<F: Real, const N: usize> Differentiable for Vec<[F; N]> {
    type Adjoint = Vec<[F; N]>;
    fn zero_adjoint(&self) -> Vec<[F; N]> {
        self.as_slice().zero_adjoint()
    }
}

impl<F: Real, const N: usize> Likeness for [[F; N]] {
    type Like = Length<[F; N]>;
    fn like(&self) -> Length<[F; N]> {
        Length {
            len: self.len(),
            elem: std::marker::PhantomData,
        }
    }
}

impl<F: Real, const N: usize> Likeness for Vec<[F; N]> {
    type Like = Length<[F; N]>;
    fn like(&self) -> Length<[F; N]> {
        self.as_slice().like()
    }
}

impl<F: Real, const N: usize> Differentiable for Length<[F; N]> {
    type Adjoint = Vec<[F; N]>;
    fn zero_adjoint(&self) -> Vec<[F; N]> {
        vec![[F::from_f64(0.0); N]; self.len]
    }
}

/// Panics unless an adjoint of `given` arrays fits a vector of `len`.
fn check_points(len: usize, given: usize) {
    if given != len {
        panic!("autodiff: an adjoint of {given} arrays for a vector of {len}");
    }
}

fn points_from<F: Real, const N: usize>(len: usize, c: &[[F; N]]) -> Vec<[F; N]> {
    check_points(len, c.len());
    c.to_vec()
}

macro_rules! point_adjoints {
    ($($owner:ty),*) => {$(
        impl<F: Real, const N: usize> AdjointFrom<Vec<[F; N]>> for $owner {
            fn adjoint_from(&self, c: Vec<[F; N]>) -> Vec<[F; N]> {
                check_points(self.len(), c.len());
                c
            }
        }
        impl<F: Real, const N: usize> AdjointFrom<&Vec<[F; N]>> for $owner {
            fn adjoint_from(&self, c: &Vec<[F; N]>) -> Vec<[F; N]> {
                points_from(self.len(), c)
            }
        }
        impl<F: Real, const N: usize> AdjointFrom<&[[F; N]]> for $owner {
            fn adjoint_from(&self, c: &[[F; N]]) -> Vec<[F; N]> {
                points_from(self.len(), c)
            }
        }
    )*};
}
point_adjoints!([[F; N]], Vec<[F; N]>);

impl<F: Real, const N: usize> AdjointFrom<Vec<[F; N]>> for Length<[F; N]> {
    fn adjoint_from(&self, c: Vec<[F; N]>) -> Vec<[F; N]> {
        check_points(self.len, c.len());
        c
    }
}

impl<F: Real, const N: usize> AdjointFrom<&Vec<[F; N]>> for Length<[F; N]> {
    fn adjoint_from(&self, c: &Vec<[F; N]>) -> Vec<[F; N]> {
        points_from(self.len, c)
    }
}

impl<F: Real, const N: usize> Accumulate<Vec<[F; N]>> for Vec<[F; N]> {
    fn accumulate(&mut self, c: Vec<[F; N]>) {
        self.accumulate(&c)
    }
}

impl<F: Real, const N: usize> Accumulate<&Vec<[F; N]>> for Vec<[F; N]> {
    fn accumulate(&mut self, c: &Vec<[F; N]>) {
        if c.len() != self.len() {
            panic!(
                "autodiff: an adjoint of {} arrays added into one of {}",
                c.len(),
                self.len()
            );
        }
        for (a, b) in self.iter_mut().zip(c) {
            a.accumulate(b);
        }
    }
}

impl<F: Real, const N: usize> Scale<F> for Vec<[F; N]> {
    #[inline]
    fn scale(mut self, by: F) -> Vec<[F; N]> {
        if by != F::one() {
            for p in &mut self {
                for v in p {
                    *v *= by;
                }
            }
        }
        self
    }
}

/// Appends to a loop's tape whose room was reserved when the loop started (its trip count
/// known). Unlike a plain `push`, no growth call sits in the loop (the check fails only on a
/// bug), so the loop's values stay in registers across it.
#[inline(always)]
pub fn push_reserved<T>(tape: &mut Vec<T>, value: T) {
    if tape.len() >= tape.capacity() {
        panic!("autodiff: a loop's tape outgrew the room reserved for it (a bug in autodiff; please report it)");
    }
    tape.push(value);
}

/// The tape of a loop's window copies (`v[i] += x[i - 1] - 2.0 * x[i] + x[i + 1]` in a time
/// step that then updates `x`): each iteration's window of a buffer, copied into one growing
/// array, and read back in place by the reverse iteration.
///
/// Its storage is this thread's spare storage, kept from one call to the next
/// ([`take_spare`]): allocated and freed on every call, a few such arrays made glibc's
/// allocator hand the memory back to the system at the end of the call and fault it in
/// again on the next one (a stencil time step of 1000 elements and 100 steps: 591 us a call
/// against 257 us with the storage kept).
pub struct WindowTape<F: Real> {
    data: Vec<F>,
    starts: Vec<usize>,
    /// Where the window the reverse sweep read last starts: dropped at the next pop.
    read: Option<usize>,
}

/// The most storage a thread keeps per float type for the next gradient call (256 MiB): an
/// array past it is freed, since the pages faulted in again cost a share of the call that
/// does not grow with the size, while the memory kept would.
pub const SPARE_BYTES: usize = 1 << 28;

/// An empty array on storage a gradient call on this thread was done with, when there is
/// some ([`give_spare`]).
fn take_spare<F: Real>() -> Vec<F> {
    F::with_spare_storage(|spare| {
        let v = spare.vecs.pop()?;
        spare.bytes -= v.capacity() * std::mem::size_of::<F>();
        Some(v)
    })
    .unwrap_or_default()
}

/// Keeps `v`'s storage for [`take_spare`], up to [`SPARE_BYTES`] in all.
fn give_spare<F: Real>(mut v: Vec<F>) {
    v.clear();
    let bytes = v.capacity() * std::mem::size_of::<F>();
    if bytes > 0 {
        F::with_spare_storage(|spare| {
            if spare.bytes + bytes <= SPARE_BYTES {
                spare.bytes += bytes;
                spare.vecs.push(v);
            }
        });
    }
}

impl<F: Real> Default for WindowTape<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Real> WindowTape<F> {
    /// An empty tape, on spare storage when this thread has some.
    pub fn new() -> Self {
        let data = take_spare();
        WindowTape {
            data,
            starts: Vec::new(),
            read: None,
        }
    }

    /// Room for `n` more windows.
    pub fn reserve(&mut self, n: usize) {
        self.starts.reserve(n);
    }

    /// Records a copy of `window`. The first window of a loop whose trip count is known
    /// reserves room for all of them at once, at the size of this one.
    #[inline]
    pub fn push_window(&mut self, window: &[F]) {
        // The window read last is done with (a loop fused with its reverse pushes again).
        if let Some(start) = self.read.take() {
            self.data.truncate(start);
        }
        if self.data.capacity() - self.data.len() < window.len() {
            let windows = (self.starts.capacity() - self.starts.len()).max(1);
            self.data.reserve(window.len().saturating_mul(windows));
        }
        self.starts.push(self.data.len());
        self.data.extend_from_slice(window);
    }

    /// The last window recorded (the one before it is then the last): read in place until
    /// the next pop.
    #[inline]
    pub fn pop_window(&mut self) -> &[F] {
        if let Some(start) = self.read.take() {
            self.data.truncate(start);
        }
        let Some(start) = self.starts.pop() else {
            panic!("autodiff: a loop's tape of windows ran out in the reverse sweep (a bug in autodiff; please report it)");
        };
        self.read = Some(start);
        &self.data[start..]
    }
}

impl<F: Real> Drop for WindowTape<F> {
    fn drop(&mut self) {
        give_spare(std::mem::take(&mut self.data));
    }
}

/// A copy of `buf`, a buffer a checkpointed loop iteration writes, kept for the reverse sweep
/// (which puts it back with [`restore`]). Its storage comes from this thread's spare storage
/// when there is some ([`take_spare`]): a time-stepping loop keeps a copy of each buffer per step, and with
/// every copy allocated and freed on each call glibc hands their memory back to the system at
/// the end of the call and faults it in again on the next (GradBench's `ode` at n = 10 000:
/// 1.83 ms a gradient against 1.25 ms with glibc's trimming off).
#[inline]
pub fn keep<F: Real>(buf: &[F]) -> Vec<F> {
    let mut copy = take_spare();
    copy.extend_from_slice(buf);
    copy
}

/// Puts a copy made by [`keep`] back into `buf`, whose storage goes to this thread's spare
/// storage for the next copy ([`give_spare`]).
#[inline]
pub fn restore<F: Real>(buf: &mut Vec<F>, copy: Vec<F>) {
    give_spare(std::mem::replace(buf, copy));
}

/// The last record of a loop's tape, for its reverse sweep.
#[inline]
pub fn pop<T>(tape: &mut Vec<T>) -> T {
    match tape.pop() {
        Some(t) => t,
        None => panic!("autodiff: a loop's tape ran out in the reverse sweep (a bug in autodiff; please report it)"),
    }
}

#[cfg(test)]
mod window_tape {
    use super::WindowTape;

    #[test]
    fn windows_come_back_last_first_and_pushes_after_a_pop_keep_their_windows() {
        let mut t = WindowTape::<f64>::new();
        t.reserve(2);
        t.push_window(&[1.0, 2.0, 3.0]);
        t.push_window(&[4.0]);
        assert_eq!(t.pop_window(), &[4.0]);
        // A loop fused with its reverse pushes again after reading a window back.
        t.push_window(&[5.0, 6.0]);
        assert_eq!(t.pop_window(), &[5.0, 6.0]);
        assert_eq!(t.pop_window(), &[1.0, 2.0, 3.0]);
    }

    #[test]
    #[should_panic(expected = "tape of windows ran out")]
    fn popping_an_empty_tape_panics() {
        WindowTape::<f32>::new().pop_window();
    }

    #[test]
    fn storage_is_kept_for_the_next_tape_on_the_thread() {
        let mut t = WindowTape::<f64>::new();
        t.reserve(100);
        t.push_window(&[0.5; 64]);
        let capacity = t.data.capacity();
        assert!(capacity >= 6400, "room for all windows at once: {capacity}");
        drop(t);
        let t = WindowTape::<f64>::new();
        assert!(t.data.is_empty());
        assert_eq!(t.data.capacity(), capacity);
    }

    #[test]
    fn storage_larger_than_the_cap_is_freed() {
        let mut t = WindowTape::<f32>::new();
        // Reserved, never touched: no memory is written.
        t.data.reserve(super::SPARE_BYTES / 4 + 1);
        drop(t);
        assert_eq!(WindowTape::<f32>::new().data.capacity(), 0);
    }
}

#[cfg(test)]
mod kept_copies {
    use super::{keep, restore, SPARE_BYTES};

    #[test]
    fn a_restored_buffer_s_storage_serves_the_next_copy() {
        let mut buf = vec![1.0f64, 2.0, 3.0];
        let copy = keep(&buf);
        assert_eq!(copy, buf);
        buf[1] = 20.0;
        let old = buf.as_ptr();
        restore(&mut buf, copy);
        assert_eq!(buf, [1.0, 2.0, 3.0]);
        // The overwritten buffer's storage is the next copy's, holding only the copy.
        let next = keep(&[7.0, 8.0]);
        assert_eq!(next, [7.0, 8.0]);
        assert_eq!(next.as_ptr(), old);
    }

    #[test]
    fn storage_past_the_cap_is_freed() {
        let mut buf: Vec<f32> = Vec::with_capacity(SPARE_BYTES / 4 + 1);
        buf.push(1.0);
        restore(&mut buf, vec![2.0]);
        assert_eq!(buf, [2.0]);
        assert_eq!(keep::<f32>(&[]).capacity(), 0);
    }
}

#[cfg(test)]
mod rewrites {
    use super::{Rewrite1, Rewrite2, Rewrite3};
    use ndarray::{array, Array2, ShapeBuilder};

    /// `dy[i] = x[i] * 10 + y[i] * 100 + dy[i]`, elementwise by index, whatever the layouts.
    fn expected(x: &Array2<f64>, y: &Array2<f64>, dy: &Array2<f64>) -> Array2<f64> {
        Array2::from_shape_fn(dy.raw_dim(), |(i, j)| {
            x[[i, j]] * 10.0 + y[[i, j]] * 100.0 + dy[[i, j]]
        })
    }

    #[test]
    fn rewrites_match_elements_by_index_in_every_layout() {
        let c = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f64);
        let f = Array2::from_shape_fn((2, 3).f(), |(i, j)| (i * 3 + j) as f64 + 0.5);
        let rule = |x: f64, y: f64, d: f64| x * 10.0 + y * 100.0 + d;
        for (x, y, dy) in [
            (&c, &c, &c), // one layout: the slices as they are
            (&f, &f, &f), // one column-major layout: also as they are
            (&f, &c, &c), // mixed: copies in standard layout
            (&c, &c, &f), // the adjoint column-major: rewritten in a copy
        ] {
            let want = expected(x, y, dy);
            let got = <Array2<f64> as Rewrite1<f64, _, _>>::rewrite(x, y, dy.clone(), rule);
            assert_eq!(got, want);
        }
        // A broadcast operand (a row) and a scalar one.
        let row = array![1.0, 2.0, 3.0];
        let got = <Array2<f64> as Rewrite1<f64, _, _>>::rewrite(&row, &c, c.clone(), rule);
        let row2 = Array2::from_shape_fn((2, 3), |(_, j)| row[j]);
        assert_eq!(got, expected(&row2, &c, &c));
        let got = <Array2<f64> as Rewrite1<f64, _, _>>::rewrite(&2.0, &c, f.clone(), rule);
        assert_eq!(got, expected(&Array2::from_elem((2, 3), 2.0), &c, &f));
        // Two and three operands (a `Zip`: copies of broadcast operands cost GMM (ndarray) 5-10%),
        // broadcast and in mixed layouts, against the same elements.
        let rule2 = |a: f64, b: f64, y: f64, d: f64| a * 10.0 + b * 100.0 + y * 1000.0 + d;
        let got =
            <Array2<f64> as Rewrite2<f64, _, _, _>>::rewrite(&row, &2.0, &f, c.clone(), rule2);
        let want = Array2::from_shape_fn((2, 3), |(i, j)| {
            row[j] * 10.0 + 200.0 + f[[i, j]] * 1000.0 + c[[i, j]]
        });
        assert_eq!(got, want);
        let got = <Array2<f64> as Rewrite2<f64, _, _, _>>::rewrite(&c, &c, &c, c.clone(), rule2);
        assert_eq!(got, c.mapv(|v| v * 1111.0));
        let rule3 =
            |a: f64, b: f64, c: f64, y: f64, d: f64| a + 10.0 * b + 100.0 * c + 1000.0 * y + d;
        let got = <Array2<f64> as Rewrite3<f64, _, _, _, _>>::rewrite(
            &f,
            &c,
            &row,
            &1.0,
            f.clone(),
            rule3,
        );
        let want = Array2::from_shape_fn((2, 3), |(i, j)| {
            f[[i, j]] + 10.0 * c[[i, j]] + 100.0 * row[j] + 1000.0 + f[[i, j]]
        });
        assert_eq!(got, want);
    }
}
