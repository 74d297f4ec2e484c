//! Before lowering (part of `desugar`): a closure bound by `let` and only called,
//! `let pair = |r: f64| 4.0 * (r.powi(-12) - r.powi(-6));` then `e += pair(d);`, is inlined at
//! each call, as the block it stands for: `e += { let r: f64 = d; 4.0 * (..) };` (several
//! parameters take their arguments as one tuple, `let (a, b) = (u, v);`, so each argument is
//! read before any parameter shadows it). The `let` of the closure goes.
//!
//! The inlined body reads its names where the call stands, not where the closure was written,
//! which is the same value when each name the closure reads (other than its own parameters) is
//! bound once in the function, before the closure, or not at all (a constant, a function).
//! A closure that reads a name bound again, or after it, is a compile error at that name; one
//! that could `return` (from itself, not the function) at the `return`. A closure used other
//! than by calls (passed on, `move`d, bound `mut`) is left as it is, for lowering to report.

use crate::lower::strip;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, ToTokens};
use std::collections::{HashMap, HashSet};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Expr, Pat};

/// Does `block` bind a closure by `let`?
pub fn any(block: &syn::Block) -> bool {
    struct Probe(bool);
    impl<'ast> Visit<'ast> for Probe {
        fn visit_local(&mut self, l: &'ast syn::Local) {
            self.0 |= closure_binding(l).is_some();
            syn::visit::visit_local(self, l);
        }
    }
    let mut p = Probe(false);
    p.visit_block(block);
    p.0
}

/// The name and closure of `let name = |..| ..;`.
fn closure_binding(l: &syn::Local) -> Option<(&Ident, &syn::ExprClosure)> {
    let Pat::Ident(p) = &l.pat else { return None };
    let init = l.init.as_ref().filter(|i| i.diverge.is_none())?;
    let Expr::Closure(c) = strip(&init.expr) else {
        return None;
    };
    (p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none()).then_some((&p.ident, c))
}

/// Inlines every closure of `func` that is bound by `let` and only called (see the module).
pub fn closures(func: &mut syn::ItemFn, fresh: &mut impl FnMut(&str) -> Ident) {
    let mut scan = Scan::default();
    scan.visit_item_fn(func);
    let mut inlined: Vec<(Ident, Option<Expr>)> = Vec::new();
    for def in &scan.closures {
        let name = def.name.to_string();
        let bound_once = scan.bindings.get(&name).is_some_and(|b| b.len() == 1);
        let uses = scan.uses.get(&name).copied().unwrap_or_default();
        if !bound_once || uses.0 != uses.1 || def.closure.capture.is_some() {
            continue;
        }
        let error = check(def, &scan).err().map(|e| {
            let message = e.to_string();
            let error: Expr = syn::parse_quote_spanned!(e.span()=> compile_error!(#message));
            error
        });
        inlined.push((def.name.clone(), error));
    }
    for (name, error) in &inlined {
        // An error stays in the closure's `let`, for lowering to report.
        if let Some(error) = error {
            Replace {
                name,
                with: Some(error),
            }
            .visit_block_mut(&mut func.block);
            continue;
        }
        // As it is now: the calls of closures before it in its body are inlined already.
        let Some(c) = current(&func.block, name) else {
            continue;
        };
        let output = match &c.output {
            syn::ReturnType::Type(_, ty) => Some((fresh("closure_value"), (**ty).clone())),
            syn::ReturnType::Default => None,
        };
        let mut calls = Calls {
            name,
            closure: &c,
            output: output.as_ref().map(|(v, t)| (v, t)),
        };
        calls.visit_block_mut(&mut func.block);
        Replace { name, with: None }.visit_block_mut(&mut func.block);
    }
}

/// Every name the closure reads, other than its own parameters, is bound before it (once or
/// more) or not at all; it has no `return` (which would leave the function once inlined).
fn check(def: &Def, scan: &Scan) -> syn::Result<()> {
    if let Some(r) = find_return(&def.closure.body) {
        return Err(syn::Error::new(r, format!("a closure called by name is inlined at its calls, where `return` would leave `{}` itself: write the closure's value as its last expression", scan.function)));
    }
    let mut reads = Reads::default();
    reads.visit_expr(&def.closure.body);
    for (name, span) in reads.names {
        let outside: Vec<usize> = scan
            .bindings
            .get(&name)
            .into_iter()
            .flatten()
            .filter(|b| !b.inside.contains(&def.id))
            // A name bound in another closure (its parameter, `max_by(|a, b| ..)`) is in
            // scope only there: it names another value at a call only if that closure calls
            // this one.
            .filter(|b| {
                b.inside.last().is_none_or(|c| {
                    scan.calls_inside
                        .get(c)
                        .is_some_and(|calls| calls.contains(&def.name.to_string()))
                })
            })
            .map(|b| b.order)
            .collect();
        let param = def.closure.inputs.iter().any(|p| binds(p, &name));
        // Bound only before the closure (once, or shadowed there): at every call, which comes
        // after the closure in its scope, the name is the one the closure sees; a binding
        // after it may be in scope at a call instead.
        if param || outside.iter().all(|&o| o < def.order) {
            continue;
        }
        return Err(syn::Error::new(span, format!("this closure is inlined at its calls, and `{name}` is bound after the closure in `{}`, so at a call it may name another value than where the closure is written: rename one of them", scan.function)));
    }
    Ok(())
}

/// Does pattern `p` bind `name`?
fn binds(p: &Pat, name: &str) -> bool {
    struct Finder<'a>(&'a str, bool);
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.1 |= p.ident == self.0;
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut f = Finder(name, false);
    f.visit_pat(p);
    f.1
}

/// The first `return` or `?` in `body` (a closure's, a loop's), outside closures nested in it.
pub fn find_return(body: &Expr) -> Option<Span> {
    struct Finder(Option<Span>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
            self.0.get_or_insert(r.span());
        }
        fn visit_expr_try(&mut self, t: &'ast syn::ExprTry) {
            self.0.get_or_insert(t.question_token.span());
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    }
    let mut f = Finder(None);
    f.visit_expr(body);
    f.0
}

/// The names a closure body reads (single-identifier paths), with the first span of each.
#[derive(Default)]
struct Reads {
    names: Vec<(String, Span)>,
}

impl<'ast> Visit<'ast> for Reads {
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if let Some(i) = p.path.get_ident() {
            let name = i.to_string();
            if !self.names.iter().any(|(n, _)| *n == name) {
                self.names.push((name, i.span()));
            }
        }
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // `assert!(r > 0.0)`: the identifiers of its tokens.
        for tt in m.tokens.clone() {
            if let proc_macro2::TokenTree::Ident(i) = tt {
                let name = i.to_string();
                if !self.names.iter().any(|(n, _)| *n == name) {
                    self.names.push((name, i.span()));
                }
            }
        }
    }
}

/// A closure bound by `let`, in source order.
struct Def {
    name: Ident,
    closure: syn::ExprClosure,
    /// Its place among the function's bindings.
    order: usize,
    id: usize,
}

/// One binding of a name: its place in source order and the closures it is inside.
struct Binding {
    order: usize,
    inside: Vec<usize>,
}

/// The function's bindings in source order, its closures bound by `let`, and how each name is
/// used (as an expression, and as the function of a call).
#[derive(Default)]
struct Scan {
    function: String,
    bindings: HashMap<String, Vec<Binding>>,
    closures: Vec<Def>,
    uses: HashMap<String, (usize, usize)>,
    order: usize,
    /// The closures the walk is inside (their ids).
    inside: Vec<usize>,
    closure_count: usize,
    /// The names each closure (by id) calls in its body, nested closures' calls included.
    calls_inside: HashMap<usize, HashSet<String>>,
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.function = f.sig.ident.to_string();
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
        self.order += 1;
        self.bindings
            .entry(p.ident.to_string())
            .or_default()
            .push(Binding {
                order: self.order,
                inside: self.inside.clone(),
            });
        syn::visit::visit_pat_ident(self, p);
    }
    fn visit_local(&mut self, l: &'ast syn::Local) {
        let Some((name, c)) = closure_binding(l) else {
            return syn::visit::visit_local(self, l);
        };
        self.visit_pat(&l.pat);
        self.closures.push(Def {
            name: name.clone(),
            closure: c.clone(),
            order: self.order,
            id: self.closure_count,
        });
        self.visit_expr(&l.init.as_ref().expect("a closure binding has a value").expr);
    }
    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        self.inside.push(self.closure_count);
        self.closure_count += 1;
        syn::visit::visit_expr_closure(self, c);
        self.inside.pop();
    }
    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if let Expr::Path(p) = strip(&c.func) {
            if let Some(i) = p.path.get_ident() {
                self.uses.entry(i.to_string()).or_default().1 += 1;
                for id in &self.inside {
                    self.calls_inside
                        .entry(*id)
                        .or_default()
                        .insert(i.to_string());
                }
            }
        }
        syn::visit::visit_expr_call(self, c);
    }
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if let Some(i) = p.path.get_ident() {
            self.uses.entry(i.to_string()).or_default().0 += 1;
        }
    }
}

/// Each call `name(args)` as the closure's body in a block that binds its parameters.
struct Calls<'a> {
    name: &'a Ident,
    closure: &'a syn::ExprClosure,
    /// The closure's written return type, and the name its value is bound to under it.
    output: Option<(&'a Ident, &'a syn::Type)>,
}

impl VisitMut for Calls<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        syn::visit_mut::visit_expr_mut(self, e);
        let Expr::Call(call) = e else { return };
        let Expr::Path(p) = strip(&call.func) else {
            return;
        };
        if !p.path.is_ident(self.name) {
            return;
        }
        let params: Vec<&Pat> = self.closure.inputs.iter().collect();
        let args: Vec<&Expr> = call.args.iter().collect();
        let bind = match (params.as_slice(), args.as_slice()) {
            ([], _) => TokenStream::new(),
            ([p], [a]) => quote!(let #p = #a;),
            (ps, args) => {
                let pats = ps.iter().map(|p| untyped(p));
                let types = ps.iter().map(|p| match p {
                    Pat::Type(t) => t.ty.to_token_stream(),
                    _ => quote!(_),
                });
                quote!(let (#(#pats,)*): (#(#types,)*) = (#(#args,)*);)
            }
        };
        let body = &self.closure.body;
        let value = match self.output {
            Some((v, ty)) => quote!(let #v: #ty = #body; #v),
            None => body.to_token_stream(),
        };
        *e = syn::parse_quote_spanned!(call.span()=> { #bind #value });
    }
}

/// The closure `let name = ..` binds in `block` now.
fn current(block: &syn::Block, name: &Ident) -> Option<syn::ExprClosure> {
    struct Finder<'a>(&'a Ident, Option<syn::ExprClosure>);
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_local(&mut self, l: &'ast syn::Local) {
            match closure_binding(l) {
                Some((n, c)) if n == self.0 => self.1 = Some(c.clone()),
                _ => syn::visit::visit_local(self, l),
            }
        }
    }
    let mut f = Finder(name, None);
    f.visit_block(block);
    f.1
}

/// A closure parameter's pattern without its type.
fn untyped(p: &Pat) -> &Pat {
    match p {
        Pat::Type(t) => &t.pat,
        p => p,
    }
}

/// The closure's `let` removed (`with: None`), or its closure replaced by an error.
struct Replace<'a> {
    name: &'a Ident,
    with: Option<&'a Expr>,
}

impl VisitMut for Replace<'_> {
    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        syn::visit_mut::visit_block_mut(self, b);
        let name = self.name;
        let is_def = |s: &syn::Stmt| matches!(s, syn::Stmt::Local(l) if closure_binding(l).is_some_and(|(n, _)| n == name));
        match self.with {
            None => b.stmts.retain(|s| !is_def(s)),
            Some(with) => {
                for s in b.stmts.iter_mut().filter(|s| is_def(s)) {
                    if let syn::Stmt::Local(syn::Local {
                        init: Some(init), ..
                    }) = s
                    {
                        *init.expr = with.clone();
                    }
                }
            }
        }
    }
}
