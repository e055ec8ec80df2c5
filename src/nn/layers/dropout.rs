//! [`Dropout`]: the dropout layer.

use super::{Context, Layer};
use crate::{Error, ParamId, Result, Scalar, Tape, Var};

/// Dropout (`tf.keras.layers.Dropout(rate)`): while training, each element is zeroed with
/// probability `rate` and the others are scaled by `1 / (1 - rate)`; on an inference tape the
/// identity. Masks come from the tape's seeded generator, which the
/// [`Trainer`](crate::train::Trainer) seeds anew at every step.
///
/// # Shapes
/// Any; the output has the input's shape.
///
/// ```
/// use recurrent::layers::{Dropout, Layer};
/// use recurrent::{ParamStore, Tape};
///
/// let params = ParamStore::<f32>::new(0);
/// let dropout = Dropout::new(0.5)?;
/// let tape = Tape::new(&params).with_seed(3);
/// let y = dropout.apply(&tape, tape.constant(ndarray::ArrayD::ones(ndarray::IxDyn(&[4, 8]))))?;
/// assert!(tape.value(y).iter().all(|&v| v == 0.0 || v == 2.0));
/// assert!(Dropout::new(1.0).is_err());
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    rate: f64,
}

impl Dropout {
    /// Drops each element with probability `rate`, in `[0, 1)`.
    pub fn new(rate: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::invalid(format!(
                "Dropout: rate must be in [0, 1), got {rate}"
            )));
        }
        Ok(Dropout { rate })
    }

    /// The drop probability.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl<T: Scalar> Layer<T> for Dropout {
    fn forward(&self, tape: &Tape<'_, T>, x: Var, _context: &mut Context<'_, T>) -> Result<Var> {
        tape.dropout(x, 1.0 - self.rate)
    }

    fn param_ids(&self) -> Vec<ParamId> {
        Vec::new()
    }

    fn name(&self) -> &str {
        "dropout"
    }
}
