//! `ode`: `s` steps of fourth-order Runge-Kutta on `y' = f(x, y)`, `f(x, y)[0] = x[0]`,
//! `f(x, y)[i] = x[i] * y[i - 1]`, from `y = 0` over `[0, 2]`. `primal` is the final `y`;
//! `gradient` is the gradient of its last component with respect to `x`.
#![allow(clippy::needless_range_loop)]

use crate::protocol::{parse, timed, Evaluated, Runs};
use autodiff::differentiate;
use serde::Deserialize;
use serde_json::Value;

/// The integrator, written once: `primal` returns the whole state, and the differentiated
/// `last` its last component (`#[differentiate]` takes functions with one float result).
macro_rules! runge_kutta {
    ($(#[$attr:meta])* $name:ident -> $ret:ty, |$yf:ident| $result:expr) => {
        $(#[$attr])*
        pub fn $name(x: &[f64], s: usize) -> $ret {
            let n = x.len();
            let h = 2.0 / s as f64;
            let mut $yf = vec![0.0; n];
            let mut k1 = vec![0.0; n];
            let mut k2 = vec![0.0; n];
            let mut k3 = vec![0.0; n];
            let mut k4 = vec![0.0; n];
            let mut y_tmp = vec![0.0; n];
            for _step in 0..s {
                k1[0] = x[0];
                for i in 1..n {
                    k1[i] = x[i] * $yf[i - 1];
                }
                for i in 0..n {
                    y_tmp[i] = $yf[i] + h * k1[i] / 2.0;
                }
                k2[0] = x[0];
                for i in 1..n {
                    k2[i] = x[i] * y_tmp[i - 1];
                }
                for i in 0..n {
                    y_tmp[i] = $yf[i] + h * k2[i] / 2.0;
                }
                k3[0] = x[0];
                for i in 1..n {
                    k3[i] = x[i] * y_tmp[i - 1];
                }
                for i in 0..n {
                    y_tmp[i] = $yf[i] + h * k3[i];
                }
                k4[0] = x[0];
                for i in 1..n {
                    k4[i] = x[i] * y_tmp[i - 1];
                }
                for i in 0..n {
                    $yf[i] += h * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0;
                }
            }
            $result
        }
    };
}

runge_kutta!(primal -> Vec<f64>, |yf| yf);
runge_kutta!(#[differentiate(checkpoint)] last -> f64, |yf| yf[yf.len() - 1]);

#[derive(Deserialize)]
struct Input {
    x: Vec<f64>,
    s: usize,
}

pub fn evaluate(function: &str, input: &Value) -> Result<Evaluated, String> {
    let Input { x, s } = parse(input)?;
    if x.is_empty() || s == 0 {
        return Err("ode: `x` must not be empty and `s` must be positive".into());
    }
    let runs = Runs::of(input);
    match function {
        "primal" => timed(runs, || primal(&x, s)),
        "gradient" => timed(runs, || last_grad(&x, s)),
        _ => super::unknown("ode", function),
    }
}
