//! Before lowering: `match` written as the `if` chain it stands for, so that every later phase
//! sees only `if`s.
//!
//! ```text
//! match scrutinee {          { let s = scrutinee;            (only when it is not a place)
//!     P1 if g => e1,           if (match s { P1 => true, _ => false }) && (g) { e1 }
//!     P2 | P3 => e2,    =>     else if match s { P2 | P3 => true, _ => false } { e2 }
//!     _ => e3,                 else { e3 } }
//! }
//! ```
//!
//! Each test is a `match` with `true` / `false` arms, a condition like any other (kept as
//! written, never differentiated). The last arm is the final `else` without a test: the
//! function itself is compiled as written, so rustc has checked the `match` is exhaustive, and
//! the last arm runs exactly when no earlier one matched. A scrutinee that is not a place
//! (`n % 3`, a call) is computed once, into a local; a place (`mode`, `cfg.kind`, `v[i]`) is
//! read by each test, and a binding-free pattern does not move out of it. A tuple is taken
//! element by element the same way (`(k, x > y)`: `let scrutinee = x > y;`, then the tests
//! read `(k, scrutinee)`).
//!
//! Patterns may not bind values (`Some(v)`, `x @ 1..=3`, `Point { x, .. }`): their arms would
//! read the binding, which the tests do not carry over. A lowercase name in a pattern is such
//! a binding; an uppercase one is a constant or a unit variant, unless the function binds that
//! name itself (then rustc would read it as a new binding).

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;
use std::collections::HashSet;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Expr, ItemFn, Pat};

/// `func` with every `match` in its body written as an `if` chain, or the errors (one per
/// pattern binding).
pub fn matches(func: &ItemFn) -> syn::Result<ItemFn> {
    let mut names = Names::default();
    names.visit_item_fn(func);
    if !names.has_match {
        return Ok(func.clone());
    }
    let mut rewriter = Rewriter {
        bound: names.bound,
        used: names.idents,
        errors: None,
    };
    let mut out = func.clone();
    rewriter.visit_block_mut(&mut out.block);
    match rewriter.errors {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// What the rewriting needs to know of the whole function: whether it has a `match`, the names
/// its patterns bind outside `match` arms, and every identifier (for a fresh local's name).
#[derive(Default)]
struct Names {
    has_match: bool,
    bound: HashSet<String>,
    idents: HashSet<String>,
}

impl<'ast> Visit<'ast> for Names {
    fn visit_expr_match(&mut self, m: &'ast syn::ExprMatch) {
        self.has_match = true;
        // The arms' patterns are checked where they are rewritten; their guards and bodies
        // may hold `let`s and closures of their own.
        self.visit_expr(&m.expr);
        for arm in &m.arms {
            if let Some((_, g)) = &arm.guard {
                self.visit_expr(g);
            }
            self.visit_expr(&arm.body);
        }
    }
    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
        self.bound.insert(p.ident.to_string());
        syn::visit::visit_pat_ident(self, p);
    }
    fn visit_ident(&mut self, i: &'ast Ident) {
        self.idents.insert(i.to_string());
    }
}

struct Rewriter {
    bound: HashSet<String>,
    used: HashSet<String>,
    errors: Option<syn::Error>,
}

impl Rewriter {
    fn error(&mut self, e: syn::Error) {
        match &mut self.errors {
            Some(all) => all.combine(e),
            None => self.errors = Some(e),
        }
    }

    /// A name for the scrutinee's local that no identifier of the function has, so it shadows
    /// nothing the arms read.
    fn fresh(&mut self) -> Ident {
        let mut name = "scrutinee".to_string();
        let mut k = 0;
        while self.used.contains(&name) || self.bound.contains(&name) {
            k += 1;
            name = format!("scrutinee_{k}");
        }
        self.used.insert(name.clone());
        Ident::new(&name, Span::call_site())
    }

    /// Reports each binding in `pat`.
    fn check_pattern(&mut self, pat: &Pat) {
        struct Bindings<'a>(&'a HashSet<String>, Vec<syn::Error>);
        impl<'ast> Visit<'ast> for Bindings<'_> {
            fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
                let name = p.ident.to_string();
                let constant = name.starts_with(|c: char| c.is_ascii_uppercase())
                    && p.by_ref.is_none()
                    && p.mutability.is_none()
                    && p.subpat.is_none()
                    && !self.0.contains(&name);
                if !constant {
                    self.1.push(syn::Error::new_spanned(
                        p,
                        format!("#[differentiate] supports `match` patterns without bindings: `{name}` binds a value; write `_` in its place and read the value from the scrutinee in the arm"),
                    ));
                }
            }
        }
        let mut b = Bindings(&self.bound, Vec::new());
        b.visit_pat(pat);
        for e in b.1 {
            self.error(e);
        }
    }

    /// The `if` chain for `m` (its arms already rewritten).
    fn rewrite(&mut self, m: &syn::ExprMatch) -> Expr {
        for arm in &m.arms {
            self.check_pattern(&arm.pat);
        }
        // A tuple's elements one by one (`(k, x > y)`: a tuple of a differentiated comparison
        // is no value the lowering binds), each place kept and the rest computed once.
        let mut setup = TokenStream::new();
        let scrutinee: Expr = match strip_parens(&m.expr) {
            e if is_place(e) => e.clone(),
            Expr::Tuple(t) => {
                let elems: Vec<Expr> = t.elems.iter().map(|e| self.once(e, &mut setup)).collect();
                syn::parse_quote!((#(#elems,)*))
            }
            e => self.once(e, &mut setup),
        };
        // From the last arm back: it is the final `else`, each earlier arm an `if` around the
        // chain after it.
        let Some((last, earlier)) = m.arms.split_last() else {
            // `match x {}` on an empty type: the function cannot get here.
            return syn::parse_quote!({ #setup });
        };
        let mut chain = arm_block(&last.body);
        for arm in earlier.iter().rev() {
            let pat = &arm.pat;
            let test = quote!(match #scrutinee { #pat => true, _ => false });
            let cond = match &arm.guard {
                Some((_, g)) => quote!((#test) && (#g)),
                None => test,
            };
            let then = arm_block(&arm.body);
            chain = syn::parse_quote!({ if #cond #then else #chain });
        }
        if setup.is_empty() {
            return chain;
        }
        let block = match chain {
            Expr::Block(b) => b.block.stmts,
            other => vec![syn::Stmt::Expr(other, None)],
        };
        syn::parse_quote!({ #setup #(#block)* })
    }

    /// `e` itself when it is a place, else a fresh local that `setup` binds to it.
    fn once(&mut self, e: &Expr, setup: &mut TokenStream) -> Expr {
        if is_place(e) {
            return e.clone();
        }
        let name = self.fresh();
        setup.extend(quote!(let #name = #e;));
        syn::parse_quote!(#name)
    }
}

impl VisitMut for Rewriter {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // Inner `match`es first (in the scrutinee, guards and arms).
        syn::visit_mut::visit_expr_mut(self, e);
        if let Expr::Match(m) = e {
            // A test written as a `match` with literal arms is a condition already.
            if !is_test(m) {
                *e = self.rewrite(m);
            }
        }
    }
}

/// An arm's body as a block expression (a block as it is, anything else braced).
fn arm_block(body: &Expr) -> Expr {
    match body {
        Expr::Block(b) if b.label.is_none() && b.attrs.is_empty() => body.clone(),
        other => syn::parse_quote!({ #other }),
    }
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        e => e,
    }
}

/// A place expression: a name, a field, an element (read again by each test, without a move).
fn is_place(e: &Expr) -> bool {
    match e {
        Expr::Path(_) => true,
        Expr::Field(f) => is_place(&f.base),
        Expr::Index(i) => is_place(&i.expr) && matches!(*i.index, Expr::Path(_) | Expr::Lit(_)),
        Expr::Paren(p) => is_place(&p.expr),
        _ => false,
    }
}

/// `match s { P => true, _ => false }`: a pattern test (every arm a `bool` literal, no guard).
pub fn is_test(m: &syn::ExprMatch) -> bool {
    m.arms.iter().all(|a| {
        a.guard.is_none()
            && matches!(
                &*a.body,
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Bool(_),
                    ..
                })
            )
    })
}
