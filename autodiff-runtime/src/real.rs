use std::fmt::{Debug, Display, LowerExp};
use std::iter::{Product, Sum};
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, Sub, SubAssign};

/// The float math of `f64` and `f32`, as methods of [`Real`]: one list, declared in the trait
/// and forwarded to the inherent methods in each implementation.
macro_rules! real_math {
    ($mac:ident $($t:ident)?) => {
        $mac! {
            $($t)?;
            unary: sqrt cbrt exp exp2 exp_m1 ln ln_1p log2 log10 sin cos tan asin acos atan sinh
                cosh tanh asinh acosh atanh abs recip to_degrees to_radians signum floor ceil
                round trunc fract;
            binary: powf log atan2 max min hypot copysign rem_euclid;
            ternary: mul_add clamp;
            test: is_nan is_finite is_infinite is_sign_negative is_sign_positive;
        }
    };
}

macro_rules! real_math_decls_list {
    (; unary: $($u:ident)*; binary: $($b:ident)*; ternary: $($t:ident)*; test: $($p:ident)*;) => {
        $(#[doc = concat!("`f64::", stringify!($u), "`.")] fn $u(self) -> Self;)*
        $(#[doc = concat!("`f64::", stringify!($b), "`.")] fn $b(self, other: Self) -> Self;)*
        $(#[doc = concat!("`f64::", stringify!($t), "`.")] fn $t(self, a: Self, b: Self) -> Self;)*
        $(#[doc = concat!("`f64::", stringify!($p), "`.")] fn $p(self) -> bool;)*
        /// `f64::powi`.
        fn powi(self, n: i32) -> Self;
        /// `f64::sin_cos`.
        fn sin_cos(self) -> (Self, Self);
    };
}

macro_rules! real_math_impls_list {
    ($ty:ident; unary: $($u:ident)*; binary: $($b:ident)*; ternary: $($t:ident)*; test: $($p:ident)*;) => {
        $(#[inline(always)] fn $u(self) -> Self { $ty::$u(self) })*
        $(#[inline(always)] fn $b(self, other: Self) -> Self { $ty::$b(self, other) })*
        $(#[inline(always)] fn $t(self, a: Self, b: Self) -> Self { $ty::$t(self, a, b) })*
        $(#[inline(always)] fn $p(self) -> bool { $ty::$p(self) })*
        #[inline(always)]
        fn powi(self, n: i32) -> Self {
            $ty::powi(self, n)
        }
        #[inline(always)]
        fn sin_cos(self) -> (Self, Self) {
            $ty::sin_cos(self)
        }
    };
}

macro_rules! real_math_decls {
    () => {
        real_math! {real_math_decls_list}
    };
}

macro_rules! real_math_impls {
    ($t:ident) => {
        real_math! {real_math_impls_list $t}
    };
}

/// A float type gradients are computed in: `f32` or `f64`.
///
/// An `f32` function gets an `f32` gradient: nothing is widened behind the user's back.
///
/// A function may also be generic over it, `fn energy<F: Real>(x: &[F]) -> F`, to be written
/// once for both: the trait carries the float math as methods (`x.exp()`, `x.powi(2)`,
/// `F::sqrt(x)`, the same names and meanings as `f64`'s), and constants are written
/// `F::from_f64(0.5)`. The generated gradient is generic in the same way and, once
/// instantiated, the same code as for `f64` or `f32` written out.
pub trait Real:
    ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Copy
    + Debug
    + Display
    + LowerExp
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Rem<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + for<'a> Sum<&'a Self>
    + Product
    + for<'a> Product<&'a Self>
    + Send
    + Sync
    + 'static
    // The generated code's plumbing for a scalar, so that it also serves a function generic
    // over its float (each implemented for `f32` and `f64` beside its trait).
    + crate::adjoint::Differentiable<Adjoint = Self>
    + crate::adjoint::AdjointFrom<Self>
    + for<'a> crate::adjoint::AdjointFrom<&'a Self>
    + crate::adjoint::Accumulate<Self>
    + for<'a> crate::adjoint::Accumulate<&'a Self>
    + crate::adjoint::AccTarget<Self>
    + crate::adjoint::HasShape
    + crate::adjoint::Scale<Self>
    + crate::adjoint::Likeness<Like = Self>
    + crate::adjoint::Pullback1<Self, Self, Self, Out = Self>
    + crate::adjoint::Pullback2<Self, Self, Self, Self, Out = Self>
    + crate::adjoint::Pullback3<Self, Self, Self, Self, Self, Out = Self>
    + crate::adjoint::Rewrite1<Self, Self, Self>
    + crate::adjoint::Rewrite2<Self, Self, Self, Self>
    + crate::adjoint::Rewrite3<Self, Self, Self, Self, Self>
    + crate::value::Val<Canon = Self>
    + crate::value::Broadcast<Self>
    + crate::tensor::Arith<Self, Output = Self>
    + crate::tensor::ArithOwned<Self, Output = Self>
    + crate::ops::MapElems<Elem = Self>
    + crate::fused::Elements<Self>
{
    /// The value `v` in this type (rounded for `f32`).
    fn from_f64(v: f64) -> Self;
    /// This value widened to `f64`.
    fn to_f64(self) -> f64;
    /// Machine epsilon of this type.
    fn epsilon() -> Self;
    /// `self * a + b` rounded once (the hardware's fused multiply-add where it has one).
    #[doc(hidden)]
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }
    /// The value `v` in this type (an integer count, a size).
    fn from_usize(v: usize) -> Self {
        Self::from_f64(v as f64)
    }
    /// Pi in this type.
    fn pi() -> Self {
        Self::from_f64(std::f64::consts::PI)
    }
    real_math_decls! {}
    /// Runs `f` on this thread's spare storage of this type (window tapes' and buffer
    /// copies', kept from one gradient call to the next; `adjoint::take_spare`). A type
    /// without storage of its own gets an empty one.
    #[doc(hidden)]
    fn with_spare_storage<R>(f: impl FnOnce(&mut Spare<Self>) -> R) -> R {
        f(&mut Spare::new())
    }
}

/// A thread's spare storage of one float type: arrays a gradient call is done with, and the
/// bytes they hold.
#[doc(hidden)]
pub struct Spare<F> {
    pub vecs: Vec<Vec<F>>,
    pub bytes: usize,
}

impl<F> Spare<F> {
    pub const fn new() -> Self {
        Spare {
            vecs: Vec::new(),
            bytes: 0,
        }
    }
}

impl<F> Default for Spare<F> {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! impl_real {
    ($($t:ident),*) => {$(
        impl Real for $t {
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn epsilon() -> Self {
                $t::EPSILON
            }
            #[inline(always)]
            fn fused_mul_add(self, a: Self, b: Self) -> Self {
                self.mul_add(a, b)
            }
            real_math_impls! {$t}
            fn with_spare_storage<R>(f: impl FnOnce(&mut Spare<Self>) -> R) -> R {
                thread_local! {
                    static SPARE: std::cell::RefCell<Spare<$t>> =
                        const { std::cell::RefCell::new(Spare::new()) };
                }
                SPARE.with(|s| f(&mut s.borrow_mut()))
            }
        }
    )*};
}
impl_real!(f32, f64);
