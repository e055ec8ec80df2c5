//! `BasicRnnCell`: the vanilla recurrent cell.

use ndarray::ArrayD;

use super::{check_input, check_state, create_fused, fused_sizes, kernel_shape, zeros, Cell};
use crate::init::Initializer;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Result, Scalar, Tape, Var};

/// TensorFlow 1.x's `BasicRNNCell`: the plain (Elman) recurrent cell.
///
/// # Equations
/// ```text
/// h' = tanh([x, h] @ kernel + bias)                 (the output is h')
/// ```
///
/// # Shapes
/// - `kernel` `[input_size + num_units, num_units]` (Glorot uniform), `bias` `[num_units]`
///   (zeros). TensorFlow's scope is `rnn/basic_rnn_cell`.
/// - input `[batch, input_size]`; state and output `[batch, num_units]`.
///
/// ```
/// use recurrent::cell::{BasicRnnCell, Cell};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let cell = BasicRnnCell::new(&mut params, "rnn/basic_rnn_cell", 28, 64).unwrap();
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 28])));
/// let (h, state) = cell.call(&tape, x, &cell.zero_state(&tape, 4).unwrap()).unwrap();
/// assert_eq!(tape.shape(h), vec![4, 64]);
/// assert_eq!(h, state);
/// ```
///
/// Reference: Elman, "Finding Structure in Time" (1990).
#[derive(Debug, Clone)]
pub struct BasicRnnCell {
    kernel: ParamId,
    bias: ParamId,
    input_size: usize,
    num_units: usize,
}

impl BasicRnnCell {
    /// Creates `{scope}/kernel` (Glorot uniform) and `{scope}/bias` (zeros).
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        num_units: usize,
    ) -> Result<Self> {
        let shape = kernel_shape("BasicRnnCell::new", input_size, num_units, 1)?;
        let scope = scope.into();
        let kernel = params.create(&scope.join("kernel"), &shape, Initializer::GlorotUniform)?;
        let bias = params.create(&scope.join("bias"), &[num_units], Initializer::Zeros)?;
        Self::from_params(params, kernel, bias)
    }

    /// Creates the cell's parameters from given weights (for tests and weights trained elsewhere):
    /// `kernel` `[input_size + num_units, num_units]`, `bias` `[num_units]`.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) for shapes that do not fit, [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a taken name;
    /// either way the store is left as it was.
    pub fn from_weights<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        kernel: ArrayD<T>,
        bias: ArrayD<T>,
    ) -> Result<Self> {
        let (kernel, bias) = create_fused("BasicRnnCell", params, &scope.into(), kernel, bias, 1)?;
        Self::from_params(params, kernel, bias)
    }

    /// A cell over parameters already in the store: the explicit way to share weights.
    pub fn from_params<T: Scalar>(
        params: &ParamStore<T>,
        kernel: ParamId,
        bias: ParamId,
    ) -> Result<Self> {
        let (input_size, num_units) =
            fused_sizes("BasicRnnCell::from_params", params, kernel, bias, 1)?;
        Ok(BasicRnnCell {
            kernel,
            bias,
            input_size,
            num_units,
        })
    }

    /// The kernel's handle.
    pub fn kernel(&self) -> ParamId {
        self.kernel
    }

    /// The bias's handle.
    pub fn bias(&self) -> ParamId {
        self.bias
    }
}

impl Cell for BasicRnnCell {
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
        zeros("BasicRnnCell::zero_state", tape, batch, self.num_units)
    }

    fn call<T: Scalar>(&self, tape: &Tape<'_, T>, input: Var, state: &Var) -> Result<(Var, Var)> {
        let batch = check_input(tape, "BasicRnnCell", input, self.input_size)?;
        check_state(tape, "BasicRnnCell", &[*state], &[self.num_units], batch)?;
        let xh = tape.concat(&[input, *state], 1)?;
        let h = tape.tanh(tape.bias_add(
            tape.matmul(xh, tape.param(self.kernel))?,
            tape.param(self.bias),
        )?);
        Ok((h, h))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        vec![self.kernel, self.bias]
    }
}
