//! To-be-recorded analysis (after Tapenade): which buffer reads inside loops the forward sweep
//! must tape.
//!
//! The reverse sweep re-reads a loop body's values by recomputing it. A buffer element read
//! there must be taped only when the buffer can be written after the read, since the reverse
//! sweep sees the buffer as the forward sweep left it. A read is left untaped when no store
//! to its buffer follows it: none later in the function, none in a loop around it (a later
//! iteration would write after the read). `qdiag[j]` filled once and then read in every
//! iteration of a long loop is read directly, not copied onto a tape once per iteration.

use crate::ir::{Block, Function, Op, Stmt, VarId};
use std::collections::HashSet;

/// Drops the read tapes of buffer reads that no later store can invalidate.
pub fn untape_stable_reads(function: &mut Function) {
    let mut written_later = HashSet::new();
    block(&mut function.body, &mut written_later);
}

/// Walks `b` backwards; `later` holds the buffers stored after the current point.
fn block(b: &mut Block, later: &mut HashSet<VarId>) {
    for stmt in b.stmts.iter_mut().rev() {
        match stmt {
            Stmt::Store { buf, .. } => {
                later.insert(*buf);
            }
            Stmt::Let {
                op: Op::Index { base, tape, .. },
                ..
            } => {
                if base.var().is_some_and(|v| !later.contains(&v)) {
                    *tape = None;
                }
            }
            Stmt::Let { .. } | Stmt::Effect(_) => {}
            Stmt::If { then, els, .. } => {
                let mut after_else = later.clone();
                block(then, later);
                block(els, &mut after_else);
                later.extend(after_else);
            }
            Stmt::Loop(l) => {
                // Every store of the body can follow any read of it, one iteration later.
                stores(&l.body, later);
                block(&mut l.body, later);
            }
        }
    }
}

/// Adds the buffers `b` stores into, at any depth.
fn stores(b: &Block, out: &mut HashSet<VarId>) {
    for stmt in &b.stmts {
        match stmt {
            Stmt::Store { buf, .. } => {
                out.insert(*buf);
            }
            Stmt::If { then, els, .. } => {
                stores(then, out);
                stores(els, out);
            }
            Stmt::Loop(l) => stores(&l.body, out),
            Stmt::Let { .. } | Stmt::Effect(_) => {}
        }
    }
}
