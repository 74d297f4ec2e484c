//! The `#[differentiate]` attribute.
//!
//! One module per phase, wired together here:
//! 1. `attr`: the attribute's options;
//! 2. `signature`: which parameters are differentiable, and the float type;
//! 3. `desugar` (with `inline`): syntax written as what it stands for (`match` as an `if`
//!    chain, reductions and walks as loops, closures called by name inlined), then `lower`:
//!    the body into the small A-normal-form `ir`, with spanned errors (buffers of points
//!    kept flat, `lower/points.rs`);
//! 4. `rules`: the table of derivative rules, one entry per primitive;
//! 5. `calls`: calls to differentiated functions returning one float take their value and
//!    pullback in one call; `tbr`: the to-be-recorded analysis, which buffer reads (and
//!    integer values read from buffers) the forward sweep must tape;
//! 6. `reverse`: the reverse sweep, and what the forward sweep must keep for it;
//! 7. `emit`: the companions `f_grad`, `f_value_and_grad` and `f_pullback`, and the
//!    companion type `f` whose `f::pullback` and `f::value_and_pullback` calls from
//!    differentiated code use;
//! 8. `transfer`: tokens in and out of the compiler once each (the expansion itself runs on
//!    in-process tokens).
#![forbid(unsafe_code)]

mod attr;
mod calls;
mod columns;
mod derive;
mod desugar;
mod emit;
mod fields;
mod fuse;
mod inline;
mod ir;
mod lower;
mod names;
mod reverse;
mod rules;
mod scalars;
mod scratch;
mod signature;
mod tbr;
mod transfer;
mod useful;

use proc_macro::TokenStream;

/// Generates reverse-mode gradient companions beside an ordinary function.
///
/// For `fn f(x: f64, y: f64) -> f64` it adds, with `f`'s visibility:
/// - `f_grad(x, y) -> (f64, f64)`: the gradient (bare for one differentiable parameter);
/// - `f_value_and_grad(x, y) -> (f64, (f64, f64))`: the value and the gradient;
/// - `f_pullback(x, y, d_out) -> (f64, f64)`: the gradient scaled by `d_out`, with `()` for
///   each constant parameter;
/// - a hidden companion type `struct f {}` (the type namespace, so it shares `f`'s name and
///   every `use` of `f` brings it) whose `f::pullback` is `f_pullback`: what calls to `f` from
///   other differentiated code use.
///
/// A function returning an owned array or `Vec` of floats gets `f_pullback(.., d_out: Output)`
/// and `f_jacobian(..)` (one gradient per output element) instead.
///
/// On a method taking `&self` (or `self`), the companions are methods beside it with the same
/// receiver, and calls `value.f(..)` from differentiated code use the method `f_pullback`.
///
/// `#[differentiate(pullback = f_pullback)]` takes a hand-written pullback instead: the body is
/// not read, the companion type forwards to it, and `f_grad` / `f_value_and_grad` are that
/// pullback at `d_out = 1`.
///
/// `#[differentiate(pullback_only)]` writes `f_pullback` alone (a method of a trait
/// implementation, whose trait declares it). `#[differentiate(associated)]` marks an associated
/// function without `self` (one that names `Self` is found without it): its companions are
/// associated functions, and `Self::f(..)` calls use `Self::f_pullback`.
///
/// `#[differentiate(wrt(y))]` restricts `f_grad` and `f_value_and_grad` to the named
/// parameters; `#[differentiate(checkpoint)]` makes time-stepping loops keep each iteration's
/// buffers and run it again in the reverse sweep, instead of recording their inner loops.
/// A function generic over its float bounds it by `autodiff::Real` (`fn f<F: Real>(x: F) ->
/// F`); `#[differentiate(float = F)]` names the float where the function's generics cannot (a
/// type parameter of the `impl` around a method, a type alias). The function itself is left
/// exactly as written. See the README for the supported syntax.
#[proc_macro_attribute]
pub fn differentiate(attr: TokenStream, item: TokenStream) -> TokenStream {
    // `AUTODIFF_TIMING=1 cargo build` prints each expansion's time (`scripts/attribute-cost.sh`).
    let timing = std::env::var_os("AUTODIFF_TIMING").map(|_| std::time::Instant::now());
    let name = timing
        .is_some()
        .then(|| function_name(&item.clone().into()));
    // On in-process tokens (`transfer`); what fails there is expanded again on the compiler's
    // tokens, for errors with exact spans.
    let out = transfer::expand(attr.clone(), item.clone())
        .unwrap_or_else(|| expand(attr.into(), item.into()).into());
    if let (Some(start), Some(name)) = (timing, name) {
        eprintln!(
            "autodiff: expanded `{name}` in {:.3} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    out
}

/// The identifier after `fn`, for the timing line.
fn function_name(item: &proc_macro2::TokenStream) -> String {
    let mut after_fn = false;
    for tt in item.clone() {
        if let proc_macro2::TokenTree::Ident(i) = tt {
            if after_fn {
                return i.to_string();
            }
            after_fn = i == "fn";
        }
    }
    "?".to_string()
}

/// Makes a struct differentiable: a function with a parameter of this type named in its `wrt`
/// gets the gradient as a value of the same struct, each field it reads as a differentiated
/// value holding that field's gradient (zero elsewhere; constants copied).
///
/// Fields of `f64` / `f32`, ndarray arrays and `Vec`s of them are differentiated; integers,
/// `bool`, `char`, `String`, other `Vec`s and `Option`s, and fields marked
/// `#[differentiable(constant)]` are constants; any other type is a struct that derives
/// `Differentiable` itself.
#[proc_macro_derive(Differentiable, attributes(differentiable))]
pub fn derive_differentiable(item: TokenStream) -> TokenStream {
    derive::expand(item.into())
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
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
                format!("#[differentiate] applies to a function or method with a body (`fn f(x: f64) -> f64 {{ .. }}`; a trait's required method has none: annotate its implementations with `pullback_only`): {e}"),
            );
            let mut out = item;
            out.append_stream(err.to_compile_error());
            return out;
        }
    };
    // The function itself is kept as the user's tokens (not printed again from the syntax tree).
    let mut out = item.clone();
    match emit::companions(attr, &func, &item) {
        Ok(companions) => out.append_stream(companions),
        Err(err) => out.append_stream(err.to_compile_error()),
    }
    out
}

/// Appends a token stream as a whole. `out.extend(ts)` with `ts` a token stream iterates its
/// trees (`Extend<TokenTree>`): on the compiler's tokens that is two calls across the
/// proc-macro bridge and a conversion per tree, again at every level of nesting.
pub(crate) trait AppendStream {
    fn append_stream(&mut self, ts: proc_macro2::TokenStream);
}

impl AppendStream for proc_macro2::TokenStream {
    #[inline]
    fn append_stream(&mut self, ts: proc_macro2::TokenStream) {
        self.extend(std::iter::once(ts));
    }
}

#[cfg(test)]
mod tests {
    use super::expand;
    use quote::{quote, ToTokens};

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
                syn::Item::Struct(s) => Some(format!("struct {}", s.ident)),
                syn::Item::Impl(i) => Some(format!(
                    "impl {}: {}",
                    i.self_ty.to_token_stream(),
                    i.items.len()
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [
                "f",
                "f_value_and_grad",
                "f_grad",
                "f_pullback",
                "struct f",
                "impl f: 2"
            ]
        );
        if std::env::var_os("AUTODIFF_PRINT_EXPANSION").is_some() {
            println!("{out}");
        }
    }

    /// A checkpointed step's rerun in the reverse sweep leaves out the state update whose
    /// reverse reads nothing (`Reverse::rerun_slice`): the update's constant `0.125` appears in
    /// the forward run and in the update's reverse, not a third time in the rerun.
    #[test]
    fn checkpointed_reruns_leave_out_the_state_update() {
        let out = expand(
            quote!(checkpoint),
            quote! {
                fn f(x: &[f64], s: usize) -> f64 {
                    let n = x.len();
                    let mut y = vec![1.0; n];
                    let mut k = vec![0.0; n];
                    for _step in 0..s {
                        for i in 0..n {
                            k[i] = (x[i] * y[i]).sin();
                        }
                        for i in 0..n {
                            y[i] += 0.125 * k[i];
                        }
                    }
                    y[n - 1]
                }
            },
        );
        let file: syn::File = syn::parse2(out).expect("expansion parses");
        let value_and_grad = file
            .items
            .iter()
            .find_map(|i| match i {
                syn::Item::Fn(f) if f.sig.ident == "f_value_and_grad" => {
                    Some(f.to_token_stream().to_string())
                }
                _ => None,
            })
            .expect("f_value_and_grad");
        assert_eq!(
            value_and_grad.matches("0.125").count(),
            2,
            "{value_and_grad}"
        );
    }

    /// A checkpointed step keeps the state it reads (`y`), not a trajectory it only writes
    /// (`hist`): the reverse of a store reads no value of the buffer, and copying the whole
    /// trajectory at every step would cost steps^2 n.
    #[test]
    fn checkpointed_steps_do_not_keep_buffers_they_only_write() {
        let out = expand(
            quote!(checkpoint),
            quote! {
                fn f(x: &[f64], steps: usize) -> f64 {
                    let n = x.len();
                    let mut y = vec![0.0; n];
                    for i in 0..n {
                        y[i] = x[i];
                    }
                    let mut k = vec![0.0; n];
                    let mut hist = vec![0.0; steps * n];
                    for t in 0..steps {
                        for i in 0..n {
                            k[i] = (y[i] * y[(i + 1) % n]).sin();
                        }
                        for i in 0..n {
                            y[i] += 0.1 * k[i];
                            hist[t * n + i] = y[i];
                        }
                    }
                    let mut s = 0.0;
                    for i in 0..steps * n {
                        s += hist[i] * hist[i];
                    }
                    s
                }
            },
        )
        .to_string();
        assert!(out.contains("y_at_entry"), "{out}");
        assert!(!out.contains("hist_at_entry"), "{out}");
        // `y`, a `Vec` of the float, is copied onto storage kept from call to call and put
        // back with its own storage returned there.
        assert!(out.contains("__rt :: keep (& __y)"), "{out}");
        assert!(
            out.contains("__rt :: restore (& mut __y , __y_at_entry)"),
            "{out}"
        );
    }

    /// The trajectory `s_t = tanh(W s_{t-1})` kept by rows in a loop over `range`, whose body
    /// is `step` (which stores `next`), with `after` after the loop, expanded under `attr`.
    fn trajectory(
        attr: proc_macro2::TokenStream,
        range: proc_macro2::TokenStream,
        step: proc_macro2::TokenStream,
        after: proc_macro2::TokenStream,
    ) -> String {
        expand(
            attr,
            quote! {
                fn f(x: &Array1<f64>, w: &Array2<f64>, steps: usize) -> f64 {
                    let mut states = Array2::<f64>::zeros((steps + 1, x.len()));
                    states.row_mut(0).assign(x);
                    for t in #range {
                        #step
                    }
                    #after
                    (&states * &states).sum()
                }
            },
        )
        .to_string()
    }

    /// The plain step: `next` from the previous row, stored into row `t`.
    fn step() -> proc_macro2::TokenStream {
        quote! {
            let next = w.dot(&states.row(t - 1)).mapv(f64::tanh);
            states.row_mut(t).assign(&next);
        }
    }

    /// A row of an array read back before a store that can overwrite it (here the store into
    /// row 0 after the loop) copies that row, recorded in the loop, not the whole array.
    #[test]
    fn parts_read_before_a_store_copy_the_part_only() {
        let out = trajectory(
            quote!(),
            quote!(1..steps + 1),
            step(),
            quote!(states.row_mut(0).assign(&(x * 2.0));),
        );
        assert!(out.contains(". row (__t0) . to_owned ()"), "{out}");
        assert!(!out.contains("states_before"), "{out}");
    }

    /// A loop `for t in a..b` that stores only `row_mut(t)` never writes row `t - 1` again: the
    /// reverse reads it from the buffer, no copy; and the matrix-vector product and `tanh` of
    /// the step are recorded (moved onto their tapes when the iteration ends), not computed
    /// again.
    /// A stencil in a time step that then overwrites its state reads a window copy of the
    /// state, recorded once per step, instead of taping each read; its reads' adjoints go
    /// straight into the state's. Checkpointed, or read off the loop variable's offsets, it
    /// does not.
    #[test]
    fn stencils_read_a_window_copy() {
        let program = |attr: proc_macro2::TokenStream, reads: proc_macro2::TokenStream| {
            expand(
                attr,
                quote! {
                    fn f(x0: &[f64], steps: usize) -> f64 {
                        let n = x0.len();
                        let mut x = x0.to_vec();
                        let mut v = vec![0.0; n];
                        for _ in 0..steps {
                            for i in 1..n - 1 {
                                v[i] += #reads;
                            }
                            for i in 0..n {
                                x[i] += 0.1 * v[i];
                            }
                        }
                        x[0]
                    }
                },
            )
            .to_string()
        };
        let stencil = quote!(x[i - 1] * x[i + 1] - 2.0 * x[i].sin());
        let out = program(quote!(), stencil.clone());
        assert!(out.contains("WindowTape :: new ()"), "{out}");
        assert!(out.contains(". push_window (__x_window)"), "{out}");
        assert!(
            out.contains("let __x_window = __record_1 . pop_window () ;"),
            "{out}"
        );
        assert!(out.contains("__d_x [__x_from + __x_at] +="), "{out}");
        // No read is taped (the second loop's reverse needs no value).
        assert!(!out.contains("__reads"), "{out}");
        let out = program(quote!(checkpoint), stencil);
        assert!(!out.contains("window"), "{out}");
        // A linear stencil's reverse reads no values: nothing recorded.
        let out = program(quote!(), quote!(x[i - 1] - 2.0 * x[i] + x[i + 1]));
        assert!(
            !out.contains("push_window") && !out.contains("__reads"),
            "{out}"
        );
        // A single taped read is windowed too; a read at `2 * i` is not (taped as before).
        let out = program(quote!(), quote!(x[i].sin()));
        assert!(out.contains("push_window"), "{out}");
        let out = program(quote!(), quote!(x[2 * i - 1].sin()));
        assert!(
            !out.contains("__x_window") && out.contains("__reads"),
            "{out}"
        );
    }

    /// The reverse of an element update `v[i] += e` reads the element's adjoint where it
    /// stands (it is also the old value's); an overwrite takes it.
    #[test]
    fn element_updates_leave_the_adjoint_in_place() {
        let out = expand(
            quote!(),
            quote! {
                fn f(x: &[f64], dt: f64) -> f64 {
                    let n = x.len();
                    let mut v = x.to_vec();
                    for _ in 0..3 {
                        for i in 0..n {
                            v[i] += dt * v[i].sin();
                        }
                    }
                    let mut w = v.clone();
                    w[0] = 2.0 - w[0];
                    v[0] + w[0]
                }
            },
        )
        .to_string();
        assert!(out.contains("= __d_v [__i_1] ;"), "{out}");
        assert!(!out.contains("take (& mut __d_v"), "{out}");
        // `2.0 - w[0]` is no update: the store takes the adjoint.
        assert!(
            out.contains(":: core :: mem :: take (& mut __d_w [0])"),
            "{out}"
        );
    }

    /// A loop over a range that reads an array only at `k + i` takes a window of the array's
    /// adjoint before its reverse and adds into that (no bounds check per element); an array
    /// read at another index in the same body, or read in a nested loop too, does not.
    #[test]
    fn range_loops_add_into_a_window_of_the_adjoint() {
        let out = expand(
            quote!(),
            quote! {
                fn f(l: &[f64], x: &[f64], d: usize) -> f64 {
                    let mut s = 0.0;
                    for j in 0..d {
                        let row = (j * j - j) / 2;
                        let mut r = x[j];
                        for i in 0..j {
                            r += l[row + i] * x[i];
                        }
                        s += r * r;
                    }
                    for i in 1..d {
                        s += x[i] * x[i - 1];
                    }
                    s
                }
            },
        )
        .to_string();
        let slices: Vec<&str> = out
            .match_indices("= & mut __d_")
            .map(|(k, _)| &out[k..k + 80])
            .collect();
        assert_eq!(slices.len(), 2, "{out}");
        assert!(
            out.contains("= & mut __d_l [if 0 < __j { __row .. __row + __j } else { 0 .. 0 }] ;"),
            "{out}"
        );
        assert!(out.contains("= & mut __d_x [.. __j] ;"), "{out}");
        // `x[j]` in the outer loop, `x[i]` and `x[i - 1]` in the last: no window of `x` there.
        assert!(out.contains("__d_x [__j] +="), "{out}");
        assert!(!out.contains("__d_l [__t"), "{out}");
    }

    /// The taped buffer reads of a `for i in a..b` loop are read back through one window of
    /// the tape, at `r (i - a)` for `r` reads per iteration, and the tape is cut once after
    /// the loop; a `while` loop's reads are popped iteration by iteration.
    #[test]
    fn range_loops_read_their_tape_through_one_window() {
        let out = expand(
            quote!(),
            quote! {
                fn f(x: &[f64], steps: usize) -> f64 {
                    let n = x.len();
                    let mut y = vec![1.0; n];
                    let mut s = 0.0;
                    for _step in 0..steps {
                        for i in 1..n - 1 {
                            s += (y[n - 1 - i] * y[i / 2]).cos() * x[i];
                        }
                        let mut j = 0;
                        while j < n {
                            s += y[j].sin();
                            j += 3;
                        }
                        for i in 0..n {
                            y[i] = (y[i] * 0.5 + x[i]).tanh();
                        }
                    }
                    s
                }
            },
        )
        .to_string();
        let windows = out.matches("= & __reads").count();
        assert_eq!(windows, 2, "{out}");
        assert!(
            out.contains("- (if 1 < __n - 1 { ((__n - 1) - (1)) as usize } else { 0 }) * 2usize ;"),
            "{out}"
        );
        assert!(out.contains("= ((__i - (1)) as usize) * 2usize ;"), "{out}");
        // The `while` loop: the last read on the tape, cut each iteration.
        assert_eq!(out.matches("let reads_start =").count(), 1, "{out}");
    }

    /// Known scalars are copied as they are, onto tapes and into a loop's storage, and a loop
    /// carrying one value assigns it plainly: the code reads as written by hand. A buffer
    /// carried into a loop is still cloned (the reverse sweep reads it after).
    #[test]
    fn scalars_are_copied_and_one_carried_value_assigned() {
        let out = expand(
            quote!(),
            quote! {
                fn f(x: &[f64]) -> f64 {
                    let mut s = 0.0;
                    for i in 0..x.len() {
                        s += x[i].sin() * s;
                    }
                    s
                }
            },
        )
        .to_string();
        assert!(!out.contains("Clone :: clone"), "{out}");
        assert!(out.contains("let mut __s_1 = __s ;"), "{out}");
        assert!(out.contains("__s_1 = __s_2 ;"), "{out}");
        assert!(!out.contains("(__s_1 ,) ="), "{out}");
        // Integers and flags are copied too: an index stepped by a stride in a nested loop
        // (recomputed by the reverse sweep), a counter, and the flags of a loop that returns.
        let out = expand(
            quote!(),
            quote! {
                fn g(x: &[f64], d: usize) -> f64 {
                    let mut s = 0.0;
                    let mut steps = 0;
                    for j in 0..d {
                        let mut p = j * d;
                        for i in 0..j {
                            s += x[p] * x[i];
                            p += d - i - 1;
                        }
                        steps += 1;
                        if s > 10.0 {
                            return s * steps as f64;
                        }
                    }
                    s
                }
            },
        )
        .to_string();
        assert!(!out.contains("Clone :: clone"), "{out}");
    }

    /// A sum's or copy's operand used nowhere else takes the sum's adjoint as its own: the
    /// straight-line reverse sweep declares no adjoint as a bare copy of another, and a
    /// subtracted operand gets the negated adjoint.
    #[test]
    fn adjoints_are_passed_on_not_copied() {
        let out = expand(
            quote!(),
            quote! {
                fn f(x: f64, y: f64) -> f64 {
                    let a = x * y;
                    let b = a + x.sin();
                    let c = b;
                    let d = c - y.exp();
                    d * d
                }
            },
        )
        .to_string();
        assert_eq!(copies(&out), 0, "{out}");
        assert!(out.contains("= - __d_d"), "{out}");
        // A loop's carried sum, not the last statement (so reversed on its own): the exit value
        // and the entry take the carried adjoint, which then needs no reassignment.
        let out = expand(
            quote!(),
            quote! {
                fn g(x: &[f64], y: f64) -> f64 {
                    let mut s = 0.0;
                    for i in 0..x.len() {
                        s += x[i] * y;
                    }
                    (s * y).sin()
                }
            },
        )
        .to_string();
        assert_eq!(copies(&out), 0, "{out}");
        assert!(!out.contains("__d_s_after = __d_s"), "{out}");
    }

    /// Statements `let mut __d_a = __d_b;` in `out`: an adjoint declared as a copy of another.
    fn copies(out: &str) -> usize {
        out.split(';')
            .filter(|s| {
                let t: Vec<&str> = s.split_whitespace().collect();
                matches!(t.as_slice(), [.., "let", "mut", d, "=", e] if d.starts_with("__d_") && e.starts_with("__d_"))
            })
            .count()
    }

    /// A sign chosen among literals by branches (`-1.0` is lowered as `(-1.0f64)`) and a float
    /// method of a known scalar in passive code (`t.powi(j as i32)`) are known scalars: the
    /// products they take part in are written out, not sent through the runtime's helpers.
    #[test]
    fn literal_signs_and_passive_methods_are_scalars() {
        let out = expand(
            quote!(wrt(x)),
            quote! {
                fn f(x: &[f64], n: usize) -> f64 {
                    let mut sum = 0.0;
                    for i in 0..n {
                        let t = -1.0 + i as f64 * 2.0 / (n as f64 - 1.0);
                        let sign = if t > 0.0 { 1.0 } else if t < 0.0 { -1.0 } else { 0.0 };
                        let mut inner = sign;
                        for j in 0..x.len() {
                            inner -= x[j] * t.powi(j as i32);
                        }
                        sum += inner * inner;
                    }
                    sum
                }
            },
        )
        .to_string();
        assert!(!out.contains("__rt :: mul"), "{out}");
        assert!(!out.contains("__rt :: sub"), "{out}");
        assert!(!out.contains("pb2_owned"), "{out}");
    }

    #[test]
    fn rows_a_sweep_leaves_behind_are_read_in_place() {
        // Checkpointed: a step that runs a loop of its own.
        let checkpointed = |stores: proc_macro2::TokenStream| {
            let step = quote! {
                let mut e = 1.0;
                for i in 0..2 {
                    e = e * 0.5 + x[i];
                }
                let next = w.dot(&states.row(t - 1)).mapv(f64::tanh) * e;
                #stores
            };
            trajectory(quote!(checkpoint), quote!(1..steps + 1), step, quote!())
        };
        let out = checkpointed(quote!(states.row_mut(t).assign(&next);));
        assert!(!out.contains("to_owned"), "{out}");
        assert!(!out.contains("states_before"), "{out}");
        // The steps do not keep the trajectory: no read of it needs restoring.
        assert!(!out.contains("states_at_entry"), "{out}");
        // A store into another row of the same buffer (`t - 1` itself) needs the copy again.
        let out = checkpointed(quote! {
            states.row_mut(t).assign(&next);
            states.row_mut(t - 1).assign(&next);
        });
        assert!(out.contains(". row (__t2) . to_owned ()"), "{out}");
        // Recorded (not checkpointed), the step's product and `tanh` are moved onto tapes.
        let out = trajectory(quote!(), quote!(1..steps + 1), step(), quote!());
        assert!(!out.contains("to_owned"), "{out}");
        assert!(
            out.contains("__rt :: push_reserved (& mut __record_1 , __t2) ;"),
            "{out}"
        );
        assert!(
            out.contains("__rt :: push_reserved (& mut __record , __next) ;"),
            "{out}"
        );
        assert_eq!(out.matches("__rt :: dot (").count(), 1, "{out}");
        // A loop that runs backwards needs the copy.
        let out = trajectory(quote!(), quote!((1..steps + 1).rev()), step(), quote!());
        assert!(out.contains(". row (__t0) . to_owned ()"), "{out}");
    }

    /// A loop records the shape of an array its reverse reads only for the shape (`p`, read by
    /// the `init` of its adjoint), and computes a value of unknown type (`a`, from a call's
    /// result: possibly a scalar) again instead.
    #[test]
    fn loops_record_the_shapes_of_arrays_only() {
        let out = expand(
            quote!(),
            quote! {
                fn f(x: &[f64], m: &Array2<f64>) -> f64 {
                    let mut s = 0.0;
                    let mut acc = Array2::<f64>::zeros((2, 2));
                    for i in 0..x.len() {
                        let a = physics::g(x[i]) * x[i];
                        s += a;
                        let p = m.dot(m) * x[i];
                        acc = acc + p;
                    }
                    s + (&acc * &acc).sum()
                }
            },
        )
        .to_string();
        assert!(out.contains("__p_shapes"), "{out}");
        assert!(!out.contains("__a_shapes"), "{out}");
    }

    /// A sum whose operand the statement before defines with a product lends it the adjoint
    /// (`__rt::lend`), and a top-level update of a product nothing else reads runs in its
    /// storage (`__rt::add_owned`); neither for scalars.
    #[test]
    fn sums_lend_their_adjoint_and_updates_reuse_storage() {
        let out = expand(
            quote!(),
            quote! {
                fn f(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>, s: f64) -> f64 {
                    let a = x.mapv(f64::sin);
                    let p = x.dot(w);
                    let y = a + p;
                    let h = x.dot(w) + b;
                    let t = s * 2.0;
                    let u = t + s;
                    y.dot(&h).sum() * u
                }
            },
        )
        .to_string();
        let compact: String = out.split_whitespace().collect();
        assert!(compact.contains("__rt::lend(&__p,"), "{out}");
        assert!(compact.contains("__rt::add_owned(__t"), "{out}");
        assert!(!compact.contains("add_owned(__t,"), "{out}");
    }

    /// Prints the expansion of the function in `AUTODIFF_EXPAND` (a debugging aid), with the
    /// attribute's options from `AUTODIFF_ATTR` (`wrt(x)`).
    #[test]
    fn print_requested_expansion() {
        if let Ok(src) = std::env::var("AUTODIFF_EXPAND") {
            let item: proc_macro2::TokenStream = src.parse().expect("valid tokens");
            let attr: proc_macro2::TokenStream = std::env::var("AUTODIFF_ATTR")
                .unwrap_or_default()
                .parse()
                .expect("valid tokens");
            let start = std::time::Instant::now();
            let out = expand(attr, item);
            if std::env::var_os("AUTODIFF_TIMING").is_some() {
                eprintln!(
                    "autodiff: expanded in {:.3} ms",
                    start.elapsed().as_secs_f64() * 1e3
                );
            }
            println!("{out}");
        }
    }
}

/// The macro never panics: any tokens give either code or a `compile_error!`.
#[cfg(test)]
mod never_panics {
    use super::expand;
    use proc_macro2::{TokenStream, TokenTree};
    use proptest::prelude::*;

    /// Functions over the whole supported surface (and some that are rejected), to mutate.
    const CORPUS: &[&str] = &[
        "fn f(x: f64) -> f64 { (x + 2.0).powi(2) + 3.0 }",
        "fn sc(x: f64, y: &[f64]) -> f64 { let (s, c) = (x * y[0]).sin_cos(); let (a, _) = f64::sin_cos(y[1]); s * c + a + x.rem_euclid(y[2]).copysign(s) + (x * 3.0).fract() }",
        "fn gf<F: Real>(x: &[F], y: F) -> F { let mut s = F::zero(); for i in 0..x.len() { s += x[i].sin() * F::from_f64(0.5) + y.powf(x[i]).max(F::one()); } let v = vec![F::from_f64(2.0); x.len()]; s + v.iter().sum::<F>() + x.iter().map(|t| t.exp()).sum::<F>() * F::from_usize(x.len()) }",
        "fn rb(x: &[f64], steps: usize, c: bool) -> f64 { let n = x.len(); let mut u = vec![0.0; n]; for i in 0..n { u[i] = x[i]; } for _ in 0..steps { let mut next = vec![0.0; n]; for i in 0..n { next[i] = u[i] * u[(i + 1) % n]; } u = next; if c { u = vec![1.0; n]; } } if c { u = x.to_vec(); } u[0] }",
        "fn og(x: &[f64], i: usize) -> f64 { let a = x.get(i).copied().unwrap_or(0.5) + *x.get(i + 1).unwrap_or(&1.0) + x.last().map_or(0.0, |&v| v * 2.0) + x.first().copied().unwrap_or_default(); let Some(&w) = x.get(i + 2) else { return a; }; if let Some(v) = x.get(i + 3) { a * v } else if let Some(u) = x.first().copied() { u * w } else { w } }",
        "fn hq(u0: &[Vec<f64>], k: f64) -> f64 { let n = u0.len(); let mut u = u0.to_vec(); for _ in 0..3 { let mut next = u.clone(); for i in 1..n - 1 { for j in 1..u[i].len() - 1 { next[i][j] = u[i][j] + k * (u[i - 1][j] - 2.0 * u[i][j] + u[i][j + 1]); } } u = next; } let mut g = vec![vec![0.0; 3]; n]; for t in 0..2 { let mut h = vec![vec![0.0; 3]; n]; for i in 0..n { h[i][t] = g[i][t] + u[i][0] * k; } g = h; } g[0][1] + u[n - 1][0] }",
        "fn mx(x: &[f64], y: &[f64]) -> f64 { let hi = *x.iter().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap(); let lo = y.iter().copied().min_by(|a, b| b.total_cmp(a)).expect(\"y\"); hi * lo + x.iter().cloned().max_by(|a: &f64, b: &f64| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)).unwrap() }",
        "fn so(x: &[f64]) -> f64 { let n = x.len(); let mut v = x.to_vec(); v.sort_by(|a, b| a.partial_cmp(b).unwrap()); let mut w: Vec<f64> = x.iter().map(|t| t * t).collect(); w.sort_unstable_by(|p, q| q.total_cmp(p)); v.sort_by(|a, b| b.partial_cmp(a).unwrap()); v[n / 2] * w[0] }",
        "fn wz(x: &[f64], k: &[f64]) -> f64 { let mut e: f64 = x.windows(2).zip(k).map(|(w, &q)| q * (w[1] - w[0]).powi(2)).sum(); for (n, (q, c)) in k.iter().zip(x.chunks(2)).enumerate() { e += q * c[0] * n as f64; } e }",
        "fn tu(x: &[f64], k: f64) -> f64 { let mut s = (k, 1.0, 0.5); for &v in x { s = (s.0 + v * s.1, s.1 * 0.9, s.2); s.2 += s.0; } let (a, b, c) = s; let t = (a, b); t.0 * c + t.1 }",
        "fn gw<F>(x: F, p: &[[F; 3]]) -> F where F: autodiff::Real { let mut e = x.to_degrees(); for q in p { e += F::hypot(q[0], q[1]).tanh() / q[2].cbrt(); } e }",
        "fn g(x: f64, n: usize, y: f64) -> f64 { let mut r = x * y; if x > 0.0 { r = r * x.exp(); } else if y > x { r += y.sin(); } else { return 1.0; } r * (n as f64) }",
        "fn h(x: &[f64]) -> f64 { let mut s = 0.0; for i in 0..x.len() - 1 { let a = x[i + 1] - x[i] * x[i]; s += 100.0 * a * a; } s }",
        "fn m(x: f64, k: usize, o: Option<u8>) -> f64 { let mut y = match k % 3 { 0 | 1 if x > 0.0 => x * 2.0, _ => x.sin() }; match o { Some(b) if b > 2 => y += b as f64, Some(_) => y += 1.0, None if k > 4 => return x, None => {} } match (k, x > y) { (0, true) => y, (j @ 1..=3, _) => y * j as f64, _ => y * y } }",
        "fn b(x: &[f64]) -> f64 { let n = x.len(); let mut v = vec![0.0; n]; for i in 0..n { v[i] = x[i].sin(); } let mut t = 0.0; let mut k = 0; while k < n { t += v[k]; k += 1; if t > 3.0 { break; } } t }",
        "fn j(x: &Array2<f64>, w: &Array2<f64>) -> f64 { (x.dot(w) + 1.0).mapv(|v| v.max(0.0)).sum() / (x.nrows() as f64) }",
        "fn l(x: f64) -> f64 { let mut y = x; loop { y = y * 0.5; if y < 1.0 { break; } } y }",
        "fn r(x: &[f64], a: f64) -> f64 { for i in 0..x.len() { for j in 0..i { if x[j] * a > 1.0 { return x[i] * a; } } } let s: f64 = x.iter().zip(x).map(|(u, v)| u * v * a).sum(); if let Some(k) = x.len().checked_sub(2) { s * k as f64 } else { x.iter().fold(a, |acc, v| acc * v) } }",
        "fn m(a: f64, b: f64) -> f64 { let (p, q) = (a * b, a - b); assert!(p.is_finite(), \"p = {p}\"); physics::e(p) + q.atan2(p) }",
        "#[differentiate(wrt(x))] fn w(x: f64, y: f64) -> f64 { x.clamp(0.0, y) }",
        "fn e(&self, x: &[f64], m: &Model) -> f64 { let mut s = self.k; for i in 0..x.len() { s += self.pair(x[i], self.w[i]) * m.scale(); } let p = &self.parts[0]; s * p.energy(x) + m.energy(x) }",
        "#[differentiate(pullback = e_by_hand)] fn e(self, x: f64) -> f64 { x * self.k }",
        "#[differentiate(pullback = v_vjp)] fn v2(x: &[f64]) -> Vec<f64> { x.to_vec() }",
        "#[differentiate(pullback_only)] fn w(&self, x: &Array1<f64>) -> Array1<f64> { x.mapv(f64::sin) * self.k }",
        "#[differentiate(associated)] fn a(r: f64, s: f64) -> f64 { Self::b(r) * Units::c(s, r) + r }",
        "#[differentiate(pullback_only)] fn e(&self, r: f64) -> f64 { while let Some(k) = self.next_step() { return k as f64 * r; } self.k * r }",
        "#[differentiate(wrt(k))] fn v(k: f64, t: &[f64]) -> Vec<f64> { let mut r = vec![0.0; t.len()]; for i in 0..t.len() { r[i] = (k * t[i]).sin(); } r }",
        "#[differentiate(wrt(p, x))] fn s(p: &Params, x: &[f64], k: usize) -> f64 { let mut e = p.b; for i in 0..p.n { e += p.w[i] * x[i] * p.inner.scale; } if p.flag && p.k > 2 { e += g(&p.inner, x[p.k]); } e * p.count as f64 + x[0] }",
        "#[differentiate(wrt(x))] fn p<P: Potential, const D: usize>(p: &P, x: &[f64]) -> f64 where P: Clone { let mut e = 0.0; for i in 0..x.len() / D { e += p.energy(x[i * D]) + g::<P, D>(p, x) + p.cutoff(); } e }",
        "#[differentiate(wrt(m))] fn l<M: Model>(m: &M, xs: &[f64]) -> f64 { let mut s = 0.0; for i in 0..xs.len() { s += m.predict(xs[i]); } s }",
        "fn q<'a, T: Into<f64> + Copy>(x: f64, t: &'a T) -> f64 { x * (*t).into() }",
        "fn a(r: [f64; 3], f: &[f64; 3], x: &[[f64; 3]], v: Vec<[f64; 2]>) -> f64 { let c = [r[1] * f[2], r[0] - f[1], 0.0]; let mut s = [0.0; 3]; let [a, b, _] = x[1]; for p in x.iter() { s[0] += p[2] * a; } let q = *f; c[0] + s[0] * b + x[0][1] + v[1][0] + norm(&c) + q[0] }",
        "fn o(p: [f64; 2], t: f64) -> [f64; 2] { [p[0] * t.cos(), p[1] * t.sin()] }",
        "fn q(x: &[f64]) -> f64 { let mut e = 0.0; for i in 0..x.len() { for j in (0..x.len()).filter(|&j| j != i) { e += x[i] * x[j]; } } for (k, _) in x.iter().enumerate().filter(|(k, v)| k % 2 == 0 && **v > 0.0) { e += k as f64; } e + x.iter().filter(|&&v| v > 0.0).map(|v| v * v).sum::<f64>() }",
        "fn v(x: f64, y: f64, k: usize) -> f64 { let a = match x { v if v < 0.0 => -v, v => v * v }; let b = match (x, y) { (p, q) if p > q => p - q, (p, q) => q * p }; let (w, 1) = (x * y, k) else { return a }; a + b + w }",
        "fn l(a: f64) -> f64 { let mut g = a; let r = loop { let n = 0.5 * (g + a / g); if (n - g).abs() < 1e-9 { break n; } g = n; }; let mut k = 0; let s: usize = loop { k += 1; for _ in 0..2 { break; } if k > 3 { break k; } }; r * s as f64 }",
        "fn z(x: &[f64]) -> f64 { let t: f64 = x.iter().zip(x.iter().skip(1)).map(|(a, b)| a * b).sum(); let mut s = 0.0; for (a, b) in x.iter().take(2).zip(x.iter().skip(1).copied()) { s += a * b; } s + t }",
        "#[differentiate(wrt(m))] fn t(m: &Model, x: &[f64]) -> f64 { let mut s = m.w.1; for i in 0..m.w.2 { s += m.w.0[i] * x[i]; } m.scale * s * s }",
        "fn w(x: &[f64]) -> f64 { let v = vec![x[0], x[1] * 2.0]; let m = x.iter().map(|v| v.abs()).fold(0.0, f64::max); let mut s = 0.0; for (k, b) in x.iter().rev().enumerate() { s += b * k as f64; } s + m + v[1] + x.iter().rev().enumerate().map(|(i, v)| v * i as f64).sum::<f64>() }",
        "fn r(x: &[f64], c: &[usize]) -> f64 { let v: Vec<f64> = x.iter().map(|v| v * 2.0).collect(); (0..x.len()).map(|i| x[i] * v[i]).sum::<f64>() + x.windows(2).map(|w| w[0] * w[1]).product::<f64>() + c.iter().sum::<usize>() as f64 + (1..=2).rev().fold(0.0, |a, i| a + x[i]) }",
        "fn b(x: &[[f64; 3]], bonds: &[(usize, usize)], c: &Config) -> f64 { let mut e = 0.0; let Config { steps, .. } = c; for &(i, j) in bonds { let (p, _) = bonds[0]; e += x[i][0] * x[j][1] * (p + steps) as f64; } for v in x { e += v[2]; } e }",
        "fn p(x0: &[[f64; 3]], dt: f64) -> Vec<[f64; 3]> { let n = x0.len(); let mut x = x0.to_vec(); let mut f = vec![[0.0; 3]; n]; for i in 1..n { for k in 0..3 { let d = x[i][k] - x[i - 1][k]; f[i][k] -= d; f[i - 1][k] += d; } } for i in 0..f.len() { x[i] = [x[i][0] + dt * f[i][0], x[i][1], f[i][2]]; } x.swap(0, 1); let [a, _, c] = x[1]; let q = x[0]; for &[u, v, w] in x.iter() { f[0][0] += u * v * w * a * c * q[1]; } x[0][0] += energy(&x) * f[0][0]; x }",
        "fn w(x: &[f64], p: &[[f64; 3]], a: f64) -> f64 { let mut y = x.to_vec(); let mut q = p.to_vec(); for v in y.iter_mut() { *v = *v * a + 1.0; } for (i, v) in y.iter_mut().enumerate() { *v += i as f64; } for (yi, &xi) in y.iter_mut().zip(x) { *yi -= xi.sin(); } for r in q.iter_mut() { r[0] *= a; for c in r.iter_mut() { *c = c.tanh(); } } for v in &mut y { *v *= 2.0; } y[0] + q[1][2] }",
        "fn q(x: Vec<f64>, s: f64) -> f64 { let p = [[x[0], x[1]], [x[2] * s, 1.0]]; let mut r = vec![x[0] * s, x[1]]; r[1] *= r[0]; let mut y = x; y[0] *= s; let mut b = r; b[0] += p[1][0]; b[0] + y[0] + pair(&p) }",
        "fn d(x: &[f64], k: f64) -> f64 { let n = x.len(); let mut u = x.to_vec(); let mut v = vec![0.0; n]; for _ in 0..3 { for i in 1..n - 1 { v[i] = u[i] * k + u[i + 1]; } std::mem::swap(&mut u, &mut v); } let (mut p, mut q) = (k, x[0]); mem::swap(&mut p, &mut q); let mut y = vec![0.0; n]; for (&a, b) in u.iter().zip(y.iter_mut()) { *b = a * p; } let mut s = q; y.iter().for_each(|w| s += w * w); u.iter_mut().for_each(|w| { *w *= 2.0; }); s + u[0] }",
        "fn u(x: &[f64], a: f64) -> Vec<f64> { let mut out = Vec::new(); let mut t: Vec<f64> = Vec::with_capacity(3); for v in x { if *v > 0.0 { out.push(v.sin() * a); } if out.len() > 1 { let l = out[out.len() - 1]; out.push(l * out[0]); } t.push(*v); } let s: f64 = t.iter().sum(); out.push(s); out }",
        "fn z(x: &[f64]) -> f64 { let e = x.iter().copied().map(f64::exp).sum::<f64>() + x.iter().map(smooth).product::<f64>(); let l = *x.last().unwrap() * x.first().copied().expect(\"empty\"); let k = x.iter().position(|&v| v > 0.6).unwrap_or(0); let j = (x[0] * 10.0) as usize % x.len(); if x.iter().any(|&v| v > 1.0) { e + l * x[k] } else { x[j] } }",
        "fn t(x: f64, y: f64, v: &[f64]) -> (f64, f64) { let (r, t) = polar(x, y); let (_, q) = polar(r, t * v[0]); if r > 1.0 { return (r, q); } match v.len() { 0 => (t, r), _ => polar(q, x) } }",
        "fn r(w: &[Vec<f64>], x: &[f64], lr: f64) -> f64 { let n = w.len(); let mut g = vec![vec![0.0; x.len()]; n]; for i in 0..n { for j in 0..x.len() { g[i][j] += (w[i][j] * x[j]).sin(); } } let mut w2 = w.to_vec(); for i in 0..g.len() { w2[i][0] -= lr * g[i][0]; } let mut s = 0.0; for row in w { for v in row { s += v; } } for row in g.iter() { s += row[0]; } s + rows(&w2) + w2[0][1] }",
        "fn pm(x: &[f64], k: usize) -> f64 { let mut out = Vec::new(); for v in x { match k % 2 { 0 => out.push(v * 2.0), _ => out.push(v.sin()) } } out[0] * out[1] }",
        "fn k(x: &[f64], p: &[[f64; 3]], a: usize) -> f64 { let mut s = 0.0; for (i, v) in x.iter().enumerate().skip(a).take(2) { for w in x.iter().take(a).skip(i).copied() { s += v * w; } } for (j, &[u, _, z]) in p.iter().enumerate() { s += u * z * j as f64; } s + x.iter().skip(1).map(|v| v * v).sum::<f64>() }",
        "#[differentiate(wrt(bs, x))] fn sb(bs: &[Body], x: &[f64], g: f64) -> f64 { let mut e = 0.0; for b in bs.iter() { e += b.m * b.v[0] * x[b.id]; } for (i, b) in bs.iter().enumerate() { let o = &bs[b.next]; e += (o.p[0] - b.p[i % 3]).powi(2) * g; match b.kind { Kind::A => e += b.s.k, _ => {} } } let c = |q: &Body| q.m * 2.0; e + bs.iter().map(|b| b.w[0] * b.m).sum::<f64>() + c(&bs[0]) + bs[bs.len() - 1].s.k }",
        "#[differentiate(wrt(bs))] fn sc(bs: &[Body], g: &Gravity) -> f64 { let mut e = kinetic(bs) * g.potential(&bs); for b in bs { e += b.m; } e - total(bs, &g) }",
        "#[differentiate(wrt(bs))] fn st(bs: &[Body], dt: f64) -> f64 { let n = bs.len(); let mut p: Vec<[f64; 2]> = bs.iter().map(|b| b.p).collect(); let m = bs.iter().map(|Body { m, .. }| *m * 2.0).collect::<Vec<f64>>(); for _ in 0..3 { for i in 0..n { p[i][0] += dt * m[i] * p[i][1]; } } p[0][0] + m[1] }",
        "#[differentiate(wrt(bs, w))] fn sz(bs: &[Body], w: &[f64]) -> f64 { let mut e = 0.0; for (b, &v) in bs.iter().zip(w) { e += b.m * v; } for (i, (v, Body { p, .. })) in w.iter().zip(bs).enumerate() { e += v * p[0] * i as f64; } for (i, a) in bs.iter().enumerate() { for b in bs.iter().skip(i + 1).take(3) { e += a.m * b.m; } } for b in bs.iter().rev() { e += b.m; } for b in bs.iter().filter(|b| b.id > 0) { e *= b.m; } for b in bs.iter().step_by(2) { e -= b.m; } e + bs.iter().zip(w.iter()).map(|(b, v)| b.m * v).sum::<f64>() }",
        "#[differentiate(wrt(ns))] fn sw(ns: &[Node]) -> f64 { let mut e = 0.0; for w in ns.windows(2) { e += w[1].x - w[0].x * w.len() as f64; } for (i, w) in ns.windows(3).enumerate() { e += w[2].k * i as f64; } for c in ns.chunks(2) { e += c[c.len() - 1].x; } let p = &ns[1..=2]; e + ns.windows(2).map(|w| w[0].x * w[1].k).sum::<f64>() + p[1].x }",
        "#[differentiate(wrt(self))] fn fs(&self, x: &[f64]) -> f64 { let mut e = self.g; for b in &self.bodies { e += b.m * b.v[0]; } for (i, b) in self.bodies.iter().enumerate() { let o = &self.bodies[b.next]; e += o.p[0] * x[i] * self.w[i]; } for w in self.bodies.windows(2) { e += w[1].m - w[0].m; } let p: Vec<[f64; 2]> = self.bodies.iter().map(|b| b.p).collect(); e + kinetic(&self.bodies) + self.inner.nodes[0].x * p[0][1] + self.bodies.len() as f64 }",
        "#[differentiate(wrt(sys))] fn ft(sys: &System, sys_bodies: f64) -> f64 { let mut e = sys_bodies; for i in 0..sys.bodies.len() { e += sys.bodies[i].m * sys.w.iter().sum::<f64>(); } for w in &sys.w { e += w; } e + sys.bodies[0].p[1] * sys.bodies.len() as f64 + sys.0[1].x }",
        "#[differentiate(wrt(ns))] fn sv<F: Real>(ns: Vec<Node<F>>) -> F { let mut k = 0; let mut s = F::zero(); while k < ns.len() { let n = &ns[k]; k += 1; s += n.x * F::from_f64(0.5); } s }",
        "fn c(x: &[f64], a: f64) -> f64 { let sq = |v: f64| v * v; let mix = |u: f64, w: f64| -> f64 { sq(u) * w + a }; let mut s = 0.0; for i in 0..x.len() { s += mix(x[i], a); } let b = 2.0; let late = |v: f64| v * b; s + sq(a) + late(b) }",
    ];

    fn flatten(ts: TokenStream, out: &mut Vec<TokenTree>) {
        out.extend(ts);
    }

    /// Deletes, duplicates or swaps top-level and nested tokens, driven by `ops`.
    fn mutate(ts: TokenStream, ops: &[(u8, usize)], depth: usize) -> TokenStream {
        let mut tokens = Vec::new();
        flatten(ts, &mut tokens);
        for &(op, at) in ops {
            if tokens.is_empty() {
                break;
            }
            let i = at % tokens.len();
            match op % 5 {
                0 => {
                    tokens.remove(i);
                }
                1 => {
                    let t = tokens[i].clone();
                    tokens.insert(i, t);
                }
                2 => {
                    let j = (at / 7) % tokens.len();
                    tokens.swap(i, j);
                }
                3 if depth < 4 => {
                    if let TokenTree::Group(g) = &tokens[i] {
                        let inner = mutate(g.stream(), &ops[1..], depth + 1);
                        tokens[i] = TokenTree::Group(proc_macro2::Group::new(g.delimiter(), inner));
                    }
                }
                _ => {}
            }
        }
        tokens.into_iter().collect()
    }

    fn split(src: &str) -> (TokenStream, TokenStream) {
        // An attribute in the source is the attribute's arguments.
        if let Some(rest) = src.strip_prefix("#[differentiate(") {
            let end = rest.find(")]").unwrap_or(0);
            return (
                rest[..end].parse().unwrap_or_default(),
                rest[end + 2..].parse().unwrap_or_default(),
            );
        }
        (TokenStream::new(), src.parse().unwrap_or_default())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn mutated_functions_never_panic(which in 0..CORPUS.len(), ops in proptest::collection::vec((any::<u8>(), any::<usize>()), 0..6), mutate_attr in any::<bool>()) {
            let (attr, item) = split(CORPUS[which]);
            let item = mutate(item, &ops, 0);
            let attr = if mutate_attr { mutate(attr, &ops, 0) } else { attr };
            let result = std::panic::catch_unwind(|| expand(attr.clone(), item.clone()).to_string());
            prop_assert!(result.is_ok(), "expand panicked on attr `{}` item `{}`", attr, item);
        }

        #[test]
        fn arbitrary_token_soup_never_panics(words in proptest::collection::vec(prop_oneof![
            Just("fn"), Just("f"), Just("x"), Just(":"), Just("f64"), Just("->"), Just("{"), Just("}"),
            Just("("), Just(")"), Just("["), Just("]"), Just("+"), Just("*"), Just("let"), Just("="), Just(";"),
            Just("if"), Just("else"), Just("for"), Just("in"), Just(".."), Just("0"), Just("1.0"), Just("return"),
            Just("while"), Just("break"), Just("loop"), Just("&"), Just("mut"), Just("."), Just("sin"), Just(","),
        ], 0..40)) {
            let src = words.join(" ");
            if let Ok(item) = src.parse::<TokenStream>() {
                let result = std::panic::catch_unwind(|| expand(TokenStream::new(), item.clone()).to_string());
                prop_assert!(result.is_ok(), "expand panicked on `{}`", src);
            }
        }
    }

    #[test]
    fn the_corpus_itself_expands() {
        for src in CORPUS {
            let (attr, item) = split(src);
            let out = expand(attr, item).to_string();
            assert!(
                !out.contains("compile_error") || src.contains("physics"),
                "{src}: {out}"
            );
        }
    }
}
