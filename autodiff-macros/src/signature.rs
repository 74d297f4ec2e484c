//! Phase 2: the signature. Which parameters are differentiable (by their written type), which
//! are constants, and the float type the gradient is computed in.

use crate::attr::Options;
use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

/// How a parameter takes part in differentiation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `f64` or `f32`: has a gradient.
    Float,
    /// An ndarray array or view of floats, owned or by reference: its gradient is the owned
    /// array of the same dimension.
    Array,
    /// A struct (by value or by reference) named in `wrt`: its gradient is a value of the
    /// same type (which derives `Differentiable`) whose fields the body reads as differentiated
    /// values are their gradients (`fields.rs`).
    Struct,
    /// A slice or `Vec` of structs (`&[Body]`, `Vec<Body>`) named in `wrt`: its gradient is a
    /// `Vec` of the struct, each element's differentiated fields the gradients of that
    /// element's (`columns.rs`: the body reads `bodies[i].pos[k]`, one column per field).
    Structs,
    /// Anything else: passed through, no gradient.
    Constant,
}

pub struct Param {
    pub ident: Ident,
    pub ty: Type,
    pub kind: Kind,
    /// In `wrt` (or no `wrt` given): part of `f_grad`'s result.
    pub wrt: bool,
    /// The type of its gradient (for differentiable parameters).
    pub grad_ty: TokenStream,
    /// A method's `self`: first, a constant unless `wrt(self)` names it (then a struct).
    pub receiver: bool,
}

pub struct Signature {
    pub params: Vec<Param>,
    /// `f64` or `f32`: the return type, and the type every adjoint is computed in.
    pub float: Ident,
    /// The `checkpoint` option.
    pub checkpoint: bool,
    /// `&self` (or `self`, `self: &Self`, ..) as written, for a method: a constant, the
    /// companions are methods beside it, and calls use `self.f_value_and_grad(..)`.
    pub receiver: Option<syn::Receiver>,
    /// The return type of a vector-valued function (an owned array or `Vec` of floats), whose
    /// companions are `f_pullback` (taking the output's adjoint) and `f_jacobian`; `None` for
    /// a function returning one float.
    pub output: Option<Type>,
    /// An associated function without `self` (it names `Self`, or the `associated` option):
    /// its companions are associated functions beside it, called as `Self::f_grad(..)`.
    pub associated: bool,
    /// The companions' `where` clause: the function's own, and `M: StructGradient<F>` for each
    /// struct type naming a type parameter differentiated (`wrt(m)` with `m: &M` or
    /// `m: &Model<P>`).
    pub where_clause: TokenStream,
    /// The function's type and const parameters as the companions pass them on when they
    /// call each other (`::<P, D>`; empty for a function without them), so that parameters
    /// the arguments do not determine need no inference.
    pub turbofish: TokenStream,
}

impl Signature {
    /// The parameters of one kind, by index and name (the struct parameters, the slices of
    /// structs).
    pub fn of_kind(&self, kind: Kind) -> Vec<(usize, Ident)> {
        self.params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == kind)
            .map(|(k, p)| (k, p.ident.clone()))
            .collect()
    }

    /// A method or an associated function: the companions stand in the same `impl`, with no
    /// companion type (an `impl` cannot hold one).
    pub fn is_member(&self) -> bool {
        self.receiver.is_some() || self.associated
    }

    /// How a companion calls `f`, another function of the same `impl` or module: `self.f`,
    /// `Self::f` or `f`, with the function's type and const parameters (`f::<P, D>`).
    pub fn call(&self, f: &dyn ToTokens) -> TokenStream {
        let t = &self.turbofish;
        match &self.receiver {
            Some(r) => {
                let s = &r.self_token;
                quote!(#s.#f #t)
            }
            None if self.associated => quote!(Self::#f #t),
            None => quote!(#f #t),
        }
    }

    /// The names of the parameters a companion passes on (all but a method's receiver).
    pub fn args(&self) -> Vec<&Ident> {
        self.params
            .iter()
            .filter(|p| !p.receiver)
            .map(|p| &p.ident)
            .collect()
    }

    /// The parameters `f_grad` returns gradients for, in declaration order.
    pub fn wrt(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| p.wrt)
    }
}

thread_local! {
    /// The type parameter the function being expanded is generic over as its float type
    /// (`F` of `fn f<F: Real>(x: F) -> F`), if any: [`float_type`] reads it as a float
    /// beside `f64` and `f32`, so every analysis of types serves generic functions unchanged.
    static GENERIC_FLOAT: std::cell::RefCell<Option<Ident>> = const { std::cell::RefCell::new(None) };
}

/// Names the generic float type of one function's expansion, from its generics (a type
/// parameter bounded by `Real`, `autodiff::Real`, .., in its list or its `where` clause), until
/// dropped.
pub struct GenericFloat(Option<Ident>);

impl GenericFloat {
    /// `named`: the `float = F` option, which names it outright.
    pub fn enter(generics: &syn::Generics, named: Option<&Ident>) -> GenericFloat {
        let is_real =
            |bounds: &syn::punctuated::Punctuated<syn::TypeParamBound, syn::Token![+]>| {
                bounds.iter().any(|b| {
                    matches!(b, syn::TypeParamBound::Trait(t)
                    if t.path.segments.last().is_some_and(|s| s.ident == "Real"))
                })
            };
        let mut found = named.cloned().filter(|f| !is_primitive_float(f));
        if found.is_none() {
            found = generics
                .type_params()
                .find(|t| is_real(&t.bounds))
                .map(|t| t.ident.clone());
        }
        if let (None, Some(w)) = (&found, &generics.where_clause) {
            found = w.predicates.iter().find_map(|p| match p {
                syn::WherePredicate::Type(t) if is_real(&t.bounds) => match &t.bounded_ty {
                    Type::Path(p) if p.qself.is_none() => p
                        .path
                        .get_ident()
                        .filter(|i| generics.type_params().any(|t| t.ident == **i))
                        .cloned(),
                    _ => None,
                },
                _ => None,
            });
        }
        GenericFloat(GENERIC_FLOAT.with(|g| std::mem::replace(&mut *g.borrow_mut(), found)))
    }
}

impl Drop for GenericFloat {
    fn drop(&mut self) {
        let previous = self.0.take();
        GENERIC_FLOAT.with(|g| *g.borrow_mut() = previous);
    }
}

/// Whether `id` names a float type: `f64`, `f32`, or the function's generic float.
pub fn is_float_name(id: &Ident) -> bool {
    is_primitive_float(id) || GENERIC_FLOAT.with(|g| g.borrow().as_ref() == Some(id))
}

/// `f64` or `f32` (whose literals the generated code may write), not a generic float.
pub fn is_primitive_float(f: &Ident) -> bool {
    f == "f64" || f == "f32"
}

/// A float constant of the generated code in the float type `f`: the literal itself for `f64`
/// and `f32` (its type inferred), `<F as Real>::from_f64(0.5)` for a generic float `F` (a
/// literal has no type parameter's type; the conversion folds away once instantiated).
pub fn constant(f: &Ident, literal: TokenStream) -> TokenStream {
    match is_primitive_float(f) {
        true => literal,
        false => quote!(<#f as ::autodiff::__rt::Real>::from_f64(#literal)),
    }
}

/// A float literal of code the macro writes before it knows the function's types (`desugar`):
/// the literal, or its conversion in a function generic over its float.
pub fn literal(literal: TokenStream) -> TokenStream {
    match GENERIC_FLOAT.with(|g| g.borrow().clone()) {
        None => literal,
        Some(f) => constant(&f, literal),
    }
}

/// A float constant with its type written, `1.0f64` (`literal` a decimal with a point), or the
/// conversion for a generic float.
pub fn suffixed(f: &Ident, literal: &str) -> TokenStream {
    match is_primitive_float(f) {
        true => syn::LitFloat::new(&format!("{literal}{f}"), Span::call_site()).to_token_stream(),
        false => {
            let v = syn::LitFloat::new(literal, Span::call_site());
            constant(f, quote!(#v))
        }
    }
}

/// `value as f` for an integer or `f64` value: the cast for `f64` and `f32`, the conversion
/// for a generic float.
pub fn cast(value: TokenStream, f: &Ident) -> TokenStream {
    match is_primitive_float(f) {
        true => quote!(#value as #f),
        false => quote!(<#f as ::autodiff::__rt::Real>::from_f64(#value as f64)),
    }
}

/// `f64` or `f32`, if `ty` is written as one of them (or as the function's generic float).
pub fn float_type(ty: &Type) -> Option<Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let id = p.path.get_ident()?;
            is_float_name(id).then(|| id.clone())
        }
        Type::Paren(p) => float_type(&p.elem),
        Type::Group(g) => float_type(&g.elem),
        _ => None,
    }
}

pub fn analyse(func: &ItemFn, options: &Options) -> syn::Result<Signature> {
    let sig = &func.sig;
    let mut errors = Errors::default();
    if let Some(a) = &sig.asyncness {
        errors.push(a.span(), "#[differentiate] does not support `async fn`: differentiate a plain `fn` and call it from async code");
    }
    if let Some(u) = &sig.unsafety {
        errors.push(u.span(), "#[differentiate] does not support `unsafe fn`: the gradient must be computable from safe code");
    }
    if let Some(abi) = &sig.abi {
        errors.push(abi.span(), "#[differentiate] does not support `extern` functions: differentiate a plain Rust `fn` and wrap it");
    }
    if let Some(v) = &sig.variadic {
        errors.push(
            v.span(),
            "#[differentiate] does not support variadic functions",
        );
    }
    // Type and const parameters pass through to every companion (a potential, a model, a
    // dimension `const D: usize`); the float itself cannot be one: the gradient is computed in
    // `f64` or `f32`, written out.
    let type_params: Vec<&Ident> = sig.generics.type_params().map(|t| &t.ident).collect();
    let is_type_param = |ty: &Type| match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.get_ident().is_some_and(|i| type_params.contains(&i))
        }
        _ => false,
    };
    let turbofish: Vec<&Ident> = sig
        .generics
        .params
        .iter()
        .filter_map(|g| match g {
            syn::GenericParam::Type(t) => Some(&t.ident),
            syn::GenericParam::Const(c) => Some(&c.ident),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    let turbofish = match turbofish.is_empty() {
        true => TokenStream::new(),
        false => quote!(::<#(#turbofish),*>),
    };

    let mut output = None;
    let float = match &sig.output {
        ReturnType::Type(_, ty) => match float_type(ty) {
            Some(f) => Some(f),
            None => match vector_output(ty) {
                Some(f) => {
                    output = Some((**ty).clone());
                    Some(f)
                }
                None if is_type_param(ty) => {
                    errors.push(ty.span(), &format!("`{}` is a type parameter without the bound `Real`: a #[differentiate] function generic over its float type bounds it by `autodiff::Real` (`fn f<F: Real>(x: F) -> F`), whose methods are the float math (`x.exp()`) and whose constants are written `F::from_f64(0.5)`; or write the function for `f64` or `f32`", ty.to_token_stream()));
                    None
                }
                None => {
                    errors.push(ty.span(), "a #[differentiate] function must return one `f64` or `f32` (the value whose gradient is taken), or an owned array or `Vec` of them or of points (`Vec<[f64; 3]>`), or a tuple of them (`(f64, f64)`): a vector-valued function, with its pullback and Jacobian");
                    None
                }
            },
        },
        ReturnType::Default => {
            errors.push(sig.ident.span(), "a #[differentiate] function must return one `f64` or `f32` (the value whose gradient is taken); this one returns `()`");
            None
        }
    };

    let mut params = Vec::new();
    let mut receiver = None;
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) if matches!(&*r.ty, Type::Reference(t) if t.mutability.is_some()) => errors.push(r.span(), "#[differentiate] does not support methods taking `&mut self`: the gradient's forward and reverse sweeps read the same value; take `&self`"),
            FnArg::Receiver(r) => {
                receiver = Some(r.clone());
                params.push(Param {
                    ident: Ident::from(r.self_token),
                    ty: (*r.ty).clone(),
                    kind: Kind::Constant,
                    wrt: false,
                    grad_ty: quote!(()),
                    receiver: true,
                });
            }
            FnArg::Typed(pt) => {
                let ident = match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
                    other => {
                        errors.push(other.span(), "#[differentiate] does not support patterns in parameters: bind the parameter to a name (`p: (f64, f64)`) and destructure it in the body");
                        continue;
                    }
                };
                let (kind, grad_ty) = classify(&pt.ty);
                params.push(Param { ident, ty: (*pt.ty).clone(), kind, wrt: kind != Kind::Constant, grad_ty, receiver: false });
            }
        }
    }

    if let Some(wrt) = &options.wrt {
        for p in params.iter_mut() {
            p.wrt = false;
        }
        for name in wrt {
            match params.iter_mut().find(|p| p.ident == *name) {
                None => errors.push(
                    name.span(),
                    &format!("`{name}` in `wrt` is not a parameter of `{}`", sig.ident),
                ),
                Some(p) if p.receiver => {
                    p.kind = Kind::Struct;
                    p.grad_ty = quote!(Self);
                    p.wrt = true;
                }
                Some(p) if p.kind == Kind::Constant => {
                    match (struct_type(&p.ty), struct_elements(&p.ty)) {
                        (Some(ty), _) => {
                            p.kind = Kind::Struct;
                            p.grad_ty = ty.to_token_stream();
                            p.wrt = true;
                        }
                        (None, Some(ty)) => {
                            p.kind = Kind::Structs;
                            // A fixed-size array's gradient is an array of the same length.
                            p.grad_ty = match struct_array_len(&p.ty) {
                                Some(n) => quote!([#ty; #n]),
                                None => quote!(::std::vec::Vec<#ty>),
                            };
                            p.wrt = true;
                        }
                        (None, None) => errors.push(name.span(), &format!("`{name}` in `wrt` is not a differentiable parameter: only `f64`/`f32` parameters, arrays and slices of them, and structs that derive `Differentiable` (and slices, `Vec`s and fixed-size arrays of them) have gradients")),
                    }
                }
                Some(p) => p.wrt = true,
            }
        }
    }

    if let Some(f) = &float {
        if errors.is_empty() && params.iter().all(|p| p.kind == Kind::Constant) {
            errors.push(sig.inputs.span(), &format!("`{}` has no differentiable parameter: nothing to take the gradient with respect to (differentiable parameters are `f64` and `f32`, slices, `Vec`s and fixed-size arrays of them (`&[f64]`, `[f64; 3]`, `&[[f64; 3]]`), ndarray arrays, and structs named in `wrt`)", sig.ident));
        }
        for p in &params {
            if !matches!(p.kind, Kind::Constant | Kind::Struct | Kind::Structs)
                && element_type(&p.ty).as_ref() != Some(f)
            {
                errors.push(p.ty.span(), &format!("parameter `{}` is not `{f}` but the function returns `{f}`: mixed precision is not supported, use one float type", p.ident));
            }
        }
    }
    errors.finish()?;
    match float {
        Some(float) => Ok(Signature {
            where_clause: where_clause(&sig.generics, &params, &float),
            params,
            float,
            checkpoint: options.checkpoint,
            associated: receiver.is_none() && (options.associated || names_self(func)),
            receiver,
            output,
            turbofish,
        }),
        None => Err(syn::Error::new(
            sig.ident.span(),
            "a #[differentiate] function must return `f64` or `f32`",
        )),
    }
}

/// The companions' `where` clause (see [`Signature::where_clause`]).
fn where_clause(generics: &syn::Generics, params: &[Param], float: &Ident) -> TokenStream {
    let mut predicates: Vec<TokenStream> = generics
        .where_clause
        .iter()
        .flat_map(|w| w.predicates.iter().map(|p| p.to_token_stream()))
        .collect();
    for p in params.iter().filter(|p| !p.receiver) {
        let ty = match p.kind {
            Kind::Struct => struct_type(&p.ty),
            Kind::Structs => struct_elements(&p.ty),
            _ => None,
        };
        let Some(ty) = ty else {
            continue;
        };
        // A type parameter, or a struct of one (`&M`, `&Model<P>`): the gradient's traits are
        // the companions' to require, since the struct's implementation holds under bounds.
        let generic = generics
            .type_params()
            .any(|t| mentions(ty.to_token_stream(), &t.ident.to_string()));
        if generic {
            predicates.push(quote!(#ty: ::autodiff::StructGradient<#float>));
        }
    }
    match predicates.is_empty() {
        true => TokenStream::new(),
        false => quote!(where #(#predicates),*),
    }
}

/// The struct a parameter of type `S`, `&S` (or `&'a S`) names: a path that is not a primitive
/// type, `String`, or a container of them.
fn struct_type(ty: &Type) -> Option<&Type> {
    let inner = match ty {
        Type::Reference(r) if r.mutability.is_none() => &*r.elem,
        t => t,
    };
    let Type::Path(p) = inner else { return None };
    let last = p.path.segments.last()?;
    let not_struct = [
        "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
        "i128", "isize", "String", "str", "Vec", "Option", "Box",
    ];
    (p.qself.is_none() && !not_struct.iter().any(|n| last.ident == n)).then_some(inner)
}

/// The struct of a parameter of type `&[S]`, `&Vec<S>` or `Vec<S>` (`S` as [`struct_type`]
/// reads it, not a reference): a slice of structs, differentiated field by field.
pub fn struct_elements(ty: &Type) -> Option<&Type> {
    let elem = match ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            Type::Slice(s) => &*s.elem,
            Type::Array(a) => &*a.elem,
            t => vec_element(t)?,
        },
        Type::Array(a) => &*a.elem,
        t => vec_element(t)?,
    };
    match elem {
        Type::Reference(_) => None,
        t => struct_type(t),
    }
}

/// `N` of a fixed-size array of structs, `[T; N]` or `&[T; N]` (its gradient is `[T; N]`).
pub fn struct_array_len(ty: &Type) -> Option<&syn::Expr> {
    match ty {
        Type::Reference(r) => struct_array_len(&r.elem),
        Type::Array(a) => Some(&a.len),
        _ => None,
    }
}

/// `T` of `Vec<T>`.
fn vec_element(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(a) = &last.arguments else {
        return None;
    };
    match (last.ident == "Vec", a.args.first()) {
        (true, Some(syn::GenericArgument::Type(t))) if a.args.len() == 1 => Some(t),
        _ => None,
    }
}

/// Does the function name `Self` (in its signature or body)? Then it stands in an `impl` or a
/// trait.
fn names_self(func: &ItemFn) -> bool {
    mentions(func.sig.to_token_stream(), "Self") || mentions(func.block.to_token_stream(), "Self")
}

/// Does `ts` hold the identifier (or keyword) `name`, at any depth?
pub fn mentions(ts: TokenStream, name: &str) -> bool {
    ts.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == name,
        proc_macro2::TokenTree::Group(g) => mentions(g.stream(), name),
        _ => false,
    })
}

/// The float of an owned array or `Vec` of floats returned by a vector-valued function.
fn vector_output(ty: &Type) -> Option<Ident> {
    if matches!(ty, Type::Reference(_)) {
        return None;
    }
    if let Some((f, _)) = tuple_output(ty) {
        return Some(f);
    }
    if let Some((f, _)) = fixed_array(ty).or_else(|| points(ty)) {
        return Some(f);
    }
    let last = named_path(ty)?.path.segments.last()?.ident.to_string();
    let owned = ["Array1", "Array2", "Array3", "Array4", "ArrayD", "Vec"].contains(&last.as_str());
    owned.then(|| element_type(ty)).flatten()
}

/// A tuple of two to twelve floats of one type (`(f64, f64)`, returned by a function of
/// several outputs): the float and how many. Differentiated code holds it as `[F; N]`.
pub fn tuple_output(ty: &Type) -> Option<(Ident, usize)> {
    let Type::Tuple(t) = ty else { return None };
    let floats: Vec<Ident> = t.elems.iter().map(float_type).collect::<Option<_>>()?;
    let first = floats.first()?.clone();
    let n = floats.len();
    ((2..=12).contains(&n) && floats.iter().all(|f| *f == first)).then_some((first, n))
}

/// Array types whose gradient is an owned array, by the name written.
const ARRAYS: &[(&str, &str)] = &[
    ("Array1", "Array1"),
    ("Array2", "Array2"),
    ("Array3", "Array3"),
    ("Array4", "Array4"),
    ("ArrayD", "ArrayD"),
    ("ArrayView1", "Array1"),
    ("ArrayView2", "Array2"),
    ("ArrayView3", "Array3"),
    ("ArrayView4", "Array4"),
    ("ArrayViewD", "ArrayD"),
];

/// How a parameter of this written type takes part, and its gradient's type.
fn classify(ty: &Type) -> (Kind, TokenStream) {
    if let Some(f) = float_type(ty) {
        return (Kind::Float, f.to_token_stream());
    }
    if let Some(grad) = array_gradient(ty) {
        return (Kind::Array, grad);
    }
    if let Some((f, len)) = fixed_array(ty) {
        return (Kind::Array, quote!([#f; #len]));
    }
    if let Some(f) = slice_element(ty) {
        return (Kind::Array, quote!(::std::vec::Vec<#f>));
    }
    if let Some((f, len)) = points(ty) {
        return (Kind::Array, quote!(::std::vec::Vec<[#f; #len]>));
    }
    if let Some(f) = rows(ty) {
        return (Kind::Array, quote!(::std::vec::Vec<::std::vec::Vec<#f>>));
    }
    (Kind::Constant, quote!(()))
}

/// `[F; N]` or `&[F; N]` -> `F` and `N`: read like a slice, its gradient an `[F; N]`.
pub fn fixed_array(ty: &Type) -> Option<(syn::Ident, &syn::Expr)> {
    let ty = match ty {
        Type::Reference(r) if r.mutability.is_none() => &*r.elem,
        t => t,
    };
    match ty {
        Type::Array(a) => Some((float_type(&a.elem)?, &a.len)),
        Type::Paren(p) => fixed_array(&p.elem),
        _ => None,
    }
}

/// `&[[F; N]]`, `Vec<[F; N]>`, `&Vec<[F; N]>` (points) -> `F` and `N`: each element a
/// fixed-size array, read `x[i][k]`.
pub fn points(ty: &Type) -> Option<(syn::Ident, &syn::Expr)> {
    fixed_array(sequence_element(ty)?)
}

/// The element type `T` of `&[T]`, `Vec<T>` or `&Vec<T>`.
fn sequence_element(ty: &Type) -> Option<&Type> {
    let (ty, by_ref) = match ty {
        Type::Reference(r) if r.mutability.is_none() => (&*r.elem, true),
        t => (t, false),
    };
    match ty {
        Type::Slice(s) if by_ref => Some(&s.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            let syn::PathArguments::AngleBracketed(a) = &last.arguments else {
                return None;
            };
            match a.args.first()? {
                syn::GenericArgument::Type(t) if last.ident == "Vec" => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `&[Vec<F>]`, `Vec<Vec<F>>`, `&Vec<Vec<F>>` (rows: a matrix as nested `Vec`s, read
/// `w[i][j]`) -> `F`.
pub fn rows(ty: &Type) -> Option<syn::Ident> {
    match sequence_element(ty)? {
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            (last.ident == "Vec")
                .then(|| generic_float(&last.arguments))
                .flatten()
        }
        _ => None,
    }
}

/// `&[F]`, `Vec<F>`, `&Vec<F>`, `[F; N]`, `&[F; N]` -> `F`.
pub fn slice_element(ty: &Type) -> Option<syn::Ident> {
    if let Some((f, _)) = fixed_array(ty) {
        return Some(f);
    }
    let (ty, by_ref) = match ty {
        Type::Reference(r) if r.mutability.is_none() => (&*r.elem, true),
        t => (t, false),
    };
    match ty {
        Type::Slice(s) if by_ref => float_type(&s.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "Vec" {
                return None;
            }
            generic_float(&last.arguments)
        }
        _ => None,
    }
}

/// The named type a parameter's type is, through a reference or parentheses (`&Array2<f64>`
/// -> `Array2<f64>`); `None` for anything else and for qualified paths (`<T as Tr>::X`).
fn named_path(ty: &Type) -> Option<&syn::TypePath> {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        Type::Paren(p) => &*p.elem,
        t => t,
    };
    match ty {
        Type::Path(p) if p.qself.is_none() => Some(p),
        _ => None,
    }
}

/// `ArrayView2<'a, f64>`, `&Array2<f64>`, `ndarray::Array1<f32>` -> the owned gradient type.
fn array_gradient(ty: &Type) -> Option<TokenStream> {
    let p = named_path(ty)?;
    let last = p.path.segments.last()?;
    let owned = ARRAYS.iter().find(|(written, _)| last.ident == written)?.1;
    let elem = generic_float(&last.arguments)?;
    let mut path = p.path.clone();
    if let Some(seg) = path.segments.last_mut() {
        seg.ident = syn::Ident::new(owned, seg.ident.span());
        seg.arguments = syn::PathArguments::AngleBracketed(syn::parse_quote!(<#elem>));
    }
    Some(path.to_token_stream())
}

/// Is this an ndarray array or view type (`Array2<f64>`, `&ArrayD<f32>`, `ArrayView1<f64>`)?
pub fn is_ndarray(ty: &Type) -> bool {
    named_path(ty)
        .and_then(|p| p.path.segments.last())
        .is_some_and(|s| s.ident.to_string().starts_with("Array"))
}

/// The number of dimensions of an ndarray array or view of this type, when its name says it:
/// `&Array1<f64>` and `ArrayView1<'_, f32>` have one, `Array2<f64>` two.
pub fn ndarray_rank(ty: &Type) -> Option<usize> {
    let name = named_path(ty)?.path.segments.last()?.ident.to_string();
    let digit = name
        .strip_prefix("ArrayView")
        .or_else(|| name.strip_prefix("Array"))?;
    digit.parse().ok()
}

fn generic_float(args: &syn::PathArguments) -> Option<syn::Ident> {
    let syn::PathArguments::AngleBracketed(a) = args else {
        return None;
    };
    a.args.iter().find_map(|g| match g {
        syn::GenericArgument::Type(t) => float_type(t),
        _ => None,
    })
}

/// The float type of a differentiable parameter's elements.
pub fn element_type(ty: &Type) -> Option<syn::Ident> {
    float_type(ty)
        .or_else(|| slice_element(ty))
        .or_else(|| points(ty).map(|(f, _)| f))
        .or_else(|| rows(ty))
        .or_else(|| {
            let ty = match ty {
                Type::Reference(r) => &*r.elem,
                t => t,
            };
            match ty {
                Type::Path(p) => generic_float(&p.path.segments.last()?.arguments),
                _ => None,
            }
        })
}

/// Errors collected so that the user sees all of them at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, span: Span, msg: &str) {
        self.add(syn::Error::new(span, msg));
    }
    pub fn add(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
    pub fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
