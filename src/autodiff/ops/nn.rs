//! Neural-network ops: masking, dropout and the softmax cross-entropy losses.

use ndarray::{Array1, ArrayD, Ix2, IxDyn, Zip};
use rand::Rng;

use super::check;
use crate::{Error, Result, Scalar, Tape, Var};

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
        self.rng().fill(&mut bits[..]);
        mask.extend(bits.into_iter().map(|b| {
            if u64::from(b) < threshold {
                scale
            } else {
                T::zero()
            }
        }));
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

    /// Per-example softmax cross-entropy between one-hot (or soft) `labels` `[batch, classes]`
    /// and unnormalised `logits` of the same shape, giving `[batch]`
    /// (`tf.nn.softmax_cross_entropy_with_logits`). Computed as TensorFlow does, on logits with
    /// the row maximum subtracted: `sum_c labels_c * (ln(sum_k exp(z_k - max)) - (z_c - max))`,
    /// so large logits neither overflow nor lose the small differences that decide the loss.
    /// No gradient flows into `labels`.
    pub fn softmax_cross_entropy_with_logits(&self, labels: Var, logits: Var) -> Result<Var> {
        let (loss, softmax) = {
            let (vl, vz) = (self.value(labels), self.value(logits));
            check(
                vz.ndim() == 2,
                "softmax_cross_entropy_with_logits",
                || "logits [batch, classes]".into(),
                vz.shape(),
            )?;
            check(
                vl.shape() == vz.shape(),
                "softmax_cross_entropy_with_logits",
                || format!("labels of shape {:?} like the logits", vz.shape()),
                vl.shape(),
            )?;
            let z = vz.view().into_dimensionality::<Ix2>().expect("rank 2");
            let l = vl.view().into_dimensionality::<Ix2>().expect("rank 2");
            let (softmax, max, ln_sum) = softmax_rows(z);
            let mut loss = Array1::<T>::zeros(z.nrows());
            for (b, loss_b) in loss.iter_mut().enumerate() {
                *loss_b = l
                    .row(b)
                    .iter()
                    .zip(z.row(b))
                    .map(|(&l, &z)| l * (ln_sum[b] - (z - max[b])))
                    .sum();
            }
            (loss.into_dyn(), softmax)
        };
        Ok(self.push_op(loss, &[labels, logits], move |ctx| {
            let g = ctx.g();
            let l = ctx
                .input(0)
                .view()
                .into_dimensionality::<Ix2>()
                .expect("rank 2");
            let mut dz = softmax.clone();
            for (b, mut row) in dz.rows_mut().into_iter().enumerate() {
                let lsum: T = l.row(b).sum();
                Zip::from(&mut row)
                    .and(l.row(b))
                    .for_each(|d, &lab| *d = (*d * lsum - lab) * g[b]);
            }
            vec![None, Some(dz.into_dyn())]
        }))
    }

    /// Per-example softmax cross-entropy with class-index labels (`[batch]` of indices below
    /// `classes`) and logits `[batch, classes]`, giving `[batch]`
    /// (`tf.nn.sparse_softmax_cross_entropy_with_logits`).
    pub fn sparse_softmax_cross_entropy_with_logits(
        &self,
        labels: &[usize],
        logits: Var,
    ) -> Result<Var> {
        let (loss, softmax) = {
            let vz = self.value(logits);
            check(
                vz.ndim() == 2 && vz.shape()[0] == labels.len(),
                "sparse_softmax_cross_entropy_with_logits",
                || format!("logits [{}, classes]", labels.len()),
                vz.shape(),
            )?;
            let classes = vz.shape()[1];
            if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
                return Err(Error::invalid(format!(
                    "label {bad} is not below the {classes} classes"
                )));
            }
            let z = vz.view().into_dimensionality::<Ix2>().expect("rank 2");
            let (softmax, max, ln_sum) = softmax_rows(z);
            let loss =
                Array1::from_shape_fn(labels.len(), |b| ln_sum[b] - (z[[b, labels[b]]] - max[b]));
            (loss.into_dyn(), softmax)
        };
        let labels = labels.to_vec();
        Ok(self.push_op(loss, &[logits], move |ctx| {
            let g = ctx.g();
            let mut dz = softmax.clone();
            for (b, mut row) in dz.rows_mut().into_iter().enumerate() {
                row[labels[b]] -= T::one();
                row.mapv_inplace(|d| d * g[b]);
            }
            vec![Some(dz.into_dyn())]
        }))
    }
}

/// Row-wise softmax, with each row's maximum and `ln(sum_k exp(z_k - max))`. The losses are
/// built from `z - max` and that logarithm, never from `max + ln(..)`: rounded at the size of
/// the logits, that sum would lose the differences between them (logits near 1e7 in `f32`
/// gave a loss of 1.0 instead of 1.3133).
#[allow(clippy::type_complexity)]
fn softmax_rows<T: Scalar>(z: ndarray::ArrayView2<'_, T>) -> (ndarray::Array2<T>, Vec<T>, Vec<T>) {
    let mut softmax = z.to_owned();
    let (mut maxes, mut ln_sums) = (Vec::with_capacity(z.nrows()), Vec::with_capacity(z.nrows()));
    for mut row in softmax.rows_mut() {
        let max = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let s: T = row.sum();
        row.mapv_inplace(|v| v / s);
        maxes.push(max);
        ln_sums.push(s.ln());
    }
    (softmax, maxes, ln_sums)
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
