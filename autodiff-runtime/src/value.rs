//! How the runtime reads the values generated code hands it.
//!
//! Generated code passes every value by reference, and a value may itself be a reference
//! (`x: &Array2<f64>` as a parameter). [`Val`] reads through any number of references to the
//! value itself, so one generic helper serves `f64`, `Array2<f64>`, `&Array2<f64>` and views.
//! [`Contribution`] is anything that can be added into an adjoint: a scalar or an array of any
//! dimension, owned (reused without copying) or borrowed.

use crate::Real;
use ndarray::{
    Array, ArrayBase, ArrayD, ArrayView, ArrayViewD, Data, Dimension, IxDyn, RawData, ShapeBuilder,
};

/// A value as generated code sees it, with references read through.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is read as a differentiated value, but it is not a float or an array of floats",
    label = "read here as a differentiated value",
    note = "differentiated values are `f64` / `f32`, ndarray arrays and `Vec`s of them, and structs that derive `autodiff::Differentiable`; a struct field read only in ranges, indices, casts or comparisons with integers is a constant"
)]
pub trait Val {
    /// The value behind the references: `f64`, `f32` or an `ArrayBase`.
    type Canon: ?Sized;
    /// The value behind the references.
    fn canon(&self) -> &Self::Canon;
}

impl<S: RawData, D> Val for ArrayBase<S, D> {
    type Canon = Self;
    #[inline(always)]
    fn canon(&self) -> &Self {
        self
    }
}

impl<T: Val + ?Sized> Val for &T {
    type Canon = T::Canon;
    #[inline(always)]
    fn canon(&self) -> &T::Canon {
        (**self).canon()
    }
}

impl<T: Val + ?Sized> Val for &mut T {
    type Canon = T::Canon;
    #[inline(always)]
    fn canon(&self) -> &T::Canon {
        (**self).canon()
    }
}

/// A scalar or an array that can be broadcast to a shape, for element-wise pullbacks.
pub trait Broadcast<F> {
    /// This value broadcast to `dim`. Panics, naming both shapes, when it cannot be.
    fn broadcast_to<E: Dimension>(&self, dim: &E) -> ArrayView<'_, F, E>;
}

impl<F, S: Data<Elem = F>, D: Dimension> Broadcast<F> for ArrayBase<S, D> {
    fn broadcast_to<E: Dimension>(&self, dim: &E) -> ArrayView<'_, F, E> {
        match self.broadcast(dim.clone()) {
            Some(v) => v,
            None => panic!(
                "autodiff: cannot broadcast an array of shape {:?} to shape {:?}",
                self.shape(),
                dim.slice()
            ),
        }
    }
}

/// Something that can be added into an adjoint.
pub trait Contribution<F> {
    /// Its shape (empty for a scalar).
    fn shape_of(&self) -> &[usize];
    /// It as a dynamic-dimensional view.
    fn view_dyn(&self) -> ArrayViewD<'_, F>;
    /// It as an owned array of dimension type `E`, which its shape has (checked by the caller:
    /// an adjoint of the same shape); owned arrays are moved, not copied.
    fn into_owned_as<E: Dimension>(self) -> Array<F, E>;
    /// It as a view of dimension type `E`, which its shape has.
    fn view_as<E: Dimension>(&self) -> ArrayView<'_, F, E>;
}

impl<F: Clone, S: Data<Elem = F>, D: Dimension> Contribution<F> for ArrayBase<S, D> {
    fn shape_of(&self) -> &[usize] {
        self.shape()
    }
    fn view_dyn(&self) -> ArrayViewD<'_, F> {
        self.view().into_dyn()
    }
    fn into_owned_as<E: Dimension>(self) -> Array<F, E> {
        to_dim(self.into_owned())
    }
    fn view_as<E: Dimension>(&self) -> ArrayView<'_, F, E> {
        to_dim(self.view())
    }
}

impl<F: Clone, S: Data<Elem = F>, D: Dimension> Contribution<F> for &ArrayBase<S, D> {
    fn shape_of(&self) -> &[usize] {
        self.shape()
    }
    fn view_dyn(&self) -> ArrayViewD<'_, F> {
        self.view().into_dyn()
    }
    fn into_owned_as<E: Dimension>(self) -> Array<F, E> {
        to_dim(self.to_owned())
    }
    fn view_as<E: Dimension>(&self) -> ArrayView<'_, F, E> {
        to_dim(self.view())
    }
}

macro_rules! scalar_values {
    ($($t:ident),*) => {$(
        impl Val for $t {
            type Canon = $t;
            #[inline(always)]
            fn canon(&self) -> &$t {
                self
            }
        }
        impl Broadcast<$t> for $t {
            fn broadcast_to<E: Dimension>(&self, dim: &E) -> ArrayView<'_, $t, E> {
                // Every index reads the one element: all strides zero.
                let zero = E::zeros(dim.ndim());
                match ArrayView::from_shape(dim.clone().strides(zero), std::slice::from_ref(self)) {
                    Ok(v) => v,
                    Err(e) => panic!("autodiff: broadcasting a scalar to shape {:?}: {e}", dim.slice()),
                }
            }
        }
        impl Contribution<$t> for $t {
            fn shape_of(&self) -> &[usize] {
                &[]
            }
            fn view_dyn(&self) -> ArrayViewD<'_, $t> {
                ndarray::aview0(self).into_dyn()
            }
            fn into_owned_as<E: Dimension>(self) -> Array<$t, E> {
                to_dim(ndarray::arr0(self))
            }
            fn view_as<E: Dimension>(&self) -> ArrayView<'_, $t, E> {
                to_dim(ndarray::aview0(self))
            }
        }
        impl Contribution<$t> for &$t {
            fn shape_of(&self) -> &[usize] {
                &[]
            }
            fn view_dyn(&self) -> ArrayViewD<'_, $t> {
                ndarray::aview0(*self).into_dyn()
            }
            fn into_owned_as<E: Dimension>(self) -> Array<$t, E> {
                to_dim(ndarray::arr0(*self))
            }
            fn view_as<E: Dimension>(&self) -> ArrayView<'_, $t, E> {
                to_dim(ndarray::aview0(*self))
            }
        }
    )*};
}
scalar_values!(f32, f64);

/// `c` summed over the axes along which the forward sweep broadcast a value of shape `shape`
/// to `c`'s shape (the reverse of broadcasting). Panics, naming both shapes, when `c` cannot
/// have come from broadcasting such a value.
pub fn reduce_to<F: Real>(c: ArrayViewD<'_, F>, shape: &[usize]) -> ArrayD<F> {
    let mismatch = || -> ! {
        panic!(
            "autodiff: an adjoint of shape {:?} cannot be added into a value of shape {:?}",
            c.shape(),
            shape
        )
    };
    // The common case, a value broadcast along leading axes only (a row added to every row of
    // a matrix, a scalar to an array), with `c` in standard layout: the sum of its contiguous
    // chunks of the value's size, in one pass (`sum_axis` on dynamic dimensions builds a view
    // per lane).
    if c.ndim() >= shape.len() && c.shape()[c.ndim() - shape.len()..] == *shape {
        if let Some(s) = c.as_slice() {
            let inner: usize = shape.iter().product();
            let mut out = vec![F::from_f64(0.0); inner];
            if inner > 0 && inner <= 8 {
                // A few elements (a row of 2 broadcast over 1000 rows): summed in blocks of
                // several rows at once, so the inner loop is long enough to be worth running.
                let width = inner * (16 / inner);
                let mut acc = [F::from_f64(0.0); 16];
                let mut blocks = s.chunks_exact(width);
                for block in &mut blocks {
                    for (a, &v) in acc.iter_mut().zip(block) {
                        *a += v;
                    }
                }
                for (k, &v) in blocks.remainder().iter().enumerate() {
                    acc[k] += v;
                }
                for (k, &a) in acc[..width].iter().enumerate() {
                    out[k % inner] += a;
                }
            } else if inner > 0 {
                for chunk in s.chunks_exact(inner) {
                    for (o, &v) in out.iter_mut().zip(chunk) {
                        *o += v;
                    }
                }
            }
            if let Ok(a) = ArrayD::from_shape_vec(IxDyn(shape), out) {
                return a;
            }
        }
    }
    if c.ndim() < shape.len() {
        // A value broadcast to fewer dimensions cannot happen; a scalar adjoint spread over an
        // array can (every element receives it).
        return match c.broadcast(IxDyn(shape)) {
            Some(b) => b.to_owned(),
            None => mismatch(),
        };
    }
    // Sum the leading axes the value did not have, then the axes where it had length 1.
    let lead = c.ndim() - shape.len();
    let mut r: Option<ArrayD<F>> = None;
    for _ in 0..lead {
        r = Some(match r {
            None => c.sum_axis(ndarray::Axis(0)),
            Some(a) => a.sum_axis(ndarray::Axis(0)),
        });
    }
    for (axis, &len) in shape.iter().enumerate() {
        let have = r
            .as_ref()
            .map_or(c.shape()[lead + axis], |a| a.shape()[axis]);
        if len == 1 && have != 1 {
            let summed = match &r {
                None => c.sum_axis(ndarray::Axis(lead + axis)),
                Some(a) => a.sum_axis(ndarray::Axis(axis)),
            };
            r = Some(summed.insert_axis(ndarray::Axis(axis)));
        } else if len != have {
            mismatch();
        }
    }
    r.unwrap_or_else(|| c.to_owned())
}

/// An array (owned or a view) in another dimension type of the same number of axes: free for
/// the same type, a check and a copy of the shape from or to `IxDyn`. Panics, naming the shape,
/// when the number of axes differs.
pub fn to_dim<S: RawData, D: Dimension, E: Dimension>(a: ArrayBase<S, D>) -> ArrayBase<S, E> {
    if E::NDIM.is_some_and(|n| n != a.ndim()) {
        panic!(
            "autodiff: an adjoint of shape {:?} does not have the dimension of its value",
            a.shape()
        );
    }
    match a.into_dimensionality::<E>() {
        Ok(a) => a,
        Err(e) => panic!("autodiff: an adjoint does not have the dimension of its value: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::reduce_to;
    use ndarray::{Array2, Axis};

    /// Adjoints reduced to a row of a few elements (summed in blocks of rows) or of many, for
    /// every remainder of rows, against ndarray's own `sum_axis`.
    #[test]
    fn reductions_to_a_row_match_sum_axis() {
        for inner in 1..=11 {
            for rows in [0, 1, 2, 3, 7, 8, 17, 100] {
                let c = Array2::from_shape_fn((rows, inner), |(i, j)| {
                    ((i * 31 + j * 7) % 13) as f64 * 0.37 - 2.0
                });
                let got = reduce_to(c.view().into_dyn(), &[inner]);
                let want = c.sum_axis(Axis(0));
                assert_eq!(got.shape(), &[inner]);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                        "{inner} x {rows}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
