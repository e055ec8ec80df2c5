//! `GruCell`: the gated recurrent unit.

use super::{check_input, check_state, zeros, Cell};
use crate::init::Initializer;
use crate::params::{ParamId, ParamStore, Scope};
use crate::{Error, Result, Scalar, Tape, Var};

/// TensorFlow 1.x's `GRUCell` (Cho et al., 2014).
///
/// # Equations
/// ```text
/// [r, u] = split(sigmoid([x, h] @ gates/kernel + gates/bias), 2, axis = 1)
/// c      = tanh([x, r * h] @ candidate/kernel + candidate/bias)
/// h'     = u * h + (1 - u) * c                      (the output is h')
/// ```
///
/// # Shapes
/// `gates/kernel` `[input_size + num_units, 2 * num_units]`, `gates/bias` `[2 * num_units]`
/// (initialised to 1.0, as in TensorFlow, so the cell starts by remembering),
/// `candidate/kernel` `[input_size + num_units, num_units]`, `candidate/bias` `[num_units]`
/// (zeros). TensorFlow's scope is `rnn/gru_cell`.
#[derive(Debug, Clone)]
pub struct GruCell {
    gate_kernel: ParamId,
    gate_bias: ParamId,
    candidate_kernel: ParamId,
    candidate_bias: ParamId,
    input_size: usize,
    num_units: usize,
}

impl GruCell {
    /// Creates `{scope}/gates/{kernel,bias}` and `{scope}/candidate/{kernel,bias}`.
    pub fn new<T: Scalar>(
        params: &mut ParamStore<T>,
        scope: impl Into<Scope>,
        input_size: usize,
        num_units: usize,
    ) -> Result<Self> {
        if input_size == 0 || num_units == 0 {
            return Err(Error::invalid(format!(
                "GruCell sizes must be positive, got input {input_size}, units {num_units}"
            )));
        }
        let scope = scope.into();
        let rows = input_size + num_units;
        let gate_kernel = params.create(
            &scope.join("gates/kernel"),
            &[rows, 2 * num_units],
            Initializer::GlorotUniform,
        )?;
        let gate_bias = params.create(
            &scope.join("gates/bias"),
            &[2 * num_units],
            Initializer::Constant(1.0),
        )?;
        let candidate_kernel = params.create(
            &scope.join("candidate/kernel"),
            &[rows, num_units],
            Initializer::GlorotUniform,
        )?;
        let candidate_bias = params.create(
            &scope.join("candidate/bias"),
            &[num_units],
            Initializer::Zeros,
        )?;
        Ok(GruCell {
            gate_kernel,
            gate_bias,
            candidate_kernel,
            candidate_bias,
            input_size,
            num_units,
        })
    }
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

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Var {
        zeros(tape, batch, self.num_units)
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
        let x_rh = tape.concat(&[input, tape.mul(r, h)?], 1)?;
        let c = tape.tanh(tape.bias_add(
            tape.matmul(x_rh, tape.param(self.candidate_kernel))?,
            tape.param(self.candidate_bias),
        )?);
        let new_h = tape.add(tape.mul(u, h)?, tape.mul(tape.one_minus(u), c)?)?;
        Ok((new_h, new_h))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        vec![
            self.gate_kernel,
            self.gate_bias,
            self.candidate_kernel,
            self.candidate_bias,
        ]
    }
}
