//! Layers as values: the [`Layer`] trait, [`Sequential`], and the layers a sequence model is
//! built from ([`Dense`], [`Activation`], [`Embedding`], [`Dropout`], [`Rnn`], [`Bidirectional`]).
//!
//! A layer holds only parameter handles and its configuration, like a cell, so one model value
//! serves training, evaluation and several threads. [`Layer`] is object safe: a model can be a
//! `Vec<Box<dyn Layer<f32>>>` ([`Sequential`]) chosen at run time. The words are Keras's
//! (`tf.keras.layers.RNN(cell, return_sequences)`, `Bidirectional(merge_mode)`, `Embedding`,
//! `Sequential`).
//!
//! Each example's sequence length is given once, in the [`Context`] of a forward pass, and
//! reaches every layer that needs it: a recurrent layer masks its steps and state with it and
//! takes each example's last *valid* output; the backward direction of a [`Bidirectional`]
//! layer reverses each example within its length.
//!
//! ```
//! use recurrent::layers::{Context, Dense, Layer, Returns, Rnn, Sequential};
//! use recurrent::{ParamStore, Tape};
//!
//! let mut params = ParamStore::<f32>::new(42);
//! let model = Sequential::new()
//!     .push(Rnn::lstm(&mut params, 3, 16)?.returns(Returns::LastOutput))
//!     .push(Dense::new(&mut params, "dense", 16, 4)?);
//! assert_eq!(params.name(model.param_ids()[0]), "rnn/basic_lstm_cell/kernel");
//!
//! // Two sequences of up to 5 steps; the second has 2 valid steps.
//! let tape = Tape::inference(&params);
//! let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 5, 3])));
//! let lengths = [5, 2];
//! let logits = model.forward(&tape, x, &mut Context::new().lengths(&lengths))?;
//! assert_eq!(tape.shape(logits), vec![2, 4]);
//! # Ok::<(), recurrent::Error>(())
//! ```

mod activation;
mod dense;
mod dropout;
mod embedding;
mod recurrent;

use std::collections::BTreeMap;

use ndarray::ArrayD;

pub use activation::Activation;
pub use dense::Dense;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use recurrent::{Bidirectional, Merge, Returns, Rnn};

use crate::{Error, ParamId, Result, Scalar, Tape, Var};

/// A part of a model: a differentiable map from one tensor to another, recorded on a tape.
///
/// Implement it for a layer of your own from tape ops, and it composes with the built-in ones
/// in a [`Sequential`], trains with the [`Trainer`](crate::train::Trainer) and gets its gradient
/// for free.
pub trait Layer<T: Scalar> {
    /// Runs the layer on `x`. `context` carries each example's sequence length (if the batch
    /// has them) and, for stateful runs, the recurrent state carried between calls.
    fn forward(&self, tape: &Tape<'_, T>, x: Var, context: &mut Context<'_, T>) -> Result<Var>;

    /// The parameters the layer reads, in creation order.
    fn param_ids(&self) -> Vec<ParamId>;

    /// The layer's name: its parameter scope (`"rnn_1"`, `"dense"`), used in error messages
    /// and as the key of its carried state.
    fn name(&self) -> &str;

    /// [`Layer::forward`] without sequence lengths or carried state.
    fn apply(&self, tape: &Tape<'_, T>, x: Var) -> Result<Var> {
        self.forward(tape, x, &mut Context::new())
    }
}

impl<T: Scalar, L: Layer<T> + ?Sized> Layer<T> for Box<L> {
    fn forward(&self, tape: &Tape<'_, T>, x: Var, context: &mut Context<'_, T>) -> Result<Var> {
        (**self).forward(tape, x, context)
    }
    fn param_ids(&self) -> Vec<ParamId> {
        (**self).param_ids()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
}

/// What a forward pass knows besides its input: each example's number of valid steps, and
/// optionally the recurrent state to start from and to leave behind ([`Carry`]).
#[derive(Debug, Default)]
pub struct Context<'a, T: Scalar> {
    lengths: Option<&'a [usize]>,
    carry: Option<&'a mut Carry<T>>,
}

impl<'a, T: Scalar> Context<'a, T> {
    /// No lengths (every step of every example is valid) and no carried state.
    pub fn new() -> Self {
        Context {
            lengths: None,
            carry: None,
        }
    }

    /// Each example's number of valid steps (`sequence_length`).
    pub fn lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }

    /// Recurrent layers start from the states in `carry` (where it has one for them) and store
    /// their final states there: truncated backpropagation through time across consecutive
    /// batches, or step-by-step generation.
    pub fn carry(mut self, carry: &'a mut Carry<T>) -> Self {
        self.carry = Some(carry);
        self
    }

    /// The lengths, if given.
    pub fn sequence_length(&self) -> Option<&'a [usize]> {
        self.lengths
    }

    /// The carried states, if given.
    pub fn carried(&mut self) -> Option<&mut Carry<T>> {
        self.carry.as_deref_mut()
    }
}

/// Recurrent states kept between forward passes, by layer name: what TensorFlow's PTB model
/// feeds back as `initial_state`, and Keras's `stateful=True` keeps.
///
/// The states are plain arrays, not tape values: a new tape starts from their values, so the
/// gradient stops at the batch boundary (truncated backpropagation through time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carry<T> {
    states: BTreeMap<String, Vec<ArrayD<T>>>,
}

impl<T: Scalar> Carry<T> {
    /// No state: every recurrent layer starts from zeros.
    pub fn new() -> Self {
        Carry {
            states: BTreeMap::new(),
        }
    }

    /// The state tensors layer `name` left, if any (`[c, h]` for an LSTM layer, each
    /// `[batch, units]`).
    pub fn get(&self, name: &str) -> Option<&[ArrayD<T>]> {
        self.states.get(name).map(Vec::as_slice)
    }

    /// Sets the state layer `name` starts from next time.
    pub fn set(&mut self, name: &str, state: Vec<ArrayD<T>>) {
        self.states.insert(name.to_string(), state);
    }

    /// Forgets every state (Keras's `reset_states`).
    pub fn reset(&mut self) {
        self.states.clear();
    }

    /// Whether no state is kept.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Every kept state, by layer name in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[ArrayD<T>])> {
        self.states.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// Layers applied one after another (`tf.keras.Sequential`).
///
/// ```
/// use recurrent::layers::{Dense, Layer, Sequential};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f64>::new(0);
/// let mlp = Sequential::new()
///     .push(Dense::new(&mut params, "hidden", 3, 8)?)
///     .push(Dense::new(&mut params, "out", 8, 2)?);
/// let tape = Tape::inference(&params);
/// let y = mlp.apply(&tape, tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[5, 3]))))?;
/// assert_eq!(tape.shape(y), vec![5, 2]);
/// # Ok::<(), recurrent::Error>(())
/// ```
pub struct Sequential<T: Scalar> {
    layers: Vec<Box<dyn Layer<T>>>,
}

impl<T: Scalar> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Scalar> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.layers.iter().map(|l| l.name()))
            .finish()
    }
}

impl<T: Scalar> Sequential<T> {
    /// No layers yet (the identity).
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Appends a layer.
    pub fn push(mut self, layer: impl Layer<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer (one chosen at run time).
    pub fn push_boxed(mut self, layer: Box<dyn Layer<T>>) -> Self {
        self.layers.push(layer);
        self
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Box<dyn Layer<T>>] {
        &self.layers
    }
}

impl<T: Scalar> Layer<T> for Sequential<T> {
    fn forward(&self, tape: &Tape<'_, T>, x: Var, context: &mut Context<'_, T>) -> Result<Var> {
        self.layers
            .iter()
            .try_fold(x, |x, layer| layer.forward(tape, x, context))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        self.layers.iter().flat_map(|l| l.param_ids()).collect()
    }

    fn name(&self) -> &str {
        "sequential"
    }
}

/// The error of a layer that got an input of the wrong shape: names the layer and both shapes.
pub(crate) fn layer_shape_error(
    kind: &'static str,
    name: &str,
    expected: impl std::fmt::Display,
    got: &[usize],
) -> Error {
    Error::Shape {
        op: kind,
        expected: format!("{expected} (layer {name:?})"),
        got: format!("{got:?}"),
    }
}
