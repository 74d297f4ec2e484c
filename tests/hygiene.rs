//! Generated names never collide with the user's.
use autodiff::differentiate;

#[differentiate]
fn f(grad: f64, adj: f64, d_x: f64) -> f64 {
    let tape = grad * adj;
    let __t0 = tape + d_x;
    let x_grad = __t0.sin();
    let f_grad = x_grad * grad;
    let __d_tape = f_grad + 1.0;
    let __rt = __d_tape * 2.0;
    let dy = __rt * d_x;
    dy + x_grad
}

fn reference(grad: f64, adj: f64, d_x: f64) -> (f64, f64, f64) {
    // d/d(...) of 2 * (sin(g a + d) g + 1) d + sin(g a + d)
    let s = (grad * adj + d_x).sin();
    let c = (grad * adj + d_x).cos();
    let dg = 2.0 * d_x * (c * adj * grad + s) + c * adj;
    let da = 2.0 * d_x * c * grad * grad + c * grad;
    let dd = 2.0 * (s * grad + 1.0) + 2.0 * d_x * c * grad + c;
    (dg, da, dd)
}

#[test]
fn user_names_that_look_generated_work() {
    let got = f_grad(0.3, -1.2, 0.7);
    let want = reference(0.3, -1.2, 0.7);
    assert!(
        (got.0 - want.0).abs() < 1e-12
            && (got.1 - want.1).abs() < 1e-12
            && (got.2 - want.2).abs() < 1e-12,
        "{got:?} {want:?}"
    );
}

#[differentiate]
fn uses_f_grad_name(x: f64) -> f64 {
    let uses_f_grad_name_grad = x * 3.0;
    uses_f_grad_name_grad * x
}

#[test]
fn a_local_named_like_the_companion_works() {
    assert_eq!(uses_f_grad_name_grad(2.0), 12.0);
}

mod inner {
    use autodiff::differentiate;

    #[differentiate]
    pub fn cube(x: f64) -> f64 {
        x * x * x
    }
}

#[test]
fn companions_have_the_functions_visibility() {
    assert_eq!(inner::cube_grad(2.0), 12.0);
    assert_eq!(inner::cube_pullback(2.0, 0.5), 6.0);
}

// Parameters spelled like the names the reverse sweep gives its registers and slots
// (`dreg1`, `dslot1`, `k`, `first1`, `reads_start`, the rule templates' `a`, `x`, `dy`): those
// are made at the mixed site, so no user name can shadow or capture them.
#[differentiate]
#[allow(clippy::too_many_arguments)]
fn spelled_like_registers(
    x: &[f64],
    dreg1: f64,
    dslot1: f64,
    k: f64,
    first1: f64,
    reads_start: f64,
    a: f64,
    dy: f64,
) -> f64 {
    let n = x.len();
    let mut e = 0.0;
    for i in 0..n {
        for j in 0..n {
            e += (x[i] * dreg1 - x[j] * dslot1).sin() * k;
        }
    }
    let mut w = 0.0;
    for i in 0..n - 1 {
        w += x[i] * x[i + 1] * first1 + reads_start * a * dy;
    }
    e + w * w
}

#[test]
fn parameters_spelled_like_generated_registers() {
    let x = [0.3, -0.7, 1.1, 0.4];
    let p = [0.9, 1.3, 0.7, 1.2, 0.5, 0.8, 1.1];
    let f =
        |x: &[f64], p: &[f64]| spelled_like_registers(x, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    let (gx, g1, g2, g3, g4, g5, g6, g7) =
        spelled_like_registers_grad(&x, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    let want_x = autodiff::check::central_difference(|v: &[f64]| f(v, &p), &x, 1e-6);
    let want_p = autodiff::check::central_difference(|v: &[f64]| f(&x, v), &p, 1e-6);
    for (g, w) in gx
        .iter()
        .zip(&want_x)
        .chain([g1, g2, g3, g4, g5, g6, g7].iter().zip(&want_p))
    {
        assert!((g - w).abs() < 1e-6 * w.abs().max(1.0), "got {g}, want {w}");
    }
}

// Functions produced by `macro_rules!`.
macro_rules! make_square {
    ($name:ident) => {
        #[differentiate]
        fn $name(x: f64) -> f64 {
            x * x
        }
    };
}
make_square!(square_from_macro);

// Regression (found by the GradBench `ode` eval): a `macro_rules!` body whose result
// expression comes from the caller names a local the macro's own tokens declared. The macro's
// renamed uses must keep the declaration's hygiene, or rustc finds no such local.
macro_rules! make_weighted_sum {
    ($name:ident, |$acc:ident| $result:expr) => {
        #[differentiate]
        fn $name(x: &[f64]) -> f64 {
            let mut $acc = vec![0.0; x.len()];
            for i in 0..x.len() {
                $acc[i] = (i as f64 + 1.0) * x[i] * x[i];
            }
            $result
        }
    };
}
make_weighted_sum!(last_weighted, |acc| acc[acc.len() - 1]);

#[test]
fn functions_produced_by_macro_rules() {
    assert_eq!(square_from_macro_grad(3.0), 6.0);
    // d/dx_2 of 3 x_2^2 at x_2 = 0.5 is 3.
    assert_eq!(last_weighted_grad(&[0.1, 0.2, 0.5]), vec![0.0, 0.0, 3.0]);
}

// Two annotated functions with the same name in different modules, called by path.
mod left {
    use autodiff::differentiate;
    #[differentiate]
    pub fn energy(x: f64) -> f64 {
        2.0 * x
    }
}

mod right {
    use autodiff::differentiate;
    #[differentiate]
    pub fn energy(x: f64) -> f64 {
        x * x * x
    }
    pub mod deeper {
        use autodiff::differentiate;
        #[differentiate]
        pub fn energy(x: f64) -> f64 {
            x.sin()
        }
    }
}

#[differentiate]
fn both(x: f64) -> f64 {
    left::energy(x) + right::energy(x) + right::deeper::energy(x) + crate::left::energy(x)
}

#[test]
fn same_name_in_different_modules_called_by_path() {
    let x = 0.7;
    assert!((both_grad(x) - (2.0 + 3.0 * x * x + x.cos() + 2.0)).abs() < 1e-12);
}

// `use` imports, aliases and re-exports: a call to `g` differentiates through `g::pullback`,
// on the companion type `#[differentiate]` writes beside `fn g` in the type namespace, so one
// `use` (renaming or re-exporting) carries the derivative with the function.
mod api {
    pub use super::right::deeper::energy;
    pub use super::right::energy as cube;
}

use api::cube;
use right::deeper::energy as wave;

#[differentiate]
fn through_imports(x: f64) -> f64 {
    cube(x) + api::energy(x) * wave(x)
}

#[test]
fn use_aliases_and_reexports() {
    let x: f64 = 0.4;
    let want = 3.0 * x * x + 2.0 * x.sin() * x.cos();
    assert!((through_imports_grad(x) - want).abs() < 1e-12);
}

// The same through a renamed hand-written pullback, a renamed runtime op, and functions
// declared inside a function body (block scope) and renamed there.
mod custom {
    use autodiff::differentiate;
    /// `sqrt(x^2 + 1)`, with its derivative written by hand.
    #[differentiate(pullback = smooth_abs_pullback)]
    pub fn smooth_abs(x: f64) -> f64 {
        (x * x + 1.0).sqrt()
    }
    pub fn smooth_abs_pullback(x: f64, d_out: f64) -> f64 {
        d_out * x / smooth_abs(x)
    }
}

use autodiff::ops::sigmoid as logistic;
use custom::smooth_abs as soft;

#[differentiate]
fn through_renamed_custom_and_ops(x: f64) -> f64 {
    soft(x) * logistic(x)
}

#[test]
fn renamed_hand_written_pullbacks_and_runtime_ops() {
    let x: f64 = -0.3;
    let (a, s) = ((x * x + 1.0).sqrt(), 1.0 / (1.0 + (-x).exp()));
    let want = x / a * s + a * s * (1.0 - s);
    assert!((through_renamed_custom_and_ops_grad(x) - want).abs() < 1e-12);
}

#[test]
fn renamed_functions_in_block_scope() {
    #[differentiate]
    fn scaled_exp(x: f64) -> f64 {
        x.exp() * x
    }
    use scaled_exp as renamed;
    #[differentiate]
    fn outer(x: f64) -> f64 {
        renamed(x * 2.0) + 1.0
    }
    let x: f64 = 0.3;
    // d/dx of 2x e^{2x}: 2 e^{2x} (1 + 2x).
    let want = 2.0 * (2.0 * x).exp() * (1.0 + 2.0 * x);
    assert!((outer_grad(x) - want).abs() < 1e-12);
}
