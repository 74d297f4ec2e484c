//! `hello`: `square(x) = x * x`, and `double`, its derivative.

use crate::protocol::{parse, timed, Evaluated, Runs};
use autodiff::differentiate;
use serde_json::Value;

#[differentiate]
pub fn square(x: f64) -> f64 {
    x * x
}

pub fn evaluate(function: &str, input: &Value) -> Result<Evaluated, String> {
    let x: f64 = parse(input)?;
    let runs = Runs::of(input);
    match function {
        "square" => timed(runs, || square(x)),
        "double" => timed(runs, || square_grad(x)),
        _ => super::unknown("hello", function),
    }
}
