//! Cells, wrappers and runners: TensorFlow semantics, gradient checks, and contracts.

mod common;

use common::{assert_close, random};
use ndarray::{array, s, ArrayD, Axis, IxDyn};
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

/// An inference tape runs the LSTM in per-shard buffers it does not keep; a training tape keeps
/// whole-batch buffers for the backward pass. Same arithmetic, so the same bits, over a batch of
/// several shards with lengths and an initial state.
#[test]
fn inference_and_training_tapes_give_identical_lstm_results() {
    let (batch, time, input, units) = (150, 4, 3, 5);
    let mut params = ParamStore::<f32>::new(9);
    let cell = BasicLstmCell::new(&mut params, "lstm", input, units).unwrap();
    let x = random(&[batch, time, input], 1.0, 13).mapv(|v| v as f32);
    let c0 = random(&[batch, units], 0.5, 14).mapv(|v| v as f32);
    let h0 = random(&[batch, units], 0.5, 15).mapv(|v| v as f32);
    let lengths: Vec<usize> = (0..batch).map(|b| b % (time + 1)).collect();
    let run = |tape: &Tape<'_, f32>| {
        let state = LstmState {
            c: tape.constant(c0.clone()),
            h: tape.constant(h0.clone()),
        };
        let (out, last) = dynamic_rnn(
            tape,
            &cell,
            tape.constant(x.clone()),
            RnnOptions::default()
                .initial_state(state)
                .sequence_length(&lengths),
        )
        .unwrap();
        (
            tape.to_array(out),
            tape.to_array(last.c),
            tape.to_array(last.h),
        )
    };
    let inference = run(&Tape::inference(&params));
    let training = run(&Tape::new(&params));
    assert_eq!(inference, training);
    assert!(inference.0.iter().any(|&v| v != 0.0));
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
    // 130 examples make three shards (44, 43, 43; at most 64 each), spread over the threads the
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
