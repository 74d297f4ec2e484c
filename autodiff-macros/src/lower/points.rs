//! Local buffers of points, kept flat.
//!
//! A buffer of fixed-size arrays written element by element (`let mut f = vec![[0.0; 3]; n];`
//! then `f[i][k] += ..`, or `let mut x = x0.to_vec();` of a `&[[f64; 3]]` parameter, then
//! `x[i][k] = ..`) is lowered as one flat buffer of floats: `f[i][k]` reads and writes
//! `f[3 * i + k]`. So every analysis and optimisation of buffers of floats serves it unchanged
//! (what the to-be-recorded analysis tapes, window copies, element updates, adjoint windows),
//! and its adjoint is one flat `Vec` too. Where the buffer is used whole (passed to a call,
//! returned, walked), it is read back as points (`__rt::unflatten`); where integer code or a
//! condition names it, it is viewed as points (`f.as_chunks::<3>().0`), so `f.len()` counts
//! points as the user wrote it.

use super::{strip, Binding, Lowered, Lowerer};
use crate::ir::{Block, Op, Operand, Part, VarId};
use crate::rules;
use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::Expr;

impl Lowerer<'_> {
    /// The width of the points a buffer starting from `init` holds, and how it starts, when it
    /// holds points: `vec![[c; N]; n]`, `vec![[a, b, c]; n]` of constants, or a copy of points
    /// (`x.to_vec()`, `x.clone()`, `x.to_owned()`, `x` of a points parameter or buffer).
    pub(super) fn points_init(
        &mut self,
        init: &Expr,
        out: &mut Block,
    ) -> syn::Result<Option<PointsInit>> {
        // `vec![[0.0; 3]; n]`.
        if let Expr::Macro(m) = strip(init) {
            if !m.mac.path.is_ident("vec") {
                return Ok(None);
            }
            let tokens = &m.mac.tokens;
            let Ok(Expr::Repeat(outer)) = syn::parse2::<Expr>(quote!([#tokens])) else {
                return Ok(None);
            };
            let n = self.rename(&outer.len)?;
            // `vec![vec![0.0; m]; n]`: rows of a width known at run time.
            if let Expr::Macro(inner) = strip(&outer.expr) {
                let tokens = &inner.mac.tokens;
                let row = syn::parse2::<Expr>(quote!([#tokens]));
                let Ok(Expr::Repeat(row)) = row.as_ref().map(strip) else {
                    return Ok(None);
                };
                if !inner.mac.path.is_ident("vec") || self.mentions_active(&row.expr) {
                    return Ok(None);
                }
                let (c, m) = (self.rename(&row.expr)?, self.rename(&row.len)?);
                let (width, rows) = (
                    self.constant_let("width", m, out),
                    self.constant_let("rows", n, out),
                );
                let (w, r) = (&self.vars[width].name, &self.vars[rows].name);
                let flat = quote!(::std::vec![#c; #w * #r]);
                return Ok(Some(PointsInit {
                    width: syn::parse_quote!(#w),
                    lowered: Lowered::Op(Op::Verbatim(flat), false),
                    rows: Some((width, rows)),
                }));
            }
            let (width, flat) = match strip(&outer.expr) {
                Expr::Repeat(row) if !self.mentions_active(&row.expr) => {
                    let width = (*row.len).clone();
                    let c = self.rename(&row.expr)?;
                    let count = product(&width, &n);
                    (width, quote!(::std::vec![#c; #count]))
                }
                Expr::Array(row) if !self.mentions_active(&outer.expr) => {
                    let width = usize_literal(row.elems.len());
                    let row = self.rename(&outer.expr)?;
                    (width, quote!(#row.repeat(#n)))
                }
                _ => return Ok(None),
            };
            return Ok(Some(PointsInit {
                width,
                lowered: Lowered::Op(Op::Verbatim(flat), false),
                rows: None,
            }));
        }
        // A copy of points: of a parameter, flattened; of a buffer, a copy of the flat buffer.
        let source = match strip(init) {
            Expr::MethodCall(m)
                if m.args.is_empty()
                    && ["to_vec", "clone", "to_owned"].contains(&m.method.to_string().as_str()) =>
            {
                strip(&m.receiver)
            }
            e => e,
        };
        let Some(v) = self.local(source) else {
            return Ok(None);
        };
        let active = self.vars[v].active;
        if let Some(width) = self.points_params.get(&v).cloned() {
            let rule = rules::operator("flatten").expect("the flatten rule");
            let op = self.flat_op(rule, v, &width);
            return Ok(Some(PointsInit {
                width,
                lowered: Lowered::Op(op, active),
                rows: None,
            }));
        }
        // A copy of a `&[Vec<f64>]` parameter's rows (of one length, checked at run time).
        if v < self.params && self.row_bases.contains(&v) {
            let name = self.vars[v].name.clone();
            let width =
                self.constant_let("width", quote!(::autodiff::__rt::row_width(&#name)), out);
            let rows = self.constant_let("rows", quote!(#name.len()), out);
            let rule = rules::operator("flatten_rows").expect("the flatten_rows rule");
            let w = &self.vars[width].name;
            return Ok(Some(PointsInit {
                width: syn::parse_quote!(#w),
                lowered: Lowered::Op(Op::generated(rule, Operand::Var(v), Vec::new()), active),
                rows: Some((width, rows)),
            }));
        }
        if let Some(width) = self.points_buffers.get(&v).cloned() {
            let rule = rules::method("clone").expect("the clone rule");
            let op = Op::generated(rule, Operand::Var(v), Vec::new());
            return Ok(Some(PointsInit {
                width,
                lowered: Lowered::Op(op, active),
                rows: self.runtime_rows.get(&v).copied(),
            }));
        }
        Ok(None)
    }

    /// A constant computed once where a buffer of rows is declared (its width, its number of
    /// rows), under a name of its own.
    fn constant_let(&mut self, hint: &str, value: TokenStream, out: &mut Block) -> VarId {
        let var = self.new_var(hint, false, None);
        out.stmts.push(crate::ir::Stmt::Let {
            var,
            op: Op::Verbatim(value),
        });
        var
    }

    /// The width and row count of a buffer of rows `e` names (`vec![vec![0.0; m]; n]`).
    pub(super) fn runtime_rows_of(&self, e: &Expr) -> Option<(VarId, VarId)> {
        self.local(e)
            .and_then(|v| self.runtime_rows.get(&v).copied())
    }

    /// `flatten` or `unflatten` of `v`, with the points' width.
    fn flat_op(&self, rule: &'static rules::Rule, v: VarId, width: &Expr) -> Op {
        let width = match width {
            Expr::Lit(_) | Expr::Path(_) => quote!(::autodiff::__rt::Width::<#width>),
            _ => quote!(::autodiff::__rt::Width::<{ #width }>),
        };
        Op::generated(rule, Operand::Var(v), vec![Operand::Const(width)])
    }

    /// The variable a plain name `e` names.
    fn local(&self, e: &Expr) -> Option<VarId> {
        match strip(e) {
            Expr::Path(p) if p.qself.is_none() => {
                p.path.get_ident().and_then(|i| self.lookup(&i.to_string()))
            }
            _ => None,
        }
    }

    /// The buffer of points `e` names, with its width.
    pub(super) fn points_buffer(&self, e: &Expr) -> Option<(VarId, Expr)> {
        let v = self.local(e)?;
        self.points_buffers.get(&v).map(|w| (v, w.clone()))
    }

    /// `f[i][k]` of a buffer of points: the buffer and the flat index `N * i + k`, lowered.
    pub(super) fn points_element(
        &mut self,
        ix: &syn::ExprIndex,
        out: &mut Block,
    ) -> syn::Result<Option<(VarId, Operand)>> {
        let Expr::Index(row) = strip(&ix.expr) else {
            return Ok(None);
        };
        let Some((buf, width)) = self.points_buffer(&row.expr) else {
            return Ok(None);
        };
        let (i, k) = (&*row.index, &*ix.index);
        for part in [i, k] {
            if matches!(strip(part), Expr::Range(_)) {
                return Err(syn::Error::new_spanned(part, "#[differentiate] reads and writes a buffer of points one element at a time (`f[i][k]`), not by ranges"));
            }
        }
        let flat = match (int_literal(&width), int_literal(i), int_literal(k)) {
            (Some(n), Some(i), Some(k)) => usize_literal(n * i + k),
            _ => {
                let (row, k) = (product(&width, &i.to_token_stream()), factor(k));
                syn::parse2(quote!(#row + #k))?
            }
        };
        let index = self.index_operand_spanned(&flat, ix, out)?;
        Ok(Some((buf, index)))
    }

    /// The flat index of element `k` (a constant) of row `i` of a buffer of points.
    fn row_element(
        &mut self,
        width: &Expr,
        i: &Expr,
        k: usize,
        out: &mut Block,
    ) -> syn::Result<Operand> {
        // `p[2]` of a constant point `f[1]`: the flat index itself.
        let flat = match (int_literal(width), int_literal(i)) {
            (Some(n), Some(i)) => usize_literal(n * i + k),
            _ => {
                let (row, k) = (product(width, &i.to_token_stream()), usize_literal(k));
                syn::parse2(quote!(#row + #k))?
            }
        };
        self.index_operand_spanned(&flat, i, out)
    }

    /// An index computed from the user's `at` (the error, should it read a differentiated
    /// value, points there).
    fn index_operand_spanned(
        &mut self,
        flat: &Expr,
        at: &impl ToTokens,
        out: &mut Block,
    ) -> syn::Result<Operand> {
        if self.mentions_active(flat) {
            return Err(syn::Error::new_spanned(
                at,
                "an index cannot depend on a differentiated value",
            ));
        }
        self.operand(flat, out)
    }

    /// `f[i]` of a buffer of points as a value: its elements read into a fixed-size array (a
    /// filled buffer, like an array literal).
    pub(super) fn points_row(
        &mut self,
        ix: &syn::ExprIndex,
        hint: &str,
        out: &mut Block,
    ) -> syn::Result<Option<Lowered>> {
        let Some((buf, width)) = self.points_buffer(&ix.expr) else {
            return Ok(None);
        };
        let hint = if hint.is_empty() || hint == "t" {
            "point"
        } else {
            hint
        };
        self.row_value(buf, &width, &ix.index, hint, ix, out)
            .map(Some)
    }

    /// Row `i` of the buffer of points `buf` as a value, its elements read into a fixed-size
    /// array (when the width is a number; else an error at `at`).
    fn row_value(
        &mut self,
        buf: VarId,
        width: &Expr,
        i: &Expr,
        hint: &str,
        at: &impl ToTokens,
        out: &mut Block,
    ) -> syn::Result<Lowered> {
        let n = self.literal_width(width, at)?;
        let mut values = Vec::new();
        for k in 0..n {
            values.push(self.row_element_read(buf, width, i, k, out)?);
        }
        let float = self.float.clone();
        let zero = crate::signature::cast(quote!(0.0), &float);
        Ok(self.filled_with(quote!([#zero; #n]), values, hint, out))
    }

    /// Element `k` of row `i` of the buffer of points `buf`, read.
    pub(super) fn row_element_read(
        &mut self,
        buf: VarId,
        width: &Expr,
        i: &Expr,
        k: usize,
        out: &mut Block,
    ) -> syn::Result<Operand> {
        let index = self.row_element(width, i, k, out)?;
        Ok(self.index_read(Operand::Var(buf), index, out))
    }

    /// `f[i]` of a buffer of points: the buffer, the width and the row's index (`let [a, b, c]
    /// = f[i];` reads the elements it names where they are).
    pub(super) fn points_row_of(&self, e: &Expr) -> Option<(VarId, Expr, Expr)> {
        let Expr::Index(ix) = strip(e) else {
            return None;
        };
        let (buf, width) = self.points_buffer(&ix.expr)?;
        Some((buf, width, (*ix.index).clone()))
    }

    /// `f[i] = value` into a buffer of points: one store per element (of an array literal,
    /// each element as written; of another value, its elements read).
    pub(super) fn store_points_row(
        &mut self,
        target: &syn::ExprIndex,
        value: &Expr,
        out: &mut Block,
    ) -> syn::Result<bool> {
        let Some((buf, width)) = self.points_buffer(&target.expr) else {
            return Ok(false);
        };
        let n = self.literal_width(&width, target)?;
        let values = match strip(value) {
            Expr::Array(a) if a.elems.len() == n => {
                let mut values = Vec::new();
                for el in &a.elems {
                    values.push(self.operand(el, out)?);
                }
                values
            }
            _ => {
                let whole = self.operand(value, out)?;
                (0..n)
                    .map(|k| self.index_read(whole.clone(), Operand::Const(quote!(#k)), out))
                    .collect()
            }
        };
        for (k, v) in values.into_iter().enumerate() {
            let index = self.row_element(&width, &target.index, k, out)?;
            self.store(buf, index, Part::Element, v, value, out)?;
        }
        Ok(true)
    }

    /// The point at the loop index `index` of a walk over a buffer of points, bound as the
    /// loop's pattern binds it: taken apart (`for &[a, b, c] in f.iter()`), each name an
    /// element read; whole (`for p in f.iter()`), its elements read into a fixed-size array.
    pub(super) fn point_at(
        &mut self,
        buf: VarId,
        width: &Expr,
        index: VarId,
        binding: &Binding,
        out: &mut Block,
    ) -> syn::Result<()> {
        let name = &self.vars[index].name;
        let i: Expr = syn::parse_quote!(#name);
        match binding {
            Binding::Parts(parts) => {
                for (k, part) in parts.iter().enumerate() {
                    let Some(part) = part else { continue };
                    if let Operand::Var(v) = self.row_element_read(buf, width, &i, k, out)? {
                        self.bind(part, v);
                    }
                }
            }
            Binding::Name(name) => {
                let hint = name.as_ref().map_or("point".to_string(), |n| n.to_string());
                let row = self.row_value(buf, width, &i, &hint, width, out)?;
                if let (Some(name), Lowered::Operand(Operand::Var(v))) = (name, row) {
                    self.fills.remove(&v);
                    self.bind(name, v);
                }
            }
            Binding::Pattern(_) => {}
        }
        Ok(())
    }

    /// `f.swap(i, j)` of a buffer of points: the two points exchanged, element by element.
    pub(super) fn swap_points(
        &mut self,
        m: &syn::ExprMethodCall,
        out: &mut Block,
    ) -> syn::Result<bool> {
        let Some((buf, width)) = self.points_buffer(&m.receiver) else {
            return Ok(false);
        };
        let n = self.literal_width(&width, m)?;
        let (i, j) = (&m.args[0], &m.args[1]);
        for k in 0..n {
            let at_i = self.row_element(&width, i, k, out)?;
            let at_j = self.row_element(&width, j, k, out)?;
            let vi = self.index_read(Operand::Var(buf), at_i.clone(), out);
            let vj = self.index_read(Operand::Var(buf), at_j.clone(), out);
            let e = Expr::MethodCall(m.clone());
            self.store(buf, at_i, Part::Element, vj, &e, out)?;
            self.store(buf, at_j, Part::Element, vi, &e, out)?;
        }
        Ok(true)
    }

    /// The buffer of points `v` used whole: read back as points (rows: `Vec<Vec<_>>`).
    pub(super) fn unflattened(&mut self, v: VarId) -> Option<Lowered> {
        if let Some(&(width, rows)) = self.runtime_rows.get(&v) {
            let rule = rules::operator("unflatten_rows").expect("the unflatten_rows rule");
            let ints = vec![Operand::Var(width), Operand::Var(rows)];
            let op = Op::generated(rule, Operand::Var(v), ints);
            return Some(Lowered::Op(op, self.vars[v].active));
        }
        let width = self.points_buffers.get(&v)?.clone();
        let rule = rules::operator("unflatten").expect("the unflatten rule");
        Some(Lowered::Op(
            self.flat_op(rule, v, &width),
            self.vars[v].active,
        ))
    }

    /// The width as a number, for code that needs each element by name (a point read or
    /// written whole).
    fn literal_width(&self, width: &Expr, at: &impl ToTokens) -> syn::Result<usize> {
        let runtime = self
            .runtime_rows
            .values()
            .any(|&(w, _)| matches!(width, Expr::Path(p) if p.path.is_ident(&self.vars[w].name)));
        match int_literal(width) {
            Some(n) => Ok(n),
            None if runtime => Err(syn::Error::new_spanned(at, "#[differentiate] reads and writes a buffer of rows (`vec![vec![0.0; m]; n]`) element by element (`g[i][j]`), not whole rows")),
            None => Err(syn::Error::new_spanned(at, format!("#[differentiate] reads and writes whole points of a buffer only when their width is a number; `{}` is not: read and write their elements (`f[i][k]`)", width.to_token_stream()))),
        }
    }

    /// How a name of a buffer of points reads in integer code and conditions: viewed as
    /// points (`f.as_chunks::<3>().0`, a `&[[f64; 3]]`).
    pub(super) fn points_view(&self, v: VarId, name: TokenStream) -> Option<TokenStream> {
        if self.runtime_rows.contains_key(&v) {
            return None;
        }
        let width = match self.points_buffers.get(&v)? {
            w @ (Expr::Lit(_) | Expr::Path(_)) => w.to_token_stream(),
            w => quote!({ #w }),
        };
        Some(quote!((#name.as_chunks::<#width>().0)))
    }
}

/// How a buffer of points starts: its width, its first value, and for rows of a width known
/// at run time, the variables holding the width and the number of rows.
pub(super) struct PointsInit {
    pub width: Expr,
    pub lowered: Lowered,
    pub rows: Option<(VarId, VarId)>,
}

/// `a * b`, each side in parentheses unless it is one token or a path.
fn product(a: &Expr, b: &TokenStream) -> TokenStream {
    let b: Expr = syn::parse2(b.clone()).unwrap_or_else(|_| syn::parse_quote!(#b));
    let (a, b) = (factor(a), factor(&b));
    quote!(#a * #b)
}

/// `e` as a factor of a product or a term of a sum: in parentheses unless it binds tighter.
fn factor(e: &Expr) -> TokenStream {
    match e {
        Expr::Path(_)
        | Expr::Lit(_)
        | Expr::Paren(_)
        | Expr::MethodCall(_)
        | Expr::Field(_)
        | Expr::Call(_)
        | Expr::Index(_) => e.to_token_stream(),
        _ => quote!((#e)),
    }
}

/// The value of an integer literal.
pub(super) fn int_literal(e: &Expr) -> Option<usize> {
    match strip(e) {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(n),
            ..
        }) => n.base10_parse().ok(),
        _ => None,
    }
}

pub(super) fn usize_literal(n: usize) -> Expr {
    let n = proc_macro2::Literal::usize_unsuffixed(n);
    syn::parse_quote!(#n)
}
