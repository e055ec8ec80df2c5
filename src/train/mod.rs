//! Training: optimizers, clipping and schedules, metrics, the [`Trainer`] and the complete
//! [`TrainingState`] that makes runs resumable.

#[cfg(feature = "mpi")]
pub mod distributed;
pub mod metrics;
pub mod optim;
mod shards;
mod state;
mod trainer;

pub use shards::{shard_ranges, Collective};
pub use state::{
    load_training_state, load_training_state_from_bytes, save_training_state,
    save_training_state_to_bytes, TrainingState, TRAINING_STATE_FORMAT,
};
pub use trainer::{
    predict, step_seed, EarlyStopping, FitOptions, History, Metrics, Monitor, Observer, StepReport,
    Stepper, Stop, Trainer, DIVERGENCE_WINDOW,
};
