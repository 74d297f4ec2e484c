//! Phase 6: the companions' token streams.
//!
//! Each companion body is the forward sweep (the lowered body, with each `if` also recording
//! which arm ran and what that arm's reverse sweep needs) followed by the reverse sweep.

use crate::ir::{CallForm, Callee, Function, LoopKind, MapFn, Op, Operand, Part, Stmt, VarId};
use crate::names::Namer;
use crate::reverse::{LoopPlan, Plans, Reverse, Saved};
use crate::rules::Forward as Fwd;
use crate::signature::{self, Param, Signature};
use crate::AppendStream;
use crate::{attr, calls, fuse, lower, rules, scalars, tbr, useful};
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
    // A function generic over its float (`fn f<F: Real>(x: F) -> F`, or a float named by
    // `float = F`) reads `F` as its float type for the whole expansion.
    let _float = signature::GenericFloat::enter(&func.sig.generics, options.float.as_ref());
    let sig = signature::analyse(func, &options)?;
    let vis = &func.vis;
    let float = &sig.float;
    let generics = &func.sig.generics;
    let where_clause = &sig.where_clause;
    let cfgs: Vec<&syn::Attribute> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect();
    // A method's receiver comes first in every companion's parameters; the companions call
    // each other (and the primal) as methods of the same value.
    let receiver = sig.receiver.iter().map(|r| r.to_token_stream());
    let params: Vec<TokenStream> = receiver
        .chain(sig.params.iter().filter(|p| !p.receiver).map(|p| {
            let (i, t) = (&p.ident, &p.ty);
            quote!(#i: #t)
        }))
        .collect();
    let callee = |f: &dyn ToTokens| sig.call(f);
    // What the companions' docs link to.
    let link = match sig.is_member() {
        true => format!("Self::{name}"),
        false => name.to_string(),
    };
    // The arguments the companions pass on (a method's receiver is the value they are called
    // on); the pullback's entries and the gradients cover the receiver too.
    let args = sig.args();

    let grad_ty = tuple_or_bare(sig.wrt().map(|p| p.grad_ty.clone()).collect());
    let pullback_ty = tuple_or_bare(sig.params.iter().map(|p| p.grad_ty.clone()).collect());

    // Generated names avoid every identifier of the function (read from its tokens once).
    let fresh = Namer::avoiding(item.clone());
    let mut namer = fresh.clone();
    let d_out = namer.fresh("d_out");
    // The companion type: `#name::pullback`, which calls to `#name` in differentiated code use.
    // A type takes the function's name in the type namespace, so every `use` of the function
    // (renamed, re-exported, glob) imports it too.
    // `value_and_pullback` on the companion type of a function returning one float: its
    // value and its pullback in one call (`calls`), by default the primal then the pullback,
    // on parameters of its own (a parameter may be named like the function).
    let primal_then = || {
        let mut names = fresh.clone();
        let own: Vec<(Ident, &syn::Type)> = sig
            .params
            .iter()
            .filter(|p| !p.receiver)
            .map(|p| (names.fresh("arg"), &p.ty))
            .collect();
        let declared = own.iter().map(|(i, t)| quote!(#i: #t));
        let passed: Vec<&Ident> = own.iter().map(|(i, _)| i).collect();
        let first = copied_as(&sig, &passed);
        let primal = callee(name);
        let t = &sig.turbofish;
        let body = quote!((#primal(#(#first),*), Self::pullback #t (#(#passed,)* #d_out)));
        (quote!(#(#declared,)*), body)
    };
    let companion = |target: TokenStream,
                     d_out_ty: &dyn ToTokens,
                     value_and_pullback: Option<Option<TokenStream>>| {
        // Spanned at the pullback's path, so a hand-written pullback with the wrong signature
        // is reported at its name in the attribute.
        let turbofish = match options.pullback {
            None => sig.turbofish.clone(),
            Some(_) => TokenStream::new(),
        };
        let call = quote_spanned!(target.span()=> #target #turbofish (#(#args,)* #d_out));
        let value_and_pullback = value_and_pullback.map(|body| {
            let (declared, body) = match body {
                Some(body) => (quote!(#(#params,)*), body),
                None => primal_then(),
            };
            quote! {
                /// The value of the function of the same name and its pullback.
                #[inline]
                #vis fn value_and_pullback #generics (#declared #d_out: #d_out_ty) -> (#d_out_ty, #pullback_ty) #where_clause {
                    #body
                }
            }
        });
        if sig.is_member() {
            // A method: differentiated code calls `self.f_pullback(..)` (`Self::f_pullback`),
            // a function beside it (no type can stand in an `impl` block), which forwards to a
            // hand-written one.
            let pullback = format_ident!("{}_pullback", name);
            let hand_written = options.pullback.as_ref().and_then(|p| p.get_ident());
            if hand_written.is_none_or(|h| *h == pullback) {
                return TokenStream::new();
            }
            let doc = format!("The pullback of [`{link}`]: forwards to the hand-written one named in its `#[differentiate(pullback = ..)]`.");
            return quote! {
                #(#cfgs)*
                #[doc = #doc]
                #[inline]
                #[allow(unused, clippy::all)]
                #vis fn #pullback #generics (#(#params,)* #d_out: #d_out_ty) -> #pullback_ty #where_clause {
                    #call
                }
            };
        }
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
                #vis fn pullback #generics (#(#params,)* #d_out: #d_out_ty) -> #pullback_ty #where_clause {
                    #call
                }

                #value_and_pullback
            }
        }
    };
    let value_and_grad = format_ident!("{}_value_and_grad", name);
    let grad = format_ident!("{}_grad", name);
    let call_value_and_grad = callee(&value_and_grad);
    let doc_vg =
        format!("The value of [`{link}`] and its gradient, generated by `#[differentiate]`.");
    let doc_g = format!("The gradient of [`{link}`], generated by `#[differentiate]`: one entry per differentiated parameter, in declaration order.");
    let grad_fn = quote! {
        #(#cfgs)*
        #[doc = #doc_g]
        #[inline]
        #[allow(unused, clippy::all)]
        #vis fn #grad #generics (#(#params),*) -> #grad_ty #where_clause {
            #call_value_and_grad(#(#args),*).1
        }
    };
    // A hand-written pullback, as the companions call it.
    let hand_written = match &options.pullback {
        None => None,
        Some(target) => Some(match (sig.is_member(), target.get_ident()) {
            (false, _) => target.to_token_stream(),
            (true, Some(method)) => callee(method),
            (true, None) => return Err(syn::Error::new_spanned(target, "for a method or an associated function, `pullback` names a function of the same `impl` (`pullback = energy_pullback`), taking the same receiver as this one, if any")),
        }),
    };
    if let Some(output) = &sig.output {
        let pullback = format_ident!("{}_pullback", name);
        let target = hand_written.unwrap_or_else(|| pullback.to_token_stream());
        let items = VectorValued {
            func,
            sig: &sig,
            output,
            params: &params,
            cfgs: &cfgs,
            companion: companion(target.clone(), output, None),
            hand_written: options.pullback.is_some().then_some(target),
            link: &link,
            pullback_only: options.pullback_only,
        };
        return items.companions(namer, fresh);
    }
    // A hand-written pullback: the companion type forwards to it, and the gradient is the
    // pullback at `d_out = 1`; nothing is differentiated.
    if let Some(target) = hand_written {
        let mut names = fresh.clone();
        let value = names.fresh("value");
        let slots = gradient_slots(&sig, &mut names);
        let pattern = pullback_entries(&slots, |g| g.to_token_stream());
        let grads = differentiable_entries(&slots);
        // The value's call gets copies of what the pullback then takes by value.
        let first = copied_args(&sig);
        let mut out = companion(target.clone(), float, Some(None));
        let primal = callee(name);
        // Through the companion type (whose signature states the pullback's type, so a
        // hand-written one of the wrong type is reported once, there), or for a method the
        // hand-written one itself.
        let through = match sig.is_member() {
            true => target.clone(),
            false => {
                let t = &sig.turbofish;
                quote!(#name::pullback #t)
            }
        };
        let one = signature::cast(quote!(1.0), float);
        out.append_stream(quote! {
            #(#cfgs)*
            #[doc = #doc_vg]
            #[inline]
            #[allow(unused, clippy::all)]
            #vis fn #value_and_grad #generics (#(#params),*) -> (#float, #grad_ty) #where_clause {
                let #value = #primal(#(#first),*);
                let #pattern = #through(#(#args,)* #one);
                (#value, #grads)
            }

            #grad_fn
        });
        return Ok(out);
    }
    let pullback = format_ident!("{}_pullback", name);
    let doc_pb = format!("The pullback of [`{link}`], generated by `#[differentiate]`: each parameter's gradient scaled by the output adjoint, `()` for constant parameters.");
    // The pullback with a sweep of its own, differentiating every float parameter.
    let own_pullback_body = || -> syn::Result<TokenStream> {
        Ok(braced(flatten_block(body(
            func,
            &sig,
            |p| p.kind != signature::Kind::Constant,
            d_out.to_token_stream(),
            false,
            fresh.clone(),
        )?)))
    };
    // The pullback, and the companion type that calls from differentiated code use.
    let pullback_fn = |body: TokenStream, value_and_pullback: Option<TokenStream>| {
        let companion_type = companion(pullback.to_token_stream(), float, Some(value_and_pullback));
        quote! {
            #(#cfgs)*
            #[doc = #doc_pb]
            #[inline]
            #[allow(unused, clippy::all)]
            #vis fn #pullback #generics (#(#params,)* #d_out: #float) -> #pullback_ty #where_clause #body

            #companion_type
        }
    };
    // The pullback alone (a trait implementation's method, whose trait declares it).
    if options.pullback_only {
        return Ok(pullback_fn(own_pullback_body()?, None));
    }
    let value_and_grad_body = braced(flatten_block(body(
        func,
        &sig,
        |p| p.wrt,
        signature::cast(quote!(1.0), float),
        true,
        namer,
    )?));
    // When `f_value_and_grad` differentiates every float parameter, the pullback is its
    // gradient scaled by `d_out`: one body, not two (half the code for rustc to compile).
    let shared = sig
        .params
        .iter()
        .all(|p| p.wrt || p.kind == signature::Kind::Constant);
    let (pullback_body, value_and_pullback) = if shared {
        let mut names = fresh.clone();
        let value = names.fresh("value");
        let rt = names.fresh("rt");
        let slots = gradient_slots(&sig, &mut names);
        let pattern = differentiable_entries(&slots);
        // A slice of structs' gradient is scaled element by element.
        let elements: Vec<&Ident> = slots
            .iter()
            .zip(&sig.params)
            .filter(|(_, p)| p.kind == signature::Kind::Structs)
            .map(|((g, _), _)| g)
            .collect();
        let scaled = pullback_entries(&slots, |g| match elements.contains(&g) {
            true => quote!(#rt::scale_elements(#g, #d_out)),
            false => quote!(#rt::scale(#g, #d_out)),
        });
        let sweep = quote! {
            use ::autodiff::__rt as #rt;
            let (#value, #pattern) = #call_value_and_grad(#(#args),*);
        };
        if sig.is_member() {
            (quote!({ #sweep #scaled }), None)
        } else {
            // The value and the pullback on the companion type; the pullback is its second.
            let t = &sig.turbofish;
            (
                quote!({ #name::value_and_pullback #t (#(#args,)* #d_out).1 }),
                Some(quote!(#sweep (#value, #scaled))),
            )
        }
    } else {
        (own_pullback_body()?, None)
    };

    let pullback_fn = pullback_fn(pullback_body, value_and_pullback);
    Ok(quote! {
        #(#cfgs)*
        #[doc = #doc_vg]
        #[inline]
        #[allow(unused, clippy::all)]
        #vis fn #value_and_grad #generics (#(#params),*) -> (#float, #grad_ty) #where_clause #value_and_grad_body

        #grad_fn

        #pullback_fn
    })
}

/// The arguments of a function's own parameters as a companion passes them on to calls that
/// each take them: copies of those taken by value that are not floats (`Copy`).
fn copied_args(sig: &Signature) -> Vec<TokenStream> {
    copied_as(sig, &sig.args())
}

/// The same for the parameters bound to `names` (one per parameter but the receiver).
fn copied_as(sig: &Signature, names: &[&Ident]) -> Vec<TokenStream> {
    sig.params
        .iter()
        .filter(|p| !p.receiver)
        .zip(names)
        .map(|(p, i)| {
            if matches!(p.ty, syn::Type::Reference(_)) || p.kind == signature::Kind::Float {
                quote!(#i)
            } else {
                quote!(::core::clone::Clone::clone(&#i))
            }
        })
        .collect()
}

/// A vector-valued function (returning an owned array or `Vec`), with what its companions
/// share with a scalar function's: its parameters as the companions declare them, and its
/// `#[cfg]`s.
struct VectorValued<'a> {
    func: &'a ItemFn,
    sig: &'a Signature,
    output: &'a syn::Type,
    params: &'a [TokenStream],
    cfgs: &'a [&'a syn::Attribute],
    /// The companion type whose `pullback` calls from differentiated code use (none for a
    /// method or an associated function).
    companion: TokenStream,
    /// A hand-written pullback (`pullback = ..`), as the companions call it: then no pullback
    /// is generated, and the Jacobian calls this one.
    hand_written: Option<TokenStream>,
    /// `pullback_only`: no Jacobian.
    pullback_only: bool,
    /// What the docs link to: `f` or `Self::f`.
    link: &'a str,
}

impl VectorValued<'_> {
    /// `f_pullback(.., d_out: Output)`, every parameter's gradient of `<d_out, f(..)>` (`()`
    /// for constants), and `f_jacobian(..)`, one gradient per element of the output (in
    /// logical order), each covering the `wrt` parameters like `f_grad` does.
    fn companions(&self, mut namer: Namer, fresh: Namer) -> syn::Result<TokenStream> {
        let (func, sig, output, params, cfgs) =
            (self.func, self.sig, self.output, self.params, self.cfgs);
        let name = &func.sig.ident;
        let (vis, generics) = (&func.vis, &func.sig.generics);
        let where_clause = &sig.where_clause;
        let pullback_ty = tuple_or_bare(sig.params.iter().map(|p| p.grad_ty.clone()).collect());
        let grad_ty = tuple_or_bare(sig.wrt().map(|p| p.grad_ty.clone()).collect());
        let pullback = format_ident!("{}_pullback", name);
        let jacobian = format_ident!("{}_jacobian", name);
        // The Jacobian: the value once, then a pullback per element of it.
        let mut names = fresh;
        let (rt, value, rows, k) = (
            names.fresh("rt"),
            names.fresh("value"),
            names.fresh("rows"),
            names.fresh("k"),
        );
        let mut pattern = Vec::new();
        let mut row = Vec::new();
        for p in &sig.params {
            match (p.kind, p.wrt) {
                (signature::Kind::Constant, _) => pattern.push(quote!(())),
                (_, false) => pattern.push(quote!(_)),
                (_, true) => {
                    let g = names.fresh("g");
                    pattern.push(g.to_token_stream());
                    row.push(g.to_token_stream());
                }
            }
        }
        let pattern = tuple_or_bare(pattern);
        let row = tuple_or_bare(row);
        let args = copied_args(sig);
        // A method's companions are methods (called on `self`); a free function's calls from
        // differentiated code go through its companion type.
        // The Jacobian calls the generated pullback, or the hand-written one.
        let primal = sig.call(name);
        let pullback_call = match &self.hand_written {
            Some(target) => target.clone(),
            None => sig.call(&pullback),
        };
        let link = self.link;
        let mut out = self.companion.clone();
        if self.hand_written.is_none() {
            let d_out = namer.fresh("d_out");
            // A tuple of floats is an array in the body (`desugar::tuple_tails`).
            let seed = match signature::tuple_output(output) {
                Some((f, n)) => quote!(::core::convert::Into::<[#f; #n]>::into(#d_out)),
                None => d_out.to_token_stream(),
            };
            let pullback_body = braced(flatten_block(body(
                func,
                sig,
                |p| p.kind != signature::Kind::Constant,
                seed,
                false,
                namer,
            )?));
            let doc_pb = format!("The pullback of [`{link}`], generated by `#[differentiate]`: the gradient of `<d_out, {name}(..)>` (the output's elements weighted by `d_out`) for every parameter, `()` for constant parameters.");
            out.append_stream(quote! {
                #(#cfgs)*
                #[doc = #doc_pb]
                #[inline]
                #[allow(unused, clippy::all)]
                #vis fn #pullback #generics (#(#params,)* #d_out: #output) -> #pullback_ty #where_clause #pullback_body
            });
        }
        if self.pullback_only {
            return Ok(out);
        }
        let doc_j = format!("The Jacobian of [`{link}`], generated by `#[differentiate]`: for each element of the output (in logical order), its gradient with respect to the differentiated parameters (one pullback each).");
        out.append_stream(quote! {
            #(#cfgs)*
            #[doc = #doc_j]
            #[allow(unused, clippy::all)]
            #vis fn #jacobian #generics (#(#params),*) -> ::std::vec::Vec<#grad_ty> #where_clause {
                use ::autodiff::__rt as #rt;
                use #rt::VectorOutput as _;
                let #value: #output = #primal(#(#args),*);
                let mut #rows = ::std::vec::Vec::with_capacity(#value.elements());
                for #k in 0..#value.elements() {
                    let #pattern = #pullback_call(#(#args,)* #value.unit(#k));
                    #rows.push(#row);
                }
                #rows
            }
        });
        Ok(out)
    }
}

/// One argument of a call to another function, as the forward sweep passes it to the function
/// and the reverse sweep to its pullback: `&a` where the user wrote a reference; a copy of an
/// argument taken by value that is not a known scalar (an owned array), since both calls take
/// it and the adjoints read it after; known scalars as they are (`Copy`).
pub fn call_argument(f: &Function, a: &Operand, tokens: TokenStream, by_ref: bool) -> TokenStream {
    if by_ref {
        quote!(&#tokens)
    } else if a.var().is_some_and(|v| !f.is_copy(v)) {
        quote!(::core::clone::Clone::clone(&#tokens))
    } else {
        tokens
    }
}

/// A copy of variable `v` (named `tokens`) for a tape or a loop's storage: the value itself
/// when it is a known scalar (`Copy`), a clone otherwise (an array the code reads again after).
pub fn copy_of(f: &Function, v: Option<VarId>, tokens: TokenStream) -> TokenStream {
    match v {
        Some(v) if !f.is_copy(v) => quote!(::core::clone::Clone::clone(&#tokens)),
        // A constant: a literal is `Copy`; a path to a constant may not be.
        None if !is_literal(&tokens) => quote!(::core::clone::Clone::clone(&#tokens)),
        _ => tokens,
    }
}

/// Is `tokens` one literal (`0.0f64`, `2`)?
fn is_literal(tokens: &TokenStream) -> bool {
    let mut trees = tokens.clone().into_iter();
    matches!(
        (trees.next(), trees.next()),
        (Some(proc_macro2::TokenTree::Literal(_)), None)
    )
}

/// A tape's record, or the pattern that takes it back: the one item alone, or a tuple of
/// several (the push and the pop are both written with this, so they agree).
pub fn record_of(items: impl IntoIterator<Item = TokenStream>) -> TokenStream {
    let items: Vec<TokenStream> = items.into_iter().collect();
    match items.as_slice() {
        [one] => one.clone(),
        _ => quote!((#(#items,)*)),
    }
}

/// `slots = values;` for a loop's carried storage: a plain assignment for one slot, a tuple
/// assignment for several (simultaneous: a value may read another slot's old value).
pub fn assign_carried(
    slots: impl IntoIterator<Item = impl ToTokens>,
    values: impl IntoIterator<Item = TokenStream>,
) -> TokenStream {
    let slots: Vec<TokenStream> = slots.into_iter().map(|s| s.to_token_stream()).collect();
    let values: Vec<TokenStream> = values.into_iter().collect();
    match (slots.as_slice(), values.as_slice()) {
        ([slot], [value]) => quote!(#slot = #value;),
        _ => quote!((#(#slots,)*) = (#(#values,)*);),
    }
}

/// The primitive types, by name (`f16` and `f128` too, for when they are stable).
const PRIMITIVE_TYPES: [&str; 19] = [
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f16", "f32", "f64", "f128",
];

/// A name per parameter for its gradient entry, with whether the parameter is a constant
/// (whose entry in a pullback's result is `()`).
fn gradient_slots(sig: &Signature, names: &mut Namer) -> Vec<(Ident, bool)> {
    sig.params
        .iter()
        .map(|p| (names.fresh("g"), p.kind == signature::Kind::Constant))
        .collect()
}

/// The differentiable parameters' entries, `(g0, g2)` (bare for one): a gradient.
fn differentiable_entries(slots: &[(Ident, bool)]) -> TokenStream {
    tuple_or_bare(
        slots
            .iter()
            .filter(|(_, constant)| !constant)
            .map(|(g, _)| g.to_token_stream())
            .collect(),
    )
}

/// Every parameter's entry, `entry(g)` for a differentiable one and `()` for a constant: a
/// pullback's result (or the pattern that takes one apart).
fn pullback_entries(slots: &[(Ident, bool)], entry: impl Fn(&Ident) -> TokenStream) -> TokenStream {
    tuple_or_bare(
        slots
            .iter()
            .map(|(g, constant)| if *constant { quote!(()) } else { entry(g) })
            .collect(),
    )
}

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
    tbr::snapshot_overwritten_buffers(&mut f, &mut namer);
    useful::demote_useless(&mut f, sig.params.len());
    scalars::infer(&mut f, sig);
    fuse::fuse(&mut f, &sig.float, &mut namer);
    calls::keep_unit_pullbacks(&mut f, &mut namer);
    f.early = Reverse::early_loops_of(&f, &sig.float, &rt);
    tbr::untape_stable_reads(&mut f, &mut namer);
    tbr::window_copies(&mut f, &mut namer);
    // The reverse sweep, then the top-level values it does not read: those are freed at the end
    // of the forward sweep, rebound to their shape where the reverse sweep reads that.
    let mut rev = Reverse::new(&f, sig.float.clone(), rt.clone());
    let mut reverse = rev.sweep(seed.clone());
    // Taped reads whose values no reverse iteration wants: untaped, and the sweep done again.
    let unneeded = rev.unneeded_reads();
    if !unneeded.is_empty() {
        drop(rev);
        tbr::untape(&mut f.body, &unneeded);
        rev = Reverse::new(&f, sig.float.clone(), rt.clone());
        reverse = rev.sweep(seed);
    }
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
        let gradient = |rev: &mut Reverse| match p.kind {
            signature::Kind::Struct => rev.struct_gradient(id),
            signature::Kind::Structs => {
                let g = rev.elements_gradient(id);
                match signature::struct_array_len(&p.ty) {
                    // Built as a `Vec`, returned as the array.
                    Some(_) => quote!(#rt::into_array(#g)),
                    None => g,
                }
            }
            _ => rev.gradient(id),
        };
        if with_value {
            if p.wrt {
                grads.push(gradient(&mut rev));
            }
        } else if p.kind == signature::Kind::Constant {
            grads.push(quote!(()));
        } else {
            grads.push(gradient(&mut rev));
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
    // The last loop runs fused with its reverse, after the rest of the forward sweep.
    let before = f.body.stmts.len() - usize::from(fused.is_some());
    let updates = in_place_updates(&f, &released);
    for s in &f.body.stmts[..before] {
        match in_place(&fwd, s, &updates, &rev.used_like) {
            Some(code) => forward.append_stream(code),
            None => forward.append_stream(fwd.stmt(s)),
        }
    }
    forward.extend(fused);
    // Scalars need no freeing; a value updated in place is gone (or already its shape).
    let consumed: BTreeSet<VarId> = updates.values().map(|u| u.v).collect();
    for v in released
        .into_iter()
        .filter(|&v| !f.vars[v].scalar && !consumed.contains(&v))
    {
        let name = &f.vars[v].name;
        if rev.used_like.contains(&v) {
            forward.append_stream(quote!(let #name = #rt::into_like(#name);));
        } else {
            forward.append_stream(quote!(#rt::release(#name);));
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
    // Naming the primal marks it used: a function whose gradient alone is called is not dead
    // (one with `impl Trait` parameters cannot be named without its arguments' types).
    let name = &func.sig.ident;
    let t = &sig.turbofish;
    let mark_used = match sig.is_member() {
        _ if sig.params.iter().any(|p| names_impl_trait(&p.ty)) => TokenStream::new(),
        // A parameter named like the function hides it.
        false if sig.params.iter().any(|p| p.ident == *name) => TokenStream::new(),
        true => quote!(let _ = Self::#name #t;),
        false => quote!(let _ = #name #t;),
    };
    // The sweeps are moved in, not copied (as interpolating them would).
    let mut out = quote! {
        use ::autodiff::__rt as #rt;
        #mark_used
        #(#items)*
    };
    out.append_stream(forward);
    out.append_stream(reverse);
    out.append_stream(ret);
    Ok(out)
}

/// Does this type contain `impl Trait` (an anonymous type parameter)?
fn names_impl_trait(ty: &syn::Type) -> bool {
    signature::mentions(ty.to_token_stream(), "impl")
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
                        out.append_stream(quote!(let mut #t = #vec;));
                    }
                    if plan.reads {
                        let t = &l.reads.tape;
                        out.append_stream(quote!(let mut #t = #vec;));
                    }
                    if l.nested && plan.has_exits() {
                        let t = &l.exits;
                        out.append_stream(quote!(let mut #t = #vec;));
                    }
                    if l.in_arm && plan.count {
                        let c = &l.count;
                        out.append_stream(quote!(let mut #c: usize = 0;));
                    }
                    for r in plan.recorded.iter().filter_map(|v| f.recorded.get(v)) {
                        let t = &r.tape;
                        if r.window {
                            out.append_stream(
                                quote!(let mut #t = ::autodiff::__rt::WindowTape::new();),
                            );
                        } else {
                            out.append_stream(quote!(let mut #t = #vec;));
                        }
                    }
                    for k in &plan.shaped {
                        let t = &k.tape;
                        out.append_stream(quote!(let mut #t = #vec;));
                    }
                }
                out.append_stream(tapes(f, &l.body, plans));
            }
            Stmt::If { then, els, .. } => {
                out.append_stream(tapes(f, then, plans));
                out.append_stream(tapes(f, els, plans));
            }
            _ => {}
        }
    }
    out
}

/// The statements of a loop body (those `included` marks) that a reverse iteration runs
/// again: recomputed from its records ([`Mode::Recompute`]), or, for a checkpointed loop, run
/// from the iteration's restored state ([`Mode::Rerun`], `Reverse::rerun_slice`).
pub fn again(
    f: &Function,
    body: &crate::ir::Block,
    included: &[bool],
    checkpointed: bool,
    saved: &Saved,
    plans: &Plans,
    rt: &Ident,
) -> TokenStream {
    let fwd = Forward {
        f,
        saved,
        rt,
        plans,
        mode: if checkpointed {
            Mode::Rerun
        } else {
            Mode::Recompute
        },
    };
    body.stmts
        .iter()
        .zip(included)
        .filter(|(_, inc)| **inc)
        .map(|(s, _)| fwd.stmt(s))
        .collect()
}

/// A loop as the primal runs it, nothing recorded (inside a checkpointed loop's forward run).
fn plain_loop(fwd: &Forward<'_>, l: &crate::ir::Loop) -> TokenStream {
    let mut out = loop_prelude(fwd.f, l, fwd.rt);
    let header = loop_header(fwd.f, l);
    let body = fwd.block(&l.body);
    let end = iteration_end(fwd, l);
    out.append_stream(quote!(#header { #body #end }));
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
        out.append_stream(assign_carried(slots, exits));
    }
    if let Some(brk) = &l.brk {
        let brk = fwd.operand(brk);
        out.append_stream(quote!(if #brk { break; }));
    }
    out
}

/// A top-level update `y = v + b` computed in `v`'s storage ([`in_place_updates`]).
struct InPlace {
    v: VarId,
    b: Operand,
    /// The runtime function: `add_owned`, `sub_owned`, `mul_owned`, `div_owned`.
    f: Ident,
}

/// The top-level updates `y = v + b` (`-`, `*`, `/`; by `y`) whose left operand `v` is a value
/// the forward sweep reads there alone and the reverse sweep at most for its shape
/// (`released`): computed in `v`'s storage (`__rt::add_owned(v, &b)`), as `h += b1` is by
/// hand, instead of in a new array. Only a known array (`Function::arrays`) not a view has
/// storage to reuse.
fn in_place_updates(f: &Function, released: &[VarId]) -> HashMap<VarId, InPlace> {
    let mut reads = Vec::new();
    let mut names = Vec::new();
    for s in &f.body.stmts {
        crate::reverse::stmt_reads(s, &mut reads, &mut names, true);
    }
    reads.extend(f.result.var());
    let mut out = HashMap::new();
    for s in &f.body.stmts {
        let Stmt::Let {
            var,
            op:
                Op::Prim {
                    rule,
                    args,
                    ints,
                    span,
                    ..
                },
        } = s
        else {
            continue;
        };
        let name = match rule.forward {
            Fwd::Runtime(name @ ("add" | "sub" | "mul" | "div"))
                if rule.kind == rules::Kind::Operator && ints.is_empty() =>
            {
                name
            }
            _ => continue,
        };
        let [Operand::Var(v), b] = args.as_slice() else {
            continue;
        };
        if !f.arrays.contains(v) || !released.contains(v) {
            continue;
        }
        let once = reads.iter().filter(|&r| r == v).count() == 1
            && !names.iter().any(|n| f.vars[*v].name == n);
        // Computed into an array of its own (not a view, a copy or a parameter).
        let owned = f.body.stmts.iter().any(|d| {
            matches!(d, Stmt::Let { var: dv, op } if dv == v && match op {
                Op::Prim { rule, .. } => !rule.borrows(),
                Op::Map { .. } => true,
                _ => false,
            })
        });
        if once && owned {
            let f = Ident::new(&format!("{name}_owned"), *span);
            out.insert(
                *var,
                InPlace {
                    v: *v,
                    b: b.clone(),
                    f,
                },
            );
        }
    }
    out
}

/// The forward code of `s` when it is one of the `updates` ([`in_place_updates`]): the left
/// operand's storage reused, and its name rebound to its shape where the reverse sweep reads
/// that (`like`).
fn in_place(
    fwd: &Forward<'_>,
    s: &Stmt,
    updates: &HashMap<VarId, InPlace>,
    like: &BTreeSet<VarId>,
) -> Option<TokenStream> {
    let Stmt::Let { var, .. } = s else {
        return None;
    };
    let InPlace { v, b, f } = updates.get(var)?;
    let rt = fwd.rt;
    let (y, x) = (&fwd.f.vars[*var].name, &fwd.f.vars[*v].name);
    let ty = fwd.f.vars[*var].ty.as_ref().map(|t| quote!(: #t));
    let b = fwd.operand(b);
    Some(if like.contains(v) {
        let shape = Ident::new(&format!("{x}_shape"), crate::names::mixed_site());
        quote!(let #shape = #rt::like(&#x); let #y #ty = #rt::#f(#x, &#b); let #x = #shape;)
    } else {
        quote!(let #y #ty = #rt::#f(#x, &#b);)
    })
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

/// An operand as the forward sweep writes it: a variable by its name, a constant as written.
pub fn named(f: &Function, o: &Operand) -> TokenStream {
    match o {
        Operand::Var(v) => f.vars[*v].name.to_token_stream(),
        Operand::Const(t) => t.clone(),
    }
}

impl Forward<'_> {
    fn operand(&self, o: &Operand) -> TokenStream {
        named(self.f, o)
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
                // A value whose shape alone is needed: popped where its loop runs backwards
                // (pushed when its forward iteration ends, `loop_stmt`).
                if self.mode == Mode::Recompute {
                    if let Some(k) = self
                        .plans
                        .values()
                        .flat_map(|p| &p.shaped)
                        .find(|k| k.var == *var)
                    {
                        let (rt, tape) = (self.rt, &k.tape);
                        return quote!(let #name = #rt::pop(&mut #tape););
                    }
                }
                // A window copy that no loop records (at the top level, in a loop fused with its
                // reverse): the reverse reads it where it stands, after the stores into its
                // buffer, so it is an owned copy rather than a view.
                if self.f.recorded.get(var).is_some_and(|r| r.window)
                    && !self.plans.values().any(|p| p.recorded.contains(var))
                {
                    let value = self.op(op);
                    return quote!(let #name #ty = #value.to_vec(););
                }
                // A recorded integer value: taped where its loop runs backwards.
                if let Some(r) = self
                    .f
                    .recorded
                    .get(var)
                    .filter(|_| self.plans.values().any(|p| p.recorded.contains(var)))
                {
                    let tape = &r.tape;
                    match self.mode {
                        Mode::Body if r.window => {
                            let value = self.op(op);
                            return quote!(let #name #ty = #value; #tape.push_window(#name););
                        }
                        Mode::Recompute if r.window => {
                            return quote!(let #name #ty = #tape.pop_window(););
                        }
                        Mode::Body => {
                            let value = self.op(op);
                            if self.plans.values().any(|p| p.recorded_at_end.contains(var)) {
                                // Moved onto the tape when the iteration ends (`loop_stmt`).
                                return quote!(let #name #ty = #value;);
                            }
                            let copy = copy_of(self.f, Some(*var), name.to_token_stream());
                            let append = append(self.rt, tape, copy, r.exact);
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
                if let (
                    Op::Fused {
                        grads: Some((pack, _)),
                        ..
                    },
                    Mode::Sweep,
                ) = (op, self.mode)
                {
                    if let Some(acc) = self.plans.values().find_map(|p| p.direct.get(var)) {
                        // The derivatives go straight into the inputs' adjoints.
                        let value = self.fused(op, Some(acc));
                        return quote!(let (#name, #pack) = (#value, ()););
                    }
                }
                let value = self.op(op);
                if let Op::Fused {
                    grads: Some((pack, _)),
                    ..
                }
                | Op::Call {
                    grads: Some((pack, _)),
                    ..
                } = op
                {
                    if matches!(self.mode, Mode::Body | Mode::Plain) {
                        // A loop body whose reverse runs it again: the derivatives are computed
                        // there, where they are used.
                        return quote!(let (#name, #pack) = (#value, ()););
                    }
                    // The sum and its derivatives, which the reverse sweep scales.
                    return quote!(let (#name, #pack) = #value;);
                }
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
                // An arm yields its own values by moving them, and a value from before the `if`
                // (`let z = if c { t } else { .. }`) by a copy: the reverse sweep may read it
                // after the `if` (for its shape at least), where the user's code cannot.
                let yielded = |o: &Operand, arm: &crate::ir::Block| {
                    let value = self.operand(o);
                    match o.var() {
                        Some(v) if !self.f.is_copy(v) && !arm.defined().contains(&v) => {
                            quote!(::core::clone::Clone::clone(&#value))
                        }
                        _ => value,
                    }
                };
                let mut then_vals: Vec<TokenStream> =
                    phis.iter().map(|p| yielded(&p.then, then)).collect();
                let mut else_vals: Vec<TokenStream> =
                    phis.iter().map(|p| yielded(&p.els, els)).collect();
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
            Stmt::Store {
                buf,
                index,
                value,
                part,
            } => match self.mode {
                Mode::Recompute => TokenStream::new(),
                _ => {
                    let (b, i, v) = (
                        &self.f.vars[*buf].name,
                        self.operand(index),
                        self.operand(value),
                    );
                    match part {
                        Part::Element => quote!(#b[#i] = #v;),
                        Part::Grow => {
                            let rt = self.rt;
                            quote!(#rt::set_grow(&mut #b, #i, #v);)
                        }
                        Part::View(method) => {
                            let rt = self.rt;
                            quote!(#rt::assign(#b.#method(#i), &#v);)
                        }
                    }
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
            let c = counted.then(|| quote!(#count));
            let pattern = record_of(
                c.into_iter()
                    .chain(afters.iter().map(|a| a.to_token_stream())),
            );
            return quote!(let #pattern = #rt::pop(&mut #exits););
        }
        let mut out = loop_prelude(self.f, l, rt);
        if plan.count && l.in_arm {
            out.append_stream(quote!(#count = 0;));
        } else if plan.count {
            out.append_stream(quote!(let mut #count: usize = 0;));
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
                || !plan.shaped.is_empty()
                || plan.reads_reserved
                || !nested_exits.is_empty()
        }) {
            out.append_stream(quote!(let #count = ::core::iter::Iterator::count(::core::iter::IntoIterator::into_iter(#iter));));
            for e in &nested_exits {
                out.append_stream(quote!(#e.reserve(#count);));
            }
            if let (true, Some(r)) = (plan.reads_reserved, plan.fixed_reads) {
                out.append_stream(quote!(#reads.reserve(#count * #r);));
            }
            if plan.has_entries() {
                let tape = &l.tape;
                out.append_stream(quote!(#tape.reserve(#count);));
            }
            for r in &recorded {
                let tape = &r.tape;
                out.append_stream(quote!(#tape.reserve(#count);));
            }
            for k in &plan.shaped {
                let tape = &k.tape;
                out.append_stream(quote!(#tape.reserve(#count);));
            }
        }
        if plan.has_entries() {
            let entries: Vec<TokenStream> = plan
                .entries
                .iter()
                .map(|e| copy_of(self.f, Some(*e), self.f.vars[*e].name.to_token_stream()))
                .collect();
            let start = plan.records_read_start().then(|| quote!(#reads.len()));
            let tape = &l.tape;
            let snapshots = plan.snapshots.iter().map(|v| {
                let b = &self.f.vars[*v].name;
                if self.f.flat.contains(v) {
                    // A `Vec` of the float: its copy on storage kept from call to call.
                    quote!(#rt::keep(&#b))
                } else {
                    quote!(::core::clone::Clone::clone(&#b))
                }
            });
            let record = record_of(entries.into_iter().chain(snapshots).chain(start));
            body.append_stream(append(rt, tape, record, exact.is_some()));
        }
        let inner = Forward {
            mode: if plan.checkpoint.is_empty() {
                Mode::Body
            } else {
                Mode::Plain
            },
            ..*self
        };
        body.append_stream(inner.block(&l.body));
        if inner.mode == Mode::Body {
            // The shapes the reverse iteration reads, recorded (their arrays freed) once the
            // iteration has read the values for the last time.
            for k in &plan.shaped {
                let name = &self.f.vars[k.var].name;
                let value = quote!(#rt::into_like(#name));
                body.append_stream(append(rt, &k.tape, value, exact.is_some()));
            }
            // The recorded arrays, moved onto their tapes once the iteration is done with them.
            for v in &plan.recorded_at_end {
                if let Some(r) = self.f.recorded.get(v) {
                    let name = &self.f.vars[*v].name;
                    body.append_stream(append(rt, &r.tape, quote!(#name), r.exact));
                }
            }
        }
        if plan.count {
            body.append_stream(quote!(#count += 1;));
        }
        body.append_stream(iteration_end(self, l));
        out.append_stream(quote!(#header { #body }));
        if self.mode == Mode::Body && l.nested && plan.has_exits() {
            let counted = plan.reversed && plan.count;
            let c = counted.then(|| quote!(#count));
            let afters = plan
                .exit_afters
                .iter()
                .map(|a| copy_of(self.f, Some(*a), self.f.vars[*a].name.to_token_stream()));
            let record = record_of(c.into_iter().chain(afters));
            out.append_stream(append(rt, exits, record, plan.exits_reserved));
        }
        out
    }

    /// A fused sum (or mean): its value alone, with its derivatives where the reverse sweep
    /// scales them (`fused_sum_grad`), or with them added straight into the inputs' adjoints
    /// (`acc`: their destinations and the sum's adjoint, `fused_sum_acc`).
    fn fused(&self, op: &Op, acc: Option<&(TokenStream, TokenStream)>) -> TokenStream {
        let rt = self.rt;
        let Op::Fused {
            inputs,
            function,
            float,
            ops,
            grads,
            mean,
        } = op
        else {
            unreachable!("a fused sum");
        };
        let plain = if *mean { "fused_mean" } else { "fused_sum" };
        let suffix = if acc.is_some() { "acc" } else { "grad" };
        let with_grads = Ident::new(&format!("{plain}_{suffix}"), proc_macro2::Span::call_site());
        let plain = Ident::new(plain, proc_macro2::Span::call_site());
        let extra = acc.map(|(dests, dy)| quote!(#dests, #dy,));
        // A loop body whose reverse runs it again computes the value alone.
        let wanted = grads.is_some() && !matches!(self.mode, Mode::Body | Mode::Plain);
        let args = inputs.iter().map(|o| {
            let x = self.operand(o);
            if wanted && o.var().is_some_and(|v| self.f.vars[v].active) {
                quote!(&#x)
            } else {
                quote!(#rt::Const(&#x))
            }
        });
        let params = function.vars[..inputs.len()].iter().map(|v| &v.name);
        let floats: Vec<&Ident> = inputs.iter().map(|_| float).collect();
        if wanted {
            // The value and its partial derivatives in one pass.
            let body = closure_gradients(
                function,
                float,
                rt,
                signature::cast(quote!(1.0), float),
                inputs.len(),
                true,
                true,
            );
            return quote!(#rt::#with_grads((#(#args,)*), #extra #ops, |(#(#params,)*): (#(#floats,)*)| -> (#float, (#(#floats,)*)) #body));
        }
        let plans = Plans::new();
        let saved = Saved::new();
        let fwd = Forward {
            f: function,
            saved: &saved,
            rt,
            plans: &plans,
            mode: Mode::Sweep,
        };
        let body = fwd.block(&function.body);
        let result = fwd.operand(&function.result);
        quote!(#rt::#plain((#(#args,)*), #ops, |(#(#params,)*): (#(#floats,)*)| -> #float { #body #result }))
    }

    fn op(&self, op: &Op) -> TokenStream {
        let rt = self.rt;
        match op {
            Op::Copy(o) => self.operand(o),
            Op::Verbatim(t) => t.clone(),
            Op::Call {
                callee,
                args,
                refs,
                tuple,
                grads,
            } => {
                let args = args
                    .iter()
                    .zip(refs)
                    .map(|(a, r)| call_argument(self.f, a, self.operand(a), *r));
                // The value and the pullback for a unit adjoint (`calls`), where the reverse
                // sweep follows; the value alone in a loop body its reverse runs again.
                if let (Some(_), Callee::Function { pullback, .. }) = (grads, callee) {
                    if !matches!(self.mode, Mode::Body | Mode::Plain) {
                        let path = crate::calls::value_and_pullback(pullback);
                        return quote!(#path(#(#args,)* #rt::unit()));
                    }
                }
                let callee = callee.forward(|r| self.operand(r));
                match tuple {
                    Some(n) => quote!(::core::convert::Into::<[_; #n]>::into(#callee(#(#args),*))),
                    None => quote!(#callee(#(#args),*)),
                }
            }
            Op::Index {
                base,
                index,
                by_ref,
                ..
            } => {
                let (b, i) = (self.operand(base), self.operand(index));
                match by_ref {
                    true => quote!(&#b[#i]),
                    false => quote!(#b[#i]),
                }
            }
            Op::Fused { .. } => self.fused(op, None),
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
                    // Scalars: the operator itself (`a * b`; `range`, which takes its bounds
                    // too, is no arithmetic).
                    (Fwd::Runtime(name), _)
                        if written && rule.kind == rules::Kind::Operator && rule.ints == 0 =>
                    {
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
                            "rem" => quote!(%),
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
        let init = copy_of(f, c.init.var(), init);
        out.append_stream(quote!(let mut #slot = #init;));
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
            b.append_stream(inner);
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
    closure_gradients(f, float, rt, seed, 1, false, false)
}

/// The body of a closure computing the gradient of `f` (a closure's or a fused sum's element
/// function) with respect to its first `params` variables, seeded with `seed`: a tuple of
/// `params` values, or with `params == 1` and not `tuple`, the one value; with `with_value`,
/// `(value, gradient)`.
pub fn closure_gradients(
    f: &Function,
    float: &Ident,
    rt: &Ident,
    seed: TokenStream,
    params: usize,
    tuple: bool,
    with_value: bool,
) -> TokenStream {
    let mut rev = Reverse::new(f, float.clone(), rt.clone());
    let reverse = rev.sweep(seed);
    let grads: Vec<TokenStream> = (0..params)
        .map(|k| {
            if f.vars[k].active {
                rev.gradient(k)
            } else {
                signature::cast(quote!(0.0), float)
            }
        })
        .collect();
    let grad = if params == 1 && !tuple {
        grads.into_iter().next().unwrap_or_default()
    } else {
        quote!((#(#grads,)*))
    };
    let saved = std::mem::take(&mut rev.saved);
    let plans = std::mem::take(&mut rev.plans);
    let mut forward = tapes(f, &f.body, &plans);
    forward.append_stream(
        Forward {
            f,
            saved: &saved,
            rt,
            plans: &plans,
            mode: Mode::Sweep,
        }
        .block(&f.body),
    );
    if with_value {
        let value = Forward {
            f,
            saved: &saved,
            rt,
            plans: &plans,
            mode: Mode::Sweep,
        }
        .operand(&f.result);
        return quote!({ #forward #reverse (#value, #grad) });
    }
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
    // A copy of the stream is a handle on compiler tokens: most blocks go back unchanged.
    let mut trees: Vec<TokenTree> = stream.clone().into_iter().collect();
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
    // Every name any `let` of the block binds, counted (a plain `let`'s one name without
    // walking its pattern: a long block has thousands).
    let mut bound: HashMap<String, usize> = HashMap::new();
    let mut names = Vec::new();
    let mut candidates = Vec::new();
    for &(start, end) in &lets {
        if let Some(name) = plain((start, end)) {
            let key = trees[name].to_string();
            *bound.entry(key.clone()).or_default() += 1;
            candidates.push((start, name, key));
            continue;
        }
        let pattern_end = (start + 1..end)
            .find(|&j| is_punct(&trees[j], '='))
            .unwrap_or(end);
        for t in &trees[start + 1..pattern_end] {
            collect_idents(t, &mut names);
        }
        for n in names.drain(..) {
            *bound.entry(n).or_default() += 1;
        }
    }
    let hoisted: Vec<(usize, usize)> = candidates
        .into_iter()
        .filter(|(_, _, key)| bound.get(key) == Some(&1))
        .map(|(start, name, _)| (start, name))
        .collect();
    if hoisted.len() < FLATTEN_FROM {
        return stream;
    }
    // `let (a, mut b, ..);`, built token by token, then the block without the hoisted `let`s
    // (and their `mut`s): the names stay as the assignments' targets.
    let comma = || TokenTree::Punct(proc_macro2::Punct::new(',', proc_macro2::Spacing::Alone));
    let mut declared = Vec::with_capacity(3 * hoisted.len());
    let mut skip = vec![false; trees.len()];
    for &(start, name) in &hoisted {
        skip[start] = true;
        if name == start + 2 {
            skip[start + 1] = true;
            declared.push(trees[start + 1].clone());
        }
        declared.push(trees[name].clone());
        declared.push(comma());
    }
    let declared = proc_macro2::Group::new(Delimiter::Parenthesis, declared.into_iter().collect());
    let mut out: TokenStream = [
        TokenTree::Ident(proc_macro2::Ident::new(
            "let",
            proc_macro2::Span::call_site(),
        )),
        TokenTree::Group(declared),
        TokenTree::Punct(proc_macro2::Punct::new(';', proc_macro2::Spacing::Alone)),
    ]
    .into_iter()
    .collect();
    // Plain loops and moves in place: the macro runs unoptimised in most builds, where every
    // iterator adapter moves each token tree once more.
    let mut k = 0;
    trees.retain(|_| {
        k += 1;
        !skip[k - 1]
    });
    out.extend(trees);
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
