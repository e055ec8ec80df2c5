//! `GruCell`: the gated recurrent unit.

use ndarray::{Array3, ArrayD, CowArray, Ix2, Ix3};

use super::{
    check_input, check_kernel_and_bias, check_state, create_all, kernel_shape, zeros, Cell,
};
use crate::init::Initializer;
use crate::kernels::gru as gru_kernel;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// TensorFlow 1.x's `GRUCell` (Cho et al., 2014), and with `reset_after` the variant of
/// cuDNN, PyTorch's `nn.GRU` and Keras's `GRU(reset_after=True)`.
///
/// # Equations
/// ```text
/// [r, u] = split(sigmoid([x, h] @ gates/kernel + gates/bias), 2, axis = 1)
/// c      = tanh([x, r * h] @ candidate/kernel + candidate/bias)
/// h'     = u * h + (1 - u) * c                      (the output is h')
/// ```
///
/// With `reset_after` ([`GruCellConfig::with_reset_after`]) the reset gate multiplies the
/// recurrent product instead of the state, and that product has a bias of its own,
/// `candidate/recurrent_bias` (Keras's name for the second row of its bias):
///
/// ```text
/// [r, u] = split(sigmoid([x, h] @ gates/kernel + gates/bias), 2, axis = 1)
/// c      = tanh(x @ W_cx + candidate/bias + r * (h @ W_ch + candidate/recurrent_bias))
/// h'     = u * h + (1 - u) * c
/// ```
///
/// where `W_cx = candidate/kernel[:input_size]` and `W_ch = candidate/kernel[input_size:]`
/// (the same kernel, split into its input and state rows). This is PyTorch's
/// `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))` with `z = u`, and Keras's `reset_after=True`
/// cell; [`crate::convert`] moves weights between them ([`crate::convert::gru_cell_from_torch`],
/// [`crate::convert::keras_reset_after_gru_to_tf`]). The gates need one bias: PyTorch's and
/// Keras's input and recurrent biases of `r` and `z` only ever appear summed.
///
/// # Shapes
/// - `gates/kernel` `[input_size + num_units, 2 * num_units]` (Glorot uniform; column blocks
///   r, u), `gates/bias` `[2 * num_units]` (initialised to 1.0, as in TensorFlow, so the cell
///   starts by remembering), `candidate/kernel` `[input_size + num_units, num_units]` (Glorot
///   uniform), `candidate/bias` `[num_units]` (zeros); with `reset_after` also
///   `candidate/recurrent_bias` `[num_units]` (zeros). TensorFlow's scope is `rnn/gru_cell`.
/// - input `[batch, input_size]`; state and output `[batch, num_units]` (the state is the
///   output).
///
/// A step is recorded as tape ops; [`crate::rnn::dynamic_rnn`] (and the static runners, which
/// stack their steps) run a whole sequence as one fused op instead: the input projection of all
/// steps as one product before the time loop, the gates and their gradients in one pass, the
/// weight gradients of all steps as one product after it. The two agree to rounding.
///
/// Without `reset_after` the reset gate multiplies `h` before the recurrent product, as in
/// TensorFlow 1.x and Keras's `reset_after=False`; PyTorch's `nn.GRU` applies it after, which
/// is another function: build the cell with `reset_after` to load PyTorch's weights. Both
/// variants run the fused kernel.
///
/// ```
/// use recurrent::cell::{Cell, GruCell};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = GruCell::new(&mut params, "rnn/gru_cell", 28, 64).unwrap();
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 28])));
/// let (h, state) = cell.call(&tape, x, &cell.zero_state(&tape, 4).unwrap()).unwrap();
/// assert_eq!(tape.shape(h), vec![4, 64]);
/// assert_eq!(h, state);
/// ```
///
/// With `reset_after`, a whole sequence through [`crate::rnn::dynamic_rnn`]:
///
/// ```
/// use recurrent::cell::{Cell, GruCellConfig};
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = GruCellConfig::new(16)
///     .with_reset_after(true)
///     .init(&mut params, "rnn/gru_cell", 5)
///     .unwrap();
/// assert!(cell.reset_after());
/// assert!(params.id("rnn/gru_cell/candidate/recurrent_bias").is_some());
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[3, 7, 5])));
/// let options = rnn::RnnOptions::default().sequence_length(&[7, 4, 1]);
/// let (outputs, h) = rnn::dynamic_rnn(&tape, &cell, x, options).unwrap();
/// assert_eq!((tape.shape(outputs), tape.shape(h)), (vec![3, 7, 16], vec![3, 16]));
/// let grads = tape.backward(tape.sum(outputs)).unwrap();
/// assert_eq!(grads.len(), 5); // two kernels, three biases
/// ```
///
/// References: Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for
/// Statistical Machine Translation" (2014); the `reset_after` variant is cuDNN's (NVIDIA,
/// cuDNN developer guide, `CUDNN_GRU`), documented for PyTorch's `torch.nn.GRU` and Keras's
/// `tf.keras.layers.GRU`.
#[derive(Debug, Clone)]
pub struct GruCell {
    gate_kernel: ParamId,
    gate_bias: ParamId,
    candidate_kernel: ParamId,
    candidate_bias: ParamId,
    /// `candidate/recurrent_bias`: present exactly when the cell is `reset_after`.
    candidate_recurrent_bias: Option<ParamId>,
    input_size: usize,
    num_units: usize,
}

/// The names of a GRU's parameters under its scope, in [`Cell::param_ids`] order (the fifth
/// only with `reset_after`).
const GRU_PARAMS: [&str; 5] = [
    "gates/kernel",
    "gates/bias",
    "candidate/kernel",
    "candidate/bias",
    "candidate/recurrent_bias",
];

/// The hyper-parameters of a [`GruCell`]; [`GruCellConfig::init`] creates the cell.
///
/// ```
/// use recurrent::cell::{Cell, GruCellConfig};
/// use recurrent::ParamStore;
///
/// let mut params = ParamStore::<f64>::new(0);
/// let cell = GruCellConfig::new(8).with_reset_after(true).init(&mut params, "gru", 3).unwrap();
/// let names: Vec<&str> = cell.param_ids().into_iter().map(|id| params.name(id)).collect();
/// assert_eq!(names, [
///     "gru/gates/kernel",
///     "gru/gates/bias",
///     "gru/candidate/kernel",
///     "gru/candidate/bias",
///     "gru/candidate/recurrent_bias",
/// ]);
/// assert!(GruCellConfig::new(0).init(&mut params, "zero", 3).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GruCellConfig {
    /// The width of the state and the output.
    pub num_units: usize,
    /// Applies the reset gate after the recurrent product (Keras's `reset_after`; default
    /// false, TensorFlow 1.x's `GRUCell`).
    pub reset_after: bool,
}

impl GruCellConfig {
    /// `num_units` with `reset_after` off, as `tf.nn.rnn_cell.GRUCell`.
    pub fn new(num_units: usize) -> Self {
        GruCellConfig {
            num_units,
            reset_after: false,
        }
    }

    /// Sets `reset_after`.
    pub fn with_reset_after(mut self, reset_after: bool) -> Self {
        self.reset_after = reset_after;
        self
    }

    /// Creates the cell's parameters under `scope` (TensorFlow's is `rnn/gru_cell`) with
    /// TensorFlow 1.x's initialisers (see [`GruCell`]); `candidate/recurrent_bias` starts at
    /// zero.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero sizes or a taken name (the store is then left as it
    /// was).
    pub fn init<T: Scalar>(
        &self,
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
    ) -> Result<GruCell> {
        let num_units = self.num_units;
        if !self.reset_after {
            return GruCell::new(params, scope, input_size, num_units);
        }
        let [rows, gate_cols] = kernel_shape("GruCellConfig::init", input_size, num_units, 2)?;
        let scope = scope.into();
        // Names first, so that a refused name draws nothing from the generator.
        params.check_free("GruCell", &scope, &GRU_PARAMS)?;
        let rng = params.rng();
        let gate_kernel = Initializer::GlorotUniform.sample::<T>(&[rows, gate_cols], rng)?;
        let gate_bias = Initializer::Constant(1.0).sample::<T>(&[gate_cols], rng)?;
        let candidate_kernel = Initializer::GlorotUniform.sample::<T>(&[rows, num_units], rng)?;
        let candidate_bias = Initializer::Zeros.sample::<T>(&[num_units], rng)?;
        let recurrent_bias = Initializer::Zeros.sample::<T>(&[num_units], rng)?;
        GruCell::from_weights_reset_after(
            params,
            scope,
            gate_kernel,
            gate_bias,
            candidate_kernel,
            candidate_bias,
            recurrent_bias,
        )
    }
}

impl GruCell {
    /// Creates `{scope}/gates/{kernel,bias}` and `{scope}/candidate/{kernel,bias}`: TensorFlow
    /// 1.x's `GRUCell` (for `reset_after`, see [`GruCellConfig`]).
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        num_units: usize,
    ) -> Result<Self> {
        let [rows, gate_cols] = kernel_shape("GruCell::new", input_size, num_units, 2)?;
        let scope = scope.into();
        let gate_kernel = params.create(
            &scope.join(GRU_PARAMS[0]),
            &[rows, gate_cols],
            Initializer::GlorotUniform,
        )?;
        let gate_bias = params.create(
            &scope.join(GRU_PARAMS[1]),
            &[gate_cols],
            Initializer::Constant(1.0),
        )?;
        let candidate_kernel = params.create(
            &scope.join(GRU_PARAMS[2]),
            &[rows, num_units],
            Initializer::GlorotUniform,
        )?;
        let candidate_bias =
            params.create(&scope.join(GRU_PARAMS[3]), &[num_units], Initializer::Zeros)?;
        Self::from_params(
            params,
            gate_kernel,
            gate_bias,
            candidate_kernel,
            candidate_bias,
        )
    }

    /// Creates the cell's parameters from given weights (for tests and weights trained elsewhere;
    /// [`crate::convert::TfGruWeights::to_cell`] takes them as one struct): `gate_kernel`
    /// `[input_size + num_units, 2 * num_units]` (blocks r, u), `gate_bias` `[2 * num_units]`,
    /// `candidate_kernel` `[input_size + num_units, num_units]`, `candidate_bias` `[num_units]`.
    ///
    /// # Errors
    /// [`Error::Shape`] for shapes that do not fit, [`Error::InvalidArgument`] for a taken name;
    /// either way the store is left as it was.
    pub fn from_weights<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        gate_kernel: ArrayD<T>,
        gate_bias: ArrayD<T>,
        candidate_kernel: ArrayD<T>,
        candidate_bias: ArrayD<T>,
    ) -> Result<Self> {
        check_gru_shapes(
            gate_kernel.shape(),
            gate_bias.shape(),
            candidate_kernel.shape(),
            candidate_bias.shape(),
        )?;
        let weights = [gate_kernel, gate_bias, candidate_kernel, candidate_bias];
        let ids = create_all(
            params,
            &scope.into(),
            GRU_PARAMS.into_iter().zip(weights).collect(),
        )?;
        Self::from_params(params, ids[0], ids[1], ids[2], ids[3])
    }

    /// As [`GruCell::from_weights`], for a `reset_after` cell: also creates
    /// `{scope}/candidate/recurrent_bias` from `candidate_recurrent_bias` `[num_units]`.
    ///
    /// # Errors
    /// As [`GruCell::from_weights`].
    pub fn from_weights_reset_after<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        gate_kernel: ArrayD<T>,
        gate_bias: ArrayD<T>,
        candidate_kernel: ArrayD<T>,
        candidate_bias: ArrayD<T>,
        candidate_recurrent_bias: ArrayD<T>,
    ) -> Result<Self> {
        let (_, units) = check_gru_shapes(
            gate_kernel.shape(),
            gate_bias.shape(),
            candidate_kernel.shape(),
            candidate_bias.shape(),
        )?;
        check_recurrent_bias(candidate_recurrent_bias.shape(), units)?;
        let weights = [
            gate_kernel,
            gate_bias,
            candidate_kernel,
            candidate_bias,
            candidate_recurrent_bias,
        ];
        let ids = create_all(
            params,
            &scope.into(),
            GRU_PARAMS.into_iter().zip(weights).collect(),
        )?;
        Self::from_params_reset_after(params, ids[0], ids[1], ids[2], ids[3], ids[4])
    }

    /// A cell over parameters already in the store: the explicit way to share weights.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for ids of another store, [`Error::Shape`] for shapes that do
    /// not fit.
    pub fn from_params<T: Scalar>(
        params: &ParamStore<T>,
        gate_kernel: ParamId,
        gate_bias: ParamId,
        candidate_kernel: ParamId,
        candidate_bias: ParamId,
    ) -> Result<Self> {
        let ids = [gate_kernel, gate_bias, candidate_kernel, candidate_bias];
        params.check_ids("GruCell::from_params", &ids)?;
        let [gk, gb, ck, cb] = ids.map(|id| params.value(id).shape());
        let (input_size, num_units) = check_gru_shapes(gk, gb, ck, cb)?;
        Ok(GruCell {
            gate_kernel,
            gate_bias,
            candidate_kernel,
            candidate_bias,
            candidate_recurrent_bias: None,
            input_size,
            num_units,
        })
    }

    /// A `reset_after` cell over parameters already in the store.
    ///
    /// # Errors
    /// As [`GruCell::from_params`].
    pub fn from_params_reset_after<T: Scalar>(
        params: &ParamStore<T>,
        gate_kernel: ParamId,
        gate_bias: ParamId,
        candidate_kernel: ParamId,
        candidate_bias: ParamId,
        candidate_recurrent_bias: ParamId,
    ) -> Result<Self> {
        params.check_ids(
            "GruCell::from_params_reset_after",
            &[candidate_recurrent_bias],
        )?;
        let mut cell = Self::from_params(
            params,
            gate_kernel,
            gate_bias,
            candidate_kernel,
            candidate_bias,
        )?;
        check_recurrent_bias(
            params.value(candidate_recurrent_bias).shape(),
            cell.num_units,
        )?;
        cell.candidate_recurrent_bias = Some(candidate_recurrent_bias);
        Ok(cell)
    }

    /// Whether the reset gate is applied after the recurrent product (see [`GruCell`]).
    pub fn reset_after(&self) -> bool {
        self.candidate_recurrent_bias.is_some()
    }

    /// The width of the state and the output.
    pub fn num_units(&self) -> usize {
        self.num_units
    }

    /// The handle of `candidate/recurrent_bias`, if the cell is `reset_after`.
    pub fn candidate_recurrent_bias(&self) -> Option<ParamId> {
        self.candidate_recurrent_bias
    }
}

fn check_recurrent_bias(shape: &[usize], units: usize) -> Result<()> {
    if shape == [units] {
        Ok(())
    } else {
        Err(Error::shape(
            "GruCell candidate/recurrent_bias",
            format!("a bias of shape [{units}]"),
            shape,
        ))
    }
}

/// Checks the four shapes of a GRU and returns `(input_size, num_units)`.
fn check_gru_shapes(
    gate_kernel: &[usize],
    gate_bias: &[usize],
    candidate_kernel: &[usize],
    candidate_bias: &[usize],
) -> Result<(usize, usize)> {
    let sizes = check_kernel_and_bias("GruCell gates", gate_kernel, gate_bias, 2)?;
    if check_kernel_and_bias("GruCell candidate", candidate_kernel, candidate_bias, 1)? != sizes {
        return Err(Error::shape(
            "GruCell candidate",
            format!(
                "a kernel of shape [{}, {}] to match the gates",
                sizes.0 + sizes.1,
                sizes.1
            ),
            candidate_kernel,
        ));
    }
    Ok(sizes)
}

impl Cell for GruCell {
    type State = Var;

    fn input_size(&self) -> usize {
        self.input_size
    }

    fn output_size(&self) -> usize {
        self.num_units
    }

    fn state_size(&self) -> Vec<usize> {
        vec![self.num_units]
    }

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<Var> {
        zeros("GruCell::zero_state", tape, batch, self.num_units)
    }

    fn call<T: Scalar>(&self, tape: &Tape<'_, T>, input: Var, state: &Var) -> Result<(Var, Var)> {
        let batch = check_input(tape, "GruCell", input, self.input_size)?;
        let h = *state;
        check_state(tape, "GruCell", &[h], &[self.num_units], batch)?;
        let xh = tape.concat(&[input, h], 1)?;
        let gates = tape.sigmoid(tape.bias_add(
            tape.matmul(xh, tape.param(self.gate_kernel))?,
            tape.param(self.gate_bias),
        )?);
        let ru = tape.split(gates, 2, 1)?;
        let (r, u) = (ru[0], ru[1]);
        let c = match self.candidate_recurrent_bias {
            None => {
                let x_rh = tape.concat(&[input, tape.mul(r, h)?], 1)?;
                tape.tanh(tape.bias_add(
                    tape.matmul(x_rh, tape.param(self.candidate_kernel))?,
                    tape.param(self.candidate_bias),
                )?)
            }
            Some(recurrent_bias) => {
                // c = tanh(x W_cx + b_c + r * (h W_ch + b_ch)), W_c split into its rows.
                let w = tape.split(
                    tape.param(self.candidate_kernel),
                    vec![self.input_size, self.num_units],
                    0,
                )?;
                let xc =
                    tape.bias_add(tape.matmul(input, w[0])?, tape.param(self.candidate_bias))?;
                let hn = tape.bias_add(tape.matmul(h, w[1])?, tape.param(recurrent_bias))?;
                tape.tanh(tape.add(xc, tape.mul(r, hn)?)?)
            }
        };
        let new_h = tape.add(tape.mul(u, h)?, tape.mul(tape.one_minus(u), c)?)?;
        Ok((new_h, new_h))
    }

    /// `gates/kernel`, `gates/bias`, `candidate/kernel`, `candidate/bias`, then (with
    /// `reset_after`) `candidate/recurrent_bias`.
    fn param_ids(&self) -> Vec<ParamId> {
        let mut ids = vec![
            self.gate_kernel,
            self.gate_bias,
            self.candidate_kernel,
            self.candidate_bias,
        ];
        ids.extend(self.candidate_recurrent_bias);
        ids
    }

    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &Var,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, Var)>> {
        Some(
            self.record_sequence(tape, inputs, *state, sequence_length, time_major)
                .map(|out| (out[0], out[1])),
        )
    }
}

impl GruCell {
    /// Records the fused GRU over `inputs` (`[batch, time, in]`, or `[time, batch, in]` when
    /// `time_major`) from `h0` as one tape op with outputs `[outputs, h_last]`.
    fn record_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        h0: Var,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Result<Vec<Var>> {
        let (units, in_size) = (self.num_units, self.input_size);
        let shape = tape.shape(inputs);
        if shape.len() != 3 || shape[2] != in_size {
            let order = if time_major {
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
        // The kernel works batch-major.
        let x: Array3<T> = {
            let x = tape.value(inputs);
            let x3 = x.view().into_dimensionality::<Ix3>().expect("rank 3");
            if time_major {
                x3.permuted_axes([1, 0, 2])
                    .as_standard_layout()
                    .into_owned()
            } else {
                x3.as_standard_layout().into_owned()
            }
        };
        let (batch, steps) = (x.shape()[0], x.shape()[1]);
        if steps == 0 {
            return Err(Error::invalid(
                "GruCell: a sequence needs at least one time step",
            ));
        }
        check_state(tape, "GruCell", &[h0], &[units], batch)?;
        let lengths = sequence_length
            .map(|l| crate::rnn::check_lengths(l, batch, steps))
            .transpose()?;
        let ids = self.param_ids();
        let mut forward = {
            let values: Vec<_> = ids.iter().map(|&id| tape.value(tape.param(id))).collect();
            let h0 = tape.value(h0);
            gru_kernel::forward(
                x.view(),
                weights(
                    &values[0],
                    &values[1],
                    &values[2],
                    &values[3],
                    values.get(4).map(|v| &**v),
                ),
                h0.view().into_dimensionality::<Ix2>().expect("checked"),
                lengths.as_deref(),
            )
        };
        let outputs = std::mem::take(&mut forward.outputs);
        let outputs = if time_major {
            outputs
                .view()
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
                .into_dyn()
        } else {
            outputs.into_dyn()
        };
        let h_last = std::mem::take(&mut forward.h_last).into_dyn();
        // An inference tape keeps nothing for a backward pass.
        let saved = tape.is_training().then_some((forward, x));
        let mut parents = vec![inputs, h0];
        parents.extend(ids.iter().map(|&id| tape.param(id)));
        let reset_after = self.reset_after();
        Ok(
            tape.push_op_multi(vec![outputs, h_last], &parents, move |ctx| {
                let (forward, x) = saved.as_ref().expect("kept on a training tape");
                let d_outputs: Option<CowArray<'_, T, Ix3>> = ctx.grad(0).map(|g| {
                    let g = g.view().into_dimensionality::<Ix3>().expect("rank 3");
                    if time_major {
                        CowArray::from(g.permuted_axes([1, 0, 2]).as_standard_layout().into_owned())
                    } else {
                        CowArray::from(g)
                    }
                });
                let grads = gru_kernel::backward(
                    forward,
                    x.view(),
                    weights(
                        ctx.input(2),
                        ctx.input(3),
                        ctx.input(4),
                        ctx.input(5),
                        reset_after.then(|| ctx.input(6)),
                    ),
                    d_outputs.as_ref().map(|d| d.view()),
                    ctx.grad(1)
                        .map(|g| g.view().into_dimensionality::<Ix2>().expect("rank 2")),
                    ctx.needs(0),
                );
                let dx = grads.dx.map(|dx| {
                    if time_major {
                        dx.permuted_axes([1, 0, 2])
                            .as_standard_layout()
                            .into_owned()
                            .into_dyn()
                    } else {
                        dx.into_dyn()
                    }
                });
                let mut out = vec![
                    dx,
                    Some(grads.dh0.into_dyn()),
                    Some(grads.d_gate_kernel.into_dyn()),
                    Some(grads.d_gate_bias.into_dyn()),
                    Some(grads.d_candidate_kernel.into_dyn()),
                    Some(grads.d_candidate_bias.into_dyn()),
                ];
                if let Some(d) = grads.d_candidate_recurrent_bias {
                    out.push(Some(d.into_dyn()));
                }
                out
            }),
        )
    }
}

/// The kernel's view of the parameter values (the candidate recurrent bias for `reset_after`).
fn weights<'a, T: Scalar>(
    gate_kernel: &'a ArrayD<T>,
    gate_bias: &'a ArrayD<T>,
    candidate_kernel: &'a ArrayD<T>,
    candidate_bias: &'a ArrayD<T>,
    candidate_recurrent_bias: Option<&'a ArrayD<T>>,
) -> gru_kernel::Weights<'a, T> {
    let matrix = |a: &'a ArrayD<T>| a.view().into_dimensionality::<Ix2>().expect("rank 2");
    let vector = |a: &'a ArrayD<T>| a.as_slice().expect("standard layout");
    gru_kernel::Weights {
        gate_kernel: matrix(gate_kernel),
        gate_bias: vector(gate_bias),
        candidate_kernel: matrix(candidate_kernel),
        candidate_bias: vector(candidate_bias),
        candidate_recurrent_bias: candidate_recurrent_bias.map(vector),
    }
}
