//! Hygiene: names for generated locals that can never collide with the user's.
//!
//! Every generated name starts with a prefix that no identifier in the annotated function
//! starts with (`__` unless the user writes such names, then `__ad_`, `__ad1_`, ...), and
//! generated names are deduplicated among themselves. So a user variable called `grad`,
//! `d_x`, `__t0` or `f_grad` keeps working.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

thread_local! {
    /// The tokens marker spans are made of, for the expansion on in-process tokens
    /// (`crate::transfer`), which carry no hygiene of their own. Each input token gets two
    /// markers, the token's own span and the call site located at it: marker `j` (`2 k` and
    /// `2 k + 1` for slot `k`) is the join of base token `j / m` with base token `m + j % m`,
    /// where the base is `2 m` tokens `a ` of a dummy source (so token `t` is at character `2 t`,
    /// and the join's start and end give `j` back). `m` is about the square root of the markers'
    /// number: parsing a token per marker took a tenth of a long function's expansion. Slot 0
    /// stands for the mixed site. Parsed once per thread and again when more slots are needed.
    static BASE: RefCell<Vec<Span>> = const { RefCell::new(Vec::new()) };
    /// Whether the expansion runs on in-process tokens now.
    static IN_PROCESS: Cell<bool> = const { Cell::new(false) };
}

/// Enters the in-process expansion with room for `slots` slots; each slot's own marker (the
/// located ones are made when [`located_at`] asks for them).
pub fn enter_in_process(slots: usize) -> Vec<Span> {
    IN_PROCESS.with(|a| a.set(true));
    BASE.with(|b| {
        let mut b = b.borrow_mut();
        let m = b.len() / 2;
        if m * m < 2 * slots {
            let m = (2 * slots).isqrt() + 1;
            *b = "a "
                .repeat(2 * m)
                .parse::<TokenStream>()
                .map(|s| s.into_iter().map(|t| t.span()).collect())
                .unwrap_or_default();
        }
        (0..slots).map(|k| marker(&b, 2 * k)).collect()
    })
}

/// Marker `j` of the base (see `BASE`); the call site if the base is too small.
fn marker(base: &[Span], j: usize) -> Span {
    let m = base.len() / 2;
    if j >= m * m {
        return Span::call_site();
    }
    base[j / m]
        .join(base[m + j % m])
        .unwrap_or_else(Span::call_site)
}

/// Leaves the in-process expansion: no span is a marker any more.
pub fn leave_in_process() {
    IN_PROCESS.with(|a| a.set(false));
}

/// The slot a marker span stands for, and whether it is the located one.
pub fn marker_slot(span: Span) -> Option<(usize, bool)> {
    if !IN_PROCESS.with(Cell::get) {
        return None;
    }
    let range = span.byte_range();
    if range.start == range.end {
        return None; // the call site
    }
    BASE.with(|b| {
        let b = b.borrow();
        // A span from another in-process source (a string the expansion parsed) is no marker.
        span.join(*b.first()?)?;
        let m = b.len() / 2;
        let (lo, hi) = (range.start / 2, (range.end - 1) / 2);
        let j = (lo < m && hi >= m && hi < 2 * m).then(|| lo * m + (hi - m))?;
        Some((j / 2, j % 2 == 1))
    })
}

/// `Span::mixed_site()`: generated names that no user name can capture or shadow.
pub fn mixed_site() -> Span {
    if !IN_PROCESS.with(Cell::get) {
        return Span::mixed_site();
    }
    BASE.with(|b| {
        let b = b.borrow();
        if b.is_empty() {
            Span::mixed_site()
        } else {
            marker(&b, 0)
        }
    })
}

/// `span.located_at(at)`: `span`'s hygiene, `at`'s place in the source. In-process, a
/// generated name (at the call site) gets the call site located at `at`; a user's name, `at`
/// itself (the use of a local resolves in its definition's context, as the primal compiles).
pub fn located_at(span: Span, at: Span) -> Span {
    match (marker_slot(span), marker_slot(at)) {
        (None, Some((k, false))) => BASE.with(|b| marker(&b.borrow(), 2 * k + 1)),
        (Some(_), Some((_, false))) => at,
        _ => span.located_at(at),
    }
}

#[derive(Clone)]
pub struct Namer {
    prefix: String,
    used: HashSet<String>,
}

impl Namer {
    /// A namer whose names avoid every identifier in `tokens`.
    pub fn avoiding(tokens: TokenStream) -> Namer {
        let mut idents = HashSet::new();
        collect(tokens, &mut idents);
        let mut prefix = "__".to_string();
        let mut k = 0;
        while idents.iter().any(|i| i.starts_with(&prefix)) {
            prefix = if k == 0 {
                "__ad_".to_string()
            } else {
                format!("__ad{k}_")
            };
            k += 1;
        }
        Namer {
            prefix,
            used: HashSet::new(),
        }
    }

    /// A fresh name from a hint: `__t`, `__x`, `__x_1`, ...
    pub fn fresh(&mut self, hint: &str) -> Ident {
        let base = format!("{}{}", self.prefix, hint.trim_start_matches("r#"));
        let mut name = base.clone();
        let mut k = 1;
        while !self.used.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        Ident::new(&name, Span::call_site())
    }
}

fn collect(tokens: TokenStream, out: &mut HashSet<String>) {
    for tt in tokens {
        match tt {
            // Every prefix starts with `__`: other names cannot collide.
            TokenTree::Ident(i) => {
                let name = i.to_string();
                let name = name.trim_start_matches("r#");
                if name.starts_with("__") {
                    out.insert(name.to_string());
                }
            }
            TokenTree::Group(g) => collect(g.stream(), out),
            _ => {}
        }
    }
}

/// The marker spans of the in-process expansion (`crate::transfer`), outside the compiler,
/// where `proc_macro2` runs in-process anyway.
#[cfg(test)]
mod markers {
    use super::{enter_in_process, leave_in_process, located_at, marker_slot, mixed_site};
    use proc_macro2::{Span, TokenStream};

    #[test]
    fn each_slot_has_its_own_and_a_located_marker() {
        let m = enter_in_process(5);
        assert_eq!(m.len(), 5);
        for (k, span) in m.iter().enumerate() {
            assert_eq!(marker_slot(*span), Some((k, false)));
            assert_eq!(
                marker_slot(located_at(Span::call_site(), *span)),
                Some((k, true))
            );
        }
        // The mixed site is slot 0; the call site and spans of other sources are no markers.
        assert_eq!(marker_slot(mixed_site()), Some((0, false)));
        assert_eq!(marker_slot(Span::call_site()), None);
        let other: TokenStream = "b c d e f g h".parse().expect("tokens");
        for t in other {
            assert_eq!(marker_slot(t.span()), None);
        }
        // A generated name located at a user token keeps the call site's hygiene there; a
        // user's name takes its use's own span.
        assert_eq!(
            marker_slot(located_at(Span::call_site(), m[3])),
            Some((3, true))
        );
        assert_eq!(marker_slot(located_at(m[1], m[3])), Some((3, false)));
        // A long function's slots (the base grows) and a short one's after it (the base stays).
        for slots in [3000, 7] {
            let m = enter_in_process(slots);
            assert_eq!(m.len(), slots);
            for (k, span) in m.iter().enumerate() {
                assert_eq!(marker_slot(*span), Some((k, false)), "slot {k}");
                let located = located_at(Span::call_site(), *span);
                assert_eq!(marker_slot(located), Some((k, true)), "slot {k}, located");
            }
        }
        // Outside the in-process expansion nothing is a marker, and the mixed site is itself.
        leave_in_process();
        assert_eq!(marker_slot(m[1]), None);
        assert_eq!(marker_slot(mixed_site()), None);
    }
}
