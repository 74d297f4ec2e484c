//! Adjoint liveness (Tapenade's "useful" analysis), after lowering.
//!
//! Lowering marks a value active when it depends on a differentiated parameter (forward
//! activity). A value is worth differentiating only if its adjoint can also be nonzero: the
//! function's value must depend on it through operations with a derivative. Values that are
//! varied but not useful, such as the shift `m` of a log-sum-exp written
//! `(x - m.stop_gradient()).exp()`, or a running maximum that only feeds `floor()`, are
//! demoted to constants here, so the reverse sweep neither tapes nor reverses the code that
//! computes them.
//!
//! The walk goes backwards from the function's value, through every operation whose rule
//! passes an adjoint on (`Adjoint::Zero` rules pass none), into `if` merges, buffer stores
//! and loops, until nothing changes (a loop's carried values feed its next iteration).
//! Parameters keep their activity: their adjoints are returned even when zero.

use crate::ir::{Block, Function, Op, Operand, Stmt};
use crate::rules::Adjoint;

/// Demotes the active values whose adjoints stay zero; `params` are never demoted.
pub fn demote_useless(f: &mut Function, params: usize) {
    let mut useful = vec![false; f.vars.len()];
    mark(&mut useful, &f.result);
    while walk(&f.body, &mut useful) {}
    for (v, var) in f.vars.iter_mut().enumerate().skip(params) {
        if !useful[v] {
            var.active = false;
        }
    }
}

fn mark(useful: &mut [bool], o: &Operand) -> bool {
    match o.var() {
        Some(v) if !useful[v] => {
            useful[v] = true;
            true
        }
        _ => false,
    }
}

/// One backward pass over `b`; whether it marked anything new.
fn walk(b: &Block, useful: &mut [bool]) -> bool {
    let mut changed = false;
    for s in b.stmts.iter().rev() {
        match s {
            Stmt::Let { var, op } => {
                let passes =
                    !matches!(op, Op::Prim { rule, .. } if matches!(rule.adjoint, Adjoint::Zero));
                if useful[*var] && passes {
                    for o in op.operands() {
                        changed |= mark(useful, o);
                    }
                }
            }
            Stmt::If {
                then, els, phis, ..
            } => {
                for p in phis {
                    if useful[p.out] {
                        changed |= mark(useful, &p.then);
                        changed |= mark(useful, &p.els);
                    }
                }
                changed |= walk(then, useful);
                changed |= walk(els, useful);
            }
            Stmt::Store { buf, value, .. } => {
                if useful[*buf] {
                    changed |= mark(useful, value);
                }
            }
            Stmt::Loop(l) => {
                // A carried value is one storage: its entry, exit and value after the loop
                // are useful together, and so is its initial value.
                for c in &l.carried {
                    if useful[c.entry] || useful[c.after] {
                        changed |= mark(useful, &Operand::Var(c.entry));
                        changed |= mark(useful, &Operand::Var(c.after));
                        changed |= mark(useful, &c.exit);
                        changed |= mark(useful, &c.init);
                    }
                }
                changed |= walk(&l.body, useful);
            }
            Stmt::Effect(_) => {}
        }
    }
    changed
}
