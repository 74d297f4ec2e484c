//! Phase 6: the companions' token streams.
//!
//! Each companion body is the forward sweep (the lowered body, with each `if` also recording
//! which arm ran and what that arm's reverse sweep needs) followed by the reverse sweep.

use crate::ir::{CallForm, Function, LoopKind, MapFn, Op, Operand, Stmt, VarId};
use crate::names::Namer;
use crate::reverse::{LoopPlan, Plans, Reverse, Saved};
use crate::rules::Forward as Fwd;
use crate::signature::{self, Param, Signature};
use crate::{attr, lower, rules, scalars, tbr};
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use std::collections::{BTreeSet, HashMap};
use syn::spanned::Spanned;
use syn::ItemFn;

pub fn companions(
    attr: TokenStream,
    func: &ItemFn,
    item: &TokenStream,
) -> syn::Result<TokenStream> {
    let options = attr::parse(attr)?;
    let name = &func.sig.ident;
    // The companion type below takes the function's name in the type namespace; named like a
    // primitive type, it would shadow that type in the whole module.
    if PRIMITIVE_TYPES.iter().any(|p| name == p) {
        return Err(syn::Error::new(
            name.span(),
            format!("#[differentiate] cannot annotate a function named `{name}`: the companion type it writes beside the function (`{name}::pullback`, which calls from differentiated code use) would shadow the primitive type `{name}` in this module; rename the function"),
        ));
    }
    let sig = signature::analyse(func, &options)?;
    let vis = &func.vis;
    let float = &sig.float;
    let generics = &func.sig.generics;
    let cfgs: Vec<&syn::Attribute> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect();
    let params: Vec<TokenStream> = sig
        .params
        .iter()
        .map(|p| {
            let (i, t) = (&p.ident, &p.ty);
            quote!(#i: #t)
        })
        .collect();
    let args: Vec<&Ident> = sig.params.iter().map(|p| &p.ident).collect();

    let grad_ty = tuple_or_bare(sig.wrt().map(|p| p.grad_ty.clone()).collect());
    let pullback_ty = tuple_or_bare(sig.params.iter().map(|p| p.grad_ty.clone()).collect());

    // Generated names avoid every identifier of the function (read from its tokens once).
    let fresh = Namer::avoiding(item.clone());
    let mut namer = fresh.clone();
    let d_out = namer.fresh("d_out");
    // The companion type: `#name::pullback`, which calls to `#name` in differentiated code use.
    // A type takes the function's name in the type namespace, so every `use` of the function
    // (renamed, re-exported, glob) imports it too.
    let companion = |target: TokenStream| {
        // Spanned at the pullback's path, so a hand-written pullback with the wrong signature
        // is reported at its name in the attribute.
        let call = quote_spanned!(target.span()=> #target(#(#args,)* #d_out));
        quote! {
            #(#cfgs)*
            #[doc(hidden)]
            #[allow(non_camel_case_types, dead_code, clippy::all)]
            #vis struct #name {}

            #(#cfgs)*
            #[allow(unused, clippy::all)]
            impl #name {
                /// The pullback of the function of the same name.
                #[inline]
                #vis fn pullback #generics (#(#params,)* #d_out: #float) -> #pullback_ty {
                    #call
                }
            }
        }
    };
    // A hand-written pullback: the companion type forwards to it; nothing is differentiated.
    if let Some(target) = &options.pullback {
        return Ok(companion(target.to_token_stream()));
    }
    let value_and_grad_body = braced(flatten_block(body(
        func,
        &sig,
        |p| p.wrt,
        quote!(1.0 as #float),
        true,
        namer,
    )?));
    let value_and_grad = format_ident!("{}_value_and_grad", name);
    // When `f_value_and_grad` differentiates every float parameter, the pullback is its
    // gradient scaled by `d_out`: one body, not two (half the code for rustc to compile).
    let shared = sig
        .params
        .iter()
        .all(|p| p.wrt || p.kind == signature::Kind::Constant);
    let pullback_body = if shared {
        let mut names = fresh.clone();
        let value = names.fresh("value");
        let rt = names.fresh("rt");
        let slots: Vec<(Ident, bool)> = sig
            .params
            .iter()
            .map(|p| (names.fresh("g"), p.kind == signature::Kind::Constant))
            .collect();
        let pattern = tuple_or_bare(
            slots
                .iter()
                .filter(|(_, constant)| !constant)
                .map(|(g, _)| g.to_token_stream())
                .collect(),
        );
        let scaled = tuple_or_bare(
            slots
                .iter()
                .map(|(g, constant)| {
                    if *constant {
                        quote!(())
                    } else {
                        quote!(#rt::scale(#g, #d_out))
                    }
                })
                .collect(),
        );
        quote!({
            use ::autodiff::__rt as #rt;
            let (#value, #pattern) = #value_and_grad(#(#args),*);
            #scaled
        })
    } else {
        let namer = fresh.clone();
        braced(flatten_block(body(
            func,
            &sig,
            |p| p.kind != signature::Kind::Constant,
            d_out.to_token_stream(),
            false,
            namer,
        )?))
    };

    let grad = format_ident!("{}_grad", name);
    let pullback = format_ident!("{}_pullback", name);
    let companion = companion(pullback.to_token_stream());
    let doc_vg =
        format!("The value of [`{name}`] and its gradient, generated by `#[differentiate]`.");
    let doc_g = format!("The gradient of [`{name}`], generated by `#[differentiate]`: one entry per differentiated parameter, in declaration order.");
    let doc_pb = format!("The pullback of [`{name}`], generated by `#[differentiate]`: each parameter's gradient scaled by the output adjoint, `()` for constant parameters.");
    Ok(quote! {
        #(#cfgs)*
        #[doc = #doc_vg]
        #[inline]
        #[allow(unused, clippy::all)]
        #vis fn #value_and_grad #generics (#(#params),*) -> (#float, #grad_ty) #value_and_grad_body

        #(#cfgs)*
        #[doc = #doc_g]
        #[inline]
        #[allow(unused, clippy::all)]
        #vis fn #grad #generics (#(#params),*) -> #grad_ty {
            #value_and_grad(#(#args),*).1
        }

        #(#cfgs)*
        #[doc = #doc_pb]
        #[allow(unused, clippy::all)]
        #vis fn #pullback #generics (#(#params,)* #d_out: #float) -> #pullback_ty #pullback_body

        #companion
    })
}

/// The primitive types, by name (`f16` and `f128` too, for when they are stable).
const PRIMITIVE_TYPES: [&str; 19] = [
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f16", "f32", "f64", "f128",
];

fn tuple_or_bare(items: Vec<TokenStream>) -> TokenStream {
    if items.len() == 1 {
        items.into_iter().next().unwrap_or_default()
    } else {
        quote!((#(#items),*))
    }
}

/// One companion body's statements (unbraced): forward sweep, reverse sweep, and the result (`(value, grads)` when
/// `with_value`, else the pullback's entries, `()` for constants).
fn body(
    func: &ItemFn,
    sig: &Signature,
    active: impl Fn(&Param) -> bool,
    seed: TokenStream,
    with_value: bool,
    mut namer: Namer,
) -> syn::Result<TokenStream> {
    let rt = namer.fresh("rt");
    let mut f = lower::lower(func, sig, &active, &mut namer)?;
    f.checkpoint = sig.checkpoint;
    scalars::infer(&mut f, sig);
    f.early = Reverse::new(&f, sig.float.clone(), rt.clone()).early_loops();
    tbr::untape_stable_reads(&mut f, &mut namer);
    // The reverse sweep, then the top-level values it does not read: those are freed at the end
    // of the forward sweep, rebound to their shape where the reverse sweep reads that.
    let mut rev = Reverse::new(&f, sig.float.clone(), rt.clone());
    let reverse = rev.sweep(seed);
    let result_var = f.result.var();
    let mut released: Vec<VarId> = top_level_values(&f)
        .into_iter()
        .filter(|v| !rev.used_values().contains(v) && Some(*v) != result_var)
        .collect();
    released.sort_unstable();
    released.dedup();
    // A value that a kept value views (`m` of `m.row(0)`) is kept too; the rest are freed
    // views first, since a view comes after what it borrows.
    let mut viewed = BTreeSet::new();
    for s in f.body.stmts.iter().rev() {
        if let Stmt::Let {
            var,
            op: Op::Prim { rule, args, .. },
        } = s
        {
            let kept = released.binary_search(var).is_err() || viewed.contains(var);
            if rule.borrows() && kept {
                viewed.extend(args.first().and_then(|a| a.var()));
            }
        }
    }
    released.retain(|v| !viewed.contains(v));
    released.reverse();
    let mut grads = Vec::new();
    for (id, p) in sig.params.iter().enumerate() {
        if with_value {
            if p.wrt {
                grads.push(rev.gradient(id));
            }
        } else if p.kind == signature::Kind::Constant {
            grads.push(quote!(()));
        } else {
            grads.push(rev.gradient(id));
        }
    }
    let saved = std::mem::take(&mut rev.saved);
    let plans = std::mem::take(&mut rev.plans);
    let fwd = Forward {
        f: &f,
        saved: &saved,
        rt: &rt,
        plans: &plans,
        mode: Mode::Sweep,
    };
    let mut forward = tapes(&f, &f.body, &plans);
    let fused = rev.fused.take();
    match &fused {
        // The last loop runs fused with its reverse, after the rest of the forward sweep.
        Some(_) => forward.extend(
            f.body.stmts[..f.body.stmts.len() - 1]
                .iter()
                .map(|s| fwd.stmt(s)),
        ),
        None => forward.extend(fwd.block(&f.body)),
    }
    forward.extend(fused);
    // Scalars need no freeing.
    for v in released.into_iter().filter(|&v| !f.vars[v].scalar) {
        let name = &f.vars[v].name;
        if rev.used_like.contains(&v) {
            forward.extend(quote!(let #name = #rt::into_like(#name);));
        } else {
            forward.extend(quote!(#rt::release(#name);));
        }
    }
    let items = &f.items;
    let result = fwd.operand(&f.result);
    let grads = tuple_or_bare(grads);
    let ret = if with_value {
        quote!((#result, #grads))
    } else {
        grads
    };
    // Naming the primal marks it used: a function whose gradient alone is called is not dead.
    let name = &func.sig.ident;
    // The sweeps are moved in, not copied (as interpolating them would).
    let mut out = quote! {
        use ::autodiff::__rt as #rt;
        let _ = #name;
        #(#items)*
    };
    out.extend(forward);
    out.extend(reverse);
    out.extend(ret);
    Ok(out)
}

struct Forward<'a> {
    f: &'a Function,
    saved: &'a Saved,
    rt: &'a Ident,
    plans: &'a Plans,
    mode: Mode,
}

/// Which run of the forward code is being written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The forward sweep at the top of the body: the reverse sweep follows it directly, so
    /// `if`s record their arm.
    Sweep,
    /// A loop body in the forward sweep: recomputed in the reverse sweep, so `if`s record
    /// nothing, but nested loops record their exits and buffer reads are taped.
    Body,
    /// A loop body recomputed in the reverse sweep: `if`s record their arm again, nested loops
    /// are not re-run (their exits are popped), buffer reads come from the tape, writes and
    /// assertions are not repeated.
    Recompute,
    /// A checkpointed loop's body in the forward sweep (and all inside it): the primal alone,
    /// nothing recorded; the reverse sweep runs each iteration again.
    Plain,
    /// A checkpointed loop's body run again in its reverse sweep, from the iteration's entry
    /// state restored: `if`s record their arm, writes happen, nested loops run and record for
    /// their own reverse sweeps (but no exits: their outputs are at hand), buffers are read
    /// directly.
    Rerun,
}

/// The declarations of the tapes the loops in `b` use.
fn tapes(f: &Function, b: &crate::ir::Block, plans: &Plans) -> TokenStream {
    let mut out = TokenStream::new();
    for s in &b.stmts {
        match s {
            Stmt::Loop(l) => {
                if let Some(plan) = plans.get(&l.tape.to_string()) {
                    let vec = quote!(::std::vec::Vec::new());
                    if plan.has_entries() {
                        let t = &l.tape;
                        out.extend(quote!(let mut #t = #vec;));
                    }
                    if plan.reads {
                        let t = &l.reads.tape;
                        out.extend(quote!(let mut #t = #vec;));
                    }
                    if l.nested && plan.has_exits() {
                        let t = &l.exits;
                        out.extend(quote!(let mut #t = #vec;));
                    }
                    for r in plan.recorded.iter().filter_map(|v| f.recorded.get(v)) {
                        let t = &r.tape;
                        out.extend(quote!(let mut #t = #vec;));
                    }
                }
                out.extend(tapes(f, &l.body, plans));
            }
            Stmt::If { then, els, .. } => {
                out.extend(tapes(f, then, plans));
                out.extend(tapes(f, els, plans));
            }
            _ => {}
        }
    }
    out
}

/// The statements of a loop body that a reverse iteration recomputes (`included`).
pub fn recompute(
    f: &Function,
    body: &crate::ir::Block,
    included: &[bool],
    saved: &Saved,
    plans: &Plans,
    rt: &Ident,
) -> TokenStream {
    let fwd = Forward {
        f,
        saved,
        rt,
        plans,
        mode: Mode::Recompute,
    };
    body.stmts
        .iter()
        .zip(included)
        .filter(|(_, inc)| **inc)
        .map(|(s, _)| fwd.stmt(s))
        .collect()
}

/// A checkpointed loop's body run again in its reverse sweep (see [`Mode::Rerun`]).
pub fn rerun(
    f: &Function,
    body: &crate::ir::Block,
    saved: &Saved,
    plans: &Plans,
    rt: &Ident,
) -> TokenStream {
    Forward {
        f,
        saved,
        rt,
        plans,
        mode: Mode::Rerun,
    }
    .block(body)
}

/// A loop as the primal runs it, nothing recorded (inside a checkpointed loop's forward run).
fn plain_loop(fwd: &Forward<'_>, l: &crate::ir::Loop) -> TokenStream {
    let mut out = loop_prelude(fwd.f, l, fwd.rt);
    let header = loop_header(fwd.f, l);
    let body = fwd.block(&l.body);
    let end = iteration_end(fwd, l);
    out.extend(quote!(#header { #body #end }));
    out
}

/// Appends `record` to `tape`: without a growth check when the loop reserved its room.
fn append(rt: &Ident, tape: &Ident, record: TokenStream, reserved: bool) -> TokenStream {
    if reserved {
        quote!(#rt::push_reserved(&mut #tape, #record);)
    } else {
        quote!(#tape.push(#record);)
    }
}

/// A loop's header as the forward sweep runs it: `for i in ..`, `while ..`, `loop`.
fn loop_header(f: &Function, l: &crate::ir::Loop) -> TokenStream {
    match &l.kind {
        LoopKind::For { var, iter } => {
            let i = &f.vars[*var].name;
            quote!(for #i in #iter)
        }
        LoopKind::While { cond } => quote!(while #cond),
        LoopKind::Forever => quote!(loop),
    }
}

/// The end of a forward iteration: the carried values take their exits, and a `break` flag
/// set in the body leaves the loop.
fn iteration_end(fwd: &Forward<'_>, l: &crate::ir::Loop) -> TokenStream {
    let mut out = TokenStream::new();
    if !l.carried.is_empty() {
        let slots = l.carried.iter().map(|c| &fwd.f.vars[c.entry].name);
        let exits = l.carried.iter().map(|c| fwd.operand(&c.exit));
        out.extend(quote!((#(#slots,)*) = (#(#exits,)*);));
    }
    if let Some(brk) = &l.brk {
        let brk = fwd.operand(brk);
        out.extend(quote!(if #brk { break; }));
    }
    out
}

/// The values the forward sweep defines at the top level of the body (not inside an arm).
fn top_level_values(f: &Function) -> Vec<VarId> {
    let mut out = Vec::new();
    for s in &f.body.stmts {
        match s {
            Stmt::Let { var, .. } => out.push(*var),
            Stmt::If { phis, .. } => out.extend(phis.iter().map(|p| p.out)),
            // A loop's storage is read by its reverse sweep under its own name: kept.
            Stmt::Loop(_) | Stmt::Effect(_) | Stmt::Store { .. } => {}
        }
    }
    out
}

impl Forward<'_> {
    fn operand(&self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) => self.f.vars[*v].name.to_token_stream(),
            Operand::Const(t) => t.clone(),
        }
    }

    fn block(&self, b: &crate::ir::Block) -> TokenStream {
        b.stmts.iter().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&self, s: &Stmt) -> TokenStream {
        match s {
            Stmt::Let { var, op } => {
                let v = &self.f.vars[*var];
                let name = &v.name;
                let ty = v.ty.as_ref().map(|t| quote!(: #t));
                let plan_of = |t: &crate::ir::ReadTape| {
                    self.plans
                        .values()
                        .find(|p| p.read_tape.as_deref() == Some(t.tape.to_string().as_str()))
                };
                let live = |t: &crate::ir::ReadTape| plan_of(t).is_some();
                // A recorded integer value: taped where its loop runs backwards.
                if let Some(r) = self
                    .f
                    .recorded
                    .get(var)
                    .filter(|_| self.plans.values().any(|p| p.recorded.contains(var)))
                {
                    let tape = &r.tape;
                    match self.mode {
                        Mode::Body => {
                            let value = self.op(op);
                            let append = append(
                                self.rt,
                                tape,
                                quote!(::core::clone::Clone::clone(&#name)),
                                r.exact,
                            );
                            return quote!(let #name #ty = #value; #append);
                        }
                        Mode::Recompute => {
                            let rt = self.rt;
                            return quote!(let #name #ty = #rt::pop(&mut #tape););
                        }
                        Mode::Sweep | Mode::Plain | Mode::Rerun => {}
                    }
                }
                if let Some(t) = match op {
                    Op::Index { tape: Some(t), .. } if live(t) => Some(t),
                    _ => None,
                } {
                    let (tape, cursor) = (&t.tape, &t.cursor);
                    match self.mode {
                        Mode::Body => {
                            let value = self.op(op);
                            let reserved = plan_of(t).is_some_and(|p| p.reads_reserved);
                            let append = append(self.rt, tape, quote!(#name), reserved);
                            return quote!(let #name #ty = #value; #append);
                        }
                        Mode::Recompute => {
                            return quote!(let #name #ty = #tape[#cursor]; #cursor += 1;)
                        }
                        Mode::Sweep | Mode::Plain | Mode::Rerun => {}
                    }
                }
                let value = self.op(op);
                if v.buffer {
                    quote!(let mut #name #ty = #value;)
                } else {
                    quote!(let #name #ty = #value;)
                }
            }
            Stmt::If {
                cond,
                then,
                els,
                phis,
                record,
            } => {
                let rt = self.rt;
                let mut outs: Vec<TokenStream> = phis
                    .iter()
                    .map(|p| self.f.vars[p.out].name.to_token_stream())
                    .collect();
                let mut then_vals: Vec<TokenStream> =
                    phis.iter().map(|p| self.operand(&p.then)).collect();
                let mut else_vals: Vec<TokenStream> =
                    phis.iter().map(|p| self.operand(&p.els)).collect();
                let records = !matches!(self.mode, Mode::Body | Mode::Plain);
                if let Some((ts, es)) = self.saved.get(record).filter(|_| records) {
                    let names = |vs: &[usize]| -> Vec<&Ident> {
                        vs.iter().map(|v| &self.f.vars[*v].name).collect()
                    };
                    let (tn, en) = (names(ts), names(es));
                    outs.push(self.f.vars[*record].name.to_token_stream());
                    then_vals.push(quote!(#rt::Branch::Then((#(#tn,)*))));
                    else_vals.push(quote!(#rt::Branch::Else((#(#en,)*))));
                }
                let (then, els) = (self.block(then), self.block(els));
                if outs.is_empty() {
                    quote!(if #cond { #then } else { #els })
                } else {
                    quote!(let (#(#outs,)*) = if #cond { #then (#(#then_vals,)*) } else { #els (#(#else_vals,)*) };)
                }
            }
            Stmt::Effect(t) => match self.mode {
                Mode::Recompute | Mode::Rerun => TokenStream::new(),
                _ => t.clone(),
            },
            Stmt::Store { buf, index, value } => match self.mode {
                Mode::Recompute => TokenStream::new(),
                _ => {
                    let (b, i, v) = (
                        &self.f.vars[*buf].name,
                        self.operand(index),
                        self.operand(value),
                    );
                    quote!(#b[#i] = #v;)
                }
            },
            Stmt::Loop(l) => self.loop_stmt(l),
        }
    }

    fn loop_stmt(&self, l: &crate::ir::Loop) -> TokenStream {
        let rt = self.rt;
        let default = LoopPlan::default();
        let plan = self.plans.get(&l.tape.to_string()).unwrap_or(&default);
        let count = &l.count;
        let afters: Vec<&Ident> = plan
            .exit_afters
            .iter()
            .map(|a| &self.f.vars[*a].name)
            .collect();
        let exits = &l.exits;
        if let (Some(early), Mode::Sweep) = (&plan.early, self.mode) {
            return early.clone();
        }
        if self.mode == Mode::Plain {
            return plain_loop(self, l);
        }
        if self.mode == Mode::Recompute {
            // Not re-run: its reverse pops its own records; its outputs come from its exit record.
            if !plan.has_exits() {
                return TokenStream::new();
            }
            let counted = plan.reversed && plan.count;
            let c = counted.then(|| quote!(#count,));
            return quote!(let (#c #(#afters,)*) = #rt::pop(&mut #exits););
        }
        let mut out = loop_prelude(self.f, l, rt);
        if plan.count {
            out.extend(quote!(let mut #count: usize = 0;));
        }
        let header = loop_header(self.f, l);
        let mut body = TokenStream::new();
        // A `for` loop without `break` runs a known number of times: its entry and recorded
        // tapes get their room when it starts, and the loop appends without a growth call
        // (around which its values would be spilled to the stack). So does its tape of buffer
        // reads when every iteration reads the same number (`LoopPlan::fixed_reads`).
        let exact = l.counted_range();
        let recorded: Vec<&crate::ir::Recorded> = plan
            .recorded
            .iter()
            .filter_map(|v| self.f.recorded.get(v))
            .collect();
        let reads = &l.reads.tape;
        // Nested loops at the top of the body, which record their exit once per iteration.
        let nested_exits: Vec<&Ident> = l
            .body
            .stmts
            .iter()
            .filter_map(|s| match s {
                Stmt::Loop(n) => Some(n),
                _ => None,
            })
            .filter(|n| {
                self.plans
                    .get(&n.tape.to_string())
                    .is_some_and(|p| p.exits_reserved && p.has_exits())
            })
            .map(|n| &n.exits)
            .collect();
        if let Some(iter) = exact.filter(|_| {
            plan.has_entries()
                || !recorded.is_empty()
                || plan.reads_reserved
                || !nested_exits.is_empty()
        }) {
            out.extend(quote!(let #count = ::core::iter::Iterator::count(::core::iter::IntoIterator::into_iter(#iter));));
            for e in &nested_exits {
                out.extend(quote!(#e.reserve(#count);));
            }
            if let (true, Some(r)) = (plan.reads_reserved, plan.fixed_reads) {
                out.extend(quote!(#reads.reserve(#count * #r);));
            }
            if plan.has_entries() {
                let tape = &l.tape;
                out.extend(quote!(#tape.reserve(#count);));
            }
            for r in &recorded {
                let tape = &r.tape;
                out.extend(quote!(#tape.reserve(#count);));
            }
        }
        if plan.has_entries() {
            let entries: Vec<&Ident> = plan.entries.iter().map(|e| &self.f.vars[*e].name).collect();
            let start = plan.records_read_start().then(|| quote!(#reads.len()));
            let tape = &l.tape;
            let snapshots: Vec<&Ident> = plan
                .checkpoint
                .iter()
                .map(|b| &self.f.vars[*b].name)
                .collect();
            let record = quote!((#(::core::clone::Clone::clone(&#entries),)* #(::core::clone::Clone::clone(&#snapshots),)* #start));
            body.extend(append(rt, tape, record, exact.is_some()));
        }
        let inner = Forward {
            mode: if plan.checkpoint.is_empty() {
                Mode::Body
            } else {
                Mode::Plain
            },
            ..*self
        };
        body.extend(inner.block(&l.body));
        if plan.count {
            body.extend(quote!(#count += 1;));
        }
        body.extend(iteration_end(self, l));
        out.extend(quote!(#header { #body }));
        if self.mode == Mode::Body && l.nested && plan.has_exits() {
            let counted = plan.reversed && plan.count;
            let c = counted.then(|| quote!(#count,));
            let record = quote!((#c #(::core::clone::Clone::clone(&#afters),)*));
            out.extend(append(rt, exits, record, plan.exits_reserved));
        }
        out
    }

    fn op(&self, op: &Op) -> TokenStream {
        let rt = self.rt;
        match op {
            Op::Copy(o) => self.operand(o),
            Op::Verbatim(t) => t.clone(),
            Op::Call {
                path, args, refs, ..
            } => {
                let args = args.iter().zip(refs).map(|(a, r)| {
                    let a = self.operand(a);
                    if *r {
                        quote!(&#a)
                    } else {
                        a
                    }
                });
                quote!(#path(#(#args),*))
            }
            Op::Index { base, index, .. } => {
                let (b, i) = (self.operand(base), self.operand(index));
                quote!(#b[#i])
            }
            Op::Map { recv, func, span } => {
                let recv = self.operand(recv);
                let f = match func {
                    MapFn::Rule(_, path) => path.clone(),
                    MapFn::Closure { forward, .. } => forward.clone(),
                };
                let mapv = Ident::new("mapv", *span);
                quote!(#recv.#mapv(#f))
            }
            Op::Prim {
                rule,
                form,
                args,
                ints,
                suffix,
                span,
            } => {
                let floats: Vec<TokenStream> = args.iter().map(|a| self.operand(a)).collect();
                let ints: Vec<TokenStream> = ints.iter().map(|i| self.operand(i)).collect();
                let written = args.iter().all(|a| self.f.is_scalar(a));
                match (&rule.forward, form) {
                    // Scalars: the operator itself (`a * b`).
                    (Fwd::Runtime(name), _) if written && rule.kind == rules::Kind::Operator => {
                        let [a, rest @ ..] = floats.as_slice() else {
                            return quote!(compile_error!(
                                "autodiff: an operator without operands"
                            ));
                        };
                        let b = rest.first();
                        let symbol: TokenStream = match *name {
                            "add" => quote!(+),
                            "sub" | "neg" => quote!(-),
                            "mul" => quote!(*),
                            _ => quote!(/),
                        };
                        match b {
                            Some(b) => quote!(#a #symbol #b),
                            None => quote!(#symbol #a),
                        }
                    }
                    (Fwd::Runtime(name), _) => {
                        let f = Ident::new(name, *span);
                        quote!(#rt::#f(#(&#floats,)* #(#ints),*)#suffix)
                    }
                    (Fwd::AsWritten, CallForm::Method(m)) => {
                        let recv = &floats[0];
                        let rest = floats[1..].iter().chain(&ints);
                        quote!(#recv.#m(#(#rest),*)#suffix)
                    }
                    (Fwd::AsWritten, CallForm::Path(p)) => {
                        quote!(#p(#(#floats,)* #(#ints),*)#suffix)
                    }
                }
            }
        }
    }
}

/// A loop's carried storage, initialised.
pub fn loop_prelude(f: &Function, l: &crate::ir::Loop, _rt: &Ident) -> TokenStream {
    let mut out = TokenStream::new();
    for c in &l.carried {
        let slot = &f.vars[c.entry].name;
        let init = match &c.init {
            Operand::Var(v) => f.vars[*v].name.to_token_stream(),
            Operand::Const(t) => t.clone(),
        };
        out.extend(quote!(let mut #slot = ::core::clone::Clone::clone(&#init);));
    }
    out
}

/// A loop running each iteration forward and then its `reverse` at once (the storage is
/// declared by [`loop_prelude`] before).
pub fn fused_loop(
    f: &Function,
    l: &crate::ir::Loop,
    saved: &Saved,
    plans: &Plans,
    rt: &Ident,
    inner: Option<TokenStream>,
    reverse: TokenStream,
) -> TokenStream {
    let fwd = Forward {
        f,
        saved,
        rt,
        plans,
        mode: Mode::Sweep,
    };
    let header = loop_header(f, l);
    // A nested fused loop ends the body: it runs (forward and reverse) after the rest of the
    // body's forward code and before the rest of its reverse.
    let body = match inner {
        Some(inner) => {
            let mut b: TokenStream = l.body.stmts[..l.body.stmts.len() - 1]
                .iter()
                .map(|s| fwd.stmt(s))
                .collect();
            b.extend(inner);
            b
        }
        None => fwd.block(&l.body),
    };
    let end = iteration_end(&fwd, l);
    quote!(#header { #body #reverse #end })
}

/// The body of the element-wise pullback of a `mapv` closure: its forward sweep, its reverse
/// sweep seeded with `seed`, and the parameter's adjoint.
pub fn closure_pullback(f: &Function, float: &Ident, rt: &Ident, seed: TokenStream) -> TokenStream {
    let mut rev = Reverse::new(f, float.clone(), rt.clone());
    let reverse = rev.sweep(seed);
    let grad = rev.gradient(0);
    let saved = std::mem::take(&mut rev.saved);
    let plans = std::mem::take(&mut rev.plans);
    let mut forward = tapes(f, &f.body, &plans);
    forward.extend(
        Forward {
            f,
            saved: &saved,
            rt,
            plans: &plans,
            mode: Mode::Sweep,
        }
        .block(&f.body),
    );
    quote!({ #forward #reverse #grad })
}

/// `{ statements }`.
fn braced(statements: TokenStream) -> TokenStream {
    proc_macro2::TokenTree::Group(proc_macro2::Group::new(
        proc_macro2::Delimiter::Brace,
        statements,
    ))
    .into()
}

/// A block with at least this many plain `let`s declares them together.
const FLATTEN_FROM: usize = 64;

/// Long straight-line code: in a debug build every `let` opens a debug-info scope nested in
/// the previous one, and thousands of them overflow LLVM's stack (a 500-statement function
/// has a gradient of some 4 000 `let`s). In a block with many plain `let x = e;` the names are
/// declared once at its start, `let (x, mut y, ..);`, and each `let` becomes `x = e;` (every
/// generated name is assigned once, so this is the same program with one scope). Blocks with
/// fewer `let`s are left as they are, readable in `cargo expand`.
///
/// It works on the token trees, without parsing: a statement `let` is one at the start of the
/// block or after a `;` or a `{ .. }`, and a plain one is `let [mut] name = .. ;` with no `else`.
fn flatten_block(stream: TokenStream) -> TokenStream {
    use proc_macro2::{Delimiter, TokenTree};
    let trees: Vec<TokenTree> = stream.into_iter().collect();
    let is_ident = |t: &TokenTree, s: &str| matches!(t, TokenTree::Ident(i) if i == s);
    let is_punct = |t: &TokenTree, c: char| matches!(t, TokenTree::Punct(p) if p.as_char() == c);
    // Statement `let`s: (position of `let`, position of its `;`).
    let mut lets = Vec::new();
    let mut i = 0;
    while i < trees.len() {
        let starts = i == 0
            || is_punct(&trees[i - 1], ';')
            || matches!(&trees[i - 1], TokenTree::Group(g) if g.delimiter() == Delimiter::Brace);
        if starts && is_ident(&trees[i], "let") {
            let end = (i..trees.len()).find(|&j| is_punct(&trees[j], ';'));
            let Some(end) = end else { break };
            lets.push((i, end));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    // A plain `let [mut] name = ..;` (no type, no `else`): the index of the name.
    let plain = |(start, end): (usize, usize)| -> Option<usize> {
        let name = if is_ident(&trees[start + 1], "mut") {
            start + 2
        } else {
            start + 1
        };
        let ok = matches!(trees.get(name), Some(TokenTree::Ident(i)) if i != "_")
            && trees.get(name + 1).is_some_and(|t| is_punct(t, '='))
            && !matches!(trees.get(name + 2), Some(TokenTree::Punct(p)) if p.as_char() == '=')
            && !trees[name + 2..end].iter().any(|t| is_ident(t, "else"));
        ok.then_some(name)
    };
    // Every name any `let` of the block binds, counted.
    let mut bound: HashMap<String, usize> = HashMap::new();
    for &(start, end) in &lets {
        let pattern_end = (start + 1..end)
            .find(|&j| is_punct(&trees[j], '='))
            .unwrap_or(end);
        let mut names = Vec::new();
        for t in &trees[start + 1..pattern_end] {
            collect_idents(t, &mut names);
        }
        for n in names {
            *bound.entry(n).or_default() += 1;
        }
    }
    let hoisted: Vec<(usize, usize, usize)> = lets
        .iter()
        .filter_map(|&(s, e)| plain((s, e)).map(|n| (s, e, n)))
        .filter(|&(_, _, n)| bound.get(&trees[n].to_string()) == Some(&1))
        .collect();
    if hoisted.len() < FLATTEN_FROM {
        return trees.into_iter().collect();
    }
    let mut declared = TokenStream::new();
    let mut skip = vec![false; trees.len()];
    for &(start, _, name) in &hoisted {
        // `let` and `mut` go; the name stays as the assignment's target.
        skip[start] = true;
        if name == start + 2 {
            skip[start + 1] = true;
            declared.extend(quote!(mut));
        }
        declared.extend([trees[name].clone()]);
        declared.extend(quote!(,));
    }
    let mut out = quote!(let (#declared););
    out.extend(
        trees
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !skip[*i])
            .map(|(_, t)| t),
    );
    out
}

/// Every identifier in a token tree (a pattern's names, conservatively).
fn collect_idents(t: &proc_macro2::TokenTree, out: &mut Vec<String>) {
    match t {
        proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
        proc_macro2::TokenTree::Group(g) => {
            for t in g.stream() {
                collect_idents(&t, out);
            }
        }
        _ => {}
    }
}
