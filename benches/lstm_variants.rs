//! What fusing pays: one training step's forward and backward through `dynamic_rnn` (batch 128,
//! 28 steps of 28 inputs, 128 units, loss the sum of the outputs), for
//!
//! - `lstm_variants/basic_fused`: `BasicLstmCell`, the fused sequence kernel;
//! - `lstm_variants/lstm_cell_plain`: `LstmCell` without options (runs the same kernel);
//! - `lstm_variants/lstm_cell_peepholes`: `LstmCell` with peepholes, fused (the kernel's
//!   peephole path); `..._tape`: the same cell forced onto tape ops (a dozen ops per step,
//!   `dynamic_rnn` steps), as every variant ran before the kernel took peepholes;
//! - `lstm_variants/lstm_cell_peepholes_clip`: peepholes and `cell_clip` 3, fused; `..._tape`:
//!   on tape ops;
//! - `lstm_variants/lstm_cell_peepholes_clip_proj64`: peepholes, `cell_clip` and `num_proj` 64;
//! - `lstm_variants/layer_norm_lstm`: `LayerNormBasicLstmCell`, on tape ops.
//!
//! The ratio of a `_tape` variant to its fused twin is what fusing gains. Throughput is examples per second. Data is synthetic and seeded. Threads:
//! `RECURRENT_NUM_THREADS`, else all cores. Run with `cargo bench --bench lstm_variants`.
//!
//! On a shared, loaded machine the timings drift by tens of percent; for instruction counts,
//! `LSTM_VARIANTS_ONLY=<name> LSTM_VARIANTS_STEPS=<n>` runs `n` steps of one variant without
//! criterion, for `valgrind --tool=callgrind` (the difference between two step counts divided
//! by the difference of the counts is the cost of one step, setup excluded).

mod variants;

use std::hint::black_box;

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::{BasicLstmCell, Cell, LayerNormBasicLstmCell, LstmCell, LstmCellConfig};
use recurrent::{dynamic_rnn, ParamStore, RnnOptions, Tape};
use variants::Variants;

const BATCH: usize = 128;
const STEPS: usize = 28;
const INPUT: usize = 28;
const UNITS: usize = 128;

fn step<C: Cell>(params: &ParamStore<f32>, cell: &C, x: &ArrayD<f32>) -> f32 {
    let tape = Tape::new(params);
    let input = tape.constant(x.clone());
    let (out, _) = dynamic_rnn(&tape, cell, input, RnnOptions::default()).expect("forward");
    let loss = tape.sum(out);
    let grads = tape.backward(loss).expect("backward");
    black_box(grads);
    tape.scalar(loss)
}

struct Cells {
    params: ParamStore<f32>,
    basic: BasicLstmCell,
    plain: LstmCell,
    peep: LstmCell,
    peep_clip: LstmCell,
    all: LstmCell,
    layer_norm: LayerNormBasicLstmCell,
    x: ArrayD<f32>,
}

fn cells() -> Cells {
    let mut rng = StdRng::seed_from_u64(1);
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[BATCH, STEPS, INPUT]), || {
        2.0 * rng.random::<f32>() - 1.0
    });
    let mut params = ParamStore::<f32>::new(0);
    let basic = BasicLstmCell::new(&mut params, "basic", INPUT, UNITS).unwrap();
    let plain = LstmCellConfig::new(UNITS)
        .init(&mut params, "plain", INPUT)
        .unwrap();
    let peep = LstmCellConfig::new(UNITS)
        .with_peepholes(true)
        .init(&mut params, "peep", INPUT)
        .unwrap();
    let peep_clip = LstmCellConfig::new(UNITS)
        .with_peepholes(true)
        .with_cell_clip(3.0)
        .init(&mut params, "peep_clip", INPUT)
        .unwrap();
    let all = LstmCellConfig::new(UNITS)
        .with_peepholes(true)
        .with_cell_clip(3.0)
        .with_num_proj(64)
        .init(&mut params, "all", INPUT)
        .unwrap();
    let layer_norm = LayerNormBasicLstmCell::new(&mut params, "ln", INPUT, UNITS).unwrap();
    Cells {
        params,
        basic,
        plain,
        peep,
        peep_clip,
        all,
        layer_norm,
        x,
    }
}

impl Variants for Cells {
    fn run(&self, name: &str) -> f32 {
        let (p, x) = (&self.params, &self.x);
        match name {
            "basic_fused" => step(p, &self.basic, x),
            "lstm_cell_plain" => step(p, &self.plain, x),
            "lstm_cell_peepholes" => step(p, &self.peep, x),
            "lstm_cell_peepholes_tape" => step(p, &self.peep.clone().with_tape_ops(true), x),
            "lstm_cell_peepholes_clip" => step(p, &self.peep_clip, x),
            "lstm_cell_peepholes_clip_tape" => {
                step(p, &self.peep_clip.clone().with_tape_ops(true), x)
            }
            "lstm_cell_peepholes_clip_proj64" => step(p, &self.all, x),
            "layer_norm_lstm" => step(p, &self.layer_norm, x),
            other => panic!("no variant {other}"),
        }
    }
}

const NAMES: [&str; 8] = [
    "basic_fused",
    "lstm_cell_plain",
    "lstm_cell_peepholes",
    "lstm_cell_peepholes_tape",
    "lstm_cell_peepholes_clip",
    "lstm_cell_peepholes_clip_tape",
    "lstm_cell_peepholes_clip_proj64",
    "layer_norm_lstm",
];

fn main() {
    variants::main("lstm_variants", "LSTM_VARIANTS", &NAMES, BATCH, cells);
}
