//! The row-loop workload: the hand-written gradient (the benchmark's floor) and the generated
//! one against central finite differences.
use autodiff_bench::rows::{per_row, per_row_grad, per_row_hand, problem};

#[test]
fn row_loop_gradients_match_finite_differences() {
    let (x, w) = problem(6, 4);
    let (hx, hw) = per_row_hand(&x, &w);
    let (gx, gw) = per_row_grad(&x, &w);
    let h = 1e-6;
    for ((i, j), &g) in gx.indexed_iter() {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[[i, j]] += h;
        down[[i, j]] -= h;
        let want = (per_row(&up, &w) - per_row(&down, &w)) / (2.0 * h);
        assert!(
            (g - want).abs() < 1e-8,
            "x[{i}, {j}]: generated {g}, fd {want}"
        );
        assert!(
            (hx[[i, j]] - want).abs() < 1e-8,
            "x[{i}, {j}]: by hand {}, fd {want}",
            hx[[i, j]]
        );
    }
    for (j, &g) in gw.indexed_iter() {
        let (mut up, mut down) = (w.clone(), w.clone());
        up[j] += h;
        down[j] -= h;
        let want = (per_row(&x, &up) - per_row(&x, &down)) / (2.0 * h);
        assert!((g - want).abs() < 1e-8, "w[{j}]: generated {g}, fd {want}");
        assert!(
            (hw[j] - want).abs() < 1e-8,
            "w[{j}]: by hand {}, fd {want}",
            hw[j]
        );
    }
}
