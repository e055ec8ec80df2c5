//! Layers, `Sequential`, `BoxedCell` stacks and carried state: shapes, naming, the lengths given
//! once reaching every place that needs them, gradients against finite differences (f64).

mod common;

use common::{assert_close, random};
use ndarray::{array, s, ArrayD, Axis, IxDyn};
use recurrent::cell::{BasicLstmCell, Cell, DropoutWrapper, GruCell, MultiCell};
use recurrent::gradcheck::{gradcheck, Tolerance};
use recurrent::layers::{
    Bidirectional, Carry, Context, Dense, Dropout, Embedding, Layer, Merge, Returns, Rnn,
    Sequential,
};
use recurrent::optim::{Adam, Optimizer};
use recurrent::rnn::{
    bidirectional_dynamic_rnn, dynamic_rnn, last_relevant_output, BidirectionalOptions, RnnOptions,
};
use recurrent::{Error, ParamStore, Tape};

fn tol() -> Tolerance {
    Tolerance {
        atol: 1e-7,
        rtol: 1e-5,
        step: 1e-5,
    }
}

#[test]
fn layers_get_unique_tensorflow_scopes() {
    let mut params = ParamStore::<f32>::new(0);
    let a = Rnn::lstm(&mut params, 3, 4).unwrap();
    let b = Rnn::gru(&mut params, 4, 5).unwrap();
    let bi = Bidirectional::lstm(&mut params, 5, 2).unwrap();
    let e1 = Embedding::new(&mut params, 7, 3).unwrap();
    let e2 = Embedding::new(&mut params, 7, 3).unwrap();
    assert_eq!(
        (a.name(), b.name(), bi.name()),
        ("rnn", "rnn_1", "bidirectional_rnn")
    );
    assert_eq!((e1.name(), e2.name()), ("embedding", "embedding_1"));
    let names: Vec<&str> = params.iter().map(|(_, n, _)| n).collect();
    assert_eq!(
        names,
        [
            "rnn/basic_lstm_cell/kernel",
            "rnn/basic_lstm_cell/bias",
            "rnn_1/gru_cell/gates/kernel",
            "rnn_1/gru_cell/gates/bias",
            "rnn_1/gru_cell/candidate/kernel",
            "rnn_1/gru_cell/candidate/bias",
            "bidirectional_rnn/fw/basic_lstm_cell/kernel",
            "bidirectional_rnn/fw/basic_lstm_cell/bias",
            "bidirectional_rnn/bw/basic_lstm_cell/kernel",
            "bidirectional_rnn/bw/basic_lstm_cell/bias",
            "embedding/embeddings",
            "embedding_1/embeddings",
        ]
    );
    // A scope taken by hand is skipped too.
    let mut params = ParamStore::<f32>::new(0);
    BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 3, 4).unwrap();
    assert_eq!(Rnn::lstm(&mut params, 3, 4).unwrap().name(), "rnn_1");
}

#[test]
fn dense_works_on_the_last_axis_of_any_rank_and_names_itself_in_errors() {
    let mut params = ParamStore::<f64>::new(1);
    let dense = Dense::new(&mut params, "proj", 3, 2).unwrap();
    let x = random(&[2, 4, 3], 1.0, 5);
    let tape = Tape::inference(&params);
    let y = tape.to_array(dense.apply(&tape, tape.constant(x.clone())).unwrap());
    assert_eq!(y.shape(), [2, 4, 2]);
    // Step by step, the same kernel: y[:, t] = x[:, t] @ kernel + bias.
    let k = params.value(dense.kernel());
    let b = params.value(dense.bias());
    let k2 = k.view().into_dimensionality::<ndarray::Ix2>().unwrap();
    for t in 0..4 {
        let xt = x
            .slice(s![.., t, ..])
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
        let expected = (xt.dot(&k2) + b).into_dyn();
        assert_close(
            &y.slice(s![.., t, ..]).to_owned().into_dyn(),
            &expected,
            1e-12,
        );
    }
    let err = dense
        .apply(&tape, tape.constant(ArrayD::zeros(IxDyn(&[2, 4, 5]))))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Dense") && err.contains("\"proj\"") && err.contains("[2, 4, 5]"),
        "{err}"
    );
}

/// The lengths given once in the context reach the masking, the state and the last valid
/// output: the layer equals dynamic_rnn with the lengths followed by last_relevant_output with
/// the same lengths, and differs from the padded last step.
#[test]
fn lengths_given_once_reach_every_place_that_needs_them() {
    let mut params = ParamStore::<f64>::new(2);
    let rnn = Rnn::lstm(&mut params, 3, 4).unwrap();
    let x = random(&[3, 6, 3], 1.0, 9);
    let lengths = [6, 2, 4];
    let tape = Tape::inference(&params);
    let xv = tape.constant(x.clone());
    let mut ctx = Context::new().lengths(&lengths);
    let last = rnn
        .clone()
        .returns(Returns::LastOutput)
        .forward(&tape, xv, &mut ctx)
        .unwrap();
    let seq = rnn.clone().forward(&tape, xv, &mut ctx).unwrap();
    let state = rnn
        .clone()
        .returns(Returns::FinalState)
        .forward(&tape, xv, &mut ctx)
        .unwrap();

    let options = RnnOptions::default().sequence_length(&lengths);
    let (outputs, final_state) = dynamic_rnn(&tape, rnn.cell(), xv, options).unwrap();
    let expected_last = last_relevant_output(&tape, outputs, Some(&lengths)).unwrap();
    assert_close(&tape.to_array(seq), &tape.to_array(outputs), 0.0);
    assert_close(&tape.to_array(last), &tape.to_array(expected_last), 0.0);
    let c_h = ndarray::concatenate(
        Axis(1),
        &[
            tape.value(final_state.c).view(),
            tape.value(final_state.h).view(),
        ],
    )
    .unwrap();
    assert_close(&tape.to_array(state), &c_h, 0.0);
    // Outputs past each length are zero; the last valid output is not the padded last step.
    let seq = tape.to_array(seq);
    assert!(seq.slice(s![1, 2.., ..]).iter().all(|&v| v == 0.0));
    assert!(tape.value(last).slice(s![1, ..]).iter().all(|&v| v != 0.0));
}

#[test]
fn bidirectional_last_output_is_forward_at_the_length_and_backward_at_step_zero() {
    let mut params = ParamStore::<f64>::new(3);
    let bi = Bidirectional::lstm(&mut params, 2, 3).unwrap();
    let x = random(&[2, 5, 2], 1.0, 4);
    let lengths = [5, 3];
    let tape = Tape::inference(&params);
    let xv = tape.constant(x);
    let mut ctx = Context::new().lengths(&lengths);
    let last = bi
        .clone()
        .returns(Returns::LastOutput)
        .forward(&tape, xv, &mut ctx)
        .unwrap();
    let summed = bi
        .clone()
        .merge(Merge::Sum)
        .forward(&tape, xv, &mut ctx)
        .unwrap();
    let options = BidirectionalOptions::default().sequence_length(&lengths);
    let ((fw, bw), _) = bidirectional_dynamic_rnn(&tape, bi.fw(), bi.bw(), xv, options).unwrap();
    let (fw, bw) = (tape.to_array(fw), tape.to_array(bw));
    let last = tape.to_array(last);
    for (b, &len) in lengths.iter().enumerate() {
        let expected = ndarray::concatenate(
            Axis(0),
            &[fw.slice(s![b, len - 1, ..]), bw.slice(s![b, 0, ..])],
        )
        .unwrap();
        assert_close(&last.slice(s![b, ..]).to_owned(), &expected, 0.0);
    }
    assert_close(&tape.to_array(summed), &(&fw + &bw), 0.0);
}

/// Keras's `merge_mode=None`: the directions apart, for every `Returns`, equal to the runner's
/// outputs and to what the merged layer concatenates.
#[test]
fn bidirectional_directions_unmerged() {
    let mut params = ParamStore::<f64>::new(4);
    let bi = Bidirectional::gru(&mut params, 2, 3).unwrap();
    let lengths = [4, 2];
    let tape = Tape::inference(&params);
    let xv = tape.constant(random(&[2, 4, 2], 1.0, 5));
    let mut ctx = Context::new().lengths(&lengths);
    let options = BidirectionalOptions::default().sequence_length(&lengths);
    let ((fw, bw), (sf, sb)) =
        bidirectional_dynamic_rnn(&tape, bi.fw(), bi.bw(), xv, options).unwrap();
    let (f, b) = bi.forward_directions(&tape, xv, &mut ctx).unwrap();
    assert_close(&tape.to_array(f), &tape.to_array(fw), 0.0);
    assert_close(&tape.to_array(b), &tape.to_array(bw), 0.0);
    for returns in [Returns::Sequences, Returns::LastOutput, Returns::FinalState] {
        let layer = bi.clone().returns(returns);
        let (f, b) = layer.forward_directions(&tape, xv, &mut ctx).unwrap();
        let merged = layer.forward(&tape, xv, &mut ctx).unwrap();
        let axis = tape.shape(f).len() - 1;
        let both = tape.concat(&[f, b], axis).unwrap();
        assert_close(&tape.to_array(both), &tape.to_array(merged), 0.0);
        if returns == Returns::FinalState {
            assert_close(&tape.to_array(f), &tape.to_array(sf), 0.0);
            assert_close(&tape.to_array(b), &tape.to_array(sb), 0.0);
        }
    }
    // Bad input is the same error as the merged layer's.
    let wrong = tape.constant(random(&[2, 4, 3], 1.0, 6));
    let err = bi.forward_directions(&tape, wrong, &mut ctx).unwrap_err();
    assert!(err.to_string().contains("Bidirectional"), "{err}");
}

#[test]
fn a_sequence_model_passes_the_gradient_check() {
    // Embedding -> LSTM (lengths) -> last valid output -> dense, every parameter checked.
    let mut params = ParamStore::<f64>::new(5);
    let model = Sequential::new()
        .push(Embedding::new(&mut params, 6, 3).unwrap())
        .push(
            Rnn::lstm(&mut params, 3, 4)
                .unwrap()
                .returns(Returns::LastOutput),
        )
        .push(Dense::new(&mut params, "dense", 4, 2).unwrap());
    let ids = array![[1usize, 5, 2, 2], [3, 0, 0, 0]].into_dyn();
    let lengths = [4, 1];
    gradcheck(&params, &[], tol(), |tape, _| {
        let x = Embedding::ids(tape, &ids);
        model.forward(tape, x, &mut Context::new().lengths(&lengths))
    })
    .unwrap()
    .assert_ok();
    // And the bidirectional layer, summing its directions at every step.
    let mut params = ParamStore::<f64>::new(6);
    let bi = Bidirectional::gru(&mut params, 2, 3)
        .unwrap()
        .merge(Merge::Average);
    let x = random(&[2, 4, 2], 1.0, 1);
    gradcheck(&params, &[x], tol(), |tape, xs| {
        bi.forward(tape, xs[0], &mut Context::new().lengths(&[4, 2]))
    })
    .unwrap()
    .assert_ok();
}

#[test]
fn embedding_gradient_touches_only_the_rows_used_and_bad_ids_are_errors() {
    let mut params = ParamStore::<f64>::new(7);
    let embedding = Embedding::new(&mut params, 5, 2).unwrap();
    let ids = array![[1usize, 3], [3, 3]].into_dyn();
    let tape = Tape::new(&params);
    let y = embedding.apply(&tape, Embedding::ids(&tape, &ids)).unwrap();
    let grads = tape.backward(tape.sum(y)).unwrap();
    let g = grads.get(embedding.table()).unwrap();
    assert_eq!(
        g,
        &array![[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, 3.0], [0.0, 0.0]].into_dyn()
    );
    for bad in [5.0, -1.0, 0.5] {
        let x = tape.constant(array![[bad]].into_dyn());
        let err = embedding.apply(&tape, x).unwrap_err().to_string();
        assert!(
            err.contains("Embedding") && err.contains("\"embedding\""),
            "{err}"
        );
    }
}

/// Friction 4: a hand-written loop that forgets `with_seed` still draws new masks every step.
#[test]
fn successive_tapes_draw_different_dropout_masks_unless_seeded_alike() {
    let params = ParamStore::<f32>::new(0);
    let dropout = Dropout::new(0.5).unwrap();
    let x = ArrayD::<f32>::ones(IxDyn(&[8, 8]));
    let masks: Vec<ArrayD<f32>> = (0..3)
        .map(|_| {
            let tape = Tape::new(&params);
            tape.to_array(dropout.apply(&tape, tape.constant(x.clone())).unwrap())
        })
        .collect();
    assert!(masks[0] != masks[1] && masks[1] != masks[2]);
    let seeded = |seed| {
        let tape = Tape::new(&params).with_seed(seed);
        tape.to_array(dropout.apply(&tape, tape.constant(x.clone())).unwrap())
    };
    assert_eq!(seeded(4), seeded(4));
}

#[test]
fn dropout_layer_is_seeded_scaled_and_off_at_inference() {
    let params = ParamStore::<f32>::new(0);
    let dropout = Dropout::new(0.25).unwrap();
    let x = ArrayD::<f32>::ones(IxDyn(&[100, 100]));
    let tape = Tape::new(&params).with_seed(11);
    let y = tape.to_array(dropout.apply(&tape, tape.constant(x.clone())).unwrap());
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / 10_000.0;
    assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    let again = Tape::new(&params).with_seed(11);
    assert_eq!(
        y,
        again.to_array(dropout.apply(&again, again.constant(x.clone())).unwrap())
    );
    let inference = Tape::inference(&params);
    assert_eq!(
        inference.to_array(
            dropout
                .apply(&inference, inference.constant(x.clone()))
                .unwrap()
        ),
        x
    );
    assert!(Dropout::new(-0.1).is_err() && Dropout::new(1.0).is_err());
}

/// Running a sequence in two halves with a carry gives the same outputs and final state as
/// running it whole: the state crosses the boundary (as in truncated BPTT and generation).
#[test]
fn a_carried_state_continues_the_sequence() {
    let mut params = ParamStore::<f64>::new(8);
    let stack = MultiCell::new(vec![
        BasicLstmCell::new(
            &mut params,
            "rnn/multi_rnn_cell/cell_0/basic_lstm_cell",
            2,
            3,
        )
        .unwrap()
        .boxed(),
        GruCell::new(&mut params, "rnn/multi_rnn_cell/cell_1/gru_cell", 3, 3)
            .unwrap()
            .boxed(),
    ])
    .unwrap();
    let rnn = Rnn::new("rnn", stack);
    let x = random(&[2, 6, 2], 1.0, 3);
    let tape = Tape::inference(&params);
    let whole = tape.to_array(rnn.apply(&tape, tape.constant(x.clone())).unwrap());

    let mut carry = Carry::new();
    let mut pieces = Vec::new();
    for (a, b) in [(0, 4), (4, 5), (5, 6)] {
        let tape = Tape::inference(&params);
        let part = tape.constant(x.slice(s![.., a..b, ..]).to_owned().into_dyn());
        let out = rnn
            .forward(&tape, part, &mut Context::new().carry(&mut carry))
            .unwrap();
        pieces.push(tape.to_array(out));
    }
    let views: Vec<_> = pieces.iter().map(|p| p.view()).collect();
    assert_close(
        &ndarray::concatenate(Axis(1), &views).unwrap(),
        &whole,
        1e-14,
    );
    assert_eq!(carry.get("rnn").unwrap().len(), 3); // c and h of the LSTM, h of the GRU
                                                    // A carry for another batch size is an error naming the layer, until it is reset.
    let tape = Tape::inference(&params);
    let three = tape.constant(ArrayD::zeros(IxDyn(&[3, 2, 2])));
    let err = rnn
        .forward(&tape, three, &mut Context::new().carry(&mut carry))
        .unwrap_err();
    assert!(
        matches!(err, Error::Shape { .. }) && err.to_string().contains("\"rnn\""),
        "{err}"
    );
    carry.reset();
    assert!(rnn
        .forward(&tape, three, &mut Context::new().carry(&mut carry))
        .is_ok());
}

/// The test: an LSTM on a GRU on a dropout-wrapped LSTM, stacked through BoxedCell,
/// trains (the loss falls) and passes the gradient check.
#[test]
fn an_lstm_on_a_gru_on_a_dropout_wrapped_lstm_trains() {
    fn stack(params: &mut ParamStore<f64>) -> MultiCell<recurrent::BoxedCell> {
        let scope = |k: usize, cell: &str| format!("rnn/multi_rnn_cell/cell_{k}/{cell}");
        let bottom = BasicLstmCell::new(params, scope(0, "basic_lstm_cell"), 3, 5).unwrap();
        let bottom = DropoutWrapper::new(bottom)
            .with_output_keep_prob(0.9)
            .unwrap();
        let middle = GruCell::new(params, scope(1, "gru_cell"), 5, 4).unwrap();
        let top = BasicLstmCell::new(params, scope(2, "basic_lstm_cell"), 4, 3).unwrap();
        MultiCell::new(vec![bottom.boxed(), middle.boxed(), top.boxed()]).unwrap()
    }
    let mut params = ParamStore::<f64>::new(9);
    let model = Sequential::new()
        .push(Rnn::new("rnn", stack(&mut params)).returns(Returns::LastOutput))
        .push(Dense::new(&mut params, "dense", 3, 2).unwrap());
    let x = random(&[4, 5, 3], 1.0, 2);
    let labels = [0, 1, 1, 0];
    let lengths = [5, 3, 4, 2];
    let mut opt = Adam::new(0.05).unwrap();
    let mut losses = Vec::new();
    for step in 0..40 {
        let (loss, grads) = {
            let tape = Tape::new(&params).with_seed(step);
            let logits = model
                .forward(
                    &tape,
                    tape.constant(x.clone()),
                    &mut Context::new().lengths(&lengths),
                )
                .unwrap();
            let loss = tape.mean(
                tape.sparse_softmax_cross_entropy_with_logits(&labels, logits)
                    .unwrap(),
            );
            (tape.scalar(loss), tape.backward(loss).unwrap())
        };
        assert_eq!(grads.len(), params.len(), "every layer gets a gradient");
        opt.apply(&mut params, &grads).unwrap();
        losses.push(loss);
    }
    assert!(losses[39] < 0.5 * losses[0], "{losses:?}");
    let mut params = ParamStore::<f64>::new(10);
    let cell = stack(&mut params);
    gradcheck(&params, &[random(&[2, 3, 3], 1.0, 6)], tol(), |tape, xs| {
        Ok(dynamic_rnn(
            tape,
            &cell,
            xs[0],
            RnnOptions::default().sequence_length(&[3, 2]),
        )?
        .0)
    })
    .unwrap()
    .assert_ok();
}

#[test]
fn boxed_cells_equal_the_cells_they_wrap() {
    let mut params = ParamStore::<f64>::new(12);
    let lstm = BasicLstmCell::new(&mut params, "lstm", 2, 3).unwrap();
    let boxed = lstm.clone().boxed();
    let gru = GruCell::new(&mut params, "gru", 2, 3).unwrap().boxed();
    let x = random(&[2, 4, 2], 1.0, 8);
    let tape = Tape::new(&params);
    let xv = tape.constant(x);
    let options = || RnnOptions::default().sequence_length(&[4, 1]);
    let (plain, plain_state) = dynamic_rnn(&tape, &lstm, xv, options()).unwrap();
    let (erased, erased_state) = dynamic_rnn(
        &tape,
        &boxed,
        xv,
        RnnOptions::default().sequence_length(&[4, 1]),
    )
    .unwrap();
    assert_close(&tape.to_array(plain), &tape.to_array(erased), 0.0);
    assert_close(
        &tape.to_array(plain_state.h),
        &tape.to_array(erased_state.vars()[1]),
        0.0,
    );
    assert_eq!(boxed.param_ids(), lstm.param_ids());
    assert_eq!(
        (boxed.input_size(), boxed.output_size(), boxed.state_size()),
        (2, 3, vec![3, 3])
    );
    // A state of another kind of cell is an error, not a wrong computation.
    let gru_state = gru.zero_state(&tape, 2).unwrap();
    let step = tape.constant(ArrayD::zeros(IxDyn(&[2, 2])));
    assert!(boxed.call(&tape, step, &gru_state).is_err());
}

/// The prelude does not shadow `std::result::Result` (friction 5 of the issue): this function
/// compiles only if `Result` keeps its two parameters under the glob import.
#[test]
fn the_prelude_leaves_the_standard_result_alone() {
    #[allow(unused_imports)]
    use recurrent::prelude::*;
    let parsed: Result<Vec<u32>, std::num::ParseIntError> =
        ["1", "2"].iter().map(|s| s.parse()).collect();
    assert_eq!(parsed.unwrap(), [1, 2]);
}

#[test]
fn an_f32_embedding_refuses_ids_it_cannot_hold_exactly() {
    let mut params = ParamStore::<f32>::new(0);
    let err = Embedding::new(&mut params, (1 << 24) + 2, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("F32"), "{err}");
    assert!(params.is_empty());
}

/// Keras's default GRU (`reset_after=True`) as a layer and as a bidirectional layer: the
/// parameter names, the layer equals its cell run by `dynamic_rnn`, and the gradients through
/// lengths against finite differences.
#[test]
fn reset_after_gru_layers() {
    use recurrent::cell::GruCellConfig;
    let mut params = ParamStore::<f64>::new(8);
    let config = GruCellConfig::new(3).with_reset_after(true);
    let rnn = Rnn::gru_with(&mut params, 2, config.clone()).unwrap();
    let bi = Bidirectional::gru_with(&mut params, 2, config)
        .unwrap()
        .merge(Merge::Sum);
    assert!(rnn.cell().reset_after() && bi.fw().reset_after() && bi.bw().reset_after());
    let names: Vec<&str> = params.iter().map(|(_, n, _)| n).collect();
    assert_eq!(names.len(), 15);
    assert_eq!(names[4], "rnn/gru_cell/candidate/recurrent_bias");
    assert_eq!(
        names[14],
        "bidirectional_rnn/bw/gru_cell/candidate/recurrent_bias"
    );
    let x = random(&[2, 4, 2], 1.0, 3);
    let lengths = [4, 2];
    let tape = Tape::inference(&params);
    let xv = tape.constant(x.clone());
    let layer_out = rnn
        .forward(&tape, xv, &mut Context::new().lengths(&lengths))
        .unwrap();
    let (cell_out, _) = dynamic_rnn(
        &tape,
        rnn.cell(),
        xv,
        RnnOptions::default().sequence_length(&lengths),
    )
    .unwrap();
    assert_close(&tape.to_array(layer_out), &tape.to_array(cell_out), 0.0);
    gradcheck(&params, &[x], tol(), |tape, xs| {
        let a = rnn.forward(tape, xs[0], &mut Context::new().lengths(&lengths))?;
        let b = bi.forward(tape, xs[0], &mut Context::new().lengths(&lengths))?;
        tape.concat(&[a, b], 2)
    })
    .unwrap()
    .assert_ok();
}
