//! Training: optimizers, clipping and schedules, metrics, the [`Trainer`] and the complete
//! [`TrainingState`] that makes runs resumable.

pub mod metrics;
pub mod optim;
mod state;
mod trainer;

pub use state::{
    load_training_state, load_training_state_from_bytes, save_training_state,
    save_training_state_to_bytes, TrainingState, TRAINING_STATE_FORMAT,
};
pub use trainer::{
    predict, step_seed, EarlyStopping, FitOptions, History, Metrics, Monitor, Observer, StepReport,
    Stepper, Stop, Trainer, DIVERGENCE_WINDOW,
};
