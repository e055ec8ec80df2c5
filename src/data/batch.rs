//! What a trainer consumes: [`Minibatch`]es with their [`Targets`], from a [`TrainSource`].

use ndarray::{Array2, ArrayD};

use super::position::Resumable;
use crate::{Error, Result, Scalar};

/// One batch of examples as a model sees it: inputs, each example's length (for sequences of
/// different lengths), and what the model should predict.
///
/// Batch-major: the first axis of the inputs (and of sequence targets) is the example. A
/// time-major model transposes inside its first layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Minibatch<T> {
    /// The model's input: `[batch, time, features]` for sequences of vectors, `[batch, time]`
    /// token ids as whole numbers for an [`Embedding`](crate::layers::Embedding), or any shape
    /// the model takes.
    pub inputs: ArrayD<T>,
    /// Each example's number of valid steps, if they differ (padded batches).
    pub lengths: Option<Vec<usize>>,
    /// The targets; they choose the loss.
    pub targets: Targets<T>,
}

/// What a model is trained to predict, which also fixes the loss the
/// [`Trainer`](crate::train::Trainer) minimises.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets<T> {
    /// One class per example; the model gives logits `[batch, classes]`; the loss is the mean
    /// sparse softmax cross-entropy (`tf.losses.sparse_softmax_cross_entropy`).
    Classes(Vec<usize>),
    /// One class per time step, `[batch, time]`; the model gives logits `[batch, time,
    /// classes]`; the loss is `sequence_loss`, weighted by the batch's lengths when it has them
    /// (padding does not count).
    Sequence(Array2<usize>),
    /// Values of the model's output shape; the loss is the mean squared error (over each
    /// example's valid steps when the output is a sequence `[batch, time, ...]` and the batch
    /// has lengths).
    Values(ArrayD<T>),
}

impl<T: Scalar> Minibatch<T> {
    /// The number of examples (the first axis of the inputs).
    pub fn len(&self) -> usize {
        self.inputs.shape().first().copied().unwrap_or(0)
    }

    /// Whether the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the lengths and targets fit the inputs' batch size.
    pub fn check(&self) -> Result<()> {
        let n = self.len();
        if let Some(l) = &self.lengths {
            if l.len() != n {
                return Err(Error::Shape {
                    op: "Minibatch",
                    expected: format!("one length per example ({n})"),
                    got: format!("{} lengths", l.len()),
                });
            }
        }
        let targets = match &self.targets {
            Targets::Classes(c) => c.len(),
            Targets::Sequence(s) => s.nrows(),
            Targets::Values(v) => v.shape().first().copied().unwrap_or(0),
        };
        if targets != n {
            return Err(Error::Shape {
                op: "Minibatch",
                expected: format!("targets for {n} examples"),
                got: format!("targets for {targets}"),
            });
        }
        Ok(())
    }
}

/// An endless, resumable supply of training batches (shuffled, epoch after epoch).
pub trait TrainSource<T: Scalar>: Resumable {
    /// The next batch.
    fn next_batch(&mut self) -> Result<Minibatch<T>>;

    /// How many batches make one pass over the data (an epoch), if the source knows.
    fn batches_per_epoch(&self) -> Option<usize> {
        None
    }

    /// Whether the batch [`next_batch`](TrainSource::next_batch) just returned begins new
    /// streams, so that recurrent states carried from the batch before must not continue into
    /// it (a language-model batcher's first batch of an epoch). `false` by default.
    fn starts_new_streams(&self) -> bool {
        false
    }
}

/// A [`TrainSource`] that serves the given batches in order, over and over: for data that fits
/// in a few batches, for tests and for examples. Its position is the number of batches served.
///
/// ```
/// use recurrent::data::{FixedBatches, Minibatch, Targets, TrainSource};
/// use recurrent::ndarray::{ArrayD, IxDyn};
///
/// let batch = Minibatch::<f32> {
///     inputs: ArrayD::zeros(IxDyn(&[2, 3, 1])),
///     lengths: None,
///     targets: Targets::Classes(vec![0, 1]),
/// };
/// let mut source = FixedBatches::new(vec![batch.clone()])?;
/// assert_eq!(source.next_batch()?, batch);
/// assert_eq!(TrainSource::<f32>::batches_per_epoch(&source), Some(1));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FixedBatches<T> {
    batches: Vec<Minibatch<T>>,
    served: u64,
}

impl<T: Scalar> FixedBatches<T> {
    /// Serves `batches` in order, cycling.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `batches` is empty; the first batch that does not
    /// [`check`](Minibatch::check).
    pub fn new(batches: Vec<Minibatch<T>>) -> Result<Self> {
        if batches.is_empty() {
            return Err(Error::invalid("FixedBatches needs at least one batch"));
        }
        for b in &batches {
            b.check()?;
        }
        Ok(FixedBatches { batches, served: 0 })
    }
}

impl<T: Scalar> TrainSource<T> for FixedBatches<T> {
    fn next_batch(&mut self) -> Result<Minibatch<T>> {
        let k = (self.served % self.batches.len() as u64) as usize;
        self.served += 1;
        Ok(self.batches[k].clone())
    }

    fn batches_per_epoch(&self) -> Option<usize> {
        Some(self.batches.len())
    }
}

impl<T: Scalar> Resumable for FixedBatches<T> {
    /// Counter `[batches served]`.
    fn position(&self) -> super::DataPosition {
        super::DataPosition {
            counters: vec![self.served],
            ..Default::default()
        }
    }

    fn restore(&mut self, position: &super::DataPosition) -> Result<()> {
        match position.counters[..] {
            [served] => {
                self.served = served;
                Ok(())
            }
            _ => Err(Error::invalid(format!(
                "FixedBatches::restore: {} counters, expected 1",
                position.counters.len()
            ))),
        }
    }
}
