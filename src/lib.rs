//! # recurrent
//!
//! Recurrent neural networks for Rust with TensorFlow 1.x semantics, trained on the CPU.
//!
//! `recurrent` is `tf.nn.rnn_cell` and `tf.nn.*_rnn` rewritten on [`ndarray`]: the same cells
//! (with TensorFlow's weight layout and equations), the same unrolling functions, and reverse-mode
//! differentiation so everything trains. Every gradient is checked against finite differences.
//!
//! ## A model, trained
//!
//! Layers are values ([`Layer`]), composed in a [`Sequential`]; the [`Trainer`](train::Trainer)
//! runs the loop. Sequence lengths are given once, with the batch, and reach every layer.
//!
//! ```
//! use recurrent::data::{FixedBatches, Minibatch, Targets};
//! use recurrent::layers::{Dense, Returns, Rnn, Sequential};
//! use recurrent::ndarray::{Array3, ArrayD};
//! use recurrent::optim::Adam;
//! use recurrent::train::{FitOptions, Trainer};
//! use recurrent::ParamStore;
//!
//! # fn main() -> recurrent::Result<()> {
//! let mut params = ParamStore::<f32>::new(42); // seeded: one seed, one model
//! let model = Sequential::new()
//!     .push(Rnn::lstm(&mut params, 28, 64)?.returns(Returns::LastOutput)) // rnn/basic_lstm_cell/...
//!     .push(Dense::new(&mut params, "dense", 64, 10)?);
//! let mut trainer = Trainer::new(model, params, Adam::new(0.001)?).seed(42);
//!
//! // 8 sequences of up to 28 steps of 28 features, with their lengths and labels.
//! let inputs: ArrayD<f32> =
//!     Array3::from_shape_fn((8, 28, 28), |(b, t, i)| ((b + t * i) % 7) as f32 / 7.0).into_dyn();
//! let batch = Minibatch {
//!     inputs,
//!     lengths: Some(vec![28, 20, 28, 5, 28, 28, 13, 28]),
//!     targets: Targets::Classes(vec![0, 1, 2, 3, 4, 5, 6, 7]),
//! };
//! let before = trainer.evaluate([Ok(batch.clone())])?;
//! let mut data = FixedBatches::new(vec![batch.clone()])?;
//! trainer.fit(&mut data, &FitOptions::until_step(5), None, &mut ())?;
//! assert!(trainer.evaluate([Ok(batch)])?.loss < before.loss);
//! # Ok(())
//! # }
//! ```
//!
//! Underneath, everything is a [`Tape`]: a hand-written step reads
//!
//! ```
//! # use recurrent::prelude::*;
//! # use recurrent::optim::Adam;
//! # fn main() -> recurrent::Result<()> {
//! # let mut params = ParamStore::<f32>::new(42);
//! # let model = Sequential::new()
//! #     .push(Rnn::lstm(&mut params, 28, 64)?.returns(Returns::LastOutput))
//! #     .push(Dense::new(&mut params, "dense", 64, 10)?);
//! # let x = recurrent::ndarray::ArrayD::<f32>::zeros(recurrent::ndarray::IxDyn(&[2, 28, 28]));
//! # let (labels, lengths) = ([1, 2], [28, 9]);
//! let mut adam = Adam::new(0.001)?;
//! let grads = {
//!     let tape = Tape::new(&params).with_seed(1); // a new seed per step: new dropout masks
//!     let logits = model.forward(&tape, tape.constant(x), &mut Context::new().lengths(&lengths))?;
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
//! | module | what it holds | TensorFlow 1.x / Keras |
//! |---|---|---|
//! | [`tensor`] | plain `ndarray` helpers: `unstack`, `stack`, `transpose`, `split`, `concat`, `reverse_sequence`, `one_hot`, `argmax`, `sequence_mask` | `tf.unstack`, ... |
//! | [`tape`] | [`Tape`], [`Var`], [`Grads`]: recording a computation and differentiating it | `tf.GradientTape` |
//! | [`ops`] | the differentiable ops, as methods of [`Tape`], and the rule for which return `Result` | `tf.matmul`, `tf.nn.*`, `tf.losses.*` |
//! | [`params`] | [`ParamStore`]: named, shaped weights; [`Scope`] for their paths | variables and scopes |
//! | [`init`] | weight initializers | `tf.glorot_uniform_initializer`, ... |
//! | [`cell`] | the [`Cell`] trait, [`BasicLstmCell`], [`LstmCell`], [`LayerNormBasicLstmCell`], [`GruCell`], [`BasicRnnCell`], [`MultiCell`], [`DropoutWrapper`], [`ResidualWrapper`], [`HighwayWrapper`], [`ZoneoutWrapper`], [`BoxedCell`] | `tf.nn.rnn_cell`, `tf.contrib.rnn` |
//! | [`rnn`] | [`static_rnn`], [`dynamic_rnn`], the bidirectional runners with [`RnnOptions`] and [`BidirectionalOptions`], [`last_relevant_output`] | `tf.nn.static_rnn`, `tf.nn.dynamic_rnn` |
//! | [`layers`] | [`Layer`], [`Sequential`], [`Dense`], [`Embedding`], [`Dropout`], [`Rnn`], [`Bidirectional`]; [`Context`] and [`Carry`] | `tf.keras.layers` |
//! | [`train`] | [`Trainer`](train::Trainer) (fit, evaluate, predict), [`TrainingState`](train::TrainingState) files, [`Stepper`](train::Stepper) | `Model.fit`, `BackupAndRestore` |
//! | [`optim`] | SGD, Momentum, Adam, AdamW, RMSProp, Adagrad, clipping, learning-rate schedules | `tf.train` |
//! | [`metrics`] | accuracy | `tf.metrics.accuracy` |
//! | [`gradcheck`] | checking any computation's gradients against finite differences | `tf.test.compute_gradient_error` |
//! | [`checkpoint`] | saving and loading weights as safetensors | `tf.train.Saver` |
//! | [`convert`] | LSTM and GRU weights to and from PyTorch, Keras and ONNX layouts | |
//! | [`data`] | [`Minibatch`](data::Minibatch) and resumable sources; IDX files and MNIST with `read_data_sets` behaviour; text files, character vocabularies, padded and bucketed variable-length sequences, PTB-style language-model batches, Debian word lists | `input_data.read_data_sets`, `ptb_producer`, `bucket_by_sequence_length` |
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
#[cfg(feature = "mpi")]
pub use train::distributed;
pub use train::{metrics, optim};

pub use cell::{
    BasicLstmCell, BasicRnnCell, BoxedCell, Cell, DropoutWrapper, DynState, GruCell, GruCellConfig,
    HighwayWrapper, LayerNormBasicLstmCell, LstmCell, LstmCellConfig, LstmState, MultiCell,
    ResidualWrapper, RnnState, ZoneoutWrapper,
};
pub use error::{Error, Result};
pub use layers::{
    Activation, Bidirectional, Carry, Context, Dense, Dropout, Embedding, Layer, Merge, Returns,
    Rnn, Sequential,
};
/// The array crate every tensor of this crate is made of, re-exported so that its version always
/// matches.
pub use ndarray;
pub use params::{ParamId, ParamStore, Scope};
pub use rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, last_relevant_output, stack_bidirectional_dynamic_rnn,
    stack_bidirectional_rnn, static_bidirectional_rnn, static_rnn, BidirectionalOptions,
    RnnOptions, StackedBidirectionalOptions,
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
        BasicLstmCell, BasicRnnCell, BoxedCell, Cell, DropoutWrapper, GruCell, GruCellConfig,
        HighwayWrapper, LayerNormBasicLstmCell, LstmCell, LstmCellConfig, LstmState, MultiCell,
        ResidualWrapper, RnnState, ZoneoutWrapper,
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
