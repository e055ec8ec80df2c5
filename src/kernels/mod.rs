//! The compute kernels under the cells: the fused LSTM and GRU sequence kernels, the LSTM's tiled
//! inference step on AVX-512, vectorised activations, matrix products, the per-thread buffer pool
//! and the threads that run batch shards.
//!
//! Only [`math`] and [`parallel`] are public (re-exported at the crate root); the rest is
//! private machinery that the cells call.

pub(crate) mod gru;
pub(crate) mod linalg;
pub(crate) mod lstm;
pub(crate) mod lstm_tiles;
pub mod math;
pub mod parallel;
#[cfg(test)]
pub(crate) mod test_support;
pub(crate) mod workspace;
