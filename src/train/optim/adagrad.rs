//! Adagrad.

use super::rule::{apply_checked, Rule};
use super::{check_grads, check_learning_rate, check_positive, overflow, Optimizer, Slots};
use crate::{Grads, ParamStore, Result, Scalar};

/// Adagrad (`tf.train.AdagradOptimizer`; Duchi, Hazan & Singer, 2011).
///
/// For every parameter `var` with gradient `g` and its slot `accum` (`"accumulator"`, every element
/// initialised to `initial_accumulator_value`):
///
/// ```text
/// accum ← accum + g²
/// var   ← var − lr · g / √accum
/// ```
///
/// Defaults (TensorFlow's): `initial_accumulator_value = 0.1` (it must be positive, so the first
/// step never divides by zero); the learning rate has no default.
#[derive(Debug, Clone)]
pub struct Adagrad<T: Scalar> {
    lr: f64,
    initial_accumulator_value: f64,
    step: u64,
    slots: Slots<T>,
}

impl<T: Scalar> Adagrad<T> {
    /// Adagrad with learning rate `lr` (finite, `>= 0`) and `initial_accumulator_value = 0.1`.
    pub fn new(lr: f64) -> Result<Self> {
        Ok(Adagrad {
            lr: check_learning_rate::<T>("Adagrad", lr)?,
            initial_accumulator_value: 0.1,
            step: 0,
            slots: Slots::new(&["accumulator"]),
        })
    }

    /// Sets the starting value of the accumulators (finite, `> 0`), used for parameters that have
    /// no accumulator yet.
    pub fn with_initial_accumulator_value(mut self, value: f64) -> Result<Self> {
        self.initial_accumulator_value =
            check_positive::<T>("Adagrad", "initial_accumulator_value", value)?;
        Ok(self)
    }

    /// The starting value of the accumulators.
    pub fn initial_accumulator_value(&self) -> f64 {
        self.initial_accumulator_value
    }
}

impl<T: Scalar> Optimizer<T> for Adagrad<T> {
    fn apply(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<()> {
        const OP: &str = "Adagrad::apply";
        check_grads(OP, params, grads, self.step + 1)?;
        self.slots.check(OP, params, grads)?;
        let rule = AdagradRule {
            lr: T::from_f64_lossy(self.lr),
        };
        let created = self
            .slots
            .ensure(params, grads, &[self.initial_accumulator_value]);
        if let Err(id) = apply_checked(params, grads, &mut [&mut self.slots], &rule) {
            self.slots.remove(&created);
            return Err(overflow(params, id, self.step + 1));
        }
        self.step += 1;
        Ok(())
    }

    state_accessors!("Adagrad");
}

/// [`Adagrad`]'s update of `(var, [accum])`.
struct AdagradRule<T> {
    lr: T,
}

impl<T: Scalar> Rule<T, 1> for AdagradRule<T> {
    #[inline(always)]
    fn step(&self, w: T, g: T, [a]: [T; 1]) -> (T, [T; 1]) {
        let a = a + g * g;
        (w - self.lr * g / a.sqrt(), [a])
    }
}
