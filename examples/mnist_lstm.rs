//! MNIST with one LSTM: each 28x28 image is read as 28 time steps of 28 pixels.
//!
//! `BasicLstmCell(128, forget_bias = 1.0)` -> output of the last step -> dense -> 10 logits,
//! softmax cross-entropy, Adam (learning rate 0.001), batches of 128 (the classic TensorFlow 1.x
//! tutorial, `recurrent_network.py`).
//!
//! ```text
//! cargo run --release --example mnist_lstm    # or: -- --data-dir DIR_WITH_THE_MNIST_FILES
//! ```
//!
//! Re-measured 2026-12-01 on an AMD EPYC Zen 5 (2 cores, shared): defaults 98.20% (97.89% on the
//! first 1280), 14 s wall time, median 5.8 ms per step; `--steps 120` and `--steps 60
//! --checkpoint F` then `--resume F --steps 120` both end at loss 0.387795, 85.03%.
//!
//! Measured with seed 42 (the default) on the project's 2-core machine, 2026-11-22; the output
//! layer starts from the tutorial's `tf.random_normal` weights and biases:
//! - defaults (2000 steps, static): test accuracy 98.20% (97.89% on the first 1280 test
//!   images), 36 s wall time, median 16.4 ms per training step;
//! - `--steps 800`: 96.72% (95.86% on the first 1280, 100% on the first 128), 15 s; the README
//!   shows the spread over 12 seeds, ours, PyTorch's and TensorFlow's own
//!   (`benches/accuracy_seeds.sh`);
//! - `--unroll dynamic --epochs 10` (4297 steps): 98.35% (97.27% on the first 1280), 72 s,
//!   16.1 ms per step.
//!
//! Each step's gradient is the sum of `--shards` gradient shards of the batch (default one per 64
//! examples: 2), added in shard order, so that `mpirun -np 2 target/release/examples/mnist_lstm
//! --distributed` (built with `--features mpi`) gives the same bits as one process: both print
//! final loss 0.257786 and 91.61% after `--steps 200` (2026-12-01). `--shards 1` (the whole
//! batch on one tape, the default before) differs in the last bits of the parameters but printed
//! the same figures at 120 steps (0.387795, 85.03%) and at 2000 (0.034828, 98.20%).
//!
//! `--unroll static` (the default) feeds `tape.unstack(x, 1)` to `static_rnn`;
//! `--unroll dynamic` feeds the `[batch, 28, 28]` tensor to `dynamic_rnn` and takes
//! `last_relevant_output`. Both train the same model with the same parameter names.

mod common;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use common::{AnyResult, TrainArgs};
use recurrent::cell::BasicLstmCell;
use recurrent::init::Initializer;
use recurrent::layers::{Context, Dense, Layer, Returns, Rnn};
use recurrent::parallel::MAX_ROWS_PER_SHARD;
use recurrent::train::Trainer;
use recurrent::{static_rnn, ParamId, ParamStore, RnnOptions, Tape, Var};

/// Train an LSTM on MNIST, one image row per time step.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
    /// How the LSTM is unrolled over the 28 steps.
    #[arg(long, value_enum, default_value_t = Unroll::Static)]
    unroll: Unroll,
    /// Gradient shards per batch: each step's gradient is the sum of the shards' gradients in
    /// shard order, the same bits on one process or on any number of ranks that divides it
    /// (default: one shard per 64 examples, 2 for the default batch of 128).
    #[arg(long, value_parser = common::positive())]
    shards: Option<usize>,
    /// Train on the MPI processes `mpirun` started, the batch's shards split over them; rank 0
    /// alone prints and writes files (needs a build with `--features mpi`).
    #[arg(long)]
    distributed: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Unroll {
    /// `static_rnn` over a list of 28 per-step tensors.
    Static,
    /// `dynamic_rnn` over one `[batch, 28, 28]` tensor.
    Dynamic,
}

/// The tutorial's model as a layer of its own: the LSTM's last output, then dense.
struct LstmClassifier {
    rnn: Rnn<BasicLstmCell>,
    dense: Dense,
    unroll: Unroll,
}

impl Layer<f32> for LstmClassifier {
    fn forward(
        &self,
        tape: &Tape<'_, f32>,
        x: Var,
        cx: &mut Context<'_, f32>,
    ) -> recurrent::Result<Var> {
        let last = match self.unroll {
            Unroll::Static => {
                let steps = tape.unstack(x, 1)?; // 28 x [batch, 28]
                let (outputs, _) =
                    static_rnn(tape, self.rnn.cell(), &steps, RnnOptions::default())?;
                *outputs.last().expect("28 steps")
            }
            Unroll::Dynamic => self.rnn.forward(tape, x, cx)?, // returns the last valid output
        };
        self.dense.apply(tape, last)
    }
    fn param_ids(&self) -> Vec<ParamId> {
        [self.rnn.param_ids(), self.dense.param_ids()].concat()
    }
    fn name(&self) -> &str {
        "lstm_classifier"
    }
}

fn main() -> ExitCode {
    common::report_errors(train(common::parse(&[
        ("steps", "2000"),
        ("hidden", "128"),
    ])))
}

fn train(cli: Cli) -> AnyResult<()> {
    let args = &cli.train;
    let mut params = ParamStore::<f32>::new(args.seed);
    // `rnn/basic_lstm_cell/{kernel,bias}`, forget_bias 1.0, as the tutorial names them.
    let rnn = Rnn::lstm(&mut params, 28, args.hidden)?.returns(Returns::LastOutput);
    // The tutorial's output layer: weights and biases drawn from tf.random_normal (N(0, 1)).
    // Keras's Glorot-uniform kernel and zero bias (Dense::new) trained worse on MNIST at every
    // length we measured (seeds 0-4, test accuracy on all images: 95.79% vs 96.39% after 800
    // steps, 97.68% vs 98.11% after 2000, 98.37% vs 98.54% after 10 epochs).
    let normal = Initializer::RandomNormal {
        mean: 0.0,
        stddev: 1.0,
    };
    let dense = Dense::with_init(&mut params, "dense", args.hidden, 10, normal, normal)?;
    let model = LstmClassifier {
        rnn,
        dense,
        unroll: cli.unroll,
    };
    let unroll = cli.unroll.to_possible_value().expect("no skipped variants");
    let shards = cli
        .shards
        .unwrap_or(args.batch_size.div_ceil(MAX_ROWS_PER_SHARD));
    #[cfg(feature = "mpi")]
    let mpi = if cli.distributed {
        Some(recurrent::distributed::Mpi::init()?)
    } else {
        None
    };
    #[cfg(feature = "mpi")]
    let (rank, ranks) = mpi.as_ref().map_or((0, 1), |m| (m.rank(), m.size()));
    #[cfg(not(feature = "mpi"))]
    let (rank, ranks) = if cli.distributed {
        return Err(
            "--distributed needs MPI: build with `cargo build --release --features mpi \
             --example mnist_lstm` (Debian: apt-get install libopenmpi-dev openmpi-bin \
             libclang-dev) and start it with mpirun"
                .into(),
        );
    } else {
        (0, 1)
    };
    if !shards.is_multiple_of(ranks) {
        return Err(format!(
            "--shards {shards} cannot be split over {ranks} ranks: pass --shards N with N a \
             multiple of {ranks} (and the same N to a one-process run to compare with it)"
        )
        .into());
    }
    let lines = [
        format!(
            "model: 28 steps x 28 pixels -> BasicLstmCell({}, forget_bias 1.0), {} unroll -> dense -> 10",
            args.hidden,
            unroll.get_name() // as typed after --unroll
        ),
        format!(
            "gradient: sum of {shards} shard{} of the batch, on {ranks} process{}",
            if shards == 1 { "" } else { "s" },
            if ranks == 1 { "" } else { "es (MPI ranks)" },
        ),
    ];
    let configure = |trainer: Trainer<f32, LstmClassifier>| {
        let trainer = trainer.gradient_shards(shards)?.parallel_shards();
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &mpi {
            return trainer.collective(mpi.collective());
        }
        Ok(trainer)
    };
    let num_params = params.num_params() + params.len() + 3; // one shard's gathered buffer
    common::run_with(
        "mnist_lstm",
        &lines,
        args,
        params,
        model,
        rank == 0,
        configure,
    )?;
    #[cfg(feature = "mpi")]
    if let Some(mpi) = &mpi {
        time_gathers(mpi, num_params * shards / ranks);
    }
    #[cfg(not(feature = "mpi"))]
    let _ = num_params;
    Ok(())
}

/// Times 100 back-to-back gathers of a training step's buffer (`floats` per rank): what the
/// reduction costs without waiting for a slower rank. Rank 0 prints the median.
#[cfg(feature = "mpi")]
fn time_gathers(mpi: &recurrent::distributed::Mpi, floats: usize) {
    use recurrent::train::Collective;
    let collective = mpi.collective();
    let buffer = vec![1.0f32; floats];
    let mut times: Vec<f64> = (0..100)
        .map(|_| {
            let start = std::time::Instant::now();
            let all = Collective::<f32>::all_gather(&collective, &buffer);
            std::hint::black_box(all.expect("MPI aborts the job on a failed gather"));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    if mpi.rank() == 0 {
        println!(
            "         gather alone (100 back to back, {floats} floats per rank): median {:.3} ms",
            times[50]
        );
    }
}
