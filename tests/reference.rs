//! Whole training runs checked against another framework: the MNIST tutorial's model (LSTM with
//! forget bias 1.0 -> last output -> dense -> softmax cross-entropy, Adam) trained for a few steps
//! by PyTorch's autograd in `f64` (`tests/reference/lstm_classifier_torch.py`, which wrote
//! `lstm_classifier_trajectory.json`), then by `recurrent` from the same start on the same
//! batches. Every loss and every final parameter must agree to rounding, whichever way the
//! sequence is unrolled.
//!
//! And PyTorch's `nn.GRU` (two layers, bidirectional, packed sequences, an initial state) and
//! Keras's `GRU(reset_after=True)`, run by those frameworks
//! (`tests/reference/gru_reset_after_torch_keras.py` wrote `gru_reset_after_reference.json`):
//! their weights, loaded through `recurrent::convert` into `reset_after` `GruCell`s, give their
//! outputs, final states and gradients.

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

// ---------------------------------------------------------------------------------------------
// GRU with reset_after: PyTorch nn.GRU and Keras GRU(reset_after=True)
// ---------------------------------------------------------------------------------------------

use ndarray::{Array1, Array2, Axis, Ix1, Ix2};
use recurrent::cell::{Cell, GruCell};
use recurrent::convert::{self, KerasResetAfterGruWeights, TfGruWeights, TorchGruWeights};
use recurrent::{stack_bidirectional_dynamic_rnn, Scalar, StackedBidirectionalOptions};

fn gru_reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/gru_reset_after_reference.json"
    );
    let text = std::fs::read_to_string(path).expect("the GRU reference is committed");
    serde_json::from_str(&text).expect("valid JSON")
}

/// A `{"shape", "data"}` entry of the reference, in `T` (an `f32` value read as `f64` and
/// narrowed back is the same `f32`).
fn entry<T: Scalar>(value: &Value) -> ArrayD<T> {
    let shape: Vec<usize> = Reference::floats(&value["shape"])
        .into_iter()
        .map(|d| d as usize)
        .collect();
    Reference::array(&value["data"], &shape).mapv(T::from_f64_lossy)
}

fn to2<T: Scalar>(a: ArrayD<T>) -> Array2<T> {
    a.into_dimensionality::<Ix2>().unwrap()
}

fn to1<T: Scalar>(a: ArrayD<T>) -> Array1<T> {
    a.into_dimensionality::<Ix1>().unwrap()
}

/// The largest `|a - b| / (1 + |b|)`.
fn worst<T: Scalar>(a: &ArrayD<T>, b: &ArrayD<T>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let (x, y) = (x.to_f64_lossless(), y.to_f64_lossless());
            (x - y).abs() / (1.0 + y.abs())
        })
        .fold(0.0, f64::max)
}

/// Outputs, final states, and gradients by the other framework's names.
type GruRun<T, Name> = (ArrayD<T>, ArrayD<T>, Vec<(Name, ArrayD<T>)>);

/// The gradients of a reset_after cell's five parameters, in our layout.
fn gru_grads<T: Scalar>(
    params: &ParamStore<T>,
    grads: &recurrent::Grads<T>,
    cell: &GruCell,
) -> TfGruWeights<T> {
    let mut g = cell.param_ids().into_iter().map(|id| {
        grads
            .get(id)
            .expect("every parameter gets a gradient")
            .clone()
    });
    let mut next = || g.next().unwrap();
    let w = TfGruWeights {
        gate_kernel: to2(next()),
        gate_bias: to1(next()),
        candidate_kernel: to2(next()),
        candidate_bias: to1(next()),
        candidate_recurrent_bias: Some(to1(next())),
    };
    assert_eq!(
        TfGruWeights::from_cell(params, cell)
            .unwrap()
            .gate_kernel
            .dim(),
        w.gate_kernel.dim()
    );
    w
}

/// Runs PyTorch's two-layer bidirectional GRU, loaded from its state dict, as a stack of
/// reset_after cells; returns (outputs, h_n as PyTorch orders it, the gradients of
/// `sum(outputs * d_out) + sum(h_n * d_hn)` by PyTorch's parameter names and for `x`).
fn run_torch_gru_in_recurrent<T: Scalar>(json: &Value) -> GruRun<T, String> {
    let size = |k: &str| json[k].as_u64().unwrap() as usize;
    let (batch, units, layers) = (size("batch"), size("units"), size("layers"));
    let lengths: Vec<usize> = Reference::floats(&json["lengths"])
        .into_iter()
        .map(|l| l as usize)
        .collect();
    // The state dict by PyTorch's names, as `checkpoint::load_new` would read it from a
    // safetensors file written by `safetensors.torch.save_file(gru.state_dict(), ...)`.
    let mut dict = ParamStore::<T>::new(0);
    for (name, value) in json["torch"]["state_dict"].as_object().unwrap() {
        dict.create_from(name, entry(value)).unwrap();
    }
    let mut params = ParamStore::<T>::new(0);
    let (mut fw, mut bw) = (vec![], vec![]);
    for layer in 0..layers {
        for (reverse, cells) in [(false, &mut fw), (true, &mut bw)] {
            let w = TorchGruWeights::from_state_dict(&dict, "", layer, reverse).unwrap();
            let direction = if reverse { "bw" } else { "fw" };
            let scope = format!(
                "stack_bidirectional_rnn/cell_{layer}/bidirectional_rnn/{direction}/gru_cell"
            );
            let cell = convert::gru_cell_from_torch(&mut params, scope.as_str(), &w).unwrap();
            assert!(cell.reset_after());
            cells.push(cell);
        }
    }
    let tape = Tape::new(&params);
    let x = tape.watch(entry::<T>(&json["x"]));
    let h0 = entry::<T>(&json["h0"]);
    // PyTorch's h0 and h_n are [layers * 2, batch, units], layer-major, forward first.
    let state = |k: usize| tape.constant(h0.index_axis(Axis(0), k).to_owned());
    let options = StackedBidirectionalOptions::default()
        .initial_states_fw((0..layers).map(|l| state(2 * l)).collect())
        .initial_states_bw((0..layers).map(|l| state(2 * l + 1)).collect())
        .sequence_length(&lengths);
    let (outputs, states_fw, states_bw) =
        stack_bidirectional_dynamic_rnn(&tape, &fw, &bw, x, options).unwrap();
    let h_n: Vec<Var> = (0..layers)
        .flat_map(|l| [states_fw[l], states_bw[l]])
        .collect();
    let h_n = tape.stack(&h_n, 0).unwrap();
    assert_eq!(tape.shape(h_n), vec![2 * layers, batch, units]);
    let loss = tape
        .add(
            tape.sum(
                tape.mul(outputs, tape.constant(entry(&json["d_out"])))
                    .unwrap(),
            ),
            tape.sum(tape.mul(h_n, tape.constant(entry(&json["d_hn"]))).unwrap()),
        )
        .unwrap();
    let (out_value, h_n_value) = (tape.to_array(outputs), tape.to_array(h_n));
    let grads = tape.backward(loss).unwrap();
    // Our gradients in PyTorch's layout: the converter is linear in the kernels, and both of
    // PyTorch's r and z biases receive our gate bias's gradient (their sum is our bias).
    let mut named = vec![];
    for layer in 0..layers {
        for (reverse, cell) in [(false, &fw[layer]), (true, &bw[layer])] {
            let g = convert::tf_gru_to_torch(&gru_grads(&params, &grads, cell)).unwrap();
            let mut bias_hh = g.bias_hh.clone();
            bias_hh
                .slice_mut(ndarray::s![..2 * units])
                .assign(&g.bias_ih.slice(ndarray::s![..2 * units]));
            let names = TorchGruWeights::<T>::state_dict_names("", layer, reverse);
            for (name, value) in names.into_iter().zip([
                g.weight_ih.into_dyn(),
                g.weight_hh.into_dyn(),
                g.bias_ih.into_dyn(),
                bias_hh.into_dyn(),
            ]) {
                named.push((name, value));
            }
        }
    }
    named.push(("x".to_string(), grads.wrt(x).unwrap().clone()));
    (out_value, h_n_value, named)
}

#[test]
fn pytorch_gru_state_dict_gives_pytorch_outputs_and_gradients() {
    let json = gru_reference();
    // f64: PyTorch and we add in different orders; agreement is at rounding.
    let (out, h_n, grads) = run_torch_gru_in_recurrent::<f64>(&json);
    let theirs = &json["torch"]["f64"];
    assert_close(&out, &entry(&theirs["outputs"]), 1e-13);
    assert_close(&h_n, &entry(&theirs["h_n"]), 1e-13);
    // Outputs past an example's length are zero in both.
    assert_eq!(out[[3, 1, 0]], 0.0);
    assert_eq!(grads.len(), 17, "16 state-dict entries and x");
    for (name, g) in &grads {
        assert_close(g, &entry(&theirs["grads"][name]), 1e-12);
    }
    // f32: within a few float32 roundings of PyTorch's own float32 run.
    let (out, h_n, _) = run_torch_gru_in_recurrent::<f32>(&json);
    let theirs = &json["torch"]["f32"];
    let (e_out, e_hn) = (
        worst(&out, &entry(&theirs["outputs"])),
        worst(&h_n, &entry(&theirs["h_n"])),
    );
    assert!(
        e_out < 1e-6 && e_hn < 1e-6,
        "f32: outputs {e_out:e}, h_n {e_hn:e}"
    );
    // The test can fail: the same weights in a GRU without reset_after are far off.
    let w = TorchGruWeights::<f64>::from_state_dict(
        &{
            let mut dict = ParamStore::<f64>::new(0);
            for (name, value) in json["torch"]["state_dict"].as_object().unwrap() {
                dict.create_from(name, entry(value)).unwrap();
            }
            dict
        },
        "",
        0,
        false,
    )
    .unwrap();
    let mut before = convert::torch_gru_to_tf(&w).unwrap();
    before.candidate_recurrent_bias = None;
    let mut params = ParamStore::<f64>::new(0);
    let cell = before.to_cell(&mut params, "gru").unwrap();
    let tape = Tape::inference(&params);
    let x = tape.constant(entry::<f64>(&json["x"]));
    let (other, _) = dynamic_rnn(&tape, &cell, x, RnnOptions::default()).unwrap();
    let fw_ours = out
        .slice(ndarray::s![.., .., ..4])
        .mapv(f64::from)
        .into_dyn();
    assert!(worst(&tape.to_array(other), &fw_ours) > 1e-2);
}

/// Keras's `GRU(reset_after=True)` (one layer, initial state), loaded with
/// `keras_reset_after_gru_to_tf`; returns outputs, final state and the gradients of
/// `sum(outputs * d_outputs) + sum(state * d_state)` in Keras's layout, and for `x`.
fn run_keras_gru_in_recurrent<T: Scalar>(json: &Value) -> GruRun<T, &'static str> {
    let keras = &json["keras"];
    let w = &keras["weights"];
    let weights = KerasResetAfterGruWeights {
        kernel: to2(entry::<T>(&w["kernel"])),
        recurrent_kernel: to2(entry(&w["recurrent_kernel"])),
        bias: to2(entry(&w["bias"])),
    };
    let units = weights.recurrent_kernel.nrows();
    let mut params = ParamStore::<T>::new(0);
    let cell = convert::keras_reset_after_gru_to_tf(&weights)
        .unwrap()
        .to_cell(&mut params, "gru/gru_cell")
        .unwrap();
    let tape = Tape::new(&params);
    let x = tape.watch(entry::<T>(&json["x"]));
    let h0 = tape.constant(entry(&keras["h0"]));
    let (outputs, state) =
        dynamic_rnn(&tape, &cell, x, RnnOptions::default().initial_state(h0)).unwrap();
    let loss = tape
        .add(
            tape.sum(
                tape.mul(outputs, tape.constant(entry(&keras["d_outputs"])))
                    .unwrap(),
            ),
            tape.sum(
                tape.mul(state, tape.constant(entry(&keras["d_state"])))
                    .unwrap(),
            ),
        )
        .unwrap();
    let (out_value, state_value) = (tape.to_array(outputs), tape.to_array(state));
    let grads = tape.backward(loss).unwrap();
    let g = convert::tf_gru_to_keras_reset_after(&gru_grads(&params, &grads, &cell)).unwrap();
    // Both bias rows of z and r receive our gate bias's gradient.
    let mut bias = g.bias.clone();
    let input_row = bias.slice(ndarray::s![0, ..2 * units]).to_owned();
    bias.slice_mut(ndarray::s![1, ..2 * units])
        .assign(&input_row);
    let named = vec![
        ("kernel", g.kernel.into_dyn()),
        ("recurrent_kernel", g.recurrent_kernel.into_dyn()),
        ("bias", bias.into_dyn()),
        ("x", grads.wrt(x).unwrap().clone()),
    ];
    (out_value, state_value, named)
}

#[test]
fn keras_reset_after_gru_gives_keras_outputs_and_gradients() {
    let json = gru_reference();
    let (out, state, grads) = run_keras_gru_in_recurrent::<f64>(&json);
    let theirs = &json["keras"]["f64"];
    assert_close(&out, &entry(&theirs["outputs"]), 1e-13);
    assert_close(&state, &entry(&theirs["state"]), 1e-13);
    for (name, g) in &grads {
        assert_close(g, &entry(&theirs["grads"][*name]), 1e-12);
    }
    let (out, state, _) = run_keras_gru_in_recurrent::<f32>(&json);
    let theirs = &json["keras"]["f32"];
    let (e_out, e_state) = (
        worst(&out, &entry(&theirs["outputs"])),
        worst(&state, &entry(&theirs["state"])),
    );
    assert!(
        e_out < 1e-6 && e_state < 1e-6,
        "f32: outputs {e_out:e}, state {e_state:e}"
    );
}
