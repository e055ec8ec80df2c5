//! `BasicLstmCell` and its fused kernels.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, Array3, ArrayD, ArrayView2, Axis, Ix2, Ix3};

use super::{check_input, check_state, zeros, Cell, RnnState};
use crate::init::Initializer;
use crate::ops::elementwise::sigmoid;
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
/// let state = cell.zero_state(&tape, 4);
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
        if input_size == 0 || num_units == 0 {
            return Err(Error::invalid(format!(
                "BasicLstmCell sizes must be positive, got input {input_size}, units {num_units}"
            )));
        }
        let scope = scope.into();
        let kernel = params.create(
            &scope.join("kernel"),
            &[input_size + num_units, 4 * num_units],
            Initializer::GlorotUniform,
        )?;
        let bias = params.create(&scope.join("bias"), &[4 * num_units], Initializer::Zeros)?;
        Ok(BasicLstmCell {
            kernel,
            bias,
            input_size,
            num_units,
            forget_bias: 1.0,
        })
    }

    /// Creates the cell's parameters from given weights (for tests and weights trained elsewhere).
    pub fn from_weights<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        kernel: ArrayD<T>,
        bias: ArrayD<T>,
    ) -> Result<Self> {
        let (input_size, num_units) = check_lstm_shapes(kernel.shape(), bias.shape())?;
        let scope = scope.into();
        let kernel = params.create_from(&scope.join("kernel"), kernel)?;
        let bias = params.create_from(&scope.join("bias"), bias)?;
        Ok(BasicLstmCell {
            kernel,
            bias,
            input_size,
            num_units,
            forget_bias: 1.0,
        })
    }

    /// A cell over parameters already in the store: the explicit way to share weights.
    pub fn from_params<T: Scalar>(
        params: &ParamStore<T>,
        kernel: ParamId,
        bias: ParamId,
    ) -> Result<Self> {
        if !params.contains(kernel) || !params.contains(bias) {
            return Err(Error::invalid(
                "BasicLstmCell::from_params: unknown parameter id",
            ));
        }
        let (input_size, num_units) =
            check_lstm_shapes(params.value(kernel).shape(), params.value(bias).shape())?;
        Ok(BasicLstmCell {
            kernel,
            bias,
            input_size,
            num_units,
            forget_bias: 1.0,
        })
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

    /// Records the fused LSTM over a sequence (one step is a sequence of length 1).
    fn record<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        layout: Layout,
        state: &LstmState,
        sequence_length: Option<&[usize]>,
    ) -> Result<Vec<Var>> {
        let (h_units, in_size) = (self.num_units, self.input_size);
        let x_tm: Array3<T> = {
            let x = tape.value(inputs);
            let shape = x.shape().to_vec();
            match layout {
                Layout::Step => {
                    check_input(tape, "BasicLstmCell", inputs, in_size)?;
                    x.view()
                        .into_shape_with_order((1, shape[0], in_size))
                        .map_err(|_| Error::invalid("non-contiguous input"))?
                        .to_owned()
                }
                Layout::TimeMajor | Layout::BatchMajor => {
                    if shape.len() != 3 || shape[2] != in_size {
                        return Err(Error::shape(
                            "dynamic_rnn",
                            format!(
                                "inputs of shape [{}, {}, {in_size}]",
                                if layout == Layout::TimeMajor {
                                    "time, batch"
                                } else {
                                    "batch, time"
                                },
                                "…"
                            )
                            .replace(", …", ""),
                            &shape,
                        ));
                    }
                    let x3 = x.view().into_dimensionality::<Ix3>().expect("rank 3");
                    if layout == Layout::TimeMajor {
                        x3.as_standard_layout().into_owned()
                    } else {
                        x3.permuted_axes([1, 0, 2])
                            .as_standard_layout()
                            .into_owned()
                    }
                }
            }
        };
        let (steps, batch) = (x_tm.shape()[0], x_tm.shape()[1]);
        check_state(
            tape,
            "BasicLstmCell",
            &state.flatten(),
            &[h_units, h_units],
            batch,
        )?;
        let lengths = match sequence_length {
            Some(l) => Some(super::super::rnn::check_lengths(l, batch, steps)?),
            None => None,
        };

        let forward = {
            let kernel = tape.value(tape.param(self.kernel));
            let bias = tape.value(tape.param(self.bias));
            let kernel = kernel.view().into_dimensionality::<Ix2>().expect("rank 2");
            let c0 = tape.value(state.c);
            let h0 = tape.value(state.h);
            lstm_forward(
                x_tm.view(),
                kernel,
                bias.as_slice().expect("standard layout"),
                c0.view().into_dimensionality::<Ix2>().expect("checked"),
                h0.view().into_dimensionality::<Ix2>().expect("checked"),
                T::from_f64_lossy(self.forget_bias),
                lengths.as_deref(),
            )
        };
        let c_final = forward.cs.index_axis(Axis(0), steps).to_owned().into_dyn();
        let h_final = forward.hs.index_axis(Axis(0), steps).to_owned().into_dyn();
        let outputs = match layout {
            Layout::Step => forward.outputs.index_axis(Axis(0), 0).to_owned().into_dyn(),
            Layout::TimeMajor => forward.outputs.clone().into_dyn(),
            Layout::BatchMajor => forward
                .outputs
                .view()
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
                .into_dyn(),
        };
        let record = if tape.is_training() {
            Some((forward, x_tm))
        } else {
            None
        };
        let parents = [
            inputs,
            state.c,
            state.h,
            tape.param(self.kernel),
            tape.param(self.bias),
        ];
        Ok(
            tape.push_op_multi(vec![outputs, c_final, h_final], &parents, move |ctx| {
                let (forward, x_tm) = record.as_ref().expect("recorded when training");
                let kernel = ctx
                    .input(3)
                    .view()
                    .into_dimensionality::<Ix2>()
                    .expect("rank 2");
                let d_out: Option<Array3<T>> = ctx.grad(0).map(|g| match layout {
                    Layout::Step => g
                        .view()
                        .insert_axis(Axis(0))
                        .into_dimensionality::<Ix3>()
                        .expect("rank 3")
                        .to_owned(),
                    Layout::TimeMajor => g
                        .view()
                        .into_dimensionality::<Ix3>()
                        .expect("rank 3")
                        .to_owned(),
                    Layout::BatchMajor => g
                        .view()
                        .into_dimensionality::<Ix3>()
                        .expect("rank 3")
                        .permuted_axes([1, 0, 2])
                        .as_standard_layout()
                        .into_owned(),
                });
                let grads = lstm_backward(
                    forward,
                    x_tm.view(),
                    kernel,
                    d_out.as_ref().map(|d| d.view()),
                    ctx.grad(1)
                        .map(|g| g.view().into_dimensionality::<Ix2>().expect("rank 2")),
                    ctx.grad(2)
                        .map(|g| g.view().into_dimensionality::<Ix2>().expect("rank 2")),
                    ctx.needs(0),
                );
                let dx = grads.dx.map(|dx| match layout {
                    Layout::Step => dx.index_axis(Axis(0), 0).to_owned().into_dyn(),
                    Layout::TimeMajor => dx.into_dyn(),
                    Layout::BatchMajor => dx
                        .permuted_axes([1, 0, 2])
                        .as_standard_layout()
                        .into_owned()
                        .into_dyn(),
                });
                vec![
                    dx,
                    Some(grads.dc0.into_dyn()),
                    Some(grads.dh0.into_dyn()),
                    Some(grads.dkernel.into_dyn()),
                    Some(grads.dbias.into_dyn()),
                ]
            }),
        )
    }
}

fn check_lstm_shapes(kernel: &[usize], bias: &[usize]) -> Result<(usize, usize)> {
    if bias.len() != 1 || bias[0] == 0 || bias[0] % 4 != 0 {
        return Err(Error::shape(
            "BasicLstmCell",
            "a bias of shape [4 * num_units]",
            bias,
        ));
    }
    let units = bias[0] / 4;
    if kernel.len() != 2 || kernel[1] != 4 * units || kernel[0] <= units {
        return Err(Error::shape(
            "BasicLstmCell",
            format!("a kernel of shape [input_size + {units}, {}]", 4 * units),
            kernel,
        ));
    }
    Ok((kernel[0] - units, units))
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

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> LstmState {
        LstmState {
            c: zeros(tape, batch, self.num_units),
            h: zeros(tape, batch, self.num_units),
        }
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

/// What the forward pass keeps for the backward pass, all time-major.
struct LstmForward<T> {
    /// Activated gates `[time, batch, 4 * units]` in the order i, j, f, o.
    gates: Array3<T>,
    /// `c` before and after every step: `[time + 1, batch, units]`, `cs[0]` the initial state.
    cs: Array3<T>,
    /// `tanh(c)` after every step: `[time, batch, units]`.
    tanh_cs: Array3<T>,
    /// `h` before and after every step: `[time + 1, batch, units]`.
    hs: Array3<T>,
    /// Outputs `[time, batch, units]` (zero past an example's length).
    outputs: Array3<T>,
    /// Per-example lengths, if given.
    lengths: Option<Vec<usize>>,
}

struct LstmGrads<T> {
    dx: Option<Array3<T>>,
    dc0: Array2<T>,
    dh0: Array2<T>,
    dkernel: Array2<T>,
    dbias: ndarray::Array1<T>,
}

/// The LSTM over a whole time-major sequence.
///
/// The input projection of every step is one matrix product `[time * batch, in] @ W_x` before
/// the loop; each step then adds `h @ W_h` in place and applies the gates.
fn lstm_forward<T: Scalar>(
    x: ndarray::ArrayView3<'_, T>,
    kernel: ArrayView2<'_, T>,
    bias: &[T],
    c0: ArrayView2<'_, T>,
    h0: ArrayView2<'_, T>,
    forget_bias: T,
    lengths: Option<&[usize]>,
) -> LstmForward<T> {
    let (steps, batch, in_size) = x.dim();
    let units = bias.len() / 4;
    let (w_x, w_h) = kernel.split_at(Axis(0), in_size);
    let x_flat = x
        .into_shape_with_order((steps * batch, in_size))
        .expect("standard layout");
    let mut gates = Array2::<T>::zeros((steps * batch, 4 * units));
    for mut row in gates.rows_mut() {
        row.as_slice_mut()
            .expect("contiguous")
            .copy_from_slice(bias);
    }
    general_mat_mul(T::one(), &x_flat, &w_x, T::one(), &mut gates);
    let mut gates = gates
        .into_shape_with_order((steps, batch, 4 * units))
        .expect("sizes match");
    let mut cs = Array3::<T>::zeros((steps + 1, batch, units));
    let mut hs = Array3::<T>::zeros((steps + 1, batch, units));
    let mut tanh_cs = Array3::<T>::zeros((steps, batch, units));
    let mut outputs = Array3::<T>::zeros((steps, batch, units));
    cs.index_axis_mut(Axis(0), 0).assign(&c0);
    hs.index_axis_mut(Axis(0), 0).assign(&h0);
    for t in 0..steps {
        let mut z = gates.index_axis_mut(Axis(0), t);
        let (h_prev, mut h_next) = hs.multi_slice_mut((s![t, .., ..], s![t + 1, .., ..]));
        general_mat_mul(T::one(), &h_prev, &w_h, T::one(), &mut z);
        let (c_prev, mut c_next) = cs.multi_slice_mut((s![t, .., ..], s![t + 1, .., ..]));
        let mut tanh_c = tanh_cs.index_axis_mut(Axis(0), t);
        let mut out = outputs.index_axis_mut(Axis(0), t);
        for b in 0..batch {
            let alive = lengths.map_or(true, |l| t < l[b]);
            let cp = c_prev.row(b);
            let cp = cp.as_slice().expect("contiguous");
            if !alive {
                // Past this example's length: carry the state, output zero.
                c_next.row_mut(b).assign(&c_prev.row(b));
                h_next.row_mut(b).assign(&h_prev.row(b));
                continue;
            }
            let mut zr = z.row_mut(b);
            let zr = zr.as_slice_mut().expect("contiguous");
            let mut cn = c_next.row_mut(b);
            let cn = cn.as_slice_mut().expect("contiguous");
            let mut hn = h_next.row_mut(b);
            let hn = hn.as_slice_mut().expect("contiguous");
            let mut tc = tanh_c.row_mut(b);
            let tc = tc.as_slice_mut().expect("contiguous");
            let mut o_row = out.row_mut(b);
            let o_row = o_row.as_slice_mut().expect("contiguous");
            let (zi, rest) = zr.split_at_mut(units);
            let (zj, rest) = rest.split_at_mut(units);
            let (zf, zo) = rest.split_at_mut(units);
            for k in 0..units {
                let i = sigmoid(zi[k]);
                let j = zj[k].tanh();
                let f = sigmoid(zf[k] + forget_bias);
                let o = sigmoid(zo[k]);
                let c = cp[k] * f + i * j;
                let th = c.tanh();
                zi[k] = i;
                zj[k] = j;
                zf[k] = f;
                zo[k] = o;
                cn[k] = c;
                tc[k] = th;
                hn[k] = th * o;
                o_row[k] = th * o;
            }
        }
    }
    LstmForward {
        gates,
        cs,
        tanh_cs,
        hs,
        outputs,
        lengths: lengths.map(<[usize]>::to_vec),
    }
}

/// Backpropagation through time for [`lstm_forward`].
///
/// The per-step work is the gate derivatives and one product `dz_t @ W_h^T`; the weight
/// gradients of all steps are two products after the loop, and the input gradient one.
fn lstm_backward<T: Scalar>(
    fwd: &LstmForward<T>,
    x: ndarray::ArrayView3<'_, T>,
    kernel: ArrayView2<'_, T>,
    d_outputs: Option<ndarray::ArrayView3<'_, T>>,
    d_c_final: Option<ArrayView2<'_, T>>,
    d_h_final: Option<ArrayView2<'_, T>>,
    need_dx: bool,
) -> LstmGrads<T> {
    let (steps, batch, in_size) = x.dim();
    let units = fwd.cs.shape()[2];
    let (w_x, w_h) = kernel.split_at(Axis(0), in_size);
    let mut dz = Array3::<T>::zeros((steps, batch, 4 * units));
    // Gradients flowing into c_t and h_t from later steps (and from the final state).
    let mut dc = d_c_final.map_or_else(|| Array2::zeros((batch, units)), |g| g.to_owned());
    let mut dh = d_h_final.map_or_else(|| Array2::zeros((batch, units)), |g| g.to_owned());
    let mut dh_prev = Array2::<T>::zeros((batch, units));
    for t in (0..steps).rev() {
        if let Some(d_out) = &d_outputs {
            let d_out = d_out.index_axis(Axis(0), t);
            match &fwd.lengths {
                None => dh += &d_out,
                // A step past an example's length output a constant zero: no gradient flows back
                // from it.
                Some(l) => {
                    for (b, mut row) in dh.rows_mut().into_iter().enumerate() {
                        if t < l[b] {
                            row += &d_out.row(b);
                        }
                    }
                }
            }
        }
        let gates = fwd.gates.index_axis(Axis(0), t);
        let c_prev = fwd.cs.index_axis(Axis(0), t);
        let tanh_c = fwd.tanh_cs.index_axis(Axis(0), t);
        let mut dz_t = dz.index_axis_mut(Axis(0), t);
        for b in 0..batch {
            let alive = fwd.lengths.as_ref().map_or(true, |l| t < l[b]);
            if !alive {
                // The state was carried: its gradient passes straight through (dz stays zero).
                continue;
            }
            let g = gates.row(b);
            let g = g.as_slice().expect("contiguous");
            let (gi, rest) = g.split_at(units);
            let (gj, rest) = rest.split_at(units);
            let (gf, go) = rest.split_at(units);
            let cp = c_prev.row(b);
            let cp = cp.as_slice().expect("contiguous");
            let tc = tanh_c.row(b);
            let tc = tc.as_slice().expect("contiguous");
            let mut dcr = dc.row_mut(b);
            let dcr = dcr.as_slice_mut().expect("contiguous");
            let dhr = dh.row(b);
            let dhr = dhr.as_slice().expect("contiguous");
            let mut dzr = dz_t.row_mut(b);
            let dzr = dzr.as_slice_mut().expect("contiguous");
            let (dzi, rest) = dzr.split_at_mut(units);
            let (dzj, rest) = rest.split_at_mut(units);
            let (dzf, dzo) = rest.split_at_mut(units);
            for k in 0..units {
                let (i, j, f, o, th) = (gi[k], gj[k], gf[k], go[k], tc[k]);
                let one = T::one();
                let dck = dcr[k] + dhr[k] * o * (one - th * th);
                dzi[k] = dck * j * i * (one - i);
                dzj[k] = dck * i * (one - j * j);
                dzf[k] = dck * cp[k] * f * (one - f);
                dzo[k] = dhr[k] * th * o * (one - o);
                dcr[k] = dck * f;
            }
        }
        general_mat_mul(T::one(), &dz_t, &w_h.t(), T::zero(), &mut dh_prev);
        if let Some(l) = &fwd.lengths {
            for (b, &len) in l.iter().enumerate() {
                if t >= len {
                    // Carried rows: dz is zero, so dh_prev is the carried gradient alone.
                    dh_prev.row_mut(b).assign(&dh.row(b));
                }
            }
        }
        std::mem::swap(&mut dh, &mut dh_prev);
    }
    let dz_flat = dz
        .view()
        .into_shape_with_order((steps * batch, 4 * units))
        .expect("standard layout");
    let x_flat = x
        .into_shape_with_order((steps * batch, in_size))
        .expect("standard layout");
    let h_prev_flat = fwd
        .hs
        .slice(s![..steps, .., ..])
        .into_shape_with_order((steps * batch, units))
        .expect("standard layout");
    let mut dkernel = Array2::<T>::zeros((in_size + units, 4 * units));
    {
        let (mut dw_x, mut dw_h) = dkernel.view_mut().split_at(Axis(0), in_size);
        general_mat_mul(T::one(), &x_flat.t(), &dz_flat, T::zero(), &mut dw_x);
        general_mat_mul(T::one(), &h_prev_flat.t(), &dz_flat, T::zero(), &mut dw_h);
    }
    let dbias = dz_flat.sum_axis(Axis(0));
    let dx = need_dx.then(|| {
        dz_flat
            .dot(&w_x.t())
            .into_shape_with_order((steps, batch, in_size))
            .expect("sizes match")
    });
    LstmGrads {
        dx,
        dc0: dc,
        dh0: dh,
        dkernel,
        dbias,
    }
}
