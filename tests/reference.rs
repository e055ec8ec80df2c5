//! Whole training runs checked against another framework: the MNIST tutorial's model (LSTM with
//! forget bias 1.0 -> last output -> dense -> softmax cross-entropy, Adam) trained for a few steps
//! by PyTorch's autograd in `f64` (`tests/reference/lstm_classifier_torch.py`, which wrote
//! `lstm_classifier_trajectory.json`), then by `recurrent` from the same start on the same
//! batches. Every loss and every final parameter must agree to rounding, whichever way the
//! sequence is unrolled.

mod common;

use common::assert_close;
use ndarray::{ArrayD, IxDyn};
use recurrent::cell::BasicLstmCell;
use recurrent::optim::{Adam, Optimizer};
use recurrent::Layer;
use recurrent::RnnOptions;
use recurrent::{dynamic_rnn, last_relevant_output, static_rnn, Dense, ParamStore, Tape, Var};
use serde_json::Value;

/// PyTorch and we sum in different orders, so bit equality would be luck; the two agree to about
/// 1e-14 relative, and a forget bias off by 1e-9 already fails at this tolerance.
const TOL: f64 = 1e-12;

struct Reference {
    json: Value,
}

impl Reference {
    fn load() -> Reference {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/reference/lstm_classifier_trajectory.json"
        );
        let text = std::fs::read_to_string(path).expect("the reference trajectory is committed");
        Reference {
            json: serde_json::from_str(&text).expect("valid JSON"),
        }
    }

    fn size(&self, key: &str) -> usize {
        self.json[key].as_u64().expect(key) as usize
    }

    fn f64(&self, key: &str) -> f64 {
        self.json[key].as_f64().expect(key)
    }

    fn floats(value: &Value) -> Vec<f64> {
        value
            .as_array()
            .expect("an array")
            .iter()
            .map(|v| v.as_f64().expect("a number"))
            .collect()
    }

    fn array(value: &Value, shape: &[usize]) -> ArrayD<f64> {
        ArrayD::from_shape_vec(IxDyn(shape), Self::floats(value)).expect("shape of the data")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Unroll {
    Static,
    Dynamic,
}

/// Trains the reference model with `recurrent`, returning the losses and the final store.
fn train(reference: &Reference, unroll: Unroll) -> (Vec<f64>, ParamStore<f64>) {
    let (batch, time, input) = (
        reference.size("batch"),
        reference.size("time"),
        reference.size("input"),
    );
    let (units, classes) = (reference.size("units"), reference.size("classes"));
    let start = &reference.json["start"];

    let mut params = ParamStore::<f64>::new(0);
    let cell = BasicLstmCell::from_weights(
        &mut params,
        "rnn/basic_lstm_cell",
        Reference::array(&start["kernel"], &[input + units, 4 * units]),
        Reference::array(&start["bias"], &[4 * units]),
    )
    .unwrap()
    .with_forget_bias(reference.f64("forget_bias"))
    .unwrap();
    let kernel = params
        .create_from(
            "dense/kernel",
            Reference::array(&start["dense_kernel"], &[units, classes]),
        )
        .unwrap();
    let bias = params
        .create_from(
            "dense/bias",
            Reference::array(&start["dense_bias"], &[classes]),
        )
        .unwrap();
    let dense = Dense::from_params(&params, kernel, bias).unwrap();
    let mut adam = Adam::<f64>::new(reference.f64("learning_rate")).unwrap();

    let mut losses = Vec::new();
    for step in reference.json["batches"].as_array().unwrap() {
        // Bytes scaled to [0, 1] by the same division PyTorch did.
        let x = Reference::array(&step["x_bytes"], &[batch, time, input]).mapv(|b| b / 255.0);
        let labels: Vec<usize> = Reference::floats(&step["labels"])
            .into_iter()
            .map(|label| label as usize)
            .collect();
        let grads = {
            let tape = Tape::new(&params);
            let x = tape.constant(x);
            let last: Var = match unroll {
                Unroll::Static => {
                    let steps = tape.unstack(x, 1).unwrap();
                    let (outputs, _) =
                        static_rnn(&tape, &cell, &steps, RnnOptions::default()).unwrap();
                    *outputs.last().unwrap()
                }
                Unroll::Dynamic => {
                    let (outputs, _) = dynamic_rnn(&tape, &cell, x, RnnOptions::default()).unwrap();
                    last_relevant_output(&tape, outputs, None).unwrap()
                }
            };
            let logits = dense.apply(&tape, last).unwrap();
            let per_example = tape
                .sparse_softmax_cross_entropy_with_logits(&labels, logits)
                .unwrap();
            let loss = tape.mean(per_example);
            losses.push(tape.scalar(loss));
            tape.backward(loss).unwrap()
        };
        adam.apply(&mut params, &grads).unwrap();
    }
    (losses, params)
}

fn check_against_pytorch(unroll: Unroll) {
    let reference = Reference::load();
    let (losses, params) = train(&reference, unroll);

    let expected = Reference::floats(&reference.json["losses"]);
    assert_eq!(losses.len(), expected.len());
    for (step, (ours, theirs)) in losses.iter().zip(&expected).enumerate() {
        assert!(
            (ours - theirs).abs() <= TOL * theirs.abs(),
            "step {}: loss {ours} vs PyTorch {theirs}",
            step + 1
        );
    }
    // The losses alone could agree while a parameter nothing reads yet drifts: compare all.
    let final_values = &reference.json["final"];
    for (name, key) in [
        ("rnn/basic_lstm_cell/kernel", "kernel"),
        ("rnn/basic_lstm_cell/bias", "bias"),
        ("dense/kernel", "dense_kernel"),
        ("dense/bias", "dense_bias"),
    ] {
        let ours = params.value(params.id(name).unwrap());
        let theirs = Reference::array(&final_values[key], ours.shape());
        assert_close(ours, &theirs, TOL);
    }
}

#[test]
fn static_unrolled_training_matches_pytorch() {
    check_against_pytorch(Unroll::Static);
}

#[test]
fn dynamic_unrolled_training_matches_pytorch() {
    check_against_pytorch(Unroll::Dynamic);
}

#[test]
fn the_reference_moves_the_parameters() {
    // Guards the two tests above against a reference in which training changed nothing.
    let reference = Reference::load();
    let moved = |key: &str| {
        let start = Reference::floats(&reference.json["start"][key]);
        let end = Reference::floats(&reference.json["final"][key]);
        start
            .iter()
            .zip(&end)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    for key in ["kernel", "bias", "dense_kernel", "dense_bias"] {
        assert!(moved(key) > 1e-3, "{key} barely moved in the reference");
    }
}
