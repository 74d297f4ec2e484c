//! The `#[differentiate]` attribute.
//!
//! One module per phase, wired together here:
//! 1. [`attr`]: the attribute's options;
//! 2. [`signature`]: which parameters are differentiable, and the float type;
//! 3. [`lower`]: the body into the small A-normal-form [`ir`], with spanned errors;
//! 4. [`rules`]: the table of derivative rules, one entry per primitive;
//! 5. [`reverse`]: the reverse sweep, and what the forward sweep must keep for it;
//! 6. [`emit`]: the companions `f_grad`, `f_value_and_grad` and `f_pullback`.
#![forbid(unsafe_code)]

mod attr;
mod emit;
mod ir;
mod lower;
mod names;
mod reverse;
mod rules;
mod signature;

use proc_macro::TokenStream;

/// Generates reverse-mode gradient companions beside an ordinary function.
///
/// For `fn f(x: f64, y: f64) -> f64` it adds, with `f`'s visibility:
/// - `f_grad(x, y) -> (f64, f64)`: the gradient (bare for one differentiable parameter);
/// - `f_value_and_grad(x, y) -> (f64, (f64, f64))`: the value and the gradient;
/// - `f_pullback(x, y, d_out) -> (f64, f64)`: the gradient scaled by `d_out`, with `()` for
///   each constant parameter; this is what calls to `f` from other differentiated code use.
///
/// `#[differentiate(wrt(y))]` restricts `f_grad` and `f_value_and_grad` to the named
/// parameters. The function itself is left exactly as written. See the README for the
/// supported syntax.
#[proc_macro_attribute]
pub fn differentiate(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into()).into()
}

/// The whole expansion, on `proc_macro2` tokens so that it can run outside the compiler.
/// It never panics: every failure becomes a `compile_error!` with a span.
fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let err = syn::Error::new(
                e.span(),
                format!("#[differentiate] applies to a free function (`fn f(x: f64) -> f64 {{ .. }}`): {e}"),
            );
            let mut out = item;
            out.extend(err.to_compile_error());
            return out;
        }
    };
    match emit::companions(attr, &func) {
        Ok(companions) => quote::quote!(#func #companions),
        Err(err) => {
            let err = err.to_compile_error();
            quote::quote!(#func #err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::expand;
    use quote::quote;

    /// The expansion of valid input is valid Rust that keeps the function and adds the three
    /// companions.
    #[test]
    fn expansion_parses_and_adds_the_companions() {
        let out = expand(
            quote!(),
            quote! {
                pub fn f(x: f64, n: usize, y: f64) -> f64 {
                    let mut r = x * y;
                    if x > 0.0 { r = r * x.exp(); } else { r += y.sin(); }
                    if r > 10.0 { return r.sqrt(); }
                    r * (n as f64)
                }
            },
        );
        let file: syn::File = syn::parse2(out.clone()).expect("expansion parses");
        let names: Vec<String> = file
            .items
            .iter()
            .filter_map(|i| match i {
                syn::Item::Fn(f) => Some(f.sig.ident.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["f", "f_value_and_grad", "f_grad", "f_pullback"]);
        if std::env::var_os("AUTODIFF_PRINT_EXPANSION").is_some() {
            println!("{out}");
        }
    }

    /// Prints the expansion of the function in `AUTODIFF_EXPAND` (a debugging aid).
    #[test]
    fn print_requested_expansion() {
        if let Ok(src) = std::env::var("AUTODIFF_EXPAND") {
            let item: proc_macro2::TokenStream = src.parse().expect("valid tokens");
            println!("{}", expand(quote!(), item));
        }
    }
}
