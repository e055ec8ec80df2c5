//! Recurrent layers: [`Rnn`] over any cell and [`Bidirectional`].

use ndarray::ArrayD;

use super::{layer_shape_error, Context, Layer};
use crate::cell::{BasicLstmCell, Cell, GruCell, GruCellConfig, RnnState};
use crate::params::{ParamStore, Scope};
use crate::rnn::{bidirectional_dynamic_rnn, dynamic_rnn, BidirectionalOptions, RnnOptions};
use crate::{Error, ParamId, Result, Scalar, Tape, Var};

/// What a recurrent layer gives the next layer (Keras's `return_sequences` and
/// `return_state`, as one choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Returns {
    /// The output of every step, `[batch, time, units]` (time-major when the layer is), zero past
    /// each example's length (`return_sequences=True`).
    #[default]
    Sequences,
    /// Each example's output at its last valid step, `[batch, units]` (the usual input of a
    /// classifier; `return_sequences=False` with a mask).
    LastOutput,
    /// The final state's tensors concatenated, `[batch, sum of state widths]` (`[c, h]` for an
    /// LSTM, so `2 * units`): the state at each example's last valid step.
    FinalState,
}

/// A recurrent layer: any [`Cell`] run over a sequence (`tf.keras.layers.RNN(cell)`, with
/// TensorFlow 1.x's `dynamic_rnn` underneath).
///
/// Sequence lengths come from the forward pass's [`Context`] and are used for masking, for the
/// state, and for [`Returns::LastOutput`]; nothing else needs to be told. With a
/// [`Carry`](super::Carry) in the context the layer starts from the state it left last time and
/// leaves its final state there (truncated backpropagation through time, or generation one step
/// at a time).
///
/// # Shapes
/// Input `[batch, time, input_size]` (`[time, batch, input_size]` with
/// [`Rnn::time_major`]); output per [`Returns`].
///
/// # Parameters
/// [`Rnn::lstm`] and [`Rnn::gru`] name their cells as TensorFlow does, in a scope unique in the
/// store: `rnn/basic_lstm_cell/{kernel,bias}`, then `rnn_1/...` for the next layer.
///
/// ```
/// use recurrent::layers::{Context, Layer, Returns, Rnn};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let rnn = Rnn::gru(&mut params, 3, 8)?.returns(Returns::LastOutput);
/// assert_eq!(rnn.name(), "rnn");
/// let tape = Tape::inference(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 6, 3])));
/// let last = rnn.forward(&tape, x, &mut Context::new().lengths(&[6, 3]))?;
/// assert_eq!(tape.shape(last), vec![2, 8]);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rnn<C> {
    name: String,
    cell: C,
    returns: Returns,
    time_major: bool,
}

impl<C: Cell> Rnn<C> {
    /// A layer named `name` (the scope its cell's parameters live in) over `cell`, returning
    /// [`Returns::Sequences`], batch-major. The name is the key of the layer's carried state,
    /// so give each recurrent layer of a model its own ([`Rnn::build`] does).
    pub fn new(name: impl Into<String>, cell: C) -> Self {
        Rnn {
            name: name.into(),
            cell,
            returns: Returns::Sequences,
            time_major: false,
        }
    }

    /// Builds the cell in a fresh scope: `make(params, scope)` with `scope` unique in the store
    /// (`rnn`, `rnn_1`, ...); TensorFlow puts the cell's own scope inside (`scope.sub("gru_cell")`).
    pub fn build<T: Scalar>(
        params: &mut ParamStore<T>,
        make: impl FnOnce(&mut ParamStore<T>, &Scope) -> Result<C>,
    ) -> Result<Self> {
        let scope = params.unique_scope("rnn");
        let cell = make(params, &scope)?;
        Ok(Rnn::new(scope.path(), cell))
    }

    /// What the layer returns.
    pub fn returns(mut self, returns: Returns) -> Self {
        self.returns = returns;
        self
    }

    /// Inputs and sequence outputs are `[time, batch, ...]`.
    pub fn time_major(mut self, time_major: bool) -> Self {
        self.time_major = time_major;
        self
    }

    /// The layer's name (its scope), as [`Layer::name`] gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters the layer reads (its cell's), as [`Layer::param_ids`] gives them.
    pub fn param_ids(&self) -> Vec<ParamId> {
        self.cell.param_ids()
    }

    /// The cell.
    pub fn cell(&self) -> &C {
        &self.cell
    }

    /// Runs the layer and returns all outputs and the final state, for code that needs the
    /// state itself. The context's lengths and carry apply as in [`Layer::forward`].
    pub fn run<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        context: &mut Context<'_, T>,
    ) -> Result<(Var, C::State)> {
        let shape = tape.shape(x);
        if shape.len() != 3 || shape[2] != self.cell.input_size() {
            let layout = if self.time_major {
                "[time, batch, "
            } else {
                "[batch, time, "
            };
            return Err(layer_shape_error(
                "Rnn",
                &self.name,
                format!("an input {layout}{}]", self.cell.input_size()),
                &shape,
            ));
        }
        let batch = if self.time_major { shape[1] } else { shape[0] };
        let initial_state = match context.carried().and_then(|c| c.get(&self.name)) {
            Some(saved) => Some(carried_state(tape, &self.cell, &self.name, saved, batch)?),
            None => None,
        };
        let options = RnnOptions {
            initial_state,
            sequence_length: context.sequence_length(),
            time_major: self.time_major,
        };
        let (outputs, state) = dynamic_rnn(tape, &self.cell, x, options)?;
        if let Some(carry) = context.carried() {
            let values = state.flatten().iter().map(|&v| tape.to_array(v)).collect();
            carry.set(&self.name, values);
        }
        Ok((outputs, state))
    }
}

/// A carried state as the initial state of `cell` on `tape`.
fn carried_state<T: Scalar, C: Cell>(
    tape: &Tape<'_, T>,
    cell: &C,
    name: &str,
    saved: &[ArrayD<T>],
    batch: usize,
) -> Result<C::State> {
    let widths = cell.state_size();
    let fits = saved.len() == widths.len()
        && saved
            .iter()
            .zip(&widths)
            .all(|(a, &w)| a.shape() == [batch, w]);
    if !fits {
        let got: Vec<Vec<usize>> = saved.iter().map(|a| a.shape().to_vec()).collect();
        return Err(Error::Shape {
            op: "Rnn (carried state)",
            expected: format!(
                "states of widths {widths:?} for a batch of {batch} (layer {name:?}); \
                 reset the carry when the batch size changes"
            ),
            got: format!("{got:?}"),
        });
    }
    let vars: Vec<Var> = saved.iter().map(|a| tape.constant(a.clone())).collect();
    Ok(cell.zero_state(tape, batch)?.rebuild(&vars))
}

impl Rnn<BasicLstmCell> {
    /// An LSTM layer: `BasicLstmCell(units, forget_bias = 1.0)` under `rnn/basic_lstm_cell`
    /// (`rnn_1/...` when taken).
    pub fn lstm<T: Scalar>(
        params: &mut ParamStore<T>,
        input_size: usize,
        units: usize,
    ) -> Result<Self> {
        Rnn::build(params, |params, scope| {
            BasicLstmCell::new(params, scope.sub("basic_lstm_cell"), input_size, units)
        })
    }
}

impl Rnn<GruCell> {
    /// A GRU layer: `GruCell(units)` under `rnn/gru_cell` (`rnn_1/...` when taken).
    pub fn gru<T: Scalar>(
        params: &mut ParamStore<T>,
        input_size: usize,
        units: usize,
    ) -> Result<Self> {
        Rnn::build(params, |params, scope| {
            GruCell::new(params, scope.sub("gru_cell"), input_size, units)
        })
    }

    /// A GRU layer with the cell's options, under `rnn/gru_cell`: Keras's default
    /// `GRU(units)` (`reset_after=True`) is
    /// `Rnn::gru_with(params, input_size, GruCellConfig::new(units).with_reset_after(true))`.
    pub fn gru_with<T: Scalar>(
        params: &mut ParamStore<T>,
        input_size: usize,
        config: GruCellConfig,
    ) -> Result<Self> {
        Rnn::build(params, |params, scope| {
            config.init(params, scope.sub("gru_cell"), input_size)
        })
    }
}

impl<T: Scalar, C: Cell> Layer<T> for Rnn<C> {
    fn forward(&self, tape: &Tape<'_, T>, x: Var, context: &mut Context<'_, T>) -> Result<Var> {
        let (outputs, state) = self.run(tape, x, context)?;
        match self.returns {
            Returns::Sequences => Ok(outputs),
            Returns::LastOutput => {
                let outputs = if self.time_major {
                    tape.transpose(outputs, &[1, 0, 2])?
                } else {
                    outputs
                };
                crate::rnn::last_relevant_output(tape, outputs, context.sequence_length())
            }
            Returns::FinalState => concat_state(tape, &state.flatten()),
        }
    }

    fn param_ids(&self) -> Vec<ParamId> {
        Rnn::param_ids(self)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

fn concat_state<T: Scalar>(tape: &Tape<'_, T>, vars: &[Var]) -> Result<Var> {
    match vars {
        [one] => Ok(*one),
        many => tape.concat(many, 1),
    }
}

/// How a [`Bidirectional`] layer combines its two directions (Keras's `merge_mode`; for
/// `merge_mode=None`, the two directions apart, [`Bidirectional::forward_directions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Merge {
    /// `concat([fw, bw], axis = -1)`: twice the width (TensorFlow's usual choice).
    #[default]
    Concat,
    /// `fw + bw`.
    Sum,
    /// `fw * bw`.
    Mul,
    /// `(fw + bw) / 2`.
    Average,
}

impl Merge {
    fn apply<T: Scalar>(self, tape: &Tape<'_, T>, fw: Var, bw: Var) -> Result<Var> {
        match self {
            Merge::Concat => {
                let axis = tape.shape(fw).len() - 1;
                tape.concat(&[fw, bw], axis)
            }
            Merge::Sum => tape.add(fw, bw),
            Merge::Mul => tape.mul(fw, bw),
            Merge::Average => Ok(tape.scale(tape.add(fw, bw)?, T::from_f64_lossy(0.5))),
        }
    }
}

/// Two cells reading a sequence in opposite directions (`tf.keras.layers.Bidirectional`, with
/// TensorFlow 1.x's `bidirectional_dynamic_rnn` underneath).
///
/// The backward cell reads each example reversed *within its length* (from the context), and
/// its outputs are put back in input order, so step `t` of both directions belongs to input
/// step `t`. [`Returns::LastOutput`] gives, per example, the forward output at its last valid
/// step merged with the backward output at step 0 (where the backward cell has read the whole
/// example), as Keras does.
///
/// # Shapes
/// Input `[batch, time, input_size]`; with [`Merge::Concat`] the output is `[batch, time, 2 *
/// units]` ([`Returns::Sequences`]) or `[batch, 2 * units]` ([`Returns::LastOutput`]).
///
/// # Parameters
/// [`Bidirectional::lstm`] names the cells as TensorFlow does:
/// `bidirectional_rnn/fw/basic_lstm_cell/...` and `bidirectional_rnn/bw/basic_lstm_cell/...`.
///
/// ```
/// use recurrent::layers::{Bidirectional, Context, Layer, Returns};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let birnn = Bidirectional::lstm(&mut params, 3, 8)?.returns(Returns::LastOutput);
/// let tape = Tape::inference(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 6, 3])));
/// let y = birnn.forward(&tape, x, &mut Context::new().lengths(&[6, 4]))?;
/// assert_eq!(tape.shape(y), vec![2, 16]);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bidirectional<F, B> {
    name: String,
    fw: F,
    bw: B,
    merge: Merge,
    returns: Returns,
}

impl<F: Cell, B: Cell> Bidirectional<F, B> {
    /// A layer named `name` over the forward cell `fw` and the backward cell `bw` (they must
    /// take the same input width), concatenating the directions and returning sequences.
    pub fn new(name: impl Into<String>, fw: F, bw: B) -> Result<Self> {
        let name = name.into();
        if fw.input_size() != bw.input_size() {
            return Err(Error::Shape {
                op: "Bidirectional",
                expected: format!(
                    "a backward cell taking {} inputs, as the forward cell (layer {name:?})",
                    fw.input_size()
                ),
                got: format!("{}", bw.input_size()),
            });
        }
        Ok(Bidirectional {
            name,
            fw,
            bw,
            merge: Merge::Concat,
            returns: Returns::Sequences,
        })
    }

    /// Builds both cells in a fresh scope `bidirectional_rnn` (`_1`, ... when taken):
    /// `make(params, scope)` is called with `{scope}/fw` and then `{scope}/bw`.
    pub fn build<T: Scalar>(
        params: &mut ParamStore<T>,
        mut make_fw: impl FnMut(&mut ParamStore<T>, &Scope) -> Result<F>,
        mut make_bw: impl FnMut(&mut ParamStore<T>, &Scope) -> Result<B>,
    ) -> Result<Self> {
        let scope = params.unique_scope("bidirectional_rnn");
        let fw = make_fw(params, &scope.sub("fw"))?;
        let bw = make_bw(params, &scope.sub("bw"))?;
        Bidirectional::new(scope.path(), fw, bw)
    }

    /// How the two directions are combined.
    pub fn merge(mut self, merge: Merge) -> Self {
        self.merge = merge;
        self
    }

    /// What the layer returns. [`Returns::FinalState`] concatenates the forward state's
    /// tensors and then the backward state's (it is not merged).
    pub fn returns(mut self, returns: Returns) -> Self {
        self.returns = returns;
        self
    }

    /// The layer's name (its scope), as [`Layer::name`] gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters of both cells, forward first, as [`Layer::param_ids`] gives them.
    pub fn param_ids(&self) -> Vec<ParamId> {
        [self.fw.param_ids(), self.bw.param_ids()].concat()
    }

    /// The forward cell.
    pub fn fw(&self) -> &F {
        &self.fw
    }

    /// The backward cell.
    pub fn bw(&self) -> &B {
        &self.bw
    }
}

impl Bidirectional<BasicLstmCell, BasicLstmCell> {
    /// Two LSTMs of `units` each, under `bidirectional_rnn/{fw,bw}/basic_lstm_cell`.
    pub fn lstm<T: Scalar>(
        params: &mut ParamStore<T>,
        input_size: usize,
        units: usize,
    ) -> Result<Self> {
        let make = |params: &mut ParamStore<T>, scope: &Scope| {
            BasicLstmCell::new(params, scope.sub("basic_lstm_cell"), input_size, units)
        };
        Bidirectional::build(params, make, make)
    }
}

impl Bidirectional<GruCell, GruCell> {
    /// Two GRUs of `units` each, under `bidirectional_rnn/{fw,bw}/gru_cell`.
    pub fn gru<T: Scalar>(
        params: &mut ParamStore<T>,
        input_size: usize,
        units: usize,
    ) -> Result<Self> {
        let make = |params: &mut ParamStore<T>, scope: &Scope| {
            GruCell::new(params, scope.sub("gru_cell"), input_size, units)
        };
        Bidirectional::build(params, make, make)
    }

    /// Two GRUs with the cell's options (`reset_after`, for instance), under
    /// `bidirectional_rnn/{fw,bw}/gru_cell`.
    pub fn gru_with<T: Scalar>(
        params: &mut ParamStore<T>,
        input_size: usize,
        config: GruCellConfig,
    ) -> Result<Self> {
        let make = |params: &mut ParamStore<T>, scope: &Scope| {
            config.init(params, scope.sub("gru_cell"), input_size)
        };
        Bidirectional::build(params, make, make)
    }
}

impl<F: Cell, B: Cell> Bidirectional<F, B> {
    /// The two directions unmerged, forward first (Keras's `merge_mode=None`, which returns
    /// them as a list): per [`Returns`], the output sequences `[batch, time, fw_units]` and
    /// `[batch, time, bw_units]`, the last valid forward output and the backward output at
    /// step 0 (`[batch, units]` each), or each direction's final state tensors concatenated.
    /// The layer's [`Merge`] is not used; [`Layer::forward`] merges these.
    ///
    /// ```
    /// use recurrent::layers::{Bidirectional, Context, Returns};
    /// use recurrent::{ParamStore, Tape};
    ///
    /// let mut params = ParamStore::<f32>::new(0);
    /// let birnn = Bidirectional::gru(&mut params, 3, 4)?.returns(Returns::LastOutput);
    /// let tape = Tape::inference(&params);
    /// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 6, 3])));
    /// let (fw, bw) = birnn.forward_directions(&tape, x, &mut Context::new().lengths(&[6, 4]))?;
    /// assert_eq!((tape.shape(fw), tape.shape(bw)), (vec![2, 4], vec![2, 4]));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Layer::forward`].
    pub fn forward_directions<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        context: &mut Context<'_, T>,
    ) -> Result<(Var, Var)> {
        Ok(match self.directions(tape, x, context)? {
            Directions::Outputs(fw, bw) => (fw, bw),
            Directions::States(fw, bw) => (concat_state(tape, &fw)?, concat_state(tape, &bw)?),
        })
    }

    /// Both directions run, then reduced per [`Returns`].
    fn directions<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        context: &mut Context<'_, T>,
    ) -> Result<Directions> {
        let shape = tape.shape(x);
        if shape.len() != 3 || shape[2] != self.fw.input_size() {
            return Err(layer_shape_error(
                "Bidirectional",
                &self.name,
                format!("an input [batch, time, {}]", self.fw.input_size()),
                &shape,
            ));
        }
        if context.carried().is_some() {
            return Err(Error::invalid(format!(
                "Bidirectional {:?}: a carried state cannot continue a sequence read in both \
                 directions (use a unidirectional Rnn for stateful runs)",
                self.name
            )));
        }
        let lengths = context.sequence_length();
        let options = BidirectionalOptions {
            sequence_length: lengths,
            ..Default::default()
        };
        let ((out_fw, out_bw), (state_fw, state_bw)) =
            bidirectional_dynamic_rnn(tape, &self.fw, &self.bw, x, options)?;
        Ok(match self.returns {
            Returns::Sequences => Directions::Outputs(out_fw, out_bw),
            Returns::LastOutput => {
                let last_fw = crate::rnn::last_relevant_output(tape, out_fw, lengths)?;
                let first_bw = tape.gather_rows(out_bw, &vec![0; shape[0]])?;
                Directions::Outputs(last_fw, first_bw)
            }
            Returns::FinalState => Directions::States(state_fw.flatten(), state_bw.flatten()),
        })
    }
}

/// What a [`Bidirectional`] layer's two directions give before they are merged.
enum Directions {
    /// One output var per direction, forward first.
    Outputs(Var, Var),
    /// Each direction's state tensors, forward first.
    States(Vec<Var>, Vec<Var>),
}

impl<T: Scalar, F: Cell, B: Cell> Layer<T> for Bidirectional<F, B> {
    fn forward(&self, tape: &Tape<'_, T>, x: Var, context: &mut Context<'_, T>) -> Result<Var> {
        match self.directions(tape, x, context)? {
            Directions::Outputs(fw, bw) => self.merge.apply(tape, fw, bw),
            Directions::States(fw, bw) => concat_state(tape, &[fw, bw].concat()),
        }
    }

    fn param_ids(&self) -> Vec<ParamId> {
        Bidirectional::param_ids(self)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
