//! The foundation: scalar functions, against analytic derivatives and finite differences.
use autodiff::differentiate;

fn fd1(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-6 * x.abs().max(1.0);
    (f(x + h) - f(x - h)) / (2.0 * h)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[differentiate]
fn seed(x: f64) -> f64 {
    (x + 2.0).powi(2) + 3.0
}

#[test]
fn pytorch_seed_example() {
    assert_eq!(seed_grad(2.0), 8.0);
    assert_eq!(seed_value_and_grad(2.0), (19.0, 8.0));
    assert_eq!(seed_pullback(2.0, 0.5), 4.0);
}

#[differentiate]
fn g(x: f64, n: usize, y: f64) -> f64 {
    x * y + (n as f64) * y.sin()
}

#[test]
fn several_parameters_give_a_tuple_in_declaration_order() {
    let (dx, dy) = g_grad(1.5, 3, 0.7);
    assert_eq!(dx, 0.7);
    assert!(close(dy, 1.5 + 3.0 * 0.7f64.cos(), 1e-15));
    let (v, (dx2, dy2)) = g_value_and_grad(1.5, 3, 0.7);
    assert_eq!(v, g(1.5, 3, 0.7));
    assert_eq!((dx2, dy2), (dx, dy));
    let (px, pn, py) = g_pullback(1.5, 3, 0.7, 2.0);
    assert_eq!(px, 2.0 * dx);
    assert_eq!(pn, ());
    assert!(close(py, 2.0 * dy, 1e-15));
}

#[differentiate(wrt(y, x))]
fn wrt_both(x: f64, y: f64, z: f64) -> f64 {
    x * y * z
}

#[differentiate(wrt(z))]
fn wrt_one(x: f64, y: f64, z: f64) -> f64 {
    x * y * z
}

#[test]
fn wrt_restricts_and_keeps_declaration_order() {
    assert_eq!(wrt_both_grad(2.0, 3.0, 5.0), (15.0, 10.0));
    assert_eq!(wrt_one_grad(2.0, 3.0, 5.0), 6.0);
    // The pullback always covers every float parameter, for callers.
    assert_eq!(wrt_one_pullback(2.0, 3.0, 5.0, 1.0), (15.0, 10.0, 6.0));
}

#[differentiate]
fn single_precision(x: f32, y: f32) -> f32 {
    (x * y).sin() + x.sqrt() / y
}

#[test]
fn f32_throughout() {
    let (dx, dy): (f32, f32) = single_precision_grad(1.3, 0.4);
    let (x, y) = (1.3f32, 0.4f32);
    let ex = y * (x * y).cos() + 0.5 / (x.sqrt() * y);
    let ey = x * (x * y).cos() - x.sqrt() / (y * y);
    assert!(
        (dx - ex).abs() < 1e-5 && (dy - ey).abs() < 1e-5,
        "{dx} {dy} {ex} {ey}"
    );
}

const SCALE: f64 = 1.5;

#[differentiate]
fn bindings(x: f64, y: f64) -> f64 {
    let a = x * y;
    let a = a + SCALE * x; // shadowing
    let (p, q) = (a * x, a + y);
    let (p, q) = (q, p); // swap: the whole right-hand side is evaluated first
    let mut s: f64 = 0.0;
    s += p;
    s -= 0.5 * q;
    s *= x;
    s /= 2.0;
    let k = 3;
    let c = k as f64 * std::f64::consts::PI;
    let b = {
        let t = s * c;
        t - x
    };
    b + std::f64::consts::E * y
}

#[test]
fn bindings_shadowing_tuples_and_compound_assignment() {
    let (x, y) = (0.8, -1.3);
    let (dx, dy) = bindings_grad(x, y);
    assert!(close(dx, fd1(|x| bindings(x, y), x), 1e-7), "{dx}");
    assert!(close(dy, fd1(|y| bindings(x, y), y), 1e-7), "{dy}");
    assert_eq!(bindings_value_and_grad(x, y).0, bindings(x, y));
}

#[differentiate]
#[allow(clippy::assign_op_pattern)]
fn branches(x: f64, y: f64) -> f64 {
    let mut r = x * y;
    if x > 0.0 {
        r = r * x.exp();
    } else if y > x {
        r += y.sin();
    } else {
        r -= 1.0;
    }
    let s = if r > 1.0 { r.ln() } else { r * r };
    if s < -5.0 {
        return -5.0;
    }
    let t = s * y;
    if t > 100.0 {
        return t.sqrt();
    }
    t + r
}

#[test]
fn if_else_chains_if_expressions_and_early_return() {
    for &(x, y) in &[
        (0.5, 2.0),
        (-0.5, 2.0),
        (-0.5, -2.0),
        (1.5, 3.0),
        (2.0, 40.0),
        (-3.0, -4.0),
        (0.1, 0.2),
    ] {
        let (dx, dy) = branches_grad(x, y);
        assert!(
            close(dx, fd1(|x| branches(x, y), x), 1e-6),
            "dx at {x},{y}: {dx}"
        );
        assert!(
            close(dy, fd1(|y| branches(x, y), y), 1e-6),
            "dy at {x},{y}: {dy}"
        );
        assert_eq!(branches_value_and_grad(x, y).0, branches(x, y));
    }
}

#[differentiate]
fn nested_return(x: f64) -> f64 {
    let y = x * 2.0;
    {
        let y = y + 1.0;
        if y > 3.0 {
            if x > 10.0 {
                return y * x;
            }
            return y.powi(3);
        }
    }
    y * y
}

#[test]
fn returns_inside_nested_blocks_and_ifs_see_the_right_bindings() {
    for &x in &[0.3, 1.5, 12.0] {
        assert!(
            close(nested_return_grad(x), fd1(nested_return, x), 1e-6),
            "at {x}"
        );
        assert_eq!(nested_return_value_and_grad(x).0, nested_return(x));
    }
}

#[differentiate]
fn both_call_forms(x: f64, y: f64) -> f64 {
    f64::exp(x) * y.exp()
        + f64::powf(x, y)
        + x.atan2(y)
        + f64::hypot(x, y)
        + x.mul_add(y, x)
        + f64::max(x, 0.5) * y.clamp(-1.0, 2.0)
}

#[test]
fn method_and_path_forms() {
    let (x, y) = (0.9, 1.7);
    let (dx, dy) = both_call_forms_grad(x, y);
    assert!(close(dx, fd1(|x| both_call_forms(x, y), x), 1e-7));
    assert!(close(dy, fd1(|y| both_call_forms(x, y), y), 1e-7));
}

#[differentiate]
fn with_asserts(x: f64) -> f64 {
    assert!(x > 0.0, "x must be positive, got {x}");
    let y = x.ln();
    debug_assert!(y.is_finite());
    assert_ne!(y, f64::INFINITY);
    y * x
}

#[test]
fn asserts_stay_and_still_fire() {
    assert!(close(with_asserts_grad(2.0), 2.0f64.ln() + 1.0, 1e-15));
    let err = std::panic::catch_unwind(|| with_asserts_grad(-1.0)).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("x must be positive, got -1"), "{msg}");
}

/// Prints stay in the forward sweep (once per gradient call: the reverse sweep's recomputed
/// and re-run statements leave them out), their arguments and format captures read as the
/// function reads them.
#[differentiate]
fn with_prints(x: &[f64], steps: usize) -> f64 {
    let mut s = 0.0;
    let mut u = x.to_vec();
    for t in 0..steps {
        for i in 1..u.len() {
            u[i] += 0.1 * u[i - 1] * u[i];
        }
        eprintln!("step {t}: u0 = {:.3}, s = {s}", u[0]);
        s += u[u.len() - 1];
    }
    print!("with_prints: ");
    println!("{}", s);
    eprint!("");
    s
}

#[test]
fn prints_stay_and_the_gradient_matches_finite_differences() {
    let x = [1.0, 2.0, 3.0];
    let g = with_prints_grad(&x, 2);
    for k in 0..3 {
        let fk = |v: f64| {
            let mut y = x;
            y[k] = v;
            with_prints(&y, 2)
        };
        assert!(close(g[k], fd1(fk, x[k]), 1e-6), "{k}: {}", g[k]);
    }
}

#[differentiate]
fn unused_parameter(x: f64, _y: f64) -> f64 {
    x * 3.0
}

#[differentiate]
fn constant_result(x: f64) -> f64 {
    let _ = x;
    4.0
}

#[test]
fn parameters_without_influence_get_zero() {
    assert_eq!(unused_parameter_grad(1.0, 2.0), (3.0, 0.0));
    assert_eq!(constant_result_value_and_grad(1.0), (4.0, 0.0));
}

#[differentiate]
fn piecewise_constant(x: f64) -> f64 {
    x.floor() + x.signum() * x + x.round() * x.trunc() + x.ceil()
}

#[test]
fn piecewise_constant_functions_have_zero_derivative() {
    assert_eq!(piecewise_constant_grad(2.3), 1.0);
    assert_eq!(piecewise_constant_grad(-2.3), -1.0);
}

// Products of one base (`x * x * x`): the reverse adds `n x^(n-1)` into the base at once.
// Also a chain whose lower power is used again, a power of a power (not folded), and a power
// built across an `if` (not folded either).
#[differentiate]
fn powers(x: f64, y: f64) -> f64 {
    let x2 = x * x;
    let x3 = x2 * x;
    let x4 = x * x3;
    let y3 = y * y * y;
    let p = x2 * x2;
    let mut q = x * y;
    if y > 0.0 {
        q *= x;
    }
    x4 + 2.0 * x3 + x2.sin() + y3 * x + p * y + q
}

#[test]
fn products_of_one_base_match_the_analytic_derivative() {
    for (x, y) in [(0.7, 1.3), (-1.1, 0.4), (2.0, -0.6)] {
        let (gx, gy) = powers_grad(x, y);
        let q_x = if y > 0.0 { 2.0 * x * y } else { y };
        let q_y = if y > 0.0 { x * x } else { x };
        let want_x = 4.0 * x.powi(3)
            + 6.0 * x * x
            + 2.0 * x * (x * x).cos()
            + y.powi(3)
            + 4.0 * x.powi(3) * y
            + q_x;
        let want_y = 3.0 * y * y * x + x.powi(4) + q_y;
        assert!(close(gx, want_x, 1e-12), "{gx} vs {want_x}");
        assert!(close(gy, want_y, 1e-12), "{gy} vs {want_y}");
        assert!(close(gx, fd1(|v| powers(v, y), x), 1e-6));
    }
}

/// A rotation by an angle, its sine and cosine taken apart once (`sin_cos`, method and path
/// forms), with the other float methods `fract`, `copysign` and `rem_euclid`.
#[differentiate]
fn rotated(x: f64, y: f64, theta: f64) -> f64 {
    let (s, c) = (2.0 * theta).sin_cos();
    let (_, c1) = f64::sin_cos(theta);
    let u = c * x - s * y;
    let v = s * x + c * y;
    u * u * c1 + v.rem_euclid(1.5) + (u * 3.0).fract() + u.copysign(v)
}

#[test]
fn sin_cos_and_periodic_methods_match_the_analytic_gradient() {
    let (x, y, theta) = (0.8, -0.3, 0.4);
    let (dx, dy, dt) = rotated_grad(x, y, theta);
    let (s, c) = (2.0 * theta).sin_cos();
    let c1 = theta.cos();
    let u = c * x - s * y;
    let v = s * x + c * y;
    // d(u)/d(x, y, theta) and d(v)/d(...); fract's slope is one, rem_euclid's in v one.
    let du = [c, -s, 2.0 * (-s * x - c * y)];
    let dv = [s, c, 2.0 * (c * x - s * y)];
    let sign = u.signum() * v.signum();
    let want: Vec<f64> = (0..3)
        .map(|k| {
            let dc1 = if k == 2 { -theta.sin() } else { 0.0 };
            2.0 * u * du[k] * c1 + u * u * dc1 + dv[k] + 3.0 * du[k] + sign * du[k]
        })
        .collect();
    for (got, want) in [dx, dy, dt].iter().zip(&want) {
        assert!(close(*got, *want, 1e-12), "got {got}, want {want}");
    }
    let fd = fd1(|t| rotated(x, y, t), theta);
    assert!(
        close(dt, fd, 1e-6),
        "theta: got {dt}, finite differences {fd}"
    );
}

/// `%=` on a float carried by a loop and on an integer counter.
#[differentiate]
fn wrapped_walk(x: f64, steps: usize) -> f64 {
    let mut s = x;
    let mut k = 0usize;
    for i in 0..steps {
        s = s * 1.7 + 0.3;
        s %= 2.5;
        k += i;
        k %= 3;
        s += k as f64 * 0.1 * x;
    }
    s * x
}

#[test]
fn remainder_assignments_match_finite_differences() {
    for x in [0.37, 1.21, -0.83] {
        let g = wrapped_walk_grad(x, 6);
        let want = fd1(|t| wrapped_walk(t, 6), x);
        assert!(
            close(g, want, 1e-6),
            "x = {x}: got {g}, finite differences {want}"
        );
    }
}
