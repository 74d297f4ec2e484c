//! Every tensor primitive and broadcasting combination, in f64 and f32, against central finite
//! differences, on random shapes and values (proptest). The f32 gradient is compared with the
//! f64 finite differences at the same point, with an f32-sized tolerance.
use autodiff::differentiate;
use autodiff::ndarray::{
    Array, Array1, Array2, ArrayD, ArrayView2, Axis, Dimension, IxDyn, ShapeBuilder,
};
use autodiff::ops;
use proptest::prelude::*;

/// Deterministic values in `[lo, hi)` from a seed.
fn values<Sh: autodiff::ndarray::ShapeBuilder>(
    shape: Sh,
    seed: u64,
    lo: f64,
    hi: f64,
) -> Array<f64, Sh::Dim> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Array::from_shape_fn(shape, |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
    })
}

/// Checks `g64` (and `g32`) against central differences of `f` in each element of `x`.
fn check<D: Dimension>(
    name: &str,
    x: &Array<f64, D>,
    g64: &Array<f64, D>,
    g32: &Array<f32, D>,
    f: impl Fn(&Array<f64, D>) -> f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(g64.shape(), x.shape(), "{}: gradient shape", name);
    prop_assert_eq!(g32.shape(), x.shape(), "{}: f32 gradient shape", name);
    let (g64, g32): (Vec<f64>, Vec<f32>) =
        (g64.iter().copied().collect(), g32.iter().copied().collect());
    for idx in 0..x.len() {
        let mut p = x.as_standard_layout().into_owned();
        let xi = p.as_slice().expect("standard layout")[idx];
        let h = 1e-6 * xi.abs().max(1.0);
        p.as_slice_mut().expect("standard layout")[idx] = xi + h;
        let up = f(&p);
        p.as_slice_mut().expect("standard layout")[idx] = xi - h;
        let down = f(&p);
        let want = (up - down) / (2.0 * h);
        let scale = want.abs().max(1.0);
        let (got, got32) = (g64[idx], g32[idx] as f64);
        prop_assert!(
            (got - want).abs() <= 1e-5 * scale,
            "{} f64 at {:?}: got {}, finite differences {}",
            name,
            idx,
            got,
            want
        );
        prop_assert!(
            (got32 - want).abs() <= 3e-3 * scale,
            "{} f32 at {:?}: got {}, finite differences {}",
            name,
            idx,
            got32,
            want
        );
    }
    Ok(())
}

fn check_scalar(
    name: &str,
    x: f64,
    g64: f64,
    g32: f32,
    f: impl Fn(f64) -> f64,
) -> Result<(), TestCaseError> {
    let h = 1e-6 * x.abs().max(1.0);
    let want = (f(x + h) - f(x - h)) / (2.0 * h);
    let scale = want.abs().max(1.0);
    prop_assert!(
        (g64 - want).abs() <= 1e-5 * scale,
        "{} f64: got {}, finite differences {}",
        name,
        g64,
        want
    );
    prop_assert!(
        (g32 as f64 - want).abs() <= 3e-3 * scale,
        "{} f32: got {}, finite differences {}",
        name,
        g32,
        want
    );
    Ok(())
}

fn f32s<D: Dimension>(a: &Array<f64, D>) -> Array<f32, D> {
    a.mapv(|v| v as f32)
}

fn rounded<D: Dimension>(a: Array<f64, D>) -> Array<f64, D> {
    a.mapv(|v| v as f32 as f64)
}

/// One argument: `$body` over `x` of type `&$arr<F>`, with shape `$shape` (from `n`, `k`).
macro_rules! unary {
    ($test:ident, $arr:ident, |$n:ident, $k:ident| $shape:expr, $lo:literal..$hi:literal, |$x:ident| $body:expr) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f64_version($x: &$arr<f64>) -> f64 {
                $body
            }
            #[differentiate]
            fn f32_version($x: &$arr<f32>) -> f32 {
                $body
            }
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(24))]
                #[test]
                fn against_finite_differences($n in 1usize..4, $k in 1usize..4, seed in any::<u64>()) {
                    let x = rounded(values($shape, seed, $lo, $hi));
                    let g64 = f64_version_grad(&x);
                    let g32 = f32_version_grad(&f32s(&x));
                    check(stringify!($test), &x, &g64, &g32, |v| f64_version(v))?;
                    prop_assert_eq!(f64_version_value_and_grad(&x).0, f64_version(&x));
                }
            }
        }
    };
}

/// Two arguments of array types `$ta`, `$tb`.
macro_rules! binary {
    ($test:ident, $ta:ident, $tb:ident, |$n:ident, $k:ident| ($sa:expr, $sb:expr), $lo:literal..$hi:literal, |$a:ident, $b:ident| $body:expr) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f64_version($a: &$ta<f64>, $b: &$tb<f64>) -> f64 {
                $body
            }
            #[differentiate]
            fn f32_version($a: &$ta<f32>, $b: &$tb<f32>) -> f32 {
                $body
            }
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(24))]
                #[test]
                fn against_finite_differences($n in 1usize..4, $k in 1usize..4, seed in any::<u64>()) {
                    let a = rounded(values($sa, seed, $lo, $hi));
                    let b = rounded(values($sb, seed ^ 0x9e37, $lo, $hi));
                    let (ga, gb) = f64_version_grad(&a, &b);
                    let (ga32, gb32) = f32_version_grad(&f32s(&a), &f32s(&b));
                    check(concat!(stringify!($test), " a"), &a, &ga, &ga32, |v| f64_version(v, &b))?;
                    check(concat!(stringify!($test), " b"), &b, &gb, &gb32, |v| f64_version(&a, v))?;
                }
            }
        }
    };
}

/// An array and a scalar.
macro_rules! with_scalar {
    ($test:ident, $ta:ident, |$n:ident, $k:ident| $sa:expr, $lo:literal..$hi:literal, |$a:ident, $s:ident| $body:expr) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f64_version($a: &$ta<f64>, $s: f64) -> f64 {
                $body
            }
            #[differentiate]
            fn f32_version($a: &$ta<f32>, $s: f32) -> f32 {
                $body
            }
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(24))]
                #[test]
                fn against_finite_differences($n in 1usize..4, $k in 1usize..4, seed in any::<u64>(), s in 0.5f64..2.0) {
                    let s = s as f32 as f64;
                    let a = rounded(values($sa, seed, $lo, $hi));
                    let (ga, gs) = f64_version_grad(&a, s);
                    let (ga32, gs32) = f32_version_grad(&f32s(&a), s as f32);
                    check(concat!(stringify!($test), " array"), &a, &ga, &ga32, |v| f64_version(v, s))?;
                    check_scalar(concat!(stringify!($test), " scalar"), s, gs, gs32, |v| f64_version(&a, v))?;
                }
            }
        }
    };
}

// Element-wise arithmetic and broadcasting: every combination ndarray accepts.
binary!(
    add_same,
    Array2,
    Array2,
    |n, k| ((n, k), (n, k)),
    -2.0..2.0,
    |a, b| (a + b).mapv(|v| v * v).sum()
);
binary!(
    sub_row_broadcast,
    Array2,
    Array1,
    |n, k| ((n, k), k),
    -2.0..2.0,
    |a, b| (a - b).mapv(|v| v * v).sum()
);
binary!(
    mul_row_broadcast_left,
    Array1,
    Array2,
    |n, k| (k, (n, k)),
    -2.0..2.0,
    |a, b| (a * b).sum()
);
binary!(
    div_column_broadcast,
    Array2,
    Array2,
    |n, k| ((n, k), (n, 1)),
    0.5..2.0,
    |a, b| (a / b).sum()
);
binary!(
    outer_broadcast,
    Array2,
    Array2,
    |n, k| ((n, 1), (1, k)),
    -2.0..2.0,
    |a, b| (a * b).mapv(|v| v.sin()).sum()
);
with_scalar!(
    array_times_scalar,
    Array2,
    |n, k| (n, k),
    -2.0..2.0,
    |a, s| (a * s).mapv(|v| v * v).sum()
);
with_scalar!(
    scalar_minus_array,
    Array2,
    |n, k| (n, k),
    -2.0..2.0,
    |a, s| (s - a).mapv(|v| v * v).sum()
);
with_scalar!(scalar_over_array, Array1, |n, k| n + k, 0.5..2.0, |a, s| (s
    / a)
    .sum()
    + (a / s).sum());
with_scalar!(
    scalar_plus_array,
    Array2,
    |n, k| (n, k),
    -2.0..2.0,
    |a, s| (a + s).powi(3).sum() - (-a).sum()
);

// Matrix products.
binary!(
    dot_matrix_matrix,
    Array2,
    Array2,
    |n, k| ((n, k), (k, n + 1)),
    -2.0..2.0,
    |a, b| a.dot(b).mapv(|v| v * v).sum()
);
binary!(
    dot_matrix_vector,
    Array2,
    Array1,
    |n, k| ((n, k), k),
    -2.0..2.0,
    |a, b| a.dot(b).mapv(|v| v * v).sum()
);
binary!(
    dot_vector_matrix,
    Array1,
    Array2,
    |n, k| (n, (n, k)),
    -2.0..2.0,
    |a, b| a.dot(b).mapv(|v| v * v).sum()
);
binary!(
    dot_vector_vector,
    Array1,
    Array1,
    |n, k| (n + k, n + k),
    -2.0..2.0,
    |a, b| a.dot(b) * a.dot(b)
);
binary!(
    matmul_op,
    Array2,
    Array2,
    |n, k| ((n, k), (k, 2)),
    -2.0..2.0,
    |a, b| ops::matmul(a, b).mapv(|v| v * v).sum()
);
binary!(
    transposed_products,
    Array2,
    Array2,
    |n, k| ((n, k), (n, k)),
    -2.0..2.0,
    |a, b| a.t().dot(b).sum()
        + a.dot(&b.t()).mapv(|v| v * v).sum()
        + b.clone().reversed_axes().sum()
);

// Reductions and shapes.
// A reciprocal written as a quotient of one, element-wise.
unary!(reciprocal_of_array, Array2, |n, k| (n, k), 0.5..2.0, |x| {
    (1.0 / x).sum()
});
unary!(sum_and_mean, Array2, |n, k| (n, k), -2.0..2.0, |x| x
    .mapv(|v| v * v)
    .sum()
    + x.mean().unwrap() * 3.0);
unary!(sum_axis_0, Array2, |n, k| (n, k), -2.0..2.0, |x| x
    .sum_axis(Axis(0))
    .mapv(|v| v * v)
    .sum());
unary!(sum_axis_1, Array2, |n, k| (n, k), -2.0..2.0, |x| x
    .sum_axis(Axis(1))
    .mapv(|v| v * v)
    .sum());
unary!(mean_axis, Array2, |n, k| (n, k), -2.0..2.0, |x| x
    .mean_axis(Axis(1))
    .unwrap()
    .mapv(|v| v * v)
    .sum());
unary!(insert_axis, Array1, |n, k| n + k, -2.0..2.0, |x| x
    .view()
    .insert_axis(Axis(0))
    .dot(&x.view().insert_axis(Axis(1)))
    .sum());
unary!(reshape, Array2, |n, k| (n, 2 * k), -2.0..2.0, |x| x
    .view()
    .into_shape_with_order((2 * x.nrows(), x.ncols() / 2))
    .unwrap()
    .mapv(|v| v * v)
    .sum_axis(Axis(1))
    .mapv(|v| v * v)
    .sum());
unary!(to_shape, Array2, |n, k| (n, 2 * k), -2.0..2.0, |x| x
    .to_shape((x.ncols() / 2, 2 * x.nrows()))
    .unwrap()
    .sum_axis(Axis(0))
    .mapv(|v| v * v)
    .sum());
unary!(copies_and_views, Array2, |n, k| (n, k), -2.0..2.0, |x| x
    .clone()
    .mapv(|v| v * v)
    .sum()
    + x.to_owned().sum() * x.view().sum());

// Float methods on arrays.
unary!(exp_ln_sqrt, Array2, |n, k| (n, k), 0.5..2.0, |x| x
    .exp()
    .sum()
    + x.ln().sum()
    + x.sqrt().sum());
unary!(powers, Array2, |n, k| (n, k), 0.5..2.0, |x| x.powi(3).sum()
    + x.powf(1.5).sum()
    + x.recip().sum());
unary!(trig, Array2, |n, k| (n, k), -1.0..1.0, |x| x.tanh().sum()
    + x.sin().sum() * x.cos().sum());
unary!(piecewise, Array1, |n, k| n + k, 0.2..2.0, |x| (x - 1.1)
    .abs()
    .sum()
    + x.signum().sum());

// mapv with paths and closures.

mod mapv_path {
    use super::*;
    #[differentiate]
    fn f64_version(x: &Array2<f64>) -> f64 {
        x.mapv(f64::tanh).sum() + x.mapv(f64::exp).sum() * x.mapv(f64::sin).sum()
    }
    #[differentiate]
    fn f32_version(x: &Array2<f32>) -> f32 {
        x.mapv(f32::tanh).sum() + x.mapv(f32::exp).sum() * x.mapv(f32::sin).sum()
    }
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn against_finite_differences(n in 1usize..4, k in 1usize..4, seed in any::<u64>()) {
            let x = rounded(values((n, k), seed, -1.0, 1.0));
            check("mapv_path", &x, &f64_version_grad(&x), &f32_version_grad(&f32s(&x)), f64_version)?;
        }
    }
}
unary!(mapv_closure, Array2, |n, k| (n, k), -1.0..1.0, |x| x
    .mapv(|v| v.max(0.0) * 2.0 + (v * 3.0).sin() - if v > 0.5 { v * v } else { -v })
    .sum());

// Runtime functions.
unary!(
    relu_sigmoid_softplus,
    Array2,
    |n, k| (n, k),
    -2.0..2.0,
    |x| ops::relu(x).mapv(|v| v * v).sum() + ops::sigmoid(x).sum() * ops::softplus(x).sum()
);
unary!(
    logsumexp,
    Array2,
    |n, k| (n, k),
    -3.0..3.0,
    |x| ops::logsumexp(x) * ops::logsumexp(&x.mapv(|v| v * v))
);
unary!(softmax, Array2, |n, k| (n, k + 1), -3.0..3.0, |x| {
    (ops::softmax(x) * x).sum()
});
unary!(log_softmax, Array2, |n, k| (n, k + 1), -3.0..3.0, |x| {
    (ops::log_softmax(x) * x).sum()
});

mod scalar_ops {
    use super::*;
    #[differentiate]
    fn f(x: f64) -> f64 {
        ops::relu(x) * ops::sigmoid(x) + ops::softplus(x)
    }
    proptest! {
        #[test]
        fn relu_sigmoid_softplus_on_scalars(x in -3.0f64..3.0) {
            prop_assume!(x.abs() > 1e-3);
            let h = 1e-6;
            let want = (f(x + h) - f(x - h)) / (2.0 * h);
            prop_assert!((f_grad(x) - want).abs() < 1e-6);
        }
    }
}

// Parameter kinds: views, owned arrays, dynamic dimension, and arrays mixed with scalars and
// constants.
#[differentiate]
fn kinds(v: ArrayView2<f64>, o: Array1<f64>, d: &ArrayD<f64>, s: f64, n: usize) -> f64 {
    let m = v.dot(&o) * s;
    m.sum() + d.mapv(|e| e * e).sum() * (n as f64)
}

#[test]
fn views_owned_and_dynamic_arrays() {
    let v = values((2, 3), 1, -1.0, 1.0);
    let o = values(3, 2, -1.0, 1.0);
    let d = values(IxDyn(&[2, 2, 2]), 3, -1.0, 1.0);
    let (gv, go, gd, gs): (Array2<f64>, Array1<f64>, ArrayD<f64>, f64) =
        kinds_grad(v.view(), o.clone(), &d, 0.7, 3);
    // Analytic: m = s * v o.
    for i in 0..2 {
        for j in 0..3 {
            assert!((gv[[i, j]] - 0.7 * o[j]).abs() < 1e-12);
        }
    }
    for j in 0..3 {
        assert!((go[j] - 0.7 * v.column(j).sum()).abs() < 1e-12);
    }
    assert!((gs - v.dot(&o).sum()).abs() < 1e-12);
    for (g, e) in gd.iter().zip(d.iter()) {
        assert!((g - 6.0 * e).abs() < 1e-12);
    }
}

#[differentiate(wrt(w))]
fn only_w(x: &Array2<f64>, w: &Array1<f64>) -> f64 {
    x.dot(w).mapv(|v| v * v).sum()
}

#[test]
fn wrt_on_arrays() {
    let x = values((3, 2), 5, -1.0, 1.0);
    let w = values(2, 6, -1.0, 1.0);
    let g: Array1<f64> = only_w_grad(&x, &w);
    let want = 2.0 * x.t().dot(&x.dot(&w));
    assert!(g
        .iter()
        .zip(want.iter())
        .all(|(a, b)| (a - b).abs() < 1e-12));
}

#[differentiate]
fn mismatched(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a + b).sum()
}

#[test]
fn shape_mismatches_panic_naming_the_operation_and_both_shapes() {
    let a = Array2::<f64>::zeros((2, 3));
    let b = Array2::<f64>::zeros((3, 2));
    let primal = std::panic::catch_unwind(|| mismatched(&a, &b)).unwrap_err();
    let grad = std::panic::catch_unwind(|| mismatched_grad(&a, &b)).unwrap_err();
    let text = |e: Box<dyn std::any::Any + Send>| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    };
    let (p, g) = (text(primal), text(grad));
    // ndarray's own message, plus the operation and both shapes.
    let ndarray_error = "ShapeError/IncompatibleShape: incompatible shapes";
    assert!(
        p.contains(ndarray_error) && g.contains(ndarray_error),
        "primal: {p}\ngradient: {g}"
    );
    assert!(
        g.contains("`+`") && g.contains("[2, 3]") && g.contains("[3, 2]"),
        "{g}"
    );
}

// Rows and columns add their adjoints into the matrix's adjoint in place (`__rt::row_acc`):
// in loops over rows and columns, as the first contribution the matrix's adjoint gets (the
// loop comes last in the reverse sweep) and beside whole-matrix contributions.
#[differentiate]
fn rows_and_columns(x: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let head = x.row(0).sum() * x.column(1).mapv(f64::sin).sum();
    let mut s = 0.0;
    for i in 0..x.nrows() {
        s += (&x.row(i) * w).mapv(f64::tanh).sum();
    }
    for j in 0..x.ncols() {
        let c = x.column(j);
        s += (&c * &c).sum() * (j as f64 + 1.0);
    }
    s + head + (x * x).sum() * 0.1
}

/// `g` against central differences of `f` in every element of `x` (any dimension; elements
/// in logical order).
fn assert_matches_fd<D: Dimension>(
    name: &str,
    g: &Array<f64, D>,
    x: &Array<f64, D>,
    f: impl Fn(&Array<f64, D>) -> f64,
) {
    assert_eq!(g.shape(), x.shape(), "{name}: gradient shape");
    let h = 1e-6;
    for (k, &got) in g.iter().enumerate() {
        let (mut up, mut down) = (x.clone(), x.clone());
        if let (Some(u), Some(d)) = (up.iter_mut().nth(k), down.iter_mut().nth(k)) {
            (*u, *d) = (*u + h, *d - h);
        }
        let want = (f(&up) - f(&down)) / (2.0 * h);
        assert!(
            (got - want).abs() < 1e-7,
            "{name}, element {k}: {got} vs {want}"
        );
    }
}

#[test]
fn rows_and_columns_in_loops_match_finite_differences() {
    let x = values((5, 3), 11, -1.0, 1.0);
    let w = values(3, 12, -1.0, 1.0);
    let (gx, gw) = rows_and_columns_grad(&x, &w);
    assert_matches_fd("x", &gx, &x, |x| rows_and_columns(x, &w));
    assert_matches_fd("w", &gw, &w, |w| rows_and_columns(&x, w));
}

// A value read by the reverse sweep only through a row or column of it: the value is kept
// as long as its view (before, the forward sweep freed it while the view still borrowed it,
// which did not compile).
#[differentiate]
fn column_of_a_temporary(x: &Array2<f64>) -> f64 {
    let p = ops::log_softmax(x);
    let c = p.column(0);
    let r = p.row(1);
    let mut s = 0.0;
    for i in 0..x.nrows() {
        s += x[[i, 1]] * c[i];
    }
    s + (&r * &r).sum()
}

#[test]
fn views_of_temporaries_match_finite_differences() {
    let x = values((4, 3), 21, -1.0, 1.0);
    let g = column_of_a_temporary_grad(&x);
    assert_matches_fd("x", &g, &x, column_of_a_temporary);
}

// Element-wise contributions into an adjoint that already exists are added in place
// (`__rt::acc_pbN`) when the adjoint has the output's shape, and reduced first when the
// operand was broadcast (`b` here): both paths, several contributions each.
#[differentiate]
fn repeated_contributions(h: &Array2<f64>, b: &Array1<f64>) -> f64 {
    let u = h * b;
    let v = h.mapv(f64::sin) * b;
    let z = (&u * &v).mapv(f64::tanh) + h.mapv(f64::exp) * &u + h * h;
    z.sum() + (b * b * b).sum()
}

#[test]
fn contributions_in_place_and_reduced_match_finite_differences() {
    let h = values((4, 3), 31, -1.0, 1.0);
    let b = values(3, 32, -1.0, 1.0);
    let (gh, gb) = repeated_contributions_grad(&h, &b);
    assert_matches_fd("h", &gh, &h, |h| repeated_contributions(h, &b));
    assert_matches_fd("b", &gb, &b, |b| repeated_contributions(&h, b));
}

/// Parts of arrays by `slice(s![..])`: ranges, a fixed index, steps, a negative step, a row
/// chosen in a loop; each part's adjoint adds into that part of the array's.
#[differentiate]
fn sliced(m: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let top = m.slice(autodiff::ndarray::s![0..2, ..]);
    let col = m.slice(autodiff::ndarray::s![.., 1]);
    let every_other = m.slice(autodiff::ndarray::s![..;2, 1..]);
    let mut s = (&top * &top).sum() + (&col * w).mapv(f64::sin).sum();
    s += every_other.mapv(f64::tanh).sum();
    for i in 0..m.nrows() {
        let row = m.slice(autodiff::ndarray::s![i, ..;-1]);
        s += (&row * &m.row(0)).sum() * 0.5;
    }
    s
}

#[test]
fn slices_match_finite_differences() {
    let m = values((3, 3), 7, -1.0, 1.0);
    let w = values(3, 8, -1.0, 1.0);
    let (value, (gm, gw)) = sliced_value_and_grad(&m, &w);
    assert_eq!(value, sliced(&m, &w));
    let flat: Vec<f64> = m.iter().copied().collect();
    let fm = autodiff::check::central_difference(
        |v| sliced(&Array2::from_shape_vec((3, 3), v.to_vec()).unwrap(), &w),
        &flat,
        1e-6,
    );
    let fw = autodiff::check::central_difference(
        |v| sliced(&m, &Array1::from(v.to_vec())),
        w.as_slice().unwrap(),
        1e-6,
    );
    for (g, f) in gm.iter().zip(&fm).chain(gw.iter().zip(&fw)) {
        assert!((g - f).abs() <= 1e-6 * f.abs().max(1.0), "{g} vs {f}");
    }
}

// Sums and differences whose two operands both get their first adjoint there
// (`__rt::init_pair`): the operand shaped like the result takes the adjoint, the other one
// sums it over its broadcast axes (a row `b` first or second, a scalar `s`), negated where
// it is subtracted; two operands of the same shape get a copy.
#[differentiate(wrt(x, w, b, s))]
fn paired_operands(
    x: &Array2<f64>,
    w: &Array2<f64>,
    b: &Array1<f64>,
    s: f64,
    c: &Array1<f64>,
) -> f64 {
    let first = (s - b).dot(c);
    let u = b - x.dot(w);
    let v = x.dot(w) - s;
    let z = &u.mapv(f64::sin) - &v.mapv(f64::cos);
    z.dot(c).sum() + first
}

#[test]
fn paired_first_contributions_match_finite_differences() {
    let x = values((4, 3), 41, -1.0, 1.0);
    let w = values((3, 2), 42, -1.0, 1.0);
    let b = values(2, 43, -1.0, 1.0);
    let c = values(2, 44, -1.0, 1.0);
    let s = 0.3;
    let (gx, gw, gb, gs) = paired_operands_grad(&x, &w, &b, s, &c);
    assert_matches_fd("x", &gx, &x, |x| paired_operands(x, &w, &b, s, &c));
    assert_matches_fd("w", &gw, &w, |w| paired_operands(&x, w, &b, s, &c));
    assert_matches_fd("b", &gb, &b, |b| paired_operands(&x, &w, b, s, &c));
    let h = 1e-6;
    let f = |s| paired_operands(&x, &w, &b, s, &c);
    let want = (f(s + h) - f(s - h)) / (2.0 * h);
    assert!((gs - want).abs() < 1e-7, "s: {gs} vs {want}");
}

#[differentiate]
fn product_of_matrices(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    x.dot(w).mapv(f64::sin).sum()
}

// A matrix product and its adjoints run as plain loops when small (at most 512
// multiply-adds) and through matrixmultiply otherwise: the value against ndarray's product and
// the gradient against the analytic one, `cos(x w) w^T` and `x^T cos(x w)`, computed with
// ndarray's own products; `x` also column-major (the plain loops index by strides).
#[test]
fn small_and_large_matrix_products_match_the_analytic_gradient() {
    for (m, k, n, seed, column_major) in [
        (3, 4, 2, 51, false),
        (1, 1, 1, 52, false),
        (8, 8, 8, 53, false),
        (2, 4, 1, 55, true),
        (20, 30, 10, 54, false),
        (20, 30, 10, 56, true),
    ] {
        let mut x: Array2<f64> = values((m, k), seed, -1.0, 1.0);
        if column_major {
            let mut f = Array2::zeros((m, k).f());
            f.assign(&x);
            x = f;
        }
        let w: Array2<f64> = values((k, n), seed + 100, -1.0, 1.0);
        let (value, (gx, gw)) = product_of_matrices_value_and_grad(&x, &w);
        let want = x.dot(&w).mapv(f64::sin).sum();
        assert!((value - want).abs() <= 1e-12 * want.abs().max(1.0));
        let c = x.dot(&w).mapv(f64::cos);
        for (got, want) in [(gx, c.dot(&w.t())), (gw, x.t().dot(&c))] {
            assert_eq!(got.shape(), want.shape());
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-12 * e.abs().max(1.0),
                    "{m}x{k}x{n}: {g} vs {e}"
                );
            }
        }
    }
}

// Views read once by a statement of their own block give their one contribution straight
// to the viewed array's adjoint (`__rt::row_acc(&mut __d_x, contribution, i)`): a row
// broadcast against a matrix (its contributions summed over the matrix's rows), a column read
// by a product, a slice under a sum, a row read in an `if` arm where it is defined. A row
// read by two statements, one read in an `if` arm below its definition, and one defined
// before a loop and read inside keep an adjoint of their own.
#[differentiate]
fn views_read_once(x: &Array2<f64>, m: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let mut s = 0.0;
    for i in 0..x.nrows() {
        let r = x.row(i);
        s += (&r * m).mapv(f64::sin).sum() * 0.5;
        let c = x.column(i % x.ncols());
        s += c.dot(w).tanh();
        let b = x.row(i);
        s += (&b + m).dot(w).mapv(f64::cos).sum();
    }
    let top = x.slice(autodiff::ndarray::s![0..2, ..]);
    s += top.sum();
    let twice = x.row(1);
    s += twice.mapv(f64::exp).sum();
    s += (&twice * &twice).sum();
    let first = x.row(0);
    if s > 0.0 {
        s += first.dot(&m.row(0)).cos();
    }
    let last = x.row(2);
    for k in 0..2 {
        s += last.mapv(|v| v * k as f64).sum();
    }
    s
}

#[test]
fn views_read_once_match_finite_differences() {
    let x = values((3, 3), 61, -1.0, 1.0);
    let m = values((2, 3), 62, -1.0, 1.0);
    let w = values(3, 63, -1.0, 1.0);
    let (gx, gm, gw) = views_read_once_grad(&x, &m, &w);
    assert_matches_fd("x", &gx, &x, |x| views_read_once(x, &m, &w));
    assert_matches_fd("m", &gm, &m, |m| views_read_once(&x, m, &w));
    assert_matches_fd("w", &gw, &w, |w| views_read_once(&x, &m, w));
}

// Loop bodies whose reverse reads some values only for their shapes (the column assembled by
// a matrix product, the `init` of an adjoint, a sum's operand): each iteration records those
// shapes instead of computing the values again. A `for` loop, a `while` loop (its trip
// count recorded), a typed `let`, a loop nested in another, a value read both for its
// shape and by a statement computed again, and operands their adjoints read for the shape.
#[differentiate]
fn shapes_in_loops(x: &Array2<f64>, w: &Array1<f64>, unit: &Array2<f64>) -> f64 {
    let mut m = Array2::<f64>::zeros((x.nrows(), unit.ncols()));
    for k in 0..unit.ncols() {
        let t = x.dot(w) * w[k];
        m = m + t
            .insert_axis(Axis(1))
            .dot(&unit.row(k).insert_axis(Axis(0)));
    }
    let mut s = (&m * &m).sum();
    let mut v = Array1::<f64>::zeros(x.nrows());
    let mut j = 0;
    while j < 2 {
        let c: Array1<f64> = x.dot(w) * w[j];
        v = v + c;
        j += 1;
    }
    s += (&v * &v).sum();
    // Operands whose adjoints read only their shapes (reductions, reshapes, transposes, the
    // left factor of a product for its own adjoint).
    for i in 0..2 {
        let e = x.mapv(f64::exp) * w[i];
        let r = e.sum_axis(Axis(0));
        let c = e.mean_axis(Axis(1)).unwrap();
        let g = e.t().dot(x);
        let v = x.dot(w) * w[i];
        let sq = v.into_shape_with_order((2, 2)).unwrap();
        let col = sq.insert_axis(Axis(2));
        s += (&r * &r).sum() + (&c * &c).sum() + e.mean().unwrap() + g.sum() + col.sum() * w[0];
    }
    // Values read only for their shapes by the adjoints of what reads them.
    for i in 0..2 {
        let e = x * w[i];
        let r = e.sum_axis(Axis(0));
        let c = e.mean_axis(Axis(1)).unwrap();
        let f = e.to_shape((3, 4)).unwrap();
        s += r.sum() + c.sum() + e.mean().unwrap() + e.t().sum() + f.sum() * 0.5;
    }
    for a in 0..2 {
        let mut u = Array1::<f64>::zeros(x.nrows());
        for b in 0..2 {
            let p = x.dot(w) * (a + b) as f64;
            u = u + p.mapv(f64::tanh);
            let q = x.dot(w) + 1.0;
            u += &q;
            s += q.sum();
        }
        s += (&u * &u).sum();
    }
    s
}

#[test]
fn values_read_for_their_shapes_in_loops_match_finite_differences() {
    let x = values((4, 3), 71, -1.0, 1.0);
    let w = values(3, 72, -1.0, 1.0);
    let unit = Array2::<f64>::eye(3);
    let (gx, gw, gu) = shapes_in_loops_grad(&x, &w, &unit);
    assert_matches_fd("x", &gx, &x, |x| shapes_in_loops(x, &w, &unit));
    assert_matches_fd("w", &gw, &w, |w| shapes_in_loops(&x, w, &unit));
    assert_matches_fd("unit", &gu, &unit, |u| shapes_in_loops(&x, &w, u));
}

// Top-level updates `y = v op b` whose left operand nothing reads afterwards (but the reverse
// sweep, for its shape) are computed in that operand's storage: the right operand broadcast
// into it (a row, a scalar), the same shape, and the left operand the smaller (a new array
// then); values must stay the primal's to the bit.
#[differentiate]
fn updated_in_place(x: &Array2<f64>, w: &Array2<f64>, r: &Array1<f64>, s: f64) -> f64 {
    let a = x.dot(w);
    let b = a + r;
    let c = b.mapv(f64::sin);
    let d = c - x;
    let e = r * s;
    let k = e + &d;
    let p = x.dot(w);
    let q = p + s;
    let t = k.mapv(f64::tanh) * &q;
    (&t * &t).sum() + t.sum()
}

#[test]
fn updates_in_place_match_finite_differences_and_the_primal() {
    let x = values((3, 3), 81, -1.0, 1.0);
    let w = values((3, 3), 82, -1.0, 1.0);
    let r = values(3, 83, -1.0, 1.0);
    let s = 0.7;
    let (value, (gx, gw, gr, gs)) = updated_in_place_value_and_grad(&x, &w, &r, s);
    assert_eq!(value, updated_in_place(&x, &w, &r, s));
    assert_matches_fd("x", &gx, &x, |x| updated_in_place(x, &w, &r, s));
    assert_matches_fd("w", &gw, &w, |w| updated_in_place(&x, w, &r, s));
    assert_matches_fd("r", &gr, &r, |r| updated_in_place(&x, &w, r, s));
    let h = 1e-6;
    let fd =
        (updated_in_place(&x, &w, &r, s + h) - updated_in_place(&x, &w, &r, s - h)) / (2.0 * h);
    assert!((gs - fd).abs() < 1e-7, "s: {gs} vs {fd}");
}

// A sum whose operand defined just before it by a tensor primitive lends it the sum's adjoint
// (`__rt::lend`): a view when the operand has the sum's shape, a reduction when it was
// broadcast; the other operand takes the adjoint afterwards, with its sign.
#[differentiate]
fn lent_adjoints(x: &Array2<f64>, w: &Array2<f64>, v: &Array1<f64>) -> f64 {
    let a = x.mapv(f64::sin);
    let b = x.dot(w);
    let y = a + b;
    let c = x.mapv(f64::cos);
    let e = x.dot(v);
    let z = e - c;
    // A product, not an element-wise operation, so that the sums are not fused.
    let p = y.dot(&z);
    p.sum_axis(Axis(0)).mapv(f64::tanh).sum()
}

#[test]
fn lent_adjoints_match_finite_differences() {
    let x = values((3, 3), 91, -1.0, 1.0);
    let w = values((3, 3), 92, -1.0, 1.0);
    let v = values(3, 93, -1.0, 1.0);
    let (value, (gx, gw, gv)) = lent_adjoints_value_and_grad(&x, &w, &v);
    assert_eq!(value, lent_adjoints(&x, &w, &v));
    assert_matches_fd("x", &gx, &x, |x| lent_adjoints(x, &w, &v));
    assert_matches_fd("w", &gw, &w, |w| lent_adjoints(&x, w, &v));
    assert_matches_fd("v", &gv, &v, |v| lent_adjoints(&x, &w, v));
}

/// Stores into views of an array buffer: a trajectory kept row by row in a time-stepping loop,
/// a column assigned from a broadcast value, a block by `slice_mut`, a row written twice (only
/// the second value counts), a whole read of the buffer between stores, and a constant
/// stored over a differentiated row (its adjoint stops there).
#[differentiate]
fn view_stores(x: &Array1<f64>, w: &Array2<f64>, c: &Array1<f64>, steps: usize) -> f64 {
    let n = x.len();
    let mut states = Array2::<f64>::zeros((steps, n));
    let mut s = x.to_owned();
    for t in 0..steps {
        s = w.dot(&s).mapv(f64::tanh) + &s * 0.5;
        states.row_mut(t).assign(&s);
    }
    let early = (&states * &states).sum();
    let mut cols = Array2::<f64>::zeros((n, 3));
    cols.column_mut(0).assign(&x.mapv(f64::sin));
    cols.column_mut(1)
        .assign(&(c * x[0]).slice(autodiff::ndarray::s![0..1]));
    cols.column_mut(2).assign(c);
    cols.column_mut(2).assign(&(x * x));
    let mut block = Array2::<f64>::zeros((steps + 1, n));
    block
        .slice_mut(autodiff::ndarray::s![1.., ..])
        .assign(&states.mapv(f64::cos));
    block.row_mut(steps).assign(&Array1::<f64>::ones(n));
    // A value whose type only its own definition fixes (a float literal's operation).
    let mut sums = Array2::<f64>::zeros((steps, 2));
    let r = states.sum_axis(Axis(1)) * -0.5 + x[0];
    sums.column_mut(0).assign(&r);
    sums.column_mut(1).assign(&r.mapv(f64::sin));
    early * 0.1
        + cols.dot(c).mapv(f64::exp).sum()
        + (&block * &block).sum().sqrt()
        + (&sums * &sums).sum()
}

#[test]
fn stores_into_rows_columns_and_slices_match_finite_differences() {
    let x = values(3, 51, -1.0, 1.0);
    let w = values((3, 3), 52, -0.8, 0.8);
    let c = values(3, 53, -1.0, 1.0);
    let (value, (gx, gw, gc)) = view_stores_value_and_grad(&x, &w, &c, 4);
    assert_eq!(value, view_stores(&x, &w, &c, 4));
    assert_matches_fd("x", &gx, &x, |x| view_stores(x, &w, &c, 4));
    assert_matches_fd("w", &gw, &w, |w| view_stores(&x, w, &c, 4));
    assert_matches_fd("c", &gc, &c, |c| view_stores(&x, &w, c, 4));
}

/// An array operand read twice by one operation (`&a * &a`, `&a + &a`, `&a / &a`, a reciprocal
/// of a square): its contributions are one pass, the sum of both rules.
#[differentiate]
#[allow(clippy::eq_op)]
fn operand_twice(a: &Array2<f64>, b: &Array1<f64>) -> f64 {
    let sq = a * a;
    let twice = a + a;
    let one = a / a;
    let inv = 1.0 / &(b * b);
    let u = (&sq * &twice).sum_axis(Axis(1)) * -0.5;
    inv.dot(&u) + one.t().dot(b).sum() + (&one * &sq).sum() + (b - b).sum()
}

#[test]
fn operands_read_twice_match_finite_differences() {
    let a = values((3, 2), 61, 0.5, 1.5);
    let b = values(3, 62, 0.5, 1.5);
    let (value, (ga, gb)) = operand_twice_value_and_grad(&a, &b);
    assert_eq!(value, operand_twice(&a, &b));
    assert_matches_fd("a", &ga, &a, |a| operand_twice(a, &b));
    assert_matches_fd("b", &gb, &b, |b| operand_twice(&a, b));
}

/// Stores into views mixed with everything else a buffer meets: a copy of a parameter as the
/// buffer, element reads and writes between view stores, a store inside an `if` arm, nested
/// loops, a `while` loop, and the buffer read whole in the loop that writes it; also
/// checkpointed (each point-loop iteration keeps the buffer and runs again).
macro_rules! view_stores_mixed {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        fn $name(x: &Array2<f64>, w: &Array1<f64>, k: usize) -> f64 {
            let (n, d) = (x.nrows(), x.ncols());
            let mut b = x.to_owned();
            let mut acc = 0.0;
            for i in 0..n {
                let r = (&b.row(i) * w).mapv(f64::tanh);
                if r.sum() > 0.0 {
                    b.row_mut(i).assign(&(&r * 2.0));
                } else {
                    b.row_mut((i + 1) % n).assign(&r.mapv(f64::sin));
                }
                b[[i, 0]] = b[[i, 0]] * b[[i, d - 1]] + 0.1;
                acc += b.sum() * 0.01;
                for j in 0..d {
                    let c = b.column(j).mapv(|v| v * v).sum();
                    let new = &b.column(j) * 0.9 + c * 0.01;
                    b.column_mut(j).assign(&new);
                }
            }
            let mut t = 0;
            while t < k {
                let top = b.row(0).to_owned();
                let last = &top * 0.5 + &b.row(n - 1);
                b.row_mut(n - 1).assign(&last);
                t += 1;
            }
            (&b * &b).sum() + acc
        }
    };
}
view_stores_mixed!(
    #[differentiate]
    view_stores_mixed
);
view_stores_mixed!(
    #[differentiate(checkpoint)]
    view_stores_mixed_checkpointed
);

#[test]
fn view_stores_mixed_with_element_access_and_control_flow_match_finite_differences() {
    let x = values((3, 4), 71, -1.0, 1.0);
    let w = values(4, 72, -1.0, 1.0);
    for k in [0, 2] {
        let (value, (gx, gw)) = view_stores_mixed_value_and_grad(&x, &w, k);
        assert_eq!(value, view_stores_mixed(&x, &w, k));
        assert_matches_fd("x", &gx, &x, |x| view_stores_mixed(x, &w, k));
        assert_matches_fd("w", &gw, &w, |w| view_stores_mixed(&x, w, k));
        let (vc, (cx, cw)) = view_stores_mixed_checkpointed_value_and_grad(&x, &w, k);
        assert_eq!(vc, value);
        assert_matches_fd("x", &cx, &x, |x| view_stores_mixed(x, &w, k));
        assert_matches_fd("w", &cw, &w, |w| view_stores_mixed(&x, w, k));
    }
}

/// A trajectory that reads its previous state back (`states.row(t - 1)`) before storing the
/// next one: the read copies that row alone (recorded for the reverse), not the whole
/// trajectory; also a column and a slice read back before stores into the same array.
#[differentiate]
fn reads_back(x: &Array1<f64>, w: &Array2<f64>, steps: usize) -> f64 {
    let n = x.len();
    let mut states = Array2::<f64>::zeros((steps + 1, n));
    states.row_mut(0).assign(x);
    for t in 1..steps + 1 {
        let next = w.dot(&states.row(t - 1)).mapv(f64::tanh) + &states.row(0) * 0.1;
        states.row_mut(t).assign(&next);
    }
    let first = states.column(0).mapv(f64::sin);
    let block = states.slice(autodiff::ndarray::s![1..3, ..]).to_owned();
    states.column_mut(1).assign(&first);
    states.row_mut(0).assign(&block.row(1));
    (&states * &states).sum() + (&block * &block).sum() + first.sum()
}

/// Sweeps: a loop `for t in a..b` that stores only `row_mut(t)` (`column_mut(t)`) reads rows
/// `t - 1` and `t - 2` (and columns) where they are, in `if` arms and a nested loop too, since no
/// later store writes them; its matrix-vector products (`w.dot(&prev)`, `prev.dot(w)`, a dot of
/// two vectors) and `tanh` are recorded instead of computed again. `other`'s store into row
/// `t - 1` makes its reads copies again. Checkpointed, the steps keep `other` (whose rows they
/// read and overwrite) at every step but not `states` or `cols`.
macro_rules! sweeps {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        fn $name(x: &Array1<f64>, w: &Array2<f64>, steps: usize) -> f64 {
            let n = x.len();
            let mut states = Array2::<f64>::zeros((steps + 2, n));
            states.row_mut(0).assign(x);
            states.row_mut(1).assign(&x.mapv(f64::sin));
            let mut cols = Array2::<f64>::zeros((n, steps + 2));
            cols.column_mut(1).assign(x);
            let mut other = Array2::<f64>::zeros((steps + 2, n));
            other.row_mut(1).assign(x);
            let mut acc = 0.0;
            for t in 2..steps + 2 {
                let prev = states.row(t - 1);
                let h = w.dot(&prev).mapv(f64::tanh);
                let back = prev.dot(w);
                acc += prev.dot(&h);
                if t % 2 == 0 {
                    acc += states.row(t - 2).mapv(f64::cos).sum() * 0.1;
                }
                for k in 0..2 {
                    acc += states.row(t - 1).dot(&w.row(k)) * 0.05;
                }
                let next = &h + &states.row(t - 2) * 0.5 - &back * 0.1;
                states.row_mut(t).assign(&next);
                let c = cols.column(t - 1).mapv(f64::exp) * 0.1 + &next;
                cols.column_mut(t).assign(&c);
                let o = w.dot(&other.row(t - 1)).mapv(f64::sin);
                other.row_mut(t).assign(&o);
                other.row_mut(t - 1).assign(&(&o * 0.5));
            }
            (&states * &states).sum() + cols.sum() + (&other * &other).sum() + acc
        }
    };
}
sweeps!(
    #[differentiate]
    sweeps
);
sweeps!(
    #[differentiate(checkpoint)]
    sweeps_checkpointed
);

/// A recurrence carried in an array (`h = tanh(W h + b)`): the product and the `tanh` are
/// recorded, the `tanh` (the carried value itself) copied onto its tape where it is computed,
/// the product moved at the iteration's end.
#[differentiate]
fn recurrence(x: &Array1<f64>, w: &Array2<f64>, b: &Array1<f64>, steps: usize) -> f64 {
    let mut h = x.to_owned();
    let mut total = 0.0;
    for _ in 0..steps {
        let z = w.dot(&h) + b;
        h = z.mapv(f64::tanh);
        total += h.dot(&z) * 0.1;
    }
    total + (&h * &h).sum()
}

#[test]
fn recurrences_carried_in_arrays_match_finite_differences() {
    let (x, b) = (values(4, 95, -1.0, 1.0), values(4, 96, -0.5, 0.5));
    let w = values((4, 4), 97, -0.8, 0.8);
    let (value, (gx, gw, gb)) = recurrence_value_and_grad(&x, &w, &b, 5);
    assert_eq!(value, recurrence(&x, &w, &b, 5));
    assert_matches_fd("x", &gx, &x, |x| recurrence(x, &w, &b, 5));
    assert_matches_fd("w", &gw, &w, |w| recurrence(&x, w, &b, 5));
    assert_matches_fd("b", &gb, &b, |b| recurrence(&x, &w, b, 5));
}

#[test]
fn sweeps_read_in_place_match_finite_differences() {
    let x = values(3, 91, -1.0, 1.0);
    let w = values((3, 3), 92, -0.9, 0.9);
    for steps in [1, 4] {
        let (value, (gx, gw)) = sweeps_value_and_grad(&x, &w, steps);
        assert_eq!(value, sweeps(&x, &w, steps));
        assert_matches_fd("x", &gx, &x, |x| sweeps(x, &w, steps));
        assert_matches_fd("w", &gw, &w, |w| sweeps(&x, w, steps));
        let (value, (cx, cw)) = sweeps_checkpointed_value_and_grad(&x, &w, steps);
        assert_eq!(value, sweeps(&x, &w, steps));
        assert_eq!((cx, cw), (gx, gw));
    }
}

#[test]
fn rows_read_back_before_stores_match_finite_differences() {
    let x = values(3, 81, -1.0, 1.0);
    let w = values((3, 3), 82, -0.9, 0.9);
    let (value, (gx, gw)) = reads_back_value_and_grad(&x, &w, 4);
    assert_eq!(value, reads_back(&x, &w, 4));
    assert_matches_fd("x", &gx, &x, |x| reads_back(x, &w, 4));
    assert_matches_fd("w", &gw, &w, |w| reads_back(&x, w, 4));
}

/// An `if` arm that yields an array computed before the `if` (`let z = if c { t } else { .. }`):
/// the reverse sweep reads `t` after it (its shape, its value), so the arm yields a copy. Once
/// at the top level, in a loop run fused with its reverse, and in a recorded loop where `t` (a
/// matrix-vector product) is recorded.
#[differentiate]
fn yielded_from_before(x: &Array1<f64>, w: &Array2<f64>, steps: usize) -> f64 {
    let t = w.dot(x);
    let e = x.mapv(f64::exp);
    let z = if steps.is_multiple_of(2) { t } else { &e * 2.0 };
    let mut total = (&z * &e).sum();
    for k in 0..steps {
        let t = w.dot(x);
        let z = if k.is_multiple_of(2) { t } else { &e * 2.0 };
        total += (&z * &e).sum();
    }
    let mut decayed = 0.0;
    for k in 0..steps {
        let t = w.dot(&e);
        let z = if k.is_multiple_of(3) {
            t
        } else {
            x.mapv(f64::sin)
        };
        decayed = decayed * 0.5 + (&z * &e).sum();
    }
    total + decayed
}

#[test]
fn arrays_yielded_from_before_an_if_match_finite_differences() {
    let x = values(3, 98, -1.0, 1.0);
    let w = values((3, 3), 99, -0.9, 0.9);
    for steps in [3, 4] {
        let (value, (gx, gw)) = yielded_from_before_value_and_grad(&x, &w, steps);
        assert_eq!(value, yielded_from_before(&x, &w, steps));
        assert_matches_fd("x", &gx, &x, |x| yielded_from_before(x, &w, steps));
        assert_matches_fd("w", &gw, &w, |w| yielded_from_before(&x, w, steps));
    }
}

// A view of a view taken inside an `if` arm (`m.column(0).insert_axis(..)`), which the arm's
// reverse reads: it cannot leave the arm in the branch record beside the view it borrows, so
// the arm's reverse takes it again. It failed to compile before (found by the generator's
// `let .. else` programs, whose early `return` puts the rest of the function in an arm), at
// the top level and in a loop.
#[differentiate]
fn view_of_a_view_in_an_arm(x: &Array1<f64>, m: &Array2<f64>, b: f64) -> f64 {
    if x[0] > 0.5 {
        return b * x[1];
    }
    let mut s = (&m.column(0).insert_axis(Axis(1)) * m)
        .mapv(|t| (t * t + 1.0).ln())
        .sum()
        * b;
    for k in 0..2 {
        if x[k] < 0.9 {
            s += (&m.row(k).insert_axis(Axis(0)) * m).sum() * x[k];
        }
    }
    s
}

#[test]
fn views_of_views_in_if_arms_match_finite_differences() {
    let m = values((3, 3), 41, -0.9, 0.9);
    for x0 in [0.2, 0.8] {
        let x = Array1::from(vec![x0, 0.4, -0.3]);
        let (value, (gx, gm, gb)) = view_of_a_view_in_an_arm_value_and_grad(&x, &m, 0.6);
        assert_eq!(value, view_of_a_view_in_an_arm(&x, &m, 0.6));
        assert_matches_fd("x", &gx, &x, |x| view_of_a_view_in_an_arm(x, &m, 0.6));
        assert_matches_fd("m", &gm, &m, |m| view_of_a_view_in_an_arm(&x, m, 0.6));
        let h = 1e-6;
        let fd = (view_of_a_view_in_an_arm(&x, &m, 0.6 + h)
            - view_of_a_view_in_an_arm(&x, &m, 0.6 - h))
            / (2.0 * h);
        assert!((gb - fd).abs() < 1e-6 * fd.abs().max(1.0), "{gb} vs {fd}");
    }
}

// A passive array carried by a loop and read by its reverse: stepped again by the
// forward-order reverse (replayed) instead of taped per iteration.
#[differentiate(wrt(a))]
fn passive_array_step(a: &Array1<f64>, n: usize) -> f64 {
    let mut s = 0.0;
    let mut m = Array1::<f64>::ones(a.len());
    for _ in 0..n {
        s += (&m * a).sum();
        m = &m * 0.5 + 1.0;
    }
    s * s
}

#[test]
fn a_replayed_passive_array_matches_finite_differences() {
    let a = Array1::from_shape_fn(4, |k| 0.3 * k as f64 - 0.5);
    let (v, g) = passive_array_step_value_and_grad(&a, 5);
    assert_eq!(v, passive_array_step(&a, 5));
    let fd = autodiff::check::central_difference(
        |x: &[f64]| passive_array_step(&Array1::from_vec(x.to_vec()), 5),
        a.as_slice().unwrap(),
        1e-6,
    );
    for (g, f) in g.iter().zip(&fd) {
        assert!((g - f).abs() <= 1e-7 * f.abs().max(1.0), "{g} vs {f}");
    }
}
// A small matrix product in the forward sweep runs as plain loops that accumulate as
// matrixmultiply's kernel does on this machine: the value is ndarray's to the bit.
#[test]
fn small_products_are_ndarray_s_to_the_bit() {
    for (m, k, n) in [(2, 4, 1), (3, 5, 2), (1, 7, 9), (8, 8, 8)] {
        for seed in 0..50 {
            let x: Array2<f64> = values((m, k), seed, -1.0, 1.0);
            let w: Array2<f64> = values((k, n), seed + 1000, -1.0, 1.0);
            assert_eq!(autodiff::__rt::dot(&x, &w), x.dot(&w), "{m}x{k}x{n}");
            let (v, _) = product_of_matrices_value_and_grad(&x, &w);
            assert_eq!(v, product_of_matrices(&x, &w));
        }
    }
}

// `m.diag()`: the main diagonal, a view; its adjoint is placed on a zero matrix's diagonal.
// The trace of a product (`d tr(AB) / dA = B^T`) and of a sample covariance.
#[differentiate]
fn trace_of_product(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.dot(b).diag().sum()
}

#[differentiate]
fn covariance_trace(x: &Array2<f64>) -> f64 {
    let m = x.mean_axis(Axis(0)).unwrap();
    let c = x - &m;
    let cov = c.t().dot(&c) / (x.nrows() as f64 - 1.0);
    let d = cov.diag();
    (&d * &d).sum() + cov[[0, 1]]
}

#[test]
fn diagonals_match_the_analytic_gradient_and_finite_differences() {
    let a = values((3, 4), 41, -1.0, 1.0);
    let b = values((4, 3), 42, -1.0, 1.0);
    let (ga, gb) = trace_of_product_grad(&a, &b);
    let close = |g: &Array2<f64>, want: ArrayView2<f64>| {
        g.shape() == want.shape()
            && g.iter()
                .zip(want.iter())
                .all(|(p, q)| (p - q).abs() < 1e-12)
    };
    assert!(close(&ga, b.t()), "{ga} vs {}", b.t());
    assert!(close(&gb, a.t()), "{gb} vs {}", a.t());
    let x = values((6, 3), 43, -1.0, 1.0);
    let g = covariance_trace_grad(&x);
    assert_matches_fd("x", &g, &x, covariance_trace);
}
