//! Matrix products and bias addition.

use ndarray::{Axis, Ix2};

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
}
