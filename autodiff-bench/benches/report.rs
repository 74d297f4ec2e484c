//! The benchmark report: every workload and size, every contender, one table.
//!
//! `cargo bench -p autodiff-bench --bench report` (add `--features peers` for num-dual,
//! `reverse`, `ad_trait` and candle; add `-- gmm` for the rows whose workload mentions gmm).
//! Before any timing, each contender's gradient is compared with the reference (the
//! hand-written gradient) and the maximum relative error printed. Times are medians of 15
//! samples, each a block of calls lasting about 5 ms, the row's contenders taking turns block by
//! block, with the system allocator. The heap columns, the peak heap of one gradient call beyond
//! what was allocated before it, come from a second process, `report-heap`, which counts
//! allocations (its atomic counters would slow every allocation of the timed code).
#![forbid(unsafe_code)]

#[path = "common/workloads.rs"]
mod workloads;

use std::collections::HashMap;
use std::process::Command;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: then only a
    // smoke run of the smallest sizes is wanted, which the rows' checks already give.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let filter: Vec<String> = std::env::args().skip(1).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_report-heap"))
        .args(&filter)
        .output()
        .expect("the heap pass, `report-heap`, runs");
    assert!(
        out.status.success(),
        "report-heap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut heaps = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split('\t');
        if let (Some(workload), Some(size)) = (parts.next(), parts.next()) {
            let bytes = parts.filter_map(|b| b.parse().ok()).collect();
            heaps.insert((workload.to_string(), size.to_string()), bytes);
        }
    }
    if workloads::MODE.set(workloads::Mode::Time(heaps)).is_err() {
        unreachable!("the mode is set once");
    }
    println!("{}", workloads::HEADER);
    workloads::all_rows();
}
