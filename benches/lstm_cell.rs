//! One `BasicLstmCell` step (input 28, 128 units, batch 128): the fused step op alone.
//!
//! - `lstm_cell/forward_inference`: the step on an inference tape (nothing kept for backward);
//! - `lstm_cell/forward_train`: the step on a training tape (activations kept for backward);
//! - `lstm_cell/backward`: `Tape::backward` of the sum of the new `h`, through the step, with the
//!   previous state watched as it is in the middle of a sequence (the forward is set up outside
//!   the timing);
//! - `lstm_cell/forward_backward`: the two together, freeing the tape included.
//!
//! Throughput is examples per second. Inputs and states are synthetic and seeded. Threads:
//! `RECURRENT_NUM_THREADS`, else all cores. Run with `cargo bench --bench lstm_cell`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::{BasicLstmCell, Cell, LstmState};
use recurrent::{ParamStore, Tape, Var};

const BATCH: usize = 128;
const INPUT: usize = 28;
const UNITS: usize = 128;

fn uniform(rng: &mut StdRng, shape: &[usize], scale: f32) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || scale * (2.0 * rng.random::<f32>() - 1.0))
}

/// The step's inputs: `x` as data, the previous `c` and `h` watched (they need gradients in
/// the middle of a sequence).
fn step(
    tape: &Tape<'_, f32>,
    cell: &BasicLstmCell,
    data: &(ArrayD<f32>, ArrayD<f32>, ArrayD<f32>),
) -> Var {
    let x = tape.constant(data.0.clone());
    let state = LstmState {
        c: tape.watch(data.1.clone()),
        h: tape.watch(data.2.clone()),
    };
    let (h, _) = cell.call(tape, x, &state).expect("LSTM step");
    h
}

fn lstm_cell(c: &mut Criterion) {
    let mut params = ParamStore::<f32>::new(0);
    let cell = BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", INPUT, UNITS).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let data = (
        uniform(&mut rng, &[BATCH, INPUT], 1.0),
        uniform(&mut rng, &[BATCH, UNITS], 1.0),
        uniform(&mut rng, &[BATCH, UNITS], 0.9),
    );

    let mut group = c.benchmark_group("lstm_cell");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    group.bench_function("forward_inference", |b| {
        b.iter(|| {
            let tape = Tape::inference(&params);
            let h = step(&tape, &cell, black_box(&data));
            black_box(tape.to_array(h))
        })
    });
    group.bench_function("forward_train", |b| {
        // The tape (and what it recorded) is freed outside the timing.
        b.iter_with_large_drop(|| {
            let tape = Tape::new(&params);
            black_box(step(&tape, &cell, black_box(&data)));
            tape
        })
    });
    group.bench_function("backward", |b| {
        b.iter_batched(
            || {
                let tape = Tape::new(&params);
                let h = step(&tape, &cell, &data);
                let loss = tape.sum(h);
                (tape, loss)
            },
            |(tape, loss)| {
                let grads = tape.backward(loss).expect("backward");
                (grads, tape)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let tape = Tape::new(&params);
            let h = step(&tape, &cell, black_box(&data));
            let loss = tape.sum(h);
            tape.backward(loss).expect("backward")
        })
    });
    group.finish();
}

criterion_group!(benches, lstm_cell);
criterion_main!(benches);
