//! Subnormal states do not slow the fused LSTM down: forward and backward of
//! `BasicLstmCell(28 -> 128)` over 28 steps of a batch of 128 with ordinary weights (Glorot,
//! inputs uniform in [0, 1)) and with weights that drive the state into the subnormal range
//! (input gate `sigmoid(-80)`, candidate `tanh(1e-5)`, forget gate near 1, as in
//! `tests/cells.rs`'s `fused_kernels_keep_no_subnormal_state_or_gradient`: each step would add
//! `1.8e-40` to `c`). The kernels flush such values to zero (`math`'s docs), so the two should
//! take the same time; on CPUs that handle subnormal operands in microcode, unflushed they
//! would not. Prints the medians of 30 alternating runs of each and their ratio.
//!
//! `cargo bench --bench denormals` (not criterion). Threads: `RECURRENT_NUM_THREADS`.

use std::time::Instant;

use ndarray::{Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::BasicLstmCell;
use recurrent::{dynamic_rnn, ParamStore, RnnOptions, Tape};

const UNITS: usize = 128;
const INPUT: usize = 28;

fn step(params: &ParamStore<f32>, cell: &BasicLstmCell, x: &ArrayD<f32>) -> f64 {
    let t0 = Instant::now();
    let tape = Tape::new(params);
    let xv = tape.constant(x.clone());
    let (out, state) = dynamic_rnn(&tape, cell, xv, RnnOptions::default()).expect("forward");
    let loss = tape.add(tape.sum(out), tape.sum(state.c)).expect("loss");
    std::hint::black_box(tape.backward(loss).expect("backward"));
    t0.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let mut params = ParamStore::<f32>::new(0);
    let ordinary = BasicLstmCell::new(&mut params, "ordinary", INPUT, UNITS).expect("cell");
    let mut kernel = Array2::<f32>::zeros((INPUT + UNITS, 4 * UNITS));
    for r in 0..INPUT {
        for k in 0..UNITS {
            kernel[[r, k]] = -80.0 / INPUT as f32;
            kernel[[r, UNITS + k]] = 1e-5 / INPUT as f32;
            kernel[[r, 2 * UNITS + k]] = 30.0 / INPUT as f32;
        }
    }
    let subnormal = BasicLstmCell::from_weights(
        &mut params,
        "subnormal",
        kernel.into_dyn(),
        ArrayD::zeros(IxDyn(&[4 * UNITS])),
    )
    .expect("cell");
    let mut rng = StdRng::seed_from_u64(3);
    let x_ordinary = ArrayD::from_shape_simple_fn(IxDyn(&[128, 28, INPUT]), || rng.random::<f32>());
    let x_ones = ArrayD::from_elem(IxDyn(&[128, 28, INPUT]), 1.0f32);
    for _ in 0..5 {
        step(&params, &ordinary, &x_ordinary);
        step(&params, &subnormal, &x_ones);
    }
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..30 {
        a.push(step(&params, &ordinary, &x_ordinary));
        b.push(step(&params, &subnormal, &x_ones));
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (ma, mb) = (a[15], b[15]);
    println!(
        "denormals: ordinary {ma:.2} ms, driven to subnormal {mb:.2} ms, ratio {:.2} (medians of 30, {} kernels)",
        mb / ma,
        recurrent::math::isa().name()
    );
}
