//! # recurrent
//!
//! Recurrent neural networks for Rust with TensorFlow 1.x semantics, trained on the CPU.
//!
//! `recurrent` is `tf.nn.rnn_cell` and `tf.nn.*_rnn` rewritten on [`ndarray`]: the same cells
//! (with TensorFlow's weight layout and equations), the same unrolling functions, and reverse-mode
//! differentiation so everything trains. Every gradient is checked against finite differences.
//!
//! ## A training step
//!
//! ```
//! use ndarray::{Array3, ArrayD, IxDyn};
//! use recurrent::optim::{Adam, Optimizer};
//! use recurrent::prelude::*;
//!
//! # fn main() -> recurrent::Result<()> {
//! let mut params = ParamStore::<f32>::new(42); // seeded: one seed, one model
//! let cell = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 28, 64)?;
//! let dense = Dense::new(&mut params, "dense", 64, 10)?;
//! let mut adam = Adam::new(0.001)?;
//!
//! // A batch of 8 sequences of 28 steps of 28 features, with labels.
//! let x: ArrayD<f32> = Array3::from_shape_fn((8, 28, 28), |(b, t, i)| ((b + t * i) % 7) as f32 / 7.0).into_dyn();
//! let labels = [0, 1, 2, 3, 4, 5, 6, 7];
//!
//! let grads = {
//!     let tape = Tape::new(&params);
//!     let inputs = tape.constant(x);
//!     let (outputs, _state) = dynamic_rnn(&tape, &cell, inputs, RnnOptions::default())?;
//!     let last = last_relevant_output(&tape, outputs, None)?;
//!     let logits = dense.apply(&tape, last)?;
//!     let loss = tape.mean(tape.sparse_softmax_cross_entropy_with_logits(&labels, logits)?);
//!     tape.backward(loss)?
//! }; // the tape borrows `params`; it is gone before the update
//! adam.apply(&mut params, &grads)?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Map of the crate
//!
//! | module | what it holds | TensorFlow 1.x |
//! |---|---|---|
//! | [`tensor`] | plain `ndarray` helpers: `unstack`, `stack`, `transpose`, `split`, `concat`, `reverse_sequence`, `one_hot` | `tf.unstack`, ... |
//! | [`tape`] | [`Tape`], [`Var`], [`Grads`]: recording a computation and differentiating it | `tf.GradientTape` |
//! | [`ops`] | the differentiable ops, as methods of [`Tape`] | `tf.matmul`, `tf.nn.*` |
//! | [`params`] | [`ParamStore`]: named, shaped weights; [`Scope`] for their paths | variables and scopes |
//! | [`init`] | weight initializers | `tf.glorot_uniform_initializer`, ... |
//! | [`cell`] | the [`Cell`] trait, [`BasicLstmCell`], [`GruCell`], [`BasicRnnCell`], [`MultiCell`], [`DropoutWrapper`] | `tf.nn.rnn_cell` |
//! | [`rnn`] | [`static_rnn`], [`dynamic_rnn`], the bidirectional runners, [`last_relevant_output`] | `tf.nn.static_rnn`, `tf.nn.dynamic_rnn` |
//! | [`layers`] | [`Dense`] | `tf.layers.dense` |
//! | [`optim`] | SGD, Momentum, Adam, AdamW, RMSProp, Adagrad, clipping, learning-rate schedules | `tf.train` |
//! | [`metrics`] | accuracy | `tf.metrics.accuracy` |
//! | [`gradcheck`] | checking any computation's gradients against finite differences | `tf.test.compute_gradient_error` |
//! | [`checkpoint`] | saving and loading weights as safetensors | `tf.train.Saver` |
//! | [`convert`] | LSTM and GRU weights to and from PyTorch, Keras and ONNX layouts | |
//! | [`data`] | IDX files and MNIST with `read_data_sets` behaviour; text files, character vocabularies, padded and bucketed variable-length sequences, PTB-style language-model batches, Debian word lists | `input_data.read_data_sets`, `ptb_producer`, `bucket_by_sequence_length` |
//! | [`math`], [`parallel`] | vectorised activations; the thread count of the fused kernels | |
//! | [`error`], [`scalar`] | the [`Error`] enum; the [`Scalar`] trait (`f32`, `f64`) | |
#![warn(missing_docs)]

// The folders show the architecture (see ARCHITECTURE.md); the public modules are re-exported
// flat, so users write `recurrent::cell::GruCell`, not `recurrent::nn::cell::GruCell`.
mod autodiff;
pub mod data;
pub mod error;
mod io;
mod kernels;
mod nn;
pub mod scalar;
pub mod tensor;
pub mod train;

pub use autodiff::{gradcheck, ops, tape};
pub use io::{checkpoint, convert};
pub use kernels::{math, parallel};
pub use nn::{cell, init, layers, params, rnn};
pub use train::{metrics, optim};

pub use cell::{
    BasicLstmCell, BasicRnnCell, BoxedCell, Cell, DropoutWrapper, DynState, GruCell, LstmState,
    MultiCell, RnnState,
};
pub use error::{Error, Result};
pub use layers::{
    Bidirectional, Carry, Context, Dense, Dropout, Embedding, Layer, Merge, Returns, Rnn,
    Sequential,
};
pub use params::{ParamId, ParamStore, Scope};
pub use rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, last_relevant_output, static_bidirectional_rnn,
    static_rnn, BidirectionalOptions, RnnOptions,
};
pub use scalar::Scalar;
pub use tape::{Grads, Mode, Tape, Var};

// The README's code blocks are compiled and run as doc tests, so its instructions cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The everyday names in one import: `use recurrent::prelude::*;`.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::cell::{
        BasicLstmCell, BasicRnnCell, BoxedCell, Cell, DropoutWrapper, GruCell, LstmState,
        MultiCell, RnnState,
    };
    #[doc(no_inline)]
    pub use crate::optim::Optimizer;
    #[doc(no_inline)]
    pub use crate::rnn::{
        bidirectional_dynamic_rnn, dynamic_rnn, last_relevant_output, static_bidirectional_rnn,
        static_rnn, BidirectionalOptions, RnnOptions,
    };
    // Not `Result` or `Error`: a prelude must not shadow the standard names (STYLE 16); write
    // `recurrent::Result` where the crate's alias is wanted.
    #[doc(no_inline)]
    pub use crate::layers::{
        Bidirectional, Context, Dense, Dropout, Embedding, Layer, Returns, Rnn, Sequential,
    };
    #[doc(no_inline)]
    pub use crate::{ParamStore, Scalar, Scope, Tape, Var};
}
