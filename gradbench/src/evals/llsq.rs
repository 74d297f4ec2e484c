//! `llsq`: linear least squares, fitting `m` polynomial coefficients `x` to the sign function
//! at `n` points of [-1, 1]; `primal` and `gradient`.
#![allow(clippy::needless_range_loop)]

use crate::protocol::{parse, timed, Evaluated, Runs};
use autodiff::differentiate;
use serde::Deserialize;
use serde_json::Value;

#[differentiate(wrt(x))]
pub fn llsq(x: &[f64], n: usize) -> f64 {
    let m = x.len();
    let mut sum = 0.0;
    for i in 0..n {
        let ti = -1.0 + i as f64 * 2.0 / (n as f64 - 1.0);
        let si = if ti > 0.0 {
            1.0
        } else if ti < 0.0 {
            -1.0
        } else {
            0.0
        };
        let mut inner = si;
        for j in 0..m {
            inner -= x[j] * ti.powi(j as i32);
        }
        sum += inner * inner;
    }
    sum / 2.0
}

#[derive(Deserialize)]
struct Input {
    x: Vec<f64>,
    n: usize,
}

pub fn evaluate(function: &str, input: &Value) -> Result<Evaluated, String> {
    let Input { x, n } = parse(input)?;
    let runs = Runs::of(input);
    match function {
        "primal" => timed(runs, || llsq(&x, n)),
        "gradient" => timed(runs, || llsq_grad(&x, n)),
        _ => super::unknown("llsq", function),
    }
}
