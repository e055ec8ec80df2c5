//! Losses for users' own models: masked mean, mean squared error and TensorFlow's
//! `sequence_loss` (per-time-step softmax cross-entropy weighted by a mask).

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};

use super::check;
use super::nn::{check_labels, sparse_xent, sparse_xent_grad, KeptProbs};
use crate::tensor::broadcast_shape;
use crate::{Result, Scalar, Tape, Var};

impl<T: Scalar> Tape<'_, T> {
    /// The mean of `x` over the positions where `mask` is set, a scalar `[]`:
    /// `sum(x * mask) / sum(mask')`, where `mask'` is `mask` broadcast to the shape of
    /// `x * mask` (NumPy broadcasting, as [`Tape::mul`]). With a 0/1 mask this is the mean of
    /// the selected elements; with other weights, the weighted mean.
    ///
    /// So `x [batch, time, dim]` with a `[batch, time, 1]` mask (from
    /// [`Tape::sequence_mask`] and [`Tape::reshape`]) averages over the valid steps' elements,
    /// each counted once: the denominator counts the mask `dim` times.
    ///
    /// An all-zero mask (or empty `x`) gives NaN (`0 / 0`), like `tf.reduce_mean` of nothing:
    /// a batch with nothing to average must not pass for a zero loss. Gradients flow into `x`
    /// and, if it is not a constant, into `mask`. TensorFlow has no single op for this; it is
    /// `tf.reduce_sum(x * mask) / tf.reduce_sum(mask * tf.ones_like(x))`.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) (op `"masked_mean"`) if the shapes do not
    /// broadcast.
    pub fn masked_mean(&self, x: Var, mask: Var) -> Result<Var> {
        let copies = {
            let (vx, vm) = (self.value(x), self.value(mask));
            let out = broadcast_shape(vx.shape(), vm.shape());
            check(
                out.is_some(),
                "masked_mean",
                || format!("a mask broadcastable with x {:?}", vx.shape()),
                vm.shape(),
            )?;
            let out_len: usize = out.expect("checked").iter().product();
            // Broadcasting repeats every mask element the same number of times.
            out_len.checked_div(vm.len()).unwrap_or(1)
        };
        let total = self.sum(self.mul(x, mask)?);
        let count = self.scale(
            self.sum(mask),
            T::from_usize(copies).expect("count fits the float type"),
        );
        self.div(total, count)
    }

    /// The mean squared error `mean((predictions - labels)^2)` over all elements, a scalar `[]`
    /// (`tf.losses.mean_squared_error(labels, predictions)` with the default weights and
    /// reduction; note TensorFlow's argument order is the reverse, which changes nothing but
    /// the error messages, the loss being symmetric). Gradients flow into both arguments.
    ///
    /// **Difference:** for empty arrays TensorFlow's loss returns 0 (its safe division); here
    /// the result is NaN, like [`Tape::mean`], so an empty batch does not look like a perfect
    /// fit.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) (op `"mean_squared_error"`) unless both have the
    /// same shape (no broadcasting, as TensorFlow's `assert_is_compatible_with`).
    pub fn mean_squared_error(&self, predictions: Var, labels: Var) -> Result<Var> {
        {
            let (vp, vl) = (self.value(predictions), self.value(labels));
            check(
                vp.shape() == vl.shape(),
                "mean_squared_error",
                || format!("labels of the predictions' shape {:?}", vp.shape()),
                vl.shape(),
            )?;
        }
        let diff = self.sub(predictions, labels)?;
        Ok(self.mean(self.square(diff)))
    }

    /// The weighted average of the per-time-step softmax cross-entropy, a scalar `[]`
    /// (`tf.contrib.seq2seq.sequence_loss(logits, targets, weights)` with
    /// `average_across_timesteps=True, average_across_batch=True`):
    ///
    /// `loss = sum_{b,t} w[b,t] * ce[b,t] / (sum_{b,t} w[b,t] + 1e-12)`, with
    /// `ce[b,t] = ln(sum_k exp(z[b,t,k] - m)) - (z[b,t,targets[b,t]] - m)` and `m` the maximum
    /// of `z[b,t,..]` (the stable form of
    /// [`sparse_softmax_cross_entropy_with_logits`](Tape::sparse_softmax_cross_entropy_with_logits),
    /// whose code this shares).
    ///
    /// The `1e-12` is TensorFlow's ("to avoid division by 0 for all-0 weights"): all-zero
    /// weights give a loss of 0 and zero gradients, not NaN.
    ///
    /// # Shapes
    /// - `logits`: `[batch, time, classes]`, unnormalised;
    /// - `targets`: `[batch, time]` class indices below `classes`, any `ndarray` array or view
    ///   of `usize` (`&Array2<usize>`, `&ArrayView2<usize>`, `&ArrayD<usize>` of rank 2);
    /// - `weights`: `[batch, time]`, typically the 0/1 mask of [`Tape::sequence_mask`]; `None`
    ///   weighs every position 1 (the plain mean over all positions). Gradients flow into the
    ///   weights too when they are not a constant.
    ///
    /// One pass over the `batch * time` positions with one softmax buffer for all of them (no
    /// allocation per position); the backward pass writes the logits' gradient in one more.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) (op `"sequence_loss"`) if `logits` is not rank 3
    /// or `targets` / `weights` are not `[batch, time]`;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a target `>= classes`.
    pub fn sequence_loss<S, D>(
        &self,
        logits: Var,
        targets: &ArrayBase<S, D>,
        weights: Option<Var>,
    ) -> Result<Var>
    where
        S: Data<Elem = usize>,
        D: Dimension,
    {
        const OP: &str = "sequence_loss";
        let (value, probs, ce, w, denom, labels) = {
            let vz = self.value(logits);
            check(
                vz.ndim() == 3,
                OP,
                || "logits [batch, time, classes]".into(),
                vz.shape(),
            )?;
            let (batch, time, classes) = (vz.shape()[0], vz.shape()[1], vz.shape()[2]);
            check(
                targets.shape() == [batch, time],
                OP,
                || format!("targets [batch, time] = [{batch}, {time}] like the logits"),
                targets.shape(),
            )?;
            let w: Option<Vec<T>> = match weights {
                None => None,
                Some(wv) => {
                    let vw = self.value(wv);
                    check(
                        vw.shape() == [batch, time],
                        OP,
                        || format!("weights [batch, time] = [{batch}, {time}] like the logits"),
                        vw.shape(),
                    )?;
                    Some(vw.iter().copied().collect())
                }
            };
            let labels: Vec<usize> = targets.iter().copied().collect();
            check_labels(OP, &labels, classes)?;
            let z = vz.as_standard_layout();
            let (ce, probs) = sparse_xent(z.as_slice().expect("standard layout"), classes, &labels);
            let (total, weight_sum) = match &w {
                None => (
                    ce.iter().copied().sum::<T>(),
                    T::from_usize(ce.len()).expect("count fits the float type"),
                ),
                Some(w) => (
                    ce.iter().zip(w).map(|(&c, &w)| c * w).sum::<T>(),
                    w.iter().copied().sum::<T>(),
                ),
            };
            let denom = weight_sum + T::from_f64_lossy(1e-12);
            let value = ArrayD::from_elem(IxDyn(&[]), total / denom);
            (value, probs, ce, w, denom, labels)
        };
        let loss = value[[]];
        let parents: Vec<Var> = std::iter::once(logits).chain(weights).collect();
        let probs = KeptProbs::new(probs);
        Ok(self.push_op(value, &parents, move |ctx| {
            let g = ctx.g()[[]];
            let scale = g / denom;
            let probs = probs.take(ctx.input(0), &labels);
            let dz = match &w {
                None => sparse_xent_grad(probs, &labels, |_| scale),
                Some(w) => sparse_xent_grad(probs, &labels, |r| scale * w[r]),
            };
            let dz = ArrayD::from_shape_vec(ctx.input(0).raw_dim(), dz).expect("same size");
            let mut grads = vec![Some(dz)];
            if w.is_some() {
                // d/dw[b,t] of total / (sum w + eps) = (ce[b,t] - loss) / (sum w + eps).
                grads.push(ctx.needs(1).then(|| {
                    let dw = ce.iter().map(|&c| (c - loss) * scale).collect();
                    ArrayD::from_shape_vec(ctx.input(1).raw_dim(), dw).expect("same size")
                }));
            }
            grads
        }))
    }
}
