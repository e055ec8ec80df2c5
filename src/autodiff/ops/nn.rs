//! Neural-network ops: masking, dropout, the softmax family (softmax, log-softmax, the softmax
//! cross-entropy losses) and argmax.

use std::cell::Cell;

use ndarray::{Array1, ArrayD, Ix2, IxDyn, Zip};

use super::check;
use crate::{tensor, Error, Result, Scalar, Tape, Var};

impl<T: Scalar> Tape<'_, T> {
    /// Elementwise choice: `cond ? a : b` (`tf.where`). `a` and `b` have one shape; `cond`
    /// broadcasts to it (a `[batch, 1]` condition selects whole rows). No gradient flows into
    /// `cond`.
    pub fn select(&self, cond: &ArrayD<bool>, a: Var, b: Var) -> Result<Var> {
        let (value, cond) = {
            let (va, vb) = (self.value(a), self.value(b));
            check(
                va.shape() == vb.shape(),
                "select",
                || format!("{:?} for both branches", va.shape()),
                vb.shape(),
            )?;
            let cond = cond
                .broadcast(va.raw_dim())
                .ok_or_else(|| {
                    Error::shape(
                        "select",
                        format!("a condition broadcastable to {:?}", va.shape()),
                        cond.shape(),
                    )
                })?
                .to_owned();
            let mut out = vb.clone();
            Zip::from(&mut out)
                .and(&*va)
                .and(&cond)
                .for_each(|o, &x, &c| {
                    if c {
                        *o = x
                    }
                });
            (out, cond)
        };
        Ok(self.push_op(value, &[a, b], move |ctx| {
            let g = ctx.g();
            let pick = |take: bool| {
                let mut d = g.clone();
                Zip::from(&mut d).and(&cond).for_each(|d, &c| {
                    if c != take {
                        *d = T::zero()
                    }
                });
                d
            };
            vec![
                ctx.needs(0).then(|| pick(true)),
                ctx.needs(1).then(|| pick(false)),
            ]
        }))
    }

    /// Layer normalisation of each row of `x` `[batch, n]` (Ba et al., 2016; TensorFlow's
    /// `tf.contrib.layers.layer_norm` over the last axis):
    ///
    /// ```text
    /// mean_b = sum_k x[b, k] / n        var_b = sum_k (x[b, k] - mean_b)^2 / n
    /// y[b, k] = (x[b, k] - mean_b) / sqrt(var_b + epsilon) * gamma[k] + beta[k]
    /// ```
    ///
    /// `gamma` and `beta` are `[n]`. The backward pass is hand-derived (one node).
    ///
    /// # Errors
    /// [`Error::Shape`] for shapes that do not fit, [`Error::InvalidArgument`] for an `epsilon`
    /// that is negative or not finite.
    pub fn layer_norm(&self, x: Var, gamma: Var, beta: Var, epsilon: f64) -> Result<Var> {
        if !(epsilon >= 0.0 && epsilon.is_finite()) {
            return Err(Error::invalid(format!(
                "layer_norm: epsilon must be finite and non-negative, got {epsilon}"
            )));
        }
        let (value, xhat, rstd) = {
            let (vx, vg, vb) = (self.value(x), self.value(gamma), self.value(beta));
            check(
                vx.ndim() == 2,
                "layer_norm",
                || "an input of shape [batch, n]".into(),
                vx.shape(),
            )?;
            let n = vx.shape()[1];
            for (what, v) in [("gamma", &vg), ("beta", &vb)] {
                check(
                    v.shape() == [n],
                    "layer_norm",
                    || format!("{what} of shape [{n}]"),
                    v.shape(),
                )?;
            }
            let x2 = vx.view().into_dimensionality::<Ix2>().expect("rank 2");
            let count = T::from_usize(n).expect("width fits the float type");
            let eps = T::from_f64_lossy(epsilon);
            let mut xhat = x2.to_owned();
            let mut rstd = Array1::<T>::zeros(x2.nrows());
            for (mut row, r) in xhat.rows_mut().into_iter().zip(rstd.iter_mut()) {
                let mean = row.sum() / count;
                row.mapv_inplace(|v| v - mean);
                let var = row.iter().map(|&d| d * d).sum::<T>() / count;
                *r = T::one() / (var + eps).sqrt();
                let rs = *r;
                row.mapv_inplace(|d| d * rs);
            }
            let g = vg.iter().copied().collect::<Array1<T>>();
            let b = vb.iter().copied().collect::<Array1<T>>();
            let y = &xhat * &g + &b;
            (y.into_dyn(), xhat, rstd)
        };
        Ok(self.push_op(value, &[x, gamma, beta], move |ctx| {
            let dy = ctx.g().view().into_dimensionality::<Ix2>().expect("rank 2");
            let gamma: Array1<T> = ctx.input(1).iter().copied().collect();
            let n = T::from_usize(gamma.len()).expect("width fits the float type");
            let dx = ctx.needs(0).then(|| {
                let mut dx = &dy * &gamma; // dxhat
                for ((mut row, xh), &r) in dx.rows_mut().into_iter().zip(xhat.rows()).zip(&rstd) {
                    let mean_d = row.sum() / n;
                    let mean_dx = row.iter().zip(xh).map(|(&d, &h)| d * h).sum::<T>() / n;
                    Zip::from(&mut row)
                        .and(xh)
                        .for_each(|d, &h| *d = r * (*d - mean_d - h * mean_dx));
                }
                dx.into_dyn()
            });
            let dgamma = ctx
                .needs(1)
                .then(|| (&dy * &xhat).sum_axis(ndarray::Axis(0)).into_dyn());
            let dbeta = ctx
                .needs(2)
                .then(|| dy.sum_axis(ndarray::Axis(0)).into_dyn());
            vec![dx, dgamma, dbeta]
        }))
    }

    /// A mask of independent Bernoulli(`p`) draws (true with probability `p`), drawn from the
    /// tape's generator with the same draws as [`Tape::dropout_mask`]. `p` in `[0, 1]`.
    pub(crate) fn bernoulli_mask(&self, shape: &[usize], p: f64) -> Result<ArrayD<bool>> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "a probability must be in [0, 1], got {p}"
            )));
        }
        // Keep an element when a uniform 32-bit draw falls below p * 2^32: exact to 2^-32, and
        // the generator fills the draws in bulk (drawing one f64 per element cost a tenth of a
        // stacked-LSTM training step).
        let threshold = (p * 4_294_967_296.0) as u64;
        // Both buffers are reserved fallibly before anything is drawn, as in `dropout_mask`.
        let n = crate::tensor::element_count("bernoulli_mask", shape)?;
        let mut bits = crate::tensor::try_vec::<u32>("bernoulli_mask", shape)?;
        let mut mask = crate::tensor::try_vec::<bool>("bernoulli_mask", shape)?;
        bits.resize(n, 0);
        crate::parallel::fill_words(&mut self.rng(), &mut bits);
        mask.extend(bits.into_iter().map(|b| u64::from(b) < threshold));
        Ok(ArrayD::from_shape_vec(IxDyn(shape), mask).expect("length is the shape's product"))
    }

    /// A dropout mask of the given shape: each element is `1 / keep_prob` with probability
    /// `keep_prob`, else 0. Drawn from the tape's seeded generator.
    pub fn dropout_mask(&self, shape: &[usize], keep_prob: f64) -> Result<ArrayD<T>> {
        check_keep_prob(keep_prob)?;
        let scale = T::from_f64_lossy(1.0 / keep_prob);
        // Keep an element when a uniform 32-bit draw falls below keep_prob * 2^32: exact to
        // 2^-32, and the generator fills the draws in bulk (drawing one f64 per element cost a
        // tenth of a stacked-LSTM training step).
        let threshold = (keep_prob * 4_294_967_296.0) as u64;
        // Both buffers are reserved fallibly before anything is drawn: an absurd shape is an
        // error, and the generator is not advanced.
        let n = crate::tensor::element_count("dropout_mask", shape)?;
        let mut bits = crate::tensor::try_vec::<u32>("dropout_mask", shape)?;
        let mut mask = crate::tensor::try_vec::<T>("dropout_mask", shape)?;
        bits.resize(n, 0);
        mask.resize(n, T::zero());
        crate::parallel::fill_words(&mut self.rng(), &mut bits);
        // `b < threshold` in 32 bits (`threshold` is at most 2^32: keep everything then), a
        // loop over two slices that the compiler vectorises; an `extend` over the draws mapped
        // through a 64-bit comparison did not, and cost 2.5 times the drawing itself.
        match u32::try_from(threshold) {
            Ok(t) => {
                for (m, &b) in mask.iter_mut().zip(&bits) {
                    *m = if b < t { scale } else { T::zero() };
                }
            }
            Err(_) => mask.fill(scale),
        }
        Ok(ArrayD::from_shape_vec(IxDyn(shape), mask).expect("length is the shape's product"))
    }

    /// Inverted dropout (`tf.nn.dropout`): keeps each element with probability `keep_prob` and
    /// scales the kept ones by `1 / keep_prob`, so the expected value is unchanged. The identity
    /// on an inference tape or when `keep_prob` is 1.
    pub fn dropout(&self, x: Var, keep_prob: f64) -> Result<Var> {
        check_keep_prob(keep_prob)?;
        if !self.is_training() || keep_prob == 1.0 {
            return Ok(x);
        }
        let mask = self.dropout_mask(&self.shape(x), keep_prob)?;
        self.mul(x, self.constant(mask))
    }

    /// The softmax over the last axis (`tf.nn.softmax`):
    /// `y[.., i] = exp(x[.., i] - m) / sum_k exp(x[.., k] - m)` with `m` the maximum of the
    /// row, so large logits do not overflow. Same shape as `x`.
    ///
    /// Gradient: `dx = y * (g - sum_k g_k y_k)` per row.
    ///
    /// # Errors
    /// [`Error::Shape`] (op `"softmax"`) for a scalar or an empty last axis.
    pub fn softmax(&self, x: Var) -> Result<Var> {
        let value = {
            let vx = self.value(x);
            let n = last_axis("softmax", vx.shape())?;
            let z = vx.as_standard_layout();
            let rows = softmax_rows(z.as_slice().expect("standard layout"), n);
            ArrayD::from_shape_vec(vx.raw_dim(), rows.probs).expect("same size")
        };
        let out = self.next_var();
        Ok(self.push_op(value, &[x], move |ctx| {
            let y = ctx.value(out);
            let n = y.shape()[y.ndim() - 1];
            let g = ctx.g().as_standard_layout();
            let y = y.as_standard_layout();
            let mut dx = Vec::with_capacity(y.len());
            let rows = g.as_slice().expect("standard layout").chunks_exact(n);
            for (gr, yr) in rows.zip(y.as_slice().expect("standard layout").chunks_exact(n)) {
                let dot: T = gr.iter().zip(yr).map(|(&g, &y)| g * y).sum();
                dx.extend(gr.iter().zip(yr).map(|(&g, &y)| y * (g - dot)));
            }
            vec![Some(
                ArrayD::from_shape_vec(y.raw_dim(), dx).expect("same size"),
            )]
        }))
    }

    /// The logarithm of the softmax over the last axis (`tf.nn.log_softmax`), computed stably
    /// as `y[.., i] = (x[.., i] - m) - ln(sum_k exp(x[.., k] - m))` with `m` the row maximum
    /// (never as `ln(softmax)`, which underflows to `-inf`). Same shape as `x`.
    ///
    /// Gradient: `dx = g - exp(y) * sum_k g_k` per row.
    ///
    /// # Errors
    /// [`Error::Shape`] (op `"log_softmax"`) for a scalar or an empty last axis.
    pub fn log_softmax(&self, x: Var) -> Result<Var> {
        let value = {
            let vx = self.value(x);
            let n = last_axis("log_softmax", vx.shape())?;
            let z = vx.as_standard_layout();
            let z = z.as_slice().expect("standard layout");
            let rows = softmax_rows(z, n);
            let mut y = Vec::with_capacity(z.len());
            for (r, zr) in z.chunks_exact(n).enumerate() {
                let (max, ln_sum) = (rows.max[r], rows.ln_sum[r]);
                y.extend(zr.iter().map(|&v| (v - max) - ln_sum));
            }
            ArrayD::from_shape_vec(vx.raw_dim(), y).expect("same size")
        };
        let out = self.next_var();
        Ok(self.push_op(value, &[x], move |ctx| {
            let y = ctx.value(out);
            let n = y.shape()[y.ndim() - 1];
            let g = ctx.g().as_standard_layout();
            let y = y.as_standard_layout();
            let mut dx = Vec::with_capacity(y.len());
            let rows = g.as_slice().expect("standard layout").chunks_exact(n);
            for (gr, yr) in rows.zip(y.as_slice().expect("standard layout").chunks_exact(n)) {
                let total: T = gr.iter().copied().sum();
                dx.extend(gr.iter().zip(yr).map(|(&g, &y)| g - y.exp() * total));
            }
            vec![Some(
                ArrayD::from_shape_vec(y.raw_dim(), dx).expect("same size"),
            )]
        }))
    }

    /// The index of the largest value along the last axis of `v`'s value (`tf.argmax(v,
    /// axis=-1)`), ties to the first index; see [`tensor::argmax`] (this reads the value; it
    /// records nothing and has no gradient).
    ///
    /// # Errors
    /// As [`tensor::argmax`]: a scalar or an empty last axis.
    pub fn argmax(&self, v: Var) -> Result<ArrayD<usize>> {
        tensor::argmax(&*self.value(v))
    }

    /// The `[batch, maxlen]` mask of 1s and 0s with `mask[b, t] = 1` exactly when
    /// `t < lengths[b]` (`tf.sequence_mask(lengths, maxlen, dtype)`), as a constant on the tape;
    /// see [`tensor::sequence_mask`].
    ///
    /// # Errors
    /// As [`tensor::sequence_mask`]: a length above `maxlen`.
    pub fn sequence_mask(&self, lengths: &[usize], maxlen: usize) -> Result<Var> {
        Ok(self.constant(tensor::sequence_mask(lengths, maxlen)?))
    }

    /// Per-example softmax cross-entropy between one-hot (or soft) `labels` `[batch, classes]`
    /// and unnormalised `logits` of the same shape, giving `[batch]`
    /// (`tf.nn.softmax_cross_entropy_with_logits`). Computed as TensorFlow does, on logits with
    /// the row maximum subtracted: `sum_c labels_c * (ln(sum_k exp(z_k - max)) - (z_c - max))`,
    /// so large logits neither overflow nor lose the small differences that decide the loss.
    /// No gradient flows into `labels`.
    pub fn softmax_cross_entropy_with_logits(&self, labels: Var, logits: Var) -> Result<Var> {
        const OP: &str = "softmax_cross_entropy_with_logits";
        let (loss, probs) = {
            let (vl, vz) = (self.value(labels), self.value(logits));
            check(
                vz.ndim() == 2,
                OP,
                || "logits [batch, classes]".into(),
                vz.shape(),
            )?;
            check(
                vl.shape() == vz.shape(),
                OP,
                || format!("labels of shape {:?} like the logits", vz.shape()),
                vl.shape(),
            )?;
            let (batch, classes) = (vz.shape()[0], vz.shape()[1]);
            let z = vz.as_standard_layout();
            let l = vl.as_standard_layout();
            let z = z.as_slice().expect("standard layout");
            let l = l.as_slice().expect("standard layout");
            let rows = softmax_rows(z, classes);
            let loss = Array1::from_shape_fn(batch, |b| {
                if classes == 0 {
                    return T::zero(); // a sum over no classes
                }
                let (max, ln_sum) = (rows.max[b], rows.ln_sum[b]);
                let range = b * classes..(b + 1) * classes;
                l[range.clone()]
                    .iter()
                    .zip(&z[range])
                    .map(|(&l, &z)| l * (ln_sum - (z - max)))
                    .sum()
            });
            (loss.into_dyn(), rows.probs)
        };
        Ok(self.push_op(loss, &[labels, logits], move |ctx| {
            let g = ctx.g();
            let l = ctx.input(0).as_standard_layout();
            let l = l.as_slice().expect("standard layout");
            let classes = ctx.input(1).shape()[1];
            let mut dz = probs.clone();
            if classes > 0 {
                let rows = dz.chunks_exact_mut(classes).zip(l.chunks_exact(classes));
                for ((dr, lr), &g) in rows.zip(g.iter()) {
                    let lsum: T = lr.iter().copied().sum();
                    for (d, &lab) in dr.iter_mut().zip(lr) {
                        *d = (*d * lsum - lab) * g;
                    }
                }
            }
            vec![
                None,
                Some(ArrayD::from_shape_vec(ctx.input(1).raw_dim(), dz).expect("same size")),
            ]
        }))
    }

    /// Per-example softmax cross-entropy with class-index labels (`[batch]` of indices below
    /// `classes`) and logits `[batch, classes]`, giving `[batch]`
    /// (`tf.nn.sparse_softmax_cross_entropy_with_logits`):
    /// `loss_b = ln(sum_k exp(z_bk - max_b)) - (z_b,label_b - max_b)`, the stable form that
    /// [`Tape::sequence_loss`] shares.
    ///
    /// # Errors
    /// [`Error::Shape`] unless `logits` is `[labels.len(), classes]`;
    /// [`Error::InvalidArgument`] for a label `>= classes`.
    pub fn sparse_softmax_cross_entropy_with_logits(
        &self,
        labels: &[usize],
        logits: Var,
    ) -> Result<Var> {
        const OP: &str = "sparse_softmax_cross_entropy_with_logits";
        let (loss, probs) = {
            let vz = self.value(logits);
            check(
                vz.ndim() == 2 && vz.shape()[0] == labels.len(),
                OP,
                || format!("logits [{}, classes]", labels.len()),
                vz.shape(),
            )?;
            let classes = vz.shape()[1];
            check_labels(OP, labels, classes)?;
            let z = vz.as_standard_layout();
            sparse_xent(z.as_slice().expect("standard layout"), classes, labels)
        };
        let labels = labels.to_vec();
        let loss = Array1::from(loss).into_dyn();
        let probs = KeptProbs::new(probs);
        Ok(self.push_op(loss, &[logits], move |ctx| {
            let g = ctx.g();
            let probs = probs.take(ctx.input(0), &labels);
            let dz = sparse_xent_grad(probs, &labels, |b| g[b]);
            vec![Some(
                ArrayD::from_shape_vec(ctx.input(0).raw_dim(), dz).expect("same size"),
            )]
        }))
    }

    /// The var the next recorded op will return (for backward functions that read their own
    /// output).
    pub(super) fn next_var(&self) -> Var {
        Var {
            node: self.len() as u32,
            out: 0,
            tape: self.id,
        }
    }
}

/// The size of the last axis of `shape`, which the softmax family needs to be present and
/// non-empty.
fn last_axis(op: &'static str, shape: &[usize]) -> Result<usize> {
    match shape.last() {
        Some(&n) if n > 0 => Ok(n),
        _ => Err(Error::shape(
            op,
            "at least one axis, with a non-empty last axis",
            shape,
        )),
    }
}

/// The row-wise softmax of [`softmax_rows`], with each row's maximum and
/// `ln(sum_k exp(z_k - max))`.
pub(super) struct RowSoftmax<T> {
    /// The probabilities, row-major like the logits.
    pub(super) probs: Vec<T>,
    /// Each row's maximum logit.
    pub(super) max: Vec<T>,
    /// Each row's `ln(sum_k exp(z_k - max))`.
    pub(super) ln_sum: Vec<T>,
}

/// Softmax of every row of `n` elements of the row-major buffer `z` (the one place the
/// max-shifted formulation lives): `p = exp(z - max) / s`, `s = sum_k exp(z_k - max)`.
///
/// The losses are built from `z - max` and `ln s`, never from `max + ln s`: rounded at the size
/// of the logits, that sum would lose the differences between them (logits near 1e7 in `f32`
/// gave a loss of 1.0 instead of 1.3133). With `n == 0` there are no rows.
pub(super) fn softmax_rows<T: Scalar>(z: &[T], n: usize) -> RowSoftmax<T> {
    let rows = z.len().checked_div(n).unwrap_or(0);
    let mut probs = vec![T::zero(); z.len()];
    let (mut max, mut ln_sum) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    if n > 0 {
        for (zr, pr) in z.chunks_exact(n).zip(probs.chunks_exact_mut(n)) {
            let m = zr.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
            let mut s = T::zero();
            for (p, &v) in pr.iter_mut().zip(zr) {
                *p = (v - m).exp();
                s += *p;
            }
            for p in pr.iter_mut() {
                *p /= s;
            }
            max.push(m);
            ln_sum.push(s.ln());
        }
    }
    RowSoftmax { probs, max, ln_sum }
}

/// `Ok` when every label is below `classes`, else an [`Error::InvalidArgument`] naming `op`,
/// the label and its position.
pub(super) fn check_labels(op: &str, labels: &[usize], classes: usize) -> Result<()> {
    match labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        None => Ok(()),
        Some((i, bad)) => Err(Error::invalid(format!(
            "{op}: label {bad} (at position {i}) is not below the {classes} classes"
        ))),
    }
}

/// The sparse softmax cross-entropy of each row of `classes` logits of `z` against its label
/// (checked by [`check_labels`]): `loss_r = ln s_r - (z[r, label_r] - max_r)`, with the
/// softmax kept for the gradient. One pass over the rows, no allocation per row.
pub(super) fn sparse_xent<T: Scalar>(
    z: &[T],
    classes: usize,
    labels: &[usize],
) -> (Vec<T>, Vec<T>) {
    let rows = softmax_rows(z, classes);
    let loss = labels
        .iter()
        .enumerate()
        .map(|(r, &label)| rows.ln_sum[r] - (z[r * classes + label] - rows.max[r]))
        .collect();
    (loss, rows.probs)
}

/// The gradient of [`sparse_xent`] with respect to the logits, each row scaled by `scale(r)`:
/// `dz_r = scale(r) * (softmax_r - one_hot(label_r))`, computed in the buffer of `probs`.
pub(super) fn sparse_xent_grad<T: Scalar>(
    probs: Vec<T>,
    labels: &[usize],
    scale: impl Fn(usize) -> T,
) -> Vec<T> {
    let mut dz = probs;
    let classes = dz.len().checked_div(labels.len()).unwrap_or(0);
    if classes > 0 {
        for (r, (row, &label)) in dz.chunks_exact_mut(classes).zip(labels).enumerate() {
            row[label] -= T::one();
            let s = scale(r);
            row.iter_mut().for_each(|d| *d *= s);
        }
    }
    dz
}

/// The softmax of [`sparse_xent`]'s forward pass, kept for the backward pass, which takes the
/// buffer over as its gradient's (no copy of the `[rows, classes]` probabilities); a second
/// backward pass over the same tape recomputes them from the logits, the same values bit for bit.
pub(super) struct KeptProbs<T>(Cell<Option<Vec<T>>>);

impl<T: Scalar> KeptProbs<T> {
    pub(super) fn new(probs: Vec<T>) -> Self {
        KeptProbs(Cell::new(Some(probs)))
    }

    /// The probabilities of `logits` `[.., classes]` (standard layout or not).
    pub(super) fn take(&self, logits: &ArrayD<T>, labels: &[usize]) -> Vec<T> {
        self.0.take().unwrap_or_else(|| {
            let classes = logits.shape().last().copied().unwrap_or(0);
            let z = logits.as_standard_layout();
            sparse_xent(z.as_slice().expect("standard layout"), classes, labels).1
        })
    }
}

pub(crate) fn check_keep_prob(keep_prob: f64) -> Result<()> {
    if keep_prob > 0.0 && keep_prob <= 1.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "keep_prob must be in (0, 1], got {keep_prob}"
        )))
    }
}
