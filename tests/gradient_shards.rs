//! Gradient shards (`Trainer::gradient_shards`): a step's gradient as the sum of the shards'
//! gradients in shard order. It is the batch's mean-loss gradient (close to the one-tape
//! gradient, for every kind of target), and its bits depend on the shard count only: not on
//! whether the shards run in turn or on the pool, nor on the thread count. The same over MPI
//! ranks is `tests/distributed.rs` (feature `mpi`).

mod common;

use common::{assert_close, random};
use ndarray::{Array2, ArrayD};
use recurrent::data::{DataPosition, Minibatch, Resumable, Targets, TrainSource};
use recurrent::layers::{Context, Dense, Layer, Returns, Rnn};
use recurrent::optim::{Adam, GradientDescent};
use recurrent::parallel::set_num_threads;
use recurrent::train::{shard_ranges, FitOptions, Trainer};
use recurrent::{cell::BasicLstmCell, ParamId, ParamStore, Scalar, Tape, Var};

/// An LSTM then dense (over its last output or over every step).
struct Net {
    rnn: Rnn<BasicLstmCell>,
    dense: Dense,
}

impl<T: Scalar> Layer<T> for Net {
    fn forward(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        cx: &mut Context<'_, T>,
    ) -> recurrent::Result<Var> {
        let h = self.rnn.forward(tape, x, cx)?;
        self.dense.apply(tape, h)
    }
    fn param_ids(&self) -> Vec<ParamId> {
        [
            Layer::<T>::param_ids(&self.rnn),
            Layer::<T>::param_ids(&self.dense),
        ]
        .concat()
    }
    fn name(&self) -> &str {
        "net"
    }
}

fn net<T: Scalar>(returns: Returns, outputs: usize) -> (Net, ParamStore<T>) {
    let mut params = ParamStore::<T>::new(3);
    let rnn = Rnn::lstm(&mut params, 2, 6).unwrap().returns(returns);
    let dense = Dense::new(&mut params, "dense", 6, outputs).unwrap();
    (Net { rnn, dense }, params)
}

/// The same batch every step.
struct Same<T: Scalar>(Minibatch<T>);

impl<T: Scalar> TrainSource<T> for Same<T> {
    fn next_batch(&mut self) -> recurrent::Result<Minibatch<T>> {
        Ok(self.0.clone())
    }
}

impl<T: Scalar> Resumable for Same<T> {
    fn position(&self) -> DataPosition {
        DataPosition::default()
    }
    fn restore(&mut self, _: &DataPosition) -> recurrent::Result<()> {
        Ok(())
    }
}

const BATCH: usize = 11;
const TIME: usize = 5;

fn inputs(seed: u64) -> ArrayD<f64> {
    random(&[BATCH, TIME, 2], 1.0, seed)
}

/// Lengths 1..=TIME, some examples padded.
fn lengths() -> Vec<usize> {
    (0..BATCH).map(|b| 1 + (b * 7) % TIME).collect()
}

/// One gradient-descent step (learning rate 1) with `shards`: the parameters' change is minus
/// the step's gradient.
fn step_change(
    batch: &Minibatch<f64>,
    returns: Returns,
    outputs: usize,
    shards: usize,
) -> Vec<ArrayD<f64>> {
    let (model, params) = net::<f64>(returns, outputs);
    let before = params.clone();
    let mut trainer = Trainer::new(model, params, GradientDescent::new(1.0).unwrap())
        .gradient_shards(shards)
        .unwrap();
    trainer.train_step(&mut Same(batch.clone())).unwrap();
    before
        .iter()
        .zip(trainer.params().iter())
        .map(|((_, _, a), (_, _, b))| b - a)
        .collect()
}

/// The shards' summed gradient is the batch's mean-loss gradient, for `batch`'s kind of target.
fn assert_shards_give_the_batch_gradient(batch: Minibatch<f64>, returns: Returns, outputs: usize) {
    let whole = step_change(&batch, returns, outputs, 1);
    for shards in [2, 3, BATCH] {
        let sharded = step_change(&batch, returns, outputs, shards);
        for (s, w) in sharded.iter().zip(&whole) {
            assert_close(s, w, 1e-12);
        }
    }
    assert!(
        whole.iter().any(|d| d.iter().any(|&v| v.abs() > 1e-6)),
        "no gradient at all"
    );
}

#[test]
fn shards_give_the_mean_gradient_of_class_targets() {
    let batch = Minibatch {
        inputs: inputs(1),
        lengths: Some(lengths()),
        targets: Targets::Classes((0..BATCH).map(|b| b % 3).collect()),
    };
    assert_shards_give_the_batch_gradient(batch, Returns::LastOutput, 3);
}

#[test]
fn shards_give_the_mean_gradient_of_sequence_targets_over_valid_positions() {
    // Shards of unequal numbers of valid positions: the weighting is by positions, not examples.
    let targets = Array2::from_shape_fn((BATCH, TIME), |(b, t)| (b + t) % 4);
    let batch = Minibatch {
        inputs: inputs(2),
        lengths: Some(lengths()),
        targets: Targets::Sequence(targets),
    };
    assert_shards_give_the_batch_gradient(batch, Returns::Sequences, 4);
}

#[test]
fn shards_give_the_mean_gradient_of_value_targets() {
    let batch = Minibatch {
        inputs: inputs(3),
        lengths: None,
        targets: Targets::Values(random(&[BATCH, 2], 1.0, 4)),
    };
    assert_shards_give_the_batch_gradient(batch, Returns::LastOutput, 2);
    let masked = Minibatch {
        inputs: inputs(5),
        lengths: Some(lengths()),
        targets: Targets::Values(random(&[BATCH, TIME, 2], 1.0, 6)),
    };
    assert_shards_give_the_batch_gradient(masked, Returns::Sequences, 2);
}

/// 30 Adam steps with 3 shards of a batch of 200 (shards of 66, 67, 67 examples: more than
/// one kernel shard each).
fn train_f32(parallel: bool, threads: usize) -> ParamStore<f32> {
    set_num_threads(threads);
    let (model, params) = net::<f32>(Returns::LastOutput, 3);
    let mut trainer = Trainer::new(model, params, Adam::new(0.01).unwrap())
        .seed(9)
        .gradient_shards(3)
        .unwrap();
    if parallel {
        trainer = trainer.parallel_shards();
    }
    let inputs = random(&[200, TIME, 2], 1.0, 8).mapv(|v| v as f32);
    let batch = Minibatch {
        inputs,
        lengths: Some((0..200).map(|b| 1 + b % TIME).collect()),
        targets: Targets::Classes((0..200).map(|b| b % 3).collect()),
    };
    trainer
        .fit(&mut Same(batch), &FitOptions::until_step(30), None, &mut ())
        .unwrap();
    set_num_threads(0);
    trainer.params().clone()
}

#[test]
fn shards_in_turn_or_on_the_pool_give_the_same_bits_at_any_thread_count() {
    let reference = train_f32(false, 1);
    for (parallel, threads) in [(false, 2), (true, 1), (true, 2), (true, 3)] {
        let other = train_f32(parallel, threads);
        for ((_, name, a), (_, _, b)) in reference.iter().zip(other.iter()) {
            let differ = a
                .iter()
                .zip(b)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(differ, 0, "{name}: parallel {parallel}, {threads} threads");
        }
    }
}

#[test]
fn shard_ranges_cover_the_batch_in_order() {
    assert_eq!(
        shard_ranges(200, 3).unwrap(),
        vec![0..66, 66..133, 133..200]
    );
    assert_eq!(shard_ranges(128, 2).unwrap(), vec![0..64, 64..128]);
    assert_eq!(shard_ranges(5, 5).unwrap().len(), 5);
    for (batch, shards) in [(4, 5), (4, 0)] {
        let e = shard_ranges(batch, shards).unwrap_err().to_string();
        assert!(
            e.contains(&format!("a batch of {batch} examples into {shards}")),
            "{e}"
        );
    }
}

#[test]
fn bad_shard_settings_are_errors() {
    let (model, params) = net::<f64>(Returns::LastOutput, 3);
    let e = Trainer::new(model, params, GradientDescent::new(1.0).unwrap())
        .gradient_shards(0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gradient shards must be >= 1"), "{e}");

    // More shards than examples: the step fails and changes nothing.
    let (model, params) = net::<f64>(Returns::LastOutput, 3);
    let before = params.clone();
    let mut trainer = Trainer::new(model, params, GradientDescent::new(1.0).unwrap())
        .gradient_shards(BATCH + 1)
        .unwrap();
    let batch = Minibatch {
        inputs: inputs(1),
        lengths: None,
        targets: Targets::Classes(vec![0; BATCH]),
    };
    let e = trainer
        .train_step(&mut Same(batch))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot cut a batch of 11 examples into 12"),
        "{e}"
    );
    assert_eq!(trainer.step(), 0);
    for ((_, _, a), (_, _, b)) in before.iter().zip(trainer.params().iter()) {
        assert_close(a, b, 0.0);
    }

    // Carried state is per example: no shards with it.
    let (model, params) = net::<f64>(Returns::LastOutput, 3);
    let e = Trainer::new(model, params, GradientDescent::new(1.0).unwrap())
        .carry_state(true)
        .gradient_shards(2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("do not carry state"), "{e}");
}
