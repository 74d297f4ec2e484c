//! Element-wise fusion, after the scalar analysis: a `.sum()` (or `.mean()`) of element-wise
//! array operations becomes one pass over the elements, without the arrays in between.
//!
//! `(&x.row(i) * w).mapv(f64::tanh).sum()` lowers to a product, a map and a sum, each array
//! built in full, forward, and each adjoint an array too, backward. Here the sum and the
//! element-wise operations that only it reads (operators, float methods, `mapv` of a float
//! function or of one closure, inlined; each value read once, in the same block, and not known
//! to be a scalar) become one [`Op::Fused`]: a scalar function of the operations' inputs (at
//! most four), summed over their common shape by `__rt::fused_sum`. Where the sum is
//! differentiated, the same pass also runs the function's generated derivative
//! (`__rt::fused_sum_grad`, the local Jacobian preaccumulated: diagonal, so one array per
//! input), and the reverse sweep only scales each input's derivative by the sum's adjoint.
//! Nothing else changes: values are the same to the bit (the runtime sums in the order
//! ndarray's `sum` does), and shape errors still panic, naming the operations and shapes.

use crate::ir::{Block, CallForm, Function, MapFn, Op, Operand, Stmt, Var, VarId};
use crate::names::Namer;
use crate::rules::{Adjoint, Kind};
use proc_macro2::{Ident, TokenStream};
use quote::quote;
use std::collections::HashMap;

/// The most inputs a fused sum takes (the runtime's tuples).
const MAX_INPUTS: usize = 4;

/// Fuses every `.sum()` of element-wise operations in the function.
pub fn fuse(f: &mut Function, float: &Ident, namer: &mut Namer) {
    let uses = use_counts(f);
    let mut body = std::mem::take(&mut f.body);
    block(f, &mut body, &uses, float, namer);
    f.body = body;
}

/// How many times each variable is read, anywhere in the function.
fn use_counts(f: &Function) -> Vec<usize> {
    let by_name = f.by_name();
    let mut reads = Vec::new();
    let mut names = Vec::new();
    for s in &f.body.stmts {
        crate::reverse::stmt_reads(s, &mut reads, &mut names, true);
    }
    reads.extend(f.result.var());
    reads.extend(names.iter().filter_map(|n| by_name.get(n).copied()));
    let mut uses = vec![0; f.vars.len()];
    for v in reads {
        uses[v] += 1;
    }
    uses
}

fn block(f: &mut Function, b: &mut Block, uses: &[usize], float: &Ident, namer: &mut Namer) {
    for s in &mut b.stmts {
        match s {
            Stmt::If { then, els, .. } => {
                block(f, then, uses, float, namer);
                block(f, els, uses, float, namer);
            }
            Stmt::Loop(l) => block(f, &mut l.body, uses, float, namer),
            _ => {}
        }
    }
    let mut j = 0;
    while j < b.stmts.len() {
        if let Some(Fusion {
            absorbed,
            op: fused,
            pack,
        }) = cluster(f, b, j, uses, float, namer)
        {
            if let Stmt::Let { op, .. } = &mut b.stmts[j] {
                *op = fused;
            }
            if let Some((var, op)) = pack {
                f.bind_after(b, j, var, op);
            }
            let before = absorbed.iter().filter(|&&k| k < j).count();
            let mut k = 0;
            b.stmts.retain(|_| {
                k += 1;
                !absorbed.contains(&(k - 1))
            });
            j -= before;
        }
        j += 1;
    }
}

/// Whether `op` is element-wise and can be written for scalars in a fused function.
fn elementwise(op: &Op) -> bool {
    match op {
        Op::Prim {
            rule, suffix, ints, ..
        } => {
            suffix.is_empty()
                && match rule.kind {
                    Kind::Operator => {
                        matches!(rule.name, "add" | "sub" | "mul" | "div" | "neg")
                            && ints.is_empty()
                    }
                    Kind::Method => matches!(rule.adjoint, Adjoint::Elementwise(_) | Adjoint::Zero),
                }
        }
        Op::Map {
            func: MapFn::Rule(..),
            ..
        } => true,
        Op::Map {
            func: MapFn::Closure { function, .. },
            ..
        } => inlinable(function),
        _ => false,
    }
}

/// The statements fused into statement `j` (a `.sum()`), and its new operation.
fn cluster(
    f: &Function,
    b: &Block,
    j: usize,
    uses: &[usize],
    float: &Ident,
    namer: &mut Namer,
) -> Option<Fusion> {
    let Stmt::Let {
        op:
            Op::Prim {
                rule,
                args,
                ints,
                suffix,
                ..
            },
        ..
    } = &b.stmts[j]
    else {
        return None;
    };
    if !matches!(rule.name, "sum" | "mean") || !ints.is_empty() {
        return None;
    }
    // `.mean()` only where the user's code panics on an empty array as the fused mean does
    // (`.unwrap()`, `.expect(..)`, the suffixes lowering accepts today).
    if rule.name == "mean" && !panics_on_none(suffix) {
        return None;
    }
    let mean = rule.name == "mean";
    let top = args.first()?.var()?;
    let defined: HashMap<VarId, usize> = b.stmts[..j]
        .iter()
        .enumerate()
        .filter_map(|(k, s)| match s {
            Stmt::Let { var, op } if elementwise(op) => Some((*var, k)),
            _ => None,
        })
        .collect();
    let absorbable = |v: VarId| {
        defined.contains_key(&v)
            && uses[v] == 1
            && !f.vars[v].scalar
            && !f.vars[v].buffer
            && !f.recorded.contains_key(&v)
            && !reads_overwritten(f, b, defined[&v], j)
    };
    if !absorbable(top) {
        return None;
    }
    // Grow the cluster backwards from the summed value.
    let mut members = vec![top];
    let mut closures = usize::from(is_closure(&b.stmts[defined[&top]]));
    let mut inputs: Vec<VarId> = Vec::new();
    let mut k = 0;
    while k < members.len() {
        let Stmt::Let { op, .. } = &b.stmts[defined[&members[k]]] else {
            return None;
        };
        for o in floats(op) {
            if let Some(v) = o.var() {
                // One closure per fused function, the first met: each inlined closure's
                // names would have to stay apart from the others'.
                let closure = is_closure(&b.stmts[defined.get(&v).copied().unwrap_or(j)]);
                let take = absorbable(v) && !(closure && closures > 0);
                if take && !members.contains(&v) {
                    closures += usize::from(closure);
                    members.push(v);
                } else if !take && !inputs.contains(&v) {
                    inputs.push(v);
                }
            }
        }
        k += 1;
    }
    if inputs.len() > MAX_INPUTS || inputs.is_empty() {
        return None;
    }
    let mut order: Vec<usize> = members.iter().map(|v| defined[v]).collect();
    order.sort_unstable();

    // The scalar function: the inputs' elements first, then the fused values, then the
    // integer operands it captures.
    let mut vars = Vec::new();
    let mut map: HashMap<VarId, VarId> = HashMap::new();
    for &v in &inputs {
        map.insert(v, vars.len());
        vars.push(Var {
            name: namer.fresh("e"),
            adjoint: namer.fresh("d_e"),
            active: f.vars[v].active,
            ty: None,
            buffer: false,
            scalar: true,
        });
    }
    let mut body = Block::default();
    for &k in &order {
        let Stmt::Let { var, op } = &b.stmts[k] else {
            return None;
        };
        // An outer operand: an input's element, a fused value, or an integer (`powi`'s
        // exponent) the closure captures.
        let mut operand = |o: &Operand, vars: &mut Vec<Var>| match o {
            Operand::Const(t) => Operand::Const(t.clone()),
            Operand::Var(v) => Operand::Var(*map.entry(*v).or_insert_with(|| {
                let x = &f.vars[*v];
                vars.push(Var {
                    name: x.name.clone(),
                    adjoint: x.adjoint.clone(),
                    active: false,
                    ty: None,
                    buffer: false,
                    scalar: false,
                });
                vars.len() - 1
            })),
        };
        let new = match op {
            Op::Map {
                recv,
                func: MapFn::Closure { function: cf, .. },
                ..
            } => {
                // The closure's body, inlined: its variables after the ones so far, its
                // parameter bound (under a new name) to the receiver's element.
                let recv = operand(recv, &mut vars);
                let offset = vars.len();
                for (i, v) in cf.vars.iter().enumerate() {
                    vars.push(Var {
                        name: if i == 0 {
                            namer.fresh("v")
                        } else {
                            v.name.clone()
                        },
                        adjoint: v.adjoint.clone(),
                        active: v.active,
                        ty: v.ty.clone(),
                        buffer: false,
                        scalar: v.scalar || i == 0,
                    });
                }
                body.stmts.push(Stmt::Let {
                    var: offset,
                    op: Op::Copy(recv),
                });
                let shift = |o: &Operand| match o {
                    Operand::Const(t) => Operand::Const(t.clone()),
                    Operand::Var(v) => Operand::Var(v + offset),
                };
                for st in &cf.body.stmts {
                    let Stmt::Let { var: cv, op: cop } = st else {
                        return None;
                    };
                    let new = scalar_op(cop, &mut |o| shift(o))?;
                    body.stmts.push(Stmt::Let {
                        var: cv + offset,
                        op: new,
                    });
                }
                Op::Copy(shift(&cf.result))
            }
            _ => scalar_op(op, &mut |o| operand(o, &mut vars))?,
        };
        let id = vars.len();
        let x = &f.vars[*var];
        vars.push(Var {
            name: x.name.clone(),
            adjoint: x.adjoint.clone(),
            active: x.active,
            ty: None,
            buffer: false,
            scalar: true,
        });
        map.insert(*var, id);
        body.stmts.push(Stmt::Let { var: id, op: new });
    }
    let function = Function {
        vars,
        items: Vec::new(),
        body,
        result: Operand::Var(map[&top]),
        recorded: HashMap::new(),
        arrays: Default::default(),
        vectors: Default::default(),
        swept: Default::default(),
        flat: Default::default(),
        copies: Default::default(),
        checkpoint: false,
        early: Default::default(),
        fields: Default::default(),
        elements: Default::default(),
        element_columns: Default::default(),
    };
    let ops = describe(b, &order);
    let Stmt::Let { var: sum, .. } = &b.stmts[j] else {
        return None;
    };
    // Where the sum is differentiated, its derivatives get a variable of their own, bound
    // right after it (`let __d_inputs = { let _ = &__t3; __fused };`), so that they are kept,
    // saved from `if` arms and run again with the sum like any value the reverse sweep reads.
    let (grads, pack) = if f.vars[*sum].active && inputs.iter().any(|&v| f.vars[v].active) {
        let tmp = namer.fresh("fused");
        let name = namer.fresh("d_inputs");
        let sum_name = &f.vars[*sum].name;
        let var = Var {
            name: name.clone(),
            adjoint: namer.fresh("d_d_inputs"),
            active: false,
            ty: None,
            buffer: false,
            scalar: false,
        };
        let op = Op::Verbatim(quote!({ let _ = &#sum_name; #tmp }));
        (Some((tmp, f.vars.len())), Some((var, op)))
    } else {
        (None, None)
    };
    Some(Fusion {
        absorbed: order,
        op: Op::Fused {
            inputs: inputs.into_iter().map(Operand::Var).collect(),
            function: Box::new(function),
            float: float.clone(),
            ops,
            grads,
            mean,
        },
        pack,
    })
}

/// A sum fused: the statements it absorbed, its operation, and the variable of its
/// derivatives with the statement binding it.
struct Fusion {
    absorbed: Vec<usize>,
    op: Op,
    pack: Option<(Var, Op)>,
}

/// The float operands of an element-wise operation.
fn floats(op: &Op) -> Vec<&Operand> {
    match op {
        Op::Prim { args, .. } => args.iter().collect(),
        Op::Map { recv, .. } => vec![recv],
        _ => Vec::new(),
    }
}

/// The fused operations as the user wrote them, for the runtime's panic message.
fn describe(b: &Block, order: &[usize]) -> String {
    let mut names: Vec<String> = Vec::new();
    for &k in order {
        let name = match &b.stmts[k] {
            Stmt::Let {
                op: Op::Prim { rule, .. },
                ..
            } => match rule.name {
                "add" => "+",
                "sub" | "neg" => "-",
                "mul" => "*",
                "div" => "/",
                other => other,
            }
            .to_string(),
            _ => "mapv".to_string(),
        };
        let name = format!("`{name}`");
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

/// An operation of a fused function, its operands mapped by `operand`: operators and float
/// methods as they are, `mapv(f64::exp)` as `f64::exp(x)`, copies and integer code. `None` for
/// anything else (a call, an index, a nested `mapv` closure).
fn scalar_op(op: &Op, operand: &mut dyn FnMut(&Operand) -> Operand) -> Option<Op> {
    Some(match op {
        Op::Copy(o) => Op::Copy(operand(o)),
        Op::Verbatim(t) => Op::Verbatim(t.clone()),
        Op::Prim {
            rule,
            form,
            args,
            ints,
            suffix,
            span,
        } => Op::Prim {
            rule,
            form: form.clone(),
            args: args.iter().map(&mut *operand).collect(),
            ints: ints.iter().map(&mut *operand).collect(),
            suffix: suffix.clone(),
            span: *span,
        },
        Op::Map {
            recv,
            func: MapFn::Rule(rule, path),
            span,
        } => Op::Prim {
            rule,
            form: CallForm::Path(path.clone()),
            args: vec![operand(recv)],
            ints: Vec::new(),
            suffix: TokenStream::new(),
            span: *span,
        },
        _ => return None,
    })
}

/// A `mapv` closure that can be inlined into a fused function: its body is plain `let`s of
/// operations [`scalar_op`] takes, and no verbatim code names its parameter (which is renamed
/// there).
fn inlinable(cf: &Function) -> bool {
    let param = cf.vars[0].name.to_string();
    cf.body.stmts.iter().all(|s| match s {
        Stmt::Let { op, .. } => match op {
            Op::Verbatim(t) => {
                let mut names = Vec::new();
                crate::reverse::idents(t, &mut names);
                !names.contains(&param)
            }
            Op::Copy(_) | Op::Prim { .. } => true,
            Op::Map {
                func: MapFn::Rule(..),
                ..
            } => true,
            _ => false,
        },
        _ => false,
    })
}

fn is_closure(s: &Stmt) -> bool {
    matches!(
        s,
        Stmt::Let {
            op: Op::Map {
                func: MapFn::Closure { .. },
                ..
            },
            ..
        }
    )
}

/// Whether statement `k` reads a buffer (an operand, or a name its code uses) that a
/// statement after it and before `j` stores into: moved to `j`, it would read the buffer's
/// later contents.
fn reads_overwritten(f: &Function, b: &Block, k: usize, j: usize) -> bool {
    let mut stored = std::collections::HashSet::new();
    crate::tbr::stores_in(&b.stmts[k + 1..j], &mut stored);
    if stored.is_empty() {
        return false;
    }
    let (mut reads, mut names) = (Vec::new(), Vec::new());
    crate::reverse::stmt_reads(&b.stmts[k], &mut reads, &mut names, true);
    stored
        .iter()
        .any(|&v| reads.contains(&v) || names.contains(&f.vars[v].name.to_string()))
}

/// A suffix that is exactly `.unwrap()` or `.expect(..)`.
fn panics_on_none(suffix: &TokenStream) -> bool {
    let t: Vec<proc_macro2::TokenTree> = suffix.clone().into_iter().collect();
    matches!(
        t.as_slice(),
        [proc_macro2::TokenTree::Punct(dot), proc_macro2::TokenTree::Ident(m), proc_macro2::TokenTree::Group(_)]
            if dot.as_char() == '.' && (m == "unwrap" || m == "expect")
    )
}
