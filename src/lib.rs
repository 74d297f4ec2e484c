//! Reverse-mode automatic differentiation of ordinary Rust functions, by source transformation.
//!
//! ```
//! use autodiff::differentiate;
//!
//! #[differentiate]
//! fn f(x: f64) -> f64 {
//!     (x + 2.0).powi(2) + 3.0
//! }
//!
//! assert_eq!(f_grad(2.0), 8.0);
//! assert_eq!(f_value_and_grad(2.0), (19.0, 8.0));
//! ```
//!
//! See the README for the supported syntax and the generated companions.
#![forbid(unsafe_code)]

// Generated code names the runtime as `::autodiff::__rt`; this makes that path work inside this
// crate's own tests and doctests too.
extern crate self as autodiff;

pub use autodiff_macros::{differentiate, Differentiable};
pub use autodiff_runtime::adjoint::{Differentiable, StructGradient};
pub use autodiff_runtime::{check, ndarray, ops, ops::StopGradient, Real};

/// What generated code calls. Not a stable API.
#[doc(hidden)]
pub use autodiff_runtime::__rt;
