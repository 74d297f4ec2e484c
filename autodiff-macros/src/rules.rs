//! Phase 4: every derivative rule, one short entry per primitive, in one table.
//!
//! A rule says how the adjoint `dy` of a primitive's output `y` flows back into each of its
//! float operands. Element-wise rules are written for scalars: `x` (or `a`, `b`, `c` for
//! several operands), the output `y`, its adjoint `dy`, the integer argument `n` and the float
//! type `f`. The reverse sweep applies them through `__rt::pb1/pb2/pb3`, so the same entry
//! serves scalars and, element by element, arrays. Adding a primitive means adding one entry.
//!
//! Conventions at kinks and edges (the same as JAX's where JAX defines one):
//! - `abs` at 0: derivative 0.
//! - `max`/`min` at a tie: the adjoint is split evenly, half to each operand. When one operand
//!   is NaN, Rust returns the other, and the whole adjoint goes to the one returned.
//! - `clamp(x, lo, hi)`: derivative 1 strictly inside `(lo, hi)`, 0 at and outside the bounds
//!   (the bound that is returned gets the adjoint when `x` is outside).
//! - `sqrt`, `cbrt` at 0: infinite derivative (`dy * inf`), as the limit says.
//! - `powf(a, b)` with `a == 0`: derivative with respect to `b` is 0; with `b == 0` the
//!   derivative with respect to `a` is 0. `powi(x, 0)` has derivative 0.
//! - `hypot` at the origin: derivative 0.
//! - `signum floor ceil round trunc`: derivative 0 everywhere (their outputs are constants).
//! - NaN in gives NaN out: every rule propagates NaN operands into the adjoint, except where
//!   the primal itself ignores a NaN operand (`max`, `min`).

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

pub struct Rule {
    pub name: &'static str,
    pub kind: Kind,
    /// Float operands, the receiver first.
    pub floats: usize,
    /// Further non-float arguments, after the float ones (`powi`'s exponent).
    pub ints: usize,
    pub adjoint: Adjoint,
}

#[derive(PartialEq, Eq)]
pub enum Kind {
    /// `+ - * /` and unary `-`.
    Operator,
    /// A float method, callable as `x.name(..)` or `f64::name(x, ..)`.
    Method,
}

pub enum Adjoint {
    /// The output is piecewise constant: nothing flows back.
    Zero,
    /// Each operand receives `+dy` (`true`) or `-dy` (`false`).
    Linear(&'static [bool]),
    /// One scalar template per float operand.
    Elementwise(&'static [Template]),
}

/// A scalar adjoint template: the contribution to one operand.
pub type Template = fn(&Args) -> TokenStream;

/// The names a template may use.
pub struct Args {
    pub x: Ident,
    pub a: Ident,
    pub b: Ident,
    pub c: Ident,
    pub y: Ident,
    pub dy: Ident,
    /// The integer argument (`powi`'s exponent), as the forward sweep computed it.
    pub n: TokenStream,
    /// The float type, `f64` or `f32`.
    pub f: Ident,
}

impl Args {
    pub fn new(n: TokenStream, f: Ident) -> Args {
        // Mixed-site hygiene: the closure parameters these name can never capture a user's or
        // a generated variable of the same spelling.
        let id = |s: &str| Ident::new(s, Span::mixed_site());
        Args {
            x: id("x"),
            a: id("a"),
            b: id("b"),
            c: id("c"),
            y: id("y"),
            dy: id("dy"),
            n,
            f,
        }
    }
}

macro_rules! t {
    ([$($name:ident),*] => $body:expr) => {
        |args: &Args| {
            let Args { $($name,)* .. } = args;
            $body
        }
    };
}

macro_rules! elementwise {
    ($name:literal, $floats:literal, $ints:literal, [$($t:expr),* $(,)?]) => {
        Rule { name: $name, kind: Kind::Method, floats: $floats, ints: $ints, adjoint: Adjoint::Elementwise(&[$($t),*]) }
    };
}

macro_rules! zero {
    ($name:literal) => {
        Rule {
            name: $name,
            kind: Kind::Method,
            floats: 1,
            ints: 0,
            adjoint: Adjoint::Zero,
        }
    };
}

pub static RULES: &[Rule] = &[
    // Operators.
    Rule {
        name: "add",
        kind: Kind::Operator,
        floats: 2,
        ints: 0,
        adjoint: Adjoint::Linear(&[true, true]),
    },
    Rule {
        name: "sub",
        kind: Kind::Operator,
        floats: 2,
        ints: 0,
        adjoint: Adjoint::Linear(&[true, false]),
    },
    Rule {
        name: "neg",
        kind: Kind::Operator,
        floats: 1,
        ints: 0,
        adjoint: Adjoint::Linear(&[false]),
    },
    Rule {
        name: "mul",
        kind: Kind::Operator,
        floats: 2,
        ints: 0,
        adjoint: Adjoint::Elementwise(&[
            t!([b, dy] => quote!(#dy * #b)),
            t!([a, dy] => quote!(#dy * #a)),
        ]),
    },
    Rule {
        name: "div",
        kind: Kind::Operator,
        floats: 2,
        ints: 0,
        adjoint: Adjoint::Elementwise(&[
            t!([b, dy] => quote!(#dy / #b)),
            t!([b, y, dy] => quote!(-#dy * #y / #b)),
        ]),
    },
    // Powers and roots.
    elementwise!(
        "powi",
        1,
        1,
        [
            t!([x, dy, n, f] => quote!(if #n == 0 { 0.0 } else { #dy * (#n as #f) * #x.powi(#n - 1) }))
        ]
    ),
    elementwise!(
        "powf",
        2,
        0,
        [
            t!([a, b, dy] => quote!(if #b == 0.0 { 0.0 } else { #dy * #b * #a.powf(#b - 1.0) })),
            t!([a, y, dy] => quote!(if #a == 0.0 { 0.0 } else { #dy * #y * #a.ln() })),
        ]
    ),
    elementwise!("sqrt", 1, 0, [t!([y, dy] => quote!(#dy * 0.5 / #y))]),
    elementwise!("cbrt", 1, 0, [t!([y, dy] => quote!(#dy / (3.0 * #y * #y)))]),
    elementwise!("recip", 1, 0, [t!([y, dy] => quote!(-#dy * #y * #y))]),
    elementwise!(
        "hypot",
        2,
        0,
        [
            t!([a, y, dy] => quote!(if #y == 0.0 { 0.0 } else { #dy * #a / #y })),
            t!([b, y, dy] => quote!(if #y == 0.0 { 0.0 } else { #dy * #b / #y })),
        ]
    ),
    // Exponentials and logarithms.
    elementwise!("exp", 1, 0, [t!([y, dy] => quote!(#dy * #y))]),
    elementwise!(
        "exp2",
        1,
        0,
        [t!([y, dy, f] => quote!(#dy * #y * ::core::#f::consts::LN_2))]
    ),
    elementwise!("exp_m1", 1, 0, [t!([y, dy] => quote!(#dy * (#y + 1.0)))]),
    elementwise!("ln", 1, 0, [t!([x, dy] => quote!(#dy / #x))]),
    elementwise!("ln_1p", 1, 0, [t!([x, dy] => quote!(#dy / (1.0 + #x)))]),
    elementwise!(
        "log",
        2,
        0,
        [
            t!([a, b, dy] => quote!(#dy / (#a * #b.ln()))),
            t!([b, y, dy] => quote!(-#dy * #y / (#b * #b.ln()))),
        ]
    ),
    elementwise!(
        "log2",
        1,
        0,
        [t!([x, dy, f] => quote!(#dy / (#x * ::core::#f::consts::LN_2)))]
    ),
    elementwise!(
        "log10",
        1,
        0,
        [t!([x, dy, f] => quote!(#dy / (#x * ::core::#f::consts::LN_10)))]
    ),
    // Trigonometry.
    elementwise!("sin", 1, 0, [t!([x, dy] => quote!(#dy * #x.cos()))]),
    elementwise!("cos", 1, 0, [t!([x, dy] => quote!(-#dy * #x.sin()))]),
    elementwise!("tan", 1, 0, [t!([y, dy] => quote!(#dy * (1.0 + #y * #y)))]),
    elementwise!(
        "asin",
        1,
        0,
        [t!([x, dy] => quote!(#dy / (1.0 - #x * #x).sqrt()))]
    ),
    elementwise!(
        "acos",
        1,
        0,
        [t!([x, dy] => quote!(-#dy / (1.0 - #x * #x).sqrt()))]
    ),
    elementwise!("atan", 1, 0, [t!([x, dy] => quote!(#dy / (1.0 + #x * #x)))]),
    elementwise!(
        "atan2",
        2,
        0,
        [
            t!([a, b, dy] => quote!(#dy * #b / (#a * #a + #b * #b))),
            t!([a, b, dy] => quote!(-#dy * #a / (#a * #a + #b * #b))),
        ]
    ),
    // Hyperbolic functions.
    elementwise!("sinh", 1, 0, [t!([x, dy] => quote!(#dy * #x.cosh()))]),
    elementwise!("cosh", 1, 0, [t!([x, dy] => quote!(#dy * #x.sinh()))]),
    elementwise!("tanh", 1, 0, [t!([y, dy] => quote!(#dy * (1.0 - #y * #y)))]),
    elementwise!(
        "asinh",
        1,
        0,
        [t!([x, dy] => quote!(#dy / (#x * #x + 1.0).sqrt()))]
    ),
    elementwise!(
        "acosh",
        1,
        0,
        [t!([x, dy] => quote!(#dy / (#x * #x - 1.0).sqrt()))]
    ),
    elementwise!(
        "atanh",
        1,
        0,
        [t!([x, dy] => quote!(#dy / (1.0 - #x * #x)))]
    ),
    // Piecewise functions.
    elementwise!(
        "abs",
        1,
        0,
        [t!([x, dy] => quote!(if #x == 0.0 { 0.0 } else { #dy * #x.signum() }))]
    ),
    elementwise!(
        "max",
        2,
        0,
        [
            t!([a, b, dy] => quote!(if #a > #b { #dy } else if #a == #b { 0.5 * #dy } else if #b.is_nan() { #dy } else { 0.0 })),
            t!([a, b, dy] => quote!(if #b > #a { #dy } else if #a == #b { 0.5 * #dy } else if #a.is_nan() { #dy } else { 0.0 })),
        ]
    ),
    elementwise!(
        "min",
        2,
        0,
        [
            t!([a, b, dy] => quote!(if #a < #b { #dy } else if #a == #b { 0.5 * #dy } else if #b.is_nan() { #dy } else { 0.0 })),
            t!([a, b, dy] => quote!(if #b < #a { #dy } else if #a == #b { 0.5 * #dy } else if #a.is_nan() { #dy } else { 0.0 })),
        ]
    ),
    elementwise!(
        "clamp",
        3,
        0,
        [
            t!([a, b, c, dy] => quote!(if #a > #b && #a < #c { #dy } else if #a.is_nan() { #dy * #a } else { 0.0 })),
            t!([a, b, dy] => quote!(if #a < #b { #dy } else { 0.0 })),
            t!([a, c, dy] => quote!(if #a > #c { #dy } else { 0.0 })),
        ]
    ),
    elementwise!(
        "mul_add",
        3,
        0,
        [
            t!([b, dy] => quote!(#dy * #b)),
            t!([a, dy] => quote!(#dy * #a)),
            t!([dy] => quote!(#dy)),
        ]
    ),
    // Piecewise constant: zero derivative.
    zero!("signum"),
    zero!("floor"),
    zero!("ceil"),
    zero!("round"),
    zero!("trunc"),
];

/// The rule for an operator (`add sub mul div neg`).
pub fn operator(name: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.kind == Kind::Operator && r.name == name)
        .unwrap_or(&RULES[0])
}

/// The rule for a float method, if the table has one.
pub fn method(name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.kind == Kind::Method && r.name == name)
}

/// The float methods the table knows, for error messages.
pub fn method_names() -> String {
    RULES
        .iter()
        .filter(|r| r.kind == Kind::Method)
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(" ")
}
