//! Optimizers against their published update rules, written out in plain f64 arithmetic; errors;
//! gradient clipping; learning-rate schedules; convergence and a small end-to-end training run.
//!
//! Every reference below is the update rule of the TensorFlow 1.x kernel (`training_ops.cc`)
//! or Python class named in its comment, applied element by element to a flat `Vec<f64>`.

mod common;

use common::assert_close;
use ndarray::{array, Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::init::Initializer;
use recurrent::optim::{
    clip_by_global_norm, clip_by_value, Adagrad, Adam, AdamW, CosineDecay, ExponentialDecay,
    GradientDescent, LearningRateSchedule, Momentum, Optimizer, PiecewiseConstant, RmsProp,
};
use recurrent::Layer;
use recurrent::{Dense, Error, Grads, ParamStore, Tape};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Initial value of the test parameter (shape [2, 2]).
const W0: [f64; 4] = [0.5, -1.0, 2.0, 0.1];

/// A hand-set gradient sequence: mixed signs, a zero, a large and a tiny element.
fn grad_seq() -> Vec<Vec<f64>> {
    vec![
        vec![0.3, -0.2, 1.5, 0.0],
        vec![-0.1, -0.4, 2.0, 0.05],
        vec![0.25, 0.1, -3.0, 1e-4],
        vec![0.0, 0.6, 0.5, -0.02],
    ]
}

fn arr(v: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(&[2, 2]), v.to_vec()).unwrap()
}

/// Runs `opt` over the gradient sequence on a [2, 2] parameter starting at `W0`; returns the
/// parameter after each step.
fn run(opt: &mut dyn Optimizer<f64>, gs: &[Vec<f64>]) -> Vec<ArrayD<f64>> {
    let mut params = ParamStore::<f64>::new(0);
    let w = params.create_from("w", arr(&W0)).unwrap();
    let mut out = Vec::new();
    for (t, g) in gs.iter().enumerate() {
        let mut grads = Grads::new();
        grads.insert(w, arr(g));
        opt.apply(&mut params, &grads).unwrap();
        assert_eq!(opt.step_count(), t as u64 + 1);
        out.push(params.value(w).clone());
    }
    out
}

/// Compares an optimizer's trajectory with a reference trajectory.
#[track_caller]
fn assert_trajectory(actual: &[ArrayD<f64>], expected: &[Vec<f64>]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_close(a, &arr(e), 1e-12);
    }
}

// ---------------------------------------------------------------------------------------------
// Update rules, step by step
// ---------------------------------------------------------------------------------------------

#[test]
fn gradient_descent_matches_rule() {
    // tf.train.GradientDescentOptimizer: var -= lr * g.
    let lr = 0.3;
    let mut w = W0.to_vec();
    let mut expected = Vec::new();
    for g in grad_seq() {
        for i in 0..4 {
            w[i] -= lr * g[i];
        }
        expected.push(w.clone());
    }
    let mut opt = GradientDescent::new(lr).unwrap();
    assert_trajectory(&run(&mut opt, &grad_seq()), &expected);
    assert!(Optimizer::<f64>::slot_names(&opt).is_empty());
}

/// tf.train.MomentumOptimizer (ApplyMomentum): accum = momentum * accum + g;
/// var -= lr * accum, or with Nesterov var -= lr * (g + momentum * accum) using the new accum.
fn momentum_reference(lr: f64, mu: f64, nesterov: bool) -> Vec<Vec<f64>> {
    let mut w = W0.to_vec();
    let mut accum = [0.0; 4];
    let mut expected = Vec::new();
    for g in grad_seq() {
        for i in 0..4 {
            accum[i] = mu * accum[i] + g[i];
            w[i] -= if nesterov {
                lr * (g[i] + mu * accum[i])
            } else {
                lr * accum[i]
            };
        }
        expected.push(w.clone());
    }
    expected
}

#[test]
fn momentum_matches_rule() {
    let mut opt = Momentum::new(0.1, 0.9).unwrap();
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &momentum_reference(0.1, 0.9, false),
    );
}

#[test]
fn nesterov_momentum_matches_rule() {
    let mut opt = Momentum::new(0.1, 0.9).unwrap().with_nesterov(true);
    assert!(opt.use_nesterov());
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &momentum_reference(0.1, 0.9, true),
    );
}

/// tf.train.AdamOptimizer (ApplyAdam), t = 1, 2, ...:
/// lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
/// var -= lr_t * m / (sqrt(v) + eps).
/// With `wd > 0`, tf.contrib.opt.AdamWOptimizer: additionally var -= wd * var (the value before
/// the step; not scaled by lr).
fn adam_reference(lr: f64, b1: f64, b2: f64, eps: f64, wd: f64) -> Vec<Vec<f64>> {
    let mut w = W0.to_vec();
    let (mut m, mut v) = ([0.0; 4], [0.0; 4]);
    let mut expected = Vec::new();
    for (step, g) in grad_seq().iter().enumerate() {
        let t = (step + 1) as i32;
        let lr_t = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        for i in 0..4 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            w[i] = w[i] - wd * w[i] - lr_t * m[i] / (v[i].sqrt() + eps);
        }
        expected.push(w.clone());
    }
    expected
}

#[test]
fn adam_matches_rule_with_defaults() {
    let mut opt = Adam::default();
    assert_eq!(
        (opt.beta1(), opt.beta2(), opt.epsilon()),
        (0.9, 0.999, 1e-8)
    );
    assert_eq!(Optimizer::<f64>::learning_rate(&opt), 0.001);
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &adam_reference(0.001, 0.9, 0.999, 1e-8, 0.0),
    );
}

#[test]
fn adam_matches_rule_with_custom_hyper_parameters() {
    // A large epsilon makes "epsilon hat" (outside the bias correction) visible.
    let mut opt = Adam::new(0.05)
        .unwrap()
        .with_beta1(0.5)
        .unwrap()
        .with_beta2(0.8)
        .unwrap()
        .with_epsilon(0.1)
        .unwrap();
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &adam_reference(0.05, 0.5, 0.8, 0.1, 0.0),
    );
}

#[test]
fn adam_exposes_its_slots() {
    let mut params = ParamStore::<f64>::new(0);
    let w = params.create_from("w", arr(&W0)).unwrap();
    let unused = params.create_from("unused", arr(&W0)).unwrap();
    let mut opt = Adam::new(0.1).unwrap();
    assert_eq!(opt.slot_names(), vec!["m", "v"]);
    assert!(opt.slot(w, "m").is_none());
    let mut grads = Grads::new();
    grads.insert(w, arr(&grad_seq()[0]));
    opt.apply(&mut params, &grads).unwrap();
    // After one step m = (1 - b1) g and v = (1 - b2) g^2.
    assert_close(
        opt.slot(w, "m").unwrap(),
        &arr(&grad_seq()[0]).mapv(|g| 0.1 * g),
        1e-12,
    );
    assert_close(
        opt.slot(w, "v").unwrap(),
        &arr(&grad_seq()[0]).mapv(|g| 0.001 * g * g),
        1e-12,
    );
    assert!(opt.slot(w, "nope").is_none());
    // A parameter without a gradient has no slots and is not touched.
    assert!(opt.slot(unused, "m").is_none());
    assert_eq!(params.value(unused), &arr(&W0));
}

#[test]
fn adamw_matches_rule() {
    let mut opt = AdamW::new(0.01, 0.05).unwrap().with_beta1(0.8).unwrap();
    assert_eq!(opt.weight_decay(), 0.05);
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &adam_reference(0.01, 0.8, 0.999, 1e-8, 0.05),
    );
}

#[test]
fn adamw_decay_is_not_scaled_by_learning_rate() {
    // With lr = 0 only the decay acts: var <- (1 - wd) var per step.
    let mut opt = AdamW::new(0.0, 0.1).unwrap();
    let out = run(&mut opt, &grad_seq()[..3]);
    assert_close(&out[2], &arr(&W0).mapv(|w| w * 0.9f64.powi(3)), 1e-12);
}

/// tf.train.RMSPropOptimizer (ApplyRMSProp / ApplyCenteredRMSProp): ms starts at ONES, mg and mom
/// at zeros. ms = decay ms + (1 - decay) g^2; centered: mg = decay mg + (1 - decay) g and the
/// denominator is ms - mg^2 + eps; mom = momentum mom + lr g / sqrt(denominator); var -= mom.
fn rmsprop_reference(
    lr: f64,
    decay: f64,
    momentum: f64,
    eps: f64,
    centered: bool,
) -> Vec<Vec<f64>> {
    let mut w = W0.to_vec();
    let (mut ms, mut mg, mut mom) = ([1.0; 4], [0.0; 4], [0.0; 4]);
    let mut expected = Vec::new();
    for g in grad_seq() {
        for i in 0..4 {
            ms[i] = decay * ms[i] + (1.0 - decay) * g[i] * g[i];
            let denom = if centered {
                mg[i] = decay * mg[i] + (1.0 - decay) * g[i];
                ms[i] - mg[i] * mg[i] + eps
            } else {
                ms[i] + eps
            };
            mom[i] = momentum * mom[i] + lr * g[i] / denom.sqrt();
            w[i] -= mom[i];
        }
        expected.push(w.clone());
    }
    expected
}

#[test]
fn rmsprop_matches_rule_with_defaults() {
    let mut opt = RmsProp::new(0.01).unwrap();
    assert_eq!(
        (opt.decay(), opt.momentum(), opt.epsilon(), opt.centered()),
        (0.9, 0.0, 1e-10, false)
    );
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &rmsprop_reference(0.01, 0.9, 0.0, 1e-10, false),
    );
}

#[test]
fn rmsprop_with_momentum_matches_rule() {
    let mut opt = RmsProp::new(0.01)
        .unwrap()
        .with_momentum(0.7)
        .unwrap()
        .with_decay(0.8)
        .unwrap()
        .with_epsilon(1e-3)
        .unwrap();
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &rmsprop_reference(0.01, 0.8, 0.7, 1e-3, false),
    );
}

#[test]
fn centered_rmsprop_with_momentum_matches_rule() {
    let mut opt = RmsProp::new(0.02)
        .unwrap()
        .with_momentum(0.9)
        .unwrap()
        .with_epsilon(1e-6)
        .unwrap()
        .with_centered(true);
    assert_eq!(opt.slot_names(), vec!["rms", "momentum", "mg"]);
    assert_trajectory(
        &run(&mut opt, &grad_seq()),
        &rmsprop_reference(0.02, 0.9, 0.9, 1e-6, true),
    );
}

#[test]
fn rmsprop_mean_square_starts_at_ones() {
    let mut params = ParamStore::<f64>::new(0);
    let w = params.create_from("w", arr(&W0)).unwrap();
    let mut grads = Grads::new();
    grads.insert(w, arr(&[0.0; 4]));
    let mut opt = RmsProp::new(0.1).unwrap();
    opt.apply(&mut params, &grads).unwrap();
    // ms = 0.9 * 1 + 0.1 * 0 after one zero gradient.
    assert_close(opt.slot(w, "rms").unwrap(), &arr(&[0.9; 4]), 1e-15);
    assert_close(opt.slot(w, "momentum").unwrap(), &arr(&[0.0; 4]), 0.0);
}

/// tf.train.AdagradOptimizer (ApplyAdagrad): accum starts at initial_accumulator_value;
/// accum += g^2; var -= lr * g / sqrt(accum).
fn adagrad_reference(lr: f64, init: f64) -> Vec<Vec<f64>> {
    let mut w = W0.to_vec();
    let mut accum = [init; 4];
    let mut expected = Vec::new();
    for g in grad_seq() {
        for i in 0..4 {
            accum[i] += g[i] * g[i];
            w[i] -= lr * g[i] / accum[i].sqrt();
        }
        expected.push(w.clone());
    }
    expected
}

#[test]
fn adagrad_matches_rule() {
    let mut opt = Adagrad::new(0.5).unwrap();
    assert_eq!(opt.initial_accumulator_value(), 0.1);
    assert_trajectory(&run(&mut opt, &grad_seq()), &adagrad_reference(0.5, 0.1));
    let mut opt = Adagrad::new(0.5)
        .unwrap()
        .with_initial_accumulator_value(2.0)
        .unwrap();
    assert_trajectory(&run(&mut opt, &grad_seq()), &adagrad_reference(0.5, 2.0));
}

#[test]
fn f32_adam_follows_the_f64_rule_closely() {
    let mut params = ParamStore::<f32>::new(0);
    let w = params
        .create_from("w", arr(&W0).mapv(|x| x as f32))
        .unwrap();
    let mut opt = Adam::new(0.01).unwrap();
    for g in grad_seq() {
        let mut grads = Grads::new();
        grads.insert(w, arr(&g).mapv(|x| x as f32));
        opt.apply(&mut params, &grads).unwrap();
    }
    let expected = adam_reference(0.01, 0.9, 0.999, 1e-8, 0.0).pop().unwrap();
    assert_close(params.value(w), &arr(&expected).mapv(|x| x as f32), 1e-5);
}

#[test]
fn set_learning_rate_takes_effect_and_keeps_state() {
    // Momentum with lr 0.1 for two steps, then 0.05: the accumulator carries over.
    let gs = grad_seq();
    let mut w = W0.to_vec();
    let mut accum = [0.0; 4];
    for (t, g) in gs.iter().enumerate() {
        let lr = if t < 2 { 0.1 } else { 0.05 };
        for i in 0..4 {
            accum[i] = 0.9 * accum[i] + g[i];
            w[i] -= lr * accum[i];
        }
    }
    let mut params = ParamStore::<f64>::new(0);
    let id = params.create_from("w", arr(&W0)).unwrap();
    let mut opt = Momentum::new(0.1, 0.9).unwrap();
    for (t, g) in gs.iter().enumerate() {
        if t == 2 {
            opt.set_learning_rate(0.05).unwrap();
        }
        let mut grads = Grads::new();
        grads.insert(id, arr(g));
        opt.apply(&mut params, &grads).unwrap();
    }
    assert_eq!(opt.learning_rate(), 0.05);
    assert_close(params.value(id), &arr(&w), 1e-12);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

fn all_optimizers() -> Vec<Box<dyn Optimizer<f64>>> {
    vec![
        Box::new(GradientDescent::new(0.1).unwrap()),
        Box::new(Momentum::new(0.1, 0.9).unwrap()),
        Box::new(Momentum::new(0.1, 0.9).unwrap().with_nesterov(true)),
        Box::new(Adam::new(0.1).unwrap()),
        Box::new(AdamW::new(0.1, 0.01).unwrap()),
        Box::new(RmsProp::new(0.1).unwrap()),
        Box::new(
            RmsProp::new(0.1)
                .unwrap()
                .with_momentum(0.5)
                .unwrap()
                .with_centered(true),
        ),
        Box::new(Adagrad::new(0.1).unwrap()),
    ]
}

#[test]
fn unknown_parameter_is_an_error_and_changes_nothing() {
    let mut big = ParamStore::<f64>::new(0);
    big.create("a", &[2], Initializer::Zeros).unwrap();
    let foreign = big.create("b", &[2], Initializer::Zeros).unwrap();
    for mut opt in all_optimizers() {
        let mut small = ParamStore::<f64>::new(0);
        let a = small.create_from("a", array![1.0, 2.0].into_dyn()).unwrap();
        let mut grads = Grads::new();
        grads.insert(a, array![1.0, 1.0].into_dyn());
        grads.insert(foreign, array![1.0, 1.0].into_dyn());
        let err = opt.apply(&mut small, &grads).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        // Checked first: the valid gradient was not applied either.
        assert_eq!(small.value(a), &array![1.0, 2.0].into_dyn());
        assert_eq!(opt.step_count(), 0);
        assert!(opt.slot_names().iter().all(|n| opt.slot(a, n).is_none()));
    }
}

#[test]
fn shape_mismatch_is_an_error_and_changes_nothing() {
    for mut opt in all_optimizers() {
        let mut params = ParamStore::<f64>::new(0);
        let a = params
            .create_from("a", array![1.0, 2.0].into_dyn())
            .unwrap();
        let b = params
            .create_from("b", array![[1.0, 2.0]].into_dyn())
            .unwrap();
        let mut grads = Grads::new();
        grads.insert(a, array![1.0, 1.0].into_dyn());
        grads.insert(b, array![1.0, 1.0].into_dyn()); // [2] for a [1, 2] parameter
        let err = opt.apply(&mut params, &grads).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        assert_eq!(params.value(a), &array![1.0, 2.0].into_dyn());
        assert_eq!(params.value(b), &array![[1.0, 2.0]].into_dyn());
        assert_eq!(opt.step_count(), 0);
    }
}

#[test]
fn optimizer_state_from_another_store_is_an_error() {
    // The same id in a second store with another shape: the Adam slots no longer fit.
    let mut first = ParamStore::<f64>::new(0);
    let a = first.create_from("a", array![1.0, 2.0].into_dyn()).unwrap();
    let mut opt = Adam::new(0.1).unwrap();
    let mut grads = Grads::new();
    grads.insert(a, array![1.0, 1.0].into_dyn());
    opt.apply(&mut first, &grads).unwrap();
    let mut second = ParamStore::<f64>::new(0);
    let a2 = second
        .create_from("a", array![1.0, 2.0, 3.0].into_dyn())
        .unwrap();
    let mut grads = Grads::new();
    grads.insert(a2, array![1.0, 1.0, 1.0].into_dyn());
    assert!(matches!(
        opt.apply(&mut second, &grads),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(opt.step_count(), 1);
}

#[test]
fn bad_hyper_parameters_are_errors() {
    for lr in [-0.1, f64::NAN, f64::INFINITY] {
        assert!(GradientDescent::new(lr).is_err());
        assert!(Momentum::<f32>::new(lr, 0.9).is_err());
        assert!(Adam::<f32>::new(lr).is_err());
        assert!(AdamW::<f32>::new(lr, 0.1).is_err());
        assert!(RmsProp::<f32>::new(lr).is_err());
        assert!(Adagrad::<f32>::new(lr).is_err());
    }
    assert!(GradientDescent::new(0.0).is_ok());
    assert!(Momentum::<f32>::new(0.1, -0.5).is_err());
    assert!(Momentum::<f32>::new(0.1, f64::NAN).is_err());
    for beta in [-0.1, 1.0, 1.5, f64::NAN] {
        assert!(Adam::<f32>::new(0.1).unwrap().with_beta1(beta).is_err());
        assert!(Adam::<f32>::new(0.1).unwrap().with_beta2(beta).is_err());
        assert!(AdamW::<f32>::new(0.1, 0.0)
            .unwrap()
            .with_beta1(beta)
            .is_err());
        assert!(AdamW::<f32>::new(0.1, 0.0)
            .unwrap()
            .with_beta2(beta)
            .is_err());
        assert!(RmsProp::<f32>::new(0.1).unwrap().with_decay(beta).is_err());
    }
    assert!(Adam::<f32>::new(0.1).unwrap().with_beta1(0.0).is_ok());
    for eps in [0.0, -1e-8, f64::NAN, f64::INFINITY] {
        assert!(Adam::<f32>::new(0.1).unwrap().with_epsilon(eps).is_err());
        assert!(AdamW::<f32>::new(0.1, 0.0)
            .unwrap()
            .with_epsilon(eps)
            .is_err());
        assert!(RmsProp::<f32>::new(0.1).unwrap().with_epsilon(eps).is_err());
        assert!(Adagrad::<f32>::new(0.1)
            .unwrap()
            .with_initial_accumulator_value(eps)
            .is_err());
    }
    assert!(AdamW::<f32>::new(0.1, -0.01).is_err());
    assert!(RmsProp::<f32>::new(0.1)
        .unwrap()
        .with_momentum(-0.1)
        .is_err());
}

#[test]
fn setters_reject_bad_rates_and_keep_the_old_value() {
    let mut opt = Adam::<f32>::new(0.1).unwrap();
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            opt.set_learning_rate(bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(opt.learning_rate(), 0.1);
    let mut adamw = AdamW::<f32>::new(0.1, 0.01).unwrap();
    assert!(matches!(
        adamw.set_weight_decay(-0.5),
        Err(Error::InvalidArgument(_))
    ));
    assert!(adamw.set_learning_rate(-0.5).is_err());
    assert_eq!((adamw.weight_decay(), adamw.learning_rate()), (0.01, 0.1));
    adamw.set_weight_decay(0.02).unwrap();
    assert_eq!(adamw.weight_decay(), 0.02);
}

// ---------------------------------------------------------------------------------------------
// Clipping
// ---------------------------------------------------------------------------------------------

fn two_grads() -> (ParamStore<f64>, Grads<f64>, [recurrent::ParamId; 2]) {
    let mut params = ParamStore::<f64>::new(0);
    let a = params.create("a", &[2, 2], Initializer::Zeros).unwrap();
    let b = params.create("b", &[3], Initializer::Zeros).unwrap();
    let mut grads = Grads::new();
    grads.insert(a, array![[1.0, -2.0], [0.0, 2.0]].into_dyn()); // squared norm 9
    grads.insert(b, array![4.0, 0.0, 0.0].into_dyn()); // squared norm 16
    (params, grads, [a, b])
}

#[test]
fn clip_by_global_norm_scales_every_gradient() {
    let (_, mut grads, [a, b]) = two_grads();
    let norm = clip_by_global_norm(&mut grads, 2.0).unwrap();
    assert_eq!(norm, 5.0);
    // tf.clip_by_global_norm: g * clip_norm / max(global_norm, clip_norm) = g * 2 / 5.
    assert_close(
        grads.get(a).unwrap(),
        &array![[0.4, -0.8], [0.0, 0.8]].into_dyn(),
        1e-15,
    );
    assert_close(
        grads.get(b).unwrap(),
        &array![1.6, 0.0, 0.0].into_dyn(),
        1e-15,
    );
    assert!((grads.global_norm() - 2.0).abs() < 1e-12);
}

#[test]
fn clip_by_global_norm_below_the_limit_is_a_no_op() {
    let (_, mut grads, [a, b]) = two_grads();
    let before = grads.clone();
    assert_eq!(clip_by_global_norm(&mut grads, 5.0).unwrap(), 5.0);
    assert_eq!(clip_by_global_norm(&mut grads, 100.0).unwrap(), 5.0);
    assert_eq!(grads.get(a), before.get(a));
    assert_eq!(grads.get(b), before.get(b));
}

#[test]
fn clip_by_global_norm_errors_and_non_finite_norms() {
    let (_, mut grads, [a, _]) = two_grads();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            clip_by_global_norm(&mut grads, bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    // As in TensorFlow, an infinite norm turns every gradient into NaN.
    grads.get_mut(a).unwrap()[[0, 0]] = f64::INFINITY;
    assert_eq!(clip_by_global_norm(&mut grads, 1.0).unwrap(), f64::INFINITY);
    assert!(grads.iter().all(|(_, g)| g.iter().all(|x| x.is_nan())));
    // No gradients at all: norm 0.
    assert_eq!(
        clip_by_global_norm(&mut Grads::<f32>::new(), 1.0).unwrap(),
        0.0
    );
}

#[test]
fn clip_by_value_clamps_elementwise() {
    let (_, mut grads, [a, b]) = two_grads();
    clip_by_value(&mut grads, -1.5, 1.0).unwrap();
    assert_eq!(
        grads.get(a).unwrap(),
        &array![[1.0, -1.5], [0.0, 1.0]].into_dyn()
    );
    assert_eq!(grads.get(b).unwrap(), &array![1.0, 0.0, 0.0].into_dyn());
    assert!(clip_by_value(&mut grads, 1.0, -1.0).is_err());
    assert!(clip_by_value(&mut grads, f64::NAN, 1.0).is_err());
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-15 + 1e-12 * b.abs()
}

#[test]
fn exponential_decay_continuous_and_staircase() {
    // tf.train.exponential_decay: initial * rate ^ (step / decay_steps), floored when staircase.
    let smooth = ExponentialDecay::new(0.1, 10, 0.5, false).unwrap();
    assert!(close(smooth.rate(0), 0.1));
    assert!(close(smooth.rate(5), 0.1 * 0.5f64.sqrt()));
    assert!(close(smooth.rate(10), 0.05));
    assert!(close(smooth.rate(25), 0.1 * 0.5f64.powf(2.5)));
    let stairs = ExponentialDecay::new(0.1, 10, 0.5, true).unwrap();
    assert!(close(stairs.rate(9), 0.1));
    assert!(close(stairs.rate(10), 0.05));
    assert!(close(stairs.rate(19), 0.05));
    assert!(close(stairs.rate(25), 0.025));
    assert!(ExponentialDecay::new(0.1, 0, 0.5, false).is_err());
    assert!(ExponentialDecay::new(-0.1, 10, 0.5, false).is_err());
    assert!(ExponentialDecay::new(0.1, 10, 0.0, false).is_err());
    assert!(ExponentialDecay::new(0.1, 10, f64::NAN, false).is_err());
}

#[test]
fn piecewise_constant_boundaries_belong_to_the_interval_they_end() {
    // tf.train.piecewise_constant: step <= b0 -> v0; b0 < step <= b1 -> v1; step > b1 -> v2.
    let s = PiecewiseConstant::new(vec![10, 20], vec![1.0, 0.5, 0.1]).unwrap();
    let cases = [
        (0, 1.0),
        (9, 1.0),
        (10, 1.0),
        (11, 0.5),
        (20, 0.5),
        (21, 0.1),
        (1000, 0.1),
    ];
    for (step, want) in cases {
        assert_eq!(s.rate(step), want, "step {step}");
    }
    assert_eq!(
        PiecewiseConstant::new(vec![], vec![0.3]).unwrap().rate(7),
        0.3
    );
    assert!(PiecewiseConstant::new(vec![10, 20], vec![1.0, 0.5]).is_err());
    assert!(PiecewiseConstant::new(vec![20, 10], vec![1.0, 0.5, 0.1]).is_err());
    assert!(PiecewiseConstant::new(vec![10, 10], vec![1.0, 0.5, 0.1]).is_err());
    assert!(PiecewiseConstant::new(vec![10], vec![1.0, -0.5]).is_err());
}

#[test]
fn cosine_decay_values() {
    // tf.train.cosine_decay: s = min(step, decay_steps);
    // initial * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha).
    let s = CosineDecay::new(0.2, 100, 0.1).unwrap();
    let reference = |step: f64| {
        0.2 * (0.9 * 0.5 * (1.0 + (std::f64::consts::PI * step.min(100.0) / 100.0).cos()) + 0.1)
    };
    for step in [0u64, 1, 25, 50, 99, 100, 150] {
        assert!(close(s.rate(step), reference(step as f64)), "step {step}");
    }
    assert!(close(s.rate(0), 0.2));
    assert!(close(s.rate(50), 0.2 * (0.45 + 0.1)));
    assert!(close(s.rate(100), 0.02));
    assert!(close(s.rate(1_000_000), 0.02));
    assert!(CosineDecay::new(0.2, 0, 0.0).is_err());
    assert!(CosineDecay::new(0.2, 10, 1.5).is_err());
    assert!(CosineDecay::new(0.2, 10, -0.1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Convergence
// ---------------------------------------------------------------------------------------------

#[test]
fn every_optimizer_minimises_a_quadratic() {
    // f(w) = 0.5 * sum(a_i (w_i - c_i)^2), gradient a * (w - c), minimum at c.
    let a = array![1.0, 4.0, 0.5].into_dyn();
    let c = array![1.0, -2.0, 3.0].into_dyn();
    let cases: Vec<(&str, Box<dyn Optimizer<f64>>, f64)> = vec![
        (
            "gradient descent",
            Box::new(GradientDescent::new(0.2).unwrap()),
            1e-6,
        ),
        (
            "momentum",
            Box::new(Momentum::new(0.05, 0.9).unwrap()),
            1e-6,
        ),
        (
            "nesterov",
            Box::new(Momentum::new(0.05, 0.9).unwrap().with_nesterov(true)),
            1e-6,
        ),
        ("adam", Box::new(Adam::new(0.05).unwrap()), 1e-6),
        ("adamw", Box::new(AdamW::new(0.05, 1e-5).unwrap()), 1e-3),
        ("rmsprop", Box::new(RmsProp::new(0.01).unwrap()), 1e-6),
        (
            "centered rmsprop",
            Box::new(
                RmsProp::new(0.01)
                    .unwrap()
                    .with_momentum(0.5)
                    .unwrap()
                    .with_centered(true),
            ),
            2e-2,
        ),
        ("adagrad", Box::new(Adagrad::new(0.5).unwrap()), 1e-6),
    ];
    for (name, mut opt, tol) in cases {
        let mut params = ParamStore::<f64>::new(0);
        let w = params.create("w", &[3], Initializer::Zeros).unwrap();
        for _ in 0..2000 {
            let mut grads = Grads::new();
            grads.insert(w, &a * &(params.value(w) - &c));
            opt.apply(&mut params, &grads).unwrap();
        }
        let err = (params.value(w) - &c)
            .mapv(f64::abs)
            .fold(0.0f64, |m, &x| m.max(x));
        assert!(err < tol, "{name}: distance to the minimum {err}");
    }
}

#[test]
fn adam_trains_a_softmax_classifier_to_full_training_accuracy() {
    // Three linearly separable classes in 2-d: points scattered around three centers.
    let mut rng = StdRng::seed_from_u64(7);
    let centers = [[2.0f32, 0.0], [-1.0, 1.7], [-1.0, -1.7]];
    let n = 60;
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        centers[labels[i]][j] + rng.random_range(-0.7f32..0.7)
    });
    let x = x.into_dyn();

    let mut params = ParamStore::<f32>::new(1);
    let dense = Dense::new(&mut params, "softmax", 2, 3).unwrap();
    let mut opt = Adam::new(0.05).unwrap();
    let accuracy = |params: &ParamStore<f32>| {
        let tape = Tape::inference(params);
        let logits = dense.apply(&tape, tape.constant(x.clone())).unwrap();
        let logits = tape
            .to_array(logits)
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
        recurrent::metrics::accuracy(&logits, &labels).unwrap()
    };
    let mut losses = Vec::new();
    let mut steps = 0;
    while accuracy(&params) < 1.0 && steps < 300 {
        let grads = {
            let tape = Tape::new(&params);
            let logits = dense.apply(&tape, tape.constant(x.clone())).unwrap();
            let loss = tape.mean(
                tape.sparse_softmax_cross_entropy_with_logits(&labels, logits)
                    .unwrap(),
            );
            losses.push(tape.scalar(loss));
            tape.backward(loss).unwrap()
        };
        opt.apply(&mut params, &grads).unwrap();
        steps += 1;
    }
    assert_eq!(
        accuracy(&params),
        1.0,
        "after {steps} steps, losses {losses:?}"
    );
    assert!(steps > 0, "the initial model should not already be perfect");
    assert!(losses.last() < losses.first());
    assert_eq!(opt.step_count(), steps);
    assert!(params.all_finite());
}
