//! Differentiable operations, recorded on a [`crate::Tape`].
//!
//! Every op is a method of [`crate::Tape`], computes its value at once, checks its
//! arguments, and records a hand-derived backward function. Each is checked against finite
//! differences in `f64` in the test suite (`tests/ops.rs`), and its forward against values
//! written out by hand.
//!
//! # Which ops return `Result`
//!
//! One rule: an op returns `Result<Var>` exactly when its arguments can be incompatible or out
//! of range: a second operand (two shapes that must fit), an axis, indices or labels, lengths,
//! a target shape, or a hyper-parameter with a valid range (`dropout`'s `keep_prob`). Ops of
//! one var alone (the unary elementwise ops `exp`, `log`, `sqrt`, `square`, `sigmoid`,
//! `tanh`, `relu`, `scale` by a constant, and the full reductions `sum` and `mean`) cannot fail
//! and return a [`crate::Var`]. Where a unary op is undefined at some input it follows IEEE 754
//! and TensorFlow (`log(0) = -inf`, `sqrt(-1) = NaN`) instead of failing. The softmax family
//! takes one var but reduces its last axis, which a scalar or an empty axis does not have, so
//! it returns `Result`.
//!
//! A shape that does not fit is an [`crate::Error::Shape`] naming the op and both shapes; a
//! bad index, label, length or hyper-parameter is an [`crate::Error::InvalidArgument`] naming
//! the op and the value. No op panics on user input (a [`crate::Var`] of another tape is a
//! logic error, and panics).
//!
//! | group | ops | TensorFlow 1.x |
//! |---|---|---|
//! | [linear algebra](linalg) | `matmul`, `bias_add` | `tf.matmul`, `tf.nn.bias_add` |
//! | [`elementwise`], binary (NumPy broadcasting) | `add`, `sub`, `mul`, `div`, `maximum`, `minimum` | `tf.add`, `tf.subtract`, `tf.multiply`, `tf.div`, `tf.maximum`, `tf.minimum` |
//! | [`elementwise`], unary | `exp`, `log`, `sqrt`, `square`, `scale`, `sigmoid`, `tanh`, `relu`, `clip_by_value` | `tf.exp`, `tf.log`, `tf.sqrt`, `tf.square`, `x * c`, `tf.sigmoid`, `tf.tanh`, `tf.nn.relu`, `tf.clip_by_value` |
//! | [reductions](reduce) | `sum`, `mean`, `sum_axis`, `mean_axis` | `tf.reduce_sum`, `tf.reduce_mean` |
//! | [shapes](shape) | `reshape`, `unstack`, `stack`, `transpose`, `split`, `concat`, `reverse_sequence`, `gather_rows` | `tf.reshape`, `tf.unstack`, ... |
//! | [neural-network ops](nn) | `select`, `dropout`, `layer_norm`, `softmax`, `log_softmax`, `softmax_cross_entropy_with_logits`, `sparse_softmax_cross_entropy_with_logits`, `sequence_mask`, `argmax` (no gradient) | `tf.where`, `tf.nn.dropout`, `tf.contrib.layers.layer_norm`, `tf.nn.softmax`, `tf.nn.log_softmax`, ..., `tf.sequence_mask`, `tf.argmax` |
//! | [losses](loss) | `masked_mean`, `mean_squared_error`, `sequence_loss` | `tf.losses.mean_squared_error`, `tf.contrib.seq2seq.sequence_loss` |
//! | [embeddings](embedding) | `embedding_lookup` | `tf.nn.embedding_lookup` |
//!
//! # Example: a loss of one's own
//!
//! ```
//! use ndarray::array;
//! use recurrent::{ParamStore, Tape};
//!
//! // A masked mean squared error over [batch = 2, time = 3] with lengths 3 and 1.
//! let params = ParamStore::<f64>::new(0);
//! let tape = Tape::new(&params);
//! let y = tape.watch(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
//! let target = tape.constant(array![[1.0, 2.0, 5.0], [3.0, 0.0, 0.0]].into_dyn());
//! let mask = tape.sequence_mask(&[3, 1], 3)?;
//! let loss = tape.masked_mean(tape.square(tape.sub(y, target)?), mask)?;
//! assert_eq!(tape.scalar(loss), (0.0 + 0.0 + 4.0 + 1.0) / 4.0);
//! let grads = tape.backward(loss)?;
//! // d/dy = 2 (y - target) mask / 4: nothing flows into the padding.
//! assert_eq!(grads.wrt(y).unwrap(), &array![[0.0, 0.0, -1.0], [0.5, 0.0, 0.0]].into_dyn());
//! # Ok::<(), recurrent::Error>(())
//! ```

pub mod elementwise;
pub mod embedding;
pub mod linalg;
pub mod loss;
pub mod nn;
pub mod reduce;
pub mod shape;

use crate::{Error, Result};

/// `Ok(())` when `ok`, else a shape error for `op`.
pub(crate) fn check(
    ok: bool,
    op: &'static str,
    expected: impl FnOnce() -> String,
    got: &[usize],
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::shape(op, expected(), got))
    }
}
