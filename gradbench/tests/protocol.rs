//! Drives the binary with a recorded session and checks every reply's shape.
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

fn session(messages: &[Value]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradbench-autodiff"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the tool starts");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        for m in messages {
            writeln!(stdin, "{m}").expect("write a message");
        }
    }
    let out = child.wait_with_output().expect("the tool ends");
    assert!(out.status.success(), "exit status {:?}", out.status);
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each reply is one JSON line"))
        .collect()
}

fn evaluate(id: u64, module: &str, function: &str, input: Value) -> Value {
    json!({"id": id, "kind": "evaluate", "module": module, "function": function, "input": input})
}

#[test]
fn a_recorded_session() {
    let gmm = json!({
        "d": 2, "k": 2, "n": 3,
        "alpha": [0.1, -0.2],
        "mu": [[0.3, 0.1], [-0.4, 0.5]],
        "q": [[0.1, -0.1], [0.2, 0.05]],
        "l": [[0.3], [-0.2]],
        "x": [[0.1, 0.2], [-0.3, 0.4], [0.5, -0.6]],
        "gamma": 1.0, "m": 0,
        "min_runs": 3, "min_seconds": 0.0
    });
    let lstm = json!({
        "main_params": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]],
        "extra_params": [[0.5, -0.5], [0.3, 0.2], [0.1, -0.1]],
        "state": [[0.0, 0.1], [0.2, 0.3]],
        "sequence": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        "min_runs": 1, "min_seconds": 0.0
    });
    let det = json!({"A": [2.0, 1.0, 0.5, 1.0, 3.0, 0.0, 0.0, 1.0, 4.0], "ell": 3, "min_runs": 1, "min_seconds": 0.0});
    let messages = vec![
        json!({"id": 0, "kind": "start", "eval": "gmm"}),
        json!({"id": 1, "kind": "define", "module": "hello"}),
        evaluate(2, "hello", "square", json!(3.0)),
        evaluate(3, "hello", "double", json!(3.0)),
        json!({"id": 4, "kind": "define", "module": "gmm"}),
        evaluate(5, "gmm", "objective", gmm.clone()),
        evaluate(6, "gmm", "jacobian", gmm),
        evaluate(7, "lse", "primal", json!({"x": [1.0, 2.0, 3.0]})),
        evaluate(8, "lse", "gradient", json!({"x": [1.0, 2.0, 3.0]})),
        evaluate(9, "llsq", "primal", json!({"x": [0.5, 0.6, 0.7], "n": 4})),
        evaluate(
            10,
            "llsq",
            "gradient",
            json!({"x": [0.5, 0.6, 0.7], "n": 4}),
        ),
        evaluate(11, "ode", "primal", json!({"x": [0.5, 0.6, 0.7], "s": 2})),
        evaluate(12, "ode", "gradient", json!({"x": [0.5, 0.6, 0.7], "s": 2})),
        evaluate(13, "lstm", "objective", lstm.clone()),
        evaluate(14, "lstm", "jacobian", lstm),
        json!({"id": 15, "kind": "define", "module": "no-such-eval"}),
        evaluate(16, "hello", "cube", json!(2.0)),
        evaluate(17, "lse", "primal", json!({"y": 1})),
        evaluate(18, "det", "primal", det.clone()),
        evaluate(19, "det", "gradient", det),
        json!({"id": 20, "kind": "analysis", "of": 6, "valid": true}),
        json!({"id": 21, "kind": "end"}),
        json!({"id": 22, "kind": "define", "module": "hello"}),
    ];
    let replies = session(&messages);
    // `end` gets no reply, and nothing after it is read.
    assert_eq!(replies.len(), 21);
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r["id"], json!(i), "reply {i} echoes its id: {r}");
    }
    assert_eq!(replies[0]["tool"], json!("autodiff"));
    for i in [1, 4] {
        assert_eq!(replies[i]["success"], json!(true));
    }
    assert_eq!(replies[15]["success"], json!(false));
    for r in &replies[16..=17] {
        assert_eq!(r["success"], json!(false), "{r}");
        assert!(r["error"].is_string());
    }
    assert_eq!(replies[20], json!({"id": 20}));
    // 2 (3 * 4 - 0) - 1 (1 * 4 - 0) + 0.5 (1 * 1 - 0) = 20.5
    assert_eq!(replies[18]["output"], json!(20.5));
    assert_eq!(replies[2]["output"], json!(9.0));
    assert_eq!(replies[3]["output"], json!(6.0));
    for i in [2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 18, 19] {
        let r = &replies[i];
        assert_eq!(r["success"], json!(true), "{r}");
        let timings = r["timings"].as_array().expect("timings");
        assert!(!timings.is_empty());
        for t in timings {
            assert_eq!(t["name"], json!("evaluate"));
            assert!(t["nanoseconds"].is_u64());
        }
    }
    // min_runs: 3 asks for three runs.
    assert_eq!(replies[5]["timings"].as_array().map(Vec::len), Some(3));
    for i in [5, 7, 9, 13] {
        assert!(replies[i]["output"].is_f64(), "{}", replies[i]);
    }
    let jac = &replies[6]["output"];
    assert_eq!(jac["alpha"].as_array().map(Vec::len), Some(2));
    for (key, width) in [("mu", 2), ("q", 2), ("l", 1)] {
        let rows = jac[key].as_array().expect("rows");
        assert_eq!(rows.len(), 2, "{key}");
        assert!(rows
            .iter()
            .all(|r| r.as_array().map(Vec::len) == Some(width)));
    }
    // The LSTM jacobian: 8 l b main and 3 b extra parameters, l = 1, b = 2.
    for (i, len) in [(8, 3), (10, 3), (11, 3), (12, 3), (14, 16 + 6), (19, 9)] {
        assert_eq!(
            replies[i]["output"].as_array().map(Vec::len),
            Some(len),
            "{}",
            replies[i]
        );
    }
}
