//! Fused sums (`autodiff-macros/src/fuse.rs`, `autodiff-runtime/src/fused.rs`): a `.sum()` of
//! element-wise array operations runs as one pass that also computes its derivatives. Each
//! gradient is checked against central finite differences of the primal (which ndarray
//! computes with its arrays in between, unfused), and each value against the primal exactly
//! (the fused sum adds in ndarray's order).
use autodiff::differentiate;
use autodiff::ndarray::{Array1, Array2, Axis};

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect()
}

fn matrix(r: usize, c: usize, seed: u64) -> Array2<f64> {
    Array2::from_shape_vec((r, c), values(r * c, seed)).unwrap()
}

/// Central differences of `f` in every element of `x`.
fn fd_matrix(f: impl Fn(&Array2<f64>) -> f64, x: &Array2<f64>) -> Array2<f64> {
    let mut g = Array2::zeros(x.raw_dim());
    for (idx, gi) in g.indexed_iter_mut() {
        let h = 1e-6 * x[idx].abs().max(1.0);
        let (mut up, mut down) = (x.clone(), x.clone());
        up[idx] += h;
        down[idx] -= h;
        *gi = (f(&up) - f(&down)) / (2.0 * h);
    }
    g
}

fn fd_scalar(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-6 * x.abs().max(1.0);
    (f(x + h) - f(x - h)) / (2.0 * h)
}

fn close(name: &str, got: &Array2<f64>, want: &Array2<f64>) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    for (idx, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{name} at {idx}: got {g}, finite differences {w}"
        );
    }
}

/// `got` against central differences of `f` in every element of the vector `x`.
fn close_vector(name: &str, got: &Array1<f64>, f: impl Fn(&Array1<f64>) -> f64, x: &Array1<f64>) {
    let as_row = |a: &Array1<f64>| a.clone().insert_axis(Axis(0));
    let fd = fd_matrix(|x2| f(&x2.row(0).to_owned()), &as_row(x));
    close(name, &as_row(got), &fd);
}

/// Broadcasting a row across a matrix, a scalar parameter, a transcendental, more than
/// eight elements (ndarray's unrolled sum).
#[differentiate]
fn broadcast_row(x: &Array2<f64>, w: &Array2<f64>, s: f64) -> f64 {
    ((x - &w.row(0)) * s).mapv(f64::tanh).sum()
}

#[test]
fn broadcast_rows_and_scalars_match_finite_differences() {
    let (x, w, s) = (matrix(5, 7, 1), matrix(2, 7, 2), 0.7);
    let (value, (gx, gw, gs)) = broadcast_row_value_and_grad(&x, &w, s);
    assert_eq!(value, broadcast_row(&x, &w, s), "value");
    close("x", &gx, &fd_matrix(|x| broadcast_row(x, &w, s), &x));
    close("w", &gw, &fd_matrix(|w| broadcast_row(&x, w, s), &w));
    let want = fd_scalar(|s| broadcast_row(&x, &w, s), s);
    assert!(
        (gs - want).abs() < 1e-6 * want.abs().max(1.0),
        "s: {gs} {want}"
    );
}

/// Non-contiguous inputs (a column, a transpose), a constant parameter, `powi` with an
/// integer from the function, and a quotient.
#[differentiate(wrt(x))]
fn strided(x: &Array2<f64>, y: &Array2<f64>, n: i32) -> f64 {
    let k = n + 1;
    (&x.t() * &y.column(0) / (x.t().mapv(f64::exp) + 1.0))
        .powi(k)
        .sum()
}

#[test]
fn strided_inputs_and_constants_match_finite_differences() {
    let (x, y) = (matrix(4, 3, 3), matrix(4, 2, 4));
    let (value, gx) = strided_value_and_grad(&x, &y, 2);
    assert_eq!(value, strided(&x, &y, 2), "value");
    close("x", &gx, &fd_matrix(|x| strided(x, &y, 2), &x));
}

/// Fused sums inside a reversed loop (its iterations depend on each other through `p`) and
/// in the arms of an `if`.
#[differentiate]
fn in_loops_and_ifs(x: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let mut p = 1.0;
    for i in 0..x.nrows() {
        let r = (&x.row(i) * w).mapv(f64::sin).sum();
        p *= 1.0 + 0.1 * r;
    }
    if p > 0.0 {
        p + (w * w).sum()
    } else {
        p - w.mapv(f64::cos).sum()
    }
}

#[test]
fn fused_sums_in_loops_and_ifs_match_finite_differences() {
    let (x, w) = (matrix(6, 4, 5), Array1::from(values(4, 6)));
    let (value, (gx, gw)) = in_loops_and_ifs_value_and_grad(&x, &w);
    assert_eq!(value, in_loops_and_ifs(&x, &w), "value");
    close("x", &gx, &fd_matrix(|x| in_loops_and_ifs(x, &w), &x));
    close_vector("w", &gw, |w| in_loops_and_ifs(&x, w), &w);
}

/// In f32, where the fused sum's closures work in the function's float type.
#[differentiate]
fn single(x: &Array2<f32>, w: &Array1<f32>) -> f32 {
    (x * w - 0.5f32).mapv(f32::exp).sum()
}

#[test]
fn f32_fused_sums_match_the_analytic_derivative() {
    let x = matrix(3, 5, 7).mapv(|v| v as f32);
    let w = Array1::from(values(5, 8)).mapv(|v| v as f32);
    let (gx, gw) = single_grad(&x, &w);
    // d/dx_ij = exp(x_ij w_j - 0.5) w_j; d/dw_j = sum_i exp(..) x_ij.
    let e = (&x * &w - 0.5f32).mapv(f32::exp);
    let want_x = &e * &w;
    let want_w = (&e * &x).sum_axis(Axis(0));
    for (g, w) in gx
        .iter()
        .zip(want_x.iter())
        .chain(gw.iter().zip(want_w.iter()))
    {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} {w}");
    }
}

/// Only what a sum's element-wise operations read once is fused: `t` is read twice, so it
/// stays an array, and the sum fuses the rest.
#[differentiate]
fn shared(x: &Array2<f64>) -> f64 {
    let t = x.mapv(f64::sin);
    (&t * &t + x).sum() + t.sum()
}

#[test]
fn values_read_twice_stay_arrays_and_match_finite_differences() {
    let x = matrix(3, 4, 9);
    let (value, gx) = shared_value_and_grad(&x);
    assert_eq!(value, shared(&x), "value");
    close("x", &gx, &fd_matrix(shared, &x));
}

/// `mapv` closures are inlined into the fused function (one per sum): the closure's body,
/// with a constant it captures and an integer exponent; a second closure stays an array.
#[differentiate]
fn closures(x: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let k = 3;
    let c = 0.3;
    let a = (x * w).mapv(|v| (v * v + c).ln().powi(k)).sum();
    let b = (x.mapv(|t| t.sin()) + 1.0).mapv(|t| t * t.sqrt()).sum();
    a + b
}

#[test]
fn inlined_closures_match_finite_differences() {
    let (x, w) = (matrix(3, 4, 10), Array1::from(values(4, 11)));
    let (value, (gx, gw)) = closures_value_and_grad(&x, &w);
    assert_eq!(value, closures(&x, &w), "value");
    close("x", &gx, &fd_matrix(|x| closures(x, &w), &x));
    close_vector("w", &gw, |w| closures(&x, w), &w);
}

/// `.mean()` fused like `.sum()` (a mean squared error), and the mean of an empty array
/// panics as the primal's `.mean().unwrap()` does.
#[differentiate]
fn mse(pred: &Array2<f64>, target: &Array2<f64>) -> f64 {
    ((pred - target) * (pred - target)).mean().unwrap()
}

#[test]
fn fused_means_match_the_analytic_derivative_and_panic_when_empty() {
    let (p, t) = (matrix(4, 3, 12), matrix(4, 3, 13));
    let (value, (gp, gt)) = mse_value_and_grad(&p, &t);
    assert_eq!(value, mse(&p, &t), "value");
    let want = (&p - &t) * (2.0 / 12.0);
    close("pred", &gp, &want);
    close("target", &gt, &-want);
    let empty = Array2::<f64>::zeros((0, 3));
    let err = std::panic::catch_unwind(|| mse_grad(&empty, &empty)).unwrap_err();
    let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("`mean`") && text.contains("[0, 3]"), "{text}");
}

/// Columns of a matrix: one-dimensional inputs with a stride, read in place.
#[differentiate]
fn columns(x: &Array2<f64>) -> f64 {
    (&x.column(1) * &x.column(0) + x.column(2))
        .mapv(f64::sin)
        .sum()
}

#[test]
fn strided_columns_match_finite_differences() {
    let x = matrix(5, 3, 14);
    let (value, gx) = columns_value_and_grad(&x);
    assert_eq!(value, columns(&x), "value");
    close("x", &gx, &fd_matrix(columns, &x));
}

/// Under `checkpoint`, a time loop's iteration (it writes a buffer and runs a loop of its own)
/// runs plainly forward, the fused sum's value alone, and again in the reverse sweep, where
/// the derivatives are computed.
#[differentiate(checkpoint)]
fn stepped(x: &Array1<f64>, w: &Array1<f64>) -> f64 {
    let n = x.len();
    let mut buf = vec![0.0; n];
    let mut e = 0.0;
    for step in 0..3 {
        let s = (x * w).mapv(f64::tanh).sum() * (step as f64 + 1.0);
        for i in 0..n {
            buf[i] = buf[i] * 0.5 + s * x[i];
        }
        e += s * buf[0];
    }
    e
}

#[test]
fn fused_sums_in_checkpointed_loops_match_finite_differences() {
    let (x, w) = (Array1::from(values(5, 15)), Array1::from(values(5, 16)));
    let (value, (gx, gw)) = stepped_value_and_grad(&x, &w);
    assert_eq!(value, stepped(&x, &w), "value");
    close_vector("x", &gx, |x| stepped(x, &w), &x);
    close_vector("w", &gw, |w| stepped(&x, w), &w);
}

/// An element-wise operation on a buffer that is written before the sum: it is not moved
/// past the write (the buffer's later contents would be read).
#[differentiate]
fn overwritten(x: &Array1<f64>) -> f64 {
    let mut a = x.to_owned();
    let t = &a * 2.0;
    a[0] = 10.0 * x[1];
    let u = a.sum();
    t.mapv(f64::sin).sum() + u
}

#[test]
fn buffers_written_before_the_sum_are_read_where_the_operation_stood() {
    let x = Array1::from(values(4, 17));
    let (value, gx) = overwritten_value_and_grad(&x);
    assert_eq!(value, overwritten(&x), "value");
    close_vector("x", &gx, overwritten, &x);
}

/// A 0-d array input: broadcast like any array, its adjoint summed back to its own shape.
#[differentiate]
fn zero_dimensional(x: &Array1<f64>, c: &autodiff::ndarray::ArrayD<f64>) -> f64 {
    (x * c).mapv(f64::sin).sum()
}

#[test]
fn zero_dimensional_inputs_get_their_summed_adjoint() {
    let x = Array1::from(values(3, 18));
    let c = autodiff::ndarray::ArrayD::from_elem(autodiff::ndarray::IxDyn(&[]), 0.7);
    let (gx, gc) = zero_dimensional_grad(&x, &c);
    let want_c: f64 = x.iter().map(|v| (v * 0.7).cos() * v).sum();
    assert_eq!(gc.shape(), &[] as &[usize]);
    let gc = gc.iter().sum::<f64>();
    assert!((gc - want_c).abs() < 1e-14, "{gc} vs {want_c}");
    for (g, v) in gx.iter().zip(&x) {
        assert!((g - (v * 0.7).cos() * 0.7).abs() < 1e-14);
    }
}

/// Every way an input is read, over more than two blocks of eight elements and a tail: a
/// column (strided), a contiguous vector, a scalar, and a transposed matrix (copied once).
#[differentiate]
fn long_lanes(x: &Array2<f64>, c: &Array1<f64>, s: f64) -> f64 {
    (&x.column(1) * c * s).mapv(f64::tanh).sum() + (&x.t() * s - 0.25).mapv(f64::sin).sum()
}

#[test]
fn every_kind_of_input_over_blocks_and_a_tail() {
    let (x, c, s) = (matrix(19, 3, 31), Array1::from(values(19, 32)), 0.8);
    let (value, (gx, gc, gs)) = long_lanes_value_and_grad(&x, &c, s);
    assert_eq!(value, long_lanes(&x, &c, s), "value");
    close("x", &gx, &fd_matrix(|x| long_lanes(x, &c, s), &x));
    close_vector("c", &gc, |c| long_lanes(&x, c, s), &c);
    let want = fd_scalar(|s| long_lanes(&x, &c, s), s);
    assert!(
        (gs - want).abs() <= 1e-6 * want.abs().max(1.0),
        "s: {gs} vs {want}"
    );
}

/// A loop run fused with its reverse that adds fused sums into the value it accumulates
/// (`s += a - b + c - d * 0.01`, sums and a mean): the adjoint of `a`, `b` and `c` is known
/// before they run, so their derivatives go straight into the inputs' adjoints
/// (`__rt::fused_sum_acc`, `fused_mean_acc`): a row (contiguous) and a column (strided) of
/// matrices, a whole vector, a vector broadcast over a transposed matrix (gathered, then
/// summed), a constant, over a block of eight and a tail; `d`, scaled, keeps the derivatives
/// the reverse sweep scales.
#[differentiate(wrt(x, w, b))]
fn accumulated(x: &Array2<f64>, w: &Array1<f64>, b: &Array2<f64>, c: &Array1<f64>) -> f64 {
    let bt = b.t();
    let mut s = 0.0;
    for i in 0..x.nrows() {
        s += (&x.row(i) * w + c).mapv(f64::tanh).sum()
            - (&b.column(i % 3) * w).mapv(f64::sin).mean().unwrap()
            + ((&bt * w) * 0.1).mapv(f64::cos).sum()
            - (x * w).mapv(|v| v * v).sum() * 0.01;
    }
    s
}

#[test]
fn sums_accumulated_in_fused_loops_match_finite_differences() {
    let (x, w) = (matrix(7, 11, 41), Array1::from(values(11, 42)));
    let (b, c) = (matrix(11, 3, 43), Array1::from(values(11, 44)));
    let (value, (gx, gw, gb)) = accumulated_value_and_grad(&x, &w, &b, &c);
    assert_eq!(value, accumulated(&x, &w, &b, &c), "value");
    close("x", &gx, &fd_matrix(|x| accumulated(x, &w, &b, &c), &x));
    close_vector("w", &gw, |w| accumulated(&x, w, &b, &c), &w);
    close("b", &gb, &fd_matrix(|b| accumulated(&x, &w, b, &c), &b));
}
