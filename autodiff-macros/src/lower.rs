//! Phase 3: lower the body into the A-normal-form [`ir`](crate::ir), rejecting what cannot be
//! differentiated with an error on the construct itself.
//!
//! - Every float operation on a differentiated value gets its own variable.
//! - Reassigned variables are renamed per assignment (SSA); `if` merges become [`Phi`]s.
//! - Expressions that do not depend on a differentiated value (integer code, comparisons,
//!   constants) are kept whole, with variables renamed ([`Op::Verbatim`]).
//! - An early `return` moves the code that follows its `if` into the arms that fall through,
//!   so every path ends in the function's value.

use crate::ir::{
    Block, CallForm, Callee, Carried, Function, Loop, LoopKind, MapFn, Op, Operand, Part, Phi,
    ReadTape, Stmt, Var, VarId,
};
use crate::names::Namer;
use crate::rules::{self, Adjoint, Rule};
use crate::signature::{cast, float_type, is_float_name, Errors, Param, Signature};
use crate::AppendStream;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use std::collections::{HashMap, HashSet};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{BinOp, Expr, ItemFn, Pat, Type, UnOp};

mod points;

/// Lowers `func`'s body; `active` says which parameters are differentiated.
///
/// Whether a loop-carried variable or a buffer is differentiated can depend on what the loop
/// does later (`let mut s = 0.0; for .. { s += x[i]; }`): lowering runs again, with those
/// marked active from the start, until nothing changes.
pub fn lower(
    func: &ItemFn,
    sig: &Signature,
    active: impl Fn(&Param) -> bool,
    namer: &mut Namer,
) -> syn::Result<Function> {
    // Fields of struct parameters read as slices of structs (`self.bodies[i].mass`): read
    // by a name of their own, like a slice of structs parameter (errors name them as written).
    let owners = sig.of_kind(crate::signature::Kind::Struct);
    let (slices, renamed) = match owners.is_empty() {
        true => (Vec::new(), None),
        false => crate::columns::field_slices(&func.block, &owners),
    };
    let read_by_name = renamed.map(|block| {
        let mut copy = func.clone();
        *copy.block = block;
        copy
    });
    let func = read_by_name.as_ref().unwrap_or(func);
    lower_walked(func, sig, &slices, active, namer)
        .map_err(|e| crate::columns::as_written(e, &slices, sig))
}

/// [`lower`] of a body whose fields read as slices of structs are `slices`.
fn lower_walked(
    func: &ItemFn,
    sig: &Signature,
    slices: &[crate::columns::FieldSlice],
    active: impl Fn(&Param) -> bool,
    namer: &mut Namer,
) -> syn::Result<Function> {
    // Slices of structs: walks and bindings of their elements written as element reads, before
    // the rewriting of iterator chains (a zip becomes a `take`, which it writes as what it
    // stands for) and again after it (a closure called with an element is inlined there).
    let mut elements: Vec<Ident> = sig
        .of_kind(crate::signature::Kind::Structs)
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    elements.extend(slices.iter().map(|s| s.name.clone()));
    let mut func = func;
    let walked;
    if !elements.is_empty() {
        let mut copy = func.clone();
        crate::columns::normalize(&mut copy.block, &elements)?;
        walked = copy;
        func = &walked;
    }
    let desugared = crate::desugar::apply(func);
    let mut func = desugared.as_ref().unwrap_or(func);
    let normalized;
    if !elements.is_empty() && desugared.is_some() {
        let mut copy = func.clone();
        crate::columns::normalize(&mut copy.block, &elements)?;
        normalized = copy;
        func = &normalized;
    }
    let start = namer.clone();
    let mut forced = HashSet::new();
    loop {
        *namer = start.clone();
        let (mut function, more) = lower_once(func, sig, slices, &active, namer, &forced)?;
        if more.is_subset(&forced) {
            mark_loops_in_arms(&mut function.body, false);
            return Ok(function);
        }
        forced.extend(more);
    }
}

/// Marks the loops in `if` arms outside any loop ([`Loop::in_arm`]).
fn mark_loops_in_arms(b: &mut Block, in_arm: bool) {
    for s in &mut b.stmts {
        match s {
            Stmt::Loop(l) => l.in_arm = in_arm && !l.nested,
            Stmt::If { then, els, .. } => {
                mark_loops_in_arms(then, true);
                mark_loops_in_arms(els, true);
            }
            _ => {}
        }
    }
}

fn lower_once(
    func: &ItemFn,
    sig: &Signature,
    slices: &[crate::columns::FieldSlice],
    active: &impl Fn(&Param) -> bool,
    namer: &mut Namer,
    forced: &HashSet<String>,
) -> syn::Result<(Function, HashSet<String>)> {
    let mut lw = Lowerer::new(sig.float.clone(), namer, forced);
    lw.buffer_names = buffer_targets(&func.block);
    for p in &sig.params {
        // A row of nested `Vec`s, or an element of a slice of structs (passed whole to a
        // function): read by reference.
        if crate::signature::rows(&p.ty).is_some() || p.kind == crate::signature::Kind::Structs {
            lw.row_bases.insert(lw.vars.len());
        }
        if let Some((_, width)) = crate::signature::points(&p.ty) {
            lw.points_params.insert(lw.vars.len(), width.clone());
        }
        if crate::signature::is_ndarray(&p.ty) && crate::signature::ndarray_rank(&p.ty) != Some(1) {
            lw.arrays_nd.push(lw.vars.len());
        }
        if matches!(p.ty, Type::Reference(_)) && crate::signature::fixed_array(&p.ty).is_some() {
            lw.array_refs.push(lw.vars.len());
        }
        if let Type::Reference(r) = &p.ty {
            let vec = matches!(&*r.elem, Type::Path(tp) if tp.path.segments.last().is_some_and(|s| s.ident == "Vec"));
            if matches!(&*r.elem, Type::Slice(_) | Type::Array(_)) || vec {
                lw.walkable.push(lw.vars.len());
            }
        }
        let id = lw.vars.len();
        let adjoint = lw.namer.fresh(&format!("d_{}", p.ident));
        lw.vars.push(Var {
            name: p.ident.clone(),
            adjoint,
            // A slice of structs is differentiated through its columns; what else reads it
            // (its length, constant fields) is constant.
            active: active(p) && p.kind != crate::signature::Kind::Structs,
            ty: None,
            buffer: false,
            scalar: false,
        });
        lw.scopes[0].insert(p.ident.to_string(), id);
    }
    // A field read as a slice of structs: a variable after the parameters, read like one,
    // bound to `&p.field` before the forward sweep; its gradient is that field of `p`'s.
    let n = sig.params.len();
    for s in slices {
        let id = lw.vars.len();
        let adjoint = lw.namer.fresh(&format!("d_{}", s.name));
        lw.vars.push(Var {
            name: s.name.clone(),
            adjoint,
            active: false,
            ty: None,
            buffer: false,
            scalar: false,
        });
        lw.scopes[0].insert(s.name.to_string(), id);
        lw.row_bases.insert(id);
        let (name, owner, path) = (&s.name, &sig.params[s.owner].ident, &s.path);
        lw.items.push(quote!(let #name = &#owner.#(#path).*;));
        lw.field_vars.push((s.owner, s.path.clone(), id));
    }
    // The parameters, and the fields read as slices of structs after them.
    lw.params = lw.vars.len();
    // Whether a slice of structs (a parameter, or a field read as one) is differentiated.
    let slice_active = |k: usize| match k.checked_sub(n) {
        None => active(&sig.params[k]),
        Some(j) => active(&sig.params[slices[j].owner]),
    };
    // Each differentiated field a struct parameter's body reads: a variable like a parameter,
    // bound to `&p.field` before the forward sweep.
    lw.struct_params = sig.of_kind(crate::signature::Kind::Struct);
    let mut column_params = sig.of_kind(crate::signature::Kind::Structs);
    column_params.extend(
        slices
            .iter()
            .enumerate()
            .map(|(j, s)| (n + j, s.name.clone())),
    );
    let slice_name = |k: usize| -> Ident {
        let (_, name) = column_params
            .iter()
            .find(|(c, _)| *c == k)
            .expect("a slice");
        name.clone()
    };
    // The columns (variable, slice, field, first read's span), in the order of their reads.
    let mut columns = Vec::new();
    if !lw.struct_params.is_empty() || !column_params.is_empty() {
        for field in crate::fields::scan(&func.block, &lw.struct_params, &column_params) {
            let path = &field.path;
            let key = field_key(path);
            if column_params.iter().any(|(k, _)| *k == field.param) {
                let param = slice_name(field.param);
                match field.constant {
                    // Checked not to be a float, at its read (the closure is never called).
                    Some(last) => lw.items.push(quote::quote_spanned!(last=> {
                        use ::autodiff::__rt::{FloatProbe as _, OtherProbe as _};
                        ::autodiff::__rt::constant_column(&#param[..], |element| {
                            (&::autodiff::__rt::ConstantProbe(&element.#(#path).*)).probe()
                        });
                    })),
                    // A column: the field of every element, bound before the forward sweep
                    // (below, once the reads say what it holds).
                    None => {
                        let hint = std::iter::once(param.to_string())
                            .chain(path.iter().map(crate::fields::member_name))
                            .collect::<Vec<_>>()
                            .join("_");
                        let id = lw.new_var(&hint, slice_active(field.param), None);
                        let name = lw.vars[id].name.clone();
                        lw.scopes[0].insert(name.to_string(), id);
                        lw.field_vars.push((field.param, path.clone(), id));
                        columns.push((id, field.param, path.clone(), key, field.span));
                    }
                }
                continue;
            }
            let p = &sig.params[field.param];
            // A constant field is checked not to be a float, at its read: the probe's tokens
            // take the span of the read's field (the `s` of `p.s`; one span, which both the
            // compiler's tokens and the in-process ones keep alike).
            if let Some(last) = field.constant {
                let param = &p.ident;
                lw.items.push(quote::quote_spanned!(last=> {
                    use ::autodiff::__rt::{FloatProbe as _, OtherProbe as _};
                    ::autodiff::__rt::constant_field(
                        (&::autodiff::__rt::ConstantProbe(&#param.#(#path).*)).probe()
                    );
                }));
            }
            let var = field.constant.is_none().then(|| {
                let hint = std::iter::once(p.ident.to_string())
                    .chain(path.iter().map(crate::fields::member_name))
                    .collect::<Vec<_>>()
                    .join("_");
                let id = lw.new_var(&hint, active(p), None);
                let (name, param) = (&lw.vars[id].name, &p.ident);
                // A `Copy` field by value (a float), any other by reference.
                lw.items.push(quote!(let #name = {
                    use ::autodiff::__rt::{FieldByRef as _, FieldByValue as _};
                    (&::autodiff::__rt::Field(&#param.#(#path).*)).get()
                };));
                lw.field_vars.push((field.param, path.clone(), id));
                id
            });
            lw.fields.insert((field.param, key), var);
        }
    }
    // Each read of a column's field as a read of the column (`bodies_pos[i][k]`).
    let columned;
    let block = match column_params.is_empty() {
        true => &func.block,
        false => {
            let mut copy = func.block.clone();
            let names = columns
                .iter()
                .map(|(id, param, _, key, _)| ((*param, key.clone()), lw.vars[*id].name.clone()))
                .collect();
            let read = crate::columns::to_columns(&mut copy, &column_params, &names)?;
            // A slice passed whole to a function is differentiated as a whole there.
            for &k in &read.whole {
                lw.vars[k].active = slice_active(k);
            }
            lw.column_params = column_params.clone();
            let usage = read.usage;
            let float = lw.float.clone();
            for (id, param, path, _, span) in columns {
                let name = lw.vars[id].name.clone();
                let usage = usage.get(&name.to_string()).copied().unwrap_or_default();
                let gather = Ident::new(usage.gather(), Span::call_site());
                let param = slice_name(param);
                // The gathering function at the field's first read: its type checks point there.
                let gather = quote_spanned!(span=> ::autodiff::__rt::#gather::<#float, _, _>);
                lw.items
                    .push(quote!(let #name = #gather(&#param[..], |element| {
                    ::core::clone::Clone::clone(&element.#(#path).*)
                });));
                // For the scalar pass: elements that are floats, or that hold floats.
                lw.vars[id].ty = match usage.gather() {
                    "float_column" => Some(syn::parse_quote!(Vec<#float>)),
                    "point_column" => Some(syn::parse_quote!(Vec<Vec<#float>>)),
                    _ => None,
                };
                if usage.indexed || usage.whole {
                    lw.row_bases.insert(id);
                }
                // Elements passed whole to differentiated calls: its adjoint holds each
                // element's gradient, like a slice of structs'.
                if usage.whole {
                    lw.element_columns.push(id);
                }
            }
            columned = copy;
            &columned
        }
    };
    let mut body = Block::default();
    let items = block_items(block, true);
    let result = lw.seq(&items, Level::Function, &mut body);
    let result = match result {
        Ok(Some(r)) => Some(r),
        Ok(None) if lw.errors.is_empty() => {
            lw.errors.push(func.block.span(), "#[differentiate] could not find the function's value: end the body with an expression or `return`");
            None
        }
        Ok(None) => None,
        Err(e) => {
            lw.errors.add(e);
            None
        }
    };
    lw.errors.finish()?;
    let more = std::mem::take(&mut lw.more);
    Ok((
        Function {
            vars: lw.vars,
            items: lw.items,
            body,
            result: result.unwrap_or_else(|| {
                Operand::Const(crate::signature::constant(&sig.float, quote!(0.0)))
            }),
            recorded: HashMap::new(),
            arrays: Default::default(),
            vectors: Default::default(),
            swept: Default::default(),
            flat: Default::default(),
            copies: Default::default(),
            checkpoint: false,
            early: Default::default(),
            fields: lw.field_vars,
            elements: column_params.iter().map(|(k, _)| *k).collect(),
            element_columns: lw.element_columns,
        },
        more,
    ))
}

/// Where a statement sequence is: what `return`, `break` and `continue` mean there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The function's body (and blocks spliced into it): `return` ends the function.
    Function,
    /// A loop's body: `break` and `continue` end the iteration.
    LoopBody,
    /// Anywhere else (a block or `if` used as a value).
    Inner,
}

/// The loop whose body is being lowered.
struct LoopCtx {
    reads: ReadTape,
}

/// The env key of the break flag of the innermost loop (not an identifier, so never a user's).
const BREAK: &str = "#break";

/// One step of a statement sequence: statements, a block's final expression, and scope
/// boundaries (so that a block's statements can be spliced into the sequence around it).
#[derive(Clone, Copy)]
enum Item<'a> {
    Stmt(&'a syn::Stmt),
    /// A final expression; `true` when its value is the sequence's value.
    Expr(&'a Expr, bool),
    Push,
    Pop,
}

fn block_items(block: &syn::Block, value: bool) -> Vec<Item<'_>> {
    let mut items = vec![Item::Push];
    for (i, s) in block.stmts.iter().enumerate() {
        match s {
            syn::Stmt::Expr(e, None) if i + 1 == block.stmts.len() => {
                items.push(Item::Expr(e, value))
            }
            s => items.push(Item::Stmt(s)),
        }
    }
    items.push(Item::Pop);
    items
}

/// What lowering an expression gives: an operand to read, or an operation to bind.
enum Lowered {
    Operand(Operand),
    Op(Op, bool),
}

struct Lowerer<'n> {
    float: Ident,
    namer: &'n mut Namer,
    vars: Vec<Var>,
    scopes: Vec<HashMap<String, VarId>>,
    items: Vec<TokenStream>,
    errors: Errors,
    temps: usize,
    /// Loop-carried variables and buffers known to be differentiated (by key).
    forced: &'n HashSet<String>,
    /// Those found differentiated in this pass.
    more: HashSet<String>,
    loops: Vec<LoopCtx>,
    loop_count: usize,
    /// Names written by index somewhere in the body (`v[i] = ..`): their `let`s make buffers.
    buffer_names: HashSet<String>,
    buffer_count: HashMap<String, usize>,
    buffer_keys: HashMap<VarId, String>,
    /// Parameters that are ndarray arrays of more than one dimension (or of a dynamic number),
    /// whose elements no single index reads.
    arrays_nd: Vec<VarId>,
    /// Parameters that are references to fixed-size arrays (`p: &[f64; 3]`): `*p` is a copy.
    array_refs: Vec<VarId>,
    /// Parameters that are references to slices, `Vec`s or arrays (of anything): `for v in xs`
    /// walks their elements like `xs.iter()`.
    walkable: Vec<VarId>,
    /// How many parameters: the first variables.
    params: usize,
    /// The struct parameters (index, name), and the fields of them the body reads: the
    /// variable standing for each differentiated one, `None` for a constant one (`fields.rs`).
    struct_params: Vec<(usize, Ident)>,
    fields: HashMap<(usize, String), Option<VarId>>,
    /// The differentiated fields' variables, for `Function::fields`.
    field_vars: Vec<(VarId, Vec<syn::Member>, VarId)>,
    /// The slices of structs (index, name), read by their columns (`columns.rs`).
    column_params: Vec<(usize, Ident)>,
    /// The columns whose elements are passed whole to differentiated calls (`columns.rs`,
    /// `Usage::whole`): read like a slice of structs' elements.
    element_columns: Vec<VarId>,
    /// Parameters holding points (`&[[f64; 3]]`, `Vec<[f64; 3]>`), with their width.
    points_params: HashMap<VarId, Expr>,
    /// Local buffers of points, kept flat (`points.rs`), with their width.
    points_buffers: HashMap<VarId, Expr>,
    /// Those of them that hold rows of a width known at run time (`vec![vec![0.0; m]; n]`):
    /// the variables holding the width and the number of rows.
    runtime_rows: HashMap<VarId, (VarId, VarId)>,
    /// Buffers an array literal or `vec![..]` filled, not yet bound to a name.
    fills: HashSet<VarId>,
    /// The items of walks, read by value where the user's code holds a reference (`v` of
    /// `for v in x.iter()`): `*v` in code kept as written is `v`.
    walked_items: HashSet<VarId>,
    /// Containers whose rows are read by reference (`&w[i]`): rows of nested `Vec`s
    /// (`&[Vec<f64>]`), and struct fields read `p.w[i][j]` (of a type the macro cannot see).
    row_bases: HashSet<VarId>,
}

impl<'n> Lowerer<'n> {
    /// A lowerer of a function in `float`, with nothing lowered yet.
    fn new(float: Ident, namer: &'n mut Namer, forced: &'n HashSet<String>) -> Lowerer<'n> {
        Lowerer {
            float,
            namer,
            vars: Vec::new(),
            scopes: vec![HashMap::new()],
            items: Vec::new(),
            errors: Errors::default(),
            temps: 0,
            forced,
            more: HashSet::new(),
            loops: Vec::new(),
            loop_count: 0,
            buffer_names: HashSet::new(),
            buffer_count: HashMap::new(),
            buffer_keys: HashMap::new(),
            arrays_nd: Vec::new(),
            array_refs: Vec::new(),
            walkable: Vec::new(),
            params: 0,
            struct_params: Vec::new(),
            fields: HashMap::new(),
            field_vars: Vec::new(),
            column_params: Vec::new(),
            element_columns: Vec::new(),
            points_params: HashMap::new(),
            points_buffers: HashMap::new(),
            runtime_rows: HashMap::new(),
            fills: HashSet::new(),
            walked_items: HashSet::new(),
            row_bases: HashSet::new(),
        }
    }
}

impl Lowerer<'_> {
    fn new_var(&mut self, hint: &str, active: bool, ty: Option<Type>) -> VarId {
        let name = self.namer.fresh(hint);
        let adjoint = self.namer.fresh(&format!("d_{}", hint));
        self.vars.push(Var {
            name,
            adjoint,
            active,
            ty,
            buffer: false,
            scalar: false,
        });
        self.vars.len() - 1
    }

    fn temp(&mut self, active: bool) -> VarId {
        let hint = format!("t{}", self.temps);
        self.temps += 1;
        self.new_var(&hint, active, None)
    }

    fn lookup(&self, name: &str) -> Option<VarId> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    fn bind(&mut self, name: &Ident, id: VarId) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.to_string(), id);
        }
    }

    /// Points an existing variable at its new version, in the scope that declared it.
    fn rebind(&mut self, name: &Ident, id: VarId) -> bool {
        self.rebind_key(&name.to_string(), id)
    }

    fn rebind_key(&mut self, key: &str, id: VarId) -> bool {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(slot) = scope.get_mut(key) {
                *slot = id;
                return true;
            }
        }
        false
    }

    fn is_active(&self, o: &Operand) -> bool {
        o.var().is_some_and(|v| self.vars[v].active)
    }

    fn tokens(&self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) => self.vars[*v].name.to_token_stream(),
            Operand::Const(t) => t.clone(),
        }
    }

    // ----- statement sequences -------------------------------------------------------------

    /// Lowers a sequence into `out`; returns its value. At function level a `return` ends the
    /// sequence with the function's value; in a loop body `break` and `continue` end the
    /// iteration.
    fn seq(
        &mut self,
        items: &[Item<'_>],
        level: Level,
        out: &mut Block,
    ) -> syn::Result<Option<Operand>> {
        let mut value = None;
        for (i, item) in items.iter().enumerate() {
            let (expr, is_value) = match *item {
                Item::Push => {
                    self.scopes.push(HashMap::new());
                    continue;
                }
                Item::Pop => {
                    self.scopes.pop();
                    continue;
                }
                Item::Stmt(syn::Stmt::Expr(e, _)) => (e, false),
                Item::Stmt(s) => {
                    if let Err(e) = self.stmt(s, out) {
                        self.errors.add(e);
                    }
                    continue;
                }
                Item::Expr(e, v) => (e, v),
            };
            let expr = strip(expr);
            let exits = match level {
                Level::Function => contains_return(expr),
                Level::LoopBody => contains_loop_exit(expr),
                Level::Inner => false,
            };
            if exits {
                match expr {
                    Expr::Return(r) => {
                        return match &r.expr {
                            Some(e) => self.operand(e, out).map(Some),
                            None => Err(syn::Error::new_spanned(
                                r,
                                "`return` without a value in a function that returns a float",
                            )),
                        };
                    }
                    Expr::Break(b) => {
                        if b.label.is_some() || b.expr.is_some() {
                            return Err(syn::Error::new_spanned(
                                b,
                                "#[differentiate] supports plain `break` (no label, no value)",
                            ));
                        }
                        let flag = self.new_var("brk", false, None);
                        out.stmts.push(Stmt::Let {
                            var: flag,
                            op: Op::Verbatim(quote!(true)),
                        });
                        self.rebind_key(BREAK, flag);
                        return Ok(None);
                    }
                    Expr::Continue(c) => {
                        if c.label.is_some() {
                            return Err(syn::Error::new_spanned(
                                c,
                                "#[differentiate] supports plain `continue` (no label)",
                            ));
                        }
                        return Ok(None);
                    }
                    Expr::If(e) => return self.if_split(e, is_value, &items[i + 1..], level, out),
                    Expr::Block(b) if b.label.is_none() => {
                        let mut spliced = block_items(&b.block, is_value);
                        spliced.extend_from_slice(&items[i + 1..]);
                        return self.seq(&spliced, level, out);
                    }
                    Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_)
                        if level == Level::Function =>
                    {
                        let at = find_return(expr)
                            .map_or_else(|| expr.to_token_stream(), |r| r.to_token_stream());
                        return Err(syn::Error::new_spanned(at, "#[differentiate] does not support `return` inside a loop: `break` out of the loop and return after it"));
                    }
                    _ => {
                        return Err(syn::Error::new_spanned(expr, "#[differentiate] supports `return`, `break` and `continue` as statements, inside `if`/`else` arms and blocks; move it out of this expression"));
                    }
                }
            }
            let result = if is_value {
                self.operand(expr, out).map(Some)
            } else {
                self.expr_stmt(expr, out).map(|_| None)
            };
            match result {
                Ok(Some(v)) => value = Some(v),
                Ok(None) => {}
                Err(e) => self.errors.add(e),
            }
        }
        Ok(value)
    }

    /// An `if` with a `return`, `break` or `continue` inside: the rest of the sequence moves
    /// into both arms, so each arm runs to the end of the function (or iteration) on its own.
    /// Variables the arms assign merge in phis after it; at function level so does the value.
    fn if_split(
        &mut self,
        e: &syn::ExprIf,
        value: bool,
        rest: &[Item<'_>],
        level: Level,
        out: &mut Block,
    ) -> syn::Result<Option<Operand>> {
        let cond = self.branch_condition(&e.cond, out)?;
        let record = self.new_var("br", false, None);
        let before = self.scopes.clone();
        let mut then = Block::default();
        let mut items = block_items(&e.then_branch, value);
        items.extend_from_slice(rest);
        let then_val = self.seq(&items, level, &mut then)?;
        let after_then = std::mem::replace(&mut self.scopes, before.clone());
        let mut els = Block::default();
        let else_val = match &e.else_branch {
            Some((_, else_expr)) => {
                let mut items = vec![Item::Push, Item::Expr(else_expr, value), Item::Pop];
                items.extend_from_slice(rest);
                self.seq(&items, level, &mut els)?
            }
            None => self.seq(rest, level, &mut els)?,
        };
        let after_else = std::mem::replace(&mut self.scopes, before.clone());
        let mut phis = self.merge(&before, &after_then, &after_else);
        // The arms ran `rest` to its end, closing the scopes it closes.
        let depth: isize = rest
            .iter()
            .map(|i| match i {
                Item::Push => 1,
                Item::Pop => -1,
                _ => 0,
            })
            .sum();
        for _ in 0..(-depth).max(0) {
            self.scopes.pop();
        }
        let result = if level == Level::Function {
            let (Some(then_val), Some(else_val)) = (then_val, else_val) else {
                return Err(syn::Error::new_spanned(e, "#[differentiate] could not find the function's value on every path through this `if`"));
            };
            let active = self.is_active(&then_val) || self.is_active(&else_val);
            let out_var = self.new_var("ret", active, None);
            phis.push(Phi {
                out: out_var,
                then: then_val,
                els: else_val,
            });
            Some(Operand::Var(out_var))
        } else {
            None
        };
        out.stmts.push(Stmt::If {
            cond,
            then,
            els,
            phis,
            record,
        });
        Ok(result)
    }

    /// Phis for every variable visible before an `if` that its arms leave bound differently;
    /// the merged versions are bound in place.
    fn merge(
        &mut self,
        before: &[HashMap<String, VarId>],
        after_then: &[HashMap<String, VarId>],
        after_else: &[HashMap<String, VarId>],
    ) -> Vec<Phi> {
        let mut phis = Vec::new();
        for (depth, scope) in before.iter().enumerate() {
            let mut names: Vec<(&String, &VarId)> = scope.iter().collect();
            names.sort_by_key(|(_, id)| **id);
            for (name, &id) in names {
                let t = after_then
                    .get(depth)
                    .and_then(|s| s.get(name))
                    .copied()
                    .unwrap_or(id);
                let f = after_else
                    .get(depth)
                    .and_then(|s| s.get(name))
                    .copied()
                    .unwrap_or(id);
                if t == id && f == id {
                    continue;
                }
                let active = self.vars[t].active || self.vars[f].active;
                let hint = if name.starts_with('#') {
                    "brk"
                } else {
                    name.as_str()
                };
                let phi = self.new_var(hint, active, None);
                self.scopes[depth].insert(name.clone(), phi);
                phis.push(Phi {
                    out: phi,
                    then: Operand::Var(t),
                    els: Operand::Var(f),
                });
            }
        }
        phis
    }

    fn stmt(&mut self, s: &syn::Stmt, out: &mut Block) -> syn::Result<()> {
        match s {
            syn::Stmt::Local(local) => self.let_stmt(local, out),
            syn::Stmt::Item(item) => match item {
                syn::Item::Const(_) | syn::Item::Use(_) | syn::Item::Static(_) => {
                    self.items.push(item.to_token_stream());
                    Ok(())
                }
                other => Err(syn::Error::new_spanned(
                    other,
                    "#[differentiate] supports `const`, `static` and `use` items inside the body; move other items out of the function",
                )),
            },
            syn::Stmt::Macro(m) => self.macro_stmt(&m.mac, out),
            syn::Stmt::Expr(e, _) => self.expr_stmt(e, out),
        }
    }

    fn let_stmt(&mut self, local: &syn::Local, out: &mut Block) -> syn::Result<()> {
        let Some(init) = &local.init else {
            return Err(syn::Error::new_spanned(
                local,
                "#[differentiate] needs every `let` to have a value: write `let x = ...;`",
            ));
        };
        if let Some((else_token, _)) = &init.diverge {
            return Err(syn::Error::new_spanned(
                else_token,
                "#[differentiate] could not read this `let ... else`: write it as a `match`",
            ));
        }
        let mut bindings = Vec::new();
        self.pattern(&local.pat, None, &init.expr, &mut bindings, out)?;
        for (name, id) in bindings {
            self.bind(&name, id);
        }
        Ok(())
    }

    /// Lowers `let pat: ty = expr` into variables; binds them only after the whole right-hand
    /// side is evaluated (so `let (a, b) = (b, a)` swaps).
    fn pattern(
        &mut self,
        pat: &Pat,
        ty: Option<&Type>,
        expr: &Expr,
        bindings: &mut Vec<(Ident, VarId)>,
        out: &mut Block,
    ) -> syn::Result<()> {
        match pat {
            Pat::Type(pt) => self.pattern(&pt.pat, Some(&pt.ty), expr, bindings, out),
            Pat::Paren(p) => self.pattern(&p.pat, ty, expr, bindings, out),
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() && self.buffer_names.contains(&pi.ident.to_string()) => {
                let id = self.buffer(&pi.ident, ty, expr, out)?;
                bindings.push((pi.ident.clone(), id));
                Ok(())
            }
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                let id = self.lower_into(expr, &pi.ident.to_string(), ty.cloned(), out)?;
                bindings.push((pi.ident.clone(), id));
                Ok(())
            }
            Pat::Wild(_) => self.expr_stmt(expr, out),
            // `let [a, b, c] = x[i];` (a point of `&[[f64; 3]]`, a fixed-size array): each
            // name an element read.
            Pat::Slice(ps) => {
                // A point of a buffer of points: its elements read where they are; any other
                // array, its elements read out of it.
                let of = match self.points_row_of(expr) {
                    Some((buf, width, i)) => ArrayElements::Row(buf, Box::new((width, i))),
                    None => ArrayElements::Whole(self.operand(expr, out)?),
                };
                let message = "#[differentiate] takes arrays apart into names and `_` only (`let [a, b, _] = p;`)";
                self.take_apart(&ps.elems, message, bindings, out, |lw, k, out| match &of {
                    ArrayElements::Row(buf, at) => {
                        let (width, i) = &**at;
                        lw.row_element_read(*buf, width, i, k, out)
                    }
                    ArrayElements::Whole(whole) => {
                        Ok(lw.index_read(whole.clone(), Operand::Const(quote!(#k)), out))
                    }
                })
            }
            // `let (s, c) = theta.sin_cos();`: the angle once, then its sine and cosine.
            Pat::Tuple(pt) if pt.elems.len() == 2 && sin_cos_of(expr).is_some() && self.mentions_active(expr) => {
                let Some((angle, span)) = sin_cos_of(expr) else { unreachable!() };
                let id = self.lower_into(angle, "angle", None, out)?;
                let name = self.namer.fresh("angle");
                self.bind(&name, id);
                let sin: Expr = syn::parse_quote_spanned!(span=> #name.sin());
                let cos: Expr = syn::parse_quote_spanned!(span=> #name.cos());
                self.pattern(&pt.elems[0], None, &sin, bindings, out)?;
                self.pattern(&pt.elems[1], None, &cos, bindings, out)
            }
            // `let (r, t) = polar(x, y);` of a function returning a tuple of floats: held as an
            // array, each name an element read.
            Pat::Tuple(pt) if matches!(strip(expr), Expr::Call(_)) && self.mentions_active(expr) => {
                let Expr::Call(c) = strip(expr) else { unreachable!() };
                let mut call = self.call(c, out)?;
                if let Lowered::Op(Op::Call { tuple, .. }, _) = &mut call {
                    *tuple = Some(pt.elems.len());
                }
                let whole = Operand::Var(self.bind_lowered(call, "", None, out));
                let message = "#[differentiate] takes the tuple a function returns apart into names and `_` only (`let (r, _) = polar(x, y);`)";
                self.take_apart(&pt.elems, message, bindings, out, |lw, k, out| {
                    Ok(lw.index_read(whole.clone(), Operand::Const(quote!(#k)), out))
                })
            }
            Pat::Tuple(_) if !matches!(strip(expr), Expr::Tuple(_)) && !self.mentions_active(expr) => {
                let value = self.operand(expr, out)?;
                self.constant_pattern(pat, &value, bindings, out)
            }
            Pat::Tuple(pt) => {
                let Expr::Tuple(tuple) = strip(expr) else {
                    return Err(syn::Error::new_spanned(expr, "#[differentiate] destructures only tuple expressions: write `let (a, b) = (x * y, x + y);`"));
                };
                if tuple.elems.len() != pt.elems.len() {
                    return Err(syn::Error::new_spanned(pt, "the tuple pattern and the tuple have different lengths"));
                }
                let types: Vec<Option<&Type>> = match ty {
                    Some(Type::Tuple(tt)) if tt.elems.len() == pt.elems.len() => tt.elems.iter().map(Some).collect(),
                    _ => vec![None; pt.elems.len()],
                };
                for ((p, e), t) in pt.elems.iter().zip(&tuple.elems).zip(types) {
                    self.pattern(p, t, e, bindings, out)?;
                }
                Ok(())
            }
            other if !self.mentions_active(expr) => {
                let value = self.operand(expr, out)?;
                self.constant_pattern(other, &value, bindings, out)
            }
            other => Err(syn::Error::new_spanned(other, "#[differentiate] supports `let` with a name (`let x`, `let mut x`), `_`, a tuple or an array (`let [a, b] = p;`) of those; other patterns take apart only values that are not differentiated")),
        }
    }

    /// Binds each name of an array or tuple pattern to its element, `element(k)`; `_` reads
    /// nothing, any other pattern is an error (`message`).
    fn take_apart(
        &mut self,
        elems: &syn::punctuated::Punctuated<Pat, syn::Token![,]>,
        message: &str,
        bindings: &mut Vec<(Ident, VarId)>,
        out: &mut Block,
        mut element: impl FnMut(&mut Self, usize, &mut Block) -> syn::Result<Operand>,
    ) -> syn::Result<()> {
        for (k, p) in elems.iter().enumerate() {
            match p {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    if let Operand::Var(v) = element(self, k, out)? {
                        bindings.push((pi.ident.clone(), v));
                    }
                }
                Pat::Wild(_) => {}
                other => return Err(syn::Error::new_spanned(other, message)),
            }
        }
        Ok(())
    }

    /// A pattern that takes a value apart which is not differentiated (`&(i, j)` of a bond
    /// list, `Pair { a, b }` of a constant): each name it binds is a constant read out of the
    /// value by a `match` on the pattern (irrefutable, so the other arm never runs).
    fn constant_pattern(
        &mut self,
        pat: &Pat,
        value: &Operand,
        bindings: &mut Vec<(Ident, VarId)>,
        out: &mut Block,
    ) -> syn::Result<()> {
        if self.is_active(value) {
            return Err(syn::Error::new_spanned(pat, "#[differentiate] takes apart with a pattern only values that are not differentiated: bind the value to a name and read its parts (`let p = ..; p.0`, `p[0]`)"));
        }
        // The names it binds (an uppercase one is a constant or a unit variant).
        struct Names(Vec<Ident>);
        impl<'ast> Visit<'ast> for Names {
            fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
                if !p
                    .ident
                    .to_string()
                    .starts_with(|c: char| c.is_ascii_uppercase())
                {
                    self.0.push(p.ident.clone());
                }
                syn::visit::visit_pat_ident(self, p);
            }
        }
        let mut names = Names(Vec::new());
        names.visit_pat(pat);
        let whole = self.tokens(value);
        for name in names.0 {
            let op = Op::Verbatim(quote!(match #whole {
                #pat => #name,
                #[allow(unreachable_patterns)]
                _ => ::core::unreachable!(),
            }));
            let var = self.new_var(&name.to_string(), false, None);
            out.stmts.push(Stmt::Let { var, op });
            bindings.push((name, var));
        }
        Ok(())
    }

    fn macro_stmt(&mut self, mac: &syn::Macro, out: &mut Block) -> syn::Result<()> {
        // An error an earlier rewriting left at the construct (`desugar`, `inline`).
        if mac.path.is_ident("compile_error") {
            let message: syn::LitStr = mac.parse_body()?;
            return Err(syn::Error::new(mac.path.span(), message.value()));
        }
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        // Checks and prints stay in the forward sweep, their arguments read where they stand.
        let allowed = [
            "assert",
            "debug_assert",
            "assert_eq",
            "assert_ne",
            "debug_assert_eq",
            "debug_assert_ne",
            "print",
            "println",
            "eprint",
            "eprintln",
        ];
        if !allowed.contains(&name.as_str()) || mac.path.segments.len() != 1 {
            return Err(syn::Error::new_spanned(
                mac,
                format!("#[differentiate] does not support the macro `{}!` in a differentiated body; only `assert!` and `debug_assert!` (and their `_eq`/`_ne` forms) and the prints (`println!`, `print!`, `eprintln!`, `eprint!`) may stay", name),
            ));
        }
        let args = mac.parse_body_with(
            syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated,
        )?;
        let mut renamed = Vec::new();
        let mut captures = TokenStream::new();
        for a in &args {
            if let Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = a
            {
                // Names captured by a format string (`"{x}"`) are rebound to their versions.
                for name in format_captures(&s.value()) {
                    if let Some(id) = self.lookup(&name) {
                        let user = Ident::new(&name, s.span());
                        let ours = &self.vars[id].name;
                        if *ours != name {
                            captures.append_stream(quote!(let #user = &#ours;));
                        }
                    }
                }
            }
            renamed.push(self.rename(a)?);
        }
        let path = &mac.path;
        out.stmts
            .push(Stmt::Effect(quote!({ #captures #path!(#(#renamed),*) })));
        Ok(())
    }

    /// An expression in statement position (its value, if any, is discarded).
    fn expr_stmt(&mut self, e: &Expr, out: &mut Block) -> syn::Result<()> {
        match strip(e) {
            Expr::Assign(a) if matches!(strip(&a.left), Expr::Index(_)) => {
                let Expr::Index(target) = strip(&a.left) else {
                    unreachable!()
                };
                if self.store_points_row(target, &a.right, out)? {
                    return Ok(());
                }
                let (buf, index) = self.store_target(target, out)?;
                let value = self.operand(&a.right, out)?;
                self.store(buf, index, Part::Element, value, &a.right, out)
            }
            Expr::Binary(b)
                if compound(&b.op).is_some() && matches!(strip(&b.left), Expr::Index(_)) =>
            {
                let Expr::Index(target) = strip(&b.left) else {
                    unreachable!()
                };
                let (buf, index) = self.store_target(target, out)?;
                let old = self.index_read(Operand::Var(buf), index.clone(), out);
                let rhs = self.operand(&b.right, out)?;
                let (op_name, op_tok) = compound(&b.op).unwrap_or(("add", quote!(+)));
                let lowered = self.binop(op_name, op_tok, b.op.span(), old, rhs);
                let value = Operand::Var(self.bind_lowered(lowered, "", None, out));
                self.store(buf, index, Part::Element, value, &b.right, out)
            }
            // `out.push(e)` of a `Vec` built by pushes (`desugar::pushes`): a store at its
            // counter that extends it.
            Expr::MethodCall(m)
                if m.method == crate::desugar::pushes::PUSH && m.args.len() == 2 =>
            {
                let Some(buf) = self.buffer_of(&m.receiver) else {
                    return Err(syn::Error::new_spanned(&m.receiver, "internal: a push into no buffer"));
                };
                let index = self.index_operand(&m.args[0], out)?;
                let value = self.operand(&m.args[1], out)?;
                self.store(buf, index, Part::Grow, value, &m.args[1], out)
            }
            Expr::MethodCall(m) if m.method == "push" && self.mentions_active(e) => Err(syn::Error::new_spanned(
                &m.method,
                "#[differentiate] supports `push` into a local `Vec` declared once, empty (`let mut v = Vec::new();`, `Vec::with_capacity(n)`, `vec![]`)",
            )),
            // `v.swap(i, j)` on a buffer: two reads, two writes.
            Expr::MethodCall(m)
                if m.method == "swap"
                    && m.args.len() == 2
                    && self.buffer_of(&m.receiver).is_some() =>
            {
                if self.swap_points(m, out)? {
                    return Ok(());
                }
                let buf = self.buffer_of(&m.receiver).unwrap_or_default();
                let i = self.index_operand(&m.args[0], out)?;
                let j = self.index_operand(&m.args[1], out)?;
                let at_i = self.index_read(Operand::Var(buf), i.clone(), out);
                let at_j = self.index_read(Operand::Var(buf), j.clone(), out);
                self.store(buf, i, Part::Element, at_j, e, out)?;
                self.store(buf, j, Part::Element, at_i, e, out)
            }
            // `b.row_mut(i).assign(&v)` (`column_mut`, `slice_mut`) on an array buffer.
            Expr::MethodCall(m) if view_store(m).is_some() => {
                let Some((b, method, index, value)) = view_store(m) else {
                    unreachable!()
                };
                let Some(buf) = self.buffer_of(b) else {
                    return Err(syn::Error::new_spanned(
                        b,
                        format!("#[differentiate] writes `{method}(..).assign(..)` only into a local array declared in the function (`let mut b = Array2::zeros((n, m));`)"),
                    ));
                };
                let index = match self.slice_info(index, out) {
                    Some(info) => info,
                    None => self.index_operand(index, out)?,
                };
                let value = self.operand(value, out)?;
                self.store(buf, index, Part::View(method.clone()), value, e, out)
            }
            Expr::ForLoop(f) => self.for_loop(f, out),
            Expr::While(w) => self.while_loop(w, out),
            Expr::Loop(l) => self.forever_loop(l, out),
            Expr::Assign(a) => {
                let name = self.assign_target(&a.left)?;
                let id = self.lower_into(&a.right, &name.to_string(), None, out)?;
                self.rebind(&name, id);
                Ok(())
            }
            Expr::Binary(b) if compound(&b.op).is_some() => {
                let name = self.assign_target(&b.left)?;
                let old = self
                    .lookup(&name.to_string())
                    .map(Operand::Var)
                    .unwrap_or(Operand::Const(quote!(#name)));
                let rhs = self.operand(&b.right, out)?;
                let (op_name, op_tok) = compound(&b.op).unwrap_or(("add", quote!(+)));
                let lowered = self.binop(op_name, op_tok, b.op.span(), old, rhs);
                let id = self.bind_lowered(lowered, &name.to_string(), None, out);
                self.rebind(&name, id);
                Ok(())
            }
            Expr::If(i) => self.if_expr(i, "t", false, out).map(|_| ()),
            Expr::Block(b) if b.label.is_none() => {
                let items = block_items(&b.block, false);
                self.seq(&items, Level::Inner, out).map(|_| ())
            }
            Expr::Macro(m) => self.macro_stmt(&m.mac, out),
            other => {
                if !self.mentions_active(other) && is_plain(other) {
                    let tokens = self.rename(other)?;
                    out.stmts.push(Stmt::Effect(quote!(#tokens;)));
                    Ok(())
                } else {
                    self.operand(other, out).map(|_| ())
                }
            }
        }
    }

    // ----- buffers and indexing -------------------------------------------------------------

    /// `let mut v = init;` where `v` is written by index later: a buffer.
    fn buffer(
        &mut self,
        name: &Ident,
        ty: Option<&Type>,
        init: &Expr,
        out: &mut Block,
    ) -> syn::Result<VarId> {
        let count = self.buffer_count.entry(name.to_string()).or_insert(0);
        let key = format!("buffer:{name}#{count}");
        *count += 1;
        // A buffer of points is kept flat (`points.rs`), its type no longer the one written.
        let points = self.points_init(init, out)?;
        let rows = points.as_ref().and_then(|p| p.rows);
        let (width, lowered, ty) = match points {
            Some(p) => (Some(p.width), p.lowered, None),
            None => {
                let lowered = self.lower(init, &name.to_string(), out)?;
                // Rows of one length, `[[a, b], [c, d]]`: points, kept flat.
                let width = match &lowered {
                    Lowered::Operand(Operand::Var(v)) => self.points_buffers.get(v).cloned(),
                    _ => None,
                };
                let ty = if width.is_some() { None } else { ty };
                (width, lowered, ty)
            }
        };
        let (op, init_active) = match lowered {
            // An array literal or `vec![..]` filled just now: that buffer itself.
            Lowered::Operand(Operand::Var(v)) if self.fills.remove(&v) => {
                self.buffer_keys.insert(v, key);
                return Ok(v);
            }
            // Another buffer or a parameter (`let mut y = x;`): a copy, since the reverse
            // sweep reads the original after the buffer has changed.
            Lowered::Operand(Operand::Var(v)) => {
                let clone = rules::method("clone").expect("the clone rule");
                let op = Op::generated(clone, Operand::Var(v), Vec::new());
                (op, self.vars[v].active)
            }
            Lowered::Operand(o) => {
                let a = self.is_active(&o);
                (Op::Copy(o), a)
            }
            Lowered::Op(op, a) => (op, a),
        };
        let active = init_active || self.forced.contains(&key);
        let var = self.new_var(&name.to_string(), active, ty.cloned());
        self.vars[var].buffer = true;
        self.buffer_keys.insert(var, key);
        if let Some(width) = width {
            self.points_buffers.insert(var, width);
        }
        if let Some(rows) = rows {
            self.runtime_rows.insert(var, rows);
        }
        out.stmts.push(Stmt::Let { var, op });
        Ok(var)
    }

    /// The buffer and index of `v[i] = ..`.
    fn store_target(
        &mut self,
        target: &syn::ExprIndex,
        out: &mut Block,
    ) -> syn::Result<(VarId, Operand)> {
        if matches!(strip(&target.expr), Expr::Index(_)) {
            if let Some(element) = self.points_element(target, out)? {
                return Ok(element);
            }
            return Err(syn::Error::new_spanned(target, "#[differentiate] writes `f[i][k] = ..` only into a local buffer of points, declared `let mut f = vec![[0.0; 3]; n];` (or a copy of a points parameter, `x.to_vec()` of `&[[f64; 3]]`); for other nested containers keep one flat buffer, `let mut f = vec![0.0; 3 * n];`, and write `f[3 * i + k]`"));
        }
        let Some(buf) = self.buffer_of(&target.expr) else {
            return Err(syn::Error::new_spanned(&target.expr, "#[differentiate] supports element writes into local buffers only (`let mut v = vec![0.0; n]; v[i] = ..;`)"));
        };
        let index = self.index_operand(&target.index, out)?;
        Ok((buf, index))
    }

    /// The local buffer `e` names, if it names one.
    fn buffer_of(&self, e: &Expr) -> Option<VarId> {
        let buf = match strip(e) {
            Expr::Path(p) => p.path.get_ident().and_then(|i| self.lookup(&i.to_string())),
            _ => None,
        };
        buf.filter(|b| self.vars[*b].buffer)
    }

    fn store(
        &mut self,
        buf: VarId,
        index: Operand,
        part: Part,
        value: Operand,
        span: &Expr,
        out: &mut Block,
    ) -> syn::Result<()> {
        if self.is_active(&value) && !self.vars[buf].active {
            match self.buffer_keys.get(&buf) {
                Some(key) => {
                    self.more.insert(key.clone());
                }
                None => {
                    return Err(syn::Error::new_spanned(
                        span,
                        "internal: a buffer without a key",
                    ))
                }
            }
        }
        out.stmts.push(Stmt::Store {
            buf,
            index,
            value,
            part,
        });
        Ok(())
    }

    /// Is `e` no float whatever it reads: a constant, a cast to an integer or `bool`, a test
    /// or search ([`yields_constant`]), a size, or arithmetic of those?
    fn constant_valued(&self, e: &Expr) -> bool {
        if !self.mentions_active(e) {
            return true;
        }
        match strip(e) {
            Expr::Cast(c) => float_type(&c.ty).is_none(),
            Expr::Binary(b) => self.constant_valued(&b.left) && self.constant_valued(&b.right),
            Expr::Unary(u) if !matches!(u.op, UnOp::Deref(_)) => self.constant_valued(&u.expr),
            Expr::MethodCall(m) => {
                yields_constant(e) || SIZE_METHODS.contains(&m.method.to_string().as_str())
            }
            _ => false,
        }
    }

    /// An index expression: integer code, never differentiated (it may read differentiated
    /// values where they give an integer: `x.iter().position(..)`, a cast to `usize`).
    fn index_operand(&mut self, index: &Expr, out: &mut Block) -> syn::Result<Operand> {
        let o = self.operand(index, out)?;
        if self.is_active(&o) {
            return Err(syn::Error::new_spanned(
                index,
                "an index cannot depend on a differentiated value",
            ));
        }
        Ok(o)
    }

    /// `&base[a..b]` of a differentiated slice: the `range` rule, a view of part of it whose
    /// adjoint adds into that part of the slice's. Its bounds are passed as integers, `a` (or 0)
    /// and `b` (`b + 1` for `a..=b`, `usize::MAX` for "to the end").
    fn range(
        &mut self,
        base: Operand,
        r: &syn::ExprRange,
        ix: &syn::ExprIndex,
        out: &mut Block,
    ) -> syn::Result<Lowered> {
        if base.var().is_some_and(|b| self.vars[b].buffer) {
            return Err(syn::Error::new_spanned(
                ix,
                "#[differentiate] does not support slicing a buffer written by index (`&buf[a..b]`): read its elements `buf[i]`",
            ));
        }
        let start = match &r.start {
            Some(e) => self.index_operand(e, out)?,
            None => Operand::Const(quote!(0usize)),
        };
        let end = match (&r.end, &r.limits) {
            (Some(e), syn::RangeLimits::HalfOpen(_)) => self.index_operand(e, out)?,
            (Some(e), syn::RangeLimits::Closed(_)) => {
                let e: Expr = syn::parse_quote!((#e) + 1);
                self.index_operand(&e, out)?
            }
            (None, _) => Operand::Const(quote!(::core::primitive::usize::MAX)),
        };
        let Some(rule) = rules::operator("range") else {
            return Err(syn::Error::new_spanned(
                ix,
                "autodiff: no rule for a range index",
            ));
        };
        let active = self.is_active(&base);
        let span = ix.bracket_token.span.join();
        Ok(Lowered::Op(
            Op::Prim {
                rule,
                form: CallForm::Method(Ident::new("range", span)),
                args: vec![base],
                ints: vec![start, end],
                suffix: TokenStream::new(),
                span,
            },
            active,
        ))
    }

    /// `base[index]` as a value.
    fn index_read(&mut self, base: Operand, index: Operand, out: &mut Block) -> Operand {
        let active = self.is_active(&base);
        let by_ref = base.var().is_some_and(|b| self.row_bases.contains(&b));
        let buffer = base.var().is_some_and(|b| self.vars[b].buffer);
        // An element of a value that never changes is read once per scope.
        let key =
            (!buffer).then(|| format!("#index:{}:{}", self.tokens(&base), self.tokens(&index)));
        if let Some(v) = key.as_ref().and_then(|k| self.lookup(k)) {
            return Operand::Var(v);
        }
        let tape = if buffer {
            self.loops.last().map(|l| l.reads.clone())
        } else {
            None
        };
        let var = self.temp(active);
        out.stmts.push(Stmt::Let {
            var,
            op: Op::Index {
                base,
                index,
                tape,
                by_ref,
            },
        });
        // A row bound by reference is walked like a slice (`for v in row`).
        if by_ref {
            self.walkable.push(var);
        }
        if let (Some(key), Some(scope)) = (key, self.scopes.last_mut()) {
            scope.insert(key, var);
        }
        Operand::Var(var)
    }

    // ----- loops ---------------------------------------------------------------------------

    fn for_loop(&mut self, f: &syn::ExprForLoop, out: &mut Block) -> syn::Result<()> {
        if let Some(l) = &f.label {
            return Err(syn::Error::new_spanned(
                l,
                "#[differentiate] does not support loop labels",
            ));
        }
        // `for v in xs.iter()`, `for (a, b) in xs.iter().zip(ys)` (zips nest) and their
        // `.enumerate()` over differentiated slices or arrays become index loops, so that each
        // element is read like `xs[i]`.
        let iter = strip(&f.expr);
        let (chain, enumerated) = match iter {
            Expr::MethodCall(m) if m.method == "enumerate" && m.args.is_empty() => {
                (elements(&m.receiver), true)
            }
            // `for v in xs` / `for v in &xs` of a slice, `Vec` or array parameter: `xs.iter()`.
            Expr::Path(p)
                if p.path
                    .get_ident()
                    .and_then(|i| self.lookup(&i.to_string()))
                    .is_some_and(|v| self.walkable.contains(&v)) =>
            {
                (Some(Elements::Of(iter)), false)
            }
            // `for v in &xs`, `&self.positions`, `&x[1..]` of differentiated values or a buffer.
            Expr::Reference(r)
                if r.mutability.is_none()
                    && (self.mentions_active(&r.expr) || self.buffer_of(&r.expr).is_some()) =>
            {
                (Some(Elements::Of(&r.expr)), false)
            }
            other => (elements(other), false),
        };
        // A walk of constants stays as written, unless its pattern takes the items apart
        // (`for &v in xs.iter()`, `(a, b)` of a zip): then it is the index loop too.
        let plain_pattern = matches!(&*f.pat, Pat::Ident(_) | Pat::Wild(_)) && !enumerated;
        // A walk of a local buffer is by index too: its length is read where the loop starts.
        let chain = chain.filter(|c| {
            c.bases()
                .iter()
                .any(|b| self.mentions_active(b) || self.buffer_of(b).is_some())
                || !plain_pattern
        });
        for b in chain.iter().flat_map(Elements::bases) {
            let param = match strip(b) {
                Expr::Path(p) => p.path.get_ident().and_then(|i| self.lookup(&i.to_string())),
                _ => None,
            };
            if param.is_some_and(|v| self.arrays_nd.contains(&v)) {
                return Err(syn::Error::new_spanned(b, "#[differentiate] walks the elements of slices and one-dimensional arrays by index; for an array of more dimensions use `.mapv(|v| ..).sum()` (one fused pass), or walk its rows"));
            }
        }
        let (index_name, elem_names, iter_tokens) = match &chain {
            Some(chain) => {
                let (index, elems) = match (&*f.pat, enumerated) {
                    (Pat::Tuple(t), true) if t.elems.len() == 2 => {
                        (pat_name(&t.elems[0])?, &t.elems[1])
                    }
                    (p, false) => (None, p),
                    (p, true) => {
                        return Err(syn::Error::new_spanned(
                            p,
                            "write `for (i, v) in xs.iter().enumerate()`",
                        ))
                    }
                };
                let mut names = Vec::new();
                chain.names(elems, &mut names)?;
                let mut len = TokenStream::new();
                for b in chain.bases() {
                    // A buffer of rows: its number of rows.
                    let b_len = match self.runtime_rows_of(b) {
                        Some((_, rows)) => self.vars[rows].name.to_token_stream(),
                        None => {
                            let b = self.rename(b)?;
                            quote!(#b.len())
                        }
                    };
                    len = if len.is_empty() {
                        b_len
                    } else {
                        quote!(::core::cmp::min(#len, #b_len))
                    };
                }
                (index, names, quote!(0..#len))
            }
            None => {
                if self.mentions_active(iter) || !is_plain(iter) {
                    return Err(syn::Error::new_spanned(iter, "#[differentiate] supports `for` over ranges (`a..b`, `a..=b`, `.rev()`, `.step_by(k)`) and over `xs.iter()` and `xs.iter().zip(ys)` of slices or arrays (with `.enumerate()`, `.copied()`, `.skip(k)`, `.take(k)`, `.rev()`), `xs.iter_mut()` and `&mut xs` (each item read and written as `*v`; zipped and enumerated too), `xs.windows(k)`, `xs.chunks(k)`, `m.rows()` and `m.columns()`; a walk like these may also end in `.map(|v| ..).sum()`, `.product()` or `.fold(..)`; write other iterator chains as an index loop"));
                }
                if !self.buffers_read(iter).is_empty() {
                    return Err(syn::Error::new_spanned(iter, "this range reads a buffer, which the reverse sweep would read again after later writes: bind its bounds to a `let` first (`let end = v[i]; for j in 0..end`)"));
                }
                (pat_name(&f.pat)?, Vec::new(), self.rename(iter)?)
            }
        };
        let index = self.new_var(
            index_name
                .as_ref()
                .map_or("i".to_string(), |i| i.to_string())
                .as_str(),
            false,
            None,
        );
        // Each walked container, or a buffer of points read where it is (its points taken
        // apart, or whole when their width is a number; `points.rs`).
        let mut elem_operands = Vec::new();
        for (name, base) in elem_names {
            let points = self.points_buffer(base).filter(|(_, width)| match &name {
                Binding::Parts(_) => true,
                Binding::Name(_) => points::int_literal(width).is_some(),
                Binding::Pattern(_) => false,
            });
            let walked = match points {
                Some((buf, width)) => Walked::Points(buf, Box::new(width)),
                None => {
                    let value = self.operand(base, out)?;
                    // Rows read back from a buffer of rows: each bound by reference.
                    if let (Some(_), Some(v)) = (self.runtime_rows_of(base), value.var()) {
                        self.row_bases.insert(v);
                    }
                    Walked::Value(value)
                }
            };
            elem_operands.push((name, walked));
        }
        let kind = LoopKind::For {
            var: index,
            iter: iter_tokens,
        };
        self.loop_body(kind, &f.body, out, |lw, body| {
            if let Some(i) = &index_name {
                lw.bind(i, index);
            }
            for (elem, walked) in &elem_operands {
                let base = match walked {
                    Walked::Value(base) => base,
                    Walked::Points(buf, width) => {
                        lw.point_at(*buf, width, index, elem, body)?;
                        continue;
                    }
                };
                let v = lw.index_read(base.clone(), Operand::Var(index), body);
                match elem {
                    Binding::Name(Some(elem)) => {
                        if let Operand::Var(v) = v {
                            lw.walked_items.insert(v);
                            lw.bind(elem, v);
                        }
                    }
                    Binding::Name(None) => {}
                    Binding::Parts(parts) => {
                        for (k, part) in parts.iter().enumerate() {
                            let Some(part) = part else { continue };
                            let at = Operand::Const(quote!(#k));
                            if let Operand::Var(p) = lw.index_read(v.clone(), at, body) {
                                lw.bind(part, p);
                            }
                        }
                    }
                    Binding::Pattern(pat) => {
                        let mut bindings = Vec::new();
                        lw.constant_pattern(pat, &v, &mut bindings, body)?;
                        for (name, var) in bindings {
                            lw.bind(&name, var);
                        }
                    }
                }
            }
            Ok(())
        })
    }

    fn while_loop(&mut self, w: &syn::ExprWhile, out: &mut Block) -> syn::Result<()> {
        if let Some(l) = &w.label {
            return Err(syn::Error::new_spanned(
                l,
                "#[differentiate] does not support loop labels",
            ));
        }
        // The condition reads the carried variables' storage, so it is renamed inside the body
        // scope, where they are bound.
        let cond_expr = (*w.cond).clone();
        let mut cond = TokenStream::new();
        let cond_ref = &mut cond;
        self.loop_body(
            LoopKind::While {
                cond: TokenStream::new(),
            },
            &w.body,
            out,
            move |lw, _| {
                *cond_ref = lw.condition(&cond_expr)?;
                Ok(())
            },
        )?;
        if let Some(Stmt::Loop(l)) = out.stmts.last_mut() {
            l.kind = LoopKind::While { cond };
        }
        Ok(())
    }

    fn forever_loop(&mut self, l: &syn::ExprLoop, out: &mut Block) -> syn::Result<()> {
        if let Some(label) = &l.label {
            return Err(syn::Error::new_spanned(
                label,
                "#[differentiate] does not support loop labels",
            ));
        }
        if !l.body.stmts.iter().any(|s| match s {
            syn::Stmt::Expr(e, _) => contains_loop_exit(e) && contains_break(e),
            _ => false,
        }) {
            return Err(syn::Error::new_spanned(l, "#[differentiate] supports `loop` only with a `break` it can follow (in the loop body or its `if` arms); write a `while` loop otherwise"));
        }
        self.loop_body(LoopKind::Forever, &l.body, out, |_, _| Ok(()))
    }

    /// Lowers a loop's body with its carried variables bound to their storage.
    fn loop_body(
        &mut self,
        kind: LoopKind,
        block: &syn::Block,
        out: &mut Block,
        bind: impl FnOnce(&mut Self, &mut Block) -> syn::Result<()>,
    ) -> syn::Result<()> {
        let id = self.loop_count;
        self.loop_count += 1;
        // Variables declared outside that the body reassigns are carried.
        let mut assigned = Vec::new();
        assigned_names(block, &mut assigned);
        let mut carried = Vec::new();
        let mut seen = HashSet::new();
        for name in assigned {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(init) = self.lookup(&name) else {
                continue;
            };
            if self.vars[init].buffer {
                continue;
            }
            let key = format!("loop{id}:{name}");
            let active = self.vars[init].active || self.forced.contains(&key);
            let entry = self.new_var(&name, active, None);
            let after = self.vars.len();
            let v = &self.vars[entry];
            let (n, a) = (v.name.clone(), self.namer.fresh(&format!("d_{name}_after")));
            self.vars.push(Var {
                name: n,
                adjoint: a,
                active,
                ty: None,
                buffer: false,
                scalar: false,
            });
            carried.push((name, key, init, entry, after));
        }
        let nested = !self.loops.is_empty();
        let count = self.namer.fresh(&format!("count{id}"));
        let tape = self.namer.fresh(&format!("tape{id}"));
        let exits = self.namer.fresh(&format!("exits{id}"));
        let reads = ReadTape {
            tape: self.namer.fresh(&format!("reads{id}")),
            cursor: self.namer.fresh(&format!("cursor{id}")),
        };

        let mut body = Block::default();
        let mut scope = HashMap::new();
        for (name, _, _, entry, _) in &carried {
            scope.insert(name.clone(), *entry);
        }
        let can_break = block.stmts.iter().any(|s| match s {
            syn::Stmt::Expr(e, _) => contains_loop_exit(e) && contains_break(e),
            _ => false,
        });
        self.scopes.push(scope);
        if can_break {
            let flag = self.new_var("brk", false, None);
            body.stmts.push(Stmt::Let {
                var: flag,
                op: Op::Verbatim(quote!(false)),
            });
            if let Some(s) = self.scopes.last_mut() {
                s.insert(BREAK.to_string(), flag);
            }
        }
        self.loops.push(LoopCtx {
            reads: reads.clone(),
        });
        let lowered = bind(self, &mut body)
            .and_then(|_| self.seq(&block_items(block, false), Level::LoopBody, &mut body));
        self.loops.pop();
        let exits_now: Vec<Option<VarId>> =
            carried.iter().map(|(name, ..)| self.lookup(name)).collect();
        let brk = if can_break {
            self.lookup(BREAK).map(Operand::Var)
        } else {
            None
        };
        self.scopes.pop();
        lowered?;

        let mut list = Vec::new();
        for ((name, key, init, entry, after), exit) in carried.into_iter().zip(exits_now) {
            let exit = exit.unwrap_or(entry);
            if self.vars[exit].active && !self.vars[entry].active {
                self.more.insert(key);
            }
            self.rebind_key(&name, after);
            list.push(Carried {
                entry,
                init: Operand::Var(init),
                exit: Operand::Var(exit),
                after,
            });
        }
        out.stmts.push(Stmt::Loop(Box::new(Loop {
            kind,
            carried: list,
            body,
            brk,
            nested,
            in_arm: false,
            count,
            tape,
            exits,
            reads,
        })));
        Ok(())
    }

    fn assign_target(&self, left: &Expr) -> syn::Result<Ident> {
        if let Expr::Path(p) = strip(left) {
            if let Some(id) = p.path.get_ident() {
                if self.lookup(&id.to_string()).is_some() {
                    return Ok(id.clone());
                }
            }
        }
        Err(syn::Error::new_spanned(
            left,
            "#[differentiate] supports assignment to local variables only (`x = ...`, `x += ...`)",
        ))
    }

    // ----- expressions ---------------------------------------------------------------------

    /// Lowers `e` to something an operation can read.
    fn operand(&mut self, e: &Expr, out: &mut Block) -> syn::Result<Operand> {
        let lowered = self.lower(e, "t", out)?;
        Ok(match lowered {
            Lowered::Operand(o) => o,
            op => {
                let id = self.bind_lowered(op, "", None, out);
                Operand::Var(id)
            }
        })
    }

    /// Lowers `e` into a new variable named after `hint` (a user variable's new version).
    fn lower_into(
        &mut self,
        e: &Expr,
        hint: &str,
        ty: Option<Type>,
        out: &mut Block,
    ) -> syn::Result<VarId> {
        let lowered = self.lower(e, hint, out)?;
        if let Lowered::Operand(Operand::Var(v)) = lowered {
            // `let y = x;`: `y` names the same value, no copy (arrays are never moved).
            return Ok(v);
        }
        Ok(self.bind_lowered(lowered, hint, ty, out))
    }

    /// Binds an operation (or copies an operand) into a new variable; an empty hint makes a
    /// temporary.
    fn bind_lowered(
        &mut self,
        lowered: Lowered,
        hint: &str,
        ty: Option<Type>,
        out: &mut Block,
    ) -> VarId {
        let (op, active) = match lowered {
            Lowered::Operand(o) => {
                let active = self.is_active(&o);
                (Op::Copy(o), active)
            }
            Lowered::Op(op, active) => (op, active),
        };
        let var = if hint.is_empty() {
            self.temp(active)
        } else {
            self.new_var(hint, active, ty)
        };
        out.stmts.push(Stmt::Let { var, op });
        var
    }

    /// The float is `f64` or `f32`, not a type parameter.
    fn float_is_primitive(&self) -> bool {
        crate::signature::is_primitive_float(&self.float)
    }

    fn lower(&mut self, e: &Expr, hint: &str, out: &mut Block) -> syn::Result<Lowered> {
        let e = strip(e);
        if let Expr::Field(f) = e {
            if let Some(Some(v)) = self.struct_field(f) {
                return Ok(Lowered::Operand(Operand::Var(v)));
            }
        }
        match e {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Float(f),
                ..
            }) if f.suffix().is_empty() && self.float_is_primitive() => {
                // Typed, so that the runtime's generic helpers know it is the function's float
                // (in a function generic over its float a literal can only be an `f64`, an
                // argument of `F::from_f64`, and of a type alias's, the alias itself: kept as
                // written).
                let typed =
                    syn::LitFloat::new(&format!("{}{}", f.base10_digits(), self.float), f.span());
                return Ok(Lowered::Operand(Operand::Const(typed.to_token_stream())));
            }
            // `-0.5` likewise (an array times it has a type only once the literal has one).
            Expr::Unary(syn::ExprUnary {
                op: UnOp::Neg(_),
                expr,
                ..
            }) => {
                if let Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Float(f),
                    ..
                }) = strip(expr)
                {
                    if f.suffix().is_empty() && self.float_is_primitive() {
                        let typed = syn::LitFloat::new(
                            &format!("{}{}", f.base10_digits(), self.float),
                            f.span(),
                        );
                        return Ok(Lowered::Operand(Operand::Const(quote!((-#typed)))));
                    }
                }
            }
            Expr::Lit(_) => return Ok(Lowered::Operand(Operand::Const(e.to_token_stream()))),
            Expr::Path(p) if p.qself.is_none() => {
                if let Some(id) = p.path.get_ident().and_then(|i| self.lookup(&i.to_string())) {
                    // A buffer of points used whole: read back as points.
                    if let Some(points) = self.unflattened(id) {
                        return Ok(points);
                    }
                    return Ok(Lowered::Operand(Operand::Var(id)));
                }
                return Ok(Lowered::Operand(Operand::Const(e.to_token_stream())));
            }
            _ => {}
        }
        if !self.mentions_active(e) && is_plain(e) {
            let tokens = self.rename(e)?;
            // Integer arithmetic (index expressions) computed once per scope: `x[i + 1]` read
            // twice reads one element, whose adjoint then gathers in one variable.
            if hint == "t" && is_arithmetic(e) {
                let key = format!("#cse:{tokens}");
                if let Some(v) = self.lookup(&key) {
                    return Ok(Lowered::Operand(Operand::Var(v)));
                }
                let var = self.temp(false);
                out.stmts.push(Stmt::Let {
                    var,
                    op: Op::Verbatim(tokens),
                });
                if let Some(scope) = self.scopes.last_mut() {
                    scope.insert(key, var);
                }
                return Ok(Lowered::Operand(Operand::Var(var)));
            }
            return Ok(Lowered::Op(Op::Verbatim(tokens), false));
        }
        match e {
            Expr::Binary(b) => {
                let name = match b.op {
                    BinOp::Add(_) => "add",
                    BinOp::Sub(_) => "sub",
                    BinOp::Mul(_) => "mul",
                    BinOp::Div(_) => "div",
                    BinOp::Rem(_) => "rem",
                    BinOp::Eq(_) | BinOp::Ne(_) | BinOp::Lt(_) | BinOp::Le(_) | BinOp::Gt(_) | BinOp::Ge(_) | BinOp::And(_) | BinOp::Or(_) => {
                        return Ok(Lowered::Op(Op::Verbatim(self.condition(e)?), false));
                    }
                    // Integer code reading differentiated values through casts
                    // (`(x[0] * 10.0) as usize % n`): as written, when both sides are constants.
                    _ => {
                        if self.constant_valued(&b.left) && self.constant_valued(&b.right) {
                            return Ok(Lowered::Op(Op::Verbatim(self.condition(e)?), false));
                        }
                        return Err(syn::Error::new_spanned(b.op, "#[differentiate] supports the operators `+ - * / %` (and comparisons) on differentiated values"));
                    }
                };
                let lhs = self.operand(&b.left, out)?;
                let rhs = self.operand(&b.right, out)?;
                Ok(self.binop(name, b.op.to_token_stream(), b.op.span(), lhs, rhs))
            }
            Expr::Unary(u) => match u.op {
                UnOp::Neg(_) => {
                    let x = self.operand(&u.expr, out)?;
                    Ok(self.operator("neg", vec![x], u.op.span()))
                }
                // `*p` of a reference to a fixed-size array: a copy (`p.clone()`, whose adjoint
                // passes through).
                UnOp::Deref(_)
                    if matches!(strip(&u.expr), Expr::Path(p) if p.path.get_ident().and_then(|i| self.lookup(&i.to_string())).is_some_and(|v| self.array_refs.contains(&v))) =>
                {
                    let inner = &u.expr;
                    let copy: Expr = syn::parse_quote_spanned!(u.span()=> (#inner).clone());
                    self.lower(&copy, hint, out)
                }
                // `*v` of a loop element: the value itself.
                UnOp::Deref(_) => self.lower(&u.expr, hint, out),
                _ => Err(syn::Error::new_spanned(u, "#[differentiate] supports unary `-` on differentiated values; `!` and `*` are not float operations")),
            },
            // `&x`: ownership, not mathematics; the forward sweep borrows every operand anyway.
            Expr::Reference(r) if r.mutability.is_none() => self.lower(&r.expr, hint, out),
            Expr::Index(ix) => {
                // `p.w[i][j]` of a struct field: its row read by reference (a row of nested
                // `Vec`s is not `Copy`; a point is read through a reference as well).
                if let Expr::Index(inner) = strip(&ix.expr) {
                    if let Expr::Field(f) = strip(&inner.expr) {
                        if let Some(Some(v)) = self.struct_field(f) {
                            self.row_bases.insert(v);
                        }
                    }
                }
                if let Some((buf, index)) = self.points_element(ix, out)? {
                    return Ok(Lowered::Operand(self.index_read(Operand::Var(buf), index, out)));
                }
                if self.points_buffer(&ix.expr).is_some() {
                    if matches!(strip(&ix.index), Expr::Range(_)) {
                        return Err(syn::Error::new_spanned(ix, "#[differentiate] does not support slicing a buffer written by index (`&buf[a..b]`): read its elements `buf[i][k]`"));
                    }
                    if let Some(row) = self.points_row(ix, hint, out)? {
                        return Ok(row);
                    }
                }
                let base = self.operand(&ix.expr, out)?;
                if let Expr::Range(r) = strip(&ix.index) {
                    return self.range(base, r, ix, out);
                }
                let index = self.index_operand(&ix.index, out)?;
                Ok(Lowered::Operand(self.index_read(base, index, out)))
            }
            Expr::Cast(c) => match float_type(&c.ty) {
                Some(f) if f == self.float => {
                    let x = self.operand(&c.expr, out)?;
                    if self.is_active(&x) {
                        return Ok(Lowered::Operand(x));
                    }
                    // A constant (an integer computed by a block, a call): cast as written.
                    let x = self.tokens(&x);
                    Ok(Lowered::Op(Op::Verbatim(quote!((#x as #f))), false))
                }
                Some(f) => {
                    let x = self.operand(&c.expr, out)?;
                    if self.is_active(&x) {
                        return Err(syn::Error::new_spanned(c, format!("casting a differentiated value to `{f}` in a `{}` function: mixed precision is not supported, keep every differentiated value in `{}`", self.float, self.float)));
                    }
                    // A constant of another float type (`i as f64` given to `F::from_f64`).
                    let x = self.tokens(&x);
                    Ok(Lowered::Op(Op::Verbatim(quote!((#x as #f))), false))
                }
                None => Ok(Lowered::Op(Op::Verbatim(self.condition(e)?), false)),
            },
            Expr::MethodCall(m) => self.method(m, out),
            Expr::Call(c) => self.call(c, out),
            Expr::If(i) => {
                let v = self.if_expr(i, hint, true, out)?;
                Ok(Lowered::Operand(v.unwrap_or(Operand::Const(quote!(())))))
            }
            Expr::Block(b) if b.label.is_none() => {
                let items = block_items(&b.block, true);
                match self.seq(&items, Level::Inner, out)? {
                    Some(v) => Ok(Lowered::Operand(v)),
                    None => Err(syn::Error::new_spanned(b, "this block has no value: end it with an expression")),
                }
            }
            // An error an earlier rewriting left at the construct (`inline`).
            Expr::Macro(m) if m.mac.path.is_ident("compile_error") => {
                let message: syn::LitStr = m.mac.parse_body()?;
                Err(syn::Error::new(m.mac.path.span(), message.value()))
            }
            // `[0.0; 3]`, `[1.0, 2.0]`, `[i, j]`: constants, kept as written.
            Expr::Repeat(_) | Expr::Array(_) if !self.mentions_active(e) => {
                Ok(Lowered::Op(Op::Verbatim(self.rename(e)?), false))
            }
            Expr::Repeat(r) => Err(syn::Error::new_spanned(r, "#[differentiate] supports `[v; n]` of constants (a buffer to fill by index); for copies of a differentiated value write `[x, x, x]`")),
            // `[x * y, x + y]` (a force, a difference vector): a local buffer of the function's
            // float, each element stored in turn, read like any buffer (`d[0]`, `norm(&d)`).
            Expr::Array(a) => {
                let hint = if hint.is_empty() { "array" } else { hint };
                self.filled(false, a.elems.iter(), hint, out)
            }
            Expr::Macro(m) if m.mac.path.is_ident("vec") => {
                let tokens = &m.mac.tokens;
                let array: Expr = syn::parse2(quote!([#tokens]))?;
                // `vec![a, b]` of differentiated values: a buffer filled element by element,
                // like an array literal.
                if let (Expr::Array(elems), true) = (&array, self.mentions_active(&array)) {
                    let hint = if hint.is_empty() { "vec" } else { hint };
                    return self.filled(true, elems.elems.iter(), hint, out);
                }
                if self.mentions_active(&array) {
                    return Err(syn::Error::new_spanned(m, "#[differentiate] supports `vec![..]` of constants (a buffer to fill by index); for a copy of differentiated values write `x.to_vec()`"));
                }
                let renamed = self.rename(&array)?;
                Ok(Lowered::Op(Op::Verbatim(quote!(::std::vec! #renamed)), false))
            }
            Expr::Loop(l) => {
                // Reached only as a value: the same checks as a statement, then this error.
                self.forever_loop(l, out)?;
                Err(syn::Error::new_spanned(l, "#[differentiate] supports loops as statements: assign the result inside the loop and end the function with it"))
            }
            Expr::ForLoop(_) | Expr::While(_) => Err(syn::Error::new_spanned(e, "#[differentiate] supports loops as statements: assign the result inside the loop and end the function with it")),
            other => Err(unsupported(other)),
        }
    }

    /// A local buffer of the float's zeros (an array, or a `Vec` when `vec`) filled element by
    /// element with `elements` in order: an array literal or `vec![..]` of differentiated
    /// values, read like any buffer. Rows of one length (`[[a, b], [c, d]]`) are points, kept
    /// flat like a buffer of points (`points.rs`).
    fn filled<'e>(
        &mut self,
        vec: bool,
        elements: impl Iterator<Item = &'e Expr>,
        hint: &str,
        out: &mut Block,
    ) -> syn::Result<Lowered> {
        let elements: Vec<&Expr> = elements.collect();
        let row = |e: &Expr| match strip(e) {
            Expr::Array(r) => Some(r.elems.len()),
            _ => None,
        };
        let width = elements
            .first()
            .and_then(|e| row(e))
            .filter(|&w| w > 0 && elements.iter().all(|e| row(e) == Some(w)));
        let scalars: Vec<&Expr> = match width {
            Some(_) => elements
                .iter()
                .flat_map(|e| match strip(e) {
                    Expr::Array(r) => r.elems.iter().collect(),
                    _ => Vec::new(),
                })
                .collect(),
            None => elements,
        };
        let mut values = Vec::new();
        for el in scalars {
            if matches!(strip(el), Expr::Array(_) | Expr::Repeat(_)) {
                return Err(syn::Error::new_spanned(el, "#[differentiate] supports arrays and `vec![..]` of differentiated floats, and of rows of them of one length (`[[a, b], [c, d]]`, points), not arrays nested otherwise: keep one flat array, or pass the rows separately"));
            }
            values.push(self.operand(el, out)?);
        }
        let (float, n) = (self.float.clone(), values.len());
        let zeros = if vec {
            let zero = cast(quote!(0.0), &float);
            quote!(::std::vec![#zero; #n])
        } else {
            let zero = cast(quote!(0.0), &float);
            quote!([#zero; #n])
        };
        let filled = self.filled_with(zeros, values, hint, out);
        if let (Some(width), Lowered::Operand(Operand::Var(v))) = (width, &filled) {
            self.points_buffers.insert(*v, points::usize_literal(width));
        }
        Ok(filled)
    }

    /// A local buffer made by `zeros` and filled with `values` in order.
    fn filled_with(
        &mut self,
        zeros: TokenStream,
        values: Vec<Operand>,
        hint: &str,
        out: &mut Block,
    ) -> Lowered {
        let var = self.new_var(hint, true, None);
        self.vars[var].buffer = true;
        self.fills.insert(var);
        out.stmts.push(Stmt::Let {
            var,
            op: Op::Verbatim(zeros),
        });
        for (k, value) in values.into_iter().enumerate() {
            out.stmts.push(Stmt::Store {
                buf: var,
                index: Operand::Const(quote!(#k)),
                value,
                part: Part::Element,
            });
        }
        Lowered::Operand(Operand::Var(var))
    }

    fn operator(&self, name: &str, args: Vec<Operand>, span: Span) -> Lowered {
        match rules::operator(name) {
            Some(rule) => Lowered::Op(
                Op::Prim {
                    rule,
                    form: CallForm::Method(Ident::new(name, span)),
                    args,
                    ints: vec![],
                    suffix: TokenStream::new(),
                    span,
                },
                true,
            ),
            None => Lowered::Op(
                Op::Verbatim(quote!(compile_error!("autodiff: no rule for an operator"))),
                false,
            ),
        }
    }

    /// `a op b`: an operator rule, or plain code when neither side is differentiated.
    fn binop(
        &mut self,
        name: &str,
        op: TokenStream,
        span: Span,
        a: Operand,
        b: Operand,
    ) -> Lowered {
        if !self.is_active(&a) && !self.is_active(&b) {
            let (a, b) = (self.tokens(&a), self.tokens(&b));
            return Lowered::Op(Op::Verbatim(quote!(#a #op #b)), false);
        }
        self.operator(name, vec![a, b], span)
    }

    fn method(&mut self, m: &syn::ExprMethodCall, out: &mut Block) -> syn::Result<Lowered> {
        let name = m.method.to_string();
        // A reduction of a walk reading differentiated values (or taking a closure): the loop
        // it stands for. One of constants without a closure stays as written.
        if crate::desugar::REDUCTIONS.contains(&name.as_str()) {
            let whole = Expr::MethodCall(m.clone());
            if self.mentions_active(&whole) || has_closure(&whole) {
                if let Some(block) = crate::desugar::reduce(&whole) {
                    if let Expr::Block(b) = &block {
                        self.buffer_names.extend(buffer_targets(&b.block));
                    }
                    return self.lower(&block, &name, out);
                }
            }
        }
        if m.turbofish.is_some() {
            return Err(syn::Error::new_spanned(
                m,
                "#[differentiate] does not support turbofish on methods of differentiated values: call the method without it (`x.max(1.0)`)",
            ));
        }
        let whole = Expr::MethodCall(m.clone());
        if inactive_method(&name) && is_plain(&whole) {
            return Ok(Lowered::Op(Op::Verbatim(self.rename(&whole)?), false));
        }
        // A test or a search over differentiated values (`x.iter().any(|&v| v > 1.0)`,
        // `.position(..).unwrap_or(0)`): a flag or an index, code as written.
        if yields_constant(&whole) && is_plain_with_closures(&whole) {
            return Ok(Lowered::Op(Op::Verbatim(self.rename(&whole)?), false));
        }
        // `x.mean().unwrap()`: the fallible primitive, with the unwrap kept after it.
        if name == "unwrap" || name == "expect" {
            if let Expr::MethodCall(inner) = strip(&m.receiver) {
                if let Some(rule) = rules::method(&inner.method.to_string()).filter(|r| r.fallible)
                {
                    let mut args = Vec::new();
                    for a in &m.args {
                        args.push(self.rename(a)?);
                    }
                    let method = &m.method;
                    let suffix = quote!(.#method(#(#args),*));
                    let mut operands = vec![&*inner.receiver];
                    operands.extend(inner.args.iter());
                    return self.prim(
                        rule,
                        CallForm::Method(inner.method.clone()),
                        &operands,
                        inner.method.span(),
                        suffix,
                        out,
                    );
                }
            }
        }
        if name == "mapv" {
            return self.mapv(m, out);
        }
        // `self.energy(x)`, `model.energy(x)`: a method of a constant, or of a differentiated
        // struct (`p.predict(x)` with `p` in `wrt`, `self.layer.apply(x)`).
        // A differentiated struct's field may be an array (`p.w.dot(x)`): the rules first.
        let constant = !self.mentions_active(&m.receiver)
            && (is_self(&m.receiver) || rules::method(&name).is_none());
        let of_struct = (self.struct_rooted(&m.receiver) || self.element_of_structs(&m.receiver))
            && rules::method(&name).is_none();
        if constant || of_struct {
            return self.method_call(m, out);
        }
        let Some(rule) = rules::method(&name) else {
            if name == "sin_cos" {
                return Err(syn::Error::new_spanned(&m.method, SIN_COS));
            }
            if name.starts_with("sort") {
                return Err(syn::Error::new_spanned(&m.method, format!("#[differentiate] sorts differentiated values as a statement in the function's own block (not in a loop or a branch), `v.sort_by(|a, b| a.partial_cmp(b).unwrap());` of a local (`sort_unstable_by`, `total_cmp`, either order); this `{name}` is not one: sort a copy before the loop, or write the comparator so")));
            }
            return Err(syn::Error::new_spanned(
                &m.method,
                format!("#[differentiate] cannot differentiate the method `{name}`: the methods it knows are {}, and `mapv`", rules::method_names()),
            ));
        };
        if rule.fallible {
            return Err(syn::Error::new_spanned(&m.method, format!("`{name}` returns an `Option`/`Result`: write `.unwrap()` or `.expect(..)` directly after it")));
        }
        let mut args = vec![&*m.receiver];
        args.extend(m.args.iter());
        self.prim(
            rule,
            CallForm::Method(m.method.clone()),
            &args,
            m.method.span(),
            TokenStream::new(),
            out,
        )
    }

    /// `a.mapv(f64::exp)` or `a.mapv(|v| ..)`: an element-wise map whose scalar pullback is a
    /// rule of the table, or the closure body differentiated like a function of `v`.
    fn mapv(&mut self, m: &syn::ExprMethodCall, out: &mut Block) -> syn::Result<Lowered> {
        if m.args.len() != 1 {
            return Err(syn::Error::new_spanned(m, "`mapv` takes one function"));
        }
        let recv = self.operand(&m.receiver, out)?;
        let arg = strip(&m.args[0]);
        let func = match arg {
            Expr::Path(p) if p.path.segments.len() == 2 && is_float_name(&p.path.segments[0].ident) => {
                let name = p.path.segments[1].ident.to_string();
                match rules::method(&name).filter(|r| r.floats == 1 && r.ints == 0 && r.kind == rules::Kind::Method) {
                    Some(rule) => MapFn::Rule(rule, p.to_token_stream()),
                    None => return Err(syn::Error::new_spanned(p, format!("`mapv` with `{}` is not supported: use a one-argument float function of the rules table, or a closure", p.to_token_stream()))),
                }
            }
            Expr::Closure(c) => self.closure(c)?,
            other => return Err(syn::Error::new_spanned(other, "`mapv` is supported with a path to a float function (`f64::exp`) or a closure (`|v| v.max(0.0)`)")),
        };
        let active = self.is_active(&recv);
        Ok(Lowered::Op(
            Op::Map {
                recv,
                func,
                span: m.method.span(),
            },
            active,
        ))
    }

    /// A `mapv` closure: its forward form (renamed), and its body lowered as a function of its
    /// one parameter, which the reverse sweep differentiates element by element.
    fn closure(&mut self, c: &syn::ExprClosure) -> syn::Result<MapFn> {
        let param = match c.inputs.iter().collect::<Vec<_>>().as_slice() {
            [Pat::Ident(pi)] if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
            [Pat::Type(pt)] => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "a `mapv` closure takes one named parameter: `|v| ...`",
                    ))
                }
            },
            _ => {
                return Err(syn::Error::new_spanned(
                    &c.inputs,
                    "a `mapv` closure takes one named parameter: `|v| ...`",
                ))
            }
        };
        if c.asyncness.is_some() || c.constness.is_some() {
            return Err(syn::Error::new_spanned(
                c,
                "a `mapv` closure must be a plain closure",
            ));
        }
        // Captured values must be constants: a closure cannot carry their gradient out.
        let mut shadowed = HashMap::new();
        let self_param = self.new_var(&param.to_string(), false, None);
        self.vars[self_param].name = param.clone();
        shadowed.insert(param.to_string(), self_param);
        self.scopes.push(shadowed);
        let captured_active = {
            struct Finder<'a, 'b> {
                lw: &'a Lowerer<'b>,
                found: Option<syn::ExprPath>,
            }
            impl<'ast> Visit<'ast> for Finder<'_, '_> {
                fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
                    if let Some(i) = p.path.get_ident() {
                        if let Some(id) = self.lw.lookup(&i.to_string()) {
                            if self.lw.vars[id].active && self.found.is_none() {
                                self.found = Some(p.clone());
                            }
                        }
                    }
                }
            }
            let mut f = Finder {
                lw: self,
                found: None,
            };
            f.visit_expr(&c.body);
            f.found
        };
        let forward = self.rename(&Expr::Closure(c.clone()));
        self.scopes.pop();
        if let Some(p) = captured_active {
            return Err(syn::Error::new_spanned(p, "a `mapv` closure may capture only constants, not a differentiated value: write the operation on the arrays instead (`&a * s`)"));
        }
        let forward = forward?;

        // The body as a function of the parameter, with the visible variables as constants.
        let mut vars = vec![Var {
            name: param.clone(),
            adjoint: self.namer.fresh(&format!("d_{param}")),
            active: true,
            ty: None,
            buffer: false,
            scalar: false,
        }];
        let mut scope = HashMap::new();
        for s in &self.scopes {
            for (name, &id) in s {
                scope.insert(name.clone(), vars.len());
                let v = &self.vars[id];
                vars.push(Var {
                    name: v.name.clone(),
                    adjoint: v.adjoint.clone(),
                    active: false,
                    ty: None,
                    buffer: false,
                    scalar: false,
                });
            }
        }
        scope.insert(param.to_string(), 0);
        let forced = HashSet::new();
        let mut inner = Lowerer::new(self.float.clone(), &mut *self.namer, &forced);
        inner.vars = vars;
        inner.scopes = vec![scope];
        inner.temps = self.temps;
        let mut body = Block::default();
        let result = inner.seq(&[Item::Expr(&c.body, true)], Level::Function, &mut body);
        self.temps = inner.temps;
        let result = result?;
        inner.errors.finish()?;
        let Some(result) = result else {
            return Err(syn::Error::new_spanned(
                &c.body,
                "this closure has no value",
            ));
        };
        let function = Function {
            vars: inner.vars,
            items: Vec::new(),
            body,
            result,
            recorded: HashMap::new(),
            arrays: Default::default(),
            vectors: Default::default(),
            swept: Default::default(),
            flat: Default::default(),
            copies: Default::default(),
            checkpoint: false,
            early: Default::default(),
            fields: Default::default(),
            elements: Default::default(),
            element_columns: Default::default(),
        };
        Ok(MapFn::Closure {
            forward,
            function: Box::new(function),
        })
    }

    fn call(&mut self, c: &syn::ExprCall, out: &mut Block) -> syn::Result<Lowered> {
        let Expr::Path(fp) = strip(&c.func) else {
            return Err(syn::Error::new_spanned(&c.func, "#[differentiate] supports calls of functions by name or path (`g(x)`, `physics::g(x)`)"));
        };
        // A function held in a parameter or a local (`f: impl Fn(f64) -> f64`) called with
        // differentiated arguments: nothing says what its derivative is.
        if let Some(name) = fp.path.get_ident() {
            if self.lookup(&name.to_string()).is_some()
                && c.args.iter().any(|a| self.mentions_active(a))
            {
                return Err(syn::Error::new_spanned(&c.func, format!("#[differentiate] cannot differentiate through `{name}`, a function passed as a value (a parameter or a local): its derivative is unknown here; call a named function that has `#[differentiate]` (or a hand-written `pullback`), or a closure bound by `let` in this body (inlined at its calls)")));
            }
        }
        // The runtime's integer results of differentiated values (the order that sorts them,
        // written by `desugar`): piecewise constant, code as written.
        if is_constant_runtime_call(&fp.path) {
            return Ok(Lowered::Op(
                Op::Verbatim(self.rename(&Expr::Call(c.clone()))?),
                false,
            ));
        }
        // Generic arguments on the function itself (`g::<P, 3>(x)`) move to its pullback; on a
        // type before it, or a qualified path, they would not.
        let n = fp.path.segments.len();
        if fp.qself.is_some()
            || fp
                .path
                .segments
                .iter()
                .take(n - 1)
                .any(|s| !s.arguments.is_none())
        {
            return Err(syn::Error::new_spanned(fp, "#[differentiate] does not support qualified paths or generic arguments on a type in calls (`<M as Model>::g(x)`, `Model::<T>::g(x)`): write `M::g(x)` (an associated function, differentiated through `M::g_pullback`) or a generic function `g::<T>(x)`"));
        }
        let segs: Vec<&syn::PathSegment> = fp.path.segments.iter().collect();
        let args: Vec<&Expr> = c.args.iter().collect();
        // `f64::sin(x)`: the method rule, in path form.
        if segs.len() == 2 && is_float_name(&segs[0].ident) {
            let name = segs[1].ident.to_string();
            if inactive_method(&name) {
                return Ok(Lowered::Op(
                    Op::Verbatim(self.condition(&Expr::Call(c.clone()))?),
                    false,
                ));
            }
            let Some(rule) = rules::method(&name).filter(|r| r.forward_as_written()) else {
                if name == "sin_cos" {
                    return Err(syn::Error::new_spanned(&segs[1].ident, SIN_COS));
                }
                return Err(syn::Error::new_spanned(
                    &segs[1].ident,
                    format!("#[differentiate] cannot differentiate `{}::{name}`: the float functions it knows are {}", segs[0].ident, rules::method_names()),
                ));
            };
            return self.prim(
                rule,
                CallForm::Path(fp.path.to_token_stream()),
                &args,
                segs[1].ident.span(),
                TokenStream::new(),
                out,
            );
        }
        // Any other function: its pullback is `g::pullback`, on the companion type `g` that
        // `#[differentiate]` writes beside `fn g` (one `use` of `g` imports both). Generic
        // arguments written on the call move to the pullback (`g::<T>` -> `g::pullback::<T>`).
        // An associated function, `Self::g(x)` or `Model::g(x)` (a type, by its capital):
        // its pullback is the associated function `g_pullback` beside it.
        let mut pullback = fp.path.clone();
        let of_type = segs.len() >= 2
            && segs[segs.len() - 2]
                .ident
                .to_string()
                .starts_with(|c: char| c.is_ascii_uppercase());
        if let Some(last) = pullback.segments.last_mut() {
            if of_type {
                last.ident = quote::format_ident!("{}_pullback", last.ident);
            } else {
                let arguments = std::mem::replace(&mut last.arguments, syn::PathArguments::None);
                pullback.segments.push(syn::PathSegment {
                    ident: Ident::new("pullback", c.span()),
                    arguments,
                });
            }
        }
        let callee = Callee::Function {
            path: fp.path.clone(),
            pullback,
        };
        self.call_with(callee, args, out)
    }

    /// A call of `callee` with `args`: each argument an operand, and whether the user passed
    /// it by reference (the pullback gets it the same way).
    fn call_with(
        &mut self,
        callee: Callee,
        args: Vec<&Expr>,
        out: &mut Block,
    ) -> syn::Result<Lowered> {
        let mut operands = Vec::new();
        let mut refs = Vec::new();
        for a in args {
            let (a, by_ref) = match strip(a) {
                Expr::Reference(r) if r.mutability.is_none() => (&*r.expr, true),
                a => (a, false),
            };
            operands.push(self.operand(a, out)?);
            refs.push(by_ref);
        }
        let active = callee
            .receiver()
            .into_iter()
            .chain(&operands)
            .any(|o| self.is_active(o));
        Ok(Lowered::Op(
            Op::Call {
                callee,
                args: operands,
                refs,
                tuple: None,
                grads: None,
            },
            active,
        ))
    }

    /// `self.energy(x)` or `model.energy(x)`: a method of a value that is not differentiated,
    /// called with differentiated arguments, differentiated through the method
    /// `energy_pullback` that `#[differentiate]` writes beside it. `self`, a parameter or a
    /// field of either is read where it stands (the same value in both sweeps); any other
    /// receiver is computed once.
    fn method_call(&mut self, m: &syn::ExprMethodCall, out: &mut Block) -> syn::Result<Lowered> {
        if m.turbofish.is_some() {
            return Err(syn::Error::new_spanned(
                m,
                "#[differentiate] does not support generic arguments on differentiated method calls yet",
            ));
        }
        let recv = if self.mentions_active(&m.receiver) {
            // A differentiated struct: its gradient is the pullback's first entry.
            self.operand(&m.receiver, out)?
        } else if self.parameter_place(&m.receiver) {
            Operand::Const(self.rename(&m.receiver)?)
        } else {
            self.operand(&m.receiver, out)?
        };
        let callee = Callee::Method {
            recv,
            method: m.method.clone(),
        };
        self.call_with(callee, m.args.iter().collect(), out)
    }

    /// Is `e` a struct parameter (`self` with `wrt(self)`, `p` in `wrt`) or a field of one?
    fn struct_rooted(&self, e: &Expr) -> bool {
        self.root_parameter(e)
            .is_some_and(|id| self.struct_params.iter().any(|(k, _)| *k == id))
    }

    /// Is `e` an element of a slice of structs (`bodies[i]`, `columns.rs`)?
    fn element_of_structs(&self, e: &Expr) -> bool {
        let Expr::Index(ix) = strip(e) else {
            return false;
        };
        let Expr::Path(p) = strip(&ix.expr) else {
            return false;
        };
        p.path
            .get_ident()
            .and_then(|i| self.lookup(&i.to_string()))
            .is_some_and(|id| {
                self.column_params.iter().any(|(k, _)| *k == id)
                    || self.element_columns.contains(&id)
            })
    }

    /// Is `e` a parameter as the function received it (`self` too), or a field of one
    /// (`self.potential.inner`)?
    fn parameter_place(&self, e: &Expr) -> bool {
        self.root_parameter(e).is_some()
    }

    /// The parameter a place `p` or `p.a.b` reads (not one a `let` shadows).
    fn root_parameter(&self, e: &Expr) -> Option<VarId> {
        match strip(e) {
            Expr::Field(f) => self.root_parameter(&f.base),
            Expr::Path(p) => {
                let id = self.lookup(&p.path.get_ident()?.to_string())?;
                (id < self.params).then_some(id)
            }
            _ => None,
        }
    }

    fn prim(
        &mut self,
        rule: &'static Rule,
        form: CallForm,
        args: &[&Expr],
        span: Span,
        suffix: TokenStream,
        out: &mut Block,
    ) -> syn::Result<Lowered> {
        if args.len() != rule.floats + rule.ints {
            return Err(syn::Error::new(
                span,
                format!(
                    "`{}` takes {} argument(s) here, not {}",
                    rule.name,
                    rule.floats + rule.ints,
                    args.len()
                ),
            ));
        }
        let mut floats = Vec::new();
        for a in &args[..rule.floats] {
            floats.push(self.operand(a, out)?);
        }
        let mut ints = Vec::new();
        for a in &args[rule.floats..] {
            if let Some(info) = self.slice_info(a, out) {
                ints.push(info);
                continue;
            }
            let o = self.operand(a, out)?;
            if self.is_active(&o) {
                return Err(syn::Error::new_spanned(
                    a,
                    format!(
                        "this argument of `{}` cannot depend on a differentiated value",
                        rule.name
                    ),
                ));
            }
            ints.push(o);
        }
        let active =
            !matches!(rule.adjoint, Adjoint::Zero) && floats.iter().any(|o| self.is_active(o));
        Ok(Lowered::Op(
            Op::Prim {
                rule,
                form,
                args: floats,
                ints,
                suffix,
                span,
            },
            active,
        ))
    }

    /// An `if`: both arms lowered in their own scopes, with a [`Phi`] for each variable they
    /// assign and for the value.
    fn if_expr(
        &mut self,
        e: &syn::ExprIf,
        hint: &str,
        want_value: bool,
        out: &mut Block,
    ) -> syn::Result<Option<Operand>> {
        let cond = self.branch_condition(&e.cond, out)?;
        let record = self.new_var("br", false, None);
        let before = self.scopes.clone();
        let mut then = Block::default();
        let then_val = self.seq(
            &block_items(&e.then_branch, want_value),
            Level::Inner,
            &mut then,
        )?;
        let after_then = std::mem::replace(&mut self.scopes, before.clone());
        let mut els = Block::default();
        let else_val = match &e.else_branch {
            Some((_, else_expr)) => self.seq(
                &[Item::Push, Item::Expr(else_expr, want_value), Item::Pop],
                Level::Inner,
                &mut els,
            )?,
            None => None,
        };
        let after_else = std::mem::replace(&mut self.scopes, before.clone());
        let mut phis = self.merge(&before, &after_then, &after_else);
        let mut value = None;
        if want_value {
            let (Some(t), Some(f)) = (then_val, else_val) else {
                return Err(syn::Error::new_spanned(
                    e,
                    "an `if` used as a value needs an `else` arm, and both arms need a value",
                ));
            };
            let active = self.is_active(&t) || self.is_active(&f);
            let phi = self.new_var(if hint.is_empty() { "t" } else { hint }, active, None);
            phis.push(Phi {
                out: phi,
                then: t,
                els: f,
            });
            value = Some(Operand::Var(phi));
        }
        out.stmts.push(Stmt::If {
            cond,
            then,
            els,
            phis,
            record,
        });
        Ok(value)
    }

    /// An `if`'s condition. One that reads a buffer's elements is computed into its own value
    /// first: inside a loop, the reverse sweep recomputes the condition, and where a store can
    /// change the buffer after it, the to-be-recorded analysis records that value instead.
    fn branch_condition(&mut self, e: &Expr, out: &mut Block) -> syn::Result<TokenStream> {
        let cond = self.condition(e)?;
        if self.buffers_read(e).is_empty() {
            return Ok(cond);
        }
        let var = self.temp(false);
        out.stmts.push(Stmt::Let {
            var,
            op: Op::Verbatim(cond),
        });
        Ok(self.vars[var].name.to_token_stream())
    }

    /// The local buffers whose elements `e` reads.
    fn buffers_read(&self, e: &Expr) -> Vec<VarId> {
        crate::tbr::buffers_read(e, |n| self.lookup(n).filter(|v| self.vars[*v].buffer))
    }

    /// A condition (or other value that is never differentiated), kept whole and renamed.
    fn condition(&mut self, e: &Expr) -> syn::Result<TokenStream> {
        if let Expr::Let(l) = strip(e) {
            return Err(syn::Error::new_spanned(
                l,
                "#[differentiate] does not support `let` chains (`if let P = a && b`): nest an `if` inside the `if let`",
            ));
        }
        if !is_plain_with_closures(e) {
            return Err(syn::Error::new_spanned(e, "#[differentiate] supports conditions made of comparisons, `&&`, `||`, `!`, arithmetic and calls; compute anything else into a `let` first"));
        }
        self.rename(e)
    }

    /// A field of a struct parameter (not shadowed): the variable standing for it when it is
    /// differentiated (`Some(Some(v))`), `Some(None)` when it is a constant.
    fn struct_field(&self, f: &syn::ExprField) -> Option<Option<VarId>> {
        let (param, path) = crate::fields::field_of_param(f, &self.struct_params)?;
        let id = self.lookup(&crate::fields::root(f)?.to_string())?;
        if id != param {
            return None;
        }
        let key = field_key(&path);
        self.fields.get(&(param, key)).copied()
    }

    /// Does `e` read a differentiated variable?
    fn mentions_active(&self, e: &Expr) -> bool {
        struct Finder<'a, 'b> {
            lw: &'a Lowerer<'b>,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Finder<'_, '_> {
            fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
                if let Some(i) = p.path.get_ident() {
                    if let Some(id) = self.lw.lookup(&i.to_string()) {
                        self.found |= self.lw.vars[id].active;
                    }
                }
            }
            fn visit_expr_field(&mut self, f: &'ast syn::ExprField) {
                // A field of an element of a slice of structs left as written is a constant
                // (the differentiated ones read columns); its index may read anything.
                if let Some((_, _, index)) = crate::fields::column_field(f, &self.lw.column_params)
                {
                    return self.visit_expr(index);
                }
                match self.lw.struct_field(f) {
                    Some(Some(v)) => self.found |= self.lw.vars[v].active,
                    Some(None) => {}
                    None => syn::visit::visit_expr_field(self, f),
                }
            }
            fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
                // `x.len()`, `x.nrows()`, `x.is_nan()`: no derivative flows through these.
                if !inactive_method(&m.method.to_string()) {
                    syn::visit::visit_expr_method_call(self, m);
                } else {
                    for a in &m.args {
                        self.visit_expr(a);
                    }
                }
            }
        }
        let mut f = Finder {
            lw: self,
            found: false,
        };
        f.visit_expr(e);
        f.found
    }

    /// `s![..]` of `x.slice(..)` or `b.slice_mut(..)`: evaluated once; a `SliceInfo` is
    /// `Copy`, so the forward and the reverse sweep both pass it.
    fn slice_info(&mut self, a: &Expr, out: &mut Block) -> Option<Operand> {
        let Expr::Macro(m) = strip(a) else {
            return None;
        };
        if m.mac.path.segments.last().is_none_or(|s| s.ident != "s") {
            return None;
        }
        let tokens = self.rename_tokens(m.mac.tokens.clone());
        let path = &m.mac.path;
        let var = self.temp(false);
        out.stmts.push(Stmt::Let {
            var,
            op: Op::Verbatim(quote!(#path![#tokens])),
        });
        Some(Operand::Var(var))
    }

    /// The tokens of a macro's arguments (`s![.., i]`), each local variable standing alone
    /// (not a field or method name after `.`, not a segment after `::`) renamed.
    fn rename_tokens(&self, tokens: TokenStream) -> TokenStream {
        use proc_macro2::TokenTree;
        let mut out = TokenStream::new();
        let mut qualified = false;
        for tt in tokens {
            let next = match tt {
                TokenTree::Ident(i) if !qualified => match self.lookup(&i.to_string()) {
                    Some(id) => {
                        let mut name = self.vars[id].name.clone();
                        name.set_span(crate::names::located_at(name.span(), i.span()));
                        match self.points_view(id, name.to_token_stream()) {
                            Some(view) => TokenTree::Group(proc_macro2::Group::new(
                                proc_macro2::Delimiter::None,
                                view,
                            )),
                            None => TokenTree::Ident(name),
                        }
                    }
                    None => TokenTree::Ident(i),
                },
                TokenTree::Group(g) => {
                    let mut group =
                        proc_macro2::Group::new(g.delimiter(), self.rename_tokens(g.stream()));
                    group.set_span(g.span());
                    TokenTree::Group(group)
                }
                other => other,
            };
            // A name right after `.` (but not `..`) or `::` is a field, method or path segment.
            qualified = match &next {
                TokenTree::Punct(p) => {
                    (p.as_char() == '.' && !ends_with_dot(&out)) || p.as_char() == ':'
                }
                _ => false,
            };
            out.extend([next]);
        }
        out
    }

    /// `e` with each local variable replaced by its current version's name.
    fn rename(&self, e: &Expr) -> syn::Result<TokenStream> {
        struct Renamer<'a, 'b> {
            lw: &'a Lowerer<'b>,
            /// Names the closures around bind (`|&v| v > 0.5` of `position`): their own.
            bound: Vec<String>,
        }
        impl Renamer<'_, '_> {
            fn lookup(&self, name: &str) -> Option<VarId> {
                if self.bound.iter().any(|b| b == name) {
                    return None;
                }
                self.lw.lookup(name)
            }
        }
        impl VisitMut for Renamer<'_, '_> {
            fn visit_expr_closure_mut(&mut self, c: &mut syn::ExprClosure) {
                struct Names<'n>(&'n mut Vec<String>);
                impl<'ast> Visit<'ast> for Names<'_> {
                    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
                        self.0.push(p.ident.to_string());
                    }
                }
                let depth = self.bound.len();
                for input in &c.inputs {
                    Names(&mut self.bound).visit_pat(input);
                }
                self.visit_expr_mut(&mut c.body);
                self.bound.truncate(depth);
            }
            fn visit_expr_mut(&mut self, e: &mut Expr) {
                // `*v` of a walk's item, which is a value here.
                if let Expr::Unary(u) = e {
                    if let (UnOp::Deref(_), Expr::Path(p)) = (&u.op, strip(&u.expr)) {
                        let id = p.path.get_ident().and_then(|i| self.lookup(&i.to_string()));
                        if id.is_some_and(|v| self.lw.walked_items.contains(&v)) {
                            *e = (*u.expr).clone();
                            self.visit_expr_mut(e);
                            return;
                        }
                    }
                }
                // A buffer of rows, kept flat: `g[i][j]` is `g[width * i + j]`, its length its
                // number of rows.
                if let Expr::Index(outer) = e {
                    if let Expr::Index(inner) = strip(&outer.expr) {
                        if let Expr::Path(p) = strip(&inner.expr) {
                            let id = p.path.get_ident().and_then(|i| self.lookup(&i.to_string()));
                            if let Some(&(width, _)) = id.and_then(|v| self.lw.runtime_rows.get(&v))
                            {
                                let (mut i, mut j) =
                                    ((*inner.index).clone(), (*outer.index).clone());
                                self.visit_expr_mut(&mut i);
                                self.visit_expr_mut(&mut j);
                                let mut base = p.clone();
                                self.visit_expr_path_mut(&mut base);
                                let w = &self.lw.vars[width].name;
                                *e = syn::parse_quote!(#base[#w * (#i) + (#j)]);
                                return;
                            }
                        }
                    }
                }
                if let Expr::MethodCall(m) = e {
                    if let Expr::Path(p) = strip(&m.receiver) {
                        let id = p.path.get_ident().and_then(|i| self.lookup(&i.to_string()));
                        let rows = id.and_then(|v| self.lw.runtime_rows.get(&v));
                        if let (Some(&(_, rows)), true) = (rows, m.method == "len") {
                            *e = Expr::Verbatim(self.lw.vars[rows].name.to_token_stream());
                            return;
                        }
                    }
                }
                // Anything else of it: the rows read back, a shared slice (so that nothing
                // written through it could be lost).
                if let Expr::Path(p) = e {
                    let id = p.path.get_ident().and_then(|i| self.lookup(&i.to_string()));
                    if let Some(&(w, r)) = id.and_then(|v| self.lw.runtime_rows.get(&v)) {
                        self.visit_expr_path_mut(p);
                        let (w, r) = (&self.lw.vars[w].name, &self.lw.vars[r].name);
                        *e = syn::parse_quote!((&*::autodiff::__rt::unflatten_rows(&#p, #w, #r)));
                        return;
                    }
                }
                // A buffer of points, kept flat, read as points.
                if let Expr::Path(p) = e {
                    let id = p.path.get_ident().and_then(|i| self.lookup(&i.to_string()));
                    if let Some(id) = id.filter(|v| self.lw.points_buffers.contains_key(v)) {
                        self.visit_expr_path_mut(p);
                        let name = p.to_token_stream();
                        if let Some(view) = self.lw.points_view(id, name) {
                            *e = Expr::Verbatim(view);
                        }
                        return;
                    }
                }
                syn::visit_mut::visit_expr_mut(self, e);
            }
            fn visit_expr_path_mut(&mut self, p: &mut syn::ExprPath) {
                if let Some(i) = p.path.get_ident() {
                    if let Some(id) = self.lookup(&i.to_string()) {
                        // The definition's hygiene (a function written by `macro_rules!`
                        // resolves its names in one context), the use's location.
                        let mut name = self.lw.vars[id].name.clone();
                        name.set_span(crate::names::located_at(name.span(), i.span()));
                        p.path = name.into();
                    }
                }
            }
        }
        let mut e = e.clone();
        Renamer {
            lw: self,
            bound: Vec::new(),
        }
        .visit_expr_mut(&mut e);
        Ok(e.into_token_stream())
    }
}

/// Float methods whose result is not a float (or never carries a derivative).
const INACTIVE_METHODS: &[&str] = &[
    "is_nan",
    "is_infinite",
    "is_finite",
    "is_normal",
    "is_subnormal",
    "is_sign_positive",
    "is_sign_negative",
    "to_bits",
    "classify",
    "total_cmp",
    "partial_cmp",
    "to_string",
];

/// Methods through which no derivative flows: tests, bits, orderings, sizes.
fn inactive_method(name: &str) -> bool {
    INACTIVE_METHODS.contains(&name) || SIZE_METHODS.contains(&name)
}

/// The methods that read only a value's size, never its elements.
pub const SIZE_METHODS: &[&str] = &[
    "len",
    "len_of",
    "is_empty",
    "nrows",
    "ncols",
    "ndim",
    "shape",
    "dim",
    "raw_dim",
    "is_standard_layout",
];

/// The operator and rule of a compound assignment.
pub(crate) fn compound(op: &BinOp) -> Option<(&'static str, TokenStream)> {
    let span = op.span();
    Some(match op {
        BinOp::AddAssign(_) => ("add", quote_spanned!(span=> +)),
        BinOp::SubAssign(_) => ("sub", quote_spanned!(span=> -)),
        BinOp::MulAssign(_) => ("mul", quote_spanned!(span=> *)),
        BinOp::DivAssign(_) => ("div", quote_spanned!(span=> /)),
        BinOp::RemAssign(_) => ("rem", quote_spanned!(span=> %)),
        _ => return None,
    })
}

/// Parentheses and invisible groups removed.
/// What `vec![..]` builds, as the array or repeat expression of its tokens (`[a, b]`,
/// `[v; n]`), for the passes that read or rewrite the expressions inside it.
pub(crate) fn vec_contents(m: &syn::Macro) -> Option<Expr> {
    if !m.path.is_ident("vec") {
        return None;
    }
    let tokens = &m.tokens;
    match syn::parse2::<Expr>(quote!([#tokens])) {
        Ok(e @ (Expr::Array(_) | Expr::Repeat(_))) => Some(e),
        _ => None,
    }
}

/// Writes [`vec_contents`] back as the macro's tokens.
pub(crate) fn set_vec_contents(m: &mut syn::Macro, contents: &Expr) {
    match contents {
        Expr::Array(a) => m.tokens = a.elems.to_token_stream(),
        Expr::Repeat(r) => {
            let (e, n) = (&r.expr, &r.len);
            m.tokens = quote!(#e; #n);
        }
        _ => {}
    }
}

pub(crate) fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        e => e,
    }
}

/// Is `e` integer-style arithmetic on names and literals only (no calls, no indexing), so
/// that evaluating it twice gives the same value?
fn is_arithmetic(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) | Expr::Path(_) => true,
        Expr::Paren(p) => is_arithmetic(&p.expr),
        Expr::Group(g) => is_arithmetic(&g.expr),
        Expr::Cast(c) => is_arithmetic(&c.expr),
        Expr::Unary(u) => matches!(u.op, UnOp::Neg(_)) && is_arithmetic(&u.expr),
        Expr::Binary(b) => {
            matches!(
                b.op,
                BinOp::Add(_) | BinOp::Sub(_) | BinOp::Mul(_) | BinOp::Div(_) | BinOp::Rem(_)
            ) && is_arithmetic(&b.left)
                && is_arithmetic(&b.right)
        }
        _ => false,
    }
}

/// A field's path as a key: `layer.w`.
fn field_key<M: std::borrow::Borrow<syn::Member>>(path: &[M]) -> String {
    path.iter()
        .map(|f| crate::fields::member_name(f.borrow()))
        .collect::<Vec<_>>()
        .join(".")
}

/// Is `e` `self` or a field of it?
fn is_self(e: &Expr) -> bool {
    match strip(e) {
        Expr::Field(f) => is_self(&f.base),
        Expr::Path(p) => p.path.is_ident("self"),
        _ => false,
    }
}

/// `::autodiff::__rt::sorted_order`: a runtime function of differentiated values whose result
/// is integers (no derivative).
fn is_constant_runtime_call(path: &syn::Path) -> bool {
    const CONSTANT_RUNTIME_CALLS: &[&str] = &["sorted_order"];
    let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    path.leading_colon.is_some()
        && matches!(segs.as_slice(), [a, rt, f] if a == "autodiff" && rt == "__rt" && CONSTANT_RUNTIME_CALLS.contains(&f.as_str()))
}

/// A method call whose value is no float, whatever its receiver reads: a test or a search of
/// a walk (`any`, `all`, `position`, `rposition`, `count`), also behind `unwrap`, `unwrap_or`,
/// `expect`, `is_some` or `is_none`.
fn yields_constant(e: &Expr) -> bool {
    let Expr::MethodCall(m) = strip(e) else {
        return false;
    };
    match m.method.to_string().as_str() {
        "any" | "all" | "position" | "rposition" | "count" => true,
        "unwrap" | "unwrap_or" | "expect" | "unwrap_or_default" | "is_some" | "is_none" => {
            yields_constant(&m.receiver)
        }
        _ => false,
    }
}

/// Can `e` be emitted as written (with variables renamed)? No statements, control flow,
/// closures or macros inside.
fn is_plain(e: &Expr) -> bool {
    plain(e, false)
}

/// [`is_plain`], with closures as the arguments of tests and searches (`any(|&v| v > 1.0)`,
/// `position`; their bodies plain too).
fn is_plain_with_closures(e: &Expr) -> bool {
    plain(e, true)
}

/// The methods whose closures a condition or an index may pass (a flag or an index results;
/// `filter` before a `count`).
pub const SEARCHES: [&str; 5] = ["any", "all", "position", "rposition", "filter"];

fn plain(e: &Expr, closures: bool) -> bool {
    struct Check(bool, bool);
    impl<'ast> Visit<'ast> for Check {
        fn visit_expr(&mut self, e: &'ast Expr) {
            match e {
                Expr::MethodCall(m)
                    if self.1 && SEARCHES.contains(&m.method.to_string().as_str()) =>
                {
                    self.visit_expr(&m.receiver);
                    for a in &m.args {
                        match strip(a) {
                            Expr::Closure(c) => self.visit_expr(&c.body),
                            other => self.visit_expr(other),
                        }
                    }
                }
                Expr::Lit(_)
                | Expr::Path(_)
                | Expr::Binary(_)
                | Expr::Unary(_)
                | Expr::Cast(_)
                | Expr::Paren(_)
                | Expr::Group(_)
                | Expr::MethodCall(_)
                | Expr::Call(_)
                | Expr::Index(_)
                | Expr::Field(_)
                | Expr::Reference(_)
                | Expr::Tuple(_)
                | Expr::Array(_)
                | Expr::Range(_)
                | Expr::Repeat(_) => syn::visit::visit_expr(self, e),
                // A pattern test, `match s { P if g => true, _ => false }`, or a binding taken
                // out, `match s { P => v, _ => unreachable_arm() }` (a `match` is written so).
                Expr::Match(m) if crate::desugar::is_test(m) => {
                    self.visit_expr(&m.expr);
                    for g in m.arms.iter().filter_map(|a| a.guard.as_ref()) {
                        self.visit_expr(&g.1);
                    }
                }
                Expr::Match(m) if crate::desugar::is_extraction(m) => self.visit_expr(&m.expr),
                _ => self.0 = false,
            }
        }
        fn visit_bin_op(&mut self, op: &'ast BinOp) {
            if compound(op).is_some()
                || matches!(
                    op,
                    BinOp::BitXorAssign(_)
                        | BinOp::BitAndAssign(_)
                        | BinOp::BitOrAssign(_)
                        | BinOp::ShlAssign(_)
                        | BinOp::ShrAssign(_)
                )
            {
                self.0 = false;
            }
        }
    }
    let mut c = Check(true, closures);
    c.visit_expr(e);
    c.0
}

/// Does `e` contain a `return` (outside closures)?
fn contains_return(e: &Expr) -> bool {
    struct Find(bool);
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr_return(&mut self, _: &'ast syn::ExprReturn) {
            self.0 = true;
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut f = Find(false);
    f.visit_expr(e);
    f.0
}

/// The names a format string captures: `{x}`, `{x:?}`, `{x:.3}`.
fn format_captures(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' {
            if chars.peek() == Some(&'{') {
                chars.next();
                continue;
            }
            let name: String =
                std::iter::from_fn(|| chars.next_if(|c| c.is_alphanumeric() || *c == '_'))
                    .collect();
            if name
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
            {
                out.push(name);
            }
        }
    }
    out
}

/// The error for a construct the macro cannot differentiate, saying what to write instead.
fn unsupported(e: &Expr) -> syn::Error {
    let msg = match e {
        Expr::Closure(_) => "#[differentiate] supports closures given to `mapv`, and closures bound by `let` (not `mut`, not `move`) and only called, `let f = |r: f64| ..; f(x)`, which are inlined at their calls; write this one's computation inline, or as a separate annotated function",
        Expr::Unsafe(_) => "#[differentiate] does not support `unsafe` blocks: the gradient must be computable from safe code",
        Expr::Macro(_) => "#[differentiate] does not support macros in expressions; only `assert!` and `debug_assert!` (and their forms) and the prints (`println!`, ..) may stay, as statements",
        Expr::Match(m) if crate::desugar::is_extraction(m) => "#[differentiate] supports patterns (of `match`, `if let`, `let .. else`) that bind values which are not differentiated (a configuration's fields, integers), or a differentiated value whole (`v if v < 0.0 => ..`, `(v, 0) => ..` of a tuple); this one binds part of a differentiated value: write `_` in its place and read the value from the scrutinee",
        Expr::Match(_) => "#[differentiate] supports a `match` of `true` / `false` arms only as a condition (`if match s { P => true, _ => false } { .. }`)",
        Expr::Return(_) => "#[differentiate] supports `return` as a statement, inside `if`/`else` arms and blocks; move the `return` out of this expression",
        Expr::Index(_) => "#[differentiate] does not support indexing a differentiated value yet",
        Expr::Tuple(_) => "#[differentiate] supports tuples only in `let (a, b) = (.., ..);`",
        Expr::Reference(_) => "#[differentiate] does not support `&mut` references to differentiated values: pass the value and assign the result (`y = scale(y)`)",
        Expr::Field(f) if sin_cos_of(&f.base).is_some() => SIN_COS,
        Expr::Field(_) => "#[differentiate] does not support fields of differentiated values",
        Expr::Async(_) | Expr::Await(_) => "#[differentiate] does not support `async` code",
        Expr::Assign(_) => "#[differentiate] supports assignments as statements only",
        _ => "#[differentiate] cannot differentiate this expression: it supports float arithmetic, the float methods of its rules table, calls, `if`/`else` and blocks",
    };
    syn::Error::new_spanned(e, msg)
}

/// The first `return` in `e`.
fn find_return(e: &Expr) -> Option<syn::ExprReturn> {
    struct Find(Option<syn::ExprReturn>);
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
            if self.0.is_none() {
                self.0 = Some(r.clone());
            }
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    }
    let mut f = Find(None);
    f.visit_expr(e);
    f.0
}

/// The name a loop pattern binds (`i`, `_`).
fn pat_name(p: &Pat) -> syn::Result<Option<Ident>> {
    match p {
        Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => Ok(Some(pi.ident.clone())),
        Pat::Wild(_) => Ok(None),
        other => Err(syn::Error::new_spanned(
            other,
            "#[differentiate] supports a name or `_` as a loop variable",
        )),
    }
}

/// What a loop binds to each element it walks: a name (or `_`), or, for an element that is an
/// array (a point of `&[[f64; 3]]`), the names of its parts (`&[x, y, z]`).
/// Where an array pattern's elements are read (`let [a, b, c] = ..`): a row of a buffer of
/// points (the buffer, its width, the row's index), or a value.
enum ArrayElements {
    Row(VarId, Box<(Expr, Expr)>),
    Whole(Operand),
}

/// What a `for` loop walks: a container read by index, or a buffer of points kept flat (its
/// variable and width).
enum Walked {
    Value(Operand),
    Points(VarId, Box<Expr>),
}

enum Binding {
    Name(Option<Ident>),
    Parts(Vec<Option<Ident>>),
    /// Any other pattern, of an element that is not differentiated (`&(i, j)` of a list of
    /// pairs).
    Pattern(Pat),
}

/// The elements a `for` loop walks: one slice's or array's (`xs.iter()`), or a zip of two
/// such walks (`xs.iter().zip(ys)`, nested for more).
enum Elements<'a> {
    Of(&'a Expr),
    Zip(Box<Elements<'a>>, Box<Elements<'a>>),
}

/// `xs.iter()` (`.copied()`, `.cloned()`) and zips of them; a zip's argument may also be `ys`
/// or `&ys` itself.
fn elements(e: &Expr) -> Option<Elements<'_>> {
    match strip(e) {
        Expr::MethodCall(m) if m.method == "iter" && m.args.is_empty() => {
            Some(Elements::Of(&m.receiver))
        }
        // An element copied is read as a value all the same.
        Expr::MethodCall(m)
            if (m.method == "copied" || m.method == "cloned") && m.args.is_empty() =>
        {
            elements(&m.receiver)
        }
        Expr::MethodCall(m) if m.method == "zip" && m.args.len() == 1 => {
            let other = match strip(&m.args[0]) {
                Expr::Reference(r) if r.mutability.is_none() => Elements::Of(&r.expr),
                e @ (Expr::Path(_) | Expr::Field(_)) => Elements::Of(e),
                e => elements(e)?,
            };
            Some(Elements::Zip(
                Box::new(elements(&m.receiver)?),
                Box::new(other),
            ))
        }
        _ => None,
    }
}

impl<'a> Elements<'a> {
    fn bases(&self) -> Vec<&'a Expr> {
        match self {
            Elements::Of(b) => vec![*b],
            Elements::Zip(a, b) => {
                let mut v = a.bases();
                v.extend(b.bases());
                v
            }
        }
    }

    /// The loop pattern's names, one per base in order (`(a, (b, c))` for nested zips).
    fn names(&self, p: &Pat, out: &mut Vec<(Binding, &'a Expr)>) -> syn::Result<()> {
        match (self, strip_pat(p)) {
            (Elements::Of(b), Pat::Slice(s)) => {
                let parts = s.elems.iter().map(pat_name).collect::<syn::Result<_>>()?;
                out.push((Binding::Parts(parts), *b))
            }
            (Elements::Of(b), p @ (Pat::Ident(_) | Pat::Wild(_))) => {
                out.push((Binding::Name(pat_name(p)?), *b))
            }
            (Elements::Of(b), p) => out.push((Binding::Pattern(p.clone()), *b)),
            (Elements::Zip(a, b), Pat::Tuple(t)) if t.elems.len() == 2 => {
                a.names(&t.elems[0], out)?;
                b.names(&t.elems[1], out)?;
            }
            (Elements::Zip(..), p) => {
                return Err(syn::Error::new_spanned(
                    p,
                    "a zip yields pairs: write `for (a, b) in xs.iter().zip(ys)`",
                ))
            }
        }
        Ok(())
    }
}

/// A pattern without parentheses, and without `&` (`for &v in xs.iter()`: an element is read
/// as its value either way).
pub(crate) fn strip_pat(p: &Pat) -> &Pat {
    match p {
        Pat::Paren(p) => strip_pat(&p.pat),
        Pat::Reference(r) if r.mutability.is_none() => strip_pat(&r.pat),
        p => p,
    }
}

/// Does `e` contain a `break` or `continue` of the loop it is in (not of a nested loop)?
fn contains_loop_exit(e: &Expr) -> bool {
    let (brk, cont) = loop_exits(e);
    brk || cont
}

/// Does `e` contain a `break` of the loop it is in?
fn contains_break(e: &Expr) -> bool {
    loop_exits(e).0
}

/// Whether `e` contains a `break`, and a `continue`, of the loop it is in.
fn loop_exits(e: &Expr) -> (bool, bool) {
    struct Find(bool, bool);
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr_break(&mut self, _: &'ast syn::ExprBreak) {
            self.0 = true;
        }
        fn visit_expr_continue(&mut self, _: &'ast syn::ExprContinue) {
            self.1 = true;
        }
        fn visit_expr_for_loop(&mut self, _: &'ast syn::ExprForLoop) {}
        fn visit_expr_while(&mut self, _: &'ast syn::ExprWhile) {}
        fn visit_expr_loop(&mut self, _: &'ast syn::ExprLoop) {}
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut f = Find(false, false);
    f.visit_expr(e);
    (f.0, f.1)
}

/// The names a block assigns to (`x = ..`, `x += ..`), in order, nested blocks included.
fn assigned_names(block: &syn::Block, out: &mut Vec<String>) {
    struct Find<'a>(&'a mut Vec<String>);
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
            if let Expr::Path(p) = strip(&a.left) {
                if let Some(i) = p.path.get_ident() {
                    self.0.push(i.to_string());
                }
            }
            syn::visit::visit_expr_assign(self, a);
        }
        fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
            if compound(&b.op).is_some() {
                if let Expr::Path(p) = strip(&b.left) {
                    if let Some(i) = p.path.get_ident() {
                        self.0.push(i.to_string());
                    }
                }
            }
            syn::visit::visit_expr_binary(self, b);
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    Find(out).visit_block(block);
}

/// The names written by index anywhere in the body (`v[i] = ..`, `v[i] += ..`).
/// Does `e` hold a closure?
fn has_closure(e: &Expr) -> bool {
    struct Find(bool);
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {
            self.0 = true;
        }
    }
    let mut f = Find(false);
    f.visit_expr(e);
    f.0
}

/// The buffer an element write's target names: `v` of `v[i]`, and of `f[i][k]` (a buffer of
/// points).
pub(crate) fn written_buffer(left: &Expr) -> Option<String> {
    let Expr::Index(ix) = strip(left) else {
        return None;
    };
    let base = match strip(&ix.expr) {
        Expr::Index(row) => &row.expr,
        _ => &ix.expr,
    };
    match strip(base) {
        Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
        _ => None,
    }
}

pub(crate) fn buffer_targets(block: &syn::Block) -> HashSet<String> {
    struct Find(HashSet<String>);
    impl Find {
        fn target(&mut self, left: &Expr) {
            self.0.extend(written_buffer(left));
        }
    }
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
            self.target(&a.left);
            syn::visit::visit_expr_assign(self, a);
        }
        fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
            if compound(&b.op).is_some() {
                self.target(&b.left);
            }
            syn::visit::visit_expr_binary(self, b);
        }
        // `v.swap(i, j)` writes two elements, `b.row_mut(i).assign(&v)` a row.
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            let target = if (m.method == "swap" && m.args.len() == 2)
                || m.method == crate::desugar::pushes::PUSH
            {
                Some(&*m.receiver)
            } else {
                view_store(m).map(|(b, ..)| b)
            };
            if let Some(Expr::Path(p)) = target.map(strip) {
                if let Some(i) = p.path.get_ident() {
                    self.0.insert(i.to_string());
                }
            }
            syn::visit::visit_expr_method_call(self, m);
        }
    }
    let mut f = Find(HashSet::new());
    f.visit_block(block);
    f.0
}

/// The methods whose view a store can write: `b.row_mut(i).assign(&v)`.
const VIEW_STORES: [&str; 3] = ["row_mut", "column_mut", "slice_mut"];

/// `b.row_mut(i).assign(&v)` (or `column_mut`, `slice_mut`): the buffer, the method, its
/// argument and the assigned value.
fn view_store(m: &syn::ExprMethodCall) -> Option<(&Expr, &Ident, &Expr, &Expr)> {
    if m.method != "assign" || m.args.len() != 1 {
        return None;
    }
    let Expr::MethodCall(view) = strip(&m.receiver) else {
        return None;
    };
    if !VIEW_STORES.contains(&view.method.to_string().as_str()) || view.args.len() != 1 {
        return None;
    }
    Some((&view.receiver, &view.method, &view.args[0], &m.args[0]))
}

/// Does `tokens` end with a `.` (so that a `.` after it makes `..`)?
fn ends_with_dot(tokens: &TokenStream) -> bool {
    matches!(tokens.clone().into_iter().last(), Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == '.')
}

/// The error for `sin_cos` other than taken apart by a `let`.
const SIN_COS: &str = "#[differentiate] supports `sin_cos` taken apart by a `let`, `let (s, c) = theta.sin_cos();` (or `let (s, _) = ..`)";

/// The angle of `angle.sin_cos()` (or `f64::sin_cos(angle)`), and the method's span.
fn sin_cos_of(e: &Expr) -> Option<(&Expr, Span)> {
    match strip(e) {
        Expr::MethodCall(m) if m.method == "sin_cos" && m.args.is_empty() => {
            Some((&m.receiver, m.method.span()))
        }
        Expr::Call(c) if c.args.len() == 1 => match strip(&c.func) {
            Expr::Path(p)
                if p.path.segments.len() == 2
                    && p.path.segments[1].ident == "sin_cos"
                    && is_float_name(&p.path.segments[0].ident) =>
            {
                Some((&c.args[0], p.path.segments[1].ident.span()))
            }
            _ => None,
        },
        _ => None,
    }
}
