//! `#[derive(Differentiable)]`: a struct whose value can be differentiated, and whose gradient
//! is a value of the same struct (JAX's pytrees, for one level of fields).
//!
//! Each field is classified by its written type: `f64` / `f32`, ndarray arrays and `Vec`s of
//! them are differentiated (their gradient is that field of the gradient, zero where nothing
//! reads it); integers, `bool`, `char`, `String`, other `Vec`s and `Option`s, and fields marked
//! `#[differentiable(constant)]` are constants (the gradient holds a copy); any other type is
//! a nested struct that derives `Differentiable` itself. The derive implements the runtime's
//! traits the generated code uses on a struct's gradient: a zero of the same shape, adding one
//! into another (a struct passed whole to a differentiated call), and scaling by the output's
//! adjoint (`f_pullback`).

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Type};

pub fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "`#[derive(Differentiable)]` does not support generic structs yet: write the struct for `f64` or `f32`",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            name.span(),
            "`#[derive(Differentiable)]` supports structs with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            data.fields.span(),
            "`#[derive(Differentiable)]` supports structs with named fields",
        ));
    };
    let mut float = None;
    let mut zero = Vec::new();
    let mut add = Vec::new();
    let mut scale = Vec::new();
    for f in &fields.named {
        let field = f.ident.as_ref().expect("named fields have names");
        let marked = marked_constant(f)?;
        if marked && element(&f.ty).is_some() {
            return Err(syn::Error::new(f.ty.span(), "a field of floats is differentiated wherever a differentiated function reads it as a value: `#[differentiable(constant)]` is for fields whose type has no gradient (an enum, a configuration struct); to hold a float constant, read it as `p.field.stop_gradient()`"));
        }
        let constant = marked || is_constant(&f.ty);
        if constant {
            zero.push(quote!(#field: ::core::clone::Clone::clone(&self.#field)));
            scale.push(quote!(#field: self.#field));
            continue;
        }
        if let Type::Reference(r) = &f.ty {
            return Err(syn::Error::new(r.span(), "a field of a differentiable struct is owned (its gradient is a value of the same struct): hold an array or a `Vec`, or mark the field `#[differentiable(constant)]`"));
        }
        if float.is_none() {
            float = element(&f.ty);
        }
        zero.push(quote!(#field: ::autodiff::__rt::zero_like(&self.#field)));
        add.push(quote!(::autodiff::__rt::acc(&mut self.#field, c.#field);));
        scale.push(quote!(#field: ::autodiff::__rt::scale(self.#field, by)));
    }
    let float = float.unwrap_or_else(|| quote!(f64));
    Ok(quote! {
        impl ::autodiff::__rt::Differentiable for #name {
            type Adjoint = #name;
            fn zero_adjoint(&self) -> #name {
                #name { #(#zero),* }
            }
        }

        impl ::autodiff::__rt::AdjointFrom<#name> for #name {
            fn adjoint_from(&self, c: #name) -> #name {
                c
            }
        }

        impl ::autodiff::__rt::Accumulate<#name> for #name {
            #[allow(unused_variables)]
            fn accumulate(&mut self, c: #name) {
                #(#add)*
            }
        }

        impl ::autodiff::__rt::Scale<#float> for #name {
            #[allow(unused_variables)]
            fn scale(self, by: #float) -> #name {
                #name { #(#scale),* }
            }
        }
    })
}

/// `#[differentiable(constant)]` on a field.
fn marked_constant(f: &syn::Field) -> syn::Result<bool> {
    let mut constant = false;
    for a in f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("differentiable"))
    {
        a.parse_nested_meta(|m| {
            if m.path.is_ident("constant") {
                constant = true;
                Ok(())
            } else {
                Err(m.error("the field option of `Differentiable` is `constant`"))
            }
        })?;
    }
    Ok(constant)
}

/// A type whose values have no gradient: integers, `bool`, `char`, `String`, `Vec`s and
/// `Option`s of other than floats.
fn is_constant(ty: &Type) -> bool {
    let Type::Path(p) = ty else {
        return false;
    };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    let name = last.ident.to_string();
    const CONSTANTS: [&str; 15] = [
        "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
        "i128", "isize", "String",
    ];
    CONSTANTS.contains(&name.as_str())
        || ((name == "Vec" || name == "Option") && element(ty).is_none())
}

/// The float a field holds: `f64` of `f64`, `Vec<f64>`, `Array2<f64>`.
fn element(ty: &Type) -> Option<TokenStream> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident == "f64" || last.ident == "f32" {
        return Some(last.ident.to_token_stream());
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => element(t),
        _ => None,
    })
}
