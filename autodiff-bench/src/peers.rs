//! The same workloads for the peer crates: num-dual (forward mode, one pass per input), and
//! the tape-based reverse-mode crates `reverse` and `ad_trait`. Each function is the
//! annotated one with the number type swapped; [`lj!`] and [`rosenbrock!`] stamp the one
//! body out for each type.
use num_dual::Dual64;

/// Extended Rosenbrock over any number type; `c` makes a constant of it.
macro_rules! rosenbrock {
    ($x:expr, $c:expr, $zero:expr) => {{
        let (x, c) = ($x, $c);
        let mut s = $zero;
        for i in 0..x.len() - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = c(1.0) - x[i];
            s = s + c(100.0) * a * a + b * b;
        }
        s
    }};
}

/// The Lennard-Jones energy over any number type; `c` makes a constant of it, `zero` starts
/// the sum.
macro_rules! lj {
    ($x:expr, $c:expr, $zero:expr) => {{
        let (x, c) = ($x, $c);
        let n = x.len() / 3;
        let mut e = $zero;
        for i in 0..n {
            for j in (i + 1)..n {
                let dx = x[3 * i] - x[3 * j];
                let dy = x[3 * i + 1] - x[3 * j + 1];
                let dz = x[3 * i + 2] - x[3 * j + 2];
                let r2 = dx * dx + dy * dy + dz * dz;
                let s6 = c(1.0) / (r2 * r2 * r2);
                e = e + c(4.0) * (s6 * s6 - s6);
            }
        }
        e
    }};
}

/// Forward mode: one pass per input, each seeding one direction.
fn num_dual_gradient(x: &[f64], f: impl Fn(&[Dual64]) -> Dual64) -> Vec<f64> {
    let mut xd: Vec<Dual64> = x.iter().map(|&v| Dual64::from_re(v)).collect();
    (0..x.len())
        .map(|i| {
            xd[i].eps = 1.0;
            let d = f(&xd).eps;
            xd[i].eps = 0.0;
            d
        })
        .collect()
}

pub fn rosenbrock_num_dual(x: &[f64]) -> Vec<f64> {
    num_dual_gradient(x, |x| rosenbrock!(x, Dual64::from_re, Dual64::from_re(0.0)))
}

pub fn lennard_jones_num_dual(x: &[f64]) -> Vec<f64> {
    num_dual_gradient(x, |x| lj!(x, Dual64::from_re, Dual64::from_re(0.0)))
}

/// `reverse`: a fresh tape per gradient.
fn reverse_gradient(
    x: &[f64],
    f: impl for<'a> Fn(&[reverse::Var<'a>]) -> reverse::Var<'a>,
) -> Vec<f64> {
    let tape = reverse::Tape::new();
    let vars = tape.add_vars(x);
    let out = f(&vars);
    use reverse::Gradient;
    out.grad().wrt(&vars)
}

pub fn rosenbrock_reverse(x: &[f64]) -> Vec<f64> {
    reverse_gradient(x, |x| rosenbrock!(x, |v: f64| v, x[0] * 0.0))
}

pub fn lennard_jones_reverse(x: &[f64]) -> Vec<f64> {
    reverse_gradient(x, |x| lj!(x, |v: f64| v, x[0] * 0.0))
}

/// `ad_trait`'s reverse mode (`adr`): variables on its global graph, reset per gradient.
fn ad_trait_gradient(
    x: &[f64],
    f: impl Fn(&[ad_trait::reverse_ad::adr::adr]) -> ad_trait::reverse_ad::adr::adr,
) -> Vec<f64> {
    use ad_trait::reverse_ad::adr::adr;
    let vars: Vec<adr> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| adr::new_variable(v, i == 0))
        .collect();
    let out = f(&vars);
    let grad = out.get_backwards_mode_grad();
    vars.iter().map(|v| grad.wrt(v)).collect()
}

pub fn rosenbrock_ad_trait(x: &[f64]) -> Vec<f64> {
    use ad_trait::reverse_ad::adr::adr;
    use ad_trait::AD;
    ad_trait_gradient(x, |x| rosenbrock!(x, adr::constant, adr::constant(0.0)))
}

pub fn lennard_jones_ad_trait(x: &[f64]) -> Vec<f64> {
    use ad_trait::reverse_ad::adr::adr;
    use ad_trait::AD;
    ad_trait_gradient(x, |x| lj!(x, adr::constant, adr::constant(0.0)))
}
