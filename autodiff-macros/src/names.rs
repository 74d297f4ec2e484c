//! Hygiene: names for generated locals that can never collide with the user's.
//!
//! Every generated name starts with a prefix that no identifier in the annotated function
//! starts with (`__` unless the user writes such names, then `__ad_`, `__ad1_`, ...), and
//! generated names are deduplicated among themselves. So a user variable called `grad`,
//! `d_x`, `__t0` or `f_grad` keeps working.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use std::collections::HashSet;

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
