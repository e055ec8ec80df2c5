//! RMSProp.

use ndarray::ArrayD;

use super::rule::{apply_checked, Rule};
use super::{
    check_grads, check_learning_rate, check_non_negative, check_positive, check_unit, overflow,
    Optimizer, OptimizerState, Slots,
};
use crate::{Grads, ParamId, ParamStore, Result, Scalar};

/// RMSProp (`tf.train.RMSPropOptimizer`; Hinton, Coursera lecture 6e).
///
/// For every parameter `var` with gradient `g` and its slots `ms` (`"rms"`, initialised to **ones**,
/// as in TensorFlow 1.x), `mom` (`"momentum"`, zeros) and, when centered, `mg` (`"mg"`, zeros):
///
/// ```text
/// ms  ← decay · ms + (1 − decay) · g²
/// mom ← momentum · mom + lr · g / √(ms + ε)                 (centered = false)
///
/// mg  ← decay · mg + (1 − decay) · g                        (centered = true)
/// mom ← momentum · mom + lr · g / √(ms − mg² + ε)
///
/// var ← var − mom
/// ```
///
/// Note that `ε` is inside the square root, and that with `momentum = 0` the update is
/// `lr · g / √(ms + ε)`.
///
/// Defaults (TensorFlow's): `decay = 0.9`, `momentum = 0.0`, `ε = 1e-10`, `centered = false`; the
/// learning rate has no default.
///
/// ```
/// # fn main() -> recurrent::Result<()> {
/// use recurrent::optim::RmsProp;
/// let opt = RmsProp::<f32>::new(0.01)?.with_momentum(0.9)?.with_centered(true);
/// assert_eq!(opt.decay(), 0.9);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RmsProp<T: Scalar> {
    lr: f64,
    decay: f64,
    momentum: f64,
    epsilon: f64,
    centered: bool,
    step: u64,
    /// `ms` and `mom`.
    slots: Slots<T>,
    /// `mg`, only when centered.
    mg: Slots<T>,
}

impl<T: Scalar> RmsProp<T> {
    /// RMSProp with learning rate `lr` (finite, `>= 0`) and TensorFlow's other defaults.
    pub fn new(lr: f64) -> Result<Self> {
        Ok(RmsProp {
            lr: check_learning_rate::<T>("RmsProp", lr)?,
            decay: 0.9,
            momentum: 0.0,
            epsilon: 1e-10,
            centered: false,
            step: 0,
            slots: Slots::new(&["rms", "momentum"]),
            mg: Slots::new(&["mg"]),
        })
    }

    /// Sets the decay of the moving averages, in `[0, 1)`.
    pub fn with_decay(mut self, decay: f64) -> Result<Self> {
        self.decay = check_unit("RmsProp", "decay", decay)?;
        Ok(self)
    }

    /// Sets the momentum (finite, `>= 0`).
    pub fn with_momentum(mut self, momentum: f64) -> Result<Self> {
        self.momentum = check_non_negative::<T>("RmsProp", "momentum", momentum)?;
        Ok(self)
    }

    /// Sets `ε` (finite, `> 0`).
    pub fn with_epsilon(mut self, epsilon: f64) -> Result<Self> {
        self.epsilon = check_positive::<T>("RmsProp", "epsilon", epsilon)?;
        Ok(self)
    }

    /// Normalises by the centered second moment (an estimate of the variance) when `true`.
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    /// The decay of the moving averages.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The momentum.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// `ε`.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Whether the second moment is centered.
    pub fn centered(&self) -> bool {
        self.centered
    }
}

impl<T: Scalar> Optimizer<T> for RmsProp<T> {
    fn apply(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<()> {
        const OP: &str = "RmsProp::apply";
        check_grads(OP, params, grads, self.step + 1)?;
        self.slots.check(OP, params, grads)?;
        self.mg.check(OP, params, grads)?;
        let lr = T::from_f64_lossy(self.lr);
        let rho = T::from_f64_lossy(self.decay);
        let one_rho = T::from_f64_lossy(1.0 - self.decay);
        let mu = T::from_f64_lossy(self.momentum);
        let eps = T::from_f64_lossy(self.epsilon);
        let rule = RmsPropRule {
            lr,
            rho,
            one_rho,
            mu,
            eps,
        };
        let created = self.slots.ensure(params, grads, &[1.0, 0.0]);
        let created_mg = if self.centered {
            self.mg.ensure(params, grads, &[0.0])
        } else {
            Vec::new()
        };
        let result = if self.centered {
            apply_checked::<T, _, 3>(params, grads, &mut [&mut self.slots, &mut self.mg], &rule)
        } else {
            apply_checked::<T, _, 2>(params, grads, &mut [&mut self.slots], &rule)
        };
        if let Err(id) = result {
            self.slots.remove(&created);
            self.mg.remove(&created_mg);
            return Err(overflow(params, id, self.step + 1));
        }
        self.step += 1;
        Ok(())
    }

    state_accessors!("RmsProp", except_slots);

    fn slot_names(&self) -> Vec<&'static str> {
        let mut names = self.slots.names().to_vec();
        if self.centered {
            names.extend_from_slice(self.mg.names());
        }
        names
    }

    fn slot(&self, id: ParamId, name: &str) -> Option<&ArrayD<T>> {
        self.slots.get(id, name).or_else(|| self.mg.get(id, name))
    }

    fn state(&self) -> OptimizerState<T> {
        let mut slots = self.slots.export();
        slots.extend(self.mg.export());
        super::sort_slots(&mut slots);
        OptimizerState {
            step: self.step,
            learning_rate: self.lr,
            slots,
        }
    }

    fn load_state(&mut self, params: &ParamStore<T>, state: &OptimizerState<T>) -> Result<()> {
        const OP: &str = "RmsProp";
        let known = self.slot_names();
        let lr = check_learning_rate::<T>(OP, state.learning_rate)?;
        let slots = self.slots.import_some(OP, params, &state.slots, &known)?;
        let mg = self.mg.import_some(OP, params, &state.slots, &known)?;
        (self.slots, self.mg, self.lr, self.step) = (slots, mg, lr, state.step);
        Ok(())
    }
}

/// [`RmsProp`]'s update: of `(var, [ms, mom])`, or centered of `(var, [ms, mom, mg])`.
struct RmsPropRule<T> {
    lr: T,
    rho: T,
    one_rho: T,
    mu: T,
    eps: T,
}

impl<T: Scalar> Rule<T, 2> for RmsPropRule<T> {
    #[inline(always)]
    fn step(&self, w: T, g: T, [ms, mom]: [T; 2]) -> (T, [T; 2]) {
        let ms = self.rho * ms + self.one_rho * g * g;
        let mom = self.mu * mom + self.lr * g / (ms + self.eps).sqrt();
        (w - mom, [ms, mom])
    }
}

impl<T: Scalar> Rule<T, 3> for RmsPropRule<T> {
    #[inline(always)]
    fn step(&self, w: T, g: T, [ms, mom, mg]: [T; 3]) -> (T, [T; 3]) {
        let ms = self.rho * ms + self.one_rho * g * g;
        let mg = self.rho * mg + self.one_rho * g;
        let mom = self.mu * mom + self.lr * g / (ms - mg * mg + self.eps).sqrt();
        (w - mom, [ms, mom, mg])
    }
}
