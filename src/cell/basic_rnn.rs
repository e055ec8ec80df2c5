//! `BasicRnnCell`: the vanilla recurrent cell.

use super::{check_input, check_state, zeros, Cell};
use crate::init::Initializer;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// TensorFlow 1.x's `BasicRNNCell`: `h' = tanh([x, h] @ kernel + bias)`; the output is `h'`.
///
/// # Shapes
/// `kernel` `[input_size + num_units, num_units]` (Glorot uniform), `bias` `[num_units]` (zeros);
/// input `[batch, input_size]`, state and output `[batch, num_units]`. TensorFlow's scope is
/// `rnn/basic_rnn_cell`.
#[derive(Debug, Clone)]
pub struct BasicRnnCell {
    kernel: ParamId,
    bias: ParamId,
    input_size: usize,
    num_units: usize,
}

impl BasicRnnCell {
    /// Creates `{scope}/kernel` and `{scope}/bias`.
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        num_units: usize,
    ) -> Result<Self> {
        if input_size == 0 || num_units == 0 {
            return Err(Error::invalid(format!(
                "BasicRnnCell sizes must be positive, got input {input_size}, units {num_units}"
            )));
        }
        let scope = scope.into();
        let kernel = params.create(
            &scope.join("kernel"),
            &[input_size + num_units, num_units],
            Initializer::GlorotUniform,
        )?;
        let bias = params.create(&scope.join("bias"), &[num_units], Initializer::Zeros)?;
        Ok(BasicRnnCell {
            kernel,
            bias,
            input_size,
            num_units,
        })
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

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Var {
        zeros(tape, batch, self.num_units)
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
