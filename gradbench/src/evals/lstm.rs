//! `lstm`: the LSTM language-model loss of ADBench; `objective` and `jacobian` (the gradient
//! with respect to the main parameters, then the extra parameters, in one flat vector).
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use crate::protocol::{measure, parse, timed, Evaluated, Runs};
use autodiff::differentiate;
use serde::Deserialize;
use serde_json::Value;

#[differentiate]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The loss of an `l`-layer LSTM with hidden size `b` over a sequence of `c` one-hot-like
/// vectors of `b` entries. `main_params` holds, per layer, the weights then the biases of the
/// forget, input, output and change gates (`8 * b`); `extra_params` the input weights, output
/// weights and output biases (`3 * b`); `state` the initial hidden and cell states per layer
/// (`2 * b`). The prediction's normaliser is ADBench's `log(sum(exp(y)) + 2)`.
#[differentiate(wrt(main_params, extra_params))]
pub fn objective(
    main_params: &[f64],
    extra_params: &[f64],
    state: &[f64],
    sequence: &[f64],
    l: usize,
    c: usize,
    b: usize,
) -> f64 {
    let mut st = state.to_vec();
    let mut ypred = vec![0.0; b];
    let mut total = 0.0;
    for t in 0..c - 1 {
        for i in 0..b {
            ypred[i] = sequence[t * b + i] * extra_params[i];
        }
        for layer in 0..l {
            let w = 8 * b * layer;
            let hidden = 2 * b * layer;
            let cell = hidden + b;
            for i in 0..b {
                let input = if layer == 0 {
                    ypred[i]
                } else {
                    st[hidden - 2 * b + i]
                };
                let forget = sigmoid(input * main_params[w + i] + main_params[w + 4 * b + i]);
                let ingate =
                    sigmoid(st[hidden + i] * main_params[w + b + i] + main_params[w + 5 * b + i]);
                let outgate =
                    sigmoid(input * main_params[w + 2 * b + i] + main_params[w + 6 * b + i]);
                let change = (st[hidden + i] * main_params[w + 3 * b + i]
                    + main_params[w + 7 * b + i])
                    .tanh();
                st[cell + i] = st[cell + i] * forget + ingate * change;
                st[hidden + i] = outgate * st[cell + i].tanh();
            }
        }
        let last = 2 * b * (l - 1);
        for i in 0..b {
            ypred[i] = st[last + i] * extra_params[b + i] + extra_params[2 * b + i];
        }
        let mut sum = 0.0;
        for i in 0..b {
            sum += ypred[i].exp();
        }
        let lse = (sum + 2.0).ln();
        for i in 0..b {
            total += sequence[(t + 1) * b + i] * (ypred[i] - lse);
        }
    }
    let count = (c - 1) * b;
    -total / count as f64
}

#[derive(Deserialize)]
struct Input {
    main_params: Vec<Vec<f64>>,
    extra_params: Vec<Vec<f64>>,
    state: Vec<Vec<f64>>,
    sequence: Vec<Vec<f64>>,
}

pub fn evaluate(function: &str, input: &Value) -> Result<Evaluated, String> {
    let i: Input = parse(input)?;
    let l = i.main_params.len() / 2;
    let b = i.main_params.first().map_or(0, |r| r.len() / 4);
    let c = i.sequence.len();
    let (main, extra) = (i.main_params.concat(), i.extra_params.concat());
    let (state, sequence) = (i.state.concat(), i.sequence.concat());
    if l == 0 || b == 0 || c < 2 {
        return Err("lstm: needs at least one layer, a hidden size and two characters".into());
    }
    if main.len() != 8 * l * b
        || extra.len() != 3 * b
        || state.len() != 2 * l * b
        || sequence.len() != c * b
    {
        return Err(format!(
            "lstm: with l = {l}, b = {b}, c = {c}: main_params should hold {}, extra_params {}, state {}, sequence {} numbers",
            8 * l * b,
            3 * b,
            2 * l * b,
            c * b
        ));
    }
    let runs = Runs::of(input);
    match function {
        "objective" => timed(runs, || {
            objective(&main, &extra, &state, &sequence, l, c, b)
        }),
        "jacobian" => {
            let ((g_main, g_extra), timings) = measure(runs, || {
                objective_grad(&main, &extra, &state, &sequence, l, c, b)
            });
            let output =
                serde_json::to_value([g_main, g_extra].concat()).map_err(|e| e.to_string())?;
            Ok(Evaluated { output, timings })
        }
        _ => super::unknown("lstm", function),
    }
}
