//! Recurrent cells: the [`Cell`] trait and TensorFlow 1.x's cells and wrappers.
//!
//! A cell maps `(input_t, state_{t-1})` to `(output_t, state_t)` on a [`Tape`]. The runners in
//! [`crate::rnn`] unroll any cell over a sequence, so a new cell written with tape ops works with
//! every runner, wrapper and optimizer, and gets its gradient for free:
//!
//! ```
//! use recurrent::cell::Cell;
//! use recurrent::init::Initializer;
//! use recurrent::{rnn, ParamId, ParamStore, Result, Scalar, Tape, Var};
//!
//! /// h' = tanh(x @ w + h)  — a minimal recurrent cell built from tape ops.
//! struct TinyCell { w: ParamId, units: usize, input: usize }
//!
//! impl Cell for TinyCell {
//!     type State = Var;
//!     fn input_size(&self) -> usize { self.input }
//!     fn output_size(&self) -> usize { self.units }
//!     fn state_size(&self) -> Vec<usize> { vec![self.units] }
//!     fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<Var> {
//!         Ok(tape.constant(ndarray::ArrayD::zeros(ndarray::IxDyn(&[batch, self.units]))))
//!     }
//!     fn call<T: Scalar>(&self, tape: &Tape<'_, T>, x: Var, h: &Var) -> Result<(Var, Var)> {
//!         let h = tape.tanh(tape.add(tape.matmul(x, tape.param(self.w))?, *h)?);
//!         Ok((h, h))
//!     }
//!     fn param_ids(&self) -> Vec<ParamId> { vec![self.w] }
//! }
//!
//! let mut params = ParamStore::<f32>::new(0);
//! let w = params.create("tiny/w", &[3, 4], Initializer::GlorotUniform).unwrap();
//! let cell = TinyCell { w, units: 4, input: 3 };
//! let tape = Tape::new(&params);
//! let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 5, 3])));
//! let (outputs, state) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default()).unwrap();
//! assert_eq!(tape.shape(outputs), vec![2, 5, 4]);
//! let grads = tape.backward(tape.sum(state)).unwrap();
//! assert!(grads.get(w).is_some());
//! ```

mod basic_rnn;
mod boxed;
mod dropout;
mod gru;
mod layer_norm_lstm;
mod lstm;
mod lstm_cell;
mod multi;
mod wrappers;

pub use basic_rnn::BasicRnnCell;
pub use boxed::{BoxedCell, DynState};
pub use dropout::DropoutWrapper;
pub use gru::{GruCell, GruCellConfig};
pub use layer_norm_lstm::{
    LayerNormBasicLstmCell, LayerNormLstmConfig, LayerNormLstmWeights, LAYER_NORM_EPSILON,
    LAYER_NORM_SCOPES,
};
pub use lstm::{BasicLstmCell, LstmState};
pub use lstm_cell::{LstmCell, LstmCellConfig, LstmCellWeights, LstmPeepholes};
pub use multi::MultiCell;
pub use wrappers::{HighwayOptions, HighwayWrapper, ResidualWrapper, ZoneoutWrapper};

use ndarray::ArrayD;

use crate::params::{ParamStore, Scope};
use crate::{Error, ParamId, Result, Scalar, Tape, Var};

/// A recurrent state: a fixed structure of tensors that runners can flatten, mask and rebuild.
pub trait RnnState: Clone + std::fmt::Debug {
    /// The state's tensors in a fixed order.
    fn flatten(&self) -> Vec<Var>;

    /// A state of the same structure made of `vars` (as many as [`RnnState::flatten`] gives).
    fn rebuild(&self, vars: &[Var]) -> Self;

    /// Which of the flattened tensors state dropout may touch (TensorFlow never drops an LSTM's
    /// memory `c`). All by default.
    fn droppable(&self) -> Vec<bool> {
        vec![true; self.flatten().len()]
    }
}

impl RnnState for Var {
    fn flatten(&self) -> Vec<Var> {
        vec![*self]
    }
    fn rebuild(&self, vars: &[Var]) -> Self {
        vars[0]
    }
}

impl<S: RnnState> RnnState for Vec<S> {
    fn flatten(&self) -> Vec<Var> {
        self.iter().flat_map(RnnState::flatten).collect()
    }
    fn rebuild(&self, vars: &[Var]) -> Self {
        let mut rest = vars;
        self.iter()
            .map(|s| {
                let n = s.flatten().len();
                let (mine, tail) = rest.split_at(n);
                rest = tail;
                s.rebuild(mine)
            })
            .collect()
    }
    fn droppable(&self) -> Vec<bool> {
        self.iter().flat_map(RnnState::droppable).collect()
    }
}

/// A recurrent cell (`tf.nn.rnn_cell.RNNCell`).
///
/// The methods are generic over the element type, so one cell serves `f32` training and `f64`
/// gradient checks.
///
/// Implement [`Cell::call`] with tape ops and the runners, wrappers and optimizers work with the
/// new cell. [`Cell::dynamic_sequence`] is an optional fast path for running a whole sequence at
/// once.
pub trait Cell {
    /// The state carried between steps.
    type State: RnnState;

    /// The width of the input at each step.
    fn input_size(&self) -> usize;

    /// The width of the output at each step.
    fn output_size(&self) -> usize;

    /// The width of each flattened state tensor (`[c, h]` widths for an LSTM).
    fn state_size(&self) -> Vec<usize>;

    /// The all-zero state for a batch (`cell.zero_state(batch_size, dtype)`).
    ///
    /// # Errors
    /// [`Error::Shape`] naming the cell if `batch` times a state width overflows or cannot be
    /// allocated. (A batch size is the caller's data, so no bound fixed when the cell is built
    /// could rule this out.)
    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<Self::State>;

    /// One step: `input` `[batch, input_size]` and the previous state to the output
    /// `[batch, output_size]` and the new state.
    fn call<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        input: Var,
        state: &Self::State,
    ) -> Result<(Var, Self::State)>;

    /// The parameters the cell reads (used to forbid accidental sharing in [`MultiCell`]).
    fn param_ids(&self) -> Vec<ParamId>;

    /// Runs a whole sequence in one go, if the cell knows a faster way than stepping.
    ///
    /// `inputs` is `[batch, time, input_size]` (`[time, batch, input_size]` when `time_major`)
    /// and the result must equal stepping with [`Cell::call`] under [`crate::rnn::dynamic_rnn`]'s
    /// semantics: outputs past an example's length are zero and its state is carried through.
    /// The default returns `None`, so the runner steps.
    fn dynamic_sequence<T: Scalar>(
        &self,
        _tape: &Tape<'_, T>,
        _inputs: Var,
        _state: &Self::State,
        _sequence_length: Option<&[usize]>,
        _time_major: bool,
    ) -> Option<Result<(Var, Self::State)>> {
        None
    }

    /// This cell as a [`BoxedCell`]: one type for cells of every kind, for stacking different
    /// cells in a [`MultiCell`] or choosing a cell at run time.
    fn boxed(self) -> BoxedCell
    where
        Self: Sized + Send + Sync + 'static,
        Self::State: 'static,
    {
        BoxedCell::new(self)
    }
}

/// Checks that `input` is `[batch, width]` for a cell taking `width` inputs.
pub(crate) fn check_input<T: Scalar>(
    tape: &Tape<'_, T>,
    op: &'static str,
    input: Var,
    width: usize,
) -> Result<usize> {
    let shape = tape.shape(input);
    if shape.len() != 2 || shape[1] != width {
        return Err(Error::shape(
            op,
            format!("an input of shape [batch, {width}]"),
            &shape,
        ));
    }
    Ok(shape[0])
}

/// Checks that every tensor of a state is `[batch, width_k]`.
pub(crate) fn check_state<T: Scalar>(
    tape: &Tape<'_, T>,
    op: &'static str,
    state: &[Var],
    widths: &[usize],
    batch: usize,
) -> Result<()> {
    if state.len() != widths.len() {
        return Err(Error::Shape {
            op,
            expected: format!("a state of {} tensors", widths.len()),
            got: format!("{} tensors", state.len()),
        });
    }
    for (v, &w) in state.iter().zip(widths) {
        let shape = tape.shape(*v);
        if shape != [batch, w] {
            return Err(Error::shape(
                op,
                format!("a state tensor of shape [{batch}, {w}] (batch of the input)"),
                &shape,
            ));
        }
    }
    Ok(())
}

/// A `[batch, width]` zero constant; an [`Error::Shape`] naming `op` if it cannot be allocated.
pub(crate) fn zeros<T: Scalar>(
    op: &'static str,
    tape: &Tape<'_, T>,
    batch: usize,
    width: usize,
) -> Result<Var> {
    Ok(tape.constant(crate::tensor::try_full(op, &[batch, width], T::zero())?))
}

/// The shape `[input_size + num_units, gates * num_units]` of a fused kernel, checked: both
/// sizes positive and neither product nor sum overflowing (an [`Error::InvalidArgument`] naming
/// `op` and the arguments, not a wrapped size). The memory is checked when the parameter is
/// created ([`ParamStore::create`]).
pub(crate) fn kernel_shape(
    op: &'static str,
    input_size: usize,
    num_units: usize,
    gates: usize,
) -> Result<[usize; 2]> {
    if input_size == 0 || num_units == 0 {
        return Err(Error::invalid(format!(
            "{op}: sizes must be positive, got input_size {input_size}, num_units {num_units}"
        )));
    }
    let rows = input_size.checked_add(num_units).ok_or_else(|| {
        Error::invalid(format!(
            "{op}: input_size {input_size} + num_units {num_units} (the kernel's rows) overflows usize"
        ))
    })?;
    let cols = num_units.checked_mul(gates).ok_or_else(|| {
        Error::invalid(format!(
            "{op}: {gates} * num_units {num_units} (the kernel's columns) overflows usize"
        ))
    })?;
    Ok([rows, cols])
}

/// Checks a fused kernel `[input_size + num_units, gates * num_units]` and its bias
/// `[gates * num_units]` (TensorFlow's layout for every cell here), and returns
/// `(input_size, num_units)`.
pub(crate) fn check_kernel_and_bias(
    op: &'static str,
    kernel: &[usize],
    bias: &[usize],
    gates: usize,
) -> Result<(usize, usize)> {
    if bias.len() != 1 || bias[0] == 0 || !bias[0].is_multiple_of(gates) {
        let expected = match gates {
            1 => "a bias of shape [num_units]".to_string(),
            g => format!("a bias of shape [{g} * num_units]"),
        };
        return Err(Error::shape(op, expected, bias));
    }
    let units = bias[0] / gates;
    if kernel.len() != 2 || kernel[1] != gates * units || kernel[0] <= units {
        return Err(Error::shape(
            op,
            format!(
                "a kernel of shape [input_size + {units}, {}]",
                gates * units
            ),
            kernel,
        ));
    }
    Ok((kernel[0] - units, units))
}

/// Adds the arrays as parameters `{scope}/{name}`, all or none
/// ([`ParamStore::create_all_from`]).
pub(crate) fn create_all<T: Scalar>(
    params: &mut ParamStore<T>,
    scope: &Scope,
    named: Vec<(&str, ArrayD<T>)>,
) -> Result<Vec<ParamId>> {
    params.create_all_from(
        named
            .into_iter()
            .map(|(name, value)| (scope.join(name), value))
            .collect(),
    )
}

/// Creates `{scope}/kernel` and `{scope}/bias` from given arrays for a cell with one fused kernel
/// of `gates` blocks (LSTM 4, basic RNN 1): shapes checked first, then all or nothing.
pub(crate) fn create_fused<T: Scalar>(
    op: &'static str,
    params: &mut ParamStore<T>,
    scope: &Scope,
    kernel: ArrayD<T>,
    bias: ArrayD<T>,
    gates: usize,
) -> Result<(ParamId, ParamId)> {
    check_kernel_and_bias(op, kernel.shape(), bias.shape(), gates)?;
    let ids = create_all(params, scope, vec![("kernel", kernel), ("bias", bias)])?;
    Ok((ids[0], ids[1]))
}

/// `(input_size, num_units)` of a fused kernel and bias already in `params`, checking that the
/// ids are the store's and the shapes fit.
pub(crate) fn fused_sizes<T: Scalar>(
    op: &'static str,
    params: &ParamStore<T>,
    kernel: ParamId,
    bias: ParamId,
    gates: usize,
) -> Result<(usize, usize)> {
    params.check_ids(op, &[kernel, bias])?;
    check_kernel_and_bias(
        op,
        params.value(kernel).shape(),
        params.value(bias).shape(),
        gates,
    )
}
