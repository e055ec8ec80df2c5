//! `BasicLstmCell` and its fused kernels.

use ndarray::{Array3, ArrayD, Axis, CowArray, Ix2, Ix3};

use super::{
    check_input, check_state, create_fused, fused_sizes, kernel_shape, zeros, Cell, RnnState,
};
use crate::init::Initializer;
use crate::kernels::lstm as lstm_kernel;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// The state of an LSTM: memory `c` and output `h`, each `[batch, num_units]`
/// (`tf.nn.rnn_cell.LSTMStateTuple`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LstmState {
    /// The cell's memory.
    pub c: Var,
    /// The cell's output (also the step's output).
    pub h: Var,
}

impl RnnState for LstmState {
    fn flatten(&self) -> Vec<Var> {
        vec![self.c, self.h]
    }
    fn rebuild(&self, vars: &[Var]) -> Self {
        LstmState {
            c: vars[0],
            h: vars[1],
        }
    }
    fn droppable(&self) -> Vec<bool> {
        vec![false, true]
    }
}

/// TensorFlow 1.x's `BasicLSTMCell`: an LSTM without peepholes or projection.
///
/// # Equations
/// With `[x, h]` the input and previous output side by side:
///
/// ```text
/// [i, j, f, o] = split([x, h] @ kernel + bias, 4, axis = 1)     (gate order i, j, f, o)
/// c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j)
/// h' = tanh(c') * sigmoid(o)
/// ```
///
/// # Shapes
/// - `kernel`: `[input_size + num_units, 4 * num_units]` (Glorot uniform, TensorFlow's default);
///   `bias`: `[4 * num_units]` (zeros). The layout is TensorFlow's, so weights trained there load
///   unchanged.
/// - input `[batch, input_size]`; output and both state tensors `[batch, num_units]`.
///
/// The step is one fused tape op (gates, activations and state update together, with a
/// hand-derived backward), and [`crate::rnn::dynamic_rnn`] runs a whole sequence as one op: the
/// input projection of all steps is one matrix product before the loop and the weight gradient
/// of all steps one after it.
///
/// ```
/// use recurrent::cell::{BasicLstmCell, Cell};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 28, 128).unwrap();
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 28])));
/// let state = cell.zero_state(&tape, 4).unwrap();
/// let (h, state) = cell.call(&tape, x, &state).unwrap();
/// assert_eq!(tape.shape(h), vec![4, 128]);
/// assert_eq!(h, state.h);
/// ```
///
/// Reference: Zaremba et al., "Recurrent Neural Network Regularization" (2014), whose equations
/// `BasicLSTMCell` implements.
#[derive(Debug, Clone)]
pub struct BasicLstmCell {
    kernel: ParamId,
    bias: ParamId,
    input_size: usize,
    num_units: usize,
    forget_bias: f64,
    /// `LstmCell`'s options run by the same kernel (never set on a public `BasicLstmCell`):
    /// `[w_f_diag, w_i_diag, w_o_diag]` (`[num_units]` each, checked by `LstmCell`) and the
    /// cell clip.
    peepholes: Option<[ParamId; 3]>,
    cell_clip: Option<f64>,
}

impl BasicLstmCell {
    /// Creates `{scope}/kernel` and `{scope}/bias` (TensorFlow's path is
    /// `rnn/basic_lstm_cell`) with `forget_bias` 1.0.
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        num_units: usize,
    ) -> Result<Self> {
        let shape = kernel_shape("BasicLstmCell::new", input_size, num_units, 4)?;
        let scope = scope.into();
        let kernel = params.create(&scope.join("kernel"), &shape, Initializer::GlorotUniform)?;
        let bias = params.create(&scope.join("bias"), &[shape[1]], Initializer::Zeros)?;
        Self::from_params(params, kernel, bias)
    }

    /// Creates the cell's parameters from given weights (for tests and weights trained elsewhere):
    /// `kernel` `[input_size + num_units, 4 * num_units]`, `bias` `[4 * num_units]`.
    ///
    /// # Errors
    /// [`Error::Shape`] for shapes that do not fit, [`Error::InvalidArgument`] for a taken name;
    /// either way the store is left as it was.
    pub fn from_weights<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        kernel: ArrayD<T>,
        bias: ArrayD<T>,
    ) -> Result<Self> {
        let (kernel, bias) = create_fused("BasicLstmCell", params, &scope.into(), kernel, bias, 4)?;
        Self::from_params(params, kernel, bias)
    }

    /// A cell over parameters already in the store: the explicit way to share weights.
    pub fn from_params<T: Scalar>(
        params: &ParamStore<T>,
        kernel: ParamId,
        bias: ParamId,
    ) -> Result<Self> {
        let (input_size, num_units) =
            fused_sizes("BasicLstmCell::from_params", params, kernel, bias, 4)?;
        Ok(BasicLstmCell {
            kernel,
            bias,
            input_size,
            num_units,
            forget_bias: 1.0,
            peepholes: None,
            cell_clip: None,
        })
    }

    /// The same kernel with `LstmCell`'s peepholes and cell clip (for `LstmCell` without a
    /// projection, whose callers check the shapes and the clip). The cell's parameters are then
    /// `kernel`, `bias` and the peepholes, as [`crate::cell::LstmCell`] lists them.
    pub(crate) fn with_variant(
        mut self,
        peepholes: Option<[ParamId; 3]>,
        cell_clip: Option<f64>,
    ) -> Self {
        self.peepholes = peepholes;
        self.cell_clip = cell_clip;
        self
    }

    /// Sets the bias added to the forget gate's pre-activation at every step (default 1.0).
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Result<Self> {
        if !forget_bias.is_finite() {
            return Err(Error::invalid(format!(
                "forget_bias must be finite, got {forget_bias}"
            )));
        }
        self.forget_bias = forget_bias;
        Ok(self)
    }

    /// The number of units (width of `c`, `h` and the output).
    pub fn num_units(&self) -> usize {
        self.num_units
    }

    /// The forget bias.
    pub fn forget_bias(&self) -> f64 {
        self.forget_bias
    }

    /// The kernel's handle.
    pub fn kernel(&self) -> ParamId {
        self.kernel
    }

    /// The bias's handle.
    pub fn bias(&self) -> ParamId {
        self.bias
    }

    /// Records the fused LSTM over a sequence (one step is a sequence of length 1) as one tape
    /// op with outputs `[outputs, c_last, h_last]`.
    fn record<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        layout: Layout,
        state: &LstmState,
        sequence_length: Option<&[usize]>,
    ) -> Result<Vec<Var>> {
        let (units, in_size) = (self.num_units, self.input_size);
        // The kernel works batch-major on a standard-layout [batch, time, in]: a batch-major
        // input in standard layout (the usual case) is read in place, here and by the backward
        // pass (from the tape); other layouts are copied once into `owned_x`, kept for backward.
        // The parameters' vars first: recording them needs the tape while no value is borrowed.
        let (kernel_var, bias_var) = (tape.param(self.kernel), tape.param(self.bias));
        let peephole_vars = self.peepholes.map(|ids| ids.map(|id| tape.param(id)));
        let (mut forward, owned_x) = {
            let value = tape.value(inputs);
            let shape = value.shape().to_vec();
            let owned_x: Option<Array3<T>> = match layout {
                Layout::Step => {
                    check_input(tape, "BasicLstmCell", inputs, in_size)?;
                    let x2 = value.view().into_dimensionality::<Ix2>().expect("rank 2");
                    Some(x2.insert_axis(Axis(1)).as_standard_layout().into_owned())
                }
                Layout::TimeMajor | Layout::BatchMajor => {
                    if shape.len() != 3 || shape[2] != in_size {
                        let order = if layout == Layout::TimeMajor {
                            "time, batch"
                        } else {
                            "batch, time"
                        };
                        return Err(Error::shape(
                            "dynamic_rnn",
                            format!("inputs of shape [{order}, {in_size}]"),
                            &shape,
                        ));
                    }
                    let x3 = value.view().into_dimensionality::<Ix3>().expect("rank 3");
                    match layout {
                        Layout::TimeMajor => Some(
                            x3.permuted_axes([1, 0, 2])
                                .as_standard_layout()
                                .into_owned(),
                        ),
                        _ if x3.is_standard_layout() => None,
                        _ => Some(x3.as_standard_layout().into_owned()),
                    }
                }
            };
            let x = match &owned_x {
                Some(x) => x.view(),
                None => value.view().into_dimensionality::<Ix3>().expect("rank 3"),
            };
            let (batch, steps) = (x.shape()[0], x.shape()[1]);
            if steps == 0 {
                // dynamic_rnn says so first; this is for callers of dynamic_sequence.
                return Err(Error::invalid(
                    "BasicLstmCell: a sequence needs at least one time step",
                ));
            }
            check_state(
                tape,
                "BasicLstmCell",
                &state.flatten(),
                &[units, units],
                batch,
            )?;
            let lengths = sequence_length
                .map(|l| crate::rnn::check_lengths(l, batch, steps))
                .transpose()?;
            let kernel = tape.value(kernel_var);
            let bias = tape.value(bias_var);
            let c0 = tape.value(state.c);
            let h0 = tape.value(state.h);
            let peepholes = peephole_vars.map(|vars| vars.map(|v| tape.value(v)));
            let variant = lstm_kernel::Variant {
                peepholes: peepholes
                    .as_ref()
                    .map(|w| w.each_ref().map(|w| w.as_slice().expect("standard layout"))),
                cell_clip: self.cell_clip.map(T::from_f64_lossy),
            };
            let forward = lstm_kernel::forward(
                x,
                kernel.view().into_dimensionality::<Ix2>().expect("rank 2"),
                bias.as_slice().expect("standard layout"),
                c0.view().into_dimensionality::<Ix2>().expect("checked"),
                h0.view().into_dimensionality::<Ix2>().expect("checked"),
                T::from_f64_lossy(self.forget_bias),
                variant,
                lengths.as_deref(),
                tape.is_training(),
            );
            (forward, owned_x)
        };
        let outputs = std::mem::take(&mut forward.outputs);
        let outputs = match layout {
            Layout::Step => outputs.index_axis_move(Axis(1), 0).into_dyn(),
            Layout::BatchMajor => outputs.into_dyn(),
            Layout::TimeMajor => outputs
                .view()
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
                .into_dyn(),
        };
        let c_last = std::mem::take(&mut forward.c_last).into_dyn();
        let h_last = std::mem::take(&mut forward.h_last).into_dyn();
        // An inference tape keeps nothing for a backward pass.
        let saved = tape.is_training().then_some((forward, owned_x));
        let mut parents = vec![inputs, state.c, state.h, kernel_var, bias_var];
        parents.extend(peephole_vars.iter().flatten());
        Ok(
            tape.push_op_multi(vec![outputs, c_last, h_last], &parents, move |ctx| {
                let (forward, owned_x) = saved.as_ref().expect("kept on a training tape");
                let x = match owned_x {
                    Some(x) => x.view(),
                    None => ctx
                        .input(0)
                        .view()
                        .into_dimensionality::<Ix3>()
                        .expect("rank 3"),
                };
                // Views where the layout allows; only time-major gradients need a transposed copy.
                let d_outputs: Option<CowArray<'_, T, Ix3>> = ctx.grad(0).map(|g| match layout {
                    Layout::Step => CowArray::from(
                        g.view()
                            .into_dimensionality::<Ix2>()
                            .expect("rank 2")
                            .insert_axis(Axis(1)),
                    ),
                    Layout::BatchMajor => {
                        CowArray::from(g.view().into_dimensionality::<Ix3>().expect("rank 3"))
                    }
                    Layout::TimeMajor => CowArray::from(
                        g.view()
                            .into_dimensionality::<Ix3>()
                            .expect("rank 3")
                            .permuted_axes([1, 0, 2])
                            .as_standard_layout()
                            .into_owned(),
                    ),
                });
                let grads = lstm_kernel::backward(
                    forward,
                    x,
                    ctx.input(3)
                        .view()
                        .into_dimensionality::<Ix2>()
                        .expect("rank 2"),
                    d_outputs.as_ref().map(|d| d.view()),
                    ctx.grad(1)
                        .map(|g| g.view().into_dimensionality::<Ix2>().expect("rank 2")),
                    ctx.grad(2)
                        .map(|g| g.view().into_dimensionality::<Ix2>().expect("rank 2")),
                    ctx.needs(0),
                );
                let dx = grads.dx.map(|dx| match layout {
                    Layout::Step => dx.index_axis_move(Axis(1), 0).into_dyn(),
                    Layout::BatchMajor => dx.into_dyn(),
                    Layout::TimeMajor => dx
                        .permuted_axes([1, 0, 2])
                        .as_standard_layout()
                        .into_owned()
                        .into_dyn(),
                });
                let mut out = vec![
                    dx,
                    Some(grads.dc0.into_dyn()),
                    Some(grads.dh0.into_dyn()),
                    Some(grads.dkernel.into_dyn()),
                    Some(grads.dbias.into_dyn()),
                ];
                out.extend(
                    grads
                        .dpeepholes
                        .into_iter()
                        .flatten()
                        .map(|g| Some(g.into_dyn())),
                );
                out
            }),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One step: input `[batch, in]`.
    Step,
    /// `[time, batch, in]`.
    TimeMajor,
    /// `[batch, time, in]`.
    BatchMajor,
}

impl Cell for BasicLstmCell {
    type State = LstmState;

    fn input_size(&self) -> usize {
        self.input_size
    }

    fn output_size(&self) -> usize {
        self.num_units
    }

    fn state_size(&self) -> Vec<usize> {
        vec![self.num_units, self.num_units]
    }

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<LstmState> {
        const OP: &str = "BasicLstmCell::zero_state";
        Ok(LstmState {
            c: zeros(OP, tape, batch, self.num_units)?,
            h: zeros(OP, tape, batch, self.num_units)?,
        })
    }

    fn call<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        input: Var,
        state: &LstmState,
    ) -> Result<(Var, LstmState)> {
        let out = self.record(tape, input, Layout::Step, state, None)?;
        let state = LstmState {
            c: out[1],
            h: out[2],
        };
        Ok((state.h, state))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        vec![self.kernel, self.bias]
    }

    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &LstmState,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, LstmState)>> {
        let layout = if time_major {
            Layout::TimeMajor
        } else {
            Layout::BatchMajor
        };
        Some(
            self.record(tape, inputs, layout, state, sequence_length)
                .map(|out| {
                    (
                        out[0],
                        LstmState {
                            c: out[1],
                            h: out[2],
                        },
                    )
                }),
        )
    }
}
