//! A [GradBench](https://github.com/gradbench/gradbench) tool for this library.
//!
//! [`protocol`] speaks GradBench's JSON-lines protocol; each module of [`evals`] is one eval,
//! its function written once as ordinary Rust under `#[differentiate]`, its derivative the
//! generated companion. Nothing here is differentiated by hand.
#![forbid(unsafe_code)]

pub mod evals;
pub mod protocol;
