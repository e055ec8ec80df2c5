//! Weight layout converters: each converted layout, run with its own framework's equations
//! (written out below in plain `f64` code), gives our cell's outputs; round trips are exact.

mod common;

use common::{assert_close, random};
use ndarray::{s, Array1, Array2, Array3, Axis, Ix1, Ix2, Ix3};
use recurrent::cell::{LstmCell, LstmCellWeights, LstmPeepholes};
use recurrent::convert::{
    self, KerasGruWeights, KerasLstmWeights, KerasPeepholeLstmWeights, KerasResetAfterGruWeights,
    OnnxLstmWeights, TfGruWeights, TfLstmWeights, TorchGruWeights, TorchLstmWeights,
    TorchProjLstmWeights,
};
use recurrent::RnnOptions;
use recurrent::{dynamic_rnn, Cell, Error, GruCell, LstmState, ParamStore, Tape};

const BATCH: usize = 3;
const TIME: usize = 5;
const INPUT: usize = 4;
const UNITS: usize = 3;
/// Outputs of the converted models agree with ours to this tolerance (f64).
const TOL: f64 = 1e-12;

fn m2(shape: [usize; 2], scale: f64, seed: u64) -> Array2<f64> {
    random(&shape, scale, seed)
        .into_dimensionality::<Ix2>()
        .unwrap()
}

fn v1(n: usize, scale: f64, seed: u64) -> Array1<f64> {
    random(&[n], scale, seed)
        .into_dimensionality::<Ix1>()
        .unwrap()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn max_abs_diff<D: ndarray::Dimension>(
    a: &ndarray::Array<f64, D>,
    b: &ndarray::Array<f64, D>,
) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Our weights, with a non-trivial bias so the forget-bias folding is visible.
fn tf_weights(seed: u64, forget_bias: f64) -> TfLstmWeights<f64> {
    TfLstmWeights::new(
        m2([INPUT + UNITS, 4 * UNITS], 0.7, seed),
        v1(4 * UNITS, 0.5, seed + 1),
        forget_bias,
    )
    .unwrap()
}

/// Inputs `[batch, time, input]` and a non-zero initial state `(c0, h0)`.
struct Data {
    x: Array3<f64>,
    c0: Array2<f64>,
    h0: Array2<f64>,
}

fn data(seed: u64) -> Data {
    Data {
        x: random(&[BATCH, TIME, INPUT], 1.0, seed)
            .into_dimensionality::<Ix3>()
            .unwrap(),
        c0: m2([BATCH, UNITS], 0.5, seed + 1),
        h0: m2([BATCH, UNITS], 0.5, seed + 2),
    }
}

/// What every implementation returns: outputs `[batch, time, units]`, final `c` and `h`.
struct Run {
    outputs: Array3<f64>,
    c: Array2<f64>,
    h: Array2<f64>,
}

#[track_caller]
fn assert_runs_close(a: &Run, b: &Run) {
    assert_close(&a.outputs, &b.outputs, TOL);
    assert_close(&a.c, &b.c, TOL);
    assert_close(&a.h, &b.h, TOL);
}

/// Our `BasicLstmCell` over the sequence with `dynamic_rnn`.
fn run_ours(w: &TfLstmWeights<f64>, d: &Data) -> Run {
    let mut params = ParamStore::<f64>::new(0);
    let cell = w.to_cell(&mut params, "rnn/basic_lstm_cell").unwrap();
    assert_eq!(cell.forget_bias(), w.forget_bias);
    let tape = Tape::inference(&params);
    let x = tape.constant(d.x.clone().into_dyn());
    let init = LstmState {
        c: tape.constant(d.c0.clone().into_dyn()),
        h: tape.constant(d.h0.clone().into_dyn()),
    };
    let (out, state) =
        dynamic_rnn(&tape, &cell, x, RnnOptions::default().initial_state(init)).unwrap();
    Run {
        outputs: tape.to_array(out).into_dimensionality().unwrap(),
        c: tape.to_array(state.c).into_dimensionality().unwrap(),
        h: tape.to_array(state.h).into_dimensionality().unwrap(),
    }
}

/// Runs `step(x_t, c, h) -> (c', h')` over the sequence.
fn unroll(
    d: &Data,
    mut step: impl FnMut(&Array2<f64>, &Array2<f64>, &Array2<f64>) -> (Array2<f64>, Array2<f64>),
) -> Run {
    let (mut c, mut h) = (d.c0.clone(), d.h0.clone());
    let mut outputs = Array3::zeros((BATCH, TIME, UNITS));
    for t in 0..TIME {
        let x = d.x.index_axis(Axis(1), t).to_owned();
        let (c2, h2) = step(&x, &c, &h);
        outputs.index_axis_mut(Axis(1), t).assign(&h2);
        (c, h) = (c2, h2);
    }
    Run { outputs, c, h }
}

/// Block `k` (of width `UNITS`) of the columns of `a`.
fn block(a: &Array2<f64>, k: usize) -> Array2<f64> {
    a.slice(s![.., k * UNITS..(k + 1) * UNITS]).to_owned()
}

/// PyTorch `nn.LSTM`, from its documentation:
/// i = σ(W_ii x + b_ii + W_hi h + b_hi), f = σ(W_if x + b_if + W_hf h + b_hf),
/// g = tanh(W_ig x + b_ig + W_hg h + b_hg), o = σ(W_io x + b_io + W_ho h + b_ho),
/// c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c'); row blocks of the weights in the order i, f, g, o.
fn run_torch(w: &TorchLstmWeights<f64>, d: &Data) -> Run {
    unroll(d, |x, c, h| {
        let z = x.dot(&w.weight_ih.t()) + &w.bias_ih + h.dot(&w.weight_hh.t()) + &w.bias_hh;
        let i = block(&z, 0).mapv(sigmoid);
        let f = block(&z, 1).mapv(sigmoid);
        let g = block(&z, 2).mapv(f64::tanh);
        let o = block(&z, 3).mapv(sigmoid);
        let c2 = &f * c + &i * &g;
        let h2 = &o * &c2.mapv(f64::tanh);
        (c2, h2)
    })
}

/// Keras `LSTM` (activation tanh, recurrent_activation sigmoid):
/// z = x @ kernel + h @ recurrent_kernel + bias, split i, f, c, o;
/// c' = σ(f) ⊙ c + σ(i) ⊙ tanh(c̃), h' = σ(o) ⊙ tanh(c').
fn run_keras(w: &KerasLstmWeights<f64>, d: &Data) -> Run {
    unroll(d, |x, c, h| {
        let z = x.dot(&w.kernel) + h.dot(&w.recurrent_kernel) + &w.bias;
        let i = block(&z, 0).mapv(sigmoid);
        let f = block(&z, 1).mapv(sigmoid);
        let cc = block(&z, 2).mapv(f64::tanh);
        let o = block(&z, 3).mapv(sigmoid);
        let c2 = &f * c + &i * &cc;
        let h2 = &o * &c2.mapv(f64::tanh);
        (c2, h2)
    })
}

/// ONNX `LSTM` (operator spec, default activations f = Sigmoid, g = Tanh, h = Tanh, no peepholes,
/// no clip, input_forget = 0), one direction:
/// it = f(Xt Wiᵀ + Ht-1 Riᵀ + Wbi + Rbi), ft = f(Xt Wfᵀ + Ht-1 Rfᵀ + Wbf + Rbf),
/// ct = g(Xt Wcᵀ + Ht-1 Rcᵀ + Wbc + Rbc), Ct = ft ⊙ Ct-1 + it ⊙ ct,
/// ot = f(Xt Woᵀ + Ht-1 Roᵀ + Wbo + Rbo), Ht = ot ⊙ h(Ct); blocks in the order i, o, f, c.
fn run_onnx(w: &OnnxLstmWeights<f64>, d: &Data) -> Run {
    assert_eq!(w.w.shape()[0], 1);
    let wm = w.w.index_axis(Axis(0), 0).to_owned();
    let rm = w.r.index_axis(Axis(0), 0).to_owned();
    let wb = w.b.slice(s![0, ..4 * UNITS]).to_owned();
    let rb = w.b.slice(s![0, 4 * UNITS..]).to_owned();
    unroll(d, |x, c, h| {
        let z = x.dot(&wm.t()) + h.dot(&rm.t()) + &wb + &rb;
        let i = block(&z, 0).mapv(sigmoid);
        let o = block(&z, 1).mapv(sigmoid);
        let f = block(&z, 2).mapv(sigmoid);
        let cc = block(&z, 3).mapv(f64::tanh);
        let c2 = &f * c + &i * &cc;
        let h2 = &o * &c2.mapv(f64::tanh);
        (c2, h2)
    })
}

/// `ours → theirs → ours` must return the kernel bit-exactly and the bias within 1e-15.
#[track_caller]
fn assert_round_trip(original: &TfLstmWeights<f64>, back: &TfLstmWeights<f64>) {
    assert_eq!(back.kernel, original.kernel, "kernels must be bit-equal");
    assert_eq!(back.forget_bias, original.forget_bias);
    assert_close(&back.bias, &original.bias, 1e-15);
    // Only the forget block is computed; the others are copied.
    for k in [0, 1, 3] {
        let r = s![k * UNITS..(k + 1) * UNITS];
        assert_eq!(back.bias.slice(r), original.bias.slice(r), "block {k}");
    }
}

// ---------------------------------------------------------------------------------------------
// LSTM: outputs

#[test]
fn torch_layout_gives_our_outputs() {
    for (seed, fb) in [(1, 1.0), (2, 0.0), (3, -0.75)] {
        let ours = tf_weights(seed, fb);
        let d = data(seed + 10);
        let expected = run_ours(&ours, &d);
        let torch = convert::tf_to_torch(&ours).unwrap();
        assert_eq!(torch.weight_ih.dim(), (4 * UNITS, INPUT));
        assert_eq!(torch.weight_hh.dim(), (4 * UNITS, UNITS));
        assert!(torch.bias_hh.iter().all(|&b| b == 0.0), "documented split");
        assert_runs_close(&run_torch(&torch, &d), &expected);
        // The equivalence does not depend on bias_hh being zero.
        let mut split = torch.clone();
        split.bias_hh = v1(4 * UNITS, 0.3, seed + 20);
        split.bias_ih = &torch.bias_ih - &split.bias_hh;
        let theirs = run_torch(&split, &d);
        // Import with another forget bias: still PyTorch's function.
        for import_fb in [fb, 1.0, 0.25] {
            let back = convert::torch_to_tf(&split, import_fb).unwrap();
            assert_runs_close(&run_ours(&back, &d), &theirs);
        }
    }
}

#[test]
fn keras_layout_gives_our_outputs() {
    for (seed, fb) in [(4, 1.0), (5, 0.0), (6, 2.5)] {
        let ours = tf_weights(seed, fb);
        let d = data(seed + 10);
        let keras = convert::tf_to_keras(&ours).unwrap();
        assert_eq!(keras.kernel.dim(), (INPUT, 4 * UNITS));
        assert_eq!(keras.recurrent_kernel.dim(), (UNITS, 4 * UNITS));
        let theirs = run_keras(&keras, &d);
        assert_runs_close(&theirs, &run_ours(&ours, &d));
        for import_fb in [fb, 1.0, 0.0] {
            let back = convert::keras_to_tf(&keras, import_fb).unwrap();
            assert_runs_close(&run_ours(&back, &d), &theirs);
        }
    }
}

#[test]
fn onnx_layout_gives_our_outputs() {
    for (seed, fb) in [(7, 1.0), (8, 0.0), (9, 0.5)] {
        let ours = tf_weights(seed, fb);
        let d = data(seed + 10);
        let onnx = convert::tf_to_onnx(&ours).unwrap();
        assert_eq!(onnx.w.dim(), (1, 4 * UNITS, INPUT));
        assert_eq!(onnx.r.dim(), (1, 4 * UNITS, UNITS));
        assert_eq!(onnx.b.dim(), (1, 8 * UNITS));
        assert!(onnx.b.slice(s![0, 4 * UNITS..]).iter().all(|&b| b == 0.0));
        assert_runs_close(&run_onnx(&onnx, &d), &run_ours(&ours, &d));
        let mut split = onnx.clone();
        split
            .b
            .slice_mut(s![0, 4 * UNITS..])
            .assign(&v1(4 * UNITS, 0.3, seed + 20));
        let theirs = run_onnx(&split, &d);
        for import_fb in [fb, 1.0] {
            let back = convert::onnx_to_tf(&split, import_fb).unwrap();
            assert_runs_close(&run_ours(&back, &d), &theirs);
        }
    }
}

/// The gate orders, pinned with a kernel whose every column block is a distinct constant.
#[test]
fn gate_orders_are_pinned() {
    let mut kernel = Array2::zeros((INPUT + UNITS, 4 * UNITS));
    for g in 0..4 {
        kernel
            .slice_mut(s![.., g * UNITS..(g + 1) * UNITS])
            .fill(g as f64); // i = 0, j = 1, f = 2, o = 3
    }
    let bias = Array1::from_iter((0..4).flat_map(|g| [g as f64 * 10.0; UNITS]));
    let ours = TfLstmWeights::new(kernel, bias, 0.0).unwrap();
    let row_blocks = |a: &Array2<f64>| -> Vec<f64> { (0..4).map(|k| a[[k * UNITS, 0]]).collect() };
    let torch = convert::tf_to_torch(&ours).unwrap();
    assert_eq!(row_blocks(&torch.weight_ih), [0.0, 2.0, 1.0, 3.0]); // i, f, g, o
    assert_eq!(row_blocks(&torch.weight_hh), [0.0, 2.0, 1.0, 3.0]);
    let keras = convert::tf_to_keras(&ours).unwrap();
    assert_eq!(
        row_blocks(&keras.kernel.t().to_owned()),
        [0.0, 2.0, 1.0, 3.0]
    ); // i, f, c, o
    let onnx = convert::tf_to_onnx(&ours).unwrap();
    let w = onnx.w.index_axis(Axis(0), 0).to_owned();
    assert_eq!(row_blocks(&w), [0.0, 3.0, 2.0, 1.0]); // i, o, f, c
    let b: Vec<f64> = (0..8).map(|k| onnx.b[[0, k * UNITS]]).collect();
    assert_eq!(b, [0.0, 30.0, 20.0, 10.0, 0.0, 0.0, 0.0, 0.0]);
}

// ---------------------------------------------------------------------------------------------
// LSTM: round trips and conveniences

#[test]
fn round_trips_are_exact() {
    for (seed, fb) in [(11, 1.0), (12, 0.0), (13, -1.5), (14, 0.3)] {
        let ours = tf_weights(seed, fb);
        let torch = convert::tf_to_torch(&ours).unwrap();
        assert_round_trip(&ours, &convert::torch_to_tf(&torch, fb).unwrap());
        let keras = convert::tf_to_keras(&ours).unwrap();
        assert_round_trip(&ours, &convert::keras_to_tf(&keras, fb).unwrap());
        let onnx = convert::tf_to_onnx(&ours).unwrap();
        assert_round_trip(&ours, &convert::onnx_to_tf(&onnx, fb).unwrap());
        if fb == 0.0 {
            // Nothing to fold: bit-exact.
            assert_eq!(convert::torch_to_tf(&torch, 0.0).unwrap(), ours);
            assert_eq!(convert::keras_to_tf(&keras, 0.0).unwrap(), ours);
            assert_eq!(convert::onnx_to_tf(&onnx, 0.0).unwrap(), ours);
        }
        // Theirs → ours → theirs.
        let keras_back = convert::tf_to_keras(&convert::keras_to_tf(&keras, 1.0).unwrap()).unwrap();
        assert_eq!(keras_back.kernel, keras.kernel);
        assert_eq!(keras_back.recurrent_kernel, keras.recurrent_kernel);
        assert_close(&keras_back.bias, &keras.bias, 1e-15);
        let torch_back = convert::tf_to_torch(&convert::torch_to_tf(&torch, 1.0).unwrap()).unwrap();
        assert_eq!(torch_back.weight_ih, torch.weight_ih);
        assert_eq!(torch_back.weight_hh, torch.weight_hh);
        assert_close(&torch_back.bias_ih, &torch.bias_ih, 1e-15);
    }
}

#[test]
fn f32_round_trip_keeps_kernels_bit_exact() {
    let ours = tf_weights(15, 1.0);
    let ours = TfLstmWeights::new(
        ours.kernel.mapv(|x| x as f32),
        ours.bias.mapv(|x| x as f32),
        1.0,
    )
    .unwrap();
    let back = convert::torch_to_tf(&convert::tf_to_torch(&ours).unwrap(), 1.0).unwrap();
    assert_eq!(back.kernel, ours.kernel);
    for (a, b) in back.bias.iter().zip(&ours.bias) {
        assert!(
            (a - b).abs() <= 2.0 * f32::EPSILON * (1.0 + b.abs()),
            "{a} vs {b}"
        );
    }
}

#[test]
fn cells_from_other_frameworks_in_one_line() {
    let ours = tf_weights(16, 1.0);
    let d = data(17);
    let expected = run_ours(&ours, &d);
    let torch = convert::tf_to_torch(&ours).unwrap();
    let keras = convert::tf_to_keras(&ours).unwrap();
    let onnx = convert::tf_to_onnx(&ours).unwrap();
    let mut params = ParamStore::<f64>::new(0);
    let a = convert::lstm_cell_from_torch(&mut params, "torch", &torch, 1.0).unwrap();
    let b = convert::lstm_cell_from_keras(&mut params, "keras", &keras, 0.5).unwrap();
    let c = convert::lstm_cell_from_onnx(&mut params, "onnx", &onnx, 0.0).unwrap();
    assert_eq!(params.name(a.kernel()), "torch/kernel");
    assert_eq!(
        (a.forget_bias(), b.forget_bias(), c.forget_bias()),
        (1.0, 0.5, 0.0)
    );
    for cell in [&a, &b, &c] {
        let w = TfLstmWeights::from_cell(&params, cell).unwrap();
        assert_eq!(w.forget_bias, cell.forget_bias());
        assert_eq!(
            (w.input_size().unwrap(), w.num_units().unwrap()),
            (INPUT, UNITS)
        );
        assert_runs_close(&run_ours(&w, &d), &expected);
    }
    // A taken scope is an error from the store.
    assert!(convert::lstm_cell_from_torch(&mut params, "torch", &torch, 1.0).is_err());
}

#[test]
fn onnx_directions() {
    let fw = convert::tf_to_onnx(&tf_weights(18, 1.0)).unwrap();
    let bw = convert::tf_to_onnx(&tf_weights(19, 1.0)).unwrap();
    let cat = |a: &Array3<f64>, b: &Array3<f64>| {
        ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap()
    };
    let bi = OnnxLstmWeights {
        w: cat(&fw.w, &bw.w),
        r: cat(&fw.r, &bw.r),
        b: ndarray::concatenate(Axis(0), &[fw.b.view(), bw.b.view()]).unwrap(),
    };
    assert_eq!(bi.num_directions().unwrap(), 2);
    assert_eq!(bi.direction(0).unwrap(), fw);
    assert_eq!(bi.direction(1).unwrap(), bw);
    assert!(matches!(bi.direction(2), Err(Error::InvalidArgument(_))));
    // Two directions cannot become one cell.
    assert!(matches!(
        convert::onnx_to_tf(&bi, 1.0),
        Err(Error::Shape { .. })
    ));
    assert_round_trip(
        &tf_weights(19, 1.0),
        &convert::onnx_to_tf(&bi.direction(1).unwrap(), 1.0).unwrap(),
    );
}

// ---------------------------------------------------------------------------------------------
// LSTM: errors

fn is_shape_err<T>(r: recurrent::Result<T>) -> bool {
    matches!(r, Err(Error::Shape { .. }))
}

fn invalid<T>(r: recurrent::Result<T>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

#[test]
fn bad_shapes_are_errors() {
    let good = tf_weights(20, 1.0);
    // Ours.
    assert!(is_shape_err(TfLstmWeights::new(
        Array2::<f64>::zeros((7, 12)),
        Array1::zeros(10),
        1.0
    )));
    assert!(is_shape_err(TfLstmWeights::new(
        Array2::<f64>::zeros((7, 8)),
        Array1::zeros(12),
        1.0
    )));
    assert!(is_shape_err(TfLstmWeights::new(
        Array2::<f64>::zeros((3, 12)),
        Array1::zeros(12),
        1.0
    )));
    assert!(is_shape_err(TfLstmWeights::new(
        Array2::<f64>::zeros((0, 0)),
        Array1::zeros(0),
        1.0
    )));
    assert!(matches!(
        TfLstmWeights::new(good.kernel.clone(), good.bias.clone(), f64::NAN),
        Err(Error::InvalidArgument(_))
    ));
    let mut bad = good.clone();
    bad.bias = Array1::zeros(8);
    assert!(is_shape_err(convert::tf_to_torch(&bad)));
    assert!(is_shape_err(convert::tf_to_keras(&bad)));
    assert!(is_shape_err(convert::tf_to_onnx(&bad)));
    let mut bad = good.clone();
    bad.forget_bias = f64::INFINITY;
    assert!(matches!(
        convert::tf_to_torch(&bad),
        Err(Error::InvalidArgument(_))
    ));

    // PyTorch.
    let torch = convert::tf_to_torch(&good).unwrap();
    let mut t = torch.clone();
    t.weight_hh = Array2::zeros((12, 4));
    assert!(is_shape_err(convert::torch_to_tf(&t, 1.0)));
    let mut t = torch.clone();
    t.bias_hh = Array1::zeros(11);
    assert!(is_shape_err(convert::torch_to_tf(&t, 1.0)));
    let mut t = torch.clone();
    t.weight_ih = Array2::zeros((10, INPUT));
    assert!(is_shape_err(convert::torch_to_tf(&t, 1.0)));
    let mut t = torch.clone();
    t.weight_ih = Array2::zeros((12, 0));
    assert!(is_shape_err(convert::torch_to_tf(&t, 1.0)));
    assert!(matches!(
        convert::torch_to_tf(&torch, f64::NAN),
        Err(Error::InvalidArgument(_))
    ));

    // Keras.
    let keras = convert::tf_to_keras(&good).unwrap();
    let mut k = keras.clone();
    k.recurrent_kernel = Array2::zeros((4 * UNITS, UNITS)); // PyTorch orientation
    assert!(is_shape_err(convert::keras_to_tf(&k, 1.0)));
    let mut k = keras.clone();
    k.bias = Array1::zeros(8 * UNITS); // a reset_after-style double bias
    assert!(is_shape_err(convert::keras_to_tf(&k, 1.0)));

    // ONNX.
    let onnx = convert::tf_to_onnx(&good).unwrap();
    let mut o = onnx.clone();
    o.b = Array2::zeros((1, 4 * UNITS)); // only Wb
    assert!(is_shape_err(convert::onnx_to_tf(&o, 1.0)));
    let mut o = onnx.clone();
    o.r = Array3::zeros((2, 4 * UNITS, UNITS));
    assert!(is_shape_err(convert::onnx_to_tf(&o, 1.0)));
    let mut o = onnx.clone();
    o.w = Array3::zeros((3, 4 * UNITS, INPUT));
    assert!(is_shape_err(convert::onnx_to_tf(&o, 1.0)));
    assert!(is_shape_err(o.num_directions()));
}

// ---------------------------------------------------------------------------------------------
// LstmCell: PyTorch nn.LSTM(proj_size=...) and Keras's peephole LSTM

const PROJ: usize = 2;

/// Our LstmCell over `x` from `(c0, h0)` (`h0` of the cell's output width).
fn run_lstm_cell(
    w: &LstmCellWeights<f64>,
    forget_bias: f64,
    x: &Array3<f64>,
    c0: &Array2<f64>,
    h0: &Array2<f64>,
) -> Run {
    let mut params = ParamStore::<f64>::new(0);
    let cell = LstmCell::from_weights(&mut params, "rnn/lstm_cell", w.clone())
        .unwrap()
        .with_forget_bias(forget_bias)
        .unwrap();
    let tape = Tape::inference(&params);
    let init = LstmState {
        c: tape.constant(c0.clone().into_dyn()),
        h: tape.constant(h0.clone().into_dyn()),
    };
    let (out, state) = dynamic_rnn(
        &tape,
        &cell,
        tape.constant(x.clone().into_dyn()),
        RnnOptions::default().initial_state(init),
    )
    .unwrap();
    Run {
        outputs: tape.to_array(out).into_dimensionality().unwrap(),
        c: tape.to_array(state.c).into_dimensionality().unwrap(),
        h: tape.to_array(state.h).into_dimensionality().unwrap(),
    }
}

/// PyTorch `nn.LSTM(proj_size=P)`, from its documentation: the gates as without a projection,
/// from the projected h; `h' = W_hr (o ⊙ tanh(c'))`.
fn run_torch_proj(
    w: &TorchProjLstmWeights<f64>,
    x: &Array3<f64>,
    c0: &Array2<f64>,
    h0: &Array2<f64>,
) -> Run {
    let (mut c, mut h) = (c0.clone(), h0.clone());
    let mut outputs = Array3::zeros((BATCH, TIME, PROJ));
    for t in 0..TIME {
        let xt = x.index_axis(Axis(1), t).to_owned();
        let z = xt.dot(&w.weight_ih.t()) + &w.bias_ih + h.dot(&w.weight_hh.t()) + &w.bias_hh;
        let i = block(&z, 0).mapv(sigmoid);
        let f = block(&z, 1).mapv(sigmoid);
        let g = block(&z, 2).mapv(f64::tanh);
        let o = block(&z, 3).mapv(sigmoid);
        c = &f * &c + &i * &g;
        h = (&o * &c.mapv(f64::tanh)).dot(&w.weight_hr.t());
        outputs.index_axis_mut(Axis(1), t).assign(&h);
    }
    Run { outputs, c, h }
}

/// Keras's peephole LSTM cell (`_compute_carry_and_output` of `PeepholeLSTMCell`).
fn run_keras_peephole(w: &KerasPeepholeLstmWeights<f64>, d: &Data) -> Run {
    unroll(d, |x, c, h| {
        let z = x.dot(&w.kernel) + h.dot(&w.recurrent_kernel) + &w.bias;
        let i = (block(&z, 0) + &(c * &w.input_gate_peephole_weights)).mapv(sigmoid);
        let f = (block(&z, 1) + &(c * &w.forget_gate_peephole_weights)).mapv(sigmoid);
        let c2 = &f * c + &i * &block(&z, 2).mapv(f64::tanh);
        let o = (block(&z, 3) + &(&c2 * &w.output_gate_peephole_weights)).mapv(sigmoid);
        let h2 = &o * &c2.mapv(f64::tanh);
        (c2, h2)
    })
}

fn projected_weights(seed: u64) -> LstmCellWeights<f64> {
    LstmCellWeights {
        kernel: m2([INPUT + PROJ, 4 * UNITS], 0.7, seed),
        bias: v1(4 * UNITS, 0.5, seed + 1),
        peepholes: None,
        projection: Some(m2([UNITS, PROJ], 0.8, seed + 2)),
    }
}

fn peephole_weights(seed: u64) -> LstmCellWeights<f64> {
    LstmCellWeights {
        kernel: m2([INPUT + UNITS, 4 * UNITS], 0.7, seed),
        bias: v1(4 * UNITS, 0.5, seed + 1),
        peepholes: Some(LstmPeepholes {
            w_f_diag: v1(UNITS, 0.9, seed + 2),
            w_i_diag: v1(UNITS, 0.9, seed + 3),
            w_o_diag: v1(UNITS, 0.9, seed + 4),
        }),
        projection: None,
    }
}

#[test]
fn torch_projected_lstm_gives_our_outputs_and_round_trips() {
    let d = data(600);
    let h0 = m2([BATCH, PROJ], 0.5, 601);
    for forget_bias in [1.0, 0.0, -0.5] {
        let ours = projected_weights(610);
        let torch = convert::lstm_cell_to_torch(&ours, forget_bias).unwrap();
        assert_eq!(torch.weight_hr.shape(), [PROJ, UNITS]);
        assert_eq!(torch.weight_hh.shape(), [4 * UNITS, PROJ]);
        let a = run_lstm_cell(&ours, forget_bias, &d.x, &d.c0, &h0);
        assert_runs_close(&run_torch_proj(&torch, &d.x, &d.c0, &h0), &a);
        // And back: kernels and projection bit-exact, the bias within rounding.
        let back = convert::torch_to_lstm_cell(&torch, forget_bias).unwrap();
        assert_eq!(back.kernel, ours.kernel);
        assert_eq!(back.projection, ours.projection);
        assert_close(&back.bias, &ours.bias, 1e-15);
        // A PyTorch model with both biases in use loads into a cell that gives its outputs.
        let mut theirs = torch.clone();
        theirs.bias_hh = v1(4 * UNITS, 0.3, 620);
        let mut params = ParamStore::<f64>::new(0);
        let cell =
            convert::lstm_cell_from_torch_proj(&mut params, "rnn/lstm_cell", &theirs, forget_bias)
                .unwrap();
        assert_eq!(
            (cell.num_proj(), cell.forget_bias()),
            (Some(PROJ), forget_bias)
        );
        let loaded = cell.weights(&params).unwrap();
        assert_runs_close(
            &run_lstm_cell(&loaded, forget_bias, &d.x, &d.c0, &h0),
            &run_torch_proj(&theirs, &d.x, &d.c0, &h0),
        );
    }
    // Peepholes, a missing projection and bad shapes are refused.
    assert!(matches!(
        convert::lstm_cell_to_torch(&peephole_weights(1), 1.0),
        Err(Error::InvalidArgument(_))
    ));
    let torch = convert::lstm_cell_to_torch(&projected_weights(2), 1.0).unwrap();
    let mut bad = torch.clone();
    bad.weight_hh = Array2::zeros((4 * UNITS, UNITS));
    assert!(is_shape_err(convert::torch_to_lstm_cell(&bad, 1.0)));
    let mut bad = torch;
    bad.weight_hr = Array2::zeros((PROJ, UNITS + 1));
    assert!(is_shape_err(convert::torch_to_lstm_cell(&bad, 1.0)));
}

#[test]
fn keras_peephole_lstm_gives_our_outputs_and_round_trips() {
    let d = data(630);
    for forget_bias in [1.0, 0.0] {
        let ours = peephole_weights(640);
        let keras = convert::lstm_cell_to_keras_peephole(&ours, forget_bias).unwrap();
        assert_runs_close(
            &run_keras_peephole(&keras, &d),
            &run_lstm_cell(&ours, forget_bias, &d.x, &d.c0, &d.h0),
        );
        let back = convert::keras_peephole_to_lstm_cell(&keras, forget_bias).unwrap();
        assert_eq!(back.kernel, ours.kernel);
        assert_eq!(back.peepholes, ours.peepholes);
        assert_close(&back.bias, &ours.bias, 1e-15);
    }
    assert!(matches!(
        convert::lstm_cell_to_keras_peephole(&projected_weights(3), 1.0),
        Err(Error::InvalidArgument(_))
    ));
    let mut bad = convert::lstm_cell_to_keras_peephole(&peephole_weights(4), 1.0).unwrap();
    bad.output_gate_peephole_weights = v1(UNITS + 1, 1.0, 5);
    assert!(is_shape_err(convert::keras_peephole_to_lstm_cell(
        &bad, 1.0
    )));
}

// ---------------------------------------------------------------------------------------------
// GRU

fn gru_weights(seed: u64) -> TfGruWeights<f64> {
    TfGruWeights {
        gate_kernel: m2([INPUT + UNITS, 2 * UNITS], 0.7, seed),
        gate_bias: v1(2 * UNITS, 0.5, seed + 1) + 1.0,
        candidate_kernel: m2([INPUT + UNITS, UNITS], 0.7, seed + 2),
        candidate_bias: v1(UNITS, 0.5, seed + 3),
        candidate_recurrent_bias: None,
    }
}

/// Weights of a `reset_after` GRU.
fn gru_reset_after_weights(seed: u64) -> TfGruWeights<f64> {
    TfGruWeights {
        candidate_recurrent_bias: Some(v1(UNITS, 0.5, seed + 4)),
        ..gru_weights(seed)
    }
}

/// Our `GruCell` over the sequence; returns outputs and the final state (as both `c` and `h`).
fn run_our_gru(w: &TfGruWeights<f64>, d: &Data) -> Run {
    let mut params = ParamStore::<f64>::new(0);
    let cell = w.to_cell(&mut params, "rnn/gru_cell").unwrap();
    assert_eq!(&TfGruWeights::from_cell(&params, &cell).unwrap(), w);
    // Writing the weights into a freshly initialised cell gives the same parameters.
    let mut fresh = ParamStore::<f64>::new(1);
    let other = recurrent::GruCellConfig::new(UNITS)
        .with_reset_after(w.reset_after())
        .init(&mut fresh, "rnn/gru_cell", INPUT)
        .unwrap();
    assert_eq!(cell.reset_after(), w.reset_after());
    w.assign_to(&mut fresh, &other).unwrap();
    assert_eq!(&TfGruWeights::from_cell(&fresh, &other).unwrap(), w);
    let tape = Tape::inference(&params);
    let x = tape.constant(d.x.clone().into_dyn());
    let h0 = tape.constant(d.h0.clone().into_dyn());
    let (out, h) = dynamic_rnn(&tape, &cell, x, RnnOptions::default().initial_state(h0)).unwrap();
    let h: Array2<f64> = tape.to_array(h).into_dimensionality().unwrap();
    Run {
        outputs: tape.to_array(out).into_dimensionality().unwrap(),
        c: h.clone(),
        h,
    }
}

/// Runs `step(x_t, h) -> h'` over the sequence.
fn unroll_gru(d: &Data, mut step: impl FnMut(&Array2<f64>, &Array2<f64>) -> Array2<f64>) -> Run {
    let r = unroll(d, |x, _, h| {
        let h2 = step(x, h);
        (h2.clone(), h2)
    });
    Run {
        outputs: r.outputs,
        c: r.h.clone(),
        h: r.h,
    }
}

/// Keras `GRU(reset_after=False)` (activation tanh, recurrent_activation sigmoid), from
/// `GRUCell.call`: blocks z, r, h of kernel / recurrent_kernel / bias;
/// z = σ(x W_z + b_z + h U_z), r = σ(x W_r + b_r + h U_r), hh = tanh(x W_h + b_h + (r ⊙ h) U_h),
/// h' = z ⊙ h + (1 − z) ⊙ hh.
fn run_keras_gru(w: &KerasGruWeights<f64>, d: &Data) -> Run {
    unroll_gru(d, |x, h| {
        let xz = x.dot(&w.kernel) + &w.bias;
        let hz = h.dot(&w.recurrent_kernel.slice(s![.., ..2 * UNITS]));
        let z = (block(&xz, 0) + block(&hz, 0)).mapv(sigmoid);
        let r = (block(&xz, 1) + block(&hz, 1)).mapv(sigmoid);
        let hh = (block(&xz, 2) + (&r * h).dot(&w.recurrent_kernel.slice(s![.., 2 * UNITS..])))
            .mapv(f64::tanh);
        &z * h + (1.0 - &z) * &hh
    })
}

#[test]
fn keras_gru_gives_our_outputs_and_round_trips_bit_exactly() {
    for seed in [30, 31, 32] {
        let ours = gru_weights(seed);
        let d = data(seed + 10);
        let keras = convert::tf_gru_to_keras(&ours).unwrap();
        assert_eq!(keras.kernel.dim(), (INPUT, 3 * UNITS));
        assert_eq!(keras.recurrent_kernel.dim(), (UNITS, 3 * UNITS));
        assert_eq!(keras.bias.dim(), 3 * UNITS);
        // Keras's z is our u (second block of gates/bias), then r, then the candidate.
        assert_eq!(
            keras.bias.slice(s![..UNITS]),
            ours.gate_bias.slice(s![UNITS..])
        );
        assert_runs_close(&run_keras_gru(&keras, &d), &run_our_gru(&ours, &d));
        let back = convert::keras_gru_to_tf(&keras).unwrap();
        assert_eq!(back, ours, "bit-exact round trip");
        assert_eq!(convert::tf_gru_to_keras(&back).unwrap(), keras);
    }
}

#[test]
fn gru_bad_shapes_are_errors() {
    let good = gru_weights(33);
    let mut bad = good.clone();
    bad.candidate_kernel = Array2::zeros((INPUT + UNITS, UNITS + 1));
    assert!(is_shape_err(convert::tf_gru_to_keras(&bad)));
    let mut bad = good.clone();
    bad.gate_bias = Array1::zeros(2 * UNITS + 1);
    assert!(is_shape_err(convert::tf_gru_to_keras(&bad)));
    let keras = convert::tf_gru_to_keras(&good).unwrap();
    let mut k = keras.clone();
    k.bias = Array1::zeros(3 * UNITS + 3);
    assert!(is_shape_err(convert::keras_gru_to_tf(&k)));
    let mut k = keras.clone();
    k.recurrent_kernel = Array2::zeros((UNITS + 1, 3 * UNITS));
    assert!(is_shape_err(convert::keras_gru_to_tf(&k)));
    // A cell of other sizes: nothing is written.
    let mut params = ParamStore::<f64>::new(0);
    let cell = GruCell::new(&mut params, "gru", INPUT + 1, UNITS).unwrap();
    let before = params.clone();
    assert!(is_shape_err(good.assign_to(&mut params, &cell)));
    for id in cell.param_ids() {
        assert_eq!(params.value(id), before.value(id));
    }
}

/// PyTorch `nn.GRU`, from its documentation: r = σ(W_ir x + b_ir + W_hr h + b_hr),
/// z = σ(W_iz x + b_iz + W_hz h + b_hz), n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
/// h' = (1 − z) ⊙ n + z ⊙ h; row blocks r, z, n of weight_ih, weight_hh, bias_ih, bias_hh.
fn run_torch_gru(w: &TorchGruWeights<f64>, d: &Data) -> Run {
    let rows =
        |a: &Array2<f64>, k: usize| a.slice(s![k * UNITS..(k + 1) * UNITS, ..]).t().to_owned();
    let part = |b: &Array1<f64>, k: usize| b.slice(s![k * UNITS..(k + 1) * UNITS]).to_owned();
    unroll_gru(d, |x, h| {
        let r = (x.dot(&rows(&w.weight_ih, 0))
            + part(&w.bias_ih, 0)
            + h.dot(&rows(&w.weight_hh, 0))
            + part(&w.bias_hh, 0))
        .mapv(sigmoid);
        let z = (x.dot(&rows(&w.weight_ih, 1))
            + part(&w.bias_ih, 1)
            + h.dot(&rows(&w.weight_hh, 1))
            + part(&w.bias_hh, 1))
        .mapv(sigmoid);
        let n = (x.dot(&rows(&w.weight_ih, 2))
            + part(&w.bias_ih, 2)
            + &r * &(h.dot(&rows(&w.weight_hh, 2)) + part(&w.bias_hh, 2)))
            .mapv(f64::tanh);
        (1.0 - &z) * &n + &z * h
    })
}

/// Keras `GRU(reset_after=True)`, from `GRUCell.call`: `x @ kernel + bias[0]` and
/// `h @ recurrent_kernel + bias[1]` split into blocks z, r, h;
/// z = σ(x_z + h_z), r = σ(x_r + h_r), hh = tanh(x_h + r ⊙ h_h), h' = z ⊙ h + (1 − z) ⊙ hh.
fn run_keras_reset_after_gru(w: &KerasResetAfterGruWeights<f64>, d: &Data) -> Run {
    unroll_gru(d, |x, h| {
        let xm = x.dot(&w.kernel) + w.bias.row(0);
        let hm = h.dot(&w.recurrent_kernel) + w.bias.row(1);
        let z = (block(&xm, 0) + block(&hm, 0)).mapv(sigmoid);
        let r = (block(&xm, 1) + block(&hm, 1)).mapv(sigmoid);
        let hh = (block(&xm, 2) + &r * &block(&hm, 2)).mapv(f64::tanh);
        &z * h + (1.0 - &z) * &hh
    })
}

/// Random PyTorch weights, both biases non-zero everywhere.
fn torch_gru_weights(seed: u64) -> TorchGruWeights<f64> {
    TorchGruWeights {
        weight_ih: m2([3 * UNITS, INPUT], 0.7, seed),
        weight_hh: m2([3 * UNITS, UNITS], 0.7, seed + 1),
        bias_ih: v1(3 * UNITS, 0.5, seed + 2),
        bias_hh: v1(3 * UNITS, 0.5, seed + 3),
    }
}

#[test]
fn torch_gru_loads_into_a_reset_after_cell_and_gives_its_outputs() {
    for seed in [50, 51, 52] {
        let d = data(seed + 10);
        // PyTorch -> ours: the equations of both agree.
        let torch = torch_gru_weights(seed);
        let ours = convert::torch_gru_to_tf(&torch).unwrap();
        assert!(ours.reset_after());
        assert_eq!(ours.gate_kernel.dim(), (INPUT + UNITS, 2 * UNITS));
        assert_runs_close(&run_torch_gru(&torch, &d), &run_our_gru(&ours, &d));
        // The kernels and the candidate's biases are moved, the gate biases summed.
        assert_eq!(
            ours.candidate_kernel.slice(s![..INPUT, ..]),
            torch.weight_ih.slice(s![2 * UNITS.., ..]).t()
        );
        assert_eq!(
            ours.candidate_recurrent_bias.as_ref().unwrap(),
            torch.bias_hh.slice(s![2 * UNITS..])
        );
        let mut params = ParamStore::<f64>::new(0);
        let cell = convert::gru_cell_from_torch(&mut params, "rnn/gru_cell", &torch).unwrap();
        assert_eq!(TfGruWeights::from_cell(&params, &cell).unwrap(), ours);
        // Ours -> PyTorch -> ours is bit-exact; PyTorch's function is kept.
        let ours = gru_reset_after_weights(seed);
        let exported = convert::tf_gru_to_torch(&ours).unwrap();
        assert_eq!(exported.weight_ih.dim(), (3 * UNITS, INPUT));
        assert!(exported
            .bias_hh
            .slice(s![..2 * UNITS])
            .iter()
            .all(|&b| b == 0.0));
        assert_runs_close(&run_torch_gru(&exported, &d), &run_our_gru(&ours, &d));
        assert_eq!(convert::torch_gru_to_tf(&exported).unwrap(), ours);
        assert_eq!(convert::tf_gru_to_torch(&ours).unwrap(), exported);
    }
}

#[test]
fn keras_reset_after_gru_gives_our_outputs_and_round_trips() {
    for seed in [60, 61, 62] {
        let d = data(seed + 10);
        let ours = gru_reset_after_weights(seed);
        let keras = convert::tf_gru_to_keras_reset_after(&ours).unwrap();
        assert_eq!(keras.kernel.dim(), (INPUT, 3 * UNITS));
        assert_eq!(keras.recurrent_kernel.dim(), (UNITS, 3 * UNITS));
        assert_eq!(keras.bias.dim(), (2, 3 * UNITS));
        // Keras's z is our u (second block of gates/bias), then r, then the candidate.
        assert_eq!(
            keras.bias.slice(s![0, ..UNITS]),
            ours.gate_bias.slice(s![UNITS..])
        );
        assert_runs_close(
            &run_keras_reset_after_gru(&keras, &d),
            &run_our_gru(&ours, &d),
        );
        let back = convert::keras_reset_after_gru_to_tf(&keras).unwrap();
        assert_eq!(back, ours, "bit-exact round trip");
        // Keras weights with both bias rows non-zero everywhere: the same function in ours.
        let mut full = keras.clone();
        full.bias = m2([2, 3 * UNITS], 0.5, seed + 20);
        let loaded = convert::keras_reset_after_gru_to_tf(&full).unwrap();
        assert_runs_close(
            &run_keras_reset_after_gru(&full, &d),
            &run_our_gru(&loaded, &d),
        );
        // And between PyTorch and Keras through ours.
        let torch = convert::tf_gru_to_torch(&loaded).unwrap();
        assert_runs_close(
            &run_torch_gru(&torch, &d),
            &run_keras_reset_after_gru(&full, &d),
        );
    }
}

#[test]
fn gru_converters_refuse_the_other_variant_and_bad_shapes() {
    let before = gru_weights(70);
    let after = gru_reset_after_weights(70);
    assert!(invalid(convert::tf_gru_to_torch(&before)));
    assert!(invalid(convert::tf_gru_to_keras_reset_after(&before)));
    assert!(invalid(convert::tf_gru_to_keras(&after)));
    let mut bad = after.clone();
    bad.candidate_recurrent_bias = Some(Array1::zeros(UNITS + 1));
    assert!(is_shape_err(convert::tf_gru_to_torch(&bad)));
    assert!(is_shape_err(convert::tf_gru_to_keras_reset_after(&bad)));
    let mut params = ParamStore::<f64>::new(0);
    assert!(matches!(
        bad.to_cell(&mut params, "gru"),
        Err(Error::Shape { .. })
    ));
    assert!(params.is_empty());
    let torch = convert::tf_gru_to_torch(&after).unwrap();
    for k in 0..4 {
        let mut t = torch.clone();
        match k {
            0 => t.weight_ih = Array2::zeros((3 * UNITS + 1, INPUT)),
            1 => t.weight_hh = Array2::zeros((3 * UNITS, UNITS + 1)),
            2 => t.bias_ih = Array1::zeros(3 * UNITS - 1),
            _ => t.bias_hh = Array1::zeros(2 * UNITS),
        }
        assert!(is_shape_err(convert::torch_gru_to_tf(&t)), "case {k}");
    }
    let keras = convert::tf_gru_to_keras_reset_after(&after).unwrap();
    let mut k = keras.clone();
    k.bias = Array2::zeros((1, 3 * UNITS));
    assert!(is_shape_err(convert::keras_reset_after_gru_to_tf(&k)));
    let mut k = keras;
    k.recurrent_kernel = Array2::zeros((UNITS, 3 * UNITS + 3));
    assert!(is_shape_err(convert::keras_reset_after_gru_to_tf(&k)));
    // A variant mismatch between weights and cell: refused, nothing written.
    let mut params = ParamStore::<f64>::new(0);
    let cell = GruCell::new(&mut params, "gru", INPUT, UNITS).unwrap();
    let snapshot = params.clone();
    assert!(invalid(after.assign_to(&mut params, &cell)));
    for id in cell.param_ids() {
        assert_eq!(params.value(id), snapshot.value(id));
    }
}

/// A two-layer bidirectional `nn.GRU` state dict: names, `_reverse`, and each entry back.
#[test]
fn torch_gru_state_dict_names_layers_and_directions() {
    assert_eq!(
        TorchGruWeights::<f64>::state_dict_names("gru.", 1, true),
        [
            "gru.weight_ih_l1_reverse",
            "gru.weight_hh_l1_reverse",
            "gru.bias_ih_l1_reverse",
            "gru.bias_hh_l1_reverse"
        ]
    );
    let mut dict = ParamStore::<f64>::new(0);
    let mut all = vec![];
    for layer in 0..2 {
        for reverse in [false, true] {
            let w = torch_gru_weights(80 + 10 * layer as u64 + u64::from(reverse));
            w.to_state_dict(&mut dict, "", layer, reverse).unwrap();
            all.push((layer, reverse, w));
        }
    }
    assert_eq!(dict.len(), 16);
    assert!(dict.id("weight_hh_l0_reverse").is_some());
    for (layer, reverse, w) in &all {
        assert_eq!(
            &TorchGruWeights::from_state_dict(&dict, "", *layer, *reverse).unwrap(),
            w
        );
    }
    // A taken name, a missing entry and a bias of the wrong rank are errors.
    assert!(matches!(
        all[0].2.to_state_dict(&mut dict, "", 0, false),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        TorchGruWeights::from_state_dict(&dict, "", 2, false),
        Err(Error::InvalidArgument(_))
    ));
    dict.create_from(
        "x.weight_ih_l0",
        ndarray::ArrayD::zeros(ndarray::IxDyn(&[9, 4])),
    )
    .unwrap();
    dict.create_from(
        "x.weight_hh_l0",
        ndarray::ArrayD::zeros(ndarray::IxDyn(&[9, 3])),
    )
    .unwrap();
    dict.create_from(
        "x.bias_ih_l0",
        ndarray::ArrayD::zeros(ndarray::IxDyn(&[9, 1])),
    )
    .unwrap();
    dict.create_from("x.bias_hh_l0", ndarray::ArrayD::zeros(ndarray::IxDyn(&[9])))
        .unwrap();
    assert!(is_shape_err(TorchGruWeights::from_state_dict(
        &dict, "x.", 0, false
    )));
}

/// PyTorch `nn.GRU`: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h,
/// row blocks r, z, n. Returned as a step over `(x, h)` with the weights mapped naively from
/// ours (same values, reset applied after the product).
fn run_torch_gru_naive(w: &TfGruWeights<f64>, d: &Data) -> Run {
    let (gx, gh) = (
        w.gate_kernel.slice(s![..INPUT, ..]),
        w.gate_kernel.slice(s![INPUT.., ..]),
    );
    let (cx, ch) = (
        w.candidate_kernel.slice(s![..INPUT, ..]),
        w.candidate_kernel.slice(s![INPUT.., ..]),
    );
    unroll_gru(d, |x, h| {
        let g = (x.dot(&gx) + h.dot(&gh) + &w.gate_bias).mapv(sigmoid);
        let (r, z) = (block(&g, 0), block(&g, 1));
        let n = (x.dot(&cx) + &w.candidate_bias + &r * &h.dot(&ch)).mapv(f64::tanh);
        (1.0 - &z) * &n + &z * h
    })
}

/// Why a GRU without `reset_after` has no PyTorch converter: `r ⊙ (h U)` differs from
/// `(r ⊙ h) U` unless `U` (the recurrent candidate matrix) is diagonal.
#[test]
fn torch_gru_is_another_function_unless_the_recurrent_candidate_is_diagonal() {
    let d = data(40);
    let w = gru_weights(41);
    let diff = max_abs_diff(
        &run_torch_gru_naive(&w, &d).outputs,
        &run_our_gru(&w, &d).outputs,
    );
    assert!(diff > 1e-3, "{diff}");
    let mut diag = w.clone();
    for i in 0..UNITS {
        for j in 0..UNITS {
            if i != j {
                diag.candidate_kernel[[INPUT + i, j]] = 0.0;
            }
        }
    }
    assert_runs_close(&run_torch_gru_naive(&diag, &d), &run_our_gru(&diag, &d));
}
