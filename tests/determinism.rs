//! Training is deterministic: the same seeds give bit-identical parameters.
//!
//! The model is a small LSTM with dropout (`DropoutWrapper` on inputs and outputs, masks drawn
//! from `Tape::with_seed(step)`), a dense layer on the last output, softmax cross-entropy and
//! Adam, trained for a few steps on seeded random data.
//!
//! # Thread counts
//! The fused LSTM splits a batch into shards that depend only on the batch size (at most 64
//! examples each, and two from 32 examples up) and adds their partial weight gradients in shard
//! order, whatever the number of threads that run them; each matrix product runs on one thread
//! (the `gemm` crate is called with `Parallelism::None`). So parameters are bit-identical across
//! thread counts too:
//! [`same_bits_across_thread_counts`] trains a batch of 150 (three shards) with 1, 2 and 3 threads,
//! in `f64` and, in [`same_f32_bits_across_thread_counts`], in `f32` (the precision of training,
//! whose kernels take the AVX-512 or AVX2 paths on CPUs that have them); batches of 32 and 64
//! (two shards) in [`two_shard_batches_same_f32_bits_across_thread_counts`].

use ndarray::{Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::optim::{check_finite_loss, Adam, Optimizer};
use recurrent::Layer;
use recurrent::RnnOptions;
use recurrent::{
    dynamic_rnn, last_relevant_output, BasicLstmCell, Dense, DropoutWrapper, ParamStore, Scalar,
    Tape,
};

const STEPS: u64 = 5;
const BATCH: usize = 150;
const TIME: usize = 6;
const INPUT: usize = 5;
const UNITS: usize = 16;
const CLASSES: usize = 4;

/// Trains the model for [`STEPS`] steps and returns every parameter's bits in creation order.
fn train(seed: u64) -> Vec<(String, Vec<u64>)> {
    train_in::<f64>(seed)
}

/// [`train`] in `T`.
fn train_in<T: Scalar>(seed: u64) -> Vec<(String, Vec<u64>)> {
    train_batch::<T>(seed, BATCH)
}

/// [`train_in`] on batches of `batch` examples.
fn train_batch<T: Scalar>(seed: u64, batch: usize) -> Vec<(String, Vec<u64>)> {
    let mut params = ParamStore::<T>::new(seed);
    let cell = DropoutWrapper::new(
        BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", INPUT, UNITS).unwrap(),
    )
    .with_input_keep_prob(0.8)
    .unwrap()
    .with_output_keep_prob(0.7)
    .unwrap();
    let dense = Dense::new(&mut params, "dense", UNITS, CLASSES).unwrap();
    let mut opt = Adam::new(0.01).unwrap();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    for step in 0..STEPS {
        let x = ArrayD::from_shape_simple_fn(IxDyn(&[batch, TIME, INPUT]), || {
            T::from_f64_lossy(rng.random_range(-1.0..1.0))
        });
        let mut y = Array2::<T>::zeros((batch, CLASSES));
        for b in 0..batch {
            y[[b, rng.random_range(0..CLASSES)]] = T::one();
        }
        let lengths: Vec<usize> = (0..batch).map(|_| rng.random_range(1..=TIME)).collect();
        let (loss, grads) = {
            let tape = Tape::new(&params).with_seed(step);
            let xv = tape.constant(x);
            let (out, _) = dynamic_rnn(
                &tape,
                &cell,
                xv,
                RnnOptions::default().sequence_length(&lengths),
            )
            .unwrap();
            let last = last_relevant_output(&tape, out, Some(&lengths)).unwrap();
            let logits = dense.apply(&tape, last).unwrap();
            let labels = tape.constant(y.into_dyn());
            let loss = tape.mean(
                tape.softmax_cross_entropy_with_logits(labels, logits)
                    .unwrap(),
            );
            (tape.scalar(loss), tape.backward(loss).unwrap())
        };
        check_finite_loss(loss.to_f64_lossless(), step + 1).unwrap();
        opt.apply(&mut params, &grads).unwrap();
    }
    params
        .iter()
        .map(|(_, name, v)| {
            let bits = v.iter().map(|x| x.to_f64_lossless().to_bits()).collect();
            (name.to_string(), bits)
        })
        .collect()
}

fn digest(bits: &[(String, Vec<u64>)]) -> String {
    // FNV-1a over names and bits: enough to compare two runs printed by child processes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, values) in bits {
        for byte in name
            .bytes()
            .chain(values.iter().flat_map(|v| v.to_le_bytes()))
        {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[test]
fn same_seed_gives_bit_identical_parameters() {
    let a = train(3);
    let b = train(3);
    assert_eq!(a, b);
    // And the training did something: another seed gives other parameters.
    assert_ne!(a, train(4));
    let mut init = ParamStore::<f64>::new(3);
    BasicLstmCell::new(&mut init, "rnn/basic_lstm_cell", INPUT, UNITS).unwrap();
    let kernel0: Vec<u64> = init
        .value(init.id("rnn/basic_lstm_cell/kernel").unwrap())
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_ne!(a[0].1, kernel0, "the kernel was updated");
}

#[test]
fn same_bits_across_thread_counts() {
    // The setting is global; other tests running meanwhile only change speed, not results.
    let runs: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|threads| {
            recurrent::parallel::set_num_threads(threads);
            digest(&train(3))
        })
        .collect();
    recurrent::parallel::set_num_threads(0);
    assert_eq!(runs[0], runs[1], "1 vs 2 threads");
    assert_eq!(runs[0], runs[2], "1 vs 3 threads");
}

#[test]
fn same_f32_bits_across_thread_counts() {
    let runs: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|threads| {
            recurrent::parallel::set_num_threads(threads);
            digest(&train_in::<f32>(5))
        })
        .collect();
    recurrent::parallel::set_num_threads(0);
    assert_eq!(runs[0], runs[1], "1 vs 2 threads");
    assert_eq!(runs[0], runs[2], "1 vs 3 threads");
    assert_ne!(runs[0], digest(&train_in::<f32>(6)), "the seed matters");
}

/// Batches of 32 and 64 are two shards of 16 and 32 (so that two cores share them): the same bits
/// with 1, 2 and 3 threads too.
#[test]
fn two_shard_batches_same_f32_bits_across_thread_counts() {
    for batch in [32, 64] {
        let runs: Vec<_> = [1, 2, 3]
            .into_iter()
            .map(|threads| {
                recurrent::parallel::set_num_threads(threads);
                digest(&train_batch::<f32>(7, batch))
            })
            .collect();
        recurrent::parallel::set_num_threads(0);
        assert_eq!(runs[0], runs[1], "batch {batch}: 1 vs 2 threads");
        assert_eq!(runs[0], runs[2], "batch {batch}: 1 vs 3 threads");
    }
}

/// The fused LstmCell with peepholes and a cell clip (f32, batch 150: three shards, sequence
/// lengths) gives bit-identical outputs, final state and gradients (parameters and input) with
/// 1, 2 and 3 threads: the peephole gradients are summed per shard, then in shard order.
#[test]
fn fused_lstm_cell_variant_same_bits_across_thread_counts() {
    use recurrent::cell::{Cell, LstmCellConfig};
    let mut params = ParamStore::<f32>::new(11);
    let cell = LstmCellConfig::new(UNITS)
        .with_peepholes(true)
        .with_cell_clip(0.6)
        .init(&mut params, "rnn/lstm_cell", INPUT)
        .unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[BATCH, TIME, INPUT]), || {
        rng.random_range(-3.0f32..3.0)
    });
    let lengths: Vec<usize> = (0..BATCH).map(|b| b % (TIME + 1)).collect();
    let run = || {
        let tape = Tape::new(&params);
        let xv = tape.watch(x.clone());
        let (out, state) = dynamic_rnn(
            &tape,
            &cell,
            xv,
            RnnOptions::default().sequence_length(&lengths),
        )
        .unwrap();
        let loss = tape
            .add(tape.sum(tape.square(out)), tape.sum(state.c))
            .unwrap();
        let grads = tape.backward(loss).unwrap();
        let mut arrays = vec![
            tape.to_array(out),
            tape.to_array(state.c),
            tape.to_array(state.h),
        ];
        arrays.extend(
            cell.param_ids()
                .iter()
                .map(|&id| grads.get(id).unwrap().clone()),
        );
        arrays.push(grads.wrt(xv).unwrap().clone());
        let clipped = arrays[1].iter().filter(|v| v.abs() == 0.6).count();
        let bits: Vec<Vec<u32>> = arrays
            .iter()
            .map(|a| a.iter().map(|v| v.to_bits()).collect())
            .collect();
        (bits, clipped)
    };
    let runs: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|threads| {
            recurrent::parallel::set_num_threads(threads);
            run()
        })
        .collect();
    recurrent::parallel::set_num_threads(0);
    assert!(runs[0].1 > 0, "the clip must act");
    assert_eq!(runs[0].0.len(), 3 + 5 + 1);
    assert_eq!(runs[0], runs[1], "1 vs 2 threads");
    assert_eq!(runs[0], runs[2], "1 vs 3 threads");
}
