//! Before lowering: `match` written as the `if` chain it stands for, so that every later phase
//! sees only `if`s. `if let P = e { a } else { b }` is the `match e { P => a, _ => b }` it
//! stands for, and `let P = e else { d };` becomes `if !(e matches P) { d }` followed by a
//! `let` per binding, in its own block; `while let P = e { .. }` is `loop { let P = e else {
//! break; }; .. }`. An iterator reduction, `xs.iter().map(|v| e).sum()`
//! (`.product()`, `.fold(..)`, `.collect()`, over zips, enumerations, ranges, windows and
//! chunks too), becomes the loop it stands for, in a block whose value is the result
//! ([`reduce`], which lowering calls for reductions that read differentiated values); a `for`
//! over windows, chunks, a backward walk or a `skip` / `take` chain the index loop it stands
//! for (`Rewriter::indexed_loop`), a filtered one a `continue` at the top of its body
//! (`Rewriter::filtered`), and `let r = loop { .. break v; .. }` a local the `break`s assign
//! (`Rewriter::loop_values`). A `return` inside a loop is lifted out of it ([`Lift`]).
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
//! A pattern's bindings (`Some(k)`, `m @ 1..=3`, `Spring { k, rest }`) are taken out of the
//! scrutinee at the top of their arm, each by a `match` of its own that binds it under a fresh
//! name (`let k = match s { Some(k_bound) => k_bound, _ => __rt::unreachable_arm() };`), so the
//! arm reads a local like any other; the arm's test matches the pattern with `_` in place of
//! each binding (nothing moves out of a place), or, when its guard reads them, binds them by
//! their fresh names (`match s { Some(k_bound) if k_bound > 2 => true, _ => false }`). A
//! binding of a value that is not differentiated is a constant of the arm; one of a
//! differentiated value is a compile error at the binding (lowering reports it). A lowercase
//! name in a pattern is a binding; an uppercase one is a constant or a unit variant, unless the
//! function binds that name itself (then rustc reads it as a new binding).

use crate::lower::strip;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::HashSet;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Expr, ItemFn, Pat};

pub mod pushes;
mod tuples;

/// An iterator reduction over a walk, `xs.iter().map(|v| e).sum::<f64>()` (`.product()`,
/// `.fold(..)`, `.collect()` into a `Vec`; over zips, enumerations, `skip` / `take`, windows,
/// chunks and ranges `(0..n).map(|i| ..)` too), as the loop it stands for, in a block whose
/// value is the result. Lowering asks for it when the reduction reads a differentiated value:
/// one that does not (`counts.iter().sum::<usize>()`, a sum of integers) stays as written.
pub fn reduce(e: &Expr) -> Option<Expr> {
    // The block's names shadow nothing the reduction reads: they avoid all of its names.
    let mut names = Names::default();
    names.visit_expr(e);
    let mut rewriter = Rewriter {
        bound: names.bound,
        used: names.idents,
        float: None,
        buffers: HashSet::new(),
        nested: 0,
        loops: 0,
        rows: HashSet::new(),
    };
    let mut reduction = rewriter.reduction(e)?;
    // Its loops walk as a `for` written so would (`xs.iter().skip(1)`: by index).
    if let Expr::Block(b) = &mut reduction {
        for s in &mut b.block.stmts {
            if let syn::Stmt::Expr(Expr::ForLoop(f), _) = s {
                rewriter.filtered(f);
                parts_of_zips(&mut f.expr);
                if let Some(indexed) = rewriter.indexed_loop(f) {
                    *s = syn::Stmt::Expr(indexed, None);
                }
            }
        }
    }
    Some(reduction)
}

/// `func` with every `match`, `if let`, `let .. else`, `for` over windows, chunks, a backward
/// walk, a `skip` / `take` chain, a filter or a zip of parts, `let r = loop { .. break v; .. }`
/// and `return` inside a loop written as what it stands for, and `Vec`s built by `push` as
/// buffers with a counter ([`pushes`]); `None` when it has none (the common case, checked
/// without copying the function or collecting its names).
pub fn apply(func: &ItemFn) -> Option<ItemFn> {
    let mut probe = Probe::default();
    probe.visit_block(&func.block);
    let closures = crate::inline::any(&func.block);
    let pushes = probe.pushes;
    let tuple = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => crate::signature::tuple_output(ty).map(|(_, n)| n),
        syn::ReturnType::Default => None,
    };
    if !probe.rewrites() && !closures && !pushes && !probe.tuples && tuple.is_none() {
        return None;
    }
    let mut names = Names::default();
    names.visit_item_fn(func);
    let float = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => {
            crate::signature::float_type(ty).map(|f| syn::parse_quote!(#f))
        }
        syn::ReturnType::Default => None,
    };
    let mut rewriter = Rewriter {
        bound: names.bound,
        used: names.idents,
        float,
        buffers: HashSet::new(),
        nested: 0,
        loops: 0,
        rows: HashSet::new(),
    };
    let mut out = func.clone();
    // A tuple of floats returned: an array in the body (`tuple_tails`), before everything else.
    if let Some(n) = tuple {
        tuple_tails(&mut out.block, n, &mut |base| rewriter.fresh(base));
    }
    // `Vec`s built by `push`: buffers with a counter (`pushes`).
    if pushes {
        pushes::apply(&mut out.block, &mut |base| rewriter.fresh(base));
    }
    // Tuple locals read by element: a local per element (`tuples`).
    if probe.tuples {
        tuples::apply(&mut out.block, &mut |base| rewriter.fresh(base));
    }
    rewriter.buffers = crate::lower::buffer_targets(&out.block);
    rewriter.rows = rows_names(func);
    if closures {
        crate::inline::closures(&mut out, &mut |base| rewriter.fresh(base));
    }
    rewriter.visit_block_mut(&mut out.block);
    if let syn::ReturnType::Type(_, ty) = &func.sig.output {
        if returns_in_loop(&out.block) {
            let value = rewriter.fresh("returned_value");
            let flag = rewriter.fresh("returned");
            let mut lift = Lift {
                value: &value,
                flag: &flag,
                loops: 0,
            };
            lift.visit_block_mut(&mut out.block);
            let stmts = &out.block.stmts;
            let zero = crate::signature::literal(quote!(0.0));
            out.block = syn::parse_quote!({
                let mut #value: #ty = #zero;
                let mut #flag = false;
                #(#stmts)*
            });
        }
    }
    Some(out)
}

/// A `return` inside a loop, lifted out of it: `return e` there is
/// `{ value = e; returned = true; break; }`, each loop that holds one is followed by
/// `if returned { break; }` inside another loop, and by `if returned { return value; }` outside
/// all loops, where an early `return` is the `if` it is everywhere else.
struct Lift<'a> {
    value: &'a Ident,
    flag: &'a Ident,
    /// How many loops the visit is inside.
    loops: usize,
}

impl VisitMut for Lift<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Closure(_) => {}
            // A `return` without a value is no function's value (rustc reports it).
            Expr::Return(r) if self.loops > 0 && r.expr.is_some() => {
                let (value, flag) = (self.value, self.flag);
                let returned = r.expr.take();
                *e = syn::parse_quote!({
                    #value = #returned;
                    #flag = true;
                    break;
                });
            }
            Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_) if returns(e) => {
                self.loops += 1;
                syn::visit_mut::visit_expr_mut(self, e);
                self.loops -= 1;
                let (value, flag) = (self.value, self.flag);
                let after: Expr = if self.loops > 0 {
                    syn::parse_quote!(if #flag { break; })
                } else {
                    syn::parse_quote!(if #flag { return #value; })
                };
                *e = syn::parse_quote!({ #e #after });
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }
}

/// Does a loop of `block` hold a `return` (outside closures)?
fn returns_in_loop(block: &syn::Block) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr(&mut self, e: &'ast Expr) {
            match e {
                Expr::Closure(_) => {}
                Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_) => self.0 |= returns(e),
                e => syn::visit::visit_expr(self, e),
            }
        }
    }
    let mut f = Finder(false);
    f.visit_block(block);
    f.0
}

/// The methods whose calls [`reduce`] rewrites.
pub const REDUCTIONS: [&str; 4] = ["sum", "product", "fold", "collect"];

/// The methods whose `for` loops [`Rewriter::indexed_loop`] rewrites.
const INDEXED_WALKS: [&str; 10] = [
    "windows",
    "chunks",
    "chunks_exact",
    "rev",
    "skip",
    "take",
    "step_by",
    "rows",
    "columns",
    "outer_iter",
];

/// The methods the forms [`Probe`] looks for end in: `walk.for_each(..)`, `x.last().unwrap()`
/// and `x.iter().max_by(..).unwrap()` (`expect`), `x.get(i).copied().unwrap_or(..)`
/// (`unwrap_or_default`, `map_or`), `v.sort_by(..)`.
const PROBED_METHODS: &[&str] = &[
    "for_each",
    "unwrap",
    "expect",
    "unwrap_or",
    "unwrap_or_default",
    "map_or",
    "sort_by",
    "sort_unstable_by",
];

/// Does a body hold anything to rewrite, and does it call a method named `push` (`pushes`)?
/// One walk of the whole body answers both.
#[derive(Default)]
struct Probe {
    rewrite: bool,
    pushes: bool,
    /// A local bound to a tuple literal (`tuples`).
    tuples: bool,
    /// Loops and branches the walk is in, and loops alone.
    nested: usize,
    loops: usize,
    /// Names assigned whole inside a loop (`u = next;`, both names), and names written by
    /// index: a name in both is a buffer assigned whole in a loop, or a buffer that replaces
    /// another there ([`Rewriter::assign_buffer`]).
    assigned_in_loops: Vec<String>,
    indexed: HashSet<String>,
}

impl Probe {
    /// Anything to rewrite, once the whole body is walked.
    fn rewrites(&self) -> bool {
        self.rewrite
            || self
                .assigned_in_loops
                .iter()
                .any(|n| self.indexed.contains(n))
    }
}

impl<'ast> Visit<'ast> for Probe {
    fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
        match strip(&a.left) {
            Expr::Path(p) if self.loops > 0 => {
                self.assigned_in_loops
                    .extend(p.path.get_ident().map(|i| i.to_string()));
                // The value's name too: rows replaced by a buffer of rows.
                if let Expr::Path(q) = strip(&a.right) {
                    self.assigned_in_loops
                        .extend(q.path.get_ident().map(|i| i.to_string()));
                }
            }
            Expr::Index(_) => self.indexed.extend(crate::lower::written_buffer(&a.left)),
            _ => {}
        }
        syn::visit::visit_expr_assign(self, a);
    }
    fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
        self.indexed.extend(crate::lower::written_buffer(&b.left));
        syn::visit::visit_expr_binary(self, b);
    }
    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        // A closure's body runs where it is called, not in the loop around its `let`.
        let (nested, loops) = (
            std::mem::take(&mut self.nested),
            std::mem::take(&mut self.loops),
        );
        syn::visit::visit_expr_closure(self, c);
        (self.nested, self.loops) = (nested, loops);
    }
    fn visit_expr_match(&mut self, m: &'ast syn::ExprMatch) {
        self.rewrite = true;
        syn::visit::visit_expr_match(self, m);
    }
    fn visit_expr_let(&mut self, l: &'ast syn::ExprLet) {
        self.rewrite = true;
        syn::visit::visit_expr_let(self, l);
    }
    fn visit_local(&mut self, l: &'ast syn::Local) {
        self.rewrite |= l.init.as_ref().is_some_and(|i| i.diverge.is_some());
        self.tuples |= matches!((&l.pat, &l.init), (Pat::Ident(_), Some(i)) if matches!(strip(&i.expr), Expr::Tuple(_)));
        syn::visit::visit_local(self, l);
    }
    fn visit_expr_break(&mut self, b: &'ast syn::ExprBreak) {
        self.rewrite |= b.expr.is_some();
        syn::visit::visit_expr_break(self, b);
    }
    fn visit_expr(&mut self, e: &'ast Expr) {
        if is_loop(e) {
            self.rewrite |= returns(e);
        }
        if let Expr::ForLoop(f) = e {
            let mut walk = &*f.expr;
            while let Expr::MethodCall(m) = strip(walk) {
                self.rewrite |= INDEXED_WALKS.iter().any(|n| m.method == n);
                // A zip's other side: `ks.iter().zip(xs.windows(2))`.
                if m.method == "zip" && m.args.len() == 1 {
                    self.rewrite |= matches!(strip(&m.args[0]), Expr::MethodCall(w) if INDEXED_WALKS.iter().any(|n| w.method == n));
                }
                walk = &m.receiver;
            }
            self.rewrite |= zips_a_part(&f.expr);
            self.rewrite |= mutable_base(&f.expr).is_some();
            self.rewrite |= matches!(strip(&f.expr), Expr::MethodCall(m) if m.method == "filter");
        }
        // A method call's name read once (on the compiler's tokens each comparison with an
        // identifier is a call across the proc-macro bridge), and the forms looked for only
        // behind the methods they end in.
        let method = match e {
            Expr::MethodCall(m) => Some(m.method.to_string()),
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => match strip(&u.expr) {
                Expr::MethodCall(m) => Some(m.method.to_string()),
                _ => None,
            },
            _ => None,
        };
        let probed = method
            .as_deref()
            .is_some_and(|m| PROBED_METHODS.contains(&m));
        self.rewrite |= swapped(e).is_some()
            || probed
                && (for_each(e).is_some()
                    || end_element(e).is_some()
                    || optional_use(e).is_some()
                    || extreme_element(e).is_some()
                    || (self.nested == 0 && sorted(e).is_some()));
        self.pushes |= matches!(e, Expr::MethodCall(_)) && method.as_deref() == Some("push");
        let (nests, loops) = (nests(e), is_loop(e));
        self.nested += usize::from(nests);
        self.loops += usize::from(loops);
        syn::visit::visit_expr(self, e);
        self.nested -= usize::from(nests);
        self.loops -= usize::from(loops);
    }
}

/// What the rewriting needs to know of the whole function: the names its irrefutable patterns
/// bind (parameters, `let`s, closures, `for`), and every identifier (for fresh names).
#[derive(Default)]
struct Names {
    bound: HashSet<String>,
    idents: HashSet<String>,
    /// In a refutable pattern (an arm's, an `if let`'s, a `let .. else`'s), where an uppercase
    /// name may be a constant.
    refutable: bool,
}

impl Names {
    fn refutable_pattern(&mut self, p: &Pat) {
        self.refutable = true;
        self.visit_pat(p);
        self.refutable = false;
    }
}

impl<'ast> Visit<'ast> for Names {
    fn visit_arm(&mut self, a: &'ast syn::Arm) {
        self.refutable_pattern(&a.pat);
        if let Some((_, g)) = &a.guard {
            self.visit_expr(g);
        }
        self.visit_expr(&a.body);
    }
    fn visit_expr_let(&mut self, l: &'ast syn::ExprLet) {
        self.refutable_pattern(&l.pat);
        self.visit_expr(&l.expr);
    }
    fn visit_local(&mut self, l: &'ast syn::Local) {
        match &l.init {
            Some(init) if init.diverge.is_some() => {
                self.refutable_pattern(&l.pat);
                syn::visit::visit_local_init(self, init);
            }
            _ => syn::visit::visit_local(self, l),
        }
    }
    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
        if !self.refutable {
            self.bound.insert(p.ident.to_string());
        }
        syn::visit::visit_pat_ident(self, p);
    }
    fn visit_ident(&mut self, i: &'ast Ident) {
        self.idents.insert(i.to_string());
    }
}

struct Rewriter {
    bound: HashSet<String>,
    used: HashSet<String>,
    /// The function's float (its return type), the type of a `loop`'s value when its `let`
    /// names none.
    float: Option<syn::Type>,
    /// The names the function writes by index (`v[i] = ..`): buffers, which
    /// `std::mem::swap` exchanges element by element, and an assignment in a loop fills.
    buffers: HashSet<String>,
    /// Loops and branches (`if`, `match`) the rewriting is in, and loops alone.
    nested: usize,
    loops: usize,
    /// The names that hold rows of floats (`&[Vec<f64>]` parameters, `vec![vec![0.0; m]; n]`
    /// and copies of either), whose replacement copies element by element of each row.
    rows: HashSet<String>,
}

impl Rewriter {
    /// A name no identifier of the function has (`base`, `base_1`, ..), so it shadows nothing
    /// the arms read and no local of the function renames it.
    fn fresh(&mut self, base: &str) -> Ident {
        let mut name = base.to_string();
        let mut k = 0;
        while self.used.contains(&name) || self.bound.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.used.insert(name.clone());
        Ident::new(&name, Span::call_site())
    }

    /// Is `p` a binding (rather than a constant or a unit variant)?
    fn binds(&self, p: &syn::PatIdent) -> bool {
        let name = p.ident.to_string();
        !name.starts_with(|c: char| c.is_ascii_uppercase())
            || p.by_ref.is_some()
            || p.mutability.is_some()
            || p.subpat.is_some()
            || self.bound.contains(&name)
    }

    /// An arm's pattern taken apart: its bindings, the pattern with each binding renamed to a
    /// fresh name (to take the values out, or for a guard that reads them), and the pattern with
    /// each binding replaced by `_` or its subpattern (a test that moves nothing).
    fn take_apart(&mut self, pat: &Pat) -> ArmPattern {
        struct Rename<'a> {
            rw: &'a mut Rewriter,
            bindings: Vec<Binding>,
        }
        impl VisitMut for Rename<'_> {
            fn visit_field_pat_mut(&mut self, f: &mut syn::FieldPat) {
                // `Point { x, .. }`: written out, `Point { x: fresh, .. }`.
                spell_out(f);
                syn::visit_mut::visit_field_pat_mut(self, f);
            }
            fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
                if self.rw.binds(p) {
                    // The alternatives of an or-pattern bind the same names: one fresh name each.
                    let fresh = match self.bindings.iter().find(|b| b.name == p.ident) {
                        Some(b) => b.fresh.clone(),
                        None => {
                            let fresh = self.rw.fresh(&format!("{}_bound", p.ident));
                            self.bindings.push(Binding {
                                name: p.ident.clone(),
                                fresh: fresh.clone(),
                                mutable: p.mutability.is_some(),
                            });
                            fresh
                        }
                    };
                    p.ident = fresh;
                    p.mutability = None;
                }
                syn::visit_mut::visit_pat_ident_mut(self, p);
            }
        }
        struct Blank<'a>(&'a Rewriter);
        impl VisitMut for Blank<'_> {
            fn visit_field_pat_mut(&mut self, f: &mut syn::FieldPat) {
                spell_out(f);
                syn::visit_mut::visit_field_pat_mut(self, f);
            }
            fn visit_pat_mut(&mut self, p: &mut Pat) {
                if let Pat::Ident(i) = p {
                    if self.0.binds(i) {
                        *p = match i.subpat.take() {
                            Some((_, sub)) => *sub,
                            None => Pat::Wild(syn::PatWild {
                                attrs: Vec::new(),
                                underscore_token: Default::default(),
                            }),
                        };
                    }
                }
                syn::visit_mut::visit_pat_mut(self, p);
            }
        }
        let mut renamed = pat.clone();
        let mut r = Rename {
            rw: self,
            bindings: Vec::new(),
        };
        r.visit_pat_mut(&mut renamed);
        let bindings = r.bindings;
        let mut blank = pat.clone();
        Blank(self).visit_pat_mut(&mut blank);
        ArmPattern {
            bindings,
            renamed,
            blank,
            original: pat.clone(),
        }
    }

    /// An arm's body, after `let`s that take its pattern's bindings out of the scrutinee.
    fn arm_body(&self, body: &Expr, arm: &ArmPattern, scrutinee: &Expr) -> Expr {
        if arm.bindings.is_empty() {
            return arm_block(body);
        }
        let lets = self.take_out(arm, scrutinee);
        syn::parse_quote!({ #(#lets)* #body })
    }

    /// A `let` per binding of the pattern, taking its value out of the scrutinee.
    fn take_out(&self, arm: &ArmPattern, scrutinee: &Expr) -> Vec<TokenStream> {
        let renamed = &arm.renamed;
        // A binding of the scrutinee whole (or of a tuple's element) is that value itself, so
        // it may be a differentiated one: `match x { v if v < 0.0 => -v, v => v }`.
        let mut whole = Vec::new();
        whole_bindings(&arm.original, scrutinee, &mut whole);
        arm.bindings
            .iter()
            .map(|b| {
                let (name, fresh) = (&b.name, &b.fresh);
                let mutability = b.mutable.then(|| quote!(mut));
                if let Some((_, value)) = whole.iter().find(|(n, _)| n == name) {
                    return quote_spanned! {name.span()=> let #mutability #name = #value; };
                }
                // Spanned at the binding: a binding of a differentiated value is reported there.
                quote_spanned! {name.span()=>
                    let #mutability #name = match #scrutinee {
                        #renamed => #fresh,
                        _ => ::autodiff::__rt::unreachable_arm(),
                    };
                }
            })
            .collect()
    }

    /// The `if` chain for `m` (its arms already rewritten).
    fn rewrite(&mut self, m: &syn::ExprMatch) -> Expr {
        let mut setup = TokenStream::new();
        let scrutinee = self.scrutinee(&m.expr, &mut setup);
        // From the last arm back: it is the final `else`, each earlier arm an `if` around the
        // chain after it.
        let Some((last, earlier)) = m.arms.split_last() else {
            // `match x {}` on an empty type: the function cannot get here.
            return syn::parse_quote!({ #setup });
        };
        let last_pattern = self.take_apart(&last.pat);
        let mut chain = self.arm_body(&last.body, &last_pattern, &scrutinee);
        for arm in earlier.iter().rev() {
            let pattern = self.take_apart(&arm.pat);
            let blank = &pattern.blank;
            let test = quote!(match #scrutinee { #blank => true, _ => false });
            let cond = match &arm.guard {
                None => test,
                Some((_, g)) if pattern.bindings.is_empty() => quote!((#test) && (#g)),
                Some((_, g)) => {
                    // A guard that reads the bindings: tested inside a `match` that binds them
                    // (by their fresh names).
                    let mut g = (**g).clone();
                    RenameReads(&pattern.bindings).visit_expr_mut(&mut g);
                    let renamed = &pattern.renamed;
                    quote!(match #scrutinee { #renamed if #g => true, _ => false })
                }
            };
            let then = self.arm_body(&arm.body, &pattern, &scrutinee);
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

    /// An iterator reduction as the loop it stands for, in a block whose value is the result:
    /// `walk.map(|p| e).sum()` (or `.product()`, or `walk.sum()` itself) is
    /// `{ let mut sum = 0.0; for p in walk { sum += e; } sum }`, and
    /// `walk.fold(init, |acc, p| e)` is
    /// `{ let mut fold = init; for p in walk { fold = { let acc = fold; e }; } fold }`, where
    /// `walk` is `xs.iter()` with `.zip(ys)`, `.enumerate()`, `.copied()` or `.cloned()` (the
    /// loops lowering reads as index loops). A closure that could `return` is left alone.
    fn reduction(&mut self, e: &Expr) -> Option<Expr> {
        let Expr::MethodCall(m) = e else {
            return None;
        };
        let closure = |e: &Expr, inputs: usize| match strip(e) {
            Expr::Closure(c) if c.inputs.len() == inputs && !returns(&c.body) => Some(c.clone()),
            _ => None,
        };
        match m.method.to_string().as_str() {
            method @ ("sum" | "product") if m.args.is_empty() => {
                let (walk, pat, body) = self.mapped(&m.receiver)?;
                if !is_walk(walk) {
                    return None;
                }
                let acc = self.fresh(method);
                let ty = m.turbofish.as_ref().and_then(|t| match t.args.first() {
                    Some(syn::GenericArgument::Type(ty)) => Some(quote!(: #ty)),
                    _ => None,
                });
                // A sum of integers (`::<usize>`) starts from an integer.
                let integer = m.turbofish.as_ref().is_some_and(|t| {
                    matches!(t.args.first(), Some(syn::GenericArgument::Type(syn::Type::Path(p)))
                    if p.path.get_ident().is_some_and(|i| {
                        let i = i.to_string();
                        i.starts_with('u') || i.starts_with('i')
                    }))
                });
                let (init, op) = match (method == "sum", integer) {
                    (true, false) => (crate::signature::literal(quote!(0.0)), quote!(+=)),
                    (true, true) => (quote!(0), quote!(+=)),
                    (false, false) => (crate::signature::literal(quote!(1.0)), quote!(*=)),
                    (false, true) => (quote!(1), quote!(*=)),
                };
                Some(syn::parse_quote!({
                    let mut #acc #ty = #init;
                    for #pat in #walk {
                        #acc #op #body;
                    }
                    #acc
                }))
            }
            // Into a `Vec` of floats: counted, then filled by index.
            "collect" if m.args.is_empty() => {
                let vec = match m.turbofish.as_ref().and_then(|t| t.args.first()) {
                    None => true,
                    Some(syn::GenericArgument::Type(syn::Type::Path(p))) => {
                        p.path.segments.last().is_some_and(|s| s.ident == "Vec")
                    }
                    _ => false,
                };
                let (walk, pat, body) = self.mapped(&m.receiver)?;
                if !vec || !is_walk(walk) {
                    return None;
                }
                let (len, out, k) = (self.fresh("len"), self.fresh("collected"), self.fresh("k"));
                let zero = crate::signature::literal(quote!(0.0));
                Some(syn::parse_quote!({
                    let mut #len = 0usize;
                    for _ in #walk {
                        #len += 1;
                    }
                    let mut #out = vec![#zero; #len];
                    let mut #k = 0usize;
                    for #pat in #walk {
                        #out[#k] = #body;
                        #k += 1;
                    }
                    #out
                }))
            }
            "fold" if m.args.len() == 2 => {
                // Over a walk, or a `map` of one (each item bound by the map's pattern, then
                // the folded item its value).
                let (walk, mapped) = match strip(&m.receiver) {
                    Expr::MethodCall(map) if map.method == "map" && map.args.len() == 1 => {
                        let c = closure(&map.args[0], 1)?;
                        (
                            &*map.receiver,
                            Some((untyped(&c.inputs[0]), (*c.body).clone())),
                        )
                    }
                    walk => (walk, None),
                };
                if !is_walk(walk) {
                    return None;
                }
                let start = &m.args[0];
                let (acc_pat, pat, body): (Pat, Pat, Expr) = match strip(&m.args[1]) {
                    // `fold(0.0, f64::max)`: a function of the accumulator and the item.
                    Expr::Path(f) => {
                        let (a, v) = (self.fresh("acc"), self.fresh("item"));
                        (
                            syn::parse_quote!(#a),
                            syn::parse_quote!(#v),
                            syn::parse_quote!(#f(#a, #v)),
                        )
                    }
                    e => {
                        let c = closure(e, 2)?;
                        (
                            untyped(&c.inputs[0]),
                            untyped(&c.inputs[1]),
                            (*c.body).clone(),
                        )
                    }
                };
                let acc = self.fresh("fold");
                let (pat, item) = match mapped {
                    Some((map_pat, map_body)) => (map_pat, quote!(let #pat = #map_body;)),
                    None => (pat, TokenStream::new()),
                };
                Some(syn::parse_quote!({
                    let mut #acc = #start;
                    for #pat in #walk {
                        #item
                        #acc = {
                            let #acc_pat = #acc;
                            #body
                        };
                    }
                    #acc
                }))
            }
            _ => None,
        }
    }

    /// The walk a reduction reads, the pattern binding each item and the item's value:
    /// `walk.map(|p| e)` gives `(walk, p, e)`, a walk alone `(walk, v, v)` with a fresh `v`.
    fn mapped<'e>(&mut self, receiver: &'e Expr) -> Option<(&'e Expr, Pat, Expr)> {
        Some(match strip(receiver) {
            Expr::MethodCall(map) if map.method == "map" && map.args.len() == 1 => {
                match strip(&map.args[0]) {
                    Expr::Closure(c) if c.inputs.len() == 1 && !returns(&c.body) => {
                        (&*map.receiver, untyped(&c.inputs[0]), (*c.body).clone())
                    }
                    // A function by name (`.map(f64::exp)`, `.map(smooth)`): called on each.
                    Expr::Path(f) => {
                        let v = self.fresh("element");
                        (
                            &*map.receiver,
                            syn::parse_quote!(#v),
                            syn::parse_quote!(#f(#v)),
                        )
                    }
                    _ => return None,
                }
            }
            walk => {
                let v = self.fresh("element");
                (walk, syn::parse_quote!(#v), syn::parse_quote!(#v))
            }
        })
    }

    /// A `for` over a slice's windows or chunks, or over its elements backwards, as the index
    /// loop it stands for, each item bound at the top of the body:
    /// `for w in xs.windows(k)` is `for i in 0..(xs.len() + 1).saturating_sub(k) { let w =
    /// &xs[i..i + k]; .. }`, `chunks_exact(k)` walks `0..xs.len() / k` taking `&xs[i * k..i * k
    /// + k]`, `chunks(k)` also the shorter last chunk, and `xs.iter().rev()` (or
    /// `.iter().enumerate().rev()`) is `for i in (0..xs.len()).rev() { let v = xs[i]; .. }`;
    /// each may be followed by `.enumerate()`. The parts are read like any part of a slice.
    /// A matrix's `rows()`, `outer_iter()` and `columns()` (also through `.into_iter()`) are
    /// `for i in 0..m.nrows() { let row = m.row(i); .. }` and the same by columns.
    fn indexed_loop(&mut self, f: &syn::ExprForLoop) -> Option<Expr> {
        if f.label.is_some() {
            return None;
        }
        let (walk, enumerated) = enumerated(&f.expr);
        let walk = match strip(walk) {
            Expr::MethodCall(m) if m.method == "into_iter" && m.args.is_empty() => &m.receiver,
            w => w,
        };
        // `.copied()` / `.cloned()` last: the items are read as values anyway.
        let walk = match strip(walk) {
            Expr::MethodCall(m)
                if (m.method == "copied" || m.method == "cloned")
                    && m.args.is_empty()
                    && matches!(strip(&m.receiver), Expr::MethodCall(r) if INDEXED_WALKS.iter().any(|n| r.method == n)) =>
            {
                &m.receiver
            }
            w => w,
        };
        let Expr::MethodCall(m) = strip(walk) else {
            return None;
        };
        let mut setup = TokenStream::new();
        let i = self.fresh("index");
        // What an `.enumerate()` counts at index `i`, when not `i` itself: in a `skip` /
        // `take` chain it starts at the first item it sees, after `.rev()` at the last.
        let mut position: Option<TokenStream> = None;
        // A zip whose items are a pair: both parts taken apart (`(w, &k)` reads `k`'s value).
        let mut pair = false;
        let (range, item, indexed_by_enumerate) = match m.method.to_string().as_str() {
            "windows" | "chunks" | "chunks_exact" => {
                let (count, item) = self.window_part(m, &i, &mut setup)?;
                (quote!(0..#count), item, enumerated)
            }
            // `xs.windows(2).zip(ks)` (either side a walk of windows or chunks, the other of a
            // slice's elements): one index for both, as far as the shorter goes.
            "zip" if m.args.len() == 1 => {
                let (left, right) = (strip(&m.receiver), strip(&m.args[0]));
                let windowed = |e: &Expr| matches!(e, Expr::MethodCall(w) if ["windows", "chunks", "chunks_exact"].contains(&w.method.to_string().as_str()));
                if !(windowed(left) || windowed(right)) {
                    return None;
                }
                let mut side =
                    |e: &Expr, setup: &mut TokenStream| -> Option<(TokenStream, TokenStream)> {
                        match e {
                            Expr::MethodCall(w) if windowed(e) => self.window_part(w, &i, setup),
                            _ => {
                                let base = read_base(e)?;
                                Some((quote!(#base.len()), quote!(#base[#i])))
                            }
                        }
                    };
                let (lc, li) = side(left, &mut setup)?;
                let (rc, ri) = side(right, &mut setup)?;
                pair = true;
                (
                    quote!(0..::core::cmp::min(#lc, #rc)),
                    quote!((#li, #ri)),
                    enumerated,
                )
            }
            // A matrix's rows or columns, each the view `m.row(i)` / `m.column(i)`.
            kind @ ("rows" | "columns" | "outer_iter") if m.args.is_empty() => {
                let base = self.once(&m.receiver, &mut setup, "matrix");
                let (count, view) = match kind {
                    "columns" => (quote!(ncols), quote!(column)),
                    _ => (quote!(nrows), quote!(row)),
                };
                (
                    quote!(0..#base.#count()),
                    quote!(#base.#view(#i)),
                    enumerated,
                )
            }
            "rev" if m.args.is_empty() => {
                // `xs.iter().rev()` or `xs.iter().enumerate().rev()`.
                let (inner, inner_enumerated) = match strip(&m.receiver) {
                    Expr::MethodCall(e) if e.method == "enumerate" && e.args.is_empty() => {
                        (&*e.receiver, true)
                    }
                    e => (e, false),
                };
                let Expr::MethodCall(it) = strip(inner) else {
                    return None;
                };
                if it.method != "iter" || !it.args.is_empty() || (enumerated && inner_enumerated) {
                    return None;
                }
                let base = &it.receiver;
                if enumerated {
                    // `.rev().enumerate()` counts from the last element.
                    position = Some(quote!(#base.len() - 1 - #i));
                }
                (
                    quote!((0..#base.len()).rev()),
                    quote!(#base[#i]),
                    enumerated || inner_enumerated,
                )
            }
            // `xs.iter().skip(k)`, `.take(k)`, chains of them (`.take(n).skip(k)`), with
            // `.enumerate()` anywhere in the chain (counting from the first item it sees) and
            // `.copied()`: an index loop over the part of `0..xs.len()` they leave, bounded as
            // `skip` and `take` stop at the end.
            "skip" | "take" | "step_by" if m.args.len() == 1 => {
                let mut ops: Vec<(String, Option<&Expr>)> = Vec::new();
                let mut call = m;
                let base = loop {
                    let name = call.method.to_string();
                    match name.as_str() {
                        "skip" | "take" | "step_by" if call.args.len() == 1 => {
                            ops.push((name, Some(&call.args[0])))
                        }
                        "enumerate" if call.args.is_empty() => ops.push((name, None)),
                        "copied" | "cloned" if call.args.is_empty() => {}
                        "iter" if call.args.is_empty() => break &call.receiver,
                        _ => return None,
                    }
                    let Expr::MethodCall(inner) = strip(&call.receiver) else {
                        return None;
                    };
                    call = inner;
                };
                ops.reverse();
                if enumerated {
                    ops.push(("enumerate".into(), None));
                }
                if ops.iter().filter(|(n, _)| n == "enumerate").count() > 1 {
                    return None;
                }
                // `step_by(k)` last of the `skip`s and `take`s (every `k`-th item of what they
                // leave: `x.iter().skip(1).step_by(2)`, the odd elements); an `.enumerate()`
                // after it counts the items it yields.
                let (mut start, mut end) = (quote!(0usize), quote!(#base.len()));
                let mut step: Option<Expr> = None;
                for (name, arg) in &ops {
                    match (name.as_str(), arg) {
                        ("skip" | "take" | "step_by", _) if step.is_some() => return None,
                        ("skip", Some(k)) => {
                            let k = self.once(k, &mut setup, "count");
                            start = quote!(::core::cmp::min(#start + #k, #end));
                        }
                        ("take", Some(k)) => {
                            let k = self.once(k, &mut setup, "count");
                            end = quote!(::core::cmp::min(#end, #start + #k));
                        }
                        ("step_by", Some(k)) => step = Some(self.once(k, &mut setup, "step")),
                        // Counted from the first item it sees.
                        _ => {
                            position = Some(match &step {
                                Some(k) => quote!((#i - (#start)) / #k),
                                None => quote!(#i - (#start)),
                            })
                        }
                    }
                }
                let counted = position.is_some();
                let range = match &step {
                    Some(k) => quote!((#start..#end).step_by(#k)),
                    None => quote!(#start..#end),
                };
                (range, quote!(#base[#i]), counted)
            }
            _ => return None,
        };
        // The item's pattern, and the index's when enumerated (`(n, w)`); `&v` reads the value.
        let item_pat = |p: &Pat| -> Option<TokenStream> {
            match (unref(p), pair) {
                (Pat::Tuple(t), true) if t.elems.len() == 2 => {
                    let (a, b) = (unref(&t.elems[0]), unref(&t.elems[1]));
                    Some(quote!((#a, #b)))
                }
                (_, true) => None,
                (p, false) => Some(quote!(#p)),
            }
        };
        let pat = match (&*f.pat, indexed_by_enumerate) {
            (Pat::Tuple(t), true) if t.elems.len() == 2 => {
                let (n, v) = (&t.elems[0], item_pat(&t.elems[1])?);
                quote!((#n, #v))
            }
            (_, true) => return None,
            (p, false) => item_pat(p)?,
        };
        let value = match (indexed_by_enumerate, position) {
            (true, Some(at)) => quote!((#at, #item)),
            (true, None) => quote!((#i, #item)),
            (false, _) => item,
        };
        let stmts = &f.body.stmts;
        Some(syn::parse_quote!({
            #setup
            for #i in #range {
                let #pat = #value;
                #(#stmts)*
            }
        }))
    }

    /// The count of a walk of windows or chunks (`xs.windows(k)`, `chunks`, `chunks_exact`)
    /// and its item at index `i`, a part of `xs`.
    fn window_part(
        &mut self,
        m: &syn::ExprMethodCall,
        i: &Ident,
        setup: &mut TokenStream,
    ) -> Option<(TokenStream, TokenStream)> {
        if m.args.len() != 1 {
            return None;
        }
        let base = &m.receiver;
        let k = self.once(&m.args[0], setup, "size");
        Some(match m.method.to_string().as_str() {
            "windows" => (
                quote!((#base.len() + 1).saturating_sub(#k)),
                quote!(&#base[#i..#i + #k]),
            ),
            "chunks_exact" => (
                quote!(#base.len() / #k),
                quote!(&#base[#i * #k..#i * #k + #k]),
            ),
            "chunks" => (
                quote!((#base.len() + #k - 1) / #k),
                quote!(&#base[#i * #k..::core::cmp::min(#i * #k + #k, #base.len())]),
            ),
            _ => return None,
        })
    }

    /// The statements for `let pat = value else { diverge };`.
    fn let_else(&mut self, pat: &Pat, value: &Expr, diverge: &Expr) -> Vec<syn::Stmt> {
        // A type written on the pattern (`let Some(n): Option<usize> = ..`) is rustc's to check.
        let pat = match pat {
            Pat::Type(t) => &*t.pat,
            p => p,
        };
        // `let Some(&v) = x.get(i) else { .. };`: `if !(i < x.len()) { .. } let v = x[i];`.
        if let Pat::TupleStruct(t) = pat {
            if let (true, 1, Some(o)) = (
                t.path.is_ident("Some"),
                t.elems.len(),
                optional_element(value),
            ) {
                if let Some(bind) = optional_binding(&t.elems[0], &o) {
                    let present = &o.present;
                    let block: syn::Block = syn::parse_quote!({
                        if !(#present) #diverge
                        #bind
                    });
                    return block.stmts;
                }
            }
        }
        let mut setup = TokenStream::new();
        let scrutinee = self.scrutinee(value, &mut setup);
        let pattern = self.take_apart(pat);
        let blank = &pattern.blank;
        let lets = self.take_out(&pattern, &scrutinee);
        let block: syn::Block = syn::parse_quote!({
            #setup
            if !(match #scrutinee { #blank => true, _ => false }) #diverge
            #(#lets)*
        });
        block.stmts
    }

    /// A scrutinee read by several tests: a place as it is, anything else computed once into
    /// a local that `setup` binds; a tuple element by element (`(k, x > y)`: a tuple of a
    /// differentiated comparison is no value the lowering binds).
    fn scrutinee(&mut self, value: &Expr, setup: &mut TokenStream) -> Expr {
        match strip(value) {
            Expr::Tuple(t) => {
                let elems: Vec<Expr> = t
                    .elems
                    .iter()
                    .map(|e| self.once(e, setup, "scrutinee"))
                    .collect();
                syn::parse_quote!((#(#elems,)*))
            }
            e => self.once(e, setup, "scrutinee"),
        }
    }

    /// `e` itself when it is a place or a literal, else a fresh local (`name`, `name_1`, ..)
    /// that `setup` binds to it.
    fn once(&mut self, e: &Expr, setup: &mut TokenStream, name: &str) -> Expr {
        if is_place(e) || matches!(strip(e), Expr::Lit(_)) {
            return e.clone();
        }
        let name = self.fresh(name);
        setup.extend(quote!(let #name = #e;));
        syn::parse_quote!(#name)
    }
}

/// A value an arm's pattern binds: its name in the arm, and the fresh name the pattern binds it
/// by when it is taken out.
struct Binding {
    name: Ident,
    fresh: Ident,
    mutable: bool,
}

struct ArmPattern {
    bindings: Vec<Binding>,
    renamed: Pat,
    blank: Pat,
    /// The pattern as written.
    original: Pat,
}

/// The bindings of `pat` that bind the scrutinee whole, or a whole element of a tuple
/// scrutinee (`v` of `match x { v if v < 0.0 => .. }`, `(a, b)` of `match (x, y)`): each with
/// the expression it binds.
fn whole_bindings(pat: &Pat, scrutinee: &Expr, out: &mut Vec<(Ident, Expr)>) {
    match (pat, strip(scrutinee)) {
        (Pat::Ident(p), _) if p.subpat.is_none() && p.by_ref.is_none() => {
            out.push((p.ident.clone(), scrutinee.clone()))
        }
        (Pat::Paren(p), _) => whole_bindings(&p.pat, scrutinee, out),
        (Pat::Tuple(t), Expr::Tuple(e)) if t.elems.len() == e.elems.len() => {
            for (p, e) in t.elems.iter().zip(&e.elems) {
                whole_bindings(p, e, out);
            }
        }
        _ => {}
    }
}

/// A field pattern written out in full: `x` -> `x: x` (whose pattern is then changed).
fn spell_out(f: &mut syn::FieldPat) {
    if f.colon_token.is_none() {
        f.colon_token = Some(Default::default());
    }
}

/// A guard's reads of its pattern's bindings, renamed to their fresh names.
struct RenameReads<'a>(&'a [Binding]);

impl VisitMut for RenameReads<'_> {
    fn visit_expr_path_mut(&mut self, p: &mut syn::ExprPath) {
        if let Some(i) = p.path.get_ident() {
            if let Some(b) = self.0.iter().find(|b| b.name == *i) {
                p.path = b.fresh.clone().into();
            }
        }
    }
}

impl VisitMut for Rewriter {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // `x.last().unwrap()` (`*x.first().unwrap()`, `.copied()`, `.expect(..)`) is the
        // element it names, `x[x.len() - 1]`.
        let end = match &*e {
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => end_element(&u.expr),
            other => end_element(other),
        };
        if let Some(element) = end {
            *e = element;
        }
        // `x.get(i).copied().unwrap_or(d)` (`map_or`, `unwrap_or_default`, of `first` and
        // `last` too) is the `if` it stands for.
        if let Some(test) = optional_use(e) {
            *e = test;
        }
        // `*x.iter().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap()` (`min_by`, `total_cmp`)
        // is the element a loop over the indices picks.
        if let Some((base, pick)) = extreme_element(e) {
            let (best, k) = (self.fresh("best"), self.fresh("k"));
            let better: Expr = match pick {
                Pick::Above => syn::parse_quote!(#base[#k] > #base[#best]),
                Pick::AboveOrEqual => syn::parse_quote!(#base[#k] >= #base[#best]),
                Pick::Below => syn::parse_quote!(#base[#k] < #base[#best]),
                Pick::BelowOrEqual => syn::parse_quote!(#base[#k] <= #base[#best]),
            };
            *e = syn::parse_quote!({
                let mut #best = 0usize;
                for #k in 1..#base.len() {
                    if #better {
                        #best = #k;
                    }
                }
                #base[#best]
            });
        }
        // `v.sort_by(|a, b| a.partial_cmp(b).unwrap());` in the function's own block: the
        // permutation that sorts it (`__rt::sorted_order`, an integer result), applied.
        if self.nested == 0 {
            if let Some((v, order)) = sorted(e) {
                let (v, Order { ascending, total }) = (v.clone(), order);
                let (perm, old, k) = (self.fresh("order"), self.fresh("unsorted"), self.fresh("k"));
                let descending = !ascending;
                *e = syn::parse_quote!({
                    let #perm = ::autodiff::__rt::sorted_order(&#v, #descending, #total);
                    let #old = #v.clone();
                    for #k in 0..#v.len() {
                        #v[#k] = #old[#perm[#k]];
                    }
                });
                return;
            }
        }
        // Inner `match`es first (in the scrutinee, guards and arms).
        let (nests, loops) = (nests(e), is_loop(e));
        self.nested += usize::from(nests);
        self.loops += usize::from(loops);
        syn::visit_mut::visit_expr_mut(self, e);
        self.nested -= usize::from(nests);
        self.loops -= usize::from(loops);
        // `if let Some(&v) = x.get(i) { a } else { b }` is `if i < x.len() { let v = x[i]; a }
        // else { b }` (the element is differentiated: no `Option` holds it).
        if let Some(test) = optional_if_let(e) {
            *e = test;
            return;
        }
        // `if let P = e { a } else { b }` is `match e { P => a, _ => b }`.
        if let Expr::If(i) = e {
            if let Expr::Let(l) = &*i.cond {
                let (pat, value, then) = (&l.pat, &l.expr, &i.then_branch);
                let otherwise = match &i.else_branch {
                    Some((_, b)) => quote!(#b),
                    None => quote!({}),
                };
                let m: syn::ExprMatch =
                    syn::parse_quote!(match #value { #pat => #then, _ => #otherwise });
                *e = self.rewrite(&m);
                return;
            }
        }
        // `while let P = e { body }` is `loop { let P = e else { break; }; body }`.
        if let Expr::While(w) = e {
            if let Expr::Let(l) = &*w.cond {
                let leave: Expr = syn::parse_quote!({
                    break;
                });
                let mut stmts = self.let_else(&l.pat, &l.expr, &leave);
                stmts.extend(w.body.stmts.iter().cloned());
                let label = &w.label;
                *e = syn::parse_quote!(#label loop { #(#stmts)* });
                return;
            }
        }
        // `walk.for_each(|v| body)` is `for v in walk { body }`; `std::mem::swap(&mut a, &mut
        // b)` an exchange of values (of elements, for buffers).
        if let Some(f) = for_each(e) {
            *e = f;
        }
        if let Some((a, b)) = swapped(e) {
            let (a, b) = (a.clone(), b.clone());
            *e = self.swap(&a, &b);
            return;
        }
        if let Expr::Assign(a) = e {
            if let Some(fill) = self.assign_buffer(a) {
                *e = fill;
                return;
            }
        }
        if let Expr::ForLoop(f) = e {
            if let Some(indexed) = self.mutable_walk(f) {
                *e = indexed;
                return;
            }
            self.filtered(f);
            parts_of_zips(&mut f.expr);
            if let Some(indexed) = self.indexed_loop(f) {
                *e = indexed;
                return;
            }
        }
        if let Expr::Match(m) = e {
            // A test written as a `match` with literal arms is a condition already (one with
            // a guard is rewritten: the guard may read a binding).
            if !(is_test(m) && m.arms.iter().all(|a| a.guard.is_none())) {
                *e = self.rewrite(m);
            }
        }
    }

    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        syn::visit_mut::visit_block_mut(self, b);
        self.loop_values(b);
        // `let P = e else { diverge };`: `if !(e matches P) { diverge }`, then each binding
        // taken out of `e`, in the block itself (the rest of the block reads them).
        if !b
            .stmts
            .iter()
            .any(|s| matches!(s, syn::Stmt::Local(l) if l.init.as_ref().is_some_and(|i| i.diverge.is_some())))
        {
            return;
        }
        let mut stmts = Vec::with_capacity(b.stmts.len());
        for s in std::mem::take(&mut b.stmts) {
            match s {
                syn::Stmt::Local(syn::Local {
                    pat,
                    init:
                        Some(syn::LocalInit {
                            expr,
                            diverge: Some((_, diverge)),
                            ..
                        }),
                    ..
                }) => stmts.extend(self.let_else(&pat, &expr, &diverge)),
                s => stmts.push(s),
            }
        }
        b.stmts = stmts;
    }
}

impl Rewriter {
    /// `for v in xs.iter_mut() { *v = e; }` (also `for v in &mut xs`, enumerated, zipped with
    /// a walk that reads, `for (y, &x) in ys.iter_mut().zip(xs)`) as the index loop it stands
    /// for: `for i in 0..xs.len() { xs[i] = e; }`, every `*v` (and `v` itself: `v[k]` of a
    /// point, `v.iter_mut()` of a nested walk, rewritten first) the element `xs[i]`. So an
    /// update in place is a store into a buffer like any other. A body that binds the item's
    /// name again is a compile error there (the rewriting is by name).
    fn mutable_walk(&mut self, f: &syn::ExprForLoop) -> Option<Expr> {
        if f.label.is_some() {
            return None;
        }
        let (walk, enumerated) = enumerated(&f.expr);
        // The walk that writes, the other side of a zip, and whether it is the zip's second.
        let (walk, other, second) = match strip(walk) {
            Expr::MethodCall(m) if m.method == "zip" && m.args.len() == 1 => {
                if mutable_base(&m.receiver).is_some() {
                    (&*m.receiver, Some(&m.args[0]), false)
                } else {
                    (&m.args[0], Some(&*m.receiver), true)
                }
            }
            w => (w, None, false),
        };
        let base = mutable_base(walk)?;
        if !is_place(base) {
            return None;
        }
        // The other side of a zip: a walk that reads (`xs`, `&xs`, `xs.iter()`, `.copied()`).
        let other = match other {
            Some(o) => Some(read_base(o)?),
            None => None,
        };
        let (index_pat, item_pat) = match (&*f.pat, enumerated) {
            (Pat::Tuple(t), true) if t.elems.len() == 2 => (Some(&t.elems[0]), &t.elems[1]),
            (_, true) => return None,
            (p, false) => (None, p),
        };
        let (item, other_pat) = match (item_pat, other) {
            (Pat::Tuple(t), Some(_)) if t.elems.len() == 2 => {
                let (mine, theirs) = if second { (1, 0) } else { (0, 1) };
                (&t.elems[mine], Some(unref(&t.elems[theirs])))
            }
            (_, Some(_)) => return None,
            (p, None) => (p, None),
        };
        let name = match item {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(p.ident.clone()),
            Pat::Wild(_) => None,
            _ => return None,
        };
        let mut body = f.body.clone();
        if let Some(name) = &name {
            let mut binds = BindsName(name, false);
            binds.visit_block(&body);
            if binds.1 {
                let message = format!("#[differentiate] reads and writes the items of `iter_mut()` as `*{name}`: give the name `{name}` bound again in this loop's body another name");
                return Some(syn::parse_quote_spanned!(name.span()=> compile_error!(#message)));
            }
        }
        let i = self.fresh("index");
        let element: Expr = syn::parse_quote!(#base[#i]);
        if let Some(name) = &name {
            ToElement(name, &element).visit_block_mut(&mut body);
        }
        let range = match other {
            Some(o) => quote!(0..::core::cmp::min(#base.len(), #o.len())),
            None => quote!(0..#base.len()),
        };
        let mut lets = TokenStream::new();
        if let Some(p) = index_pat {
            lets.extend(quote!(let #p = #i;));
        }
        if let (Some(p), Some(o)) = (other_pat, other) {
            lets.extend(quote!(let #p = #o[#i];));
        }
        let stmts = &body.stmts;
        Some(syn::parse_quote!(for #i in #range { #lets #(#stmts)* }))
    }

    /// `for P in walk.filter(|Q| cond) { body }` as `for P' in walk { { let Q = P'; if !(cond)
    /// { continue; } } body }`, with `P'` the loop's pattern with a fresh name for each `_` (the
    /// condition may read what the body does not) and `Q` the closure's pattern without its
    /// leading `&`s (the walk's items are read as values). So `(0..n).filter(|&j| j != i)`
    /// leaves out the pair of a particle with itself.
    fn filtered(&mut self, f: &mut syn::ExprForLoop) {
        let Expr::MethodCall(m) = strip(&f.expr) else {
            return;
        };
        if m.method != "filter" || m.args.len() != 1 {
            return;
        }
        let Expr::Closure(c) = strip(&m.args[0]) else {
            return;
        };
        if c.inputs.len() != 1 || returns(&c.body) {
            return;
        }
        let mut pat = (*f.pat).clone();
        let Some(value) = self.named(&mut pat) else {
            return;
        };
        let mut q = untyped(&c.inputs[0]);
        while let Pat::Reference(r) = q {
            q = *r.pat;
        }
        let (walk, mut cond) = ((*m.receiver).clone(), (*c.body).clone());
        // `**v < 1.0` of `|v|` (an item's reference, twice): the value, once bound by value.
        struct Names(Vec<Ident>);
        impl<'ast> Visit<'ast> for Names {
            fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
                self.0.push(p.ident.clone());
            }
        }
        let mut names = Names(Vec::new());
        names.visit_pat(&q);
        struct Derefs<'a>(&'a [Ident]);
        impl VisitMut for Derefs<'_> {
            fn visit_expr_mut(&mut self, e: &mut Expr) {
                let mut inner = &*e;
                let mut derefs = 0;
                while let Expr::Unary(syn::ExprUnary {
                    op: syn::UnOp::Deref(_),
                    expr,
                    ..
                }) = inner
                {
                    inner = expr;
                    derefs += 1;
                }
                let named = matches!(inner, Expr::Path(p) if p.path.get_ident().is_some_and(|i| self.0.contains(i)));
                if derefs > 0 && named {
                    *e = inner.clone();
                } else {
                    syn::visit_mut::visit_expr_mut(self, e);
                }
            }
        }
        Derefs(&names.0).visit_expr_mut(&mut cond);
        let body = f.body.clone();
        *f.expr = walk;
        *f.pat = pat;
        f.body = syn::parse_quote!({
            {
                let #q = #value;
                if !(#cond) {
                    continue;
                }
            }
            #body
        });
    }

    /// A loop pattern with each `_` named afresh, and the value it binds as an expression:
    /// `(i, _)` -> `(i, fresh)`, `&v` -> `v`; `None` for patterns that are not names, `_`,
    /// references and tuples of them.
    fn named(&mut self, pat: &mut Pat) -> Option<Expr> {
        match pat {
            Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none() => {
                let i = &p.ident;
                Some(syn::parse_quote!(#i))
            }
            Pat::Wild(_) => {
                let v = self.fresh("item");
                *pat = syn::parse_quote!(#v);
                Some(syn::parse_quote!(#v))
            }
            Pat::Reference(r) if r.mutability.is_none() => self.named(&mut r.pat),
            Pat::Paren(p) => self.named(&mut p.pat),
            Pat::Tuple(t) => {
                let mut elems = Vec::new();
                for p in t.elems.iter_mut() {
                    elems.push(self.named(p)?);
                }
                Some(syn::parse_quote!((#(#elems,)*)))
            }
            _ => None,
        }
    }

    /// `let r = loop { .. break e; .. };`: the value kept in a local the `break`s assign,
    /// `let mut v: F = Default::default(); loop { .. { v = e; break; } .. } let r: F = v;`,
    /// with `F` the `let`'s type or the function's float.
    fn loop_values(&mut self, b: &mut syn::Block) {
        let valued = |s: &syn::Stmt| {
            matches!(s, syn::Stmt::Local(syn::Local { init: Some(i), .. })
                if i.diverge.is_none()
                    && matches!(strip(&i.expr), Expr::Loop(l) if l.label.is_none() && breaks_with_value(&l.body)))
        };
        if !b.stmts.iter().any(valued) {
            return;
        }
        let mut stmts = Vec::with_capacity(b.stmts.len() + 2);
        for s in std::mem::take(&mut b.stmts) {
            let syn::Stmt::Local(local) = &s else {
                stmts.push(s);
                continue;
            };
            let (pat, ty) = match &local.pat {
                Pat::Type(t) => (&*t.pat, Some((*t.ty).clone())),
                p => (p, None),
            };
            let (Some(ty), Some(init), true) =
                (ty.or_else(|| self.float.clone()), &local.init, valued(&s))
            else {
                stmts.push(s);
                continue;
            };
            let Expr::Loop(mut lp) = strip(&init.expr).clone() else {
                stmts.push(s);
                continue;
            };
            let v = self.fresh("loop_value");
            BreakValues(&v, 0).visit_block_mut(&mut lp.body);
            let new: syn::Block = syn::parse_quote!({
                let mut #v: #ty = ::core::default::Default::default();
                #lp
                let #pat: #ty = #v;
            });
            stmts.extend(new.stmts);
        }
        b.stmts = stmts;
    }
}

/// Does a loop body `break` with a value (its own `break`, not a nested loop's)?
fn breaks_with_value(body: &syn::Block) -> bool {
    struct Find(bool, usize);
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr(&mut self, e: &'ast Expr) {
            match e {
                Expr::Closure(_) => {}
                Expr::Break(b) if self.1 == 0 && b.label.is_none() && b.expr.is_some() => {
                    self.0 = true
                }
                Expr::Loop(_) | Expr::While(_) | Expr::ForLoop(_) => {
                    self.1 += 1;
                    syn::visit::visit_expr(self, e);
                    self.1 -= 1;
                }
                e => syn::visit::visit_expr(self, e),
            }
        }
    }
    let mut f = Find(false, 0);
    f.visit_block(body);
    f.0
}

/// Rewrites a loop's own `break e` as `{ v = e; break; }`.
struct BreakValues<'a>(&'a Ident, usize);

impl VisitMut for BreakValues<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Closure(_) => {}
            Expr::Break(b) if self.1 == 0 && b.label.is_none() && b.expr.is_some() => {
                let (v, value) = (self.0, b.expr.take());
                *e = syn::parse_quote!({
                    #v = #value;
                    break;
                });
            }
            Expr::Loop(_) | Expr::While(_) | Expr::ForLoop(_) => {
                self.1 += 1;
                syn::visit_mut::visit_expr_mut(self, e);
                self.1 -= 1;
            }
            e => syn::visit_mut::visit_expr_mut(self, e),
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

/// `xs.iter()`, with `.zip(..)`, `.enumerate()`, `.copied()`, `.cloned()`, `.skip(k)`,
/// `.take(k)` after it; `xs.windows(k)`, `xs.chunks(k)`, `xs.chunks_exact(k)`; a range
/// `(a..b)`, also `.rev()`, `.step_by(k)`.
fn is_walk(e: &Expr) -> bool {
    match strip(e) {
        Expr::MethodCall(m) if m.method == "iter" => m.args.is_empty(),
        Expr::Range(r) => r.start.is_some() && r.end.is_some(),
        Expr::MethodCall(m)
            if ["windows", "chunks", "chunks_exact"]
                .iter()
                .any(|n| m.method == n)
                && m.args.len() == 1 =>
        {
            true
        }
        Expr::MethodCall(m) if m.method == "rev" && m.args.is_empty() => {
            matches!(strip(&m.receiver), Expr::Range(_)) || is_walk(&m.receiver)
        }
        Expr::MethodCall(m)
            if m.method == "step_by"
                && m.args.len() == 1
                && matches!(strip(&m.receiver), Expr::Range(_)) =>
        {
            true
        }
        Expr::MethodCall(m) if m.method == "filter" && m.args.len() == 1 => is_walk(&m.receiver),
        Expr::MethodCall(m)
            if ["enumerate", "copied", "cloned"]
                .iter()
                .any(|n| m.method == n)
                && m.args.is_empty() =>
        {
            is_walk(&m.receiver)
        }
        Expr::MethodCall(m) if m.method == "zip" && m.args.len() == 1 => is_walk(&m.receiver),
        Expr::MethodCall(m)
            if (m.method == "skip" || m.method == "take" || m.method == "step_by")
                && m.args.len() == 1
                && !matches!(strip(&m.receiver), Expr::Range(_)) =>
        {
            is_walk(&m.receiver)
        }
        _ => false,
    }
}

/// Does a zip in this walk hold a `skip` or `take` walk (`x.iter().zip(x.iter().skip(1))`)?
fn zips_a_part(e: &Expr) -> bool {
    match strip(e) {
        Expr::MethodCall(m) if m.method == "zip" && m.args.len() == 1 => {
            skipped_or_taken(&m.receiver)
                || skipped_or_taken(&m.args[0])
                || zips_a_part(&m.receiver)
        }
        Expr::MethodCall(m) => zips_a_part(&m.receiver),
        _ => false,
    }
}

/// `xs.iter().skip(k)` or `.take(k)` (`.copied()` before or after).
fn skipped_or_taken(e: &Expr) -> bool {
    match strip(e) {
        Expr::MethodCall(m)
            if (m.method == "copied" || m.method == "cloned") && m.args.is_empty() =>
        {
            skipped_or_taken(&m.receiver)
        }
        Expr::MethodCall(m) if (m.method == "skip" || m.method == "take") && m.args.len() == 1 => {
            matches!(strip(&m.receiver), Expr::MethodCall(i) if i.method == "iter" && i.args.is_empty())
        }
        _ => false,
    }
}

/// The sides of zips in a walk that `skip` or `take` a slice's walk, as walks of that part of
/// it: `xs.iter().skip(k)` is `xs[min(k, xs.len())..].iter()` and `.take(k)` is
/// `xs[..min(k, xs.len())].iter()` (the same items, `skip` and `take` stopping at the end), so
/// `x.iter().zip(x.iter().skip(1))` reads neighbours as a zip of parts does.
fn parts_of_zips(e: &mut Expr) {
    let e = match e {
        Expr::Paren(p) => &mut *p.expr,
        e => e,
    };
    let Expr::MethodCall(m) = e else { return };
    if m.method == "zip" && m.args.len() == 1 {
        as_part(&mut m.receiver);
        if let Some(arg) = m.args.first_mut() {
            as_part(arg);
        }
    }
    parts_of_zips(&mut m.receiver);
}

/// [`parts_of_zips`] of one side.
fn as_part(e: &mut Expr) {
    let (copied, inner) = match strip(e) {
        Expr::MethodCall(m)
            if (m.method == "copied" || m.method == "cloned") && m.args.is_empty() =>
        {
            (Some(m.method.clone()), &*m.receiver)
        }
        other => (None, other),
    };
    let Expr::MethodCall(m) = inner else { return };
    let Expr::MethodCall(it) = strip(&m.receiver) else {
        return;
    };
    if it.method != "iter" || !it.args.is_empty() || m.args.len() != 1 {
        return;
    }
    let (base, k) = (&it.receiver, &m.args[0]);
    let part: Expr = match m.method.to_string().as_str() {
        "skip" => syn::parse_quote!(#base[::core::cmp::min(#k, #base.len())..].iter()),
        "take" => syn::parse_quote!(#base[..::core::cmp::min(#k, #base.len())].iter()),
        _ => return,
    };
    *e = match copied {
        Some(c) => syn::parse_quote!(#part.#c()),
        None => part,
    };
}

/// The place a walk that writes walks: `xs` of `xs.iter_mut()` or `&mut xs`.
fn mutable_base(walk: &Expr) -> Option<&Expr> {
    let (walk, _) = enumerated(walk);
    // Either side of a zip.
    if let Expr::MethodCall(m) = strip(walk) {
        if m.method == "zip" && m.args.len() == 1 {
            return mutable_base(&m.receiver).or_else(|| mutable_base(&m.args[0]));
        }
    }
    match strip(walk) {
        Expr::MethodCall(m) if m.method == "iter_mut" && m.args.is_empty() => Some(&m.receiver),
        Expr::Reference(r) if r.mutability.is_some() => Some(&r.expr),
        _ => None,
    }
}

/// The values a function returning a tuple of `n` floats ends with (its tail, through `if`,
/// `match` and blocks, and each `return`), as arrays: `(a, b)` is `[a, b]`, any other value
/// (a call, a name) `{ let (r0, r1) = value; [r0, r1] }`. The body then computes an array,
/// a vector-valued function's output like `[F; N]`; the companions take the tuple's adjoint
/// and give back tuples (`emit.rs`, the runtime's `VectorOutput` for tuples).
fn tuple_tails(block: &mut syn::Block, n: usize, fresh: &mut impl FnMut(&str) -> Ident) {
    fn tail(block: &mut syn::Block, n: usize, fresh: &mut dyn FnMut(&str) -> Ident) {
        if let Some(syn::Stmt::Expr(e, None)) = block.stmts.last_mut() {
            arrayed(e, n, fresh);
        }
    }
    fn arrayed(e: &mut Expr, n: usize, fresh: &mut dyn FnMut(&str) -> Ident) {
        match e {
            Expr::Tuple(t) if t.elems.len() == n => {
                let elems = &t.elems;
                *e = syn::parse_quote!([#elems]);
            }
            Expr::Paren(p) => arrayed(&mut p.expr, n, fresh),
            Expr::Block(b) => tail(&mut b.block, n, fresh),
            Expr::If(i) => {
                tail(&mut i.then_branch, n, fresh);
                if let Some((_, els)) = &mut i.else_branch {
                    arrayed(els, n, fresh);
                }
            }
            Expr::Match(m) => {
                for arm in &mut m.arms {
                    arrayed(&mut arm.body, n, fresh);
                }
            }
            // A `return` ends the function: its value is arrayed where it stands.
            Expr::Return(_) => {}
            other => {
                let names: Vec<Ident> = (0..n).map(|k| fresh(&format!("returned{k}"))).collect();
                *other = syn::parse_quote!({
                    let (#(#names),*) = #other;
                    [#(#names),*]
                });
            }
        }
    }
    struct Returns<'f>(usize, &'f mut dyn FnMut(&str) -> Ident);
    impl VisitMut for Returns<'_> {
        fn visit_expr_mut(&mut self, e: &mut Expr) {
            match e {
                Expr::Closure(_) => {}
                Expr::Return(r) => {
                    if let Some(value) = &mut r.expr {
                        syn::visit_mut::visit_expr_mut(self, value);
                        arrayed(value, self.0, self.1);
                    }
                }
                _ => syn::visit_mut::visit_expr_mut(self, e),
            }
        }
    }
    Returns(n, fresh).visit_block_mut(block);
    tail(block, n, fresh);
}

/// `x.first().unwrap()` as `x[0]` and `x.last().unwrap()` as `x[x.len() - 1]` (also through
/// `.copied()` / `.cloned()`, and with `.expect(..)`), of a place `x`. Both panic on an empty
/// slice, as the unwrap does.
fn end_element(e: &Expr) -> Option<Expr> {
    let Expr::MethodCall(m) = strip(e) else {
        return None;
    };
    let unwrapped =
        (m.method == "unwrap" && m.args.is_empty()) || (m.method == "expect" && m.args.len() == 1);
    if !unwrapped {
        return None;
    }
    let mut inner = strip(&m.receiver);
    if let Expr::MethodCall(c) = inner {
        if (c.method == "copied" || c.method == "cloned") && c.args.is_empty() {
            inner = strip(&c.receiver);
        }
    }
    let Expr::MethodCall(end) = inner else {
        return None;
    };
    let x = &end.receiver;
    if !end.args.is_empty() || !is_place(x) {
        return None;
    }
    end_of(&end.method.to_string(), x)
}

/// The element `x.first()` or `x.last()` names: `x[0]`, `x[x.len() - 1]`.
fn end_of(method: &str, x: &Expr) -> Option<Expr> {
    match method {
        "first" => Some(syn::parse_quote!(#x[0])),
        "last" => Some(syn::parse_quote!(#x[#x.len() - 1])),
        _ => None,
    }
}

/// Which element `max_by` / `min_by` picks, as the test that makes a later one the pick: the
/// last of the largest (`max_by`), the first of the smallest (`min_by`), and so on with the
/// comparison reversed.
enum Pick {
    Above,
    AboveOrEqual,
    Below,
    BelowOrEqual,
}

/// `*x.iter().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap()` (`.copied()` or `.cloned()`
/// before it, `.expect(..)` after, `min_by`, `a.total_cmp(b)`, `.unwrap_or(..)` on the
/// comparison, `b` compared with `a` for the reverse order): the walked place and the pick.
fn extreme_element(e: &Expr) -> Option<(&Expr, Pick)> {
    let e = match strip(e) {
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => strip(&u.expr),
        other => other,
    };
    let Expr::MethodCall(unwrap) = e else {
        return None;
    };
    let unwrapped = (unwrap.method == "unwrap" && unwrap.args.is_empty())
        || (unwrap.method == "expect" && unwrap.args.len() == 1);
    let Expr::MethodCall(m) = strip(&unwrap.receiver) else {
        return None;
    };
    let max = match m.method.to_string().as_str() {
        "max_by" => true,
        "min_by" => false,
        _ => return None,
    };
    if !unwrapped || m.args.len() != 1 || !matches!(strip(&m.receiver), Expr::MethodCall(_)) {
        return None;
    }
    let base = read_base(&m.receiver)?;
    let order = comparator(&m.args[0])?;
    Some((
        base,
        match (max, order.ascending) {
            (true, true) => Pick::AboveOrEqual,
            (true, false) => Pick::BelowOrEqual,
            (false, true) => Pick::Below,
            (false, false) => Pick::Above,
        },
    ))
}

/// The order a comparator of two floats gives: `|a, b| a.partial_cmp(b).unwrap()`
/// (`.unwrap_or(..)`, `.expect(..)`), `|a, b| a.total_cmp(b)`, and `b` compared with `a` for
/// the reverse order.
struct Order {
    ascending: bool,
    /// By `total_cmp` (which orders NaN).
    total: bool,
}

fn comparator(e: &Expr) -> Option<Order> {
    let Expr::Closure(c) = strip(e) else {
        return None;
    };
    let names: Vec<&Ident> = c.inputs.iter().filter_map(pattern_name).collect();
    let [a, b] = names.as_slice() else {
        return None;
    };
    let mut body = strip(&c.body);
    if let Expr::Block(blk) = body {
        match blk.block.stmts.as_slice() {
            [syn::Stmt::Expr(inner, None)] => body = strip(inner),
            _ => return None,
        }
    }
    let Expr::MethodCall(outer) = body else {
        return None;
    };
    let (cmp, total) = match outer.method.to_string().as_str() {
        "unwrap" | "unwrap_or" | "expect" => match strip(&outer.receiver) {
            Expr::MethodCall(inner) if inner.method == "partial_cmp" => (inner, false),
            _ => return None,
        },
        "total_cmp" => (outer, true),
        _ => return None,
    };
    let (first, second) = (name_of(&cmp.receiver)?, name_of(cmp.args.first()?)?);
    let ascending = match (first == **a && second == **b, first == **b && second == **a) {
        (true, _) => true,
        (_, true) => false,
        _ => return None,
    };
    Some(Order { ascending, total })
}

/// `v.sort_by(|a, b| a.partial_cmp(b).unwrap());` (`sort_unstable_by`, the comparators of
/// [`comparator`]) of a local: the name and the order.
fn sorted(e: &Expr) -> Option<(&Ident, Order)> {
    let Expr::MethodCall(m) = strip(e) else {
        return None;
    };
    if !(m.method == "sort_by" || m.method == "sort_unstable_by") || m.args.len() != 1 {
        return None;
    }
    let Expr::Path(p) = strip(&m.receiver) else {
        return None;
    };
    Some((p.path.get_ident()?, comparator(&m.args[0])?))
}

/// The name a closure parameter binds: `a`, `&a`, `&&a`, `a: &&f64`.
fn pattern_name(p: &Pat) -> Option<&Ident> {
    match p {
        Pat::Ident(i) if i.subpat.is_none() => Some(&i.ident),
        Pat::Reference(r) => pattern_name(&r.pat),
        Pat::Type(t) => pattern_name(&t.pat),
        _ => None,
    }
}

/// The name `e` is, through references and dereferences (`a`, `*a`, `&b`).
fn name_of(e: &Expr) -> Option<Ident> {
    match strip(e) {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => name_of(&u.expr),
        Expr::Reference(r) => name_of(&r.expr),
        _ => None,
    }
}

/// An element that may be missing: `x.get(i)`, `x.first()`, `x.last()`, with `.copied()` or
/// `.cloned()` or not.
struct Optional {
    /// The test that it is there: `i < x.len()`.
    present: Expr,
    /// The element: `x[i]`.
    element: Expr,
    /// The `Option` holds a reference (no `.copied()`).
    by_ref: bool,
}

fn optional_element(e: &Expr) -> Option<Optional> {
    let Expr::MethodCall(m) = strip(e) else {
        return None;
    };
    let (m, by_ref) = match strip(&m.receiver) {
        Expr::MethodCall(inner)
            if (m.method == "copied" || m.method == "cloned") && m.args.is_empty() =>
        {
            (inner, false)
        }
        _ => (m, true),
    };
    let x = strip(&m.receiver);
    if !is_place(x) {
        return None;
    }
    let method = m.method.to_string();
    let (present, element): (Expr, Expr) = match (method.as_str(), m.args.len()) {
        ("get", 1) if !matches!(strip(&m.args[0]), Expr::Range(_)) => {
            let i = &m.args[0];
            (
                syn::parse_quote!((#i) < #x.len()),
                syn::parse_quote!(#x[#i]),
            )
        }
        (end, 0) => (syn::parse_quote!(0 < #x.len()), end_of(end, x)?),
        _ => return None,
    };
    Some(Optional {
        present,
        element,
        by_ref,
    })
}

/// `let` of a pattern `Some(p)` binds: `v` of `&v` when the `Option` holds a reference, `&x[i]`
/// for a plain `v` then; `p` itself of a copied element.
fn optional_binding(pat: &Pat, o: &Optional) -> Option<syn::Stmt> {
    let element = &o.element;
    Some(match (pat, o.by_ref) {
        (Pat::Reference(r), true) => {
            let p = &r.pat;
            syn::parse_quote!(let #p = #element;)
        }
        (p, true) => syn::parse_quote!(let #p = &#element;),
        (p, false) => syn::parse_quote!(let #p = #element;),
    })
}

/// `o.unwrap_or(d)` (`*o.unwrap_or(&d)` of a reference), `o.unwrap_or_default()` and
/// `o.map_or(d, |v| body)` of an element that may be missing: `if i < x.len() { x[i] } else
/// { d }`.
fn optional_use(e: &Expr) -> Option<Expr> {
    let (m, deref) = match strip(e) {
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => match strip(&u.expr) {
            Expr::MethodCall(m) => (m, true),
            _ => return None,
        },
        Expr::MethodCall(m) => (m, false),
        _ => return None,
    };
    let name = m.method.to_string();
    if !["unwrap_or", "unwrap_or_default", "map_or"].contains(&name.as_str()) {
        return None;
    }
    let o = optional_element(&m.receiver)?;
    let (present, element) = (&o.present, &o.element);
    match (name.as_str(), m.args.len()) {
        ("unwrap_or", 1) => {
            let d = match (strip(&m.args[0]), o.by_ref) {
                (Expr::Reference(r), true) if deref && r.mutability.is_none() => &*r.expr,
                (d, false) if !deref => d,
                _ => return None,
            };
            Some(syn::parse_quote!(if #present { #element } else { #d }))
        }
        ("unwrap_or_default", 0) if !o.by_ref && !deref => {
            let zero = crate::signature::literal(quote!(0.0));
            Some(syn::parse_quote!(if #present { #element } else { #zero }))
        }
        ("map_or", 2) if !deref => {
            let Expr::Closure(c) = strip(&m.args[1]) else {
                return None;
            };
            if c.inputs.len() != 1 || returns(&c.body) {
                return None;
            }
            let (d, body) = (&m.args[0], &c.body);
            let bind = optional_binding(&c.inputs[0], &o)?;
            Some(syn::parse_quote!(if #present { #bind #body } else { #d }))
        }
        _ => None,
    }
}

/// `if let Some(p) = o { a } else { b }` of an element that may be missing: `if i < x.len() {
/// let p = x[i]; a } else { b }`.
fn optional_if_let(e: &Expr) -> Option<Expr> {
    let Expr::If(i) = e else { return None };
    let Expr::Let(l) = &*i.cond else { return None };
    let Pat::TupleStruct(t) = &*l.pat else {
        return None;
    };
    if !t.path.is_ident("Some") || t.elems.len() != 1 || t.qself.is_some() {
        return None;
    }
    let o = optional_element(&l.expr)?;
    let bind = optional_binding(&t.elems[0], &o)?;
    let (present, then) = (&o.present, &i.then_branch.stmts);
    let otherwise = i.else_branch.as_ref().map(|(_, b)| quote!(else #b));
    Some(syn::parse_quote!(if #present { #bind #(#then)* } #otherwise))
}

/// `walk.for_each(|pat| body)` as `for pat in walk { body }` (a closure of one parameter that
/// does not `return`).
fn for_each(e: &Expr) -> Option<Expr> {
    let Expr::MethodCall(m) = e else { return None };
    if m.method != "for_each" || m.args.len() != 1 {
        return None;
    }
    let Expr::Closure(c) = strip(&m.args[0]) else {
        return None;
    };
    if c.inputs.len() != 1 || returns(&c.body) {
        return None;
    }
    let pat = untyped(&c.inputs[0]);
    let walk = &m.receiver;
    let body = &c.body;
    Some(match strip(body) {
        Expr::Block(b) if b.label.is_none() => {
            let block = &b.block;
            syn::parse_quote!(for #pat in #walk #block)
        }
        _ => syn::parse_quote!(for #pat in #walk { #body; }),
    })
}

/// A walk and whether `.enumerate()` ends it (`xs.iter().enumerate()`: `xs.iter()`, true).
fn enumerated(walk: &Expr) -> (&Expr, bool) {
    match strip(walk) {
        Expr::MethodCall(m) if m.method == "enumerate" && m.args.is_empty() => (&m.receiver, true),
        e => (e, false),
    }
}

/// A path's segments by name (`std::mem::swap`: `["std", "mem", "swap"]`).
fn segments(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// `std::mem::swap(&mut a, &mut b)` (`core::mem::swap`, `mem::swap`, `swap`) of two names.
fn swapped(e: &Expr) -> Option<(&Ident, &Ident)> {
    let Expr::Call(c) = e else { return None };
    let Expr::Path(p) = strip(&c.func) else {
        return None;
    };
    let is_swap = match segments(&p.path).as_slice() {
        [.., m, f] => f == "swap" && m == "mem",
        [f] => f == "swap",
        _ => false,
    };
    if !is_swap || c.args.len() != 2 {
        return None;
    }
    Some((mutable_name(&c.args[0])?, mutable_name(&c.args[1])?))
}

/// A loop or a branch: code in it may run other than once, in order.
fn nests(e: &Expr) -> bool {
    is_loop(e) || matches!(e, Expr::If(_) | Expr::Match(_))
}

fn is_loop(e: &Expr) -> bool {
    matches!(e, Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_))
}

/// The names of `func` that hold rows of floats: parameters of a rows type (`&[Vec<f64>]`), and
/// locals declared `vec![vec![..; m]; n]` or as a copy (`.to_vec()`, `.clone()`, `.to_owned()`)
/// of one.
fn rows_names(func: &ItemFn) -> HashSet<String> {
    struct Find(HashSet<String>);
    impl<'ast> Visit<'ast> for Find {
        fn visit_local(&mut self, l: &'ast syn::Local) {
            if let (Pat::Ident(p), Some(init)) = (&l.pat, &l.init) {
                let rows = match strip(&init.expr) {
                    Expr::Macro(m) if m.mac.path.is_ident("vec") => {
                        let mut tokens = m.mac.tokens.clone().into_iter();
                        matches!(tokens.next(), Some(proc_macro2::TokenTree::Ident(v)) if v == "vec")
                    }
                    Expr::MethodCall(m)
                        if m.args.is_empty()
                            && ["to_vec", "clone", "to_owned"]
                                .contains(&m.method.to_string().as_str()) =>
                    {
                        matches!(strip(&m.receiver), Expr::Path(q) if q.path.get_ident().is_some_and(|i| self.0.contains(&i.to_string())))
                    }
                    _ => false,
                };
                if rows {
                    self.0.insert(p.ident.to_string());
                }
            }
            syn::visit::visit_local(self, l);
        }
    }
    let mut find = Find(HashSet::new());
    for arg in &func.sig.inputs {
        if let syn::FnArg::Typed(t) = arg {
            if let (Pat::Ident(p), Some(_)) = (&*t.pat, crate::signature::rows(&t.ty)) {
                find.0.insert(p.ident.to_string());
            }
        }
    }
    find.visit_block(&func.block);
    find.0
}

/// `name` of `&mut name`.
fn mutable_name(a: &Expr) -> Option<&Ident> {
    match strip(a) {
        Expr::Reference(r) if r.mutability.is_some() => match strip(&r.expr) {
            Expr::Path(p) if p.qself.is_none() => p.path.get_ident(),
            _ => None,
        },
        _ => None,
    }
}

impl Rewriter {
    /// The exchange `std::mem::swap(&mut a, &mut b)` stands for: of buffers (either written
    /// by index: after the swap the other one holds its values), element by element (the
    /// reverse sweep needs each buffer's storage where it is: a time-stepping loop that swaps
    /// its two states costs a pass over them, no allocation); of two other values, `let t = a;
    /// a = b; b = t;`.
    fn swap(&mut self, a: &Ident, b: &Ident) -> Expr {
        let buffers =
            self.buffers.contains(&a.to_string()) || self.buffers.contains(&b.to_string());
        let t = self.fresh("swapped");
        match buffers {
            // Of one length, as a swap of storage that keeps both lengths needs.
            true => {
                let i = self.fresh("index");
                let message = format!("autodiff: `std::mem::swap` of the buffers `{a}` and `{b}` exchanges their elements, which needs them of one length");
                syn::parse_quote!({
                    assert_eq!(#a.len(), #b.len(), #message);
                    for #i in 0..#a.len() {
                        let #t = #a[#i];
                        #a[#i] = #b[#i];
                        #b[#i] = #t;
                    }
                })
            }
            false => syn::parse_quote!({
                let #t = #a;
                #a = #b;
                #b = #t;
            }),
        }
    }
}

impl Rewriter {
    /// `u = next;` of a buffer inside a loop (a time step's new state replacing the old): the
    /// new value's elements copied into the buffer, as `std::mem::swap` exchanges them, since
    /// each buffer keeps its storage for the reverse sweep (a buffer is updated in place, not
    /// carried from one iteration to the next like a value). Of one length, checked. Outside
    /// loops (in the function's own block or an arm) the buffer is rebound to the new value,
    /// of any length, with no copy.
    fn assign_buffer(&mut self, a: &syn::ExprAssign) -> Option<Expr> {
        let Expr::Path(p) = strip(&a.left) else {
            return None;
        };
        let name = p.path.get_ident()?;
        // Rows replaced by a buffer of rows (`u = next;` with `next[i][j]` written) too: rows
        // are carried from one iteration to the next only as a buffer.
        let from_buffer = matches!(strip(&a.right), Expr::Path(q)
            if q.path.get_ident().is_some_and(|i| self.buffers.contains(&i.to_string())));
        let rows = self.rows.contains(&name.to_string());
        if self.loops == 0 || !(self.buffers.contains(&name.to_string()) || rows && from_buffer) {
            return None;
        }
        let (i, message) = (
            self.fresh("index"),
            format!("autodiff: `{name} = ..` in a loop copies the new value into the buffer `{name}` element by element (each buffer keeps its storage for the reverse sweep), which needs it of the buffer's length"),
        );
        let right = &a.right;
        let (bind, source) = match strip(right) {
            Expr::Path(q) if q.path.get_ident().is_some() => (quote!(), quote!(#right)),
            _ => {
                let t = self.fresh("assigned");
                (quote!(let #t = #right;), quote!(#t))
            }
        };
        // Rows of floats element by element (a buffer of rows is written so, not by rows).
        let copy = match self.rows.contains(&name.to_string()) {
            true => {
                let j = self.fresh("column");
                quote!(for #j in 0..#name[#i].len() { #name[#i][#j] = #source[#i][#j]; })
            }
            false => quote!(#name[#i] = #source[#i];),
        };
        Some(syn::parse_quote!({
            #bind
            assert_eq!(#name.len(), #source.len(), #message);
            for #i in 0..#name.len() {
                #copy
            }
        }))
    }
}

/// The place a walk that reads walks: `xs` of `xs`, `&xs`, `xs.iter()`, `xs.iter().copied()`.
fn read_base(walk: &Expr) -> Option<&Expr> {
    let mut walk = strip(walk);
    if let Expr::MethodCall(m) = walk {
        if (m.method == "copied" || m.method == "cloned") && m.args.is_empty() {
            walk = strip(&m.receiver);
        }
    }
    let base = match walk {
        Expr::MethodCall(m) if m.method == "iter" && m.args.is_empty() => &m.receiver,
        Expr::Reference(r) if r.mutability.is_none() => &r.expr,
        w => w,
    };
    is_place(base).then_some(base)
}

/// Does a block bind `name` (a `let`, a closure's or a loop's pattern)?
struct BindsName<'a>(&'a Ident, bool);

impl<'ast> Visit<'ast> for BindsName<'_> {
    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
        self.1 |= p.ident == *self.0;
        syn::visit::visit_pat_ident(self, p);
    }
}

/// Every `*name` and `name` as the element `element` (a walk's item written in place).
struct ToElement<'a>(&'a Ident, &'a Expr);

impl VisitMut for ToElement<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        let named =
            |e: &Expr| matches!(e, Expr::Path(p) if p.qself.is_none() && p.path.is_ident(self.0));
        match e {
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) && named(strip(&u.expr)) => {
                *e = self.1.clone();
            }
            e if named(e) => *e = self.1.clone(),
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }
    // Format strings name it too (`"{v}"`): left to the macros as written.
    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        let tokens = std::mem::take(&mut m.tokens);
        m.tokens = replace_name(tokens, self.0, self.1);
    }
}

/// `tokens` with each `*name` and `name` standing alone (not after `.` or `::`) as `element`.
fn replace_name(tokens: TokenStream, name: &Ident, element: &Expr) -> TokenStream {
    use proc_macro2::TokenTree;
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out: Vec<TokenTree> = Vec::new();
    for t in trees {
        match t {
            TokenTree::Ident(i) if i == *name => {
                let after_path = matches!(out.last(), Some(TokenTree::Punct(p)) if p.as_char() == '.' || p.as_char() == ':');
                if after_path {
                    out.push(TokenTree::Ident(i));
                    continue;
                }
                // `*name`: the deref goes with it.
                if matches!(out.last(), Some(TokenTree::Punct(p)) if p.as_char() == '*') {
                    // Unary when nothing, or an operator, stands before it.
                    let unary =
                        out.len() == 1 || matches!(&out[out.len() - 2], TokenTree::Punct(_));
                    if unary {
                        out.pop();
                    }
                }
                out.push(TokenTree::Group(proc_macro2::Group::new(
                    proc_macro2::Delimiter::Parenthesis,
                    quote!(#element),
                )));
            }
            TokenTree::Group(g) => {
                let mut group =
                    proc_macro2::Group::new(g.delimiter(), replace_name(g.stream(), name, element));
                group.set_span(g.span());
                out.push(TokenTree::Group(group));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// A pattern without a leading `&` (`for &v in xs.iter().rev()`: the item is read as a value).
fn unref(p: &Pat) -> &Pat {
    match p {
        Pat::Reference(r) if r.mutability.is_none() => &r.pat,
        p => p,
    }
}

/// A closure parameter's pattern without its type (`|v: &f64|`).
fn untyped(p: &Pat) -> Pat {
    match p {
        Pat::Type(t) => (*t.pat).clone(),
        p => p.clone(),
    }
}

/// Could `body` return from its closure (a `return` or `?` outside nested closures)?
fn returns(body: &Expr) -> bool {
    crate::inline::find_return(body).is_some()
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

/// `match s { P if g => true, _ => false }`: a pattern test (every arm a `bool` literal).
pub fn is_test(m: &syn::ExprMatch) -> bool {
    m.arms.iter().all(|a| {
        matches!(
            &*a.body,
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Bool(_),
                ..
            })
        )
    })
}

/// `match s { P => v, _ => ::autodiff::__rt::unreachable_arm() }`: a binding taken out of the
/// scrutinee in the arm that matched it.
pub fn is_extraction(m: &syn::ExprMatch) -> bool {
    let [_, last] = m.arms.as_slice() else {
        return false;
    };
    matches!(&*last.body, Expr::Call(c)
        if matches!(&*c.func, Expr::Path(p)
            if p.path.segments.last().is_some_and(|s| s.ident == "unreachable_arm")))
}
