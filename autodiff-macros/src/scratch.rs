//! Scratch buffers (a must-write-before-read analysis).
//!
//! A loop that writes a buffer declared outside it can usually not run fused with its reverse:
//! an element one iteration writes may be read by the next, so its adjoint must flow between
//! iterations in reverse order. A *scratch* buffer carries nothing between iterations: it is
//! used by that loop alone, and every iteration writes every element before reading any (GMM's
//! `main_term`, filled for all components, then reduced by a log-sum-exp). Each iteration's
//! reverse then takes every element's adjoint back to zero at the writes, so iterations can be
//! reversed one at a time, right after they run.
//!
//! "Every element" is proven syntactically: the buffer is `vec![c; len]`, and before any read
//! the iteration runs, at the top of its body, one of
//! - `for i in 0..len { .. buf[i] = ..; .. }` (or `0..buf.len()`);
//! - `buf[0] = ..; .. buf[a - 1] = ..; for i in a..len { .. buf[i] = .. }` (a written prefix,
//!   completed by a loop);
//! - `for r in 0..rows { for c in 0..cols { .. buf[r * cols + c] = .. } }` with `len` the
//!   product `rows * cols`;
//!
//! each store at the top of its loop's body, no loop with `break`, no read of the buffer inside
//! the filling loops. `len` must be a value that cannot change: literals, arithmetic and size
//! methods of variables that no loop reassigns.
//!
//! A buffer is also scratch for a loop whose body uses it only inside one inner loop for which
//! it is scratch (a point loop whose component loop fills the buffer, then reads it): whatever
//! an iteration reads, the inner loop's same iteration wrote.

use crate::ir::{Block, Function, Loop, LoopKind, Op, Operand, Part, Stmt, VarId};
use crate::reverse::stmt_reads;
use proc_macro2::TokenStream;
use quote::ToTokens;
use std::collections::HashSet;

/// The differentiated buffers declared outside `l` that it writes, if all are scratch
/// buffers of `l`; `None` if one is not.
pub fn scratch_buffers(f: &Function, l: &Loop) -> Option<Vec<VarId>> {
    let local: HashSet<VarId> = crate::reverse::loop_defined(l).into_iter().collect();
    let mut written = HashSet::new();
    crate::tbr::stores(&l.body, &mut written);
    let mut out: Vec<VarId> = written
        .into_iter()
        .filter(|b| !local.contains(b) && f.vars[*b].active)
        .collect();
    out.sort_unstable();
    out.iter().all(|&b| is_scratch(f, l, b)).then_some(out)
}

/// Is `b` a scratch buffer of `l` (see the module's documentation)?
pub fn is_scratch(f: &Function, l: &Loop, b: VarId) -> bool {
    let Some(len) = declared_length(f, b) else {
        return false;
    };
    let name = f.vars[b].name.to_string();
    !used_outside(&f.body, l, b, &name)
        && f.result.var() != Some(b)
        && written_before_read(f, &l.body, b, &name, &len)
}

/// `len` of the buffer's top-level declaration `let mut b = vec![c; len]`, when it is stable.
fn declared_length(f: &Function, b: VarId) -> Option<String> {
    let tokens = f.body.stmts.iter().find_map(|s| match s {
        Stmt::Let {
            var,
            op: Op::Verbatim(t),
        } if *var == b => Some(t),
        _ => None,
    })?;
    let syn::Expr::Macro(m) = syn::parse2::<syn::Expr>(tokens.clone()).ok()? else {
        return None;
    };
    if m.mac.path.segments.last()?.ident != "vec" {
        return None;
    }
    let len = syn::parse::Parser::parse2(
        |input: syn::parse::ParseStream| {
            input.parse::<syn::Expr>()?;
            input.parse::<syn::Token![;]>()?;
            input.parse::<syn::Expr>()
        },
        m.mac.tokens.clone(),
    )
    .ok()?;
    let mut reassigned = HashSet::new();
    carried_names(f, &f.body, &mut reassigned);
    stable(f, &len, &reassigned).then(|| len.to_token_stream().to_string())
}

/// The names of every loop's carried storage (the variables a loop reassigns).
fn carried_names(f: &Function, b: &Block, out: &mut HashSet<String>) {
    for s in &b.stmts {
        match s {
            Stmt::Loop(l) => {
                out.extend(l.carried.iter().map(|c| f.vars[c.entry].name.to_string()));
                carried_names(f, &l.body, out);
            }
            Stmt::If { then, els, .. } => {
                carried_names(f, then, out);
                carried_names(f, els, out);
            }
            _ => {}
        }
    }
}

/// Literals, arithmetic, and size methods of variables no loop reassigns (and no buffers).
fn stable(f: &Function, e: &syn::Expr, reassigned: &HashSet<String>) -> bool {
    let fixed = |p: &syn::ExprPath| {
        p.path.get_ident().is_some_and(|i| {
            let n = i.to_string();
            !reassigned.contains(&n) && !f.vars.iter().any(|v| v.buffer && v.name == n)
        })
    };
    match e {
        syn::Expr::Lit(_) => true,
        syn::Expr::Path(p) => fixed(p),
        syn::Expr::Paren(p) => stable(f, &p.expr, reassigned),
        syn::Expr::Binary(b) => stable(f, &b.left, reassigned) && stable(f, &b.right, reassigned),
        syn::Expr::MethodCall(m) => {
            m.args.is_empty()
                && crate::lower::SIZE_METHODS.contains(&m.method.to_string().as_str())
                && matches!(&*m.receiver, syn::Expr::Path(p) if p.path.get_ident().is_some())
        }
        _ => false,
    }
}

/// Does anything outside loop `l` (other than its declaration) use buffer `b`?
fn used_outside(block: &Block, l: &Loop, b: VarId, name: &str) -> bool {
    block.stmts.iter().any(|s| match s {
        Stmt::Loop(x) if std::ptr::eq(&**x, l) => false,
        Stmt::Let { var, .. } if *var == b => false,
        _ => mentions(s, b, name, true),
    })
}

/// Does `s` use buffer `b` (a store into it counting only when `stores` is set)?
pub fn mentions(s: &Stmt, b: VarId, name: &str, stores: bool) -> bool {
    let (mut vars, mut names) = (Vec::new(), Vec::new());
    stmt_reads(s, &mut vars, &mut names, stores);
    vars.contains(&b) || names.iter().any(|n| n == name)
}

/// In every iteration of a loop with body `body`, is every element of `b` written before any
/// is read? The body's top-level statements write a growing prefix of `b`: `b[c] = ..` with
/// `c` the prefix's length extends it by one, and `for i in a..len { .. b[i] = .. }` with `a`
/// within the prefix completes it (`k[0] = ..; for i in 1..n { k[i] = .. }`).
fn written_before_read(f: &Function, body: &Block, b: VarId, name: &str, len: &str) -> bool {
    let mut prefix = 0;
    for s in &body.stmts {
        match s {
            Stmt::Store {
                buf,
                index: Operand::Const(c),
                part: Part::Element,
                ..
            } if *buf == b => {
                if literal(c) == Some(prefix) {
                    prefix += 1;
                }
                continue;
            }
            _ => {}
        }
        if completes(f, s, b, name, len, prefix) {
            return true;
        }
        if let Stmt::Loop(inner) = s {
            // A buffer scratch for a loop inside, which alone uses it: whatever an iteration
            // reads, the inner loop's same iteration wrote.
            if prefix == 0
                && body
                    .stmts
                    .iter()
                    .filter(|t| mentions(t, b, name, true))
                    .count()
                    == 1
                && mentions(s, b, name, true)
            {
                return written_before_read(f, &inner.body, b, name, len);
            }
        }
        if mentions(s, b, name, false) {
            return false;
        }
    }
    // Never read.
    true
}

/// The value of an integer literal.
fn literal(t: &TokenStream) -> Option<usize> {
    match syn::parse2::<syn::Expr>(t.clone()).ok()? {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().ok(),
        _ => None,
    }
}

/// `for v in a..end` without `break`: `v`, the literal `a`, and `end`.
fn counted(w: &Loop) -> Option<(VarId, usize, syn::Expr)> {
    let LoopKind::For { var, iter } = &w.kind else {
        return None;
    };
    if w.brk.is_some() {
        return None;
    }
    let syn::Expr::Range(r) = syn::parse2::<syn::Expr>(iter.clone()).ok()? else {
        return None;
    };
    let start = literal(&r.start?.to_token_stream())?;
    match (r.limits, r.end) {
        (syn::RangeLimits::HalfOpen(_), Some(end)) => Some((*var, start, *end)),
        _ => None,
    }
}

/// Does `body` write `b[i]` at its top, for an index `i` that `index` accepts?
fn stores_at(body: &Block, b: VarId, index: impl Fn(VarId) -> bool) -> bool {
    body.stmts.iter().any(
        |s| matches!(s, Stmt::Store { buf, index: Operand::Var(i), part: Part::Element, .. } if *buf == b && index(*i)),
    )
}

/// Is `s` a loop that writes every element of `b` not in the written prefix, and reads none?
/// Either `for i in a..len { .. b[i] = .. }` (`a <= prefix`, `len` also as `b.len()`), or, from
/// zero, `for r in 0..rows { for c in 0..cols { .. b[r * cols + c] = .. } }` with `len` the
/// product `rows * cols`.
fn completes(f: &Function, s: &Stmt, b: VarId, name: &str, len: &str, prefix: usize) -> bool {
    let Stmt::Loop(w) = s else {
        return false;
    };
    let Some((var, start, end)) = counted(w) else {
        return false;
    };
    if start > prefix || w.body.stmts.iter().any(|s| mentions(s, b, name, false)) {
        return false;
    }
    let text = |e: &syn::Expr| e.to_token_stream().to_string();
    let is_len = text(&end) == len
        || matches!(&end, syn::Expr::MethodCall(m) if m.method == "len"
            && m.args.is_empty()
            && matches!(&*m.receiver, syn::Expr::Path(p) if p.path.is_ident(name)));
    if is_len && stores_at(&w.body, b, |i| i == var) {
        return true;
    }
    // Two levels: rows, then the columns of each row.
    start == 0
        && w.body.stmts.iter().any(|s| {
            let Stmt::Loop(inner) = s else {
                return false;
            };
            let Some((col, 0, cols)) = counted(inner) else {
                return false;
            };
            let product = [
                quote::quote!(#end * #cols).to_string(),
                quote::quote!(#cols * #end).to_string(),
            ];
            let (row, col) = (f.vars[var].name.to_string(), f.vars[col].name.to_string());
            product.iter().any(|p| p == len)
                && stores_at(&inner.body, b, |i| {
                    inner.body.stmts.iter().any(|s| {
                        matches!(s,
                        Stmt::Let { var, op: Op::Verbatim(t) } if *var == i
                            && row_major(t, &row, &col, &text(&cols)))
                    })
                })
        })
}

/// Is `t` the index `row * cols + col` (in either order of either operation)?
fn row_major(t: &TokenStream, row: &str, col: &str, cols: &str) -> bool {
    let Ok(syn::Expr::Binary(sum)) = syn::parse2::<syn::Expr>(t.clone()) else {
        return false;
    };
    if !matches!(sum.op, syn::BinOp::Add(_)) {
        return false;
    }
    let is = |e: &syn::Expr, n: &str| matches!(e, syn::Expr::Path(p) if p.path.is_ident(n));
    let scaled = |e: &syn::Expr| match e {
        syn::Expr::Binary(m) if matches!(m.op, syn::BinOp::Mul(_)) => {
            let text = |e: &syn::Expr| e.to_token_stream().to_string();
            (is(&m.left, row) && text(&m.right) == cols)
                || (is(&m.right, row) && text(&m.left) == cols)
        }
        _ => false,
    };
    (scaled(&sum.left) && is(&sum.right, col)) || (scaled(&sum.right) && is(&sum.left, col))
}

#[cfg(test)]
mod tests {
    /// Does the gradient of `body` (a function of `x: &[f64], k: usize`) run its point loop
    /// fused where it stands (adjoints of its own, `_unit`)?
    fn runs_early(body: &str) -> bool {
        let src = format!("fn f(x: &[f64], k: usize) -> f64 {{ {body} }}");
        let item: proc_macro2::TokenStream = src.parse().expect("valid tokens");
        let out = crate::expand(proc_macro2::TokenStream::new(), item).to_string();
        assert!(!out.contains("compile_error"), "{out}");
        out.contains("__d_x_unit")
    }

    /// The same loop with the fill `for c in 0..k { t[c] = .. }` replaced by `fill`.
    fn filled_by(decl: &str, fill: &str) -> String {
        point_loop(decl, "", "0..k", "").replace("for c in 0..k { t[c] = x[p] * x[c]; }", fill)
    }

    /// A point loop writing `t` (all of it, then reading it), then `rest`, then `s.ln()`.
    fn point_loop(decl: &str, head: &str, fill: &str, rest: &str) -> String {
        format!(
            "let mut t = {decl}; let mut s = 0.0; \
             for p in 0..x.len() {{ {head} for c in {fill} {{ t[c] = x[p] * x[c]; }} \
             let mut q = 0.0; for c in 0..k {{ q += t[c] * t[c]; }} s += q; }} {rest} s.ln()"
        )
    }

    /// A point loop whose inner loop fills `t` and reads it, then `beside` in the point loop.
    fn nested(beside: &str) -> String {
        format!(
            "let mut t = vec![0.0; k]; let mut s = 0.0; \
             for p in 0..x.len() {{ let mut q = 0.0; for r in 0..2 {{ \
             for c in 0..k {{ t[c] = x[p] * x[c]; }} \
             for c in 1..k {{ t[c] += t[c - 1] * x[r]; }} q += t[k - 1]; }} {beside} s += q; }} \
             s.ln()"
        )
    }

    #[test]
    fn a_buffer_filled_before_it_is_read_is_scratch() {
        for (decl, head, fill) in [
            ("vec![0.0; k]", "", "0..k"),
            ("vec![0.0; k]", "", "0..t.len()"),
            ("vec![1.0; 2 * k]", "", "0..2 * k"),
            // The first elements by themselves, the rest by a loop.
            ("vec![0.0; k]", "t[0] = x[0]; t[1] = x[1];", "2..k"),
            ("vec![0.0; k]", "t[0] = x[0];", "1..k"),
        ] {
            assert!(
                runs_early(&point_loop(decl, head, fill, "")),
                "{head} {fill}"
            );
        }
        // By rows and columns.
        for fill in [
            "for r in 0..k { for c in 0..2 { let q = c + 2 * r; t[q] = x[p] * x[c]; } }",
            "for r in 0..k { for c in 0..2 { t[r * 2 + c] = x[p] * x[c]; } }",
        ] {
            assert!(runs_early(&filled_by("vec![0.0; k * 2]", fill)), "{fill}");
        }
        // Scratch for an inner loop that alone uses it.
        assert!(runs_early(&nested("")));
        // Read once all is written: still scratch.
        assert!(runs_early(
            &point_loop("vec![0.0; k]", "", "0..k", "").replace("s += q;", "s += q + t[0];")
        ));
    }

    #[test]
    fn buffers_that_carry_values_are_not_scratch() {
        // Read before it is written: the previous iteration's values.
        assert!(!runs_early(&point_loop(
            "vec![0.0; k]",
            "let old = t[0]; s += old;",
            "0..k",
            ""
        )));
        // Not every element written.
        assert!(!runs_early(&point_loop("vec![0.0; k]", "", "1..k", "")));
        assert!(!runs_early(&point_loop(
            "vec![0.0; k]",
            "t[1] = x[0];",
            "1..k",
            ""
        )));
        assert!(!runs_early(&point_loop(
            "vec![0.0; k]",
            "t[0] = x[0];",
            "2..k",
            ""
        )));
        assert!(!runs_early(&point_loop("vec![0.0; k + 1]", "", "0..k", "")));
        // Rows and columns that do not make the length, or a transposed index.
        for (decl, fill) in [
            (
                "vec![0.0; k * 3]",
                "for r in 0..k { for c in 0..2 { t[r * 2 + c] = x[c]; } }",
            ),
            (
                "vec![0.0; k * 2]",
                "for r in 0..k { for c in 0..2 { t[c * 2 + r] = x[c]; } }",
            ),
            (
                "vec![0.0; k * 2]",
                "for r in 0..k { for c in 1..2 { t[r * 2 + c] = x[c]; } }",
            ),
        ] {
            assert!(!runs_early(&filled_by(decl, fill)), "{fill}");
        }
        // Scratch for an inner loop, but also read beside it (stale if it ran no iteration).
        assert!(!runs_early(&nested("q += t[0];")));
        // Read after the loop.
        assert!(!runs_early(&point_loop(
            "vec![0.0; k]",
            "",
            "0..k",
            "s += t[0];"
        )));
    }
}
