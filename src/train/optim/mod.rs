//! Optimizers, gradient clipping and learning-rate schedules, as in TensorFlow 1.x's `tf.train`.
//!
//! An [`Optimizer`] turns the [`Grads`] of one [`Tape::backward`](crate::Tape::backward) call into
//! an update of a [`ParamStore`]: `opt.apply(&mut params, &grads)`. Each optimizer follows the
//! update rule and the defaults of the TensorFlow 1.x class it names; its documentation writes the
//! rule out as equations. Its state ("slots", such as Adam's `m` and `v`) is kept inside the
//! optimizer, per [`ParamId`], created at a parameter's first update.
//!
//! | TensorFlow 1.x                               | `recurrent::optim`                          |
//! |----------------------------------------------|---------------------------------------------|
//! | `tf.train.GradientDescentOptimizer(lr)`      | [`GradientDescent::new(lr)`](GradientDescent::new) |
//! | `tf.train.MomentumOptimizer(lr, m, use_nesterov)` | [`Momentum::new(lr, m)`](Momentum::new)`?.with_nesterov(..)` |
//! | `tf.train.AdamOptimizer(lr, b1, b2, eps)`    | [`Adam::new(lr)`](Adam::new)`?.with_beta1(..)?` ... |
//! | `tf.contrib.opt.AdamWOptimizer(wd, lr, ..)`  | [`AdamW::new(lr, wd)`](AdamW::new)          |
//! | `tf.train.RMSPropOptimizer(lr, decay, momentum, eps, centered)` | [`RmsProp::new(lr)`](RmsProp::new)`?.with_decay(..)?` ... |
//! | `tf.train.AdagradOptimizer(lr, init_accum)`  | [`Adagrad::new(lr)`](Adagrad::new)`?.with_initial_accumulator_value(..)?` |
//! | `tf.clip_by_global_norm(grads, clip_norm)`   | [`clip_by_global_norm(&mut grads, clip_norm)`](clip_by_global_norm) |
//! | `tf.clip_by_value(g, min, max)` on every gradient | [`clip_by_value(&mut grads, min, max)`](clip_by_value) |
//! | `tf.train.exponential_decay`                 | [`ExponentialDecay`]                        |
//! | `tf.train.piecewise_constant`                | [`PiecewiseConstant`]                       |
//! | `tf.train.cosine_decay`                      | [`CosineDecay`]                             |
//!
//! # Rules shared by every optimizer
//! - Hyper-parameters are checked when the optimizer is built: a learning rate that is negative or
//!   not finite, a decay rate outside `[0, 1)`, an epsilon that is not positive, ... is an
//!   [`Error::InvalidArgument`]. They are checked in the element type `T` they are applied in as
//!   well: a learning rate of `1e39` is finite in `f64` but infinite in `f32`, and an epsilon of
//!   `1e-50` rounds to 0 in `f32`; both are errors for an `f32` optimizer. ([`GradientDescent`]
//!   is not generic over `T`: its rate is checked in `T` at each `apply`, before anything changes.)
//! - [`Optimizer::apply`] first checks every gradient, then updates: a gradient for a parameter the
//!   store does not hold is an [`Error::InvalidArgument`], a gradient
//!   whose shape differs from its parameter's an [`Error::Shape`], a gradient holding a NaN or an
//!   infinity an [`Error::NonFinite`] naming the parameter and the step
//!   (`"gradient of rnn/basic_lstm_cell/kernel at step 12"`, the 1-based step the update would
//!   have been); on error nothing (parameters, slots, step count) changes, so training stops at
//!   the step that diverged instead of writing NaN weights. [`check_finite_loss`] does the same
//!   for the loss.
//! - The step is computed twice, element by element with the same code: a first pass only checks
//!   that every new value (parameter and slots) is finite, the second writes. An update that
//!   overflows (a learning rate too large for its gradients, an accumulator reaching infinity)
//!   is an [`Error::NonFinite`] `"update of {name} at step {step}"`, and, as for a non-finite
//!   gradient, nothing changes, for any parameter. (The check costs one more pass of the
//!   update arithmetic and no memory.)
//! - Parameters without a gradient in `grads` are left untouched, and so are their slots.
//! - Each successful `apply` is one step: [`Optimizer::step_count`] goes up by one (TensorFlow's
//!   `global_step`, and the `t` of Adam's bias correction).
//! - Elementwise arithmetic runs in the parameters' type `T` (as TensorFlow's kernels do); scalar
//!   coefficients (such as Adam's bias-corrected rate) are computed in `f64` and then rounded to `T`.
//!
//! # Example: a training step
//!
//! ```
//! # fn main() -> recurrent::Result<()> {
//! use ndarray::array;
//! use recurrent::optim::{Adam, LearningRateSchedule, ExponentialDecay, Optimizer};
//! use recurrent::{init::Initializer, ParamStore, Tape};
//!
//! let mut params = ParamStore::<f64>::new(0);
//! let w = params.create("w", &[2, 1], Initializer::Zeros)?;
//! let mut opt = Adam::new(0.1)?;
//! let schedule = ExponentialDecay::new(0.1, 100, 0.5, false)?;
//!
//! let loss_at = |params: &ParamStore<f64>| -> recurrent::Result<f64> {
//!     // loss = mean((x @ w - 3)^2)
//!     let tape = Tape::inference(params);
//!     let x = tape.constant(array![[1.0, 2.0]].into_dyn());
//!     let err = tape.sub(tape.matmul(x, tape.param(w))?, tape.constant(array![[3.0]].into_dyn()))?;
//!     let loss = tape.mean(tape.mul(err, err)?);
//!     Ok(tape.scalar(loss))
//! };
//! let before = loss_at(&params)?;
//! for _ in 0..20 {
//!     let grads = {
//!         let tape = Tape::new(&params);
//!         let x = tape.constant(array![[1.0, 2.0]].into_dyn());
//!         let y = tape.matmul(x, tape.param(w))?;
//!         let err = tape.sub(y, tape.constant(array![[3.0]].into_dyn()))?;
//!         let loss = tape.mean(tape.mul(err, err)?);
//!         tape.backward(loss)?
//!     }; // the tape is dropped here, so the store can be updated
//!     opt.set_learning_rate(schedule.rate(opt.step_count()))?;
//!     opt.apply(&mut params, &grads)?;
//! }
//! assert_eq!(opt.step_count(), 20);
//! assert!(loss_at(&params)? < 0.1 * before);
//! # Ok(())
//! # }
//! ```

/// The [`Optimizer`] accessors of an optimizer whose fields are `lr`, `step` and `slots`: the
/// same five methods in every such optimizer, written once. `except_slots` leaves out the two
/// slot accessors, for an optimizer without slots or with slots of its own kind.
macro_rules! state_accessors {
    ($name:literal, except_slots) => {
        fn learning_rate(&self) -> f64 {
            self.lr
        }

        fn set_learning_rate(&mut self, lr: f64) -> $crate::Result<()> {
            self.lr = $crate::optim::check_learning_rate::<T>($name, lr)?;
            Ok(())
        }

        fn step_count(&self) -> u64 {
            self.step
        }
    };
    ($name:literal) => {
        state_accessors!($name, except_slots);

        fn slot_names(&self) -> Vec<&'static str> {
            self.slots.names().to_vec()
        }

        fn slot(&self, id: $crate::ParamId, name: &str) -> Option<&ndarray::ArrayD<T>> {
            self.slots.get(id, name)
        }

        fn state(&self) -> $crate::optim::OptimizerState<T> {
            $crate::optim::OptimizerState {
                step: self.step,
                learning_rate: self.lr,
                slots: self.slots.export(),
            }
        }

        fn load_state(
            &mut self,
            params: &$crate::ParamStore<T>,
            state: &$crate::optim::OptimizerState<T>,
        ) -> $crate::Result<()> {
            let lr = $crate::optim::check_learning_rate::<T>($name, state.learning_rate)?;
            let slots = self.slots.import($name, params, &state.slots)?;
            self.slots = slots;
            self.lr = lr;
            self.step = state.step;
            Ok(())
        }
    };
}

mod adagrad;
mod adam;
mod clip;
mod rmsprop;
mod rule;
mod schedule;
mod sgd;

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use clip::{clip_by_global_norm, clip_by_value};
pub use rmsprop::RmsProp;
pub use schedule::{CosineDecay, ExponentialDecay, LearningRateSchedule, PiecewiseConstant};
pub use sgd::{GradientDescent, Momentum};

use crate::{Error, Grads, ParamId, ParamStore, Result, Scalar};

/// Applies gradients to parameters, one step at a time.
///
/// Implementations keep their per-parameter state inside themselves; one optimizer serves one
/// [`ParamStore`]. The trait is object safe: `Box<dyn Optimizer<f32>>` picks an optimizer at run
/// time.
pub trait Optimizer<T: Scalar> {
    /// Performs one update step with `grads` and increments [`Optimizer::step_count`].
    ///
    /// Parameters without a gradient in `grads` are not changed.
    ///
    /// # Errors
    /// Checked before anything changes:
    /// - [`Error::InvalidArgument`] if a gradient names a parameter `params` does not hold, or if the
    ///   optimizer holds state for a parameter of another shape (it was used with another store);
    /// - [`Error::Shape`] if a gradient's shape is not its parameter's;
    /// - [`Error::NonFinite`] if a gradient holds a NaN or an infinity: the message names the
    ///   parameter and the step (`step_count() + 1`) as `"gradient of {name} at step {step}"`;
    /// - [`Error::NonFinite`] `"update of {name} at step {step}"` if the update would make a
    ///   parameter or one of its slots non-finite (checked for all before any is written);
    /// - [`Error::InvalidArgument`] if a hyper-parameter is not finite in `T`.
    fn apply(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<()>;

    /// The current learning rate.
    fn learning_rate(&self) -> f64;

    /// Changes the learning rate for the following steps (for example from a
    /// [`LearningRateSchedule`]); the optimizer's state is kept.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `lr` is negative or not finite; the rate is then unchanged.
    fn set_learning_rate(&mut self, lr: f64) -> Result<()>;

    /// The number of successful [`Optimizer::apply`] calls so far.
    fn step_count(&self) -> u64;

    /// The names of the optimizer's per-parameter slots, as TensorFlow names them
    /// (`["m", "v"]` for Adam); empty for plain gradient descent.
    fn slot_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The slot `name` of parameter `id` (TensorFlow's `Optimizer.get_slot`), if the parameter has
    /// been updated at least once.
    fn slot(&self, _id: ParamId, _name: &str) -> Option<&ArrayD<T>> {
        None
    }

    /// Everything the optimizer has learnt: the step count, the learning rate and every slot,
    /// so that a training run can be saved and resumed exactly
    /// ([`TrainingState`](crate::train::TrainingState)).
    fn state(&self) -> OptimizerState<T>;

    /// Continues from a saved [`OptimizerState`] (of an optimizer of the same kind, over a store
    /// with the same parameters); the hyper-parameters other than the learning rate stay as
    /// this optimizer was built.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if a slot names a parameter `params` does not hold, a slot this
    /// optimizer does not have, has another shape than its parameter, or a parameter has only
    /// some of its slots; [`Error::InvalidArgument`] for a bad learning rate. On error nothing
    /// changes.
    fn load_state(&mut self, params: &ParamStore<T>, state: &OptimizerState<T>) -> Result<()>;
}

/// Puts slots in [`OptimizerState`]'s order: by parameter, then by slot name.
pub(crate) fn sort_slots<T>(slots: &mut [(ParamId, String, ArrayD<T>)]) {
    slots.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
}

/// The state of an [`Optimizer`] ([`Optimizer::state`]): what a checkpoint must hold to resume
/// training with the same updates.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState<T> {
    /// Successful steps so far ([`Optimizer::step_count`]).
    pub step: u64,
    /// The learning rate in force.
    pub learning_rate: f64,
    /// Every slot as `(parameter, slot name, value)`, by parameter in creation order and then
    /// by slot name.
    pub slots: Vec<(ParamId, String, ArrayD<T>)>,
}

// ---------------------------------------------------------------------------------------------
// Validation of hyper-parameters
// ---------------------------------------------------------------------------------------------

/// The name of `T` as a user writes it (`f32`, `f64`), for messages.
fn type_name<T: Scalar>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// `x` rounded to `T`, the type the optimizer applies it in; an error if the rounding makes a
/// finite `f64` infinite (a learning rate of `1e39` in `f32`).
fn in_type<T: Scalar>(op: &str, what: &str, x: f64) -> Result<T> {
    let t = T::from_f64_lossy(x);
    if t.is_finite() {
        Ok(t)
    } else {
        Err(Error::invalid(format!(
            "{op}: {what} {x} is not finite in {}, the type it is applied in",
            type_name::<T>()
        )))
    }
}

/// A learning rate: finite and `>= 0`, in `f64` and in `T`.
pub(crate) fn check_learning_rate<T: Scalar>(op: &str, lr: f64) -> Result<f64> {
    if lr.is_finite() && lr >= 0.0 {
        in_type::<T>(op, "learning rate", lr)?;
        Ok(lr)
    } else {
        Err(Error::invalid(format!(
            "{op}: learning rate must be finite and >= 0, got {lr}"
        )))
    }
}

/// A decay rate in `[0, 1)` (representable in any `T`; `1 - x` may round to 0 in `f32`, which
/// only makes a moving average constant).
pub(crate) fn check_unit(op: &str, what: &str, x: f64) -> Result<f64> {
    if (0.0..1.0).contains(&x) {
        Ok(x)
    } else {
        Err(Error::invalid(format!(
            "{op}: {what} must be in [0, 1), got {x}"
        )))
    }
}

/// A finite value `> 0`, in `f64` and in `T` (where it must not round to 0: an epsilon of
/// `1e-50` is 0 in `f32`).
pub(crate) fn check_positive<T: Scalar>(op: &str, what: &str, x: f64) -> Result<f64> {
    if !(x.is_finite() && x > 0.0) {
        return Err(Error::invalid(format!(
            "{op}: {what} must be finite and > 0, got {x}"
        )));
    }
    if in_type::<T>(op, what, x)? > T::zero() {
        Ok(x)
    } else {
        Err(Error::invalid(format!(
            "{op}: {what} {x} rounds to 0 in {}, the type it is applied in",
            type_name::<T>()
        )))
    }
}

/// A finite value `>= 0`, in `f64` and in `T`.
pub(crate) fn check_non_negative<T: Scalar>(op: &str, what: &str, x: f64) -> Result<f64> {
    if x.is_finite() && x >= 0.0 {
        in_type::<T>(op, what, x)?;
        Ok(x)
    } else {
        Err(Error::invalid(format!(
            "{op}: {what} must be finite and >= 0, got {x}"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Gradient checks and slots
// ---------------------------------------------------------------------------------------------

/// Checks that every gradient names a parameter of `params`, has its shape and is finite;
/// `step` is the (1-based) step the update would be, for the message of a non-finite gradient.
pub(crate) fn check_grads<T: Scalar>(
    op: &'static str,
    params: &ParamStore<T>,
    grads: &Grads<T>,
    step: u64,
) -> Result<()> {
    for (id, g) in grads.iter() {
        if !params.contains(id) {
            return Err(Error::invalid(format!(
                "{op}: gradient for parameter #{} but the store holds only {} parameters",
                id.index(),
                params.len()
            )));
        }
        let want = params.value(id).shape();
        if g.shape() != want {
            return Err(Error::Shape {
                op,
                expected: format!("{want:?} (the shape of {:?})", params.name(id)),
                got: format!("{:?}", g.shape()),
            });
        }
    }
    if !grads.all_finite() {
        // `iter` is in creation order: the message names the first offending parameter.
        if let Some((id, _)) = grads.iter().find(|(_, g)| g.iter().any(|x| !x.is_finite())) {
            return Err(Error::NonFinite(format!(
                "gradient of {} at step {step}",
                params.name(id)
            )));
        }
    }
    Ok(())
}

/// Checks that a loss is finite, so training can stop at the step where it diverged.
///
/// `step` is the step the loss belongs to, as the caller counts (for example
/// `opt.step_count() + 1` before the update it would feed).
///
/// # Errors
/// [`Error::NonFinite`] naming the step and the value if `loss` is NaN or infinite.
///
/// ```
/// use recurrent::optim::check_finite_loss;
/// assert!(check_finite_loss(0.25f32, 3).is_ok());
/// let err = check_finite_loss(f64::NAN, 7).unwrap_err();
/// assert_eq!(err.to_string(), "non-finite value: loss NaN at step 7");
/// ```
pub fn check_finite_loss<T: Scalar>(loss: T, step: u64) -> Result<()> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite(format!("loss {loss} at step {step}")))
    }
}

/// Per-parameter state arrays, named as TensorFlow names its slots, each of its parameter's shape:
/// for every parameter updated so far, one array per name, in the order of `names`, kept by
/// parameter id (so they can be listed in a fixed order).
#[derive(Debug, Clone)]
pub(crate) struct Slots<T: Scalar> {
    names: &'static [&'static str],
    map: BTreeMap<ParamId, Vec<ArrayD<T>>>,
}

impl<T: Scalar> Slots<T> {
    /// No state yet; every parameter will get one array per name.
    pub(crate) fn new(names: &'static [&'static str]) -> Self {
        Slots {
            names,
            map: BTreeMap::new(),
        }
    }

    /// The slot names.
    pub(crate) fn names(&self) -> &'static [&'static str] {
        self.names
    }

    /// Checks that the state kept for each parameter in `grads` has that parameter's shape.
    pub(crate) fn check(
        &self,
        op: &'static str,
        params: &ParamStore<T>,
        grads: &Grads<T>,
    ) -> Result<()> {
        for (id, _) in grads.iter() {
            if let Some(state) = self.map.get(&id) {
                let want = params.value(id).shape();
                if state[0].shape() != want {
                    return Err(Error::invalid(format!(
                        "{op}: the optimizer's state for parameter {:?} has shape {:?} but the parameter has shape {want:?}; \
                         an optimizer serves one ParamStore",
                        params.name(id),
                        state[0].shape()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Creates the state of every parameter in `grads` that has none yet (slot `k` filled with
    /// `init[k]`), returning the ids created, so that a refused step can remove them again.
    pub(crate) fn ensure(
        &mut self,
        params: &ParamStore<T>,
        grads: &Grads<T>,
        init: &[f64],
    ) -> Vec<ParamId> {
        debug_assert_eq!(init.len(), self.names.len());
        let mut created = Vec::new();
        for (id, _) in grads.iter() {
            self.map.entry(id).or_insert_with(|| {
                created.push(id);
                let shape = params.value(id).shape();
                init.iter()
                    .map(|&x| ArrayD::from_elem(IxDyn(shape), T::from_f64_lossy(x)))
                    .collect()
            });
        }
        created
    }

    /// Removes the states of `ids` (made by [`Slots::ensure`] for a step that was refused).
    pub(crate) fn remove(&mut self, ids: &[ParamId]) {
        for id in ids {
            self.map.remove(id);
        }
    }

    /// The state of `id`, mutably (after [`Slots::ensure`]).
    pub(crate) fn arrays_mut(&mut self, id: ParamId) -> &mut [ArrayD<T>] {
        self.map.get_mut(&id).expect("ensured before the step")
    }

    /// Every slot as `(id, name, value)`, by id and then by name ([`OptimizerState`]'s order).
    pub(crate) fn export(&self) -> Vec<(ParamId, String, ArrayD<T>)> {
        let mut slots: Vec<_> = self
            .map
            .iter()
            .flat_map(|(&id, values)| {
                self.names
                    .iter()
                    .zip(values)
                    .map(move |(name, value)| (id, name.to_string(), value.clone()))
            })
            .collect();
        sort_slots(&mut slots);
        slots
    }

    /// The slots of `entries` whose names are this optimizer's, checked against `params`;
    /// entries with other names are left for another set of slots of the same optimizer
    /// ([`RmsProp`]'s `mg`), but every name must belong to `known`.
    pub(crate) fn import_some(
        &self,
        op: &str,
        params: &ParamStore<T>,
        entries: &[(ParamId, String, ArrayD<T>)],
        known: &[&str],
    ) -> Result<Slots<T>> {
        let mut parts: BTreeMap<ParamId, Vec<Option<ArrayD<T>>>> = BTreeMap::new();
        for (id, name, value) in entries {
            if !known.contains(&name.as_str()) {
                return Err(Error::Checkpoint(format!(
                    "{op}: the saved state has a slot {name:?}, which this optimizer does not keep \
                     (its slots: {known:?})"
                )));
            }
            let Some(k) = self.names.iter().position(|n| n == name) else {
                continue;
            };
            if !params.contains(*id) {
                return Err(Error::Checkpoint(format!(
                    "{op}: a saved slot {name:?} for parameter #{} of a store of {}",
                    id.index(),
                    params.len()
                )));
            }
            let want = params.value(*id).shape();
            if value.shape() != want {
                return Err(Error::Checkpoint(format!(
                    "{op}: the saved slot {name:?} of {:?} has shape {:?}, the parameter {want:?}",
                    params.name(*id),
                    value.shape()
                )));
            }
            let slots = parts
                .entry(*id)
                .or_insert_with(|| vec![None; self.names.len()]);
            slots[k] = Some(value.clone());
        }
        let mut map = BTreeMap::new();
        for (id, slots) in parts {
            let complete: Option<Vec<ArrayD<T>>> = slots.into_iter().collect();
            let Some(complete) = complete else {
                return Err(Error::Checkpoint(format!(
                    "{op}: the saved state has only some of the slots {:?} of {:?}",
                    self.names,
                    params.name(id)
                )));
            };
            map.insert(id, complete);
        }
        Ok(Slots {
            names: self.names,
            map,
        })
    }

    /// [`Slots::import_some`] where these are the optimizer's only slots.
    pub(crate) fn import(
        &self,
        op: &str,
        params: &ParamStore<T>,
        entries: &[(ParamId, String, ArrayD<T>)],
    ) -> Result<Slots<T>> {
        self.import_some(op, params, entries, self.names)
    }

    /// The slot `name` of `id`, if created.
    pub(crate) fn get(&self, id: ParamId, name: &str) -> Option<&ArrayD<T>> {
        let k = self.names.iter().position(|n| *n == name)?;
        self.map.get(&id).map(|s| &s[k])
    }
}

/// The error of an update that would make parameter `id` or one of its slots non-finite at
/// `step`. Every optimizer computes its step in two passes over the same element function: the
/// first only checks that every new value (parameter and slots) is finite, the second writes;
/// so an update that overflows (a learning rate too large for the gradients, an accumulator
/// reaching infinity) leaves parameters, slots and step count as they were, like a non-finite
/// gradient, at the cost of computing the step twice (and no extra memory).
pub(crate) fn overflow<T: Scalar>(params: &ParamStore<T>, id: ParamId, step: u64) -> Error {
    Error::NonFinite(format!("update of {} at step {step}", params.name(id)))
}
