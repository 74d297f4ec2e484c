//! Extended Rosenbrock (n = 1000) and Lennard-Jones (N = 256 particles): the primal, the
//! generated gradient and a hand-written gradient. After criterion's timings it prints the
//! heap each gradient allocates beyond its result.
use criterion::{criterion_group, criterion_main, Criterion};
use peak_alloc::PeakAlloc;
use std::hint::black_box;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

use autodiff_bench::sim;

fn peak_bytes(f: impl FnOnce()) -> usize {
    let base = HEAP.current_usage();
    HEAP.reset_peak_usage();
    f();
    HEAP.peak_usage().saturating_sub(base)
}

/// The best time per call over 200 blocks of `reps` calls: on a shared machine, the minimum
/// is the figure least disturbed by other work.
fn best_time(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..200 {
        let start = std::time::Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn ratios(
    name: &str,
    reps: usize,
    primal: impl FnMut(),
    generated: impl FnMut(),
    hand: impl FnMut(),
) {
    let (p, g, h) = (
        best_time(reps, primal),
        best_time(reps, generated),
        best_time(reps, hand),
    );
    println!(
        "{name}: best of 200 blocks: primal {:.3} us, generated {:.3} us, hand-written {:.3} us; generated/hand-written {:.2}, generated/primal {:.2}",
        p * 1e6,
        g * 1e6,
        h * 1e6,
        g / h,
        g / p
    );
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

    ratios(
        "rosenbrock_1000",
        200,
        || {
            black_box(sim::rosenbrock(black_box(&x)));
        },
        || {
            black_box(sim::rosenbrock_grad(black_box(&x)));
        },
        || {
            black_box(sim::rosenbrock_hand(black_box(&x)));
        },
    );
    ratios(
        "lennard_jones_256",
        3,
        || {
            black_box(sim::lennard_jones(black_box(&p)));
        },
        || {
            black_box(sim::lennard_jones_grad(black_box(&p)));
        },
        || {
            black_box(sim::lennard_jones_hand(black_box(&p)));
        },
    );

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
