//! `MultiCell`: stacked cells.

use std::collections::HashSet;

use super::Cell;
use crate::{Error, ParamId, Result, Scalar, Tape, Var};

/// Cells stacked in layers (`tf.nn.rnn_cell.MultiRNNCell`): the output of layer `k` is the input
/// of layer `k + 1`, the output is the top layer's, and the state is the list of layer states.
///
/// TensorFlow scopes the layers `rnn/multi_rnn_cell/cell_{k}/...`. Layers must not share
/// parameters by accident: [`MultiCell::new`] refuses cells that read the same parameter, and
/// [`MultiCell::new_shared`] is the explicit way to allow it.
///
/// Under [`crate::rnn::dynamic_rnn`] the stack runs layer by layer over the whole sequence
/// (each layer through its own fast path), which equals stepping all layers together.
///
/// # Shapes
/// Input `[batch, input_size of layer 0]`; output `[batch, output_size of the top layer]`; the
/// state is a `Vec` with one state per layer, bottom first. Layer `k + 1`'s input size must be
/// layer `k`'s output size.
///
/// ```
/// use recurrent::cell::{BasicLstmCell, MultiCell};
/// use recurrent::{rnn, ParamStore, Scope, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let scope = Scope::new("rnn/multi_rnn_cell");
/// let cells = (0..3)
///     .map(|k| {
///         let input = if k == 0 { 8 } else { 16 };
///         BasicLstmCell::new(&mut params, scope.sub(format!("cell_{k}")).sub("basic_lstm_cell"), input, 16)
///     })
///     .collect::<Result<Vec<_>, _>>()
///     .unwrap();
/// let stack = MultiCell::new(cells).unwrap();
/// let tape = Tape::new(&params);
/// let x = tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[2, 5, 8])));
/// let (outputs, states) = rnn::dynamic_rnn(&tape, &stack, x, rnn::RnnOptions::default()).unwrap();
/// assert_eq!(tape.shape(outputs), vec![2, 5, 16]);
/// assert_eq!(states.len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct MultiCell<C> {
    cells: Vec<C>,
}

impl<C> MultiCell<C> {
    /// Stacks `cells` (bottom first), checking that each layer's input width is the previous
    /// layer's output width and that no two layers read the same parameter.
    pub fn new(cells: Vec<C>) -> Result<Self>
    where
        C: Cell,
    {
        let stack = Self::new_shared(cells)?;
        let mut seen = HashSet::new();
        for (k, cell) in stack.cells.iter().enumerate() {
            for id in cell.param_ids() {
                if !seen.insert(id) {
                    return Err(Error::invalid(format!(
                        "layer {k} of MultiCell reads parameter #{} that a lower layer reads too; \
                         build each layer under its own scope, or use MultiCell::new_shared to share on purpose",
                        id.index()
                    )));
                }
            }
        }
        Ok(stack)
    }

    /// Stacks `cells`, allowing layers to share parameters.
    pub fn new_shared(cells: Vec<C>) -> Result<Self>
    where
        C: Cell,
    {
        if cells.is_empty() {
            return Err(Error::invalid("MultiCell needs at least one cell"));
        }
        for (k, pair) in cells.windows(2).enumerate() {
            let (below, above) = (pair[0].output_size(), pair[1].input_size());
            if below != above {
                return Err(Error::Shape {
                    op: "MultiCell",
                    expected: format!(
                        "layer {} to take {below} inputs (layer {k}'s output)",
                        k + 1
                    ),
                    got: format!("{above}"),
                });
            }
        }
        Ok(MultiCell { cells })
    }

    /// The layers, bottom first.
    pub fn cells(&self) -> &[C] {
        &self.cells
    }
}

impl<C: Cell> Cell for MultiCell<C> {
    type State = Vec<C::State>;

    fn input_size(&self) -> usize {
        self.cells[0].input_size()
    }

    fn output_size(&self) -> usize {
        self.cells[self.cells.len() - 1].output_size()
    }

    fn state_size(&self) -> Vec<usize> {
        self.cells.iter().flat_map(Cell::state_size).collect()
    }

    fn zero_state<T: Scalar>(&self, tape: &Tape<'_, T>, batch: usize) -> Result<Self::State> {
        self.cells
            .iter()
            .map(|c| c.zero_state(tape, batch))
            .collect()
    }

    fn call<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        input: Var,
        state: &Self::State,
    ) -> Result<(Var, Self::State)> {
        check_layers(state.len(), self.cells.len())?;
        let mut x = input;
        let mut new_states = Vec::with_capacity(self.cells.len());
        for (cell, s) in self.cells.iter().zip(state) {
            let (out, new_state) = cell.call(tape, x, s)?;
            x = out;
            new_states.push(new_state);
        }
        Ok((x, new_states))
    }

    fn param_ids(&self) -> Vec<ParamId> {
        self.cells.iter().flat_map(Cell::param_ids).collect()
    }

    fn dynamic_sequence<T: Scalar>(
        &self,
        tape: &Tape<'_, T>,
        inputs: Var,
        state: &Self::State,
        sequence_length: Option<&[usize]>,
        time_major: bool,
    ) -> Option<Result<(Var, Self::State)>> {
        let run = || {
            check_layers(state.len(), self.cells.len())?;
            let mut x = inputs;
            let mut new_states = Vec::with_capacity(self.cells.len());
            for (cell, s) in self.cells.iter().zip(state) {
                let (out, new_state) = crate::rnn::dynamic_rnn(
                    tape,
                    cell,
                    x,
                    crate::rnn::RnnOptions {
                        initial_state: Some(s.clone()),
                        sequence_length,
                        time_major,
                    },
                )?;
                x = out;
                new_states.push(new_state);
            }
            Ok((x, new_states))
        };
        Some(run())
    }
}

fn check_layers(states: usize, layers: usize) -> Result<()> {
    if states != layers {
        return Err(Error::Shape {
            op: "MultiCell",
            expected: format!("one state per layer ({layers})"),
            got: format!("{states} states"),
        });
    }
    Ok(())
}
