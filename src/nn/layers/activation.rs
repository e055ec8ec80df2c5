//! [`Activation`]: an elementwise nonlinearity as a layer.

use super::{Context, Layer};
use crate::{ParamId, Result, Scalar, Tape, Var};

/// An elementwise nonlinearity between layers (`tf.keras.layers.Activation`), so that
/// `Dense -> ReLU -> Dense` is a [`Sequential`](super::Sequential) of three layers.
///
/// # Shapes
/// Any; the output has the input's shape.
///
/// ```
/// use recurrent::layers::{Activation, Dense, Layer, Sequential};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f64>::new(0);
/// let mlp = Sequential::new()
///     .push(Dense::new(&mut params, "hidden", 3, 8)?)
///     .push(Activation::Relu)
///     .push(Dense::new(&mut params, "out", 8, 2)?);
/// let tape = Tape::inference(&params);
/// let y = mlp.apply(&tape, tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[5, 3]))))?;
/// assert_eq!(tape.shape(y), vec![5, 2]);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)` (`tf.nn.relu`).
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl<T: Scalar> Layer<T> for Activation {
    fn forward(&self, tape: &Tape<'_, T>, x: Var, _context: &mut Context<'_, T>) -> Result<Var> {
        Ok(match self {
            Activation::Relu => tape.relu(x),
            Activation::Tanh => tape.tanh(x),
            Activation::Sigmoid => tape.sigmoid(x),
        })
    }

    fn param_ids(&self) -> Vec<ParamId> {
        Vec::new()
    }

    fn name(&self) -> &str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
        }
    }
}
