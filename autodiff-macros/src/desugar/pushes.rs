//! `Vec`s built by `push`: `let mut out = Vec::new();` (or `Vec::with_capacity(n)`,
//! `vec![]`), then `out.push(e)` in loops and branches, as a buffer written by index with a
//! counter beside it:
//!
//! ```text
//! let mut out = Vec::new();          let mut out = Vec::new();
//!                                    let mut out_len = 0usize;
//! for i in 0..n {             =>     for i in 0..n {
//!     if x[i] > 0.0 {                    if x[i] > 0.0 {
//!         out.push(x[i] * a);                { out.__autodiff_push(out_len, x[i] * a); out_len += 1; }
//!     }                                  }
//! }                                  }
//! out.len()                          out_len
//! ```
//!
//! The counter is an integer like any other (carried by loops, recorded where the reverse
//! sweep needs it), so each push's index is known in the reverse sweep; the push itself is a
//! store that extends the buffer when it has to (`Part::Grow`, `__rt::set_grow`), so running
//! an iteration again (a checkpointed loop) writes the same element. `out.len()` is the
//! counter. A walk of the `Vec` or any other use of it whole reads its length where it stands,
//! which the reverse sweep would read again at the end: such a use must come after the last
//! push (not before one, nor in a loop that pushes), else it is a compile error there.

use crate::lower::strip;
use proc_macro2::{Ident, Span};
use std::collections::HashMap;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Expr, Pat};

/// The method a push becomes, which only lowering reads: `out.__autodiff_push(index, value)`.
pub const PUSH: &str = "__autodiff_push";

/// Rewrites the pushes of `block`; `fresh` gives names no identifier of the function has.
pub fn apply(block: &mut syn::Block, fresh: &mut impl FnMut(&str) -> Ident) {
    for name in declared(block) {
        let mut order = Order {
            name: &name,
            at: 0,
            loops: Vec::new(),
            next_loop: 0,
            pushes: Vec::new(),
            uses: Vec::new(),
        };
        order.visit_block(block);
        if order.pushes.is_empty() {
            continue;
        }
        let counter = fresh(&format!("{name}_len"));
        // Uses of the whole `Vec` before a push, or in a loop that pushes.
        let mut too_early = HashMap::new();
        for (at, loops, span) in &order.uses {
            let early = order
                .pushes
                .iter()
                .any(|(p, push_loops)| p > at || push_loops.iter().any(|l| loops.contains(l)));
            if early {
                too_early.insert(*at, *span);
            }
        }
        let mut rewrite = Rewrite {
            name: &name,
            counter: &counter,
            at: 0,
            too_early,
            error: None,
        };
        rewrite.visit_block_mut(block);
        // A use too early: the function's error, where the use is.
        if let Some(span) = rewrite.error {
            let message = format!("#[differentiate] reads `{name}` whole here (a walk, a call, its value) before a later `push` or in a loop that pushes to it: the reverse sweep would see its final length; read its elements by index (`{name}[i]`, with `{name}.len()` as it stands)");
            *block = syn::parse_quote_spanned!(span=> { compile_error!(#message); });
            return;
        }
    }
}

/// The names declared `let mut name = Vec::new();` (`Vec::with_capacity(..)`, `vec![]`,
/// `Vec::<f64>::new()`) exactly once in the function.
fn declared(block: &syn::Block) -> Vec<String> {
    #[derive(Default)]
    struct Find {
        empty: Vec<String>,
        bound: HashMap<String, usize>,
    }
    impl<'ast> Visit<'ast> for Find {
        fn visit_local(&mut self, l: &'ast syn::Local) {
            let pat = match &l.pat {
                Pat::Type(t) => &*t.pat,
                p => p,
            };
            if let (Pat::Ident(p), Some(init)) = (pat, &l.init) {
                if p.mutability.is_some() && init.diverge.is_none() && empty_vec(&init.expr) {
                    self.empty.push(p.ident.to_string());
                }
            }
            syn::visit::visit_local(self, l);
        }
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            *self.bound.entry(p.ident.to_string()).or_default() += 1;
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut find = Find::default();
    find.visit_block(block);
    let bound = find.bound;
    find.empty
        .into_iter()
        .filter(|n| bound.get(n) == Some(&1))
        .collect()
}

/// `Vec::new()`, `Vec::with_capacity(..)`, `Vec::<T>::new()`, `vec![]`.
fn empty_vec(e: &Expr) -> bool {
    match strip(e) {
        Expr::Call(c) => {
            let Expr::Path(p) = strip(&c.func) else {
                return false;
            };
            matches!(super::segments(&p.path).as_slice(), [.., v, f] if v == "Vec" && (f == "new" || f == "with_capacity"))
        }
        Expr::Macro(m) => m.mac.path.is_ident("vec") && m.mac.tokens.is_empty(),
        _ => false,
    }
}

/// `name.push(e)` in statement position.
fn push_of<'e>(e: &'e Expr, name: &str) -> Option<&'e Expr> {
    let Expr::MethodCall(m) = e else { return None };
    let named = matches!(strip(&m.receiver), Expr::Path(p) if p.path.is_ident(name));
    (named && m.method == "push" && m.args.len() == 1).then(|| &m.args[0])
}

/// `name.len()`.
fn len_of(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::MethodCall(m) if m.method == "len" && m.args.is_empty()
        && matches!(strip(&m.receiver), Expr::Path(p) if p.path.is_ident(name)))
}

/// A mention of `name` that reads the `Vec` whole (not a push, its length, nor an element).
fn whole_use(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Path(p) if p.path.is_ident(name))
}

/// Numbers the pushes of `name` and its other uses in program order, each with the loops
/// around it.
struct Order<'a> {
    name: &'a str,
    at: usize,
    loops: Vec<usize>,
    next_loop: usize,
    pushes: Vec<(usize, Vec<usize>)>,
    uses: Vec<(usize, Vec<usize>, Span)>,
}

impl<'ast> Visit<'ast> for Order<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        self.at += 1;
        let looped = matches!(e, Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_));
        if looped {
            self.loops.push(self.next_loop);
            self.next_loop += 1;
        }
        if let Some(value) = push_of(e, self.name) {
            self.visit_expr(value);
            self.at += 1;
            self.pushes.push((self.at, self.loops.clone()));
        } else if len_of(e, self.name) {
        } else if let Expr::Index(ix) = e {
            // An element read (its receiver is no whole use).
            if !matches!(strip(&ix.expr), Expr::Path(p) if p.path.is_ident(self.name)) {
                self.visit_expr(&ix.expr);
            }
            self.visit_expr(&ix.index);
        } else if whole_use(e, self.name) {
            self.uses
                .push((self.at, self.loops.clone(), syn::spanned::Spanned::span(e)));
        } else {
            syn::visit::visit_expr(self, e);
        }
        if looped {
            self.loops.pop();
        }
    }
}

/// The pushes as stores at the counter, the lengths as the counter; uses too early reported.
struct Rewrite<'a> {
    name: &'a str,
    counter: &'a Ident,
    at: usize,
    /// Uses (by their order) that come before a push or in a loop that pushes.
    too_early: HashMap<usize, Span>,
    /// The first of them met.
    error: Option<Span>,
}

impl VisitMut for Rewrite<'_> {
    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        let mut stmts = Vec::with_capacity(b.stmts.len());
        for mut s in std::mem::take(&mut b.stmts) {
            self.visit_stmt_mut(&mut s);
            // The counter starts beside the declaration.
            let declares = matches!(&s, syn::Stmt::Local(l) if matches!(
                match &l.pat { Pat::Type(t) => &*t.pat, p => p },
                Pat::Ident(p) if p.ident == self.name && l.init.as_ref().is_some_and(|i| empty_vec(&i.expr))
            ));
            stmts.push(s);
            if declares {
                let counter = self.counter;
                stmts.push(syn::parse_quote!(let mut #counter = 0usize;));
            }
        }
        b.stmts = stmts;
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // Numbered as `Order` numbers them.
        self.at += 1;
        let counter = self.counter;
        if let Some(value) = push_of(e, self.name) {
            let mut value = value.clone();
            self.visit_expr_mut(&mut value);
            self.at += 1;
            let name = Ident::new(self.name, Span::call_site());
            let method = Ident::new(PUSH, Span::call_site());
            *e = syn::parse_quote!({
                #name.#method(#counter, #value);
                #counter += 1;
            });
            return;
        }
        if len_of(e, self.name) {
            *e = syn::parse_quote!(#counter);
            return;
        }
        if let Expr::Index(ix) = e {
            if !matches!(strip(&ix.expr), Expr::Path(p) if p.path.is_ident(self.name)) {
                self.visit_expr_mut(&mut ix.expr);
            }
            self.visit_expr_mut(&mut ix.index);
            return;
        }
        if whole_use(e, self.name) {
            if let Some(span) = self.too_early.get(&self.at) {
                self.error.get_or_insert(*span);
            }
            return;
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
}
