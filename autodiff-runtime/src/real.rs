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
    /// Runs `f` on this thread's spare tape storage of this type (`WindowTape`'s, kept from
    /// one gradient call to the next). A type without storage of its own gets an empty list.
    #[doc(hidden)]
    fn with_spare_storage<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R {
        f(&mut Vec::new())
    }
    /// Runs `f` on this thread's spare storage for buffer copies of this type (`keep`'s,
    /// kept from one gradient call to the next). A type without storage of its own gets an
    /// empty one.
    #[doc(hidden)]
    fn with_spare_copies<R>(f: impl FnOnce(&mut SpareCopies<Self>) -> R) -> R {
        f(&mut SpareCopies::new())
    }
}

/// A thread's spare storage for copies of buffers, and the bytes it holds.
#[doc(hidden)]
pub struct SpareCopies<F> {
    pub vecs: Vec<Vec<F>>,
    pub bytes: usize,
}

impl<F> SpareCopies<F> {
    pub const fn new() -> Self {
        SpareCopies {
            vecs: Vec::new(),
            bytes: 0,
        }
    }
}

impl<F> Default for SpareCopies<F> {
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
            fn with_spare_storage<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R {
                thread_local! {
                    static SPARE: std::cell::RefCell<Vec<Vec<$t>>> =
                        const { std::cell::RefCell::new(Vec::new()) };
                }
                SPARE.with(|s| f(&mut s.borrow_mut()))
            }
            fn with_spare_copies<R>(f: impl FnOnce(&mut SpareCopies<Self>) -> R) -> R {
                thread_local! {
                    static COPIES: std::cell::RefCell<SpareCopies<$t>> =
                        const { std::cell::RefCell::new(SpareCopies::new()) };
                }
                COPIES.with(|s| f(&mut s.borrow_mut()))
            }
        }
    )*};
}
impl_real!(f32, f64);
