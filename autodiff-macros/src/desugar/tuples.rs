//! Tuple locals taken apart: `let mut state = (x0, v0);` read as `state.0`, `state.1` and
//! replaced whole, `state = (a, b);`, is one local per element, each an ordinary value:
//!
//! ```text
//! let mut state = (x0, 1.0);             let (mut state_0, mut state_1) = (x0, 1.0);
//! for &v in x {                   =>     for &v in x {
//!     state = (state.0 + v, state.1 * v);    { let (t0, t1) = (state_0 + v, state_1 * v); state_0 = t0; state_1 = t1; }
//! }                                      }
//! state.0 * state.1                      state_0 * state_1
//! ```
//!
//! A tuple of differentiated values is no value the lowering binds; its elements are. A name
//! bound once, to a tuple literal, is taken apart when it is used by element (`state.0`,
//! `state.1 += ..`), replaced by a tuple literal of the same length, or read whole (`let (a,
//! b) = state;`, returned: the tuple of its elements); one borrowed mutably, replaced by
//! anything else, or named in a macro is left as written.

use crate::lower::strip;
use proc_macro2::Ident;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Expr, Pat};

/// Takes apart the tuple locals of `block`; `fresh` gives names no identifier of the function
/// has.
pub fn apply(block: &mut syn::Block, fresh: &mut impl FnMut(&str) -> Ident) {
    for (name, len) in declared(block) {
        let names: Vec<Ident> = (0..len).map(|k| fresh(&format!("{name}_{k}"))).collect();
        let mut split = block.clone();
        let mut parts = Parts {
            name: &name,
            names: &names,
            temps: (0..len)
                .map(|k| fresh(&format!("{name}_new_{k}")))
                .collect(),
            whole: false,
        };
        parts.visit_block_mut(&mut split);
        if !parts.whole {
            *block = split;
        }
    }
}

/// The names bound once in the body, by `let [mut] name = (a, b, ..);`, with the tuple's length.
fn declared(block: &syn::Block) -> Vec<(Ident, usize)> {
    #[derive(Default)]
    struct Find {
        tuples: Vec<(Ident, usize)>,
        bindings: std::collections::HashMap<String, usize>,
    }
    impl<'ast> Visit<'ast> for Find {
        fn visit_local(&mut self, l: &'ast syn::Local) {
            if let (Pat::Ident(p), Some(init)) = (&l.pat, &l.init) {
                if let Expr::Tuple(t) = strip(&init.expr) {
                    if p.by_ref.is_none()
                        && p.subpat.is_none()
                        && t.elems.len() > 1
                        && init.diverge.is_none()
                    {
                        self.tuples.push((p.ident.clone(), t.elems.len()));
                    }
                }
            }
            syn::visit::visit_local(self, l);
        }
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            *self.bindings.entry(p.ident.to_string()).or_default() += 1;
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut find = Find::default();
    find.visit_block(block);
    let Find { tuples, bindings } = find;
    tuples
        .into_iter()
        .filter(|(name, _)| bindings.get(&name.to_string()) == Some(&1))
        .collect()
}

struct Parts<'a> {
    name: &'a Ident,
    /// A local per element.
    names: &'a [Ident],
    /// The new values of a replacement, bound before any is assigned.
    temps: Vec<Ident>,
    /// A use of the tuple whole was found: leave the body as written.
    whole: bool,
}

impl Parts<'_> {
    fn is_name(&self, e: &Expr) -> bool {
        matches!(strip(e), Expr::Path(p) if p.qself.is_none() && p.path.is_ident(self.name))
    }
}

impl VisitMut for Parts<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            // `state.0`: the element's local.
            Expr::Field(f) if self.is_name(&f.base) => {
                if let syn::Member::Unnamed(k) = &f.member {
                    if let Some(local) = self.names.get(k.index as usize) {
                        *e = syn::parse_quote!(#local);
                        return;
                    }
                }
                self.whole = true;
            }
            // `state = (a, b);`: every new value first, then the assignments.
            Expr::Assign(a) if self.is_name(&a.left) => match strip(&a.right) {
                Expr::Tuple(t) if t.elems.len() == self.names.len() => {
                    let mut values: Vec<Expr> = t.elems.iter().cloned().collect();
                    for v in &mut values {
                        self.visit_expr_mut(v);
                    }
                    let (names, temps) = (self.names, &self.temps);
                    *e = syn::parse_quote!({
                        let (#(#temps,)*) = (#(#values,)*);
                        #(#names = #temps;)*
                    });
                }
                _ => self.whole = true,
            },
            // Read whole (`let (a, b) = state;`, returned): the tuple of its elements.
            Expr::Path(_) if self.is_name(e) => {
                let names = self.names;
                *e = syn::parse_quote!((#(#names,)*));
            }
            // Borrowed mutably: a place, not a value.
            Expr::Reference(r) if r.mutability.is_some() && self.is_name(&r.expr) => {
                self.whole = true
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_local_mut(&mut self, l: &mut syn::Local) {
        // The declaration: a local per element, `let (mut s_0, mut s_1) = (a, b);`.
        if let (Pat::Ident(p), Some(init)) = (&l.pat, &mut l.init) {
            if p.ident == *self.name {
                if let Expr::Tuple(t) = strip(&init.expr) {
                    let mut values: Vec<Expr> = t.elems.iter().cloned().collect();
                    for v in &mut values {
                        self.visit_expr_mut(v);
                    }
                    let mutability = &p.mutability;
                    let names = self.names;
                    let pats = names.iter().map(|n| quote::quote!(#mutability #n));
                    let stmt: syn::Stmt = syn::parse_quote!(let (#(#pats,)*) = (#(#values,)*););
                    if let syn::Stmt::Local(local) = stmt {
                        *l = local;
                    }
                    return;
                }
            }
        }
        syn::visit_mut::visit_local_mut(self, l);
    }

    // A macro's tokens (`assert!(state.0 > 0.0)`) are not walked: a use there is a use whole.
    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        if crate::signature::mentions(m.tokens.clone(), &self.name.to_string()) {
            self.whole = true;
        }
    }
}
