//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in `recurrent`, with enough detail to act on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An operation received tensors whose shapes do not fit together.
    #[error("shape mismatch in {op}: expected {expected}, got {got}")]
    Shape {
        /// The operation that rejected its input (for example `"matmul"`).
        op: &'static str,
        /// What the operation needed, in words or as a shape.
        expected: String,
        /// What it was given.
        got: String,
    },
    /// A hyper-parameter or argument is outside its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Reading or writing a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A file's contents are corrupt or not in the expected format.
    #[error("format error: {0}")]
    Format(String),
    /// A checkpoint does not fit the model it is loaded into.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
    /// Training produced a NaN or infinite value.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// The training loss grew past the set factor of its running minimum
    /// ([`Trainer::stop_on_divergence`](crate::train::Trainer::stop_on_divergence)).
    #[error("training diverged: {0}")]
    Diverged(String),
    /// The processes of a data-parallel run disagree (different parameters at start-up) or
    /// their communication failed ([`Collective`](crate::train::Collective)).
    #[error("distributed training: {0}")]
    Distributed(String),
}

/// `Result` with the crate's [`Error`](enum@Error).
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A [`Error::Shape`] with the shapes formatted as `[a, b, c]`.
    pub fn shape(op: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            op,
            expected: expected.into(),
            got: format!("{got:?}"),
        }
    }

    /// An [`Error::InvalidArgument`] from anything printable.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// The same error with `context` (where it happened: a layer, a direction) added to its
    /// message, keeping its variant: a [`Error::Shape`] gets it after the expected shape, the
    /// others before their message.
    pub(crate) fn within(self, context: impl std::fmt::Display) -> Self {
        match self {
            Error::Shape { op, expected, got } => Error::Shape {
                op,
                expected: format!("{expected} ({context})"),
                got,
            },
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{context}: {m}")),
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), format!("{context}: {e}"))),
            Error::Format(m) => Error::Format(format!("{context}: {m}")),
            Error::Checkpoint(m) => Error::Checkpoint(format!("{context}: {m}")),
            Error::NonFinite(m) => Error::NonFinite(format!("{context}: {m}")),
            Error::Diverged(m) => Error::Diverged(format!("{context}: {m}")),
            Error::Distributed(m) => Error::Distributed(format!("{context}: {m}")),
        }
    }
}
