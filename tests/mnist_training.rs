//! End-to-end training on the real MNIST: `mnist_lstm`'s model (one `BasicLstmCell(128)` read
//! row by row through `dynamic_rnn`, last output -> dense -> 10, Adam 0.001, batches of 128) must
//! pass 90% test accuracy after 300 steps.
//!
//! The data comes from `MNIST_DIR`, else from `../shared/mnist` beside the checkout. Without
//! either the test fails on CI (`CI` set and not "false") and is skipped, with a message,
//! elsewhere.

use std::path::PathBuf;

use ndarray::Ix2;
use recurrent::cell::BasicLstmCell;
use recurrent::data::{Batch, Mnist, MNIST_FILES};
use recurrent::metrics::accuracy;
use recurrent::optim::{Adam, Optimizer};
use recurrent::Layer;
use recurrent::RnnOptions;
use recurrent::{dynamic_rnn, last_relevant_output, Dense, ParamStore, Tape, Var};

const STEPS: usize = 300;
const BATCH: usize = 128;
const SEED: u64 = 42;

/// The MNIST folder, or `None` (after saying why) when the test should be skipped.
///
/// # Panics
/// On CI, if the data is not there.
fn mnist_dir() -> Option<PathBuf> {
    let on_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    // Without MNIST_DIR, the project's shared data folder beside the checkout (`../shared`).
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/mnist");
    let dir = match std::env::var_os("MNIST_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => shared.is_dir().then_some(shared),
    };
    let problem = match dir {
        Some(dir) => {
            let missing: Vec<&str> = MNIST_FILES
                .iter()
                .map(|f| f.name)
                .filter(|name| {
                    let plain = name.strip_suffix(".gz").unwrap_or(name);
                    !dir.join(name).is_file() && !dir.join(plain).is_file()
                })
                .collect();
            if missing.is_empty() {
                return Some(dir);
            }
            format!("MNIST_DIR={} lacks {}", dir.display(), missing.join(", "))
        }
        None => "MNIST_DIR is not set and ../shared/mnist is not there".to_string(),
    };
    assert!(
        !on_ci,
        "{problem}: on CI the MNIST training test needs the four MNIST files in MNIST_DIR"
    );
    eprintln!("skipping the MNIST training test: {problem} (set MNIST_DIR to run it)");
    None
}

struct Model {
    cell: BasicLstmCell,
    dense: Dense,
}

impl Model {
    fn logits(&self, tape: &Tape<'_, f32>, batch: &Batch<f32>) -> recurrent::Result<Var> {
        let x = tape.constant(batch.images_as_sequences().into_dyn());
        let (outputs, _) = dynamic_rnn(tape, &self.cell, x, RnnOptions::default())?;
        let last = last_relevant_output(tape, outputs, None)?;
        self.dense.apply(tape, last)
    }
}

#[test]
fn lstm_learns_mnist() -> recurrent::Result<()> {
    let Some(dir) = mnist_dir() else {
        return Ok(());
    };
    let mut mnist = Mnist::load(&dir, SEED)?;
    let mut params = ParamStore::<f32>::new(SEED);
    let model = Model {
        cell: BasicLstmCell::new(&mut params, "rnn/basic_lstm_cell", 28, 128)?,
        dense: Dense::new(&mut params, "dense", 128, 10)?,
    };
    let mut opt = Adam::<f32>::new(0.001)?;

    let mut first_loss = None;
    for step in 0..STEPS {
        let batch = mnist.train.next_batch::<f32>(BATCH);
        let grads = {
            let tape = Tape::new(&params).with_seed(step as u64);
            let logits = model.logits(&tape, &batch)?;
            let losses = tape.sparse_softmax_cross_entropy_with_logits(&batch.labels, logits)?;
            let loss = tape.mean(losses);
            let value = tape.scalar(loss);
            assert!(value.is_finite(), "loss {value} at step {step}");
            first_loss.get_or_insert(value);
            tape.backward(loss)?
        };
        opt.apply(&mut params, &grads)?;
    }

    let mut correct = 0.0;
    for batch in mnist.test.batches::<f32>(1000) {
        let tape = Tape::inference(&params);
        let logits = model.logits(&tape, &batch)?;
        let logits = tape.value(logits);
        let view = logits
            .view()
            .into_dimensionality::<Ix2>()
            .expect("logits [n, 10]");
        correct += accuracy(&view, &batch.labels)? * batch.len() as f64;
    }
    let test_accuracy = correct / mnist.test.num_examples() as f64;
    eprintln!(
        "first loss {:.4}, test accuracy after {STEPS} steps: {test_accuracy:.4}",
        first_loss.unwrap_or(f32::NAN)
    );
    assert_eq!(mnist.test.num_examples(), 10_000);
    assert!(
        test_accuracy > 0.90,
        "test accuracy {test_accuracy:.4} after {STEPS} steps, expected > 0.90"
    );
    Ok(())
}
