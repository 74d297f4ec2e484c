//! Loops over zipped slices (`xs.iter().zip(ys)`, nested zips, `.enumerate()`, `&v` patterns),
//! against central finite differences and analytic gradients.
#![allow(clippy::needless_range_loop, clippy::useless_vec)]
use autodiff::differentiate;
use autodiff::ndarray::{array, Array1, Array2};

mod common;
use common::{assert_close, fd};

/// A weighted squared error over zipped predictions, targets and weights.
#[differentiate(wrt(pred))]
pub fn weighted_error(pred: &[f64], target: &[f64], weight: &[f64]) -> f64 {
    let mut s = 0.0;
    for ((p, t), w) in pred.iter().zip(target.iter()).zip(weight) {
        let r = p - t;
        s += w * r * r;
    }
    s
}

#[test]
fn zipped_slices_match_the_analytic_gradient() {
    let pred = [0.5, -1.2, 2.0, 0.3];
    let target = [0.1, -1.0, 1.5, 0.9];
    let weight = [1.0, 0.5, 2.0, 0.25];
    let g = weighted_error_grad(&pred, &target, &weight);
    // Analytic: 2 w (p - t).
    for i in 0..4 {
        let want = 2.0 * weight[i] * (pred[i] - target[i]);
        assert!((g[i] - want).abs() < 1e-14, "{i}: {} vs {want}", g[i]);
    }
    // The pullback differentiates the targets and weights too.
    let (dp, dt, dw) = weighted_error_pullback(&pred, &target, &weight, 1.0);
    assert_eq!(dp, g);
    assert_close(
        &dt,
        &fd(&|t| weighted_error(&pred, t, &weight), &target),
        1e-7,
    );
    assert_close(
        &dw,
        &fd(&|w| weighted_error(&pred, &target, w), &weight),
        1e-7,
    );
}

/// `.enumerate()` over a zip, a `&v` pattern, and slices of different lengths (the zip stops
/// at the shorter).
#[differentiate]
pub fn zipped_mixed(x: &[f64], y: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for (i, (u, v)) in x.iter().zip(y).enumerate() {
        s += (i as f64 + 1.0) * (u * a).sin() * v;
    }
    for &u in x.iter() {
        s += u * u * a;
    }
    for (u, v) in y.iter().zip(&x[1..]) {
        s += u.tanh() * v;
    }
    s
}

#[test]
fn enumerated_zips_and_element_patterns_match_finite_differences() {
    let x = [0.4, -0.7, 1.1, 0.2, -0.3];
    let y = [1.3, 0.6, -0.9];
    let a = 0.8;
    let (dx, dy, da) = zipped_mixed_grad(&x, &y, a);
    assert_close(&dx, &fd(&|v| zipped_mixed(v, &y, a), &x), 1e-7);
    assert_close(&dy, &fd(&|v| zipped_mixed(&x, v, a), &y), 1e-7);
    assert_close(&[da], &fd(&|v| zipped_mixed(&x, &y, v[0]), &[a]), 1e-7);
}

/// Iterator reductions: `map(..).sum()` over a zip, `.sum::<f64>()` of a walk itself,
/// `.product()`, `.copied()`, and `fold` (a running maximum-free soft maximum).
#[differentiate]
pub fn reductions(x: &[f64], y: &[f64], a: f64) -> f64 {
    let sq: f64 = x.iter().zip(y).map(|(u, v)| (u - v) * (u - v)).sum();
    let total = x.iter().sum::<f64>();
    let prod = y.iter().map(|v| 1.0 + 0.1 * v).product::<f64>();
    let scaled: f64 = x.iter().copied().map(|u: f64| (u * a).tanh()).sum();
    let soft = x
        .iter()
        .enumerate()
        .fold(0.0, |acc, (i, u)| acc + (u * a + i as f64).exp());
    sq * a + total * total + prod + scaled + soft.ln()
}

#[test]
fn iterator_reductions_match_finite_differences() {
    let x = [0.4, -0.7, 1.1, 0.2];
    let y = [1.3, 0.6, -0.9, 0.5];
    let a = 0.8;
    let (dx, dy, da) = reductions_grad(&x, &y, a);
    assert_close(&dx, &fd(&|v| reductions(v, &y, a), &x), 1e-7);
    assert_close(&dy, &fd(&|v| reductions(&x, v, a), &y), 1e-7);
    assert_close(&[da], &fd(&|v| reductions(&x, &y, v[0]), &[a]), 1e-7);
    // Independent: the squared distance's gradient is 2 a (x - y) plus the other terms'; at
    // a = 0 only `total^2` and `soft` (whose terms are then e^i, constant in x) depend on x:
    // d/dx_k = 2 sum(x).
    let (dx0, _, _) = reductions_grad(&x, &y, 0.0);
    let s: f64 = x.iter().sum();
    for g in dx0 {
        assert!((g - 2.0 * s).abs() < 1e-14, "{g}");
    }
}

/// A walk over a one-dimensional ndarray array.
#[differentiate]
pub fn array_walk(w: &Array1<f64>, a: f64) -> f64 {
    w.iter().map(|v| (v * a).sin()).sum::<f64>() + w.iter().fold(1.0, |p, v| p * (1.0 + v * v))
}

#[test]
fn one_dimensional_arrays_are_walked_too() {
    let w = array![0.3, -1.1, 0.7];
    let (dw, da) = array_walk_grad(&w, 0.9);
    let x = w.to_vec();
    let want = fd(
        &|v| array_walk(&autodiff::ndarray::Array1::from(v.to_vec()), 0.9),
        &x,
    );
    assert_close(dw.as_slice().unwrap(), &want, 1e-7);
    assert_close(&[da], &fd(&|v| array_walk(&w, v[0]), &[0.9]), 1e-7);
}

/// Windows, exact chunks (enumerated), chunks with a shorter last one, and walks backwards:
/// index loops over parts of the slice.
#[differentiate]
pub fn windows_and_chunks(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for w in x.windows(2) {
        s += (w[1] - w[0]) * (w[1] - w[0]) * a;
    }
    for (k, c) in x.chunks_exact(2).enumerate() {
        s += c[0] * c[1] * (k as f64 + 1.0);
    }
    for c in x.chunks(2) {
        s += c[0].sin() * c.len() as f64;
    }
    for &v in x.iter().rev() {
        s = s * 0.9 + v;
    }
    for (i, v) in x.iter().enumerate().rev() {
        s += v * i as f64 * a;
    }
    s
}

#[test]
fn windows_chunks_and_backward_walks_match_finite_differences() {
    for x in [
        vec![0.4, -0.7, 1.1, 0.2, -0.3],
        vec![0.9, 0.1, -0.5, 0.6],
        vec![0.3],
    ] {
        let (value, (dx, da)) = windows_and_chunks_value_and_grad(&x, 0.8);
        assert_eq!(value, windows_and_chunks(&x, 0.8));
        assert_close(&dx, &fd(&|v| windows_and_chunks(v, 0.8), &x), 1e-7);
        assert_close(&[da], &fd(&|v| windows_and_chunks(&x, v[0]), &[0.8]), 1e-7);
    }
}

/// Rows and columns of a matrix walked by `for`: each a view, read like `m.row(i)`.
#[differentiate]
fn by_rows(m: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let mut e = 0.0;
    for row in m.rows() {
        e += (row.dot(w)).tanh();
    }
    for (j, col) in m.columns().into_iter().enumerate() {
        e += col.mapv(|v| v * v).sum() * (j + 1) as f64;
    }
    for r in m.outer_iter() {
        e += r.sum().sin();
    }
    e
}

#[test]
fn rows_and_columns_walked_match_finite_differences() {
    let m = array![[0.3, -0.2, 0.5], [0.9, 0.1, -0.4]];
    let w = array![0.7, -0.3, 0.2];
    let (gm, gw) = by_rows_grad(&m, &w);
    let flat: Vec<f64> = m.iter().copied().collect();
    let fm = fd(
        &|v| by_rows(&Array2::from_shape_vec((2, 3), v.to_vec()).unwrap(), &w),
        &flat,
    );
    assert_close(&gm.iter().copied().collect::<Vec<_>>(), &fm, 1e-6);
    let fw = fd(
        &|v| by_rows(&m, &Array1::from(v.to_vec())),
        w.as_slice().unwrap(),
    );
    assert_close(gw.as_slice().unwrap(), &fw, 1e-6);
    // The columns' term alone, analytically: d/dm[i][j] of (j + 1) m[i][j]^2.
    let (gm2, _) = by_rows_grad(&m, &Array1::zeros(3));
    let r: Vec<f64> = m.rows().into_iter().map(|r| r.sum().cos()).collect();
    for i in 0..2 {
        for j in 0..3 {
            let want = 2.0 * (j + 1) as f64 * m[[i, j]] + r[i];
            assert!((gm2[[i, j]] - want).abs() < 1e-12);
        }
    }
}

/// Walks of constant slices whose pattern takes the items apart (`&v`, pairs of a zip).
#[differentiate(wrt(a))]
fn constant_walks(a: f64, data: &[f64], weights: &[f64]) -> f64 {
    let mut s = 0.0;
    for &d in data.iter() {
        s += (a * d).sin();
    }
    for (&d, w) in data.iter().zip(weights) {
        s += w * d * a * a;
    }
    s
}

#[test]
fn walks_of_constants_taken_apart_match_the_analytic_gradient() {
    let (data, weights) = ([0.5, -1.0, 2.0], [1.0, 0.5, 0.25]);
    let a: f64 = 0.7;
    let want: f64 = data.iter().map(|d| d * (a * d).cos()).sum::<f64>()
        + data
            .iter()
            .zip(&weights)
            .map(|(d, w)| 2.0 * w * d * a)
            .sum::<f64>();
    assert_close(&[constant_walks_grad(a, &data, &weights)], &[want], 1e-12);
    let f = fd(&|v| constant_walks(v[0], &data, &weights), &[a]);
    assert_close(&[want], &f, 1e-6);
}

/// `skip` and `take` walks, as clippy suggests them for index loops: pairs `j > i`, a walk
/// enumerated after `skip` (counting from 0), one enumerated before `take`, and reductions.
#[differentiate]
fn skipped_and_taken(x: &[f64], k: usize) -> f64 {
    let mut s = 0.0;
    for (i, a) in x.iter().enumerate() {
        for b in x.iter().skip(i + 1) {
            s += a * b * b;
        }
        for (j, &c) in x.iter().skip(1).enumerate() {
            s += c * (j as f64) * a;
        }
        for (j, c) in x.iter().enumerate().take(k) {
            s += c * a * (j + 1) as f64;
        }
    }
    s + x.iter().skip(2).map(|v| v * v).sum::<f64>()
        + x.iter()
            .take(3)
            .copied()
            .fold(0.0, |acc, v| acc * 0.5 + v.sin())
}

/// Chains of `take` and `skip`, as clippy writes `for j in a..b` loops reading `x[j]`.
#[differentiate]
fn windowed(x: &[f64], a: usize, b: usize) -> f64 {
    let mut s = 0.0;
    for v in x.iter().take(b).skip(a) {
        s += v * v * v;
    }
    for (j, v) in x.iter().skip(a).take(2).enumerate() {
        s += (j + 1) as f64 * v.sin();
    }
    for (j, &v) in x.iter().enumerate().skip(1).take(b) {
        s += j as f64 * v * v;
    }
    s
}

#[test]
fn skip_and_take_walks_match_finite_differences() {
    // Past the end too: `skip(i + 1)` of the last element, `take(k)` of more than there are.
    for (x, k) in [
        (vec![0.5, -1.0, 2.0, 0.3], 2),
        (vec![0.7, -0.2], 5),
        (vec![1.5], 0),
    ] {
        let g = skipped_and_taken_grad(&x, k);
        assert_close(&g, &fd(&|v| skipped_and_taken(v, k), &x), 1e-7);
    }
    // Against the derivative by hand at one point: d/dx_m of sum_{i<j} x_i x_j^2 is
    // sum_{j>m} x_j^2 + 2 x_m sum_{i<m} x_i, and so on for each term.
    let x = [0.5, -1.0, 2.0];
    let n = x.len();
    let mut want = vec![0.0; n];
    for m in 0..n {
        for xj in x.iter().take(n).skip(m + 1) {
            want[m] += xj * xj;
        }
        for i in 0..m {
            want[m] += 2.0 * x[i] * x[m];
        }
        // sum_i sum_{j>=1} x_j (j-1) x_i
        let sa: f64 = x.iter().sum();
        let weighted: f64 = (1..n).map(|j| x[j] * (j - 1) as f64).sum();
        want[m] += weighted + if m >= 1 { (m - 1) as f64 * sa } else { 0.0 };
        // sum_i sum_{j<2} x_j (j+1) x_i
        let first: f64 = (0..2).map(|j| x[j] * (j + 1) as f64).sum();
        want[m] += first + if m < 2 { (m + 1) as f64 * sa } else { 0.0 };
        if m >= 2 {
            want[m] += 2.0 * x[m];
        }
    }
    // fold over the first 3: ((0 * 0.5 + sin x0) * 0.5 + sin x1) * 0.5 + sin x2.
    for (m, w) in [(0, 0.25), (1, 0.5), (2, 1.0)] {
        want[m] += w * x[m].cos();
    }
    assert_close(&skipped_and_taken_grad(&x, 2), &want, 1e-12);

    let x = [0.4, -0.9, 1.3, 0.2, -0.6];
    for (a, b) in [(1, 4), (0, 2), (3, 9), (6, 2)] {
        let g = windowed_grad(&x, a, b);
        assert_close(&g, &fd(&|v| windowed(v, a, b), &x), 1e-7);
        // By hand: 3 x^2 on a..b, (j+1) cos on the two from a, 2 j x on 1..=b.
        let mut want = [0.0; 5];
        for i in 0..5 {
            if i >= a && i < b {
                want[i] += 3.0 * x[i] * x[i];
            }
            if i >= a && i < a + 2 {
                want[i] += (i - a + 1) as f64 * x[i].cos();
            }
            if i >= 1 && i <= b {
                want[i] += 2.0 * i as f64 * x[i];
            }
        }
        assert_close(&g, &want, 1e-12);
    }
}

/// Reductions over ranges, windows and chunks, and walks collected into a `Vec`.
#[differentiate]
fn reduced(x: &[f64]) -> f64 {
    let weighted = (0..x.len()).map(|i| x[i] * i as f64).sum::<f64>();
    let tail = (1..=2).rev().fold(0.0, |a, i| a * 0.5 + x[i] * x[i]);
    let steps = x.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>();
    let firsts = x.chunks(2).map(|c| c[0]).product::<f64>();
    let doubled: Vec<f64> = x.iter().map(|v| v * 2.0).collect();
    let mixed = (0..3).map(|i| doubled[i] * x[i]).collect::<Vec<f64>>();
    weighted + tail + steps + firsts + doubled[0] * doubled[1] + mixed[2]
}

/// Reductions of integers and of constants stay as written (a sum of `usize` had been
/// rewritten as a float loop).
#[differentiate(wrt(x))]
fn counted(x: &[f64], counts: &[usize]) -> f64 {
    let n = counts.iter().sum::<usize>();
    let doubled = counts.iter().map(|c| 2 * c).sum::<usize>();
    let c: f64 = counts.iter().map(|&c| c as f64).sum();
    x[0] * n as f64 + x[1] * doubled as f64 + c
}

#[test]
fn reductions_over_ranges_windows_chunks_and_collect_match_finite_differences() {
    let x = [0.5, -1.0, 2.0, 0.3];
    assert_close(&reduced_grad(&x), &fd(&|v| reduced(v), &x), 1e-7);
    // By hand: i, the fold's 2 x2 and x1 (x1 then x2: ((0 + x2^2) 0.5 + x1^2)), the steps',
    // the product x0 x2 of the chunks' firsts, the doubled product 4 x0 x1, and 2 x2^2.
    let mut want = [0.0, 1.0, 2.0, 3.0];
    want[2] += 2.0 * 0.5 * x[2];
    want[1] += 2.0 * x[1];
    for i in 0..3 {
        let d = 2.0 * (x[i + 1] - x[i]);
        want[i + 1] += d;
        want[i] -= d;
    }
    want[0] += x[2] + 4.0 * x[1];
    want[2] += x[0];
    want[1] += 4.0 * x[0];
    want[2] += 4.0 * x[2];
    assert_close(&reduced_grad(&x), &want, 1e-12);

    assert_close(&counted_grad(&[1.5, -0.5], &[2, 3]), &[5.0, 10.0], 1e-15);
    assert_eq!(counted(&[1.5, -0.5], &[2, 3]), 7.5 - 5.0 + 5.0);
}

/// A variance through two reductions, maxima folded with `f64::max` (also over a `map`),
/// nested range reductions, `vec![..]` of differentiated values, and `.rev().enumerate()`,
/// which counts from the last element (it had counted the original indices).
#[differentiate]
fn more_walks(x: &[f64]) -> f64 {
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    let peak = x.iter().map(|v| v.abs()).fold(0.0, f64::max)
        + x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let gram: f64 = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| x[i] * x[j] / (1.0 + (i + j) as f64))
                .sum::<f64>()
        })
        .sum();
    let v = vec![x[0], x[1] * 2.0];
    let mut backwards = 0.0;
    for (k, b) in x.iter().rev().enumerate() {
        backwards += b * k as f64;
    }
    let counted = x
        .iter()
        .rev()
        .enumerate()
        .map(|(i, v)| v * i as f64)
        .sum::<f64>();
    var + peak + gram + v[0] * v[1] + backwards + 0.5 * counted
}

#[test]
fn folds_nested_reductions_and_reversed_enumerations_match_finite_differences() {
    let x = [0.5, -1.0, 2.0, 0.3];
    let g = more_walks_grad(&x);
    assert_close(&g, &fd(&|v| more_walks(v), &x), 1e-7);
    // The reversed enumeration alone: 1.5 (3 x0 + 2 x1 + x2).
    let pieces = |x: &[f64]| {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let d_var: Vec<f64> = x.iter().map(|v| 2.0 * (v - mean) / n).collect();
        d_var
    };
    let d_var = pieces(&x);
    let mut want = [0.0; 4];
    for i in 0..4 {
        want[i] += d_var[i] + 1.5 * (3 - i) as f64;
        for j in 0..4 {
            want[i] += 2.0 * x[j] / (1.0 + (i + j) as f64);
        }
    }
    // max |x| is x2 = 2, and max x is x2 too; v[0] v[1] = 2 x0 x1.
    want[2] += 2.0;
    want[0] += 2.0 * x[1];
    want[1] += 2.0 * x[0];
    assert_close(&g, &want, 1e-12);
}

/// Walks of a reference (`for v in &x[1..]`) and of a slice parameter itself (`for &v in x`).
#[differentiate]
fn walked_by_reference(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for v in &x[1..] {
        s += v * v;
    }
    for &v in x {
        s += v;
    }
    s
}

#[test]
fn walks_by_reference_match_the_analytic_gradient() {
    assert_close(
        &walked_by_reference_grad(&[1.0, 2.0, 3.0]),
        &[1.0, 5.0, 7.0],
        1e-15,
    );
}

/// Neighbours by zipping a walk with itself skipped (`x.iter().zip(x.iter().skip(1))`), a taken
/// walk zipped with a skipped one, and a skip past the end (an empty walk).
#[differentiate]
fn neighbours(x: &[f64]) -> f64 {
    let total: f64 = x.iter().zip(x.iter().skip(1)).map(|(a, b)| a * b).sum();
    let mut s = 0.0;
    for (a, b) in x.iter().take(2).zip(x.iter().skip(1).copied()) {
        s += a * b * b;
    }
    for (i, (a, b)) in x.iter().zip(x.iter().skip(9)).enumerate() {
        s += a * b * i as f64;
    }
    total + s
}

#[test]
fn zips_of_skipped_and_taken_walks_match_the_analytic_gradient() {
    let x = [1.0, 2.0, 3.0, 0.5];
    // sum x_i x_{i+1} + x0 x1^2 + x1 x2^2.
    let want = [
        x[1] + x[1] * x[1],
        x[0] + x[2] + 2.0 * x[0] * x[1] + x[2] * x[2],
        x[1] + x[3] + 2.0 * x[1] * x[2],
        x[2],
    ];
    assert_close(&neighbours_grad(&x), &want, 1e-12);
    assert_close(&neighbours_grad(&x), &fd(&|v| neighbours(v), &x), 1e-7);
}

/// Filtered walks: pairs leaving out a particle with itself (`(0..n).filter(|&j| j != i)`),
/// an enumeration filtered on its index, items filtered on their value (through references,
/// `|&&v|` and `**v`), in `for` loops and in a reduction.
#[differentiate]
fn filtered(x: &[f64]) -> f64 {
    let n = x.len();
    let mut e = 0.0;
    for i in 0..n {
        for j in (0..n).filter(|&j| j != i) {
            let d = x[i] - x[j];
            e += 1.0 / (1.0 + d * d);
        }
    }
    for (k, v) in x.iter().enumerate().filter(|(k, _)| k % 2 == 0) {
        e += v * v * (k + 1) as f64;
    }
    for &v in x.iter().filter(|&&v| v > 0.0) {
        e += v.powi(3);
    }
    e + x.iter().filter(|v| **v < 1.0).map(|v| v.sin()).sum::<f64>()
}

#[test]
fn filtered_walks_match_finite_differences() {
    let x = [0.5, -1.0, 2.0, 0.3];
    assert_close(&filtered_grad(&x), &fd(&|v| filtered(v), &x), 1e-7);
    // One element: no pairs; x0 counted as even, positive and below 1.
    let x = [0.4];
    let want = 2.0 * 0.4 + 3.0 * 0.4 * 0.4 + 0.4f64.cos();
    assert_close(&filtered_grad(&x), &[want], 1e-12);
}

/// Strided walks: `step_by` alone, after a `skip` (the odd elements, enumerated by the items
/// yielded), and under a reduction.
#[differentiate]
fn strided(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for v in x.iter().step_by(2) {
        s += v * v;
    }
    for (k, &v) in x.iter().skip(1).step_by(2).enumerate() {
        s += v * (k + 1) as f64;
    }
    s + x.iter().step_by(3).map(|v| v.sin()).sum::<f64>()
}

#[test]
fn strided_walks_match_the_analytic_gradient() {
    let x: [f64; 5] = [0.5, -1.0, 2.0, 0.3, 1.5];
    // Even indices: 2 x; odd ones: 1, 2; indices 0 and 3: cos.
    let want = [
        2.0 * x[0] + x[0].cos(),
        1.0,
        2.0 * x[2],
        2.0 + x[3].cos(),
        2.0 * x[4],
    ];
    assert_close(&strided_grad(&x), &want, 1e-12);
}

/// Walks that write: `iter_mut()`, `&mut y`, enumerated, zipped with a walk that reads, and
/// nested over the coordinates of points (each an index loop storing into the buffer).
#[differentiate]
fn written_in_place(x: &[f64], a: f64) -> f64 {
    let mut y = x.to_vec();
    for v in y.iter_mut() {
        *v = *v * a + 1.0;
    }
    for (i, v) in y.iter_mut().enumerate() {
        *v += i as f64;
    }
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi *= xi;
    }
    for v in &mut y {
        *v = v.sin();
    }
    y.iter().sum()
}

#[differentiate]
fn points_written_in_place(p: &[[f64; 3]], a: f64) -> f64 {
    let mut q = p.to_vec();
    for point in q.iter_mut() {
        for c in point.iter_mut() {
            *c = *c * *c;
        }
        point[0] += a;
    }
    let mut s = 0.0;
    for point in &q {
        s += point[0] * point[1] + point[2];
    }
    s
}

#[test]
fn walks_that_write_match_the_analytic_gradient() {
    let (x, a) = ([0.5, -1.0, 2.0, 0.3], 0.7);
    let (g, ga) = written_in_place_grad(&x, a);
    let y: Vec<f64> = (0..4).map(|j| (a * x[j] + 1.0 + j as f64) * x[j]).collect();
    let want: Vec<f64> = (0..4)
        .map(|j| y[j].cos() * (2.0 * a * x[j] + 1.0 + j as f64))
        .collect();
    assert_close(&g, &want, 1e-12);
    let want_a: f64 = (0..4).map(|j| y[j].cos() * x[j] * x[j]).sum();
    assert_close(&[ga], &[want_a], 1e-12);

    let p = [[0.5, -1.0, 2.0], [0.3, 1.5, -0.25]];
    let (g, ga) = points_written_in_place_grad(&p, a);
    for (gi, pi) in g.iter().zip(&p) {
        let want = [
            2.0 * pi[0] * pi[1] * pi[1],
            2.0 * pi[1] * (pi[0] * pi[0] + a),
            2.0 * pi[2],
        ];
        assert_close(gi, &want, 1e-12);
    }
    assert_close(&[ga], &[p[0][1] * p[0][1] + p[1][1] * p[1][1]], 1e-12);
}

/// A walk mapped by a function's name (`.map(f64::exp)`), the ends of a slice
/// (`*x.last().unwrap()`, `x.first().copied().unwrap()`), and tests and searches over
/// differentiated values (`any`, `position(..).unwrap_or(0)`), which are flags and indices.
#[differentiate]
fn ends_and_searches(x: &[f64]) -> f64 {
    let e = x.iter().copied().map(f64::exp).sum::<f64>();
    let last = *x.last().unwrap();
    let first = x.first().copied().unwrap();
    let big = x.iter().any(|&v| v > 1.0);
    let at = x.iter().position(|&v| v > 0.6).unwrap_or(0);
    let s = if big { 2.0 } else { 1.0 };
    // An index computed from a value (a cast to `usize`): integer code.
    let k = (x[0] * 10.0) as usize % x.len();
    e + s * last * first + x[at] * x[at] + x[k]
}

#[test]
fn maps_by_name_ends_and_searches_match_the_analytic_gradient() {
    let x: [f64; 5] = [0.3, 0.5, 1.2, 0.7, 0.4];
    // big (1.2 > 1): s = 2; at = 2 (the first above 0.6).
    let mut want: Vec<f64> = x.iter().map(|v| v.exp()).collect();
    want[4] += 2.0 * x[0];
    want[0] += 2.0 * x[4];
    want[2] += 2.0 * x[2];
    // k = 3 % 5 = 3.
    want[3] += 1.0;
    assert_close(&ends_and_searches_grad(&x), &want, 1e-12);
}

// ----- elements that may be missing -----

// The `if let` forms are under test, clippy's shorter spellings beside them.
#[allow(clippy::manual_unwrap_or)]
#[differentiate]
fn elements_that_may_be_missing(x: &[f64], i: usize) -> f64 {
    let a = x.get(i).copied().unwrap_or(0.5);
    let b = if let Some(&v) = x.get(i + 1) {
        v * v
    } else {
        1.0
    };
    let c = *x.get(i + 2).unwrap_or(&2.0);
    let d = x.get(i + 3).map_or(0.25, |v| v.sin());
    let e = x.first().copied().unwrap_or_default() + x.last().map_or(0.0, |&v| v * 3.0);
    let f = if let Some(v) = x.get(i + 4) {
        v * 2.0
    } else if let Some(w) = x.get(i).copied() {
        w
    } else {
        0.0
    };
    a * b + c * d + e + f
}

#[differentiate]
fn stencil_with_open_ends(u: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..u.len() {
        let l = if i > 0 { u[i - 1] } else { 0.0 };
        let r = u.get(i + 1).copied().unwrap_or(0.0);
        s += (l - 2.0 * u[i] + r).powi(2);
    }
    s
}

/// `x.get(i)`, `x.first()`, `x.last()` read as the element with a test that it is there.
#[test]
fn elements_that_may_be_missing_match_finite_differences() {
    let x = [0.3, -1.2, 0.8, 1.5, 0.4, -0.6];
    for i in 0..7 {
        let g = elements_that_may_be_missing_grad(&x, i);
        assert_close(&g, &fd(&|v| elements_that_may_be_missing(v, i), &x), 1e-6);
    }
    let g = stencil_with_open_ends_grad(&x);
    assert_close(&g, &fd(&|v| stencil_with_open_ends(v), &x), 1e-6);
    for i in [1, 9] {
        let g = leaves_when_missing_grad(&x, i);
        assert_close(&g, &fd(&|v| leaves_when_missing(v, i), &x), 1e-6);
    }
    // Analytic where the element is there and where it is not.
    let g = leaves_when_missing_grad(&x, 2);
    assert_eq!(g, vec![0.0, 0.0, 2.0 * x[2], 0.0, 0.0, 0.0]);
    let g = leaves_when_missing_grad(&x, 6);
    assert_eq!(g, vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[differentiate]
fn leaves_when_missing(x: &[f64], i: usize) -> f64 {
    let Some(&v) = x.get(i) else {
        return x[0];
    };
    v * v
}

// ----- the largest and smallest elements by a comparator -----

#[differentiate]
fn extremes(x: &[f64], y: &[f64]) -> f64 {
    let hi = *x.iter().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap();
    let lo = x.iter().copied().min_by(|a, b| a.total_cmp(b)).unwrap();
    let rev = y
        .iter()
        .cloned()
        .max_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal))
        .expect("not empty");
    let typed = *y
        .iter()
        .min_by(|a: &&f64, b: &&f64| b.total_cmp(a))
        .unwrap();
    hi * hi - lo.sin() + rev * 3.0 + typed * hi
}

/// `max_by` / `min_by` with `partial_cmp` or `total_cmp`, either way round.
#[test]
fn extremes_picked_by_comparators_match_finite_differences() {
    let x = [0.3, -1.2, 0.8, 1.5, 0.4];
    let y = [2.0, -0.5, 0.7];
    let (gx, gy) = extremes_grad(&x, &y);
    assert_close(&gx, &fd(&|v| extremes(v, &y), &x), 1e-6);
    assert_close(&gy, &fd(&|v| extremes(&x, v), &y), 1e-6);
    // hi = 1.5 (index 3), lo = -1.2 (1), rev = the smallest y, -0.5 (1), typed = the largest y, 2.0 (0).
    assert_close(
        &gx,
        &[0.0, -(-1.2f64).cos(), 0.0, 2.0 * 1.5 + 2.0, 0.0],
        1e-12,
    );
    assert_close(&gy, &[1.5, 3.0, 0.0], 1e-12);
}

#[differentiate]
fn tied_max(x: &[f64]) -> f64 {
    *x.iter().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap() * 2.0
}

#[differentiate]
fn tied_min(x: &[f64]) -> f64 {
    *x.iter().min_by(|a, b| a.partial_cmp(b).unwrap()).unwrap() * 2.0
}

#[differentiate]
fn tied_reversed(x: &[f64]) -> f64 {
    *x.iter().max_by(|a, b| b.partial_cmp(a).unwrap()).unwrap() * 2.0
        + *x.iter().min_by(|a, b| b.total_cmp(a)).unwrap()
}

/// At a tie the gradient goes to the element the standard library picks (the last of the
/// largest for `max_by`, the first of the smallest for `min_by`).
#[test]
fn extremes_at_ties_follow_the_standard_library() {
    let x = [2.0, 1.0, 2.0, 1.0];
    let pick = |max: bool, rev: bool| {
        let it = x.iter().enumerate();
        let cmp = |a: &(usize, &f64), b: &(usize, &f64)| {
            if rev {
                b.1.partial_cmp(a.1).unwrap()
            } else {
                a.1.partial_cmp(b.1).unwrap()
            }
        };
        if max {
            it.max_by(cmp).unwrap().0
        } else {
            it.min_by(cmp).unwrap().0
        }
    };
    let one_hot = |k: usize, v: f64| {
        let mut g = vec![0.0; 4];
        g[k] += v;
        g
    };
    assert_eq!(tied_max_grad(&x), one_hot(pick(true, false), 2.0));
    assert_eq!(tied_min_grad(&x), one_hot(pick(false, false), 2.0));
    let mut want = one_hot(pick(true, true), 2.0);
    want[pick(false, true)] += 1.0;
    assert_eq!(tied_reversed_grad(&x), want);
}

// ----- counts of filtered elements -----

#[differentiate]
fn counted_by_filters(x: &[f64], b: f64) -> f64 {
    let n = x.iter().filter(|&&v| v > 0.0).count();
    let big = if x.iter().filter(|v| v.abs() > 1.0).count() > 1 {
        b
    } else {
        x[0]
    };
    let m = x.iter().copied().filter(|&b| b < 0.5).count();
    x[n % x.len()] * n as f64
        + big * m as f64
        + x.iter().filter(|&&v| v > b).map(|v| v * v).sum::<f64>()
}

/// Counts of the elements a filter keeps (`x.iter().filter(|&&v| v > 0.0).count()`) are
/// integers, in indices and conditions.
#[test]
fn filtered_counts_match_finite_differences() {
    let x = [0.3, -1.2, 0.8, 1.5, 0.4];
    for b in [0.2, 0.9] {
        let (gx, gb) = counted_by_filters_grad(&x, b);
        assert_close(&gx, &fd(&|v| counted_by_filters(v, b), &x), 1e-6);
        assert_close(&[gb], &fd(&|v| counted_by_filters(&x, v[0]), &[b]), 1e-6);
    }
}

// ----- sorting differentiated values -----

/// A median and a trimmed mean: the sorted copy is the input permuted, so each element's
/// adjoint goes back to where the element came from.
#[differentiate]
fn median_and_trimmed(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = x.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = v[n / 2];
    let mut trimmed = 0.0;
    for k in 1..n - 1 {
        trimmed += v[k] * v[k];
    }
    let mut w: Vec<f64> = x.iter().map(|t| t.sin()).collect();
    w.sort_unstable_by(|a, b| b.total_cmp(a));
    median * 3.0 + trimmed + w[0] - w[n - 1] * 0.5
}

fn median_and_trimmed_by_hand(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| x[i].partial_cmp(&x[j]).unwrap());
    let mut g = vec![0.0; n];
    g[order[n / 2]] += 3.0;
    for k in 1..n - 1 {
        g[order[k]] += 2.0 * x[order[k]];
    }
    let mut by_sin: Vec<usize> = (0..n).collect();
    by_sin.sort_by(|&i, &j| x[j].sin().total_cmp(&x[i].sin()));
    g[by_sin[0]] += x[by_sin[0]].cos();
    g[by_sin[n - 1]] -= 0.5 * x[by_sin[n - 1]].cos();
    g
}

#[test]
fn sorted_values_match_a_hand_written_gradient_and_finite_differences() {
    let x = [0.3, -1.2, 0.8, 1.5, 0.4, -0.1, 2.2];
    let g = median_and_trimmed_grad(&x);
    assert_close(&g, &median_and_trimmed_by_hand(&x), 1e-12);
    assert_close(&g, &fd(&|v| median_and_trimmed(v), &x), 1e-6);
}

#[differentiate]
fn sorted_with_nan(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[0]
}

#[test]
#[should_panic(expected = "which orders no NaN")]
fn sorting_a_nan_by_partial_cmp_panics_as_the_sort_does() {
    sorted_with_nan_grad(&[1.0, f64::NAN]);
}

// ----- windows and chunks zipped with slices -----

#[differentiate]
fn spring_chain(pos: &[f64], k: &[f64], rest: f64) -> f64 {
    pos.windows(2)
        .zip(k)
        .map(|(w, &ki)| 0.5 * ki * (w[1] - w[0] - rest).powi(2))
        .sum()
}

#[differentiate]
fn zipped_windows(x: &[f64], m: &[f64]) -> f64 {
    let mut e = 0.0;
    for (mi, c) in m.iter().zip(x.chunks_exact(3)) {
        e += mi * (c[0] * c[0] + c[1] * c[2]);
    }
    for (n, (w, q)) in x.windows(3).zip(m.iter().copied()).enumerate() {
        e += (w[2] - 2.0 * w[1] + w[0]) * q * (n + 1) as f64;
    }
    e
}

/// Only the zip's argument a walk of chunks (nothing else in the body to rewrite).
#[differentiate]
fn chunks_on_the_right(x: &[f64], k: &[f64]) -> f64 {
    let mut e = 0.0;
    for (n, (q, c)) in k.iter().zip(x.chunks(2)).enumerate() {
        e += q * c[0] * c[c.len() - 1] * (n + 1) as f64;
    }
    e
}

/// Walks of windows and chunks zipped with a slice's elements (either side, enumerated).
#[test]
fn windows_and_chunks_zipped_with_slices_match_finite_differences() {
    let pos = [0.0, 1.2, 2.1, 3.5];
    let k = [1.0, 2.0, 0.5];
    let (gp, gk, gr) = spring_chain_grad(&pos, &k, 1.0);
    assert_close(&gp, &fd(&|v| spring_chain(v, &k, 1.0), &pos), 1e-6);
    assert_close(&gk, &fd(&|v| spring_chain(&pos, v, 1.0), &k), 1e-6);
    assert_close(&[gr], &fd(&|v| spring_chain(&pos, &k, v[0]), &[1.0]), 1e-6);
    let x = [0.3, -1.2, 0.8, 1.5, 0.4, -0.6, 0.9];
    let m = [1.0, 2.0];
    let (gx, gm) = zipped_windows_grad(&x, &m);
    assert_close(&gx, &fd(&|v| zipped_windows(v, &m), &x), 1e-6);
    assert_close(&gm, &fd(&|v| zipped_windows(&x, v), &m), 1e-6);
    let (gx, gk) = chunks_on_the_right_grad(&x, &m);
    assert_close(&gx, &fd(&|v| chunks_on_the_right(v, &m), &x), 1e-6);
    assert_close(&gk, &fd(&|v| chunks_on_the_right(&x, v), &m), 1e-6);
}
