//! # recurrent
//!
//! Recurrent neural networks for Rust with TensorFlow 1.x semantics, trained on the CPU.
#![warn(missing_docs)]

pub mod cell;
pub mod checkpoint;
pub mod convert;
pub mod data;
pub mod error;
pub mod gradcheck;
pub mod init;
pub mod layers;
pub mod metrics;
pub mod ops;
pub mod optim;
pub mod params;
pub mod rnn;
pub mod scalar;
pub mod tape;
pub mod tensor;

pub use cell::{
    BasicLstmCell, BasicRnnCell, Cell, DropoutWrapper, GruCell, LstmState, MultiCell, RnnState,
};
pub use error::{Error, Result};
pub use layers::Dense;
pub use params::{ParamId, ParamStore, Scope};
pub use rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, last_relevant_output, static_bidirectional_rnn,
    static_rnn,
};
pub use scalar::Scalar;
pub use tape::{Grads, Mode, Tape, Var};
