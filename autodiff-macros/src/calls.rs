//! Calls to differentiated functions that return one float, run once.
//!
//! A call `g(a, b)` in differentiated code needs `g`'s value in the forward sweep and its
//! pullback in the reverse sweep; the pullback runs `g`'s forward sweep again to get there.
//! Since a pullback of a function with one float output is linear in its adjoint, the forward
//! sweep can instead take the value and the pullback for a unit adjoint in one call,
//! `g::value_and_pullback(&a, &b, 1.0)`, and the reverse sweep scale that by the call's
//! adjoint: `g` runs once, as in a hand-written gradient (a pair potential called per pair,
//! `e += lj_pair(a, b)`). The gradients get a variable of their own, bound right after the
//! call (`let __d_call = { let _ = &__t2; __unit };`), which the reverse sweep reads like any
//! value: kept from the forward sweep where the reverse follows it (straight-line code, `if`
//! arms, loops fused with their reverse), computed again with the value where a loop's
//! reverse runs its body again (whose forward run takes the value alone: `(g(a, b), ())`).
//!
//! Methods keep their pullback (`energy_pullback`): a trait implementation may declare that
//! alone.

use crate::ir::{Block, Callee, Function, Op, Stmt, Var};
use crate::names::Namer;
use quote::quote;

/// Marks every call that qualifies ([`Op::Call`]'s `grads`) and binds its gradients.
pub fn keep_unit_pullbacks(f: &mut Function, namer: &mut Namer) {
    let mut body = std::mem::take(&mut f.body);
    block(f, &mut body, namer);
    f.body = body;
}

fn block(f: &mut Function, b: &mut Block, namer: &mut Namer) {
    let mut j = 0;
    while j < b.stmts.len() {
        match &mut b.stmts[j] {
            Stmt::If { then, els, .. } => {
                block(f, then, namer);
                block(f, els, namer);
            }
            Stmt::Loop(l) => block(f, &mut l.body, namer),
            Stmt::Let {
                var,
                op:
                    Op::Call {
                        callee: Callee::Function { pullback, .. },
                        args,
                        tuple: None,
                        grads,
                        ..
                    },
            } if qualifies(f, *var, args, pullback) => {
                let var = *var;
                let unit = namer.fresh("unit");
                let pack = Var {
                    name: namer.fresh("d_call"),
                    adjoint: namer.fresh("d_d_call"),
                    active: false,
                    ty: None,
                    buffer: false,
                    scalar: false,
                };
                *grads = Some((unit.clone(), f.vars.len()));
                let value = &f.vars[var].name;
                let op = Op::Verbatim(quote!({ let _ = &#value; #unit }));
                f.bind_after(b, j, pack, op);
                j += 1;
            }
            _ => {}
        }
        j += 1;
    }
}

/// A differentiated float, of a call with a differentiated argument, through a companion
/// type's `pullback` (`g::pullback`, not an associated function's `Self::g_pullback`).
fn qualifies(
    f: &Function,
    var: crate::ir::VarId,
    args: &[crate::ir::Operand],
    pullback: &syn::Path,
) -> bool {
    let v = &f.vars[var];
    v.active
        && v.scalar
        && args
            .iter()
            .any(|a| a.var().is_some_and(|a| f.vars[a].active))
        && pullback
            .segments
            .last()
            .is_some_and(|s| s.ident == "pullback")
}

/// `g::value_and_pullback` (with the call's generic arguments) for `g::pullback`.
pub fn value_and_pullback(pullback: &syn::Path) -> syn::Path {
    let mut path = pullback.clone();
    if let Some(last) = path.segments.last_mut() {
        last.ident = proc_macro2::Ident::new("value_and_pullback", last.ident.span());
    }
    path
}
