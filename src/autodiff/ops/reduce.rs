//! Reductions.

use ndarray::{ArrayD, Axis, IxDyn};

use super::check;
use crate::{Error, Result, Scalar, Tape, Var};

impl<T: Scalar> Tape<'_, T> {
    /// The sum of all elements, a scalar of shape `[]` (`tf.reduce_sum`).
    pub fn sum(&self, x: Var) -> Var {
        let value = ArrayD::from_elem(IxDyn(&[]), self.value(x).sum());
        self.push_op(value, &[x], |ctx| {
            let g = *ctx.g().iter().next().expect("scalar gradient");
            vec![Some(ArrayD::from_elem(ctx.input(0).raw_dim(), g))]
        })
    }

    /// The mean of all elements, a scalar of shape `[]` (`tf.reduce_mean`); NaN for an empty
    /// tensor, as in TensorFlow (0 / 0), so an empty batch does not pass for a zero loss.
    pub fn mean(&self, x: Var) -> Var {
        let n = self.value(x).len();
        let s = self.sum(x);
        self.scale(
            s,
            T::one() / T::from_usize(n).expect("count fits the float type"),
        )
    }

    /// Sums over `axis`, removing it, or keeping it with size 1 when `keep_dims`.
    pub fn sum_axis(&self, x: Var, axis: usize, keep_dims: bool) -> Result<Var> {
        let value = {
            let vx = self.value(x);
            check(
                axis < vx.ndim(),
                "sum_axis",
                || format!("an axis below {}", vx.ndim()),
                &[axis],
            )?;
            let s = vx.sum_axis(Axis(axis));
            if keep_dims {
                s.insert_axis(Axis(axis))
            } else {
                s
            }
        };
        Ok(self.push_op(value, &[x], move |ctx| {
            let shape = ctx.input(0).raw_dim();
            let g = ctx.g();
            let g = if keep_dims {
                g.view()
            } else {
                g.view().insert_axis(Axis(axis))
            };
            vec![Some(
                g.broadcast(shape).expect("kept axis broadcasts").to_owned(),
            )]
        }))
    }

    /// Averages over `axis`, removing it, or keeping it with size 1 when `keep_dims`; NaN where
    /// `axis` is empty, as in TensorFlow.
    pub fn mean_axis(&self, x: Var, axis: usize, keep_dims: bool) -> Result<Var> {
        let s = self.sum_axis(x, axis, keep_dims).map_err(|e| match e {
            // The sum is an implementation detail: the error is the mean's.
            Error::Shape { expected, got, .. } => Error::Shape {
                op: "mean_axis",
                expected,
                got,
            },
            other => other,
        })?;
        let n = self.value(x).shape()[axis];
        Ok(self.scale(
            s,
            T::one() / T::from_usize(n).expect("count fits the float type"),
        ))
    }
}
