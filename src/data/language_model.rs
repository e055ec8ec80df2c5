//! Batches for a language model trained with truncated backpropagation through time, the way
//! TensorFlow's PTB tutorial (`reader.ptb_producer`) cuts a token stream.

use ndarray::{s, Array2, ArrayView2};

use super::batch::{Minibatch, Targets, TrainSource};
use super::position::{DataPosition, Resumable};
use crate::error::{Error, Result};
use crate::scalar::Scalar;

/// A token stream cut into `batch_size` parallel streams, served `num_steps` tokens at a time
/// (TensorFlow's `ptb_producer`).
///
/// The stream of `n` tokens is cut into `batch_size` consecutive rows of
/// `batch_len = n / batch_size` tokens (the last `n % batch_size` tokens are dropped), so row `b`
/// is tokens `b * batch_len .. (b + 1) * batch_len`. Batch `i` of an epoch is columns
/// `i * num_steps .. (i + 1) * num_steps` as inputs and the same columns shifted by one as
/// targets; an epoch has `epoch_size = (batch_len - 1) / num_steps` batches.
///
/// Consecutive batches continue each row: row `b` of batch `i + 1` starts where row `b` of
/// batch `i` ended, so a recurrent model carries its final state of one batch into the next as
/// its initial state (and cuts the gradient there: truncated backpropagation through time).
/// After the last batch of an epoch the next epoch starts again at column 0; its first batch
/// has [`LmBatch::reset_state`] set, since its rows do not continue the previous batch's.
///
/// # Shapes
/// Every batch: `inputs` and `targets` `[batch_size, num_steps]`, with
/// `targets[b][t] = inputs[b][t + 1]` inside a batch and `targets[b][num_steps - 1]` the first
/// input of row `b` of the next batch.
///
/// # Example
///
/// ```
/// use recurrent::data::LmBatcher;
///
/// # fn main() -> recurrent::Result<()> {
/// let ids: Vec<usize> = (0..23).collect();
/// let mut lm = LmBatcher::new(&ids, 2, 3)?; // rows 0..11 and 11..22; token 22 is dropped
/// assert_eq!(lm.epoch_size(), 3); // (11 - 1) / 3
///
/// let first = lm.next_batch();
/// assert!(first.reset_state);
/// assert_eq!(first.inputs, ndarray::array![[0, 1, 2], [11, 12, 13]]);
/// assert_eq!(first.targets, ndarray::array![[1, 2, 3], [12, 13, 14]]);
///
/// let second = lm.next_batch(); // each row continues where it stopped
/// assert!(!second.reset_state);
/// assert_eq!(second.inputs, ndarray::array![[3, 4, 5], [14, 15, 16]]);
///
/// // Evaluation: every target of every row once, the last window shorter.
/// let widths: Vec<usize> = lm.evaluation_batches().map(|b| b.inputs.ncols()).collect();
/// assert_eq!(widths, [3, 3, 3, 1]); // 10 = batch_len - 1 targets per row
/// assert_eq!(lm.num_evaluation_targets(), 20);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "ptb_producer")]
#[derive(Debug, Clone)]
pub struct LmBatcher {
    /// `[batch_size, batch_len]`.
    data: Array2<usize>,
    num_steps: usize,
    epoch_size: usize,
    /// Batches of the current epoch served.
    step_in_epoch: usize,
    epochs_completed: usize,
}

/// One batch of an [`LmBatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmBatch {
    /// Input ids `[batch_size, steps]` (`steps` is `num_steps`, or less for the last
    /// [`evaluation_batches`](LmBatcher::evaluation_batches) window).
    pub inputs: Array2<usize>,
    /// Target ids `[batch_size, steps]`: each input's next token. Row-major, so
    /// `targets.as_slice()` lists them in the order of a `[batch_size * steps]` reshape.
    pub targets: Array2<usize>,
    /// True for the first batch of an epoch: its rows do not continue the previous batch, so a
    /// model starts from its zero state instead of the carried one.
    pub reset_state: bool,
    /// The position of this batch within its epoch (0 for the first).
    pub step_in_epoch: usize,
}

impl LmBatch {
    /// The batch as a [`Trainer`](crate::train::Trainer) takes it: the input ids as whole
    /// numbers of `T` (`[batch_size, steps]`, the input of an
    /// [`Embedding`](crate::layers::Embedding)), no lengths, and the targets as
    /// [`Targets::Sequence`]. ([`LmBatch::reset_state`] has no place in a `Minibatch`.)
    pub fn into_minibatch<T: Scalar>(self) -> Minibatch<T> {
        Minibatch {
            inputs: self
                .inputs
                .mapv(|id| T::from_f64_lossy(id as f64))
                .into_dyn(),
            lengths: None,
            targets: Targets::Sequence(self.targets),
        }
    }
}

impl LmBatcher {
    /// A batcher over the token stream `ids`, cut into `batch_size` rows and served
    /// `num_steps` at a time.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `batch_size` or `num_steps` is 0, or the stream is too short
    /// for one batch (fewer than `batch_size * (num_steps + 1)` tokens); the message names the
    /// sizes.
    pub fn new(ids: &[usize], batch_size: usize, num_steps: usize) -> Result<LmBatcher> {
        if batch_size == 0 || num_steps == 0 {
            return Err(Error::invalid(format!(
                "LmBatcher::new: batch_size and num_steps must be positive, got batch_size \
                 {batch_size} and num_steps {num_steps}"
            )));
        }
        let batch_len = ids.len() / batch_size;
        let epoch_size = batch_len.saturating_sub(1) / num_steps;
        if epoch_size == 0 {
            return Err(Error::invalid(format!(
                "LmBatcher::new: {} tokens are too few for one batch of batch_size {batch_size} \
                 and num_steps {num_steps}: each of the {batch_size} rows gets {batch_len} \
                 tokens and needs num_steps + 1 = {}, so at least {} tokens",
                ids.len(),
                num_steps + 1,
                batch_size.saturating_mul(num_steps + 1)
            )));
        }
        let data = Array2::from_shape_vec(
            (batch_size, batch_len),
            ids[..batch_size * batch_len].to_vec(),
        )
        .map_err(|e| Error::invalid(format!("LmBatcher::new: {e}")))?;
        Ok(LmBatcher {
            data,
            num_steps,
            epoch_size,
            step_in_epoch: 0,
            epochs_completed: 0,
        })
    }

    /// The number of parallel rows (the batch size).
    pub fn batch_size(&self) -> usize {
        self.data.nrows()
    }

    /// The tokens per batch row (truncated backpropagation length).
    pub fn num_steps(&self) -> usize {
        self.num_steps
    }

    /// The tokens in each row, `n / batch_size`.
    pub fn batch_len(&self) -> usize {
        self.data.ncols()
    }

    /// Batches per epoch, `(batch_len - 1) / num_steps`.
    pub fn epoch_size(&self) -> usize {
        self.epoch_size
    }

    /// The rows `[batch_size, batch_len]`.
    pub fn rows(&self) -> ArrayView2<'_, usize> {
        self.data.view()
    }

    /// Full epochs served so far: it grows with the last batch of each epoch.
    pub fn epochs_completed(&self) -> usize {
        self.epochs_completed
    }

    /// Batches of the current epoch served so far (0 at the start of each epoch, always below
    /// [`epoch_size`](LmBatcher::epoch_size)).
    pub fn step_in_epoch(&self) -> usize {
        self.step_in_epoch
    }

    /// The next batch, starting a new epoch after the last one of an epoch.
    ///
    /// # Shapes
    /// `inputs`, `targets`: `[batch_size, num_steps]`.
    pub fn next_batch(&mut self) -> LmBatch {
        let i = self.step_in_epoch;
        self.step_in_epoch += 1;
        if self.step_in_epoch == self.epoch_size {
            self.epochs_completed += 1;
            self.step_in_epoch = 0;
        }
        self.window(i * self.num_steps, self.num_steps, i)
    }

    /// One epoch's `epoch_size` batches from the start, in order, without touching the
    /// [`next_batch`](LmBatcher::next_batch) state.
    pub fn epoch(&self) -> impl ExactSizeIterator<Item = LmBatch> + '_ {
        (0..self.epoch_size).map(move |i| self.window(i * self.num_steps, self.num_steps, i))
    }

    /// Batches covering every target of every row exactly once, for evaluating on a whole
    /// text: the [`epoch`](LmBatcher::epoch) batches plus, if `(batch_len - 1)` is not a
    /// multiple of `num_steps`, a last narrower one with the remaining targets. Together they
    /// predict `batch_size * (batch_len - 1)` tokens (all but the first token of each row and
    /// the `n % batch_size` dropped ones), with the state carried from each batch to the next.
    ///
    /// # Shapes
    /// `[batch_size, num_steps]` each, the last `[batch_size, (batch_len - 1) % num_steps]` if
    /// that is not 0.
    pub fn evaluation_batches(&self) -> impl Iterator<Item = LmBatch> + '_ {
        let targets = self.batch_len() - 1;
        let n = targets.div_ceil(self.num_steps);
        (0..n).map(move |i| {
            let start = i * self.num_steps;
            self.window(start, self.num_steps.min(targets - start), i)
        })
    }

    /// [`evaluation_batches`](LmBatcher::evaluation_batches) as minibatches, the argument of
    /// [`Trainer::evaluate`](crate::train::Trainer::evaluate) (with
    /// [`carry_state`](crate::train::Trainer::carry_state), so the state runs through).
    ///
    /// ```
    /// use recurrent::data::{LmBatcher, Targets};
    /// # fn main() -> recurrent::Result<()> {
    /// let ids: Vec<usize> = (0..23).collect();
    /// let lm = LmBatcher::new(&ids, 2, 3)?;
    /// let batches: Vec<_> = lm.evaluation_minibatches::<f32>().collect::<Result<_, _>>()?;
    /// assert_eq!(batches.len(), 4);
    /// assert_eq!(batches[3].inputs.shape(), &[2, 1]);
    /// assert!(matches!(&batches[0].targets, Targets::Sequence(t) if t[[0, 0]] == 1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn evaluation_minibatches<T: Scalar>(
        &self,
    ) -> impl Iterator<Item = Result<Minibatch<T>>> + '_ {
        self.evaluation_batches().map(|b| Ok(b.into_minibatch()))
    }

    /// The number of tokens [`evaluation_batches`](LmBatcher::evaluation_batches) predicts,
    /// `batch_size * (batch_len - 1)`.
    pub fn num_evaluation_targets(&self) -> usize {
        self.batch_size() * (self.batch_len() - 1)
    }

    fn window(&self, start: usize, width: usize, step_in_epoch: usize) -> LmBatch {
        LmBatch {
            inputs: self.data.slice(s![.., start..start + width]).to_owned(),
            targets: self
                .data
                .slice(s![.., start + 1..start + width + 1])
                .to_owned(),
            reset_state: step_in_epoch == 0,
            step_in_epoch,
        }
    }
}

/// A [`Trainer`](crate::train::Trainer) with
/// [`carry_state`](crate::train::Trainer::carry_state) trains on it directly: each batch is
/// [`LmBatch::into_minibatch`] of [`next_batch`](LmBatcher::next_batch).
impl<T: Scalar> TrainSource<T> for LmBatcher {
    fn next_batch(&mut self) -> Result<Minibatch<T>> {
        Ok(LmBatcher::next_batch(self).into_minibatch())
    }

    /// [`epoch_size`](LmBatcher::epoch_size).
    fn batches_per_epoch(&self) -> Option<usize> {
        Some(self.epoch_size)
    }

    /// True after the first batch of an epoch ([`LmBatch::reset_state`]): its rows do not
    /// continue the previous batch's.
    fn starts_new_streams(&self) -> bool {
        self.step_in_epoch == 1 || self.epoch_size == 1
    }
}

impl Resumable for LmBatcher {
    /// Counters `[epochs_completed, step_in_epoch]`; no order and no generator (the batcher does
    /// not shuffle).
    fn position(&self) -> DataPosition {
        DataPosition {
            counters: vec![self.epochs_completed as u64, self.step_in_epoch as u64],
            ..DataPosition::default()
        }
    }

    fn restore(&mut self, position: &DataPosition) -> Result<()> {
        const OP: &str = "LmBatcher::restore";
        let [epochs, step] = position.counters[..] else {
            return Err(Error::invalid(format!(
                "{OP}: {} counters, expected 2 (epochs, step in epoch)",
                position.counters.len()
            )));
        };
        if !position.order.is_empty() {
            return Err(Error::invalid(format!(
                "{OP}: a saved order of {} examples for a source that does not shuffle",
                position.order.len()
            )));
        }
        let step = usize::try_from(step)
            .ok()
            .filter(|&s| s < self.epoch_size)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{OP}: step {step} of an epoch of {} batches",
                    self.epoch_size
                ))
            })?;
        self.epochs_completed =
            usize::try_from(epochs).map_err(|_| Error::invalid(format!("{OP}: epoch count")))?;
        self.step_in_epoch = step;
        Ok(())
    }
}
