//! `BoxedCell`: any cell behind one type, so cells of different kinds can be stacked, stored in
//! one `Vec` and chosen at run time.

use std::any::Any;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use super::{Cell, RnnState};
use crate::{Error, ParamId, Result, Scalar, Tape, Var};

/// Any [`Cell`] as one type: the object-safe form of the cell interface.
///
/// [`Cell`]'s methods are generic over the element type (one cell serves `f32` training and
/// `f64` gradient checks), so `dyn Cell` cannot exist. A `BoxedCell` erases the concrete type
/// instead and is itself a `Cell` for both element types, with a [`DynState`] as its state.
/// Build one with [`BoxedCell::new`] or [`Cell::boxed`]. The wrapped cell keeps its fast
/// whole-sequence path under [`crate::rnn::dynamic_rnn`]. Clones share the wrapped cell.
///
/// The typical use is a [`super::MultiCell`] of cells of different kinds:
///
/// ```
/// use recurrent::cell::{BasicLstmCell, Cell, DropoutWrapper, GruCell, MultiCell};
/// use recurrent::rnn::{dynamic_rnn, RnnOptions};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let lstm = BasicLstmCell::new(&mut params, "rnn/multi_rnn_cell/cell_0/basic_lstm_cell", 4, 8)?;
/// let gru = GruCell::new(&mut params, "rnn/multi_rnn_cell/cell_1/gru_cell", 8, 6)?;
/// let top = BasicLstmCell::new(&mut params, "rnn/multi_rnn_cell/cell_2/basic_lstm_cell", 6, 5)?;
/// let top = DropoutWrapper::new(top).with_output_keep_prob(0.8)?;
/// let stack = MultiCell::new(vec![lstm.boxed(), gru.boxed(), top.boxed()])?;
///
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 7, 4])));
/// let (outputs, states) = dynamic_rnn(&tape, &stack, x, RnnOptions::default())?;
/// assert_eq!(tape.shape(outputs), vec![2, 7, 5]);
/// assert_eq!(states[1].vars().len(), 1); // the GRU's h; the LSTMs have (c, h)
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Clone)]
pub struct BoxedCell {
    inner: Arc<dyn ErasedCell + Send + Sync>,
}

impl BoxedCell {
    /// Erases the type of `cell`.
    pub fn new<C>(cell: C) -> Self
    where
        C: Cell + Send + Sync + 'static,
        C::State: 'static,
    {
        BoxedCell {
            inner: Arc::new(Erased(cell)),
        }
    }
}

impl fmt::Debug for BoxedCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug(f)
    }
}

/// The state of a [`BoxedCell`]: the wrapped cell's state tensors, flattened, plus what is needed
/// to give them back their structure.
#[derive(Clone)]
pub struct DynState {
    vars: Vec<Var>,
    droppable: Vec<bool>,
    /// A state of the wrapped cell's own type: only its structure is used, to rebuild a typed
    /// state from `vars` (the runners replace `vars` when they mask or carry states).
    template: Rc<dyn Any>,
}

impl DynState {
    fn of<S: RnnState + 'static>(state: S) -> Self {
        DynState {
            vars: state.flatten(),
            droppable: state.droppable(),
            template: Rc::new(state),
        }
    }

    /// The state's tensors in the wrapped cell's order (`[c, h]` for an LSTM).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The typed state of the wrapped cell.
    fn typed<S: RnnState + 'static>(&self, op: &'static str) -> Result<S> {
        let template = self.template.downcast_ref::<S>().ok_or_else(|| {
            Error::invalid(format!(
                "{op}: the state was made by a cell of another kind than this BoxedCell's"
            ))
        })?;
        if template.flatten().len() != self.vars.len() {
            return Err(Error::Shape {
                op,
                expected: format!("a state of {} tensors", template.flatten().len()),
                got: format!("{} tensors", self.vars.len()),
            });
        }
        Ok(template.rebuild(&self.vars))
    }
}

impl fmt::Debug for DynState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynState")
            .field("vars", &self.vars)
            .finish_non_exhaustive()
    }
}

impl RnnState for DynState {
    fn flatten(&self) -> Vec<Var> {
        self.vars.clone()
    }
    fn rebuild(&self, vars: &[Var]) -> Self {
        DynState {
            vars: vars.to_vec(),
            droppable: self.droppable.clone(),
            template: Rc::clone(&self.template),
        }
    }
    fn droppable(&self) -> Vec<bool> {
        self.droppable.clone()
    }
}

/// The cell interface with the element type fixed per method, so that it is object safe.
trait ErasedCell {
    fn input_size(&self) -> usize;
    fn output_size(&self) -> usize;
    fn state_size(&self) -> Vec<usize>;
    fn param_ids(&self) -> Vec<ParamId>;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn zero_state_f32(&self, tape: &Tape<'_, f32>, batch: usize) -> Result<DynState>;
    fn zero_state_f64(&self, tape: &Tape<'_, f64>, batch: usize) -> Result<DynState>;
    fn call_f32(&self, tape: &Tape<'_, f32>, x: Var, s: &DynState) -> Result<(Var, DynState)>;
    fn call_f64(&self, tape: &Tape<'_, f64>, x: Var, s: &DynState) -> Result<(Var, DynState)>;
    fn sequence_f32(&self, tape: &Tape<'_, f32>, run: SequenceArgs<'_>) -> SequenceResult;
    fn sequence_f64(&self, tape: &Tape<'_, f64>, run: SequenceArgs<'_>) -> SequenceResult;
}

/// The arguments of [`Cell::dynamic_sequence`] past the tape.
struct SequenceArgs<'a> {
    inputs: Var,
    state: &'a DynState,
    sequence_length: Option<&'a [usize]>,
    time_major: bool,
}

type SequenceResult = Option<Result<(Var, DynState)>>;

struct Erased<C>(C);

impl<C: Cell> Erased<C>
where
    C::State: 'static,
{
    fn call_any<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        s: &DynState,
    ) -> Result<(Var, DynState)> {
        let state: C::State = s.typed("BoxedCell::call")?;
        let (out, new_state) = self.0.call(tape, x, &state)?;
        Ok((out, DynState::of(new_state)))
    }

    fn sequence_any<T: Scalar>(&self, tape: &Tape<'_, T>, run: SequenceArgs<'_>) -> SequenceResult {
        let state: C::State = match run.state.typed("BoxedCell::dynamic_sequence") {
            Ok(state) => state,
            Err(e) => return Some(Err(e)),
        };
        let result = self.0.dynamic_sequence(
            tape,
            run.inputs,
            &state,
            run.sequence_length,
            run.time_major,
        )?;
        Some(result.map(|(out, state)| (out, DynState::of(state))))
    }
}

impl<C: Cell> ErasedCell for Erased<C>
where
    C::State: 'static,
{
    fn input_size(&self) -> usize {
        self.0.input_size()
    }
    fn output_size(&self) -> usize {
        self.0.output_size()
    }
    fn state_size(&self) -> Vec<usize> {
        self.0.state_size()
    }
    fn param_ids(&self) -> Vec<ParamId> {
        self.0.param_ids()
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxedCell({})", std::any::type_name::<C>())
    }
    fn zero_state_f32(&self, tape: &Tape<'_, f32>, batch: usize) -> Result<DynState> {
        self.0.zero_state(tape, batch).map(DynState::of)
    }
    fn zero_state_f64(&self, tape: &Tape<'_, f64>, batch: usize) -> Result<DynState> {
        self.0.zero_state(tape, batch).map(DynState::of)
    }
    fn call_f32(&self, tape: &Tape<'_, f32>, x: Var, s: &DynState) -> Result<(Var, DynState)> {
        self.call_any(tape, x, s)
    }
    fn call_f64(&self, tape: &Tape<'_, f64>, x: Var, s: &DynState) -> Result<(Var, DynState)> {
        self.call_any(tape, x, s)
    }
    fn sequence_f32(&self, tape: &Tape<'_, f32>, run: SequenceArgs<'_>) -> SequenceResult {
        self.sequence_any(tape, run)
    }
    fn sequence_f64(&self, tape: &Tape<'_, f64>, run: SequenceArgs<'_>) -> SequenceResult {
        self.sequence_any(tape, run)
    }
}

/// The element type of a tape, as one of the two the crate computes in.
enum TapeOf<'a, 'p> {
    F32(&'a Tape<'p, f32>),
    F64(&'a Tape<'p, f64>),
}

fn tape_of<'a, 'p, T: Scalar>(tape: &'a Tape<'p, T>) -> TapeOf<'a, 'p> {
    match (T::as_f32_tape(tape), T::as_f64_tape(tape)) {
        (Some(t), _) => TapeOf::F32(t),
        (None, Some(t)) => TapeOf::F64(t),
        (None, None) => unreachable!("Scalar is implemented for f32 and f64 only"),
    }
}

impl Cell for BoxedCell {
    type State = DynState;

    fn input_size(&self) -> usize {
        self.inner.input_size()
    }

    fn output_size(&self) -> usize {
        self.inner.output_size()
    }

    fn state_size(&self) -> Vec<usize> {
        self.inner.state_size()
    }

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<DynState> {
        match tape_of(tape) {
            TapeOf::F32(t) => self.inner.zero_state_f32(t, batch),
            TapeOf::F64(t) => self.inner.zero_state_f64(t, batch),
        }
    }

    fn call<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        input: Var,
        state: &DynState,
    ) -> Result<(Var, DynState)> {
        match tape_of(tape) {
            TapeOf::F32(t) => self.inner.call_f32(t, input, state),
            TapeOf::F64(t) => self.inner.call_f64(t, input, state),
        }
    }

    fn param_ids(&self) -> Vec<ParamId> {
        self.inner.param_ids()
    }

    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &DynState,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, DynState)>> {
        let run = SequenceArgs {
            inputs,
            state,
            sequence_length,
            time_major,
        };
        match tape_of(tape) {
            TapeOf::F32(t) => self.inner.sequence_f32(t, run),
            TapeOf::F64(t) => self.inner.sequence_f64(t, run),
        }
    }
}
