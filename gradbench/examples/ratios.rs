//! Derivative/primal time ratios from the tool's own timings, on GradBench-sized inputs:
//! `cargo run --release -p gradbench-autodiff --example ratios`.
//!
//! Each message goes through `protocol::respond`, as under GradBench's harness: ten rounds of
//! an `evaluate` of the primal and one of the derivative, alternating (each repeated for at
//! least 5 runs and 0.05 s); the ratio of the medians of all their reported timings is
//! printed, and the ratio of their minimums.
//!
//! Each eval runs in a process of its own, as GradBench starts the tool once per eval: the
//! allocator's state carries over between the sizes of one eval, never from another eval
//! (glibc raises its trim threshold once a large block has been freed, so an eval run after
//! one that freed large arrays would not pay for the memory it returns to the system and
//! faults back in on every call). `-- <eval>` runs one eval in this process.
use gradbench_autodiff::protocol::respond;
use serde_json::{json, Value};

/// Deterministic pseudo-random numbers in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }
    fn rows(&mut self, r: usize, c: usize, lo: f64, hi: f64) -> Vec<Vec<f64>> {
        (0..r).map(|_| self.vec(c, lo, hi)).collect()
    }
}

/// The reported `evaluate` timings of one request.
fn timings_ns(module: &str, function: &str, input: &Value) -> Vec<f64> {
    let reply = respond(&json!({
        "id": 0, "kind": "evaluate", "module": module, "function": function, "input": input
    }))
    .expect("a reply");
    assert_eq!(
        reply["success"],
        json!(true),
        "{module}.{function}: {reply}"
    );
    reply["timings"]
        .as_array()
        .expect("timings")
        .iter()
        .map(|t| t["nanoseconds"].as_f64().expect("nanoseconds"))
        .collect()
}

/// The median and the minimum.
fn median_and_min(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

/// Rounds of requests, the primal's and the derivative's alternating, so that both see the
/// same phases of a machine whose speed changes from one second to the next.
const ROUNDS: usize = 10;

fn row(eval: &str, size: &str, (primal, derivative): (&str, &str), input: Value) {
    let input = {
        let mut i = input;
        i["min_runs"] = json!(5);
        i["min_seconds"] = json!(0.05);
        i
    };
    let (mut primal_ns, mut derivative_ns) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        primal_ns.extend(timings_ns(eval, primal, &input));
        derivative_ns.extend(timings_ns(eval, derivative, &input));
    }
    let (p, p_min) = median_and_min(primal_ns);
    let (d, d_min) = median_and_min(derivative_ns);
    println!(
        "| {eval} | {size} | {:.3} ms | {:.3} ms | {:.2} | {:.2} |",
        p / 1e6,
        d / 1e6,
        d / p,
        d_min / p_min
    );
}

const EVALS: [&str; 6] = ["gmm", "lse", "llsq", "ode", "det", "lstm"];

fn main() {
    if let Some(eval) = std::env::args().nth(1) {
        return run(&eval);
    }
    println!("| eval | size | primal (median) | derivative (median) | derivative / primal | the same, fastest runs |");
    println!("|---|---|---|---|---|---|");
    let me = std::env::current_exe().expect("the example's path");
    for eval in EVALS {
        let status = std::process::Command::new(&me)
            .arg(eval)
            .status()
            .expect("a process per eval");
        assert!(status.success(), "{eval}: {status}");
    }
}

/// One eval's rows, its inputs drawn from a generator seeded by its name.
fn run(eval: &str) {
    assert!(
        EVALS.contains(&eval),
        "unknown eval {eval}: one of {EVALS:?}"
    );
    let seed = eval
        .bytes()
        .fold(31337u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut r = Lcg(seed);
    for (d, k, n) in [(2, 5, 1000), (10, 25, 1000)]
        .into_iter()
        .filter(|_| eval == "gmm")
    {
        let input = json!({
            "d": d, "k": k, "n": n,
            "alpha": r.vec(k, -1.0, 1.0),
            "mu": r.rows(k, d, 0.0, 1.0),
            "q": r.rows(k, d, -0.5, 0.5),
            "l": r.rows(k, d * (d - 1) / 2, -0.5, 0.5),
            "x": r.rows(n, d, 0.0, 1.0),
            "gamma": 1.0, "m": 0,
        });
        row(
            "gmm",
            &format!("d={d} K={k} n={n}"),
            ("objective", "jacobian"),
            input,
        );
    }
    for n in [1000, 100_000].into_iter().filter(|_| eval == "lse") {
        row(
            "lse",
            &format!("n={n}"),
            ("primal", "gradient"),
            json!({ "x": r.vec(n, -2.0, 2.0) }),
        );
    }
    for (m, n) in [(16, 1024), (128, 4096)]
        .into_iter()
        .filter(|_| eval == "llsq")
    {
        let input = json!({ "x": r.vec(m, -1.0, 1.0), "n": n });
        row(
            "llsq",
            &format!("m={m} n={n}"),
            ("primal", "gradient"),
            input,
        );
    }
    for (n, s) in [(1000, 10), (10_000, 10)]
        .into_iter()
        .filter(|_| eval == "ode")
    {
        let input = json!({ "x": r.vec(n, 0.0, 1.0), "s": s });
        row(
            "ode",
            &format!("n={n} s={s}"),
            ("primal", "gradient"),
            input,
        );
    }
    for ell in [5, 8, 10].into_iter().filter(|_| eval == "det") {
        let input = json!({ "A": r.vec(ell * ell, 0.0, 1.0), "ell": ell });
        row("det", &format!("ell={ell}"), ("primal", "gradient"), input);
    }
    for (l, c, b) in [(2, 1024, 14), (4, 1024, 14)]
        .into_iter()
        .filter(|_| eval == "lstm")
    {
        let input = json!({
            "main_params": r.rows(2 * l, 4 * b, -0.5, 0.5),
            "extra_params": r.rows(3, b, -0.5, 0.5),
            "state": r.rows(2 * l, b, -0.5, 0.5),
            "sequence": r.rows(c, b, 0.0, 1.0),
        });
        row(
            "lstm",
            &format!("l={l} c={c} b={b}"),
            ("objective", "jacobian"),
            input,
        );
    }
}
