//! # recurrent
//!
//! Recurrent neural networks for Rust with TensorFlow 1.x semantics, trained on the CPU.
#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod scalar;
pub mod tensor;

pub use error::{Error, Result};
pub use scalar::Scalar;
