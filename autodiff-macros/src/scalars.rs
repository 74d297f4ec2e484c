//! Which values are known, at expansion, to be plain scalars of the function's float type.
//!
//! The macro does not need the types of locals: the reverse sweep goes through the runtime's
//! generic helpers (`__rt::pb2(&a, &b, &y, &dy, |a, b, y, dy| dy * b)`, `__rt::acc`), which
//! serve scalars, arrays and broadcasting alike. That generality costs compile time (every
//! helper call is a trait resolution, every rule's closure a new function for rustc to build)
//! and makes the expansion hard to read. For a value this pass proves to be a scalar, the
//! emitters write the rule itself instead: `d_a += d_y * b;`.
//!
//! A value is a scalar when the user declared it so (`x: f64`, `let v: f64 = ..`), when it is
//! an element of a float container (`x[i]` with `x: &[f64]`, `Array2<f64>` or a
//! `vec![0.0; n]` buffer), when it is float arithmetic on literals, known scalars and
//! `.. as f64` casts of integer code (`2.0 / s as f64`), `sum()`/`mean()` of an
//! array, or when an element-wise rule (operators, float methods) gets only scalars. Anything
//! else (a call's result, a tensor primitive, an unrecognised expression) is left unknown and
//! keeps the generic path: the pass only ever changes how a gradient is written, never what it
//! computes.

use crate::ir::{Block, Function, MapFn, Op, Operand, Stmt, VarId};
use crate::rules::{Adjoint, Kind};
use crate::signature::{element_type, float_type, Signature};
use proc_macro2::{Ident, Spacing, TokenStream, TokenTree};
use std::collections::{HashMap, HashSet};
use syn::Type;

/// Fills in `Var::scalar` for the function (and the closures of its `mapv`s).
pub fn infer(f: &mut Function, sig: &Signature) {
    let mut facts = Facts::new(f, &sig.float);
    for (k, p) in sig.params.iter().enumerate() {
        facts.scalar[k] = is_float(&p.ty, &sig.float);
        facts.elements[k] = holds_floats(&p.ty, &sig.float);
        facts.points[k] =
            crate::signature::points(&p.ty).is_some() || crate::signature::rows(&p.ty).is_some();
    }
    facts.run(f, sig.output.is_none());
    let mut arrays = sig
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == crate::signature::Kind::Array)
        .map(|(k, _)| k)
        .collect();
    let rank = |r: usize| -> HashSet<VarId> {
        sig.params
            .iter()
            .enumerate()
            .filter(|(_, p)| crate::signature::ndarray_rank(&p.ty) == Some(r))
            .map(|(k, _)| k)
            .collect()
    };
    let mut matrices = rank(2);
    known_matrices(&f.body, &mut matrices);
    known_arrays(&f.body, &mut arrays, &matrices);
    f.arrays = arrays;
    let mut vectors = rank(1);
    known_vectors(f, &f.body, &mut vectors, &matrices);
    f.vectors = vectors;
    f.flat = sig
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| crate::signature::slice_element(&p.ty).is_some())
        .map(|(k, _)| k)
        .collect();
    float_vec_buffers(&f.body, &f.vars, &mut f.flat);
    // Parameters of primitive types and shared references, and the float's scalars (which the
    // comparisons and casts of integer code read).
    let mut copies: HashSet<VarId> = sig
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            is_primitive(&p.ty) || matches!(&p.ty, Type::Reference(r) if r.mutability.is_none())
        })
        .map(|(k, _)| k)
        .chain((0..f.vars.len()).filter(|&v| f.vars[v].scalar))
        .collect();
    known_copies(&f.body, &mut copies, &f.by_name());
    f.copies = copies;
}

/// The primitive types, by name: `Copy`.
const PRIMITIVES: [&str; 16] = [
    "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
    "isize", "f32", "f64",
];

/// A primitive type (`usize`, `bool`, `f64`, ..).
fn is_primitive(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .get_ident()
            .is_some_and(|i| PRIMITIVES.iter().any(|n| i == n)),
        _ => false,
    }
}

/// Adds the values `b` computes that are `Copy` for sure: the variable of a `for` over a
/// range (an integer), a copy of one, an expression of literals, operators, casts, `.len()` and
/// known `Copy` values (`i + 1`, `k % 3 == 0`, `steps < 20`), an `if`'s value from two of them,
/// and a loop's carried value whose first and every next value are.
fn known_copies(b: &Block, set: &mut HashSet<VarId>, by_name: &HashMap<String, VarId>) {
    let member = |o: &Operand, set: &HashSet<VarId>| match o {
        Operand::Var(v) => set.contains(v),
        Operand::Const(t) => copy_tokens(t.clone(), set, by_name),
    };
    let op = |op: &Op, set: &HashSet<VarId>| match op {
        Op::Verbatim(t) => copy_tokens(t.clone(), set, by_name),
        Op::Copy(o) => member(o, set),
        _ => false,
    };
    grow(
        b,
        set,
        &Growth {
            op: &op,
            member: &member,
            merges: true,
            ranges: true,
        },
    );
}

/// A range (`a..b`, `a..=b`, `(a..b).rev()`, `(a..b).step_by(k)`): its items are integers.
fn is_range(iter: &TokenStream) -> bool {
    let dots = |t: &TokenStream| {
        t.clone()
            .into_iter()
            .any(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == '.' && p.spacing() == Spacing::Joint))
    };
    match iter.clone().into_iter().next() {
        Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Parenthesis => {
            dots(&g.stream())
        }
        _ => dots(iter),
    }
}

/// Tokens of an expression made of literals, operators, parentheses, `as` casts to primitive
/// types, `.len()`, and names in `set`: its value is `Copy`.
fn copy_tokens(
    tokens: TokenStream,
    set: &HashSet<VarId>,
    by_name: &HashMap<String, VarId>,
) -> bool {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut k = 0;
    while k < trees.len() {
        let ok = match &trees[k] {
            TokenTree::Literal(_) => true,
            TokenTree::Punct(p) => {
                if p.as_char() == '.' && p.spacing() == Spacing::Alone {
                    // Only `.len()`.
                    let len = matches!(trees.get(k + 1), Some(TokenTree::Ident(i)) if i == "len")
                        && matches!(trees.get(k + 2), Some(TokenTree::Group(g)) if g.stream().is_empty());
                    k += 2;
                    len
                } else {
                    !matches!(p.as_char(), ':' | ';' | '#' | '$' | '?' | '@' | '\'')
                }
            }
            TokenTree::Ident(i) => {
                i == "true"
                    || i == "false"
                    || i == "as"
                    || PRIMITIVES.iter().any(|n| i == n)
                    || by_name.get(&i.to_string()).is_some_and(|v| set.contains(v))
            }
            TokenTree::Group(g) => {
                g.delimiter() == proc_macro2::Delimiter::Parenthesis
                    && copy_tokens(g.stream(), set, by_name)
            }
        };
        if !ok {
            return false;
        }
        k += 1;
    }
    !trees.is_empty()
}

/// Adds the buffers `b` declares with `vec![0.0; n]` (or a list of float literals).
fn float_vec_buffers(b: &Block, vars: &[crate::ir::Var], out: &mut HashSet<VarId>) {
    for s in &b.stmts {
        match s {
            Stmt::Let {
                var,
                op: Op::Verbatim(tokens),
            } if vars[*var].buffer && is_float_vec(tokens) => {
                out.insert(*var);
            }
            // A buffer of points kept flat, copied from a parameter's points.
            Stmt::Let {
                var,
                op: Op::Prim { rule, .. },
            } if vars[*var].buffer && matches!(rule.name, "flatten" | "flatten_rows") => {
                out.insert(*var);
            }
            Stmt::If { then, els, .. } => {
                float_vec_buffers(then, vars, out);
                float_vec_buffers(els, vars, out);
            }
            Stmt::Loop(l) => float_vec_buffers(&l.body, vars, out),
            _ => {}
        }
    }
}

/// Adds the values `b` computes that have two dimensions or more for sure: a copy, `mapv`,
/// transpose or element-wise operation (broadcasting keeps the larger rank) of one.
fn known_matrices(b: &Block, matrices: &mut HashSet<VarId>) {
    grow(
        b,
        matrices,
        &Growth::of(&|op, matrices| {
            let matrix = |o: &Operand| o.var().is_some_and(|v| matrices.contains(&v));
            match op {
                Op::Copy(o) => matrix(o),
                Op::Map { recv, .. } => matrix(recv),
                Op::Prim { rule, args, .. } => {
                    (matches!(rule.adjoint, Adjoint::Linear(_) | Adjoint::Elementwise(_))
                        || matches!(rule.name, "t" | "reversed_axes"))
                        && args.iter().any(matrix)
                }
                _ => false,
            }
        }),
    );
}

/// Adds the values `b` computes that are one-dimensional arrays for sure: a row or column
/// (ndarray has them for two dimensions only), a copy or `mapv` of a vector, an element-wise
/// operation on vectors and scalars alone (a matrix operand would broadcast the result), the
/// product of one of the two-dimensional `matrices` and a vector.
fn known_vectors(f: &Function, b: &Block, vectors: &mut HashSet<VarId>, matrices: &HashSet<VarId>) {
    grow(
        b,
        vectors,
        &Growth::of(&|op, vectors| {
            let vector = |o: &Operand| o.var().is_some_and(|v| vectors.contains(&v));
            let matrix = |o: &Operand| o.var().is_some_and(|v| matrices.contains(&v));
            match op {
                Op::Copy(o) => vector(o),
                Op::Map { recv, .. } => vector(recv),
                Op::Prim { rule, args, .. } if rule.name == "dot" => match args.as_slice() {
                    [a, b] => (matrix(a) && vector(b)) || (vector(a) && matrix(b)),
                    _ => false,
                },
                Op::Prim { rule, args, .. } => {
                    matches!(rule.name, "row" | "column")
                        || (matches!(rule.adjoint, Adjoint::Linear(_) | Adjoint::Elementwise(_))
                            && args.iter().any(vector)
                            && args.iter().all(|a| vector(a) || f.is_scalar(a)))
                }
                _ => false,
            }
        }),
    );
}

/// What [`grow`] adds to a set: values whose operation `op` accepts, given the set so far; with
/// `merges`, an `if`'s value whose two arms' values are `member`s; with `ranges`, the variable
/// of a `for` over a range.
struct Growth<'a> {
    op: &'a dyn Fn(&Op, &HashSet<VarId>) -> bool,
    member: &'a dyn Fn(&Operand, &HashSet<VarId>) -> bool,
    merges: bool,
    ranges: bool,
}

impl<'a> Growth<'a> {
    /// Operations alone; an operand belongs when it is a variable of the set.
    fn of(op: &'a dyn Fn(&Op, &HashSet<VarId>) -> bool) -> Growth<'a> {
        Growth {
            op,
            member: &|o, set| o.var().is_some_and(|v| set.contains(&v)),
            merges: false,
            ranges: false,
        }
    }
}

/// Adds to `set` every value `b` defines (in `if` arms and loops too) that `g` accepts. A
/// loop's carried value belongs when its first value does and, assuming so for its entry, so
/// does its value at the end of an iteration (`h = w.dot(&h).mapv(f64::tanh)` keeps a vector a
/// vector); the assumption is dropped for those whose end value does not, until none is left
/// to drop.
fn grow(b: &Block, set: &mut HashSet<VarId>, g: &Growth<'_>) {
    for s in &b.stmts {
        match s {
            Stmt::Let { var, op } => {
                if (g.op)(op, set) {
                    set.insert(*var);
                }
            }
            Stmt::If {
                then, els, phis, ..
            } => {
                grow(then, set, g);
                grow(els, set, g);
                if g.merges {
                    for p in phis {
                        if (g.member)(&p.then, set) && (g.member)(&p.els, set) {
                            set.insert(p.out);
                        }
                    }
                }
            }
            Stmt::Loop(l) => {
                if let (true, crate::ir::LoopKind::For { var, iter }) = (g.ranges, &l.kind) {
                    if is_range(iter) {
                        set.insert(*var);
                    }
                }
                let mut assumed: Vec<&crate::ir::Carried> = l
                    .carried
                    .iter()
                    .filter(|c| (g.member)(&c.init, set))
                    .collect();
                loop {
                    let mut trial = set.clone();
                    trial.extend(assumed.iter().map(|c| c.entry));
                    grow(&l.body, &mut trial, g);
                    let before = assumed.len();
                    assumed.retain(|c| (g.member)(&c.exit, &trial));
                    if assumed.len() == before {
                        *set = trial;
                        set.extend(assumed.iter().map(|c| c.after));
                        break;
                    }
                }
            }
            Stmt::Effect(_) | Stmt::Store { .. } => {}
        }
    }
}

/// Adds the values `b` computes that are arrays for sure: an operation on an array (all but
/// `sum` and `mean`, which reduce it to a scalar, and `dot`, which does for two vectors,
/// unless one operand is one of the `matrices`), `mapv` of one, a copy or merge of one, a
/// loop's carried value that starts as one. A call's result, whatever its arguments, is left
/// unknown.
fn known_arrays(
    b: &Block,
    arrays: &mut std::collections::HashSet<VarId>,
    matrices: &std::collections::HashSet<VarId>,
) {
    let array = |o: &Operand, arrays: &std::collections::HashSet<VarId>| {
        o.var().is_some_and(|v| arrays.contains(&v))
    };
    for s in &b.stmts {
        match s {
            Stmt::Let { var, op } => {
                let is = match op {
                    Op::Copy(o) => array(o, arrays),
                    Op::Prim { rule, args, .. } if rule.name == "dot" => args
                        .iter()
                        .any(|a| a.var().is_some_and(|v| matrices.contains(&v))),
                    Op::Prim { rule, args, .. } => {
                        !matches!(rule.name, "sum" | "mean")
                            && args.iter().any(|a| array(a, arrays))
                    }
                    Op::Map { recv, .. } => array(recv, arrays),
                    _ => false,
                };
                if is {
                    arrays.insert(*var);
                }
            }
            Stmt::If {
                then, els, phis, ..
            } => {
                known_arrays(then, arrays, matrices);
                known_arrays(els, arrays, matrices);
                for p in phis {
                    if array(&p.then, arrays) || array(&p.els, arrays) {
                        arrays.insert(p.out);
                    }
                }
            }
            Stmt::Loop(l) => {
                for c in &l.carried {
                    if array(&c.init, arrays) {
                        arrays.extend([c.entry, c.after]);
                    }
                }
                known_arrays(&l.body, arrays, matrices);
            }
            Stmt::Effect(_) | Stmt::Store { .. } => {}
        }
    }
}

struct Facts {
    float: Ident,
    /// Each variable by its emitted name (unique in a function), for a closure's copies.
    by_name: HashMap<String, VarId>,
    scalar: Vec<bool>,
    /// A container whose elements are scalars.
    elements: Vec<bool>,
    /// Local buffers (written by index).
    buffers: Vec<bool>,
    /// A container of fixed-size float arrays (`&[[f64; 3]]`): its elements hold floats.
    points: Vec<bool>,
}

impl Facts {
    fn new(f: &Function, float: &Ident) -> Facts {
        let n = f.vars.len();
        let mut facts = Facts {
            float: float.clone(),
            by_name: f.by_name(),
            scalar: vec![false; n],
            elements: vec![false; n],
            buffers: f.vars.iter().map(|v| v.buffer).collect(),
            points: vec![false; n],
        };
        for (k, v) in f.vars.iter().enumerate() {
            if let Some(ty) = &v.ty {
                facts.scalar[k] = is_float(ty, float);
                facts.elements[k] = holds_floats(ty, float);
                // A column of points or rows (`columns.rs`).
                facts.points[k] = crate::signature::rows(ty).is_some();
            }
        }
        facts
    }

    fn run(mut self, f: &mut Function, returns_float: bool) {
        loop {
            self.block(&mut f.body);
            if !self.demanded(f, returns_float) {
                break;
            }
        }
        for (v, s) in f.vars.iter_mut().zip(self.scalar) {
            v.scalar = s;
        }
    }

    /// Floats known from where values go rather than where they come from: the function's
    /// value (a float), a loop-carried float's next value, an `if`'s arms merged into a float,
    /// an element stored into a buffer of floats; and, back through them, the operands of
    /// `+ - * /` and of float methods computing a float (with the standard and ndarray types,
    /// an array operand makes an array). A value
    /// of unknown type so found, a call's result (`e += pair(a, b)`) or an element read by
    /// value (`p.w[i]` of a struct's field), becomes a known scalar. Says whether any did.
    fn demanded(&mut self, f: &Function, returns_float: bool) -> bool {
        let mut floats = self.scalar.clone();
        if let (true, Some(v)) = (returns_float, f.result.var()) {
            floats[v] = true;
        }
        let mut defs: HashMap<VarId, &Op> = HashMap::new();
        /// Marks the values merged into a float by an `if` or carried into one by a loop;
        /// says whether any was new.
        fn merges<'f>(
            b: &'f Block,
            floats: &mut [bool],
            defs: &mut HashMap<VarId, &'f Op>,
            elements: &[bool],
        ) -> bool {
            let mark = |v: Option<VarId>, floats: &mut [bool]| match v {
                Some(v) if !floats[v] => {
                    floats[v] = true;
                    true
                }
                _ => false,
            };
            let mut changed = false;
            for s in &b.stmts {
                match s {
                    Stmt::Let { var, op } => {
                        defs.insert(*var, op);
                    }
                    Stmt::If {
                        then, els, phis, ..
                    } => {
                        changed |= merges(then, floats, defs, elements);
                        changed |= merges(els, floats, defs, elements);
                        for p in phis {
                            if floats[p.out] {
                                changed |= mark(p.then.var(), floats);
                                changed |= mark(p.els.var(), floats);
                            }
                        }
                    }
                    Stmt::Loop(l) => {
                        for c in &l.carried {
                            if floats[c.entry] || floats[c.after] {
                                changed |= mark(c.exit.var(), floats);
                            }
                        }
                        changed |= merges(&l.body, floats, defs, elements);
                    }
                    // An element stored into a buffer of floats.
                    Stmt::Store {
                        buf, value, part, ..
                    } if elements[*buf] && !matches!(part, crate::ir::Part::View(_)) => {
                        changed |= mark(value.var(), floats);
                    }
                    Stmt::Effect(_) | Stmt::Store { .. } => {}
                }
            }
            changed
        }
        loop {
            let merged = merges(&f.body, &mut floats, &mut defs, &self.elements);
            // Back through the arithmetic (definitions come before uses, so a pass from the
            // last variable back reaches every operand).
            let mut changed = false;
            for v in (0..f.vars.len()).rev() {
                if !floats[v] {
                    continue;
                }
                if let Some(Op::Prim { rule, args, .. }) = defs.get(&v) {
                    let arithmetic = rule.kind == Kind::Operator
                        && matches!(rule.name, "add" | "sub" | "mul" | "div" | "rem" | "neg");
                    let float_method = rule.kind == Kind::Method
                        && matches!(rule.adjoint, Adjoint::Elementwise(_));
                    if arithmetic || float_method {
                        for a in args.iter().filter_map(|a| a.var()) {
                            changed |= !floats[a];
                            floats[a] = true;
                        }
                    }
                }
                if let Some(Op::Copy(Operand::Var(a))) = defs.get(&v) {
                    changed |= !floats[*a];
                    floats[*a] = true;
                }
            }
            if !(merged || changed) {
                break;
            }
        }
        let mut changed = false;
        for (v, op) in defs {
            let owned_unknown = match op {
                Op::Call { .. } => true,
                Op::Index { by_ref, .. } => !by_ref,
                _ => false,
            };
            if floats[v] && owned_unknown && !self.scalar[v] && !self.buffers[v] {
                self.scalar[v] = true;
                changed = true;
            }
        }
        changed
    }

    /// An operand of a float operation: a constant there is a literal or a path to a float
    /// constant (`PI`), never an array (arrays have no arithmetic constants).
    fn operand(&self, o: &Operand) -> bool {
        match o {
            Operand::Var(v) => self.scalar[*v],
            Operand::Const(_) => true,
        }
    }

    /// A value bound or carried as it is (`let v = ..;`, `let mut s = ..;`): a constant there
    /// counts only when it is a literal, since a path may name an array constant.
    fn value(&self, o: &Operand) -> bool {
        match o {
            Operand::Var(v) => self.scalar[*v],
            Operand::Const(t) => is_literal(t),
        }
    }

    fn block(&mut self, b: &mut Block) {
        for s in &mut b.stmts {
            match s {
                Stmt::Let { var, op } => {
                    if matches!(op, Op::Prim { rule, .. } if matches!(rule.name, "unflatten" | "unflatten_rows"))
                    {
                        self.points[*var] = true;
                    }
                    let (scalar, elements) = self.op(op);
                    // A buffer is written by index: never a scalar, whatever it starts from.
                    self.scalar[*var] |= scalar && !self.buffers[*var];
                    self.elements[*var] |= elements;
                }
                Stmt::If {
                    then, els, phis, ..
                } => {
                    self.block(then);
                    self.block(els);
                    for p in phis.iter() {
                        // A merge binds its arms' values as they are, like a `let`.
                        self.scalar[p.out] |= self.value(&p.then) && self.value(&p.els);
                    }
                }
                Stmt::Loop(l) => {
                    // A carried variable has one type: its initial value's.
                    for c in &l.carried {
                        let s = self.value(&c.init);
                        let e = c.init.var().is_some_and(|v| self.elements[v]);
                        for v in [c.entry, c.after] {
                            self.scalar[v] |= s;
                            self.elements[v] |= e;
                        }
                    }
                    self.block(&mut l.body);
                }
                Stmt::Effect(_) | Stmt::Store { .. } => {}
            }
        }
    }

    /// (scalar, container of scalars) for the value an operation computes.
    fn op(&mut self, op: &mut Op) -> (bool, bool) {
        match op {
            Op::Copy(o) => (self.value(o), o.var().is_some_and(|v| self.elements[v])),
            // A buffer of points kept flat holds floats; read back, it holds points.
            Op::Prim { rule, .. } if matches!(rule.name, "flatten" | "flatten_rows") => {
                (false, true)
            }
            Op::Prim { rule, .. } if matches!(rule.name, "unflatten" | "unflatten_rows") => {
                (false, false)
            }
            Op::Prim { rule, args, .. } => match rule.adjoint {
                Adjoint::Zero | Adjoint::Linear(_) | Adjoint::Elementwise(_) => {
                    // A method's receiver may be a path that derefs to an array
                    // (`W.clone()` of a static): there only literals count.
                    let all = match rule.kind {
                        Kind::Operator => args.iter().all(|a| self.operand(a)),
                        Kind::Method => args.iter().all(|a| self.value(a)),
                    };
                    // `x.clone()`, `x.to_vec()` of a float container.
                    let container =
                        args.len() == 1 && args[0].var().is_some_and(|v| self.elements[v]);
                    (all, container)
                }
                Adjoint::Runtime(_) => (matches!(rule.name, "sum" | "mean"), false),
                // A part of a float container (`&x[a..b]`, `m.row(i)`) holds floats too.
                Adjoint::Scatter(_) => (false, args[0].var().is_some_and(|v| self.elements[v])),
            },
            Op::Index { base, .. } => match base.var() {
                Some(v) => (self.elements[v], self.points[v]),
                None => (false, false),
            },
            Op::Verbatim(tokens) => (
                self.float_expr(tokens) || self.is_element(tokens),
                is_float_vec(tokens) || self.is_part(tokens),
            ),
            Op::Map { func, .. } => {
                if let MapFn::Closure { function, .. } = func {
                    self.closure(function);
                }
                (false, false)
            }
            // A differentiated function returns one float or, vector-valued, an array.
            Op::Call { .. } => (false, false),
            // A fused sum (made after this pass runs).
            Op::Fused { .. } => (true, false),
        }
    }

    /// Code that can only compute a float: terms joined by `+ - * /`, each a float literal, a
    /// known scalar, `<one operand> as f64` or such an expression in parentheses
    /// (`2.0 / s as f64`, `(n + 1) as f64 * 0.5`). Anything else (a comparison, `%`, a name
    /// of unknown type) is not classified.
    fn float_expr(&self, tokens: &TokenStream) -> bool {
        let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
        let mut terms: Vec<&[TokenTree]> = Vec::new();
        let mut start = 0;
        for (k, t) in trees.iter().enumerate() {
            if let TokenTree::Punct(p) = t {
                if matches!(p.as_char(), '+' | '-' | '*' | '/') && p.spacing() == Spacing::Alone {
                    terms.push(&trees[start..k]);
                    start = k + 1;
                }
            }
        }
        terms.push(&trees[start..]);
        let last = terms.len() - 1;
        terms.iter().enumerate().all(|(k, term)| match term {
            // A unary minus leaves an empty term before it.
            [] => k < last,
            [TokenTree::Literal(l)] => syn::parse_str::<syn::LitFloat>(&l.to_string()).is_ok(),
            // A constant of a generic float: `F::from_f64(0.5)`, `F::one()`.
            term if float_constructor(term) => true,
            [TokenTree::Ident(i)] => self
                .by_name
                .get(&i.to_string())
                .is_some_and(|&v| self.scalar[v]),
            [TokenTree::Group(g)] => {
                g.delimiter() == proc_macro2::Delimiter::Parenthesis && self.float_expr(&g.stream())
            }
            [.., TokenTree::Ident(a), TokenTree::Ident(f)] => {
                a == "as" && *f == self.float && term.len() > 2
            }
            // A one-operand float method of the table on a known scalar: `t.powi(j as i32)`,
            // `t.sqrt()` (its other arguments are integer code).
            [TokenTree::Ident(recv), TokenTree::Punct(dot), TokenTree::Ident(m), TokenTree::Group(args)] => {
                dot.as_char() == '.'
                    && args.delimiter() == proc_macro2::Delimiter::Parenthesis
                    && crate::rules::method(&m.to_string()).is_some_and(|r| {
                        r.floats == 1
                            && !r.fallible
                            && matches!(
                                r.adjoint,
                                Adjoint::Zero | Adjoint::Linear(_) | Adjoint::Elementwise(_)
                            )
                    })
                    && self
                        .by_name
                        .get(&recv.to_string())
                        .is_some_and(|&v| self.scalar[v])
            }
            _ => false,
        })
    }

    /// `x[i]` of a float container that is not differentiated (integer code keeps it as
    /// written).
    fn is_element(&self, tokens: &TokenStream) -> bool {
        let mut trees = tokens.clone().into_iter();
        match (trees.next(), trees.next(), trees.next()) {
            (Some(TokenTree::Ident(base)), Some(TokenTree::Group(g)), None) => {
                g.delimiter() == proc_macro2::Delimiter::Bracket && self.holds_floats(&base)
            }
            _ => false,
        }
    }

    /// The variable named `name` is a container of floats.
    fn holds_floats(&self, name: &Ident) -> bool {
        self.by_name
            .get(&name.to_string())
            .is_some_and(|&v| self.elements[v])
    }

    /// A float container that is not differentiated, in part or copied: `&x[a..b]`, or a
    /// one-operand linear rule of the table applied to it (`x.to_vec()`, `x.clone()`,
    /// `x.to_owned()`, `x.view()`), as a differentiated one would be classified.
    fn is_part(&self, tokens: &TokenStream) -> bool {
        let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
        let range = |g: &proc_macro2::Group| {
            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
            g.delimiter() == proc_macro2::Delimiter::Bracket
                && inner.windows(2).any(|w| {
                    matches!(w, [TokenTree::Punct(a), TokenTree::Punct(b)]
                        if a.as_char() == '.' && b.as_char() == '.')
                })
        };
        match trees.as_slice() {
            [TokenTree::Punct(amp), TokenTree::Ident(base), TokenTree::Group(g)] => {
                amp.as_char() == '&' && range(g) && self.holds_floats(base)
            }
            [TokenTree::Ident(base), TokenTree::Punct(dot), TokenTree::Ident(m), TokenTree::Group(args)] =>
            {
                let copy = crate::rules::method(&m.to_string()).is_some_and(|r| {
                    matches!(r.adjoint, Adjoint::Linear(_)) && r.floats == 1 && r.ints == 0
                });
                dot.as_char() == '.'
                    && copy
                    && args.delimiter() == proc_macro2::Delimiter::Parenthesis
                    && args.stream().is_empty()
                    && self.holds_floats(base)
            }
            _ => false,
        }
    }

    /// A `mapv` closure: its parameter is an element; the outer values it sees keep what is
    /// known of them (the closure's copies carry the same names).
    fn closure(&self, function: &mut Function) {
        let mut inner = Facts::new(function, &self.float);
        inner.scalar[0] = true;
        for (k, v) in function.vars.iter().enumerate().skip(1) {
            if let Some(&outer) = self.by_name.get(&v.name.to_string()) {
                inner.scalar[k] |= self.scalar[outer];
                inner.elements[k] |= self.elements[outer];
            }
        }
        inner.run(function, true);
    }
}

/// `f64` (the function's float) as written.
fn is_float(ty: &Type, float: &Ident) -> bool {
    float_type(ty).is_some_and(|f| f == *float)
}

/// A slice, `Vec`, fixed-size array or ndarray array of the function's float, owned or
/// borrowed.
fn holds_floats(ty: &Type, float: &Ident) -> bool {
    let inner = match ty {
        Type::Reference(r) => &*r.elem,
        t => t,
    };
    if let Type::Array(a) = inner {
        return is_float(&a.elem, float);
    }
    !is_float(ty, float)
        && crate::signature::points(ty).is_none()
        && crate::signature::rows(ty).is_none()
        && element_type(ty).is_some_and(|f| f == *float)
}

/// A literal, negated or not, in parentheses or not: `2.0`, `-1.0`, `(-1.0f64)` (the lowering
/// writes a negative constant so).
fn is_literal(tokens: &TokenStream) -> bool {
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    match trees.as_slice() {
        [TokenTree::Literal(_)] => true,
        [TokenTree::Punct(minus), TokenTree::Literal(_)] => minus.as_char() == '-',
        [TokenTree::Group(g)] => {
            g.delimiter() == proc_macro2::Delimiter::Parenthesis && is_literal(&g.stream())
        }
        _ => false,
    }
}

/// A constant of a generic float `F` (the float type of the function being expanded):
/// `F::from_f64(..)`, `F::from_usize(..)`, `F::zero()`, `F::one()`, `F::pi()`,
/// `F::epsilon()`, or the conversion the macro writes, `<F as ::autodiff::__rt::Real>::from_f64(..)`.
fn float_constructor(trees: &[TokenTree]) -> bool {
    const CONSTRUCTORS: &[&str] = &["from_f64", "from_usize", "zero", "one", "pi", "epsilon"];
    let call = |name: &TokenTree, args: &TokenTree| {
        matches!(name, TokenTree::Ident(m) if CONSTRUCTORS.iter().any(|c| m == c))
            && matches!(args, TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Parenthesis)
    };
    let generic = |t: &TokenTree| matches!(t, TokenTree::Ident(f) if !crate::signature::is_primitive_float(f) && crate::signature::is_float_name(f));
    match trees {
        [ty, TokenTree::Punct(_), TokenTree::Punct(_), name, args] => {
            generic(ty) && call(name, args)
        }
        [TokenTree::Punct(lt), ty, TokenTree::Ident(as_), rest @ ..]
            if lt.as_char() == '<' && as_ == "as" && generic(ty) =>
        {
            matches!(rest, [.., TokenTree::Punct(gt), TokenTree::Punct(_), TokenTree::Punct(_), name, args]
                if gt.as_char() == '>' && call(name, args))
        }
        _ => false,
    }
}

/// `::std::vec![0.0; n]` or `vec![1.5, 2.0]`: a vector of float literals.
fn is_float_vec(tokens: &TokenStream) -> bool {
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let Some(TokenTree::Group(g)) = trees.last() else {
        return false;
    };
    // `vec![0.0; n]`, or a fixed-size array `[0.0; 3]` (`[0.0 as f64; 2]`) alone.
    let is_vec = trees
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i == "vec"))
        || (trees.len() == 1 && g.delimiter() == proc_macro2::Delimiter::Bracket);
    let inside: Vec<TokenTree> = g.stream().into_iter().collect();
    let first = inside
        .split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ';' || p.as_char() == ','))
        .next()
        .unwrap_or_default();
    is_vec
        && match first {
            [TokenTree::Literal(l)] => syn::parse_str::<syn::LitFloat>(&l.to_string()).is_ok(),
            term => float_constructor(term),
        }
}
