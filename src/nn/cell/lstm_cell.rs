//! `LstmCell`: TensorFlow 1.x's `LSTMCell`, with peepholes, cell clipping and a projection.

use ndarray::{Array1, Array2, ArrayD, IxDyn};

use super::{check_input, check_state, create_all, zeros, BasicLstmCell, Cell, LstmState};
use crate::init::Initializer;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// The diagonal peephole weights of an [`LstmCell`], each `[num_units]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmPeepholes<T> {
    /// `w_f_diag`: the forget gate's view of `c_{t-1}`.
    pub w_f_diag: Array1<T>,
    /// `w_i_diag`: the input gate's view of `c_{t-1}`.
    pub w_i_diag: Array1<T>,
    /// `w_o_diag`: the output gate's view of the new `c_t`.
    pub w_o_diag: Array1<T>,
}

/// The weights of an [`LstmCell`] in TensorFlow's layout (for loading weights trained
/// elsewhere; [`LstmCell::weights`] copies them out of a store).
#[derive(Debug, Clone, PartialEq)]
pub struct LstmCellWeights<T> {
    /// `kernel`: `[input_size + h_depth, 4 * num_units]` with `h_depth` = `num_proj` if there
    /// is a projection, else `num_units`; rows: input, then previous output; column blocks:
    /// gates i, j, f, o.
    pub kernel: Array2<T>,
    /// `bias`: `[4 * num_units]`, gates i, j, f, o.
    pub bias: Array1<T>,
    /// `w_f_diag`, `w_i_diag`, `w_o_diag` when the cell uses peepholes.
    pub peepholes: Option<LstmPeepholes<T>>,
    /// `projection/kernel`: `[num_units, num_proj]` when the cell projects its output.
    pub projection: Option<Array2<T>>,
}

impl<T: Scalar> LstmCellWeights<T> {
    /// `(input_size, num_units, num_proj)`, checking every shape.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the weight that does not fit.
    pub fn sizes(&self) -> Result<(usize, usize, Option<usize>)> {
        const OP: &str = "LstmCell weights";
        let n = self.bias.len();
        if n == 0 || !n.is_multiple_of(4) {
            return Err(Error::shape(
                OP,
                "a bias of shape [4 * num_units]",
                self.bias.shape(),
            ));
        }
        let units = n / 4;
        let num_proj = match &self.projection {
            Some(p) => {
                if p.nrows() != units || p.ncols() == 0 {
                    return Err(Error::shape(
                        OP,
                        format!("projection/kernel of shape [{units}, num_proj > 0]"),
                        p.shape(),
                    ));
                }
                Some(p.ncols())
            }
            None => None,
        };
        let h_depth = num_proj.unwrap_or(units);
        let (rows, cols) = self.kernel.dim();
        if cols != 4 * units || rows <= h_depth {
            return Err(Error::shape(
                OP,
                format!("a kernel of shape [input_size + {h_depth}, {}]", 4 * units),
                self.kernel.shape(),
            ));
        }
        if let Some(p) = &self.peepholes {
            for (name, w) in [
                ("w_f_diag", &p.w_f_diag),
                ("w_i_diag", &p.w_i_diag),
                ("w_o_diag", &p.w_o_diag),
            ] {
                if w.len() != units {
                    return Err(Error::shape(
                        OP,
                        format!("{name} of shape [{units}]"),
                        w.shape(),
                    ));
                }
            }
        }
        Ok((rows - h_depth, units, num_proj))
    }
}

/// The hyper-parameters of an [`LstmCell`], with TensorFlow's defaults; [`LstmCellConfig::init`]
/// creates the cell.
///
/// ```
/// use recurrent::cell::{Cell, LstmCellConfig};
/// use recurrent::ParamStore;
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = LstmCellConfig::new(64)
///     .with_peepholes(true)
///     .with_cell_clip(3.0)
///     .with_num_proj(32)
///     .init(&mut params, "rnn/lstm_cell", 40)
///     .unwrap();
/// assert_eq!((cell.output_size(), cell.state_size()), (32, vec![64, 32]));
/// assert!(params.id("rnn/lstm_cell/projection/kernel").is_some());
/// assert!(LstmCellConfig::new(8).with_proj_clip(1.0).init(&mut params, "x", 4).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LstmCellConfig {
    /// The width of `c` (and of `h` without a projection).
    pub num_units: usize,
    /// Diagonal peephole connections (`use_peepholes`, default false).
    pub use_peepholes: bool,
    /// Clips the new `c` to `[-cell_clip, cell_clip]` (default none).
    pub cell_clip: Option<f64>,
    /// Projects the output to this width (`num_proj`, default none).
    pub num_proj: Option<usize>,
    /// Clips the projected output to `[-proj_clip, proj_clip]` (needs `num_proj`).
    pub proj_clip: Option<f64>,
    /// Added to the forget gate's pre-activation (default 1.0).
    pub forget_bias: f64,
}

impl LstmCellConfig {
    /// `num_units` with every option off and `forget_bias` 1.0, as `tf.nn.rnn_cell.LSTMCell`.
    pub fn new(num_units: usize) -> Self {
        LstmCellConfig {
            num_units,
            use_peepholes: false,
            cell_clip: None,
            num_proj: None,
            proj_clip: None,
            forget_bias: 1.0,
        }
    }

    /// Sets `use_peepholes`.
    pub fn with_peepholes(mut self, use_peepholes: bool) -> Self {
        self.use_peepholes = use_peepholes;
        self
    }

    /// Sets `cell_clip`.
    pub fn with_cell_clip(mut self, cell_clip: f64) -> Self {
        self.cell_clip = Some(cell_clip);
        self
    }

    /// Sets `num_proj`.
    pub fn with_num_proj(mut self, num_proj: usize) -> Self {
        self.num_proj = Some(num_proj);
        self
    }

    /// Sets `proj_clip`.
    pub fn with_proj_clip(mut self, proj_clip: f64) -> Self {
        self.proj_clip = Some(proj_clip);
        self
    }

    /// Sets `forget_bias`.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Self {
        self.forget_bias = forget_bias;
        self
    }

    /// Creates the cell's parameters under `scope` (TensorFlow's is `rnn/lstm_cell`) with
    /// TensorFlow's initialisers: Glorot uniform for `kernel`, the peepholes and
    /// `projection/kernel`, zeros for `bias`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero sizes, a clip that is not positive and finite, a
    /// `proj_clip` without `num_proj`, a forget bias that is not finite, or a taken name (the
    /// store is then left as it was).
    pub fn init<T: Scalar>(
        &self,
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
    ) -> Result<LstmCell> {
        let units = self.num_units;
        if input_size == 0 || units == 0 || self.num_proj == Some(0) {
            return Err(Error::invalid(format!(
                "LstmCell sizes must be positive, got input {input_size}, units {units}, \
                 num_proj {:?}",
                self.num_proj
            )));
        }
        check_clips(self.cell_clip, self.proj_clip, self.num_proj.is_some())?;
        check_forget_bias(self.forget_bias)?;
        let h_depth = self.num_proj.unwrap_or(units);
        let scope = scope.into();
        // Names first, so that a refused name draws nothing from the generator.
        let mut names = vec!["kernel", "bias"];
        if self.use_peepholes {
            names.extend(PEEPHOLES);
        }
        if self.num_proj.is_some() {
            names.push("projection/kernel");
        }
        params.check_free("LstmCell", &scope, &names)?;
        let rng = params.rng();
        let mut draw = |shape: &[usize], init: Initializer| init.sample::<T>(shape, rng);
        let kernel = to2(draw(
            &[input_size + h_depth, 4 * units],
            Initializer::GlorotUniform,
        )?);
        let bias = to1(draw(&[4 * units], Initializer::Zeros)?);
        let peepholes = match self.use_peepholes {
            true => Some(LstmPeepholes {
                w_f_diag: to1(draw(&[units], Initializer::GlorotUniform)?),
                w_i_diag: to1(draw(&[units], Initializer::GlorotUniform)?),
                w_o_diag: to1(draw(&[units], Initializer::GlorotUniform)?),
            }),
            false => None,
        };
        let projection = match self.num_proj {
            Some(p) => Some(to2(draw(&[units, p], Initializer::GlorotUniform)?)),
            None => None,
        };
        let weights = LstmCellWeights {
            kernel,
            bias,
            peepholes,
            projection,
        };
        let mut cell =
            LstmCell::from_weights(params, scope, weights)?.with_forget_bias(self.forget_bias)?;
        if let Some(clip) = self.cell_clip {
            cell = cell.with_cell_clip(clip)?;
        }
        if let Some(clip) = self.proj_clip {
            cell = cell.with_proj_clip(clip)?;
        }
        Ok(cell)
    }
}

fn to1<T: Scalar>(a: ArrayD<T>) -> Array1<T> {
    a.into_dimensionality().expect("drawn with rank 1")
}

fn to2<T: Scalar>(a: ArrayD<T>) -> Array2<T> {
    a.into_dimensionality().expect("drawn with rank 2")
}

fn check_clip(what: &str, clip: f64) -> Result<()> {
    if clip > 0.0 && clip.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "LstmCell: {what} must be positive and finite, got {clip}"
        )))
    }
}

fn check_clips(cell_clip: Option<f64>, proj_clip: Option<f64>, has_proj: bool) -> Result<()> {
    if let Some(c) = cell_clip {
        check_clip("cell_clip", c)?;
    }
    if let Some(c) = proj_clip {
        if !has_proj {
            return Err(Error::invalid(
                "LstmCell: proj_clip needs a projection (num_proj)",
            ));
        }
        check_clip("proj_clip", c)?;
    }
    Ok(())
}

fn check_forget_bias(forget_bias: f64) -> Result<()> {
    if forget_bias.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "LstmCell: forget_bias must be finite, got {forget_bias}"
        )))
    }
}

/// The names of the peephole weights under the cell's scope, in [`Cell::param_ids`] order.
const PEEPHOLES: [&str; 3] = ["w_f_diag", "w_i_diag", "w_o_diag"];

/// TensorFlow 1.x's `LSTMCell` (`tf.nn.rnn_cell.LSTMCell`): an LSTM with optional diagonal
/// peepholes, cell clipping and an output projection.
///
/// # Equations
/// With `[x, h]` the input and previous output side by side and `σ` the logistic sigmoid:
///
/// ```text
/// [i, j, f, o] = split([x, h] @ kernel + bias, 4, axis = 1)     (gate order i, j, f, o)
/// c' = σ(f + forget_bias + w_f_diag ⊙ c) ⊙ c + σ(i + w_i_diag ⊙ c) ⊙ tanh(j)
/// c' = clip(c', -cell_clip, cell_clip)                                        (with cell_clip)
/// m  = σ(o + w_o_diag ⊙ c') ⊙ tanh(c')
/// m  = clip(m @ projection/kernel, -proj_clip, proj_clip)       (with num_proj and proj_clip)
/// output = h' = m;   state = (c', m)
/// ```
///
/// Without peepholes the `w_*_diag` terms are absent; without options the cell computes
/// exactly what [`BasicLstmCell`] computes (it then runs [`BasicLstmCell`]'s fused kernel, bit
/// for bit). Clipping passes the gradient where the value was inside the bounds and stops it
/// where it was clipped, as `tf.clip_by_value` does.
///
/// # Shapes
/// With `h_depth` = `num_proj` if set, else `num_units`:
/// - `kernel` `[input_size + h_depth, 4 * num_units]`, `bias` `[4 * num_units]`, `w_f_diag`,
///   `w_i_diag`, `w_o_diag` `[num_units]`, `projection/kernel` `[num_units, num_proj]`;
///   TensorFlow's names under its scope `rnn/lstm_cell`, so its checkpoints map one to one.
/// - input `[batch, input_size]`; state `c` `[batch, num_units]`, `h` `[batch, h_depth]`;
///   output `[batch, h_depth]`.
///
/// Without a projection the cell runs [`BasicLstmCell`]'s fused sequence kernel, peepholes and
/// `cell_clip` included ([`crate::rnn::dynamic_rnn`] runs the whole sequence as one op). With a
/// projection (`num_proj`) the step is recorded with tape ops (about a dozen per step) and
/// `dynamic_rnn` steps through the sequence. Measured at batch 128, 128 units
/// (ARCHITECTURE.md), the fused kernel with peepholes and a clip costs 1.01x the plain kernel's
/// instructions; the same cell on tape ops 1.54x, and about 1.5x its time on two cores.
///
/// ```
/// use recurrent::cell::{Cell, LstmCellConfig};
/// use recurrent::{rnn, ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = LstmCellConfig::new(16)
///     .with_peepholes(true)
///     .with_num_proj(8)
///     .with_proj_clip(2.0)
///     .init(&mut params, "rnn/lstm_cell", 5)
///     .unwrap();
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[3, 7, 5])));
/// let (outputs, state) = rnn::dynamic_rnn(&tape, &cell, x, rnn::RnnOptions::default().sequence_length(&[7, 4, 1])).unwrap();
/// assert_eq!(tape.shape(outputs), vec![3, 7, 8]);
/// assert_eq!((tape.shape(state.c), tape.shape(state.h)), (vec![3, 16], vec![3, 8]));
/// assert!(tape.value(outputs).iter().all(|v| v.abs() <= 2.0));
/// let grads = tape.backward(tape.sum(outputs)).unwrap();
/// assert_eq!(grads.len(), 6); // kernel, bias, three peepholes, projection
/// ```
///
/// References: Hochreiter & Schmidhuber, "Long Short-Term Memory" (1997); Gers & Schmidhuber,
/// "Recurrent Nets that Time and Count" (2000), for the peepholes; Sak, Senior & Beaufays,
/// "Long Short-Term Memory Recurrent Neural Network Architectures for Large Scale Acoustic
/// Modeling" (2014), for the projection.
#[derive(Debug, Clone)]
pub struct LstmCell {
    kernel: ParamId,
    bias: ParamId,
    peepholes: Option<[ParamId; 3]>,
    projection: Option<ParamId>,
    input_size: usize,
    num_units: usize,
    num_proj: Option<usize>,
    forget_bias: f64,
    cell_clip: Option<f64>,
    proj_clip: Option<f64>,
    /// The same kernel and bias as a [`BasicLstmCell`] (when there is no projection), run
    /// instead of tape ops (with the cell's peepholes and clip).
    basic: Option<BasicLstmCell>,
    /// Forces the tape-op step ([`LstmCell::with_tape_ops`]).
    tape_ops: bool,
}

impl LstmCell {
    /// Creates the cell's parameters from given weights under `scope`: `{scope}/kernel`,
    /// `{scope}/bias`, `{scope}/w_f_diag`, `{scope}/w_i_diag`, `{scope}/w_o_diag` (with
    /// peepholes) and `{scope}/projection/kernel` (with a projection). `forget_bias` is 1.0 and
    /// no clipping is set; see [`LstmCell::with_forget_bias`] and the other `with_` methods.
    ///
    /// # Errors
    /// [`Error::Shape`] for shapes that do not fit, [`Error::InvalidArgument`] for a taken name;
    /// either way the store is left as it was.
    pub fn from_weights<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        weights: LstmCellWeights<T>,
    ) -> Result<Self> {
        weights.sizes()?;
        let scope = scope.into();
        let LstmCellWeights {
            kernel,
            bias,
            peepholes,
            projection,
        } = weights;
        let has_peepholes = peepholes.is_some();
        let has_projection = projection.is_some();
        let mut named = vec![("kernel", kernel.into_dyn()), ("bias", bias.into_dyn())];
        if let Some(p) = peepholes {
            named.push((PEEPHOLES[0], p.w_f_diag.into_dyn()));
            named.push((PEEPHOLES[1], p.w_i_diag.into_dyn()));
            named.push((PEEPHOLES[2], p.w_o_diag.into_dyn()));
        }
        if let Some(p) = projection {
            named.push(("projection/kernel", p.into_dyn()));
        }
        let ids = create_all(params, &scope, named)?;
        let peepholes = has_peepholes.then(|| [ids[2], ids[3], ids[4]]);
        let projection = has_projection.then(|| ids[ids.len() - 1]);
        Self::from_params(params, ids[0], ids[1], peepholes, projection)
    }

    /// A cell over parameters already in the store (the explicit way to share weights):
    /// `peepholes` are `[w_f_diag, w_i_diag, w_o_diag]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for ids of another store, [`Error::Shape`] for shapes that do
    /// not fit.
    pub fn from_params<T: Scalar>(
        params: &ParamStore<T>,
        kernel: ParamId,
        bias: ParamId,
        peepholes: Option<[ParamId; 3]>,
        projection: Option<ParamId>,
    ) -> Result<Self> {
        let mut ids = vec![kernel, bias];
        ids.extend(peepholes.iter().flatten());
        ids.extend(projection);
        params.check_ids("LstmCell::from_params", &ids)?;
        let matrix = |id: ParamId| -> Result<Array2<T>> {
            let v = params.value(id);
            v.clone()
                .into_dimensionality()
                .map_err(|_| Error::shape("LstmCell", "a rank-2 weight", v.shape()))
        };
        let vector = |id: ParamId| -> Result<Array1<T>> {
            let v = params.value(id);
            v.clone()
                .into_dimensionality()
                .map_err(|_| Error::shape("LstmCell", "a rank-1 weight", v.shape()))
        };
        let weights = LstmCellWeights {
            kernel: matrix(kernel)?,
            bias: vector(bias)?,
            peepholes: peepholes
                .map(|[f, i, o]| -> Result<LstmPeepholes<T>> {
                    Ok(LstmPeepholes {
                        w_f_diag: vector(f)?,
                        w_i_diag: vector(i)?,
                        w_o_diag: vector(o)?,
                    })
                })
                .transpose()?,
            projection: projection.map(matrix).transpose()?,
        };
        let (input_size, num_units, num_proj) = weights.sizes()?;
        let basic = match num_proj {
            None => Some(BasicLstmCell::from_params(params, kernel, bias)?),
            Some(_) => None,
        };
        let basic = basic.map(|b| b.with_variant(peepholes, None));
        Ok(LstmCell {
            kernel,
            bias,
            peepholes,
            projection,
            input_size,
            num_units,
            num_proj,
            forget_bias: 1.0,
            cell_clip: None,
            proj_clip: None,
            basic,
            tape_ops: false,
        })
    }

    /// Sets the bias added to the forget gate's pre-activation at every step (default 1.0).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is not finite.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Result<Self> {
        check_forget_bias(forget_bias)?;
        self.forget_bias = forget_bias;
        self.basic = self
            .basic
            .map(|b| b.with_forget_bias(forget_bias))
            .transpose()?;
        Ok(self)
    }

    /// Clips the new cell state `c` to `[-cell_clip, cell_clip]` at every step.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `cell_clip` is positive and finite.
    pub fn with_cell_clip(mut self, cell_clip: f64) -> Result<Self> {
        check_clips(Some(cell_clip), None, false)?;
        self.cell_clip = Some(cell_clip);
        self.basic = self
            .basic
            .map(|b| b.with_variant(self.peepholes, Some(cell_clip)));
        Ok(self)
    }

    /// Clips the projected output to `[-proj_clip, proj_clip]` at every step.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the cell has no projection or `proj_clip` is not positive
    /// and finite.
    pub fn with_proj_clip(mut self, proj_clip: f64) -> Result<Self> {
        check_clips(None, Some(proj_clip), self.num_proj.is_some())?;
        self.proj_clip = Some(proj_clip);
        Ok(self)
    }

    /// The width of `c`.
    pub fn num_units(&self) -> usize {
        self.num_units
    }

    /// The width of the projected output, if the cell projects.
    pub fn num_proj(&self) -> Option<usize> {
        self.num_proj
    }

    /// The forget bias.
    pub fn forget_bias(&self) -> f64 {
        self.forget_bias
    }

    /// The cell clip, if set.
    pub fn cell_clip(&self) -> Option<f64> {
        self.cell_clip
    }

    /// The projection clip, if set.
    pub fn proj_clip(&self) -> Option<f64> {
        self.proj_clip
    }

    /// The kernel's handle.
    pub fn kernel(&self) -> ParamId {
        self.kernel
    }

    /// The bias's handle.
    pub fn bias(&self) -> ParamId {
        self.bias
    }

    /// The handles of `[w_f_diag, w_i_diag, w_o_diag]`, if the cell uses peepholes.
    pub fn peepholes(&self) -> Option<[ParamId; 3]> {
        self.peepholes
    }

    /// The handle of `projection/kernel`, if the cell projects.
    pub fn projection(&self) -> Option<ParamId> {
        self.projection
    }

    /// Copies the cell's weights out of `params`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the cell's parameters are not in `params`,
    /// [`Error::Shape`] if their shapes no longer fit.
    pub fn weights<T: Scalar>(&self, params: &ParamStore<T>) -> Result<LstmCellWeights<T>> {
        params.check_ids("LstmCell::weights", &self.param_ids())?;
        let matrix = |id: ParamId| -> Result<Array2<T>> {
            let v = params.value(id);
            v.clone()
                .into_dimensionality()
                .map_err(|_| Error::shape("LstmCell::weights", "a rank-2 weight", v.shape()))
        };
        let vector = |id: ParamId| -> Result<Array1<T>> {
            let v = params.value(id);
            v.clone()
                .into_dimensionality()
                .map_err(|_| Error::shape("LstmCell::weights", "a rank-1 weight", v.shape()))
        };
        let w = LstmCellWeights {
            kernel: matrix(self.kernel)?,
            bias: vector(self.bias)?,
            peepholes: self
                .peepholes
                .map(|[f, i, o]| -> Result<LstmPeepholes<T>> {
                    Ok(LstmPeepholes {
                        w_f_diag: vector(f)?,
                        w_i_diag: vector(i)?,
                        w_o_diag: vector(o)?,
                    })
                })
                .transpose()?,
            projection: self.projection.map(matrix).transpose()?,
        };
        w.sizes()?;
        Ok(w)
    }

    /// The width of `h` and of the output.
    fn h_depth(&self) -> usize {
        self.num_proj.unwrap_or(self.num_units)
    }

    /// The fused kernel to run instead of tape ops: without a projection, with the cell's
    /// peepholes and clip.
    fn fused(&self) -> Option<&BasicLstmCell> {
        if self.tape_ops {
            None
        } else {
            self.basic.as_ref()
        }
    }

    /// Runs the step with tape ops even where the fused kernel would run (for tests comparing
    /// the two paths and for benchmarks).
    #[doc(hidden)]
    pub fn with_tape_ops(mut self, tape_ops: bool) -> Self {
        self.tape_ops = tape_ops;
        self
    }

    /// One step with tape ops, in TensorFlow's order of operations.
    fn step<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        input: Var,
        state: &LstmState,
    ) -> Result<(Var, LstmState)> {
        let batch = check_input(tape, "LstmCell", input, self.input_size)?;
        let (c, h) = (state.c, state.h);
        check_state(
            tape,
            "LstmCell",
            &[c, h],
            &[self.num_units, self.h_depth()],
            batch,
        )?;
        let z = tape.bias_add(
            tape.matmul(tape.concat(&[input, h], 1)?, tape.param(self.kernel))?,
            tape.param(self.bias),
        )?;
        let gates = tape.split(z, 4, 1)?;
        let (mut i, j, f, mut o) = (gates[0], gates[1], gates[2], gates[3]);
        let forget_bias = tape.constant(ArrayD::from_elem(
            IxDyn(&[1]),
            T::from_f64_lossy(self.forget_bias),
        ));
        let mut f = tape.add(f, forget_bias)?;
        if let Some([wf, wi, _]) = self.peepholes {
            f = tape.add(f, tape.mul(tape.param(wf), c)?)?;
            i = tape.add(i, tape.mul(tape.param(wi), c)?)?;
        }
        let mut new_c = tape.add(
            tape.mul(tape.sigmoid(f), c)?,
            tape.mul(tape.sigmoid(i), tape.tanh(j))?,
        )?;
        if let Some(clip) = self.cell_clip {
            let clip = T::from_f64_lossy(clip);
            new_c = tape.clip_by_value(new_c, -clip, clip)?;
        }
        if let Some([_, _, wo]) = self.peepholes {
            o = tape.add(o, tape.mul(tape.param(wo), new_c)?)?;
        }
        let mut m = tape.mul(tape.sigmoid(o), tape.tanh(new_c))?;
        if let Some(p) = self.projection {
            m = tape.matmul(m, tape.param(p))?;
            if let Some(clip) = self.proj_clip {
                let clip = T::from_f64_lossy(clip);
                m = tape.clip_by_value(m, -clip, clip)?;
            }
        }
        Ok((m, LstmState { c: new_c, h: m }))
    }
}

impl Cell for LstmCell {
    type State = LstmState;

    fn input_size(&self) -> usize {
        self.input_size
    }

    fn output_size(&self) -> usize {
        self.h_depth()
    }

    fn state_size(&self) -> Vec<usize> {
        vec![self.num_units, self.h_depth()]
    }

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<LstmState> {
        const OP: &str = "LstmCell::zero_state";
        Ok(LstmState {
            c: zeros(OP, tape, batch, self.num_units)?,
            h: zeros(OP, tape, batch, self.h_depth())?,
        })
    }

    fn call<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        input: Var,
        state: &LstmState,
    ) -> Result<(Var, LstmState)> {
        match self.fused() {
            Some(basic) => basic.call(tape, input, state),
            None => self.step(tape, input, state),
        }
    }

    /// `kernel`, `bias`, then (if present) `w_f_diag`, `w_i_diag`, `w_o_diag` and
    /// `projection/kernel`: TensorFlow's order of creation.
    fn param_ids(&self) -> Vec<ParamId> {
        let mut ids = vec![self.kernel, self.bias];
        ids.extend(self.peepholes.iter().flatten());
        ids.extend(self.projection);
        ids
    }

    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &LstmState,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, LstmState)>> {
        self.fused()?
            .dynamic_sequence(tape, inputs, state, sequence_length, time_major)
    }
}
