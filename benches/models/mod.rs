//! The reference models of `shared/bench/torch_models.py` (and `gru128`, whose PyTorch side is
//! in `benches/torch_bench.py`), shared by the benches
//! (`mod models;` in each bench file).
//!
//! All read batches of 128 images as 28 steps of 28 pixels (`[batch, 28, 28]`, batch-major) and
//! give 10 logits; a training step is forward, mean sparse softmax cross-entropy, backward and
//! one Adam update (learning rate 1e-3), as `bench_torch.py` times it.
//!
//! - `lstm128`: `BasicLstmCell(28 -> 128)` run by `dynamic_rnn`, dense(128 -> 10) on the last
//!   output.
//! - `bilstm256`: forward and backward `BasicLstmCell(28 -> 256)` run by
//!   `bidirectional_dynamic_rnn`, dense(512 -> 10) on the last step of both directions (forward
//!   `h` at `t = 27` beside the backward output at `t = 27`, which has read only the last row:
//!   TensorFlow's `static_bidirectional_rnn(...)[0][-1]` and PyTorch's `out[:, -1]`). The dynamic
//!   runner rather than `static_bidirectional_rnn` because it is what a TensorFlow user writes
//!   for a `[batch, time, input]` tensor and it runs each direction's whole sequence as one fused
//!   op; the static runner records 28 step ops per direction plus 28 concatenations (compare the
//!   two runners in `benches/unroll.rs`). Both give the same numbers.
//! - `multi3`: dense(28 -> 128) at every step (reshape `[B * 28, 28]` -> dense -> reshape),
//!   `MultiCell` of 3 `DropoutWrapper(BasicLstmCell(128), output_keep_prob = 0.5)` run by
//!   `dynamic_rnn`, dense(128 -> 10) on the top layer's final `h` (which output dropout does not
//!   touch, as in PyTorch's `h_n[-1]`).
//! - `gru128`: `GruCell(28 -> 128)` run by `dynamic_rnn`, dense(128 -> 10) on the last output.
//!   PyTorch's `nn.GRU` applies the reset gate after the recurrent product: same size and cost,
//!   not the same function.
//! - `gru128ra`: `gru128` with `GruCellConfig::with_reset_after(true)`, the same function as
//!   PyTorch's `nn.GRU` (and `benches/torch_bench.py`'s `gru128ra`, the same PyTorch model as
//!   its `gru128`), so the comparison is of one function.

// Each bench uses only some of these items.
#![allow(dead_code)]

use ndarray::{Array3, ArrayD};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::{BasicLstmCell, DropoutWrapper, GruCell, GruCellConfig, MultiCell};
use recurrent::optim::{Adam, Optimizer};
use recurrent::Layer;
use recurrent::{rnn, Dense, ParamStore, Result, Tape, Var};
use recurrent::{BidirectionalOptions, RnnOptions};

/// Examples per batch.
pub const BATCH: usize = 128;
/// Time steps per example (image rows).
pub const STEPS: usize = 28;
/// Inputs per step (pixels per row).
pub const INPUT: usize = 28;
/// Output classes.
pub const CLASSES: usize = 10;

/// The reference models' names, in `bench_torch.py`'s order, then `gru128` and `gru128ra`.
pub const NAMES: [&str; 5] = ["lstm128", "bilstm256", "multi3", "gru128", "gru128ra"];

enum Net {
    Lstm128 {
        cell: BasicLstmCell,
        dense: Dense,
    },
    Bilstm256 {
        fw: BasicLstmCell,
        bw: BasicLstmCell,
        dense: Dense,
    },
    Multi3 {
        input: Dense,
        stack: MultiCell<DropoutWrapper<BasicLstmCell>>,
        dense: Dense,
    },
    Gru128 {
        cell: GruCell,
        dense: Dense,
    },
}

/// How a model unrolls its recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// `dynamic_rnn` / `bidirectional_dynamic_rnn` on the `[batch, time, input]` tensor (each
    /// LSTM's whole sequence is one fused op): what the models use.
    Dynamic,
    /// `static_rnn` / `static_bidirectional_rnn` on the 28 unstacked `[batch, input]` steps (one
    /// fused op per step).
    Static,
}

/// One reference model with its parameters and Adam optimizer.
pub struct Model {
    name: &'static str,
    params: ParamStore<f32>,
    net: Net,
    opt: Adam<f32>,
    steps: u64,
}

impl Model {
    /// Builds the model `name` (one of [`NAMES`]) with parameters drawn from `seed`.
    ///
    /// # Panics
    /// On an unknown name.
    pub fn new(name: &str, seed: u64) -> Model {
        let mut params = ParamStore::<f32>::new(seed);
        let p = &mut params;
        let (name, net) = match name {
            "lstm128" => (
                "lstm128",
                Net::Lstm128 {
                    cell: BasicLstmCell::new(p, "rnn/basic_lstm_cell", INPUT, 128).unwrap(),
                    dense: Dense::new(p, "dense", 128, CLASSES).unwrap(),
                },
            ),
            "bilstm256" => (
                "bilstm256",
                Net::Bilstm256 {
                    fw: BasicLstmCell::new(p, "bidirectional_rnn/fw/basic_lstm_cell", INPUT, 256)
                        .unwrap(),
                    bw: BasicLstmCell::new(p, "bidirectional_rnn/bw/basic_lstm_cell", INPUT, 256)
                        .unwrap(),
                    dense: Dense::new(p, "dense", 512, CLASSES).unwrap(),
                },
            ),
            "multi3" => {
                let input = Dense::new(p, "dense_in", INPUT, 128).unwrap();
                let cells = (0..3)
                    .map(|k| {
                        let scope = format!("rnn/multi_rnn_cell/cell_{k}/basic_lstm_cell");
                        let lstm = BasicLstmCell::new(p, scope.as_str(), 128, 128)?;
                        DropoutWrapper::new(lstm).with_output_keep_prob(0.5)
                    })
                    .collect::<Result<Vec<_>>>()
                    .unwrap();
                let stack = MultiCell::new(cells).unwrap();
                let dense = Dense::new(p, "dense", 128, CLASSES).unwrap();
                (
                    "multi3",
                    Net::Multi3 {
                        input,
                        stack,
                        dense,
                    },
                )
            }
            "gru128" => (
                "gru128",
                Net::Gru128 {
                    cell: GruCell::new(p, "rnn/gru_cell", INPUT, 128).unwrap(),
                    dense: Dense::new(p, "dense", 128, CLASSES).unwrap(),
                },
            ),
            "gru128ra" => (
                "gru128ra",
                Net::Gru128 {
                    cell: GruCellConfig::new(128)
                        .with_reset_after(true)
                        .init(p, "rnn/gru_cell", INPUT)
                        .unwrap(),
                    dense: Dense::new(p, "dense", 128, CLASSES).unwrap(),
                },
            ),
            other => panic!("unknown model {other:?}: expected one of {NAMES:?}"),
        };
        Model {
            name,
            params,
            net,
            opt: Adam::new(1e-3).unwrap(),
            steps: 0,
        }
    }

    /// The model's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The parameter store.
    pub fn params(&self) -> &ParamStore<f32> {
        &self.params
    }

    /// The number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params.num_params()
    }

    /// Logits `[batch, 10]` for inputs `x` `[batch, 28, 28]` recorded on `tape`.
    pub fn logits(&self, tape: &Tape<'_, f32>, x: Var) -> Result<Var> {
        self.logits_with(tape, x, Runner::Dynamic)
    }

    /// [`Model::logits`] with the recurrence unrolled by `runner`.
    pub fn logits_with(&self, tape: &Tape<'_, f32>, x: Var, runner: Runner) -> Result<Var> {
        match (&self.net, runner) {
            (Net::Lstm128 { cell, dense }, Runner::Dynamic) => {
                let (outputs, _) = rnn::dynamic_rnn(tape, cell, x, RnnOptions::default())?;
                let last = rnn::last_relevant_output(tape, outputs, None)?;
                dense.apply(tape, last)
            }
            (Net::Lstm128 { cell, dense }, Runner::Static) => {
                let steps = tape.unstack(x, 1)?;
                let (outputs, _) = rnn::static_rnn(tape, cell, &steps, RnnOptions::default())?;
                dense.apply(tape, *outputs.last().expect("28 steps"))
            }
            (Net::Gru128 { cell, dense }, Runner::Dynamic) => {
                let (outputs, _) = rnn::dynamic_rnn(tape, cell, x, RnnOptions::default())?;
                let last = rnn::last_relevant_output(tape, outputs, None)?;
                dense.apply(tape, last)
            }
            (Net::Gru128 { cell, dense }, Runner::Static) => {
                let steps = tape.unstack(x, 1)?;
                let (outputs, _) = rnn::static_rnn(tape, cell, &steps, RnnOptions::default())?;
                dense.apply(tape, *outputs.last().expect("28 steps"))
            }
            (Net::Bilstm256 { fw, bw, dense }, Runner::Dynamic) => {
                let ((out_fw, out_bw), _) = rnn::bidirectional_dynamic_rnn(
                    tape,
                    fw,
                    bw,
                    x,
                    BidirectionalOptions::default(),
                )?;
                let last_fw = rnn::last_relevant_output(tape, out_fw, None)?;
                let last_bw = rnn::last_relevant_output(tape, out_bw, None)?;
                dense.apply(tape, tape.concat(&[last_fw, last_bw], 1)?)
            }
            (Net::Bilstm256 { fw, bw, dense }, Runner::Static) => {
                let steps = tape.unstack(x, 1)?;
                let (outputs, _, _) = rnn::static_bidirectional_rnn(
                    tape,
                    fw,
                    bw,
                    &steps,
                    BidirectionalOptions::default(),
                )?;
                dense.apply(tape, *outputs.last().expect("28 steps"))
            }
            (
                Net::Multi3 {
                    input,
                    stack,
                    dense,
                },
                runner,
            ) => {
                let shape = tape.shape(x);
                let (batch, steps) = (shape[0], shape[1]);
                let flat = tape.reshape(x, &[batch * steps, shape[2]])?;
                let projected = input.apply(tape, flat)?;
                let seq = tape.reshape(projected, &[batch, steps, input.output_size()])?;
                let states = match runner {
                    Runner::Dynamic => rnn::dynamic_rnn(tape, stack, seq, RnnOptions::default())?.1,
                    Runner::Static => {
                        let steps = tape.unstack(seq, 1)?;
                        rnn::static_rnn(tape, stack, &steps, RnnOptions::default())?.1
                    }
                };
                let top = states.last().expect("three layers");
                dense.apply(tape, top.h)
            }
        }
    }

    /// Mean sparse softmax cross-entropy of the logits for `x` against `labels`.
    pub fn loss(&self, tape: &Tape<'_, f32>, x: Var, labels: &[usize]) -> Result<Var> {
        self.loss_with(tape, x, labels, Runner::Dynamic)
    }

    /// [`Model::loss`] with the recurrence unrolled by `runner`.
    pub fn loss_with(
        &self,
        tape: &Tape<'_, f32>,
        x: Var,
        labels: &[usize],
        runner: Runner,
    ) -> Result<Var> {
        let logits = self.logits_with(tape, x, runner)?;
        let per_example = tape.sparse_softmax_cross_entropy_with_logits(labels, logits)?;
        Ok(tape.mean(per_example))
    }

    /// One training step (forward, loss, backward, Adam update) on `x` `[batch, 28, 28]`;
    /// returns the loss. Each step's dropout masks come from its own seed.
    pub fn train_step(&mut self, x: &Array3<f32>, labels: &[usize]) -> Result<f32> {
        let (loss, grads) = {
            let tape = Tape::new(&self.params).with_seed(self.steps);
            let input = tape.constant(x.clone().into_dyn());
            let loss = self.loss(&tape, input, labels)?;
            (tape.scalar(loss), tape.backward(loss)?)
        };
        self.opt.apply(&mut self.params, &grads)?;
        self.steps += 1;
        Ok(loss)
    }

    /// Logits for `x` on an inference tape (dropout off, nothing recorded for backward).
    pub fn predict(&self, x: &Array3<f32>) -> Result<ArrayD<f32>> {
        let tape = Tape::inference(&self.params);
        let input = tape.constant(x.clone().into_dyn());
        let logits = self.logits(&tape, input)?;
        Ok(tape.to_array(logits))
    }
}

/// A synthetic batch, deterministic in `seed`: pixels uniform in `[0, 1)` and labels uniform in
/// `0..10`, shaped like an MNIST batch of [`BATCH`] images read row by row.
pub fn synthetic_batch(seed: u64) -> (Array3<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = Array3::from_shape_simple_fn((BATCH, STEPS, INPUT), || rng.random::<f32>());
    let labels = (0..BATCH).map(|_| rng.random_range(0..CLASSES)).collect();
    (x, labels)
}

/// A few synthetic batches to cycle through, so the benches do not train on one batch only.
pub fn synthetic_batches(n: usize, seed: u64) -> Vec<(Array3<f32>, Vec<usize>)> {
    (0..n as u64).map(|k| synthetic_batch(seed + k)).collect()
}
