//! Slices of structs differentiated field by field: `#[differentiate(wrt(bodies))]` with
//! `bodies: &[Body]` (or `Vec<Body>`, `&Vec<Body>`), `Body` deriving `Differentiable`.
//!
//! The body reads an element's fields, `bodies[i].pos[k]` and `bodies[i].mass`, directly or
//! through a walk or a binding:
//!
//! ```text
//! for b in bodies.iter() { e += b.mass * b.v; }      for b_index in 0..bodies.len() {
//!                                              =>         e += bodies[b_index].mass * bodies[b_index].v;
//!                                                     }
//! let b = &bodies[j];                                let b_index = j;
//! b.pos[0]                                           bodies[b_index].pos[0]
//! ```
//!
//! [`normalize`] writes walks (`for b in bodies.iter()`, `bodies`, `&bodies`, `.enumerate()`;
//! `bodies.iter().map(|b| ..)`), bindings (`let b = &bodies[j];`), struct patterns in either
//! (`for Body { pos, mass, .. } in bodies`, `pos` read as `bodies[i].pos`) and state collected
//! out of the structs (`let p: Vec<[f64; 3]> = bodies.iter().map(|b| b.pos).collect();`, a
//! buffer filled element by element) as the element reads they stand for. Lowering then gives
//! each field read as a differentiated value a column, bound before the forward sweep (`let
//! bodies_pos = point_column(bodies, |b| b.pos.clone());`), and reads `bodies_pos[i][k]` like
//! any slice ([`to_columns`], inside `vec![..]` too); a column read in float arithmetic is
//! gathered by `float_column`, one read by index by `point_column`, which check the field's
//! type at compile time so that generated code may write scalar arithmetic ([`Usage`]). The
//! gradient is each column's adjoint moved into its field of a `Vec` of the struct
//! (`Reverse::elements_gradient`), after the gradients of the functions the slice was passed
//! to whole (`kinetic(bodies)`, through its pullback). Fields read as constants (an index, a
//! `match` scrutinee) stay as written, checked not to be floats like a struct's (`fields.rs`),
//! and the slice's length is read as usual. Any other use of the slice or of an element (an
//! element passed whole, a method of an element, other iterator chains) is a compile error at
//! it: never a gradient silently lost.
//!
//! A field of a differentiated struct that holds structs (`System { bodies: Vec<Body>, .. }`,
//! `self.bodies[i].mass`) is one too: [`field_slices`] finds the fields whose elements' fields
//! the body reads and has the body read each by a name of its own (`self_bodies`), bound to
//! `&self.bodies` before the forward sweep; its gradient goes into that field of the struct's
//! (`Reverse::with_fields`).

use crate::lower::strip;
use proc_macro2::{Ident, Span};
use quote::ToTokens;
use std::collections::{HashMap, HashSet};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, Pat};

/// Writes the walks over the slices of structs `params` and the bindings of their elements in
/// `block` as element reads (`bodies[i].mass`); the first use it cannot write so is the error.
pub fn normalize(block: &mut syn::Block, params: &[Ident]) -> syn::Result<()> {
    let mut used = HashSet::new();
    identifiers(block.to_token_stream(), &mut used);
    let mut n = Normalize {
        params,
        used,
        error: None,
    };
    n.visit_block_mut(block);
    n.error.map_or(Ok(()), Err)
}

/// Every identifier in `tokens`.
fn identifiers(tokens: proc_macro2::TokenStream, out: &mut HashSet<String>) {
    for tt in tokens {
        match tt {
            proc_macro2::TokenTree::Ident(i) => {
                out.insert(i.to_string());
            }
            proc_macro2::TokenTree::Group(g) => identifiers(g.stream(), out),
            _ => {}
        }
    }
}

struct Normalize<'a> {
    params: &'a [Ident],
    /// The function's identifiers, and the names given so far.
    used: HashSet<String>,
    error: Option<syn::Error>,
}

impl Normalize<'_> {
    /// A name for the index of the element `b`, `b_index` (`b_index_1`, ..), that no
    /// identifier of the function has.
    fn index_name(&mut self, b: &Ident) -> Ident {
        self.fresh(&format_ident(b, "index"))
    }

    /// A name after `base` (`element`, `element_1`, ..) that no identifier of the function
    /// has.
    fn fresh(&mut self, base: &Ident) -> Ident {
        let mut name = base.to_string();
        let mut k = 0;
        while !self.used.insert(name.clone()) {
            k += 1;
            name = format!("{base}_{k}");
        }
        Ident::new(&name, base.span())
    }

    /// Does `e` walk the elements of a slice of structs one by one (`bodies.iter()`,
    /// `.skip(a)`, `.take(b)`; not enumerated)?
    fn walks_slice(&self, e: &Expr) -> bool {
        matches!(self.ranged(e), Some((_, false, _)))
    }

    /// The index's pattern of a walk: the one given (`i` of `(i, b)`), or a fresh name after
    /// the element's (`b_index`) when there is none or it is `_`.
    fn index_pattern(&mut self, given: Option<Pat>, element: Option<&Ident>) -> Pat {
        match given {
            Some(Pat::Wild(_)) | None => {
                let base = element
                    .cloned()
                    .unwrap_or_else(|| Ident::new("element", Span::call_site()));
                let i = self.index_name(&base);
                syn::parse_quote!(#i)
            }
            Some(p) => p,
        }
    }

    /// The slice of structs `e` names (`bodies`), if any.
    fn param(&self, e: &Expr) -> Option<Ident> {
        let ident = match strip(e) {
            Expr::Path(p) => p.path.get_ident()?,
            Expr::Reference(r) if r.mutability.is_none() => return self.param(&r.expr),
            _ => return None,
        };
        self.params.contains(ident).then(|| ident.clone())
    }

    /// The slice a walk goes over, `bodies.iter()`, `bodies`, `&bodies` (enumerated or not:
    /// `true` with `.enumerate()`).
    fn walk(&self, e: &Expr) -> Option<(Ident, bool)> {
        match strip(e) {
            Expr::MethodCall(m) if m.method == "enumerate" && m.args.is_empty() => {
                let (p, false) = self.walk(&m.receiver)? else {
                    return None;
                };
                Some((p, true))
            }
            Expr::MethodCall(m) if m.method == "iter" && m.args.is_empty() => {
                Some((self.param(&m.receiver)?, false))
            }
            e => Some((self.param(e)?, false)),
        }
    }

    /// What a walk's pattern binds (`b`, `&b`, `Body { pos, mass, .. }`; `(i, b)` when
    /// enumerated) and the index's pattern, the index named afresh when the walk has none.
    fn names(&mut self, pat: &Pat, enumerated: bool) -> Option<(Vec<Binding>, Pat)> {
        let element = |p: &Pat| {
            let mut out = Vec::new();
            bindings(p, &mut Vec::new(), &mut out).then_some(out)
        };
        let (bound, index) = match (crate::lower::strip_pat(pat), enumerated) {
            (Pat::Tuple(t), true) if t.elems.len() == 2 => {
                (element(&t.elems[1])?, Some(t.elems[0].clone()))
            }
            (p, false) => (element(p)?, None),
            _ => return None,
        };
        let index = self.index_pattern(index, bound.first().map(|b| &b.name));
        Some((bound, index))
    }

    /// Replaces the reads of what `bound` binds of an element (`b.field`, or a field bound by
    /// a pattern) by `param[index].field` in `node`.
    fn substitute(
        &mut self,
        node: &mut impl Substitutable,
        bound: &[Binding],
        param: &Ident,
        index: &Expr,
    ) {
        let mut s = Substitute {
            bound,
            param,
            index,
            error: None,
        };
        node.substitute(&mut s);
        if let Some(e) = s.error {
            self.error.get_or_insert(e);
        }
    }
}

impl Normalize<'_> {
    /// `let v: Vec<T> = bodies.iter().map(|b| ..).collect();` (or `collect::<Vec<T>>()`),
    /// `T` the float or an array of it: the statements that build the same `Vec` as a buffer
    /// written element by element, `let mut v: Vec<T> = vec![zero; bodies.len()];` then
    /// `for i in 0..bodies.len() { v[i] = ..; }` with the closure's reads of the element (so
    /// the state of a time loop is copied out of the structs as written).
    fn collected(&mut self, l: &syn::Local) -> Option<Vec<syn::Stmt>> {
        let init = l.init.as_ref().filter(|i| i.diverge.is_none())?;
        let Expr::MethodCall(collect) = strip(&init.expr) else {
            return None;
        };
        if collect.method != "collect" || !collect.args.is_empty() {
            return None;
        }
        let Expr::MethodCall(map) = strip(&collect.receiver) else {
            return None;
        };
        let (param, false) = self.walk(&map.receiver)? else {
            return None;
        };
        let (Some(Expr::Closure(c)), 1) = (map.args.first(), map.args.len()) else {
            return None;
        };
        if c.inputs.len() != 1 {
            return None;
        }
        let Pat::Type(typed) = &l.pat else {
            return self.collected_turbofish(l, collect, &param, c);
        };
        let name = match &*typed.pat {
            Pat::Ident(i) if i.subpat.is_none() && i.by_ref.is_none() => i.ident.clone(),
            _ => return None,
        };
        self.fill(&name, &typed.ty, &param, c, l.span())
    }

    /// [`Self::collected`] with the type on the `collect` (`collect::<Vec<T>>()`).
    fn collected_turbofish(
        &mut self,
        l: &syn::Local,
        collect: &syn::ExprMethodCall,
        param: &Ident,
        c: &syn::ExprClosure,
    ) -> Option<Vec<syn::Stmt>> {
        let name = match &l.pat {
            Pat::Ident(i) if i.subpat.is_none() && i.by_ref.is_none() => i.ident.clone(),
            _ => return None,
        };
        let ty = match collect.turbofish.as_ref()?.args.first()? {
            syn::GenericArgument::Type(t) => t.clone(),
            _ => return None,
        };
        self.fill(&name, &ty, param, c, l.span())
    }

    /// The buffer `name` of type `ty` (`Vec<T>`) filled by the closure `c` over `param`.
    fn fill(
        &mut self,
        name: &Ident,
        ty: &syn::Type,
        param: &Ident,
        c: &syn::ExprClosure,
        span: Span,
    ) -> Option<Vec<syn::Stmt>> {
        let syn::Type::Path(tp) = ty else { return None };
        let last = tp.path.segments.last()?;
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        let (true, Some(syn::GenericArgument::Type(elem))) =
            (last.ident == "Vec", args.args.first())
        else {
            return None;
        };
        let zero = crate::signature::literal(quote::quote!(0.0));
        let zero = match elem {
            syn::Type::Array(a) if crate::signature::float_type(&a.elem).is_some() => {
                let len = &a.len;
                quote::quote!([#zero; #len])
            }
            t if crate::signature::float_type(t).is_some() => zero,
            _ => return None,
        };
        let (bound, index) = self.names(&c.inputs[0], false)?;
        let mut value = (*c.body).clone();
        let at: Expr = syn::parse_quote!(#index);
        self.substitute(&mut value, &bound, param, &at);
        Some(vec![
            syn::parse_quote_spanned!(span=> let mut #name: #ty = vec![#zero; #param.len()];),
            syn::parse_quote_spanned!(span=> for #index in 0..#param.len() { #name[#index] = #value; }),
        ])
    }
}

impl Normalize<'_> {
    /// `let w = &bodies[a..b];` of a slice of structs: the name, the slice and the range.
    fn part_binding(&self, l: &syn::Local) -> Option<(Ident, Ident, syn::ExprRange)> {
        let init = l.init.as_ref().filter(|i| i.diverge.is_none())?;
        let Expr::Reference(r) = strip(&init.expr) else {
            return None;
        };
        let Expr::Index(ix) = strip(&r.expr) else {
            return None;
        };
        let Expr::Range(range) = strip(&ix.index) else {
            return None;
        };
        let Pat::Ident(w) = &l.pat else { return None };
        let param = self.param(&ix.expr)?;
        (w.subpat.is_none() && w.by_ref.is_none()).then(|| (w.ident.clone(), param, range.clone()))
    }
}

/// `e` as a call of `method` with one argument (`bodies.windows(2)`, `a.zip(b)`), perhaps
/// `.enumerate()`d (then `true`).
fn enumerated_call<'e>(e: &'e Expr, method: &str) -> Option<(&'e syn::ExprMethodCall, bool)> {
    let (call, enumerated) = match strip(e) {
        Expr::MethodCall(m) if m.method == "enumerate" && m.args.is_empty() => {
            (strip(&m.receiver), true)
        }
        e => (e, false),
    };
    match call {
        Expr::MethodCall(m) if m.method == method && m.args.len() == 1 => Some((m, enumerated)),
        _ => None,
    }
}

/// `{w}_{what}`, a name to make fresh.
fn format_ident(w: &Ident, what: &str) -> Ident {
    Ident::new(&format!("{w}_{what}"), w.span())
}

/// The first index and the length of the part `range` of `param` (`a..b`, `a..=b`, `a..`,
/// `..b`).
fn part_of(range: &syn::ExprRange, param: &Ident) -> (Expr, Expr) {
    let a: Expr = match &range.start {
        Some(a) => syn::parse_quote!((#a)),
        None => syn::parse_quote!(0),
    };
    let end: Expr = match (&range.end, &range.limits) {
        (Some(b), syn::RangeLimits::HalfOpen(_)) => syn::parse_quote!((#b)),
        (Some(b), syn::RangeLimits::Closed(_)) => syn::parse_quote!((#b) + 1),
        (None, _) => syn::parse_quote!(#param.len()),
    };
    let len = syn::parse_quote!(#end - #a);
    (a, len)
}

/// A name a pattern binds of an element: the element itself (`b`, `path` empty) or a field of
/// it (`pos` of `Body { pos, .. }`, `path` `[pos]`).
pub struct Binding {
    name: Ident,
    path: Vec<syn::Member>,
    /// A part of the slice instead of an element (`w` of `bodies.windows(2)`, `let w =
    /// &bodies[a..b];`): its first index and its length, `w[e]` read as `bodies[first + e]`.
    part: Option<(Expr, Expr)>,
}

/// The names `p` binds of an element whose members so far are `path`; `false` for a pattern
/// that does more than bind names (a literal, a range, a `..` before other elements).
fn bindings(p: &Pat, path: &mut Vec<syn::Member>, out: &mut Vec<Binding>) -> bool {
    match p {
        Pat::Ident(i) if i.subpat.is_none() => {
            out.push(Binding {
                name: i.ident.clone(),
                path: path.clone(),
                part: None,
            });
            true
        }
        Pat::Wild(_) => true,
        Pat::Paren(p) => bindings(&p.pat, path, out),
        Pat::Reference(r) => bindings(&r.pat, path, out),
        Pat::Type(t) => bindings(&t.pat, path, out),
        Pat::Struct(st) if st.qself.is_none() => st.fields.iter().all(|f| {
            path.push(f.member.clone());
            let ok = bindings(&f.pat, path, out);
            path.pop();
            ok
        }),
        Pat::TupleStruct(t) if t.qself.is_none() => {
            let n = t.elems.len();
            t.elems.iter().enumerate().all(|(k, e)| match e {
                Pat::Rest(_) => k + 1 == n,
                e => {
                    path.push(syn::Member::Unnamed(syn::Index {
                        index: k as u32,
                        span: Span::call_site(),
                    }));
                    let ok = bindings(e, path, out);
                    path.pop();
                    ok
                }
            })
        }
        _ => false,
    }
}

impl VisitMut for Normalize<'_> {
    fn visit_block_mut(&mut self, block: &mut syn::Block) {
        // `let b = &bodies[j];`: the index bound once, `b.field` read as `bodies[index].field`
        // in the statements after it.
        let mut k = 0;
        while k < block.stmts.len() {
            // `let pos: Vec<[f64; 3]> = bodies.iter().map(|b| b.pos).collect();`: a buffer
            // filled element by element.
            if let syn::Stmt::Local(l) = &block.stmts[k] {
                if let Some(filled) = self.collected(l) {
                    block.stmts.splice(k..=k, filled);
                    continue;
                }
            }
            // `let w = &bodies[a..b];` (a window, as the desugaring writes `windows`): its first
            // index and length bound once, `w[e]` read as `bodies[first + e]` after it.
            if let syn::Stmt::Local(l) = &block.stmts[k] {
                if let Some((w, param, range)) = self.part_binding(l) {
                    let (first, len) = (
                        self.index_name(&format_ident(&w, "first")),
                        self.index_name(&format_ident(&w, "len")),
                    );
                    let (a, n) = part_of(&range, &param);
                    let span = l.span();
                    let mut rest: Vec<syn::Stmt> = block.stmts.drain(k + 1..).collect();
                    let bound = [Binding {
                        name: w,
                        path: Vec::new(),
                        part: Some((syn::parse_quote!(#first), syn::parse_quote!(#len))),
                    }];
                    let zero: Expr = syn::parse_quote!(0);
                    self.substitute(&mut rest, &bound, &param, &zero);
                    block.stmts.splice(
                        k..=k,
                        [
                            syn::parse_quote_spanned!(span=> let #first = #a;),
                            syn::parse_quote_spanned!(span=> let #len = #n;),
                        ],
                    );
                    block.stmts.extend(rest);
                    k += 2;
                    continue;
                }
            }
            if let syn::Stmt::Local(l) = &block.stmts[k] {
                // `let b = &bodies[j];`, `let b: &Body = ..` (a closure's parameter, inlined),
                // `let Body { pos, .. } = &bodies[j];`.
                let element = match &l.init {
                    Some(init) if init.diverge.is_none() => {
                        let value = match strip(&init.expr) {
                            Expr::Reference(r) if r.mutability.is_none() => strip(&r.expr),
                            e => e,
                        };
                        // A nested struct of an element (`let s = &bodies[j].spring;`): the
                        // names bound under its path.
                        let mut path = Vec::new();
                        let mut value = value;
                        while let Expr::Field(f) = value {
                            path.insert(0, f.member.clone());
                            value = strip(&f.base);
                        }
                        match value {
                            // (Not a part, `&bodies[a..b]`: no element.)
                            Expr::Index(ix) if !matches!(strip(&ix.index), Expr::Range(_)) => {
                                self.param(&ix.expr).and_then(|param| {
                                    let mut bound = Vec::new();
                                    bindings(&l.pat, &mut path, &mut bound)
                                        .then(|| (bound, param, (*ix.index).clone()))
                                })
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if let Some((bound, param, index)) = element {
                    let span = l.span();
                    let mut rest: Vec<syn::Stmt> = block.stmts.drain(k + 1..).collect();
                    // The index itself where the statements after do not change what it reads
                    // (`nodes[n.next]`, a constant field, stays one), else bound once.
                    let at: Expr = if stable(&index, &rest) {
                        block.stmts.truncate(k);
                        index
                    } else {
                        let base = bound.first().map_or_else(
                            || Ident::new("element", Span::call_site()),
                            |b| b.name.clone(),
                        );
                        let i = self.index_name(&base);
                        block.stmts[k] = syn::parse_quote_spanned!(span=> let #i = #index;);
                        syn::parse_quote!(#i)
                    };
                    self.substitute(&mut rest, &bound, &param, &at);
                    let removed = block.stmts.len() == k;
                    block.stmts.extend(rest);
                    // The binding removed: statement `k` is the first after it, not yet visited.
                    if removed {
                        continue;
                    }
                }
            }
            self.visit_stmt_mut(&mut block.stmts[k]);
            k += 1;
        }
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::ForLoop(f) => match self.indexed_walk(&f.expr, &f.pat, false) {
                Some(Ok(w)) => {
                    self.substitute(&mut f.body, &w.bound, &w.param, &w.index);
                    *f.pat = w.pat;
                    *f.expr = w.iter;
                    // A zip of two slices of structs walks the other one now.
                    return self.visit_expr_mut(e);
                }
                Some(Err(param)) => {
                    self.error.get_or_insert(syn::Error::new_spanned(&f.pat, format!("#[differentiate] walks `{param}`, a slice of structs differentiated field by field, with an element's name or a struct pattern (`for b in {param}.iter()`, `for (i, b) in {param}.iter().enumerate()`, `for Body {{ pos, mass, .. }} in {param}`, `for (b, v) in {param}.iter().zip(x)`), and reads its fields (`b.mass`)")));
                }
                None => {}
            },
            // `bodies.iter().map(|b| ..)` (enumerated, zipped): a map over the indices.
            Expr::MethodCall(m) if m.method == "map" && m.args.len() == 1 => {
                // `.map(kinetic)`: the function called with the element.
                if let Expr::Path(f) = &m.args[0] {
                    if self.walks_slice(&m.receiver) {
                        let x = self.fresh(&Ident::new("element", f.span()));
                        m.args[0] = syn::parse_quote_spanned!(f.span()=> |#x| #f(#x));
                    }
                }
                if let Expr::Closure(c) = &mut m.args[0] {
                    let walk = match c.inputs.len() {
                        1 => self.indexed_walk(&m.receiver, &c.inputs[0], true),
                        _ => None,
                    };
                    match walk {
                        Some(Ok(w)) => {
                            self.substitute(&mut *c.body, &w.bound, &w.param, &w.index);
                            c.inputs[0] = w.pat;
                            *m.receiver = w.iter;
                            // A zip of two slices of structs walks the other one now.
                            return self.visit_expr_mut(e);
                        }
                        Some(Err(param)) => {
                            self.error.get_or_insert(syn::Error::new_spanned(&c.inputs, format!("#[differentiate] maps `{param}`, a slice of structs differentiated field by field, with a closure of one element (`|b| b.mass * b.v`, `|(i, b)| ..` enumerated, `|(b, &v)| ..` zipped)")));
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
}

/// A walk over a slice of structs written as a walk over its indices.
struct IndexedWalk {
    /// The walk's new pattern: the index, with the other side's pattern for a zip.
    pat: Pat,
    /// The new iterator: `0..bodies.len()`, or the other side of a zip enumerated and cut to
    /// the slice's length.
    iter: Expr,
    /// What the old pattern bound of the element.
    bound: Vec<Binding>,
    param: Ident,
    /// The element's index, as the body reads it.
    index: Expr,
}

impl Normalize<'_> {
    /// `bodies.windows(k)` walked with `pat` (`w`, or `(i, w)` enumerated) as an
    /// [`IndexedWalk`] over the windows' first indices, `w` a part of length `k`.
    fn windows_walk(
        &mut self,
        iter: &Expr,
        pat: &Pat,
        parens: bool,
    ) -> Option<Result<IndexedWalk, Ident>> {
        let (m, enumerated) = enumerated_call(iter, "windows")?;
        let param = self.param(&m.receiver)?;
        let k = &m.args[0];
        let (w, index) = match (crate::lower::strip_pat(pat), enumerated) {
            (Pat::Ident(w), false) => (w, None),
            (Pat::Tuple(t), true) if t.elems.len() == 2 => match &t.elems[1] {
                Pat::Ident(w) => (w, Some(t.elems[0].clone())),
                _ => return Some(Err(param)),
            },
            _ => return Some(Err(param)),
        };
        if w.subpat.is_some() || w.by_ref.is_some() {
            return Some(Err(param));
        }
        let index = self.index_pattern(index, Some(&w.ident));
        let at: Expr = syn::parse_quote!(#index);
        let span = iter.span();
        let range: Expr =
            syn::parse_quote_spanned!(span=> 0..(#param.len() + 1).saturating_sub(#k));
        let iter = match parens {
            true => syn::parse_quote_spanned!(span=> (#range)),
            false => range,
        };
        Some(Ok(IndexedWalk {
            pat: index,
            iter,
            bound: vec![Binding {
                name: w.ident.clone(),
                path: Vec::new(),
                part: Some((at.clone(), syn::parse_quote!((#k)))),
            }],
            param,
            index: at,
        }))
    }

    /// A walk of a slice of structs ([`Self::walk`]), then `.skip(a)` and `.take(b)` (after the
    /// `enumerate`, which counts the slice's own indices): the slice, whether enumerated, and
    /// the range of its indices walked (`a..min(a + b, bodies.len())`).
    fn ranged(&self, e: &Expr) -> Option<(Ident, bool, Expr)> {
        let mut e = strip(e);
        let mut take = None;
        let mut skip = None;
        if let Expr::MethodCall(m) = e {
            if m.method == "take" && m.args.len() == 1 {
                take = Some(m.args[0].clone());
                e = strip(&m.receiver);
            }
        }
        if let Expr::MethodCall(m) = e {
            if m.method == "skip" && m.args.len() == 1 {
                skip = Some(m.args[0].clone());
                e = strip(&m.receiver);
            }
        }
        let (param, enumerated) = self.walk(e)?;
        let start: Expr = match &skip {
            Some(a) => syn::parse_quote!((#a)),
            None => syn::parse_quote!(0),
        };
        let range = match take {
            Some(b) => {
                syn::parse_quote!(#start..::core::cmp::min(#start + (#b), #param.len()))
            }
            None => syn::parse_quote!(#start..#param.len()),
        };
        Some((param, enumerated, range))
    }

    /// `iter` walked with `pat` as an [`IndexedWalk`]: `None` when it walks no slice of
    /// structs, `Err(slice)` when its pattern cannot be written so. `parens`: the iterator is
    /// a method's receiver (`(0..n).map(..)`).
    fn indexed_walk(
        &mut self,
        iter: &Expr,
        pat: &Pat,
        parens: bool,
    ) -> Option<Result<IndexedWalk, Ident>> {
        if let Some((param, enumerated, range)) = self.ranged(iter) {
            let Some((bound, index)) = self.names(pat, enumerated) else {
                return Some(Err(param));
            };
            let span = iter.span();
            let iter = match parens {
                true => syn::parse_quote_spanned!(span=> (#range)),
                false => syn::parse_quote_spanned!(span=> #range),
            };
            let at: Expr = syn::parse_quote!(#index);
            return Some(Ok(IndexedWalk {
                pat: index,
                iter,
                bound,
                param,
                index: at,
            }));
        }
        // `bodies.windows(k)` (enumerated too): the windows' first indices, each window a part.
        if let Some(walk) = self.windows_walk(iter, pat, parens) {
            return Some(walk);
        }
        // `bodies.iter().zip(x)`, `x.iter().zip(bodies)` (enumerated too): the other side,
        // enumerated and cut to the slice's length, `x.iter().enumerate().take(bodies.len())`.
        let (z, enumerated) = enumerated_call(iter, "zip")?;
        let (param, side, other) = match (self.walk(&z.receiver), self.walk(&z.args[0])) {
            (Some((p, false)), _) => (p, 0, &z.args[0]),
            (_, Some((p, false))) => (p, 1, &*z.receiver),
            _ => return None,
        };
        let pair = match (crate::lower::strip_pat(pat), enumerated) {
            (Pat::Tuple(t), false) => Some((None, t)),
            (Pat::Tuple(t), true) if t.elems.len() == 2 => {
                match crate::lower::strip_pat(&t.elems[1]) {
                    Pat::Tuple(inner) => Some((Some(t.elems[0].clone()), inner)),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((index, pair)) = pair.filter(|(_, p)| p.elems.len() == 2) else {
            return Some(Err(param));
        };
        let mut bound = Vec::new();
        if !bindings(&pair.elems[side], &mut Vec::new(), &mut bound) {
            return Some(Err(param));
        }
        let other_pat = pair.elems[1 - side].clone();
        let index = self.index_pattern(index, bound.first().map(|b| &b.name));
        // The other side as an iterator: a slice or `Vec` named (or borrowed) is walked by
        // `iter()`.
        let other_iter: Expr = match strip(other) {
            Expr::Path(_) => syn::parse_quote!(#other.iter()),
            Expr::Reference(r) if r.mutability.is_none() => {
                let inner = &r.expr;
                syn::parse_quote!(#inner.iter())
            }
            _ => other.clone(),
        };
        let span = iter.span();
        let iter = syn::parse_quote_spanned!(span=> #other_iter.enumerate().take(#param.len()));
        let at: Expr = syn::parse_quote!(#index);
        Some(Ok(IndexedWalk {
            pat: syn::parse_quote!((#index, #other_pat)),
            iter,
            bound,
            param,
            index: at,
        }))
    }
}

/// Is `index` made of names, fields, indexing, literals and arithmetic only, none of whose
/// names `rest` assigns or binds again? Then it reads the same wherever `rest` reads it.
fn stable(index: &Expr, rest: &[syn::Stmt]) -> bool {
    use syn::visit::Visit;
    struct Names {
        names: HashSet<String>,
        plain: bool,
    }
    impl<'ast> Visit<'ast> for Names {
        fn visit_expr(&mut self, e: &'ast Expr) {
            match e {
                Expr::Path(p) => {
                    if let Some(i) = p.path.get_ident() {
                        self.names.insert(i.to_string());
                    }
                }
                Expr::Field(_)
                | Expr::Index(_)
                | Expr::Lit(_)
                | Expr::Paren(_)
                | Expr::Binary(_)
                | Expr::Unary(_) => syn::visit::visit_expr(self, e),
                _ => self.plain = false,
            }
        }
    }
    struct Changes<'a> {
        names: &'a HashSet<String>,
        changed: bool,
    }
    impl Changes<'_> {
        fn target(&mut self, e: &Expr) {
            let mut root = strip(e);
            while let Expr::Field(f) = root {
                root = strip(&f.base);
            }
            if let Expr::Path(p) = root {
                if p.path
                    .get_ident()
                    .is_some_and(|i| self.names.contains(&i.to_string()))
                {
                    self.changed = true;
                }
            }
        }
    }
    impl<'ast> Visit<'ast> for Changes<'_> {
        fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
            self.target(&a.left);
            syn::visit::visit_expr_assign(self, a);
        }
        fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
            if crate::lower::compound(&b.op).is_some() {
                self.target(&b.left);
            }
            syn::visit::visit_expr_binary(self, b);
        }
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            if self.names.contains(&p.ident.to_string()) {
                self.changed = true;
            }
        }
        fn visit_expr_reference(&mut self, r: &'ast syn::ExprReference) {
            if r.mutability.is_some() {
                self.target(&r.expr);
            }
            syn::visit::visit_expr_reference(self, r);
        }
    }
    let mut names = Names {
        names: HashSet::new(),
        plain: true,
    };
    names.visit_expr(index);
    if !names.plain {
        return false;
    }
    let mut changes = Changes {
        names: &names.names,
        changed: false,
    };
    for s in rest {
        changes.visit_stmt(s);
    }
    !changes.changed
}

/// What [`Normalize::substitute`] rewrites: statements, a block, an expression.
trait Substitutable {
    fn substitute(&mut self, s: &mut Substitute);
}

impl Substitutable for Vec<syn::Stmt> {
    fn substitute(&mut self, s: &mut Substitute) {
        for stmt in self {
            s.visit_stmt_mut(stmt);
        }
    }
}

impl Substitutable for syn::Block {
    fn substitute(&mut self, s: &mut Substitute) {
        s.visit_block_mut(self);
    }
}

impl Substitutable for Expr {
    fn substitute(&mut self, s: &mut Substitute) {
        s.visit_expr_mut(self);
    }
}

/// `b.field` to `param[index].field`, and a field bound by a pattern (`pos` of `Body { pos,
/// .. }`, also dereferenced, `*pos`) to `param[index].pos`; the element itself used whole, or
/// a binding of one of those names, is an error.
struct Substitute<'a> {
    bound: &'a [Binding],
    param: &'a Ident,
    index: &'a Expr,
    error: Option<syn::Error>,
}

impl Substitute<'_> {
    fn fail(&mut self, span: Span, message: String) {
        self.error.get_or_insert(syn::Error::new(span, message));
    }

    /// What `e` binds, if it is one of the names.
    fn binding(&self, e: &Expr) -> Option<&Binding> {
        let Expr::Path(p) = strip(e) else { return None };
        self.bound.iter().find(|b| p.path.is_ident(&b.name))
    }

    /// `param[index].path` of a binding, spanned like the read it replaces.
    fn read(&self, b: &Binding, span: Span) -> Expr {
        let (param, index, path) = (self.param, self.index, &b.path);
        syn::parse_quote_spanned!(span=> #param[#index] #(.#path)*)
    }
}

/// The innermost base of a chain of fields (`b` of `b.layer.w`).
fn field_root(f: &mut syn::ExprField) -> &mut Expr {
    match &mut *f.base {
        Expr::Field(inner) => field_root(inner),
        base => base,
    }
}

impl Substitute<'_> {
    /// A call's arguments: the element itself (`kinetic(b)`, `pair(&a, b)`) passed as
    /// `&param[index]`, differentiated through the function's pullback; the others visited.
    fn arguments<'e>(&mut self, args: impl Iterator<Item = &'e mut Expr>) {
        for a in args {
            let element = match strip(a) {
                Expr::Reference(r) if r.mutability.is_none() => self.binding(&r.expr),
                e => self.binding(e),
            };
            match element {
                // A name bound by reference to a field (`s` of `let s = &n.spring;`, `pos` of
                // `Body { pos, .. }`): the field by reference.
                Some(b) if b.part.is_none() => {
                    let (param, index, path, span) = (self.param, self.index, &b.path, a.span());
                    *a = syn::parse_quote_spanned!(span=> &#param[#index] #(.#path)*);
                }
                _ => self.visit_expr_mut(a),
            }
        }
    }
}

impl VisitMut for Substitute<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // A closure whose parameters take one of the names (`.filter(|b| ..)`): inside it the
        // name is the parameter's.
        if let Expr::Closure(c) = e {
            let mut names = Vec::new();
            for p in &c.inputs {
                bindings(p, &mut Vec::new(), &mut names);
            }
            if names
                .iter()
                .any(|n| self.bound.iter().any(|b| b.name == n.name))
            {
                let kept: Vec<Binding> = self
                    .bound
                    .iter()
                    .filter(|b| !names.iter().any(|n| n.name == b.name))
                    .map(|b| Binding {
                        name: b.name.clone(),
                        path: b.path.clone(),
                        part: b.part.clone(),
                    })
                    .collect();
                let mut inner = Substitute {
                    bound: &kept,
                    param: self.param,
                    index: self.index,
                    error: None,
                };
                inner.visit_expr_mut(&mut c.body);
                if let Some(err) = inner.error {
                    self.error.get_or_insert(err);
                }
                return;
            }
        }
        match e {
            Expr::Field(f) => {
                let root = field_root(f);
                if let Some(b) = self.binding(root) {
                    *root = self.read(b, root.span());
                    return;
                }
            }
            // `w[e]` of a part: the slice's element `first + e`.
            Expr::Index(ix) => {
                if let Some((first, _)) = self.binding(&ix.expr).and_then(|b| b.part.clone()) {
                    self.visit_expr_mut(&mut ix.index);
                    let (param, index, span) = (self.param, &ix.index, ix.span());
                    *e = syn::parse_quote_spanned!(span=> #param[#first + (#index)]);
                    return;
                }
            }
            // `w.len()` of a part: its length.
            Expr::MethodCall(m)
                if m.args.is_empty()
                    && self.binding(&m.receiver).is_some_and(|b| b.part.is_some()) =>
            {
                if let Some((_, len)) = self.binding(&m.receiver).and_then(|b| b.part.clone()) {
                    match m.method.to_string().as_str() {
                        "len" => *e = syn::parse_quote!((#len)),
                        "is_empty" => *e = syn::parse_quote!((#len == 0)),
                        _ => {}
                    }
                    if !matches!(e, Expr::MethodCall(_)) {
                        return;
                    }
                }
            }
            Expr::Call(c) => {
                self.visit_expr_mut(&mut c.func);
                self.arguments(c.args.iter_mut());
                return;
            }
            Expr::MethodCall(m) => {
                // A method of the element itself (`b.kinetic()`): of `param[index]`.
                match self.binding(&m.receiver) {
                    Some(b) if b.path.is_empty() && b.part.is_none() => {
                        let (param, index, span) = (self.param, self.index, m.receiver.span());
                        *m.receiver = syn::parse_quote_spanned!(span=> #param[#index]);
                    }
                    _ => self.visit_expr_mut(&mut m.receiver),
                }
                self.arguments(m.args.iter_mut());
                return;
            }
            // `*mass` of a field bound by reference: the field itself.
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => {
                if let Some(b) = self.binding(&u.expr).filter(|b| !b.path.is_empty()) {
                    *e = self.read(b, u.span());
                    return;
                }
            }
            Expr::Path(_) => {
                if let Some(b) = self.binding(e) {
                    let span = e.span();
                    if b.part.is_some() {
                        let (name, param) = (&b.name, self.param);
                        let message = format!("`{name}` is a part of `{param}`, a slice of structs differentiated field by field: read its elements' fields here (`{name}[0].pos[k]`) and its length, not the part whole");
                        self.fail(span, message);
                    } else if b.path.is_empty() {
                        let (name, param) = (&b.name, self.param);
                        let message = format!("`{name}` is an element of `{param}`, a slice of structs differentiated field by field: read its fields here (`{name}.pos[k]`, `{name}.mass`) or pass it to a differentiated function (`kinetic({name})`), not otherwise whole");
                        self.fail(span, message);
                    } else {
                        *e = self.read(b, span);
                    }
                    return;
                }
            }
            _ => {}
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }

    fn visit_block_mut(&mut self, block: &mut syn::Block) {
        // `let b = b;` (a filter's test, as the desugaring writes it): the same element.
        block.stmts.retain(|s| {
            let syn::Stmt::Local(l) = s else { return true };
            let (Pat::Ident(p), Some(init)) = (&l.pat, &l.init) else {
                return true;
            };
            let same = matches!(strip(&init.expr), Expr::Path(q) if q.path.is_ident(&p.ident));
            !(same && init.diverge.is_none() && self.bound.iter().any(|b| b.name == p.ident))
        });
        syn::visit_mut::visit_block_mut(self, block);
    }

    fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
        if let Some(b) = self.bound.iter().find(|b| b.name == p.ident) {
            let (name, param) = (&b.name, self.param);
            let message = format!("`{name}` names an element of `{param}` (a slice of structs differentiated field by field), or one of its fields, and is bound again here: rename one of them");
            self.fail(p.ident.span(), message);
        }
        syn::visit_mut::visit_pat_ident_mut(self, p);
    }

    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        // `vec![b.mass, ..]`: the values inside, rewritten like any others.
        if let Some(mut contents) = crate::lower::vec_contents(m) {
            self.visit_expr_mut(&mut contents);
            crate::lower::set_vec_contents(m, &contents);
            return;
        }
        let named = self
            .bound
            .iter()
            .find(|b| crate::signature::mentions(m.tokens.clone(), &b.name.to_string()));
        if let Some(b) = named {
            let (name, param) = (&b.name, self.param);
            let message = format!("`{name}` (an element of `{param}`, a slice of structs differentiated field by field, or one of its fields) is read inside a macro: bind the value to a local first (`let m = {name}.mass;`)");
            self.fail(m.span(), message);
        }
    }
}

/// How the body reads a column's elements.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    /// By index (`bodies[i].pos[k]`), or as a container (`bodies[i].w.iter()`, `.len()`,
    /// `&bodies[i].w` passed on): a point or a row, read by reference.
    pub indexed: bool,
    /// As an operand of float arithmetic (`bodies[i].mass * v`, `-bodies[i].q`).
    pub arithmetic: bool,
    /// Whole, by a differentiated call (`spring_energy(&nodes[i].spring, d)`, a method of a
    /// nested struct, `nodes[i].spring.energy(d)`): each element's gradient comes back from
    /// the pullback, added into the column's (a `Vec` of the field's type, like a slice of
    /// structs' gradient).
    pub whole: bool,
}

impl Usage {
    /// The runtime function that gathers the column, checking the field's type where the
    /// reads say what it is (so that generated code may write their arithmetic as scalars):
    /// floats for a field read only in arithmetic, points or rows for one read only by index
    /// or as a container.
    pub fn gather(self) -> &'static str {
        match (self.indexed, self.arithmetic) {
            (true, false) => "point_column",
            (false, true) => "float_column",
            _ => "column",
        }
    }
}

/// The methods that read their receiver as a container (of floats, in a column of points or
/// rows): no float has them.
const CONTAINER_METHODS: [&str; 9] = [
    "iter",
    "len",
    "is_empty",
    "windows",
    "chunks",
    "chunks_exact",
    "first",
    "last",
    "to_vec",
];

/// The reads `param[i].path` of the differentiated fields `columns` (by slice and path) as
/// `name[i]`, the column bound for them, with how each column is read (by its name). Any use
/// of a slice of structs other than an element's field (read as a constant where the column
/// has none) and its length is the error.
pub fn to_columns(
    block: &mut syn::Block,
    params: &[(usize, Ident)],
    columns: &HashMap<(usize, String), Ident>,
) -> syn::Result<Read> {
    let mut c = Columns {
        params,
        columns,
        read: Read::default(),
        error: None,
    };
    c.visit_block_mut(block);
    c.error.map_or(Ok(c.read), Err)
}

/// What [`to_columns`] found.
#[derive(Default)]
pub struct Read {
    /// How each column is read, by its name.
    pub usage: HashMap<String, Usage>,
    /// The slices passed whole to a function (`kinetic(bodies)`), or an element of them
    /// (`pair(&bodies[i], b)`), by parameter index: their gradients come back from its
    /// pullback, a `Vec` of the struct or one element's.
    pub whole: HashSet<usize>,
    /// Those of them an element of which is passed whole.
    pub elements: HashSet<usize>,
}

struct Columns<'a> {
    params: &'a [(usize, Ident)],
    columns: &'a HashMap<(usize, String), Ident>,
    read: Read,
    error: Option<syn::Error>,
}

impl Columns<'_> {
    /// The slice of structs an argument passes whole (`bodies`, `&bodies`).
    fn whole(&self, e: &Expr) -> Option<usize> {
        let e = match strip(e) {
            Expr::Reference(r) if r.mutability.is_none() => strip(&r.expr),
            e => e,
        };
        let Expr::Path(p) = e else { return None };
        self.params
            .iter()
            .find(|(_, n)| p.path.is_ident(n))
            .map(|(k, _)| *k)
    }

    /// The slice of structs an argument passes an element of whole (`&bodies[i]`,
    /// `bodies[i]`).
    fn element(&self, e: &Expr) -> Option<usize> {
        let e = match strip(e) {
            Expr::Reference(r) if r.mutability.is_none() => strip(&r.expr),
            e => e,
        };
        let Expr::Index(ix) = e else { return None };
        let Expr::Path(p) = strip(&ix.expr) else {
            return None;
        };
        self.params
            .iter()
            .find(|(_, n)| p.path.is_ident(n))
            .map(|(k, _)| *k)
    }

    /// A call's arguments: a slice passed whole, or one of its elements (differentiated
    /// through the function's pullback, the gradient into the slice's), is recorded, the
    /// others visited.
    fn arguments<'e>(&mut self, args: impl Iterator<Item = &'e mut Expr>) {
        for a in args {
            // An element by reference (`&bodies[i]`; one by value is a float's or a point's,
            // `f64::sin(xs[i])`).
            let element = match a {
                Expr::Reference(_) => self.element(a),
                _ => None,
            };
            if let Some(k) = element {
                self.read.elements.insert(k);
            }
            if let Some(k) = self.whole(a).or(element) {
                self.read.whole.insert(k);
                if let Some(index) = element_index(a) {
                    self.visit_expr_mut(index);
                }
                continue;
            }
            // A field of an element passed whole by reference (`&nodes[i].spring`; one by
            // value, `bodies[i].mass`, is a value like any other).
            if matches!(a, Expr::Reference(r) if r.mutability.is_none()) {
                let read = through_ref(a);
                self.mark_whole(read);
                self.visit_expr_mut(read);
                continue;
            }
            self.visit_expr_mut(a);
        }
    }

    /// Marks the column `e` reads, if it is one, as read whole.
    fn mark_whole(&mut self, e: &Expr) {
        if let Some(Ok((name, _))) = self.column(e) {
            self.read.usage.entry(name.to_string()).or_default().whole = true;
        }
    }
}

/// `e` through the references and parentheses around it (`nodes[i].spring` of
/// `&(nodes[i].spring)`).
fn through_ref(e: &mut Expr) -> &mut Expr {
    let wrapped = match e {
        Expr::Reference(r) => r.mutability.is_none(),
        Expr::Paren(_) | Expr::Group(_) => true,
        _ => false,
    };
    if !wrapped {
        return e;
    }
    match e {
        Expr::Reference(r) => through_ref(&mut r.expr),
        Expr::Paren(p) => through_ref(&mut p.expr),
        Expr::Group(g) => through_ref(&mut g.expr),
        e => e,
    }
}

/// The index expression of an element `&xs[i]` (`i`).
fn element_index(e: &mut Expr) -> Option<&mut Expr> {
    match through_ref(e) {
        Expr::Index(ix) => Some(&mut ix.index),
        _ => None,
    }
}

impl Columns<'_> {
    /// The column of a field read, with its index expression.
    fn column(&self, e: &Expr) -> Option<Result<(Ident, Expr), ()>> {
        let (param, path, index) = crate::fields::of_column(e, self.params)?;
        let key = path
            .iter()
            .map(|m| crate::fields::member_name(m))
            .collect::<Vec<_>>()
            .join(".");
        Some(match self.columns.get(&(param, key)) {
            Some(name) => Ok((name.clone(), index.clone())),
            None => Err(()),
        })
    }
}

impl VisitMut for Columns<'_> {
    /// The reads inside `vec![..]` (`vec![[bodies[0].pos[0], ..], ..]`) are rewritten like
    /// any others: a macro's tokens are no expression to the walk, and a read left there would
    /// be a constant (the gradient lost; found by the differential run at 1 824 000).
    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        if let Some(mut contents) = crate::lower::vec_contents(m) {
            self.visit_expr_mut(&mut contents);
            crate::lower::set_vec_contents(m, &contents);
        }
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        let (indexed, operands): (Option<&Expr>, Vec<&Expr>) = match &*e {
            Expr::Index(outer) => (Some(&outer.expr), Vec::new()),
            Expr::MethodCall(m) if CONTAINER_METHODS.contains(&m.method.to_string().as_str()) => {
                (Some(&m.receiver), Vec::new())
            }
            // `&bodies[i].w` (passed on, walked): a container.
            Expr::Reference(r) if r.mutability.is_none() => (Some(&r.expr), Vec::new()),
            Expr::Binary(b) if is_arithmetic(&b.op) => (None, vec![&b.left, &b.right]),
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => (None, vec![&u.expr]),
            _ => (None, Vec::new()),
        };
        if let Some(Some(Ok((name, _)))) = indexed.map(|x| self.column(x)) {
            self.read.usage.entry(name.to_string()).or_default().indexed = true;
        }
        for o in operands {
            if let Some(Ok((name, _))) = self.column(o) {
                self.read
                    .usage
                    .entry(name.to_string())
                    .or_default()
                    .arithmetic = true;
            }
        }
        match self.column(e) {
            Some(Ok((name, mut index))) => {
                self.visit_expr_mut(&mut index);
                let span = e.span();
                *e = syn::parse_quote_spanned!(span=> #name[#index]);
                return;
            }
            // A field read as a constant (or by its size alone): as written, its index visited.
            Some(Err(())) => {
                let mut f = e;
                while let Expr::Field(field) = f {
                    f = &mut *field.base;
                }
                if let Expr::Index(ix) = f {
                    self.visit_expr_mut(&mut ix.index);
                }
                return;
            }
            None => {}
        }
        match e {
            Expr::MethodCall(m)
                if ["len", "is_empty"].contains(&m.method.to_string().as_str())
                    && m.args.is_empty()
                    && matches!(strip(&m.receiver), Expr::Path(p) if self.params.iter().any(|(_, n)| p.path.is_ident(n))) =>
                {}
            // Passed whole to a function or method (differentiated through its pullback).
            Expr::Call(c) => {
                self.visit_expr_mut(&mut c.func);
                self.arguments(c.args.iter_mut());
            }
            Expr::MethodCall(m) => {
                // A method of an element (`bodies[i].kinetic()`), differentiated through the
                // method's pullback, which gives the receiver's gradient.
                let own = own_method(&m.method.to_string());
                match self.element(&m.receiver).filter(|_| own) {
                    Some(k) => {
                        self.read.elements.insert(k);
                        self.read.whole.insert(k);
                        if let Some(index) = element_index(&mut m.receiver) {
                            self.visit_expr_mut(index);
                        }
                    }
                    None => {
                        // A method of a nested struct (`nodes[i].spring.energy(d)`).
                        if own {
                            self.mark_whole(&m.receiver);
                        }
                        self.visit_expr_mut(&mut m.receiver);
                    }
                }
                self.arguments(m.args.iter_mut());
            }
            Expr::Path(p) if self.params.iter().any(|(_, n)| p.path.is_ident(n)) => {
                let name = p
                    .path
                    .get_ident()
                    .map(|i| i.to_string())
                    .unwrap_or_default();
                self.error.get_or_insert(syn::Error::new(p.span(), format!("`{name}` is a slice of structs differentiated field by field: the body reads its elements' fields (`{name}[i].pos[k]`, `{name}[i].mass`, or `b.mass` of `for b in {name}.iter()` or `let b = &{name}[i];`) and its length, and passes it or its elements whole to differentiated functions (`kinetic({name})`, `pair(&{name}[i], &{name}[j])`); not an element otherwise whole (bound, a method of an element) or in other iterator chains")));
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }
}

/// `+ - * /` and their compound assignments.
fn is_arithmetic(op: &syn::BinOp) -> bool {
    use syn::BinOp::*;
    matches!(
        op,
        Add(_)
            | Sub(_)
            | Mul(_)
            | Div(_)
            | AddAssign(_)
            | SubAssign(_)
            | MulAssign(_)
            | DivAssign(_)
    )
}

/// A field of a differentiated struct parameter that holds structs and is read through its
/// elements' fields (`sys.bodies[i].mass`, `for b in &self.bodies { .. b.mass .. }`): a slice
/// of structs like a parameter, read under `name`, which lowering binds to `&owner.path`
/// before the forward sweep; its gradient goes into that field of the owner's.
pub struct FieldSlice {
    /// The owner's parameter index.
    pub owner: usize,
    /// The members from the owner to the field: `[bodies]`.
    pub path: Vec<syn::Member>,
    /// The name the body reads it by, one no identifier of the function has.
    pub name: Ident,
}

/// The fields of the struct parameters `owners` (index, name) that `block` reads as slices of
/// structs, and the block with each of them read by its [`FieldSlice::name`] (`None` if
/// there are none). A field is one when, read by that name as a slice of structs, some
/// element's field is read (`sys_bodies[i].mass` after [`normalize`]) or a method no float
/// or slice has is called on an element (`sys_bodies[i].kinetic()`), or when elements are
/// passed whole by reference to calls and nothing else reads them (`pair(a, b)` of a walk):
/// the macro sees the owner's type by name only, so how the body reads a field says what it
/// holds (a `Vec` of floats has no element with fields).
pub fn field_slices(
    block: &syn::Block,
    owners: &[(usize, Ident)],
) -> (Vec<FieldSlice>, Option<syn::Block>) {
    let tokens = block.to_token_stream();
    let mut candidates = Vec::new();
    chains(tokens.clone(), owners, &mut candidates);
    if candidates.is_empty() {
        return (Vec::new(), None);
    }
    let mut used = HashSet::new();
    identifiers(tokens.clone(), &mut used);
    let mut found: Vec<FieldSlice> = Vec::new();
    for (owner, path, span) in candidates {
        let owner_name = &owners
            .iter()
            .find(|(k, _)| *k == owner)
            .expect("an owner")
            .1;
        let base = std::iter::once(owner_name.to_string())
            .chain(path.iter().map(crate::fields::member_name))
            .collect::<Vec<_>>()
            .join("_");
        let mut text = base.clone();
        let mut k = 0;
        while used.contains(&text) {
            k += 1;
            text = format!("{base}_{k}");
        }
        let slice = FieldSlice {
            owner,
            path,
            name: Ident::new(&text, span),
        };
        let renamed = rename(tokens.clone(), owners, std::slice::from_ref(&slice));
        let Ok(mut tried) = syn::parse2::<syn::Block>(renamed) else {
            continue;
        };
        // Errors are the real run's to report, if the field is one: one whose elements'
        // fields are read. One whose elements are only passed whole to functions (`pair(a,
        // b)` of a walk) is one if nothing else reads them (a `Vec` of floats or points read
        // so is differentiated the same way: each element's gradient from the pullback).
        let walked = normalize(&mut tried, std::slice::from_ref(&slice.name));
        let fields = element_fields(tried.to_token_stream(), &slice.name);
        let mut passed = || {
            walked.is_ok()
                && to_columns(&mut tried, &[(0, slice.name.clone())], &HashMap::new())
                    .is_ok_and(|read| read.elements.contains(&0))
        };
        if fields || passed() {
            used.insert(text);
            found.push(slice);
        }
    }
    if found.is_empty() {
        return (Vec::new(), None);
    }
    let renamed = syn::parse2::<syn::Block>(rename(tokens, owners, &found)).ok();
    match renamed {
        Some(block) => (found, Some(block)),
        None => (Vec::new(), None),
    }
}

/// `e` with each field read as a slice of structs named as written (`self.bodies`, not the
/// name the body read it by).
pub fn as_written(
    e: syn::Error,
    slices: &[FieldSlice],
    sig: &crate::signature::Signature,
) -> syn::Error {
    if slices.is_empty() {
        return e;
    }
    let rewrite = |message: String| {
        slices.iter().fold(message, |m, s| {
            let written = std::iter::once(sig.params[s.owner].ident.to_string())
                .chain(s.path.iter().map(crate::fields::member_name))
                .collect::<Vec<_>>()
                .join(".");
            replace_word(&m, &s.name.to_string(), &written)
        })
    };
    let mut errors = e
        .into_iter()
        .map(|e| syn::Error::new(e.span(), rewrite(e.to_string())));
    let mut out = errors.next().expect("an error");
    out.extend(errors);
    out
}

/// `text` with each whole word `word` (not part of a longer identifier) replaced by `by`.
fn replace_word(text: &str, word: &str, by: &str) -> String {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().last().or(out.chars().last());
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        match before.is_some_and(ident) || after.is_some_and(ident) {
            true => out.push_str(word),
            false => out.push_str(by),
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// A member chain `owner.a.b` starting at `tokens[i]` (the owner's name, not itself a member
/// `x.owner`): the owner's index, the members (not a method's name) and the index after them.
fn chain_at(
    tokens: &[proc_macro2::TokenTree],
    i: usize,
    owners: &[(usize, Ident)],
) -> Option<(usize, Vec<syn::Member>, Span, usize)> {
    use proc_macro2::TokenTree as T;
    let dot = |t: Option<&T>| matches!(t, Some(T::Punct(p)) if p.as_char() == '.');
    let T::Ident(name) = &tokens[i] else {
        return None;
    };
    // `x.owner` is a member; `0..owner` a range.
    let range = i > 1 && range_dot(&tokens[i - 2]);
    if i > 0 && dot(tokens.get(i - 1)) && !range {
        return None;
    }
    let (owner, _) = owners.iter().find(|(_, o)| o == name)?;
    let mut path = Vec::new();
    let mut span = name.span();
    let mut j = i + 1;
    while dot(tokens.get(j)) {
        // A method (`.len()`, `.iter()`, `.collect::<..>()`) ends the chain.
        let call = opens_call(tokens.get(j + 2));
        let member = match tokens.get(j + 1) {
            Some(T::Ident(m)) if !call => syn::Member::Named(m.clone()),
            Some(T::Literal(l)) if !call => match l.to_string().parse::<u32>() {
                Ok(index) => syn::Member::Unnamed(syn::Index {
                    index,
                    span: l.span(),
                }),
                Err(_) => break,
            },
            _ => break,
        };
        span = member.span();
        path.push(member);
        j += 2;
    }
    (!path.is_empty()).then_some((*owner, path, span, j))
}

/// The member chains of `owners` in `tokens` that may hold structs: indexed (`sys.bodies[i]`),
/// a method's receiver (`sys.bodies.iter()`), walked (`in sys.bodies`) or borrowed
/// (`&sys.bodies`); each once, with the span of its first read's last member.
fn chains(
    tokens: proc_macro2::TokenStream,
    owners: &[(usize, Ident)],
    out: &mut Vec<(usize, Vec<syn::Member>, Span)>,
) {
    use proc_macro2::TokenTree as T;
    let tokens: Vec<T> = tokens.into_iter().collect();
    for (i, t) in tokens.iter().enumerate() {
        if let T::Group(g) = t {
            chains(g.stream(), owners, out);
            continue;
        }
        let Some((owner, path, span, end)) = chain_at(&tokens, i, owners) else {
            continue;
        };
        let after = match tokens.get(end) {
            Some(T::Group(g)) => g.delimiter() == proc_macro2::Delimiter::Bracket,
            Some(T::Punct(p)) => p.as_char() == '.',
            _ => false,
        };
        let before = match i.checked_sub(1).and_then(|k| tokens.get(k)) {
            Some(T::Ident(w)) => w == "in",
            Some(T::Punct(p)) => p.as_char() == '&',
            _ => false,
        };
        if (after || before) && !out.iter().any(|(o, p, _)| *o == owner && *p == path) {
            out.push((owner, path, span));
        }
    }
}

/// `tokens` with each chain of `slices` (whole: `sys.bodies`, not `sys.bodies_x` or
/// `sys.bodies.inner`) read as the slice's name.
fn rename(
    tokens: proc_macro2::TokenStream,
    owners: &[(usize, Ident)],
    slices: &[FieldSlice],
) -> proc_macro2::TokenStream {
    use proc_macro2::TokenTree as T;
    let tokens: Vec<T> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Some((owner, path, _, end)) = chain_at(&tokens, i, owners) {
            if let Some(s) = slices.iter().find(|s| s.owner == owner && s.path == path) {
                out.push(T::Ident(s.name.clone()));
                i = end;
                continue;
            }
        }
        match &tokens[i] {
            T::Group(g) => {
                let mut inner =
                    proc_macro2::Group::new(g.delimiter(), rename(g.stream(), owners, slices));
                inner.set_span(g.span());
                out.push(T::Group(inner));
            }
            t => out.push(t.clone()),
        }
        i += 1;
    }
    out.into_iter().collect()
}

/// Does `t`, after a member's name, make it a method's: its arguments, or a turbofish
/// (`.collect::<..>()`)?
fn opens_call(t: Option<&proc_macro2::TokenTree>) -> bool {
    match t {
        Some(proc_macro2::TokenTree::Group(g)) => {
            g.delimiter() == proc_macro2::Delimiter::Parenthesis
        }
        Some(proc_macro2::TokenTree::Punct(p)) => p.as_char() == ':',
        _ => false,
    }
}

/// Is `t` the first dot of a range's `..`?
fn range_dot(t: &proc_macro2::TokenTree) -> bool {
    matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == '.' && p.spacing() == proc_macro2::Spacing::Joint)
}

/// A method no float, array, slice or `Vec` has (`kinetic`, not `sin`, `is_nan`, `iter`): one
/// of a struct, when called on an element.
fn own_method(m: &str) -> bool {
    const STD: &[&str] = &[
        "mapv",
        "is_nan",
        "is_finite",
        "is_infinite",
        "is_normal",
        "is_sign_positive",
        "is_sign_negative",
        "partial_cmp",
        "total_cmp",
        "to_bits",
        "copysign",
        "fract",
        "rem_euclid",
        "div_euclid",
        "sin_cos",
        "maximum",
        "minimum",
        "classify",
        "iter",
        "iter_mut",
        "into_iter",
        "len",
        "is_empty",
        "first",
        "last",
        "get",
        "windows",
        "chunks",
        "chunks_exact",
        "split_at",
        "to_vec",
        "to_owned",
        "contains",
        "concat",
        "join",
        "map",
        "sort",
        "sort_by",
        "swap",
        "reverse",
        "rev",
        "zip",
        "enumerate",
        "sum",
        "product",
        "fold",
        "any",
        "all",
        "position",
        "max_by",
        "min_by",
        "copied",
        "cloned",
        "as_slice",
        "clone",
        "to_string",
        "into",
        "as_ref",
        "borrow",
        "eq",
        "ne",
        "cmp",
        "lt",
        "le",
        "gt",
        "ge",
        "abs_diff",
        "powi",
        "powf",
    ];
    crate::rules::method(m).is_none() && !STD.contains(&m)
}

/// Does `tokens` read a field of an element of the slice `name` (`name[i].mass`), or call a
/// method of an element that no float has (`name[i].kinetic()`, not `name[i].sin()`)?
fn element_fields(tokens: proc_macro2::TokenStream, name: &Ident) -> bool {
    use proc_macro2::TokenTree as T;
    let tokens: Vec<T> = tokens.into_iter().collect();
    tokens.iter().enumerate().any(|(i, t)| match t {
        T::Group(g) => element_fields(g.stream(), name),
        T::Ident(n) if n == name => {
            let indexed = matches!(tokens.get(i + 1), Some(T::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Bracket);
            let dot = matches!(tokens.get(i + 2), Some(T::Punct(p)) if p.as_char() == '.');
            let member = match tokens.get(i + 3) {
                Some(T::Ident(m)) => Some(m.to_string()),
                Some(T::Literal(l)) => Some(l.to_string()),
                _ => None,
            };
            let call = opens_call(tokens.get(i + 4));
            // An element, not a part (`name[1..]`).
            let part = match tokens.get(i + 1) {
                Some(T::Group(g)) => g.stream().into_iter().any(|t| range_dot(&t)),
                _ => false,
            };
            indexed && !part && dot && member.is_some_and(|m| !call || own_method(&m))
        }
        _ => false,
    })
}
