//! `LayerNormBasicLstmCell`: TensorFlow's `tf.contrib.rnn.LayerNormBasicLSTMCell`.

use ndarray::{Array1, Array2, ArrayD, IxDyn};

use super::{check_input, check_state, create_all, zeros, Cell, LstmState};
use crate::init::Initializer;
use crate::ops::nn::check_keep_prob;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// TensorFlow's variance epsilon in `tf.contrib.layers.layer_norm`, which the cell calls:
/// `1e-12` for `float32` and `float64` (`1e-3` only for `float16`). The cell's default;
/// [`LayerNormLstmConfig::with_epsilon`] changes it (see there for when to).
pub const LAYER_NORM_EPSILON: f64 = 1e-12;

/// The scopes of the five layer normalisations under the cell's scope, in TensorFlow's order
/// (gates i, j, f, o, then the new cell state); each holds a `gamma` and a `beta`.
pub const LAYER_NORM_SCOPES: [&str; 5] = ["input", "transform", "forget", "output", "state"];

/// The weights of a [`LayerNormBasicLstmCell`] in TensorFlow's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormLstmWeights<T> {
    /// `kernel`: `[input_size + num_units, 4 * num_units]`, column blocks i, j, f, o.
    pub kernel: Array2<T>,
    /// `bias` `[4 * num_units]`: only without layer normalisation (with it, each `beta` is the
    /// shift and TensorFlow creates no bias).
    pub bias: Option<Array1<T>>,
    /// `(gamma, beta)`, each `[num_units]`, of the normalisations in [`LAYER_NORM_SCOPES`]
    /// order: only with layer normalisation.
    pub norms: Option<[(Array1<T>, Array1<T>); 5]>,
}

impl<T: Scalar> LayerNormLstmWeights<T> {
    /// `(input_size, num_units)`, checking every shape and that exactly one of `bias` and
    /// `norms` is given.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the weight that does not fit, [`Error::InvalidArgument`] for
    /// both or neither of `bias` and `norms`.
    pub fn sizes(&self) -> Result<(usize, usize)> {
        const OP: &str = "LayerNormBasicLstmCell weights";
        let (rows, cols) = self.kernel.dim();
        if cols == 0 || cols % 4 != 0 || rows <= cols / 4 {
            return Err(Error::shape(
                OP,
                "a kernel of shape [input_size + num_units, 4 * num_units]",
                self.kernel.shape(),
            ));
        }
        let units = cols / 4;
        match (&self.bias, &self.norms) {
            (Some(b), None) => {
                if b.len() != 4 * units {
                    return Err(Error::shape(
                        OP,
                        format!("a bias of shape [{}]", 4 * units),
                        b.shape(),
                    ));
                }
            }
            (None, Some(norms)) => {
                for (scope, (g, b)) in LAYER_NORM_SCOPES.iter().zip(norms) {
                    for (name, v) in [("gamma", g), ("beta", b)] {
                        if v.len() != units {
                            return Err(Error::shape(
                                OP,
                                format!("{scope}/{name} of shape [{units}]"),
                                v.shape(),
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err(Error::invalid(
                    "LayerNormBasicLstmCell weights: give the bias without layer normalisation, \
                     the norms' gamma and beta with it, not both or neither",
                ))
            }
        }
        Ok((rows - units, units))
    }
}

/// TensorFlow's `tf.contrib.rnn.LayerNormBasicLSTMCell`: a basic LSTM with layer
/// normalisation of each gate's pre-activation and of the new cell state, and recurrent
/// dropout on the candidate.
///
/// # Equations
/// With `LN_s(v) = (v - mean(v)) / sqrt(var(v) + ε) ⊙ s/gamma + s/beta` over each row (the
/// population variance; `ε` is TensorFlow's [`LAYER_NORM_EPSILON`], `1e-12`, unless
/// [`LayerNormLstmConfig::with_epsilon`] sets another; read there why all-zero inputs over a
/// zero state, such as MNIST's blank rows, give gradients that overflow `f32`) and `σ` the
/// logistic sigmoid:
///
/// ```text
/// [i, j, f, o] = split([x, h] @ kernel, 4, axis = 1)            (gate order i, j, f, o)
/// i = LN_input(i);  j = LN_transform(j);  f = LN_forget(f);  o = LN_output(o)
/// g  = dropout(tanh(j), dropout_keep_prob)
/// c' = LN_state(c ⊙ σ(f + forget_bias) + σ(i) ⊙ g)
/// h' = tanh(c') ⊙ σ(o);   output = h',  state = (c', h')
/// ```
///
/// Without layer normalisation (`layer_norm = false`) the `LN` are absent and a `bias`
/// `[4 * num_units]` is added to the gates' pre-activations: then the cell is
/// [`super::BasicLstmCell`] with dropout on the candidate.
///
/// The dropout (Semeniuta et al., 2016: "without memory loss", it drops only the candidate that
/// is added to `c`) keeps each element with probability `dropout_keep_prob` and scales kept
/// ones by `1 / dropout_keep_prob`, with a new mask at every step from the tape's seeded
/// generator ([`Tape::with_seed`]). TensorFlow applies it whenever `dropout_keep_prob < 1`
/// (users feed 1.0 at test time); here, as for [`super::DropoutWrapper`], an inference tape
/// skips it.
///
/// # Shapes
/// - `kernel` `[input_size + num_units, 4 * num_units]` (Glorot uniform); `input/gamma`,
///   `input/beta`, `transform/..`, `forget/..`, `output/..`, `state/..` `[num_units]` (gammas
///   `norm_gain`, default 1.0; betas `norm_shift`, default 0.0); TensorFlow's scope is
///   `rnn/layer_norm_basic_lstm_cell`.
/// - input `[batch, input_size]`; output and both state tensors `[batch, num_units]`.
///
/// The step is recorded with tape ops (`dynamic_rnn` steps through the sequence).
///
/// ```
/// use recurrent::cell::{Cell, LayerNormBasicLstmCell, LayerNormLstmConfig};
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = LayerNormLstmConfig::new(16)
///     .with_dropout_keep_prob(0.9)
///     .init(&mut params, "rnn/layer_norm_basic_lstm_cell", 5)
///     .unwrap();
/// assert!(params.id("rnn/layer_norm_basic_lstm_cell/state/gamma").is_some());
/// let tape = Tape::new(&params).with_seed(7);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[3, 6, 5])));
/// let (outputs, state) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default().sequence_length(&[6, 2, 4])).unwrap();
/// assert_eq!(tape.shape(outputs), vec![3, 6, 16]);
/// // With norm_shift 0 and norm_gain 1 each row of c' has mean 0 (before the carried rows).
/// let c = tape.to_array(state.c);
/// assert!(c.rows().into_iter().all(|r| r.sum().abs() < 1e-4));
/// let grads = tape.backward(tape.sum(outputs)).unwrap();
/// assert_eq!(grads.len(), 11); // kernel and five (gamma, beta) pairs
/// # let _ = LayerNormBasicLstmCell::new(&mut params, "other", 5, 16).unwrap();
/// ```
///
/// References: Ba, Kiros & Hinton, "Layer Normalization" (2016); Semeniuta, Severyn & Barth,
/// "Recurrent Dropout without Memory Loss" (2016).
#[derive(Debug, Clone)]
pub struct LayerNormBasicLstmCell {
    kernel: ParamId,
    bias: Option<ParamId>,
    norms: Option<[(ParamId, ParamId); 5]>,
    input_size: usize,
    num_units: usize,
    forget_bias: f64,
    dropout_keep_prob: f64,
    epsilon: f64,
}

/// The hyper-parameters of a [`LayerNormBasicLstmCell`] with TensorFlow's defaults;
/// [`LayerNormLstmConfig::init`] creates the cell.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormLstmConfig {
    /// The width of `c`, `h` and the output.
    pub num_units: usize,
    /// Added to the forget gate's (normalised) pre-activation (default 1.0).
    pub forget_bias: f64,
    /// Whether to normalise (default true).
    pub layer_norm: bool,
    /// The initial value of every `gamma` (default 1.0).
    pub norm_gain: f64,
    /// The initial value of every `beta` (default 0.0).
    pub norm_shift: f64,
    /// The keep probability of the recurrent dropout on the candidate (default 1.0: none).
    pub dropout_keep_prob: f64,
    /// The variance epsilon of every normalisation (default [`LAYER_NORM_EPSILON`],
    /// TensorFlow's `1e-12`).
    pub epsilon: f64,
}

impl LayerNormLstmConfig {
    /// `num_units` with TensorFlow's defaults.
    pub fn new(num_units: usize) -> Self {
        LayerNormLstmConfig {
            num_units,
            forget_bias: 1.0,
            layer_norm: true,
            norm_gain: 1.0,
            norm_shift: 0.0,
            dropout_keep_prob: 1.0,
            epsilon: LAYER_NORM_EPSILON,
        }
    }

    /// Sets `forget_bias`.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Self {
        self.forget_bias = forget_bias;
        self
    }

    /// Sets `layer_norm`.
    pub fn with_layer_norm(mut self, layer_norm: bool) -> Self {
        self.layer_norm = layer_norm;
        self
    }

    /// Sets `norm_gain`.
    pub fn with_norm_gain(mut self, norm_gain: f64) -> Self {
        self.norm_gain = norm_gain;
        self
    }

    /// Sets `norm_shift`.
    pub fn with_norm_shift(mut self, norm_shift: f64) -> Self {
        self.norm_shift = norm_shift;
        self
    }

    /// Sets `dropout_keep_prob`.
    pub fn with_dropout_keep_prob(mut self, dropout_keep_prob: f64) -> Self {
        self.dropout_keep_prob = dropout_keep_prob;
        self
    }

    /// Sets the variance epsilon of the normalisations (default TensorFlow's
    /// [`LAYER_NORM_EPSILON`], `1e-12`; must be positive and finite, checked by
    /// [`LayerNormLstmConfig::init`]).
    ///
    /// TensorFlow's `1e-12` makes a row whose elements are all equal (variance 0) come out
    /// as `beta` with a derivative of `gamma / sqrt(1e-12) = 1e6 * gamma` (applied to the
    /// row minus its mean). Such rows are exact zeros: a zero input (MNIST's blank top rows,
    /// padding) on a zero state makes every gate's pre-activation, the new cell state and so
    /// the next `h` exactly 0. Each such step multiplies the gradient flowing back by about
    /// `1e6` twice (the state's normalisation, then the candidate's), so a few of them
    /// overflow `f32`: `tf.contrib.rnn.LayerNormBasicLSTMCell` gives NaN at the first step
    /// of row-by-row MNIST (tensorflow/tensorflow#21929). This is the exact derivative of
    /// TensorFlow's function, not a rounding problem (in `f64` it is finite and huge:
    /// `tests/cells.rs`, `layer_norm_lstm_on_zero_inputs_over_a_zero_state`).
    ///
    /// A larger epsilon, such as the `1e-3` of Keras's `LayerNormalization` and of
    /// TensorFlow's own `float16` path, caps the gain at `1 / sqrt(epsilon)` per
    /// normalisation and changes rows of ordinary variance `v` by a relative
    /// `epsilon / (2 v)`; the gain still compounds over consecutive zero steps. An input
    /// that is not exactly zero removes the fixed point instead: `examples/mnist_stacked.rs`
    /// starts its input projection's bias away from 0 for this cell.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Creates the cell's parameters under `scope` (TensorFlow's is
    /// `rnn/layer_norm_basic_lstm_cell`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero sizes, a keep probability outside `(0, 1]`, values
    /// that are not finite, or a taken name (the store is then left as it was).
    pub fn init<T: Scalar>(
        &self,
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
    ) -> Result<LayerNormBasicLstmCell> {
        let units = self.num_units;
        if input_size == 0 || units == 0 {
            return Err(Error::invalid(format!(
                "LayerNormBasicLstmCell sizes must be positive, got input {input_size}, units \
                 {units}"
            )));
        }
        for (what, v) in [
            ("forget_bias", self.forget_bias),
            ("norm_gain", self.norm_gain),
            ("norm_shift", self.norm_shift),
        ] {
            if !v.is_finite() {
                return Err(Error::invalid(format!(
                    "LayerNormBasicLstmCell: {what} must be finite, got {v}"
                )));
            }
        }
        check_keep_prob(self.dropout_keep_prob)?;
        check_epsilon(self.epsilon)?;
        let scope = scope.into();
        params.check_free("LayerNormBasicLstmCell", &scope, &["kernel"])?;
        let kernel = Initializer::GlorotUniform
            .sample::<T>(&[input_size + units, 4 * units], params.rng())?
            .into_dimensionality()
            .expect("rank 2");
        let vector = |v: f64| Array1::from_elem(units, T::from_f64_lossy(v));
        let weights = LayerNormLstmWeights {
            kernel,
            bias: (!self.layer_norm).then(|| Array1::zeros(4 * units)),
            norms: self.layer_norm.then(|| {
                std::array::from_fn(|_| (vector(self.norm_gain), vector(self.norm_shift)))
            }),
        };
        LayerNormBasicLstmCell::from_weights(params, scope, weights)?
            .with_forget_bias(self.forget_bias)?
            .with_dropout_keep_prob(self.dropout_keep_prob)?
            .with_epsilon(self.epsilon)
    }
}

/// `Ok` for a positive, finite variance epsilon.
fn check_epsilon(epsilon: f64) -> Result<()> {
    if epsilon > 0.0 && epsilon.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "LayerNormBasicLstmCell: epsilon must be positive and finite, got {epsilon}"
        )))
    }
}

impl LayerNormBasicLstmCell {
    /// Creates the cell with TensorFlow's defaults (layer normalisation on, `norm_gain` 1.0,
    /// `norm_shift` 0.0, `forget_bias` 1.0, no dropout); [`LayerNormLstmConfig`] sets the
    /// others.
    ///
    /// # Errors
    /// As [`LayerNormLstmConfig::init`].
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        num_units: usize,
    ) -> Result<Self> {
        LayerNormLstmConfig::new(num_units).init(params, scope, input_size)
    }

    /// Creates the cell's parameters from given weights: `{scope}/kernel`, and
    /// `{scope}/{input,transform,forget,output,state}/{gamma,beta}` with layer normalisation or
    /// `{scope}/bias` without. `forget_bias` is 1.0, there is no dropout and the epsilon is
    /// [`LAYER_NORM_EPSILON`].
    ///
    /// # Errors
    /// As [`LayerNormLstmWeights::sizes`], and [`Error::InvalidArgument`] for a taken name; the
    /// store is then left as it was.
    pub fn from_weights<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        weights: LayerNormLstmWeights<T>,
    ) -> Result<Self> {
        let (input_size, num_units) = weights.sizes()?;
        let scope = scope.into();
        let names: Vec<String> = LAYER_NORM_SCOPES
            .iter()
            .flat_map(|s| [format!("{s}/gamma"), format!("{s}/beta")])
            .collect();
        let mut named = vec![("kernel", weights.kernel.into_dyn())];
        if let Some(b) = weights.bias {
            named.push(("bias", b.into_dyn()));
        }
        let layer_norm = weights.norms.is_some();
        if let Some(norms) = weights.norms {
            for (k, (g, b)) in norms.into_iter().enumerate() {
                named.push((&names[2 * k], g.into_dyn()));
                named.push((&names[2 * k + 1], b.into_dyn()));
            }
        }
        let ids = create_all(params, &scope, named)?;
        Ok(LayerNormBasicLstmCell {
            kernel: ids[0],
            bias: (!layer_norm).then(|| ids[1]),
            norms: layer_norm.then(|| std::array::from_fn(|k| (ids[1 + 2 * k], ids[2 + 2 * k]))),
            input_size,
            num_units,
            forget_bias: 1.0,
            dropout_keep_prob: 1.0,
            epsilon: LAYER_NORM_EPSILON,
        })
    }

    /// Sets the bias added to the forget gate at every step (default 1.0).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is not finite.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Result<Self> {
        if !forget_bias.is_finite() {
            return Err(Error::invalid(format!(
                "LayerNormBasicLstmCell: forget_bias must be finite, got {forget_bias}"
            )));
        }
        self.forget_bias = forget_bias;
        Ok(self)
    }

    /// Sets the keep probability of the recurrent dropout on the candidate (default 1.0).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] outside `(0, 1]`.
    pub fn with_dropout_keep_prob(mut self, keep_prob: f64) -> Result<Self> {
        check_keep_prob(keep_prob)?;
        self.dropout_keep_prob = keep_prob;
        Ok(self)
    }

    /// Sets the variance epsilon of the normalisations (default [`LAYER_NORM_EPSILON`]); see
    /// [`LayerNormLstmConfig::with_epsilon`] for when a larger one is needed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless it is positive and finite.
    pub fn with_epsilon(mut self, epsilon: f64) -> Result<Self> {
        check_epsilon(epsilon)?;
        self.epsilon = epsilon;
        Ok(self)
    }

    /// The variance epsilon of the normalisations.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// The number of units.
    pub fn num_units(&self) -> usize {
        self.num_units
    }

    /// The forget bias.
    pub fn forget_bias(&self) -> f64 {
        self.forget_bias
    }

    /// The recurrent dropout's keep probability.
    pub fn dropout_keep_prob(&self) -> f64 {
        self.dropout_keep_prob
    }

    /// Whether the cell normalises (else it has a bias).
    pub fn layer_norm(&self) -> bool {
        self.norms.is_some()
    }

    /// The kernel's handle.
    pub fn kernel(&self) -> ParamId {
        self.kernel
    }

    /// Copies the cell's weights out of `params`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the cell's parameters are not in `params`,
    /// [`Error::Shape`] if their shapes no longer fit.
    pub fn weights<T: Scalar>(&self, params: &ParamStore<T>) -> Result<LayerNormLstmWeights<T>> {
        params.check_ids("LayerNormBasicLstmCell::weights", &self.param_ids())?;
        let vector = |id: ParamId| -> Result<Array1<T>> {
            let v = params.value(id);
            v.clone()
                .into_dimensionality()
                .map_err(|_| Error::shape("LayerNormBasicLstmCell", "a rank-1 weight", v.shape()))
        };
        let kernel = params.value(self.kernel);
        let w = LayerNormLstmWeights {
            kernel: kernel.clone().into_dimensionality().map_err(|_| {
                Error::shape("LayerNormBasicLstmCell", "a rank-2 kernel", kernel.shape())
            })?,
            bias: self.bias.map(vector).transpose()?,
            norms: match self.norms {
                Some(ids) => {
                    let mut out = Vec::with_capacity(5);
                    for (g, b) in ids {
                        out.push((vector(g)?, vector(b)?));
                    }
                    Some(out.try_into().expect("five norms"))
                }
                None => None,
            },
        };
        w.sizes()?;
        Ok(w)
    }

    fn norm<T: Scalar>(&self, tape: &Tape<'_, T>, v: Var, k: usize) -> Result<Var> {
        match self.norms {
            Some(norms) => {
                let (g, b) = norms[k];
                tape.layer_norm(v, tape.param(g), tape.param(b), self.epsilon)
            }
            None => Ok(v),
        }
    }
}

impl Cell for LayerNormBasicLstmCell {
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
        const OP: &str = "LayerNormBasicLstmCell::zero_state";
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
        const OP: &str = "LayerNormBasicLstmCell";
        let batch = check_input(tape, OP, input, self.input_size)?;
        let (c, h) = (state.c, state.h);
        check_state(tape, OP, &[c, h], &[self.num_units; 2], batch)?;
        let mut z = tape.matmul(tape.concat(&[input, h], 1)?, tape.param(self.kernel))?;
        if let Some(b) = self.bias {
            z = tape.bias_add(z, tape.param(b))?;
        }
        let gates = tape.split(z, 4, 1)?;
        let i = self.norm(tape, gates[0], 0)?;
        let j = self.norm(tape, gates[1], 1)?;
        let f = self.norm(tape, gates[2], 2)?;
        let o = self.norm(tape, gates[3], 3)?;
        let g = tape.dropout(tape.tanh(j), self.dropout_keep_prob)?;
        let forget_bias = tape.constant(ArrayD::from_elem(
            IxDyn(&[1]),
            T::from_f64_lossy(self.forget_bias),
        ));
        let new_c = tape.add(
            tape.mul(c, tape.sigmoid(tape.add(f, forget_bias)?))?,
            tape.mul(tape.sigmoid(i), g)?,
        )?;
        let new_c = self.norm(tape, new_c, 4)?;
        let new_h = tape.mul(tape.tanh(new_c), tape.sigmoid(o))?;
        Ok((new_h, LstmState { c: new_c, h: new_h }))
    }

    /// `kernel`, then `bias` or the `(gamma, beta)` pairs in [`LAYER_NORM_SCOPES`] order.
    fn param_ids(&self) -> Vec<ParamId> {
        let mut ids = vec![self.kernel];
        ids.extend(self.bias);
        for (g, b) in self.norms.iter().flatten() {
            ids.extend([*g, *b]);
        }
        ids
    }
}
