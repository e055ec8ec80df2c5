//! Gradient descent with and without momentum.

use super::rule::{apply_checked, Rule};
use super::{
    check_grads, check_learning_rate, check_non_negative, overflow, Optimizer, OptimizerState,
    Slots,
};
use crate::{Error, Grads, ParamStore, Result, Scalar};

/// Plain gradient descent (`tf.train.GradientDescentOptimizer`).
///
/// For every parameter `var` with gradient `g`:
///
/// ```text
/// var ← var − lr · g
/// ```
///
/// The learning rate has no default in TensorFlow and none here. There are no slots.
///
/// ```
/// use ndarray::array;
/// use recurrent::optim::{GradientDescent, Optimizer};
/// use recurrent::{Grads, ParamStore};
///
/// let mut params = ParamStore::<f64>::new(0);
/// let w = params.create_from("w", array![1.0, 2.0].into_dyn()).unwrap();
/// let mut grads = Grads::new();
/// grads.insert(w, array![0.5, -1.0].into_dyn());
/// let mut opt = GradientDescent::new(0.1).unwrap();
/// opt.apply(&mut params, &grads).unwrap();
/// assert_eq!(params.value(w), &array![0.95, 2.1].into_dyn());
/// ```
#[derive(Debug, Clone)]
pub struct GradientDescent {
    lr: f64,
    step: u64,
}

impl GradientDescent {
    /// Gradient descent with learning rate `lr` (finite, `>= 0`).
    pub fn new(lr: f64) -> Result<Self> {
        Ok(GradientDescent {
            // Checked again in the element type at each `apply`.
            lr: check_learning_rate::<f64>("GradientDescent", lr)?,
            step: 0,
        })
    }
}

impl<T: Scalar> Optimizer<T> for GradientDescent {
    fn apply(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<()> {
        const OP: &str = "GradientDescent::apply";
        check_grads(OP, params, grads, self.step + 1)?;
        // `new` checked the rate in f64; here is where the element type is known.
        check_learning_rate::<T>(OP, self.lr)?;
        let rule = DescentRule {
            lr: T::from_f64_lossy(self.lr),
        };
        if let Err(id) = apply_checked(params, grads, &mut [], &rule) {
            return Err(overflow(params, id, self.step + 1));
        }
        self.step += 1;
        Ok(())
    }

    state_accessors!("GradientDescent", except_slots);

    fn state(&self) -> OptimizerState<T> {
        OptimizerState {
            step: self.step,
            learning_rate: self.lr,
            slots: Vec::new(),
        }
    }

    fn load_state(&mut self, _params: &ParamStore<T>, state: &OptimizerState<T>) -> Result<()> {
        if let Some((_, name, _)) = state.slots.first() {
            return Err(Error::Checkpoint(format!(
                "GradientDescent keeps no slots, but the saved state has {name:?}"
            )));
        }
        self.lr = check_learning_rate::<T>("GradientDescent", state.learning_rate)?;
        self.step = state.step;
        Ok(())
    }
}

/// Gradient descent with (optionally Nesterov) momentum (`tf.train.MomentumOptimizer`).
///
/// For every parameter `var` with gradient `g` and its slot `accum` (`"momentum"`, zeros at first):
///
/// ```text
/// accum ← momentum · accum + g
/// var   ← var − lr · accum                       (use_nesterov = false)
/// var   ← var − lr · (g + momentum · accum)      (use_nesterov = true, with the new accum)
/// ```
///
/// TensorFlow gives no default for `learning_rate` and `momentum`; `use_nesterov` defaults to
/// `false`. Note that the learning rate multiplies the accumulator at each step, so changing it
/// changes the size of the whole accumulated step at once (TensorFlow's behaviour).
#[derive(Debug, Clone)]
pub struct Momentum<T: Scalar> {
    lr: f64,
    momentum: f64,
    use_nesterov: bool,
    step: u64,
    slots: Slots<T>,
}

impl<T: Scalar> Momentum<T> {
    /// Momentum with learning rate `lr` (finite, `>= 0`) and `momentum` (finite, `>= 0`),
    /// without Nesterov.
    pub fn new(lr: f64, momentum: f64) -> Result<Self> {
        Ok(Momentum {
            lr: check_learning_rate::<T>("Momentum", lr)?,
            momentum: check_non_negative::<T>("Momentum", "momentum", momentum)?,
            use_nesterov: false,
            step: 0,
            slots: Slots::new(&["momentum"]),
        })
    }

    /// Switches Nesterov momentum on or off (`use_nesterov`).
    pub fn with_nesterov(mut self, use_nesterov: bool) -> Self {
        self.use_nesterov = use_nesterov;
        self
    }

    /// The momentum coefficient.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// Whether Nesterov momentum is used.
    pub fn use_nesterov(&self) -> bool {
        self.use_nesterov
    }
}

impl<T: Scalar> Optimizer<T> for Momentum<T> {
    fn apply(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<()> {
        const OP: &str = "Momentum::apply";
        check_grads(OP, params, grads, self.step + 1)?;
        self.slots.check(OP, params, grads)?;
        let rule = MomentumRule {
            lr: T::from_f64_lossy(self.lr),
            mu: T::from_f64_lossy(self.momentum),
            nesterov: self.use_nesterov,
        };
        let created = self.slots.ensure(params, grads, &[0.0]);
        if let Err(id) = apply_checked(params, grads, &mut [&mut self.slots], &rule) {
            self.slots.remove(&created);
            return Err(overflow(params, id, self.step + 1));
        }
        self.step += 1;
        Ok(())
    }

    state_accessors!("Momentum");
}

/// [`GradientDescent`]'s update: `var - lr * g`.
struct DescentRule<T> {
    lr: T,
}

impl<T: Scalar> Rule<T, 0> for DescentRule<T> {
    #[inline(always)]
    fn step(&self, w: T, g: T, _: [T; 0]) -> (T, [T; 0]) {
        (w - self.lr * g, [])
    }
}

/// [`Momentum`]'s update of `(var, [accum])`.
struct MomentumRule<T> {
    lr: T,
    mu: T,
    nesterov: bool,
}

impl<T: Scalar> Rule<T, 1> for MomentumRule<T> {
    #[inline(always)]
    fn step(&self, w: T, g: T, [a]: [T; 1]) -> (T, [T; 1]) {
        let a = self.mu * a + g;
        let w = if self.nesterov {
            w - self.lr * (g + self.mu * a)
        } else {
            w - self.lr * a
        };
        (w, [a])
    }
}
