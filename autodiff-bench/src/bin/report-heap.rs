//! The heap pass of the benchmark report (`benches/report.rs` runs it): the peak heap of one
//! call of each row's generated and hand-written gradient, under a counting global allocator,
//! printed as `workload<TAB>size<TAB>generated<TAB>hand-written` lines. Arguments other than
//! `--bench` filter the rows as the report's do.
#![forbid(unsafe_code)]

#[path = "../../benches/common/workloads.rs"]
mod workloads;

use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// The peak heap of one call of `f` beyond what was allocated before it.
fn peak_bytes(f: &mut dyn FnMut()) -> usize {
    let base = HEAP.current_usage();
    HEAP.reset_peak_usage();
    f();
    HEAP.peak_usage().saturating_sub(base)
}

fn main() {
    if workloads::MODE
        .set(workloads::Mode::Heap(peak_bytes))
        .is_err()
    {
        unreachable!("the mode is set once");
    }
    workloads::all_rows();
}
