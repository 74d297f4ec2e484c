//! Runtime support for `#[differentiate]`.
//!
//! The attribute writes gradients as ordinary Rust; this crate supplies what that code calls:
//! - [`Real`]: the float types that gradients are computed in (`f32`, `f64`);
//! - [`adjoint`]: the type-generic plumbing the generated code uses so that the macro never has
//!   to know the type of a local value (zero adjoints, accumulation, element-wise pullbacks);
//! - [`ops`]: primitives that plain Rust lacks, each next to its adjoint;
//! - [`check`]: a finite-difference gradient checker for users' own tests.
#![forbid(unsafe_code)]

pub mod adjoint;
pub mod check;
pub mod fused;
pub mod ops;
mod real;
pub mod tensor;
pub mod value;

pub use ndarray;
pub use real::Real;

/// What the generated code refers to. Not a stable API: use the attribute instead.
#[doc(hidden)]
pub mod __rt {
    pub use crate::adjoint::{
        acc, acc_column, acc_elements, acc_pb1, acc_pb2, acc_pb3, column, constant_column,
        constant_field, element_gradient, elements_from, field_gradient, float_column, init,
        init_pair, into_array, into_elements, into_like, keep, lend, like, pb1, pb1_owned, pb2,
        pb2_owned, pb3, pb3_owned, point_column, pop, push_reserved, receiver_gradient, release,
        restore, scale, scale_elements, scale_elements_of, set_column, unit, unreachable_arm,
        zero_array, zero_elements, zero_like, zero_sparing, Accumulate, AdjointFrom, Branch,
        ConstantProbe, Differentiable, Field, FieldByRef, FieldByValue, FloatProbe, OtherProbe,
        Scale, StructGradient, VectorOutput, WindowTape,
    };
    pub use crate::fused::{
        fused_mean, fused_mean_acc, fused_mean_grad, fused_sum, fused_sum_acc, fused_sum_grad,
        Const, Skip,
    };
    pub use crate::tensor::{
        add, add_owned, assign, column_acc, diag_adj, div, div_owned, dot, dot_lhs_adj,
        dot_rhs_adj, flatten, flatten_acc, flatten_rows, flatten_rows_acc, insert_axis,
        insert_axis_adj, into_shape_with_order, mean_adj, mean_axis_adj, mul, mul_owned, neg,
        range, range_acc, rem, reshape_adj, reversed_axes, row_acc, row_width, set_grow, slice_acc,
        sorted_order, sub, sub_owned, sum_adj, sum_axis_adj, t_adj, take_view, unflatten,
        unflatten_acc, unflatten_rows, unflatten_rows_acc, Width,
    };
    pub use crate::Real;
}
