//! Tokens in and out of the compiler, once each.
//!
//! Every operation on the compiler's own tokens is a call across the proc-macro bridge, and an
//! expansion builds and joins thousands of small token streams: at opt-level 3 most of a long
//! function's expansion time went to those calls. So the expansion runs on `proc_macro2`'s
//! in-process tokens, and tokens cross the bridge twice: the input once, the output once.
//!
//! In-process tokens cannot hold the compiler's spans, so spans travel by table. Each input
//! token gets marker spans (positions in a dummy source, `crate::names`) and the table keeps its
//! compiler span. On the way out, a token made with a token's marker (a copy of it, or
//! `helper::pullback` made at `helper`) gets that token's span back; one made with
//! [`crate::names::located_at`] (a renamed local at its use) the call site located there;
//! one made with [`crate::names::mixed_site`] the mixed site; any other the call site. An
//! expansion that fails takes the compiler path, whose error spans are exact.
//!
//! `proc_macro2::fallback::force` (public, though hidden from its documentation) switches the
//! whole macro crate to in-process tokens until `unforce`; stable rustc expands one macro at a
//! time, so no other expansion of ours runs meanwhile.

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Span, TokenStream, TokenTree};
use std::collections::HashMap;

/// Functions with fewer tokens than this are expanded on the compiler's tokens: the bridge
/// costs little there. With the macro unoptimised (cargo's default, in release builds too
/// unless `build-override` says otherwise) every function is: the transfer's own cost was
/// larger (sent this way, 100 small functions took about 1 ms each more to expand, and the
/// 500-statement function of `scripts/attribute-cost.sh` 107-113 ms against 92-99 ms).
const FROM_TOKENS: usize = if cfg!(autodiff_optimized) {
    2000
} else {
    usize::MAX
};

/// The expansion on in-process tokens: the function as the compiler gave it, followed by the
/// companions. `None` for a small function, or when the expansion fails (the caller expands
/// on compiler tokens then, with exact spans for errors).
pub fn expand(attr: TokenStream, item: TokenStream) -> Option<TokenStream> {
    // `AUTODIFF_IN_PROCESS_FROM=0` sends every function this way (`.ci/run` tests with it).
    let from: usize = std::env::var("AUTODIFF_IN_PROCESS_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FROM_TOKENS);
    // Counted before anything is read, so small functions pay no more than the count.
    if from == usize::MAX || !has_at_least(item.clone(), from.saturating_sub(1)) {
        return None;
    }
    let mut table = Table::default();
    // Slot 0 marks the mixed site.
    table.spans.push(Span::mixed_site());
    let input = table.read(item.clone());
    // The options too: `pullback = path` is spanned into the output (a hand-written pullback
    // of the wrong signature is reported at its name).
    let options = table.read(attr);
    let companions = {
        let _in_process = InProcess::enter(table.spans.len());
        let item2 = build(&input, &_in_process.markers)?;
        let attr2 = build(&options, &_in_process.markers)?;
        let func: syn::ItemFn = syn::parse2(item2.clone()).ok()?;
        let companions = crate::emit::companions(attr2, &func, &item2).ok()?;
        table.write(companions)?
    };
    let mut out = item;
    out.extend(companions);
    Some(out)
}

/// Does `stream` hold at least `n` token trees, groups and what they hold (counting no further)?
fn has_at_least(stream: TokenStream, n: usize) -> bool {
    fn count(stream: TokenStream, left: &mut usize) {
        for tt in stream {
            if *left == 0 {
                return;
            }
            *left -= 1;
            if let TokenTree::Group(g) = tt {
                count(g.stream(), left);
            }
        }
    }
    let mut left = n;
    count(stream, &mut left);
    left == 0
}

/// Forces `proc_macro2`'s in-process tokens while it lives, with each slot's marker span
/// (`crate::names::enter_in_process`).
struct InProcess {
    markers: Vec<proc_macro2::Span>,
}

impl InProcess {
    fn enter(slots: usize) -> InProcess {
        proc_macro2::fallback::force();
        InProcess {
            markers: crate::names::enter_in_process(slots),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        crate::names::leave_in_process();
        proc_macro2::fallback::unforce();
    }
}

/// The input's token trees, each with its slot in the table.
enum Tree {
    Ident(String, usize),
    Punct(char, proc_macro::Spacing, usize),
    Literal(String, usize),
    Group(Delimiter, Vec<Tree>, usize),
}

#[derive(Default)]
struct Table {
    /// Each slot's compiler span.
    spans: Vec<Span>,
    /// Literals already made in the compiler, by their text.
    literals: HashMap<String, Literal>,
}

impl Table {
    fn slot(&mut self, span: Span) -> usize {
        self.spans.push(span);
        self.spans.len() - 1
    }

    fn read(&mut self, stream: TokenStream) -> Vec<Tree> {
        stream
            .into_iter()
            .map(|tt| match tt {
                TokenTree::Ident(i) => Tree::Ident(i.to_string(), self.slot(i.span())),
                TokenTree::Punct(p) => Tree::Punct(p.as_char(), p.spacing(), self.slot(p.span())),
                TokenTree::Literal(l) => Tree::Literal(l.to_string(), self.slot(l.span())),
                TokenTree::Group(g) => {
                    let k = self.slot(g.span());
                    Tree::Group(g.delimiter(), self.read(g.stream()), k)
                }
            })
            .collect()
    }

    /// The compiler span for an in-process one.
    fn span(&self, span: proc_macro2::Span) -> Span {
        let slot = crate::names::marker_slot(span);
        match slot.and_then(|(k, located)| Some((k, located, *self.spans.get(k)?))) {
            None => Span::call_site(),
            Some((0, _, _)) => Span::mixed_site(),
            Some((_, false, own)) => own,
            Some((_, true, own)) => Span::call_site().located_at(own),
        }
    }

    fn write(&mut self, stream: proc_macro2::TokenStream) -> Option<TokenStream> {
        let trees: Option<Vec<TokenTree>> = stream
            .into_iter()
            .map(|tt| -> Option<TokenTree> {
                Some(match tt {
                    proc_macro2::TokenTree::Ident(i) => {
                        let s = i.to_string();
                        let span = self.span(i.span());
                        TokenTree::Ident(match s.strip_prefix("r#") {
                            Some(raw) => Ident::new_raw(raw, span),
                            None => Ident::new(&s, span),
                        })
                    }
                    proc_macro2::TokenTree::Punct(p) => {
                        let spacing = match p.spacing() {
                            proc_macro2::Spacing::Joint => proc_macro::Spacing::Joint,
                            proc_macro2::Spacing::Alone => proc_macro::Spacing::Alone,
                        };
                        let mut q = Punct::new(p.as_char(), spacing);
                        q.set_span(self.span(p.span()));
                        TokenTree::Punct(q)
                    }
                    proc_macro2::TokenTree::Literal(l) => {
                        let s = l.to_string();
                        let span = self.span(l.span());
                        let mut lit = match self.literals.get(&s) {
                            Some(lit) => lit.clone(),
                            None => {
                                let lit: Literal = s.parse().ok()?;
                                self.literals.insert(s, lit.clone());
                                lit
                            }
                        };
                        lit.set_span(span);
                        TokenTree::Literal(lit)
                    }
                    proc_macro2::TokenTree::Group(g) => {
                        let delimiter = match g.delimiter() {
                            proc_macro2::Delimiter::Parenthesis => Delimiter::Parenthesis,
                            proc_macro2::Delimiter::Brace => Delimiter::Brace,
                            proc_macro2::Delimiter::Bracket => Delimiter::Bracket,
                            proc_macro2::Delimiter::None => Delimiter::None,
                        };
                        let inner = self.write(g.stream())?;
                        let mut h = Group::new(delimiter, inner);
                        h.set_span(self.span(g.span()));
                        TokenTree::Group(h)
                    }
                })
            })
            .collect();
        Some(trees?.into_iter().collect())
    }
}

/// The input as in-process tokens, each with its slot's marker span (`None` if a literal does
/// not lex in-process).
fn build(trees: &[Tree], markers: &[proc_macro2::Span]) -> Option<proc_macro2::TokenStream> {
    let marker = |k: usize| {
        markers
            .get(k)
            .copied()
            .unwrap_or_else(proc_macro2::Span::call_site)
    };
    trees
        .iter()
        .map(|t| -> Option<proc_macro2::TokenTree> {
            Some(match t {
                Tree::Ident(s, k) => match s.strip_prefix("r#") {
                    Some(raw) => proc_macro2::Ident::new_raw(raw, marker(*k)).into(),
                    None => proc_macro2::Ident::new(s, marker(*k)).into(),
                },
                Tree::Punct(c, spacing, k) => {
                    let spacing = match spacing {
                        proc_macro::Spacing::Joint => proc_macro2::Spacing::Joint,
                        _ => proc_macro2::Spacing::Alone,
                    };
                    let mut p = proc_macro2::Punct::new(*c, spacing);
                    p.set_span(marker(*k));
                    p.into()
                }
                Tree::Literal(s, k) => {
                    let mut l: proc_macro2::Literal = s.parse().ok()?;
                    l.set_span(marker(*k));
                    l.into()
                }
                Tree::Group(d, inner, k) => {
                    let d = match d {
                        Delimiter::Parenthesis => proc_macro2::Delimiter::Parenthesis,
                        Delimiter::Brace => proc_macro2::Delimiter::Brace,
                        Delimiter::Bracket => proc_macro2::Delimiter::Bracket,
                        Delimiter::None => proc_macro2::Delimiter::None,
                    };
                    let mut g = proc_macro2::Group::new(d, build(inner, markers)?);
                    g.set_span(marker(*k));
                    g.into()
                }
            })
        })
        .collect()
}
