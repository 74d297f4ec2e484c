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
//! - `stop_gradient`: the identity, with derivative 0 (JAX's `stop_gradient`, PyTorch's
//!   `detach`): what only it reads is not differentiated at all (`useful`).
//! - NaN in gives NaN out: every rule propagates NaN operands into the adjoint, except where
//!   the primal itself ignores a NaN operand (`max`, `min`).

use crate::signature::{cast, constant};
use proc_macro2::{Ident, TokenStream};
use quote::{quote, ToTokens};

pub struct Rule {
    pub name: &'static str,
    pub kind: Kind,
    /// Differentiable operands (scalars or arrays), the receiver first.
    pub floats: usize,
    /// Further non-differentiable arguments, after those (`powi`'s exponent, an `Axis`, a
    /// shape).
    pub ints: usize,
    /// How the forward sweep computes it.
    pub forward: Forward,
    /// Returns `Option`/`Result` (`mean`, `into_shape_with_order`): written with `.unwrap()` or
    /// `.expect(..)` right after, which the forward sweep keeps.
    pub fallible: bool,
    pub adjoint: Adjoint,
}

pub enum Forward {
    /// As the user wrote it: `x.exp()`, `f64::exp(x)`, `x.sum()`.
    AsWritten,
    /// Through a runtime helper that borrows every operand (`__rt::add(&a, &b)`), so that the
    /// forward sweep never moves a value the reverse sweep needs and scalars and arrays mix.
    Runtime(&'static str),
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
    /// One runtime adjoint function per operand, called as
    /// `__rt::name(&operands.., &dy, constants..)`; it lives next to the primitive in the
    /// runtime's `tensor` module. Each reads only the shape of the operand it is the adjoint
    /// for (the values of the others), and none reads the output: the reverse sweep keeps
    /// just the shape of a value that nothing else reads (`x` of `x.sum()`, `a` of `a.dot(b)`
    /// for `a`'s adjoint), and passes that (an `autodiff::adjoint::Shape`; see `HasDim` there).
    Runtime(&'static [&'static str]),
    /// The output views a part of its one array operand (a row, a column): the runtime's
    /// `__rt::name(&mut d_operand, &dy, constants..)` adds `dy` into that part of the operand's
    /// adjoint in place, so the reverse of a loop over rows touches one row per iteration.
    Scatter(&'static str),
}

/// A scalar adjoint template: the contribution to one operand.
pub struct Template {
    /// The names the body reads; operands it does not read are not kept for it.
    pub uses: &'static [&'static str],
    pub body: fn(&Args) -> TokenStream,
}

/// A constant of the float type, written only where a template interpolates it (as
/// `signature::constant` writes it: the literal, or its conversion for a generic float).
#[derive(Clone)]
pub struct Constant(f64, Ident);

impl ToTokens for Constant {
    fn to_tokens(&self, out: &mut TokenStream) {
        let literal = proc_macro2::Literal::f64_unsuffixed(self.0).into_token_stream();
        out.extend(constant(&self.1, literal));
    }
}

/// What a template's names stand for: the closure parameters of `__rt::pbN` (`Args::new`),
/// or, for a known scalar, the operands themselves, so that the rule is written out inline.
pub struct Args {
    pub x: TokenStream,
    pub a: TokenStream,
    pub b: TokenStream,
    pub c: TokenStream,
    pub y: TokenStream,
    pub dy: TokenStream,
    /// The integer argument (`powi`'s exponent), as the forward sweep computed it.
    pub n: TokenStream,
    /// The float type, `f64` or `f32` (or a function's generic float, `F`).
    pub f: Ident,
    /// The constants `0.0`, `0.5` and `1.0` in that type (`signature::constant`: literals,
    /// or conversions for a generic float).
    pub zero: Constant,
    pub half: Constant,
    pub one: Constant,
}

impl Args {
    /// The names as closure parameters.
    pub fn new(n: TokenStream, f: Ident) -> Args {
        // Mixed-site hygiene: the closure parameters these name can never capture a user's or
        // a generated variable of the same spelling.
        let id = |s: &str| Ident::new(s, crate::names::mixed_site()).into_token_stream();
        Args {
            x: id("x"),
            a: id("a"),
            b: id("b"),
            c: id("c"),
            y: id("y"),
            dy: id("dy"),
            n,
            zero: Constant(0.0, f.clone()),
            half: Constant(0.5, f.clone()),
            one: Constant(1.0, f.clone()),
            f,
        }
    }

    /// No names yet, to be filled with the operands a template reads (a known scalar's rule
    /// written out inline); the template reads nothing else.
    pub fn inline(n: TokenStream, f: Ident) -> Args {
        Args {
            x: TokenStream::new(),
            a: TokenStream::new(),
            b: TokenStream::new(),
            c: TokenStream::new(),
            y: TokenStream::new(),
            dy: TokenStream::new(),
            n,
            zero: Constant(0.0, f.clone()),
            half: Constant(0.5, f.clone()),
            one: Constant(1.0, f.clone()),
            f,
        }
    }

    /// The float operand a template names `x` (one operand) or `a`, `b`, `c`.
    pub fn operand_mut(&mut self, k: usize, of: usize) -> &mut TokenStream {
        match Args::operand_name(k, of) {
            "x" => &mut self.x,
            "a" => &mut self.a,
            "b" => &mut self.b,
            _ => &mut self.c,
        }
    }

    /// The same, read.
    pub fn operand(&self, k: usize, of: usize) -> &TokenStream {
        match Args::operand_name(k, of) {
            "x" => &self.x,
            "a" => &self.a,
            "b" => &self.b,
            _ => &self.c,
        }
    }

    /// The name a template uses for operand `k` of `of`.
    pub fn operand_name(k: usize, of: usize) -> &'static str {
        match (of, k) {
            (1, _) => "x",
            (_, 0) => "a",
            (_, 1) => "b",
            _ => "c",
        }
    }
}

/// `::core::f64::consts::PI` (by name) in the float type `f`.
fn consts(f: &Ident, name: &str) -> TokenStream {
    let name = Ident::new(name, proc_macro2::Span::call_site());
    match crate::signature::is_primitive_float(f) {
        true => quote!(::core::#f::consts::#name),
        false => constant(f, quote!(::core::f64::consts::#name)),
    }
}

macro_rules! t {
    ([$($name:ident),*] => $body:expr) => {
        Template {
            uses: &[$(stringify!($name)),*],
            body: |args: &Args| {
                let Args { $($name,)* .. } = args;
                $body
            },
        }
    };
}

macro_rules! elementwise {
    ($name:literal, $floats:literal, $ints:literal, [$($t:expr),* $(,)?]) => {
        Rule { name: $name, kind: Kind::Method, floats: $floats, ints: $ints, forward: Forward::AsWritten, fallible: false, adjoint: Adjoint::Elementwise(&[$($t),*]) }
    };
}

macro_rules! zero {
    ($name:literal) => {
        Rule {
            name: $name,
            kind: Kind::Method,
            floats: 1,
            ints: 0,
            forward: Forward::AsWritten,
            fallible: false,
            adjoint: Adjoint::Zero,
        }
    };
}

macro_rules! operator {
    ($name:literal, $floats:literal, $adjoint:expr) => {
        Rule {
            name: $name,
            kind: Kind::Operator,
            floats: $floats,
            ints: 0,
            forward: Forward::Runtime($name),
            fallible: false,
            adjoint: $adjoint,
        }
    };
}

macro_rules! tensor {
    ($name:literal, $floats:literal, $ints:literal, $forward:expr, fallible: $fallible:literal, $adjoint:expr) => {
        Rule {
            name: $name,
            kind: Kind::Method,
            floats: $floats,
            ints: $ints,
            forward: $forward,
            fallible: $fallible,
            adjoint: $adjoint,
        }
    };
}

/// The divisor's adjoint in `1 / b` (a reciprocal written as a quotient, Lennard-Jones'
/// `1.0 / r6`): the reciprocal's rule, `-dy y^2`, with no second division. The reverse sweep
/// uses it for `div` when the numerator is the literal one.
pub static QUOTIENT_OF_ONE: Template = t!([y, dy] => quote!(-#dy * #y * #y));

#[rustfmt::skip]
pub static RULES: &[Rule] = &[
    // Operators.
    operator!("add", 2, Adjoint::Linear(&[true, true])),
    operator!("sub", 2, Adjoint::Linear(&[true, false])),
    // `&x[a..b]` of a slice (`__rt::range(&x, a, b)`): a view of part of it, whose adjoint adds
    // into that part of `x`'s (`__rt::range_acc`).
    Rule { name: "range", kind: Kind::Operator, floats: 1, ints: 2, forward: Forward::Runtime("range"), fallible: false, adjoint: Adjoint::Scatter("range_acc") },
    // A local buffer of points kept flat (`vec![[0.0; 3]; n]` written `f[i][k]`, `lower.rs`):
    // `__rt::flatten(&x, Width::<3>)` of a parameter's points (`x.to_vec()`), and
    // `__rt::unflatten(&f, Width::<3>)`, the buffer read back as points where it is used whole;
    // each adjoint adds into its operand's in place (`flatten_acc`, `unflatten_acc`).
    Rule { name: "flatten", kind: Kind::Operator, floats: 1, ints: 1, forward: Forward::Runtime("flatten"), fallible: false, adjoint: Adjoint::Scatter("flatten_acc") },
    Rule { name: "unflatten", kind: Kind::Operator, floats: 1, ints: 1, forward: Forward::Runtime("unflatten"), fallible: false, adjoint: Adjoint::Scatter("unflatten_acc") },
    // The same for rows of a width known at run time (`vec![vec![0.0; m]; n]`): `flatten_rows`
    // of a `&[Vec<f64>]` parameter's copy, `unflatten_rows(&g, width, rows)`.
    Rule { name: "flatten_rows", kind: Kind::Operator, floats: 1, ints: 0, forward: Forward::Runtime("flatten_rows"), fallible: false, adjoint: Adjoint::Scatter("flatten_rows_acc") },
    Rule { name: "unflatten_rows", kind: Kind::Operator, floats: 1, ints: 2, forward: Forward::Runtime("unflatten_rows"), fallible: false, adjoint: Adjoint::Scatter("unflatten_rows_acc") },
    operator!("neg", 1, Adjoint::Linear(&[false])),
    operator!("mul", 2, Adjoint::Elementwise(&[
        t!([b, dy] => quote!(#dy * #b)),
        t!([a, dy] => quote!(#dy * #a)),
    ])),
    operator!("div", 2, Adjoint::Elementwise(&[
        t!([b, dy] => quote!(#dy / #b)),
        t!([b, y, dy] => quote!(-#dy * #y / #b)),
    ])),
    // `a - b * q` with `q = trunc(a / b)` (piecewise constant), `(a - y) / b` rounded to the
    // integer it is.
    operator!("rem", 2, Adjoint::Elementwise(&[
        t!([dy] => quote!(#dy)),
        t!([a, b, y, dy] => quote!(-#dy * ((#a - #y) / #b).round())),
    ])),
    // Powers and roots.
    elementwise!(
        "powi",
        1,
        1,
        [
            t!([x, dy, n, f, zero] => { let n_f = cast(quote!(#n), f); quote!(if #n == 0 { #zero } else { #dy * (#n_f) * #x.powi(#n - 1) }) })
        ]
    ),
    elementwise!(
        "powf",
        2,
        0,
        [
            t!([a, b, dy, one, zero] => quote!(if #b == #zero { #zero } else { #dy * #b * #a.powf(#b - #one) })),
            t!([a, y, dy, zero] => quote!(if #a == #zero { #zero } else { #dy * #y * #a.ln() })),
        ]
    ),
    elementwise!("sqrt", 1, 0, [t!([y, dy, half] => quote!(#dy * #half / #y))]),
    elementwise!("cbrt", 1, 0, [t!([y, dy, f] => { let three = constant(f, quote!(3.0)); quote!(#dy / (#three * #y * #y)) })]),
    elementwise!("recip", 1, 0, [t!([y, dy] => quote!(-#dy * #y * #y))]),
    // Unit conversions: linear.
    elementwise!("to_degrees", 1, 0, [t!([dy, f] => { let (d, pi) = (constant(f, quote!(180.0)), consts(f, "PI")); quote!(#dy * (#d / #pi)) })]),
    elementwise!("to_radians", 1, 0, [t!([dy, f] => { let (d, pi) = (constant(f, quote!(180.0)), consts(f, "PI")); quote!(#dy * (#pi / #d)) })]),
    elementwise!(
        "hypot",
        2,
        0,
        [
            t!([a, y, dy, zero] => quote!(if #y == #zero { #zero } else { #dy * #a / #y })),
            t!([b, y, dy, zero] => quote!(if #y == #zero { #zero } else { #dy * #b / #y })),
        ]
    ),
    // Exponentials and logarithms.
    elementwise!("exp", 1, 0, [t!([y, dy] => quote!(#dy * #y))]),
    elementwise!(
        "exp2",
        1,
        0,
        [t!([y, dy, f] => { let ln2 = consts(f, "LN_2"); quote!(#dy * #y * #ln2) })]
    ),
    elementwise!("exp_m1", 1, 0, [t!([y, dy, one] => quote!(#dy * (#y + #one)))]),
    elementwise!("ln", 1, 0, [t!([x, dy] => quote!(#dy / #x))]),
    elementwise!("ln_1p", 1, 0, [t!([x, dy, one] => quote!(#dy / (#one + #x)))]),
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
        [t!([x, dy, f] => { let ln2 = consts(f, "LN_2"); quote!(#dy / (#x * #ln2)) })]
    ),
    elementwise!(
        "log10",
        1,
        0,
        [t!([x, dy, f] => { let ln10 = consts(f, "LN_10"); quote!(#dy / (#x * #ln10)) })]
    ),
    // Trigonometry.
    elementwise!("sin", 1, 0, [t!([x, dy] => quote!(#dy * #x.cos()))]),
    elementwise!("cos", 1, 0, [t!([x, dy] => quote!(-#dy * #x.sin()))]),
    elementwise!("tan", 1, 0, [t!([y, dy, one] => quote!(#dy * (#one + #y * #y)))]),
    elementwise!(
        "asin",
        1,
        0,
        [t!([x, dy, one] => quote!(#dy / (#one - #x * #x).sqrt()))]
    ),
    elementwise!(
        "acos",
        1,
        0,
        [t!([x, dy, one] => quote!(-#dy / (#one - #x * #x).sqrt()))]
    ),
    elementwise!("atan", 1, 0, [t!([x, dy, one] => quote!(#dy / (#one + #x * #x)))]),
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
    // 1 - y^2 loses all relative accuracy where tanh saturates (at x = 18 it is 4% off, found
    // against dual numbers); there 1 / cosh^2 is used instead.
    elementwise!(
        "tanh",
        1,
        0,
        [t!([x, y, dy, one, f] => { let near_one = constant(f, quote!(0.9)); quote!(if #y.abs() > #near_one { let c = #x.cosh(); #dy / (c * c) } else { #dy * (#one - #y * #y) }) })]
    ),
    elementwise!(
        "asinh",
        1,
        0,
        [t!([x, dy, one] => quote!(#dy / (#x * #x + #one).sqrt()))]
    ),
    elementwise!(
        "acosh",
        1,
        0,
        [t!([x, dy, one] => quote!(#dy / (#x * #x - #one).sqrt()))]
    ),
    elementwise!(
        "atanh",
        1,
        0,
        [t!([x, dy, one] => quote!(#dy / (#one - #x * #x)))]
    ),
    // Piecewise functions.
    elementwise!(
        "abs",
        1,
        0,
        [t!([x, dy, zero] => quote!(if #x == #zero { #zero } else { #dy * #x.signum() }))]
    ),
    elementwise!(
        "max",
        2,
        0,
        [
            t!([a, b, dy, half, zero] => quote!(if #a > #b { #dy } else if #a == #b { #half * #dy } else if #b.is_nan() { #dy } else { #zero })),
            t!([a, b, dy, half, zero] => quote!(if #b > #a { #dy } else if #a == #b { #half * #dy } else if #a.is_nan() { #dy } else { #zero })),
        ]
    ),
    elementwise!(
        "min",
        2,
        0,
        [
            t!([a, b, dy, half, zero] => quote!(if #a < #b { #dy } else if #a == #b { #half * #dy } else if #b.is_nan() { #dy } else { #zero })),
            t!([a, b, dy, half, zero] => quote!(if #b < #a { #dy } else if #a == #b { #half * #dy } else if #a.is_nan() { #dy } else { #zero })),
        ]
    ),
    elementwise!(
        "clamp",
        3,
        0,
        [
            t!([a, b, c, dy, zero] => quote!(if #a > #b && #a < #c { #dy } else if #a.is_nan() { #dy * #a } else { #zero })),
            t!([a, b, dy, zero] => quote!(if #a < #b { #dy } else { #zero })),
            t!([a, c, dy, zero] => quote!(if #a > #c { #dy } else { #zero })),
        ]
    ),
    // The fractional part, `x - trunc(x)`: slope one between the integers.
    elementwise!("fract", 1, 0, [t!([dy] => quote!(#dy))]),
    // `|a|` with the sign of `b`: `y / a` is that sign times `a`'s; `b`'s sign is piecewise
    // constant.
    elementwise!(
        "copysign",
        2,
        0,
        [
            t!([a, y, dy, zero] => quote!(if #a == #zero { #zero } else { #dy * (#y / #a) })),
            t!([zero] => quote!(#zero)),
        ]
    ),
    // `a - b * q` with `q` the (piecewise constant) Euclidean quotient, `(a - y) / b` rounded to
    // the integer it is.
    elementwise!(
        "rem_euclid",
        2,
        0,
        [
            t!([dy] => quote!(#dy)),
            t!([a, b, y, dy] => quote!(-#dy * ((#a - #y) / #b).round())),
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
    // Tensor primitives: the adjoints live next to the forward code in the runtime's `tensor`.
    tensor!("dot", 2, 0, Forward::Runtime("dot"), fallible: false, Adjoint::Runtime(&["dot_lhs_adj", "dot_rhs_adj"])),
    tensor!("t", 1, 0, Forward::AsWritten, fallible: false, Adjoint::Runtime(&["t_adj"])),
    tensor!("reversed_axes", 1, 0, Forward::Runtime("reversed_axes"), fallible: false, Adjoint::Runtime(&["t_adj"])),
    tensor!("sum", 1, 0, Forward::AsWritten, fallible: false, Adjoint::Runtime(&["sum_adj"])),
    tensor!("mean", 1, 0, Forward::AsWritten, fallible: true, Adjoint::Runtime(&["mean_adj"])),
    tensor!("sum_axis", 1, 1, Forward::AsWritten, fallible: false, Adjoint::Runtime(&["sum_axis_adj"])),
    tensor!("mean_axis", 1, 1, Forward::AsWritten, fallible: true, Adjoint::Runtime(&["mean_axis_adj"])),
    tensor!("insert_axis", 1, 1, Forward::Runtime("insert_axis"), fallible: false, Adjoint::Runtime(&["insert_axis_adj"])),
    tensor!("into_shape_with_order", 1, 1, Forward::Runtime("into_shape_with_order"), fallible: true, Adjoint::Runtime(&["reshape_adj"])),
    tensor!("to_shape", 1, 1, Forward::AsWritten, fallible: true, Adjoint::Runtime(&["reshape_adj"])),
    tensor!("clone", 1, 0, Forward::AsWritten, fallible: false, Adjoint::Linear(&[true])),
    tensor!("to_owned", 1, 0, Forward::AsWritten, fallible: false, Adjoint::Linear(&[true])),
    tensor!("view", 1, 0, Forward::AsWritten, fallible: false, Adjoint::Linear(&[true])),
    tensor!("to_vec", 1, 0, Forward::AsWritten, fallible: false, Adjoint::Linear(&[true])),
    // `m.diag()`: the main diagonal, a view; its adjoint is placed on a zero matrix's.
    tensor!("diag", 1, 0, Forward::AsWritten, fallible: false, Adjoint::Runtime(&["diag_adj"])),
    tensor!("row", 1, 1, Forward::AsWritten, fallible: false, Adjoint::Scatter("row_acc")),
    tensor!("column", 1, 1, Forward::AsWritten, fallible: false, Adjoint::Scatter("column_acc")),
    // `x.slice(s![..])` of an ndarray array: a view; its adjoint adds into that part.
    tensor!("slice", 1, 1, Forward::AsWritten, fallible: false, Adjoint::Scatter("slice_acc")),
    // Piecewise constant: zero derivative.
    zero!("signum"),
    zero!("floor"),
    zero!("ceil"),
    zero!("round"),
    zero!("trunc"),
    // `x.stop_gradient()` (the runtime's `StopGradient`): the value, treated as a constant.
    zero!("stop_gradient"),
];

impl Rule {
    /// Computed in the forward sweep exactly as written (so also callable as `f64::name`).
    pub fn forward_as_written(&self) -> bool {
        matches!(self.forward, Forward::AsWritten)
    }

    /// A transcendental function of scalars, which costs several times a tape's push and
    /// pop: a value of one that the reverse of a loop needs is recorded rather than computed
    /// again (`tbr`).
    pub fn costly(&self) -> bool {
        self.kind == Kind::Method
            && matches!(
                self.name,
                "exp"
                    | "exp2"
                    | "exp_m1"
                    | "ln"
                    | "ln_1p"
                    | "log"
                    | "log2"
                    | "log10"
                    | "powf"
                    | "cbrt"
                    | "hypot"
                    | "sin"
                    | "cos"
                    | "tan"
                    | "asin"
                    | "acos"
                    | "atan"
                    | "atan2"
                    | "sinh"
                    | "cosh"
                    | "tanh"
                    | "asinh"
                    | "acosh"
                    | "atanh"
            )
    }

    /// The output is a view that borrows the operand, which must live as long as it.
    pub fn borrows(&self) -> bool {
        matches!(
            self.name,
            "range"
                | "slice"
                | "diag"
                | "t"
                | "row"
                | "column"
                | "view"
                | "to_shape"
                | "insert_axis"
                | "reversed_axes"
                | "into_shape_with_order"
        )
    }
}

/// The rule for an operator: `add sub mul div neg`, `range` for `&x[a..b]`, and `flatten` /
/// `unflatten` for buffers of points.
pub fn operator(name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.kind == Kind::Operator && r.name == name)
}

/// The rule for a float method, if the table has one.
pub fn method(name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.kind == Kind::Method && r.name == name)
}

/// The methods the table knows, for error messages.
pub fn method_names() -> String {
    RULES
        .iter()
        .filter(|r| r.kind == Kind::Method)
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(" ")
}
