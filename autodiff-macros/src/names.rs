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
    /// Marker spans for the expansion on in-process tokens (`crate::transfer`), which carry no
    /// hygiene of their own: two per input token, the token's own span and the call site located
    /// at it (`a a ` per slot of a dummy source, so slot k's are at bytes 4k and 4k + 2). Slot 0
    /// stands for the mixed site. Parsed once per thread and grown as needed (the spans stay
    /// valid: the in-process source map lives as long as the thread).
    static MARKERS: RefCell<Vec<Span>> = const { RefCell::new(Vec::new()) };
    /// Whether the expansion runs on in-process tokens now.
    static IN_PROCESS: Cell<bool> = const { Cell::new(false) };
}

/// Enters the in-process expansion with room for `slots` slots; the markers.
pub fn enter_in_process(slots: usize) -> Vec<Span> {
    IN_PROCESS.with(|a| a.set(true));
    MARKERS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < 2 * slots {
            let source = "a a ".repeat(slots.max(m.len()));
            *m = source
                .parse::<TokenStream>()
                .map(|s| s.into_iter().map(|t| t.span()).collect())
                .unwrap_or_default();
        }
        m.clone()
    })
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
    MARKERS.with(|m| {
        let m = m.borrow();
        // A span from another in-process source (a string the expansion parsed) is no marker.
        span.join(*m.first()?)?;
        let k = range.start / 4;
        (2 * k + 1 < m.len()).then_some((k, range.start % 4 == 2))
    })
}

/// `Span::mixed_site()`: generated names that no user name can capture or shadow.
pub fn mixed_site() -> Span {
    if !IN_PROCESS.with(Cell::get) {
        return Span::mixed_site();
    }
    MARKERS
        .with(|m| m.borrow().first().copied())
        .unwrap_or_else(Span::mixed_site)
}

/// `span.located_at(at)`: `span`'s hygiene, `at`'s place in the source. In-process, a
/// generated name (at the call site) gets the call site located at `at`; a user's name, `at`
/// itself (the use of a local resolves in its definition's context, as the primal compiles).
pub fn located_at(span: Span, at: Span) -> Span {
    match (marker_slot(span), marker_slot(at)) {
        (None, Some((k, false))) => MARKERS.with(|m| m.borrow()[2 * k + 1]),
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
            TokenTree::Ident(i) => {
                out.insert(i.to_string().trim_start_matches("r#").to_string());
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
        assert!(m.len() >= 10);
        for k in 0..5 {
            assert_eq!(marker_slot(m[2 * k]), Some((k, false)));
            assert_eq!(marker_slot(m[2 * k + 1]), Some((k, true)));
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
            marker_slot(located_at(Span::call_site(), m[6])),
            Some((3, true))
        );
        assert_eq!(marker_slot(located_at(m[2], m[6])), Some((3, false)));
        // Outside the in-process expansion nothing is a marker, and the mixed site is itself.
        leave_in_process();
        assert_eq!(marker_slot(m[2]), None);
        assert_eq!(marker_slot(mixed_site()), None);
    }
}
