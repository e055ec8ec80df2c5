//! Shape ops: the [`crate::tensor`] helpers on the tape, plus `reshape` and `gather_rows`.
//!
//! Each forward is the plain helper, so the semantics (and the argument checks) exist once; each
//! backward is the helper's inverse.

use ndarray::{ArrayD, Axis, IxDyn};

use super::check;
use crate::tensor::{self, NumOrSizes};
use crate::{Error, Result, Scalar, Tape, Var};

impl<T: Scalar> Tape<'_, T> {
    /// The same elements in a new shape of equal size, row-major (`tf.reshape`).
    pub fn reshape(&self, x: Var, shape: &[usize]) -> Result<Var> {
        let value = {
            let vx = self.value(x);
            let n = tensor::element_count("reshape", shape)?;
            check(
                n == vx.len(),
                "reshape",
                || format!("a shape with {} elements (from {:?})", vx.len(), vx.shape()),
                shape,
            )?;
            vx.as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(shape))
                .expect("sizes checked above")
        };
        Ok(self.push_op(value, &[x], |ctx| {
            let shape = ctx.input(0).raw_dim();
            vec![Some(
                ctx.g()
                    .as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(shape)
                    .expect("sizes match"),
            )]
        }))
    }

    /// Splits `x` along `axis` into arrays one dimension smaller (`tf.unstack`).
    pub fn unstack(&self, x: Var, axis: usize) -> Result<Vec<Var>> {
        let values = tensor::unstack(&*self.value(x), axis)?;
        let part_shape = values.first().map(|v| v.shape().to_vec());
        Ok(self.push_op_multi(values, &[x], move |ctx| {
            let part = part_shape.as_deref().unwrap_or(&[]);
            let n = ctx.input(0).shape()[axis];
            let zeros = ArrayD::zeros(IxDyn(part));
            let parts: Vec<_> = (0..n)
                .map(|i| ctx.grad(i).unwrap_or(&zeros).view())
                .collect();
            vec![Some(
                tensor::stack(&parts, axis).expect("parts have the unstacked shape"),
            )]
        }))
    }

    /// Joins equal-shaped vars along a new `axis` (`tf.stack`).
    pub fn stack(&self, xs: &[Var], axis: usize) -> Result<Var> {
        let value = {
            let values: Vec<_> = xs.iter().map(|&v| self.value(v)).collect();
            let views: Vec<_> = values.iter().map(|v| v.view()).collect();
            tensor::stack(&views, axis)?
        };
        Ok(self.push_op(value, xs, move |ctx| {
            tensor::unstack(ctx.g(), axis)
                .expect("gradient has the stacked shape")
                .into_iter()
                .map(Some)
                .collect()
        }))
    }

    /// Permutes the axes: output axis `i` is input axis `perm[i]` (`tf.transpose`).
    pub fn transpose(&self, x: Var, perm: &[usize]) -> Result<Var> {
        let value = tensor::transpose(&*self.value(x), perm)?;
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(self.push_op(value, &[x], move |ctx| {
            vec![Some(
                tensor::transpose(ctx.g(), &inverse).expect("inverse permutation"),
            )]
        }))
    }

    /// Splits `x` along `axis` into equal parts or parts of the given sizes (`tf.split`).
    pub fn split(
        &self,
        x: Var,
        num_or_sizes: impl Into<NumOrSizes>,
        axis: usize,
    ) -> Result<Vec<Var>> {
        let values = tensor::split(&*self.value(x), num_or_sizes, axis)?;
        let shapes: Vec<Vec<usize>> = values.iter().map(|v| v.shape().to_vec()).collect();
        Ok(self.push_op_multi(values, &[x], move |ctx| {
            let owned: Vec<ArrayD<T>> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    ctx.grad(i)
                        .cloned()
                        .unwrap_or_else(|| ArrayD::zeros(IxDyn(s)))
                })
                .collect();
            vec![Some(
                tensor::concat(&owned, axis).expect("parts have the split shapes"),
            )]
        }))
    }

    /// Joins vars along an existing `axis` (`tf.concat`).
    pub fn concat(&self, xs: &[Var], axis: usize) -> Result<Var> {
        let (value, sizes) = {
            let values: Vec<_> = xs.iter().map(|&v| self.value(v)).collect();
            let views: Vec<_> = values.iter().map(|v| v.view()).collect();
            let value = tensor::concat(&views, axis)?;
            let sizes: Vec<usize> = values.iter().map(|v| v.shape()[axis]).collect();
            (value, sizes)
        };
        Ok(self.push_op(value, xs, move |ctx| {
            tensor::split(ctx.g(), sizes.clone(), axis)
                .expect("sizes add up")
                .into_iter()
                .map(Some)
                .collect()
        }))
    }

    /// Reverses the first `lengths[b]` elements along `seq_axis` of each batch element `b`
    /// (`tf.reverse_sequence`).
    pub fn reverse_sequence(
        &self,
        x: Var,
        lengths: &[usize],
        seq_axis: usize,
        batch_axis: usize,
    ) -> Result<Var> {
        let value = tensor::reverse_sequence(&*self.value(x), lengths, seq_axis, batch_axis)?;
        let lengths = lengths.to_vec();
        Ok(self.push_op(value, &[x], move |ctx| {
            vec![Some(
                tensor::reverse_sequence(ctx.g(), &lengths, seq_axis, batch_axis)
                    .expect("same arguments"),
            )]
        }))
    }

    /// For `x` of shape `[batch, n, ..]`, the `[batch, ..]` array whose row `b` is `x[b, index[b]]`
    /// (a per-example `tf.gather`).
    pub fn gather_rows(&self, x: Var, index: &[usize]) -> Result<Var> {
        let value = {
            let vx = self.value(x);
            check(
                vx.ndim() >= 2 && vx.shape()[0] == index.len(),
                "gather_rows",
                || format!("x of shape [{}, n, ..]", index.len()),
                vx.shape(),
            )?;
            let n = vx.shape()[1];
            if let Some(&bad) = index.iter().find(|&&i| i >= n) {
                return Err(Error::invalid(format!(
                    "gather_rows index {bad} is not below {n}"
                )));
            }
            // Built row by row rather than with `ndarray::stack`, which refuses an empty batch.
            let mut shape = vx.shape().to_vec();
            shape.remove(1);
            let mut out = ArrayD::zeros(IxDyn(&shape));
            for (b, &i) in index.iter().enumerate() {
                out.index_axis_mut(Axis(0), b)
                    .assign(&vx.index_axis(Axis(0), b).index_axis(Axis(0), i));
            }
            out
        };
        let index = index.to_vec();
        Ok(self.push_op(value, &[x], move |ctx| {
            let mut dx = ArrayD::zeros(ctx.input(0).raw_dim());
            for (b, &i) in index.iter().enumerate() {
                dx.index_axis_mut(Axis(0), b)
                    .index_axis_mut(Axis(0), i)
                    .assign(&ctx.g().index_axis(Axis(0), b));
            }
            vec![Some(dx)]
        }))
    }
}
