//! The documented conventions at kinks and edges (see the rules table), and NaN propagation.
use autodiff::differentiate;

#[differentiate]
fn abs(x: f64) -> f64 {
    x.abs()
}

#[differentiate]
fn max(a: f64, b: f64) -> f64 {
    a.max(b)
}

#[differentiate]
fn min(a: f64, b: f64) -> f64 {
    a.min(b)
}

#[differentiate]
fn sqrt(x: f64) -> f64 {
    x.sqrt()
}

#[differentiate]
fn powf(a: f64, b: f64) -> f64 {
    a.powf(b)
}

#[differentiate]
fn clamp(x: f64, lo: f64, hi: f64) -> f64 {
    x.clamp(lo, hi)
}

#[differentiate]
fn hypot(a: f64, b: f64) -> f64 {
    a.hypot(b)
}

#[differentiate]
fn relu(x: f64) -> f64 {
    autodiff::ops::relu(x)
}

#[test]
fn abs_at_zero_is_zero() {
    assert_eq!(abs_grad(0.0), 0.0);
    assert_eq!(abs_grad(-0.0), 0.0);
    assert_eq!(abs_grad(-2.0), -1.0);
    assert_eq!(abs_grad(2.0), 1.0);
}

#[test]
fn max_and_min_split_ties_evenly() {
    assert_eq!(max_grad(1.0, 1.0), (0.5, 0.5));
    assert_eq!(min_grad(1.0, 1.0), (0.5, 0.5));
    assert_eq!(max_grad(2.0, 1.0), (1.0, 0.0));
    assert_eq!(min_grad(2.0, 1.0), (0.0, 1.0));
}

#[test]
fn max_and_min_follow_the_operand_rust_returns_when_one_is_nan() {
    // f64::max ignores a NaN operand and returns the other: so does the gradient.
    assert_eq!(max_grad(f64::NAN, 1.0), (0.0, 1.0));
    assert_eq!(min_grad(2.0, f64::NAN), (1.0, 0.0));
}

#[test]
fn sqrt_at_zero_is_infinite() {
    assert_eq!(sqrt_grad(0.0), f64::INFINITY);
}

#[test]
fn powf_with_zero_base_or_zero_exponent() {
    assert_eq!(powf_grad(0.0, 2.0), (0.0, 0.0));
    assert_eq!(powf_grad(0.0, 0.0), (0.0, 0.0));
    assert_eq!(powf_grad(3.0, 0.0), (0.0, 3.0f64.powf(0.0) * 3.0f64.ln()));
}

#[test]
fn clamp_passes_inside_and_stops_at_the_bounds() {
    assert_eq!(clamp_grad(0.5, 0.0, 1.0), (1.0, 0.0, 0.0));
    assert_eq!(clamp_grad(0.0, 0.0, 1.0), (0.0, 0.0, 0.0));
    assert_eq!(clamp_grad(1.0, 0.0, 1.0), (0.0, 0.0, 0.0));
    assert_eq!(clamp_grad(-3.0, 0.0, 1.0), (0.0, 1.0, 0.0));
    assert_eq!(clamp_grad(3.0, 0.0, 1.0), (0.0, 0.0, 1.0));
}

#[test]
fn hypot_at_the_origin_is_zero() {
    assert_eq!(hypot_grad(0.0, 0.0), (0.0, 0.0));
}

#[test]
fn relu_at_zero_is_zero() {
    assert_eq!(relu_grad(0.0), 0.0);
    assert_eq!(relu_grad(1.0), 1.0);
    assert_eq!(relu_grad(-1.0), 0.0);
}

#[differentiate]
fn smooth(x: f64, y: f64) -> f64 {
    (x * y).sin() + x.exp() / y + (x * x + 1.0).ln() + x.abs() + x.sqrt()
}

#[test]
fn nan_in_gives_nan_out_and_never_panics() {
    let (dx, dy) = smooth_grad(f64::NAN, 1.0);
    assert!(dx.is_nan() && dy.is_nan());
    let (v, (dx, _)) = smooth_value_and_grad(f64::INFINITY, 1.0);
    assert!(v.is_nan() || v.is_infinite());
    assert!(dx.is_nan() || dx.is_infinite());
}

// A NaN computed inside an operand that `max`/`min` discards (`sqrt` of a negative number
// here) still reaches the gradient: the discarded operand's adjoint is zero, and zero times
// the NaN local derivative is NaN. This is JAX's behaviour for `where` too; keep such
// operands inside their domain (`(x - 2.0).max(0.0).sqrt()`) when the gradient must stay finite.
#[differentiate]
fn discarded_nan(a: f64) -> f64 {
    (a - 2.0).sqrt().min(a * a)
}

#[test]
fn a_nan_inside_a_discarded_operand_makes_the_gradient_nan() {
    // sqrt(-1) is NaN and Rust's `min` returns `a * a`; the value is finite.
    assert_eq!(discarded_nan(1.0), 1.0);
    let (value, g) = discarded_nan_value_and_grad(1.0);
    assert_eq!(value, 1.0);
    assert!(g.is_nan());
}

// `stop_gradient`: the value, held constant; what only it reads gets no adjoint.
#[differentiate]
fn held(x: f64, y: f64) -> f64 {
    use autodiff::StopGradient;
    (x * y).stop_gradient() + y
}

#[test]
fn stop_gradient_has_derivative_zero() {
    let (v, (dx, dy)) = held_value_and_grad(3.0, 0.5);
    assert_eq!(v, 2.0);
    assert_eq!((dx, dy), (0.0, 1.0));
}
