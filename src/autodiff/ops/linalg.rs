//! Matrix products and bias addition.

use ndarray::{ArrayD, Axis, CowArray, Ix2, IxDyn};

use super::check;
use crate::kernels::linalg::matmul;
use crate::{Result, Scalar, Tape, Var};

impl<T: Scalar> Tape<'_, T> {
    /// Matrix product `a @ b` of `[m, k]` and `[k, n]`, giving `[m, n]` (`tf.matmul`).
    pub fn matmul(&self, a: Var, b: Var) -> Result<Var> {
        let value = {
            let (va, vb) = (self.value(a), self.value(b));
            check(
                va.ndim() == 2,
                "matmul",
                || "a matrix [m, k]".into(),
                va.shape(),
            )?;
            check(
                vb.ndim() == 2 && vb.shape()[0] == va.shape()[1],
                "matmul",
                || format!("a matrix [{}, n] for the right operand", va.shape()[1]),
                vb.shape(),
            )?;
            let ma = va.view().into_dimensionality::<Ix2>().expect("rank 2");
            let mb = vb.view().into_dimensionality::<Ix2>().expect("rank 2");
            matmul(&ma, &mb).into_dyn()
        };
        Ok(self.push_op(value, &[a, b], |ctx| {
            let g = ctx.g().view().into_dimensionality::<Ix2>().expect("rank 2");
            let ma = ctx
                .input(0)
                .view()
                .into_dimensionality::<Ix2>()
                .expect("rank 2");
            let mb = ctx
                .input(1)
                .view()
                .into_dimensionality::<Ix2>()
                .expect("rank 2");
            vec![
                ctx.needs(0).then(|| matmul(&g, &mb.t()).into_dyn()),
                ctx.needs(1).then(|| matmul(&ma.t(), &g).into_dyn()),
            ]
        }))
    }

    /// Adds the bias vector `[n]` to every row of `x` `[.., n]` (`tf.nn.bias_add`).
    pub fn bias_add(&self, x: Var, bias: Var) -> Result<Var> {
        let value = {
            let (vx, vb) = (self.value(x), self.value(bias));
            let n = vx.shape().last().copied().unwrap_or(0);
            check(
                vx.ndim() >= 1 && vb.ndim() == 1 && vb.len() == n,
                "bias_add",
                || {
                    format!(
                        "a bias of shape [{n}] (the last dimension of x {:?})",
                        vx.shape()
                    )
                },
                vb.shape(),
            )?;
            &*vx + &*vb
        };
        Ok(self.push_op(value, &[x, bias], |ctx| {
            let g = ctx.g();
            let db = ctx.needs(1).then(|| {
                let n = g.shape()[g.ndim() - 1];
                let rows = g.len() / n.max(1);
                g.to_shape((rows, n))
                    .expect("contiguous reshape")
                    .sum_axis(Axis(0))
                    .into_dyn()
            });
            vec![ctx.needs(0).then(|| g.clone()), db]
        }))
    }

    /// A fully connected layer on the last axis: `x @ kernel + bias` for `x` of any rank
    /// (`tf.layers.dense` without activation, `tf.tensordot(x, kernel, 1) + bias`).
    ///
    /// # Shapes
    /// `x: [d0, .., dk, in]`, `kernel: [in, out]`, `bias: [out]` give `[d0, .., dk, out]`.
    ///
    /// The leading axes are one row axis of a single product `[d0 * .. * dk, in] @ [in, out]`,
    /// read from `x` in place (a view, no copy, when `x` is in standard layout); the gradients
    /// are two products of the same kind on views of the output's gradient and `x`, and the
    /// bias's gradient the sum of the gradient's rows. The values are those of [`Tape::reshape`]
    /// to a matrix, [`Tape::matmul`], [`Tape::bias_add`] and a reshape back, bit for bit.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] (op `"dense"`) if `x` is a scalar, `kernel` is not a matrix
    /// `[in, out]` for the last dimension `in` of `x`, or `bias` is not `[out]`.
    pub fn dense(&self, x: Var, kernel: Var, bias: Var) -> Result<Var> {
        const OP: &str = "dense";
        let value = {
            let (vx, vk, vb) = (self.value(x), self.value(kernel), self.value(bias));
            check(
                vx.ndim() >= 1,
                OP,
                || "an input [..., in]".into(),
                vx.shape(),
            )?;
            let k = vx.shape()[vx.ndim() - 1];
            check(
                vk.ndim() == 2 && vk.shape()[0] == k,
                OP,
                || {
                    format!(
                        "a kernel [{k}, out] (the last dimension of x {:?})",
                        vx.shape()
                    )
                },
                vk.shape(),
            )?;
            let n = vk.shape()[1];
            check(
                vb.ndim() == 1 && vb.len() == n,
                OP,
                || format!("a bias [{n}] (the kernel's columns)"),
                vb.shape(),
            )?;
            let kernel = vk.view().into_dimensionality::<Ix2>().expect("rank 2");
            let bias = vb
                .view()
                .into_dimensionality::<ndarray::Ix1>()
                .expect("rank 1");
            let mut y = matmul(&rows_of(&vx).view(), &kernel);
            y += &bias;
            let mut shape = vx.shape().to_vec();
            *shape.last_mut().expect("rank checked") = n;
            y.into_dyn()
                .into_shape_with_order(IxDyn(&shape))
                .expect("the product has the output's size")
        };
        Ok(self.push_op(value, &[x, kernel, bias], |ctx| {
            let x = ctx.input(0);
            let kernel = ctx
                .input(1)
                .view()
                .into_dimensionality::<Ix2>()
                .expect("rank 2");
            let g = rows_of(ctx.g());
            let g = g.view();
            vec![
                ctx.needs(0).then(|| {
                    matmul(&g, &kernel.t())
                        .into_dyn()
                        .into_shape_with_order(x.raw_dim())
                        .expect("the product has the input's size")
                }),
                ctx.needs(1)
                    .then(|| matmul(&rows_of(x).view().t(), &g).into_dyn()),
                ctx.needs(2).then(|| g.sum_axis(Axis(0)).into_dyn()),
            ]
        }))
    }
}

/// `a: [d0, .., dk, n]` as the matrix `[d0 * .. * dk, n]`: a view of a matrix as it is, or
/// of any array in standard layout; a standard-layout copy only of other layouts.
fn rows_of<T: Clone>(a: &ArrayD<T>) -> CowArray<'_, T, Ix2> {
    if a.ndim() == 2 {
        return CowArray::from(a.view().into_dimensionality::<Ix2>().expect("rank 2"));
    }
    let (lead, last) = a.shape().split_at(a.ndim().saturating_sub(1));
    let shape = (lead.iter().product(), last.first().copied().unwrap_or(1));
    match a.view().into_shape_with_order(shape) {
        Ok(view) => CowArray::from(view),
        Err(_) => CowArray::from(
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order(shape)
                .expect("a standard-layout copy"),
        ),
    }
}
