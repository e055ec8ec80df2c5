//! Reverse-mode differentiation: the tape, the differentiable ops recorded on it, and the
//! finite-difference checker that every op and cell passes.

pub mod gradcheck;
pub mod ops;
pub mod tape;
