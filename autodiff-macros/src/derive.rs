//! `#[derive(Differentiable)]`: a struct whose value can be differentiated, and whose gradient
//! is a value of the same struct (JAX's pytrees, for one level of fields).
//!
//! Each field is classified by its written type: `f64` / `f32` (or the struct's type parameter
//! bounded by `Real`, `struct Line<F: Real> { w: F }`), ndarray arrays, `Vec`s and
//! fixed-size arrays of them (`[f64; 3]`, `Vec<[f64; 3]>`) are differentiated (their gradient
//! is that field of the gradient, zero where nothing reads it); integers, `bool`, `char`,
//! `String`, `Option`s, `Vec`s and arrays of those, and fields marked
//! `#[differentiable(constant)]` are constants (the gradient holds a copy); any other type is
//! a nested struct that derives `Differentiable` itself, and a `Vec` of any other type a `Vec`
//! of such structs (`bodies: Vec<Body>`: its gradient holds each element's, `columns.rs` reads
//! it). Const and type parameters carry over: a field whose type names a type parameter is
//! bounded by what its part of the gradient needs (`L: StructGradient<F>` for a nested one,
//! `W: Clone` for a constant). The derive implements the runtime's traits the generated code
//! uses on a struct's gradient: a zero of the same shape, adding one into another (a struct
//! passed whole to a differentiated call), and scaling by the output's
//! adjoint (`f_pullback`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Type};

pub fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let name = &input.ident;
    // Const and type parameters (a layer's width, `[f64; N]`; a potential `P`) and `where`
    // clauses carry over; the fields a type parameter appears in get the bounds their part
    // of the gradient needs (below). Lifetimes carry over too: a borrowed field (`data: &'a
    // [f64]`) is a constant, marked so, and the gradient borrows the same data.
    // A struct generic over its float (`struct Line<F: Real> { w: F }`): `F` is read as the
    // float of its fields, as in a function generic over its float.
    let _float = crate::signature::GenericFloat::enter(&input.generics, None);
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    let type_params: Vec<String> = input
        .generics
        .type_params()
        .map(|t| t.ident.to_string())
        .collect();
    let generic = |ty: &Type| {
        type_params
            .iter()
            .any(|t| crate::signature::mentions(ty.to_token_stream(), t))
    };
    let mut predicates: Vec<TokenStream> = input
        .generics
        .where_clause
        .iter()
        .flat_map(|w| w.predicates.iter().map(|p| p.to_token_stream()))
        .collect();
    let mut nested = Vec::new();
    let ty = quote!(#name #ty_generics);
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            name.span(),
            "`#[derive(Differentiable)]` supports structs (with named fields or tuple structs)",
        ));
    };
    // Named fields, or a tuple struct's (`struct Weights(Vec<f64>)`, read `w.0`): each by its
    // member, `Name { 0: .., 1: .. }` building a tuple struct as well.
    let fields: Vec<(syn::Member, &syn::Field)> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .filter_map(|f| Some((syn::Member::Named(f.ident.clone()?), f)))
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter()
            .enumerate()
            .map(|(k, f)| (syn::Member::Unnamed(syn::Index::from(k)), f))
            .collect(),
        Fields::Unit => {
            return Err(syn::Error::new(
                name.span(),
                "`#[derive(Differentiable)]` needs a struct with fields (a unit struct holds nothing to differentiate)",
            ))
        }
    };
    let mut float = None;
    let mut zero = Vec::new();
    let mut add = Vec::new();
    let mut scale = Vec::new();
    let mut elements = Vec::new();
    for (field, f) in &fields {
        let marked = marked_constant(f)?;
        if marked && element(&f.ty).is_some() && !is_constant(&f.ty) {
            return Err(syn::Error::new(f.ty.span(), "a field of floats is differentiated wherever a differentiated function reads it as a value: `#[differentiable(constant)]` is for fields whose type has no gradient (an enum, a configuration struct); to hold a float constant, read it as `p.field.stop_gradient()`"));
        }
        let constant = marked || is_constant(&f.ty);
        if constant {
            let ty = &f.ty;
            if generic(ty) {
                predicates.push(quote!(#ty: ::core::clone::Clone));
            }
            zero.push(quote!(#field: ::core::clone::Clone::clone(&self.#field)));
            scale.push(quote!(#field: self.#field));
            continue;
        }
        if let Type::Reference(r) = &f.ty {
            return Err(syn::Error::new(r.span(), "a borrowed field has no gradient (a struct's gradient is a value of the same struct): mark it `#[differentiable(constant)]` and read it as a constant (`self.data[i].stop_gradient()`), or hold an owned array or `Vec` to differentiate it"));
        }
        // A `Vec` (or an array) of structs that derive `Differentiable` (`bodies: Vec<Body>`): each
        // element's gradient a value of its struct (a slice of structs read through a field,
        // `columns.rs`), added and scaled element by element once the float is known (below).
        if let Some(inner) = struct_elements(&f.ty) {
            if generic(inner) {
                nested.push(inner.clone());
            }
            // Spanned at the field's type: an element type without the derive is an error there.
            let at = f.ty.span();
            elements.push((field.clone(), at, matches!(f.ty, Type::Array(_))));
            add.push(
                quote_spanned!(at=> ::autodiff::__rt::acc_elements(&mut self.#field, c.#field);),
            );
            scale.push(
                quote_spanned!(at=> #field: ::autodiff::__rt::scale_elements(self.#field, by)),
            );
            continue;
        }
        if float.is_none() {
            float = element(&f.ty);
        }
        // A field of a type parameter's type (or holding one) is a nested struct: its gradient
        // is a value of its own type, in the struct's float (named once that is known).
        if generic(&f.ty) && element(&f.ty).is_none() {
            nested.push(f.ty.clone());
        }
        zero.push(quote!(#field: ::autodiff::__rt::zero_like(&self.#field)));
        add.push(quote!(::autodiff::__rt::acc(&mut self.#field, c.#field);));
        scale.push(quote!(#field: ::autodiff::__rt::scale(self.#field, by)));
    }
    let float = float.unwrap_or_else(|| quote!(f64));
    // The same zero with `Vec` fields of structs the caller writes next left empty.
    let mut sparing: Vec<TokenStream> = zero.clone();
    for (field, at, array) in &elements {
        let name = match field {
            syn::Member::Named(i) => i.to_string(),
            syn::Member::Unnamed(i) => i.index.to_string(),
        };
        sparing.push(match array {
            true => {
                quote_spanned!(*at=> #field: ::autodiff::__rt::zero_array::<#float, _, _>(&self.#field))
            }
            false => {
                quote_spanned!(*at=> #field: if spared.contains(&#name) { ::std::vec::Vec::new() } else { ::autodiff::__rt::zero_elements::<#float, _>(&self.#field) })
            }
        });
        zero.push(match array {
            true => {
                quote_spanned!(*at=> #field: ::autodiff::__rt::zero_array::<#float, _, _>(&self.#field))
            }
            false => {
                quote_spanned!(*at=> #field: ::autodiff::__rt::zero_elements::<#float, _>(&self.#field))
            }
        });
    }
    for ty in &nested {
        predicates.push(quote!(#ty: ::autodiff::StructGradient<#float>));
    }
    let where_clause = match predicates.is_empty() {
        true => TokenStream::new(),
        false => quote!(where #(#predicates),*),
    };
    Ok(quote! {
        impl #impl_generics ::autodiff::__rt::Differentiable for #ty #where_clause {
            type Adjoint = #ty;
            #[inline]
            fn zero_adjoint(&self) -> #ty {
                #name { #(#zero),* }
            }
            #[inline]
            fn zero_adjoint_sparing(&self, spared: &[&str]) -> #ty {
                #name { #(#sparing),* }
            }
        }

        impl #impl_generics ::autodiff::__rt::AdjointFrom<#ty> for #ty #where_clause {
            #[inline]
            fn adjoint_from(&self, c: #ty) -> #ty {
                c
            }
        }

        impl #impl_generics ::autodiff::__rt::Accumulate<#ty> for #ty #where_clause {
            #[inline]
            #[allow(unused_variables)]
            fn accumulate(&mut self, c: #ty) {
                #(#add)*
            }
        }

        impl #impl_generics ::autodiff::__rt::Scale<#float> for #ty #where_clause {
            #[inline]
            #[allow(unused_variables)]
            fn scale(self, by: #float) -> #ty {
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

/// A type whose values have no gradient: integers, `bool`, `char`, `String`, any `Option`,
/// and `Vec`s and arrays of other than floats.
fn is_constant(ty: &Type) -> bool {
    if let Type::Array(a) = ty {
        return is_constant(&a.elem);
    }
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
    // An `Option` (a regularisation weight that may be absent, read by `if let`) holds no
    // gradient, whatever it holds.
    CONSTANTS.contains(&name.as_str())
        || name == "Option"
        || (name == "Vec" && element(ty).is_none() && struct_elements(ty).is_none())
}

/// The element type of a `Vec` of structs: `Body` of `Vec<Body>` (or `Vec<Particle<F>>`), a
/// named type that is no float, no container (`Vec`, `Option`, ndarray's) and no constant
/// ([`is_constant`]).
fn struct_elements(ty: &Type) -> Option<&Type> {
    let inner = match ty {
        // A fixed-size array of structs (`bodies: [Body; 3]`).
        Type::Array(a) => &*a.elem,
        Type::Path(p) => {
            let last = p.path.segments.last()?;
            if last.ident != "Vec" {
                return None;
            }
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            let Some(syn::GenericArgument::Type(inner)) = args.args.first() else {
                return None;
            };
            inner
        }
        _ => return None,
    };
    let Type::Path(p) = inner else {
        return None;
    };
    let name = p.path.segments.last()?.ident.to_string();
    let container = ["Vec", "Option", "Box"].contains(&name.as_str()) || name.starts_with("Array");
    let float = crate::signature::is_float_name(&p.path.segments.last()?.ident);
    (!container && !float && !is_constant(inner)).then_some(inner)
}

/// The float a field holds: `f64` of `f64`, `Vec<f64>`, `Array2<f64>`, `[f64; 3]`,
/// `Vec<[f64; 3]>`.
fn element(ty: &Type) -> Option<TokenStream> {
    if let Type::Array(a) = ty {
        return element(&a.elem);
    }
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if crate::signature::is_float_name(&last.ident) {
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
