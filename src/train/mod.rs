//! Training: optimizers, clipping and schedules, and metrics.

pub mod metrics;
pub mod optim;
