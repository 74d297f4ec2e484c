//! `lse`: log-sum-exp of a vector, shifted by its maximum; `primal` and `gradient`.
#![allow(clippy::needless_range_loop)]

use crate::protocol::{parse, timed, Evaluated, Runs};
use autodiff::{differentiate, StopGradient};
use serde::Deserialize;
use serde_json::Value;

#[differentiate]
pub fn lse(x: &[f64]) -> f64 {
    let mut a = x[0];
    for i in 1..x.len() {
        a = a.max(x[i]);
    }
    // A constant for differentiation: the value does not depend on the shift, so its loop is
    // left out of the reverse sweep.
    let a = a.stop_gradient();
    let mut s = 0.0;
    for i in 0..x.len() {
        s += (x[i] - a).exp();
    }
    s.ln() + a
}

#[derive(Deserialize)]
struct Input {
    x: Vec<f64>,
}

pub fn evaluate(function: &str, input: &Value) -> Result<Evaluated, String> {
    let Input { x } = parse(input)?;
    if x.is_empty() {
        return Err("lse: `x` is empty".into());
    }
    let runs = Runs::of(input);
    match function {
        "primal" => timed(runs, || lse(&x)),
        "gradient" => timed(runs, || lse_grad(&x)),
        _ => super::unknown("lse", function),
    }
}
