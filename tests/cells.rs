//! Cells, wrappers and runners: TensorFlow semantics, gradient checks, and contracts.

mod common;

use common::{assert_close, random};
use ndarray::{array, s, ArrayD, Axis, IxDyn};
use recurrent::cell::{
    HighwayOptions, HighwayWrapper, LayerNormBasicLstmCell, LayerNormLstmConfig,
    LayerNormLstmWeights, LstmCell, LstmCellConfig, LstmCellWeights, LstmPeepholes,
    ResidualWrapper, ZoneoutWrapper,
};
use recurrent::gradcheck::{gradcheck, Tolerance};
use recurrent::{
    bidirectional_dynamic_rnn, dynamic_rnn, last_relevant_output, static_bidirectional_rnn,
    static_rnn, BasicLstmCell, BasicRnnCell, Cell, DropoutWrapper, Error, GruCell, LstmState,
    MultiCell, ParamStore, RnnState, Scope, Tape, Var,
};
use recurrent::{BidirectionalOptions, RnnOptions};

fn lstm(
    params: &mut ParamStore<f64>,
    scope: &str,
    input: usize,
    units: usize,
    seed: u64,
) -> BasicLstmCell {
    let kernel = random(&[input + units, 4 * units], 0.8, seed);
    let bias = random(&[4 * units], 0.5, seed + 1);
    BasicLstmCell::from_weights(params, scope, kernel, bias).unwrap()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One step with hand-picked numbers: input width 1, one unit, so every quantity is a scalar.
///
/// kernel rows are [x; h], columns the gates i, j, f, o:
///   x row: [0.5, -1.0, 0.25, 2.0], h row: [1.0, 0.5, -0.5, 0.0]; bias [0.1, 0.2, -0.3, 0.0].
/// With x = 2, h = 0.4, c = 0.3, forget_bias = 1:
///   z_i = 2*0.5  + 0.4*1.0  + 0.1 =  1.5      i = sigmoid(1.5)
///   z_j = 2*-1.0 + 0.4*0.5  + 0.2 = -1.6      j = tanh(-1.6)
///   z_f = 2*0.25 + 0.4*-0.5 - 0.3 =  0.0      f = sigmoid(0.0 + 1.0)
///   z_o = 2*2.0  + 0.4*0.0  + 0.0 =  4.0      o = sigmoid(4.0)
///   c' = 0.3 * f + i * j;   h' = tanh(c') * o
#[test]
fn lstm_single_step_matches_hand_computation() {
    let mut params = ParamStore::<f64>::new(0);
    let kernel = array![[0.5, -1.0, 0.25, 2.0], [1.0, 0.5, -0.5, 0.0]].into_dyn();
    let bias = array![0.1, 0.2, -0.3, 0.0].into_dyn();
    let cell =
        BasicLstmCell::from_weights(&mut params, "rnn/basic_lstm_cell", kernel, bias).unwrap();
    let tape = Tape::new(&params);
    let x = tape.constant(array![[2.0]].into_dyn());
    let state = LstmState {
        c: tape.constant(array![[0.3]].into_dyn()),
        h: tape.constant(array![[0.4]].into_dyn()),
    };
    let (h, new) = cell.call(&tape, x, &state).unwrap();
    let (i, j, f, o) = (sigmoid(1.5), (-1.6f64).tanh(), sigmoid(1.0), sigmoid(4.0));
    let c = 0.3 * f + i * j;
    assert!((tape.scalar(new.c) - c).abs() < 1e-15);
    assert!((tape.scalar(h) - c.tanh() * o).abs() < 1e-15);
    assert_eq!(h, new.h);
    // Numbers, for the record: c' = -0.534215...
    assert!((c - (-0.534_215)).abs() < 1e-6, "{c}");
}

/// `[x, h]` for the equations below.
fn concat_columns(x: &ndarray::Array2<f64>, h: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    ndarray::concatenate(Axis(1), &[x.view(), h.view()]).unwrap()
}

/// A random `[rows, cols]` matrix (`rows` 1: a bias, used as `[cols]` by the cells).
fn random_matrix(rows: usize, cols: usize, seed: u64) -> ndarray::Array2<f64> {
    random(&[rows, cols], 0.7, seed)
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap()
}

/// TensorFlow 1.x's `GRUCell` and `BasicRNNCell`, written out with plain ndarray, on cells built
/// from random weights (random biases too: zero biases would hide one added twice or not at all).
#[test]
fn gru_and_basic_rnn_steps_match_tensorflow_equations() {
    let (batch, input, units) = (3, 4, 5);
    let x2 = random_matrix(batch, input, 11);
    let h2 = random_matrix(batch, units, 12);
    let (gate_kernel, gate_bias) = (
        random_matrix(input + units, 2 * units, 1),
        random_matrix(1, 2 * units, 2),
    );
    let (cand_kernel, cand_bias) = (
        random_matrix(input + units, units, 3),
        random_matrix(1, units, 4),
    );
    let (rnn_kernel, rnn_bias) = (
        random_matrix(input + units, units, 5),
        random_matrix(1, units, 6),
    );
    let vector = |m: &ndarray::Array2<f64>| m.row(0).to_owned().into_dyn();
    let mut params = ParamStore::<f64>::new(5);
    let gru = GruCell::from_weights(
        &mut params,
        "gru",
        gate_kernel.clone().into_dyn(),
        vector(&gate_bias),
        cand_kernel.clone().into_dyn(),
        vector(&cand_bias),
    )
    .unwrap();
    let rnn = BasicRnnCell::from_weights(
        &mut params,
        "rnn",
        rnn_kernel.clone().into_dyn(),
        vector(&rnn_bias),
    )
    .unwrap();
    // TensorFlow's variable names, in the cells' parameter order.
    let names: Vec<&str> = gru
        .param_ids()
        .into_iter()
        .chain(rnn.param_ids())
        .map(|id| params.name(id))
        .collect();
    assert_eq!(
        names,
        [
            "gru/gates/kernel",
            "gru/gates/bias",
            "gru/candidate/kernel",
            "gru/candidate/bias",
            "rnn/kernel",
            "rnn/bias"
        ]
    );
    assert_eq!(
        (
            gru.input_size(),
            gru.output_size(),
            rnn.input_size(),
            rnn.output_size()
        ),
        (input, units, input, units)
    );

    // GRU: [r, u] = sigmoid([x, h] W_g + b_g); c = tanh([x, r * h] W_c + b_c);
    //      h' = u * h + (1 - u) * c.
    let gates = (concat_columns(&x2, &h2).dot(&gate_kernel) + &gate_bias).mapv(sigmoid);
    let (r, u) = (gates.slice(s![.., ..units]), gates.slice(s![.., units..]));
    let rh = &r * &h2;
    let c = (concat_columns(&x2, &rh).dot(&cand_kernel) + &cand_bias).mapv(f64::tanh);
    let gru_expected = &u * &h2 + (1.0 - &u) * &c;
    // Basic RNN: h' = tanh([x, h] W + b).
    let rnn_expected = (concat_columns(&x2, &h2).dot(&rnn_kernel) + &rnn_bias).mapv(f64::tanh);

    let tape = Tape::new(&params);
    let x = tape.constant(x2.into_dyn());
    let h = tape.constant(h2.into_dyn());
    let (gru_out, gru_state) = gru.call(&tape, x, &h).unwrap();
    let (rnn_out, rnn_state) = rnn.call(&tape, x, &h).unwrap();
    assert_close(&tape.value(gru_out), &gru_expected.into_dyn(), 1e-14);
    assert_close(&tape.value(rnn_out), &rnn_expected.into_dyn(), 1e-14);
    assert_eq!((gru_out, rnn_out), (gru_state, rnn_state));
}

/// Building a cell from given weights or ids checks every shape and name before it touches the
/// store, so a failed call leaves the store as it was.
#[test]
fn cells_from_weights_and_params_reject_bad_input_and_keep_the_store() {
    let zeros = |shape: &[usize]| ArrayD::<f64>::zeros(IxDyn(shape));
    let mut params = ParamStore::<f64>::new(0);
    let lstm =
        BasicLstmCell::from_weights(&mut params, "lstm", zeros(&[5, 12]), zeros(&[12])).unwrap();
    assert_eq!((lstm.input_size(), lstm.num_units()), (2, 3));
    let taken = params.len();

    fn shape_error<T>(r: recurrent::Result<T>) -> bool {
        matches!(r, Err(Error::Shape { .. }))
    }
    // Kernel rows must exceed the units; column blocks must match the bias.
    assert!(shape_error(BasicLstmCell::from_weights(
        &mut params,
        "a",
        zeros(&[3, 12]),
        zeros(&[12])
    )));
    assert!(shape_error(BasicLstmCell::from_weights(
        &mut params,
        "a",
        zeros(&[5, 12]),
        zeros(&[10])
    )));
    assert!(shape_error(BasicRnnCell::from_weights(
        &mut params,
        "a",
        zeros(&[5, 4]),
        zeros(&[3])
    )));
    assert!(shape_error(BasicRnnCell::from_weights(
        &mut params,
        "a",
        zeros(&[5]),
        zeros(&[5])
    )));
    // A GRU's candidate kernel must have the gates' rows and num_units columns.
    assert!(shape_error(GruCell::from_weights(
        &mut params,
        "a",
        zeros(&[5, 6]),
        zeros(&[6]),
        zeros(&[6, 3]),
        zeros(&[3])
    )));
    assert!(shape_error(GruCell::from_weights(
        &mut params,
        "a",
        zeros(&[5, 6]),
        zeros(&[6]),
        zeros(&[5, 3]),
        zeros(&[4])
    )));
    // A taken name, even the last one, creates nothing.
    params.create_from("b/candidate/bias", zeros(&[3])).unwrap();
    let taken = taken + 1;
    let gru = GruCell::from_weights(
        &mut params,
        "b",
        zeros(&[5, 6]),
        zeros(&[6]),
        zeros(&[5, 3]),
        zeros(&[3]),
    );
    assert!(matches!(gru, Err(Error::InvalidArgument(_))));
    assert!(matches!(
        BasicLstmCell::from_weights(&mut params, "lstm", zeros(&[5, 12]), zeros(&[12])),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(params.len(), taken);
    assert!(params.id("b/gates/kernel").is_none());

    // Ids from another store are refused, not a panic later.
    let mut other = ParamStore::<f64>::new(0);
    let rnn = BasicRnnCell::new(&mut other, "rnn", 2, 3).unwrap();
    let gru = GruCell::new(&mut other, "gru", 2, 3).unwrap();
    let small = ParamStore::<f64>::new(0);
    assert!(matches!(
        BasicRnnCell::from_params(&small, rnn.kernel(), rnn.bias()),
        Err(Error::InvalidArgument(_))
    ));
    let ids = gru.param_ids();
    assert!(matches!(
        GruCell::from_params(&small, ids[0], ids[1], ids[2], ids[3]),
        Err(Error::InvalidArgument(_))
    ));
    // Ids of the right store give the same cell back.
    let again = GruCell::from_params(&other, ids[0], ids[1], ids[2], ids[3]).unwrap();
    assert_eq!(
        (again.input_size(), again.output_size(), again.param_ids()),
        (2, 3, ids)
    );
}

#[test]
fn lstm_forget_bias_is_added_at_every_step() {
    let mut params = ParamStore::<f64>::new(0);
    let kernel = ArrayD::zeros(IxDyn(&[2, 4]));
    let bias = ArrayD::zeros(IxDyn(&[4]));
    let cell = BasicLstmCell::from_weights(&mut params, "lstm", kernel, bias)
        .unwrap()
        .with_forget_bias(3.0)
        .unwrap();
    let tape = Tape::new(&params);
    // All pre-activations are zero: i = o = 0.5, j = 0, f = sigmoid(3); so c decays by f each step.
    let x = tape.constant(ArrayD::zeros(IxDyn(&[1, 4, 1])));
    let init = LstmState {
        c: tape.constant(array![[1.0]].into_dyn()),
        h: tape.constant(array![[0.0]].into_dyn()),
    };
    let (_, state) =
        dynamic_rnn(&tape, &cell, x, RnnOptions::default().initial_state(init)).unwrap();
    assert!((tape.scalar(state.c) - sigmoid(3.0).powi(4)).abs() < 1e-15);
}

#[test]
fn lstm_gradients_step_and_sequence() {
    let mut params = ParamStore::<f64>::new(0);
    let cell = lstm(&mut params, "lstm", 3, 4, 1);
    let x = random(&[2, 3], 1.0, 2);
    let c = random(&[2, 4], 1.0, 3);
    let h = random(&[2, 4], 1.0, 4);
    gradcheck(&params, &[x, c, h], Tolerance::default(), |t, v| {
        let (out, state) = cell.call(t, v[0], &LstmState { c: v[1], h: v[2] })?;
        t.concat(&[out, state.c], 1)
    })
    .unwrap()
    .assert_ok();

    for time_major in [false, true] {
        for lengths in [None, Some(vec![5, 0, 3])] {
            let shape = if time_major { [5, 3, 3] } else { [3, 5, 3] };
            let inputs = [
                random(&shape, 1.0, 5),
                random(&[3, 4], 1.0, 6),
                random(&[3, 4], 1.0, 7),
            ];
            gradcheck(&params, &inputs, Tolerance::default(), |t, v| {
                let init = LstmState { c: v[1], h: v[2] };
                let (out, state) = dynamic_rnn(
                    t,
                    &cell,
                    v[0],
                    RnnOptions {
                        sequence_length: lengths.as_deref(),
                        ..RnnOptions::default()
                    }
                    .initial_state(init)
                    .time_major(time_major),
                )?;
                let flat = t.reshape(out, &[15, 4])?;
                t.concat(&[flat, state.c, state.h], 0)
            })
            .unwrap()
            .assert_ok();
        }
    }
}

/// Runs `cell` statically and dynamically on the same data and compares outputs, final states
/// and every gradient.
fn assert_static_equals_dynamic<C: Cell>(
    params: &ParamStore<f64>,
    cell: &C,
    lengths: Option<&[usize]>,
    with_initial: bool,
) {
    let (batch, steps) = (3, 4);
    let x = random(&[batch, steps, cell.input_size()], 1.0, 11);
    let run = |dynamic: bool| {
        // One seed for both runs: a DropoutWrapper draws the same (variational) masks in each.
        let tape = Tape::new(params).with_seed(0);
        let xv = tape.watch(x.clone());
        let init = with_initial.then(|| {
            let zero = cell.zero_state(&tape, batch).unwrap();
            let vars: Vec<Var> = zero
                .flatten()
                .iter()
                .enumerate()
                .map(|(k, v)| tape.constant(random(&tape.shape(*v), 1.0, 20 + k as u64)))
                .collect();
            zero.rebuild(&vars)
        });
        let (out, state) = if dynamic {
            dynamic_rnn(
                &tape,
                cell,
                xv,
                RnnOptions {
                    initial_state: init,
                    sequence_length: lengths,
                    ..RnnOptions::default()
                },
            )
            .unwrap()
        } else {
            let steps_in = tape.unstack(xv, 1).unwrap();
            let (outs, state) = static_rnn(
                &tape,
                cell,
                &steps_in,
                RnnOptions {
                    initial_state: init,
                    sequence_length: lengths,
                    ..RnnOptions::default()
                },
            )
            .unwrap();
            (tape.stack(&outs, 1).unwrap(), state)
        };
        let mut parts = vec![tape
            .reshape(out, &[batch * steps, cell.output_size()])
            .unwrap()];
        let flat_state: Vec<Var> = state.flatten();
        // A random projection (not a sum of squares) so that outputs past an example's length,
        // which are zero, still receive a gradient that must be ignored.
        let loss_terms: Vec<Var> = parts
            .drain(..)
            .chain(flat_state.iter().copied())
            .enumerate()
            .map(|(k, v)| {
                let direction = tape.constant(random(&tape.shape(v), 1.0, 50 + k as u64));
                tape.sum(tape.mul(v, direction).unwrap())
            })
            .collect();
        let values: Vec<ArrayD<f64>> = std::iter::once(tape.to_array(out))
            .chain(flat_state.iter().map(|v| tape.to_array(*v)))
            .collect();
        let loss = loss_terms
            .into_iter()
            .reduce(|a, b| tape.add(a, b).unwrap())
            .unwrap();
        let grads = tape.backward(loss).unwrap();
        let mut grad_values: Vec<ArrayD<f64>> = grads.iter().map(|(_, g)| g.clone()).collect();
        grad_values.push(grads.wrt(xv).unwrap().clone());
        (values, grad_values)
    };
    let (sv, sg) = run(false);
    let (dv, dg) = run(true);
    assert_eq!(sv.len(), dv.len());
    for (a, b) in sv.iter().zip(&dv) {
        assert_close(b, a, 1e-12);
    }
    assert_eq!(sg.len(), dg.len());
    for (a, b) in sg.iter().zip(&dg) {
        assert_close(b, a, 1e-11);
    }
}

#[test]
fn static_and_dynamic_agree_for_every_cell() {
    let mut params = ParamStore::<f64>::new(3);
    let lstm_cell = lstm(&mut params, "lstm", 3, 4, 30);
    let gru = GruCell::new(&mut params, "gru", 3, 4).unwrap();
    let gru_ra = gru_reset_after(&mut params, "gru_ra", 3, 4, 44);
    let basic = BasicRnnCell::new(&mut params, "basic", 3, 4).unwrap();
    let stack = MultiCell::new(vec![
        lstm(&mut params, "m/cell_0", 3, 4, 40),
        lstm(&mut params, "m/cell_1", 4, 4, 41),
    ])
    .unwrap();
    // Dropout in variational mode, where a mask does not depend on the order in which the two
    // runners draw: input and output dropout around the LSTM's sequence path, and with state
    // dropout, which makes dynamic_rnn step.
    let around_sequence = DropoutWrapper::new(lstm_cell.clone())
        .with_input_keep_prob(0.7)
        .unwrap()
        .with_output_keep_prob(0.8)
        .unwrap()
        .with_variational_recurrent(true);
    let with_state = around_sequence.clone().with_state_keep_prob(0.6).unwrap();
    for lengths in [None, Some(&[4usize, 0, 2][..])] {
        for with_initial in [false, true] {
            assert_static_equals_dynamic(&params, &lstm_cell, lengths, with_initial);
            assert_static_equals_dynamic(&params, &gru, lengths, with_initial);
            assert_static_equals_dynamic(&params, &gru_ra, lengths, with_initial);
            assert_static_equals_dynamic(&params, &basic, lengths, with_initial);
            assert_static_equals_dynamic(&params, &stack, lengths, with_initial);
            assert_static_equals_dynamic(&params, &around_sequence, lengths, with_initial);
            assert_static_equals_dynamic(&params, &with_state, lengths, with_initial);
        }
    }
}

#[test]
fn gradients_of_gru_basic_rnn_multicell_and_runners() {
    let mut params = ParamStore::<f64>::new(5);
    let gru = GruCell::new(&mut params, "gru", 2, 3).unwrap();
    let basic = BasicRnnCell::new(&mut params, "basic", 2, 3).unwrap();
    let stack = MultiCell::new(vec![
        lstm(&mut params, "m/cell_0", 2, 3, 50),
        lstm(&mut params, "m/cell_1", 3, 3, 51),
    ])
    .unwrap();
    let x = random(&[2, 3, 2], 1.0, 8);
    let lengths = [3usize, 1];
    let tol = Tolerance::default();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        Ok(dynamic_rnn(
            t,
            &gru,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?
        .0)
    })
    .unwrap()
    .assert_ok();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        Ok(dynamic_rnn(
            t,
            &basic,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?
        .1)
    })
    .unwrap()
    .assert_ok();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let (out, states) = dynamic_rnn(t, &stack, v[0], RnnOptions::default().time_major(true))?;
        let last = t.reshape(out, &[6, 3])?;
        t.concat(&[last, states[0].c, states[1].h], 0)
    })
    .unwrap()
    .assert_ok();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let steps = t.unstack(v[0], 1)?;
        let (outs, state) = static_rnn(
            t,
            &gru,
            &steps,
            RnnOptions::default().sequence_length(&lengths),
        )?;
        t.concat(&[outs[2], state], 1)
    })
    .unwrap()
    .assert_ok();
}

#[test]
fn bidirectional_runners_reverse_within_lengths() {
    let mut params = ParamStore::<f64>::new(6);
    let fw = lstm(&mut params, "fw", 2, 3, 60);
    let bw = lstm(&mut params, "bw", 2, 3, 61);
    let x = random(&[2, 4, 2], 1.0, 9);
    let lengths = [4usize, 2];
    let tape = Tape::new(&params);
    let xv = tape.constant(x.clone());
    let ((out_fw, out_bw), (_, state_bw)) = bidirectional_dynamic_rnn(
        &tape,
        &fw,
        &bw,
        xv,
        BidirectionalOptions::default().sequence_length(&lengths),
    )
    .unwrap();
    assert_eq!(tape.shape(out_fw), vec![2, 4, 3]);
    // The backward output of example 1 at step 0 is the bw cell's output after reading steps 1, 0.
    let tape2 = Tape::new(&params);
    let ex1 = tape2.constant(x.slice(s![1..2, ..2;-1, ..]).to_owned().into_dyn());
    let (reference, ref_state) = dynamic_rnn(&tape2, &bw, ex1, RnnOptions::default()).unwrap();
    let reference = tape2.to_array(reference);
    assert_close(
        &tape.value(out_bw).slice(s![1, 0, ..]).to_owned().into_dyn(),
        &reference.slice(s![0, 1, ..]).to_owned().into_dyn(),
        1e-12,
    );
    assert_close(
        &tape.value(out_bw).slice(s![1, 1, ..]).to_owned().into_dyn(),
        &reference.slice(s![0, 0, ..]).to_owned().into_dyn(),
        1e-12,
    );
    assert!(tape
        .value(out_bw)
        .slice(s![1, 2.., ..])
        .iter()
        .all(|&v| v == 0.0));
    assert_close(
        &tape
            .value(state_bw.h)
            .slice(s![1..2, ..])
            .to_owned()
            .into_dyn(),
        &tape2.to_array(ref_state.h),
        1e-12,
    );

    // The static version gives concat(fw, bw) per step, equal to the dynamic one.
    let steps = tape.unstack(xv, 1).unwrap();
    let (outs, _, _) = static_bidirectional_rnn(
        &tape,
        &fw,
        &bw,
        &steps,
        BidirectionalOptions::default().sequence_length(&lengths),
    )
    .unwrap();
    for (t, &o) in outs.iter().enumerate() {
        let expected = ndarray::concatenate(
            Axis(1),
            &[
                tape.value(out_fw).index_axis(Axis(1), t),
                tape.value(out_bw).index_axis(Axis(1), t),
            ],
        )
        .unwrap();
        assert_close(&tape.to_array(o), &expected.into_dyn(), 1e-12);
    }

    let tol = Tolerance::default();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let ((f, b), (sf, sb)) = bidirectional_dynamic_rnn(
            t,
            &fw,
            &bw,
            v[0],
            BidirectionalOptions::default().sequence_length(&lengths),
        )?;
        let both = t.concat(&[f, b], 2)?;
        let flat = t.reshape(both, &[8, 6])?;
        let states = t.concat(&[sf.h, sb.c], 1)?;
        t.concat(&[flat, states], 0)
    })
    .unwrap()
    .assert_ok();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let steps = t.unstack(v[0], 1)?;
        let (outs, _, sb) =
            static_bidirectional_rnn(t, &fw, &bw, &steps, BidirectionalOptions::default())?;
        t.concat(&[outs[0], outs[3], t.concat(&[sb.h, sb.h], 1)?], 0)
    })
    .unwrap()
    .assert_ok();
}

#[test]
fn time_major_gives_the_transposed_result() {
    let mut params = ParamStore::<f64>::new(7);
    let cell = lstm(&mut params, "lstm", 2, 3, 70);
    let x = random(&[3, 5, 2], 1.0, 10);
    let tape = Tape::inference(&params);
    let (bm, sb) = dynamic_rnn(
        &tape,
        &cell,
        tape.constant(x.clone()),
        RnnOptions::default().sequence_length(&[5, 2, 4]),
    )
    .unwrap();
    let xt = x.view().permuted_axes(IxDyn(&[1, 0, 2])).to_owned();
    let (tm, st) = dynamic_rnn(
        &tape,
        &cell,
        tape.constant(xt),
        RnnOptions::default()
            .sequence_length(&[5, 2, 4])
            .time_major(true),
    )
    .unwrap();
    let tm_t = tape
        .value(tm)
        .view()
        .permuted_axes(IxDyn(&[1, 0, 2]))
        .to_owned();
    assert_close(&tm_t, &tape.to_array(bm), 1e-14);
    assert_close(&tape.to_array(st.h), &tape.to_array(sb.h), 1e-14);
}

/// An inference tape runs the LSTM in per-shard buffers it does not keep (two state slots used in
/// turn, not one per step); a training tape keeps whole-batch buffers for the backward pass.
/// Same arithmetic, so the same bits: over a batch of several shards and over a few rows (the
/// packed one-row product), for 1 to 5 steps, with lengths and an initial state, for the basic
/// cell and for `LstmCell` with peepholes and a cell clip that acts.
#[test]
fn inference_and_training_tapes_give_identical_lstm_results() {
    // Inference on AVX-512 runs larger shards of the basic LSTM tile by tile: one ragged group
    // of 16 units, two groups, and inner dimensions of 2, which stay on the gemm path.
    let sizes = [(3, 5), (4, 20), (2, 5), (3, 2)];
    let cases = [(150, 4), (150, 1), (3, 2), (3, 5), (70, 3)];
    for ((input, units), (batch, time)) in sizes
        .into_iter()
        .flat_map(|size| cases.into_iter().map(move |case| (size, case)))
    {
        let mut params = ParamStore::<f32>::new(9);
        let basic = BasicLstmCell::new(&mut params, "lstm", input, units).unwrap();
        let variant = LstmCellConfig::new(units)
            .with_peepholes(true)
            .with_cell_clip(0.05)
            .init(&mut params, "lstm_cell", input)
            .unwrap();
        let x = random(&[batch, time, input], 1.0, 13).mapv(|v| v as f32);
        let c0 = random(&[batch, units], 0.5, 14).mapv(|v| v as f32);
        let h0 = random(&[batch, units], 0.5, 15).mapv(|v| v as f32);
        let lengths: Vec<usize> = (0..batch).map(|b| b % (time + 1)).collect();
        fn run<C: Cell<State = LstmState>>(
            tape: &Tape<'_, f32>,
            cell: &C,
            (x, c0, h0, lengths): (&ArrayD<f32>, &ArrayD<f32>, &ArrayD<f32>, &[usize]),
        ) -> (ArrayD<f32>, ArrayD<f32>, ArrayD<f32>) {
            let state = LstmState {
                c: tape.constant(c0.clone()),
                h: tape.constant(h0.clone()),
            };
            let (out, last) = dynamic_rnn(
                tape,
                cell,
                tape.constant(x.clone()),
                RnnOptions::default()
                    .initial_state(state)
                    .sequence_length(lengths),
            )
            .unwrap();
            (
                tape.to_array(out),
                tape.to_array(last.c),
                tape.to_array(last.h),
            )
        }
        let data = (&x, &c0, &h0, lengths.as_slice());
        let inference = run(&Tape::inference(&params), &basic, data);
        let training = run(&Tape::new(&params), &basic, data);
        assert_eq!(
            inference, training,
            "basic, {input} inputs, {units} units, batch {batch}, {time} steps"
        );
        assert!(inference.0.iter().any(|&v| v != 0.0));
        let inference = run(&Tape::inference(&params), &variant, data);
        let training = run(&Tape::new(&params), &variant, data);
        assert_eq!(
            inference, training,
            "peepholes and clip, {input} inputs, {units} units, batch {batch}, {time} steps"
        );
        assert!(
            inference.1.iter().any(|&v| v.abs() == 0.05),
            "the clip acts"
        );
    }
}

#[test]
fn sequence_length_zeroes_outputs_and_carries_state() {
    let mut params = ParamStore::<f64>::new(8);
    let cell = lstm(&mut params, "lstm", 2, 3, 80);
    let x = random(&[2, 5, 2], 1.0, 12);
    let tape = Tape::inference(&params);
    let (out, state) = dynamic_rnn(
        &tape,
        &cell,
        tape.constant(x.clone()),
        RnnOptions::default().sequence_length(&[5, 3]),
    )
    .unwrap();
    let out = tape.to_array(out);
    assert!(out.slice(s![1, 3.., ..]).iter().all(|&v| v == 0.0));
    // The final state of example 1 is its state after 3 steps: run the first 3 steps alone.
    let (short_out, short_state) = dynamic_rnn(
        &tape,
        &cell,
        tape.constant(x.slice(s![1..2, ..3, ..]).to_owned().into_dyn()),
        RnnOptions::default(),
    )
    .unwrap();
    assert_close(
        &tape
            .value(state.h)
            .slice(s![1..2, ..])
            .to_owned()
            .into_dyn(),
        &tape.to_array(short_state.h),
        1e-14,
    );
    assert_close(
        &tape
            .value(state.c)
            .slice(s![1..2, ..])
            .to_owned()
            .into_dyn(),
        &tape.to_array(short_state.c),
        1e-14,
    );
    // last_relevant_output picks step 2 for example 1, equal to the short run's last output.
    let last = last_relevant_output(&tape, tape.constant(out), Some(&[5, 3])).unwrap();
    assert_close(
        &tape.value(last).slice(s![1..2, ..]).to_owned().into_dyn(),
        &tape
            .value(short_out)
            .slice(s![.., 2, ..])
            .to_owned()
            .into_dyn(),
        1e-14,
    );
}

#[test]
fn multicell_equals_chaining_cells_by_hand() {
    let mut params = ParamStore::<f64>::new(9);
    let scope = Scope::new("rnn/multi_rnn_cell");
    let a = lstm(
        &mut params,
        &scope.sub("cell_0").join("basic_lstm_cell"),
        2,
        3,
        90,
    );
    let b = lstm(
        &mut params,
        &scope.sub("cell_1").join("basic_lstm_cell"),
        3,
        4,
        91,
    );
    let stack = MultiCell::new(vec![a.clone(), b.clone()]).unwrap();
    assert_eq!(Cell::state_size(&stack), vec![3, 3, 4, 4]);
    let x = random(&[2, 3, 2], 1.0, 13);
    let tape = Tape::inference(&params);
    let xv = tape.constant(x);
    let (out, states) = dynamic_rnn(&tape, &stack, xv, RnnOptions::default()).unwrap();
    let steps = tape.unstack(xv, 1).unwrap();
    let (mut sa, mut sb) = (
        a.zero_state(&tape, 2).unwrap(),
        b.zero_state(&tape, 2).unwrap(),
    );
    let mut last = None;
    for &x_t in &steps {
        let (ha, na) = a.call(&tape, x_t, &sa).unwrap();
        let (hb, nb) = b.call(&tape, ha, &sb).unwrap();
        sa = na;
        sb = nb;
        last = Some(hb);
    }
    assert_close(
        &tape.value(out).index_axis(Axis(1), 2).to_owned().into_dyn(),
        &tape.to_array(last.unwrap()),
        1e-14,
    );
    assert_close(&tape.to_array(states[0].c), &tape.to_array(sa.c), 1e-14);
    assert_close(&tape.to_array(states[1].h), &tape.to_array(sb.h), 1e-14);
}

#[test]
fn multicell_refuses_accidental_sharing_and_width_mismatch() {
    let mut params = ParamStore::<f64>::new(10);
    let a = lstm(&mut params, "a", 3, 3, 100);
    assert!(matches!(
        MultiCell::new(vec![a.clone(), a.clone()]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(MultiCell::new_shared(vec![a.clone(), a.clone()]).is_ok());
    let b = lstm(&mut params, "b", 5, 3, 101);
    assert!(matches!(
        MultiCell::new(vec![a, b]),
        Err(Error::Shape { .. })
    ));
    // Creating a second cell under the same scope is refused, not silently shared.
    assert!(BasicLstmCell::new(&mut params, "a", 3, 3).is_err());
}

#[test]
fn dropout_wrapper_rates_scaling_variational_and_inference() {
    let mut params = ParamStore::<f64>::new(11);
    let basic = BasicRnnCell::new(&mut params, "basic", 50, 50).unwrap();
    let per_step = DropoutWrapper::new(basic.clone())
        .with_input_keep_prob(0.6)
        .unwrap();
    let variational = DropoutWrapper::new(basic.clone())
        .with_input_keep_prob(0.6)
        .unwrap()
        .with_variational_recurrent(true);
    assert!(DropoutWrapper::new(basic.clone())
        .with_output_keep_prob(0.0)
        .is_err());
    assert!(DropoutWrapper::new(basic.clone())
        .with_state_keep_prob(1.01)
        .is_err());

    // The input mask shows in the gradient with respect to the input: a dropped element gets
    // exactly zero gradient, a kept one (almost surely) not.
    for (cell, expect_same) in [(&per_step, false), (&variational, true)] {
        let tape = Tape::new(&params).with_seed(2);
        let x = tape.watch(ArrayD::ones(IxDyn(&[40, 2, 50])));
        let steps = tape.unstack(x, 1).unwrap();
        let (outs, _) = static_rnn(&tape, cell, &steps, RnnOptions::default()).unwrap();
        let loss = tape.sum(tape.stack(&outs, 0).unwrap());
        let g = tape.backward(loss).unwrap().wrt(x).unwrap().clone();
        let (m0, m1) = (
            g.index_axis(Axis(1), 0).mapv(|v| v != 0.0),
            g.index_axis(Axis(1), 1).mapv(|v| v != 0.0),
        );
        let kept = m0.iter().filter(|&&k| k).count() as f64 / m0.len() as f64;
        assert!((kept - 0.6).abs() < 0.05, "kept {kept}");
        assert_eq!(
            m0 == m1,
            expect_same,
            "variational reuses the mask, per-step redraws it"
        );
    }

    // Inference: identity, so equal to the bare cell.
    let tape = Tape::inference(&params);
    let x = tape.constant(random(&[4, 3, 50], 1.0, 3));
    let (a, _) = dynamic_rnn(&tape, &per_step, x, RnnOptions::default()).unwrap();
    let (b, _) = dynamic_rnn(&tape, &basic, x, RnnOptions::default()).unwrap();
    assert_close(&tape.to_array(a), &tape.to_array(b), 0.0);
}

#[test]
fn dropout_scales_kept_values_and_spares_lstm_memory() {
    let mut params = ParamStore::<f64>::new(12);
    let cell = lstm(&mut params, "lstm", 4, 200, 120);
    let wrapped = DropoutWrapper::new(cell.clone())
        .with_output_keep_prob(0.5)
        .unwrap()
        .with_state_keep_prob(0.5)
        .unwrap();
    let tape = Tape::new(&params).with_seed(4);
    let x = tape.constant(random(&[8, 4], 1.0, 14));
    let zero = cell.zero_state(&tape, 8).unwrap();
    let (plain_out, plain_state) = cell.call(&tape, x, &zero).unwrap();
    let (out, state) = wrapped.call(&tape, x, &zero).unwrap();
    // Output dropout and state dropout on h: each keeps about half, scaled by 1 / 0.5, with
    // masks of their own.
    let kept_mask = |plain: Var, dropped: Var| -> Vec<bool> {
        let (p, d) = (tape.to_array(plain), tape.to_array(dropped));
        let mask: Vec<bool> = p
            .iter()
            .zip(d.iter())
            .map(|(a, b)| {
                let kept = *b != 0.0;
                if kept {
                    assert!(
                        (b - 2.0 * a).abs() < 1e-12,
                        "kept values are scaled by 1/keep_prob"
                    );
                }
                kept
            })
            .collect();
        let rate = mask.iter().filter(|&&k| k).count() as f64 / mask.len() as f64;
        assert!((rate - 0.5).abs() < 0.05, "{rate}");
        mask
    };
    let output_mask = kept_mask(plain_out, out);
    let state_mask = kept_mask(plain_state.h, state.h);
    assert_ne!(output_mask, state_mask);
    // TensorFlow never drops the memory c.
    assert_close(&tape.to_array(state.c), &tape.to_array(plain_state.c), 0.0);
}

#[test]
fn dropout_wrapper_gradients_with_fixed_masks() {
    let mut params = ParamStore::<f64>::new(13);
    let inner = lstm(&mut params, "lstm", 3, 4, 130);
    let cell = DropoutWrapper::new(inner)
        .with_input_keep_prob(0.7)
        .unwrap()
        .with_output_keep_prob(0.8)
        .unwrap()
        .with_state_keep_prob(0.9)
        .unwrap()
        .with_variational_recurrent(true);
    // gradcheck seeds each evaluation's tape identically, so the masks are the same every run.
    let x = random(&[2, 3, 3], 1.0, 15);
    gradcheck(
        &params,
        std::slice::from_ref(&x),
        Tolerance::default(),
        |t, v| {
            let (out, state) = dynamic_rnn(
                t,
                &cell,
                v[0],
                RnnOptions::default().sequence_length(&[3, 2]),
            )?;
            let flat = t.reshape(out, &[6, 4])?;
            t.concat(&[flat, state.h, state.c], 0)
        },
    )
    .unwrap()
    .assert_ok();
}

/// The contract every cell honours: sizes, zero state, shapes for a batch of 1 and of 3.
fn contract<C: Cell>(params: &ParamStore<f64>, cell: &C) {
    for batch in [1, 3] {
        let tape = Tape::new(params);
        let zero = cell.zero_state(&tape, batch).unwrap();
        let flat = zero.flatten();
        assert_eq!(flat.len(), cell.state_size().len());
        for (v, w) in flat.iter().zip(cell.state_size()) {
            assert_eq!(tape.shape(*v), vec![batch, w]);
            assert!(tape.value(*v).iter().all(|&x| x == 0.0));
        }
        let x = tape.constant(random(&[batch, cell.input_size()], 1.0, 16));
        let (out, state) = cell.call(&tape, x, &zero).unwrap();
        assert_eq!(tape.shape(out), vec![batch, cell.output_size()]);
        for (v, w) in state.flatten().iter().zip(cell.state_size()) {
            assert_eq!(tape.shape(*v), vec![batch, w]);
        }
        // Wrong input width and mismatched state batch are errors, not panics.
        let bad = tape.constant(random(&[batch, cell.input_size() + 1], 1.0, 17));
        assert!(matches!(
            cell.call(&tape, bad, &zero),
            Err(Error::Shape { .. })
        ));
        let other = cell.zero_state(&tape, batch + 1).unwrap();
        assert!(matches!(
            cell.call(&tape, x, &other),
            Err(Error::Shape { .. })
        ));
        let loss = tape.sum(out);
        assert!(!tape.backward(loss).unwrap().is_empty());
    }
}

#[test]
fn every_cell_honours_the_contract() {
    let mut params = ParamStore::<f64>::new(14);
    let l = lstm(&mut params, "lstm", 3, 4, 140);
    let gru = GruCell::new(&mut params, "gru", 3, 4).unwrap();
    let basic = BasicRnnCell::new(&mut params, "basic", 3, 4).unwrap();
    let stack = MultiCell::new(vec![
        lstm(&mut params, "m0", 3, 4, 141),
        lstm(&mut params, "m1", 4, 2, 142),
    ])
    .unwrap();
    contract(&params, &l);
    contract(&params, &gru);
    let gru_ra = gru_reset_after(&mut params, "gru_ra", 3, 4, 143);
    contract(&params, &gru_ra);
    contract(&params, &basic);
    contract(&params, &stack);
    contract(
        &params,
        &DropoutWrapper::new(l.clone())
            .with_output_keep_prob(0.5)
            .unwrap(),
    );
    // Every kind of dropout, with variational masks, around a stack; state dropout alone around
    // a GRU: the wrapper must keep its cell's contract either way.
    contract(
        &params,
        &DropoutWrapper::new(stack)
            .with_input_keep_prob(0.8)
            .unwrap()
            .with_output_keep_prob(0.7)
            .unwrap()
            .with_state_keep_prob(0.6)
            .unwrap()
            .with_variational_recurrent(true),
    );
    contract(
        &params,
        &DropoutWrapper::new(gru).with_state_keep_prob(0.5).unwrap(),
    );
}

// ---------------------------------------------------------------------------------------------
// LstmCell (tf.nn.rnn_cell.LSTMCell): peepholes, cell clip, projection
// ---------------------------------------------------------------------------------------------

fn vec1(n: usize, scale: f64, seed: u64) -> ndarray::Array1<f64> {
    random(&[n], scale, seed)
        .into_dimensionality::<ndarray::Ix1>()
        .unwrap()
}

/// Random LstmCell weights: peepholes and projection as asked.
fn lstm_cell_weights(
    input: usize,
    units: usize,
    peepholes: bool,
    num_proj: Option<usize>,
    seed: u64,
) -> LstmCellWeights<f64> {
    let h_depth = num_proj.unwrap_or(units);
    LstmCellWeights {
        kernel: random(&[input + h_depth, 4 * units], 0.8, seed)
            .into_dimensionality()
            .unwrap(),
        bias: vec1(4 * units, 0.5, seed + 1),
        peepholes: peepholes.then(|| LstmPeepholes {
            w_f_diag: vec1(units, 0.9, seed + 2),
            w_i_diag: vec1(units, 0.9, seed + 3),
            w_o_diag: vec1(units, 0.9, seed + 4),
        }),
        projection: num_proj.map(|p| {
            random(&[units, p], 0.8, seed + 5)
                .into_dimensionality()
                .unwrap()
        }),
    }
}

/// TensorFlow's `LSTMCell.call`, written out with plain ndarray:
/// `[i, j, f, o] = [x, m] W + b`; `c' = σ(f + fb + w_f c) c + σ(i + w_i c) tanh(j)`;
/// `c' = clip(c')`; `m' = σ(o + w_o c') tanh(c')`; `m' = clip(m' P)`.
fn lstm_cell_reference(
    w: &LstmCellWeights<f64>,
    forget_bias: f64,
    cell_clip: Option<f64>,
    proj_clip: Option<f64>,
    x: &ndarray::Array2<f64>,
    c: &ndarray::Array2<f64>,
    m: &ndarray::Array2<f64>,
) -> (ndarray::Array2<f64>, ndarray::Array2<f64>) {
    let units = w.bias.len() / 4;
    let z = concat_columns(x, m).dot(&w.kernel) + &w.bias;
    let block = |k: usize| z.slice(s![.., k * units..(k + 1) * units]).to_owned();
    let (mut i, j, mut f, mut o) = (block(0), block(1), block(2) + forget_bias, block(3));
    if let Some(p) = &w.peepholes {
        f += &(c * &p.w_f_diag);
        i += &(c * &p.w_i_diag);
    }
    let mut c2 = f.mapv(sigmoid) * c + i.mapv(sigmoid) * j.mapv(f64::tanh);
    if let Some(clip) = cell_clip {
        c2.mapv_inplace(|v| v.clamp(-clip, clip));
    }
    if let Some(p) = &w.peepholes {
        o += &(&c2 * &p.w_o_diag);
    }
    let mut m2 = o.mapv(sigmoid) * c2.mapv(f64::tanh);
    if let Some(p) = &w.projection {
        m2 = m2.dot(p);
        if let Some(clip) = proj_clip {
            m2.mapv_inplace(|v| v.clamp(-clip, clip));
        }
    }
    (c2, m2)
}

#[test]
fn lstm_cell_matches_tensorflow_equations() {
    let (batch, input, units, proj) = (3, 4, 5, 2);
    for (peep, num_proj, cell_clip, proj_clip) in [
        (true, None, None, None),
        (false, None, Some(0.3), None),
        (false, Some(proj), None, None),
        (true, Some(proj), Some(0.3), Some(0.2)),
    ] {
        let w = lstm_cell_weights(input, units, peep, num_proj, 300);
        let mut params = ParamStore::<f64>::new(0);
        let mut cell = LstmCell::from_weights(&mut params, "rnn/lstm_cell", w.clone())
            .unwrap()
            .with_forget_bias(0.7)
            .unwrap();
        if let Some(c) = cell_clip {
            cell = cell.with_cell_clip(c).unwrap();
        }
        if let Some(c) = proj_clip {
            cell = cell.with_proj_clip(c).unwrap();
        }
        let h_depth = num_proj.unwrap_or(units);
        assert_eq!(cell.state_size(), vec![units, h_depth]);
        assert_eq!(cell.output_size(), h_depth);
        // Several steps from a random state, so the clipped c feeds the next step.
        let xs: Vec<_> = (0..3)
            .map(|t| random_matrix(batch, input, 310 + t))
            .collect();
        let (mut c, mut m) = (
            random(&[batch, units], 1.5, 320)
                .into_dimensionality()
                .unwrap(),
            random(&[batch, h_depth], 1.0, 321)
                .into_dimensionality()
                .unwrap(),
        );
        let tape = Tape::new(&params);
        let mut state = LstmState {
            c: tape.constant(c.clone().into_dyn()),
            h: tape.constant(m.clone().into_dyn()),
        };
        let mut clipped = 0;
        for x in &xs {
            let (out, new) = cell
                .call(&tape, tape.constant(x.clone().into_dyn()), &state)
                .unwrap();
            (c, m) = lstm_cell_reference(&w, 0.7, cell_clip, proj_clip, x, &c, &m);
            assert_close(&tape.to_array(new.c), &c.clone().into_dyn(), 1e-14);
            assert_close(&tape.to_array(out), &m.clone().into_dyn(), 1e-14);
            assert_eq!(out, new.h);
            clipped += c.iter().filter(|v| v.abs() == 0.3).count()
                + m.iter().filter(|v| v.abs() == 0.2).count();
            state = new;
        }
        // The clips must have acted, or the test would not test them.
        assert_eq!(cell_clip.is_some() || proj_clip.is_some(), clipped > 0);
    }
}

#[test]
fn lstm_cell_names_layout_and_bad_input() {
    let mut params = ParamStore::<f64>::new(1);
    let cell = LstmCellConfig::new(6)
        .with_peepholes(true)
        .with_num_proj(3)
        .init(&mut params, "rnn/lstm_cell", 4)
        .unwrap();
    let names: Vec<(&str, Vec<usize>)> = cell
        .param_ids()
        .into_iter()
        .map(|id| (params.name(id), params.value(id).shape().to_vec()))
        .collect();
    assert_eq!(
        names,
        [
            ("rnn/lstm_cell/kernel", vec![7, 24]),
            ("rnn/lstm_cell/bias", vec![24]),
            ("rnn/lstm_cell/w_f_diag", vec![6]),
            ("rnn/lstm_cell/w_i_diag", vec![6]),
            ("rnn/lstm_cell/w_o_diag", vec![6]),
            ("rnn/lstm_cell/projection/kernel", vec![6, 3]),
        ]
    );
    assert!(params.value(cell.bias()).iter().all(|&v| v == 0.0));
    // The weights come back out as they went in.
    let w = cell.weights(&params).unwrap();
    let mut other = ParamStore::<f64>::new(2);
    let again = LstmCell::from_weights(&mut other, "copy", w.clone()).unwrap();
    assert_eq!(again.weights(&other).unwrap(), w);
    assert_eq!((again.num_units(), again.num_proj()), (6, Some(3)));

    let n = params.len();
    let bad = |params: &mut ParamStore<f64>, config: LstmCellConfig| config.init(params, "bad", 4);
    assert!(bad(&mut params, LstmCellConfig::new(0)).is_err());
    assert!(bad(&mut params, LstmCellConfig::new(3).with_num_proj(0)).is_err());
    assert!(bad(&mut params, LstmCellConfig::new(3).with_proj_clip(1.0)).is_err());
    assert!(bad(&mut params, LstmCellConfig::new(3).with_cell_clip(-1.0)).is_err());
    assert!(bad(&mut params, LstmCellConfig::new(3).with_cell_clip(f64::NAN)).is_err());
    assert!(bad(
        &mut params,
        LstmCellConfig::new(3).with_forget_bias(f64::INFINITY)
    )
    .is_err());
    // A taken name creates nothing, and the error names the cell and the name in its scope.
    let taken = LstmCellConfig::new(6).init(&mut params, "rnn/lstm_cell", 4);
    let message = taken.expect_err("a taken name").to_string();
    assert!(
        message.contains("LstmCell: the parameter name \"rnn/lstm_cell/kernel\" is taken"),
        "{message}"
    );
    assert_eq!(params.len(), n);
    // Shapes that do not fit are shape errors: a kernel with columns for other units or with
    // no input rows, a peephole of the wrong width.
    let mut w2 = lstm_cell_weights(4, 5, true, Some(2), 1);
    w2.kernel = random(&[6, 16], 1.0, 2).into_dimensionality().unwrap();
    assert!(matches!(
        LstmCell::from_weights(&mut params, "w2", w2.clone()),
        Err(Error::Shape { .. })
    ));
    w2.kernel = random(&[2, 20], 1.0, 2).into_dimensionality().unwrap();
    assert!(matches!(
        LstmCell::from_weights(&mut params, "w2", w2),
        Err(Error::Shape { .. })
    ));
    let mut w3 = lstm_cell_weights(4, 5, true, None, 1);
    w3.peepholes.as_mut().unwrap().w_o_diag = vec1(4, 1.0, 3);
    assert!(matches!(
        LstmCell::from_weights(&mut params, "w3", w3),
        Err(Error::Shape { .. })
    ));
    assert_eq!(params.len(), n);
}

/// Without options LstmCell is BasicLstmCell: the same fused kernel, bit for bit; and the
/// tape-op path (here with zero peepholes, which add exact zeros) agrees to rounding.
#[test]
fn lstm_cell_without_options_is_basic_lstm_cell() {
    let mut params = ParamStore::<f64>::new(3);
    let w = lstm_cell_weights(3, 4, false, None, 330);
    let basic = BasicLstmCell::from_weights(
        &mut params,
        "basic",
        w.kernel.clone().into_dyn(),
        w.bias.clone().into_dyn(),
    )
    .unwrap()
    .with_forget_bias(0.5)
    .unwrap();
    let plain = LstmCell::from_weights(&mut params, "plain", w.clone())
        .unwrap()
        .with_forget_bias(0.5)
        .unwrap();
    let zero_peepholes = LstmCellWeights {
        peepholes: Some(LstmPeepholes {
            w_f_diag: ndarray::Array1::zeros(4),
            w_i_diag: ndarray::Array1::zeros(4),
            w_o_diag: ndarray::Array1::zeros(4),
        }),
        ..w
    };
    let taped = LstmCell::from_weights(&mut params, "taped", zero_peepholes)
        .unwrap()
        .with_forget_bias(0.5)
        .unwrap()
        .with_tape_ops(true);
    let x = random(&[3, 5, 3], 1.0, 331);
    let tape = Tape::inference(&params);
    let run = |cell: &dyn Fn(Var) -> (Var, LstmState)| {
        let (out, state) = cell(tape.constant(x.clone()));
        (
            tape.to_array(out),
            tape.to_array(state.c),
            tape.to_array(state.h),
        )
    };
    let lengths = [5, 2, 0];
    let b = run(&|x| {
        dynamic_rnn(
            &tape,
            &basic,
            x,
            RnnOptions::default().sequence_length(&lengths),
        )
        .unwrap()
    });
    let p = run(&|x| {
        dynamic_rnn(
            &tape,
            &plain,
            x,
            RnnOptions::default().sequence_length(&lengths),
        )
        .unwrap()
    });
    let t = run(&|x| {
        dynamic_rnn(
            &tape,
            &taped,
            x,
            RnnOptions::default().sequence_length(&lengths),
        )
        .unwrap()
    });
    assert_eq!(b, p, "bit for bit");
    assert_close(&t.0, &b.0, 1e-15);
    assert_close(&t.1, &b.1, 1e-15);
    assert_close(&t.2, &b.2, 1e-15);
}

fn lstm_cells_with_options(
    params: &mut ParamStore<f64>,
    prefix: &str,
    input: usize,
) -> Vec<LstmCell> {
    let units = 4;
    vec![
        LstmCell::from_weights(
            params,
            format!("{prefix}/peep"),
            lstm_cell_weights(input, units, true, None, 340),
        )
        .unwrap(),
        LstmCell::from_weights(
            params,
            format!("{prefix}/all"),
            lstm_cell_weights(input, units, true, Some(3), 341),
        )
        .unwrap()
        .with_cell_clip(0.4)
        .unwrap()
        .with_proj_clip(0.3)
        .unwrap()
        .with_forget_bias(0.3)
        .unwrap(),
        LstmCell::from_weights(
            params,
            format!("{prefix}/proj"),
            lstm_cell_weights(input, units, false, Some(2), 342),
        )
        .unwrap(),
    ]
}

#[test]
fn lstm_cell_gradients_step_and_sequence() {
    let mut params = ParamStore::<f64>::new(4);
    let cells = lstm_cells_with_options(&mut params, "g", 3);
    let tol = Tolerance::default();
    for cell in &cells {
        let h_depth = cell.output_size();
        let inputs = [
            random(&[2, 3], 1.0, 350),
            random(&[2, 4], 1.0, 351),
            random(&[2, h_depth], 1.0, 352),
        ];
        gradcheck(&params, &inputs, tol, |t, v| {
            let (out, state) = cell.call(t, v[0], &LstmState { c: v[1], h: v[2] })?;
            t.concat(&[out, state.c], 1)
        })
        .unwrap()
        .assert_ok();
        let x = random(&[3, 4, 3], 1.0, 353);
        gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
            let (out, state) = dynamic_rnn(
                t,
                cell,
                v[0],
                RnnOptions::default().sequence_length(&[4, 1, 3]),
            )?;
            flat_concat(t, &[out, state.c, state.h])
        })
        .unwrap()
        .assert_ok();
    }
}

/// The tensors flattened and joined into one vector (for gradient checks of several outputs).
fn flat_concat(t: &Tape<'_, f64>, vars: &[Var]) -> recurrent::Result<Var> {
    let flat = vars
        .iter()
        .map(|&v| {
            let n = t.shape(v).iter().product();
            t.reshape(v, &[n])
        })
        .collect::<recurrent::Result<Vec<_>>>()?;
    t.concat(&flat, 0)
}

/// What [`through_wrapping_runners`] returns.
struct WrappingRuns<F, B, M> {
    fw_out: Var,
    bw_out: Var,
    fw_state: F,
    bw_state: B,
    static_outs: Vec<Var>,
    stack_out: Var,
    stack_state: M,
}

/// `x` with `lengths` through the runners that wrap a cell: `bidirectional_dynamic_rnn` and
/// `static_bidirectional_rnn` of `fw` and `bw`, and `dynamic_rnn` of `stack`.
fn through_wrapping_runners<F: Cell, B: Cell, M: Cell>(
    t: &Tape<'_, f64>,
    (fw, bw, stack): (&F, &B, &M),
    x: Var,
    lengths: &[usize],
) -> recurrent::Result<WrappingRuns<F::State, B::State, M::State>> {
    let ((fw_out, bw_out), (fw_state, bw_state)) = bidirectional_dynamic_rnn(
        t,
        fw,
        bw,
        x,
        BidirectionalOptions::default().sequence_length(lengths),
    )?;
    let steps = t.unstack(x, 1)?;
    let (static_outs, _, _) = static_bidirectional_rnn(
        t,
        fw,
        bw,
        &steps,
        BidirectionalOptions::default().sequence_length(lengths),
    )?;
    let (stack_out, stack_state) =
        dynamic_rnn(t, stack, x, RnnOptions::default().sequence_length(lengths))?;
    Ok(WrappingRuns {
        fw_out,
        bw_out,
        fw_state,
        bw_state,
        static_outs,
        stack_out,
        stack_state,
    })
}

#[test]
fn lstm_cell_through_bidirectional_runners_and_multicell() {
    let mut params = ParamStore::<f64>::new(5);
    let fw = lstm_cells_with_options(&mut params, "fw", 2).remove(1);
    let bw = lstm_cells_with_options(&mut params, "bw", 2).remove(0);
    // Layer 0 projects 4 units to 3; layer 1 reads those 3.
    let stack = MultiCell::new(vec![
        lstm_cells_with_options(&mut params, "m0", 2).remove(1),
        lstm_cells_with_options(&mut params, "m1", 3).remove(0),
    ])
    .unwrap();
    assert_eq!(stack.state_size(), vec![4, 3, 4, 4]);
    let x = random(&[2, 3, 2], 1.0, 360);
    let lengths = [3usize, 2];
    let tol = Tolerance::default();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let runs = through_wrapping_runners(t, (&fw, &bw, &stack), v[0], &lengths)?;
        flat_concat(
            t,
            &[
                runs.fw_out,
                runs.bw_out,
                runs.fw_state.c,
                runs.bw_state.h,
                runs.static_outs[0],
                runs.static_outs[2],
                runs.stack_out,
                runs.stack_state[0].h,
                runs.stack_state[1].c,
            ],
        )
    })
    .unwrap()
    .assert_ok();
    // The static bidirectional runner gives concat(fw, bw) of the dynamic one.
    let tape = Tape::inference(&params);
    let xv = tape.constant(x);
    let ((f, b), _) = bidirectional_dynamic_rnn(
        &tape,
        &fw,
        &bw,
        xv,
        BidirectionalOptions::default().sequence_length(&lengths),
    )
    .unwrap();
    let steps = tape.unstack(xv, 1).unwrap();
    let (outs, _, _) = static_bidirectional_rnn(
        &tape,
        &fw,
        &bw,
        &steps,
        BidirectionalOptions::default().sequence_length(&lengths),
    )
    .unwrap();
    for (t, &o) in outs.iter().enumerate() {
        let expected = ndarray::concatenate(
            Axis(1),
            &[
                tape.value(f).index_axis(Axis(1), t),
                tape.value(b).index_axis(Axis(1), t),
            ],
        )
        .unwrap();
        assert_close(&tape.to_array(o), &expected.into_dyn(), 1e-14);
    }
}

#[test]
fn lstm_cell_static_dynamic_and_contract() {
    let mut params = ParamStore::<f64>::new(6);
    let cells = lstm_cells_with_options(&mut params, "sd", 3);
    let plain = LstmCellConfig::new(4)
        .init(&mut params, "plain", 3)
        .unwrap();
    for lengths in [None, Some(&[4usize, 0, 2][..])] {
        for with_initial in [false, true] {
            for cell in cells.iter().chain([&plain]) {
                assert_static_equals_dynamic(&params, cell, lengths, with_initial);
            }
        }
    }
    for cell in cells.iter().chain([&plain]) {
        contract(&params, cell);
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNormBasicLstmCell (tf.contrib.rnn.LayerNormBasicLSTMCell)
// ---------------------------------------------------------------------------------------------

/// Random weights with (`layer_norm`) gammas and betas far from 1 and 0, or a bias.
fn layer_norm_weights(
    input: usize,
    units: usize,
    layer_norm: bool,
    seed: u64,
) -> LayerNormLstmWeights<f64> {
    LayerNormLstmWeights {
        kernel: random(&[input + units, 4 * units], 0.8, seed)
            .into_dimensionality()
            .unwrap(),
        bias: (!layer_norm).then(|| vec1(4 * units, 0.5, seed + 1)),
        norms: layer_norm.then(|| {
            std::array::from_fn(|k| {
                (
                    vec1(units, 0.5, seed + 10 + k as u64) + 1.0,
                    vec1(units, 0.5, seed + 20 + k as u64),
                )
            })
        }),
    }
}

/// TensorFlow's `LayerNormBasicLSTMCell.call` (no dropout) written out with plain ndarray.
fn layer_norm_reference(
    w: &LayerNormLstmWeights<f64>,
    forget_bias: f64,
    x: &ndarray::Array2<f64>,
    c: &ndarray::Array2<f64>,
    h: &ndarray::Array2<f64>,
) -> (ndarray::Array2<f64>, ndarray::Array2<f64>) {
    let units = w.kernel.ncols() / 4;
    let mut z = concat_columns(x, h).dot(&w.kernel);
    if let Some(b) = &w.bias {
        z += b;
    }
    // (v - mean) / sqrt(var + 1e-12) * gamma + beta, per row.
    let ln = |v: ndarray::Array2<f64>, k: usize| match &w.norms {
        None => v,
        Some(norms) => {
            let (g, b) = &norms[k];
            let mut out = v.clone();
            for mut row in out.rows_mut() {
                let mean = row.sum() / units as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / units as f64;
                row.mapv_inplace(|v| (v - mean) / (var + 1e-12).sqrt());
                row *= g;
                row += b;
            }
            out
        }
    };
    let block = |k: usize| z.slice(s![.., k * units..(k + 1) * units]).to_owned();
    let (i, j, f, o) = (
        ln(block(0), 0),
        ln(block(1), 1),
        ln(block(2), 2),
        ln(block(3), 3),
    );
    let c2 = ln(
        c * &(f + forget_bias).mapv(sigmoid) + i.mapv(sigmoid) * j.mapv(f64::tanh),
        4,
    );
    let h2 = c2.mapv(f64::tanh) * o.mapv(sigmoid);
    (c2, h2)
}

#[test]
fn layer_norm_lstm_matches_tensorflow_equations_and_names() {
    let (batch, input, units) = (3, 4, 5);
    for layer_norm in [true, false] {
        let w = layer_norm_weights(input, units, layer_norm, 400);
        let mut params = ParamStore::<f64>::new(0);
        let cell = LayerNormBasicLstmCell::from_weights(&mut params, "ln", w.clone())
            .unwrap()
            .with_forget_bias(0.6)
            .unwrap();
        assert_eq!(cell.weights(&params).unwrap(), w);
        let tape = Tape::new(&params);
        let (mut c, mut h) = (
            random_matrix(batch, units, 401),
            random_matrix(batch, units, 402),
        );
        let mut state = LstmState {
            c: tape.constant(c.clone().into_dyn()),
            h: tape.constant(h.clone().into_dyn()),
        };
        for t in 0..3 {
            let x = random_matrix(batch, input, 410 + t);
            let (out, new) = cell
                .call(&tape, tape.constant(x.clone().into_dyn()), &state)
                .unwrap();
            (c, h) = layer_norm_reference(&w, 0.6, &x, &c, &h);
            assert_close(&tape.to_array(new.c), &c.clone().into_dyn(), 1e-13);
            assert_close(&tape.to_array(out), &h.clone().into_dyn(), 1e-13);
            assert_eq!(out, new.h);
            state = new;
        }
    }
    // TensorFlow's names, order and initial values.
    let mut params = ParamStore::<f64>::new(1);
    let cell = LayerNormLstmConfig::new(3)
        .with_norm_gain(2.0)
        .with_norm_shift(0.5)
        .init(&mut params, "rnn/layer_norm_basic_lstm_cell", 2)
        .unwrap();
    let names: Vec<String> = cell
        .param_ids()
        .into_iter()
        .map(|id| {
            params
                .name(id)
                .trim_start_matches("rnn/layer_norm_basic_lstm_cell/")
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "kernel",
            "input/gamma",
            "input/beta",
            "transform/gamma",
            "transform/beta",
            "forget/gamma",
            "forget/beta",
            "output/gamma",
            "output/beta",
            "state/gamma",
            "state/beta"
        ]
    );
    assert_eq!(params.value(cell.kernel()).shape(), [5, 12]);
    for (k, id) in cell.param_ids().into_iter().enumerate().skip(1) {
        let want = if k % 2 == 1 { 2.0 } else { 0.5 };
        assert!(
            params.value(id).iter().all(|&v| v == want),
            "{}",
            params.name(id)
        );
    }
    let plain = LayerNormLstmConfig::new(3)
        .with_layer_norm(false)
        .init(&mut params, "plain", 2)
        .unwrap();
    assert_eq!(params.name(plain.param_ids()[1]), "plain/bias");
    assert_eq!(plain.param_ids().len(), 2);
    // Bad configurations are errors and create nothing.
    let n = params.len();
    assert!(LayerNormLstmConfig::new(3)
        .with_dropout_keep_prob(0.0)
        .init(&mut params, "b", 2)
        .is_err());
    assert!(LayerNormLstmConfig::new(0)
        .init(&mut params, "b", 2)
        .is_err());
    for eps in [0.0, -1e-3, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            LayerNormLstmConfig::new(3)
                .with_epsilon(eps)
                .init(&mut params, "b", 2),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(LayerNormLstmConfig::new(3)
        .init(&mut params, "plain", 2)
        .is_err());
    let mut both = layer_norm_weights(2, 3, true, 1);
    both.bias = Some(vec1(12, 1.0, 2));
    assert!(LayerNormBasicLstmCell::from_weights(&mut params, "b", both).is_err());
    let mut narrow = layer_norm_weights(2, 3, true, 1);
    narrow.norms.as_mut().unwrap()[4].1 = vec1(2, 1.0, 3);
    assert!(matches!(
        LayerNormBasicLstmCell::from_weights(&mut params, "b", narrow),
        Err(Error::Shape { .. })
    ));
    assert_eq!(params.len(), n);
}

/// `w` in another float type.
fn cast_layer_norm_weights<T: recurrent::Scalar>(
    w: &LayerNormLstmWeights<f64>,
) -> LayerNormLstmWeights<T> {
    let c1 = |v: &ndarray::Array1<f64>| v.mapv(T::from_f64_lossy);
    LayerNormLstmWeights {
        kernel: w.kernel.mapv(T::from_f64_lossy),
        bias: w.bias.as_ref().map(c1),
        norms: w
            .norms
            .as_ref()
            .map(|n| std::array::from_fn(|k| (c1(&n[k].0), c1(&n[k].1)))),
    }
}

/// The gradient of `sum(h_T^2)` for every parameter of a `LayerNormBasicLstmCell` (TensorFlow's
/// initial gains and shifts, 1 and 0) over a zero state, run by `dynamic_rnn` over `zero_steps`
/// all-zero inputs then two random ones, each input plus `offset`; in `T`, returned in `f64`.
fn zero_input_gradients<T: recurrent::Scalar>(
    zero_steps: usize,
    epsilon: f64,
    offset: f64,
) -> Vec<ndarray::ArrayD<f64>> {
    let (batch, input, units) = (2, 3, 4);
    let mut w = layer_norm_weights(input, units, true, 450);
    for (g, b) in w.norms.as_mut().unwrap() {
        g.fill(1.0);
        b.fill(0.0);
    }
    let mut params = ParamStore::<T>::new(0);
    let cell = LayerNormBasicLstmCell::from_weights(&mut params, "ln", cast_layer_norm_weights(&w))
        .unwrap()
        .with_epsilon(epsilon)
        .unwrap();
    let mut x = random(&[batch, zero_steps + 2, input], 1.0, 451);
    x.slice_mut(s![.., ..zero_steps, ..]).fill(0.0);
    x += offset;
    let tape = Tape::new(&params);
    let xv = tape.constant(x.mapv(T::from_f64_lossy));
    let (_, state) = dynamic_rnn(&tape, &cell, xv, RnnOptions::default()).unwrap();
    let grads = tape.backward(tape.sum(tape.square(state.h))).unwrap();
    cell.param_ids()
        .into_iter()
        .map(|id| grads.get(id).unwrap().mapv(|v| v.to_f64_lossless()))
        .collect()
}

fn max_abs(grads: &[ndarray::ArrayD<f64>]) -> f64 {
    grads
        .iter()
        .flat_map(|g| g.iter())
        .fold(0.0, |m, v| m.max(v.abs()))
}

/// Why `mnist_stacked --cell layer-norm-lstm` failed at step 1 (tensorflow/tensorflow#21929 in
/// TensorFlow): a zero input over a zero state makes every normalised row all zeros, whose
/// derivative is `1 / sqrt(epsilon)` = 1e6, and each such step multiplies the gradient by about
/// 1e11. It is the exact derivative (`f64` agrees with `f32` while `f32` can hold it, and grows
/// past `f32::MAX`), so the remedies are a larger epsilon or an input that is not all zeros.
#[test]
fn layer_norm_lstm_on_zero_inputs_over_a_zero_state() {
    let tf = recurrent::cell::LAYER_NORM_EPSILON;
    let mut previous = 0.0;
    for zero_steps in 0..4 {
        let (g32, g64) = (
            zero_input_gradients::<f32>(zero_steps, tf, 0.0),
            zero_input_gradients::<f64>(zero_steps, tf, 0.0),
        );
        let big = max_abs(&g64);
        assert!(g64.iter().flatten().all(|v| v.is_finite()));
        // The first zero step multiplies the largest gradient by more than 1e4, each further
        // one by more than 1e9 (measured: 0.93, 1.2e5, 3.3e16, 1.5e27).
        let factor = if zero_steps == 1 { 1e4 } else { 1e9 };
        assert!(big > previous * factor, "{zero_steps} zero steps: {big:e}");
        previous = big;
        // f32 computes the same derivative, to its precision, while it is representable.
        if big < f64::from(f32::MAX) {
            for (a, e) in g32.iter().zip(&g64) {
                assert_close(&(a / big), &(e / big), 1e-4);
            }
        }
    }
    // Five zero steps: beyond what f32 can hold, so f32 must overflow (the reported failure).
    let g64 = zero_input_gradients::<f64>(5, tf, 0.0);
    assert!(max_abs(&g64) > f64::from(f32::MAX), "{:e}", max_abs(&g64));
    assert!(zero_input_gradients::<f32>(5, tf, 0.0)
        .iter()
        .flatten()
        .any(|v| !v.is_finite()));
    // A larger epsilon bounds the gain (Keras's 1e-3: about 1e3 per step) ...
    let g = zero_input_gradients::<f32>(5, 1e-3, 0.0);
    assert!(max_abs(&g) < 1e15 && g.iter().flatten().all(|v| v.is_finite()));
    // ... and an input that is not all zeros (here a constant 0.1 added to every element)
    // removes the fixed point: ordinary gradients with TensorFlow's epsilon, in f32 and f64.
    let (g32, g64) = (
        zero_input_gradients::<f32>(6, tf, 0.1),
        zero_input_gradients::<f64>(6, tf, 0.1),
    );
    assert!(max_abs(&g64) < 1e3, "{:e}", max_abs(&g64));
    for (a, e) in g32.iter().zip(&g64) {
        assert_close(a, e, 1e-3);
    }
    // And the cell's gradient at an exactly zero input and state is the finite-difference one
    // where the differences can resolve it (epsilon 1e-3: curvature on a scale of 0.03).
    let mut params = ParamStore::<f64>::new(0);
    let cell = LayerNormBasicLstmCell::from_weights(
        &mut params,
        "ln",
        layer_norm_weights(3, 4, true, 452),
    )
    .unwrap()
    .with_epsilon(1e-3)
    .unwrap();
    assert_eq!(cell.epsilon(), 1e-3);
    let zeros = [
        ArrayD::zeros(IxDyn(&[2, 3])),
        ArrayD::zeros(IxDyn(&[2, 4])),
        ArrayD::zeros(IxDyn(&[2, 4])),
    ];
    gradcheck(&params, &zeros, Tolerance::default(), |t, v| {
        let (out, state) = cell.call(t, v[0], &LstmState { c: v[1], h: v[2] })?;
        t.concat(&[out, state.c], 1)
    })
    .unwrap()
    .assert_ok();
}

/// The recurrent dropout drops the candidate g = tanh(j) and scales kept values by 1 / keep.
/// With a zero kernel, c = 0 and no layer norm: c' = σ(i) g = 0.5 * tanh(b_j) * mask / keep.
#[test]
fn layer_norm_lstm_dropout_drops_the_candidate() {
    let units = 200;
    let mut bias = ndarray::Array1::zeros(4 * units);
    bias.slice_mut(s![units..2 * units]).fill(0.5_f64.atanh());
    let w = LayerNormLstmWeights {
        kernel: ndarray::Array2::zeros((2 + units, 4 * units)),
        bias: Some(bias),
        norms: None,
    };
    let mut params = ParamStore::<f64>::new(0);
    let cell = LayerNormBasicLstmCell::from_weights(&mut params, "ln", w)
        .unwrap()
        .with_dropout_keep_prob(0.6)
        .unwrap();
    let x = random(&[50, 2], 1.0, 420);
    let tape = Tape::new(&params).with_seed(5);
    let (_, state) = cell
        .call(
            &tape,
            tape.constant(x.clone()),
            &cell.zero_state(&tape, 50).unwrap(),
        )
        .unwrap();
    let c = tape.to_array(state.c);
    let kept = c.iter().filter(|&&v| v != 0.0).count() as f64 / c.len() as f64;
    assert!((kept - 0.6).abs() < 0.02, "kept {kept}");
    assert!(c
        .iter()
        .all(|&v| v == 0.0 || (v - 0.25 / 0.6).abs() < 1e-15));
    // Inference: no dropout.
    let tape = Tape::inference(&params);
    let (_, state) = cell
        .call(
            &tape,
            tape.constant(x),
            &cell.zero_state(&tape, 50).unwrap(),
        )
        .unwrap();
    assert!(tape
        .value(state.c)
        .iter()
        .all(|&v| (v - 0.25).abs() < 1e-15));
}

fn layer_norm_cells(
    params: &mut ParamStore<f64>,
    prefix: &str,
    input: usize,
) -> Vec<LayerNormBasicLstmCell> {
    vec![
        LayerNormBasicLstmCell::from_weights(
            params,
            format!("{prefix}/ln"),
            layer_norm_weights(input, 4, true, 430),
        )
        .unwrap(),
        LayerNormBasicLstmCell::from_weights(
            params,
            format!("{prefix}/ln_dropout"),
            layer_norm_weights(input, 4, true, 431),
        )
        .unwrap()
        .with_dropout_keep_prob(0.7)
        .unwrap()
        .with_forget_bias(0.2)
        .unwrap(),
        LayerNormBasicLstmCell::from_weights(
            params,
            format!("{prefix}/plain_dropout"),
            layer_norm_weights(input, 4, false, 432),
        )
        .unwrap()
        .with_dropout_keep_prob(0.8)
        .unwrap(),
    ]
}

#[test]
fn layer_norm_lstm_gradients_runners_multicell_and_contract() {
    let mut params = ParamStore::<f64>::new(7);
    let cells = layer_norm_cells(&mut params, "a", 3);
    let tol = Tolerance::default();
    // gradcheck seeds each evaluation's tape identically, so the dropout masks are fixed.
    for cell in &cells {
        let inputs = [
            random(&[2, 3], 1.0, 440),
            random(&[2, 4], 1.0, 441),
            random(&[2, 4], 1.0, 442),
        ];
        gradcheck(&params, &inputs, tol, |t, v| {
            let (out, state) = cell.call(t, v[0], &LstmState { c: v[1], h: v[2] })?;
            t.concat(&[out, state.c], 1)
        })
        .unwrap()
        .assert_ok();
        let x = random(&[3, 4, 3], 1.0, 443);
        gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
            let (out, state) = dynamic_rnn(
                t,
                cell,
                v[0],
                RnnOptions::default().sequence_length(&[4, 1, 3]),
            )?;
            flat_concat(t, &[out, state.c, state.h])
        })
        .unwrap()
        .assert_ok();
        for lengths in [None, Some(&[4usize, 0, 2][..])] {
            for with_initial in [false, true] {
                assert_static_equals_dynamic(&params, cell, lengths, with_initial);
            }
        }
        contract(&params, cell);
    }
    let bw = layer_norm_cells(&mut params, "bw", 2).remove(1);
    let fw = layer_norm_cells(&mut params, "fw", 2).remove(0);
    let stack = MultiCell::new(vec![
        layer_norm_cells(&mut params, "m0", 2).remove(1),
        layer_norm_cells(&mut params, "m1", 4).remove(0),
    ])
    .unwrap();
    contract(&params, &stack);
    let x = random(&[2, 3, 2], 1.0, 444);
    let lengths = [3usize, 2];
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let runs = through_wrapping_runners(t, (&fw, &bw, &stack), v[0], &lengths)?;
        flat_concat(
            t,
            &[
                runs.fw_out,
                runs.bw_out,
                runs.fw_state.c,
                runs.bw_state.h,
                runs.static_outs[1],
                runs.stack_out,
                runs.stack_state[0].c,
            ],
        )
    })
    .unwrap()
    .assert_ok();
}

// ---------------------------------------------------------------------------------------------
// ResidualWrapper, HighwayWrapper, ZoneoutWrapper
// ---------------------------------------------------------------------------------------------

#[test]
fn residual_and_highway_match_their_equations() {
    let (batch, n) = (3, 4);
    let mut params = ParamStore::<f64>::new(8);
    let inner = lstm(&mut params, "rnn/basic_lstm_cell", n, n, 500);
    let residual = ResidualWrapper::new(inner.clone()).unwrap();
    let coupled =
        HighwayWrapper::new(&mut params, "rnn", inner.clone(), HighwayOptions::default()).unwrap();
    let separate = HighwayWrapper::new(
        &mut params,
        "rnn2",
        inner.clone(),
        HighwayOptions {
            couple_carry_transform_gates: false,
            carry_bias_init: 2.0,
        },
    )
    .unwrap();
    // TensorFlow's names and initial biases.
    let id = |name: &str| params.id(name).unwrap();
    assert!(params.value(id("rnn/carry_b")).iter().all(|&v| v == 1.0));
    assert!(params.value(id("rnn2/carry_b")).iter().all(|&v| v == 2.0));
    assert!(params
        .value(id("rnn2/transform_b"))
        .iter()
        .all(|&v| v == -2.0));
    assert_eq!(params.value(id("rnn2/transform_w")).shape(), [n, n]);
    assert!(params.id("rnn/transform_w").is_none());
    // Random gate weights, so that every term shows.
    for name in [
        "rnn/carry_w",
        "rnn/carry_b",
        "rnn2/carry_w",
        "rnn2/carry_b",
        "rnn2/transform_w",
        "rnn2/transform_b",
    ] {
        let i = params.id(name).unwrap();
        let shape = params.value(i).shape().to_vec();
        params
            .set(i, random(&shape, 0.9, 510 + name.len() as u64))
            .unwrap();
    }
    let id = |name: &str| params.id(name).unwrap();
    let value = |name: &str| params.value(id(name)).clone();
    let matrix = |name: &str| value(name).into_dimensionality::<ndarray::Ix2>().unwrap();
    let x = random_matrix(batch, n, 520);
    let tape = Tape::new(&params);
    let xv = tape.constant(x.clone().into_dyn());
    let zero = inner.zero_state(&tape, batch).unwrap();
    let (out, _) = inner.call(&tape, xv, &zero).unwrap();
    let out = tape
        .to_array(out)
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let (r, rs) = residual.call(&tape, xv, &zero).unwrap();
    assert_close(&tape.to_array(r), &(&x + &out).into_dyn(), 1e-15);
    assert_ne!(r, rs.h, "the state is the cell's, not the sum");
    // Highway: carry = σ(x W_c + b_c); transform = 1 - carry or σ(x W_t + b_t).
    let gate = |w: &str, b: &str| {
        (x.dot(&matrix(w)) + &value(b).into_dimensionality::<ndarray::Ix1>().unwrap()).mapv(sigmoid)
    };
    let carry = gate("rnn/carry_w", "rnn/carry_b");
    let expected = &x * &carry + &out * &carry.mapv(|c| 1.0 - c);
    let (hw, _) = coupled.call(&tape, xv, &zero).unwrap();
    assert_close(&tape.to_array(hw), &expected.into_dyn(), 1e-15);
    let expected = &x * &gate("rnn2/carry_w", "rnn2/carry_b")
        + &out * &gate("rnn2/transform_w", "rnn2/transform_b");
    let (hw2, _) = separate.call(&tape, xv, &zero).unwrap();
    assert_close(&tape.to_array(hw2), &expected.into_dyn(), 1e-15);
    // Widths must match; names must be free.
    let wide = lstm(&mut params, "wide", n, n + 1, 530);
    assert!(matches!(
        ResidualWrapper::new(wide.clone()),
        Err(Error::Shape { .. })
    ));
    let n_params = params.len();
    assert!(matches!(
        HighwayWrapper::new(&mut params, "w", wide, HighwayOptions::default()),
        Err(Error::Shape { .. })
    ));
    assert!(HighwayWrapper::new(&mut params, "rnn", inner, HighwayOptions::default()).is_err());
    assert_eq!(params.len(), n_params);
}

#[test]
fn zoneout_keeps_previous_units_at_its_rates_and_averages_at_inference() {
    let (batch, n) = (100, 50);
    let mut params = ParamStore::<f64>::new(9);
    let inner = lstm(&mut params, "lstm", 3, n, 540);
    let cell = ZoneoutWrapper::new(inner.clone(), 0.3, 0.6).unwrap();
    assert!(ZoneoutWrapper::new(inner.clone(), -0.1, 0.0).is_err());
    assert!(ZoneoutWrapper::new(inner.clone(), 0.0, 1.01).is_err());
    let x = random(&[batch, 3], 1.0, 541);
    let (c0, h0) = (random(&[batch, n], 1.0, 542), random(&[batch, n], 1.0, 543));
    let run = |tape: &Tape<'_, f64>, cell: &dyn Fn(Var, &LstmState) -> (Var, LstmState)| {
        let state = LstmState {
            c: tape.constant(c0.clone()),
            h: tape.constant(h0.clone()),
        };
        let (out, new) = cell(tape.constant(x.clone()), &state);
        (
            tape.to_array(out),
            tape.to_array(new.c),
            tape.to_array(new.h),
            out == new.h,
        )
    };
    // Training: each unit is its previous value (rate z) or the cell's new value.
    let tape = Tape::new(&params).with_seed(11);
    let (_, new_c, new_h, _) = run(&tape, &|x, s| inner.call(&tape, x, s).unwrap());
    let (out, c, h, out_is_h) = run(&tape, &|x, s| cell.call(&tape, x, s).unwrap());
    assert!(out_is_h, "the output is the zoned-out h");
    assert_eq!(out, h);
    let mut masks = Vec::new();
    for (zoned, prev, new, rate) in [(&c, &c0, &new_c, 0.3), (&h, &h0, &new_h, 0.6)] {
        let mut kept = Vec::new();
        for ((z, p), nv) in zoned.iter().zip(prev.iter()).zip(new.iter()) {
            assert!(z == p || z == nv, "{z} is neither {p} nor {nv}");
            kept.push(z == p);
        }
        let share = kept.iter().filter(|&&k| k).count() as f64 / kept.len() as f64;
        assert!(
            (share - rate).abs() < 0.02,
            "kept previous {share}, rate {rate}"
        );
        masks.push(kept);
    }
    assert_ne!(masks[0], masks[1], "c and h draw their own masks");
    // Inference: the expectation z * prev + (1 - z) * new.
    let tape = Tape::inference(&params);
    let (_, new_c, new_h, _) = run(&tape, &|x, s| inner.call(&tape, x, s).unwrap());
    let (_, c, h, _) = run(&tape, &|x, s| cell.call(&tape, x, s).unwrap());
    assert_close(&c, &(&c0 * 0.3 + &new_c * 0.7), 1e-15);
    assert_close(&h, &(&h0 * 0.6 + &new_h * 0.4), 1e-15);
    // Rates 0 leave the cell as it is; on a GRU the one state tensor takes zoneout_h.
    let gru = GruCell::new(&mut params, "gru", 3, n).unwrap();
    let tape = Tape::inference(&params);
    let h_prev = tape.constant(h0.clone());
    let (plain, _) = gru.call(&tape, tape.constant(x.clone()), &h_prev).unwrap();
    let zoned = ZoneoutWrapper::new(gru.clone(), 0.9, 0.25).unwrap();
    let (out, state) = zoned
        .call(&tape, tape.constant(x.clone()), &h_prev)
        .unwrap();
    assert_eq!(out, state);
    assert_close(
        &tape.to_array(out),
        &(&h0 * 0.25 + &tape.to_array(plain) * 0.75),
        1e-15,
    );
    let none = ZoneoutWrapper::new(gru, 0.0, 0.0).unwrap();
    let (same, _) = none.call(&tape, tape.constant(x), &h_prev).unwrap();
    assert_close(&tape.to_array(same), &tape.to_array(plain), 0.0);
}

#[test]
fn wrappers_gradients_static_dynamic_bidirectional_multicell_and_contract() {
    let mut params = ParamStore::<f64>::new(10);
    let n = 3;
    let peep = |params: &mut ParamStore<f64>, scope: &str, seed| {
        LstmCell::from_weights(params, scope, lstm_cell_weights(n, n, true, None, seed)).unwrap()
    };
    let residual = ResidualWrapper::new(lstm(&mut params, "res", n, n, 550)).unwrap();
    let residual_taped = ResidualWrapper::new(peep(&mut params, "res_peep", 551)).unwrap();
    let inner = lstm(&mut params, "hw/lstm", n, n, 552);
    let highway = HighwayWrapper::new(&mut params, "hw", inner, HighwayOptions::default()).unwrap();
    let inner = peep(&mut params, "hw2/lstm", 553);
    let highway_separate = HighwayWrapper::new(
        &mut params,
        "hw2",
        inner,
        HighwayOptions {
            couple_carry_transform_gates: false,
            carry_bias_init: 0.5,
        },
    )
    .unwrap();
    let zoneout = ZoneoutWrapper::new(lstm(&mut params, "zo", n, n, 554), 0.4, 0.3).unwrap();
    let zoneout_gru =
        ZoneoutWrapper::new(GruCell::new(&mut params, "zo_gru", n, n).unwrap(), 0.0, 0.5).unwrap();
    // GNMT-style residual stack, a zoneout stack and zoneout around a stack.
    let residual_stack = MultiCell::new(vec![
        ResidualWrapper::new(lstm(&mut params, "rs0", n, n, 555)).unwrap(),
        ResidualWrapper::new(lstm(&mut params, "rs1", n, n, 556)).unwrap(),
    ])
    .unwrap();
    let zoneout_stack = MultiCell::new(vec![
        ZoneoutWrapper::new(lstm(&mut params, "zs0", n, n, 557), 0.5, 0.2).unwrap(),
        ZoneoutWrapper::new(lstm(&mut params, "zs1", n, n, 558), 0.5, 0.2).unwrap(),
    ])
    .unwrap();
    let around_stack = ZoneoutWrapper::new(
        MultiCell::new(vec![
            lstm(&mut params, "as0", n, n, 559),
            lstm(&mut params, "as1", n, n, 560),
        ])
        .unwrap(),
        0.3,
        0.3,
    )
    .unwrap();

    let tol = Tolerance::default();
    let x = random(&[3, 4, n], 1.0, 561);
    let lengths = [4usize, 1, 3];
    // gradcheck seeds each evaluation's tape identically, so the zoneout masks are fixed.
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let mut parts = Vec::new();
        let (o, s) = dynamic_rnn(
            t,
            &residual,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?;
        parts.extend([o, s.c]);
        let (o, s) = dynamic_rnn(
            t,
            &residual_taped,
            v[0],
            RnnOptions::default()
                .sequence_length(&[3, 1, 2, 0])
                .time_major(true),
        )?;
        parts.extend([o, s.h]);
        let (o, s) = dynamic_rnn(
            t,
            &highway,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?;
        parts.extend([o, s.h]);
        let (o, s) = dynamic_rnn(t, &highway_separate, v[0], RnnOptions::default())?;
        parts.extend([o, s.c]);
        let (o, s) = dynamic_rnn(
            t,
            &zoneout,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?;
        parts.extend([o, s.c, s.h]);
        let (o, s) = dynamic_rnn(
            t,
            &zoneout_gru,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?;
        parts.extend([o, s]);
        let (o, s) = dynamic_rnn(
            t,
            &residual_stack,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?;
        parts.extend([o, s[0].c]);
        let (o, s) = dynamic_rnn(
            t,
            &zoneout_stack,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?;
        parts.extend([o, s[1].c]);
        let (o, s) = dynamic_rnn(t, &around_stack, v[0], RnnOptions::default())?;
        parts.extend([o, s[0].h]);
        flat_concat(t, &parts)
    })
    .unwrap()
    .assert_ok();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let ((f, b), (sf, sb)) = bidirectional_dynamic_rnn(
            t,
            &highway,
            &residual,
            v[0],
            BidirectionalOptions::default().sequence_length(&lengths),
        )?;
        let steps = t.unstack(v[0], 1)?;
        let (outs, _, sz) = static_bidirectional_rnn(
            t,
            &residual_taped,
            &zoneout,
            &steps,
            BidirectionalOptions::default().sequence_length(&lengths),
        )?;
        flat_concat(t, &[f, b, sf.c, sb.h, outs[0], outs[3], sz.c])
    })
    .unwrap()
    .assert_ok();
    for lengths in [None, Some(&[4usize, 0, 2][..])] {
        for with_initial in [false, true] {
            assert_static_equals_dynamic(&params, &residual, lengths, with_initial);
            assert_static_equals_dynamic(&params, &residual_taped, lengths, with_initial);
            assert_static_equals_dynamic(&params, &highway, lengths, with_initial);
            assert_static_equals_dynamic(&params, &highway_separate, lengths, with_initial);
            assert_static_equals_dynamic(&params, &zoneout, lengths, with_initial);
            assert_static_equals_dynamic(&params, &residual_stack, lengths, with_initial);
            assert_static_equals_dynamic(&params, &around_stack, lengths, with_initial);
        }
    }
    // Time-major runs of the whole-sequence paths are the batch-major ones transposed, with the
    // outputs past each length zero.
    let tape = Tape::inference(&params);
    let xt = x.view().permuted_axes(IxDyn(&[1, 0, 2])).to_owned();
    for (bm, tm) in [
        (
            dynamic_rnn(
                &tape,
                &residual,
                tape.constant(x.clone()),
                RnnOptions::default().sequence_length(&lengths),
            )
            .unwrap()
            .0,
            dynamic_rnn(
                &tape,
                &residual,
                tape.constant(xt.clone()),
                RnnOptions::default()
                    .sequence_length(&lengths)
                    .time_major(true),
            )
            .unwrap()
            .0,
        ),
        (
            dynamic_rnn(
                &tape,
                &highway,
                tape.constant(x.clone()),
                RnnOptions::default().sequence_length(&lengths),
            )
            .unwrap()
            .0,
            dynamic_rnn(
                &tape,
                &highway,
                tape.constant(xt.clone()),
                RnnOptions::default()
                    .sequence_length(&lengths)
                    .time_major(true),
            )
            .unwrap()
            .0,
        ),
    ] {
        let tm = tape
            .value(tm)
            .view()
            .permuted_axes(IxDyn(&[1, 0, 2]))
            .to_owned();
        assert_close(&tm, &tape.to_array(bm), 1e-14);
        assert!(tm.slice(s![1, 1.., ..]).iter().all(|&v| v == 0.0));
    }
    contract(&params, &residual);
    contract(&params, &residual_taped);
    contract(&params, &highway);
    contract(&params, &highway_separate);
    contract(&params, &zoneout);
    contract(&params, &zoneout_gru);
    contract(&params, &residual_stack);
    contract(&params, &zoneout_stack);
    contract(&params, &around_stack);
}

/// The new cells and wrappers stack with other kinds through `BoxedCell`: a projected,
/// clipped peephole LSTM, zoneout around a layer-normalised LSTM, and a highway around a
/// residual GRU. (Only layer 1 draws random numbers, so stepping and the layer-by-layer sequence
/// path draw the same masks.)
#[test]
fn new_cells_stack_with_other_kinds_as_boxed_cells() {
    let mut params = ParamStore::<f64>::new(11);
    let l0 = LstmCell::from_weights(
        &mut params,
        "b0",
        lstm_cell_weights(2, 4, true, Some(3), 700),
    )
    .unwrap()
    .with_cell_clip(0.5)
    .unwrap();
    let l1 = ZoneoutWrapper::new(
        LayerNormBasicLstmCell::from_weights(
            &mut params,
            "b1",
            layer_norm_weights(3, 3, true, 701),
        )
        .unwrap(),
        0.3,
        0.2,
    )
    .unwrap();
    let gru = ResidualWrapper::new(GruCell::new(&mut params, "b2/gru", 3, 3).unwrap()).unwrap();
    let l2 = HighwayWrapper::new(&mut params, "b2", gru, HighwayOptions::default()).unwrap();
    let stack = MultiCell::new(vec![l0.boxed(), l1.boxed(), l2.boxed()]).unwrap();
    assert_eq!(stack.state_size(), vec![4, 3, 3, 3, 3]);
    contract(&params, &stack);
    for lengths in [None, Some(&[4usize, 0, 2][..])] {
        assert_static_equals_dynamic(&params, &stack, lengths, true);
    }
    let x = random(&[2, 3, 2], 1.0, 702);
    gradcheck(
        &params,
        std::slice::from_ref(&x),
        Tolerance::default(),
        |t, v| {
            let (out, states) = dynamic_rnn(
                t,
                &stack,
                v[0],
                RnnOptions::default().sequence_length(&[3, 2]),
            )?;
            let mut parts = vec![out];
            for s in &states {
                parts.extend(s.vars());
            }
            flat_concat(t, &parts)
        },
    )
    .unwrap()
    .assert_ok();
}

#[test]
fn runners_reject_bad_input() {
    let mut params = ParamStore::<f64>::new(15);
    let cell = lstm(&mut params, "lstm", 3, 4, 150);
    let tape = Tape::new(&params);
    let x = tape.constant(random(&[2, 5, 3], 1.0, 18));
    let wide = tape.constant(random(&[2, 5, 4], 1.0, 19));
    assert!(matches!(
        dynamic_rnn(&tape, &cell, wide, RnnOptions::default()),
        Err(Error::Shape {
            op: "dynamic_rnn",
            ..
        })
    ));
    assert!(matches!(
        dynamic_rnn(&tape, &cell, x, RnnOptions::default().sequence_length(&[5])),
        Err(Error::Shape {
            op: "sequence_length",
            ..
        })
    ));
    assert!(matches!(
        dynamic_rnn(
            &tape,
            &cell,
            x,
            RnnOptions::default().sequence_length(&[5, 6])
        ),
        Err(Error::InvalidArgument(_))
    ));
    let wrong_batch = cell.zero_state(&tape, 3).unwrap();
    assert!(matches!(
        dynamic_rnn(
            &tape,
            &cell,
            x,
            RnnOptions::default().initial_state(wrong_batch)
        ),
        Err(Error::Shape { .. })
    ));
    let a = tape.constant(random(&[2, 3], 1.0, 20));
    let b = tape.constant(random(&[3, 3], 1.0, 21));
    assert!(matches!(
        static_rnn(&tape, &cell, &[a, b], RnnOptions::default()),
        Err(Error::Shape {
            op: "static_rnn",
            ..
        })
    ));
    assert!(static_rnn(&tape, &cell, &[], RnnOptions::default()).is_err());
    assert!(matches!(
        last_relevant_output(&tape, x, Some(&[1, 2, 3])),
        Err(Error::Shape { .. })
    ));
    // An empty batch has an empty last output, with or without lengths.
    let none = tape.constant(ArrayD::zeros(IxDyn(&[0, 4, 3])));
    for lengths in [None, Some(&[][..])] {
        let last = last_relevant_output(&tape, none, lengths).unwrap();
        assert_eq!(tape.shape(last), [0, 3]);
    }
    // ... and runs through both runners, forward and backward, to zero weight gradients.
    for dynamic in [false, true] {
        let tape = Tape::new(&params);
        let x = tape.constant(ArrayD::zeros(IxDyn(&[0, 4, 3])));
        let (out, state) = if dynamic {
            dynamic_rnn(&tape, &cell, x, RnnOptions::default()).unwrap()
        } else {
            let (outs, state) = static_rnn(
                &tape,
                &cell,
                &tape.unstack(x, 1).unwrap(),
                RnnOptions::default(),
            )
            .unwrap();
            (tape.stack(&outs, 1).unwrap(), state)
        };
        assert_eq!(tape.shape(out), [0, 4, 4]);
        let loss = tape.add(tape.sum(out), tape.sum(state.h)).unwrap();
        let grads = tape.backward(loss).unwrap();
        let dkernel = grads.get(cell.kernel()).unwrap();
        assert_eq!(dkernel.shape(), [7, 16]);
        assert!(dkernel.iter().all(|&g| g == 0.0));
    }
    // No time steps: dynamic_rnn refuses, and so does the cell's sequence path called directly.
    let zero = cell.zero_state(&tape, 2).unwrap();
    for (shape, time_major) in [([2, 0, 3], false), ([0, 2, 3], true)] {
        let empty = tape.constant(ArrayD::zeros(IxDyn(&shape)));
        assert!(dynamic_rnn(
            &tape,
            &cell,
            empty,
            RnnOptions::default().time_major(time_major)
        )
        .is_err());
        assert!(matches!(
            cell.dynamic_sequence(&tape, empty, &zero, None, time_major),
            Some(Err(Error::InvalidArgument(_)))
        ));
    }
}

#[test]
fn f32_and_f64_agree() {
    let mut p64 = ParamStore::<f64>::new(16);
    let cell = lstm(&mut p64, "lstm", 3, 4, 160);
    let mut p32 = ParamStore::<f32>::new(16);
    for (id, name, v) in p64.iter() {
        let _ = id;
        p32.create_from(name, v.mapv(|x| x as f32)).unwrap();
    }
    let x = random(&[2, 6, 3], 1.0, 22);
    let t64 = Tape::inference(&p64);
    let (o64, _) =
        dynamic_rnn(&t64, &cell, t64.constant(x.clone()), RnnOptions::default()).unwrap();
    let t32 = Tape::inference(&p32);
    let (o32, _) = dynamic_rnn(
        &t32,
        &cell,
        t32.constant(x.mapv(|v| v as f32)),
        RnnOptions::default(),
    )
    .unwrap();
    assert_close(&t32.to_array(o32).mapv(f64::from), &t64.to_array(o64), 1e-5);
}

#[test]
fn lstm_gradients_with_the_batch_split_across_threads() {
    // 130 examples make three shards (44, 44, 42; at most 64 each), spread over the threads the
    // machine has; lengths differ within each shard.
    let mut params = ParamStore::<f64>::new(17);
    let cell = lstm(&mut params, "lstm", 2, 3, 170);
    let lengths: Vec<usize> = (0..130).map(|b| b % 4).collect();
    let inputs = [
        random(&[130, 3, 2], 1.0, 23),
        random(&[130, 3], 1.0, 24),
        random(&[130, 3], 1.0, 25),
    ];
    gradcheck(&params, &inputs, Tolerance::default(), |t, v| {
        let init = LstmState { c: v[1], h: v[2] };
        let (out, state) = dynamic_rnn(
            t,
            &cell,
            v[0],
            RnnOptions::default()
                .initial_state(init)
                .sequence_length(&lengths),
        )?;
        let flat = t.reshape(out, &[390, 3])?;
        t.concat(&[flat, state.c, state.h], 0)
    })
    .unwrap()
    .assert_ok();
}

/// A cell written by a user with tape ops: `h' = tanh(x @ w + h * u)` (elementwise recurrence).
struct UserCell {
    w: recurrent::ParamId,
    u: recurrent::ParamId,
    units: usize,
    input: usize,
}

impl Cell for UserCell {
    type State = Var;
    fn input_size(&self) -> usize {
        self.input
    }
    fn output_size(&self) -> usize {
        self.units
    }
    fn state_size(&self) -> Vec<usize> {
        vec![self.units]
    }
    fn zero_state<T: recurrent::Scalar>(
        &self,
        tape: &Tape<'_, T>,
        batch: usize,
    ) -> recurrent::Result<Var> {
        Ok(tape.constant(ArrayD::zeros(IxDyn(&[batch, self.units]))))
    }
    fn call<T: recurrent::Scalar>(
        &self,
        tape: &Tape<'_, T>,
        x: Var,
        h: &Var,
    ) -> recurrent::Result<(Var, Var)> {
        let pre = tape.add(
            tape.matmul(x, tape.param(self.w))?,
            tape.mul(*h, tape.param(self.u))?,
        )?;
        let h = tape.tanh(pre);
        Ok((h, h))
    }
    fn param_ids(&self) -> Vec<recurrent::ParamId> {
        vec![self.w, self.u]
    }
}

#[test]
fn a_user_cell_works_with_every_runner_and_wrapper() {
    use recurrent::init::Initializer;
    let mut params = ParamStore::<f64>::new(18);
    let mut user = |name: &str, input: usize| {
        let w = params
            .create(
                &format!("{name}/w"),
                &[input, 3],
                Initializer::GlorotUniform,
            )
            .unwrap();
        let u = params
            .create(
                &format!("{name}/u"),
                &[3],
                Initializer::RandomUniform {
                    min: -1.0,
                    max: 1.0,
                },
            )
            .unwrap();
        UserCell {
            w,
            u,
            units: 3,
            input,
        }
    };
    let fw = user("fw", 2);
    let bw = user("bw", 2);
    let stack = MultiCell::new(vec![user("l0", 2), user("l1", 3)]).unwrap();
    let dropped = DropoutWrapper::new(user("d", 2))
        .with_output_keep_prob(0.7)
        .unwrap()
        .with_variational_recurrent(true);
    // (The shared contract also demands shape errors that a user's cell need not raise itself.)
    assert_static_equals_dynamic(&params, &stack, Some(&[4, 1, 3]), true);
    let x = random(&[2, 3, 2], 1.0, 26);
    let tol = Tolerance::default();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let ((f, b), (sf, sb)) = bidirectional_dynamic_rnn(
            t,
            &fw,
            &bw,
            v[0],
            BidirectionalOptions::default().sequence_length(&[3, 2]),
        )?;
        let (s_out, s_states) = dynamic_rnn(t, &stack, v[0], RnnOptions::default())?;
        let (d_out, _) = dynamic_rnn(t, &dropped, v[0], RnnOptions::default())?;
        let seqs = t.reshape(t.concat(&[f, b, s_out, d_out], 2)?, &[6, 12])?;
        let states = t.concat(&[sf, sb, s_states[1], s_states[0]], 1)?;
        t.concat(&[seqs, states], 0)
    })
    .unwrap()
    .assert_ok();
}

#[test]
fn bidirectional_gradients_with_initial_states() {
    let mut params = ParamStore::<f64>::new(19);
    let fw = lstm(&mut params, "fw", 2, 3, 190);
    let bw = GruCell::new(&mut params, "bw", 2, 3).unwrap();
    let inputs = [
        random(&[2, 3, 2], 1.0, 27),
        random(&[2, 3], 1.0, 28),
        random(&[2, 3], 1.0, 29),
        random(&[2, 3], 1.0, 30),
    ];
    gradcheck(&params, &inputs, Tolerance::default(), |t, v| {
        let init_fw = LstmState { c: v[1], h: v[2] };
        let ((f, b), (sf, sb)) = bidirectional_dynamic_rnn(
            t,
            &fw,
            &bw,
            v[0],
            BidirectionalOptions::default()
                .initial_state_fw(init_fw)
                .initial_state_bw(v[3])
                .sequence_length(&[3, 1]),
        )?;
        let seqs = t.reshape(t.concat(&[f, b], 2)?, &[6, 6])?;
        t.concat(&[seqs, t.concat(&[sf.c, sb], 1)?], 0)
    })
    .unwrap()
    .assert_ok();
    let steps: Vec<ArrayD<f64>> = (0..3).map(|k| random(&[2, 2], 1.0, 31 + k)).collect();
    let mut all = steps.clone();
    all.push(random(&[2, 3], 1.0, 40));
    gradcheck(&params, &all, Tolerance::default(), |t, v| {
        let (outs, _, sb) = static_bidirectional_rnn(
            t,
            &fw,
            &bw,
            &v[..3],
            BidirectionalOptions::default()
                .initial_state_bw(v[3])
                .sequence_length(&[2, 3]),
        )?;
        t.concat(&[outs[0], outs[1], outs[2], t.concat(&[sb, sb], 1)?], 0)
    })
    .unwrap()
    .assert_ok();
}

#[test]
fn lstm_gradients_when_only_early_steps_receive_one() {
    // Read at the last step, the backward direction of a bidirectional RNN gets its gradient at
    // its first step only, so its BPTT covers one step; reading an early step of a forward run
    // likewise covers a prefix. Both must equal finite differences (inputs watched, so the input
    // gradient's prefix path is checked too), with and without lengths.
    let mut params = ParamStore::<f64>::new(20);
    let fw = lstm(&mut params, "fw", 2, 3, 200);
    let bw = lstm(&mut params, "bw", 2, 3, 201);
    let x = random(&[3, 5, 2], 1.0, 41);
    for lengths in [None, Some(vec![5usize, 2, 4])] {
        gradcheck(
            &params,
            std::slice::from_ref(&x),
            Tolerance::default(),
            |t, v| {
                let ((f, b), _) = bidirectional_dynamic_rnn(
                    t,
                    &fw,
                    &bw,
                    v[0],
                    BidirectionalOptions {
                        sequence_length: lengths.as_deref(),
                        ..BidirectionalOptions::default()
                    },
                )?;
                let both = t.concat(&[f, b], 2)?;
                last_relevant_output(t, both, lengths.as_deref())
            },
        )
        .unwrap()
        .assert_ok();
        gradcheck(
            &params,
            std::slice::from_ref(&x),
            Tolerance::default(),
            |t, v| {
                let (out, _) = dynamic_rnn(
                    t,
                    &fw,
                    v[0],
                    RnnOptions {
                        sequence_length: lengths.as_deref(),
                        ..RnnOptions::default()
                    },
                )?;
                t.gather_rows(out, &[1, 0, 2])
            },
        )
        .unwrap()
        .assert_ok();
    }
    // No gradient at all reaches the outputs: every gradient is zero.
    let tape = Tape::new(&params);
    let xv = tape.watch(x.clone());
    let (out, _) = dynamic_rnn(&tape, &fw, xv, RnnOptions::default()).unwrap();
    let zero = tape.constant(ArrayD::zeros(IxDyn(&[3, 5, 3])));
    let grads = tape
        .backward(tape.sum(tape.mul(out, zero).unwrap()))
        .unwrap();
    assert!(grads.wrt(xv).unwrap().iter().all(|&g| g == 0.0));
    assert!(grads.iter().all(|(_, g)| g.iter().all(|&v| v == 0.0)));
}

/// `static_rnn` against the runner written out: `cell.call` step by step, with lengths masking
/// by hand. Values and every gradient (parameters, inputs) in f64, on a seeded training tape.
fn assert_static_equals_stepping<C: Cell>(
    params: &ParamStore<f64>,
    cell: &C,
    lengths: Option<&[usize]>,
) -> usize {
    let (batch, steps) = (3, 12);
    let x = random(&[batch, steps, cell.input_size()], 1.0, 13);
    let mut tape_lens = [0usize; 2];
    let mut run = |by_hand: bool| {
        let tape = Tape::new(params).with_seed(9);
        let xv = tape.watch(x.clone());
        let steps_in = tape.unstack(xv, 1).unwrap();
        let before = tape.len();
        let (outs, state) = if by_hand {
            let mut state = cell.zero_state(&tape, batch).unwrap();
            let mut outs = vec![];
            let zero = tape.constant(ArrayD::zeros(IxDyn(&[batch, cell.output_size()])));
            for (t, &x) in steps_in.iter().enumerate() {
                let (out, new_state) = cell.call(&tape, x, &state).unwrap();
                match lengths {
                    Some(l) => {
                        let alive = ArrayD::from_shape_fn(IxDyn(&[batch, 1]), |i| t < l[i[0]]);
                        outs.push(tape.select(&alive, out, zero).unwrap());
                        let kept: Vec<Var> = new_state
                            .flatten()
                            .iter()
                            .zip(state.flatten())
                            .map(|(&n, o)| tape.select(&alive, n, o).unwrap())
                            .collect();
                        state = state.rebuild(&kept);
                    }
                    None => {
                        outs.push(out);
                        state = new_state;
                    }
                }
            }
            (outs, state)
        } else {
            static_rnn(
                &tape,
                cell,
                &steps_in,
                RnnOptions {
                    initial_state: None,
                    sequence_length: lengths,
                    time_major: false,
                },
            )
            .unwrap()
        };
        tape_lens[usize::from(by_hand)] = tape.len() - before;
        let all: Vec<Var> = outs.iter().copied().chain(state.flatten()).collect();
        let loss = all
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let direction = tape.constant(random(&tape.shape(v), 1.0, 70 + k as u64));
                tape.sum(tape.mul(v, direction).unwrap())
            })
            .reduce(|a, b| tape.add(a, b).unwrap())
            .unwrap();
        let values: Vec<ArrayD<f64>> = all.iter().map(|&v| tape.to_array(v)).collect();
        let grads = tape.backward(loss).unwrap();
        let mut g: Vec<ArrayD<f64>> = grads.iter().map(|(_, g)| g.clone()).collect();
        g.push(grads.wrt(xv).unwrap().clone());
        (values, g)
    };
    let (sv, sg) = run(false);
    let (hv, hg) = run(true);
    assert_eq!((sv.len(), sg.len()), (hv.len(), hg.len()));
    for (a, b) in sv.iter().zip(&hv) {
        assert_close(a, b, 1e-12);
    }
    for (a, b) in sg.iter().zip(&hg) {
        assert_close(a, b, 1e-11);
    }
    // How many ops the static runner recorded, against stepping's.
    tape_lens[0]
}

#[test]
fn static_runners_take_the_sequence_path_and_equal_stepping() {
    let mut params = ParamStore::<f64>::new(4);
    let lstm_cell = lstm(&mut params, "lstm", 3, 4, 31);
    let stack = MultiCell::new(vec![
        lstm(&mut params, "m/cell_0", 3, 4, 42),
        lstm(&mut params, "m/cell_1", 4, 4, 43),
    ])
    .unwrap();
    let gru = GruCell::new(&mut params, "gru", 3, 4).unwrap();
    let gru_ra = gru_reset_after(&mut params, "gru_ra", 3, 4, 45);
    // Per-step masks: the sequence path would draw them in another order, so the runner steps.
    let per_step_dropout = DropoutWrapper::new(lstm_cell.clone())
        .with_output_keep_prob(0.6)
        .unwrap();
    let variational = per_step_dropout.clone().with_variational_recurrent(true);
    for lengths in [None, Some(&[12usize, 0, 7][..])] {
        // The zero state, a stack, one fused op per layer and an unstack: fewer ops than the
        // twelve steps.
        let ops = assert_static_equals_stepping(&params, &lstm_cell, lengths);
        assert!(ops < 12, "the LSTM stepped: {ops} ops");
        let ops = assert_static_equals_stepping(&params, &stack, lengths);
        assert!(ops < 16, "the stack stepped (24 ops or more): {ops} ops");
        assert_static_equals_stepping(&params, &gru, lengths);
        let ops = assert_static_equals_stepping(&params, &gru_ra, lengths);
        assert!(ops < 12, "the reset_after GRU stepped: {ops} ops");
        assert_static_equals_stepping(&params, &per_step_dropout, lengths);
        assert_static_equals_stepping(&params, &variational, lengths);
    }
    // The bidirectional static runner, on the sequence path, against its definition.
    let bw = lstm(&mut params, "bw", 3, 4, 32);
    let x = random(&[2, 4, 3], 1.0, 5);
    let tape = Tape::new(&params);
    let xv = tape.watch(x);
    let steps_in = tape.unstack(xv, 1).unwrap();
    let (outs, _, _) = static_bidirectional_rnn(
        &tape,
        &lstm_cell,
        &bw,
        &steps_in,
        BidirectionalOptions::default(),
    )
    .unwrap();
    let ((fw_out, bw_out), _) =
        bidirectional_dynamic_rnn(&tape, &lstm_cell, &bw, xv, BidirectionalOptions::default())
            .unwrap();
    for (t, &o) in outs.iter().enumerate() {
        let want = ndarray::concatenate(
            Axis(1),
            &[
                tape.value(fw_out).index_axis(Axis(1), t),
                tape.value(bw_out).index_axis(Axis(1), t),
            ],
        )
        .unwrap();
        assert_close(&tape.to_array(o), &want.into_dyn(), 1e-13);
    }
}

/// The fused GRU sequence op (`dynamic_rnn`): gradients of the inputs, the initial state and
/// the four parameters against finite differences, batch- and time-major, with and without
/// lengths, over a batch split into shards on several threads; and its values against the
/// tape-op GRU stepped by hand (`GruCell::call`).
#[test]
fn fused_gru_gradients_and_the_tape_gru() {
    let mut params = ParamStore::<f64>::new(0);
    let cell = GruCell::from_weights(
        &mut params,
        "gru",
        random(&[7, 8], 0.6, 1),
        random(&[8], 0.5, 2),
        random(&[7, 4], 0.6, 3),
        random(&[4], 0.5, 4),
    )
    .unwrap();
    for time_major in [false, true] {
        for lengths in [None, Some(vec![5, 0, 3])] {
            let shape = if time_major { [5, 3, 3] } else { [3, 5, 3] };
            let inputs = [random(&shape, 1.0, 5), random(&[3, 4], 1.0, 6)];
            gradcheck(&params, &inputs, Tolerance::default(), |t, v| {
                let (out, state) = dynamic_rnn(
                    t,
                    &cell,
                    v[0],
                    RnnOptions {
                        initial_state: Some(v[1]),
                        sequence_length: lengths.as_deref(),
                        time_major,
                    },
                )?;
                let flat = t.reshape(out, &[15, 4])?;
                t.concat(&[flat, state], 0)
            })
            .unwrap()
            .assert_ok();
        }
    }
    // Against the tape ops, on a batch of 130 (three shards), one and two threads.
    let (batch, steps) = (130, 6);
    let x = random(&[batch, steps, 3], 1.0, 8);
    let h0 = random(&[batch, 4], 1.0, 9);
    for threads in [1, 2] {
        recurrent::parallel::set_num_threads(threads);
        let tape = Tape::new(&params);
        let xv = tape.constant(x.clone());
        let (out, last) = dynamic_rnn(
            &tape,
            &cell,
            xv,
            RnnOptions::default().initial_state(tape.constant(h0.clone())),
        )
        .unwrap();
        let mut h = tape.constant(h0.clone());
        for (t, step) in tape.unstack(xv, 1).unwrap().into_iter().enumerate() {
            h = cell.call(&tape, step, &h).unwrap().0;
            let fused = tape.value(out).index_axis(Axis(1), t).to_owned().into_dyn();
            assert_close(&fused, &tape.to_array(h), 1e-13);
        }
        assert_close(&tape.to_array(last), &tape.to_array(h), 1e-13);
    }
    recurrent::parallel::set_num_threads(0);
}

/// Weights that drive an LSTM's state into the subnormal range, for `f32`: from input 1 the
/// input gate is `sigmoid(-80) = 1.8e-35`, the candidate `tanh(1e-5)`, the forget gate about
/// 1 and the output gate 0.5, so each step would add `1.8e-40` (subnormal) to `c` and keep `h`
/// subnormal, which the kernels flush to zero instead (`benches/denormals.rs` times it).
fn subnormal_lstm(params: &mut ParamStore<f32>, units: usize) -> BasicLstmCell {
    let mut kernel = ndarray::Array2::<f32>::zeros((1 + units, 4 * units));
    for k in 0..units {
        kernel[[0, k]] = -80.0;
        kernel[[0, units + k]] = 1e-5;
        kernel[[0, 2 * units + k]] = 30.0;
    }
    BasicLstmCell::from_weights(
        params,
        "subnormal",
        kernel.into_dyn(),
        ArrayD::zeros(IxDyn(&[4 * units])),
    )
    .unwrap()
}

#[test]
fn fused_kernels_keep_no_subnormal_state_or_gradient() {
    let is_ok = |v: &f32| *v == 0.0 || v.abs() >= f32::MIN_POSITIVE || v.is_nan();
    let mut params = ParamStore::<f32>::new(0);
    let lstm_cell = subnormal_lstm(&mut params, 8);
    // The GRU: update gate sigmoid(-30) (h' is almost the candidate), candidate
    // tanh(1e-20 x) of inputs 1e-19: subnormal.
    let units = 8;
    let mut gate_bias = ndarray::Array1::<f32>::zeros(2 * units);
    let mut candidate_kernel = ndarray::Array2::<f32>::zeros((1 + units, units));
    for k in 0..units {
        gate_bias[units + k] = -30.0;
        candidate_kernel[[0, k]] = 1e-20;
    }
    let gru = GruCell::from_weights(
        &mut params,
        "subnormal_gru",
        ArrayD::zeros(IxDyn(&[1 + units, 2 * units])),
        gate_bias.into_dyn(),
        candidate_kernel.into_dyn(),
        ArrayD::zeros(IxDyn(&[units])),
    )
    .unwrap();
    // The same with reset_after (a zero recurrent bias).
    let ids = gru.param_ids();
    let recurrent_bias = params
        .create_from(
            "subnormal_gru/candidate/recurrent_bias",
            ArrayD::zeros(IxDyn(&[units])),
        )
        .unwrap();
    let gru_ra =
        GruCell::from_params_reset_after(&params, ids[0], ids[1], ids[2], ids[3], recurrent_bias)
            .unwrap();
    let tape = Tape::new(&params);
    let xv = tape.watch(ArrayD::from_elem(IxDyn(&[3, 20, 1]), 1.0f32));
    let xg = tape.watch(ArrayD::from_elem(IxDyn(&[3, 20, 1]), 1e-19f32));
    let (lstm_out, state) = dynamic_rnn(&tape, &lstm_cell, xv, RnnOptions::default()).unwrap();
    let (gru_out, h) = dynamic_rnn(&tape, &gru, xg, RnnOptions::default()).unwrap();
    let (ra_out, ra_h) = dynamic_rnn(&tape, &gru_ra, xg, RnnOptions::default()).unwrap();
    let loss = [lstm_out, state.c, state.h, gru_out, h, ra_out, ra_h]
        .into_iter()
        .map(|v| tape.sum(v))
        .reduce(|a, b| tape.add(a, b).unwrap())
        .unwrap();
    for v in [lstm_out, state.c, state.h, gru_out, h, ra_out, ra_h] {
        assert!(tape.value(v).iter().all(is_ok), "a subnormal value");
    }
    let grads = tape.backward(loss).unwrap();
    for (_, g) in grads.iter() {
        assert!(g.iter().all(is_ok), "a subnormal gradient");
    }
    // (The inputs' gradients, products of normal values, may be subnormal: they leave the
    // kernel and feed nothing inside it.)
    // Without the flush these would be subnormal: the products themselves are.
    for product in [1.8e-35f32 * 1e-5f32, 1e-20f32 * 1e-19f32] {
        assert!(product != 0.0 && product.abs() < f32::MIN_POSITIVE);
    }
}

/// The LstmCell variants the fused kernel runs (peepholes, cell clip, both; no projection),
/// each as a fused cell and as its tape-op twin over the same parameters.
fn fused_lstm_cell_variants(
    params: &mut ParamStore<f64>,
    input: usize,
    units: usize,
) -> Vec<(&'static str, f64, LstmCell, LstmCell)> {
    [
        ("peepholes", true, None),
        ("clip", false, Some(0.5)),
        ("both", true, Some(0.5)),
    ]
    .into_iter()
    .enumerate()
    .map(|(k, (name, peep, clip))| {
        let w = lstm_cell_weights(input, units, peep, None, 370 + 10 * k as u64);
        let mut cell = LstmCell::from_weights(params, name, w)
            .unwrap()
            .with_forget_bias(0.4)
            .unwrap();
        if let Some(c) = clip {
            cell = cell.with_cell_clip(c).unwrap();
        }
        let taped = cell.clone().with_tape_ops(true);
        (name, clip.unwrap_or(f64::INFINITY), cell, taped)
    })
    .collect()
}

/// Fused and tape-op paths of LstmCell with peepholes and/or a cell clip give the same values
/// and gradients (parameters, inputs, initial state) to rounding in f64, through dynamic_rnn
/// with sequence lengths (batch- and time-major) and static_rnn; the clip really clips.
#[test]
fn lstm_cell_fused_variants_match_tape_ops() {
    let (batch, steps, input, units) = (4, 6, 3, 5);
    let lengths = [6usize, 2, 0, 4];
    let mut params = ParamStore::<f64>::new(6);
    let cells = fused_lstm_cell_variants(&mut params, input, units);
    let x = random(&[batch, steps, input], 2.0, 380);
    let c0 = random(&[batch, units], 1.0, 381);
    let h0 = random(&[batch, units], 1.0, 382);
    // runner: 0 dynamic batch-major, 1 dynamic time-major, 2 static.
    let run = |cell: &LstmCell, runner: usize| {
        let tape = Tape::new(&params);
        let xv = tape.watch(x.clone());
        let (c, h) = (tape.watch(c0.clone()), tape.watch(h0.clone()));
        let options = RnnOptions::default()
            .sequence_length(&lengths)
            .initial_state(LstmState { c, h });
        let (out, state) = match runner {
            0 => dynamic_rnn(&tape, cell, xv, options).unwrap(),
            1 => {
                let (out, state) = dynamic_rnn(
                    &tape,
                    cell,
                    tape.transpose(xv, &[1, 0, 2]).unwrap(),
                    options.time_major(true),
                )
                .unwrap();
                (tape.transpose(out, &[1, 0, 2]).unwrap(), state)
            }
            _ => {
                let (outs, state) =
                    static_rnn(&tape, cell, &tape.unstack(xv, 1).unwrap(), options).unwrap();
                (tape.stack(&outs, 1).unwrap(), state)
            }
        };
        let loss = [out, state.c, state.h]
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let direction = tape.constant(random(&tape.shape(v), 1.0, 390 + k as u64));
                tape.sum(tape.mul(v, direction).unwrap())
            })
            .reduce(|a, b| tape.add(a, b).unwrap())
            .unwrap();
        let grads = tape.backward(loss).unwrap();
        let mut values = vec![
            tape.to_array(out),
            tape.to_array(state.c),
            tape.to_array(state.h),
        ];
        values.extend(
            cell.param_ids()
                .iter()
                .map(|&id| grads.get(id).unwrap().clone()),
        );
        values.extend([xv, c, h].iter().enumerate().map(|(k, &v)| {
            grads
                .wrt(v)
                .unwrap_or_else(|| panic!("runner {runner} input {k}"))
                .clone()
        }));
        values
    };
    for (name, clip, fused, taped) in &cells {
        for runner in 0..3 {
            let (f, t) = (run(fused, runner), run(taped, runner));
            assert_eq!(f.len(), t.len());
            assert_eq!(f.len(), 6 + fused.param_ids().len(), "{name}");
            for (k, (a, b)) in f.iter().zip(&t).enumerate() {
                assert_close(a, b, 1e-12);
                assert!(a.iter().all(|v| v.is_finite()), "{name} {k}");
            }
            // Past an example's length the output is zero; a gradient really flows.
            assert!(f[0].slice(s![2, .., ..]).iter().all(|&v| v == 0.0));
            assert!(f[3].iter().any(|&v| v != 0.0));
        }
        if clip.is_finite() {
            // Some state sits on the clip (so some gradient was cut), some inside it.
            let c = &run(fused, 0)[1];
            assert!(
                c.iter().any(|v| v.abs() == *clip),
                "{name}: nothing clipped"
            );
            assert!(c.iter().any(|v| v.abs() < *clip), "{name}");
        }
    }
}

/// Finite differences through the fused LstmCell variants (f64): inputs, initial state and
/// every parameter, with sequence lengths.
#[test]
fn lstm_cell_fused_variants_gradcheck() {
    let mut params = ParamStore::<f64>::new(7);
    let cells = fused_lstm_cell_variants(&mut params, 3, 4);
    let inputs = [
        random(&[3, 5, 3], 2.0, 400),
        random(&[3, 4], 1.0, 401),
        random(&[3, 4], 1.0, 402),
    ];
    for (_, _, fused, _) in &cells {
        gradcheck(&params, &inputs, Tolerance::default(), |t, v| {
            let (out, state) = dynamic_rnn(
                t,
                fused,
                v[0],
                RnnOptions::default()
                    .sequence_length(&[5, 2, 4])
                    .initial_state(LstmState { c: v[1], h: v[2] }),
            )?;
            flat_concat(t, &[out, state.c, state.h])
        })
        .unwrap()
        .assert_ok();
    }
}

// ---------------------------------------------------------------------------------------------
// GruCell with reset_after (cuDNN, PyTorch nn.GRU, Keras GRU(reset_after=True))
// ---------------------------------------------------------------------------------------------

/// A `reset_after` GRU from random weights (random biases too, so that a bias added twice,
/// or added outside the reset product instead of inside, shows).
fn gru_reset_after(
    params: &mut ParamStore<f64>,
    scope: &str,
    input: usize,
    units: usize,
    seed: u64,
) -> GruCell {
    GruCell::from_weights_reset_after(
        params,
        scope,
        random(&[input + units, 2 * units], 0.7, seed),
        random(&[2 * units], 0.5, seed + 1),
        random(&[input + units, units], 0.7, seed + 2),
        random(&[units], 0.5, seed + 3),
        random(&[units], 0.5, seed + 4),
    )
    .unwrap()
}

/// One `reset_after` step written out with plain ndarray from the cell's parameters:
/// `[r, u] = σ([x, h] W_g + b_g)`, `c = tanh(x W_cx + b_c + r ⊙ (h W_ch + b_ch))`,
/// `h' = u ⊙ h + (1 − u) ⊙ c`.
fn gru_reset_after_step(
    params: &ParamStore<f64>,
    cell: &GruCell,
    x: &ndarray::Array2<f64>,
    h: &ndarray::Array2<f64>,
) -> ndarray::Array2<f64> {
    let ids = cell.param_ids();
    let m = |k: usize| {
        params
            .value(ids[k])
            .clone()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap()
    };
    let v = |k: usize| {
        params
            .value(ids[k])
            .clone()
            .into_dimensionality::<ndarray::Ix1>()
            .unwrap()
    };
    let (gk, gb, ck, cb, crb) = (m(0), v(1), m(2), v(3), v(4));
    let (input, units) = (x.ncols(), h.ncols());
    let gates = (concat_columns(x, h).dot(&gk) + &gb).mapv(sigmoid);
    let (r, u) = (gates.slice(s![.., ..units]), gates.slice(s![.., units..]));
    let hn = h.dot(&ck.slice(s![input.., ..])) + &crb;
    let c = (x.dot(&ck.slice(s![..input, ..])) + &cb + &r * &hn).mapv(f64::tanh);
    &u * h + (1.0 - &u) * &c
}

#[test]
fn gru_reset_after_matches_its_equations_names_and_layout() {
    let (batch, input, units, steps) = (3, 4, 5, 6);
    let mut params = ParamStore::<f64>::new(0);
    let cell = gru_reset_after(&mut params, "gru", input, units, 500);
    assert!(cell.reset_after());
    let names: Vec<&str> = cell
        .param_ids()
        .into_iter()
        .map(|id| params.name(id))
        .collect();
    assert_eq!(
        names,
        [
            "gru/gates/kernel",
            "gru/gates/bias",
            "gru/candidate/kernel",
            "gru/candidate/bias",
            "gru/candidate/recurrent_bias",
        ]
    );
    assert_eq!(
        cell.candidate_recurrent_bias(),
        Some(cell.param_ids()[4]),
        "the handle is the fifth parameter"
    );
    // One step on tape ops.
    let x2 = random_matrix(batch, input, 501);
    let h2 = random_matrix(batch, units, 502);
    let tape = Tape::new(&params);
    let (out, state) = cell
        .call(
            &tape,
            tape.constant(x2.clone().into_dyn()),
            &tape.constant(h2.clone().into_dyn()),
        )
        .unwrap();
    let expected = gru_reset_after_step(&params, &cell, &x2, &h2);
    assert_close(&tape.to_array(out), &expected.clone().into_dyn(), 1e-14);
    assert_eq!(out, state);
    // The same weights without reset_after are another function (so this test can fail).
    let ids = cell.param_ids();
    let before = GruCell::from_params(&params, ids[0], ids[1], ids[2], ids[3]).unwrap();
    assert!(!before.reset_after());
    let (other, _) = before
        .call(
            &tape,
            tape.constant(x2.into_dyn()),
            &tape.constant(h2.into_dyn()),
        )
        .unwrap();
    let diff = (&tape.to_array(other) - &expected.into_dyn())
        .iter()
        .fold(0.0f64, |m, d| m.max(d.abs()));
    assert!(diff > 1e-3, "reset before and after agree: {diff}");

    // A whole sequence through the fused kernel, with lengths and an initial state, against
    // the equations unrolled by hand (the state carried and the output zero past a length).
    let x = random(&[batch, steps, input], 1.0, 503);
    let h0 = random_matrix(batch, units, 504);
    let lengths = [6usize, 0, 3];
    let tape = Tape::inference(&params);
    let (outputs, last) = dynamic_rnn(
        &tape,
        &cell,
        tape.constant(x.clone()),
        RnnOptions::default()
            .sequence_length(&lengths)
            .initial_state(tape.constant(h0.clone().into_dyn())),
    )
    .unwrap();
    let mut h = h0;
    let mut want = ndarray::Array3::<f64>::zeros((batch, steps, units));
    for t in 0..steps {
        let xt = x
            .index_axis(Axis(1), t)
            .to_owned()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
        let next = gru_reset_after_step(&params, &cell, &xt, &h);
        for (b, &length) in lengths.iter().enumerate() {
            if t < length {
                h.row_mut(b).assign(&next.row(b));
                want.slice_mut(s![b, t, ..]).assign(&next.row(b));
            }
        }
    }
    assert_close(&tape.to_array(outputs), &want.into_dyn(), 1e-13);
    assert_close(&tape.to_array(last), &h.into_dyn(), 1e-13);
}

#[test]
fn gru_reset_after_config_and_bad_input() {
    let mut params = ParamStore::<f64>::new(3);
    let cell = recurrent::GruCellConfig::new(4)
        .with_reset_after(true)
        .init(&mut params, "rnn/gru_cell", 3)
        .unwrap();
    assert_eq!((cell.input_size(), cell.num_units()), (3, 4));
    let recurrent_bias = params.value(cell.candidate_recurrent_bias().unwrap());
    assert_eq!(recurrent_bias.shape(), [4]);
    assert!(recurrent_bias.iter().all(|&v| v == 0.0));
    // TensorFlow 1.x's initial gate bias of 1.0.
    assert!(params.value(cell.param_ids()[1]).iter().all(|&v| v == 1.0));
    // Without the option the config builds what GruCell::new builds, drawing the same values.
    let mut a = ParamStore::<f64>::new(9);
    let mut b = ParamStore::<f64>::new(9);
    let plain = recurrent::GruCellConfig::new(4)
        .init(&mut a, "g", 3)
        .unwrap();
    let new = GruCell::new(&mut b, "g", 3, 4).unwrap();
    assert!(!plain.reset_after());
    for (x, y) in plain.param_ids().into_iter().zip(new.param_ids()) {
        assert_eq!(a.value(x), b.value(y));
    }
    // A taken name (the fifth one) is refused before anything is created or drawn.
    let mut store = ParamStore::<f64>::new(0);
    store
        .create_from("t/candidate/recurrent_bias", ArrayD::zeros(IxDyn(&[4])))
        .unwrap();
    let count = store.len();
    let taken = recurrent::GruCellConfig::new(4)
        .with_reset_after(true)
        .init(&mut store, "t", 3);
    assert!(matches!(taken, Err(Error::InvalidArgument(_))));
    let message = taken.expect_err("a taken name").to_string();
    assert!(
        message.contains("GruCell: the parameter name \"t/candidate/recurrent_bias\" is taken"),
        "{message}"
    );
    assert_eq!(store.len(), count);
    assert!(matches!(
        recurrent::GruCellConfig::new(0)
            .with_reset_after(true)
            .init(&mut store, "z", 3),
        Err(Error::InvalidArgument(_))
    ));
    // A recurrent bias of the wrong shape: a shape error, from weights and from ids.
    let zeros = |shape: &[usize]| ArrayD::<f64>::zeros(IxDyn(shape));
    let bad = GruCell::from_weights_reset_after(
        &mut store,
        "bad",
        zeros(&[7, 8]),
        zeros(&[8]),
        zeros(&[7, 4]),
        zeros(&[4]),
        zeros(&[5]),
    );
    assert!(matches!(bad, Err(Error::Shape { .. })));
    assert_eq!(store.len(), count);
    let ids = cell.param_ids();
    assert!(matches!(
        GruCell::from_params_reset_after(&params, ids[0], ids[1], ids[2], ids[3], ids[1]),
        Err(Error::Shape { .. })
    ));
    let again =
        GruCell::from_params_reset_after(&params, ids[0], ids[1], ids[2], ids[3], ids[4]).unwrap();
    assert_eq!(again.param_ids(), ids);
}

/// Finite differences in f64 through every runner: one step (static_rnn with lengths), the
/// fused sequence op (batch- and time-major, lengths, initial state), both bidirectional
/// runners, the stacked bidirectional runner, a MultiCell of two and a DropoutWrapper.
#[test]
fn gru_reset_after_gradients_through_every_runner() {
    let mut params = ParamStore::<f64>::new(5);
    let cell = gru_reset_after(&mut params, "gru", 2, 3, 510);
    let bw = gru_reset_after(&mut params, "bw", 2, 3, 520);
    let stack = MultiCell::new(vec![
        gru_reset_after(&mut params, "m/cell_0", 2, 3, 530),
        gru_reset_after(&mut params, "m/cell_1", 3, 3, 540),
    ])
    .unwrap();
    let upper_fw = gru_reset_after(&mut params, "s1/fw", 6, 2, 550);
    let upper_bw = gru_reset_after(&mut params, "s1/bw", 6, 2, 560);
    let lengths = [3usize, 1];
    let tol = Tolerance::default();
    for time_major in [false, true] {
        for lengths in [None, Some(&lengths[..])] {
            let shape = if time_major { [3, 2, 2] } else { [2, 3, 2] };
            let inputs = [random(&shape, 1.0, 511), random(&[2, 3], 1.0, 512)];
            gradcheck(&params, &inputs, tol, |t, v| {
                let (out, state) = dynamic_rnn(
                    t,
                    &cell,
                    v[0],
                    RnnOptions {
                        initial_state: Some(v[1]),
                        sequence_length: lengths,
                        time_major,
                    },
                )?;
                let flat = t.reshape(out, &[6, 3])?;
                t.concat(&[flat, state], 0)
            })
            .unwrap()
            .assert_ok();
        }
    }
    let x = random(&[2, 3, 2], 1.0, 513);
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let steps = t.unstack(v[0], 1)?;
        // Stepping on tape ops: GruCell::call (the static runner would take the fused path).
        let mut h = cell.zero_state(t, 2)?;
        let mut outs = vec![];
        for &s in &steps {
            let (o, next) = cell.call(t, s, &h)?;
            outs.push(o);
            h = next;
        }
        let (st, state) = static_rnn(
            t,
            &cell,
            &steps,
            RnnOptions::default().sequence_length(&lengths),
        )?;
        t.concat(&[outs[0], outs[2], h, st[2], state], 1)
    })
    .unwrap()
    .assert_ok();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let runs = through_wrapping_runners(t, (&cell, &bw, &stack), v[0], &lengths)?;
        flat_concat(
            t,
            &[
                runs.fw_out,
                runs.bw_out,
                runs.fw_state,
                runs.bw_state,
                runs.static_outs[0],
                runs.static_outs[2],
                runs.stack_out,
                runs.stack_state[0],
                runs.stack_state[1],
            ],
        )
    })
    .unwrap()
    .assert_ok();
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        // Layer 1 reads the 3 + 3 outputs of layer 0.
        let (out, fw_states, bw_states) = recurrent::stack_bidirectional_dynamic_rnn(
            t,
            &[cell.clone(), upper_fw.clone()],
            &[bw.clone(), upper_bw.clone()],
            v[0],
            recurrent::StackedBidirectionalOptions::default().sequence_length(&lengths),
        )?;
        flat_concat(
            t,
            &[out, fw_states[0], fw_states[1], bw_states[0], bw_states[1]],
        )
    })
    .unwrap()
    .assert_ok();
    // Dropout with fixed (variational, seeded) masks around the fused path and with state
    // dropout, which steps.
    let wrapped = DropoutWrapper::new(cell.clone())
        .with_input_keep_prob(0.7)
        .unwrap()
        .with_output_keep_prob(0.8)
        .unwrap()
        .with_state_keep_prob(0.6)
        .unwrap()
        .with_variational_recurrent(true);
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let (out, state) = dynamic_rnn(
            t,
            &wrapped,
            v[0],
            RnnOptions::default().sequence_length(&lengths),
        )?;
        let flat = t.reshape(out, &[6, 3])?;
        t.concat(&[flat, state], 0)
    })
    .unwrap()
    .assert_ok();
}

/// The fused `reset_after` op against the tape ops stepped by hand (`GruCell::call`), values
/// and every gradient, on a batch of 130 (three shards) with lengths; and the fused run gives
/// the same bits with 1, 2 and 3 threads.
#[test]
fn fused_reset_after_gru_equals_the_tape_ops_and_ignores_the_thread_count() {
    let mut params = ParamStore::<f64>::new(0);
    let cell = gru_reset_after(&mut params, "gru", 3, 4, 570);
    let (batch, steps) = (130, 6);
    let x = random(&[batch, steps, 3], 1.0, 571);
    let h0 = random(&[batch, 4], 1.0, 572);
    // Every length from 0 to `steps`, in every shard.
    let lengths: Vec<usize> = (0..batch).map(|b| (b * 5) % (steps + 1)).collect();
    assert!((0..=steps).all(|l| lengths[..43].contains(&l)));
    let direction = random(&[batch, steps, 4], 1.0, 573);
    let run = |fused: bool| {
        let tape = Tape::new(&params);
        let xv = tape.watch(x.clone());
        let h0v = tape.watch(h0.clone());
        let (out, last) = if fused {
            dynamic_rnn(
                &tape,
                &cell,
                xv,
                RnnOptions::default()
                    .initial_state(h0v)
                    .sequence_length(&lengths),
            )
            .unwrap()
        } else {
            let zero = tape.constant(ArrayD::zeros(IxDyn(&[batch, 4])));
            let mut h = h0v;
            let mut outs = vec![];
            for (t, step) in tape.unstack(xv, 1).unwrap().into_iter().enumerate() {
                let (o, next) = cell.call(&tape, step, &h).unwrap();
                let alive = ArrayD::from_shape_fn(IxDyn(&[batch, 1]), |i| t < lengths[i[0]]);
                outs.push(tape.select(&alive, o, zero).unwrap());
                h = tape.select(&alive, next, h).unwrap();
            }
            (tape.stack(&outs, 1).unwrap(), h)
        };
        let loss = tape
            .add(
                tape.sum(tape.mul(out, tape.constant(direction.clone())).unwrap()),
                tape.sum(last),
            )
            .unwrap();
        let values = vec![tape.to_array(out), tape.to_array(last)];
        let grads = tape.backward(loss).unwrap();
        let mut g: Vec<ArrayD<f64>> = grads.iter().map(|(_, g)| g.clone()).collect();
        g.push(grads.wrt(xv).unwrap().clone());
        g.push(grads.wrt(h0v).unwrap().clone());
        (values, g)
    };
    let (tv, tg) = run(false);
    let mut first = None;
    for threads in [1, 2, 3] {
        recurrent::parallel::set_num_threads(threads);
        let (fv, fg) = run(true);
        assert_eq!((fv.len(), fg.len()), (tv.len(), tg.len()));
        assert_eq!(
            fg.len(),
            5 + 2,
            "five parameters, the inputs and the initial state"
        );
        for (a, b) in fv.iter().zip(&tv) {
            assert_close(a, b, 1e-13);
        }
        for (a, b) in fg.iter().zip(&tg) {
            assert_close(a, b, 1e-12);
        }
        match &first {
            None => first = Some((fv, fg)),
            Some((v1, g1)) => {
                assert!(v1.iter().zip(&fv).all(|(a, b)| a == b), "{threads} threads");
                assert!(g1.iter().zip(&fg).all(|(a, b)| a == b), "{threads} threads");
            }
        }
    }
    recurrent::parallel::set_num_threads(0);
}
