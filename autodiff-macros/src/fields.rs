//! The fields of differentiated struct parameters (`#[differentiate(wrt(p))]` with
//! `p: &Params`, `Params` deriving `Differentiable`): which fields the body reads, and which of
//! them are constants.
//!
//! The macro sees the parameter's type by name only, not its fields' types, so a field's role
//! comes from how the body reads it. A field read where only an integer, a `bool` or an enum
//! can stand is a constant: in a range's bound (`0..p.n`), an index (`x[p.k]`), a cast
//! (`p.n as f64`), a repeat length (`vec![0.0; p.n]`), a `match` scrutinee no arm binds whole
//! (`match p.kind { .. }`), beside an integer
//! in arithmetic or a comparison (`p.n - 1`, `p.k > 2`, `x.len() / p.n`), as an argument of a
//! method of an integer (`x.len().min(p.cap)`), or as a whole condition (`if p.flag`,
//! `!p.flag`, `p.flag && ..`). Every other
//! field read is differentiated: its gradient is that field of the gradient, and rustc checks
//! its type has one (the runtime's `Differentiable`, whose message names the field's type). A
//! field read both ways is a constant. A float can stand in some of those places (`p.s as f64`),
//! so generated code checks that a constant field is not a float
//! (`__rt::constant_field`, a compile error at the read): never a silently lost gradient. A
//! field whose size alone is read (`0..p.w.len()`) is neither.

use crate::lower::strip;
use proc_macro2::{Ident, Span};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{BinOp, Expr};

/// A field of a struct parameter that the body reads (`p.w`, or `p.layer.w` in a nested one).
pub struct Field {
    /// The parameter's index.
    pub param: usize,
    /// The members from the parameter to the field: `[layer, w]` (`[0]` of a tuple struct).
    pub path: Vec<syn::Member>,
    /// Read where only an integer, a `bool` or an enum can stand: the span of the first such
    /// read's field (its last token), where generated code checks the field is not a float
    /// (`__rt::constant_field`).
    pub constant: Option<Span>,
    /// The span of the first read's field (its last token).
    pub span: Span,
}

/// The fields of the struct parameters `params` (index, name) read in `block`, and those of
/// the elements of the slices of structs `columns` (`bodies[i].pos`, `columns.rs`), in the
/// order of their first reads.
pub fn scan(
    block: &syn::Block,
    params: &[(usize, Ident)],
    columns: &[(usize, Ident)],
) -> Vec<Field> {
    let mut scan = Scan {
        params,
        columns,
        fields: Vec::new(),
        constant_context: 0,
    };
    scan.visit_block(block);
    scan.fields
}

/// `p.name` (or `p.inner.name`) of a struct parameter `p`: its index and the field's path.
pub fn of_param<'a>(
    e: &'a Expr,
    params: &[(usize, Ident)],
) -> Option<(usize, Vec<&'a syn::Member>)> {
    let Expr::Field(f) = strip(e) else {
        return None;
    };
    field_of_param(f, params)
}

/// [`of_param`] of a field expression.
pub fn field_of_param<'a>(
    f: &'a syn::ExprField,
    params: &[(usize, Ident)],
) -> Option<(usize, Vec<&'a syn::Member>)> {
    let (param, mut path) = match strip(&f.base) {
        Expr::Path(p) => {
            let ident = p.path.get_ident()?;
            let (k, _) = params.iter().find(|(_, n)| n == ident)?;
            (*k, Vec::new())
        }
        Expr::Field(inner) => field_of_param(inner, params)?,
        _ => return None,
    };
    path.push(&f.member);
    Some((param, path))
}

/// `xs[i].name` (or `xs[i].inner.name`) of a slice of structs `xs` in `params`: its index,
/// the field's path and the element's index expression (`i`).
pub fn of_column<'a>(
    e: &'a Expr,
    params: &[(usize, Ident)],
) -> Option<(usize, Vec<&'a syn::Member>, &'a Expr)> {
    let Expr::Field(f) = strip(e) else {
        return None;
    };
    column_field(f, params)
}

/// [`of_column`] of a field expression.
pub fn column_field<'a>(
    f: &'a syn::ExprField,
    params: &[(usize, Ident)],
) -> Option<(usize, Vec<&'a syn::Member>, &'a Expr)> {
    let (param, mut path, index) = match strip(&f.base) {
        Expr::Index(ix) => {
            let Expr::Path(p) = strip(&ix.expr) else {
                return None;
            };
            let ident = p.path.get_ident()?;
            let (k, _) = params.iter().find(|(_, n)| n == ident)?;
            (*k, Vec::new(), &*ix.index)
        }
        Expr::Field(inner) => column_field(inner, params)?,
        _ => return None,
    };
    path.push(&f.member);
    Some((param, path, index))
}

/// A member's name: `w`, or `0` of a tuple struct.
pub fn member_name(m: &syn::Member) -> String {
    match m {
        syn::Member::Named(i) => i.to_string(),
        syn::Member::Unnamed(i) => i.index.to_string(),
    }
}

/// The parameter's name at the root of a field expression (`p` of `p.layer.w`).
pub fn root(f: &syn::ExprField) -> Option<&Ident> {
    match strip(&f.base) {
        Expr::Path(p) => p.path.get_ident(),
        Expr::Field(inner) => root(inner),
        _ => None,
    }
}

struct Scan<'a> {
    params: &'a [(usize, Ident)],
    columns: &'a [(usize, Ident)],
    fields: Vec<Field>,
    /// How many constant contexts (ranges, indices, casts, ..) the walk is inside.
    constant_context: usize,
}

impl Scan<'_> {
    fn constant(&mut self, e: &Expr) {
        self.constant_context += 1;
        self.visit_expr(e);
        self.constant_context -= 1;
    }

    /// The field `e` reads: of a struct parameter (`p.w`), or a column of a slice of structs
    /// (`xs[i].w`, with the element's index).
    fn read<'e>(&self, e: &'e Expr) -> Option<(usize, Vec<&'e syn::Member>, Option<&'e Expr>)> {
        match of_param(e, self.params) {
            Some((param, path)) => Some((param, path, None)),
            None => of_column(e, self.columns).map(|(param, path, i)| (param, path, Some(i))),
        }
    }

    /// An operand of `!`, `&&` or `||`: a constant when it is a field itself.
    fn condition(&mut self, e: &Expr) {
        match self.read(e) {
            Some(_) => self.constant(e),
            None => self.visit_expr(e),
        }
    }
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        if let Some((param, path, index)) = self.read(e) {
            let last = quote::ToTokens::to_token_stream(e).into_iter().last();
            let span = last.map_or(e.span(), |t| t.span());
            let constant = (self.constant_context > 0).then_some(span);
            match self
                .fields
                .iter_mut()
                .find(|f| f.param == param && f.path.iter().eq(path.iter().copied()))
            {
                Some(f) => f.constant = f.constant.or(constant),
                None => self.fields.push(Field {
                    param,
                    path: path.into_iter().cloned().collect(),
                    constant,
                    span,
                }),
            }
            if let Some(index) = index {
                self.constant(index);
            }
            return;
        }
        match e {
            // `p.w.len()` (in a range's bound, say; or `p.w.iter().count()`) reads only the
            // field's size: it makes the field neither a constant nor differentiated.
            Expr::MethodCall(m)
                if crate::lower::SIZE_METHODS.contains(&m.method.to_string().as_str())
                    || (m.method == "count" && m.args.is_empty()) =>
            {
                if self.read(&m.receiver).is_none() {
                    let outer = std::mem::take(&mut self.constant_context);
                    self.visit_expr(&m.receiver);
                    self.constant_context = outer;
                }
                for a in &m.args {
                    self.constant(a);
                }
            }
            // A search over a field's values (`p.w.iter().position(|&v| v > 0.5)`, `any`):
            // a flag or an index, no gradient through it, so the field is neither (like its
            // size); the closure's reads are values where they stand.
            Expr::MethodCall(m)
                if crate::lower::SEARCHES.contains(&m.method.to_string().as_str()) =>
            {
                let mut walk = strip(&m.receiver);
                while let Expr::MethodCall(inner) = walk {
                    if !["iter", "copied", "cloned", "enumerate"]
                        .contains(&inner.method.to_string().as_str())
                    {
                        break;
                    }
                    walk = strip(&inner.receiver);
                }
                let outer = std::mem::take(&mut self.constant_context);
                if self.read(walk).is_none() {
                    self.visit_expr(&m.receiver);
                }
                for a in &m.args {
                    self.visit_expr(a);
                }
                self.constant_context = outer;
            }
            Expr::Range(r) => {
                for bound in r.start.iter().chain(&r.end) {
                    self.constant(bound);
                }
            }
            Expr::Index(i) => {
                self.visit_expr(&i.expr);
                self.constant(&i.index);
            }
            Expr::Cast(c) => self.constant(&c.expr),
            Expr::Repeat(r) => {
                self.visit_expr(&r.expr);
                self.constant(&r.len);
            }
            // A scrutinee is matched against patterns (a constant: an enum, an integer),
            // unless an arm binds it whole, or an element of a tuple scrutinee whole: then that
            // value flows into the arm (`match (p.w[0], k) { (v, 0) => v * 2.0, .. }`).
            Expr::Match(m) => {
                match strip(&m.expr) {
                    Expr::Tuple(t) => {
                        for (k, e) in t.elems.iter().enumerate() {
                            match m.arms.iter().any(|a| binds_whole(&a.pat, Some(k))) {
                                true => self.visit_expr(e),
                                false => self.constant(e),
                            }
                        }
                    }
                    e => match m.arms.iter().any(|a| binds_whole(&a.pat, None)) {
                        true => self.visit_expr(e),
                        false => self.constant(e),
                    },
                }
                for a in &m.arms {
                    self.visit_arm(a);
                }
            }
            Expr::If(i) if self.read(&i.cond).is_some() => {
                self.constant(&i.cond);
                self.visit_block(&i.then_branch);
                if let Some((_, e)) = &i.else_branch {
                    self.visit_expr(e);
                }
            }
            // A field that is the operand of `!`, `&&` or `||` is a `bool` (`!p.flag`,
            // `p.flag && x > 0.0`); other operands are conditions read as usual
            // (`p.s > 0.0 && ..` compares a float).
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Not(_)) => self.condition(&u.expr),
            Expr::Binary(b) if matches!(b.op, BinOp::And(_) | BinOp::Or(_)) => {
                self.condition(&b.left);
                self.condition(&b.right);
            }
            // With an integer on the other side (`p.n - 1`, `p.k > 2`, `x.len() / p.n`).
            Expr::Binary(b) if is_integer(&b.left) || is_integer(&b.right) => {
                self.constant(&b.left);
                self.constant(&b.right);
            }
            // A method of an integer (`x.len().min(p.cap)`): its arguments are integers too.
            Expr::MethodCall(m) if is_integer(&m.receiver) => {
                self.visit_expr(&m.receiver);
                for a in &m.args {
                    self.constant(a);
                }
            }
            // `vec![0.0; p.n]`: the repeat length; `vec![p.a, p.b]`: values.
            Expr::Macro(m) => match crate::lower::vec_contents(&m.mac) {
                Some(Expr::Repeat(r)) => {
                    self.visit_expr(&r.expr);
                    self.constant(&r.len);
                }
                Some(Expr::Array(a)) => {
                    for e in &a.elems {
                        self.visit_expr(e);
                    }
                }
                _ => {}
            },
            _ => syn::visit::visit_expr(self, e),
        }
    }
}

/// Does `pat` bind the scrutinee whole (`element` `None`), or element `k` of a tuple
/// scrutinee whole (`Some(k)`), by a lowercase name?
fn binds_whole(pat: &syn::Pat, element: Option<usize>) -> bool {
    let name = |p: &syn::Pat| {
        matches!(p, syn::Pat::Ident(i) if i.subpat.is_none()
            && !i.ident.to_string().starts_with(|c: char| c.is_ascii_uppercase()))
    };
    match (pat, element) {
        (syn::Pat::Or(o), _) => o.cases.iter().any(|c| binds_whole(c, element)),
        (syn::Pat::Paren(p), _) => binds_whole(&p.pat, element),
        (p, _) if name(p) => true,
        (syn::Pat::Tuple(t), Some(k)) => t.elems.get(k).is_some_and(|p| binds_whole(p, None)),
        _ => false,
    }
}

/// An expression that is an integer whatever the fields' types: an integer literal (`2`,
/// `0usize`), a length (`x.len()`, `m.nrows()`), a cast to an integer type, or arithmetic of
/// such (`x.len() - 1`).
fn is_integer(e: &Expr) -> bool {
    match strip(e) {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(_),
            ..
        }) => true,
        Expr::MethodCall(m) => {
            matches!(
                m.method.to_string().as_str(),
                "len" | "nrows" | "ncols" | "ndim" | "count"
            ) && m.args.is_empty()
        }
        Expr::Cast(c) => {
            matches!(&*c.ty, syn::Type::Path(p) if p.path.get_ident().is_some_and(|i| {
                ["usize", "isize", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]
                    .iter()
                    .any(|t| i == t)
            }))
        }
        Expr::Binary(b) => {
            matches!(
                b.op,
                BinOp::Add(_) | BinOp::Sub(_) | BinOp::Mul(_) | BinOp::Div(_) | BinOp::Rem(_)
            ) && (is_integer(&b.left) || is_integer(&b.right))
        }
        _ => false,
    }
}
