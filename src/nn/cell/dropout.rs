//! `DropoutWrapper`: dropout on a cell's inputs, outputs and state.

use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::Axis;

use super::{Cell, RnnState};
use crate::ops::nn::check_keep_prob;
use crate::{Error, ParamId, Result, Scalar, Tape, Var};

static NEXT_WRAPPER_ID: AtomicU64 = AtomicU64::new(1);

/// Dropout around a cell (`tf.nn.rnn_cell.DropoutWrapper`).
///
/// - `input_keep_prob`: dropout on the input of every step;
/// - `output_keep_prob`: dropout on the output of every step (what reaches the next layer of a
///   [`super::MultiCell`]);
/// - `state_keep_prob`: dropout on the new state, except an LSTM's memory `c`, which TensorFlow
///   never drops ([`RnnState::droppable`]).
///
/// # Equations
/// For each of the three, with `p` its keep probability and `m` a mask of independent
/// Bernoulli(`p`) draws of the tensor's shape:
///
/// ```text
/// dropped(v) = v * m / p
/// ```
///
/// so kept values are scaled by `1 / p` and the expectation is unchanged. With
/// [`DropoutWrapper::with_variational_recurrent`] (Gal & Ghahramani, 2016) each of the three
/// masks is drawn once per tape and reused at every step, as TensorFlow's
/// `variational_recurrent=True` does once per graph; otherwise every step draws new masks. On an
/// inference tape the wrapper is the identity. Masks come from the tape's seeded generator
/// ([`Tape::with_seed`]). Keep probabilities outside `(0, 1]` are an error.
///
/// # Shapes
/// Those of the wrapped cell: the masks have the shape of the input `[batch, input_size]`, the
/// output `[batch, output_size]` and each state tensor.
///
/// ```
/// use recurrent::cell::{BasicLstmCell, DropoutWrapper};
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let lstm = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 8, 16).unwrap();
/// let cell = DropoutWrapper::new(lstm).with_output_keep_prob(0.5).unwrap();
/// assert!(DropoutWrapper::new(cell.clone()).with_input_keep_prob(0.0).is_err());
///
/// // Training: about half of the outputs are zero, the others doubled.
/// let tape = Tape::new(&params).with_seed(1);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[4, 5, 8])));
/// let (outputs, _) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default()).unwrap();
/// assert_eq!(tape.shape(outputs), vec![4, 5, 16]);
/// assert!(tape.value(outputs).iter().any(|&v| v == 0.0));
/// // Inference: the identity.
/// let tape = Tape::inference(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[4, 5, 8])));
/// let (outputs, _) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default()).unwrap();
/// assert!(tape.value(outputs).iter().all(|&v| v != 0.0));
/// ```
///
/// Reference: Zaremba et al., "Recurrent Neural Network Regularization" (2014), for dropout on
/// the non-recurrent connections.
#[derive(Debug)]
pub struct DropoutWrapper<C> {
    cell: C,
    input_keep_prob: f64,
    output_keep_prob: f64,
    state_keep_prob: f64,
    variational: bool,
    id: u64,
}

impl<C: Clone> Clone for DropoutWrapper<C> {
    /// A clone is a new wrapper: its variational masks are its own.
    fn clone(&self) -> Self {
        DropoutWrapper {
            cell: self.cell.clone(),
            id: NEXT_WRAPPER_ID.fetch_add(1, Ordering::Relaxed),
            ..*self
        }
    }
}

impl<C> DropoutWrapper<C> {
    /// Wraps `cell` with every keep probability 1 (no dropout).
    pub fn new(cell: C) -> Self {
        DropoutWrapper {
            cell,
            input_keep_prob: 1.0,
            output_keep_prob: 1.0,
            state_keep_prob: 1.0,
            variational: false,
            id: NEXT_WRAPPER_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sets the probability of keeping each input element.
    pub fn with_input_keep_prob(mut self, p: f64) -> Result<Self> {
        check_keep_prob(p)?;
        self.input_keep_prob = p;
        Ok(self)
    }

    /// Sets the probability of keeping each output element.
    pub fn with_output_keep_prob(mut self, p: f64) -> Result<Self> {
        check_keep_prob(p)?;
        self.output_keep_prob = p;
        Ok(self)
    }

    /// Sets the probability of keeping each (droppable) state element.
    pub fn with_state_keep_prob(mut self, p: f64) -> Result<Self> {
        check_keep_prob(p)?;
        self.state_keep_prob = p;
        Ok(self)
    }

    /// Uses one mask per tape for each of input, output and state, reused at every step
    /// (TensorFlow's `variational_recurrent`).
    pub fn with_variational_recurrent(mut self, variational_recurrent: bool) -> Self {
        self.variational = variational_recurrent;
        self
    }

    /// The wrapped cell.
    pub fn cell(&self) -> &C {
        &self.cell
    }

    /// Dropout on `x` with mask slot `slot` (0 input, 1 output, 2+ state tensors).
    fn drop<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        keep_prob: f64,
        slot: usize,
    ) -> Result<Var> {
        if keep_prob == 1.0 || !tape.is_training() {
            return Ok(x);
        }
        if !self.variational {
            return tape.dropout(x, keep_prob);
        }
        let mask = tape.fixed_dropout_mask(self.id, slot, &tape.shape(x), keep_prob)?;
        tape.mul(x, tape.constant(mask))
    }

    /// Dropout on a whole `[batch, time, n]` (or time-major) sequence, with the same mask at
    /// every step in variational mode.
    fn drop_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        keep_prob: f64,
        slot: usize,
        time_major: bool,
    ) -> Result<Var> {
        let shape = tape.shape(x);
        if shape.len() != 3 {
            let order = if time_major {
                "[time, batch, features]"
            } else {
                "[batch, time, features]"
            };
            return Err(Error::shape(
                "DropoutWrapper::dynamic_sequence",
                format!("a sequence of shape {order}"),
                &shape,
            ));
        }
        if keep_prob == 1.0 || !tape.is_training() {
            return Ok(x);
        }
        if !self.variational {
            return tape.dropout(x, keep_prob);
        }
        let (time_axis, batch_axis) = if time_major { (0, 1) } else { (1, 0) };
        let mask =
            tape.fixed_dropout_mask(self.id, slot, &[shape[batch_axis], shape[2]], keep_prob)?;
        tape.mul(x, tape.constant(mask.insert_axis(Axis(time_axis))))
    }
}

impl<C: Cell> Cell for DropoutWrapper<C> {
    type State = C::State;

    fn input_size(&self) -> usize {
        self.cell.input_size()
    }

    fn output_size(&self) -> usize {
        self.cell.output_size()
    }

    fn state_size(&self) -> Vec<usize> {
        self.cell.state_size()
    }

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<C::State> {
        self.cell.zero_state(tape, batch)
    }

    fn call<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        input: Var,
        state: &C::State,
    ) -> Result<(Var, C::State)> {
        let input = self.drop(tape, input, self.input_keep_prob, 0)?;
        let (output, new_state) = self.cell.call(tape, input, state)?;
        let output = self.drop(tape, output, self.output_keep_prob, 1)?;
        if self.state_keep_prob == 1.0 || !tape.is_training() {
            return Ok((output, new_state));
        }
        let dropped = new_state
            .flatten()
            .into_iter()
            .zip(new_state.droppable())
            .enumerate()
            .map(|(k, (v, droppable))| {
                if droppable {
                    self.drop(tape, v, self.state_keep_prob, 2 + k)
                } else {
                    Ok(v)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((output, new_state.rebuild(&dropped)))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        self.cell.param_ids()
    }

    /// Input and output dropout act on whole sequences around the inner cell's own sequence
    /// run; state dropout sits inside the recurrence, so with it the runner steps instead.
    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &C::State,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, C::State)>> {
        if self.state_keep_prob != 1.0 && tape.is_training() {
            return None;
        }
        let run = || {
            let x = self.drop_sequence(tape, inputs, self.input_keep_prob, 0, time_major)?;
            let (out, state) = crate::rnn::dynamic_rnn(
                tape,
                &self.cell,
                x,
                crate::rnn::RnnOptions {
                    initial_state: Some(state.clone()),
                    sequence_length,
                    time_major,
                },
            )?;
            Ok((
                self.drop_sequence(tape, out, self.output_keep_prob, 1, time_major)?,
                state,
            ))
        };
        Some(run())
    }
}
