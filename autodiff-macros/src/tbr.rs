//! To-be-recorded analysis (after Tapenade): which buffer reads inside loops the forward sweep
//! must tape.
//!
//! The reverse sweep re-reads a loop body's values by recomputing it. A buffer element read
//! there must be taped only when the buffer can be written after the read, since the reverse
//! sweep sees the buffer as the forward sweep left it. A read is left untaped when no store
//! to its buffer follows it: none later in the function, none in a loop around it (a later
//! iteration would write after the read). `qdiag[j]` filled once and then read in every
//! iteration of a long loop is read directly, not copied onto a tape once per iteration.
//!
//! Integer code reads buffers too (`a[i * n + perm[i]]`, a permutation kept in a buffer): the
//! same rule makes such a value inside a loop recorded instead of recomputed, when a store to
//! a buffer it reads can follow it.
//!
//! A scalar of a transcendental rule inside a loop (`(m - mx).exp()`) is recorded too, since
//! computing it again costs several times a push and a pop: the reverse iteration pops it, and
//! what only it read need not be computed again either. So is an array of one (`a.mapv(f64::tanh)`),
//! and a `dot` with a one-dimensional operand (`w.dot(&s)`, a matrix times a vector), whose
//! recomputation costs a pass over the other operand per element it records: a time-stepping
//! loop `s = w.dot(&s).mapv(f64::tanh)` keeps one state's worth per step instead of computing
//! its step again in the reverse sweep. A `dot` of two matrices is computed again (each element
//! costs only the shared dimension, and recording `x.dot(&a)` for every component of a mixture
//! was measured slower than computing it again). A call's value inside a loop is recorded
//! too: computing it again would run the called function once more.

use crate::ir::{Block, Function, LoopKind, MapFn, Op, Operand, Part, Recorded, Stmt, Var, VarId};
use crate::names::Namer;
use crate::rules::Adjoint;
use proc_macro2::TokenStream;
use std::collections::{HashMap, HashSet};
use syn::visit::Visit;

/// Drops the read tapes of buffer reads that no later store can invalidate, and records the
/// integer values inside loops that read a buffer a later store can change.
pub fn untape_stable_reads(function: &mut Function, namer: &mut Namer) {
    let buffers: HashMap<String, VarId> = function
        .vars
        .iter()
        .enumerate()
        .filter(|(_, v)| v.buffer)
        .map(|(id, v)| (v.name.to_string(), id))
        .collect();
    let inactive = buffers
        .values()
        .copied()
        .filter(|v| !function.vars[*v].active)
        .collect();
    let scalars = function
        .vars
        .iter()
        .enumerate()
        .filter(|(_, v)| v.scalar)
        .map(|(id, _)| id)
        .collect();
    let mut walk = Walk {
        vectors: function.vectors.clone(),
        buffers,
        inactive,
        scalars,
        recorded: Vec::new(),
        checkpoint: function.checkpoint,
        early: function.early.clone(),
    };
    let mut written_later = HashSet::new();
    walk.block(&mut function.body, &mut written_later, None);
    for (var, exact) in walk.recorded {
        record(function, var, namer, exact, false);
    }
}

/// The buffers whose elements `e` reads (their sizes do not change: `v.len()` is no read).
pub fn buffers_read(e: &syn::Expr, buffer: impl Fn(&str) -> Option<VarId>) -> Vec<VarId> {
    struct Find<F> {
        buffer: F,
        found: Vec<VarId>,
    }
    impl<'ast, F: Fn(&str) -> Option<VarId>> Visit<'ast> for Find<F> {
        fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
            if let Some(v) = p
                .path
                .get_ident()
                .and_then(|i| (self.buffer)(&i.to_string()))
            {
                self.found.push(v);
            }
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            if crate::lower::SIZE_METHODS.contains(&m.method.to_string().as_str()) {
                for a in &m.args {
                    self.visit_expr(a);
                }
            } else {
                syn::visit::visit_expr_method_call(self, m);
            }
        }
    }
    let mut f = Find {
        buffer,
        found: Vec::new(),
    };
    f.visit_expr(e);
    f.found
}

struct Walk {
    /// The buffers by their emitted names.
    buffers: HashMap<String, VarId>,
    /// The buffers that hold no differentiated value.
    inactive: HashSet<VarId>,
    /// The known scalars: those of a costly rule inside a loop are recorded.
    scalars: HashSet<VarId>,
    /// Known one-dimensional arrays: a `dot` with one inside a loop is recorded, since
    /// computing it again costs a pass over the other operand per element.
    vectors: HashSet<VarId>,
    /// With whether the loop around each has a known trip count.
    recorded: Vec<(VarId, bool)>,
    /// The attribute's `checkpoint` option.
    checkpoint: bool,
    /// The loops run fused with their reverse where they stand (`Function::early`).
    early: HashSet<String>,
}

impl Walk {
    /// The buffers verbatim tokens read (all it names, if they do not parse).
    fn reads(&self, tokens: &TokenStream) -> Vec<VarId> {
        if self.buffers.is_empty() {
            return Vec::new();
        }
        match syn::parse2::<syn::Expr>(tokens.clone()) {
            Ok(e) => buffers_read(&e, |n| self.buffers.get(n).copied()),
            Err(_) => self.buffers.values().copied().collect(),
        }
    }

    /// Walks `b` backwards; `later` holds the buffers stored after the current point; `inside`
    /// says whether a loop is around it, and if so whether its trip count is known.
    fn block(&mut self, b: &mut Block, later: &mut HashSet<VarId>, inside: Option<bool>) {
        for stmt in b.stmts.iter_mut().rev() {
            match stmt {
                Stmt::Store { buf, .. } => {
                    later.insert(*buf);
                }
                Stmt::Let {
                    var,
                    op: Op::Index { base, tape, .. },
                } => {
                    let stale = base.var().is_some_and(|v| later.contains(&v));
                    if base.var().is_some_and(|v| self.inactive.contains(&v)) {
                        // An element of an integer (or constant) buffer: recorded on a tape
                        // of its own type, like integer code, never on the loop's float tape.
                        *tape = None;
                        if let (true, Some(exact)) = (stale, inside) {
                            self.recorded.push((*var, exact));
                        }
                    } else if !stale {
                        *tape = None;
                    }
                }
                Stmt::Let {
                    var,
                    op: Op::Verbatim(tokens),
                } => {
                    if let Some(exact) = inside {
                        if self.reads(tokens).iter().any(|b| later.contains(b)) {
                            self.recorded.push((*var, exact));
                        }
                    }
                }
                Stmt::Let {
                    var,
                    op: Op::Prim { rule, args, .. },
                } if (rule.costly() && self.scalars.contains(var))
                    || (rule.name == "dot"
                        && args
                            .iter()
                            .any(|a| a.var().is_some_and(|v| self.vectors.contains(&v)))) =>
                {
                    if let Some(exact) = inside {
                        self.recorded.push((*var, exact));
                    }
                }
                Stmt::Let {
                    var,
                    op:
                        Op::Map {
                            func: MapFn::Rule(rule, _),
                            ..
                        },
                } if rule.costly() => {
                    if let Some(exact) = inside {
                        self.recorded.push((*var, exact));
                    }
                }
                // A call's value (one float): computing it again costs a call of the whole
                // function, which its pullback then runs once more.
                Stmt::Let {
                    var,
                    op: Op::Call { grads: None, .. },
                } => {
                    if let Some(exact) = inside {
                        self.recorded.push((*var, exact));
                    }
                }
                Stmt::Let { .. } | Stmt::Effect(_) => {}
                Stmt::If { then, els, .. } => {
                    let mut after_else = later.clone();
                    self.block(then, later, inside);
                    self.block(els, &mut after_else, inside);
                    later.extend(after_else);
                }
                Stmt::Loop(l) => {
                    let exact = l.counted_range().is_some();
                    let restored = crate::reverse::checkpoint_buffers(l, self.checkpoint);
                    if self.early.contains(&l.tape.to_string()) {
                        // Each iteration is reversed right after it runs: only stores later
                        // in the same iteration can intervene.
                        self.block(&mut l.body, &mut HashSet::new(), Some(exact));
                        stores(&l.body, later);
                    } else if restored.is_empty() {
                        // Every store of the body can follow any read of it, one iteration
                        // later.
                        stores(&l.body, later);
                        self.block(&mut l.body, later, Some(exact));
                    } else {
                        // Checkpointed: each iteration runs again from its restored buffers
                        // and is reversed at once, so only stores later in the same iteration,
                        // and later stores to buffers it does not restore, can intervene.
                        let mut within: HashSet<VarId> = later
                            .iter()
                            .copied()
                            .filter(|b| !restored.contains(b))
                            .collect();
                        self.block(&mut l.body, &mut within, Some(exact));
                        stores(&l.body, later);
                    }
                }
            }
        }
    }
}

/// Adds the buffers `b` stores into, at any depth.
pub fn stores(b: &Block, out: &mut HashSet<VarId>) {
    stores_in(&b.stmts, out)
}

/// The buffers that `stmts` (nested blocks too) store into.
pub fn stores_in(stmts: &[Stmt], out: &mut HashSet<VarId>) {
    for stmt in stmts {
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

/// Drops the read tapes of the reads `unneeded` names (see `Reverse::unneeded_reads`).
pub fn untape(b: &mut Block, unneeded: &HashSet<VarId>) {
    for stmt in &mut b.stmts {
        match stmt {
            Stmt::Let {
                var,
                op: Op::Index { tape, .. },
            } if unneeded.contains(var) => *tape = None,
            Stmt::If { then, els, .. } => {
                untape(then, unneeded);
                untape(els, unneeded);
            }
            Stmt::Loop(l) => untape(&mut l.body, unneeded),
            _ => {}
        }
    }
}

/// Buffers read whole and written afterwards. An operation that reads a buffer as a whole
/// (`&q * a`, `g(&buf)`, `q.row(0)`) and a store into that buffer after it
/// (`q[[0, 1]] = ..`, later or in a later iteration of a loop around both): the reverse sweep
/// runs after every store, so a rule that reads the operand (the product's `d_a += dy * q`)
/// would see the new contents, and a view of it would still borrow it across the store. The
/// operation reads a copy taken where it stands instead (`let __q_before = q.clone();`, the
/// `clone` rule, whose adjoint flows back into the buffer's). Reads whose rules never look at
/// the operand (sums, negation, `clone` itself) are left alone. A row, column or slice of the
/// buffer copies that part alone (`b.row(i).to_owned()`, its adjoint still scattered into the
/// buffer's), so a trajectory that reads its last state back does not copy itself each step.
pub fn snapshot_overwritten_buffers(f: &mut Function, namer: &mut Namer) {
    let mut body = std::mem::take(&mut f.body);
    let mut integers = HashMap::new();
    verbatim_lets(&body, &mut integers);
    let mut walk = Snapshots {
        integers,
        sweep: None,
        namer,
    };
    walk.block(f, &mut body, &mut HashSet::new(), None);
    f.body = body;
}

/// The integer code each variable is bound to (`t - 1`), for reading a row's index.
fn verbatim_lets(b: &Block, out: &mut HashMap<VarId, TokenStream>) {
    for s in &b.stmts {
        match s {
            Stmt::Let {
                var,
                op: Op::Verbatim(t),
            } => {
                out.insert(*var, t.clone());
            }
            Stmt::If { then, els, .. } => {
                verbatim_lets(then, out);
                verbatim_lets(els, out);
            }
            Stmt::Loop(l) => verbatim_lets(&l.body, out),
            _ => {}
        }
    }
}

/// A top-level `for t in a..b` (ascending) and the buffers it sweeps: those whose every store
/// from the loop on is `buf.row_mut(t)` (or `column_mut(t)`) inside it. The loop's step `t`
/// writes row `t`, and later steps rows past it, so a row `t - c` (`c >= 1`) read anywhere in
/// the loop is never written again: the reverse sweep reads it from the buffer as the
/// forward sweep left it, without a copy.
struct Sweep {
    var: VarId,
    /// Each swept buffer, with the part its stores write (`row_mut`, `column_mut`).
    buffers: HashMap<VarId, String>,
}

impl Sweep {
    /// The sweep of a top-level loop; `later` holds the buffers stored into after it.
    fn of(l: &crate::ir::Loop, later: &HashSet<VarId>) -> Option<Sweep> {
        let LoopKind::For { var, iter } = &l.kind else {
            return None;
        };
        let mut e = syn::parse2::<syn::Expr>(iter.clone()).ok()?;
        while let syn::Expr::Paren(p) = e {
            e = *p.expr;
        }
        if !matches!(e, syn::Expr::Range(_)) {
            return None;
        }
        let mut parts: HashMap<VarId, Option<String>> = HashMap::new();
        view_stores(&l.body, *var, &mut parts);
        let buffers = parts
            .into_iter()
            .filter(|(b, _)| !later.contains(b))
            .filter_map(|(b, part)| Some((b, part?)))
            .collect();
        Some(Sweep { var: *var, buffers })
    }

    /// Whether `buf.method(index)` (`row`, `column`) reads a part that no later store writes:
    /// `index` is `t - c` for a literal `c >= 1`.
    fn unchanged(
        &self,
        f: &Function,
        integers: &HashMap<VarId, TokenStream>,
        buf: VarId,
        method: &str,
        index: &Operand,
    ) -> bool {
        if self.buffers.get(&buf).map(String::as_str) != Some(&format!("{method}_mut")) {
            return false;
        }
        let Some(tokens) = index.var().and_then(|i| integers.get(&i)) else {
            return false;
        };
        let Ok(syn::Expr::Binary(b)) = syn::parse2::<syn::Expr>(tokens.clone()) else {
            return false;
        };
        let step =
            matches!(&*b.left, syn::Expr::Path(p) if p.path.is_ident(&f.vars[self.var].name));
        let back = matches!(&*b.right, syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(c), .. })
            if c.base10_parse::<u64>().is_ok_and(|c| c >= 1));
        step && back && matches!(b.op, syn::BinOp::Sub(_))
    }
}

/// The buffers `b` stores into, each with the part of the loop variable `var` all its stores
/// write (`row_mut(var)`), or `None` when some store writes anything else.
fn view_stores(b: &Block, var: VarId, out: &mut HashMap<VarId, Option<String>>) {
    for s in &b.stmts {
        match s {
            Stmt::Store {
                buf, index, part, ..
            } => {
                let this = match part {
                    Part::View(m) if index.var() == Some(var) && m != "slice_mut" => {
                        Some(m.to_string())
                    }
                    _ => None,
                };
                let entry = out.entry(*buf).or_insert_with(|| this.clone());
                if *entry != this {
                    *entry = None;
                }
            }
            Stmt::If { then, els, .. } => {
                view_stores(then, var, out);
                view_stores(els, var, out);
            }
            Stmt::Loop(l) => view_stores(&l.body, var, out),
            Stmt::Let { .. } | Stmt::Effect(_) => {}
        }
    }
}

/// Whether the index `k` (bound to the integer code `code`) is `i`, `i + c` or `i - c` (a
/// literal `c` up to 8) of the loop variable `i`: the offset.
pub fn offset_of(f: &Function, i: VarId, k: VarId, code: Option<&TokenStream>) -> Option<i64> {
    if k == i {
        return Some(0);
    }
    let syn::Expr::Binary(b) = syn::parse2::<syn::Expr>(code?.clone()).ok()? else {
        return None;
    };
    let is_i = matches!(&*b.left, syn::Expr::Path(p) if p.path.is_ident(&f.vars[i].name));
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Int(c),
        ..
    }) = &*b.right
    else {
        return None;
    };
    let c = c.base10_parse::<i64>().ok().filter(|&c| c <= 8)?;
    match b.op {
        syn::BinOp::Add(_) if is_i => Some(c),
        syn::BinOp::Sub(_) if is_i => Some(-c),
        _ => None,
    }
}

/// Records `var` on a tape of its own where its loop runs (a [`Recorded`]).
fn record(f: &mut Function, var: VarId, namer: &mut Namer, exact: bool, window: bool) {
    let tape = namer.fresh("record");
    f.recorded.insert(
        var,
        Recorded {
            tape,
            exact,
            window,
        },
    );
}

/// `e + c` for an integer expression `e` and a signed constant, in saturating `usize`
/// arithmetic.
fn shifted(e: &syn::Expr, c: i64) -> TokenStream {
    let n = proc_macro2::Literal::usize_unsuffixed(c.unsigned_abs() as usize);
    if c >= 0 {
        quote::quote!(::core::primitive::usize::saturating_add(#e, #n))
    } else {
        quote::quote!(::core::primitive::usize::saturating_sub(#e, #n))
    }
}

/// Window copies: a loop `for i in a..b` (no `break`, not checkpointed) whose body reads a
/// buffer at `i + c` (literal offsets up to 8) with reads that must be taped, since the buffer
/// is stored into after the loop (or in a later iteration of a loop around it), but not by the
/// loop itself, reads the window those reads span, `buf[a + lo..b + hi]` clamped to the
/// buffer, through a view taken before the loop. Its elements are recorded once per iteration
/// of the loop around it, onto a flat tape (`__rt::WindowTape`) the reverse iteration reads
/// in place, instead of one push per read; at the top level the window is an owned copy. A
/// stencil `v[i] += x[i - 1] * x[i + 1]` in a time step that then updates `x` keeps one copy
/// of `x` per step instead of two taped reads per element, and the copy's reads add into
/// `x`'s adjoint directly (a part read by index, see `reverse::parts`). Runs after
/// [`untape_stable_reads`]: only reads that stay taped are windowed (a loop fused with its
/// reverse, whose reads need no tape, keeps reading the buffer).
pub fn window_copies(f: &mut Function, namer: &mut Namer) {
    if f.checkpoint {
        return;
    }
    let mut body = std::mem::take(&mut f.body);
    let mut integers = HashMap::new();
    verbatim_lets(&body, &mut integers);
    let mut w = Windows { integers, namer };
    w.block(f, &mut body, None);
    f.body = body;
}

/// The walk of [`window_copies`].
struct Windows<'a> {
    integers: HashMap<VarId, TokenStream>,
    namer: &'a mut Namer,
}

impl Windows<'_> {
    fn block(&mut self, f: &mut Function, b: &mut Block, in_loop: Option<bool>) {
        let mut out = Vec::new();
        for mut s in std::mem::take(&mut b.stmts) {
            match &mut s {
                Stmt::Loop(l) => {
                    let before = self.of_loop(f, l, in_loop);
                    let exact = l.counted_range().is_some();
                    self.block(f, &mut l.body, Some(exact));
                    out.extend(before);
                }
                Stmt::If { then, els, .. } => {
                    self.block(f, then, in_loop);
                    self.block(f, els, in_loop);
                }
                _ => {}
            }
            out.push(s);
        }
        b.stmts = out;
    }

    /// A new variable named after `hint`.
    fn new_var(&mut self, f: &mut Function, hint: &str, active: bool) -> VarId {
        f.vars.push(Var {
            name: self.namer.fresh(hint),
            adjoint: self.namer.fresh(&format!("d_{hint}")),
            active,
            ty: None,
            buffer: false,
            scalar: false,
        });
        f.vars.len() - 1
    }

    /// A new integer variable bound to `code`.
    fn integer(&mut self, f: &mut Function, hint: &str, code: TokenStream) -> VarId {
        let id = self.new_var(f, hint, false);
        self.integers.insert(id, code);
        id
    }

    /// The window copies of one loop (see [`window_copies`]); `in_loop` says whether a loop
    /// encloses it, and whether that loop's trip count is known when it starts. The
    /// statements to put before the loop.
    fn of_loop(
        &mut self,
        f: &mut Function,
        l: &mut crate::ir::Loop,
        in_loop: Option<bool>,
    ) -> Vec<Stmt> {
        let LoopKind::For { var: i, iter } = &l.kind else {
            return Vec::new();
        };
        // A checkpointed loop runs its iterations again instead of recording them (the window,
        // a view, would be held across the stores of the run), and a loop that can `break`
        // may read a small part of what the window would copy.
        if f.checkpoint || l.brk.is_some() {
            return Vec::new();
        }
        let i = *i;
        let Ok(syn::Expr::Range(r)) = syn::parse2::<syn::Expr>(iter.clone()) else {
            return Vec::new();
        };
        let (Some(start), Some(end), syn::RangeLimits::HalfOpen(_)) = (&r.start, &r.end, r.limits)
        else {
            return Vec::new();
        };
        let mut stored = HashSet::new();
        stores(&l.body, &mut stored);
        // Per buffer, its reads at the top of the body: (statement, offset).
        let mut reads: HashMap<VarId, Vec<(usize, i64)>> = HashMap::new();
        for (k, st) in l.body.stmts.iter().enumerate() {
            let Stmt::Let {
                op:
                    Op::Index {
                        base: Operand::Var(b),
                        index: Operand::Var(ix),
                        tape: Some(_),
                        ..
                    },
                ..
            } = st
            else {
                continue;
            };
            let b = *b;
            if !f.vars[b].buffer || !f.vars[b].active || stored.contains(&b) {
                continue;
            }
            if let Some(c) = offset_of(f, i, *ix, self.integers.get(ix)) {
                reads.entry(b).or_default().push((k, c));
            }
        }
        let mut before = Vec::new();
        let mut inserts: Vec<(usize, Stmt)> = Vec::new();
        let mut bufs: Vec<VarId> = reads.keys().copied().collect();
        bufs.sort_unstable();
        for b in bufs {
            let rs = &reads[&b];
            let lo = rs.iter().map(|r| r.1).min().unwrap_or(0);
            let hi = rs.iter().map(|r| r.1).max().unwrap_or(0);
            let name = f.vars[b].name.clone();
            let plain = name.to_string();
            let plain = plain.trim_start_matches('_').to_string();
            let (first, last) = (shifted(start, lo), shifted(end, hi + 1));
            let from_code = quote::quote!(::core::cmp::min(#first, #name.len()));
            let from = self.integer(f, &format!("{plain}_from"), from_code.clone());
            let from_name = f.vars[from].name.clone();
            let to_code =
                quote::quote!(::core::cmp::max(::core::cmp::min(#last, #name.len()), #from_name));
            let to = self.integer(f, &format!("{plain}_to"), to_code.clone());
            before.push(Stmt::Let {
                var: from,
                op: Op::Verbatim(from_code),
            });
            before.push(Stmt::Let {
                var: to,
                op: Op::Verbatim(to_code),
            });
            // Marked recorded at the top level too (`exact` unused there): a window no loop
            // records is an owned copy.
            let copy = self.new_var(f, &format!("{plain}_window"), true);
            record(f, copy, self.namer, in_loop.unwrap_or(false), true);
            let range = crate::rules::operator("range").expect("the range rule");
            before.push(Stmt::Let {
                var: copy,
                op: Op::generated(
                    range,
                    Operand::Var(b),
                    vec![Operand::Var(from), Operand::Var(to)],
                ),
            });
            for &(k, _) in rs {
                let Stmt::Let {
                    op:
                        Op::Index {
                            base, index, tape, ..
                        },
                    ..
                } = &mut l.body.stmts[k]
                else {
                    continue;
                };
                let ix = index.var().map(|v| f.vars[v].name.clone());
                // A read past the buffer's end is past the window's end too: it panics (with
                // the window's length and the index in it).
                let code = quote::quote!(#ix - #from_name);
                let at = self.integer(f, &format!("{plain}_at"), code.clone());
                inserts.push((
                    k,
                    Stmt::Let {
                        var: at,
                        op: Op::Verbatim(code),
                    },
                ));
                *base = Operand::Var(copy);
                *index = Operand::Var(at);
                *tape = None;
            }
        }
        // Each index right before its read.
        inserts.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
        for (k, st) in inserts {
            l.body.stmts.insert(k, st);
        }
        before
    }
}

/// The walk of [`snapshot_overwritten_buffers`].
struct Snapshots<'a> {
    integers: HashMap<VarId, TokenStream>,
    /// The top-level loop being walked, when it sweeps buffers ([`Sweep`]).
    sweep: Option<Sweep>,
    namer: &'a mut Namer,
}

impl Snapshots<'_> {
    /// Walks `b` backwards; `later` holds the buffers stored into after the current
    /// statement. Inside a loop (`in_loop`, with whether its trip count is known when it
    /// starts) the copy is recorded like the values of `untape_stable_reads`: the reverse
    /// iteration pops it, since recomputing it would copy the buffer as the loop left it.
    fn block(
        &mut self,
        f: &mut Function,
        b: &mut Block,
        later: &mut HashSet<VarId>,
        in_loop: Option<bool>,
    ) {
        let mut out = Vec::new();
        for s in std::mem::take(&mut b.stmts).into_iter().rev() {
            match s {
                Stmt::Let { var, mut op } => {
                    if let Op::Prim {
                        rule,
                        args,
                        ints,
                        suffix,
                        ..
                    } = &mut op
                    {
                        // A row, column or slice of the buffer: the copy need only be of the part
                        // (`b.row(i).to_owned()`, recorded in a loop), whose adjoint still goes
                        // into that part of the buffer's; copying the whole buffer would cost a
                        // trajectory's size at every step that reads its last state back.
                        let part_of_overwritten = matches!(rule.adjoint, Adjoint::Scatter(_))
                            && suffix.is_empty()
                            && args
                                .first()
                                .and_then(Operand::var)
                                .is_some_and(|v| f.vars[v].buffer && later.contains(&v));
                        let unchanged = || {
                            let (Some(sweep), Some(buf), Some(index)) = (
                                &self.sweep,
                                args.first().and_then(Operand::var),
                                ints.first(),
                            ) else {
                                return false;
                            };
                            sweep.unchanged(f, &self.integers, buf, rule.name, index)
                        };
                        if part_of_overwritten && unchanged() {
                            f.swept.insert(var);
                            out.push(Stmt::Let { var, op });
                            continue;
                        }
                        if part_of_overwritten {
                            // A view is copied; an owned value (the points `unflatten` reads
                            // out of a flat buffer) is recorded as it is.
                            if rule.borrows() {
                                *suffix = quote::quote!(.to_owned());
                            }
                            if let Some(exact) = in_loop {
                                record(f, var, self.namer, exact, false);
                            }
                            out.push(Stmt::Let { var, op });
                            continue;
                        }
                    }
                    let reads = match &mut op {
                        Op::Prim { rule, args, .. } => {
                            let blind = matches!(rule.adjoint, Adjoint::Linear(_) | Adjoint::Zero)
                                && !rule.borrows();
                            if blind {
                                Vec::new()
                            } else {
                                args.iter_mut().collect()
                            }
                        }
                        Op::Call { args, .. } => args.iter_mut().collect(),
                        Op::Map { recv, .. } => vec![recv],
                        _ => Vec::new(),
                    };
                    // One copy per buffer, however often the operation reads it (`&q * &q`).
                    let mut copies = Vec::new();
                    let mut copied: Vec<(VarId, VarId)> = Vec::new();
                    for o in reads {
                        let Operand::Var(v) = o else { continue };
                        if !f.vars[*v].buffer || !later.contains(v) {
                            continue;
                        }
                        if let Some(&(_, id)) = copied.iter().find(|(b, _)| b == v) {
                            *o = Operand::Var(id);
                            continue;
                        }
                        let x = &f.vars[*v];
                        let plain = x.name.to_string();
                        let plain = plain.trim_start_matches('_');
                        let copy = Var {
                            name: self.namer.fresh(&format!("{plain}_before")),
                            adjoint: self.namer.fresh(&format!("d_{plain}_before")),
                            active: x.active,
                            ty: None,
                            buffer: false,
                            scalar: false,
                        };
                        f.vars.push(copy);
                        let id = f.vars.len() - 1;
                        if let Some(exact) = in_loop {
                            record(f, id, self.namer, exact, false);
                        }
                        let clone = crate::rules::method("clone").expect("the clone rule");
                        copies.push(Stmt::Let {
                            var: id,
                            op: Op::generated(clone, Operand::Var(*v), Vec::new()),
                        });
                        copied.push((*v, id));
                        *o = Operand::Var(id);
                    }
                    out.push(Stmt::Let { var, op });
                    out.extend(copies);
                }
                Stmt::Store {
                    buf,
                    index,
                    value,
                    part,
                } => {
                    later.insert(buf);
                    out.push(Stmt::Store {
                        buf,
                        index,
                        value,
                        part,
                    });
                }
                Stmt::If {
                    cond,
                    mut then,
                    mut els,
                    phis,
                    record,
                } => {
                    let (mut a, mut c) = (later.clone(), later.clone());
                    self.block(f, &mut then, &mut a, in_loop);
                    self.block(f, &mut els, &mut c, in_loop);
                    later.extend(a);
                    later.extend(c);
                    out.push(Stmt::If {
                        cond,
                        then,
                        els,
                        phis,
                        record,
                    });
                }
                Stmt::Loop(mut l) => {
                    // A later iteration stores after this one's reads.
                    let top = in_loop.is_none();
                    if top {
                        self.sweep = Sweep::of(&l, later);
                    }
                    let mut inner = later.clone();
                    stores(&l.body, &mut inner);
                    later.extend(inner.iter().copied());
                    let exact = l.counted_range().is_some();
                    self.block(f, &mut l.body, &mut inner, Some(exact));
                    if top {
                        self.sweep = None;
                    }
                    out.push(Stmt::Loop(l));
                }
                Stmt::Effect(t) => out.push(Stmt::Effect(t)),
            }
        }
        out.reverse();
        b.stmts = out;
    }
}
