//! The benchmark workloads, each written once: the annotated function (its gradient
//! generated), the gradient written by hand (the floor to reach) and, behind the `peers`
//! feature, the same mathematics for the peer crates.
#![forbid(unsafe_code)]

pub mod calls;
pub mod gmm;
pub mod mlp;
#[cfg(feature = "peers")]
pub mod peers;
pub mod rows;
pub mod seed;
pub mod sim;
pub mod stencil;
pub mod trajectory;
