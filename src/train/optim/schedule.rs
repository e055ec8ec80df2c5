//! Learning-rate schedules.

use crate::{Error, Result};

/// A learning rate as a function of the step (TensorFlow's `global_step`).
///
/// Feed it to an optimizer before each step:
/// `opt.set_learning_rate(schedule.rate(opt.step_count()))?`, so step `0` is the first update, as
/// with TensorFlow's `global_step` before `apply_gradients` increments it.
pub trait LearningRateSchedule {
    /// The learning rate at `step`.
    fn rate(&self, step: u64) -> f64;
}

fn check_rate(op: &str, what: &str, x: f64) -> Result<f64> {
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(Error::invalid(format!(
            "{op}: {what} must be finite and >= 0, got {x}"
        )))
    }
}

/// Exponential decay (`tf.train.exponential_decay`).
///
/// ```text
/// rate(step) = initial · decay_rate^(step / decay_steps)
/// ```
///
/// with the exponent rounded down to an integer when `staircase` (the rate then changes every
/// `decay_steps` steps).
///
/// ```
/// use recurrent::optim::{ExponentialDecay, LearningRateSchedule};
/// let s = ExponentialDecay::new(0.1, 100, 0.5, true).unwrap();
/// assert_eq!(s.rate(99), 0.1);
/// assert_eq!(s.rate(100), 0.05);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ExponentialDecay {
    initial: f64,
    decay_steps: u64,
    decay_rate: f64,
    staircase: bool,
}

impl ExponentialDecay {
    /// The schedule `initial · decay_rate^(step / decay_steps)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `initial` is finite and `>= 0`, `decay_steps > 0` and
    /// `decay_rate` is finite and `> 0`.
    pub fn new(initial: f64, decay_steps: u64, decay_rate: f64, staircase: bool) -> Result<Self> {
        const OP: &str = "ExponentialDecay";
        check_rate(OP, "initial", initial)?;
        if decay_steps == 0 {
            return Err(Error::invalid(format!("{OP}: decay_steps must be > 0")));
        }
        if !(decay_rate.is_finite() && decay_rate > 0.0) {
            return Err(Error::invalid(format!(
                "{OP}: decay_rate must be finite and > 0, got {decay_rate}"
            )));
        }
        Ok(ExponentialDecay {
            initial,
            decay_steps,
            decay_rate,
            staircase,
        })
    }
}

impl LearningRateSchedule for ExponentialDecay {
    fn rate(&self, step: u64) -> f64 {
        let p = if self.staircase {
            (step / self.decay_steps) as f64
        } else {
            step as f64 / self.decay_steps as f64
        };
        self.initial * self.decay_rate.powf(p)
    }
}

/// A piecewise-constant rate (`tf.train.piecewise_constant`).
///
/// With boundaries `b₀ < b₁ < … < bₙ₋₁` and values `v₀, …, vₙ`:
///
/// ```text
/// rate(step) = v₀    if step <= b₀
///            = vᵢ    if bᵢ₋₁ < step <= bᵢ
///            = vₙ    if step > bₙ₋₁
/// ```
///
/// (each boundary belongs to the interval it ends, as in TensorFlow).
///
/// ```
/// use recurrent::optim::{LearningRateSchedule, PiecewiseConstant};
/// let s = PiecewiseConstant::new(vec![100, 200], vec![1.0, 0.5, 0.1]).unwrap();
/// assert_eq!(s.rate(100), 1.0);
/// assert_eq!(s.rate(101), 0.5);
/// assert_eq!(s.rate(201), 0.1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseConstant {
    boundaries: Vec<u64>,
    values: Vec<f64>,
}

impl PiecewiseConstant {
    /// The schedule with the given boundaries and values.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `values.len() == boundaries.len() + 1`, the boundaries are
    /// strictly increasing and every value is finite and `>= 0`.
    pub fn new(boundaries: Vec<u64>, values: Vec<f64>) -> Result<Self> {
        const OP: &str = "PiecewiseConstant";
        if values.len() != boundaries.len() + 1 {
            return Err(Error::invalid(format!(
                "{OP}: need one more value than boundaries, got {} boundaries and {} values",
                boundaries.len(),
                values.len()
            )));
        }
        if boundaries.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(format!(
                "{OP}: boundaries must be strictly increasing, got {boundaries:?}"
            )));
        }
        for &v in &values {
            check_rate(OP, "every value", v)?;
        }
        Ok(PiecewiseConstant { boundaries, values })
    }
}

impl LearningRateSchedule for PiecewiseConstant {
    fn rate(&self, step: u64) -> f64 {
        // The number of boundaries strictly below `step` is the interval's index.
        let i = self.boundaries.partition_point(|&b| b < step);
        self.values[i]
    }
}

/// Cosine decay (`tf.train.cosine_decay`; Loshchilov & Hutter, "SGDR").
///
/// ```text
/// s          = min(step, decay_steps)
/// cosine     = 0.5 · (1 + cos(π · s / decay_steps))
/// rate(step) = initial · ((1 − alpha) · cosine + alpha)
/// ```
///
/// so the rate falls from `initial` to `alpha · initial` at `decay_steps` and stays there.
///
/// ```
/// use recurrent::optim::{CosineDecay, LearningRateSchedule};
/// let s = CosineDecay::new(0.1, 1000, 0.0).unwrap();
/// assert_eq!(s.rate(0), 0.1);
/// assert!((s.rate(500) - 0.05).abs() < 1e-12);
/// assert_eq!(s.rate(5000), 0.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CosineDecay {
    initial: f64,
    decay_steps: u64,
    alpha: f64,
}

impl CosineDecay {
    /// The schedule from `initial` down to `alpha · initial` over `decay_steps` steps.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `initial` is finite and `>= 0`, `decay_steps > 0` and
    /// `alpha` is in `[0, 1]`.
    pub fn new(initial: f64, decay_steps: u64, alpha: f64) -> Result<Self> {
        const OP: &str = "CosineDecay";
        check_rate(OP, "initial", initial)?;
        if decay_steps == 0 {
            return Err(Error::invalid(format!("{OP}: decay_steps must be > 0")));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return Err(Error::invalid(format!(
                "{OP}: alpha must be in [0, 1], got {alpha}"
            )));
        }
        Ok(CosineDecay {
            initial,
            decay_steps,
            alpha,
        })
    }
}

impl LearningRateSchedule for CosineDecay {
    fn rate(&self, step: u64) -> f64 {
        let s = step.min(self.decay_steps) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * s / self.decay_steps as f64).cos());
        self.initial * ((1.0 - self.alpha) * cosine + self.alpha)
    }
}
