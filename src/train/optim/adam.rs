//! Adam and Adam with decoupled weight decay.

use ndarray::ArrayD;

use super::rule::{apply_checked, Rule};
use super::{
    check_grads, check_learning_rate, check_non_negative, check_positive, check_unit, overflow,
    Optimizer, OptimizerState, Slots,
};
use crate::{Grads, ParamId, ParamStore, Result, Scalar};

/// Adam (`tf.train.AdamOptimizer`; Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization").
///
/// At step `t` (1 for the first [`Optimizer::apply`]), for every parameter `var` with gradient `g`
/// and its slots `m` and `v` (zeros at first):
///
/// ```text
/// lr_t ← lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)
/// m    ← β₁ · m + (1 − β₁) · g
/// v    ← β₂ · v + (1 − β₂) · g²
/// var  ← var − lr_t · m / (√v + ε)
/// ```
///
/// As in TensorFlow, `ε` is the "epsilon hat" of the paper's section 2: it is added outside the bias
/// correction, so the effective epsilon of the paper's algorithm 1 is `ε · √(1 − β₂ᵗ)`.
///
/// Defaults (TensorFlow's): `lr = 0.001`, `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-8`.
///
/// ```
/// # fn main() -> recurrent::Result<()> {
/// use recurrent::optim::Adam;
/// let opt = Adam::<f32>::new(0.01)?.with_beta1(0.8)?.with_epsilon(1e-7)?;
/// assert_eq!(opt.beta2(), 0.999);
/// assert!(Adam::<f32>::new(0.01)?.with_beta2(1.0).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Adam<T: Scalar> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    step: u64,
    slots: Slots<T>,
}

impl<T: Scalar> Default for Adam<T> {
    /// TensorFlow's defaults: `lr = 0.001`, `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-8`.
    fn default() -> Self {
        Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            step: 0,
            slots: Slots::new(&["m", "v"]),
        }
    }
}

impl<T: Scalar> Adam<T> {
    /// Adam with learning rate `lr` (finite, `>= 0`) and TensorFlow's other defaults.
    pub fn new(lr: f64) -> Result<Self> {
        Ok(Adam {
            lr: check_learning_rate::<T>("Adam", lr)?,
            ..Self::default()
        })
    }

    /// Sets `β₁`, the decay of the first-moment estimate, in `[0, 1)`.
    pub fn with_beta1(mut self, beta1: f64) -> Result<Self> {
        self.beta1 = check_unit("Adam", "beta1", beta1)?;
        Ok(self)
    }

    /// Sets `β₂`, the decay of the second-moment estimate, in `[0, 1)`.
    pub fn with_beta2(mut self, beta2: f64) -> Result<Self> {
        self.beta2 = check_unit("Adam", "beta2", beta2)?;
        Ok(self)
    }

    /// Sets `ε` (finite, `> 0`).
    pub fn with_epsilon(mut self, epsilon: f64) -> Result<Self> {
        self.epsilon = check_positive::<T>("Adam", "epsilon", epsilon)?;
        Ok(self)
    }

    /// `β₁`.
    pub fn beta1(&self) -> f64 {
        self.beta1
    }

    /// `β₂`.
    pub fn beta2(&self) -> f64 {
        self.beta2
    }

    /// `ε`.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// One Adam step, each parameter first decayed by `weight_decay · var` (AdamW; 0 for Adam).
    fn step_with_decay(
        &mut self,
        op: &'static str,
        params: &mut ParamStore<T>,
        grads: &Grads<T>,
        weight_decay: f64,
    ) -> Result<()> {
        check_grads(op, params, grads, self.step + 1)?;
        self.slots.check(op, params, grads)?;
        let t = (self.step + 1) as f64;
        let lr_t = T::from_f64_lossy(
            self.lr * (1.0 - self.beta2.powf(t)).sqrt() / (1.0 - self.beta1.powf(t)),
        );
        let (b1, b2) = (T::from_f64_lossy(self.beta1), T::from_f64_lossy(self.beta2));
        let (one_b1, one_b2) = (
            T::from_f64_lossy(1.0 - self.beta1),
            T::from_f64_lossy(1.0 - self.beta2),
        );
        let k = Coefficients {
            lr_t,
            b1,
            b2,
            one_b1,
            one_b2,
            eps: T::from_f64_lossy(self.epsilon),
            wd: T::from_f64_lossy(weight_decay),
            decay: weight_decay != 0.0,
        };
        let created = self.slots.ensure(params, grads, &[0.0, 0.0]);
        if let Err(id) = apply_checked(params, grads, &mut [&mut self.slots], &k) {
            self.slots.remove(&created);
            return Err(overflow(params, id, self.step + 1));
        }
        self.step += 1;
        Ok(())
    }
}

/// One step's constants of [`Adam`] and [`AdamW`], in `T`.
struct Coefficients<T> {
    lr_t: T,
    b1: T,
    b2: T,
    one_b1: T,
    one_b2: T,
    eps: T,
    wd: T,
    decay: bool,
}

impl<T: Scalar> Rule<T, 2> for Coefficients<T> {
    /// The new `(var, [m, v])`.
    #[inline(always)]
    fn step(&self, w: T, g: T, [m, v]: [T; 2]) -> (T, [T; 2]) {
        let m = self.b1 * m + self.one_b1 * g;
        let v = self.b2 * v + self.one_b2 * g * g;
        let adam = self.lr_t * m / (v.sqrt() + self.eps);
        // Decoupled weight decay uses the value before the Adam update.
        let w = if self.decay {
            w - self.wd * w - adam
        } else {
            w - adam
        };
        (w, [m, v])
    }
}

impl<T: Scalar> Optimizer<T> for Adam<T> {
    fn apply(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<()> {
        self.step_with_decay("Adam::apply", params, grads, 0.0)
    }

    state_accessors!("Adam");
}

/// Adam with decoupled weight decay (`tf.contrib.opt.AdamWOptimizer`, built on
/// `tf.contrib.opt.DecoupledWeightDecayExtension`; Loshchilov & Hutter, "Decoupled Weight Decay
/// Regularization").
///
/// The [`Adam`] rule, with every updated parameter also shrunk by `weight_decay` times its value
/// before the update:
///
/// ```text
/// lr_t ← lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)
/// m    ← β₁ · m + (1 − β₁) · g
/// v    ← β₂ · v + (1 − β₂) · g²
/// var  ← var − weight_decay · var − lr_t · m / (√v + ε)
/// ```
///
/// **The decay is not multiplied by the learning rate**, as in TensorFlow's contrib implementation
/// (the paper's `η_t` schedule multiplier is left to the user): if you decay the learning rate with
/// a schedule, decay the weight decay alongside it with [`AdamW::set_weight_decay`]. Only parameters
/// that have a gradient in `grads` are decayed. Both terms use the value of `var` before the step.
///
/// Defaults (TensorFlow's): `lr = 0.001`, `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-8`; `weight_decay` has
/// no default. TensorFlow's constructor takes `weight_decay` first; here the learning rate comes
/// first, as for every other optimizer.
#[derive(Debug, Clone)]
pub struct AdamW<T: Scalar> {
    adam: Adam<T>,
    weight_decay: f64,
}

impl<T: Scalar> AdamW<T> {
    /// AdamW with learning rate `lr` and `weight_decay` (both finite, `>= 0`) and TensorFlow's
    /// other defaults.
    pub fn new(lr: f64, weight_decay: f64) -> Result<Self> {
        Ok(AdamW {
            adam: Adam {
                lr: check_learning_rate::<T>("AdamW", lr)?,
                ..Adam::default()
            },
            weight_decay: check_non_negative::<T>("AdamW", "weight_decay", weight_decay)?,
        })
    }

    /// Sets `β₁`, in `[0, 1)`.
    pub fn with_beta1(mut self, beta1: f64) -> Result<Self> {
        self.adam.beta1 = check_unit("AdamW", "beta1", beta1)?;
        Ok(self)
    }

    /// Sets `β₂`, in `[0, 1)`.
    pub fn with_beta2(mut self, beta2: f64) -> Result<Self> {
        self.adam.beta2 = check_unit("AdamW", "beta2", beta2)?;
        Ok(self)
    }

    /// Sets `ε` (finite, `> 0`).
    pub fn with_epsilon(mut self, epsilon: f64) -> Result<Self> {
        self.adam.epsilon = check_positive::<T>("AdamW", "epsilon", epsilon)?;
        Ok(self)
    }

    /// The weight decay factor.
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
    }

    /// Changes the weight decay factor for the following steps.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `weight_decay` is negative or
    /// not finite; the factor is then unchanged.
    pub fn set_weight_decay(&mut self, weight_decay: f64) -> Result<()> {
        self.weight_decay = check_non_negative::<T>("AdamW", "weight_decay", weight_decay)?;
        Ok(())
    }

    /// `β₁`.
    pub fn beta1(&self) -> f64 {
        self.adam.beta1
    }

    /// `β₂`.
    pub fn beta2(&self) -> f64 {
        self.adam.beta2
    }

    /// `ε`.
    pub fn epsilon(&self) -> f64 {
        self.adam.epsilon
    }
}

impl<T: Scalar> Optimizer<T> for AdamW<T> {
    fn apply(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<()> {
        self.adam
            .step_with_decay("AdamW::apply", params, grads, self.weight_decay)
    }

    fn learning_rate(&self) -> f64 {
        self.adam.lr
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        self.adam.lr = check_learning_rate::<T>("AdamW", lr)?;
        Ok(())
    }

    fn step_count(&self) -> u64 {
        self.adam.step
    }

    fn slot_names(&self) -> Vec<&'static str> {
        self.adam.slot_names()
    }

    fn slot(&self, id: ParamId, name: &str) -> Option<&ArrayD<T>> {
        self.adam.slot(id, name)
    }

    fn state(&self) -> OptimizerState<T> {
        self.adam.state()
    }

    fn load_state(&mut self, params: &ParamStore<T>, state: &OptimizerState<T>) -> Result<()> {
        self.adam.load_state(params, state)
    }
}
