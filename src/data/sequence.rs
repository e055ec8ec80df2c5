//! Labelled variable-length sequences: seeded shuffled batches padded to their longest member,
//! optional bucketing by length, and in-order batches for evaluation.

use std::marker::PhantomData;

use ndarray::{s, Array2, Array3};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::batch::{Minibatch, Targets, TrainSource};
use super::position::{check_order, DataPosition, Resumable, RngPosition, ShuffleRng};
use crate::error::{Error, Result};
use crate::scalar::Scalar;

/// One example's sequence: token ids (`Vec<usize>`, one id per step) or feature vectors
/// (`Array2<T>`, `[len, features]`), and how a batch of them is padded.
///
/// # Shapes
/// | sequence | one example | padded batch of `b` ([`Sequence::Padded`]) |
/// |---|---|---|
/// | `Vec<usize>` | `[len]` | `Array2<usize>` `[b, max_len]` |
/// | `Array2<T>` | `[len, features]` | `Array3<T>` `[b, max_len, features]` |
///
/// ```
/// use ndarray::{array, Array2};
/// use recurrent::data::SequenceDataSet;
///
/// # fn main() -> recurrent::Result<()> {
/// // Two sequences of 2-feature vectors, 3 steps and 1 step long.
/// let seqs = vec![array![[1.0f32, 1.0], [2.0, 2.0], [3.0, 3.0]], array![[4.0f32, 4.0]]];
/// let set = SequenceDataSet::new(seqs, vec![0, 1], 2, 7)?;
/// let batch = set.batch(&[0, 1])?;
/// assert_eq!(batch.inputs.dim(), (2, 3, 2)); // [b, max_len, features]
/// assert_eq!(batch.inputs[[1, 2, 0]], 0.0); // padded with zeros
/// assert_eq!(batch.lengths, [3, 1]);
/// # Ok(())
/// # }
/// ```
pub trait Sequence: Clone {
    /// The element padding is made of (`usize` ids, or the float type of features).
    type Elem: Copy + std::fmt::Debug;
    /// A batch of these sequences padded to a common length.
    type Padded;

    /// The number of time steps.
    fn steps(&self) -> usize;

    /// The number of values per time step (1 for token ids).
    fn width(&self) -> usize;

    /// The default padding value: 0 (the padding id of [`CharVocab`](crate::data::CharVocab),
    /// or zero features).
    fn default_padding() -> Self::Elem;

    /// `batch` padded with `pad` after each sequence's end to `max_len` steps (at least as
    /// long as every sequence in `batch`; all have width `width`).
    fn pad(batch: &[&Self], max_len: usize, width: usize, pad: Self::Elem) -> Self::Padded;
}

impl Sequence for Vec<usize> {
    type Elem = usize;
    type Padded = Array2<usize>;

    fn steps(&self) -> usize {
        self.len()
    }

    fn width(&self) -> usize {
        1
    }

    fn default_padding() -> usize {
        0
    }

    fn pad(batch: &[&Self], max_len: usize, _width: usize, pad: usize) -> Array2<usize> {
        let mut out = Array2::from_elem((batch.len(), max_len), pad);
        for (mut row, seq) in out.rows_mut().into_iter().zip(batch) {
            for (x, &id) in row.iter_mut().zip(seq.iter()) {
                *x = id;
            }
        }
        out
    }
}

impl<T: Scalar> Sequence for Array2<T> {
    type Elem = T;
    type Padded = Array3<T>;

    fn steps(&self) -> usize {
        self.nrows()
    }

    fn width(&self) -> usize {
        self.ncols()
    }

    fn default_padding() -> T {
        T::zero()
    }

    fn pad(batch: &[&Self], max_len: usize, width: usize, pad: T) -> Array3<T> {
        let mut out = Array3::from_elem((batch.len(), max_len, width), pad);
        for (b, seq) in batch.iter().enumerate() {
            out.slice_mut(s![b, ..seq.nrows(), ..]).assign(seq);
        }
        out
    }
}

/// How [`SequenceDataSet::next_batch`] groups examples, TensorFlow's
/// `tf.data.experimental.bucket_by_sequence_length` with one batch size for all buckets.
///
/// Each epoch walks the examples in a fresh shuffled order and drops each one into the bucket
/// of its length; a bucket that reaches the batch size is emitted as the next batch. When the
/// walk ends, the partly filled buckets are emitted, shortest lengths first. So every example
/// appears exactly once per epoch, a batch holds examples of similar length (little padding),
/// and the order is fixed by the seed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bucketing {
    boundaries: Vec<usize>,
}

impl Bucketing {
    /// No bucketing: one bucket, so batches are consecutive runs of the shuffled order (the
    /// last batch of an epoch holds the remainder).
    pub fn none() -> Bucketing {
        Bucketing::default()
    }

    /// Buckets by length with TensorFlow's `bucket_boundaries`: bucket 0 holds lengths below
    /// `boundaries[0]`, bucket `i` lengths in `[boundaries[i-1], boundaries[i])`, the last
    /// bucket lengths of `boundaries[last]` and more.
    ///
    /// ```
    /// use recurrent::data::Bucketing;
    /// assert!(Bucketing::boundaries(vec![4, 8, 16]).is_ok());
    /// assert!(Bucketing::boundaries(vec![8, 4]).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the boundaries are not strictly ascending or one is 0.
    pub fn boundaries(boundaries: Vec<usize>) -> Result<Bucketing> {
        if boundaries.first() == Some(&0) || boundaries.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(format!(
                "Bucketing::boundaries: boundaries must be positive and strictly ascending, got \
                 {boundaries:?}"
            )));
        }
        Ok(Bucketing { boundaries })
    }

    /// Buckets of `width` lengths each: `[1, width + 1)`, `[width + 1, 2 width + 1)`, ... up to
    /// `max_len` (longer sequences share the last bucket).
    ///
    /// ```
    /// use recurrent::data::Bucketing;
    /// let b = Bucketing::by_width(4, 12).unwrap();
    /// assert_eq!(b.bucket_boundaries(), &[5, 9, 13]);
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `width` is 0.
    pub fn by_width(width: usize, max_len: usize) -> Result<Bucketing> {
        if width == 0 {
            return Err(Error::invalid(
                "Bucketing::by_width: width must be positive",
            ));
        }
        Bucketing::boundaries(
            (1..=max_len.div_ceil(width))
                .map(|k| k * width + 1)
                .collect(),
        )
    }

    /// The boundaries (empty: one bucket).
    pub fn bucket_boundaries(&self) -> &[usize] {
        &self.boundaries
    }

    /// The number of buckets (boundaries + 1).
    pub fn num_buckets(&self) -> usize {
        self.boundaries.len() + 1
    }

    /// The bucket of a sequence of `len` steps.
    pub fn bucket_of(&self, len: usize) -> usize {
        self.boundaries.partition_point(|&b| b <= len)
    }
}

/// A batch of sequences padded to its longest member.
///
/// # Shapes
/// With `b = len()` examples and `t = max(lengths)`: `inputs` is `[b, t]` for token ids, `[b,
/// t, features]` for feature vectors; `lengths`, `labels` and `indices` are `[b]`. Steps at and
/// after `lengths[i]` of example `i` hold the padding value.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceBatch<P> {
    /// The padded sequences (batch-major).
    pub inputs: P,
    /// Each example's true number of steps (`sequence_length` of a recurrent layer), all >= 1.
    pub lengths: Vec<usize>,
    /// Each example's label.
    pub labels: Vec<usize>,
    /// Each example's index in the data set.
    pub indices: Vec<usize>,
}

impl<P> SequenceBatch<P> {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if the batch has no examples (never for batches of a [`SequenceDataSet`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The padded length, `max(lengths)`.
    pub fn max_len(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }
}

impl SequenceBatch<Array2<usize>> {
    /// The batch as a [`Trainer`](crate::train::Trainer) takes it: the ids as whole numbers of
    /// `T` (`[b, t]`, the input of an [`Embedding`](crate::layers::Embedding)), the lengths,
    /// and the labels as [`Targets::Classes`].
    ///
    /// ```
    /// use ndarray::array;
    /// use recurrent::data::{SequenceBatch, Targets};
    /// let batch = SequenceBatch {
    ///     inputs: array![[3, 4], [5, 0]],
    ///     lengths: vec![2, 1],
    ///     labels: vec![1, 0],
    ///     indices: vec![0, 1],
    /// };
    /// let mb = batch.into_minibatch::<f32>();
    /// assert_eq!(mb.inputs, array![[3.0f32, 4.0], [5.0, 0.0]].into_dyn());
    /// assert_eq!(mb.lengths, Some(vec![2, 1]));
    /// assert_eq!(mb.targets, Targets::Classes(vec![1, 0]));
    /// ```
    pub fn into_minibatch<T: Scalar>(self) -> Minibatch<T> {
        Minibatch {
            inputs: self
                .inputs
                .mapv(|id| T::from_f64_lossy(id as f64))
                .into_dyn(),
            lengths: Some(self.lengths),
            targets: Targets::Classes(self.labels),
        }
    }
}

impl<T: Scalar> SequenceBatch<Array3<T>> {
    /// The batch as a [`Trainer`](crate::train::Trainer) takes it: the features `[b, t,
    /// features]`, the lengths, and the labels as [`Targets::Classes`].
    pub fn into_minibatch(self) -> Minibatch<T> {
        Minibatch {
            inputs: self.inputs.into_dyn(),
            lengths: Some(self.lengths),
            targets: Targets::Classes(self.labels),
        }
    }
}

/// Labelled variable-length sequences with seeded shuffled batches, optional bucketing by
/// length (see [`Bucketing`]) and in-order evaluation batches.
///
/// `S` is `Vec<usize>` for token ids or `Array2<T>` (`[len, features]`) for feature vectors
/// (see [`Sequence`]). Every sequence has at least one step: a recurrent layer has no last
/// output for an empty sequence, so [`SequenceDataSet::new`] refuses one, naming it.
///
/// [`next_batch`](SequenceDataSet::next_batch) serves epochs: each epoch shuffles the examples
/// with the data set's [`ShuffleRng`] and serves every example exactly once, in batches of at
/// most `batch_size` (an epoch's last batch, or with bucketing the last of each bucket, may be
/// smaller); then the next epoch reshuffles. The data set is [`Resumable`].
///
/// # Example
///
/// ```
/// use recurrent::data::{Bucketing, CharVocab, SequenceDataSet};
///
/// # fn main() -> recurrent::Result<()> {
/// let words = ["a", "to", "sea", "tree", "house", "ab", "I"];
/// let vocab = CharVocab::from_text(&words.concat());
/// let ids: Vec<Vec<usize>> = words.iter().map(|w| vocab.encode(w)).collect();
/// let labels = vec![0, 1, 0, 1, 0, 1, 0];
///
/// let mut train = SequenceDataSet::new(ids, labels, 3, 42)?
///     .with_bucketing(Bucketing::boundaries(vec![3])?); // lengths 1-2, lengths 3+
/// let mut seen = vec![0; 7];
/// for _ in 0..train.batches_in_epoch() {
///     let batch = train.next_batch();
///     let t = batch.max_len();
///     assert_eq!(batch.inputs.dim(), (batch.len(), t)); // [b, t], padded with 0
///     assert!(batch.lengths.iter().all(|&l| (l < 3) == (t < 3))); // one bucket per batch
///     for &i in &batch.indices {
///         seen[i] += 1;
///     }
/// }
/// assert_eq!(seen, [1; 7]); // every example once per epoch
///
/// // Evaluation: every example once, in order.
/// let n: usize = train.batches(4)?.map(|b| b.len()).sum();
/// assert_eq!(n, 7);
///
/// // Resuming: a saved position continues with the same batches.
/// use recurrent::data::Resumable;
/// let saved = train.position();
/// let next = train.next_batch();
/// train.restore(&saved)?;
/// assert_eq!(train.next_batch(), next);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SequenceDataSet<S: Sequence> {
    sequences: Vec<S>,
    labels: Vec<usize>,
    width: usize,
    pad: S::Elem,
    batch_size: usize,
    bucketing: Bucketing,
    /// The current epoch's shuffled order.
    order: Vec<usize>,
    /// The current epoch's batches, made from `order`.
    plan: Vec<Vec<usize>>,
    /// Batches of `plan` already served.
    index_in_epoch: usize,
    epochs_completed: usize,
    rng: ShuffleRng,
}

impl<S: Sequence> SequenceDataSet<S> {
    /// A data set of `sequences` with their `labels`, served in shuffled batches of at most
    /// `batch_size` (no bucketing until [`with_bucketing`](SequenceDataSet::with_bucketing)),
    /// padded with 0 (until [`with_padding`](SequenceDataSet::with_padding)); `seed` seeds the
    /// shuffling.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `batch_size` is 0, there are no sequences, the numbers of
    /// sequences and labels differ, or a sequence is empty (the message names it);
    /// [`Error::Shape`] if feature sequences differ in their number of features or have none.
    pub fn new(
        sequences: Vec<S>,
        labels: Vec<usize>,
        batch_size: usize,
        seed: u64,
    ) -> Result<SequenceDataSet<S>> {
        if batch_size == 0 {
            return Err(Error::invalid(
                "SequenceDataSet::new: batch_size must be positive, got 0",
            ));
        }
        if sequences.is_empty() {
            return Err(Error::invalid(
                "SequenceDataSet::new: no sequences (a data set needs at least one example)",
            ));
        }
        if sequences.len() != labels.len() {
            return Err(Error::invalid(format!(
                "SequenceDataSet::new: {} sequences but {} labels",
                sequences.len(),
                labels.len()
            )));
        }
        if let Some(i) = sequences.iter().position(|s| s.steps() == 0) {
            return Err(Error::invalid(format!(
                "SequenceDataSet::new: sequence {i} (label {}) is empty; a recurrent layer has no \
                 output for a sequence of 0 steps, so drop it (or give it one token) first",
                labels[i]
            )));
        }
        let width = sequences[0].width();
        if let Some(i) = sequences
            .iter()
            .position(|s| s.width() != width || width == 0)
        {
            return Err(Error::shape(
                "SequenceDataSet::new",
                format!("every sequence [len, {width}] with {width} > 0 features (as sequence 0)"),
                &[sequences[i].steps(), sequences[i].width()],
            ));
        }
        let n = sequences.len();
        let mut set = SequenceDataSet {
            sequences,
            labels,
            width,
            pad: S::default_padding(),
            batch_size,
            bucketing: Bucketing::none(),
            order: (0..n).collect(),
            plan: Vec::new(),
            index_in_epoch: 0,
            epochs_completed: 0,
            rng: ShuffleRng::seed_from_u64(seed),
        };
        // Epoch 0 is shuffled here, so the state is always "inside an epoch".
        set.shuffle_epoch();
        Ok(set)
    }

    /// Groups the batches by length (see [`Bucketing`]). Meant to be set before the first
    /// batch: it regroups the current epoch's shuffled order and starts that epoch again.
    pub fn with_bucketing(mut self, bucketing: Bucketing) -> SequenceDataSet<S> {
        self.bucketing = bucketing;
        self.plan = self.plan_of(&self.order);
        self.index_in_epoch = 0;
        self
    }

    /// Pads with `value` instead of 0 (for token ids: the vocabulary's padding id).
    pub fn with_padding(mut self, value: S::Elem) -> SequenceDataSet<S> {
        self.pad = value;
        self
    }

    /// The number of examples.
    pub fn num_examples(&self) -> usize {
        self.sequences.len()
    }

    /// The sequences, in the order given.
    pub fn sequences(&self) -> &[S] {
        &self.sequences
    }

    /// The labels, in the order given.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The length (steps) of every sequence, in the order given.
    pub fn lengths(&self) -> Vec<usize> {
        self.sequences.iter().map(Sequence::steps).collect()
    }

    /// The number of values per step (1 for token ids).
    pub fn width(&self) -> usize {
        self.width
    }

    /// The largest batch [`next_batch`](SequenceDataSet::next_batch) serves.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The bucketing in use.
    pub fn bucketing(&self) -> &Bucketing {
        &self.bucketing
    }

    /// Full epochs served so far: it grows with the last batch of each epoch.
    pub fn epochs_completed(&self) -> usize {
        self.epochs_completed
    }

    /// Batches of the current epoch served so far (0 at the start of each epoch, always below
    /// [`batches_in_epoch`](SequenceDataSet::batches_in_epoch)).
    pub fn index_in_epoch(&self) -> usize {
        self.index_in_epoch
    }

    /// The number of batches in the current epoch: `ceil(n / batch_size)` without bucketing;
    /// with bucketing it depends on the shuffle (each bucket ends in one partial batch at most).
    pub fn batches_in_epoch(&self) -> usize {
        self.plan.len()
    }

    /// The next shuffled batch. Serving the last batch of an epoch completes it: the next
    /// epoch is shuffled at once, so `epochs_completed` counts it from then on.
    ///
    /// # Shapes
    /// See [`SequenceBatch`]: `inputs` `[b, t]` or `[b, t, features]` with `b <= batch_size`
    /// and `t` the longest length in the batch.
    pub fn next_batch(&mut self) -> SequenceBatch<S::Padded> {
        let indices = self.next_indices();
        self.gather(&indices)
    }

    /// The example indices of the next batch, advancing as
    /// [`next_batch`](SequenceDataSet::next_batch) does.
    pub fn next_indices(&mut self) -> Vec<usize> {
        let batch = self.plan[self.index_in_epoch].clone();
        self.index_in_epoch += 1;
        if self.index_in_epoch == self.plan.len() {
            // The epoch is complete: the next one is shuffled now.
            self.epochs_completed += 1;
            self.shuffle_epoch();
            self.index_in_epoch = 0;
        }
        batch
    }

    /// The examples `indices` as one padded batch.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `indices` is empty or an index is out of range.
    pub fn batch(&self, indices: &[usize]) -> Result<SequenceBatch<S::Padded>> {
        if indices.is_empty() {
            return Err(Error::invalid("SequenceDataSet::batch: no indices"));
        }
        if let Some(&i) = indices.iter().find(|&&i| i >= self.num_examples()) {
            return Err(Error::invalid(format!(
                "SequenceDataSet::batch: index {i} out of range for {} examples",
                self.num_examples()
            )));
        }
        Ok(self.gather(indices))
    }

    /// The whole data set in the order given, as padded batches of `batch_size` (the last may
    /// be smaller), for evaluation; does not touch the
    /// [`next_batch`](SequenceDataSet::next_batch) state.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `batch_size` is 0.
    pub fn batches(&self, batch_size: usize) -> Result<SequenceBatches<'_, S>> {
        if batch_size == 0 {
            return Err(Error::invalid(
                "SequenceDataSet::batches: batch_size must be positive, got 0",
            ));
        }
        Ok(SequenceBatches {
            set: self,
            batch_size,
            next: 0,
            _padded: PhantomData,
        })
    }

    fn gather(&self, indices: &[usize]) -> SequenceBatch<S::Padded> {
        let seqs: Vec<&S> = indices.iter().map(|&i| &self.sequences[i]).collect();
        let lengths: Vec<usize> = seqs.iter().map(|s| s.steps()).collect();
        let max_len = lengths.iter().copied().max().unwrap_or(0);
        SequenceBatch {
            inputs: S::pad(&seqs, max_len, self.width, self.pad),
            lengths,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            indices: indices.to_vec(),
        }
    }

    fn shuffle_epoch(&mut self) {
        self.order.shuffle(&mut self.rng);
        self.plan = self.plan_of(&self.order);
    }

    /// The batches of one epoch walked in `order` (see [`Bucketing`]).
    fn plan_of(&self, order: &[usize]) -> Vec<Vec<usize>> {
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); self.bucketing.num_buckets()];
        let mut plan = Vec::with_capacity(order.len().div_ceil(self.batch_size) + buckets.len());
        for &i in order {
            let bucket = &mut buckets[self.bucketing.bucket_of(self.sequences[i].steps())];
            bucket.push(i);
            if bucket.len() == self.batch_size {
                plan.push(std::mem::take(bucket));
            }
        }
        plan.extend(buckets.into_iter().filter(|b| !b.is_empty()));
        plan
    }
}

/// Token sequences feed a [`Trainer`](crate::train::Trainer) directly: each batch is
/// [`SequenceBatch::into_minibatch`] of [`next_batch`](SequenceDataSet::next_batch).
impl<T: Scalar> TrainSource<T> for SequenceDataSet<Vec<usize>> {
    fn next_batch(&mut self) -> Result<Minibatch<T>> {
        Ok(SequenceDataSet::next_batch(self).into_minibatch())
    }

    /// [`batches_in_epoch`](SequenceDataSet::batches_in_epoch) of the current epoch.
    fn batches_per_epoch(&self) -> Option<usize> {
        Some(self.batches_in_epoch())
    }
}

/// Feature sequences feed a [`Trainer`](crate::train::Trainer) directly.
impl<T: Scalar> TrainSource<T> for SequenceDataSet<Array2<T>> {
    fn next_batch(&mut self) -> Result<Minibatch<T>> {
        Ok(SequenceDataSet::next_batch(self).into_minibatch())
    }

    /// [`batches_in_epoch`](SequenceDataSet::batches_in_epoch) of the current epoch.
    fn batches_per_epoch(&self) -> Option<usize> {
        Some(self.batches_in_epoch())
    }
}

impl<S: Sequence> Resumable for SequenceDataSet<S> {
    /// Counters `[epochs_completed, batches served in the epoch]`, the epoch's order (from
    /// which the epoch's batches follow) and the generator.
    fn position(&self) -> DataPosition {
        DataPosition {
            counters: vec![self.epochs_completed as u64, self.index_in_epoch as u64],
            order: self.order.iter().map(|&i| i as u64).collect(),
            rng: RngPosition::of(&self.rng),
        }
    }

    fn restore(&mut self, position: &DataPosition) -> Result<()> {
        const OP: &str = "SequenceDataSet::restore";
        let [epochs, index] = position.counters[..] else {
            return Err(Error::invalid(format!(
                "{OP}: {} counters, expected 2 (epochs, batches served in the epoch)",
                position.counters.len()
            )));
        };
        let order = check_order(OP, &position.order, self.num_examples())?;
        let plan = self.plan_of(&order);
        let index = usize::try_from(index)
            .ok()
            .filter(|&i| i < plan.len())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{OP}: batch {index} of an epoch of {} batches",
                    plan.len()
                ))
            })?;
        let epochs =
            usize::try_from(epochs).map_err(|_| Error::invalid(format!("{OP}: epoch count")))?;
        self.order = order;
        self.plan = plan;
        self.index_in_epoch = index;
        self.epochs_completed = epochs;
        self.rng = position.rng.to_rng();
        Ok(())
    }
}

/// The in-order batches of [`SequenceDataSet::batches`].
#[derive(Debug, Clone)]
pub struct SequenceBatches<'a, S: Sequence> {
    set: &'a SequenceDataSet<S>,
    batch_size: usize,
    next: usize,
    _padded: PhantomData<S::Padded>,
}

impl<S: Sequence> Iterator for SequenceBatches<'_, S> {
    type Item = SequenceBatch<S::Padded>;

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.set.num_examples();
        if self.next >= n {
            return None;
        }
        let end = (self.next + self.batch_size).min(n);
        let indices: Vec<usize> = (self.next..end).collect();
        self.next = end;
        Some(self.set.gather(&indices))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let k = (self.set.num_examples() - self.next).div_ceil(self.batch_size);
        (k, Some(k))
    }
}

impl<S: Sequence> ExactSizeIterator for SequenceBatches<'_, S> {}
