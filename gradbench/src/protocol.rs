//! GradBench's tool protocol: one JSON message per line on stdin, one reply per line on
//! stdout, each reply echoing the message's `id`.
//!
//! - `{"id", "kind": "start", "eval"}` → `{"id", "tool": "autodiff"}`
//! - `{"id", "kind": "define", "module"}` → `{"id", "success"}` (`false` for an eval this tool
//!   does not implement)
//! - `{"id", "kind": "evaluate", "module", "function", "input"}` →
//!   `{"id", "success", "output", "timings": [{"name": "evaluate", "nanoseconds"}, ..]}`, or
//!   `{"id", "success": false, "error"}`
//! - `{"id", "kind": "analysis", ..}` → `{"id"}`
//! - `{"id", "kind": "end"}`: no reply; the tool exits.

use crate::evals;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::time::Instant;

/// The tool's name, as the `start` reply gives it.
pub const TOOL: &str = "autodiff";

/// Answers messages from `input` on `output` until `end` or the end of the input.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a message that is not JSON: {e}"),
                ))
            }
        };
        let Some(reply) = respond(&message) else {
            break;
        };
        serde_json::to_writer(&mut output, &reply)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// The reply to one message; `None` for `end`.
pub fn respond(message: &Value) -> Option<Value> {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let kind = message.get("kind").and_then(Value::as_str).unwrap_or("");
    let text = |key: &str| message.get(key).and_then(Value::as_str).unwrap_or("");
    Some(match kind {
        "end" => return None,
        "start" => json!({ "id": id, "tool": TOOL }),
        "define" => json!({ "id": id, "success": evals::find(text("module")).is_some() }),
        "evaluate" => {
            let input = message.get("input").unwrap_or(&Value::Null);
            let result = match evals::find(text("module")) {
                Some(eval) => std::panic::catch_unwind(|| eval(text("function"), input))
                    .unwrap_or_else(|_| Err("the evaluation panicked".to_string())),
                None => Err(format!("unknown module `{}`", text("module"))),
            };
            match result {
                Ok(Evaluated { output, timings }) => json!({
                    "id": id,
                    "success": true,
                    "output": output,
                    "timings": timings
                        .iter()
                        .map(|ns| json!({ "name": "evaluate", "nanoseconds": ns }))
                        .collect::<Vec<_>>(),
                }),
                Err(error) => json!({ "id": id, "success": false, "error": error }),
            }
        }
        // `analysis` (the eval's verdict on an output) and anything newer: acknowledged.
        _ => json!({ "id": id }),
    })
}

/// An evaluation's output and the time of each run, in nanoseconds.
pub struct Evaluated {
    pub output: Value,
    pub timings: Vec<u128>,
}

/// How often to run: at least `min_runs` times and for at least `min_seconds` in total, as the
/// input says (1 run and 0 seconds when it does not).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Runs {
    pub min_runs: u64,
    pub min_seconds: f64,
}

impl Runs {
    pub fn of(input: &Value) -> Runs {
        Runs {
            min_runs: input
                .get("min_runs")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1),
            min_seconds: input
                .get("min_seconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        }
    }
}

/// Runs `f` as `runs` asks, timing each run; the output (of the last run) is turned into JSON
/// after the timing.
pub fn timed<T: serde::Serialize>(runs: Runs, f: impl FnMut() -> T) -> Result<Evaluated, String> {
    let (out, timings) = measure(runs, f);
    let output = serde_json::to_value(out).map_err(|e| e.to_string())?;
    Ok(Evaluated { output, timings })
}

/// Runs `f` as `runs` asks: its last result and the time of each run.
pub fn measure<T>(runs: Runs, mut f: impl FnMut() -> T) -> (T, Vec<u128>) {
    let mut timings = Vec::new();
    let mut total = 0.0;
    loop {
        let start = Instant::now();
        let value = std::hint::black_box(f());
        let elapsed = start.elapsed();
        timings.push(elapsed.as_nanos());
        total += elapsed.as_secs_f64();
        if timings.len() as u64 >= runs.min_runs && total >= runs.min_seconds {
            return (value, timings);
        }
    }
}

/// Reads the eval's input into `T`.
pub fn parse<T: serde::de::DeserializeOwned>(input: &Value) -> Result<T, String> {
    T::deserialize(input).map_err(|e| format!("input: {e}"))
}
