//! The stacked bidirectional runners: each layer reads the concatenated directions of the one
//! below, per-layer initial states, lengths everywhere; against the layers run by hand, static
//! against dynamic, and gradients against finite differences (f64).

mod common;

use common::{assert_close, random};
use recurrent::cell::{BasicLstmCell, Cell, GruCell, LstmState};
use recurrent::gradcheck::{gradcheck, Tolerance};
use recurrent::rnn::{
    bidirectional_dynamic_rnn, stack_bidirectional_dynamic_rnn, stack_bidirectional_rnn,
    BidirectionalOptions, StackedBidirectionalOptions,
};
use recurrent::{Error, ParamStore, Tape, Var};

fn stack(params: &mut ParamStore<f64>) -> (Vec<BasicLstmCell>, Vec<GruCell>) {
    let fw = vec![
        BasicLstmCell::new(params, "stack/cell_0/fw/basic_lstm_cell", 2, 3).unwrap(),
        BasicLstmCell::new(params, "stack/cell_1/fw/basic_lstm_cell", 5, 2).unwrap(),
    ];
    let bw = vec![
        GruCell::new(params, "stack/cell_0/bw/gru_cell", 2, 2).unwrap(),
        GruCell::new(params, "stack/cell_1/bw/gru_cell", 5, 3).unwrap(),
    ];
    (fw, bw)
}

#[test]
fn a_stack_equals_its_layers_run_by_hand() {
    let mut params = ParamStore::<f64>::new(1);
    let (fw, bw) = stack(&mut params);
    let x = random(&[3, 4, 2], 1.0, 2);
    let lengths = [4, 2, 3];
    let tape = Tape::inference(&params);
    let xv = tape.constant(x);
    let options = StackedBidirectionalOptions::default().sequence_length(&lengths);
    let (top, states_fw, states_bw) =
        stack_bidirectional_dynamic_rnn(&tape, &fw, &bw, xv, options).unwrap();

    let mut input = xv;
    for k in 0..2 {
        let layer = BidirectionalOptions::default().sequence_length(&lengths);
        let ((f, b), (sf, sb)) =
            bidirectional_dynamic_rnn(&tape, &fw[k], &bw[k], input, layer).unwrap();
        input = tape.concat(&[f, b], 2).unwrap();
        assert_close(&tape.to_array(states_fw[k].h), &tape.to_array(sf.h), 0.0);
        assert_close(&tape.to_array(states_bw[k]), &tape.to_array(sb), 0.0);
    }
    assert_close(&tape.to_array(top), &tape.to_array(input), 0.0);
    assert_eq!(tape.shape(top), vec![3, 4, 5]);

    // The static runner gives the same per-step outputs and states.
    let steps = tape.unstack(xv, 1).unwrap();
    let options = StackedBidirectionalOptions::default().sequence_length(&lengths);
    let (outputs, sfw, sbw) = stack_bidirectional_rnn(&tape, &fw, &bw, &steps, options).unwrap();
    let stacked = tape.stack(&outputs, 1).unwrap();
    assert_close(&tape.to_array(stacked), &tape.to_array(top), 1e-14);
    assert_close(
        &tape.to_array(sfw[1].c),
        &tape.to_array(states_fw[1].c),
        1e-14,
    );
    assert_close(&tape.to_array(sbw[1]), &tape.to_array(states_bw[1]), 1e-14);
}

#[test]
fn stack_gradients_with_initial_states_and_lengths() {
    let mut params = ParamStore::<f64>::new(3);
    let (fw, bw) = stack(&mut params);
    let tol = Tolerance {
        atol: 1e-7,
        rtol: 1e-5,
        step: 1e-5,
    };
    let inputs = [
        random(&[2, 3, 2], 1.0, 4),
        random(&[2, 3], 0.5, 5), // layer 0 fw c
        random(&[2, 3], 0.5, 6), // layer 0 fw h
        random(&[2, 3], 0.5, 7), // layer 1 bw h
    ];
    gradcheck(&params, &inputs, tol, |t, v| {
        let zero_fw1 = fw[1].zero_state(t, 2)?;
        let zero_bw0 = bw[0].zero_state(t, 2)?;
        let options = StackedBidirectionalOptions::default()
            .initial_states_fw(vec![LstmState { c: v[1], h: v[2] }, zero_fw1])
            .initial_states_bw(vec![zero_bw0, v[3]])
            .sequence_length(&[3, 1]);
        let (top, states_fw, states_bw) =
            stack_bidirectional_dynamic_rnn(t, &fw, &bw, v[0], options)?;
        let flat = t.reshape(top, &[2 * 3 * 5])?;
        let parts: Vec<Var> = vec![
            flat,
            t.reshape(states_fw[0].c, &[6])?,
            t.reshape(states_bw[1], &[6])?,
        ];
        t.concat(&parts, 0)
    })
    .unwrap()
    .assert_ok();
}

#[test]
fn stacks_that_do_not_fit_are_errors_naming_the_layer() {
    let mut params = ParamStore::<f64>::new(4);
    let (fw, bw) = stack(&mut params);
    let tape = Tape::inference(&params);
    let x = tape.constant(random(&[2, 3, 2], 1.0, 1));
    let err = stack_bidirectional_dynamic_rnn(
        &tape,
        &fw,
        &bw[..1],
        x,
        StackedBidirectionalOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let zero = fw[0].zero_state(&tape, 2).unwrap();
    let one_state = StackedBidirectionalOptions::default().initial_states_fw(vec![zero]);
    let err = stack_bidirectional_dynamic_rnn(&tape, &fw, &bw, x, one_state).unwrap_err();
    assert!(err.to_string().contains("one state per layer"), "{err}");
    // Layer 1 built for the wrong width: the error says which layer.
    let wrong = vec![
        fw[0].clone(),
        BasicLstmCell::new(&mut params, "wrong", 4, 2).unwrap(),
    ];
    let tape = Tape::inference(&params);
    let x = tape.constant(random(&[2, 3, 2], 1.0, 1));
    let err = stack_bidirectional_dynamic_rnn(
        &tape,
        &wrong,
        &bw,
        x,
        StackedBidirectionalOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("layer 1"), "{err}");
}

/// The fused LSTM reads a batch-major input in standard layout in place (forward and backward)
/// and copies one in another layout: the two give the same outputs and gradients exactly.
#[test]
fn lstm_batch_major_input_in_any_layout_gives_the_same_result() {
    use recurrent::rnn::{dynamic_rnn, RnnOptions};
    let mut params = ParamStore::<f64>::new(5);
    let cell = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 3, 4).unwrap();
    let tape = Tape::new(&params);
    // [batch 2, time 5, in 3] stored time-major: not standard layout.
    let strided = random(&[5, 2, 3], 1.0, 180).permuted_axes(vec![1, 0, 2]);
    assert!(!strided.is_standard_layout());
    let standard = strided.as_standard_layout().into_owned();
    let lengths = [5, 3];
    let run = |x: Var| {
        let options = RnnOptions {
            sequence_length: Some(&lengths[..]),
            ..Default::default()
        };
        let (out, state) = dynamic_rnn(&tape, &cell, x, options).unwrap();
        let loss = tape
            .add(tape.sum(tape.square(out)), tape.sum(state.h))
            .unwrap();
        let g = tape.backward(loss).unwrap();
        (tape.to_array(out), g.wrt(x).unwrap().clone())
    };
    let (out_a, dx_a) = run(tape.watch(strided));
    let (out_b, dx_b) = run(tape.watch(standard));
    assert_eq!(out_a, out_b);
    assert_eq!(dx_a, dx_b);
    assert!(dx_a.iter().any(|&v| v != 0.0));
}
