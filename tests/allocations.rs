//! Straight-line scalar gradients allocate nothing; loop gradients over unchanged inputs
//! allocate only the gradient they return. Counted with an instrumented global allocator.
use autodiff::{differentiate, StopGradient};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[differentiate]
fn scalar(x: f64, y: f64) -> f64 {
    let mut r = (x + 2.0).powi(2) * y.sin();
    if r > 1.0 {
        r = r.ln() + x.atan2(y);
    } else {
        r -= x.hypot(y).sqrt();
    }
    r * x.exp() + y.max(0.5)
}

#[differentiate]
fn rosenbrock(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        s += 100.0 * a * a + b * b;
    }
    s
}

#[differentiate]
fn pairs(x: &[f64]) -> f64 {
    let n = x.len() / 3;
    let mut e = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = x[3 * i] - x[3 * j];
            let dy = x[3 * i + 1] - x[3 * j + 1];
            let dz = x[3 * i + 2] - x[3 * j + 2];
            let s6 = 1.0 / (dx * dx + dy * dy + dz * dz).powi(3);
            e += 4.0 * (s6 * s6 - s6);
        }
    }
    e
}

/// A buffer filled once, then read in every iteration of a later loop.
#[allow(clippy::needless_range_loop)]
#[differentiate]
fn filled_then_read(x: &[f64]) -> f64 {
    let n = x.len();
    let mut w = vec![0.0; n];
    for i in 0..n {
        w[i] = x[i].exp();
    }
    let mut s = 0.0;
    for r in 0..n {
        let mut row = 0.0;
        for i in 0..n {
            row += w[i] * x[r];
        }
        s += row.sin();
    }
    s
}

/// Squared distances to the maximum, the maximum a constant: its loop is not reversed, so
/// nothing is taped for it.
#[allow(clippy::needless_range_loop)]
#[differentiate]
fn spread(x: &[f64]) -> f64 {
    let mut m = x[0];
    for i in 1..x.len() {
        m = m.max(x[i]);
    }
    let m = m.stop_gradient();
    let mut s = 0.0;
    for i in 0..x.len() {
        s += (x[i] - m) * (x[i] - m);
    }
    s
}

/// A packed triangle walked by an index stepped by its stride: the reverse steps the index
/// again itself (it visits the iterations forwards), so no tape of its values is kept.
#[allow(clippy::needless_range_loop)]
#[differentiate(wrt(l))]
fn packed_rows(l: &[f64], x: &[f64], d: usize) -> f64 {
    let mut sq = 0.0;
    for j in 0..d {
        let mut s = x[j];
        let mut p = j;
        for i in 0..j {
            s += l[p - 1] * x[i];
            p += d - i - 2;
        }
        sq += s * s;
    }
    sq
}

#[test]
fn allocations_of_the_gradients() {
    // Warm up anything lazily allocated by the test harness.
    black_box(scalar_grad(0.3, 0.7));

    let region = Region::new(GLOBAL);
    for k in 0..100 {
        black_box(scalar_grad(0.3 + k as f64 * 0.01, 0.7));
        black_box(scalar_value_and_grad(1.3, -0.2 + k as f64 * 0.01));
        black_box(scalar_pullback(0.5, 0.4, 2.0));
    }
    assert_eq!(
        region.change().allocations,
        0,
        "straight-line scalar gradients allocate nothing"
    );

    let d = 12;
    let l: Vec<f64> = (0..d * (d - 1) / 2)
        .map(|k| (k as f64 * 0.37).sin())
        .collect();
    let xs: Vec<f64> = (0..d).map(|k| 0.2 * k as f64 - 0.4).collect();
    let region = Region::new(GLOBAL);
    let g = black_box(packed_rows_grad(black_box(&l), &xs, d));
    assert_eq!(
        region.change().allocations,
        1,
        "an index stepped by its stride is taped, not stepped again by the reverse"
    );
    let fd = autodiff::check::central_difference(|l| packed_rows(l, &xs, d), &l, 1e-6);
    for (g, f) in g.iter().zip(&fd) {
        assert!((g - f).abs() < 1e-6 * f.abs().max(1.0), "{g} vs {f}");
    }

    let x: Vec<f64> = (0..100).map(|i| 0.5 + 0.01 * i as f64).collect();
    let region = Region::new(GLOBAL);
    black_box(rosenbrock_grad(black_box(&x)));
    assert_eq!(
        region.change().allocations,
        1,
        "Rosenbrock allocates only its gradient"
    );

    let p: Vec<f64> = (0..30)
        .map(|i| (i as f64 * 0.37).sin() * 3.0 + i as f64)
        .collect();
    let region = Region::new(GLOBAL);
    black_box(pairs_grad(black_box(&p)));
    assert_eq!(
        region.change().allocations,
        1,
        "a pair sum allocates only its gradient"
    );

    // The maximum behind `stop_gradient` is not differentiated: no tape of its loop.
    let region = Region::new(GLOBAL);
    let g = black_box(spread_grad(black_box(&x)));
    assert_eq!(
        region.change().allocations,
        1,
        "a loop that only feeds stop_gradient is not reversed"
    );
    let m = x.iter().cloned().fold(f64::MIN, f64::max);
    for (g, x) in g.iter().zip(&x) {
        assert!(
            (g - 2.0 * (x - m)).abs() < 1e-14,
            "{g} vs {}",
            2.0 * (x - m)
        );
    }

    // The reads of `w` are not taped: nothing writes `w` after them. Allocated: `w`, its
    // adjoint, the gradient (the outer loop runs fused with its reverse) and the record of the
    // first loop's `exp` values, which its reverse pops instead of computing them again.
    let region = Region::new(GLOBAL);
    black_box(filled_then_read_grad(black_box(&x)));
    let change = region.change();
    assert_eq!(
        change.allocations, 4,
        "a buffer read in a later loop is not taped"
    );
    assert!(
        change.bytes_allocated <= 4 * 8 * x.len() + 64,
        "{} bytes allocated",
        change.bytes_allocated
    );
    // And the gradient is right.
    let small = &x[..6];
    let fd = autodiff::check::central_difference(filled_then_read, small, 1e-6);
    for (g, f) in filled_then_read_grad(small).iter().zip(&fd) {
        assert!((g - f).abs() <= 1e-6 * f.abs().max(1.0), "{g} vs {f}");
    }

    fused_sums_allocate_only_their_gradients();
    fixed_size_arrays_live_on_the_stack();
    structs_holding_atoms_allocate_only_their_gradient();
    accumulated_sums_allocate_only_the_gradient();
    sums_pass_their_adjoint_on_without_a_copy();
}

/// A sum of element-wise array operations (`fuse.rs`).
#[differentiate]
fn fused(x: &autodiff::ndarray::Array1<f64>, w: &autodiff::ndarray::Array1<f64>) -> f64 {
    (x * w - 1.0).mapv(f64::sin).sum()
}

/// Called from the one test of this file: the allocator's counts are global, so the checks
/// must not run on parallel test threads.
fn fused_sums_allocate_only_their_gradients() {
    use autodiff::ndarray::Array1;
    let x = Array1::from_shape_fn(50, |i| (i as f64 * 0.37).sin());
    let w = Array1::from_shape_fn(50, |i| (i as f64 * 0.11).cos());
    black_box(fused_grad(&x, &w));
    // One pass computes the sum and its derivatives for `x` and `w`, which become the
    // gradient: no array for `x * w`, `- 1.0` or the `sin`, forward or backward.
    let region = Region::new(GLOBAL);
    let (gx, gw) = black_box(fused_grad(black_box(&x), black_box(&w)));
    assert_eq!(
        region.change().allocations,
        2,
        "a fused sum allocates only the gradient"
    );
    for i in 0..x.len() {
        let c = (x[i] * w[i] - 1.0).cos();
        assert!((gx[i] - c * w[i]).abs() < 1e-15 && (gw[i] - c * x[i]).abs() < 1e-15);
    }
}

/// A loop over rows adding a fused sum per row (`reverse.rs` `direct_sums`).
#[differentiate]
fn per_row(x: &autodiff::ndarray::Array2<f64>, w: &autodiff::ndarray::Array1<f64>) -> f64 {
    let mut s = 0.0;
    for i in 0..x.nrows() {
        s += (&x.row(i) * w).mapv(f64::tanh).sum();
    }
    s
}

/// The sum's adjoint is known before each row's pass, which adds its derivatives into the
/// row of `x`'s adjoint and into `w`'s: nothing is allocated per row.
fn accumulated_sums_allocate_only_the_gradient() {
    use autodiff::ndarray::{Array1, Array2};
    let x = Array2::from_shape_fn((40, 10), |(i, j)| {
        ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.5
    });
    let w = Array1::from_shape_fn(10, |j| j as f64 / 10.0 - 0.4);
    black_box(per_row_grad(&x, &w));
    let region = Region::new(GLOBAL);
    let (gx, gw) = black_box(per_row_grad(black_box(&x), black_box(&w)));
    assert_eq!(
        region.change().allocations,
        2,
        "a loop of accumulated fused sums allocates only the gradient"
    );
    let mut want_w = Array1::<f64>::zeros(10);
    for ((i, j), &v) in x.indexed_iter() {
        let s = 1.0 - (v * w[j]).tanh().powi(2);
        assert!((gx[[i, j]] - s * w[j]).abs() < 1e-15);
        want_w[j] += s * v;
    }
    for j in 0..10 {
        assert!((gw[j] - want_w[j]).abs() < 1e-13);
    }
}

/// An affine layer `x.dot(w) + b`, read by a further product.
#[differentiate]
fn affine(
    x: &autodiff::ndarray::Array2<f64>,
    w: &autodiff::ndarray::Array2<f64>,
    b: &autodiff::ndarray::Array1<f64>,
    v: &autodiff::ndarray::Array1<f64>,
) -> f64 {
    (x.dot(w) + b).dot(v).sum()
}

/// Called from the one test of this file (global counts).
fn sums_pass_their_adjoint_on_without_a_copy() {
    use autodiff::ndarray::{Array1, Array2};
    let x = Array2::from_shape_fn((6, 4), |(i, j)| (i as f64 - j as f64 * 0.3).sin());
    let w = Array2::from_shape_fn((4, 3), |(i, j)| (i as f64 * 0.7 + j as f64).cos());
    let b = Array1::from_shape_fn(3, |j| j as f64 * 0.2 - 0.1);
    let v = Array1::from_shape_fn(3, |j| 1.0 - j as f64 * 0.4);
    black_box(affine_grad(&x, &w, &b, &v));
    // The forward product alone: its result, and matrixmultiply's packing buffer on a machine
    // whose kernel the runtime does not reproduce (elsewhere products this small run as
    // plain loops).
    let region = Region::new(GLOBAL);
    black_box(autodiff::__rt::dot(black_box(&x), &w));
    let product = region.change().allocations;
    assert!(
        product == 1 || product == 2,
        "the product allocated {product} times"
    );
    let region = Region::new(GLOBAL);
    let (gx, gw, gb, gv) = black_box(affine_grad(black_box(&x), black_box(&w), &b, &v));
    // Forward: `x.dot(w)` (above), `+ b` in the product's storage (nothing reads the product
    // afterwards but the reverse sweep, for its shape), `.dot(v)`. Reverse: the adjoints of
    // `.dot(v)`'s output and of its two operands, of `b` (the sum's adjoint summed over rows),
    // of `x` and `w` (plain loops at this size: no packing buffer). The product `x.dot(w)`
    // takes the sum's adjoint itself: one more with a copy, or with the sum in a new array.
    assert_eq!(
        region.change().allocations,
        7 + product,
        "the adjoint of `x.dot(w) + b` is copied, or the sum is not computed in place"
    );
    // Against the gradient by hand: the output's adjoint is `1 v^T` for `x.dot(w) + b`.
    let z = x.dot(&w) + &b;
    let dz = Array2::from_shape_fn((6, 3), |(_, j)| v[j]);
    let close = |a: &[f64], e: &[f64]| {
        a.len() == e.len() && a.iter().zip(e).all(|(a, e)| (a - e).abs() < 1e-12)
    };
    assert!(close(
        gx.as_slice().unwrap(),
        dz.dot(&w.t()).as_slice().unwrap()
    ));
    assert!(close(
        gw.as_slice().unwrap(),
        x.t().dot(&dz).as_slice().unwrap()
    ));
    assert!(close(
        gb.as_slice().unwrap(),
        dz.sum_axis(autodiff::ndarray::Axis(0)).as_slice().unwrap()
    ));
    assert!(close(
        gv.as_slice().unwrap(),
        z.sum_axis(autodiff::ndarray::Axis(0)).as_slice().unwrap()
    ));
}

/// A pair energy of points `[f64; 3]` with a difference vector written as an array literal.
#[allow(clippy::needless_range_loop)]
#[differentiate]
fn pair_of_points(a: [f64; 3], b: &[f64; 3]) -> f64 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let mut r2 = 0.0;
    for k in 0..3 {
        r2 += d[k] * d[k];
    }
    let mut scaled = [0.0; 3];
    for k in 0..3 {
        scaled[k] = d[k] / r2;
    }
    scaled[0] + r2.sqrt()
}

/// Called from the one test of this file (the allocator's counts are global).
#[allow(clippy::needless_range_loop)]
fn fixed_size_arrays_live_on_the_stack() {
    let (a, b) = ([0.5, -1.0, 2.0], [1.0, 0.25, 0.0]);
    black_box(pair_of_points_grad(a, &b));
    let region = Region::new(GLOBAL);
    for k in 0..100 {
        let shifted = [a[0] + k as f64 * 0.01, a[1], a[2]];
        black_box(pair_of_points_grad(black_box(shifted), &b));
        black_box(pair_of_points_pullback(shifted, &b, 0.5));
    }
    assert_eq!(
        region.change().allocations,
        0,
        "gradients of fixed-size arrays allocate nothing"
    );
    // And the gradient is right: d/da of d0 / r2 + r, with d = a - b.
    let (ga, gb) = pair_of_points_grad(a, &b);
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let r2: f64 = d.iter().map(|v| v * v).sum();
    let want: Vec<f64> = (0..3)
        .map(|k| (k == 0) as u8 as f64 / r2 - d[0] * 2.0 * d[k] / (r2 * r2) + d[k] / r2.sqrt())
        .collect();
    for k in 0..3 {
        assert!((ga[k] - want[k]).abs() < 1e-12, "{ga:?} {want:?}");
        assert!((gb[k] + want[k]).abs() < 1e-12, "{gb:?} {want:?}");
    }
}

#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct Atom {
    pub pos: [f64; 3],
    pub charge: f64,
}

/// Atoms held in a struct, per pair by a differentiated function of two atoms.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct Cluster {
    pub atoms: Vec<Atom>,
    pub epsilon: f64,
}

#[differentiate(wrt(a, b))]
fn pair_energy(a: &Atom, b: &Atom) -> f64 {
    let d = [
        a.pos[0] - b.pos[0],
        a.pos[1] - b.pos[1],
        a.pos[2] - b.pos[2],
    ];
    let s6 = 1.0 / (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).powi(3);
    4.0 * (s6 * s6 - s6)
}

impl Cluster {
    #[differentiate(wrt(self))]
    fn energy(&self) -> f64 {
        let mut e = 0.0;
        for (i, a) in self.atoms.iter().enumerate() {
            for b in self.atoms.iter().skip(i + 1) {
                e += pair_energy(a, b);
            }
        }
        self.epsilon * e
    }
}

/// Called from the one test of this file: the struct's gradient is the one allocation (its
/// `atoms`' `Vec`, built by the loop and moved in; no zero `Vec` made for the field first).
fn structs_holding_atoms_allocate_only_their_gradient() {
    let cluster = Cluster {
        atoms: (0..20)
            .map(|i| Atom {
                pos: [
                    1.1 * (i % 3) as f64,
                    1.2 * (i / 3 % 3) as f64,
                    1.3 * (i / 9) as f64,
                ],
                charge: 1.0,
            })
            .collect(),
        epsilon: 0.8,
    };
    black_box(cluster.energy_grad());
    let region = Region::new(GLOBAL);
    let g = black_box(black_box(&cluster).energy_grad());
    assert_eq!(
        region.change().allocations,
        1,
        "a struct holding atoms allocates its gradient's `Vec` alone"
    );
    // The gradient is right: epsilon's is the energy; the forces sum to zero.
    assert!((g.epsilon - cluster.energy() / cluster.epsilon).abs() < 1e-12);
    for k in 0..3 {
        let total: f64 = g.atoms.iter().map(|a| a.pos[k]).sum();
        assert!(total.abs() < 1e-9, "{total}");
    }
}
