//! Every smooth one-argument rule against forward-mode dual numbers (num-dual), at points
//! where central finite differences are ill-conditioned: next to poles and branch points
//! (`tan` near pi/2, `ln` and `sqrt` near 0, `acos` and `atanh` near 1), where the function or
//! its derivative is huge or tiny (`exp(700)`, `tanh(20)`), and across magnitudes. Dual numbers
//! carry the derivative exactly through the same arithmetic, so the tolerance is a few ulps,
//! not the 1e-5 finite differences allow.
//!
//! Found this way: `tanh`'s derivative as `1 - y^2` was 4% off at x = 18 (now `1 / cosh^2`
//! where tanh saturates). Points are kept where num-dual itself is exact: its `tanh` of
//! arguments past about 360 gives a derivative of 0 or NaN.
use autodiff::differentiate;
use num_dual::{first_derivative, DualNum};

/// Relative error allowed: a few rounding errors of the derivative formula.
const TOL: f64 = 1e-13;

macro_rules! dual_check {
    ($test:ident, |$x:ident| $body:expr, [$($point:expr),* $(,)?]) => {
        mod $test {
            use super::*;
            #[differentiate]
            fn f($x: f64) -> f64 {
                $body
            }
            #[test]
            fn against_dual_numbers() {
                for $x in [$($point),*] {
                    let ours = f_grad($x);
                    let (_, want) = first_derivative(|$x| $body, $x);
                    let err = (ours - want).abs() / want.abs().max(f64::MIN_POSITIVE);
                    assert!(
                        err <= TOL || ours == want,
                        "{} at {:e}: ours {ours:e}, dual numbers {want:e} (relative error {err:e})",
                        stringify!($test),
                        $x
                    );
                }
            }
        }
    };
}

const PI_2: f64 = std::f64::consts::FRAC_PI_2;

dual_check!(sin, |x| x.sin(), [1e-300, 1e-8, 3.0, 1e6, -2.5]);
dual_check!(cos, |x| x.cos(), [1e-300, 1e-8, PI_2, 1e6, -2.5]);
dual_check!(
    tan,
    |x| x.tan(),
    [PI_2 - 1e-6, PI_2 - 1e-9, -PI_2 + 1e-7, 1e-10, 0.7]
);
dual_check!(asin, |x| x.asin(), [1.0 - 1e-12, -1.0 + 1e-9, 1e-10, 0.3]);
dual_check!(acos, |x| x.acos(), [1.0 - 1e-12, -1.0 + 1e-9, 1e-10, 0.3]);
dual_check!(atan, |x| x.atan(), [1e-10, 1e10, -1e150, 0.3]);
dual_check!(sinh, |x| x.sinh(), [1e-10, 700.0, -300.0, 0.3]);
dual_check!(cosh, |x| x.cosh(), [1e-10, 700.0, -300.0, 0.3]);
dual_check!(tanh, |x| x.tanh(), [1e-10, 18.0, -17.0, 0.3, 2.0]);
dual_check!(asinh, |x| x.asinh(), [1e-10, 1e150, -1e8, 0.3]);
dual_check!(acosh, |x| x.acosh(), [1.0 + 1e-10, 1.0 + 1e-14, 1e150, 3.0]);
dual_check!(atanh, |x| x.atanh(), [1.0 - 1e-12, -1.0 + 1e-9, 1e-10, 0.3]);
dual_check!(exp, |x| x.exp(), [700.0, -700.0, 1e-10, 2.0]);
dual_check!(exp2, |x| x.exp2(), [1000.0, -1000.0, 1e-10, 2.0]);
dual_check!(exp_m1, |x| x.exp_m1(), [1e-12, -1e-15, 700.0, 0.3]);
dual_check!(ln, |x| x.ln(), [1e-300, 1e-10, 1e300, 1.0 + 1e-12]);
dual_check!(ln_1p, |x| x.ln_1p(), [1e-15, -1.0 + 1e-10, 1e300, 0.3]);
dual_check!(log2, |x| x.log2(), [1e-300, 1e-10, 1e300, 3.0]);
dual_check!(log10, |x| x.log10(), [1e-300, 1e-10, 1e300, 3.0]);
dual_check!(sqrt, |x| x.sqrt(), [1e-300, 1e-12, 1e300, 2.0]);
dual_check!(cbrt, |x| x.cbrt(), [1e-300, -1e-12, 1e300, 2.0]);
dual_check!(recip, |x| x.recip(), [1e-150, -1e-10, 1e150, 3.0]);
dual_check!(powi, |x| x.powi(7), [1e-40, -1e40, 1.0 + 1e-12, -0.3]);
dual_check!(powf, |x| x.powf(2.5), [1e-100, 1e100, 1.0 + 1e-12, 0.3]);
dual_check!(
    chain,
    |x| (x.sin() * x.exp()).tanh() + x.sqrt().ln_1p(),
    [1e-12, 0.5, 3.0]
);
