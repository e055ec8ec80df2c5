//! The stacked bidirectional runners: each layer reads the concatenated directions of the one
//! below, per-layer initial states, lengths everywhere; against the layers run by hand, static
//! against dynamic, and gradients against finite differences (f64).

mod common;

use common::{assert_close, random};
use recurrent::cell::{
    BasicLstmCell, Cell, GruCell, HighwayOptions, HighwayWrapper, LayerNormLstmConfig,
    LstmCellConfig, LstmState, ResidualWrapper, ZoneoutWrapper,
};
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

/// Issue 14's cells in a stack: layer 0 a projected peephole `LstmCell` forward (output width
/// `num_proj` 2) and a `LayerNormBasicLstmCell` backward; layer 1 reads their 2 + 3 outputs
/// through a zoneout-wrapped `LstmCell` forward and a residual-and-highway-wrapped GRU
/// backward. Equal to the layers run by hand, static equal to dynamic, gradients in f64.
#[test]
fn a_stack_of_issue_14_cells_with_lengths() {
    let mut params = ParamStore::<f64>::new(5);
    let fw = vec![
        LstmCellConfig::new(3)
            .with_peepholes(true)
            .with_cell_clip(0.8)
            .with_num_proj(2)
            .init(&mut params, "stack/cell_0/fw/lstm_cell", 2)
            .unwrap()
            .boxed(),
        ZoneoutWrapper::new(
            LstmCellConfig::new(2)
                .with_peepholes(true)
                .init(&mut params, "stack/cell_1/fw/lstm_cell", 5)
                .unwrap(),
            0.3,
            0.2,
        )
        .unwrap()
        .boxed(),
    ];
    let gru = GruCell::new(&mut params, "stack/cell_1/bw/gru_cell", 5, 5).unwrap();
    let bw = vec![
        LayerNormLstmConfig::new(3)
            .init(&mut params, "stack/cell_0/bw/layer_norm_basic_lstm_cell", 2)
            .unwrap()
            .boxed(),
        HighwayWrapper::new(
            &mut params,
            "stack/cell_1/bw",
            ResidualWrapper::new(gru).unwrap(),
            HighwayOptions::default(),
        )
        .unwrap()
        .boxed(),
    ];
    let x = random(&[3, 4, 2], 1.0, 8);
    let lengths = [4, 1, 3];

    // Zoneout draws masks: every evaluation seeds its tape alike, and the hand-run layers below
    // draw them in the same order as the stack (layer by layer, forward before backward).
    let run = |seed: u64| {
        let tape = Tape::new(&params).with_seed(seed);
        let xv = tape.constant(x.clone());
        let options = StackedBidirectionalOptions::default().sequence_length(&lengths);
        let (top, states_fw, states_bw) =
            stack_bidirectional_dynamic_rnn(&tape, &fw, &bw, xv, options).unwrap();
        let top = tape.to_array(top);
        let fw_first: Vec<_> = states_fw
            .iter()
            .map(|s| tape.to_array(s.vars()[0]))
            .collect();
        let bw_first: Vec<_> = states_bw
            .iter()
            .map(|s| tape.to_array(s.vars()[0]))
            .collect();

        let tape = Tape::new(&params).with_seed(seed);
        let mut input = tape.constant(x.clone());
        for k in 0..2 {
            let layer = BidirectionalOptions::default().sequence_length(&lengths);
            let ((f, b), (sf, sb)) =
                bidirectional_dynamic_rnn(&tape, &fw[k], &bw[k], input, layer).unwrap();
            input = tape.concat(&[f, b], 2).unwrap();
            assert_close(&fw_first[k], &tape.to_array(sf.vars()[0]), 0.0);
            assert_close(&bw_first[k], &tape.to_array(sb.vars()[0]), 0.0);
        }
        assert_close(&top, &tape.to_array(input), 0.0);
        top
    };
    let top = run(9);
    assert_eq!(top.shape(), &[3, 4, 7]); // 2 (projected) + 5 (highway over the GRU)
                                         // Past each example's length the outputs are zero.
    assert!(top.slice(ndarray::s![1, 1.., ..]).iter().all(|&v| v == 0.0));

    // The static runner on an inference tape (zoneout's expectation) equals the dynamic one.
    let tape = Tape::inference(&params);
    let xv = tape.constant(x.clone());
    let options = StackedBidirectionalOptions::default().sequence_length(&lengths);
    let (top, _, states_bw) =
        stack_bidirectional_dynamic_rnn(&tape, &fw, &bw, xv, options).unwrap();
    let steps = tape.unstack(xv, 1).unwrap();
    let options = StackedBidirectionalOptions::default().sequence_length(&lengths);
    let (outputs, _, sbw) = stack_bidirectional_rnn(&tape, &fw, &bw, &steps, options).unwrap();
    let stacked = tape.stack(&outputs, 1).unwrap();
    assert_close(&tape.to_array(stacked), &tape.to_array(top), 1e-14);
    assert_close(
        &tape.to_array(sbw[1].vars()[0]),
        &tape.to_array(states_bw[1].vars()[0]),
        1e-14,
    );

    let tol = Tolerance {
        atol: 1e-7,
        rtol: 1e-5,
        step: 1e-5,
    };
    gradcheck(&params, std::slice::from_ref(&x), tol, |t, v| {
        let options = StackedBidirectionalOptions::default().sequence_length(&lengths);
        let (top, states_fw, _) = stack_bidirectional_dynamic_rnn(t, &fw, &bw, v[0], options)?;
        let flat = t.reshape(top, &[3 * 4 * 7])?;
        let c = states_fw[0].vars()[0];
        t.concat(&[flat, t.reshape(c, &[9])?], 0)
    })
    .unwrap()
    .assert_ok();
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
