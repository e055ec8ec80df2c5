//! Reliability: the promises of the README's "Reliability" section, each case of issue 15 kept
//! fixed by a test that failed before its fix.
//!
//! - **Determinism** across processes and thread counts, in `f64`, with gradient clipping and
//!   dropout: the test binary runs itself as child processes (selected by the environment
//!   variable [`CHILD`]) with different `RECURRENT_NUM_THREADS` and compares the checkpoint bytes
//!   they write, bit for bit.
//! - **No silent NaN**: optimizers validate hyper-parameters in the element type and check each
//!   update before writing it; parameters, initializers and checkpoints refuse non-finite values.
//! - **Absurd sizes** are errors (checked arithmetic, fallible allocation), never panics or
//!   allocation aborts; the IDX reader's memory stays within the declared payload.
//! - **Threads** bounded; **checkpoint files** keep permissions, follow symbolic links, clean up
//!   their stale temporary files; **errors** name the layer, the argument and the path.
//! - A bounded **fuzz run** of both parsers (20,000 inputs each, fixed seeds) with the oracles of
//!   the libFuzzer targets in `tests/fuzz/`, plus the new one that saved bytes are canonical.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as StdCell;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{array, Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::Cell;
use recurrent::data::idx::{encode_idx, parse_idx, parse_idx_with_limit, write_idx, IdxArray};
use recurrent::data::{file_sha256, DataSet};
use recurrent::init::Initializer;
use recurrent::optim::{
    clip_by_global_norm, Adagrad, Adam, AdamW, GradientDescent, Momentum, Optimizer, RmsProp,
};
use recurrent::{
    bidirectional_dynamic_rnn, checkpoint, dynamic_rnn, last_relevant_output, parallel, tensor,
    BasicLstmCell, BasicRnnCell, BidirectionalOptions, Dense, DropoutWrapper, Error, Grads,
    GruCell, Layer, MultiCell, ParamStore, RnnOptions, Tape,
};

// ---------------------------------------------------------------------------------------------
// The largest single allocation of the current thread, to check what the IDX reader allocates.

struct PeakAlloc;

thread_local! {
    static PEAK: StdCell<usize> = const { StdCell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations while the thread is being torn down are not counted.
    let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only records
// sizes in a thread-local cell that needs no allocation.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            note(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            note(layout.size());
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            note(new_size);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

/// The largest allocation `f` makes on this thread.
fn peak_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    PEAK.with(|p| p.set(0));
    let r = f();
    (r, PEAK.with(|p| p.get()))
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Set in a child process: the path the child writes its result to.
const CHILD: &str = "RECURRENT_RELIABILITY_CHILD";

/// Runs this test binary's test `name` alone in a child process with `env` set; returns its
/// stderr, after checking that it passed.
fn run_child(name: &str, out: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, out)
        .env_remove("RECURRENT_NUM_THREADS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "child {name} {env:?} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

// ---------------------------------------------------------------------------------------------
// 1. Determinism

const BATCH: usize = 150; // three shards of the fused LSTM
const TIME: usize = 5;
const INPUT: usize = 4;
const UNITS: usize = 10;
const CLASSES: usize = 3;

/// Trains a two-layer LSTM with input, output and state dropout, clipped by global norm in every
/// step, in `f64`; returns the final checkpoint bytes and the gradient norms before clipping.
fn train_clipped() -> (Vec<u8>, Vec<f64>) {
    let mut params = ParamStore::<f64>::new(11);
    let scope = |k: usize| format!("rnn/multi_rnn_cell/cell_{k}/basic_lstm_cell");
    let cells = vec![
        DropoutWrapper::new(BasicLstmCell::new(&mut params, scope(0), INPUT, UNITS).unwrap())
            .with_input_keep_prob(0.8)
            .unwrap()
            .with_state_keep_prob(0.9)
            .unwrap(),
        DropoutWrapper::new(BasicLstmCell::new(&mut params, scope(1), UNITS, UNITS).unwrap())
            .with_output_keep_prob(0.7)
            .unwrap(),
    ];
    let cell = MultiCell::new(cells).unwrap();
    let dense = Dense::new(&mut params, "dense", UNITS, CLASSES).unwrap();
    let mut opt = Adam::new(0.02).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut norms = Vec::new();
    for step in 0..4u64 {
        let x = ArrayD::from_shape_simple_fn(IxDyn(&[BATCH, TIME, INPUT]), || {
            rng.random_range(-1.0..1.0)
        });
        let labels: Vec<usize> = (0..BATCH).map(|_| rng.random_range(0..CLASSES)).collect();
        let lengths: Vec<usize> = (0..BATCH).map(|_| rng.random_range(1..=TIME)).collect();
        let mut grads = {
            let tape = Tape::new(&params).with_seed(step);
            let xv = tape.constant(x);
            let options = RnnOptions::default().sequence_length(&lengths);
            let (out, _) = dynamic_rnn(&tape, &cell, xv, options).unwrap();
            let last = last_relevant_output(&tape, out, Some(&lengths)).unwrap();
            let logits = dense.apply(&tape, last).unwrap();
            let loss = tape.mean(
                tape.sparse_softmax_cross_entropy_with_logits(&labels, logits)
                    .unwrap(),
            );
            tape.backward(loss).unwrap()
        };
        norms.push(clip_by_global_norm(&mut grads, 0.05).unwrap());
        opt.apply(&mut params, &grads).unwrap();
    }
    (checkpoint::save_to_bytes(&params).unwrap(), norms)
}

/// The child's side: train and write the checkpoint bytes, the norms and the thread count.
fn write_training_result(out: &Path) {
    let (bytes, norms) = train_clipped();
    std::fs::write(out, &bytes).unwrap();
    let norms: Vec<String> = norms
        .iter()
        .map(|n| format!("{:016x}", n.to_bits()))
        .collect();
    std::fs::write(
        out.with_extension("txt"),
        format!("{} {}", parallel::num_threads(), norms.join(" ")),
    )
    .unwrap();
}

#[test]
fn determinism_across_processes_and_thread_counts() {
    if let Some(out) = std::env::var_os(CHILD) {
        write_training_result(Path::new(&out));
        return;
    }
    let (reference, norms) = train_clipped();
    assert!(
        norms.iter().all(|&n| n > 0.05),
        "clipping must be active in every step: {norms:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    for threads in ["1", "2", "3", "8"] {
        let out = dir.path().join(format!("t{threads}.safetensors"));
        run_child(
            "determinism_across_processes_and_thread_counts",
            &out,
            &[("RECURRENT_NUM_THREADS", threads)],
        );
        let info = std::fs::read_to_string(out.with_extension("txt")).unwrap();
        let used: usize = info.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(
            used,
            threads
                .parse::<usize>()
                .unwrap()
                .min(parallel::max_threads())
        );
        let want: Vec<String> = norms
            .iter()
            .map(|n| format!("{:016x}", n.to_bits()))
            .collect();
        assert_eq!(
            info.split(' ').skip(1).collect::<Vec<_>>(),
            want,
            "norms, {threads} threads"
        );
        // Same weights, same file: the checkpoint header is in sorted order too.
        assert!(
            std::fs::read(&out).unwrap() == reference,
            "{threads} threads: the parameters' bytes differ from this process's"
        );
    }
}

#[test]
fn global_norm_does_not_depend_on_insertion_order() {
    let mut params = ParamStore::<f64>::new(0);
    let ids: Vec<_> = (0..12)
        .map(|k| {
            params
                .create(&format!("p{k}"), &[7], Initializer::Zeros)
                .unwrap()
        })
        .collect();
    let values: Vec<ArrayD<f64>> = (0..12)
        .map(|k| common::random(&[7], 10f64.powi(k % 5), k as u64))
        .collect();
    let norm_of = |order: &[usize]| {
        let mut g = Grads::new();
        for &k in order {
            g.insert(ids[k], values[k].clone());
        }
        let ids_in_order: Vec<_> = g.iter().map(|(id, _)| id).collect();
        assert_eq!(ids_in_order, ids, "iteration is in id order");
        g.global_norm().to_bits()
    };
    let forward: Vec<usize> = (0..12).collect();
    let first = norm_of(&forward);
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..50 {
        let mut order = forward.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        assert_eq!(norm_of(&order), first);
    }
}

#[test]
fn identical_weights_give_identical_checkpoint_files() {
    let build = || {
        let mut p = ParamStore::<f32>::new(9);
        for name in ["z", "rnn/kernel", "a/b", "m\nn", "quote\"d"] {
            p.create(name, &[2, 3], Initializer::GlorotUniform).unwrap();
        }
        p
    };
    let first = checkpoint::save_to_bytes(&build()).unwrap();
    for _ in 0..20 {
        assert!(checkpoint::save_to_bytes(&build()).unwrap() == first);
    }
    // And they are valid safetensors whatever the names hold.
    let back = checkpoint::load_new_from_bytes::<f32>(&first, 0).unwrap();
    assert_eq!(back.len(), 5);
    assert!(back.id("quote\"d").is_some() && back.id("m\nn").is_some());
}

// ---------------------------------------------------------------------------------------------
// 2. No silent NaN: optimizers

fn one_param<T: recurrent::Scalar>(g: f64) -> (ParamStore<T>, Grads<T>) {
    let mut params = ParamStore::<T>::new(0);
    let w = params
        .create_from(
            "layer/w",
            array![1.0, -1.0].mapv(T::from_f64_lossy).into_dyn(),
        )
        .unwrap();
    let mut grads = Grads::new();
    grads.insert(w, ArrayD::from_elem(IxDyn(&[2]), T::from_f64_lossy(g)));
    (params, grads)
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(r: recurrent::Result<T>, needles: &[&str]) {
    match r {
        Err(Error::InvalidArgument(msg)) => {
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should contain {n:?}");
            }
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn hyperparameters_are_validated_in_the_element_type() {
    // Finite in f64, infinite or zero in f32.
    assert_invalid(Adam::<f32>::new(1e39), &["Adam", "learning rate", "f32"]);
    assert!(Adam::<f64>::new(1e39).is_ok());
    assert_invalid(
        Adam::<f32>::new(0.1).unwrap().with_epsilon(1e-50),
        &["epsilon", "rounds to 0"],
    );
    assert_invalid(AdamW::<f32>::new(0.1, 1e39), &["weight_decay"]);
    assert_invalid(Momentum::<f32>::new(0.1, 1e300), &["momentum", "f32"]);
    assert_invalid(
        Adagrad::<f32>::new(0.1)
            .unwrap()
            .with_initial_accumulator_value(1e-50),
        &["initial_accumulator_value", "rounds to 0"],
    );
    assert_invalid(
        RmsProp::<f32>::new(0.1).unwrap().with_epsilon(1e-60),
        &["epsilon"],
    );
    let mut adam = Adam::<f32>::new(0.1).unwrap();
    assert_invalid(adam.set_learning_rate(1e39), &["f32"]);
    assert_eq!(adam.learning_rate(), 0.1, "unchanged");

    // GradientDescent is not generic: its rate is checked in the type at `apply`, before
    // anything changes.
    let (mut params, grads) = one_param::<f32>(1.0);
    let mut sgd = GradientDescent::new(f64::MAX).unwrap();
    assert_invalid(
        Optimizer::<f32>::apply(&mut sgd, &mut params, &grads),
        &["f32"],
    );
    assert_eq!(
        params.value(params.id("layer/w").unwrap()),
        &array![1.0f32, -1.0].into_dyn()
    );
    assert_eq!(Optimizer::<f32>::step_count(&sgd), 0);
}

#[test]
fn an_overflowing_update_is_an_error_at_its_step_and_writes_nothing() {
    // SGD at f64::MAX: the very first update overflows.
    let (mut params, grads) = one_param::<f64>(2.0);
    let mut sgd = GradientDescent::new(f64::MAX).unwrap();
    let err = sgd.apply(&mut params, &grads).unwrap_err();
    assert_eq!(
        err.to_string(),
        "non-finite value: update of layer/w at step 1"
    );
    assert!(params.all_finite());
    assert_eq!(Optimizer::<f64>::step_count(&sgd), 0);

    // Momentum 1e300: finite for two steps, the accumulator overflows at the third. The error
    // names step 3, and the weights are those after step 2.
    let (mut params, grads) = one_param::<f64>(0.1);
    let w = params.id("layer/w").unwrap();
    let mut momentum = Momentum::new(0.1, 1e300).unwrap();
    momentum.apply(&mut params, &grads).unwrap();
    momentum.apply(&mut params, &grads).unwrap();
    let (after_two, slot_two) = (
        params.value(w).clone(),
        momentum.slot(w, "momentum").unwrap().clone(),
    );
    let err = momentum.apply(&mut params, &grads).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("non-finite value: update of layer/w at step 3"),
        "{err}"
    );
    assert_eq!(params.value(w), &after_two);
    assert_eq!(momentum.slot(w, "momentum").unwrap(), &slot_two);
    assert_eq!(momentum.step_count(), 2);

    // Adagrad in f32 with a gradient whose square overflows: the accumulator would be inf
    // (the weight update itself stays finite): refused all the same.
    let (mut params, grads) = one_param::<f32>(1e20);
    let mut adagrad = Adagrad::<f32>::new(0.1).unwrap();
    let err = adagrad.apply(&mut params, &grads).unwrap_err();
    assert_eq!(
        err.to_string(),
        "non-finite value: update of layer/w at step 1"
    );
    assert!(adagrad
        .slot(params.id("layer/w").unwrap(), "accumulator")
        .is_none());
}

#[test]
fn overflow_in_one_parameter_leaves_every_parameter_unchanged() {
    let optimizers: Vec<(&str, Box<dyn Optimizer<f32>>)> = vec![
        (
            "GradientDescent",
            Box::new(GradientDescent::new(1e37).unwrap()),
        ),
        ("Momentum", Box::new(Momentum::new(1e37, 0.9).unwrap())),
        ("Adam", Box::new(Adam::new(1e37).unwrap())),
        (
            "RmsProp",
            Box::new(RmsProp::new(1e37).unwrap().with_centered(true)),
        ),
        ("Adagrad", Box::new(Adagrad::new(1e37).unwrap())),
    ];
    for (label, mut opt) in optimizers {
        let mut params = ParamStore::<f32>::new(0);
        let a = params.create_from("a", array![1.0f32].into_dyn()).unwrap();
        let b = params.create_from("b", array![1.0f32].into_dyn()).unwrap();
        let mut grads = Grads::new();
        grads.insert(a, array![1e-30f32].into_dyn()); // a tiny step: fine
        grads.insert(b, array![1e20f32].into_dyn()); // 1e37 * 1e20, or 1e20 squared: inf
        let err = opt.apply(&mut params, &grads).unwrap_err();
        assert!(matches!(err, Error::NonFinite(_)), "{label}: {err:?}");
        assert!(
            err.to_string().contains("update of b at step 1"),
            "{label}: {err}"
        );
        assert_eq!(
            params.value(a),
            &array![1.0f32].into_dyn(),
            "{label}: a was written"
        );
        for name in opt.slot_names() {
            assert!(
                opt.slot(a, name).is_none(),
                "{label}: slot {name} of a was created"
            );
        }
        assert_eq!(opt.step_count(), 0, "{label}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. No silent NaN: parameters, initializers, checkpoints

#[test]
fn parameters_refuse_non_finite_values() {
    let mut params = ParamStore::<f32>::new(0);
    let w = params.create("w", &[3], Initializer::Zeros).unwrap();
    let err = params
        .set(w, array![1.0f32, f32::NAN, 0.0].into_dyn())
        .unwrap_err();
    assert!(matches!(err, Error::NonFinite(_)), "{err:?}");
    assert!(
        err.to_string().contains("\"w\" holds NaN at element 1"),
        "{err}"
    );
    assert!(params.value(w).iter().all(|&x| x == 0.0), "unchanged");
    assert!(params
        .create_from("v", array![f32::INFINITY].into_dyn())
        .is_err());
    assert!(params.id("v").is_none());
}

#[test]
fn initializers_refuse_non_finite_values() {
    let mut params = ParamStore::<f32>::new(0);
    for (init, needle) in [
        (
            Initializer::Constant(f64::NAN),
            "Constant: value must be finite",
        ),
        (
            Initializer::Orthogonal { gain: f64::NAN },
            "Orthogonal: gain must be finite",
        ),
        (Initializer::Constant(1e39), "not finite in f32"),
        (
            Initializer::RandomNormal {
                mean: 1e39,
                stddev: 1.0,
            },
            "not finite in f32",
        ),
    ] {
        assert_invalid(params.create("w", &[2, 2], init), &["\"w\"", needle]);
    }
    assert!(params.is_empty());
    // In f64 the same constant is fine.
    let mut wide = ParamStore::<f64>::new(0);
    assert!(wide.create("w", &[2], Initializer::Constant(1e39)).is_ok());
}

#[test]
fn converting_an_f64_value_too_large_for_f32_is_an_error_naming_the_tensor() {
    let mut wide = ParamStore::<f64>::new(0);
    wide.create_from("big/kernel", array![1.0, 1e300].into_dyn())
        .unwrap();
    let bytes = checkpoint::save_to_bytes(&wide).unwrap();
    let mut narrow = ParamStore::<f32>::new(0);
    let k = narrow
        .create("big/kernel", &[2], Initializer::Zeros)
        .unwrap();
    let err = checkpoint::load_from_bytes_converting(&mut narrow, &bytes).unwrap_err();
    assert!(matches!(err, Error::Checkpoint(_)), "{err:?}");
    assert!(
        err.to_string().contains(
            "tensor \"big/kernel\" holds 1e300 at element 1 (row-major), which overflows F32"
        ),
        "{err}"
    );
    assert!(narrow.value(k).iter().all(|&x| x == 0.0), "nothing loaded");
}

// ---------------------------------------------------------------------------------------------
// 3. Absurd sizes

#[track_caller]
fn assert_shape_err<T: std::fmt::Debug>(r: recurrent::Result<T>, op: &str) {
    match r {
        Err(Error::Shape { op: got, .. }) => assert_eq!(got, op),
        other => panic!("expected a shape error from {op}, got {other:?}"),
    }
}

#[test]
fn huge_parameters_are_errors() {
    let mut params = ParamStore::<f32>::new(0);
    let before = params.rng().clone();
    // The size overflows.
    let err = params
        .create("w", &[usize::MAX, 2], Initializer::GlorotUniform)
        .unwrap_err();
    assert!(err.to_string().contains("\"w\""), "{err}");
    // The size fits in usize but not in memory (4 PiB).
    for init in [
        Initializer::Zeros,
        Initializer::GlorotUniform,
        Initializer::Orthogonal { gain: 1.0 },
    ] {
        assert_shape_err(
            params.create("w", &[1 << 40, 1 << 10], init),
            "Initializer::sample",
        );
    }
    let mut rng = StdRng::seed_from_u64(0);
    assert_shape_err(
        Initializer::TruncatedNormal {
            mean: 0.0,
            stddev: 1.0,
        }
        .sample::<f64>(&[1 << 62, 4], &mut rng),
        "Initializer::sample",
    );
    assert!(params.is_empty());
    // Nothing was drawn.
    assert_eq!(params.rng().random::<u64>(), before.clone().random::<u64>());
}

#[test]
fn huge_cells_are_errors_naming_the_cell_and_argument() {
    let mut params = ParamStore::<f32>::new(0);
    let half = usize::MAX / 2;
    let err = BasicLstmCell::new(&mut params, "lstm", usize::MAX, 1).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("BasicLstmCell::new")
            && msg.contains("input_size")
            && msg.contains("overflows"),
        "{msg}"
    );
    assert!(!msg.contains("[0, 4]"), "{msg}");
    for err in [
        BasicLstmCell::new(&mut params, "lstm", 1, half).unwrap_err(),
        GruCell::new(&mut params, "gru", 1, half + 1).unwrap_err(),
        BasicRnnCell::new(&mut params, "rnn", half, half + 2).unwrap_err(),
    ] {
        assert!(err.to_string().contains("overflows usize"), "{err}");
    }
    // Sizes whose products fit but whose kernels do not fit in memory (here and below at least
    // 2^48 bytes: more than a 47-bit address space, so refused even where memory overcommits).
    for err in [
        BasicLstmCell::new(&mut params, "lstm", 1, 1 << 23).unwrap_err(),
        GruCell::new(&mut params, "gru", 1, 1 << 23).unwrap_err(),
        BasicRnnCell::new(&mut params, "rnn", 1, 1 << 24).unwrap_err(),
        Dense::new(&mut params, "dense", 1 << 24, 1 << 24).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Shape { .. }), "{err:?}");
        assert!(err.to_string().contains("fits in memory"), "{err}");
    }
    assert!(params.is_empty());
}

#[test]
fn huge_zero_states_are_errors() {
    let mut params = ParamStore::<f32>::new(0);
    let lstm = BasicLstmCell::new(&mut params, "lstm", 2, 3).unwrap();
    let gru = GruCell::new(&mut params, "gru", 2, 3).unwrap();
    let rnn = BasicRnnCell::new(&mut params, "rnn", 2, 3).unwrap();
    let tape = Tape::new(&params);
    for batch in [usize::MAX / 2, 1 << 50] {
        assert_shape_err(lstm.zero_state(&tape, batch), "BasicLstmCell::zero_state");
        assert_shape_err(gru.zero_state(&tape, batch), "GruCell::zero_state");
        assert_shape_err(rnn.zero_state(&tape, batch), "BasicRnnCell::zero_state");
        assert_shape_err(
            DropoutWrapper::new(lstm.clone()).zero_state(&tape, batch),
            "BasicLstmCell::zero_state",
        );
    }
    assert_eq!(tape.shape(lstm.zero_state(&tape, 4).unwrap().c), vec![4, 3]);
}

#[test]
fn huge_tensors_and_batches_are_errors() {
    assert_shape_err(tensor::one_hot::<f32>(&[0], 1 << 46), "one_hot");
    assert_shape_err(tensor::one_hot::<f32>(&[0, 1], usize::MAX), "one_hot");
    let params = ParamStore::<f32>::new(0);
    let tape = Tape::new(&params);
    assert_shape_err(tape.dropout_mask(&[1 << 46], 0.5), "dropout_mask");
    assert_shape_err(tape.dropout_mask(&[1 << 40, 1 << 30], 0.5), "dropout_mask");
    // An empty axis splits into at most MAX_EMPTY_SPLIT parts.
    let empty = Array2::<f32>::zeros((2, 0));
    assert_invalid(
        tensor::split(&empty, 1 << 26, 1),
        &["split", "empty dimension 1"],
    );
    assert_eq!(
        tensor::split(&empty, tensor::MAX_EMPTY_SPLIT, 1)
            .unwrap()
            .len(),
        1 << 16
    );

    let images = Array2::<u8>::zeros((5, 784));
    let mut set = DataSet::new(images, vec![0, 1, 2, 3, 4], 0).unwrap();
    assert_shape_err(set.next_indices(1 << 46), "DataSet::next_indices");
    assert_shape_err(set.try_next_batch::<f32>(1 << 40), "DataSet::next_batch");
    assert_eq!(
        (set.index_in_epoch(), set.epochs_completed()),
        (0, 0),
        "state unchanged"
    );
    assert_eq!(set.next_indices(7).unwrap().len(), 7);
    let mut empty_set = DataSet::new(Array2::zeros((0, 784)), vec![], 0).unwrap();
    assert_invalid(empty_set.next_indices(1), &["empty data set"]);
}

#[test]
fn dropout_dynamic_sequence_of_rank_2_is_an_error() {
    let mut params = ParamStore::<f32>::new(0);
    let lstm = BasicLstmCell::new(&mut params, "lstm", 3, 4).unwrap();
    let cell = DropoutWrapper::new(lstm)
        .with_input_keep_prob(0.5)
        .unwrap()
        .with_variational_recurrent(true);
    let tape = Tape::new(&params);
    let x = tape.constant(ArrayD::zeros(IxDyn(&[2, 3])));
    let state = cell.zero_state(&tape, 2).unwrap();
    let result = cell
        .dynamic_sequence(&tape, x, &state, None, false)
        .unwrap();
    assert_shape_err(result, "DropoutWrapper::dynamic_sequence");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_payload_is_limited_and_read_incrementally() {
    // A header declaring more than the limit: refused before reading (the default is 1 GiB).
    let mut header = vec![0, 0, 8, 1];
    header.extend_from_slice(&(2u32 << 30).to_be_bytes());
    let err = parse_idx(&gzip(&header)).unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the limit of 1073741824"),
        "{err}"
    );
    let err = parse_idx_with_limit(&idx(&[10], &[1; 10]), 9).unwrap_err();
    assert!(err.to_string().contains("limit of 9"), "{err}");
    assert!(parse_idx_with_limit(&idx(&[10], &[1; 10]), 10).is_ok());

    // A gzip bomb within the limit: 32 MiB declared, 48 MiB of zeros inflated from ~50 kB. The
    // largest allocation is the declared payload (before: the doubling of `read_to_end` went to
    // twice that), and the trailing bytes are counted, not kept.
    let declared = 32usize << 20;
    let mut bomb = vec![0, 0, 8, 1];
    bomb.extend_from_slice(&(declared as u32).to_be_bytes());
    bomb.resize(8 + declared + (16 << 20), 0);
    let compressed = gzip(&bomb);
    drop(bomb);
    assert!(compressed.len() < 1 << 20);
    let (result, peak) = peak_allocation(|| parse_idx(&compressed));
    let err = result.unwrap_err();
    assert!(err.to_string().contains("16777216 trailing bytes"), "{err}");
    assert!(
        peak <= declared + (1 << 16),
        "largest allocation {peak} bytes"
    );
    // Trailing data is counted only up to the limit.
    let err = parse_idx_with_limit(&gzip(&idx(&[4], &[7; 100])), 4).unwrap_err();
    assert!(
        err.to_string().contains("more than 4 trailing bytes"),
        "{err}"
    );
    // A lying header with little data allocates little.
    let mut liar = vec![0, 0, 8, 1];
    liar.extend_from_slice(&(1u32 << 29).to_be_bytes());
    liar.extend_from_slice(&[5; 1000]);
    let (result, peak) = peak_allocation(|| parse_idx(&gzip(&liar)));
    assert!(result.unwrap_err().to_string().contains("found 1000"));
    assert!(peak < 1 << 20, "largest allocation {peak} bytes");
}

fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

// ---------------------------------------------------------------------------------------------
// 4. Threads

#[test]
fn thread_count_is_bounded_with_a_warning() {
    if let Some(out) = std::env::var_os(CHILD) {
        std::fs::write(out, parallel::num_threads().to_string()).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let max = parallel::max_threads();
    assert_eq!(max, 4 * std::thread::available_parallelism().unwrap().get());
    for asked in ["100000", &usize::MAX.to_string()] {
        let out = dir.path().join("threads");
        let stderr = run_child(
            "thread_count_is_bounded_with_a_warning",
            &out,
            &[("RECURRENT_NUM_THREADS", asked)],
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), max.to_string());
        assert!(
            stderr.contains(&format!(
                "RECURRENT_NUM_THREADS asks for {asked} threads; using {max}"
            )),
            "{stderr}"
        );
    }
    // And within the bound, the request stands.
    let out = dir.path().join("threads");
    let stderr = run_child(
        "thread_count_is_bounded_with_a_warning",
        &out,
        &[("RECURRENT_NUM_THREADS", "3")],
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "3");
    assert!(!stderr.contains("asks for"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// 5. Checkpoint files

fn small_store() -> ParamStore<f32> {
    let mut p = ParamStore::<f32>::new(1);
    p.create("dense/kernel", &[3, 2], Initializer::GlorotUniform)
        .unwrap();
    p
}

#[cfg(unix)]
#[test]
fn save_keeps_the_targets_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.safetensors");
    for mode in [0o600, 0o640, 0o604] {
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        checkpoint::save(&small_store(), &path).unwrap();
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "{mode:o} became {got:o}");
        assert!(checkpoint::load_new::<f32>(&path, 0).is_ok());
    }
}

#[cfg(unix)]
#[test]
fn save_follows_symbolic_links() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("model.safetensors");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("latest.safetensors");
    std::os::unix::fs::symlink("real/model.safetensors", &link).unwrap();
    let store = small_store();
    checkpoint::save(&store, &link).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "still a link"
    );
    assert_eq!(
        std::fs::read(&real).unwrap(),
        checkpoint::save_to_bytes(&store).unwrap()
    );
    // No temporary file was left in either folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    assert_eq!(std::fs::read_dir(&real_dir).unwrap().count(), 1);
    // A dangling link: the file it names is created.
    let dangling = dir.path().join("dangling.safetensors");
    std::os::unix::fs::symlink("real/new.safetensors", &dangling).unwrap();
    checkpoint::save(&store, &dangling).unwrap();
    assert!(real_dir.join("new.safetensors").is_file());
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn save_removes_its_own_stale_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    // A process that has exited: its pid is free (unless reused within the test, unlikely).
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--list")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = dir
        .path()
        .join(format!(".m.safetensors.recurrent-tmp-{dead}-0"));
    let mine = dir.path().join(format!(
        ".m.safetensors.recurrent-tmp-{}-999",
        std::process::id()
    ));
    let other_target = dir.path().join(format!(".other.recurrent-tmp-{dead}-0"));
    let unrelated = dir.path().join(".m.safetensors.tmp-1-0");
    for f in [&stale, &mine, &other_target, &unrelated] {
        std::fs::write(f, b"partial").unwrap();
    }
    checkpoint::save(&small_store(), &path).unwrap();
    if Path::new("/proc/self").exists() {
        assert!(
            !stale.exists(),
            "the dead process's temporary file is removed"
        );
    }
    // This process's (a save in progress on another thread), another target's and files not
    // named by `save` stay.
    assert!(mine.exists() && other_target.exists() && unrelated.exists());
    assert!(checkpoint::load_new::<f32>(&path, 0).is_ok());
}

// ---------------------------------------------------------------------------------------------
// 6. Errors name the layer, the argument and the path

#[test]
fn dense_names_itself_and_its_scope() {
    let mut params = ParamStore::<f32>::new(0);
    let dense = Dense::new(&mut params, "classifier/dense", 4, 2).unwrap();
    let tape = Tape::new(&params);
    let x = tape.constant(ArrayD::zeros(IxDyn(&[3, 5])));
    let err = dense.apply(&tape, x).unwrap_err();
    assert_eq!(
        err.to_string(),
        "shape mismatch in Dense: expected an input [..., 4] (layer \"classifier/dense\"), got [3, 5]"
    );
}

#[test]
fn a_wrong_backward_cell_is_named_as_the_backward_cell() {
    let mut params = ParamStore::<f32>::new(0);
    let fw = BasicLstmCell::new(&mut params, "fw", 3, 4).unwrap();
    let bw = BasicLstmCell::new(&mut params, "bw", 5, 4).unwrap(); // input size 5, not 3
    let tape = Tape::new(&params);
    let x = tape.constant(ArrayD::zeros(IxDyn(&[2, 6, 3])));
    let err =
        bidirectional_dynamic_rnn(&tape, &fw, &bw, x, BidirectionalOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the backward cell of bidirectional_dynamic_rnn"),
        "{err}"
    );
    let err =
        bidirectional_dynamic_rnn(&tape, &bw, &fw, x, BidirectionalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("the forward cell"), "{err}");
    let steps: Vec<_> = (0..3)
        .map(|_| tape.constant(ArrayD::zeros(IxDyn(&[2, 3]))))
        .collect();
    let err = recurrent::static_bidirectional_rnn(
        &tape,
        &fw,
        &bw,
        &steps,
        BidirectionalOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("the backward cell of static_bidirectional_rnn"),
        "{err}"
    );
}

#[test]
fn mean_axis_errors_are_mean_axis_errors() {
    let params = ParamStore::<f32>::new(0);
    let tape = Tape::new(&params);
    let x = tape.constant(ArrayD::zeros(IxDyn(&[2, 3])));
    assert_shape_err(tape.mean_axis(x, 2, false), "mean_axis");
    assert_shape_err(tape.sum_axis(x, 2, false), "sum_axis");
}

#[test]
fn file_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let shown = dir.path().display().to_string();
    let array = IdxArray::new(vec![2], vec![1, 2]).unwrap();
    for gz in [false, true] {
        let err = write_idx(dir.path(), &array, gz).unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err:?}");
        assert!(err.to_string().contains(&shown), "{err}");
    }
    let err = file_sha256(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&shown), "{err}");
    let missing = dir.path().join("missing.gz");
    let err = file_sha256(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.gz"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 7. Bounded fuzzing of both parsers

/// One random mutation of `b`: bit flips, byte sets, truncation, insertion, duplication,
/// a splice from `other`, or a big-endian/little-endian number set to a boundary value.
fn mutate(b: &mut Vec<u8>, other: &[u8], rng: &mut StdRng) {
    let pick = |rng: &mut StdRng, len: usize| rng.random_range(0..len.max(1));
    match rng.random_range(0..8) {
        0 if !b.is_empty() => {
            let i = pick(rng, b.len());
            b[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !b.is_empty() => {
            let i = pick(rng, b.len());
            b[i] = [0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"'][rng.random_range(0..8)];
        }
        2 if !b.is_empty() => b.truncate(pick(rng, b.len())),
        3 => {
            let i = rng.random_range(0..=b.len());
            let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            b.splice(i..i, junk);
        }
        4 if b.len() > 2 => {
            let i = pick(rng, b.len() - 1);
            let j = rng.random_range(i + 1..b.len());
            let dup = b[i..j].to_vec();
            b.splice(j..j, dup);
        }
        5 if !other.is_empty() && !b.is_empty() => {
            let i = pick(rng, b.len());
            let j = pick(rng, other.len());
            let n = rng
                .random_range(1..=32)
                .min(other.len() - j)
                .min(b.len() - i);
            b[i..i + n].copy_from_slice(&other[j..j + n]);
        }
        6 if b.len() >= 4 => {
            let i = pick(rng, b.len() - 3);
            let v: u32 =
                [0, 1, u32::MAX, u32::MAX / 2, 1 << 31, rng.random()][rng.random_range(0..6)];
            if rng.random() {
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            } else {
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {
            // A digit in the first 200 bytes (checkpoint headers: shapes and offsets).
            let digits: Vec<usize> = (0..b.len().min(200))
                .filter(|&i| b[i].is_ascii_digit())
                .collect();
            if !digits.is_empty() {
                let i = digits[rng.random_range(0..digits.len())];
                b[i] = b'0' + rng.random_range(0..10u8);
            }
        }
    }
}

#[test]
fn fuzz_idx_parser_20000_inputs() {
    let mut rng = StdRng::seed_from_u64(0x1d8_f022);
    let seeds: Vec<Vec<u8>> = {
        let plain = [
            idx(&[3], &[1, 2, 3]),
            idx(&[2, 3], &[9, 8, 7, 6, 5, 4]),
            idx(&[2, 2, 2], &[0; 8]),
            idx(&[1, 1, 2, 2], &[4, 5, 6, 7]),
            idx(&[0], &[]),
        ];
        let mut s: Vec<Vec<u8>> = plain.to_vec();
        s.extend(plain.iter().map(|p| gzip(p)));
        s
    };
    let (mut ok, mut err) = (0, 0);
    for round in 0..20_000 {
        let mut b = seeds[rng.random_range(0..seeds.len())].clone();
        let other = &seeds[rng.random_range(0..seeds.len())];
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut b, other, &mut rng);
        }
        // Half of the rounds: a mutated plain file inside a valid gzip stream.
        if round % 2 == 1 && !b.starts_with(&[0x1f, 0x8b]) {
            b = gzip(&b);
        }
        match parse_idx(&b) {
            Ok(a) => {
                // The oracle of tests/fuzz/fuzz_targets/idx.rs.
                assert_eq!(
                    a.data.len(),
                    a.dims.iter().product::<usize>(),
                    "round {round}"
                );
                let encoded = encode_idx(&a).expect("a parsed array encodes");
                let again = parse_idx(&encoded).expect("an encoded array parses");
                assert_eq!(
                    (&again.dims, &again.data),
                    (&a.dims, &a.data),
                    "round {round}"
                );
                if !b.starts_with(&[0x1f, 0x8b]) {
                    assert_eq!(encoded, b, "round {round}: plain input round-trips");
                }
                ok += 1;
            }
            Err(e) => {
                assert!(matches!(e, Error::Format(_)), "round {round}: {e:?}");
                err += 1;
            }
        }
    }
    assert!(ok > 1000 && err > 1000, "ok {ok}, err {err}");
}

fn store_bits<T: recurrent::Scalar>(p: &ParamStore<T>) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    p.iter()
        .map(|(_, n, v)| {
            let bits = v.iter().map(|x| x.to_f64_lossless().to_bits()).collect();
            (n.to_string(), v.shape().to_vec(), bits)
        })
        .collect()
}

#[test]
fn fuzz_checkpoint_loaders_20000_inputs() {
    let mut rng = StdRng::seed_from_u64(0xc4e_f022);
    let reference = {
        let mut p = ParamStore::<f32>::new(3);
        p.create(
            "rnn/basic_lstm_cell/kernel",
            &[3, 8],
            Initializer::GlorotUniform,
        )
        .unwrap();
        p.create("rnn/basic_lstm_cell/bias", &[8], Initializer::Zeros)
            .unwrap();
        p.create("dense/kernel", &[2, 2], Initializer::GlorotUniform)
            .unwrap();
        p
    };
    let mut wide = ParamStore::<f64>::new(4);
    wide.create("dense/kernel", &[2, 2], Initializer::GlorotUniform)
        .unwrap();
    wide.create("x", &[1], Initializer::Constant(1e300))
        .unwrap();
    let seeds = [
        checkpoint::save_to_bytes(&reference).unwrap(),
        checkpoint::save_to_bytes(&wide).unwrap(),
    ];
    let before = store_bits(&reference);
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..20_000 {
        let k = rng.random_range(0..seeds.len());
        let mut b = seeds[k].clone();
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut b, &seeds[1 - k], &mut rng);
        }
        // The oracle of tests/fuzz/fuzz_targets/checkpoint.rs: never a panic, a failed load
        // changes nothing, a loaded store saves and reloads bit-identically; and saving is
        // canonical (the same store, the same bytes) and every loaded value finite.
        let mut target = reference.clone();
        match checkpoint::load_from_bytes(&mut target, &b) {
            Ok(()) => {
                assert!(target.all_finite(), "round {round}");
                loaded += 1;
            }
            Err(_) => {
                assert_eq!(
                    store_bits(&target),
                    before,
                    "round {round}: a failed load changed the store"
                );
                refused += 1;
            }
        }
        let mut target = reference.clone();
        if checkpoint::load_from_bytes_converting(&mut target, &b).is_err() {
            assert_eq!(store_bits(&target), before, "round {round}");
        }
        if let Ok(fresh) = checkpoint::load_new_from_bytes::<f32>(&b, 0) {
            assert!(fresh.all_finite(), "round {round}");
            let saved = checkpoint::save_to_bytes(&fresh).unwrap();
            let again = checkpoint::load_new_from_bytes::<f32>(&saved, 0).unwrap();
            assert_eq!(store_bits(&again), store_bits(&fresh), "round {round}");
            assert!(
                checkpoint::save_to_bytes(&again).unwrap() == saved,
                "round {round}: not canonical"
            );
        }
        if let Ok(fresh) = checkpoint::load_new_from_bytes::<f64>(&b, 0) {
            assert!(fresh.all_finite(), "round {round}");
        }
    }
    assert!(
        loaded > 100 && refused > 1000,
        "loaded {loaded}, refused {refused}"
    );
}
