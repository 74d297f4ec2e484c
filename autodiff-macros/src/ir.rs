//! The intermediate form the body is lowered into (A-normal form).
//!
//! Every primitive operation's result is bound to its own variable, and every variable is
//! assigned exactly once (user variables that are reassigned get a new version per
//! assignment). `if` stays structured, with its merges made explicit as [`Phi`]s.

use crate::rules::Rule;
use proc_macro2::{Ident, Span, TokenStream};
use std::collections::HashMap;
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
    /// A local buffer written element by element (`v[i] = ..`): one mutable storage, not SSA.
    pub buffer: bool,
    /// Known to be a scalar of the function's float type (filled in by `scalars::infer`):
    /// its rules are written out inline instead of through the runtime's generic helpers.
    pub scalar: bool,
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
    /// A call to another differentiated function or method (composition and custom
    /// derivatives).
    Call {
        callee: Callee,
        args: Vec<Operand>,
        /// Which arguments the user passed by reference (`g(&a)`); the pullback gets them the
        /// same way.
        refs: Vec<bool>,
        /// The callee returns a tuple of this many floats (`let (r, t) = polar(x, y);`): the
        /// forward sweep holds it as an array, the pullback gets the tuple back.
        tuple: Option<usize>,
        /// A function returning one float whose pullback the forward sweep takes with its
        /// value (`calls`): `g::value_and_pullback(.., 1.0)` gives the value and the
        /// arguments' gradients for a unit adjoint, which the reverse sweep scales, so `g`
        /// runs once rather than again inside its pullback. The name the call binds them to,
        /// and the variable that holds them (bound next).
        grads: Option<(Ident, VarId)>,
    },
    /// An expression whose value does not depend on any differentiated value (integer code,
    /// comparisons, constants): emitted as written, with variables renamed.
    Verbatim(TokenStream),
    /// `.sum()` (or `.mean()`) of element-wise operations fused into one pass (`fuse`):
    /// `function` of the inputs' elements (its variables `0..inputs.len()`), summed over their
    /// common shape.
    Fused {
        inputs: Vec<Operand>,
        function: Box<Function>,
        float: Ident,
        /// `.mean()` rather than `.sum()` (its `.unwrap()` dropped: the runtime panics on an
        /// empty array).
        mean: bool,
        /// The fused operations, for a panic message: "`+`, `tanh`".
        ops: String,
        /// Where the sum is differentiated: its derivatives with respect to the active inputs,
        /// computed in the same pass as the sum and scaled by the reverse sweep; the name the
        /// call binds them to, and the variable that holds them (bound next).
        grads: Option<(Ident, VarId)>,
    },
    /// `base[index]`: an element of an array, slice, `Vec` or local buffer.
    Index {
        base: Operand,
        index: Operand,
        /// A read of a buffer inside a loop: the forward sweep tapes the value for the
        /// recomputation in the reverse sweep (the buffer may have changed since).
        tape: Option<ReadTape>,
        /// A row of nested `Vec`s (`w[i]` of a `&[Vec<f64>]`), which is not `Copy`: bound by
        /// reference, `&w[i]`.
        by_ref: bool,
    },
}

/// What a [`Op::Call`] calls, and so where its pullback is.
pub enum Callee {
    /// `g(..)` or `physics::g(..)`: its pullback is `g::pullback`, on the companion type
    /// `#[differentiate]` writes beside `fn g`.
    Function {
        path: syn::Path,
        pullback: syn::Path,
    },
    /// `self.energy(..)` or `model.energy(..)`: a method of a value that is not
    /// differentiated; its pullback is the method `energy_pullback` beside it.
    Method { recv: Operand, method: Ident },
}

impl Callee {
    /// The call's function, before its arguments: `g` or `model.energy`.
    pub fn forward(&self, mut recv: impl FnMut(&Operand) -> TokenStream) -> TokenStream {
        match self {
            Callee::Function { path, .. } => quote::quote!(#path),
            Callee::Method { recv: r, method } => {
                let r = recv(r);
                quote::quote!(#r.#method)
            }
        }
    }

    /// The pullback's: `g::pullback` or `model.energy_pullback`.
    pub fn pullback(&self, mut recv: impl FnMut(&Operand) -> TokenStream) -> TokenStream {
        match self {
            Callee::Function { pullback, .. } => quote::quote!(#pullback),
            Callee::Method { recv: r, method } => {
                let r = recv(r);
                let pullback = quote::format_ident!("{}_pullback", method);
                quote::quote!(#r.#pullback)
            }
        }
    }

    /// The receiver of a method.
    pub fn receiver(&self) -> Option<&Operand> {
        match self {
            Callee::Function { .. } => None,
            Callee::Method { recv, .. } => Some(recv),
        }
    }
}

/// Where a loop keeps the buffer values its body read: the tape, and the cursor the reverse
/// sweep reads it with.
#[derive(Clone)]
pub struct ReadTape {
    pub tape: Ident,
    pub cursor: Ident,
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
    /// `buf[index] = value` into a local buffer, or `buf.row_mut(index).assign(&value)` (a
    /// [`Part`] of an array buffer).
    Store {
        buf: VarId,
        index: Operand,
        value: Operand,
        part: Part,
    },
    Loop(Box<Loop>),
}

/// What a store writes.
#[derive(Clone)]
pub enum Part {
    /// `buf[index] = value`: one element.
    Element,
    /// `buf.row_mut(index).assign(&value)`, `column_mut`, `slice_mut(s![..])` (the method):
    /// the view's elements, from an array broadcast to its shape.
    View(Ident),
    /// A `push` (`desugar::pushes`): `buf[index] = value`, the `Vec` extended to hold it
    /// first when it is shorter (`__rt::set_grow`).
    Grow,
}

/// A loop. Variables it reassigns are carried from one iteration to the next: each has one
/// mutable storage, read in the body as `entry` and after the loop as `after` (both under the
/// storage's name), assigned `exit` at the end of every iteration.
pub struct Loop {
    pub kind: LoopKind,
    pub carried: Vec<Carried>,
    pub body: Block,
    /// The break flag at the end of an iteration, when the body can `break`.
    pub brk: Option<Operand>,
    /// Nested in another loop's body.
    pub nested: bool,
    /// In an `if` arm (outside any loop): its trip count is declared with the tapes, at the
    /// top of the companion, since the arm's reverse runs in the arm of a `match` on the
    /// branch record, where the forward arm's locals are out of scope.
    pub in_arm: bool,
    /// Generated names: the trip count, the tape of iteration entries, the tape of exits (for
    /// a nested loop), and the tape of buffer reads with its cursor.
    pub count: Ident,
    pub tape: Ident,
    pub exits: Ident,
    pub reads: ReadTape,
}

pub enum LoopKind {
    /// `for var in iter`, `iter` kept as written (renamed); the reverse sweep runs it backwards.
    For { var: VarId, iter: TokenStream },
    /// `while cond`.
    While { cond: TokenStream },
    /// `loop`, left by `break`.
    Forever,
}

pub struct Carried {
    pub entry: VarId,
    pub init: Operand,
    pub exit: Operand,
    pub after: VarId,
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
    /// Values inside loops that the reverse sweep pops instead of computing them again: integer
    /// values that read a buffer a later store can change, and scalars of a costly rule
    /// (`Rule::costly`, `x.exp()`). The forward sweep tapes each (on the tape named here) where
    /// the reverse of its loop needs it (filled by the to-be-recorded analysis).
    pub recorded: HashMap<VarId, Recorded>,
    /// The attribute's `checkpoint` option (see `LoopPlan::checkpoint`).
    pub checkpoint: bool,
    /// Top-level loops (by tape name) run fused with their reverse where they stand in the
    /// forward sweep, each iteration reversed at once (`Reverse::early_loops`).
    pub early: std::collections::HashSet<String>,
    /// The differentiated fields of struct parameters the body reads (`fields.rs`): the
    /// parameter, the field's path (`w`, `layer.w`), and the variable that stands for it (bound to `&p.field`
    /// before the forward sweep, its adjoint that field of the parameter's gradient).
    pub fields: Vec<(VarId, Vec<syn::Member>, VarId)>,
    /// The slices of structs differentiated field by field (`columns.rs`), by parameter: an
    /// adjoint of one as a whole (from a function it is passed to) is a `Vec` of the struct.
    pub elements: Vec<VarId>,
    /// The columns of those whose elements are passed whole to differentiated calls
    /// (`columns::Usage::whole`): their adjoints hold each element's gradient too.
    pub element_columns: Vec<VarId>,
    /// Values known to be ndarray arrays (filled in by `scalars::infer`): an array parameter
    /// and what operations on one compute. A loop may record the shape of one instead of
    /// computing it again (`reverse::Shaped`); a value of unknown type may be a scalar, for
    /// which a push and a pop cost more than the arithmetic.
    pub arrays: std::collections::HashSet<VarId>,
    /// Known one-dimensional arrays (filled in by `scalars::infer`): an `Array1` parameter, a
    /// row or column, element-wise operations and `mapv`s of them. A `dot` with one of them
    /// inside a loop is recorded rather than computed again (`tbr`).
    pub vectors: std::collections::HashSet<VarId>,
    /// Reads of a row or column that no later store writes (`tbr`'s sweeps, `states.row(t - 1)`
    /// in a loop storing `states.row_mut(t)`): read where they are by the reverse sweep, and
    /// no read of the buffer's contents that a checkpointed iteration needs restored.
    pub swept: std::collections::HashSet<VarId>,
    /// Slices and vectors of the function's float whose adjoint is a `Vec` (filled in by
    /// `scalars::infer`): a `&[f64]` or `Vec<f64>` parameter, a `vec![0.0; n]` buffer. A loop
    /// over a range may take a window of such an adjoint (`reverse::Promotion::Slice`).
    pub flat: std::collections::HashSet<VarId>,
    /// Values known to be `Copy` (filled in by `scalars::infer`): the float's scalars,
    /// integers and flags, copied rather than cloned onto tapes and into loop storage.
    pub copies: std::collections::HashSet<VarId>,
}

/// Where a recorded value goes.
pub struct Recorded {
    pub tape: Ident,
    /// Its loop's [`Loop::counted_range`] is known: the tape's room is reserved when the loop
    /// starts (kept here because the statement's emitter does not see its loop).
    pub exact: bool,
    /// A window of a buffer (`tbr`'s window copies): a view in the forward sweep, its
    /// elements copied onto the runtime's `WindowTape` and read back in place by the reverse
    /// iteration.
    pub window: bool,
}

impl Op {
    /// A rule of the table the macro applies itself (a copy of a buffer, a buffer of points
    /// flattened): `rule` of `arg`, with `ints`, written as a method.
    pub fn generated(rule: &'static Rule, arg: Operand, ints: Vec<Operand>) -> Op {
        Op::Prim {
            rule,
            form: CallForm::Method(Ident::new(rule.name, Span::call_site())),
            args: vec![arg],
            ints,
            suffix: TokenStream::new(),
            span: Span::call_site(),
        }
    }

    /// The operands the reverse sweep may propagate adjoints into.
    pub fn operands(&self) -> Vec<&Operand> {
        match self {
            Op::Copy(o) => vec![o],
            Op::Prim { args, .. } => args.iter().collect(),
            Op::Call { callee, args, .. } => callee.receiver().into_iter().chain(args).collect(),
            Op::Map { recv, .. } => vec![recv],
            Op::Fused { inputs, .. } => inputs.iter().collect(),
            Op::Index { base, .. } => vec![base],
            Op::Verbatim(_) => vec![],
        }
    }
}

impl Function {
    /// Adds `var`, bound by `op` right after statement `at` of `b` (a fused sum's or a call's
    /// derivatives, kept beside the value they come with); returns its id.
    pub fn bind_after(&mut self, b: &mut Block, at: usize, var: Var, op: Op) -> VarId {
        self.vars.push(var);
        let id = self.vars.len() - 1;
        b.stmts.insert(at + 1, Stmt::Let { var: id, op });
        id
    }

    /// Does `v`'s adjoint hold a gradient per element of structs (a slice of structs, or a
    /// column of one whose elements are passed whole): zeroed by `zero_elements`?
    pub fn holds_elements(&self, v: VarId) -> bool {
        self.elements.contains(&v) || self.element_columns.contains(&v)
    }

    /// A known scalar of the function's float (see `scalars`); constants count as scalars.
    pub fn is_scalar(&self, o: &Operand) -> bool {
        o.var().is_none_or(|v| self.vars[v].scalar)
    }

    /// Each variable by its emitted name (unique in a function).
    pub fn by_name(&self) -> HashMap<String, VarId> {
        self.vars
            .iter()
            .enumerate()
            .map(|(k, v)| (v.name.to_string(), k))
            .collect()
    }

    /// Is `v` known to be `Copy` (a scalar of the float, an integer, a flag)?
    pub fn is_copy(&self, v: VarId) -> bool {
        self.vars[v].scalar || self.copies.contains(&v)
    }
}

impl Loop {
    /// A `for` loop without `break`: its trip count is known when it starts (the range it
    /// runs over), so its tapes can get their room then.
    pub fn counted_range(&self) -> Option<&TokenStream> {
        match &self.kind {
            LoopKind::For { iter, .. } if self.brk.is_none() => Some(iter),
            _ => None,
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
                Stmt::Loop(l) => out.extend(l.carried.iter().map(|c| c.after)),
                Stmt::Effect(_) | Stmt::Store { .. } => {}
            }
        }
        out
    }
}
