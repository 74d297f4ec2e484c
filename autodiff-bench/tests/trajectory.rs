//! The trajectory workload's generated gradient against its hand-written one.
use autodiff_bench::trajectory::{
    problem, trajectory, trajectory_grad, trajectory_hand, trajectory_value_and_grad,
};

#[test]
fn generated_trajectory_gradient_matches_the_hand_written_one() {
    for (n, steps) in [(3, 1), (4, 7), (10, 50)] {
        let (x, w) = problem(n);
        let (gx, gw) = trajectory_grad(&x, &w, steps);
        let (hx, hw) = trajectory_hand(&x, &w, steps);
        let (value, _) = trajectory_value_and_grad(&x, &w, steps);
        assert_eq!(value, trajectory(&x, &w, steps));
        for (g, h) in gx.iter().zip(&hx).chain(gw.iter().zip(&hw)) {
            assert!(
                (g - h).abs() <= 1e-10 * h.abs().max(1.0),
                "n = {n}: {g} vs {h}"
            );
        }
    }
}
