//! The trainer and the complete training state: resuming is the same run bit for bit, early
//! stopping and the divergence guard, optimizer states round-trip, bad files change nothing.

mod common;

use common::random;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use recurrent::cell::{BasicLstmCell, DropoutWrapper};
use recurrent::data::{
    DataPosition, Minibatch, Resumable, RngPosition, ShuffleRng, Targets, TrainSource,
};
use recurrent::layers::{Carry, Dense, Dropout, Embedding, Layer, Returns, Rnn, Sequential};
use recurrent::optim::{
    Adagrad, Adam, AdamW, ExponentialDecay, GradientDescent, Momentum, Optimizer, RmsProp,
};
use recurrent::train::{
    load_training_state_from_bytes, save_training_state_to_bytes, EarlyStopping, FitOptions,
    Monitor, Stepper, Stop, Trainer,
};
use recurrent::{Error, ParamStore};

/// Random variable-length sequences labelled by the sign of their sum, drawn from a seeded,
/// resumable generator: a stand-in for a shuffled data set.
struct SignData {
    rng: ShuffleRng,
    batches: u64,
}

impl SignData {
    fn new(seed: u64) -> Self {
        SignData {
            rng: ShuffleRng::seed_from_u64(seed),
            batches: 0,
        }
    }
}

impl TrainSource<f64> for SignData {
    fn next_batch(&mut self) -> recurrent::Result<Minibatch<f64>> {
        let (batch, time) = (6, 5);
        let lengths: Vec<usize> = (0..batch)
            .map(|_| self.rng.random_range(1..=time))
            .collect();
        let mut inputs = ArrayD::zeros(IxDyn(&[batch, time, 2]));
        let mut labels = Vec::new();
        for (b, &len) in lengths.iter().enumerate() {
            let mut sum = 0.0;
            for t in 0..len {
                for f in 0..2 {
                    let v: f64 = self.rng.random_range(-1.0..1.0);
                    inputs[[b, t, f]] = v;
                    sum += v;
                }
            }
            labels.push(usize::from(sum > 0.0));
        }
        self.batches += 1;
        Ok(Minibatch {
            inputs,
            lengths: Some(lengths),
            targets: Targets::Classes(labels),
        })
    }
}

impl Resumable for SignData {
    fn position(&self) -> DataPosition {
        DataPosition {
            counters: vec![self.batches],
            order: Vec::new(),
            rng: RngPosition::of(&self.rng),
        }
    }
    fn restore(&mut self, position: &DataPosition) -> recurrent::Result<()> {
        let [batches] = position.counters[..] else {
            return Err(Error::invalid("SignData: one counter"));
        };
        self.batches = batches;
        self.rng = position.rng.to_rng();
        Ok(())
    }
}

/// A model with dropout inside and outside the recurrence, trained with a decaying learning
/// rate and clipping: everything a resume must restore.
fn trainer(seed: u64) -> Trainer<f64, Sequential<f64>> {
    let mut params = ParamStore::<f64>::new(seed);
    let rnn = Rnn::build(&mut params, |p, scope| {
        let lstm = BasicLstmCell::new(p, scope.sub("basic_lstm_cell"), 2, 6)?;
        DropoutWrapper::new(lstm).with_output_keep_prob(0.8)
    })
    .unwrap()
    .returns(Returns::LastOutput);
    let model = Sequential::new()
        .push(rnn)
        .push(Dropout::new(0.1).unwrap())
        .push(Dense::new(&mut params, "dense", 6, 2).unwrap());
    let schedule = ExponentialDecay::new(0.02, 5, 0.7, false).unwrap();
    Trainer::new(model, params, Adam::new(0.02).unwrap())
        .seed(seed)
        .schedule(schedule)
        .clip_by_global_norm(1.0)
        .unwrap()
}

fn bits(params: &ParamStore<f64>) -> Vec<u64> {
    params
        .iter()
        .flat_map(|(_, _, v)| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        .collect()
}

/// The test: N steps, save, resume in a new trainer and data source, N more: the
/// parameters are bitwise those of 2N uninterrupted steps.
#[test]
fn resuming_continues_the_run_bit_for_bit() {
    let n = 12;
    let mut whole = trainer(3);
    let mut data = SignData::new(5);
    whole
        .fit(&mut data, &FitOptions::until_step(2 * n), None, &mut ())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.safetensors");
    let mut first = trainer(3);
    let mut data = SignData::new(5);
    first
        .fit(
            &mut data,
            &FitOptions::until_step(n).checkpoint(&path),
            None,
            &mut (),
        )
        .unwrap();
    assert_ne!(bits(first.params()), bits(whole.params()));
    drop((first, data));

    // A fresh process would build the model again and a new data source; another seed shows
    // that the run's seed (the dropout masks') comes back from the file.
    let mut resumed = trainer(999);
    let mut data = SignData::new(999);
    resumed.resume(&path, &mut data).unwrap();
    assert_eq!(resumed.step(), n);
    resumed
        .fit(&mut data, &FitOptions::until_step(2 * n), None, &mut ())
        .unwrap();
    assert_eq!(resumed.step(), 2 * n);
    assert_eq!(bits(resumed.params()), bits(whole.params()));
    assert_eq!(resumed.optimizer().state(), whole.optimizer().state());
}

#[test]
fn periodic_checkpoints_are_written_and_resume_from_any_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("every.safetensors");
    let mut t = trainer(4);
    let mut data = SignData::new(1);
    let options = FitOptions::until_step(7)
        .checkpoint(&path)
        .checkpoint_every(3);
    struct Seen(Vec<u64>);
    impl recurrent::train::Observer for Seen {
        fn on_checkpoint(&mut self, step: u64, _: &std::path::Path) {
            self.0.push(step);
        }
    }
    let mut seen = Seen(Vec::new());
    t.fit(&mut data, &options, None, &mut seen).unwrap();
    assert_eq!(seen.0, [3, 6, 7]);
    let mut again = trainer(4);
    again.resume(&path, &mut SignData::new(0)).unwrap();
    assert_eq!(bits(again.params()), bits(t.params()));
}

#[test]
fn every_optimizer_state_round_trips_through_a_training_state_file() {
    type MakeOptimizer = Box<dyn Fn() -> Box<dyn Optimizer<f64>>>;
    let optimizers: Vec<MakeOptimizer> = vec![
        Box::new(|| Box::new(GradientDescent::new(0.1).unwrap())),
        Box::new(|| Box::new(Momentum::new(0.1, 0.9).unwrap())),
        Box::new(|| Box::new(Adam::new(0.01).unwrap())),
        Box::new(|| Box::new(AdamW::new(0.01, 0.001).unwrap())),
        Box::new(|| Box::new(RmsProp::new(0.01).unwrap().with_centered(true))),
        Box::new(|| Box::new(Adagrad::new(0.1).unwrap())),
    ];
    for make in &optimizers {
        let mut params = ParamStore::<f64>::new(0);
        let dense = Dense::new(&mut params, "dense", 3, 2).unwrap();
        let mut opt = make();
        for seed in 0..3 {
            let grads = {
                let tape = recurrent::Tape::new(&params);
                let y = dense
                    .apply(&tape, tape.constant(random(&[4, 3], 1.0, seed)))
                    .unwrap();
                tape.backward(tape.sum(tape.tanh(y))).unwrap()
            };
            opt.apply(&mut params, &grads).unwrap();
        }
        let state = recurrent::train::TrainingState {
            optimizer: opt.state(),
            data: None,
            carry: Carry::new(),
            seed: 7,
            extra: Default::default(),
        };
        let bytes = save_training_state_to_bytes(&params, &state).unwrap();
        let mut restored_params = ParamStore::<f64>::new(1);
        Dense::new(&mut restored_params, "dense", 3, 2).unwrap();
        let loaded = load_training_state_from_bytes(&mut restored_params, &bytes).unwrap();
        assert_eq!(loaded, state);
        assert_eq!(bits(&restored_params), bits(&params));
        let mut fresh = make();
        fresh
            .load_state(&restored_params, &loaded.optimizer)
            .unwrap();
        assert_eq!(fresh.state(), opt.state());
        // A state with slots this optimizer does not keep is refused, and changes nothing.
        let mut wrong = loaded.optimizer.clone();
        wrong.slots.push((
            dense.kernel(),
            "no_such_slot".into(),
            params.value(dense.kernel()).clone(),
        ));
        assert!(fresh.load_state(&restored_params, &wrong).is_err());
        assert_eq!(fresh.state(), opt.state());
    }
}

#[test]
fn a_training_state_that_does_not_fit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.safetensors");
    let mut t = trainer(1);
    let mut data = SignData::new(2);
    t.fit(
        &mut data,
        &FitOptions::until_step(3).checkpoint(&path),
        None,
        &mut (),
    )
    .unwrap();

    // Another model: a different width.
    let mut params = ParamStore::<f64>::new(1);
    let model = Sequential::new().push(Dense::new(&mut params, "dense", 6, 3).unwrap());
    let mut other = Trainer::new(model, params, Adam::new(0.1).unwrap());
    let before = bits(other.params());
    let err = other.resume(&path, &mut SignData::new(0)).unwrap_err();
    assert!(matches!(err, Error::Checkpoint(_)), "{err}");
    assert_eq!(bits(other.params()), before);
    assert_eq!(other.step(), 0);

    // A data source that refuses the saved position: the trainer stays as it was.
    struct Refuses;
    impl TrainSource<f64> for Refuses {
        fn next_batch(&mut self) -> recurrent::Result<Minibatch<f64>> {
            unreachable!()
        }
    }
    impl Resumable for Refuses {
        fn position(&self) -> DataPosition {
            DataPosition::default()
        }
        fn restore(&mut self, _: &DataPosition) -> recurrent::Result<()> {
            Err(Error::invalid("not this data"))
        }
    }
    let mut fresh = trainer(1);
    let before = bits(fresh.params());
    assert!(fresh.resume(&path, &mut Refuses).is_err());
    assert_eq!((bits(fresh.params()), fresh.step()), (before, 0));
    // Weights-only checkpoints are not training states.
    let weights = dir.path().join("weights.safetensors");
    recurrent::checkpoint::save(t.params(), &weights).unwrap();
    let err = fresh
        .resume(&weights, &mut SignData::new(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a training state"), "{err}");
}

#[test]
fn early_stopping_stops_after_patience_evaluations_without_improvement() {
    let mut t = trainer(2).early_stopping(EarlyStopping {
        monitor: Monitor::Loss,
        patience: 2,
        min_delta: 1e9, // nothing counts as an improvement after the first evaluation
    });
    let fixed: Vec<Minibatch<f64>> = {
        let mut d = SignData::new(77);
        (0..2).map(|_| d.next_batch().unwrap()).collect()
    };
    let mut validation = || fixed.clone();
    let stop = t
        .fit(
            &mut SignData::new(1),
            &FitOptions::until_step(100).eval_every(2),
            Some(&mut validation),
            &mut (),
        )
        .unwrap();
    assert_eq!(stop, Stop::EarlyStopped { best_step: 2 });
    assert_eq!(t.step(), 6);
    let history = t.history();
    assert_eq!(
        history.steps.iter().map(|r| r.step).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        history.validation.iter().map(|v| v.0).collect::<Vec<_>>(),
        [2, 4, 6]
    );
}

#[test]
fn a_diverging_loss_stops_training_with_an_error_naming_the_step() {
    // Adam at an absurd learning rate: the loss explodes within a few steps.
    let mut params = ParamStore::<f64>::new(0);
    let model = Sequential::new()
        .push(
            Rnn::lstm(&mut params, 2, 4)
                .unwrap()
                .returns(Returns::LastOutput),
        )
        .push(Dense::new(&mut params, "dense", 4, 2).unwrap());
    let mut t = Trainer::new(model, params, Adam::new(1e10).unwrap())
        .stop_on_divergence(10.0)
        .unwrap();
    let err = t
        .fit(
            &mut SignData::new(3),
            &FitOptions::until_step(50),
            None,
            &mut (),
        )
        .unwrap_err();
    match err {
        Error::Diverged(msg) => assert!(msg.contains("at step"), "{msg}"),
        other => panic!("expected a divergence error, got {other}"),
    }
    assert!(t.step() < 50);
    assert!(t.params().all_finite());
}

/// Carried state in training (truncated BPTT): a language model over one long stream, cut into
/// consecutive batches; the state crosses batch boundaries, is saved with the run, and resuming
/// gives the same parameters.
#[test]
fn a_language_model_carries_its_state_across_batches_and_through_a_resume() {
    struct Stream {
        text: Vec<usize>,
        next: usize,
    }
    impl TrainSource<f64> for Stream {
        fn next_batch(&mut self) -> recurrent::Result<Minibatch<f64>> {
            let (streams, steps) = (2, 4);
            let per = self.text.len() / streams;
            let at = |b: usize, t: usize| {
                self.text[(b * per + (self.next + t) % (per - 1)) % self.text.len()]
            };
            let inputs = ArrayD::from_shape_fn(IxDyn(&[streams, steps]), |i| at(i[0], i[1]) as f64);
            let targets = Array2::from_shape_fn((streams, steps), |(b, t)| at(b, t + 1));
            self.next += steps;
            Ok(Minibatch {
                inputs,
                lengths: None,
                targets: Targets::Sequence(targets),
            })
        }
    }
    impl Resumable for Stream {
        fn position(&self) -> DataPosition {
            DataPosition {
                counters: vec![self.next as u64],
                ..Default::default()
            }
        }
        fn restore(&mut self, p: &DataPosition) -> recurrent::Result<()> {
            self.next = p.counters[0] as usize;
            Ok(())
        }
    }
    let text: Vec<usize> = (0..64).map(|i| (i * 7 + i / 5) % 5).collect();
    let make = || {
        let mut params = ParamStore::<f64>::new(11);
        let model = Sequential::new()
            .push(Embedding::new(&mut params, 5, 3).unwrap())
            .push(Rnn::lstm(&mut params, 3, 6).unwrap())
            .push(Dense::new(&mut params, "softmax", 6, 5).unwrap());
        Trainer::new(model, params, Adam::new(0.05).unwrap()).carry_state(true)
    };
    let stream = || Stream {
        text: text.clone(),
        next: 0,
    };
    let mut whole = make();
    let first_loss = whole.evaluate([stream().next_batch()]).unwrap().loss;
    whole
        .fit(&mut stream(), &FitOptions::until_step(20), None, &mut ())
        .unwrap();
    assert!(whole.evaluate([stream().next_batch()]).unwrap().loss < first_loss);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lm.safetensors");
    let mut half = make();
    half.fit(
        &mut stream(),
        &FitOptions::until_step(10).checkpoint(&path),
        None,
        &mut (),
    )
    .unwrap();
    let mut resumed = make();
    let mut data = stream();
    resumed.resume(&path, &mut data).unwrap();
    resumed
        .fit(&mut data, &FitOptions::until_step(20), None, &mut ())
        .unwrap();
    assert_eq!(bits(resumed.params()), bits(whole.params()));

    // Without the carry the run differs: the state really crosses the boundaries.
    let mut params = ParamStore::<f64>::new(11);
    let model = Sequential::new()
        .push(Embedding::new(&mut params, 5, 3).unwrap())
        .push(Rnn::lstm(&mut params, 3, 6).unwrap())
        .push(Dense::new(&mut params, "softmax", 6, 5).unwrap());
    let mut stateless = Trainer::new(model, params, Adam::new(0.05).unwrap());
    stateless
        .fit(&mut stream(), &FitOptions::until_step(20), None, &mut ())
        .unwrap();
    assert_ne!(bits(stateless.params()), bits(whole.params()));
}

#[test]
fn the_stepper_equals_running_the_whole_sequence_and_predict_needs_no_tape() {
    let mut params = ParamStore::<f64>::new(3);
    let model = Sequential::new()
        .push(Rnn::gru(&mut params, 2, 5).unwrap())
        .push(Dense::new(&mut params, "dense", 5, 3).unwrap());
    let x = random(&[2, 6, 2], 1.0, 4);
    let whole = recurrent::train::predict(&params, &model, &x, None).unwrap();
    let mut stepper = Stepper::new(&params, &model);
    for t in 0..6 {
        let step = x.slice(ndarray::s![.., t..t + 1, ..]).to_owned().into_dyn();
        let y = stepper.step(&step).unwrap();
        let expected = whole
            .slice(ndarray::s![.., t..t + 1, ..])
            .to_owned()
            .into_dyn();
        common::assert_close(&y, &expected, 1e-13);
    }
    stepper.reset();
    let first = stepper
        .step(&x.slice(ndarray::s![.., 0..1, ..]).to_owned().into_dyn())
        .unwrap();
    common::assert_close(
        &first,
        &whole.slice(ndarray::s![.., 0..1, ..]).to_owned().into_dyn(),
        1e-13,
    );
}

#[test]
fn bad_batches_and_options_are_errors() {
    let mut t = trainer(0);
    struct Bad;
    impl TrainSource<f64> for Bad {
        fn next_batch(&mut self) -> recurrent::Result<Minibatch<f64>> {
            Ok(Minibatch {
                inputs: ArrayD::zeros(IxDyn(&[3, 4, 2])),
                lengths: Some(vec![4, 4]),
                targets: Targets::Classes(vec![0, 1, 0]),
            })
        }
    }
    impl Resumable for Bad {
        fn position(&self) -> DataPosition {
            DataPosition::default()
        }
        fn restore(&mut self, _: &DataPosition) -> recurrent::Result<()> {
            Ok(())
        }
    }
    assert!(matches!(t.train_step(&mut Bad), Err(Error::Shape { .. })));
    assert_eq!(t.step(), 0);
    assert!(t
        .fit(
            &mut Bad,
            &FitOptions::until_step(3).eval_every(0),
            None,
            &mut ()
        )
        .is_err());
    assert!(trainer(0).clip_by_global_norm(0.0).is_err());
    assert!(trainer(0).stop_on_divergence(1.0).is_err());
}

#[test]
fn evaluation_of_nothing_and_a_nan_metric_are_errors_not_silent() {
    let t = trainer(0);
    assert!(matches!(
        t.evaluate(std::iter::empty()),
        Err(Error::InvalidArgument(_))
    ));
    // Early stopping on accuracy with regression targets: accuracy is undefined, so fit says
    // so instead of treating NaN as an improvement forever.
    let mut params = ParamStore::<f64>::new(0);
    let model = Sequential::new().push(Dense::new(&mut params, "dense", 2, 1).unwrap());
    let batch = Minibatch {
        inputs: random(&[4, 2], 1.0, 1),
        lengths: None,
        targets: Targets::Values(random(&[4, 1], 1.0, 2)),
    };
    let mut data = recurrent::data::FixedBatches::new(vec![batch.clone()]).unwrap();
    let mut t =
        Trainer::new(model, params, Adam::new(0.01).unwrap()).early_stopping(EarlyStopping {
            monitor: Monitor::Accuracy,
            patience: 1,
            min_delta: 0.0,
        });
    let mut validation = || vec![batch.clone()];
    let err = t
        .fit(
            &mut data,
            &FitOptions::until_step(5).eval_every(1),
            Some(&mut validation),
            &mut (),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NonFinite(_)), "{err}");
}

/// Sequence regression with lengths: padded steps do not count in the loss.
#[test]
fn sequence_regression_ignores_the_padding() {
    let mut params = ParamStore::<f64>::new(5);
    let model = Sequential::new()
        .push(Rnn::gru(&mut params, 1, 3).unwrap())
        .push(Dense::new(&mut params, "dense", 3, 1).unwrap());
    let t = Trainer::new(model, params, Adam::new(0.01).unwrap());
    let inputs = random(&[2, 4, 1], 1.0, 3);
    let targets = random(&[2, 4, 1], 1.0, 4);
    let lengths = vec![4, 2];
    let batch = |targets: ArrayD<f64>| Minibatch {
        inputs: inputs.clone(),
        lengths: Some(lengths.clone()),
        targets: Targets::Values(targets),
    };
    let metrics = t.evaluate([Ok(batch(targets.clone()))]).unwrap();
    assert_eq!(metrics.count, 6);
    // Other values where example 1 is padding: the same loss.
    let mut padded = targets.clone();
    padded[[1, 2, 0]] = 100.0;
    padded[[1, 3, 0]] = -100.0;
    assert_eq!(t.evaluate([Ok(batch(padded))]).unwrap().loss, metrics.loss);
    // And it is the mean over the 6 valid steps.
    let y = recurrent::train::predict(t.params(), t.model(), &inputs, Some(&lengths)).unwrap();
    let mut sum = 0.0;
    for (b, &len) in lengths.iter().enumerate() {
        for s in 0..len {
            sum += (y[[b, s, 0]] - targets[[b, s, 0]]).powi(2);
        }
    }
    assert!((metrics.loss - sum / 6.0).abs() < 1e-12);
}

#[test]
fn a_bidirectional_layer_refuses_a_carried_state() {
    let mut params = ParamStore::<f64>::new(0);
    let model =
        Sequential::new().push(recurrent::layers::Bidirectional::lstm(&mut params, 2, 3).unwrap());
    let mut stepper = Stepper::new(&params, &model);
    let err = stepper
        .step(&random(&[1, 1, 2], 1.0, 0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Bidirectional") && err.contains("carried"),
        "{err}"
    );
}
