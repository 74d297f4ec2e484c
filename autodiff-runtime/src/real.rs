use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

/// A float type gradients are computed in: `f32` or `f64`.
///
/// An `f32` function gets an `f32` gradient: nothing is widened behind the user's back.
pub trait Real:
    ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Copy
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + Send
    + Sync
    + 'static
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
