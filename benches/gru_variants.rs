//! The GRU's two variants and what its fused kernel pays: one training step's forward and
//! backward (batch 128, 28 steps of 28 inputs, 128 units, loss the sum of the outputs), for
//!
//! - `gru_variants/reset_before_fused`: `GruCell` (TensorFlow 1.x), `dynamic_rnn`'s fused op;
//! - `gru_variants/reset_after_fused`: `GruCell` with `reset_after` (PyTorch's, Keras's
//!   default), the same kernel's other branch;
//! - `gru_variants/reset_after_tape`: the same cell stepped with `GruCell::call` (tape ops,
//!   about fifteen per step): what routing `reset_after` around the kernel would cost.
//!
//! Throughput is examples per second; data is synthetic and seeded; threads:
//! `RECURRENT_NUM_THREADS`, else all cores. `cargo bench --bench gru_variants`. For
//! instruction counts, `GRU_VARIANTS_ONLY=<name> GRU_VARIANTS_STEPS=<n>` runs `n` steps of one
//! variant without criterion, for `valgrind --tool=callgrind` (the difference between two step
//! counts divided by the difference of the counts is one step, setup excluded).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::{Cell, GruCell, GruCellConfig};
use recurrent::{dynamic_rnn, ParamStore, RnnOptions, Tape};

const BATCH: usize = 128;
const STEPS: usize = 28;
const INPUT: usize = 28;
const UNITS: usize = 128;

fn fused(params: &ParamStore<f32>, cell: &GruCell, x: &ArrayD<f32>) -> f32 {
    let tape = Tape::new(params);
    let input = tape.constant(x.clone());
    let (out, _) = dynamic_rnn(&tape, cell, input, RnnOptions::default()).expect("forward");
    let loss = tape.sum(out);
    black_box(tape.backward(loss).expect("backward"));
    tape.scalar(loss)
}

fn stepped(params: &ParamStore<f32>, cell: &GruCell, x: &ArrayD<f32>) -> f32 {
    let tape = Tape::new(params);
    let input = tape.constant(x.clone());
    let mut h = cell.zero_state(&tape, BATCH).expect("zero state");
    let mut outs = Vec::with_capacity(STEPS);
    for step in tape.unstack(input, 1).expect("unstack") {
        h = cell.call(&tape, step, &h).expect("step").0;
        outs.push(h);
    }
    let loss = tape.sum(tape.stack(&outs, 1).expect("stack"));
    black_box(tape.backward(loss).expect("backward"));
    tape.scalar(loss)
}

struct Cells {
    params: ParamStore<f32>,
    before: GruCell,
    after: GruCell,
    x: ArrayD<f32>,
}

fn cells() -> Cells {
    let mut rng = StdRng::seed_from_u64(1);
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[BATCH, STEPS, INPUT]), || {
        2.0 * rng.random::<f32>() - 1.0
    });
    let mut params = ParamStore::<f32>::new(0);
    let before = GruCell::new(&mut params, "before", INPUT, UNITS).unwrap();
    let after = GruCellConfig::new(UNITS)
        .with_reset_after(true)
        .init(&mut params, "after", INPUT)
        .unwrap();
    Cells {
        params,
        before,
        after,
        x,
    }
}

impl Cells {
    fn run(&self, name: &str) -> f32 {
        let (p, x) = (&self.params, &self.x);
        match name {
            "reset_before_fused" => fused(p, &self.before, x),
            "reset_after_fused" => fused(p, &self.after, x),
            "reset_after_tape" => stepped(p, &self.after, x),
            other => panic!("no variant {other}"),
        }
    }
}

const NAMES: [&str; 3] = [
    "reset_before_fused",
    "reset_after_fused",
    "reset_after_tape",
];

fn gru_variants(c: &mut Criterion) {
    let cells = cells();
    let mut group = c.benchmark_group("gru_variants");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for name in NAMES {
        group.bench_function(name, |b| b.iter(|| cells.run(name)));
    }
    group.finish();
}

criterion_group!(benches, gru_variants);

fn main() {
    if let Ok(name) = std::env::var("GRU_VARIANTS_ONLY") {
        let steps: usize = std::env::var("GRU_VARIANTS_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let cells = cells();
        for _ in 0..steps {
            black_box(cells.run(&name));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
