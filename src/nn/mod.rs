//! The network level: parameters and their initializers, cells, the runners that unroll them,
//! and layers.

pub mod cell;
pub mod init;
pub mod layers;
pub mod params;
pub mod rnn;
mod static_fast;
