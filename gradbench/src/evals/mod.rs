//! The evals, one module each: the function as GradBench defines it, under
//! `#[differentiate]`, and `evaluate`, which answers the eval's functions.

use crate::protocol::Evaluated;
use serde_json::Value;

pub mod det;
pub mod gmm;
pub mod hello;
pub mod llsq;
pub mod lse;
pub mod lstm;
pub mod ode;

/// Answers one `evaluate` message: the function's name and its input.
pub type Eval = fn(&str, &Value) -> Result<Evaluated, String>;

/// The evals this tool implements, by GradBench's module name.
pub const EVALS: &[(&str, Eval)] = &[
    ("det", det::evaluate),
    ("gmm", gmm::evaluate),
    ("hello", hello::evaluate),
    ("llsq", llsq::evaluate),
    ("lse", lse::evaluate),
    ("lstm", lstm::evaluate),
    ("ode", ode::evaluate),
];

pub fn find(module: &str) -> Option<Eval> {
    EVALS.iter().find(|(m, _)| *m == module).map(|(_, e)| *e)
}

fn unknown(module: &str, function: &str) -> Result<Evaluated, String> {
    Err(format!("the `{module}` eval has no function `{function}`"))
}
