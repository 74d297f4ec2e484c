//! MLP loss (batch 128, 256-256-10, tanh, softmax cross-entropy): the generated gradient
//! against a hand-written ndarray backprop, in time and in peak heap.
//!
//! `cargo bench --bench mlp` prints criterion's timings, then one line per contender with its
//! peak heap during one gradient evaluation.
use criterion::{criterion_group, criterion_main, Criterion};
use peak_alloc::PeakAlloc;
use std::hint::black_box;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

use autodiff_bench::mlp;

fn peak_bytes(f: impl FnOnce()) -> usize {
    let base = HEAP.current_usage();
    HEAP.reset_peak_usage();
    f();
    HEAP.peak_usage().saturating_sub(base)
}

fn bench(c: &mut Criterion) {
    let (x, y, w1, b1, w2, b2) = mlp::problem(128, 256, 256, 10);
    let mut group = c.benchmark_group("mlp_128x256x256x10");
    group.bench_function("primal", |b| {
        b.iter(|| mlp::loss(black_box(&x), &y, &w1, &b1, &w2, &b2))
    });
    group.bench_function("generated_grad", |b| {
        b.iter(|| mlp::loss_value_and_grad(black_box(&x), &y, &w1, &b1, &w2, &b2))
    });
    group.bench_function("hand_written_grad", |b| {
        b.iter(|| mlp::hand_value_and_grad(black_box(&x), &y, &w1, &b1, &w2, &b2))
    });
    group.finish();

    let generated = peak_bytes(|| {
        black_box(mlp::loss_value_and_grad(&x, &y, &w1, &b1, &w2, &b2));
    });
    let hand = peak_bytes(|| {
        black_box(mlp::hand_value_and_grad(&x, &y, &w1, &b1, &w2, &b2));
    });
    println!(
        "peak heap: generated {} KiB, hand-written {} KiB, ratio {:.2}",
        generated / 1024,
        hand / 1024,
        generated as f64 / hand as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
