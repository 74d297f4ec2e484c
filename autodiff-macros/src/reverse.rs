//! Phase 5: the reverse sweep.
//!
//! Walks the lowered body backwards and propagates adjoints with the rules table. An adjoint
//! variable is created at its first contribution (`let mut d = init(&v, c)`) and accumulated
//! after that (`acc(&mut d, c)`); adjoints that first receive a contribution inside an `if` arm
//! are declared zero before it. For each `if`, the forward sweep saves exactly the values of
//! the arm that ran which that arm's reverse sweep reads: this phase finds them ([`Saved`]).

use crate::ir::{Block, Function, MapFn, Op, Operand, Stmt, VarId};
use crate::rules::{Adjoint, Args, Template};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use std::collections::{BTreeSet, HashMap, HashSet};

/// For each `if` (by its record variable) whose reverse sweep does anything: the values each
/// arm must save.
pub type Saved = HashMap<VarId, (Vec<VarId>, Vec<VarId>)>;

pub struct Reverse<'a> {
    f: &'a Function,
    float: Ident,
    rt: Ident,
    declared: HashSet<VarId>,
    used: Vec<BTreeSet<VarId>>,
    /// Inside an arm, a value that the arm hands out through a phi is read through the phi's
    /// output (defined outside the `if`), so it need not be saved twice.
    alias: HashMap<VarId, VarId>,
    /// Top-level values the forward sweep frees before the reverse sweep (their shape is kept
    /// where the reverse sweep needs it: [`like_name`]).
    released: HashSet<VarId>,
    /// Top-level values whose shape alone the reverse sweep reads (`init`, `zero_like`).
    pub used_like: BTreeSet<VarId>,
    pub saved: Saved,
}

/// The name under which the forward sweep keeps the shape of a released value. Mixed-site, so
/// it cannot clash with any name of the user's or of the call site.
pub fn like_name(var: &Ident) -> Ident {
    Ident::new(&format!("{var}_like"), Span::mixed_site())
}

impl<'a> Reverse<'a> {
    pub fn new(f: &'a Function, float: Ident, rt: Ident, released: HashSet<VarId>) -> Self {
        Reverse {
            f,
            float,
            rt,
            declared: HashSet::new(),
            used: vec![BTreeSet::new()],
            alias: HashMap::new(),
            released,
            used_like: BTreeSet::new(),
            saved: HashMap::new(),
        }
    }

    /// The top-level values the reverse sweep reads (as values, not only for their shape).
    pub fn used_values(&self) -> &BTreeSet<VarId> {
        &self.used[0]
    }

    /// The reverse sweep of the whole body, seeded with `seed` as the output's adjoint.
    pub fn sweep(&mut self, seed: TokenStream) -> TokenStream {
        let f = self.f;
        let mut out = self.contribute(&f.result, seed);
        out.extend(self.block(&f.body));
        out
    }

    /// The adjoint of a parameter after the sweep.
    pub fn gradient(&mut self, param: VarId) -> TokenStream {
        let rt = self.rt.clone();
        if self.declared.contains(&param) {
            self.f.vars[param].adjoint.to_token_stream_()
        } else {
            let x = self.primal(param);
            quote!(#rt::zero_like(&#x))
        }
    }

    /// A value whose shape alone is read (as the `like` of `init` or `zero_like`).
    fn like(&mut self, mut v: VarId) -> TokenStream {
        while let Some(&a) = self.alias.get(&v) {
            v = a;
        }
        if self.used.len() > 1 {
            // Inside an arm: the arm's saved values are kept whole.
            return self.primal(v).to_token_stream();
        }
        self.used_like.insert(v);
        let name = &self.f.vars[v].name;
        if self.released.contains(&v) {
            like_name(name).to_token_stream()
        } else {
            name.to_token_stream()
        }
    }

    /// A primal variable read by the reverse sweep (so the forward sweep must keep it).
    fn primal(&mut self, mut v: VarId) -> Ident {
        while let Some(&a) = self.alias.get(&v) {
            v = a;
        }
        if let Some(frame) = self.used.last_mut() {
            frame.insert(v);
        }
        self.f.vars[v].name.clone()
    }

    fn operand(&mut self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) => self.primal(*v).to_token_stream_(),
            Operand::Const(t) => t.clone(),
        }
    }

    fn active(&self, o: &Operand) -> bool {
        o.var().is_some_and(|v| self.f.vars[v].active)
    }

    /// Adds contribution `c` into the adjoint of `target`.
    fn contribute(&mut self, target: &Operand, c: TokenStream) -> TokenStream {
        let Some(v) = target.var() else {
            return TokenStream::new();
        };
        if !self.f.vars[v].active {
            return TokenStream::new();
        }
        let d = self.f.vars[v].adjoint.clone();
        let rt = &self.rt;
        if self.declared.contains(&v) {
            quote!(#rt::acc(&mut #d, #c);)
        } else {
            self.declared.insert(v);
            let x = self.like(v);
            let rt = &self.rt;
            quote!(let mut #d = #rt::init(&#x, #c);)
        }
    }

    fn block(&mut self, b: &Block) -> TokenStream {
        let mut out = TokenStream::new();
        for s in b.stmts.iter().rev() {
            out.extend(self.stmt(s));
        }
        out
    }

    fn stmt(&mut self, s: &Stmt) -> TokenStream {
        match s {
            Stmt::Let { var, op } => self.let_stmt(*var, op),
            Stmt::If {
                then,
                els,
                phis,
                record,
                ..
            } => self.if_stmt(then, els, phis, *record),
            Stmt::Effect(_) => TokenStream::new(),
        }
    }

    fn let_stmt(&mut self, var: VarId, op: &Op) -> TokenStream {
        if !self.f.vars[var].active || !self.declared.contains(&var) {
            return TokenStream::new();
        }
        let dy = self.f.vars[var].adjoint.clone();
        let rt = self.rt.clone();
        let mut out = TokenStream::new();
        // Whether a contribution took the adjoint by value; otherwise it is freed at the end,
        // as nothing reads it after its variable's own statement.
        let mut moved = false;
        match op {
            Op::Copy(o) => out.extend(self.contribute(o, quote!(&#dy))),
            Op::Verbatim(_) => {}
            Op::Prim {
                rule, args, ints, ..
            } => match rule.adjoint {
                Adjoint::Zero => {}
                Adjoint::Linear(signs) => {
                    // The adjoint is dead after this statement: the last operand that passes it on
                    // unchanged takes it by value (an array adjoint is moved, not copied).
                    let last = args
                        .iter()
                        .zip(signs)
                        .rposition(|(a, &plus)| plus && self.active(a));
                    moved = last.is_some();
                    let mut order: Vec<usize> =
                        (0..args.len()).filter(|&k| Some(k) != last).collect();
                    order.extend(last);
                    for k in order {
                        let c = match (signs[k], Some(k) == last) {
                            (true, true) => quote!(#dy),
                            (true, false) => quote!(&#dy),
                            (false, _) => quote!(-&#dy),
                        };
                        out.extend(self.contribute(&args[k], c));
                    }
                }
                Adjoint::Elementwise(templates) => {
                    let n = ints.first().map(|i| self.operand(i)).unwrap_or_default();
                    let names = Args::new(n, self.float.clone());
                    for (arg, template) in args.iter().zip(templates) {
                        if self.active(arg) {
                            let c = self.elementwise(var, args, &names, template);
                            out.extend(self.contribute(arg, c));
                        }
                    }
                }
                Adjoint::Runtime(adjoints) => {
                    for (arg, name) in args.iter().zip(adjoints) {
                        if self.active(arg) {
                            let operands: Vec<TokenStream> =
                                args.iter().map(|a| self.operand(a)).collect();
                            let consts: Vec<TokenStream> =
                                ints.iter().map(|i| self.operand(i)).collect();
                            let y = self.primal(var);
                            let name = Ident::new(name, Span::call_site());
                            let c = quote!(#rt::#name(#(&#operands,)* &#y, &#dy, #(#consts),*));
                            out.extend(self.contribute(arg, c));
                        }
                    }
                }
            },
            Op::Map { recv, func, .. } => {
                if self.active(recv) {
                    let names = Args::new(TokenStream::new(), self.float.clone());
                    let c = match func {
                        MapFn::Rule(rule, _) => match rule.adjoint {
                            Adjoint::Elementwise([template]) => {
                                self.elementwise(var, std::slice::from_ref(recv), &names, template)
                            }
                            _ => quote!(#rt::zero_like(&#dy)),
                        },
                        MapFn::Closure { function, .. } => {
                            let x = self.operand(recv);
                            let y = self.primal(var);
                            let f = self.float.clone();
                            let p = &function.vars[0].name;
                            let seed = &names.dy;
                            let body =
                                crate::emit::closure_pullback(function, &f, &rt, quote!(#seed));
                            quote!(#rt::pb1(&#x, &#y, &#dy, |#p: #f, _: #f, #seed: #f| -> #f #body))
                        }
                    };
                    out.extend(self.contribute(recv, c));
                }
            }
            Op::Call {
                pullback,
                args,
                refs,
                ..
            } => {
                let operands: Vec<TokenStream> = args
                    .iter()
                    .zip(refs)
                    .map(|(a, r)| {
                        let a = self.operand(a);
                        if *r {
                            quote!(&#a)
                        } else {
                            a
                        }
                    })
                    .collect();
                // Mixed-site names: they cannot clash with any other name in the function.
                let parts: Vec<Ident> = (0..args.len())
                    .map(|k| Ident::new(&format!("d_arg{k}"), Span::mixed_site()))
                    .collect();
                let pattern = if parts.len() == 1 {
                    let p = &parts[0];
                    quote!(#p)
                } else {
                    quote!((#(#parts),*))
                };
                out.extend(quote!(let #pattern = #pullback(#(#operands,)* #dy);));
                moved = true;
                for (arg, part) in args.iter().zip(&parts) {
                    out.extend(self.contribute(arg, quote!(#part)));
                }
            }
        }
        if !moved {
            out.extend(quote!(#rt::release(#dy);));
        }
        out
    }

    /// `__rt::pbN(&operands.., &y, &dy, |x: F, y: F, dy: F| -> F { body })`. Operands the
    /// template does not read are passed as a zero, so they need not be kept.
    fn elementwise(
        &mut self,
        var: VarId,
        args: &[Operand],
        names: &Args,
        template: &Template,
    ) -> TokenStream {
        let rt = self.rt.clone();
        let f = self.float.clone();
        let dy = self.f.vars[var].adjoint.clone();
        let params: Vec<&Ident> = match args.len() {
            1 => vec![&names.x],
            2 => vec![&names.a, &names.b],
            _ => vec![&names.a, &names.b, &names.c],
        };
        let zero = syn::LitFloat::new(&format!("0.0{f}"), Span::call_site()).to_token_stream();
        let reads = |p: &Ident| template.uses.contains(&p.to_string().as_str());
        let operands: Vec<TokenStream> = args
            .iter()
            .zip(&params)
            .map(|(a, p)| {
                if reads(p) {
                    self.operand(a)
                } else {
                    zero.clone()
                }
            })
            .collect();
        let yv = if reads(&names.y) {
            self.primal(var).to_token_stream()
        } else {
            zero.clone()
        };
        let (y, yd) = (&names.y, &names.dy);
        let pb = format_ident!("pb{}", args.len());
        let body = (template.body)(names);
        quote!(#rt::#pb(#(&#operands,)* &#yv, &#dy, |#(#params: #f,)* #y: #f, #yd: #f| -> #f { #body }))
    }

    fn if_stmt(
        &mut self,
        then: &Block,
        els: &Block,
        phis: &[crate::ir::Phi],
        record: VarId,
    ) -> TokenStream {
        let rt = self.rt.clone();
        // Adjoints of outer values that first receive a contribution inside an arm.
        let inner: HashSet<VarId> = defined_deep(then)
            .into_iter()
            .chain(defined_deep(els))
            .collect();
        let mut targets = BTreeSet::new();
        targets_of(then, &mut targets);
        targets_of(els, &mut targets);
        for p in phis {
            if self.declared.contains(&p.out) {
                targets.extend(p.then.var());
                targets.extend(p.els.var());
            }
        }
        let mut out = TokenStream::new();
        for v in targets {
            if inner.contains(&v) || !self.f.vars[v].active || self.declared.contains(&v) {
                continue;
            }
            self.declared.insert(v);
            let d = self.f.vars[v].adjoint.clone();
            let x = self.like(v);
            out.extend(quote!(let mut #d = #rt::zero_like(&#x);));
        }
        let mut arms = Vec::new();
        for (k, arm) in [then, els].into_iter().enumerate() {
            let snapshot = self.declared.clone();
            self.used.push(BTreeSet::new());
            let defined: HashSet<VarId> = arm.defined().into_iter().collect();
            let aliased: Vec<VarId> = phis
                .iter()
                .filter_map(|p| {
                    let src = if k == 0 { p.then.var() } else { p.els.var() }?;
                    (defined.contains(&src) && self.alias.insert(src, p.out).is_none())
                        .then_some(src)
                })
                .collect();
            let mut code = TokenStream::new();
            for p in phis {
                if self.f.vars[p.out].active && snapshot.contains(&p.out) {
                    let d = self.f.vars[p.out].adjoint.clone();
                    let src = if k == 0 { &p.then } else { &p.els };
                    code.extend(self.contribute(src, quote!(&#d)));
                }
            }
            code.extend(self.block(arm));
            let used = self.used.pop().unwrap_or_default();
            self.declared = snapshot;
            for v in aliased {
                self.alias.remove(&v);
            }
            let saved: Vec<VarId> = used
                .iter()
                .copied()
                .filter(|v| defined.contains(v))
                .collect();
            for v in used {
                if !defined.contains(&v) {
                    if let Some(frame) = self.used.last_mut() {
                        frame.insert(v);
                    }
                }
            }
            arms.push((code, saved));
        }
        if arms.iter().all(|(code, _)| code.is_empty()) {
            return out;
        }
        let (else_code, else_saved) = arms.pop().unwrap_or_default();
        let (then_code, then_saved) = arms.pop().unwrap_or_default();
        let names = |vs: &[VarId]| -> Vec<Ident> {
            vs.iter().map(|v| self.f.vars[*v].name.clone()).collect()
        };
        let (tn, en) = (names(&then_saved), names(&else_saved));
        let br = self.primal(record);
        out.extend(quote! {
            match #br {
                #rt::Branch::Then((#(#tn,)*)) => { #then_code }
                #rt::Branch::Else((#(#en,)*)) => { #else_code }
            }
        });
        self.saved.insert(record, (then_saved, else_saved));
        out
    }
}

/// Every variable defined in `b`, its arms included.
fn defined_deep(b: &Block) -> Vec<VarId> {
    let mut out = b.defined();
    for s in &b.stmts {
        if let Stmt::If { then, els, .. } = s {
            out.extend(defined_deep(then));
            out.extend(defined_deep(els));
        }
    }
    out
}

/// Every variable whose adjoint `b`'s reverse sweep may add to.
fn targets_of(b: &Block, out: &mut BTreeSet<VarId>) {
    for s in &b.stmts {
        match s {
            Stmt::Let { op, .. } => out.extend(op.operands().into_iter().filter_map(Operand::var)),
            Stmt::If {
                then, els, phis, ..
            } => {
                targets_of(then, out);
                targets_of(els, out);
                for p in phis {
                    out.extend(p.then.var());
                    out.extend(p.els.var());
                }
            }
            Stmt::Effect(_) => {}
        }
    }
}

trait ToTokenStream {
    fn to_token_stream_(&self) -> TokenStream;
}
impl ToTokenStream for Ident {
    fn to_token_stream_(&self) -> TokenStream {
        quote!(#self)
    }
}
