//! Fused element-wise sums: `(&a * &b).mapv(f64::tanh).sum()` in one pass, without the
//! arrays in between, and its adjoint beside it.
//!
//! The macro fuses a `.sum()` or `.mean()` with the element-wise operations (operators, float
//! methods, `mapv` of a float function or of one closure) that only it reads into one scalar
//! function of the operations' inputs. [`fused_sum`] applies that function element by element and sums, in the order and
//! with the rounding of ndarray's own `sum` of the array the operations would have built.
//! Where the sum is differentiated, [`fused_sum_grad`] also runs the element function's
//! generated derivative in the same pass (the local Jacobian, preaccumulated), and returns
//! each input's derivative: an array of the input's shape (summed over the axes it was
//! broadcast along) or, for a scalar, the sum of its partial derivatives. The reverse sweep
//! only scales them by the sum's adjoint. Inputs whose adjoint is not wanted are passed as
//! [`Const`] and cost nothing.
//!
//! Where the sum's adjoint is known before the pass (a loop run fused with its reverse that
//! adds the sum into the value it accumulates: `s += (&x.row(i) * w).mapv(f64::tanh).sum()`),
//! [`fused_sum_acc`] adds each partial derivative, times that adjoint, straight into the
//! inputs' adjoints ([`Dest`]) in the same pass: no array of derivatives per call, as a
//! hand-written loop would do it.
use crate::value::{reduce_to, to_dim, Val};
use crate::Real;
use ndarray::{
    Array, ArrayBase, ArrayD, ArrayView1, ArrayViewMut, ArrayViewMut1, Data, Dimension, Ix1, IxDyn,
};

/// One input's elements in the order of the common shape, when they are not all a plain
/// slice or a scalar ([`Flat`], which every pass tries first: a match per element costs a
/// per-row pass a third of its time, and the enum's copies stall store forwarding).
pub enum Lane<'a, F> {
    /// A scalar, the same at every element.
    Scalar(F),
    /// A contiguous array of the common shape, in standard order.
    Slice(&'a [F]),
    /// A one-dimensional array of the common shape with a stride (a column of a matrix).
    Strided(ArrayView1<'a, F>),
    /// Anything else (broadcast, transposed): copied once, in the common shape's order.
    Owned(Vec<F>),
}

impl<F: Copy> Lane<'_, F> {
    #[inline(always)]
    fn at(&self, i: usize) -> F {
        match self {
            Lane::Scalar(s) => *s,
            Lane::Slice(v) => v[i],
            Lane::Strided(v) => v[i],
            Lane::Owned(v) => v[i],
        }
    }

    /// The elements `i..i + BLOCK`: one match per block, not per element.
    #[inline(always)]
    fn block(&self, i: usize) -> [F; BLOCK] {
        match self {
            Lane::Scalar(s) => [*s; BLOCK],
            Lane::Slice(v) => block_of(&v[i..i + BLOCK]),
            Lane::Strided(v) => std::array::from_fn(|k| v[i + k]),
            Lane::Owned(v) => block_of(&v[i..i + BLOCK]),
        }
    }
}

/// A lane read without a match per element: element `i` is `s[i & mask]`, an array's own
/// (`mask` all ones) or a scalar's one value (`mask` 0).
#[derive(Clone, Copy)]
pub struct Flat<'a, F> {
    s: &'a [F],
    mask: usize,
}

impl<F: Copy> Flat<'_, F> {
    #[inline(always)]
    fn at(&self, i: usize) -> F {
        self.s[i & self.mask]
    }

    #[inline(always)]
    fn block(&self, i: usize) -> [F; BLOCK] {
        if self.mask == 0 {
            [self.s[0]; BLOCK]
        } else {
            block_of(&self.s[i..i + BLOCK])
        }
    }
}

/// A destination added into without a match per element: element `i` goes to `s[i]`, the
/// adjoint's own, or nowhere when `s` is empty (an input whose adjoint is not wanted: the
/// bounds check every element's addition has anyway is the test).
pub struct FlatMut<'a, F> {
    s: &'a mut [F],
}

impl<'a, F> FlatMut<'a, F> {
    /// The same destination as a lane.
    fn lane(self) -> LaneMut<'a, F> {
        if self.s.is_empty() {
            LaneMut::Nothing
        } else {
            LaneMut::Slice(self.s)
        }
    }
}

impl<F: Real> Sink<F> for FlatMut<'_, F> {
    #[inline(always)]
    fn add(&mut self, i: usize, d: F) {
        if let Some(s) = self.s.get_mut(i) {
            *s += d;
        }
    }

    #[inline(always)]
    fn add_block(&mut self, i: usize, d: &[F; BLOCK]) {
        if let Some(s) = self.s.get_mut(i..i + BLOCK) {
            for (s, d) in s.iter_mut().zip(d) {
                *s += *d;
            }
        }
    }
}

/// The blocks a fused sum reads its inputs in: ndarray's `sum` adds eight partial sums.
const BLOCK: usize = 8;

#[inline(always)]
fn block_of<F: Copy>(s: &[F]) -> [F; BLOCK] {
    match <[F; BLOCK]>::try_from(s) {
        Ok(b) => b,
        Err(_) => unreachable!("a block of {BLOCK} elements"),
    }
}

/// A value an element-wise operation reads: a scalar or an array of any dimension.
pub trait Elements<F: Real> {
    /// Its shape, empty for a scalar.
    fn element_shape(&self) -> &[usize];
    /// Its elements broadcast to `shape` (which its shape broadcasts to).
    fn lane(&self, shape: &[usize]) -> Lane<'_, F>;
    /// Its elements as a plain slice, when it is a scalar or a contiguous array of `shape`
    /// in standard order.
    fn flat(&self, shape: &[usize]) -> Option<Flat<'_, F>>;
    /// Where its partial derivatives at `len` elements gather: one sum for a scalar, one per
    /// element for an array (a 0-d array too, which is broadcast like any other).
    fn partials(&self, len: usize) -> Partials<F>;
    /// Its adjoint from the partial derivatives at each element of `shape` (standard order).
    fn adjoint_of(&self, shape: &[usize], partials: Partials<F>) -> Self::Adjoint;
    type Adjoint;
}

/// Where one input's partial derivatives gather.
pub enum Partials<F> {
    Sum(F),
    Each(Vec<F>),
    Nothing,
}

/// Where a fused pass puts one input's partial derivatives, element `i` after element `i - 1`:
/// gathered ([`Partials`], for the reverse sweep to scale) or added into the input's adjoint
/// ([`LaneMut`]).
pub trait Sink<F> {
    fn add(&mut self, i: usize, d: F);
    /// The partials at elements `i..i + BLOCK`, in order.
    fn add_block(&mut self, i: usize, d: &[F; BLOCK]);
}

impl<F: Real> Sink<F> for Partials<F> {
    #[inline(always)]
    fn add(&mut self, i: usize, d: F) {
        match self {
            Partials::Sum(s) => *s += d,
            // Elements come in order, `i` = 0, 1, ..: appended, not written over zeros.
            Partials::Each(v) => {
                debug_assert_eq!(v.len(), i);
                v.push(d)
            }
            Partials::Nothing => {}
        }
    }

    #[inline(always)]
    fn add_block(&mut self, i: usize, d: &[F; BLOCK]) {
        match self {
            Partials::Sum(s) => {
                for &d in d {
                    *s += d;
                }
            }
            Partials::Each(v) => {
                debug_assert_eq!(v.len(), i);
                v.extend_from_slice(d)
            }
            Partials::Nothing => {}
        }
    }
}

macro_rules! scalar_elements {
    ($($t:ident),*) => {$(
        impl Elements<$t> for $t {
            type Adjoint = $t;
            fn element_shape(&self) -> &[usize] {
                &[]
            }
            fn lane(&self, _: &[usize]) -> Lane<'_, $t> {
                Lane::Scalar(*self)
            }
            #[inline(always)]
            fn flat(&self, _: &[usize]) -> Option<Flat<'_, $t>> {
                Some(Flat {
                    s: std::slice::from_ref(self),
                    mask: 0,
                })
            }
            fn partials(&self, _: usize) -> Partials<$t> {
                Partials::Sum(0.0)
            }
            fn adjoint_of(&self, _: &[usize], p: Partials<$t>) -> $t {
                match p {
                    Partials::Sum(s) => s,
                    _ => 0.0,
                }
            }
        }
    )*};
}
scalar_elements!(f32, f64);

impl<F: Real, S: Data<Elem = F>, D: Dimension> Elements<F> for ArrayBase<S, D> {
    type Adjoint = Array<F, D>;
    fn element_shape(&self) -> &[usize] {
        self.shape()
    }
    #[inline(always)]
    fn lane(&self, shape: &[usize]) -> Lane<'_, F> {
        if self.shape() == shape {
            if let Some(s) = self.as_slice() {
                return Lane::Slice(s);
            }
            if let Ok(v) = self.view().into_dimensionality::<Ix1>() {
                return Lane::Strided(v);
            }
        }
        broadcast_lane(self, shape)
    }
    #[inline(always)]
    fn flat(&self, shape: &[usize]) -> Option<Flat<'_, F>> {
        if self.shape() != shape {
            return None;
        }
        let s = self.as_slice()?;
        Some(Flat { s, mask: !0 })
    }
    fn partials(&self, len: usize) -> Partials<F> {
        Partials::Each(Vec::with_capacity(len))
    }
    fn adjoint_of(&self, shape: &[usize], p: Partials<F>) -> Array<F, D> {
        let Partials::Each(v) = p else {
            return Array::zeros(self.raw_dim());
        };
        if self.shape() == shape {
            // Its own shape, in its own dimension type (no `IxDyn` on the common path).
            return match Array::from_shape_vec(self.raw_dim(), v) {
                Ok(a) => a,
                Err(e) => panic!("autodiff: fused sum's adjoint of shape {shape:?}: {e}"),
            };
        }
        to_dim(summed_to(v, shape, self.shape()))
    }
}

/// An input whose adjoint is not wanted.
pub struct Const<'a, T: ?Sized>(pub &'a T);

/// How [`fused_sum`] and [`fused_sum_grad`] read one input, constant or not.
pub trait Input<F: Real> {
    type Adjoint;
    fn shape_in(&self) -> &[usize];
    fn lane_in(&self, shape: &[usize]) -> Lane<'_, F>;
    fn flat_in(&self, shape: &[usize]) -> Option<Flat<'_, F>>;
    fn partials(&self, len: usize) -> Partials<F>;
    fn finish(&self, shape: &[usize], p: Partials<F>) -> Self::Adjoint;
}

impl<F: Real, T: Val + ?Sized> Input<F> for &T
where
    T::Canon: Elements<F>,
{
    type Adjoint = <T::Canon as Elements<F>>::Adjoint;
    #[inline(always)]
    fn shape_in(&self) -> &[usize] {
        self.canon().element_shape()
    }
    #[inline(always)]
    fn lane_in(&self, shape: &[usize]) -> Lane<'_, F> {
        self.canon().lane(shape)
    }
    #[inline(always)]
    fn flat_in(&self, shape: &[usize]) -> Option<Flat<'_, F>> {
        self.canon().flat(shape)
    }
    fn partials(&self, len: usize) -> Partials<F> {
        self.canon().partials(len)
    }
    fn finish(&self, shape: &[usize], p: Partials<F>) -> Self::Adjoint {
        self.canon().adjoint_of(shape, p)
    }
}

impl<F: Real, T: Val + ?Sized> Input<F> for Const<'_, T>
where
    T::Canon: Elements<F>,
{
    type Adjoint = ();
    #[inline(always)]
    fn shape_in(&self) -> &[usize] {
        self.0.canon().element_shape()
    }
    #[inline(always)]
    fn lane_in(&self, shape: &[usize]) -> Lane<'_, F> {
        self.0.canon().lane(shape)
    }
    #[inline(always)]
    fn flat_in(&self, shape: &[usize]) -> Option<Flat<'_, F>> {
        self.0.canon().flat(shape)
    }
    fn partials(&self, _: usize) -> Partials<F> {
        Partials::Nothing
    }
    fn finish(&self, _: &[usize], _: Partials<F>) {}
}

/// Where [`fused_sum_acc`] adds one input's partial derivatives (times the sum's adjoint): a
/// view of the input's adjoint (`d_w.view_mut()`, `d_x.row_mut(i)`), or [`Skip`] for an input
/// whose adjoint is not wanted.
pub trait Dest<'a, F: Real> {
    /// The destination in the order of the common shape `shape` (of `len` elements), for one
    /// that [`Dest::flat_mut`] gave back.
    fn lane_mut(self, shape: &[usize], len: usize) -> LaneMut<'a, F>;
    /// The destination as a plain slice (an empty one for none), or itself back.
    fn flat_mut(self, shape: &[usize]) -> Result<FlatMut<'a, F>, Self>
    where
        Self: Sized;
}

/// No destination: the input is a constant.
pub struct Skip;

impl<'a, F: Real> Dest<'a, F> for Skip {
    fn lane_mut(self, _: &[usize], _: usize) -> LaneMut<'a, F> {
        LaneMut::Nothing
    }
    #[inline(always)]
    fn flat_mut(self, _: &[usize]) -> Result<FlatMut<'a, F>, Skip> {
        Ok(FlatMut { s: &mut [] })
    }
}

impl<'a, F: Real, D: Dimension> Dest<'a, F> for ArrayViewMut<'a, F, D> {
    #[inline(always)]
    fn lane_mut(self, shape: &[usize], len: usize) -> LaneMut<'a, F> {
        // Contiguous views of the common shape are plain (`flat_mut`) and never come here.
        if self.shape() == shape && self.ndim() == 1 {
            match self.into_dimensionality::<Ix1>() {
                Ok(v) => return LaneMut::Strided(v),
                Err(e) => unreachable!("a view of one axis: {e}"),
            }
        }
        // Broadcast, or of the common shape in another order: gathered.
        gather(self, len)
    }
    #[inline(always)]
    fn flat_mut(self, shape: &[usize]) -> Result<FlatMut<'a, F>, Self> {
        if self.shape() == shape && self.is_standard_layout() {
            return match self.into_slice() {
                Some(s) => Ok(FlatMut { s }),
                None => unreachable!("a view in standard layout is a slice"),
            };
        }
        Err(self)
    }
}

#[cold]
#[inline(never)]
fn gather<F: Real, D: Dimension>(dest: ArrayViewMut<'_, F, D>, len: usize) -> LaneMut<'_, F> {
    LaneMut::Gather(Box::new((Vec::with_capacity(len), dest.into_dyn())))
}

/// An array's elements broadcast to `shape`, copied in its order (or a panic naming both
/// shapes).
#[cold]
#[inline(never)]
fn broadcast_lane<'a, F: Real, S: Data<Elem = F>, D: Dimension>(
    a: &'a ArrayBase<S, D>,
    shape: &[usize],
) -> Lane<'a, F> {
    match a.broadcast(IxDyn(shape)) {
        Some(v) => Lane::Owned(v.iter().copied().collect()),
        None => panic!(
            "autodiff: an element-wise operation cannot broadcast an array of shape {:?} to shape {:?}",
            a.shape(),
            shape
        ),
    }
}

/// One input's destination in the order of the common shape.
pub enum LaneMut<'a, F> {
    /// Contiguous, of the common shape, in standard order.
    Slice(&'a mut [F]),
    /// One axis of the common shape with a stride (a column of a matrix).
    Strided(ArrayViewMut1<'a, F>),
    /// Anything else (the input was broadcast): the contributions gathered in the common
    /// shape's order, summed to the input's shape and added at the end (boxed: the lanes
    /// stay small enough to live in registers on the common paths).
    Gather(Box<(Vec<F>, ArrayViewMut<'a, F, IxDyn>)>),
    Nothing,
}

impl<F: Real> Sink<F> for LaneMut<'_, F> {
    #[inline(always)]
    fn add(&mut self, i: usize, d: F) {
        match self {
            LaneMut::Slice(s) => s[i] += d,
            LaneMut::Strided(v) => v[i] += d,
            LaneMut::Gather(g) => g.0.push(d),
            LaneMut::Nothing => {}
        }
    }

    #[inline(always)]
    fn add_block(&mut self, i: usize, d: &[F; BLOCK]) {
        match self {
            LaneMut::Slice(s) => {
                for (s, d) in s[i..i + BLOCK].iter_mut().zip(d) {
                    *s += *d;
                }
            }
            LaneMut::Strided(v) => {
                for (k, d) in d.iter().enumerate() {
                    v[i + k] += *d;
                }
            }
            LaneMut::Gather(g) => g.0.extend_from_slice(d),
            LaneMut::Nothing => {}
        }
    }
}

impl<F: Real> LaneMut<'_, F> {
    /// Adds what was gathered, summed over the axes the input was broadcast along.
    #[inline(always)]
    fn finish(self, shape: &[usize]) {
        if let LaneMut::Gather(g) = self {
            add_gathered(*g, shape);
        }
    }
}

#[cold]
#[inline(never)]
fn add_gathered<F: Real>((g, mut dest): (Vec<F>, ArrayViewMut<'_, F, IxDyn>), shape: &[usize]) {
    let reduced = summed_to(g, shape, dest.shape());
    dest += &reduced;
}

/// Partial derivatives gathered in the order of the common shape `shape`, summed over the axes
/// an input of shape `to` was broadcast along.
fn summed_to<F: Real>(g: Vec<F>, shape: &[usize], to: &[usize]) -> ArrayD<F> {
    let full = match ArrayD::from_shape_vec(IxDyn(shape), g) {
        Ok(a) => a,
        Err(e) => panic!("autodiff: fused sum's adjoint of shape {shape:?}: {e}"),
    };
    reduce_to(full.view(), to)
}

/// Tuples of inputs with a tuple of [`Sink`]s of the same length: the pass
/// [`Inputs::fold_grad`] makes into gathered partials. [`FoldAcc::fold_acc`] runs the same
/// pass (the `@pass` arm of `inputs!`) into the inputs' adjoints.
pub trait FoldInto<F: Real, S>: Inputs<F> {
    /// The sum of `f`'s values over the common shape `shape`, each element's partial
    /// derivatives times `scale` put in the inputs' sinks.
    fn fold_into(
        &self,
        shape: &[usize],
        sinks: &mut S,
        scale: F,
        f: impl FnMut(Self::Elems) -> (F, Self::Elems),
    ) -> F;
}

/// Tuples of inputs with a tuple of [`Dest`]s of the same length.
pub trait FoldAcc<F: Real, T>: Inputs<F> {
    /// [`Inputs::fold_grad`] with each partial derivative times `dy` added into its input's
    /// destination instead of gathered.
    fn fold_acc(
        &self,
        shape: &[usize],
        dests: T,
        dy: F,
        f: impl FnMut(Self::Elems) -> (F, Self::Elems),
    ) -> F;
}

/// A shape of up to eight axes kept inline (more go to the heap).
pub struct Dims {
    small: [usize; 8],
    big: Vec<usize>,
    ndim: usize,
}

impl Dims {
    #[inline(always)]
    fn new(ndim: usize) -> Dims {
        Dims {
            small: [1; 8],
            big: if ndim > 8 { vec![1; ndim] } else { Vec::new() },
            ndim,
        }
    }
    #[inline(always)]
    fn slice(&self) -> &[usize] {
        if self.ndim > 8 {
            &self.big
        } else {
            &self.small[..self.ndim]
        }
    }
    #[inline(always)]
    fn slice_mut(&mut self) -> &mut [usize] {
        if self.ndim > 8 {
            &mut self.big
        } else {
            &mut self.small[..self.ndim]
        }
    }
}

/// The shape every input broadcasts to (NumPy's rules, as ndarray's operators apply them).
/// Panics, naming the fused operations `ops` and the shapes, when there is none.
#[inline]
fn common_shape(ops: &str, shapes: &[&[usize]]) -> Dims {
    let ndim = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Dims::new(ndim);
    let dims = out.slice_mut();
    for s in shapes {
        for (o, &n) in dims.iter_mut().rev().zip(s.iter().rev()) {
            if *o == 1 {
                *o = n;
            } else if n != 1 && n != *o {
                incompatible(ops, shapes);
            }
        }
    }
    out
}

#[cold]
#[inline(never)]
fn incompatible(ops: &str, shapes: &[&[usize]]) -> ! {
    let shapes: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
    panic!(
        "autodiff: {ops} (fused into a sum) of arrays of shapes {}: ShapeError/IncompatibleShape: incompatible shapes",
        shapes.join(" and ")
    )
}

/// ndarray's `sum` of `len` elements: eight partial sums over blocks of eight, then the rest
/// in order (`numeric_util::unrolled_fold`), so a fused sum rounds as the unfused one. `block`
/// gives the values at `i..i + 8`, `one` the value at `i`; both may update `state`.
#[inline(always)]
fn unrolled_sum<F: Real, S>(
    len: usize,
    state: &mut S,
    block: impl Fn(&mut S, usize) -> [F; BLOCK],
    one: impl Fn(&mut S, usize) -> F,
) -> F {
    let mut p = [F::zero(); BLOCK];
    let mut i = 0;
    while i + BLOCK <= len {
        for (p, v) in p.iter_mut().zip(block(state, i)) {
            *p += v;
        }
        i += BLOCK;
    }
    let mut acc = F::zero();
    acc += p[0] + p[4];
    acc += p[1] + p[5];
    acc += p[2] + p[6];
    acc += p[3] + p[7];
    while i < len {
        acc += one(state, i);
        i += 1;
    }
    acc
}

/// Tuples of inputs, with their elements as a tuple of floats.
pub trait Inputs<F: Real> {
    type Elems;
    type Adjoints;
    fn shape(&self, ops: &str) -> Dims;
    fn fold(&self, shape: &[usize], f: impl FnMut(Self::Elems) -> F) -> F;
    fn fold_grad(
        &self,
        shape: &[usize],
        f: impl FnMut(Self::Elems) -> (F, Self::Elems),
    ) -> (F, Self::Adjoints);
    /// Every element of `d` times `by`.
    fn scale_elems(d: Self::Elems, by: F) -> Self::Elems;
}

macro_rules! inputs {
    ($($t:ident $e:ident $k:tt),*) => {
        impl<F: Real, $($t: Input<F>),*> Inputs<F> for ($($t,)*) {
            type Elems = ($(inputs!(@f $t F),)*);
            type Adjoints = ($($t::Adjoint,)*);
            #[inline]
            fn shape(&self, ops: &str) -> Dims {
                common_shape(ops, &[$(self.$k.shape_in()),*])
            }
            #[inline(always)]
            fn fold(&self, shape: &[usize], mut f: impl FnMut(Self::Elems) -> F) -> F {
                let len = shape.iter().product();
                // Plain slices and scalars without a match per element; anything else
                // through the lanes.
                match ($(self.$k.flat_in(shape),)*) {
                    ($(Some($e),)*) => inputs!(@values len, ($($e,)*), f; $($k),*),
                    _ => {
                        let lanes = ($(self.$k.lane_in(shape),)*);
                        inputs!(@values len, lanes, f; $($k),*)
                    }
                }
            }
            #[inline(always)]
            fn scale_elems(d: Self::Elems, by: F) -> Self::Elems {
                ($(d.$k * by,)*)
            }
            #[inline(always)]
            fn fold_grad(
                &self,
                shape: &[usize],
                f: impl FnMut(Self::Elems) -> (F, Self::Elems),
            ) -> (F, Self::Adjoints) {
                let len = shape.iter().product();
                let mut partials = ($(self.$k.partials(len),)*);
                let value = self.fold_into(shape, &mut partials, F::one(), f);
                (value, ($(self.$k.finish(shape, partials.$k),)*))
            }
        }
    };
    (@acc $($t:ident $u:ident $a:ident $v:ident $k:tt),*) => {
        impl<'a, F: Real, $($t: Input<F>, $u: Dest<'a, F>),*> FoldAcc<F, ($($u,)*)> for ($($t,)*) {
            #[inline(always)]
            fn fold_acc(
                &self,
                shape: &[usize],
                dests: ($($u,)*),
                dy: F,
                f: impl FnMut(Self::Elems) -> (F, Self::Elems),
            ) -> F {
                let len = shape.iter().product();
                // Every input a scalar or a contiguous array of the common shape, and every
                // destination a contiguous array or none (the common case, a row and a
                // vector): the pass on plain slices, with no match per element. Anything else
                // goes through the lanes.
                let flats = ($(self.$k.flat_in(shape),)*);
                let dests = ($(dests.$k.flat_mut(shape),)*);
                match (flats, dests) {
                    (($(Some($a),)*), ($(Ok($v),)*)) => {
                        inputs!(@pass len, ($($a,)*), &mut ($($v,)*), dy, f; $($t $k),*)
                    }
                    (_, dests) => {
                        let mut outs = ($(match dests.$k {
                            Ok(flat) => flat.lane(),
                            Err(dest) => dest.lane_mut(shape, len),
                        },)*);
                        let lanes = ($(self.$k.lane_in(shape),)*);
                        let value = inputs!(@pass len, lanes, &mut outs, dy, f; $($t $k),*);
                        $(outs.$k.finish(shape);)*
                        value
                    }
                }
            }
        }
    };
    (@into $($t:ident $u:ident $a:ident $k:tt),*) => {
        impl<F: Real, $($t: Input<F>, $u: Sink<F>),*> FoldInto<F, ($($u,)*)> for ($($t,)*) {
            #[inline(always)]
            fn fold_into(
                &self,
                shape: &[usize],
                sinks: &mut ($($u,)*),
                scale: F,
                f: impl FnMut(Self::Elems) -> (F, Self::Elems),
            ) -> F {
                let len = shape.iter().product();
                match ($(self.$k.flat_in(shape),)*) {
                    ($(Some($a),)*) => inputs!(@pass len, ($($a,)*), sinks, scale, f; $($t $k),*),
                    _ => {
                        let lanes = ($(self.$k.lane_in(shape),)*);
                        inputs!(@pass len, lanes, sinks, scale, f; $($t $k),*)
                    }
                }
            }
        }
    };
    // `f`'s values at every element of `lanes`, summed as ndarray's `sum` does.
    (@values $len:expr, $lanes:expr, $f:expr; $($k:tt),*) => {{
        let lanes = &$lanes;
        unrolled_sum(
            $len,
            &mut $f,
            |f, i| {
                let blocks = ($(lanes.$k.block(i),)*);
                std::array::from_fn(|j| f(($(blocks.$k[j],)*)))
            },
            |f, i| f(($(lanes.$k.at(i),)*)),
        )
    }};
    // The one pass: `f` at every element of `lanes` (each read with `at` and `block`), its
    // values summed as ndarray's `sum` does, its partial derivatives times `scale` put in
    // `sinks`.
    (@pass $len:expr, $lanes:expr, $sinks:expr, $scale:expr, $f:expr; $($t:ident $k:tt),*) => {{
        let lanes = &$lanes;
        let scale = $scale;
        let mut state = ($f, $sinks);
        unrolled_sum(
            $len,
            &mut state,
            |(f, sinks), i| {
                let blocks = ($(lanes.$k.block(i),)*);
                let mut values = [F::zero(); BLOCK];
                let mut ds = ($(inputs!(@zeros $t F),)*);
                for j in 0..BLOCK {
                    let (v, d) = f(($(blocks.$k[j],)*));
                    values[j] = v;
                    $(ds.$k[j] = d.$k * scale;)*
                }
                $(sinks.$k.add_block(i, &ds.$k);)*
                values
            },
            |(f, sinks), i| {
                let (v, d) = f(($(lanes.$k.at(i),)*));
                $(sinks.$k.add(i, d.$k * scale);)*
                v
            },
        )
    }};
    (@f $t:ident $f:ident) => { $f };
    (@zeros $t:ident $f:ident) => { [$f::zero(); BLOCK] };
}
inputs!(A a 0);
inputs!(A a 0, B b 1);
inputs!(A a 0, B b 1, C c 2);
inputs!(A a 0, B b 1, C c 2, D d 3);
inputs!(@into A U a 0);
inputs!(@into A U a 0, B V b 1);
inputs!(@into A U a 0, B V b 1, C W c 2);
inputs!(@into A U a 0, B V b 1, C W c 2, D X d 3);
inputs!(@acc A U a u 0);
inputs!(@acc A U a u 0, B V b v 1);
inputs!(@acc A U a u 0, B V b v 1, C W c w 2);
inputs!(@acc A U a u 0, B V b v 1, C W c w 2, D X d x 3);

/// `sum` over the common shape of `f` applied to the inputs' elements; `ops` names the fused
/// operations for the panic message when the inputs' shapes do not broadcast together.
#[inline]
pub fn fused_sum<F: Real, I: Inputs<F>>(inputs: I, ops: &str, f: impl FnMut(I::Elems) -> F) -> F {
    let shape = inputs.shape(ops);
    inputs.fold(shape.slice(), f)
}

/// [`fused_sum`] and, in the same pass, the sum's derivative with respect to each input: `f`
/// gives the value at one element and its partial derivatives there. An array input gets an
/// array of its own shape (summed over the axes it was broadcast along), a scalar the sum of
/// its partials, a [`Const`] nothing. The reverse sweep scales them by the sum's adjoint.
#[inline]
pub fn fused_sum_grad<F: Real, I: Inputs<F>>(
    inputs: I,
    ops: &str,
    f: impl FnMut(I::Elems) -> (F, I::Elems),
) -> (F, I::Adjoints) {
    let shape = inputs.shape(ops);
    inputs.fold_grad(shape.slice(), f)
}

/// [`fused_sum`] and, in the same pass, each partial derivative times the sum's adjoint `dy`
/// added into the input's destination in `dests` (a view of its adjoint, or [`Skip`]): for a
/// sum whose adjoint is known before it runs, no array of derivatives is made. An input that
/// was broadcast gets its contributions summed over the broadcast axes.
#[inline]
pub fn fused_sum_acc<F: Real, I: FoldAcc<F, T>, T>(
    inputs: I,
    dests: T,
    dy: F,
    ops: &str,
    f: impl FnMut(I::Elems) -> (F, I::Elems),
) -> F {
    let shape = inputs.shape(ops);
    inputs.fold_acc(shape.slice(), dests, dy, f)
}

/// [`fused_sum_acc`] for the mean: the sum divided by the number of elements, and so the
/// adjoint each element gets.
#[inline]
pub fn fused_mean_acc<F: Real, I: FoldAcc<F, T>, T>(
    inputs: I,
    dests: T,
    dy: F,
    ops: &str,
    f: impl FnMut(I::Elems) -> (F, I::Elems),
) -> F {
    let shape = inputs.shape(ops);
    let n: F = count(ops, shape.slice());
    inputs.fold_acc(shape.slice(), dests, dy / n, f) / n
}

/// The number of elements of `shape` as a float, or a panic naming `ops` when there are none
/// (where the primal's `.mean()` returns `None`).
fn count<F: Real>(ops: &str, shape: &[usize]) -> F {
    let n: usize = shape.iter().product();
    if n == 0 {
        panic!("autodiff: `mean` of {ops} of an empty array of shape {shape:?} (ndarray's `mean` returns `None`)");
    }
    F::from_f64(n as f64)
}

/// [`fused_sum`] divided by the number of elements: ndarray's `mean`, the operations fused.
#[inline]
pub fn fused_mean<F: Real, I: Inputs<F>>(inputs: I, ops: &str, f: impl FnMut(I::Elems) -> F) -> F {
    let shape = inputs.shape(ops);
    let n: F = count(ops, shape.slice());
    inputs.fold(shape.slice(), f) / n
}

/// [`fused_sum_grad`] for the mean: the value and the derivatives divided by the number of
/// elements.
#[inline]
pub fn fused_mean_grad<F: Real, I: Inputs<F>>(
    inputs: I,
    ops: &str,
    mut f: impl FnMut(I::Elems) -> (F, I::Elems),
) -> (F, I::Adjoints) {
    let shape = inputs.shape(ops);
    let n: F = count(ops, shape.slice());
    let inv = F::one() / n;
    let (sum, grads) = inputs.fold_grad(shape.slice(), |e| {
        let (v, d) = f(e);
        (v, I::scale_elems(d, inv))
    });
    (sum / n, grads)
}

#[cfg(test)]
mod tests {
    use super::{fused_sum, fused_sum_acc, fused_sum_grad, Const, Skip};
    use ndarray::{Array1, Array2};

    /// `sin(a b)` and its partial derivatives.
    fn sin_product((a, b): (f64, f64)) -> (f64, (f64, f64)) {
        let c = (a * b).cos();
        ((a * b).sin(), (c * b, c * a))
    }

    /// The plain passes (contiguous arrays, scalars, no destination) and the lanes (a strided
    /// view, a broadcast input) give ndarray's own sum to the bit, and each element's partial
    /// derivative times the adjoint added into what the destination held, over every length
    /// from none to two blocks of eight and a tail.
    #[test]
    fn passes_on_slices_scalars_and_views_agree_with_ndarray() {
        let ops = "`*`, `mapv`";
        for n in 0..20 {
            let x = Array1::from_shape_fn(n, |i| 0.3 + 0.1 * i as f64);
            let w = Array1::from_shape_fn(n, |i| 1.0 - 0.05 * i as f64);
            let (s, dy) = (0.9, 0.7);
            let want = (&x * &w).mapv(f64::sin).sum();
            let want_scalar = (&x * s).mapv(f64::sin).sum();
            let partial = |i: usize, b: f64| (x[i] * b).cos() * b;

            // Contiguous destinations: the plain pass.
            let (mut dx, mut dw) = (Array1::from_elem(n, 1.0), Array1::from_elem(n, 2.0));
            let value = fused_sum_acc(
                (&x, &w),
                (dx.view_mut(), dw.view_mut()),
                dy,
                ops,
                sin_product,
            );
            assert_eq!(value, want, "n = {n}");
            for i in 0..n {
                assert_eq!(dx[i], 1.0 + partial(i, w[i]) * dy, "dx[{i}], n = {n}");
                assert_eq!(
                    dw[i],
                    2.0 + (x[i] * w[i]).cos() * x[i] * dy,
                    "dw[{i}], n = {n}"
                );
            }

            // A scalar input and no destination for it: the plain pass.
            let mut dx = Array1::from_elem(n, 1.0);
            let value = fused_sum_acc((&x, &s), (dx.view_mut(), Skip), dy, ops, sin_product);
            assert_eq!(value, want_scalar, "n = {n}");
            for i in 0..n {
                assert_eq!(dx[i], 1.0 + partial(i, s) * dy, "dx[{i}], n = {n}");
            }

            // A column of a matrix as the destination: through the lanes.
            let mut m = Array2::from_elem((n, 2), 1.0);
            let value = fused_sum_acc((&x, &w), (m.column_mut(0), Skip), dy, ops, sin_product);
            assert_eq!(value, want, "n = {n}");
            for i in 0..n {
                assert_eq!(m[[i, 0]], 1.0 + partial(i, w[i]) * dy, "m[{i}, 0], n = {n}");
                assert_eq!(m[[i, 1]], 1.0, "m[{i}, 1], n = {n}");
            }

            // The value alone, and the gathered derivatives, plain and with a constant.
            let value = fused_sum((&x, &w), ops, |(a, b)| (a * b).sin());
            assert_eq!(value, want, "n = {n}");
            let (value, (gx, gs)) = fused_sum_grad((&x, &s), ops, sin_product);
            assert_eq!(value, want_scalar, "n = {n}");
            let want_gs: f64 = (0..n).map(|i| (x[i] * s).cos() * x[i]).sum();
            assert!(
                (gs - want_gs).abs() <= 1e-12 * want_gs.abs().max(1.0),
                "n = {n}"
            );
            for i in 0..n {
                assert_eq!(gx[i], partial(i, s), "gx[{i}], n = {n}");
            }
            let (value, (gx, ())) = fused_sum_grad((&x, Const(&w)), ops, sin_product);
            assert_eq!(value, want, "n = {n}");
            for i in 0..n {
                assert_eq!(gx[i], partial(i, w[i]), "gx[{i}], n = {n}");
            }
        }
    }

    /// An input broadcast along a new axis goes through the lanes, its derivatives summed
    /// over that axis.
    #[test]
    fn broadcast_inputs_take_the_lanes() {
        let x = Array2::from_shape_fn((3, 11), |(i, j)| 0.1 * (i + j) as f64);
        let w = Array1::from_shape_fn(11, |j| 1.0 - 0.05 * j as f64);
        let (mut dx, mut dw) = (Array2::zeros((3, 11)), Array1::zeros(11));
        let value = fused_sum_acc(
            (&x, &w),
            (dx.view_mut(), dw.view_mut()),
            1.0,
            "`*`",
            sin_product,
        );
        assert_eq!(value, (&x * &w).mapv(f64::sin).sum());
        for j in 0..11 {
            let want: f64 = (0..3).map(|i| (x[[i, j]] * w[j]).cos() * x[[i, j]]).sum();
            assert!(
                (dw[j] - want).abs() <= 1e-12,
                "dw[{j}]: {} vs {want}",
                dw[j]
            );
            for i in 0..3 {
                assert_eq!(dx[[i, j]], (x[[i, j]] * w[j]).cos() * w[j], "dx[{i}, {j}]");
            }
        }
    }
}
