//! Differentiable operations, recorded on a [`crate::Tape`].
//!
//! Every op is a method of [`crate::Tape`], computes its value at once, checks its
//! arguments' shapes (a mismatch is an [`crate::Error::Shape`] naming the op), and
//! records a hand-derived backward function. Each is checked against finite differences in the
//! test suite (`tests/ops.rs`).
//!
//! | group | ops |
//! |---|---|
//! | [linear algebra](linalg) | `matmul`, `bias_add` |
//! | [`elementwise`] | `add`, `sub`, `mul` (NumPy broadcasting), `scale`, `sigmoid`, `tanh`, `relu`, `clip_by_value` |
//! | [reductions](reduce) | `sum`, `mean`, `sum_axis`, `mean_axis` |
//! | [shapes](shape) | `reshape`, `unstack`, `stack`, `transpose`, `split`, `concat`, `reverse_sequence`, `gather_rows` |
//! | [neural-network ops](nn) | `select`, `dropout`, `layer_norm`, `softmax_cross_entropy_with_logits`, `sparse_softmax_cross_entropy_with_logits` |

pub mod elementwise;
pub mod linalg;
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
