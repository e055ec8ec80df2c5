//! `ResidualWrapper`, `HighwayWrapper` and `ZoneoutWrapper`: wrappers that change how a cell's
//! output or state is formed from its input and previous state.

use ndarray::{ArrayD, IxDyn};

use super::{Cell, RnnState};
use crate::init::Initializer;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// Checks that a wrapped cell's output is as wide as its input (what a residual or highway
/// connection adds together).
fn check_same_width<C: Cell>(op: &'static str, cell: &C) -> Result<usize> {
    let (input, output) = (cell.input_size(), cell.output_size());
    if input != output {
        return Err(Error::Shape {
            op,
            expected: format!("a cell whose output width equals its input width ({input})"),
            got: format!("output width {output}"),
        });
    }
    Ok(input)
}

/// `[batch, time, 1]` (or `[time, batch, 1]`) truth of "step t of example b is within its
/// length", for masking a whole sequence's outputs as the runners do.
fn alive_mask(shape: &[usize], lengths: &[usize], time_major: bool) -> ArrayD<bool> {
    let (t_axis, b_axis) = if time_major { (0, 1) } else { (1, 0) };
    ArrayD::from_shape_fn(IxDyn(&[shape[0], shape[1], 1]), |i| {
        i[t_axis] < lengths[i[b_axis]]
    })
}

/// Zeroes the outputs past each example's length (a whole-sequence wrapper's outputs must be
/// what stepping gives).
fn mask_outputs<T: Scalar>(
    tape: &Tape<'_, T>,
    outputs: Var,
    sequence_length: Option<&[usize]>,
    time_major: bool,
) -> Result<Var> {
    match sequence_length {
        None => Ok(outputs),
        Some(lengths) => {
            let shape = tape.shape(outputs);
            let alive = alive_mask(&shape, lengths, time_major);
            let zero = tape.constant(crate::tensor::try_full(
                "sequence_length mask",
                &shape,
                T::zero(),
            )?);
            tape.select(&alive, outputs, zero)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ResidualWrapper
// ---------------------------------------------------------------------------------------------

/// A residual connection around a cell (`tf.nn.rnn_cell.ResidualWrapper`): the output is the
/// input plus the cell's output; the state is the cell's.
///
/// # Equations
/// ```text
/// (out, state') = cell(x, state);    output = x + out
/// ```
///
/// # Shapes
/// The cell's output width must equal its input width (checked by [`ResidualWrapper::new`]);
/// input and output `[batch, input_size]`, state as the cell's. No parameters of its own.
/// TensorFlow's optional `residual_fn` is not offered: the sum is the only combination.
///
/// Under [`crate::rnn::dynamic_rnn`] the wrapped cell runs its own whole-sequence path and the
/// input is added to all steps at once.
///
/// ```
/// use recurrent::cell::{BasicLstmCell, Cell, ResidualWrapper};
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let lstm = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 8, 8).unwrap();
/// let cell = ResidualWrapper::new(lstm).unwrap();
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 5, 8])));
/// let (outputs, _) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default()).unwrap();
/// assert_eq!(tape.shape(outputs), vec![2, 5, 8]);
/// // A cell of another output width cannot be wrapped.
/// let wide = BasicLstmCell::new(&mut params, "wide", 8, 9).unwrap();
/// assert!(ResidualWrapper::new(wide).is_err());
/// ```
///
/// Reference: Wu et al., "Google's Neural Machine Translation System" (2016), residual
/// connections between stacked LSTM layers.
#[derive(Debug, Clone)]
pub struct ResidualWrapper<C> {
    cell: C,
}

impl<C: Cell> ResidualWrapper<C> {
    /// Wraps `cell`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the cell's output width differs from its input width.
    pub fn new(cell: C) -> Result<Self> {
        check_same_width("ResidualWrapper", &cell)?;
        Ok(ResidualWrapper { cell })
    }

    /// The wrapped cell.
    pub fn cell(&self) -> &C {
        &self.cell
    }
}

impl<C: Cell> Cell for ResidualWrapper<C> {
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
        let (out, new_state) = self.cell.call(tape, input, state)?;
        Ok((tape.add(input, out)?, new_state))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        self.cell.param_ids()
    }

    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &C::State,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, C::State)>> {
        let run = || {
            let (out, state) = crate::rnn::dynamic_rnn(
                tape,
                &self.cell,
                inputs,
                crate::rnn::RnnOptions {
                    initial_state: Some(state.clone()),
                    sequence_length,
                    time_major,
                },
            )?;
            let sum = tape.add(inputs, out)?;
            Ok((mask_outputs(tape, sum, sequence_length, time_major)?, state))
        };
        Some(run())
    }
}

// ---------------------------------------------------------------------------------------------
// HighwayWrapper
// ---------------------------------------------------------------------------------------------

/// The options of a [`HighwayWrapper`], with TensorFlow's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HighwayOptions {
    /// Use `1 - carry` as the transform gate (default true); otherwise the transform gate has
    /// weights of its own.
    pub couple_carry_transform_gates: bool,
    /// The initial value of `carry_b` (default 1.0); `transform_b` starts at its negative.
    pub carry_bias_init: f64,
}

impl Default for HighwayOptions {
    fn default() -> Self {
        HighwayOptions {
            couple_carry_transform_gates: true,
            carry_bias_init: 1.0,
        }
    }
}

/// A highway connection around a cell (`tf.contrib.rnn.HighwayWrapper`, after Srivastava,
/// Greff & Schmidhuber, 2015): a learnt gate mixes the input into the cell's output.
///
/// # Equations
/// ```text
/// (out, state') = cell(x, state)
/// carry     = σ(x @ carry_w + carry_b)
/// transform = 1 - carry                                 (couple_carry_transform_gates)
///           = σ(x @ transform_w + transform_b)          (otherwise)
/// output    = x ⊙ carry + out ⊙ transform
/// ```
///
/// # Shapes
/// The cell's output width `n` must equal its input width. `carry_w` `[n, n]` (Glorot
/// uniform), `carry_b` `[n]` (`carry_bias_init`), and without coupling `transform_w` `[n, n]`
/// (Glorot uniform) and `transform_b` `[n]` (`-carry_bias_init`). TensorFlow creates them in
/// the scope the wrapper is called in (`rnn` under `dynamic_rnn`: `rnn/carry_w`, ...), beside
/// the wrapped cell's own scope. Input and output `[batch, n]`; the state is the cell's.
///
/// Under [`crate::rnn::dynamic_rnn`] the wrapped cell runs its own whole-sequence path and the
/// gates of all steps are one matrix product.
///
/// ```
/// use recurrent::cell::{BasicLstmCell, Cell, HighwayOptions, HighwayWrapper};
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let lstm = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 8, 8).unwrap();
/// let cell = HighwayWrapper::new(&mut params, "rnn", lstm, HighwayOptions::default()).unwrap();
/// assert_eq!(params.value(params.id("rnn/carry_b").unwrap())[[0]], 1.0);
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 5, 8])));
/// let (outputs, _) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default().sequence_length(&[5, 3])).unwrap();
/// assert_eq!(tape.shape(outputs), vec![2, 5, 8]);
/// assert_eq!(cell.param_ids().len(), 4); // the LSTM's two and carry_w, carry_b
/// ```
#[derive(Debug, Clone)]
pub struct HighwayWrapper<C> {
    cell: C,
    carry_w: ParamId,
    carry_b: ParamId,
    transform: Option<(ParamId, ParamId)>,
}

impl<C: Cell> HighwayWrapper<C> {
    /// Wraps `cell`, creating `{scope}/carry_w`, `{scope}/carry_b` and, without coupled gates,
    /// `{scope}/transform_w`, `{scope}/transform_b`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the cell's output width differs from its input width,
    /// [`Error::InvalidArgument`] for a `carry_bias_init` that is not finite or a taken name
    /// (the store is then left as it was).
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        cell: C,
        options: HighwayOptions,
    ) -> Result<Self> {
        let n = check_same_width("HighwayWrapper", &cell)?;
        let b = options.carry_bias_init;
        if !b.is_finite() {
            return Err(Error::invalid(format!(
                "HighwayWrapper: carry_bias_init must be finite, got {b}"
            )));
        }
        let scope = scope.into();
        let mut names = vec!["carry_w", "carry_b"];
        if !options.couple_carry_transform_gates {
            names.extend(["transform_w", "transform_b"]);
        }
        params.check_free("HighwayWrapper", &scope, &names)?;
        let mut values = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let init = match k {
                0 | 2 => Initializer::GlorotUniform,
                1 => Initializer::Constant(b),
                _ => Initializer::Constant(-b),
            };
            let shape: &[usize] = if k % 2 == 0 { &[n, n] } else { &[n] };
            values.push((*name, init.sample::<T>(shape, params.rng())?));
        }
        let ids = super::create_all(params, &scope, values)?;
        let transform = (ids.len() == 4).then(|| (ids[2], ids[3]));
        Self::from_params(params, cell, ids[0], ids[1], transform)
    }

    /// Wraps `cell` with gate weights already in the store (`transform`: `(transform_w,
    /// transform_b)` for uncoupled gates, `None` for coupled ones).
    ///
    /// # Errors
    /// [`Error::Shape`] for widths that do not fit, [`Error::InvalidArgument`] for ids of
    /// another store.
    pub fn from_params<T: Scalar>(
        params: &ParamStore<T>,
        cell: C,
        carry_w: ParamId,
        carry_b: ParamId,
        transform: Option<(ParamId, ParamId)>,
    ) -> Result<Self> {
        let n = check_same_width("HighwayWrapper", &cell)?;
        let mut pairs = vec![(carry_w, carry_b)];
        pairs.extend(transform);
        for (w, b) in pairs {
            params.check_ids("HighwayWrapper::from_params", &[w, b])?;
            for (id, shape) in [(w, vec![n, n]), (b, vec![n])] {
                if params.value(id).shape() != shape {
                    return Err(Error::shape(
                        "HighwayWrapper",
                        format!("{} of shape {shape:?}", params.name(id)),
                        params.value(id).shape(),
                    ));
                }
            }
        }
        Ok(HighwayWrapper {
            cell,
            carry_w,
            carry_b,
            transform,
        })
    }

    /// The wrapped cell.
    pub fn cell(&self) -> &C {
        &self.cell
    }

    /// `x ⊙ carry + out ⊙ transform` for `x`, `out` `[rows, n]`.
    fn highway<T: Scalar>(&self, tape: &Tape<'_, T>, x: Var, out: Var) -> Result<Var> {
        let gate = |w: ParamId, b: ParamId| -> Result<Var> {
            Ok(tape.sigmoid(tape.bias_add(tape.matmul(x, tape.param(w))?, tape.param(b))?))
        };
        let carry = gate(self.carry_w, self.carry_b)?;
        let transform = match self.transform {
            None => tape.one_minus(carry),
            Some((w, b)) => gate(w, b)?,
        };
        tape.add(tape.mul(x, carry)?, tape.mul(out, transform)?)
    }
}

impl<C: Cell> Cell for HighwayWrapper<C> {
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
        let (out, new_state) = self.cell.call(tape, input, state)?;
        Ok((self.highway(tape, input, out)?, new_state))
    }

    /// The wrapped cell's, then `carry_w`, `carry_b` (and `transform_w`, `transform_b`).
    fn param_ids(&self) -> Vec<ParamId> {
        let mut ids = self.cell.param_ids();
        ids.extend([self.carry_w, self.carry_b]);
        if let Some((w, b)) = self.transform {
            ids.extend([w, b]);
        }
        ids
    }

    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &C::State,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, C::State)>> {
        let run = || {
            let (out, state) = crate::rnn::dynamic_rnn(
                tape,
                &self.cell,
                inputs,
                crate::rnn::RnnOptions {
                    initial_state: Some(state.clone()),
                    sequence_length,
                    time_major,
                },
            )?;
            let shape = tape.shape(inputs);
            let rows = [shape[0] * shape[1], shape[2]];
            let mixed = self.highway(
                tape,
                tape.reshape(inputs, &rows)?,
                tape.reshape(out, &rows)?,
            )?;
            let mixed = tape.reshape(mixed, &shape)?;
            Ok((
                mask_outputs(tape, mixed, sequence_length, time_major)?,
                state,
            ))
        };
        Some(run())
    }
}

// ---------------------------------------------------------------------------------------------
// ZoneoutWrapper
// ---------------------------------------------------------------------------------------------

/// Zoneout around a cell (Krueger et al., 2016): each unit of the state keeps its previous
/// value with probability `z` instead of taking the new one. No mainstream framework ships it.
///
/// # Equations
/// For each state tensor, with `z` its rate (`zoneout_c` for an LSTM's memory `c`,
/// `zoneout_h` for every other tensor), `prev` its value before the step and `new` the cell's:
///
/// ```text
/// training:   d ~ Bernoulli(z) per element;   state' = d ⊙ prev + (1 - d) ⊙ new
/// inference:  state' = z ⊙ prev + (1 - z) ⊙ new          (the expectation)
/// ```
///
/// The output is the zoned-out `h` when the cell's output is its state's `h` (LSTMs, GRUs,
/// [`super::MultiCell`] stacks of them); otherwise the cell's output is left as it is. Masks
/// come from the tape's seeded generator ([`Tape::with_seed`]), new at every step; the gradient
/// flows to `prev` where a unit was zoned out and to `new` elsewhere. Which tensors count as
/// memory is [`RnnState::droppable`]'s answer (the ones state dropout spares).
///
/// # Shapes
/// Those of the wrapped cell; no parameters of its own.
///
/// ```
/// use recurrent::cell::{BasicLstmCell, Cell, ZoneoutWrapper};
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let lstm = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 8, 16).unwrap();
/// let cell = ZoneoutWrapper::new(lstm, 0.5, 0.05).unwrap();
/// assert!(ZoneoutWrapper::new(cell.cell().clone(), 1.5, 0.0).is_err());
/// let tape = Tape::new(&params).with_seed(3);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[4, 6, 8])));
/// let (outputs, state) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default()).unwrap();
/// assert_eq!(tape.shape(outputs), vec![4, 6, 16]);
/// assert_eq!(tape.shape(state.c), vec![4, 16]);
/// ```
///
/// Reference: Krueger et al., "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
/// Activations" (2016).
#[derive(Debug, Clone)]
pub struct ZoneoutWrapper<C> {
    cell: C,
    zoneout_c: f64,
    zoneout_h: f64,
}

impl<C: Cell> ZoneoutWrapper<C> {
    /// Wraps `cell` with the zoneout rates of the memory `c` and of the other state tensors.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a rate outside `[0, 1]`.
    pub fn new(cell: C, zoneout_c: f64, zoneout_h: f64) -> Result<Self> {
        for (what, z) in [("zoneout_c", zoneout_c), ("zoneout_h", zoneout_h)] {
            if !(0.0..=1.0).contains(&z) {
                return Err(Error::invalid(format!(
                    "ZoneoutWrapper: {what} must be in [0, 1], got {z}"
                )));
            }
        }
        Ok(ZoneoutWrapper {
            cell,
            zoneout_c,
            zoneout_h,
        })
    }

    /// The wrapped cell.
    pub fn cell(&self) -> &C {
        &self.cell
    }

    /// The rates `(zoneout_c, zoneout_h)`.
    pub fn rates(&self) -> (f64, f64) {
        (self.zoneout_c, self.zoneout_h)
    }

    fn zone<T: Scalar>(&self, tape: &Tape<'_, T>, prev: Var, new: Var, z: f64) -> Result<Var> {
        if z == 0.0 {
            return Ok(new);
        }
        let (ps, ns) = (tape.shape(prev), tape.shape(new));
        if ps != ns {
            return Err(Error::shape(
                "ZoneoutWrapper",
                format!("a new state tensor of the previous one's shape {ps:?}"),
                &ns,
            ));
        }
        if tape.is_training() {
            let keep_prev = tape.bernoulli_mask(&ps, z)?;
            tape.select(&keep_prev, prev, new)
        } else {
            tape.add(
                tape.scale(prev, T::from_f64_lossy(z)),
                tape.scale(new, T::from_f64_lossy(1.0 - z)),
            )
        }
    }
}

impl<C: Cell> Cell for ZoneoutWrapper<C> {
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
        let (out, new_state) = self.cell.call(tape, input, state)?;
        let (prev, new) = (state.flatten(), new_state.flatten());
        let mut output = out;
        let mut zoned = Vec::with_capacity(new.len());
        for ((&p, &n), not_memory) in prev.iter().zip(&new).zip(new_state.droppable()) {
            let z = if not_memory {
                self.zoneout_h
            } else {
                self.zoneout_c
            };
            let v = self.zone(tape, p, n, z)?;
            if n == out {
                output = v;
            }
            zoned.push(v);
        }
        Ok((output, new_state.rebuild(&zoned)))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        self.cell.param_ids()
    }
}
