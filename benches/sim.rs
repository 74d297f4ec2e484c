//! Extended Rosenbrock (n = 1000) and Lennard-Jones (N = 256 particles): the primal, the
//! generated gradient and a hand-written gradient. After criterion's timings it prints the
//! heap each gradient allocates beyond its result.
use criterion::{criterion_group, criterion_main, Criterion};
use peak_alloc::PeakAlloc;
use std::hint::black_box;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

mod common {
    pub mod sim;
}
use common::sim;

fn peak_bytes(f: impl FnOnce()) -> usize {
    let base = HEAP.current_usage();
    HEAP.reset_peak_usage();
    f();
    HEAP.peak_usage().saturating_sub(base)
}

fn bench(c: &mut Criterion) {
    let x = sim::rosenbrock_point(1000);
    let mut group = c.benchmark_group("rosenbrock_1000");
    group.bench_function("primal", |b| b.iter(|| sim::rosenbrock(black_box(&x))));
    group.bench_function("generated_grad", |b| {
        b.iter(|| sim::rosenbrock_grad(black_box(&x)))
    });
    group.bench_function("hand_written_grad", |b| {
        b.iter(|| sim::rosenbrock_hand(black_box(&x)))
    });
    group.finish();

    let p = sim::lattice(256);
    let mut group = c.benchmark_group("lennard_jones_256");
    group.bench_function("primal", |b| b.iter(|| sim::lennard_jones(black_box(&p))));
    group.bench_function("generated_grad", |b| {
        b.iter(|| sim::lennard_jones_grad(black_box(&p)))
    });
    group.bench_function("hand_written_grad", |b| {
        b.iter(|| sim::lennard_jones_hand(black_box(&p)))
    });
    group.finish();

    let result = 8 * x.len();
    let r = peak_bytes(|| {
        black_box(sim::rosenbrock_grad(&x));
    });
    let l = peak_bytes(|| {
        black_box(sim::lennard_jones_grad(&p));
    });
    println!(
        "heap beyond the returned gradient: rosenbrock {} bytes, lennard-jones {} bytes",
        r.saturating_sub(result),
        l.saturating_sub(8 * p.len())
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
