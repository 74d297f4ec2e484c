//! The type-generic plumbing that generated gradient code calls.
//!
//! `#[differentiate]` sees the written types of a function's parameters but never the types of
//! its locals. So it does not emit type-specific code: it emits calls to the functions here, and
//! rustc picks the implementation for each value's type. For `f32`/`f64` every function is a
//! trivial `#[inline(always)]` wrapper, so after monomorphisation a scalar gradient is the same
//! handful of register operations a person would write.
//!
//! - [`zero_like`]: the zero adjoint of a value (same type and shape).
//! - [`init`]: the adjoint of a value from its first contribution.
//! - [`acc`]: add a further contribution into an adjoint.
//! - [`pb1`], [`pb2`], [`pb3`]: apply an element-wise pullback rule, written for scalars in the
//!   macro's rules table, to scalar operands.
//! - [`Branch`]: which arm of an `if` ran, with the values its reverse sweep needs.

use crate::Real;

/// A value that can carry an adjoint.
pub trait Differentiable {
    /// The type of the adjoint: `F` for a scalar `F`.
    type Adjoint;
    /// The adjoint that is zero everywhere, shaped like `self`.
    fn zero_adjoint(&self) -> Self::Adjoint;
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
    )*};
}
scalar_plumbing!(f32, f64);

impl<T: Differentiable + ?Sized> Differentiable for &T {
    type Adjoint = T::Adjoint;
    #[inline(always)]
    fn zero_adjoint(&self) -> T::Adjoint {
        (**self).zero_adjoint()
    }
}

impl<C, T: AdjointFrom<C> + ?Sized> AdjointFrom<C> for &T {
    #[inline(always)]
    fn adjoint_from(&self, c: C) -> T::Adjoint {
        (**self).adjoint_from(c)
    }
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

/// `*adjoint += c`.
#[inline(always)]
pub fn acc<A: Accumulate<C> + ?Sized, C>(adjoint: &mut A, c: C) {
    adjoint.accumulate(c)
}

/// Operands of a one-input element-wise pullback: `(x, y, dy)`.
pub trait Pullback1<F> {
    /// The contribution to `x`'s adjoint.
    type Out;
    /// Applies the scalar rule `rule(x, y, dy)` element by element.
    fn apply(self, rule: impl Fn(F, F, F) -> F) -> Self::Out;
}

/// Operands of a two-input element-wise pullback: `(a, b, y, dy)`.
pub trait Pullback2<F> {
    /// The contribution to the adjoint of the operand the rule is for.
    type Out;
    /// Applies the scalar rule `rule(a, b, y, dy)` element by element.
    fn apply(self, rule: impl Fn(F, F, F, F) -> F) -> Self::Out;
}

/// Operands of a three-input element-wise pullback: `(a, b, c, y, dy)`.
pub trait Pullback3<F> {
    /// The contribution to the adjoint of the operand the rule is for.
    type Out;
    /// Applies the scalar rule `rule(a, b, c, y, dy)` element by element.
    fn apply(self, rule: impl Fn(F, F, F, F, F) -> F) -> Self::Out;
}

impl<F: Real> Pullback1<F> for (&F, &F, &F) {
    type Out = F;
    #[inline(always)]
    fn apply(self, rule: impl Fn(F, F, F) -> F) -> F {
        rule(*self.0, *self.1, *self.2)
    }
}

impl<F: Real> Pullback2<F> for (&F, &F, &F, &F) {
    type Out = F;
    #[inline(always)]
    fn apply(self, rule: impl Fn(F, F, F, F) -> F) -> F {
        rule(*self.0, *self.1, *self.2, *self.3)
    }
}

impl<F: Real> Pullback3<F> for (&F, &F, &F, &F, &F) {
    type Out = F;
    #[inline(always)]
    fn apply(self, rule: impl Fn(F, F, F, F, F) -> F) -> F {
        rule(*self.0, *self.1, *self.2, *self.3, *self.4)
    }
}

/// Applies a one-input rule from the macro's table: the contribution to `x`'s adjoint.
#[inline(always)]
pub fn pb1<'a, F, X: ?Sized, Y: ?Sized, D: ?Sized>(
    x: &'a X,
    y: &'a Y,
    dy: &'a D,
    rule: impl Fn(F, F, F) -> F,
) -> <(&'a X, &'a Y, &'a D) as Pullback1<F>>::Out
where
    (&'a X, &'a Y, &'a D): Pullback1<F>,
{
    (x, y, dy).apply(rule)
}

/// Applies a two-input rule from the macro's table.
#[inline(always)]
pub fn pb2<'a, F, A: ?Sized, B: ?Sized, Y: ?Sized, D: ?Sized>(
    a: &'a A,
    b: &'a B,
    y: &'a Y,
    dy: &'a D,
    rule: impl Fn(F, F, F, F) -> F,
) -> <(&'a A, &'a B, &'a Y, &'a D) as Pullback2<F>>::Out
where
    (&'a A, &'a B, &'a Y, &'a D): Pullback2<F>,
{
    (a, b, y, dy).apply(rule)
}

/// Applies a three-input rule from the macro's table.
#[inline(always)]
pub fn pb3<'a, F, A: ?Sized, B: ?Sized, C: ?Sized, Y: ?Sized, D: ?Sized>(
    a: &'a A,
    b: &'a B,
    c: &'a C,
    y: &'a Y,
    dy: &'a D,
    rule: impl Fn(F, F, F, F, F) -> F,
) -> <(&'a A, &'a B, &'a C, &'a Y, &'a D) as Pullback3<F>>::Out
where
    (&'a A, &'a B, &'a C, &'a Y, &'a D): Pullback3<F>,
{
    (a, b, c, y, dy).apply(rule)
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
