//! `#[derive(Module)]` for nabla; see `nabla::nn::Module` for what it generates and the
//! attributes it reads. Use it through `nabla` (`use nabla::nn::Module;`), not directly.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, GenericArgument, Ident, PathArguments, Type, parse_macro_input};

/// Implements `nabla::nn::Module` for a struct whose fields are modules, `Param`s,
/// `Buffer`s, or `Vec`s and `Option`s of them: parameters and buffers get PyTorch's dotted
/// names (`encoder.weight`, `layers.0.bias`), and `train()`/`eval()` reach every child.
///
/// Attributes: `#[module(skip)]` on a field leaves it out (plain numbers, strings and bools
/// are left out without it); `#[module(forward)]` on the struct makes `Module::forward`
/// call the struct's own `forward(&self, &Tensor<T>)` method; `#[module(element = f64)]`
/// names the element type of a struct without a type parameter (f32 otherwise).
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// What a field (or the item type of a `Vec`/`Option` field) holds.
enum Kind {
    Param,
    Buffer,
    Module,
    Vec(Box<Kind>),
    Option(Box<Kind>),
    Plain,
}

struct StructOptions {
    forward: bool,
    element: Option<Type>,
}

fn struct_options(input: &DeriveInput) -> syn::Result<StructOptions> {
    let mut options = StructOptions { forward: false, element: None };
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("forward") {
                options.forward = true;
                Ok(())
            } else if meta.path.is_ident("element") {
                options.element = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("expected `forward` or `element = <type>` in #[module(...)] on a struct"))
            }
        })?;
    }
    Ok(options)
}

fn skipped(field: &syn::Field) -> syn::Result<bool> {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("expected `skip` in #[module(...)] on a field"))
            }
        })?;
    }
    Ok(skip)
}

/// The single type argument of a path segment such as `Vec<X>`.
fn inner(args: &PathArguments) -> Option<&Type> {
    match args {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

const PLAIN: &[&str] = &[
    "bool",
    "char",
    "str",
    "String",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "usize",
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "isize",
    "f32",
    "f64",
    "PhantomData",
];

/// Classifies a field's type by its last path segment, as written.
fn kind(ty: &Type) -> Kind {
    match ty {
        Type::Path(path) => {
            let Some(last) = path.path.segments.last() else { return Kind::Module };
            let name = last.ident.to_string();
            match (name.as_str(), inner(&last.arguments)) {
                ("Param", _) => Kind::Param,
                ("Buffer", _) => Kind::Buffer,
                ("Vec", Some(item)) => Kind::Vec(Box::new(kind(item))),
                ("Option", Some(item)) => Kind::Option(Box::new(kind(item))),
                (plain, _) if PLAIN.contains(&plain) => Kind::Plain,
                _ => Kind::Module,
            }
        }
        Type::Reference(r) => kind(&r.elem),
        Type::Tuple(t) if t.elems.iter().all(|e| matches!(kind(e), Kind::Plain)) => Kind::Plain,
        Type::Array(a) => Kind::Vec(Box::new(kind(&a.elem))),
        _ => Kind::Module,
    }
}

/// Code that visits `value` (an expression of a reference to the field) under the name
/// held by the `String` expression `name`, for one of the three generated methods.
fn visit(kind: &Kind, value: Tokens, name: Tokens, what: What, elem: &Type, depth: usize) -> Tokens {
    let nn = quote!(::nabla::nn);
    match (kind, what) {
        (Kind::Param, What::Parameters) => quote!(out.push((#name, ::core::clone::Clone::clone(#value)));),
        (Kind::Buffer, What::Buffers) => quote!(out.push((#name, ::core::clone::Clone::clone(#value)));),
        (Kind::Module, What::Parameters) => quote! {
            let prefix: ::std::string::String = #name;
            out.extend(#nn::Module::<#elem>::named_parameters(#value).into_iter().map(|(n, p)| (::std::format!("{}.{}", prefix, n), p)));
        },
        (Kind::Module, What::Buffers) => quote! {
            let prefix: ::std::string::String = #name;
            out.extend(#nn::Module::<#elem>::named_buffers(#value).into_iter().map(|(n, b)| (::std::format!("{}.{}", prefix, n), b)));
        },
        (Kind::Module, What::Children) => quote!(out.push((#name, #value as &dyn #nn::Module<#elem>));),
        (Kind::Vec(item), _) => {
            let (i, x) = (format_ident!("i{}", depth), format_ident!("x{}", depth));
            let body = visit(item, quote!(#x), quote!(::std::format!("{}.{}", base, #i)), what, elem, depth + 1);
            if body.is_empty() {
                return body;
            }
            quote! {
                let base: ::std::string::String = #name;
                for (#i, #x) in ::core::iter::IntoIterator::into_iter(#value).enumerate() { #body }
            }
        }
        (Kind::Option(item), _) => {
            let x = format_ident!("x{}", depth);
            let body = visit(item, quote!(#x), name, what, elem, depth + 1);
            if body.is_empty() {
                return body;
            }
            quote!(if let ::core::option::Option::Some(#x) = #value { #body })
        }
        _ => Tokens::new(),
    }
}

#[derive(Clone, Copy)]
enum What {
    Parameters,
    Buffers,
    Children,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let options = struct_options(input)?;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(&input.ident, "#[derive(Module)] is for structs"));
    };
    let elem: Type = match (&options.element, input.generics.type_params().next()) {
        (Some(t), _) => t.clone(),
        (None, Some(param)) => {
            let id: &Ident = &param.ident;
            syn::parse_quote!(#id)
        }
        (None, None) => syn::parse_quote!(f32),
    };
    // PyTorch lists a module's own parameters (and buffers) before its children's.
    let mut own = [Tokens::new(), Tokens::new(), Tokens::new()];
    let mut parts = [Tokens::new(), Tokens::new(), Tokens::new()];
    let fields: Vec<(Tokens, String, &syn::Field)> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| {
                let id = f.ident.as_ref().expect("named field");
                (quote!(#id), id.to_string().trim_start_matches("r#").to_string(), f)
            })
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let index = syn::Index::from(i);
                (quote!(#index), i.to_string(), f)
            })
            .collect(),
        Fields::Unit => Vec::new(),
    };
    for (access, name, field) in fields {
        if skipped(field)? {
            continue;
        }
        let k = kind(&field.ty);
        let direct = match &k {
            Kind::Param | Kind::Buffer => true,
            Kind::Option(item) => matches!(**item, Kind::Param | Kind::Buffer),
            _ => false,
        };
        let target = if direct { &mut own } else { &mut parts };
        for (part, what) in target.iter_mut().zip([What::Parameters, What::Buffers, What::Children]) {
            let code = visit(&k, quote!(&self.#access), quote!(::std::string::String::from(#name)), what, &elem, 0);
            part.extend(code);
        }
    }
    let [own_params, own_buffers, _] = own;
    let [params, buffers, children] = parts;
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let nn = quote!(::nabla::nn);
    let forward = options.forward.then(|| {
        quote! {
            fn forward(&self, input: &::nabla::Tensor<#elem>) -> ::nabla::Result<::nabla::Tensor<#elem>> {
                #ident::forward(self, input)
            }
        }
    });
    Ok(quote! {
        impl #impl_generics #nn::Module<#elem> for #ident #ty_generics #where_clause {
            #forward
            fn named_parameters(&self) -> ::std::vec::Vec<(::std::string::String, #nn::Param<#elem>)> {
                #[allow(unused_mut)]
                let mut out = ::std::vec::Vec::new();
                #own_params
                #params
                out
            }
            fn named_buffers(&self) -> ::std::vec::Vec<(::std::string::String, #nn::Buffer<#elem>)> {
                #[allow(unused_mut)]
                let mut out = ::std::vec::Vec::new();
                #own_buffers
                #buffers
                out
            }
            fn named_children(&self) -> ::std::vec::Vec<(::std::string::String, &dyn #nn::Module<#elem>)> {
                #[allow(unused_mut)]
                let mut out = ::std::vec::Vec::new();
                #children
                out
            }
        }
    })
}
