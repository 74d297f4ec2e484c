//! The intermediate form the body is lowered into (A-normal form).
//!
//! Every primitive operation's result is bound to its own variable, and every variable is
//! assigned exactly once (user variables that are reassigned get a new version per
//! assignment). `if` stays structured, with its merges made explicit as [`Phi`]s.

use crate::rules::Rule;
use proc_macro2::{Ident, Span, TokenStream};
use syn::Type;

pub type VarId = usize;

pub struct Var {
    /// The name it is emitted under: a parameter's own name, or a generated one.
    pub name: Ident,
    /// A name for its adjoint, derived from `name` (filled in by the namer).
    pub adjoint: Ident,
    /// Depends on a differentiated parameter through differentiable operations.
    pub active: bool,
    /// The type the user wrote on the `let`, kept in the forward sweep.
    pub ty: Option<Type>,
}

/// A value an operation reads.
#[derive(Clone)]
pub enum Operand {
    Var(VarId),
    /// A literal or a path to a constant: emitted as written, never active.
    Const(TokenStream),
}

impl Operand {
    pub fn var(&self) -> Option<VarId> {
        match self {
            Operand::Var(v) => Some(*v),
            Operand::Const(_) => None,
        }
    }
}

/// How a rule was written, which the forward sweep keeps.
#[derive(Clone)]
pub enum CallForm {
    /// `x.sin()`, `x.powi(2)`.
    Method(Ident),
    /// `f64::sin(x)`.
    Path(TokenStream),
}

pub enum Op {
    /// `y = x` (a binding, or a cast to the function's float type).
    Copy(Operand),
    /// An operator or float method from the rules table. `args` are the float operands
    /// (receiver first), `ints` the other arguments (`powi`'s exponent).
    Prim {
        rule: &'static Rule,
        form: CallForm,
        args: Vec<Operand>,
        ints: Vec<Operand>,
        /// Kept after the call in the forward sweep: `.unwrap()` after `mean()`.
        suffix: TokenStream,
        span: Span,
    },
    /// `recv.mapv(f)`.
    Map {
        recv: Operand,
        func: MapFn,
        span: Span,
    },
    /// A call to a function whose pullback is `path_pullback` (composition and custom
    /// derivatives).
    Call {
        path: syn::Path,
        pullback: syn::Path,
        args: Vec<Operand>,
        /// Which arguments the user passed by reference (`g(&a)`); the pullback gets them the
        /// same way.
        refs: Vec<bool>,
    },
    /// An expression whose value does not depend on any differentiated value (integer code,
    /// comparisons, constants): emitted as written, with variables renamed.
    Verbatim(TokenStream),
}

/// The function a `mapv` applies.
pub enum MapFn {
    /// `f64::exp`: a one-operand rule of the table.
    Rule(&'static Rule, TokenStream),
    /// `|v| ..`: the closure as the forward sweep runs it, and its body lowered as a function
    /// of `v` (variable 0) for the element-wise pullback.
    Closure {
        forward: TokenStream,
        function: Box<Function>,
    },
}

pub struct Phi {
    pub out: VarId,
    pub then: Operand,
    pub els: Operand,
}

pub enum Stmt {
    Let {
        var: VarId,
        op: Op,
    },
    If {
        cond: TokenStream,
        then: Block,
        els: Block,
        phis: Vec<Phi>,
        /// Holds which arm ran and what its reverse sweep needs.
        record: VarId,
    },
    /// A statement kept for its effect only (`assert!`).
    Effect(TokenStream),
}

#[derive(Default)]
pub struct Block {
    pub stmts: Vec<Stmt>,
}

pub struct Function {
    pub vars: Vec<Var>,
    /// `const` and `use` items of the body, emitted first.
    pub items: Vec<TokenStream>,
    pub body: Block,
    pub result: Operand,
}

impl Op {
    /// The operands the reverse sweep may propagate adjoints into.
    pub fn operands(&self) -> Vec<&Operand> {
        match self {
            Op::Copy(o) => vec![o],
            Op::Prim { args, .. } => args.iter().collect(),
            Op::Call { args, .. } => args.iter().collect(),
            Op::Map { recv, .. } => vec![recv],
            Op::Verbatim(_) => vec![],
        }
    }
}

impl Block {
    /// Variables defined directly in this block (not inside its `if` arms).
    pub fn defined(&self) -> Vec<VarId> {
        let mut out = Vec::new();
        for s in &self.stmts {
            match s {
                Stmt::Let { var, .. } => out.push(*var),
                Stmt::If { phis, record, .. } => {
                    out.extend(phis.iter().map(|p| p.out));
                    out.push(*record);
                }
                Stmt::Effect(_) => {}
            }
        }
        out
    }
}
