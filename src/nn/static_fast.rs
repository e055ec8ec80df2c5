//! The statically unrolled runners' fast path: a list of steps run as one sequence.
//!
//! `static_rnn` over steps `x_0 .. x_{T-1}` equals `dynamic_rnn` over `stack(x_t, axis 1)`
//! followed by `unstack(outputs, axis 1)`: same outputs, same state, same gradients (the stack
//! and unstack ops pass gradients through unchanged). A cell with a whole-sequence kernel
//! ([`Cell::dynamic_sequence`], the fused LSTM and GRU) then runs the sequence as one op
//! instead of one op per step, with the input projection of all steps in one product.
//!
//! The one difference would be in random draws: a cell that draws dropout masks per step
//! (`DropoutWrapper` without `variational_recurrent`, on a training tape) draws them in another
//! order over a sequence than step by step, so its masks would differ from stepping's. The
//! generator's state is therefore compared before and after: if the sequence path drew
//! anything, the generator is put back and the runner steps, so the result is the stepped one
//! (the sequence path's nodes stay on the tape unused; only that case pays for them).

use crate::cell::Cell;
use crate::{Result, Scalar, Tape, Var};

/// Runs `inputs` (each `[batch, input_size]`, checked by the caller) through the cell's
/// sequence path from `state`, if it has one that gives what stepping gives; `None` means step.
pub(crate) fn sequence<T: Scalar, C: Cell>(
    tape: &Tape<'_, T>,
    cell: &C,
    inputs: &[Var],
    state: &C::State,
    sequence_length: Option<&[usize]>,
) -> Option<Result<(Vec<Var>, C::State)>> {
    // One step is one op either way.
    if inputs.len() < 2 {
        return None;
    }
    let before = tape.rng().clone();
    let stacked = match tape.stack(inputs, 1) {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let result = cell.dynamic_sequence(tape, stacked, state, sequence_length, false)?;
    if *tape.rng() != before {
        *tape.rng() = before;
        return None;
    }
    Some(result.and_then(|(outputs, state)| Ok((tape.unstack(outputs, 1)?, state))))
}
