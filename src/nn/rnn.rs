//! Unrolling cells over sequences: static, dynamic and bidirectional runners.
//!
//! Every runner works with every [`Cell`], follows TensorFlow 1.x's semantics, and is
//! differentiable:
//!
//! | TensorFlow 1.x | here |
//! |---|---|
//! | `tf.nn.static_rnn(cell, inputs, initial_state, sequence_length=...)` | [`static_rnn`] |
//! | `tf.nn.dynamic_rnn(cell, inputs, sequence_length, initial_state, time_major=...)` | [`dynamic_rnn`] |
//! | `tf.nn.static_bidirectional_rnn(fw, bw, inputs, ...)` | [`static_bidirectional_rnn`] |
//! | `tf.nn.bidirectional_dynamic_rnn(fw, bw, inputs, ...)` | [`bidirectional_dynamic_rnn`] |
//! | `tf.contrib.rnn.stack_bidirectional_dynamic_rnn(cells_fw, cells_bw, inputs, ...)` | [`stack_bidirectional_dynamic_rnn`] |
//! | `tf.contrib.rnn.stack_bidirectional_rnn(cells_fw, cells_bw, inputs, ...)` | [`stack_bidirectional_rnn`] |
//! | `tf.gather_nd(outputs, [range(batch), sequence_length - 1])` | [`last_relevant_output`] |
//!
//! With `sequence_length`, outputs past an example's length are zero and its state is carried
//! through unchanged, so the final state is the state at its last valid step.

use ndarray::{ArrayD, IxDyn};

use crate::cell::{Cell, RnnState};
use crate::{Error, Result, Scalar, Tape, Var};

/// The options of [`static_rnn`] and [`dynamic_rnn`]: TensorFlow's keyword arguments, named at
/// the call site (`rnn::RnnOptions::default().sequence_length(&lengths)`), each defaulting as in
/// TensorFlow.
///
/// `S` is the cell's state type ([`Cell::State`]).
#[derive(Debug, Clone)]
pub struct RnnOptions<'a, S> {
    /// The state before the first step (`initial_state`); the cell's zero state if `None`.
    pub initial_state: Option<S>,
    /// Each example's number of valid steps (`sequence_length`); all steps if `None`.
    pub sequence_length: Option<&'a [usize]>,
    /// Inputs and outputs are `[time, batch, ...]` (`time_major`; [`dynamic_rnn`] only).
    pub time_major: bool,
}

impl<S> Default for RnnOptions<'_, S> {
    fn default() -> Self {
        RnnOptions {
            initial_state: None,
            sequence_length: None,
            time_major: false,
        }
    }
}

impl<'a, S> RnnOptions<'a, S> {
    /// The state before the first step.
    pub fn initial_state(mut self, state: S) -> Self {
        self.initial_state = Some(state);
        self
    }

    /// Each example's number of valid steps.
    pub fn sequence_length(mut self, lengths: &'a [usize]) -> Self {
        self.sequence_length = Some(lengths);
        self
    }

    /// Time-major inputs and outputs.
    pub fn time_major(mut self, time_major: bool) -> Self {
        self.time_major = time_major;
        self
    }
}

/// The options of [`bidirectional_dynamic_rnn`] and [`static_bidirectional_rnn`].
///
/// `F` and `B` are the forward and backward cells' state types.
#[derive(Debug, Clone)]
pub struct BidirectionalOptions<'a, F, B> {
    /// The forward cell's initial state (`initial_state_fw`).
    pub initial_state_fw: Option<F>,
    /// The backward cell's initial state (`initial_state_bw`).
    pub initial_state_bw: Option<B>,
    /// Each example's number of valid steps, used by both directions.
    pub sequence_length: Option<&'a [usize]>,
    /// Time-major inputs and outputs ([`bidirectional_dynamic_rnn`] only).
    pub time_major: bool,
}

impl<F, B> Default for BidirectionalOptions<'_, F, B> {
    fn default() -> Self {
        BidirectionalOptions {
            initial_state_fw: None,
            initial_state_bw: None,
            sequence_length: None,
            time_major: false,
        }
    }
}

impl<'a, F, B> BidirectionalOptions<'a, F, B> {
    /// The forward cell's initial state.
    pub fn initial_state_fw(mut self, state: F) -> Self {
        self.initial_state_fw = Some(state);
        self
    }

    /// The backward cell's initial state.
    pub fn initial_state_bw(mut self, state: B) -> Self {
        self.initial_state_bw = Some(state);
        self
    }

    /// Each example's number of valid steps.
    pub fn sequence_length(mut self, lengths: &'a [usize]) -> Self {
        self.sequence_length = Some(lengths);
        self
    }

    /// Time-major inputs and outputs.
    pub fn time_major(mut self, time_major: bool) -> Self {
        self.time_major = time_major;
        self
    }
}

/// Checks per-example lengths against the batch size and the number of steps.
pub(crate) fn check_lengths(lengths: &[usize], batch: usize, steps: usize) -> Result<Vec<usize>> {
    if lengths.len() != batch {
        return Err(Error::Shape {
            op: "sequence_length",
            expected: format!("one length per example ({batch})"),
            got: format!("{} lengths", lengths.len()),
        });
    }
    if let Some(&bad) = lengths.iter().find(|&&l| l > steps) {
        return Err(Error::invalid(format!(
            "sequence_length {bad} is longer than the {steps} time steps"
        )));
    }
    Ok(lengths.to_vec())
}

fn initial_state<T: Scalar, C: Cell>(
    tape: &Tape<'_, T>,
    cell: &C,
    initial_state: Option<C::State>,
    batch: usize,
) -> Result<C::State> {
    match initial_state {
        Some(state) => {
            crate::cell::check_state(
                tape,
                "initial_state",
                &state.flatten(),
                &cell.state_size(),
                batch,
            )?;
            Ok(state)
        }
        None => cell.zero_state(tape, batch),
    }
}

/// Unrolls `cell` over a list of per-step inputs, each `[batch, input_size]`
/// (`tf.nn.static_rnn`).
///
/// Returns one output `[batch, output_size]` per step and the final state. With
/// `sequence_length`, step `t` of example `b` runs only when `t < sequence_length[b]`: later
/// outputs are zero and the state is carried through.
pub fn static_rnn<T: Scalar, C: Cell>(
    tape: &Tape<'_, T>,
    cell: &C,
    inputs: &[Var],
    options: RnnOptions<'_, C::State>,
) -> Result<(Vec<Var>, C::State)> {
    let RnnOptions {
        initial_state,
        sequence_length,
        time_major,
    } = options;
    if time_major {
        return Err(Error::invalid(
            "static_rnn: time_major does not apply to a list of per-step inputs",
        ));
    }
    let first = inputs
        .first()
        .ok_or_else(|| Error::invalid("static_rnn needs at least one input step"))?;
    let batch = crate::cell::check_input(tape, "static_rnn", *first, cell.input_size())?;
    for &x in inputs {
        crate::cell::check_input(tape, "static_rnn", x, cell.input_size())?;
        let b = tape.shape(x)[0];
        if b != batch {
            return Err(Error::Shape {
                op: "static_rnn",
                expected: format!("every step with batch {batch}"),
                got: format!("a step with batch {b}"),
            });
        }
    }
    let lengths = sequence_length
        .map(|l| check_lengths(l, batch, inputs.len()))
        .transpose()?;
    let mut state = self::initial_state(tape, cell, initial_state, batch)?;
    if let Some(result) =
        super::static_fast::sequence(tape, cell, inputs, &state, lengths.as_deref())
    {
        return result;
    }
    let mut outputs = Vec::with_capacity(inputs.len());
    // One zero output for every step that needs it, made once outside the time loop.
    let zero = lengths
        .is_some()
        .then(|| tape.constant(ArrayD::zeros(IxDyn(&[batch, cell.output_size()]))));
    for (t, &x) in inputs.iter().enumerate() {
        let (out, new_state) = cell.call(tape, x, &state)?;
        match (&lengths, zero) {
            (Some(l), Some(zero)) if l.iter().any(|&len| t >= len) => {
                let alive = ArrayD::from_shape_fn(IxDyn(&[batch, 1]), |i| t < l[i[0]]);
                outputs.push(tape.select(&alive, out, zero)?);
                let carried = new_state
                    .flatten()
                    .iter()
                    .zip(state.flatten())
                    .map(|(&new, old)| tape.select(&alive, new, old))
                    .collect::<Result<Vec<_>>>()?;
                state = state.rebuild(&carried);
            }
            _ => {
                outputs.push(out);
                state = new_state;
            }
        }
    }
    Ok((outputs, state))
}

/// Runs `cell` over `inputs` `[batch, time, input_size]` (`[time, batch, input_size]` when
/// `time_major`), giving outputs `[batch, time, output_size]` (or time-major) and the final
/// state (`tf.nn.dynamic_rnn`).
///
/// Any number of time steps works from call to call. A cell that knows how to run a whole
/// sequence at once ([`Cell::dynamic_sequence`], as [`crate::cell::BasicLstmCell`] does) is used
/// that way; the result equals stepping.
///
/// ```
/// use recurrent::cell::BasicLstmCell;
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 3, 5).unwrap();
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 7, 3])));
/// let (outputs, state) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default().sequence_length(&[7, 4])).unwrap();
/// assert_eq!(tape.shape(outputs), vec![2, 7, 5]);
/// // Example 1 stopped after 4 steps: its later outputs are zero.
/// assert!(tape.value(outputs).slice(ndarray::s![1, 4.., ..]).iter().all(|&v| v == 0.0));
/// assert_eq!(tape.shape(state.h), vec![2, 5]);
/// ```
pub fn dynamic_rnn<T: Scalar, C: Cell>(
    tape: &Tape<'_, T>,
    cell: &C,
    inputs: Var,
    options: RnnOptions<'_, C::State>,
) -> Result<(Var, C::State)> {
    let RnnOptions {
        initial_state,
        sequence_length,
        time_major,
    } = options;
    let shape = tape.shape(inputs);
    let layout = if time_major {
        "[time, batch, input_size]"
    } else {
        "[batch, time, input_size]"
    };
    if shape.len() != 3 || shape[2] != cell.input_size() {
        return Err(Error::shape(
            "dynamic_rnn",
            format!("inputs {layout} with input_size {}", cell.input_size()),
            &shape,
        ));
    }
    let (time_axis, batch_axis) = if time_major { (0, 1) } else { (1, 0) };
    let (steps, batch) = (shape[time_axis], shape[batch_axis]);
    if steps == 0 {
        return Err(Error::invalid("dynamic_rnn needs at least one time step"));
    }
    if let Some(l) = sequence_length {
        check_lengths(l, batch, steps)?;
    }
    let state = self::initial_state(tape, cell, initial_state, batch)?;
    if let Some(result) = cell.dynamic_sequence(tape, inputs, &state, sequence_length, time_major) {
        return result;
    }
    let steps_in = tape.unstack(inputs, time_axis)?;
    let mut step_options = RnnOptions::default().initial_state(state);
    step_options.sequence_length = sequence_length;
    let (outputs, state) = static_rnn(tape, cell, &steps_in, step_options)?;
    Ok((tape.stack(&outputs, time_axis)?, state))
}

/// Bidirectional [`dynamic_rnn`] (`tf.nn.bidirectional_dynamic_rnn`).
///
/// The backward cell reads each example reversed up to its own length, and its outputs are
/// reversed back, so step `t` of `out_bw` belongs to input step `t`. Returns
/// `((out_fw, out_bw), (state_fw, state_bw))`; concatenate the outputs on the last axis for
/// TensorFlow's usual `[batch, time, 2 * units]`.
#[allow(clippy::type_complexity)]
pub fn bidirectional_dynamic_rnn<T: Scalar, F: Cell, B: Cell>(
    tape: &Tape<'_, T>,
    cell_fw: &F,
    cell_bw: &B,
    inputs: Var,
    options: BidirectionalOptions<'_, F::State, B::State>,
) -> Result<((Var, Var), (F::State, B::State))> {
    let BidirectionalOptions {
        initial_state_fw,
        initial_state_bw,
        sequence_length,
        time_major,
    } = options;
    let fw_options = RnnOptions {
        initial_state: initial_state_fw,
        sequence_length,
        time_major,
    };
    let (out_fw, state_fw) = dynamic_rnn(tape, cell_fw, inputs, fw_options)
        .map_err(|e| e.within("the forward cell of bidirectional_dynamic_rnn"))?;
    let shape = tape.shape(inputs);
    let (time_axis, batch_axis) = if time_major { (0, 1) } else { (1, 0) };
    let full;
    let lengths = match sequence_length {
        Some(l) => l,
        None => {
            full = vec![shape[time_axis]; shape[batch_axis]];
            &full
        }
    };
    let reversed = tape.reverse_sequence(inputs, lengths, time_axis, batch_axis)?;
    let (out_bw, state_bw) = dynamic_rnn(
        tape,
        cell_bw,
        reversed,
        RnnOptions {
            initial_state: initial_state_bw,
            sequence_length,
            time_major,
        },
    )
    .map_err(|e| e.within("the backward cell of bidirectional_dynamic_rnn"))?;
    let out_bw = tape.reverse_sequence(out_bw, lengths, time_axis, batch_axis)?;
    Ok(((out_fw, out_bw), (state_fw, state_bw)))
}

/// Bidirectional [`static_rnn`] (`tf.nn.static_bidirectional_rnn`): per-step outputs
/// `concat([fw_t, bw_t], axis 1)` and both final states.
#[allow(clippy::type_complexity)]
pub fn static_bidirectional_rnn<T: Scalar, F: Cell, B: Cell>(
    tape: &Tape<'_, T>,
    cell_fw: &F,
    cell_bw: &B,
    inputs: &[Var],
    options: BidirectionalOptions<'_, F::State, B::State>,
) -> Result<(Vec<Var>, F::State, B::State)> {
    let BidirectionalOptions {
        initial_state_fw,
        initial_state_bw,
        sequence_length,
        time_major,
    } = options;
    if time_major {
        return Err(Error::invalid(
            "static_bidirectional_rnn: time_major does not apply to a list of per-step inputs",
        ));
    }
    let fw_options = RnnOptions {
        initial_state: initial_state_fw,
        sequence_length,
        time_major: false,
    };
    let (out_fw, state_fw) = static_rnn(tape, cell_fw, inputs, fw_options)
        .map_err(|e| e.within("the forward cell of static_bidirectional_rnn"))?;
    let reversed = reverse_steps(tape, inputs, sequence_length)?;
    let bw_options = RnnOptions {
        initial_state: initial_state_bw,
        sequence_length,
        time_major: false,
    };
    let (out_bw, state_bw) = static_rnn(tape, cell_bw, &reversed, bw_options)
        .map_err(|e| e.within("the backward cell of static_bidirectional_rnn"))?;
    let out_bw = reverse_steps(tape, &out_bw, sequence_length)?;
    let outputs = out_fw
        .iter()
        .zip(&out_bw)
        .map(|(&f, &b)| tape.concat(&[f, b], 1))
        .collect::<Result<Vec<_>>>()?;
    Ok((outputs, state_fw, state_bw))
}

/// The options of [`stack_bidirectional_dynamic_rnn`] and [`stack_bidirectional_rnn`]: one
/// initial state per layer and direction (`initial_states_fw`, `initial_states_bw`), the
/// sequence lengths every layer uses, and `time_major` (dynamic only).
///
/// `F` and `B` are the forward and backward cells' state types.
#[derive(Debug, Clone)]
pub struct StackedBidirectionalOptions<'a, F, B> {
    /// The forward cells' initial states, one per layer (zero states if `None`).
    pub initial_states_fw: Option<Vec<F>>,
    /// The backward cells' initial states, one per layer.
    pub initial_states_bw: Option<Vec<B>>,
    /// Each example's number of valid steps, used by every layer.
    pub sequence_length: Option<&'a [usize]>,
    /// Time-major inputs and outputs ([`stack_bidirectional_dynamic_rnn`] only).
    pub time_major: bool,
}

impl<F, B> Default for StackedBidirectionalOptions<'_, F, B> {
    fn default() -> Self {
        StackedBidirectionalOptions {
            initial_states_fw: None,
            initial_states_bw: None,
            sequence_length: None,
            time_major: false,
        }
    }
}

impl<'a, F, B> StackedBidirectionalOptions<'a, F, B> {
    /// The forward cells' initial states, one per layer.
    pub fn initial_states_fw(mut self, states: Vec<F>) -> Self {
        self.initial_states_fw = Some(states);
        self
    }

    /// The backward cells' initial states, one per layer.
    pub fn initial_states_bw(mut self, states: Vec<B>) -> Self {
        self.initial_states_bw = Some(states);
        self
    }

    /// Each example's number of valid steps.
    pub fn sequence_length(mut self, lengths: &'a [usize]) -> Self {
        self.sequence_length = Some(lengths);
        self
    }

    /// Time-major inputs and outputs.
    pub fn time_major(mut self, time_major: bool) -> Self {
        self.time_major = time_major;
        self
    }
}

/// Per-layer initial states as a list of `Option`s, checking their number.
fn per_layer<S>(
    op: &'static str,
    what: &str,
    states: Option<Vec<S>>,
    layers: usize,
) -> Result<Vec<Option<S>>> {
    match states {
        None => Ok((0..layers).map(|_| None).collect()),
        Some(states) if states.len() == layers => Ok(states.into_iter().map(Some).collect()),
        Some(states) => Err(Error::Shape {
            op,
            expected: format!("{what}: one state per layer ({layers})"),
            got: format!("{} states", states.len()),
        }),
    }
}

/// Checks that the two directions have the same, non-zero number of layers.
fn check_stack(op: &'static str, fw: usize, bw: usize) -> Result<()> {
    if fw == 0 || fw != bw {
        return Err(Error::Shape {
            op,
            expected: "as many backward cells as forward cells, at least one".into(),
            got: format!("{fw} forward and {bw} backward cells"),
        });
    }
    Ok(())
}

/// Stacked bidirectional layers over `inputs` `[batch, time, input_size]` (time-major when
/// asked): layer `k + 1` reads `concat([fw_k, bw_k], axis = -1)` of layer `k`
/// (`tf.contrib.rnn.stack_bidirectional_dynamic_rnn`).
///
/// Returns the top layer's concatenated outputs `[batch, time, fw_units + bw_units]` and every
/// layer's final forward and backward states, bottom first. Layer `k + 1`'s cells must take
/// `fw_units + bw_units` of layer `k` as input.
///
/// ```
/// use recurrent::cell::BasicLstmCell;
/// use recurrent::rnn::{stack_bidirectional_dynamic_rnn, StackedBidirectionalOptions};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let mut cell = |scope: &str, input| BasicLstmCell::new(&mut params, scope, input, 4);
/// let fw = vec![cell("stack/cell_0/fw/lstm", 3)?, cell("stack/cell_1/fw/lstm", 8)?];
/// let bw = vec![cell("stack/cell_0/bw/lstm", 3)?, cell("stack/cell_1/bw/lstm", 8)?];
/// let tape = Tape::inference(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 5, 3])));
/// let options = StackedBidirectionalOptions::default().sequence_length(&[5, 3]);
/// let (outputs, states_fw, states_bw) = stack_bidirectional_dynamic_rnn(&tape, &fw, &bw, x, options)?;
/// assert_eq!(tape.shape(outputs), vec![2, 5, 8]);
/// assert_eq!((states_fw.len(), states_bw.len()), (2, 2));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn stack_bidirectional_dynamic_rnn<T: Scalar, F: Cell, B: Cell>(
    tape: &Tape<'_, T>,
    cells_fw: &[F],
    cells_bw: &[B],
    inputs: Var,
    options: StackedBidirectionalOptions<'_, F::State, B::State>,
) -> Result<(Var, Vec<F::State>, Vec<B::State>)> {
    const OP: &str = "stack_bidirectional_dynamic_rnn";
    check_stack(OP, cells_fw.len(), cells_bw.len())?;
    let layers = cells_fw.len();
    let initial_fw = per_layer(OP, "initial_states_fw", options.initial_states_fw, layers)?;
    let initial_bw = per_layer(OP, "initial_states_bw", options.initial_states_bw, layers)?;
    let (mut x, mut states_fw, mut states_bw) = (inputs, Vec::new(), Vec::new());
    for (k, ((fw, bw), (init_fw, init_bw))) in cells_fw
        .iter()
        .zip(cells_bw)
        .zip(initial_fw.into_iter().zip(initial_bw))
        .enumerate()
    {
        let layer = BidirectionalOptions {
            initial_state_fw: init_fw,
            initial_state_bw: init_bw,
            sequence_length: options.sequence_length,
            time_major: options.time_major,
        };
        let ((out_fw, out_bw), (state_fw, state_bw)) =
            bidirectional_dynamic_rnn(tape, fw, bw, x, layer)
                .map_err(|e| e.within(format!("layer {k} of {OP}")))?;
        x = tape.concat(&[out_fw, out_bw], 2)?;
        states_fw.push(state_fw);
        states_bw.push(state_bw);
    }
    Ok((x, states_fw, states_bw))
}

/// Stacked bidirectional layers over a list of per-step inputs `[batch, input_size]`
/// (`tf.contrib.rnn.stack_bidirectional_rnn`): layer `k + 1` reads the per-step
/// `concat([fw_t, bw_t], axis 1)` of layer `k`. Returns the top layer's per-step outputs
/// `[batch, fw_units + bw_units]` and every layer's final states, bottom first; each layer
/// reads its steps through [`static_bidirectional_rnn`].
///
/// ```
/// use recurrent::cell::{Cell, GruCell, LstmCellConfig};
/// use recurrent::rnn::{stack_bidirectional_rnn, StackedBidirectionalOptions};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f64>::new(0);
/// // Peephole LSTMs forward (projected to 2), GRUs backward (3): layer 1 reads 2 + 3 inputs.
/// let mut lstm = |scope: &str, input| {
///     LstmCellConfig::new(4).with_peepholes(true).with_num_proj(2).init(&mut params, scope, input)
/// };
/// let fw = vec![lstm("stack/cell_0/fw/lstm_cell", 3)?, lstm("stack/cell_1/fw/lstm_cell", 5)?];
/// let bw = vec![
///     GruCell::new(&mut params, "stack/cell_0/bw/gru_cell", 3, 3)?,
///     GruCell::new(&mut params, "stack/cell_1/bw/gru_cell", 5, 3)?,
/// ];
/// let tape = Tape::inference(&params);
/// let steps: Vec<_> = (0..4)
///     .map(|_| tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 3]))))
///     .collect();
/// let options = StackedBidirectionalOptions::default().sequence_length(&[4, 2]);
/// let (outputs, states_fw, _) = stack_bidirectional_rnn(&tape, &fw, &bw, &steps, options)?;
/// assert_eq!((outputs.len(), tape.shape(outputs[0])), (4, vec![2, 5]));
/// assert_eq!(tape.shape(states_fw[1].h), vec![2, 2]); // the projected h
/// // Past the second example's length its outputs are zero.
/// assert!(tape.to_array(outputs[3]).index_axis(ndarray::Axis(0), 1).iter().all(|&v| v == 0.0));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn stack_bidirectional_rnn<T: Scalar, F: Cell, B: Cell>(
    tape: &Tape<'_, T>,
    cells_fw: &[F],
    cells_bw: &[B],
    inputs: &[Var],
    options: StackedBidirectionalOptions<'_, F::State, B::State>,
) -> Result<(Vec<Var>, Vec<F::State>, Vec<B::State>)> {
    const OP: &str = "stack_bidirectional_rnn";
    check_stack(OP, cells_fw.len(), cells_bw.len())?;
    let layers = cells_fw.len();
    let initial_fw = per_layer(OP, "initial_states_fw", options.initial_states_fw, layers)?;
    let initial_bw = per_layer(OP, "initial_states_bw", options.initial_states_bw, layers)?;
    let (mut steps, mut states_fw, mut states_bw) = (inputs.to_vec(), Vec::new(), Vec::new());
    for (k, ((fw, bw), (init_fw, init_bw))) in cells_fw
        .iter()
        .zip(cells_bw)
        .zip(initial_fw.into_iter().zip(initial_bw))
        .enumerate()
    {
        let layer = BidirectionalOptions {
            initial_state_fw: init_fw,
            initial_state_bw: init_bw,
            sequence_length: options.sequence_length,
            time_major: options.time_major,
        };
        let (outputs, state_fw, state_bw) = static_bidirectional_rnn(tape, fw, bw, &steps, layer)
            .map_err(|e| e.within(format!("layer {k} of {OP}")))?;
        steps = outputs;
        states_fw.push(state_fw);
        states_bw.push(state_bw);
    }
    Ok((steps, states_fw, states_bw))
}

/// Reverses a list of steps, per example up to its length when lengths are given.
fn reverse_steps<T: Scalar>(
    tape: &Tape<'_, T>,
    steps: &[Var],
    sequence_length: Option<&[usize]>,
) -> Result<Vec<Var>> {
    match sequence_length {
        None => Ok(steps.iter().rev().copied().collect()),
        Some(lengths) => {
            let stacked = tape.stack(steps, 0)?;
            let reversed = tape.reverse_sequence(stacked, lengths, 0, 1)?;
            tape.unstack(reversed, 0)
        }
    }
}

/// The output at each example's last valid step: row `b` of the result is
/// `outputs[b, sequence_length[b] - 1]` for batch-major `outputs` `[batch, time, units]`, or the
/// last step for every example when `sequence_length` is `None`. An example of length 0 gets
/// its (zero) output at step 0.
pub fn last_relevant_output<T: Scalar>(
    tape: &Tape<'_, T>,
    outputs: Var,
    sequence_length: Option<&[usize]>,
) -> Result<Var> {
    let shape = tape.shape(outputs);
    if shape.len() != 3 || shape[1] == 0 {
        return Err(Error::shape(
            "last_relevant_output",
            "batch-major outputs [batch, time, units]",
            &shape,
        ));
    }
    let index: Vec<usize> = match sequence_length {
        Some(l) => check_lengths(l, shape[0], shape[1])?
            .iter()
            .map(|&len| len.max(1) - 1)
            .collect(),
        None => vec![shape[1] - 1; shape[0]],
    };
    tape.gather_rows(outputs, &index)
}
