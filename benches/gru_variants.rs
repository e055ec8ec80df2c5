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

mod variants;

use std::hint::black_box;

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::{Cell, GruCell, GruCellConfig};
use recurrent::{dynamic_rnn, ParamStore, RnnOptions, Tape};
use variants::Variants;

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

impl Variants for Cells {
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

fn main() {
    variants::main("gru_variants", "GRU_VARIANTS", &NAMES, BATCH, cells);
}
