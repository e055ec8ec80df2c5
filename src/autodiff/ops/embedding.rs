//! Embedding lookup: rows of a table gathered by integer ids.

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};

use super::check;
use crate::{tensor, Error, Result, Scalar, Tape, Var};

impl<T: Scalar> Tape<'_, T> {
    /// The rows of `table` picked by `ids` (`tf.nn.embedding_lookup(table, ids)` with one
    /// table): `out[i.., :] = table[ids[i..], :]`.
    ///
    /// # Shapes
    /// `table: [vocab, dim]` and `ids` of any shape `[d0, .., dk]` (any `ndarray` array or view
    /// of `usize`, a `&ArrayD<usize>` or a `&Array2<usize>` `[batch, time]`) give
    /// `[d0, .., dk, dim]`.
    ///
    /// The gradient scatter-adds the output's gradient into a zero array of the table's shape,
    /// touching only the rows used (a row used twice gets both contributions); no dense one-hot
    /// product. TensorFlow returns an `IndexedSlices` there; the dense result is the same sum.
    ///
    /// # Errors
    /// [`Error::Shape`] (op `"embedding_lookup"`) if `table` is not a matrix;
    /// [`Error::InvalidArgument`] naming the op, the id, its position and the vocabulary size
    /// for an id `>= vocab` (as TensorFlow on the CPU).
    pub fn embedding_lookup<S, D>(&self, table: Var, ids: &ArrayBase<S, D>) -> Result<Var>
    where
        S: Data<Elem = usize>,
        D: Dimension,
    {
        const OP: &str = "embedding_lookup";
        let (value, ids) = {
            let vt = self.value(table);
            check(
                vt.ndim() == 2,
                OP,
                || "a table [vocab, dim]".into(),
                vt.shape(),
            )?;
            let (vocab, dim) = (vt.shape()[0], vt.shape()[1]);
            let flat: Vec<usize> = ids.iter().copied().collect();
            if let Some((i, &bad)) = flat.iter().enumerate().find(|(_, &id)| id >= vocab) {
                return Err(Error::invalid(format!(
                    "{OP}: id {bad} (at flat position {i} of ids {:?}) is not below the \
                     vocabulary size {vocab}",
                    ids.shape()
                )));
            }
            let mut shape = ids.shape().to_vec();
            shape.push(dim);
            tensor::element_count(OP, &shape)?;
            let t = vt.as_standard_layout();
            let t = t.as_slice().expect("standard layout");
            let mut out = Vec::with_capacity(flat.len() * dim);
            for &id in &flat {
                out.extend_from_slice(&t[id * dim..(id + 1) * dim]);
            }
            let value = ArrayD::from_shape_vec(IxDyn(&shape), out).expect("length is the shape's");
            (value, flat)
        };
        Ok(self.push_op(value, &[table], move |ctx| {
            let mut dt = ArrayD::zeros(ctx.input(0).raw_dim());
            let dim = dt.shape()[1];
            if dim > 0 {
                let g = ctx.g().as_standard_layout();
                let g = g.as_slice().expect("standard layout");
                let d = dt.as_slice_mut().expect("standard layout");
                for (&id, gr) in ids.iter().zip(g.chunks_exact(dim)) {
                    for (d, &g) in d[id * dim..(id + 1) * dim].iter_mut().zip(gr) {
                        *d += g;
                    }
                }
            }
            vec![Some(dt)]
        }))
    }
}
