//! Phase 1: the attribute's options: `#[differentiate]`, `#[differentiate(wrt(a, b))]`,
//! `#[differentiate(checkpoint)]`, `#[differentiate(pullback = g_pullback)]`,
//! `#[differentiate(pullback_only)]`, `#[differentiate(float = F)]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Ident, Token};

/// The parsed options.
#[derive(Default)]
pub struct Options {
    /// `wrt(...)`: the parameters to differentiate with respect to; `None` means all.
    pub wrt: Option<Vec<Ident>>,
    /// `checkpoint`: top-level loops that write buffers declared outside them and run loops of
    /// their own keep each iteration's buffers and run the iteration again in the reverse
    /// sweep, instead of recording their inner loops' buffer reads.
    pub checkpoint: bool,
    /// `pullback = path`: a hand-written pullback. The body is not differentiated; calls to
    /// the function from differentiated code go through `path`.
    pub pullback: Option<syn::Path>,
    /// `pullback_only`: only `f_pullback` is written (no `f_grad`, `f_value_and_grad`), for a
    /// method of a trait implementation whose trait declares `f_pullback`.
    pub pullback_only: bool,
    /// `associated`: an associated function without `self` in an `impl` (found by itself when
    /// the function names `Self`).
    pub associated: bool,
    /// `float = F`: the name of the float type, where the function's own generics cannot say
    /// (a type parameter of the `impl` around a method, `impl<F: Real> Model<F>`, or a type
    /// alias, `type Scalar = f64;`).
    pub float: Option<Ident>,
}

pub fn parse(attr: TokenStream) -> syn::Result<Options> {
    let mut options = Options::default();
    if attr.is_empty() {
        return Ok(options);
    }
    let attr_span = syn::spanned::Spanned::span(&attr);
    let metas = Punctuated::<syn::Meta, Token![,]>::parse_terminated.parse2(attr)?;
    for meta in metas {
        match &meta {
            syn::Meta::List(list) if list.path.is_ident("wrt") => {
                if options.wrt.is_some() {
                    return Err(syn::Error::new_spanned(&meta, "`wrt` is given twice"));
                }
                // `self` too (a method differentiated with respect to its receiver).
                let names = (|input: syn::parse::ParseStream| {
                    Punctuated::<Ident, Token![,]>::parse_terminated_with(
                        input,
                        syn::ext::IdentExt::parse_any,
                    )
                })
                .parse2(list.tokens.clone())?;
                if names.is_empty() {
                    return Err(syn::Error::new_spanned(
                        &meta,
                        "`wrt()` names no parameter: write `wrt(x)` or `wrt(x, y)`, or leave `wrt` out to differentiate with respect to every float parameter",
                    ));
                }
                let mut seen: Vec<Ident> = Vec::new();
                for name in names {
                    if seen.contains(&name) {
                        return Err(syn::Error::new_spanned(
                            &name,
                            format!("`{name}` is named twice in `wrt`"),
                        ));
                    }
                    seen.push(name);
                }
                options.wrt = Some(seen);
            }
            syn::Meta::Path(p) if p.is_ident("checkpoint") => {
                if options.checkpoint {
                    return Err(syn::Error::new_spanned(&meta, "`checkpoint` is given twice"));
                }
                options.checkpoint = true;
            }
            syn::Meta::Path(p) if p.is_ident("associated") => {
                if options.associated {
                    return Err(syn::Error::new_spanned(&meta, "`associated` is given twice"));
                }
                options.associated = true;
            }
            syn::Meta::Path(p) if p.is_ident("pullback_only") => {
                if options.pullback_only {
                    return Err(syn::Error::new_spanned(&meta, "`pullback_only` is given twice"));
                }
                options.pullback_only = true;
            }
            syn::Meta::NameValue(nv) if nv.path.is_ident("float") => {
                if options.float.is_some() {
                    return Err(syn::Error::new_spanned(&meta, "`float` is given twice"));
                }
                match &nv.value {
                    syn::Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                        options.float = p.path.get_ident().cloned();
                    }
                    other => {
                        return Err(syn::Error::new_spanned(
                            other,
                            "`float = ..` takes the name of the float type: a type parameter bounded by `autodiff::Real` (`float = F`) or a type alias of `f64` or `f32` (`float = Scalar`)",
                        ))
                    }
                }
            }
            syn::Meta::NameValue(nv) if nv.path.is_ident("pullback") => {
                if options.pullback.is_some() {
                    return Err(syn::Error::new_spanned(&meta, "`pullback` is given twice"));
                }
                match &nv.value {
                    syn::Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => {
                        options.pullback = Some(p.path.clone());
                    }
                    other => {
                        return Err(syn::Error::new_spanned(
                            other,
                            "`pullback = ..` takes the path of the hand-written pullback function: `pullback = g_pullback`",
                        ))
                    }
                }
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    &meta,
                    "unknown #[differentiate] option: the supported options are `wrt(param, ...)`, `checkpoint`, `pullback = path`, `pullback_only`, `associated` and `float = F`",
                ))
            }
        }
    }
    if options.pullback.is_some() && options.pullback_only {
        return Err(syn::Error::new(
            attr_span,
            "`pullback = ..` names a hand-written pullback and `pullback_only` asks for a generated one alone: give one of them",
        ));
    }
    if options.pullback.is_some() && (options.wrt.is_some() || options.checkpoint) {
        return Err(syn::Error::new(
            attr_span,
            "`pullback = ..` takes the place of the generated derivative, so `wrt` and `checkpoint` (which shape the generated one) do not apply: give `pullback` alone",
        ));
    }
    Ok(options)
}
