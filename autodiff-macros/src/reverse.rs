//! Phase 5: the reverse sweep.
//!
//! Walks the lowered body backwards and propagates adjoints with the rules table. An adjoint
//! variable is created at its first contribution (`let mut d = init(&v, c)`) and accumulated
//! after that (`acc(&mut d, c)`); adjoints that first receive a contribution inside an `if` arm
//! are declared zero before it. For each `if`, the forward sweep saves exactly the values of
//! the arm that ran which that arm's reverse sweep reads: this phase finds them ([`Saved`]).

use crate::ir::{Block, Carried, Function, Loop, LoopKind, MapFn, Op, Operand, Part, Stmt, VarId};
use crate::rules::{Adjoint, Args, Template};
use crate::AppendStream;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// For each `if` (by its record variable) whose reverse sweep does anything: the values each
/// arm must save.
pub type Saved = HashMap<VarId, (Vec<VarId>, Vec<VarId>)>;

pub struct Reverse<'a> {
    f: &'a Function,
    float: Ident,
    rt: Ident,
    declared: HashSet<VarId>,
    used: Vec<BTreeSet<VarId>>,
    /// Inside an arm, a value that the arm hands out through a phi is read through the phi's
    /// output (defined outside the `if`), so it need not be saved twice.
    alias: HashMap<VarId, VarId>,
    /// Top-level values whose shape alone the reverse sweep reads (`init`, `zero_like`).
    pub used_like: BTreeSet<VarId>,
    /// The promoted loop-invariant reads whose register received a contribution: only those
    /// are declared and flushed (a read whose adjoint is dead, through `floor()` say, would
    /// leave its slot an `Option` of no inferable type).
    promoted_used: HashSet<VarId>,
    pub saved: Saved,
    /// What each loop records (by its tape's name), for the forward sweep.
    pub plans: Plans,
    /// Variables by name, to find the ones verbatim code reads.
    names: HashMap<String, Vec<VarId>>,
    /// The loops being reversed, innermost last: entry -> after.
    loops: Vec<HashMap<VarId, VarId>>,
    /// Element reads of the loop being reversed whose adjoints gather in registers.
    promoted: Vec<HashMap<VarId, Promotion>>,
    registers: usize,
    /// The function's last loop, run fused with its reverse (forward sweep's last statement).
    pub fused: Option<TokenStream>,
    /// Products that raise one base to a power ([`powers`]).
    powers: HashMap<VarId, Power>,
    /// Taped buffer reads that some loop's reverse needs the value of, and those it recomputed
    /// only to keep its tape's cursor in step ([`Reverse::unneeded_reads`]).
    reads_needed: HashSet<VarId>,
    reads_kept: HashSet<VarId>,
    /// Parts of differentiated slices read only by index ([`parts`]): their element reads add
    /// into the slice's adjoint at `start + index`.
    parts: HashMap<VarId, (VarId, PartAt)>,
    /// Views read once ([`forwarded_views`]): their one contribution goes straight into the
    /// viewed array's adjoint.
    views: HashMap<VarId, View>,
    /// The values the reverse sweep reads the contents of, not just the shape: a buffer read
    /// only as the `like` of an adjoint need not be rewritten by a checkpointed loop's rerun
    /// (`rerun_slice`).
    content_read: BTreeSet<VarId>,
    /// Sums whose operand defined just before them lends the sum's adjoint ([`lent_sums`]).
    lent: HashMap<VarId, VarId>,
    /// The other operand's first contribution, written once the lending operand's statement
    /// (by its variable) has been reversed.
    pending: Option<(VarId, TokenStream)>,
    /// Array adjoints (by name) declared zero in straight-line code at the top level, with
    /// the constant indices written since: the first write of an element is an assignment
    /// (`d_p[2] = c;`, not `d_p[2] += c;` onto a zero LLVM cannot fold away, since `0.0 + c`
    /// is not `c` for `c = -0.0`). Any other write to the adjoint, and any loop or branch,
    /// forgets it.
    fresh_elements: HashMap<String, HashSet<u128>>,
    /// Inside a loop's or a branch's reverse.
    nested: usize,
    /// `scatter` called for an element write that keeps [`Self::fresh_elements`] itself.
    element_write: bool,
    /// Fused sums whose derivatives the forward pass adds into the inputs' adjoints itself
    /// ([`Reverse::direct_sums`]): their reverse adds nothing.
    direct: HashSet<VarId>,
    /// Element updates `buf[i] += e` ([`increments`]): the old values read, whose reverse
    /// adds nothing, and the values stored, whose reverse reads the element's adjoint.
    increments: (HashSet<VarId>, HashSet<VarId>),
    /// Scalars whose one contribution is another adjoint as it is ([`passed_on`]), and the
    /// adjoints they have taken as their own once it came: `let t = a * b; let y = t + c;`
    /// reverses as `d_a += d_y * b`, with no `let d_t = d_y;` between.
    passed_on: HashSet<VarId>,
    same_adjoint: HashMap<VarId, Ident>,
    /// The variables bound to an element of a slice of structs (`let t = &bodies[i];`),
    /// whose gradients come back from the pullbacks of the functions they are passed to.
    element_reads: HashSet<VarId>,
}

/// A view `v = x.row(i)` (a rule whose adjoint adds into part of its operand's, `row_acc`).
#[derive(Clone)]
struct View {
    base: Operand,
    scatter: &'static str,
    ints: Vec<Operand>,
}

/// The views (rows, columns, `slice`s) read exactly once in the whole function, by a
/// statement of their own block: the reverse of that statement adds its contribution into the
/// viewed array's adjoint at once (`__rt::row_acc(&mut __d_x, contribution, i)`), so the view
/// gets no adjoint of its own (no array per row in a loop over rows). Views read otherwise
/// keep theirs.
fn forwarded_views(f: &Function) -> HashMap<VarId, View> {
    let mut uses = HashMap::new();
    count_uses(&f.body, &mut uses);
    if let Some(r) = f.result.var() {
        *uses.entry(r).or_default() += 1;
    }
    let mut out = HashMap::new();
    visit_blocks(&f.body, &mut |b| {
        let mut direct: HashMap<VarId, usize> = HashMap::new();
        for s in &b.stmts {
            if let Stmt::Let { op, .. } = s {
                for v in op.operands().into_iter().filter_map(Operand::var) {
                    *direct.entry(v).or_default() += 1;
                }
            }
        }
        for s in &b.stmts {
            let Stmt::Let {
                var,
                op: Op::Prim {
                    rule, args, ints, ..
                },
            } = s
            else {
                continue;
            };
            let (Adjoint::Scatter(scatter), Some(base)) = (&rule.adjoint, args.first()) else {
                continue;
            };
            let once = |m: &HashMap<VarId, usize>| m.get(var).copied() == Some(1);
            if rule.name != "range" && f.vars[*var].active && once(&uses) && once(&direct) {
                let view = View {
                    base: base.clone(),
                    scatter,
                    ints: ints.clone(),
                };
                out.insert(*var, view);
            }
        }
    });
    out
}

/// Calls `each` on `b` and on every block inside it (`if` arms, loop bodies), outer first.
fn visit_blocks(b: &Block, each: &mut impl FnMut(&Block)) {
    each(b);
    for s in &b.stmts {
        match s {
            Stmt::If { then, els, .. } => {
                visit_blocks(then, each);
                visit_blocks(els, each);
            }
            Stmt::Loop(l) => visit_blocks(&l.body, each),
            _ => {}
        }
    }
}

/// How often each value is used where an adjoint can flow back to it (the uses
/// [`operand_uses`] collects, element reads included).
fn count_uses(b: &Block, out: &mut HashMap<VarId, usize>) {
    visit_uses(b, true, &mut |v| *out.entry(v).or_default() += 1);
}

/// Where a part of a differentiated container sits in it ([`parts`]).
#[derive(Clone)]
enum PartAt {
    /// `&x[start..end]`: element `i` of the part is `x[start + i]`.
    Range(Operand),
    /// `x[row]` of a container of fixed-size arrays (`&[[f64; 3]]`): element `k` is
    /// `x[row][k]`.
    Row(Operand),
}

/// The parts `p = &x[start..end]` of a differentiated slice, and the rows `p = x[i]` of a
/// differentiated container of fixed-size arrays, whose only uses (as values with an adjoint)
/// are element reads `p[k]`: the reverse of `p[k]` adds into `x`'s adjoint at `start + k` (at
/// `[i][k]`) directly, so `p` gets no adjoint of its own (no zeroed copy per part, no
/// `range_acc`, no whole row added back). A part used otherwise (passed on, copied, sliced
/// again, carried) keeps its adjoint.
fn parts(f: &Function) -> HashMap<VarId, (VarId, PartAt)> {
    let mut found = HashMap::new();
    visit_blocks(&f.body, &mut |b| {
        for s in &b.stmts {
            match s {
                Stmt::Let {
                    var,
                    op:
                        Op::Prim {
                            rule, args, ints, ..
                        },
                } => {
                    let range = rule.name == "range" && rule.kind == crate::rules::Kind::Operator;
                    if let (true, Some(Operand::Var(x)), Some(start)) =
                        (range, args.first(), ints.first())
                    {
                        if f.vars[*x].active {
                            found.insert(*var, (*x, PartAt::Range(start.clone())));
                        }
                    }
                }
                Stmt::Let {
                    var,
                    op:
                        Op::Index {
                            base: Operand::Var(x),
                            index,
                            tape: None,
                            ..
                        },
                } if f.vars[*x].active && !f.vars[*var].scalar && !f.vars[*x].buffer => {
                    found.insert(*var, (*x, PartAt::Row(index.clone())));
                }
                _ => {}
            }
        }
    });
    if found.is_empty() {
        return found;
    }
    // Every use that can receive an adjoint, but as the base of an element read.
    let mut used = BTreeSet::new();
    operand_uses(&f.body, &mut used, false);
    used.extend(f.result.var());
    found.retain(|p, _| !used.contains(p));
    found
}

/// Known scalars whose adjoint is another's as it is: used once in the whole function, by a
/// copy or a `+` / `-` operand (not subtracted) of a `let` in the block that defines them (by
/// a `let`, or as a loop's carried value at the top of its body), or as an `if` arm's merged
/// value, a loop iteration's exit value or a loop's start. Their one contribution is the
/// user's adjoint itself, so the reverse sweep names it instead of copying it
/// (`Reverse::contribute_as_is`). A use anywhere else (a nested block, a store) keeps the
/// adjoint a variable of its own.
fn passed_on(f: &Function) -> HashSet<VarId> {
    fn bump(o: &Operand, uses: &mut [u32]) {
        if let Some(v) = o.var() {
            uses[v] += 1;
        }
    }
    fn count(b: &Block, uses: &mut [u32]) {
        for s in &b.stmts {
            match s {
                Stmt::Let { op, .. } => {
                    for o in op.operands() {
                        bump(o, uses);
                    }
                    match op {
                        Op::Prim { ints, .. } => ints.iter().for_each(|o| bump(o, uses)),
                        Op::Index { index, .. } => bump(index, uses),
                        _ => {}
                    }
                }
                Stmt::If {
                    then, els, phis, ..
                } => {
                    count(then, uses);
                    count(els, uses);
                    for p in phis {
                        bump(&p.then, uses);
                        bump(&p.els, uses);
                    }
                }
                Stmt::Store {
                    buf, index, value, ..
                } => {
                    uses[*buf] += 1;
                    bump(index, uses);
                    bump(value, uses);
                }
                Stmt::Loop(l) => {
                    for c in &l.carried {
                        bump(&c.init, uses);
                        bump(&c.exit, uses);
                    }
                    if let Some(b) = &l.brk {
                        bump(b, uses);
                    }
                    count(&l.body, uses);
                }
                Stmt::Effect(_) => {}
            }
        }
    }
    /// The variables `b`'s `let`s define, and `entries` (the carried values of the loop whose
    /// body `b` is, defined at its top).
    fn defined(b: &Block, entries: &[VarId]) -> HashSet<VarId> {
        b.stmts
            .iter()
            .filter_map(|s| match s {
                Stmt::Let { var, .. } => Some(*var),
                _ => None,
            })
            .chain(entries.iter().copied())
            .collect()
    }
    /// `o`, if a known scalar of `defined` used once.
    fn once(o: &Operand, defined: &HashSet<VarId>, f: &Function, uses: &[u32]) -> Option<VarId> {
        let v = o.var().filter(|v| defined.contains(v))?;
        let var = &f.vars[v];
        (var.scalar && var.active && uses[v] == 1).then_some(v)
    }
    fn collect(b: &Block, entries: &[VarId], f: &Function, uses: &[u32], out: &mut HashSet<VarId>) {
        let lets = defined(b, entries);
        for s in &b.stmts {
            match s {
                Stmt::Let { op, .. } => {
                    let passed: Vec<&Operand> = match op {
                        Op::Copy(o) => vec![o],
                        Op::Prim { rule, args, .. } => match rule.adjoint {
                            Adjoint::Linear(signs) => args
                                .iter()
                                .zip(signs)
                                .filter(|(_, &plus)| plus)
                                .map(|(a, _)| a)
                                .collect(),
                            _ => Vec::new(),
                        },
                        _ => Vec::new(),
                    };
                    out.extend(passed.into_iter().filter_map(|o| once(o, &lets, f, uses)));
                }
                Stmt::If {
                    then, els, phis, ..
                } => {
                    // An arm's value merged by the `if` and used nowhere else takes the
                    // merge's adjoint.
                    let (in_then, in_els) = (defined(then, &[]), defined(els, &[]));
                    for p in phis {
                        out.extend(once(&p.then, &in_then, f, uses));
                        out.extend(once(&p.els, &in_els, f, uses));
                    }
                    collect(then, &[], f, uses, out);
                    collect(els, &[], f, uses, out);
                }
                Stmt::Loop(l) => {
                    // An iteration's exit value used nowhere else takes the carried adjoint,
                    // and a value defined here only to start the loop, the adjoint after it.
                    let entries: Vec<VarId> = l.carried.iter().map(|c| c.entry).collect();
                    let in_body = defined(&l.body, &[]);
                    for c in &l.carried {
                        out.extend(once(&c.exit, &in_body, f, uses));
                        out.extend(once(&c.init, &lets, f, uses));
                    }
                    collect(&l.body, &entries, f, uses, out);
                }
                Stmt::Store { .. } | Stmt::Effect(_) => {}
            }
        }
    }
    let mut uses = vec![0; f.vars.len()];
    count(&f.body, &mut uses);
    bump(&f.result, &mut uses);
    let mut out = HashSet::new();
    collect(&f.body, &[], f, &uses, &mut out);
    out
}

/// The element updates `buf[i] = buf[i] + e` (what `buf[i] += e` lowers to; also
/// `buf[i] - e` and `e + buf[i]`) whose old value is read, by the update alone, in the same
/// block with no store into `buf` nor any loop or `if` in between: the element's adjoint is
/// also the old value's, so the reverse of the store reads it where it stands, and the read
/// adds nothing back (the store took the adjoint and the read added the same number back
/// before: two loads and two stores per update in every time step). A store into the buffer
/// in between takes the element's adjoint itself, and a read of the element in between adds
/// to it either way. The reads, and the values stored.
fn increments(f: &Function) -> (HashSet<VarId>, HashSet<VarId>) {
    let mut uses = HashMap::new();
    count_uses(&f.body, &mut uses);
    if let Some(r) = f.result.var() {
        *uses.entry(r).or_default() += 1;
    }
    let once = |v: VarId| uses.get(&v).copied() == Some(1);
    let same = |a: &Operand, b: &Operand| match (a, b) {
        (Operand::Var(x), Operand::Var(y)) => x == y,
        (Operand::Const(x), Operand::Const(y)) => x.to_string() == y.to_string(),
        _ => false,
    };
    let (mut reads, mut values) = (HashSet::new(), HashSet::new());
    visit_blocks(&f.body, &mut |b| {
        // Element reads of a buffer since its last store (or the last loop or `if`): the read,
        // the buffer and the index.
        let mut open: HashMap<VarId, (VarId, &Operand)> = HashMap::new();
        // Sums of such a read and another value: the sum and the read.
        let mut sums: HashMap<VarId, VarId> = HashMap::new();
        for s in &b.stmts {
            match s {
                Stmt::Let {
                    var,
                    op:
                        Op::Index {
                            base: Operand::Var(buf),
                            index,
                            ..
                        },
                } if f.vars[*buf].buffer && f.vars[*var].active && f.vars[*var].scalar => {
                    open.insert(*var, (*buf, index));
                }
                Stmt::Let {
                    var,
                    op: Op::Prim { rule, args, .. },
                } if f.vars[*var].scalar => {
                    let Adjoint::Linear(signs) = rule.adjoint else {
                        continue;
                    };
                    let [a, c] = args.as_slice() else { continue };
                    // The old value with a `+` sign, the other operand not the same read.
                    let old = [(a, c, signs[0]), (c, a, signs[1])]
                        .into_iter()
                        .find(|(o, other, plus)| {
                            *plus
                                && o.var().is_some_and(|v| open.contains_key(&v))
                                && o.var() != other.var()
                        })
                        .and_then(|(o, _, _)| o.var());
                    if let Some(old) = old {
                        sums.insert(*var, old);
                    }
                }
                Stmt::Let { .. } | Stmt::Effect(_) => {}
                Stmt::Store {
                    buf,
                    index,
                    value,
                    part,
                } => {
                    if let (Part::Element, Some(v)) = (part, value.var()) {
                        let old = sums.get(&v).copied().filter(|old| {
                            open.get(old)
                                .is_some_and(|(b, i)| b == buf && same(i, index))
                        });
                        if let Some(old) = old.filter(|&old| once(old) && once(v)) {
                            reads.insert(old);
                            values.insert(v);
                        }
                    }
                    open.retain(|_, (b, _)| b != buf);
                }
                Stmt::If { .. } | Stmt::Loop(_) => open.clear(),
            }
        }
    });
    (reads, values)
}

/// `c = a * x` where `a` is `x` multiplied by itself `n - 2` times in the same block (`let t =
/// x * x; let c = t * x;`), or `a` is `x` itself (`n` = 2): `c`'s reverse adds `n * d_c * a`
/// into `x`'s adjoint at once, the
/// derivative of the whole chain (through `a`'s other uses `a`'s own reverse still runs).
#[derive(Clone, Copy)]
struct Power {
    base: VarId,
    n: u32,
    /// Which operand of the product is `a`.
    lower: usize,
}

/// The products of [`Power`]'s form in `b` and the blocks inside it. Within a block a variable
/// has one value from its definition on; the powers found so far are forgotten at a loop or an
/// `if`, which could stand between a power and its use.
fn powers(b: &Block, f: &Function, out: &mut HashMap<VarId, Power>) {
    let mut mono: HashMap<VarId, (VarId, u32)> = HashMap::new();
    for s in &b.stmts {
        match s {
            Stmt::Let {
                var,
                op: Op::Prim { rule, args, .. },
            } if rule.name == "mul" && args.len() == 2 && f.vars[*var].scalar => {
                let m = |o: &Operand| o.var().map(|v| mono.get(&v).copied().unwrap_or((v, 1)));
                let (Some((x, p)), Some((y, q))) = (m(&args[0]), m(&args[1])) else {
                    continue;
                };
                if x != y {
                    continue;
                }
                mono.insert(*var, (x, p + q));
                // A square `x * x` too: `2 d_c x`, whose `2 d_c` the squares of one adjoint
                // share (`dx * dx + dy * dy` in a distance), not `d_c x + d_c x`.
                let lower = match (p, q) {
                    (_, 1) => 0,
                    (1, q) if q >= 2 => 1,
                    _ => continue,
                };
                out.insert(
                    *var,
                    Power {
                        base: x,
                        n: p + q,
                        lower,
                    },
                );
            }
            Stmt::Loop(l) => {
                mono.clear();
                powers(&l.body, f, out);
            }
            Stmt::If { then, els, .. } => {
                mono.clear();
                powers(then, f, out);
                powers(els, f, out);
            }
            _ => {}
        }
    }
}

/// Where the adjoint of an element read in a loop gathers instead of going to memory at once.
#[derive(Clone)]
enum Promotion {
    /// The element does not change with the iteration (`x[3 * i]` in a loop over `j`): one
    /// register for the whole loop, added into the array's adjoint after it.
    Invariant { reg: Ident, slot: Ident },
    /// The element moves with the loop variable (`x[i]`, `x[i + 1]`): a window of registers,
    /// one per offset, shifted each iteration; an element is written once, when complete.
    Window { reg: Ident },
    /// The element is `base[k + i]` in a `for i in a..b` loop, `k` not changing with the
    /// iteration: its adjoint goes into the loop's window of the array's adjoint (`window[i -
    /// a]`, a [`Slice`]), whose length the compiler knows, so the reverse loop has no bounds
    /// check (and can run as vector instructions) where `d_base[k + i]` had one per element.
    Slice { window: Ident, index: TokenStream },
}

/// The window `&mut d_base[k + a..k + b]` of a `for i in a..b` loop, taken before its reverse:
/// the loop reads `base[k + i]` at every iteration (the reads are at the top of its body, and
/// the loop has no `break`), so the forward sweep read every element of it and the window is
/// in bounds whenever the loop runs (an empty range takes an empty window).
struct Slice {
    base: VarId,
    window: Ident,
    offset: TokenStream,
    start: TokenStream,
    end: TokenStream,
}

/// What a loop keeps for its reverse sweep.
#[derive(Default, Clone)]
pub struct LoopPlan {
    /// Entry values recorded per iteration (those the reverse reads and cannot re-read).
    pub entries: Vec<VarId>,
    /// The body reads buffers: the values are taped.
    pub reads: bool,
    /// The name of that tape (when `reads`).
    pub read_tape: Option<String>,
    /// Every iteration reads the same number of buffer values (no read sits in an `if` arm):
    /// the reverse sweep finds an iteration's reads at the tape's end, so where each
    /// iteration's reads start need not be recorded.
    pub fixed_reads: Option<usize>,
    /// With `fixed_reads`, a loop whose trip count is known when it starts
    /// ([`Loop::counted_range`]): the read tape's room is reserved then.
    pub reads_reserved: bool,
    /// A nested loop at the top of a body whose trip count is known when it starts: that
    /// enclosing loop reserves room for one exit record per iteration.
    pub exits_reserved: bool,
    /// The trip count is kept (`while`, `loop`, or a `for` that can `break`).
    pub count: bool,
    /// For a nested loop: its outputs the enclosing loop's recomputation needs.
    pub exit_afters: Vec<VarId>,
    /// The loop has a reverse sweep.
    pub reversed: bool,
    /// The body's recorded values (`Function::recorded`), outside nested loops.
    pub recorded: Vec<VarId>,
    /// Of those, the arrays (values of an operation that are not known scalars) the body
    /// defines at its top level and does not carry to the next iteration: the forward
    /// iteration moves each onto its tape when it ends, instead of pushing a copy where it is
    /// computed.
    pub recorded_at_end: Vec<VarId>,
    /// Checkpointed: the buffers declared outside the loop that its body writes, kept with
    /// the entries at every iteration's start; the forward sweep runs the body plainly and
    /// the reverse sweep runs each iteration again from that state.
    pub checkpoint: Vec<VarId>,
    /// Of those, the ones each iteration's record keeps and its rerun restores: all but the
    /// loop's scratch buffers (`scratch::is_scratch`), which the rerun writes anew before it
    /// reads them, and the buffers the body only writes (a trajectory kept step by step,
    /// `hist[t * n + i] = y[i]`), whose stores' reverse reads no value of theirs: keeping them
    /// would copy the whole trajectory at every step.
    pub snapshots: Vec<VarId>,
    /// Directly inside a checkpointed loop, whose reverse runs it again: no exit record.
    pub rerun: bool,
    /// A top-level loop run fused with its reverse in the forward sweep: the code that runs
    /// it there ([`Reverse::early_loop`]).
    pub early: Option<TokenStream>,
    /// The body's values whose shapes the reverse iteration pops instead of computing the
    /// values again ([`Shaped`]).
    pub shaped: Vec<Shaped>,
    /// In a loop fused with its reverse, the fused sums whose adjoint is known before they
    /// run (by the sum's variable): the destinations of their inputs' partial derivatives and
    /// the sum's adjoint, for `__rt::fused_sum_acc` ([`Reverse::direct_sums`]).
    pub direct: HashMap<VarId, (TokenStream, TokenStream)>,
}

/// A value of a loop body whose shape alone the reverse iteration reads (the `init` of an
/// adjoint, say, or the shape a broadcast contribution reduces to): the forward iteration
/// records its shape when it ends (`__rt::into_like`, which frees an array), and the reverse
/// iteration pops that instead of computing the value, and what only it read, again. The
/// matrix product `t.dot(&e)` that assembles a column is not computed a second time for its
/// shape. Values themselves are not kept: recomputing an element-wise operation costs less
/// than the page faults of keeping its array until the reverse sweep (measured on the GMM
/// objective written with ndarray: 1 200 faults per gradient, 15% slower).
#[derive(Clone)]
pub struct Shaped {
    pub var: VarId,
    pub tape: Ident,
}

impl LoopPlan {
    /// A nested loop records its trip count and outputs when it ends.
    pub fn has_exits(&self) -> bool {
        !self.rerun && (!self.exit_afters.is_empty() || (self.reversed && self.count))
    }
    /// The loop records its entries (and the start of its buffer reads) per iteration.
    pub fn has_entries(&self) -> bool {
        !self.entries.is_empty() || self.records_read_start() || !self.checkpoint.is_empty()
    }

    /// Each iteration's entry record holds where its buffer reads start.
    pub fn records_read_start(&self) -> bool {
        self.reads && self.fixed_reads.is_none()
    }
}

pub type Plans = HashMap<String, LoopPlan>;

/// A window of registers for the element reads `base[i + c]` of a `for i in start..` loop,
/// one register per offset from the smallest to the largest (`None` where no read has it).
struct Window {
    base: VarId,
    regs: Vec<Option<Ident>>,
    indices: Vec<Option<Operand>>,
    var: VarId,
    /// The range's start and end, and the name the iteration that comes last is kept under.
    start: TokenStream,
    end: TokenStream,
    first: Ident,
}

impl<'a> Reverse<'a> {
    pub fn new(f: &'a Function, float: Ident, rt: Ident) -> Self {
        Reverse {
            f,
            float,
            rt,
            declared: HashSet::new(),
            used: vec![BTreeSet::new()],
            alias: HashMap::new(),
            used_like: BTreeSet::new(),
            promoted_used: HashSet::new(),
            saved: HashMap::new(),
            plans: HashMap::new(),
            names: f.vars.iter().enumerate().fold(
                HashMap::new(),
                |mut m: HashMap<String, Vec<VarId>>, (i, v)| {
                    m.entry(v.name.to_string()).or_default().push(i);
                    m
                },
            ),
            loops: Vec::new(),
            promoted: Vec::new(),
            registers: 0,
            fused: None,
            reads_needed: HashSet::new(),
            reads_kept: HashSet::new(),
            parts: parts(f),
            views: forwarded_views(f),
            content_read: BTreeSet::new(),
            lent: lent_sums(f),
            pending: None,
            fresh_elements: HashMap::new(),
            nested: 0,
            element_write: false,
            direct: HashSet::new(),
            increments: increments(f),
            passed_on: passed_on(f),
            same_adjoint: HashMap::new(),
            element_reads: element_reads(f),
            powers: {
                let mut out = HashMap::new();
                powers(&f.body, f, &mut out);
                out
            },
        }
    }

    /// The name of `v`'s adjoint: its own, or the adjoint it was passed on as it is.
    fn adj(&self, v: VarId) -> Ident {
        self.same_adjoint
            .get(&v)
            .cloned()
            .unwrap_or_else(|| self.f.vars[v].adjoint.clone())
    }

    /// A contribution of `dy` as it is to `target`, a known scalar: a scalar of
    /// [`passed_on`] takes `dy` as its adjoint (its only contribution, and `dy`'s variable is
    /// reversed, so `dy` changes no more); anything else gets `let mut d = dy;` or `d += dy;`.
    fn contribute_as_is(&mut self, target: &Operand, dy: &Ident) -> TokenStream {
        if let Some(v) = target.var() {
            if self.passed_on.contains(&v) && !self.declared.contains(&v) {
                self.declared.insert(v);
                self.same_adjoint.insert(v, dy.clone());
                return TokenStream::new();
            }
        }
        self.contribute_scalar(target, quote!(#dy))
    }

    /// The top-level values the reverse sweep reads (as values, not only for their shape).
    pub fn used_values(&self) -> &BTreeSet<VarId> {
        &self.used[0]
    }

    /// After [`Reverse::sweep`]: the taped buffer reads whose values no reverse iteration
    /// needs (`y_tmp[i] = yf[i] + h * k[i]`: the sum's adjoint reads neither operand). Taping
    /// them only keeps a cursor in step; the caller untapes them and sweeps again (the
    /// to-be-recorded analysis asks whether a read can be overwritten, this whether its value
    /// is wanted).
    pub fn unneeded_reads(&self) -> HashSet<VarId> {
        self.reads_kept
            .difference(&self.reads_needed)
            .copied()
            .collect()
    }

    /// The reverse sweep of the whole body, seeded with `seed` as the output's adjoint.
    pub fn sweep(&mut self, seed: TokenStream) -> TokenStream {
        let f = self.f;
        if let Some(l) = self.fusable() {
            // The function ends with a loop that accumulates its value: its adjoint is the seed
            // from the start, so the loop's reverse runs inside the forward loop.
            let fused = self.fused_loop(l, f.result.var().unwrap_or_default(), seed, true);
            self.fused = Some(fused);
            let mut out = TokenStream::new();
            for s in f.body.stmts[..f.body.stmts.len() - 1].iter().rev() {
                out.append_stream(self.stmt(s));
            }
            return out;
        }
        let mut out = self.contribute_scalar(&f.result, seed);
        out.append_stream(self.block(&f.body));
        out
    }

    /// The body's last statement, if it is a loop that can run fused with its reverse: the
    /// function's value is the output of one of its carried variables, and every
    /// differentiated carried variable only accumulates (`s += ..`, `s -= ..`, each iteration
    /// adding a term that does not read `s`), so its adjoint is the same in every iteration.
    /// Buffers would need the reverse order: a body that writes or reads one is not fused.
    fn fusable(&self) -> Option<&'a Loop> {
        let f = self.f;
        self.fusable_in(&f.body, f.result.var()?)
    }

    /// The last statement of `block`, if it is a loop that can run fused with its reverse
    /// given that `result` is the only value of the block whose adjoint is nonzero.
    fn fusable_in(&self, block: &'a Block, result: VarId) -> Option<&'a Loop> {
        let f = self.f;
        let Some(Stmt::Loop(l)) = block.stmts.last() else {
            return None;
        };
        if !l
            .carried
            .iter()
            .any(|c| c.after == result && f.vars[c.entry].active)
        {
            return None;
        }
        // A differentiated buffer declared outside the loop could carry values from one
        // iteration to the next, whose reverse would then run too early; one declared in the
        // body is fresh in every iteration, and an integer one carries no adjoint.
        if touches_outer_buffers(&l.body, self.f) {
            return None;
        }
        self.accumulates(l).then_some(l)
    }

    /// Does every differentiated carried variable of `l` only accumulate (`s += ..`, `s -= ..`,
    /// each iteration adding a term that does not read `s`), so that its adjoint is the same
    /// in every iteration?
    fn accumulates(&self, l: &'a Loop) -> bool {
        let f = self.f;
        let mut uses = Vec::new();
        self.uses_deep(&l.body, &mut uses);
        if let LoopKind::While { cond } = &l.kind {
            let mut names = Vec::new();
            idents(cond, &mut names);
            for n in names {
                uses.extend(self.names.get(&n).into_iter().flatten().copied());
            }
        }
        for c in l.carried.iter().filter(|c| f.vars[c.entry].active) {
            let Some(exit) = c.exit.var() else {
                return false;
            };
            let accumulates = l.body.stmts.iter().any(|s| match s {
                Stmt::Let {
                    var,
                    op: Op::Prim { rule, args, .. },
                } if *var == exit => {
                    (rule.name == "add" || rule.name == "sub")
                        && args.first().and_then(Operand::var) == Some(c.entry)
                }
                _ => false,
            });
            // Or through a nested loop that ends the body and accumulates it in turn.
            let accumulates = accumulates
                || matches!(l.body.stmts.last(), Some(Stmt::Loop(n)) if n.carried.iter().any(|c2| c2.after == exit && c2.init.var() == Some(c.entry)))
                    && self.fusable_in(&l.body, exit).is_some();
            let entry_uses = uses.iter().filter(|u| **u == c.entry).count();
            let exit_uses = uses.iter().filter(|u| **u == exit).count();
            if !accumulates || entry_uses != 1 || exit_uses != 0 {
                return false;
            }
        }
        true
    }

    /// Can the reverse of `l` visit its iterations in any order, so forwards, as the primal
    /// did (simpler induction and addressing than a reversed range; GMM's inner products'
    /// reverse ran 7-10% faster)? Yes when no iteration's reverse depends on another's: a `for`
    /// loop without `break` whose carried adjoints pass through unchanged (each carried value
    /// only accumulates), which keeps no records per iteration (entries, taped reads, recorded
    /// values, nested loops' exits), stores into no buffer (a later iteration could read what
    /// an earlier one wrote) and is not checkpointed. Only the rounding of the sums the
    /// iterations add their contributions to can differ from the backward order.
    fn order_free(&self, l: &'a Loop, key: &str) -> bool {
        self.order_free_shape(l)
            && self.plans.get(key).is_some_and(|p| {
                !p.has_entries()
                    && !p.reads
                    && p.recorded.is_empty()
                    && p.shaped.is_empty()
                    && p.checkpoint.is_empty()
            })
    }

    /// What [`Self::order_free`] asks of the loop itself, before its plan is made.
    fn order_free_shape(&self, l: &'a Loop) -> bool {
        let mut stored = HashSet::new();
        crate::tbr::stores(&l.body, &mut stored);
        matches!(l.kind, LoopKind::For { .. })
            && l.brk.is_none()
            && stored.is_empty()
            && !keeps_records_deep(&l.body)
            && self.accumulates(l)
    }

    /// The passive carried values of `l` (an index stepped by `p += stride`) whose next value
    /// its body computes from values a forward-order reverse has at hand: the loop variable,
    /// values from before the loop, constants and these carried values themselves, through
    /// plain statements at the top of the body (no element reads, calls or branches).
    /// Each comes with the entries of the others its next value reads.
    fn replayable(&self, l: &'a Loop) -> Vec<(&'a Carried, Vec<VarId>)> {
        let f = self.f;
        let defs = top_level_defs(&l.body);
        let inner: HashSet<VarId> = loop_defined(l).into_iter().collect();
        let loop_var = match &l.kind {
            LoopKind::For { var, .. } => Some(*var),
            _ => None,
        };
        let mut candidates: Vec<(&Carried, Vec<VarId>)> = l
            .carried
            .iter()
            .filter(|c| !f.vars[c.entry].active)
            .map(|c| (c, Vec::new()))
            .collect();
        loop {
            let entries: HashSet<VarId> = candidates.iter().map(|(c, _)| c.entry).collect();
            let before = candidates.len();
            candidates.retain_mut(|(c, reads)| {
                reads.clear();
                let mut seen = HashSet::new();
                let mut work: Vec<VarId> = c.exit.var().into_iter().collect();
                while let Some(v) = work.pop() {
                    if !seen.insert(v) || Some(v) == loop_var {
                        continue;
                    }
                    if entries.contains(&v) {
                        reads.push(v);
                        continue;
                    }
                    if !inner.contains(&v) {
                        continue; // from before the loop
                    }
                    let Some(op) = defs.get(&v) else {
                        return false; // another carried value, or defined in a branch
                    };
                    if !matches!(op, Op::Copy(_) | Op::Prim { .. } | Op::Verbatim(_)) {
                        return false;
                    }
                    let mut names = Vec::new();
                    op_reads(op, &mut names, |r| work.push(r));
                    for n in names {
                        work.extend(self.names.get(&n).into_iter().flatten().copied());
                    }
                }
                true
            });
            if candidates.len() == before {
                return candidates;
            }
        }
    }

    /// Every variable read anywhere in `b`, once per reading.
    fn uses_deep(&self, b: &Block, out: &mut Vec<VarId>) {
        let mut names = Vec::new();
        for s in &b.stmts {
            stmt_reads(s, out, &mut names, true);
        }
        for n in names {
            out.extend(self.names.get(&n).into_iter().flatten().copied());
        }
    }

    /// A loop fused with its reverse: each iteration runs forward, then its reverse at once,
    /// with the (constant) adjoint of its accumulated output; `handoff` passes the carried
    /// adjoints on to the loop's initial values after it.
    fn fused_loop(
        &mut self,
        l: &'a Loop,
        result: VarId,
        seed: TokenStream,
        handoff: bool,
    ) -> TokenStream {
        // Its reverse writes adjoints in a loop (`fresh_elements`).
        self.fresh_elements.clear();
        let rt = self.rt.clone();
        let float = self.float.clone();
        let inner: HashSet<VarId> = loop_defined(l).into_iter().collect();
        let result = Some(result);
        let active: Vec<&Carried> = l
            .carried
            .iter()
            .filter(|c| self.f.vars[c.entry].active)
            .collect();
        // The storage first: the adjoints below take their shapes from it.
        let mut out = crate::emit::loop_prelude(self.f, l, &rt);
        let mut targets = BTreeSet::new();
        self.targets_of(&l.body, &mut targets);
        out.append_stream(self.declare_zero(targets, &inner));
        for c in &active {
            let d = self.adj(c.after);
            let x = self.f.vars[c.after].name.clone();
            self.declared.insert(c.after);
            if Some(c.after) == result {
                out.append_stream(quote!(let #d = #rt::init(&#x, #seed);));
            } else {
                let zero = self.zero_adjoint(c.after);
                out.append_stream(quote!(let #d = #zero;));
            }
        }
        let direct = match active.as_slice() {
            [c] if Some(c.after) == result => self.direct_sums(l, c, &inner),
            _ => HashMap::new(),
        };
        self.direct.extend(direct.keys().copied());
        let (promotions, windows, _) = self.promotions(l, &inner, false);
        for w in &windows {
            for reg in w.regs.iter().flatten() {
                out.append_stream({
                    let zero = self.unsuffixed_zero();
                    quote!(let mut #reg: #float = #zero;)
                });
            }
            let (first, end) = (&w.first, &w.end);
            out.append_stream(quote!(let #first = #end;));
            self.mark_tokens(end);
        }
        let snapshot = self.declared.clone();
        self.used.push(BTreeSet::new());
        self.promoted.push(promotions.clone());
        self.loops.push(storage_shapes(l, &inner));
        let mut reverse = TokenStream::new();
        // A nested loop that ends the body and accumulates the one carried value runs fused
        // too, seeded with this loop's adjoint.
        let nested = match active.as_slice() {
            [c] => c.exit.var().and_then(|e| {
                self.fusable_in(&l.body, e)
                    .map(|n| (n, e, self.adj(c.after)))
            }),
            _ => None,
        };
        let mut inner_fused = None;
        match nested {
            Some((n, e, d)) => {
                inner_fused = Some(self.fused_loop(n, e, quote!(&#d), true));
                for st in l.body.stmts[..l.body.stmts.len() - 1].iter().rev() {
                    reverse.append_stream(self.stmt(st));
                }
            }
            None => {
                for c in &active {
                    reverse.append_stream(self.carry(c.after, &c.exit, true));
                }
                reverse.append_stream(self.block(&l.body));
            }
        }
        for w in &windows {
            reverse.append_stream(self.window_step(w, true));
        }
        self.loops.pop();
        self.promoted.pop();
        let used = self.used.pop().unwrap_or_default();
        self.declared = snapshot;
        for v in used {
            if !inner.contains(&v) {
                self.mark_used(v);
            }
        }
        self.plans.insert(
            l.tape.to_string(),
            LoopPlan {
                direct,
                ..LoopPlan::default()
            },
        );
        out.append_stream(self.declare_invariants(&promotions));
        out.append_stream(crate::emit::fused_loop(
            self.f,
            l,
            &self.saved,
            &self.plans,
            &rt,
            inner_fused,
            reverse,
        ));
        out.append_stream(self.flush_invariants(l, &promotions));
        for c in active.iter().filter(|_| handoff) {
            out.append_stream(self.carry(c.after, &c.init, false));
        }
        self.fresh_elements.clear();
        out
    }

    /// The fused sums of a loop run fused with its reverse (`fused_loop`) whose adjoint is
    /// known before they run: the sum flows into the value `c` the loop accumulates through
    /// `+`, `-` and copies alone (`s += (&x.row(i) * w).mapv(f64::tanh).sum()`), so its
    /// adjoint is `±` the accumulated value's, the same in every iteration. Each input's
    /// adjoint must exist before the loop: a differentiated array from outside it
    /// (`d_w.view_mut()`), or a row or column of one read once (`d_x.row_mut(i)`); constants
    /// get `__rt::Skip`. The forward pass then adds the partial derivatives, scaled, straight
    /// into those (`__rt::fused_sum_acc`), as a hand-written loop does, instead of returning
    /// arrays of them for the reverse to scale and add. By the sum's variable: the
    /// destinations and the adjoint.
    fn direct_sums(
        &mut self,
        l: &Loop,
        c: &Carried,
        inner: &HashSet<VarId>,
    ) -> HashMap<VarId, (TokenStream, TokenStream)> {
        let mut out = HashMap::new();
        let (Some(exit), true) = (c.exit.var(), self.f.vars[c.after].scalar) else {
            return out;
        };
        let d_after = self.adj(c.after);
        for s in &l.body.stmts {
            let Stmt::Let {
                var,
                op:
                    Op::Fused {
                        inputs,
                        grads: Some(_),
                        ..
                    },
            } = s
            else {
                continue;
            };
            let Some(negated) = linear_chain(l, *var, exit) else {
                continue;
            };
            let mut dests = Vec::new();
            let mut bases = HashSet::new();
            for input in inputs {
                let Some(v) = input.var().filter(|&v| self.f.vars[v].active) else {
                    dests.push(None);
                    continue;
                };
                let dest = if !inner.contains(&v) {
                    (self.f.arrays.contains(&v) && !self.f.vars[v].scalar)
                        .then(|| (v, quote!(.view_mut())))
                } else {
                    self.views.get(&v).cloned().and_then(|view| {
                        let method = match view.scatter {
                            "row_acc" => quote!(row_mut),
                            "column_acc" => quote!(column_mut),
                            _ => return None,
                        };
                        let [index] = view.ints.as_slice() else {
                            return None;
                        };
                        let index = self.operand(index);
                        let base = view.base.var()?;
                        (!inner.contains(&base)).then(|| (base, quote!(.#method(#index))))
                    })
                };
                let Some((base, view)) =
                    dest.filter(|(b, _)| self.declared.contains(b) && bases.insert(*b))
                else {
                    dests.clear();
                    break;
                };
                let d = &self.adj(base);
                dests.push(Some(quote!(#d #view)));
            }
            if dests.len() != inputs.len() {
                continue;
            }
            let rt = &self.rt;
            let dests = dests
                .into_iter()
                .map(|d| d.unwrap_or_else(|| quote!(#rt::Skip)));
            let dy = if negated {
                quote!(-#d_after)
            } else {
                quote!(#d_after)
            };
            out.insert(*var, (quote!((#(#dests,)*)), dy));
        }
        out
    }

    /// [`Self::early_loops`] of `f`; straight-line code (no top-level loop) builds no analysis.
    pub fn early_loops_of(f: &'a Function, float: &Ident, rt: &Ident) -> HashSet<String> {
        if top_level_loops(f).is_empty() {
            return HashSet::new();
        }
        Reverse::new(f, float.clone(), rt.clone()).early_loops()
    }

    /// The top-level loops (by tape name) that run fused with their reverse where they stand
    /// ([`Self::early_loop`]); the function's last loop, when it runs fused after the forward
    /// sweep, is not one of them. Decided once, before the to-be-recorded analysis, which
    /// knows that such a loop's iterations are reversed at once ([`Function::early`]).
    fn early_loops(&self) -> HashSet<String> {
        let last = self.fusable();
        top_level_loops(self.f)
            .into_iter()
            .filter(|l| last.is_none_or(|last| !std::ptr::eq(*l, last)) && self.early_fusable(l))
            .map(|l| l.tape.to_string())
            .collect()
    }

    /// Can top-level loop `l` run fused with its reverse where it stands? Its one
    /// differentiated output is a scalar it accumulates, so the reverse of every iteration is
    /// linear in that output's adjoint, the same in every iteration; and the buffers declared
    /// outside it that it writes are its scratch buffers (`scratch`), which carry nothing
    /// between iterations.
    fn early_fusable(&self, l: &'a Loop) -> bool {
        let f = self.f;
        let mut active = l.carried.iter().filter(|c| f.vars[c.entry].active);
        let (Some(c), None) = (active.next(), active.next()) else {
            return false;
        };
        let Some(scratch) = crate::scratch::scratch_buffers(f, l) else {
            return false;
        };
        // Worth it only where the loop's reverse would otherwise keep records per iteration
        // (a unit run costs adjoints of its own, scaled afterwards).
        let records = !scratch.is_empty() || keeps_records_deep(&l.body);
        records && f.vars[c.after].scalar && self.accumulates(l)
    }

    /// A top-level loop whose reverse runs in the forward sweep (see [`Self::early_fusable`]):
    /// each iteration runs forward and then backwards at once, seeded with a unit adjoint for
    /// the accumulated output, into adjoints of its own (`__d_x_unit1`). The forward sweep
    /// runs that where the loop stands ([`LoopPlan::early`]); the reverse sweep (returned)
    /// adds them, scaled by the output's adjoint, where the loop's reverse would be. A loop of
    /// GMM's kind (each data point's log-sum-exp added up) so needs no tape of its iterations
    /// at all, as in a hand-written gradient.
    fn early_loop(&mut self, l: &Loop) -> TokenStream {
        let f = self.f;
        let Some(l) = top_level_loops(f).into_iter().find(|x| x.tape == l.tape) else {
            return self.loop_stmt(l);
        };
        let (Some(c), Some(scratch)) = (
            l.carried.iter().find(|c| f.vars[c.entry].active),
            crate::scratch::scratch_buffers(f, l),
        ) else {
            return self.loop_stmt(l);
        };
        let inner: HashSet<VarId> = loop_defined(l).into_iter().collect();
        let mut targets = BTreeSet::new();
        self.targets_of(&l.body, &mut targets);
        let targets: Vec<VarId> = targets
            .into_iter()
            .filter(|v| !inner.contains(v) && f.vars[*v].active && !scratch.contains(v))
            .collect();
        // The unit run declares adjoints of its own, whatever the reverse sweep has declared.
        let outer = self.declared.clone();
        for v in targets.iter().chain(&scratch).chain([&c.after]) {
            self.declared.remove(v);
        }
        let one = crate::signature::suffixed(&self.float, "1.0");
        let run = self.fused_loop(l, c.after, one, false);
        self.declared = outer;
        let slots: Vec<&Ident> = l.carried.iter().map(|c| &f.vars[c.entry].name).collect();
        // Numbered by the loop: two loops may add to the same adjoint.
        let n = top_level_loops(f)
            .iter()
            .position(|x| x.tape == l.tape)
            .unwrap_or(0);
        let units: Vec<Ident> = targets
            .iter()
            .map(|t| {
                let name = format!("{}_unit{n}", self.adj(*t));
                Ident::new(&name, crate::names::mixed_site())
            })
            .collect();
        let adjoints: Vec<Ident> = targets.iter().map(|t| self.adj(*t)).collect();
        let forward = quote!(
            let (#(mut #slots,)* #(#units,)*) = { #run (#(#slots,)* #(#adjoints,)*) };
        );
        self.plans.entry(l.tape.to_string()).or_default().early = Some(forward);
        let mut out = TokenStream::new();
        if !self.declared.contains(&c.after) {
            return out;
        }
        let d = self.adj(c.after);
        for (t, u) in targets.iter().zip(&units) {
            out.append_stream(self.contribute_scaled(&Operand::Var(*t), quote!(#u), &quote!(#d)));
        }
        out.append_stream(self.carry(c.after, &c.init, false));
        out
    }

    /// The gradient of a struct parameter: its adjoint as a whole (from calls that took it
    /// whole) or a zero one, with the adjoint of each differentiated field the body read
    /// written into (or added to) that field.
    pub fn struct_gradient(&mut self, param: VarId) -> TokenStream {
        let whole = self.declared.contains(&param);
        let rt = self.rt.clone();
        // Its fields read as slices of structs are moved in whole: their zero is not made.
        let spared: Vec<String> = self
            .f
            .fields
            .iter()
            .filter(|(p, path, var)| {
                *p == param
                    && path.len() == 1
                    && self.f.elements.contains(var)
                    && self.declared.contains(var)
            })
            .map(|(_, path, _)| match &path[0] {
                syn::Member::Named(i) => i.to_string(),
                syn::Member::Unnamed(i) => i.index.to_string(),
            })
            .collect();
        let base = match whole || spared.is_empty() {
            true => self.gradient(param),
            false => {
                let x = self.primal(param);
                quote!(#rt::zero_sparing(&#x, &[#(#spared),*]))
            }
        };
        self.with_fields(param, base, whole, |g, path, d, add| match add {
            true => quote!(#rt::acc(&mut #g.#(#path).*, #d);),
            // Through a check that the field is owned (a borrowed field has no gradient).
            false => quote!(#g.#(#path).* = #rt::field_gradient(#d);),
        })
    }

    /// The gradient of a slice of structs (`columns.rs`): a `Vec` of the struct, each
    /// element's gradient zero but in the fields the body read as differentiated values, into
    /// which each column's adjoint is moved (or added, after the gradients of functions the
    /// slice was passed to whole).
    pub fn elements_gradient(&mut self, param: VarId) -> TokenStream {
        let element = Ident::new("element", crate::names::mixed_site());
        let (rt, float) = (self.rt.clone(), self.float.clone());
        let x = self.primal(param);
        let whole = self.declared.contains(&param);
        let start = match whole {
            true => self.adj(param).to_token_stream(),
            false => quote!(#rt::zero_elements::<#float, _>(&#x[..])),
        };
        self.with_fields(param, start, whole, |g, path, d, add| {
            let set = match add {
                true => quote!(acc_column),
                false => quote!(set_column),
            };
            quote!(#rt::#set(&mut #g, #d, |#element| &mut #element.#(#path).*);)
        })
    }

    /// `start` with the adjoint of each differentiated field of `param` the body read written
    /// into its field by `write(gradient, path, adjoint, add)`: added when `add_all` (`start`
    /// holds gradients already) or the field is inside one already written (outer fields
    /// first, `layer` before `layer.w`), else moved in.
    fn with_fields(
        &mut self,
        param: VarId,
        start: TokenStream,
        add_all: bool,
        write: impl Fn(&Ident, &[syn::Member], Ident, bool) -> TokenStream,
    ) -> TokenStream {
        let g = Ident::new("gradient", crate::names::mixed_site());
        // A field read as a slice of structs (`self.bodies`, `columns::FieldSlice`) has a
        // gradient when it was passed whole or any of its columns has one.
        let has_gradient = |var: VarId| {
            self.declared.contains(&var)
                || (self.f.elements.contains(&var)
                    && self
                        .f
                        .fields
                        .iter()
                        .any(|(p, _, c)| *p == var && self.declared.contains(c)))
        };
        let mut read: Vec<(Vec<syn::Member>, VarId)> = self
            .f
            .fields
            .iter()
            .filter(|(p, _, var)| *p == param && has_gradient(*var))
            .map(|(_, path, var)| (path.clone(), *var))
            .collect();
        read.sort_by_key(|(path, _)| path.len());
        let mut fields = TokenStream::new();
        let mut written: Vec<Vec<syn::Member>> = Vec::new();
        let rt = self.rt.clone();
        for (path, var) in read {
            let add = add_all || written.iter().any(|w| path.starts_with(w));
            if self.f.elements.contains(&var) {
                let d = self.elements_gradient(var);
                // Moved in as the field's container: a `Vec`, or a fixed-size array.
                fields.append_stream(match add {
                    true => quote!(#rt::acc_elements(&mut #g.#(#path).*, #d);),
                    false => quote!(#g.#(#path).* = #rt::into_elements(#d);),
                });
            } else {
                fields.append_stream(write(&g, &path, self.adj(var), add));
            }
            written.push(path);
        }
        quote!({
            let mut #g = #start;
            #fields
            #g
        })
    }

    /// The adjoint of a parameter after the sweep.
    pub fn gradient(&mut self, param: VarId) -> TokenStream {
        let rt = self.rt.clone();
        if self.declared.contains(&param) {
            self.adj(param).to_token_stream_()
        } else {
            let x = self.primal(param);
            quote!(#rt::zero_like(&#x))
        }
    }

    /// Zero adjoints, before a construct whose reverse adds to them, for the differentiated
    /// `targets` defined outside it (not in `inner`) that have none yet.
    fn declare_zero(&mut self, targets: BTreeSet<VarId>, inner: &HashSet<VarId>) -> TokenStream {
        let mut out = TokenStream::new();
        for v in targets {
            if inner.contains(&v) || !self.f.vars[v].active || self.declared.contains(&v) {
                continue;
            }
            self.declared.insert(v);
            let d = self.adj(v);
            let zero = self.zero_adjoint(v);
            out.append_stream(quote!(let mut #d = #zero;));
        }
        out
    }

    /// A zero adjoint for `v`: `0.0f64` for a known scalar, else shaped like `v`.
    fn zero_adjoint(&mut self, v: VarId) -> TokenStream {
        if self.f.vars[v].scalar {
            self.zero()
        } else if self.f.holds_elements(v) {
            let (rt, float, x) = (self.rt.clone(), self.float.clone(), self.primal(v));
            quote!(#rt::zero_elements::<#float, _>(&#x[..]))
        } else {
            let rt = self.rt.clone();
            let x = self.like(v);
            quote!(#rt::zero_like(&#x))
        }
    }

    /// Passes the adjoint of `from` (a loop's carried value, an `if`'s merge) on to `target`:
    /// by value for a known scalar, else by value or by reference as `by_ref` says.
    fn carry(&mut self, from: VarId, target: &Operand, by_ref: bool) -> TokenStream {
        let d = self.adj(from);
        if self.f.vars[from].scalar {
            self.contribute_as_is(target, &d)
        } else if by_ref {
            self.contribute(target, quote!(&#d))
        } else {
            self.contribute(target, quote!(#d))
        }
    }

    /// `0.0f64`: a zero of the function's float type.
    fn zero(&self) -> TokenStream {
        crate::signature::suffixed(&self.float, "0.0")
    }

    /// `0.0`: a zero whose type the code around it gives (`signature::constant`).
    fn unsuffixed_zero(&self) -> TokenStream {
        crate::signature::constant(&self.float, quote!(0.0))
    }

    /// A value whose shape alone is read (as the `like` of `init` or `zero_like`).
    fn like(&mut self, mut v: VarId) -> TokenStream {
        while let Some(&a) = self.alias.get(&v) {
            v = a;
        }
        // A loop's entry value has the shape of its storage, which holds the loop's output:
        // no need to record the entry for its shape.
        // Through nested loops: an inner loop's output may be an outer loop's exit.
        let mut storage = None;
        for shapes in self.loops.iter().rev() {
            if let Some(&after) = shapes.get(&storage.unwrap_or(v)) {
                storage = Some(after);
            }
        }
        if let Some(after) = storage {
            self.mark_shape(after);
            return self.f.vars[after].name.to_token_stream();
        }
        if self.used.len() > 1 {
            // Inside an arm: the arm's saved values are kept whole.
            self.mark_shape(v);
            return self.f.vars[v].name.to_token_stream();
        }
        // A value the reverse sweep reads only for its shape: the forward sweep frees it at
        // its end and rebinds the name to the shape (`__rt::into_like`).
        self.used_like.insert(v);
        self.f.vars[v].name.to_token_stream()
    }

    /// A primal variable read by the reverse sweep (so the forward sweep must keep it).
    fn primal(&mut self, mut v: VarId) -> Ident {
        while let Some(&a) = self.alias.get(&v) {
            v = a;
        }
        self.content_read.insert(v);
        self.mark_used(v);
        self.f.vars[v].name.clone()
    }

    /// A value kept for its shape alone (a `like`): kept, but its contents are not read.
    fn mark_shape(&mut self, v: VarId) {
        if let Some(frame) = self.used.last_mut() {
            frame.insert(v);
        }
    }

    fn operand(&mut self, o: &Operand) -> TokenStream {
        match o {
            Operand::Var(v) => self.primal(*v).to_token_stream_(),
            Operand::Const(t) => t.clone(),
        }
    }

    fn active(&self, o: &Operand) -> bool {
        o.var().is_some_and(|v| self.f.vars[v].active)
    }

    /// The values whose adjoints `b` adds to ([`targets_of`]), a part read by index standing
    /// for its slice ([`parts`]).
    fn targets_of(&self, b: &Block, out: &mut BTreeSet<VarId>) {
        let mut found = BTreeSet::new();
        targets_of(b, &mut found);
        out.extend(
            found
                .into_iter()
                .map(|v| self.parts.get(&v).map_or(v, |(x, _)| *x)),
        );
    }

    /// Adds contribution `c` into the adjoint of `target`.
    fn contribute(&mut self, target: &Operand, c: TokenStream) -> TokenStream {
        let Some(v) = target.var() else {
            return TokenStream::new();
        };
        if !self.f.vars[v].active {
            return TokenStream::new();
        }
        let d = self.adj(v);
        self.fresh_elements.remove(&d.to_string());
        let rt = &self.rt;
        if self.f.holds_elements(v) {
            // A slice of structs, from a function it was passed to whole: a `Vec` of the
            // struct, added element by element.
            let x = self.like(v);
            let rt = &self.rt;
            return match self.declared.insert(v) {
                // The first contribution is the adjoint (no zero `Vec` to add it into).
                true => quote!(let mut #d = #rt::elements_from(&#x[..], #c);),
                false => quote!(#rt::acc_elements(&mut #d, #c);),
            };
        }
        if self.declared.contains(&v) {
            quote!(#rt::acc(&mut #d, #c);)
        } else if let Some(view) = self.views.get(&v).cloned() {
            // The view's one contribution, into the viewed array's adjoint; the view gets no
            // adjoint (its own reverse, which would add that adjoint, is left out with it).
            let rt = rt.clone();
            let consts: Vec<TokenStream> = view.ints.iter().map(|i| self.operand(i)).collect();
            let name = Ident::new(view.scatter, Span::call_site());
            self.scatter(
                &view.base,
                |d| quote!(#rt::#name(&mut #d, #c, #(#consts),*);),
            )
        } else {
            self.declared.insert(v);
            let x = self.like(v);
            let rt = &self.rt;
            quote!(let mut #d = #rt::init(&#x, #c);)
        }
    }

    /// Adds `g`, a contribution for a unit adjoint, scaled by `by` into the adjoint of
    /// `target`: written out for a known scalar, element by element for a slice of structs.
    fn contribute_scaled(
        &mut self,
        target: &Operand,
        g: TokenStream,
        by: &TokenStream,
    ) -> TokenStream {
        let rt = self.rt.clone();
        match target.var() {
            Some(v) if self.f.vars[v].scalar => self.contribute_scalar(target, quote!(#g * #by)),
            Some(v) if self.f.holds_elements(v) => {
                // Checked to be a gradient of the slice (a function's pullback may give `()`).
                let x = self.operand(target);
                self.contribute(target, quote!(#rt::scale_elements_of(&#x[..], #g, #by)))
            }
            _ => self.contribute(target, quote!(#rt::scale(#g, #by))),
        }
    }

    /// Both of a binary operation's operands, when they are distinct active variables whose
    /// adjoints do not exist yet: their first contributions share a call.
    fn fresh_pair(&self, args: &[Operand]) -> Option<[VarId; 2]> {
        let [a, b] = args else { return None };
        let pair = [a.var()?, b.var()?];
        // (A view read once takes its contribution straight into its array's adjoint.)
        let fresh = |v: VarId| {
            self.f.vars[v].active && !self.declared.contains(&v) && !self.views.contains_key(&v)
        };
        (pair[0] != pair[1] && pair.into_iter().all(fresh)).then_some(pair)
    }

    /// Adds the scalar value `c` into the adjoint of `target`: written out (`d += c;`) when
    /// the target is a known scalar, through the runtime's `acc` otherwise.
    fn contribute_scalar(&mut self, target: &Operand, c: TokenStream) -> TokenStream {
        let Some(v) = target.var().filter(|&v| self.f.vars[v].active) else {
            return TokenStream::new();
        };
        if !self.f.vars[v].scalar {
            return self.contribute(target, c);
        }
        let d = &self.adj(v);
        // `c` is moved in, not copied (as interpolation would).
        let mut out = if self.declared.insert(v) {
            quote!(let mut #d =)
        } else {
            quote!(#d +=)
        };
        out.append_stream(c);
        out.append_stream(quote!(;));
        out
    }

    fn block(&mut self, b: &Block) -> TokenStream {
        let mut out = TokenStream::new();
        for s in b.stmts.iter().rev() {
            out.append_stream(self.stmt(s));
        }
        out
    }

    fn stmt(&mut self, s: &Stmt) -> TokenStream {
        let mut out = self.stmt_only(s);
        if let (Stmt::Let { var, .. }, Some((b, _))) = (s, &self.pending) {
            if var == b {
                out.extend(self.pending.take().map(|(_, code)| code));
            }
        }
        out
    }

    fn stmt_only(&mut self, s: &Stmt) -> TokenStream {
        match s {
            Stmt::Let { var, op } => self.let_stmt(*var, op),
            Stmt::If {
                then,
                els,
                phis,
                record,
                ..
            } => self.nested_in(|r| r.if_stmt(then, els, phis, *record)),
            Stmt::Effect(_) => TokenStream::new(),
            Stmt::Store {
                buf,
                index,
                value,
                part,
            } => self.store(*buf, index, value, part),
            Stmt::Loop(l) if self.f.early.contains(&l.tape.to_string()) => {
                self.nested_in(|r| r.early_loop(l))
            }
            Stmt::Loop(l) => self.nested_in(|r| r.loop_stmt(l)),
        }
    }

    /// The reverse of a loop or a branch, which forgets [`Self::fresh_elements`].
    fn nested_in(&mut self, reverse: impl FnOnce(&mut Self) -> TokenStream) -> TokenStream {
        self.fresh_elements.clear();
        self.nested += 1;
        let out = reverse(self);
        self.nested -= 1;
        self.fresh_elements.clear();
        out
    }

    /// In straight-line code at the top of the reverse sweep.
    fn top_level(&self) -> bool {
        self.nested == 0 && self.loops.is_empty()
    }

    /// `buf[index] = value` (or `buf.row_mut(index).assign(&value)`, a [`Part::View`]): the
    /// value receives the element's (the view's) adjoint, which the overwrite resets to zero
    /// (the value before the write did not reach the output through it).
    fn store(&mut self, buf: VarId, index: &Operand, value: &Operand, part: &Part) -> TokenStream {
        if !self.f.vars[buf].active || !self.declared.contains(&buf) {
            return TokenStream::new();
        }
        let d = self.adj(buf);
        self.fresh_elements.remove(&d.to_string());
        let i = self.operand(index);
        match part {
            Part::Element | Part::Grow => {
                let taken = quote!(::core::mem::take(&mut #d[#i]));
                if value.var().is_some_and(|v| self.increments.1.contains(&v)) {
                    // An update: the old value gets this adjoint, which stays in place.
                    self.contribute_scalar(value, quote!(#d[#i]))
                } else if self.active(value) {
                    // Taken by value: a plain float for a buffer of floats.
                    self.contribute_scalar(value, taken)
                } else {
                    quote!(let _ = #taken;)
                }
            }
            Part::View(method) => {
                // The view's adjoint, zeroed where it stands (the store overwrote the view),
                // summed to the value's shape if the value was broadcast.
                let rt = &self.rt;
                let taken = quote!(#rt::take_view(#d.#method(#i)));
                if self.active(value) {
                    self.contribute(value, taken)
                } else {
                    quote!(#taken;)
                }
            }
        }
    }

    /// Adds into a part of `base`'s adjoint in place: `add(d)` is the statement that does it on
    /// the adjoint `d`, which starts as zeros if nothing has reached it yet.
    fn scatter(&mut self, base: &Operand, add: impl FnOnce(&Ident) -> TokenStream) -> TokenStream {
        let Some(v) = base.var().filter(|&v| self.f.vars[v].active) else {
            return TokenStream::new();
        };
        let d = self.adj(v);
        let mut out = TokenStream::new();
        let key = d.to_string();
        if self.declared.insert(v) {
            // Shaped like `v` (a `Vec` of the struct for a slice of structs).
            let zero = self.zero_adjoint(v);
            out.append_stream(quote!(let mut #d = #zero;));
            if self.top_level() {
                self.fresh_elements.insert(key.clone(), HashSet::new());
            }
        }
        if !self.element_write {
            self.fresh_elements.remove(&key);
        }
        out.append_stream(add(&d));
        out
    }

    /// Adds `c` into the element `index` of `base`'s adjoint (written out when `c` is a known
    /// scalar).
    fn contribute_at(
        &mut self,
        base: &Operand,
        index: &Operand,
        c: TokenStream,
        scalar: bool,
    ) -> TokenStream {
        if !base.var().is_some_and(|v| self.f.vars[v].active) {
            return TokenStream::new();
        }
        let rt = self.rt.clone();
        let mut i = self.operand(index);
        let mut base = base.clone();
        let mut row = None;
        let part = base.var().and_then(|p| self.parts.get(&p)).cloned();
        if let Some((x, at)) = part.clone() {
            // An element of a part: straight into the slice's adjoint.
            match at {
                PartAt::Range(start) => {
                    let start = self.operand(&start);
                    i = quote!(#start + #i);
                }
                PartAt::Row(r) => row = Some(self.operand(&r)),
            }
            base = Operand::Var(x);
        }
        // A scalar at a constant index, in straight-line code: its first write since the
        // adjoint was declared zero is an assignment (`fresh_elements`).
        let Some(v) = base.var() else {
            return TokenStream::new();
        };
        let key = self.adj(v).to_string();
        // (An element of a part is at the part's start plus the index: not tracked.)
        let literal = match (index, scalar, part.is_none()) {
            (Operand::Const(t), true, true) if self.top_level() => {
                syn::parse2::<syn::LitInt>(t.clone())
                    .ok()
                    .and_then(|l| l.base10_parse::<u128>().ok())
            }
            _ => None,
        };
        let fresh = match self.declared.contains(&v) {
            false => self.top_level(),
            true => self.fresh_elements.contains_key(&key),
        };
        let assign = match literal {
            Some(k) if fresh => !self
                .fresh_elements
                .get(&key)
                .is_some_and(|w| w.contains(&k)),
            _ => false,
        };
        self.element_write = true;
        let out = self.scatter(&base, |d| {
            let d = match &row {
                Some(r) => quote!(#d[#r]),
                None => quote!(#d),
            };
            if assign {
                quote!(#d[#i] = #c;)
            } else if scalar {
                quote!(#d[#i] += #c;)
            } else {
                quote!(#rt::acc(&mut #d[#i], #c);)
            }
        });
        self.element_write = false;
        match literal {
            Some(k) if fresh => {
                self.fresh_elements.entry(key).or_default().insert(k);
            }
            _ => {
                self.fresh_elements.remove(&key);
            }
        }
        out
    }

    /// The reverse of a loop: its iterations backwards, each recomputing from the iteration's
    /// entry state the values its reverse needs (entries it overwrote come from a tape; values
    /// that never change are simply read), then propagating adjoints through the body.
    fn loop_stmt(&mut self, l: &Loop) -> TokenStream {
        let rt = self.rt.clone();
        let key = l.tape.to_string();
        let active: Vec<&Carried> = l
            .carried
            .iter()
            .filter(|c| self.f.vars[c.entry].active)
            .collect();
        let counted = !matches!(l.kind, LoopKind::For { .. }) || l.brk.is_some();
        if active.is_empty() && !has_active(&l.body, self.f) {
            self.plans.insert(key, LoopPlan::default());
            return TokenStream::new();
        }
        let mut out = TokenStream::new();
        // Adjoints of outer values that the body adds to.
        let inner: HashSet<VarId> = loop_defined(l).into_iter().collect();
        let mut targets = BTreeSet::new();
        self.targets_of(&l.body, &mut targets);
        for c in &l.carried {
            targets.extend(c.exit.var());
        }
        out.append_stream(self.declare_zero(targets, &inner));
        // The adjoint carried from iteration to iteration, starting from the loop's output.
        for c in &active {
            if !self.declared.contains(&c.after) {
                self.declared.insert(c.after);
                let d = self.adj(c.after);
                let zero = self.zero_adjoint(c.after);
                out.append_stream(quote!(let mut #d = #zero;));
            }
        }
        let (promotions, windows, slices) = self.promotions(l, &inner, true);
        let float = self.float.clone();
        let mut flush_after = TokenStream::new();
        for w in &windows {
            for reg in w.regs.iter().flatten() {
                out.append_stream({
                    let zero = self.unsuffixed_zero();
                    quote!(let mut #reg: #float = #zero;)
                });
            }
            let (first, start) = (&w.first, &w.start);
            out.append_stream(quote!(let #first = #start;));
            self.mark_tokens(start);
        }
        let snapshot = self.declared.clone();
        self.used.push(BTreeSet::new());
        self.promoted.push(promotions.clone());
        self.loops.push(storage_shapes(l, &inner));
        let mut body = TokenStream::new();
        for c in &active {
            body.append_stream(self.carry(c.after, &c.exit, false));
        }
        body.append_stream(self.block(&l.body));
        for w in &windows {
            body.append_stream(self.window_step(w, false));
        }
        self.promoted.pop();
        let declarations = self.declare_invariants(&promotions);
        flush_after.append_stream(self.flush_invariants(l, &promotions));
        for c in &active {
            let d = self.adj(c.after);
            let next = if self.declared.contains(&c.entry) {
                let e = self.adj(c.entry);
                if e == d {
                    // The entry took the carried adjoint as it is: it stays.
                    continue;
                }
                e.to_token_stream()
            } else {
                self.zero_adjoint(c.entry)
            };
            body.append_stream(quote!(#d = #next;));
        }
        self.loops.pop();
        self.declared = snapshot;
        // What the iteration must recompute first, and what that needs.
        let mut needed = self.used.pop().unwrap_or_default();
        // What the reverse body itself reads (a checkpointed iteration's rerun keeps only the
        // statements that lead to these, `rerun_slice`).
        let reverse_reads = needed.clone();
        let checkpoint = checkpoint_buffers(l, self.f.checkpoint);
        let snapshots: Vec<VarId> = checkpoint
            .iter()
            .copied()
            .filter(|b| {
                !crate::scratch::is_scratch(self.f, l, *b) && reads_contents(&l.body, *b, self.f)
            })
            .collect();
        // The values the forward iteration still reads at its end stay where they are.
        let stay: HashSet<VarId> = l
            .carried
            .iter()
            .filter_map(|c| c.exit.var())
            .chain(l.brk.as_ref().and_then(Operand::var))
            .collect();
        // Passive carried values the reverse reads (an index stepped by `p += stride`) that it
        // can step again itself if it visits the iterations forwards, instead of taping each
        // iteration's entry: their next values are recomputed with the iteration.
        let mut replay: Vec<&Carried> = Vec::new();
        if windows.is_empty() && checkpoint.is_empty() && self.order_free_shape(l) {
            let candidates = self.replayable(l);
            if !candidates.is_empty() {
                // Which entries the recomputation reads (a trial slice), and which the next
                // values of those read in turn.
                let mut reads = needed.clone();
                let (trial, shaped) = self.slice(&l.body, &mut reads, true, &stay);
                // The reverse will run backwards anyway (entries of other carried values, or
                // recorded or shaped values to read): nothing to replay.
                let backwards = !shaped.is_empty()
                    || !recorded_in(&l.body, &trial, self.f).is_empty()
                    || l.carried.iter().any(|c| {
                        reads.contains(&c.entry)
                            && !candidates.iter().any(|(r, _)| r.entry == c.entry)
                    });
                if !backwards {
                    let mut wanted: Vec<VarId> = candidates
                        .iter()
                        .map(|(c, _)| c.entry)
                        .filter(|e| reads.contains(e))
                        .collect();
                    let mut k = 0;
                    while let Some(&e) = wanted.get(k) {
                        for (_, deps) in candidates.iter().filter(|(c, _)| c.entry == e) {
                            for d in deps {
                                if !wanted.contains(d) {
                                    wanted.push(*d);
                                }
                            }
                        }
                        k += 1;
                    }
                    replay = candidates
                        .into_iter()
                        .map(|(c, _)| c)
                        .filter(|c| wanted.contains(&c.entry))
                        .collect();
                }
            }
        }
        for c in &replay {
            needed.extend(c.exit.var());
            needed.extend(c.init.var());
        }
        let replayed = |e: &VarId| replay.iter().any(|c| c.entry == *e);
        let (included, shaped) = self.slice(&l.body, &mut needed, checkpoint.is_empty(), &stay);
        for c in &replay {
            // Integer code names the storage, which the entry and the value after the loop
            // share: the reverse reads the entry it steps itself, not the value after.
            needed.remove(&c.after);
        }
        let mut entries: Vec<VarId> = l
            .carried
            .iter()
            .map(|c| c.entry)
            .filter(|e| (needed.contains(e) && !replayed(e)) || !checkpoint.is_empty())
            .collect();
        if !checkpoint.is_empty() {
            // The reverse runs the whole body again: all it reads must be kept.
            let mut uses = Vec::new();
            self.uses_deep(&l.body, &mut uses);
            needed.extend(uses);
            for n in direct_loops(&l.body) {
                self.plans.entry(n.tape.to_string()).or_default().rerun = true;
            }
        }
        for v in needed {
            if !inner.contains(&v) {
                self.mark_used(v);
            }
        }
        if let LoopKind::For { iter, .. } = &l.kind {
            self.mark_tokens(iter);
        }
        let reads = checkpoint.is_empty() && reads_tape(&l.body, &l.reads.tape);
        let fixed = if reads {
            fixed_reads(&l.body, &l.reads.tape)
        } else {
            None
        };
        let recorded = if checkpoint.is_empty() {
            recorded_in(&l.body, &included, self.f)
        } else {
            Vec::new()
        };
        // The plan first: the recomputation below reads the body's buffer reads from its tape.
        let exit_afters = self
            .plans
            .get(&key)
            .map(|p| p.exit_afters.clone())
            .unwrap_or_default();
        self.plans.insert(
            key,
            LoopPlan {
                entries: entries.clone(),
                reads,
                read_tape: reads.then(|| l.reads.tape.to_string()),
                fixed_reads: fixed,
                reads_reserved: fixed.is_some() && l.counted_range().is_some(),
                count: counted,
                exit_afters,
                reversed: true,
                direct: HashMap::new(),
                recorded_at_end: recorded
                    .iter()
                    .copied()
                    .filter(|v| {
                        !self.f.vars[*v].scalar
                            && !stay.contains(v)
                            && !self.f.recorded.get(v).is_some_and(|r| r.window)
                            && l.body.stmts.iter().any(|s| {
                                matches!(s, Stmt::Let { var, op: Op::Prim { .. } | Op::Map { .. } } if var == v)
                            })
                    })
                    .collect(),
                recorded,
                checkpoint: checkpoint.clone(),
                snapshots: snapshots.clone(),
                rerun: false,
                exits_reserved: self
                    .plans
                    .get(&l.tape.to_string())
                    .is_some_and(|p| p.exits_reserved),
                early: None,
                shaped,
            },
        );
        if l.counted_range().is_some() {
            for s in &l.body.stmts {
                if let Stmt::Loop(n) = s {
                    self.plans
                        .entry(n.tape.to_string())
                        .or_default()
                        .exits_reserved = true;
                }
            }
        }
        // The buffers' states at the iteration's start, restored before it runs again.
        let snapshot_names: Vec<Ident> = snapshots
            .iter()
            .map(|b| {
                Ident::new(
                    &format!("{}_at_entry", self.f.vars[*b].name),
                    crate::names::mixed_site(),
                )
            })
            .collect();
        let recompute = if checkpoint.is_empty() {
            crate::emit::again(
                self.f,
                &l.body,
                &included,
                false,
                &self.saved,
                &self.plans,
                &rt,
            )
        } else {
            let mut again = TokenStream::new();
            for (b, kept) in snapshots.iter().zip(&snapshot_names) {
                let buffer = &self.f.vars[*b].name;
                if self.f.flat.contains(b) {
                    // Its storage goes to the spare copies (`emit`'s `__rt::keep`).
                    again.append_stream(quote!(#rt::restore(&mut #buffer, #kept);));
                } else {
                    again.append_stream(quote!(#buffer = #kept;));
                }
            }
            let kept = self.rerun_slice(&l.body, reverse_reads);
            again.append_stream(crate::emit::again(
                self.f,
                &l.body,
                &kept,
                true,
                &self.saved,
                &self.plans,
                &rt,
            ));
            again
        };
        let count = &l.count;
        let order_free = windows.is_empty() && self.order_free(l, &l.tape.to_string());
        let mut replay_start = TokenStream::new();
        let mut replay_step = TokenStream::new();
        if !replay.is_empty() {
            if order_free {
                let names: Vec<&Ident> =
                    replay.iter().map(|c| &self.f.vars[c.entry].name).collect();
                let inits: Vec<TokenStream> = replay
                    .iter()
                    .map(|c| crate::emit::copy_of(self.f, c.init.var(), self.operand(&c.init)))
                    .collect();
                let exits: Vec<TokenStream> = replay
                    .iter()
                    .map(|c| crate::emit::named(self.f, &c.exit))
                    .collect();
                replay_start = quote!(#(let mut #names = #inits;)*);
                replay_step = crate::emit::assign_carried(&names, exits);
            } else {
                // Backwards after all, which the trial slice did not foresee: these entries
                // come from the tape too.
                entries = l
                    .carried
                    .iter()
                    .map(|c| c.entry)
                    .filter(|e| entries.contains(e) || replayed(e))
                    .collect();
                if let Some(p) = self.plans.get_mut(&l.tape.to_string()) {
                    p.entries = entries.clone();
                }
            }
        }
        let header = match &l.kind {
            LoopKind::For { var, iter } => {
                let i = &self.f.vars[*var].name;
                if order_free {
                    quote!(for #i in #iter)
                } else if l.brk.is_some() {
                    quote!(for #i in (#iter).take(#count).collect::<::std::vec::Vec<_>>().into_iter().rev())
                } else {
                    quote!(for #i in (#iter).rev())
                }
            }
            _ => quote!(for _ in 0..#count),
        };
        let tape = &l.tape;
        let start = Ident::new("reads_start", crate::names::mixed_site());
        let names: Vec<&Ident> = entries.iter().map(|e| &self.f.vars[*e].name).collect();
        let mut pop = TokenStream::new();
        let start_recorded = self
            .plans
            .get(&l.tape.to_string())
            .is_some_and(LoopPlan::records_read_start);
        // Popped where the forward sweep pushed (`LoopPlan::has_entries`).
        if !entries.is_empty() || start_recorded || !checkpoint.is_empty() {
            let names = names.iter().map(|n| n.to_token_stream());
            let pattern = if start_recorded {
                crate::emit::record_of(names.chain(Some(start.to_token_stream())))
            } else {
                crate::emit::record_of(
                    names.chain(snapshot_names.iter().map(|n| n.to_token_stream())),
                )
            };
            pop.append_stream(quote!(let #pattern = #rt::pop(&mut #tape);));
        }
        let mut truncate = TokenStream::new();
        // The reads of a `for i in a..b` loop with `r` reads per iteration as one window of the
        // tape: iteration `i` reads `r * (i - a)` onwards, and the tape is cut once after the
        // loop. The window's pointer and length stay in registers and the indices follow the
        // loop variable, so the reverse loop has no length to update per iteration and its
        // bounds checks can go.
        let mut tape_window = None;
        if reads {
            let (cursor, tape) = (&l.reads.cursor, &l.reads.tape);
            match (fixed, simple_range(l)) {
                (Some(r), Some((i, a, b))) if r > 0 => {
                    let i = &self.f.vars[i].name;
                    let base = Ident::new("reads_base", crate::names::mixed_site());
                    pop.append_stream(quote!(let mut #cursor = ((#i - (#a)) as usize) * #r;));
                    tape_window = Some((
                        quote! {
                            let #base = #tape.len()
                                - (if #a < #b { ((#b) - (#a)) as usize } else { 0 }) * #r;
                        },
                        quote!(let #tape = &#tape[#base..];),
                        quote!(#tape.truncate(#base);),
                    ));
                }
                _ => {
                    if let Some(r) = fixed {
                        // This iteration's reads are the last `r` on the tape.
                        pop.append_stream(quote!(let #start = #tape.len() - #r;));
                    }
                    pop.append_stream(quote!(let mut #cursor = #start;));
                    truncate.append_stream(quote!(#tape.truncate(#start);));
                }
            }
        }
        out.append_stream(declarations);
        out.append_stream(self.take_slices(&slices));
        let mut the_loop = quote!(#header { #pop #recompute #body #truncate #replay_step });
        if !replay_start.is_empty() {
            the_loop = quote!({ #replay_start #the_loop });
        }
        match tape_window {
            Some((base, window, cut)) => {
                out.append_stream(base);
                out.append_stream(quote!({ #window #the_loop }));
                out.append_stream(cut);
            }
            None => out.append_stream(the_loop),
        }
        out.append_stream(flush_after);
        for c in &active {
            out.append_stream(self.carry(c.after, &c.init, false));
        }
        out
    }

    /// The element reads of a loop's body whose adjoints can gather in registers: reads at the
    /// top of the body of an array that does not change, at an index that does not change
    /// with the iteration, or at the loop variable plus a constant in a `for i in a..b` loop.
    fn promotions(
        &mut self,
        l: &Loop,
        inner: &HashSet<VarId>,
        sliced: bool,
    ) -> (HashMap<VarId, Promotion>, Vec<Window>, Vec<Slice>) {
        let mut promotions = HashMap::new();
        let defs = top_level_defs(&l.body);
        let invariant = |o: &Operand| -> bool {
            match o {
                Operand::Const(_) => true,
                Operand::Var(v) if !inner.contains(v) => true,
                // A recorded value reads a buffer that changes.
                Operand::Var(v) if self.f.recorded.contains_key(v) => false,
                Operand::Var(v) => match defs.get(v) {
                    Some(Op::Verbatim(t)) => names_outside(&self.names, t, inner),
                    _ => false,
                },
            }
        };
        let simple = simple_range(l);
        let offset = |o: &Operand| -> Option<i64> {
            let (i, _, _) = simple.as_ref()?;
            let v = o.var()?;
            let code = match defs.get(&v) {
                Some(Op::Verbatim(t)) => Some(t),
                _ => None,
            };
            crate::tbr::offset_of(self.f, *i, v, code)
        };
        // Buffers the loop writes change under the reads (their reads are untaped when the
        // loop is checkpointed): their adjoints cannot wait in registers.
        let mut stored = HashSet::new();
        crate::tbr::stores(&l.body, &mut stored);
        let mut affine: Vec<(VarId, VarId, i64, Operand)> = Vec::new();
        for (var, b, index) in untaped_reads(&l.body) {
            // Registers hold floats: an element that is itself an array (`x[i]` of
            // `&[[f64; 3]]`) adds into its slot directly.
            if !self.f.vars[b].active
                || !self.f.vars[var].scalar
                || inner.contains(&b)
                || stored.contains(&b)
                || self.parts.contains_key(&b)
            {
                continue;
            }
            if invariant(index) {
                self.registers += 1;
                let n = self.registers;
                let reg = Ident::new(&format!("dreg{n}"), crate::names::mixed_site());
                let slot = Ident::new(&format!("dslot{n}"), crate::names::mixed_site());
                promotions.insert(var, Promotion::Invariant { reg, slot });
            } else if let Some(c) = offset(index) {
                affine.push((var, b, c, index.clone()));
            }
        }
        let mut windows = Vec::new();
        let mut bases: Vec<VarId> = affine.iter().map(|a| a.1).collect();
        bases.sort_unstable();
        bases.dedup();
        for b in bases {
            let reads: Vec<&(VarId, VarId, i64, Operand)> =
                affine.iter().filter(|a| a.1 == b).collect();
            let lo = reads.iter().map(|r| r.2).min().unwrap_or(0);
            let hi = reads.iter().map(|r| r.2).max().unwrap_or(0);
            // Contiguous offsets only: every register of the window has its own element read,
            // so every element in flight has an index to be written at.
            if hi == lo || (lo..=hi).any(|c| !reads.iter().any(|r| r.2 == c)) {
                continue;
            }
            self.registers += 1;
            let n = self.registers;
            let mut regs = Vec::new();
            let mut indices = Vec::new();
            for c in lo..=hi {
                match reads.iter().find(|r| r.2 == c) {
                    Some(r) => {
                        let reg =
                            Ident::new(&format!("dwin{n}_{}", c - lo), crate::names::mixed_site());
                        promotions.insert(r.0, Promotion::Window { reg: reg.clone() });
                        regs.push(Some(reg));
                        indices.push(Some(r.3.clone()));
                    }
                    None => {
                        regs.push(None);
                        indices.push(None);
                    }
                }
            }
            let Some((i, start, end)) = simple.clone() else {
                continue;
            };
            windows.push(Window {
                base: b,
                regs,
                indices,
                var: i,
                start,
                end,
                first: Ident::new(&format!("first{n}"), crate::names::mixed_site()),
            });
        }
        let slices = match &simple {
            Some((i, start, end)) if sliced => {
                self.slices(l, inner, &defs, &stored, (*i, start, end), &mut promotions)
            }
            _ => Vec::new(),
        };
        (promotions, windows, slices)
    }

    /// The [`Slice`]s of a `for i in a..b` loop: the arrays whose every use in the body is a
    /// read `base[k + i]` (or `base[i + k]`, `base[i]`) at its top level, with the same `k`
    /// for all, `k` not changing with the iteration, and whose adjoint is a `Vec` that exists
    /// before the loop. Their reads get [`Promotion::Slice`].
    fn slices(
        &mut self,
        l: &Loop,
        inner: &HashSet<VarId>,
        defs: &HashMap<VarId, &Op>,
        stored: &HashSet<VarId>,
        (i, start, end): (VarId, &TokenStream, &TokenStream),
        promotions: &mut HashMap<VarId, Promotion>,
    ) -> Vec<Slice> {
        let name = self.f.vars[i].name.clone();
        // `k` of an index `k + i`, `i + k` or `i` (`0`).
        let offset = |o: &Operand| -> Option<TokenStream> {
            let v = o.var()?;
            if v == i {
                return Some(quote!(0));
            }
            let Some(Op::Verbatim(t)) = defs.get(&v) else {
                return None;
            };
            let syn::Expr::Binary(b) = syn::parse2::<syn::Expr>(t.clone()).ok()? else {
                return None;
            };
            let is_i = |e: &syn::Expr| matches!(e, syn::Expr::Path(p) if p.path.is_ident(&name));
            let k = match b.op {
                syn::BinOp::Add(_) if is_i(&b.left) => &b.right,
                syn::BinOp::Add(_) if is_i(&b.right) => &b.left,
                _ => return None,
            };
            let k = k.to_token_stream();
            // The loop variable is one of the loop's own values (`loop_defined`).
            names_outside(&self.names, &k, inner).then_some(k)
        };
        let mut reads: BTreeMap<VarId, Vec<(VarId, TokenStream)>> = BTreeMap::new();
        for (var, b, index) in untaped_reads(&l.body) {
            let eligible = self.f.flat.contains(&b)
                && self.f.vars[b].active
                && self.declared.contains(&b)
                && !promotions.contains_key(&var)
                && !self.increments.0.contains(&var)
                && !inner.contains(&b)
                && !stored.contains(&b)
                && !self.parts.contains_key(&b)
                && !self.views.contains_key(&b);
            if let Some(k) = offset(index).filter(|_| eligible) {
                reads.entry(b).or_default().push((var, k));
            }
        }
        let mut uses: HashMap<VarId, usize> = HashMap::new();
        visit_uses(&l.body, true, &mut |v| *uses.entry(v).or_default() += 1);
        let mut out = Vec::new();
        // Parts and views of a base that the body uses add into the base's adjoint too: a
        // slice of it held across the loop would be a second borrow.
        let shared: HashSet<VarId> = self
            .parts
            .iter()
            .map(|(p, (b, _))| (*p, Some(*b)))
            .chain(self.views.iter().map(|(v, view)| (*v, view.base.var())))
            .filter(|(p, _)| uses.contains_key(p))
            .filter_map(|(_, b)| b)
            .collect();
        for (b, reads) in reads {
            let k = reads[0].1.to_string();
            if uses.get(&b) != Some(&reads.len())
                || reads.iter().any(|r| r.1.to_string() != k)
                || shared.contains(&b)
            {
                continue;
            }
            self.registers += 1;
            let window = Ident::new(
                &format!("dslice{}", self.registers),
                crate::names::mixed_site(),
            );
            let index = if start.to_string() == "0" {
                quote!(#name)
            } else {
                quote!(#name - (#start))
            };
            for (var, _) in &reads {
                promotions.insert(
                    *var,
                    Promotion::Slice {
                        window: window.clone(),
                        index: index.clone(),
                    },
                );
            }
            out.push(Slice {
                base: b,
                window,
                offset: reads[0].1.clone(),
                start: start.clone(),
                end: end.clone(),
            });
        }
        out
    }

    /// Takes a loop's [`Slice`]s of their adjoints, before its reverse.
    fn take_slices(&mut self, slices: &[Slice]) -> TokenStream {
        let mut out = TokenStream::new();
        for sl in slices {
            let d = &self.adj(sl.base);
            let (w, k, a, b) = (&sl.window, &sl.offset, &sl.start, &sl.end);
            let range = match (k.to_string() == "0", a.to_string() == "0") {
                // `..b` is in bounds for an empty loop too.
                (true, true) => quote!(..#b),
                (true, false) => quote!(if #a < #b { #a..#b } else { 0..0 }),
                (false, true) => quote!(if 0 < #b { #k..#k + #b } else { 0..0 }),
                (false, false) => quote!(if #a < #b { #k + #a..#k + #b } else { 0..0 }),
            };
            out.append_stream(quote!(let #w = &mut #d[#range];));
            for t in [k, a, b] {
                self.mark_tokens(t);
            }
        }
        out
    }

    /// The end of a reverse iteration for a window: the element leaving the window is
    /// complete and written; on the last iteration every element in the window is.
    fn window_step(&mut self, w: &Window, forward: bool) -> TokenStream {
        if forward {
            return self.window_step_forward(w);
        }
        let d = self.adj(w.base);
        let top = w.regs.len() - 1;
        let mut out = TokenStream::new();
        if let (Some(reg), Some(index)) = (&w.regs[top], &w.indices[top]) {
            let i = self.operand(index);
            out.append_stream(quote!(#d[#i] += #reg;));
        }
        let mut last = TokenStream::new();
        for (reg, index) in w.regs.iter().zip(&w.indices).take(top) {
            if let (Some(reg), Some(index)) = (reg, index) {
                let i = self.operand(index);
                last.append_stream(quote!(#d[#i] += #reg;));
            }
        }
        let var = self.f.vars[w.var].name.clone();
        let first = &w.first;
        out.append_stream(quote!(if #var == #first { #last }));
        // Shift: next iteration's offset c is this iteration's offset c - 1.
        for k in (0..=top).rev() {
            if let Some(reg) = &w.regs[k] {
                let from = if k == 0 { None } else { w.regs[k - 1].as_ref() };
                match from {
                    Some(prev) => out.append_stream(quote!(#reg = #prev;)),
                    None => {
                        let zero = self.unsuffixed_zero();
                        out.append_stream(quote!(#reg = #zero;))
                    }
                }
            }
        }
        out
    }

    /// The registers and slots of the promoted invariant reads that received contributions.
    fn declare_invariants(&self, promotions: &HashMap<VarId, Promotion>) -> TokenStream {
        let float = &self.float;
        let mut out = TokenStream::new();
        let mut promotions: Vec<(&VarId, &Promotion)> = promotions.iter().collect();
        promotions.sort_unstable_by_key(|(v, _)| **v);
        for (var, p) in promotions {
            if let Promotion::Invariant { reg, slot } = p {
                if self.promoted_used.contains(var) {
                    out.append_stream({ let zero = self.unsuffixed_zero(); quote!(let mut #reg: #float = #zero; let mut #slot = ::core::option::Option::None;) });
                }
            }
        }
        out
    }

    /// After a loop's reverse: each loop-invariant element's register, added into its array's
    /// adjoint at the index the loop read (if the loop ran at all).
    fn flush_invariants(&self, l: &Loop, promotions: &HashMap<VarId, Promotion>) -> TokenStream {
        let mut out = TokenStream::new();
        for s in &l.body.stmts {
            let Stmt::Let {
                var,
                op: Op::Index { base, .. },
            } = s
            else {
                continue;
            };
            if let (Some(Promotion::Invariant { reg, slot }), Some(b), true) = (
                promotions.get(var),
                base.var(),
                self.promoted_used.contains(var),
            ) {
                let d = &self.adj(b);
                out.append_stream(
                    quote!(if let ::core::option::Option::Some(k) = #slot { #d[k] += #reg; }),
                );
            }
        }
        out
    }

    /// The same for a loop reversed in forward order (fused): the element leaving the window
    /// is the one at the smallest offset, and the last iteration is the range's end minus one.
    fn window_step_forward(&mut self, w: &Window) -> TokenStream {
        let d = self.adj(w.base);
        let top = w.regs.len() - 1;
        let mut out = TokenStream::new();
        if let (Some(reg), Some(index)) = (&w.regs[0], &w.indices[0]) {
            let i = self.operand(index);
            out.append_stream(quote!(#d[#i] += #reg;));
        }
        let mut last = TokenStream::new();
        for (reg, index) in w.regs.iter().zip(&w.indices).skip(1) {
            if let (Some(reg), Some(index)) = (reg, index) {
                let i = self.operand(index);
                last.append_stream(quote!(#d[#i] += #reg;));
            }
        }
        let var = self.f.vars[w.var].name.clone();
        let first = &w.first;
        out.append_stream(quote!(if #var + 1 == #first { #last }));
        for k in 0..=top {
            if let Some(reg) = &w.regs[k] {
                match w.regs.get(k + 1).and_then(|r| r.as_ref()) {
                    Some(next) => out.append_stream(quote!(#reg = #next;)),
                    None => {
                        let zero = self.unsuffixed_zero();
                        out.append_stream(quote!(#reg = #zero;))
                    }
                }
            }
        }
        out
    }

    /// Which of a loop body's statements the reverse iteration recomputes: those defining a
    /// value in `needed` (growing `needed` by what they read, unless the value is popped: a
    /// recorded one, or one whose shape alone is needed, where `records`: [`Shaped`]), buffer
    /// reads (to keep the tape's cursor in step) and nested loops that left a record. Also
    /// returns those [`Shaped`] values: needed, not read by the reverse sweep
    /// (`content_read`) nor by a statement computed again, known arrays
    /// ([`Reverse::shape_recordable`]) and not one of `stay`.
    fn slice(
        &mut self,
        body: &Block,
        needed: &mut BTreeSet<VarId>,
        records: bool,
        stay: &HashSet<VarId>,
    ) -> (Vec<bool>, Vec<Shaped>) {
        let mut included = vec![false; body.stmts.len()];
        let mut shaped = Vec::new();
        // What the statements computed again read: their contents are needed.
        let mut read_again = BTreeSet::new();
        for (k, s) in body.stmts.iter().enumerate().rev() {
            let include = match s {
                Stmt::Let { var, op } => {
                    let taped = matches!(op, Op::Index { tape: Some(_), .. });
                    if taped && needed.contains(var) {
                        self.reads_needed.insert(*var);
                    } else if taped {
                        self.reads_kept.insert(*var);
                    }
                    needed.contains(var) || taped
                }
                Stmt::If {
                    then,
                    els,
                    phis,
                    record,
                    ..
                } => {
                    let include = needed.contains(record)
                        || phis.iter().any(|p| needed.contains(&p.out))
                        || self.keeps_records(then)
                        || self.keeps_records(els);
                    if include {
                        self.arm_exits(then);
                        self.arm_exits(els);
                    }
                    include
                }
                Stmt::Loop(nested) => {
                    let key = nested.tape.to_string();
                    let afters: Vec<VarId> = nested
                        .carried
                        .iter()
                        .map(|c| c.after)
                        .filter(|a| needed.contains(a))
                        .collect();
                    let plan = self.plans.entry(key).or_default();
                    plan.exit_afters = afters;
                    plan.has_exits()
                }
                Stmt::Store { .. } | Stmt::Effect(_) => false,
            };
            let popped =
                records && matches!(s, Stmt::Let { var, .. } if self.f.recorded.contains_key(var));
            if include {
                included[k] = true;
                // A buffer the recomputation reads directly, or names in integer code.
                match s {
                    Stmt::Let {
                        op:
                            Op::Index {
                                base, tape: None, ..
                            },
                        ..
                    } => self.content_read.extend(base.var()),
                    Stmt::Let {
                        op: Op::Verbatim(t),
                        ..
                    } => {
                        let mut names = Vec::new();
                        idents(t, &mut names);
                        for n in names {
                            self.content_read
                                .extend(self.names.get(&n).into_iter().flatten().copied());
                        }
                    }
                    _ => {}
                }
                if popped {
                    continue;
                }
                if let Stmt::Let { var, op } = s {
                    let shape = !self.content_read.contains(var) && !read_again.contains(var);
                    if records && shape && self.shape_recordable(*var, op, stay) {
                        let tape = Ident::new(
                            &format!("{}_shapes", self.f.vars[*var].name),
                            crate::names::mixed_site(),
                        );
                        shaped.push(Shaped { var: *var, tape });
                        continue;
                    }
                }
                let mut free = BTreeSet::new();
                self.free_vars(s, &mut free);
                read_again.extend(free.iter().copied());
                needed.extend(free);
            }
        }
        (included, shaped)
    }

    /// A loop body's value whose shape the forward iteration can record ([`Shaped`]): a known
    /// array (`Function::arrays`; a view too, whose shape does not need what it views) that
    /// an operation or a `mapv` computes. A value of unknown type (a call's result, arithmetic
    /// on one) may be a scalar, cheaper to compute again than to push and pop.
    fn shape_recordable(&self, var: VarId, op: &Op, stay: &HashSet<VarId>) -> bool {
        self.f.arrays.contains(&var)
            && !stay.contains(&var)
            && matches!(op, Op::Prim { .. } | Op::Map { .. })
    }

    /// The statements of a checkpointed loop's body that its rerun in the reverse sweep must
    /// run: those defining a value the iteration's reverse reads, storing into a buffer it
    /// reads, or pushing records a nested loop's reverse pops, and what those read in turn.
    /// The rest (typically the step's last update of the state, whose reverse is linear) are
    /// left out. A buffer the rerun leaves alone has its iteration's entry state or, a scratch
    /// buffer, a later iteration's values; neither is read, since every kept statement and the
    /// reverse read only buffers whose stores are all kept.
    fn rerun_slice(&self, body: &Block, reverse_reads: BTreeSet<VarId>) -> Vec<bool> {
        let mut needed: BTreeSet<VarId> = reverse_reads
            .into_iter()
            .filter(|v| !self.f.vars[*v].buffer || self.content_read.contains(v))
            .collect();
        let mut kept = vec![false; body.stmts.len()];
        for (k, s) in body.stmts.iter().enumerate().rev() {
            let keep = match s {
                Stmt::Let { var, .. } => needed.contains(var),
                Stmt::Store { buf, .. } => needed.contains(buf),
                Stmt::Effect(_) => false,
                // Its arm is recorded for the reverse sweep.
                Stmt::If { .. } => true,
                Stmt::Loop(n) => {
                    n.carried
                        .iter()
                        .any(|c| needed.contains(&c.after) || needed.contains(&c.entry))
                        || stores_into(&n.body, &needed)
                        || self.rerun_records(n)
                }
            };
            if keep {
                kept[k] = true;
                let mut reads = Vec::new();
                let mut names = Vec::new();
                stmt_reads(s, &mut reads, &mut names, false);
                needed.extend(reads);
                for n in names {
                    needed.extend(self.names.get(&n).into_iter().flatten().copied());
                }
            }
        }
        kept
    }

    /// Whether a nested loop's run in a rerun leaves anything its reverse sweep takes: records
    /// (entries, buffer reads, recorded values, a trip count), or nested code (conservatively).
    fn rerun_records(&self, n: &Loop) -> bool {
        let Some(plan) = self.plans.get(&n.tape.to_string()) else {
            return true;
        };
        plan.has_entries()
            || plan.reads
            || !plan.recorded.is_empty()
            || !plan.shaped.is_empty()
            || plan.count
            || !plan.checkpoint.is_empty()
            || n.body
                .stmts
                .iter()
                .any(|s| matches!(s, Stmt::Loop(_) | Stmt::If { .. }))
            || block_has_recorded(&n.body, self.f)
    }

    /// Does recomputing `b` consume records (buffer reads, nested loops' exits)?
    /// The loops in an `if` arm that a reverse iteration recomputes: the arm is recomputed
    /// whole, and a loop in it from its exit record, so each records every value it carries
    /// out (what the rest of the arm and its reverse read; without this, a value such as a
    /// sum computed by a loop in the arm was recomputed by nothing).
    fn arm_exits(&mut self, b: &Block) {
        for s in &b.stmts {
            match s {
                Stmt::Loop(nested) => {
                    let plan = self.plans.entry(nested.tape.to_string()).or_default();
                    if plan.exit_afters.is_empty() {
                        plan.exit_afters = nested.carried.iter().map(|c| c.after).collect();
                    }
                }
                Stmt::If { then, els, .. } => {
                    self.arm_exits(then);
                    self.arm_exits(els);
                }
                _ => {}
            }
        }
    }

    fn keeps_records(&self, b: &Block) -> bool {
        b.stmts.iter().any(|s| match s {
            Stmt::Let {
                op: Op::Index { tape: Some(_), .. },
                ..
            } => true,
            Stmt::If { then, els, .. } => self.keeps_records(then) || self.keeps_records(els),
            Stmt::Loop(l) => self
                .plans
                .get(&l.tape.to_string())
                .is_some_and(LoopPlan::has_exits),
            _ => false,
        })
    }

    /// The variables a statement reads that it does not define (as recomputed: a nested loop
    /// reads nothing, its record is popped).
    fn free_vars(&self, s: &Stmt, out: &mut BTreeSet<VarId>) {
        let mut names = Vec::new();
        match s {
            Stmt::Let { op, .. } => op_reads(op, &mut names, |v| {
                out.insert(v);
            }),
            Stmt::If {
                cond,
                then,
                els,
                phis,
                ..
            } => {
                idents(cond, &mut names);
                let mut inner = BTreeSet::new();
                for st in then.stmts.iter().chain(&els.stmts) {
                    self.free_vars(st, &mut inner);
                }
                for p in phis {
                    inner.extend(p.then.var());
                    inner.extend(p.els.var());
                }
                let defined: HashSet<VarId> = defined_deep(then)
                    .into_iter()
                    .chain(defined_deep(els))
                    .collect();
                out.extend(inner.into_iter().filter(|v| !defined.contains(v)));
            }
            Stmt::Store { .. } | Stmt::Effect(_) | Stmt::Loop(_) => {}
        }
        for n in names {
            if let Some(vs) = self.names.get(&n) {
                out.extend(vs.iter().copied());
            }
        }
    }

    /// A value the reverse sweep reads, recorded in the current frame.
    fn mark_used(&mut self, v: VarId) {
        if let Some(frame) = self.used.last_mut() {
            frame.insert(v);
        }
    }

    /// The variables named in verbatim tokens, recorded as read.
    fn mark_tokens(&mut self, tokens: &TokenStream) {
        let mut names = Vec::new();
        idents(tokens, &mut names);
        for n in names {
            if let Some(vs) = self.names.get(&n).cloned() {
                for v in vs {
                    self.content_read.insert(v);
                    self.mark_used(v);
                }
            }
        }
    }

    fn let_stmt(&mut self, var: VarId, op: &Op) -> TokenStream {
        if !self.f.vars[var].active || !self.declared.contains(&var) {
            return TokenStream::new();
        }
        let dy = self.adj(var);
        let rt = self.rt.clone();
        // A known scalar's rules are written out (`d_a += d_y * b;`); its adjoint is a plain
        // float, passed by value and never freed.
        let scalar = self.f.vars[var].scalar;
        let mut out = TokenStream::new();
        // Whether a contribution took the adjoint by value; otherwise it is freed at the end,
        // as nothing reads it after its variable's own statement.
        let mut moved = scalar;
        match op {
            Op::Copy(o) if scalar => out.append_stream(self.contribute_as_is(o, &dy)),
            Op::Copy(o) => out.append_stream(self.contribute(o, quote!(&#dy))),
            Op::Verbatim(_) => {}
            Op::Prim {
                rule, args, ints, ..
            } => match rule.adjoint {
                Adjoint::Zero => {}
                Adjoint::Linear(signs) if scalar => {
                    for (arg, &plus) in args.iter().zip(signs) {
                        if plus {
                            out.append_stream(self.contribute_as_is(arg, &dy));
                        } else {
                            out.append_stream(self.contribute_scalar(arg, quote!(-#dy)));
                        }
                    }
                }
                Adjoint::Linear(signs)
                    if self.fresh_pair(args).is_some() && self.lent.contains_key(&var) =>
                {
                    // The operand defined just before lends the adjoint (`main + t.dot(e)`):
                    // borrowed while that operand's statement is reversed, then moved to the
                    // other operand, instead of copied for the two (`__rt::lend`).
                    let b = self.lent[&var];
                    let k = usize::from(args[1].var() == Some(b));
                    let a = args[1 - k].var().unwrap_or_default();
                    let (xa, xb) = (self.like(a), self.like(b));
                    let (da, db) = (self.adj(a), self.adj(b));
                    self.declared.extend([a, b]);
                    moved = true;
                    let first = if signs[1 - k] {
                        quote!(#dy)
                    } else {
                        quote!(-#dy)
                    };
                    out.append_stream(quote!(let #db = #rt::lend(&#xb, &#dy);));
                    self.pending = Some((b, quote!(let mut #da = #rt::init(&#xa, #first);)));
                }
                Adjoint::Linear(signs) if self.fresh_pair(args).is_some() => {
                    // Both operands' first contributions: the runtime gives the adjoint by
                    // value to the operand shaped like it (`x.dot(w) + b`), not to the last.
                    let vars = self.fresh_pair(args).unwrap_or_default();
                    let (x0, x1) = (self.like(vars[0]), self.like(vars[1]));
                    let [d0, d1] = vars.map(|v| self.adj(v));
                    self.declared.extend(vars);
                    moved = true;
                    let (p0, p1) = (signs[0], signs[1]);
                    out.append_stream(quote!(
                        let (mut #d0, mut #d1) = #rt::init_pair(&#x0, &#x1, #dy, [#p0, #p1]);
                    ));
                }
                Adjoint::Linear(signs) => {
                    // The adjoint is dead after this statement: the last operand that receives
                    // it takes it by value (an array adjoint is moved, or negated in place, not
                    // copied).
                    let last = args.iter().rposition(|a| self.active(a));
                    moved = last.is_some();
                    let mut order: Vec<usize> =
                        (0..args.len()).filter(|&k| Some(k) != last).collect();
                    order.extend(last);
                    for k in order {
                        let c = match (signs[k], Some(k) == last) {
                            (true, true) => quote!(#dy),
                            (true, false) => quote!(&#dy),
                            (false, true) => quote!(-#dy),
                            (false, false) => quote!(-&#dy),
                        };
                        out.append_stream(self.contribute(&args[k], c));
                    }
                }
                Adjoint::Elementwise(templates) => {
                    let n = ints.first().map(|i| self.operand(i)).unwrap_or_default();
                    let reciprocal = rule.name == "div" && args.first().is_some_and(is_one);
                    let mut repeated = TokenStream::new();
                    // An array adjoint's contributions go into existing adjoints first; the
                    // one that starts a new adjoint comes last and is written over `dy`
                    // (an operand read once, whose adjoint does not exist yet).
                    let last = if scalar {
                        None
                    } else {
                        // (An operand read twice, `&q * &q`, makes one contribution.)
                        (0..args.len()).rev().find(|&k| {
                            let v = args[k].var();
                            self.active(&args[k])
                                && v.is_some_and(|v| !self.declared.contains(&v))
                                && !args[k + 1..].iter().any(|a| a.var() == v)
                        })
                    };
                    let mut order: Vec<usize> =
                        (0..args.len()).filter(|&k| Some(k) != last).collect();
                    order.extend(last);
                    if let Some(p) = self.powers.get(&var).copied().filter(|_| scalar) {
                        // `x^n` as a product: the chain's derivative into `x` at once.
                        let base = Operand::Var(p.base);
                        if self.active(&base) {
                            let lower = self.operand(&args[p.lower]);
                            let n = crate::signature::suffixed(&self.float, &format!("{}.0", p.n));
                            out.append_stream(
                                self.contribute_scalar(&base, quote!(#n * #dy * #lower)),
                            );
                        }
                        order.clear();
                    }
                    for k in order {
                        let (arg, template) = (&args[k], &templates[k]);
                        if !self.active(arg) {
                            continue;
                        }
                        let template = if reciprocal && k == 1 {
                            &crate::rules::QUOTIENT_OF_ONE
                        } else {
                            template
                        };
                        if scalar {
                            let c = self.inline(var, args, n.clone(), template);
                            // An operand read twice (`s * s`): its two contributions are added
                            // together first, so its adjoint's chain of additions gets one
                            // link, not two.
                            let again = args[k + 1..].iter().any(|a| a.var() == arg.var());
                            if again {
                                repeated.append_stream(quote!((#c) +));
                                continue;
                            }
                            let c = if args[..k].iter().any(|a| a.var() == arg.var()) {
                                quote!(#repeated (#c))
                            } else {
                                c
                            };
                            out.append_stream(self.contribute_scalar(arg, c));
                        } else {
                            // An operand read twice (`&q * &q`): one pass for both of its
                            // contributions, at its last position.
                            if args[k + 1..].iter().any(|a| a.var() == arg.var()) {
                                continue;
                            }
                            let mut all: Vec<&Template> = (0..k)
                                .filter(|&j| args[j].var() == arg.var())
                                .map(|j| {
                                    if reciprocal && j == 1 {
                                        &crate::rules::QUOTIENT_OF_ONE
                                    } else {
                                        &templates[j]
                                    }
                                })
                                .collect();
                            all.push(template);
                            let names = Args::new(n.clone(), self.float.clone());
                            // The adjoint's last use may write the contribution over it.
                            let (add, consumed) = self.contribute_elementwise(
                                var,
                                arg,
                                args,
                                &names,
                                &all,
                                Some(k) == last,
                            );
                            out.append_stream(add);
                            moved |= consumed;
                        }
                    }
                }
                Adjoint::Scatter(name) => {
                    let consts: Vec<TokenStream> = ints.iter().map(|i| self.operand(i)).collect();
                    let name = Ident::new(name, Span::call_site());
                    out.append_stream(self.scatter(
                        &args[0],
                        |d| quote!(#rt::#name(&mut #d, &#dy, #(#consts),*);),
                    ));
                }
                Adjoint::Runtime(adjoints) => {
                    for (k, (arg, name)) in args.iter().zip(adjoints).enumerate() {
                        if self.active(arg) {
                            // Its own operand for its shape alone.
                            let operands: Vec<TokenStream> = args
                                .iter()
                                .enumerate()
                                .map(|(j, a)| match a.var() {
                                    Some(v) if j == k => self.like(v),
                                    _ => self.operand(a),
                                })
                                .collect();
                            let consts: Vec<TokenStream> =
                                ints.iter().map(|i| self.operand(i)).collect();
                            let name = Ident::new(name, Span::call_site());
                            let c = quote!(#rt::#name(#(&#operands,)* &#dy, #(#consts),*));
                            out.append_stream(self.contribute(arg, c));
                        }
                    }
                }
            },
            Op::Index { .. } if self.increments.0.contains(&var) => {}
            Op::Index { base, index, .. } => {
                match self.promoted.last().and_then(|p| p.get(&var)).cloned() {
                    Some(Promotion::Invariant { reg, slot }) => {
                        self.promoted_used.insert(var);
                        let i = self.operand(index);
                        out.append_stream(
                            quote!(#reg += #dy; #slot = ::core::option::Option::Some(#i);),
                        );
                    }
                    Some(Promotion::Window { reg }) => out.append_stream(quote!(#reg += #dy;)),
                    Some(Promotion::Slice { window, index }) if scalar => {
                        out.append_stream(quote!(#window[#index] += #dy;))
                    }
                    Some(Promotion::Slice { window, index }) => {
                        moved = true;
                        out.append_stream(quote!(#rt::acc(&mut #window[#index], #dy);))
                    }
                    None => {
                        // An element that is no scalar (a row of nested `Vec`s) is taken by
                        // the accumulation.
                        moved |= !scalar;
                        out.append_stream(self.contribute_at(base, index, quote!(#dy), scalar))
                    }
                }
            }
            Op::Map { recv, func, .. } => {
                if self.active(recv) {
                    let names = Args::new(TokenStream::new(), self.float.clone());
                    let c = match func {
                        MapFn::Rule(rule, _) => match rule.adjoint {
                            Adjoint::Elementwise([template]) => {
                                // The adjoint's one use: the contribution is written over it.
                                moved = true;
                                self.elementwise_call(
                                    var,
                                    std::slice::from_ref(recv),
                                    &names,
                                    &[template],
                                    Dest::Over,
                                )
                            }
                            _ => quote!(#rt::zero_like(&#dy)),
                        },
                        MapFn::Closure { function, .. } => {
                            let x = self.operand(recv);
                            let y = self.primal(var);
                            let f = self.float.clone();
                            let p = &function.vars[0].name;
                            let seed = &names.dy;
                            let body =
                                crate::emit::closure_pullback(function, &f, &rt, quote!(#seed));
                            quote!(#rt::pb1(&#x, &#y, &#dy, |#p: #f, _: #f, #seed: #f| -> #f #body))
                        }
                    };
                    out.append_stream(self.contribute(recv, c));
                }
            }
            Op::Fused { .. } if self.direct.contains(&var) => {}
            Op::Fused {
                inputs,
                grads: Some((_, pack)),
                ..
            } => {
                // The derivatives the forward sweep's pass computed (`__rt::fused_sum_grad`).
                let pack = self.primal(*pack);
                // Mixed-site names: they cannot clash with any other name in the function.
                let parts: Vec<Ident> = (0..inputs.len())
                    .map(|k| Ident::new(&format!("d_in{k}"), crate::names::mixed_site()))
                    .collect();
                out.append_stream(quote!(let (#(#parts,)*) = #pack;));
                for (input, part) in inputs.iter().zip(&parts) {
                    if self.active(input) {
                        out.append_stream(self.contribute(input, quote!(#rt::scale(#part, #dy))));
                    }
                }
            }
            Op::Fused { grads: None, .. } => {}
            Op::Call {
                callee,
                args,
                refs,
                tuple,
                grads,
            } => {
                let pullback = callee.pullback(|r| self.operand(r));
                // A tuple's adjoint, held as an array, goes back as the tuple.
                let dy = match tuple {
                    Some(_) => quote!(::core::convert::Into::into(#dy)),
                    None => dy.to_token_stream(),
                };
                let operands: Vec<TokenStream> = args
                    .iter()
                    .zip(refs)
                    .map(|(a, r)| {
                        let tokens = self.operand(a);
                        crate::emit::call_argument(self.f, a, tokens, *r)
                    })
                    .collect();
                // Mixed-site names: they cannot clash with any other name in the function. A
                // method's pullback gives its receiver's gradient first (`()` when it is not
                // differentiated).
                let receiver = callee.receiver().cloned();
                let d_recv = Ident::new("d_receiver", crate::names::mixed_site());
                let parts: Vec<Ident> = receiver
                    .iter()
                    .map(|_| d_recv.clone())
                    .chain(
                        (0..args.len())
                            .map(|k| Ident::new(&format!("d_arg{k}"), crate::names::mixed_site())),
                    )
                    .collect();
                let pattern = if parts.len() == 1 {
                    let p = &parts[0];
                    quote!(#p)
                } else {
                    quote!((#(#parts),*))
                };
                match grads {
                    // The pullback for a unit adjoint, which the forward sweep took with the
                    // value (`calls`): scaled by the call's adjoint.
                    Some((_, pack)) => {
                        let pack = self.primal(*pack);
                        out.append_stream(quote!(let #pattern = #pack;));
                    }
                    None => {
                        out.append_stream(quote!(let #pattern = #pullback(#(#operands,)* #dy);));
                    }
                }
                moved = true;
                if let Some(r) = receiver.filter(|r| self.active(r)) {
                    // Checked on its own (a clear error when the method gives `()` for it).
                    let rt = &self.rt;
                    out.append_stream(quote!(let #d_recv = #rt::receiver_gradient(#d_recv);));
                    out.append_stream(self.contribute(&r, quote!(#d_recv)));
                }
                let arg_parts = &parts[parts.len() - args.len()..];
                for (arg, part) in args.iter().zip(arg_parts) {
                    // An element of a slice of structs: checked on its own too.
                    if arg.var().is_some_and(|v| self.element_reads.contains(&v)) {
                        let rt = &self.rt;
                        out.append_stream(quote!(let #part = #rt::element_gradient(#part);));
                    }
                    match grads {
                        Some(_) => {
                            let scaled = self.contribute_scaled(arg, quote!(#part), &dy);
                            out.append_stream(scaled);
                        }
                        None => out.append_stream(self.contribute(arg, quote!(#part))),
                    }
                }
            }
        }
        if !moved {
            out.append_stream(quote!(#rt::release(#dy);));
        }
        out
    }

    /// Adds an element-wise rule's contribution into `target`'s adjoint: into the adjoint in
    /// place (`__rt::acc_pbN`, no array for the contribution) once it exists, else as its
    /// first contribution, written over the output's adjoint (`__rt::pbN_owned`) when this is
    /// that adjoint's `last` use. Says whether it took the output's adjoint.
    fn contribute_elementwise(
        &mut self,
        var: VarId,
        target: &Operand,
        args: &[Operand],
        names: &Args,
        templates: &[&Template],
        last: bool,
    ) -> (TokenStream, bool) {
        match target.var().filter(|&v| self.f.vars[v].active) {
            Some(v) if self.declared.contains(&v) => {
                let d = self.adj(v);
                let add = self.elementwise_call(var, args, names, templates, Dest::Adjoint(&d));
                (quote!(#add;), false)
            }
            _ => {
                let dest = if last { Dest::Over } else { Dest::New };
                let c = self.elementwise_call(var, args, names, templates, dest);
                (self.contribute(target, c), last)
            }
        }
    }

    /// `__rt::pbN(&operands.., &y, &dy, |x: F, y: F, dy: F| -> F { body })`, a new array; with
    /// [`Dest::Over`], `__rt::pbN_owned(.., dy, ..)` written over `dy`; with
    /// [`Dest::Adjoint`], `__rt::acc_pbN(&mut d, ..)` added into an adjoint. Operands the
    /// template does not read are passed as a zero, so they need not be kept. Several
    /// templates (an operand read twice) make one closure, the sum of their bodies.
    fn elementwise_call(
        &mut self,
        var: VarId,
        args: &[Operand],
        names: &Args,
        templates: &[&Template],
        dest: Dest<'_>,
    ) -> TokenStream {
        let uses = |name: &str| templates.iter().any(|t| t.uses.contains(&name));
        let rt = self.rt.clone();
        let f = self.float.clone();
        let dy = self.adj(var);
        let zero = self.zero();
        let mut params = Vec::new();
        let mut operands = Vec::new();
        for (k, a) in args.iter().enumerate() {
            let name = Args::operand_name(k, args.len());
            params.push(names.operand(k, args.len()));
            operands.push(if uses(name) {
                self.operand(a)
            } else {
                zero.clone()
            });
        }
        let yv = if uses("y") {
            self.primal(var).to_token_stream()
        } else {
            zero.clone()
        };
        let (y, yd) = (&names.y, &names.dy);
        let bodies: Vec<TokenStream> = templates.iter().map(|t| (t.body)(names)).collect();
        let body = quote!(#((#bodies))+*);
        let n = args.len();
        let (pb, dst, dy) = match dest {
            Dest::Adjoint(d) => (format_ident!("acc_pb{n}"), quote!(&mut #d,), quote!(&#dy)),
            Dest::New => (format_ident!("pb{n}"), TokenStream::new(), quote!(&#dy)),
            Dest::Over => (
                format_ident!("pb{n}_owned"),
                TokenStream::new(),
                quote!(#dy),
            ),
        };
        quote!(#rt::#pb(#dst #(&#operands,)* &#yv, #dy, |#(#params: #f,)* #y: #f, #yd: #f| -> #f { #body }))
    }

    /// A known scalar's rule written out: the template with its names replaced by the operands,
    /// the output and the adjoint themselves (`d_y * b`).
    fn inline(
        &mut self,
        var: VarId,
        args: &[Operand],
        n: TokenStream,
        template: &Template,
    ) -> TokenStream {
        let mut names = Args::inline(n, self.float.clone());
        for (k, a) in args.iter().enumerate() {
            if template.uses.contains(&Args::operand_name(k, args.len())) {
                let o = self.operand(a);
                // A path to a constant is parenthesised, so that `.cos()` applies to it whole.
                *names.operand_mut(k, args.len()) = if o.clone().into_iter().count() > 1 {
                    quote!((#o))
                } else {
                    o
                };
            }
        }
        if template.uses.contains(&"y") {
            names.y = self.primal(var).to_token_stream();
        }
        names.dy = self.adj(var).to_token_stream();
        (template.body)(&names)
    }

    fn if_stmt(
        &mut self,
        then: &Block,
        els: &Block,
        phis: &[crate::ir::Phi],
        record: VarId,
    ) -> TokenStream {
        let rt = self.rt.clone();
        // Adjoints of outer values that first receive a contribution inside an arm.
        let inner: HashSet<VarId> = defined_deep(then)
            .into_iter()
            .chain(defined_deep(els))
            .collect();
        let mut targets = BTreeSet::new();
        self.targets_of(then, &mut targets);
        self.targets_of(els, &mut targets);
        for p in phis {
            if self.declared.contains(&p.out) {
                targets.extend(p.then.var());
                targets.extend(p.els.var());
            }
        }
        let mut out = TokenStream::new();
        out.append_stream(self.declare_zero(targets, &inner));
        let mut arms = Vec::new();
        for (k, arm) in [then, els].into_iter().enumerate() {
            let snapshot = self.declared.clone();
            self.used.push(BTreeSet::new());
            let defined: HashSet<VarId> = arm.defined().into_iter().collect();
            let aliased: Vec<VarId> = phis
                .iter()
                .filter_map(|p| {
                    let src = if k == 0 { p.then.var() } else { p.els.var() }?;
                    (defined.contains(&src) && self.alias.insert(src, p.out).is_none())
                        .then_some(src)
                })
                .collect();
            let mut code = TokenStream::new();
            for p in phis {
                if self.f.vars[p.out].active && snapshot.contains(&p.out) {
                    let src = if k == 0 { &p.then } else { &p.els };
                    code.append_stream(self.carry(p.out, src, true));
                }
            }
            code.append_stream(self.block(arm));
            let used = self.used.pop().unwrap_or_default();
            self.declared = snapshot;
            for v in aliased {
                self.alias.remove(&v);
            }
            let mut saved: BTreeSet<VarId> = used
                .iter()
                .copied()
                .filter(|v| defined.contains(v))
                .collect();
            // A view of a value the arm defines (`insert_axis(&t0, ..)` of `t0 = m.column(0)`)
            // borrows it, and cannot leave the arm beside it in the branch record: its owner
            // leaves instead, and the view is taken again at the top of the arm's reverse.
            let mut again = vec![false; arm.stmts.len()];
            loop {
                let borrowed = arm.stmts.iter().enumerate().find_map(|(k, s)| match s {
                    Stmt::Let {
                        var,
                        op: Op::Prim { rule, args, .. },
                    } if saved.contains(var)
                        && rule.borrows()
                        && args
                            .first()
                            .and_then(|a| a.var())
                            .is_some_and(|o| defined.contains(&o)) =>
                    {
                        Some((k, *var, args))
                    }
                    _ => None,
                });
                let Some((k, var, args)) = borrowed else {
                    break;
                };
                saved.remove(&var);
                again[k] = true;
                saved.extend(
                    args.iter()
                        .filter_map(|a| a.var())
                        .filter(|a| defined.contains(a)),
                );
            }
            if again.contains(&true) {
                let mut taken =
                    crate::emit::again(self.f, arm, &again, false, &self.saved, &self.plans, &rt);
                taken.append_stream(code);
                code = taken;
            }
            let saved: Vec<VarId> = saved.into_iter().collect();
            for v in used {
                if !defined.contains(&v) {
                    if let Some(frame) = self.used.last_mut() {
                        frame.insert(v);
                    }
                }
            }
            arms.push((code, saved));
        }
        if arms.iter().all(|(code, _)| code.is_empty()) {
            return out;
        }
        let (else_code, else_saved) = arms.pop().unwrap_or_default();
        let (then_code, then_saved) = arms.pop().unwrap_or_default();
        // A buffer comes back writable: a checkpointed loop in the arm restores its contents.
        let names = |vs: &[VarId]| -> Vec<TokenStream> {
            vs.iter()
                .map(|v| {
                    let var = &self.f.vars[*v];
                    let name = &var.name;
                    if var.buffer {
                        quote!(mut #name)
                    } else {
                        quote!(#name)
                    }
                })
                .collect()
        };
        let (tn, en) = (names(&then_saved), names(&else_saved));
        let br = self.primal(record);
        out.append_stream(quote! {
            match #br {
                #rt::Branch::Then((#(#tn,)*)) => { #then_code }
                #rt::Branch::Else((#(#en,)*)) => { #else_code }
            }
        });
        self.saved.insert(record, (then_saved, else_saved));
        out
    }
}

/// Does `b` hold a loop or a taped buffer read (records a loop's reverse would keep per
/// iteration)?
/// Integer code `t` names no value of the loop (`inner`, by the variables each name in
/// `names` stands for): it does not change with the iteration.
fn names_outside(
    names: &HashMap<String, Vec<VarId>>,
    t: &TokenStream,
    inner: &HashSet<VarId>,
) -> bool {
    let mut found = Vec::new();
    idents(t, &mut found);
    found.iter().all(|n| {
        names
            .get(n)
            .is_none_or(|vs| vs.iter().all(|v| !inner.contains(v)))
    })
}

/// The element reads `var = base[index]` at the top of a loop body that are not taped: by
/// `(var, base, index)`.
fn untaped_reads(body: &Block) -> impl Iterator<Item = (VarId, VarId, &Operand)> {
    body.stmts.iter().filter_map(|s| match s {
        Stmt::Let {
            var,
            op:
                Op::Index {
                    base: Operand::Var(b),
                    index,
                    tape: None,
                    ..
                },
        } => Some((*var, *b, index)),
        _ => None,
    })
}

fn keeps_records_deep(b: &Block) -> bool {
    b.stmts.iter().any(|s| match s {
        Stmt::Loop(_) => true,
        Stmt::Let {
            op: Op::Index { tape: Some(_), .. },
            ..
        } => true,
        Stmt::If { then, els, .. } => keeps_records_deep(then) || keeps_records_deep(els),
        _ => false,
    })
}

/// Is `o` the literal one (`1.0`, `1.0f64`)?
fn is_one(o: &Operand) -> bool {
    let Operand::Const(t) = o else {
        return false;
    };
    match syn::parse2::<syn::Lit>(t.clone()) {
        Ok(syn::Lit::Float(f)) => f.base10_parse::<f64>().is_ok_and(|v| v == 1.0),
        Ok(syn::Lit::Int(i)) => i.base10_parse::<u64>().is_ok_and(|v| v == 1),
        _ => false,
    }
}

/// The loops at the top of the function's body.
fn top_level_loops(f: &Function) -> Vec<&Loop> {
    f.body
        .stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Loop(l) => Some(&**l),
            _ => None,
        })
        .collect()
}

/// The variables bound to an element of a slice of structs (`Reverse::element_reads`).
fn element_reads(f: &Function) -> HashSet<VarId> {
    let mut out = HashSet::new();
    visit_blocks(&f.body, &mut |b| {
        for s in &b.stmts {
            if let Stmt::Let {
                var,
                op:
                    Op::Index {
                        base: Operand::Var(x),
                        ..
                    },
            } = s
            {
                if f.holds_elements(*x) {
                    out.insert(*var);
                }
            }
        }
    });
    out
}

/// Every variable defined in `b`, its arms included.
fn defined_deep(b: &Block) -> Vec<VarId> {
    let mut out = b.defined();
    for s in &b.stmts {
        match s {
            Stmt::If { then, els, .. } => {
                out.extend(defined_deep(then));
                out.extend(defined_deep(els));
            }
            Stmt::Loop(l) => {
                out.extend(loop_defined(l));
            }
            _ => {}
        }
    }
    out
}

/// Entries and exits of a loop's carried variables have the shape of their storage: their
/// shape is read from it, so they are never recorded or recomputed just for their shape.
fn storage_shapes(l: &Loop, inner: &HashSet<VarId>) -> HashMap<VarId, VarId> {
    let mut shapes: HashMap<VarId, VarId> = l.carried.iter().map(|c| (c.entry, c.after)).collect();
    for c in &l.carried {
        if let Some(e) = c.exit.var().filter(|e| inner.contains(e)) {
            shapes.entry(e).or_insert(c.after);
        }
    }
    shapes
}

/// Every variable defined inside a loop: its body's, its entries, its index.
/// The operations of `b`'s own `let`s (not those in its branches or loops), by variable.
fn top_level_defs(b: &Block) -> HashMap<VarId, &Op> {
    b.stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Let { var, op } => Some((*var, op)),
            _ => None,
        })
        .collect()
}

pub fn loop_defined(l: &Loop) -> Vec<VarId> {
    let mut out = defined_deep(&l.body);
    out.extend(l.carried.iter().map(|c| c.entry));
    if let LoopKind::For { var, .. } = &l.kind {
        out.push(*var);
    }
    out
}

/// Every variable whose adjoint `b`'s reverse sweep may add to.
fn targets_of(b: &Block, out: &mut BTreeSet<VarId>) {
    operand_uses(b, out, true)
}

/// The values `b` uses where an adjoint can flow back to them: operands, merged and carried
/// values, stored buffers and values; the bases of element reads only if `index_bases`.
fn operand_uses(b: &Block, out: &mut BTreeSet<VarId>, index_bases: bool) {
    visit_uses(b, index_bases, &mut |v| {
        out.insert(v);
    });
}

/// Calls `each` once per use of a value as [`operand_uses`] describes them.
fn visit_uses(b: &Block, index_bases: bool, each: &mut impl FnMut(VarId)) {
    for s in &b.stmts {
        match s {
            Stmt::Let {
                op: Op::Index { .. },
                ..
            } if !index_bases => {}
            Stmt::Let { op, .. } => op
                .operands()
                .into_iter()
                .filter_map(Operand::var)
                .for_each(&mut *each),
            Stmt::If {
                then, els, phis, ..
            } => {
                visit_uses(then, index_bases, each);
                visit_uses(els, index_bases, each);
                for p in phis {
                    p.then
                        .var()
                        .into_iter()
                        .chain(p.els.var())
                        .for_each(&mut *each);
                }
            }
            Stmt::Store { buf, value, .. } => {
                each(*buf);
                value.var().into_iter().for_each(&mut *each);
            }
            Stmt::Loop(l) => {
                visit_uses(&l.body, index_bases, each);
                for c in &l.carried {
                    c.init
                        .var()
                        .into_iter()
                        .chain(c.exit.var())
                        .for_each(&mut *each);
                }
            }
            Stmt::Effect(_) => {}
        }
    }
}

/// Sums `y = a + b` (or `b + a`, `a - b`: `b` with a plus sign) of known arrays whose operand
/// `b` the statement just before defines with a tensor primitive (`b = t.dot(e)`) that does
/// not read `a`, by `y`, with `b`. When both operands get their first adjoint there, `b`'s
/// adjoint borrows `y`'s (or is reduced from it, `__rt::lend`) while `b`'s statement is
/// reversed (its runtime adjoints read `dy` by reference), and `a` takes `y`'s adjoint by value
/// after that: no copy of the adjoint for two operands of the same shape.
fn lent_sums(f: &Function) -> HashMap<VarId, VarId> {
    let mut out = HashMap::new();
    visit_blocks(&f.body, &mut |block| {
        for pair in block.stmts.windows(2) {
            let [Stmt::Let {
                var: b,
                op:
                    Op::Prim {
                        rule: def,
                        args: def_args,
                        ..
                    },
            }, Stmt::Let {
                var: y,
                op: Op::Prim { rule, args, .. },
            }] = pair
            else {
                continue;
            };
            let (Adjoint::Linear(signs), Adjoint::Runtime(_), [p, q]) =
                (&rule.adjoint, &def.adjoint, args.as_slice())
            else {
                continue;
            };
            let k = if p.var() == Some(*b) {
                0
            } else if q.var() == Some(*b) {
                1
            } else {
                continue;
            };
            let a = [p, q][1 - k].var();
            let lends = signs[k]
                && a.is_some_and(|a| a != *b && def_args.iter().all(|o| o.var() != Some(a)))
                && f.arrays.contains(y)
                && f.arrays.contains(b);
            if lends {
                out.insert(*y, *b);
            }
        }
    });
    out
}

/// Does anything in `b` carry a derivative (so that its loop needs a reverse sweep)?
fn has_active(b: &Block, f: &Function) -> bool {
    b.stmts.iter().any(|s| match s {
        Stmt::Let { var, .. } => f.vars[*var].active,
        Stmt::If {
            then, els, phis, ..
        } => phis.iter().any(|p| f.vars[p.out].active) || has_active(then, f) || has_active(els, f),
        Stmt::Store { buf, .. } => f.vars[*buf].active,
        Stmt::Loop(l) => l.carried.iter().any(|c| f.vars[c.entry].active) || has_active(&l.body, f),
        Stmt::Effect(_) => false,
    })
}

/// The buffers a loop is checkpointed on under `#[differentiate(checkpoint)]` (see
/// [`LoopPlan::checkpoint`]): a top-level loop whose body writes buffers declared outside it
/// and runs loops of its own. Recording those inner loops' buffer reads for every iteration
/// (an integrator's stages, read and overwritten each step) can cost more than keeping the
/// buffers once per iteration and running the iteration again; where the inner loops are
/// short and the body's work heavy (GMM), it costs less, hence an option.
///
/// Scratch buffers of the loop (stage buffers, written in full before they are read in every
/// iteration) are among them, but are not kept ([`LoopPlan::snapshots`]): running an
/// iteration again writes them anew.
pub fn checkpoint_buffers(l: &Loop, enabled: bool) -> Vec<VarId> {
    if !enabled || l.nested || direct_loops(&l.body).is_empty() {
        return Vec::new();
    }
    let inner: HashSet<VarId> = loop_defined(l).into_iter().collect();
    let mut written = HashSet::new();
    crate::tbr::stores(&l.body, &mut written);
    let mut outer: Vec<VarId> = written.into_iter().filter(|b| !inner.contains(b)).collect();
    outer.sort_unstable();
    outer
}

/// Whether the value `from` of loop `l`'s body reaches `to` (the value the body leaves for
/// the next iteration) through top-level `+`, `-`, negations and copies alone, each value on
/// the way read once and `to` not at all: then `to`'s adjoint reaches `from` unchanged, or
/// negated (`Some(true)`).
fn linear_chain(l: &Loop, from: VarId, to: VarId) -> Option<bool> {
    let mut reads = Vec::new();
    let mut names = Vec::new();
    for s in &l.body.stmts {
        stmt_reads(s, &mut reads, &mut names, true);
    }
    for c in &l.carried {
        reads.extend(c.exit.var());
    }
    reads.extend(l.brk.as_ref().and_then(Operand::var));
    let count = |v: VarId| reads.iter().filter(|r| **r == v).count();
    let (mut at, mut negated) = (from, false);
    while at != to {
        if count(at) != 1 {
            return None;
        }
        let (next, flips) = l.body.stmts.iter().find_map(|s| {
            let Stmt::Let { var, op } = s else {
                return None;
            };
            match op {
                Op::Copy(Operand::Var(v)) if *v == at => Some((*var, false)),
                Op::Prim { rule, args, .. } if args.iter().any(|a| a.var() == Some(at)) => {
                    match (rule.name, args.as_slice()) {
                        ("add", _) => Some((*var, false)),
                        ("sub", [a, _]) => Some((*var, a.var() != Some(at))),
                        ("neg", _) => Some((*var, true)),
                        _ => None,
                    }
                }
                _ => None,
            }
        })?;
        negated ^= flips;
        at = next;
    }
    // `to` is read as the iteration's exit alone.
    (count(to) == 1).then_some(negated)
}

/// Does `body` read buffer `b`'s contents anywhere (an element, the buffer as a whole, or its
/// name in integer code)? Stores into it do not count, nor do reads of rows no later store
/// writes (`Function::swept`): the rerun finds them in the buffer as it is.
fn reads_contents(body: &Block, b: VarId, f: &Function) -> bool {
    let name = f.vars[b].name.to_string();
    let (mut vars, mut names) = (Vec::new(), Vec::new());
    for s in &body.stmts {
        stmt_reads(s, &mut vars, &mut names, false);
    }
    let reads = vars.iter().filter(|v| **v == b).count();
    names.contains(&name) || reads > swept_reads(body, b, f)
}

/// How many of `body`'s statements (at any depth) are reads of `b` in `Function::swept`.
fn swept_reads(body: &Block, b: VarId, f: &Function) -> usize {
    body.stmts
        .iter()
        .map(|s| match s {
            Stmt::Let {
                var,
                op: Op::Prim { args, .. },
            } if f.swept.contains(var) => args.iter().filter(|a| a.var() == Some(b)).count(),
            Stmt::If { then, els, .. } => swept_reads(then, b, f) + swept_reads(els, b, f),
            Stmt::Loop(l) => swept_reads(&l.body, b, f),
            _ => 0,
        })
        .sum()
}

/// The loops directly in `b` (in its arms too, not inside other loops).
fn direct_loops(b: &Block) -> Vec<&Loop> {
    let mut out = Vec::new();
    for s in &b.stmts {
        match s {
            Stmt::Loop(l) => out.push(&**l),
            Stmt::If { then, els, .. } => {
                out.extend(direct_loops(then));
                out.extend(direct_loops(els));
            }
            _ => {}
        }
    }
    out
}

/// The recorded integer values that the recomputation of `b` (its `included` statements)
/// defines, in their arms too (recomputed whole) but not in nested loops.
fn recorded_in(b: &Block, included: &[bool], f: &Function) -> Vec<VarId> {
    let mut out = Vec::new();
    for (s, _) in b.stmts.iter().zip(included).filter(|(_, inc)| **inc) {
        match s {
            Stmt::Let { var, .. } if f.recorded.contains_key(var) => out.push(*var),
            Stmt::If { then, els, .. } => {
                out.extend(recorded_in(then, &vec![true; then.stmts.len()], f));
                out.extend(recorded_in(els, &vec![true; els.stmts.len()], f));
            }
            _ => {}
        }
    }
    out
}

/// Does `b` (deeply) write or read a differentiated buffer declared outside it?
fn touches_outer_buffers(body: &Block, f: &Function) -> bool {
    let local: HashSet<VarId> = defined_deep(body).into_iter().collect();
    touches_buffers(body, &local, f)
}

/// Does `b` write a differentiated buffer, or read one through a tape, other than those in
/// `local`? (An integer buffer, a permutation say, carries no adjoint between iterations.)
fn touches_buffers(b: &Block, local: &HashSet<VarId>, f: &Function) -> bool {
    let outer = |v: VarId| !local.contains(&v) && f.vars[v].active;
    b.stmts.iter().any(|s| match s {
        Stmt::Store { buf, .. } => outer(*buf),
        Stmt::Let {
            op:
                Op::Index {
                    base,
                    tape: Some(_),
                    ..
                },
            ..
        } => base.var().is_none_or(outer),
        Stmt::If { then, els, .. } => {
            touches_buffers(then, local, f) || touches_buffers(els, local, f)
        }
        Stmt::Loop(l) => touches_buffers(&l.body, local, f),
        _ => false,
    })
}

/// `for i in a..b` with nothing after the range (no `break`): the loop variable and the
/// range's bounds. The reverse visits b-1, .., a, iteration `i - a` of the forward sweep.
fn simple_range(l: &Loop) -> Option<(VarId, TokenStream, TokenStream)> {
    let (LoopKind::For { var, iter }, None) = (&l.kind, &l.brk) else {
        return None;
    };
    match syn::parse2::<syn::Expr>(iter.clone()) {
        Ok(syn::Expr::Range(r)) if matches!(r.limits, syn::RangeLimits::HalfOpen(_)) => {
            match (r.start, r.end) {
                (Some(s), Some(e)) => Some((*var, s.to_token_stream(), e.to_token_stream())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// How many buffer values every iteration of a loop with body `b` reads through `tape`, when
/// that number is the same in every iteration (no read inside an `if` arm).
fn fixed_reads(b: &Block, tape: &Ident) -> Option<usize> {
    let mut count = 0;
    for s in &b.stmts {
        match s {
            Stmt::Let {
                op: Op::Index { tape: Some(t), .. },
                ..
            } if t.tape == *tape => count += 1,
            Stmt::If { then, els, .. } if reads_tape(then, tape) || reads_tape(els, tape) => {
                return None
            }
            _ => {}
        }
    }
    Some(count)
}

/// Does `b` (arms included, nested loops not) read buffers through `tape`?
fn reads_tape(b: &Block, tape: &Ident) -> bool {
    b.stmts.iter().any(|s| match s {
        Stmt::Let {
            op: Op::Index { tape: Some(t), .. },
            ..
        } => t.tape == *tape,
        Stmt::If { then, els, .. } => reads_tape(then, tape) || reads_tape(els, tape),
        _ => false,
    })
}

/// The variables statement `s` reads at any depth, once per reading (`out`), and the names its
/// verbatim code uses (`names`, to be resolved by the caller); a store's buffer counts as read
/// when `stores` is set.
pub fn stmt_reads(s: &Stmt, out: &mut Vec<VarId>, names: &mut Vec<String>, stores: bool) {
    let block = |b: &Block, out: &mut Vec<VarId>, names: &mut Vec<String>| {
        for s in &b.stmts {
            stmt_reads(s, out, names, stores);
        }
    };
    match s {
        Stmt::Let { op, .. } => op_reads(op, names, |v| out.push(v)),
        Stmt::If {
            cond,
            then,
            els,
            phis,
            ..
        } => {
            idents(cond, names);
            block(then, out, names);
            block(els, out, names);
            for p in phis {
                out.extend(p.then.var());
                out.extend(p.els.var());
            }
        }
        Stmt::Store {
            buf, index, value, ..
        } => {
            if stores {
                out.push(*buf);
            }
            out.extend(index.var());
            out.extend(value.var());
        }
        Stmt::Loop(l) => {
            block(&l.body, out, names);
            for c in &l.carried {
                out.extend(c.init.var());
                out.extend(c.exit.var());
            }
            match &l.kind {
                LoopKind::For { iter, .. } => idents(iter, names),
                LoopKind::While { cond } => idents(cond, names),
                LoopKind::Forever => {}
            }
            out.extend(l.brk.as_ref().and_then(Operand::var));
        }
        Stmt::Effect(t) => idents(t, names),
    }
}

/// The variables an operation reads: operands directly, and the names verbatim code uses
/// (collected in `names`, to be resolved by the caller).
fn op_reads(op: &Op, names: &mut Vec<String>, mut read: impl FnMut(VarId)) {
    let mut operand = |o: &Operand| {
        if let Some(v) = o.var() {
            read(v)
        }
    };
    match op {
        Op::Copy(o) => operand(o),
        Op::Verbatim(t) => idents(t, names),
        Op::Prim { args, ints, .. } => args.iter().chain(ints).for_each(operand),
        Op::Call { callee, args, .. } => {
            callee.receiver().into_iter().chain(args).for_each(operand)
        }
        Op::Map { recv, func, .. } => {
            operand(recv);
            if let MapFn::Closure { forward, .. } = func {
                idents(forward, names);
            }
        }
        Op::Fused {
            inputs, function, ..
        } => {
            inputs.iter().for_each(operand);
            // Integer values the element function captures, by name.
            for v in &function.vars[inputs.len()..] {
                if !v.scalar {
                    names.push(v.name.to_string());
                }
            }
        }
        Op::Index { base, index, .. } => {
            operand(base);
            operand(index);
        }
    }
}

/// Whether `b` (nested blocks too) stores into one of `buffers`.
fn stores_into(b: &Block, buffers: &BTreeSet<VarId>) -> bool {
    b.stmts.iter().any(|s| match s {
        Stmt::Store { buf, .. } => buffers.contains(buf),
        Stmt::If { then, els, .. } => stores_into(then, buffers) || stores_into(els, buffers),
        Stmt::Loop(l) => stores_into(&l.body, buffers),
        _ => false,
    })
}

/// Whether `b` (nested blocks too) defines a value the to-be-recorded analysis records.
fn block_has_recorded(b: &Block, f: &Function) -> bool {
    b.stmts.iter().any(|s| match s {
        Stmt::Let { var, .. } => f.recorded.contains_key(var),
        Stmt::If { then, els, .. } => block_has_recorded(then, f) || block_has_recorded(els, f),
        Stmt::Loop(l) => block_has_recorded(&l.body, f),
        _ => false,
    })
}

/// Identifiers in a token stream.
pub fn idents(tokens: &TokenStream, out: &mut Vec<String>) {
    for tt in tokens.clone() {
        match tt {
            proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
            proc_macro2::TokenTree::Group(g) => idents(&g.stream(), out),
            _ => {}
        }
    }
}

trait ToTokenStream {
    fn to_token_stream_(&self) -> TokenStream;
}
impl ToTokenStream for Ident {
    fn to_token_stream_(&self) -> TokenStream {
        quote!(#self)
    }
}

/// Where an element-wise rule's contribution goes ([`Reverse::elementwise_call`]).
enum Dest<'a> {
    /// A new array.
    New,
    /// Over the output's adjoint, at its last use.
    Over,
    /// Added into this existing adjoint in place.
    Adjoint(&'a Ident),
}
