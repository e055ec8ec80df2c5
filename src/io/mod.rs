//! Reading and writing models: safetensors checkpoints and weight converters.

pub mod checkpoint;
pub mod convert;
mod transfer;
