//! Data-parallel training over MPI (`cargo test --release --features mpi --test distributed`;
//! needs Open MPI's `mpirun`, Debian `openmpi-bin`).
//!
//! Each test starts this test binary again under `mpirun` on the loopback, running only itself
//! (`--exact`); the copies see `RECURRENT_MPI_TEST_DIR` and act as the ranks, writing their
//! parameters and evaluation figures there. The test then trains the same model in this
//! process on one tape per shard and compares bit for bit.
//!
//! The model is `mnist_lstm`'s (28 steps of 28 pixels, `BasicLstmCell(128)` through
//! `static_rnn`, its last output into a dense layer of 10 with normal initial weights, Adam
//! 0.001, batches of 128) on synthetic images whose label is fixed by their first row.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use recurrent::cell::BasicLstmCell;
use recurrent::data::{DataPosition, Minibatch, Resumable, Targets, TrainSource};
use recurrent::distributed::Mpi;
use recurrent::init::Initializer;
use recurrent::layers::{Context, Dense, Layer, Returns, Rnn};
use recurrent::optim::Adam;
use recurrent::train::{FitOptions, Metrics, Trainer};
use recurrent::{checkpoint, static_rnn, ParamId, ParamStore, RnnOptions, Tape, Var};

const WORKER_DIR: &str = "RECURRENT_MPI_TEST_DIR";
const BATCH: usize = 128;
const STEPS: u64 = 20;
const SEED: u64 = 42;
/// How long an `mpirun` may take before the test calls it a hang.
const TIMEOUT: Duration = Duration::from_secs(240);

/// `mnist_lstm`'s model: the LSTM's last output (static unroll), then dense.
struct LstmClassifier {
    rnn: Rnn<BasicLstmCell>,
    dense: Dense,
}

impl Layer<f32> for LstmClassifier {
    fn forward(
        &self,
        tape: &Tape<'_, f32>,
        x: Var,
        _: &mut Context<'_, f32>,
    ) -> recurrent::Result<Var> {
        let steps = tape.unstack(x, 1)?;
        let (outputs, _) = static_rnn(tape, self.rnn.cell(), &steps, RnnOptions::default())?;
        self.dense.apply(tape, *outputs.last().expect("28 steps"))
    }
    fn param_ids(&self) -> Vec<ParamId> {
        [self.rnn.param_ids(), self.dense.param_ids()].concat()
    }
    fn name(&self) -> &str {
        "lstm_classifier"
    }
}

fn model(seed: u64) -> (LstmClassifier, ParamStore<f32>) {
    let mut params = ParamStore::<f32>::new(seed);
    let rnn = Rnn::lstm(&mut params, 28, 128)
        .unwrap()
        .returns(Returns::LastOutput);
    let normal = Initializer::RandomNormal {
        mean: 0.0,
        stddev: 1.0,
    };
    let dense = Dense::with_init(&mut params, "dense", 128, 10, normal, normal).unwrap();
    (LstmClassifier { rnn, dense }, params)
}

/// Synthetic 28x28 images in [0, 1); the label is the first row's mean, in tenths.
fn batch(index: u64) -> Minibatch<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + index);
    let inputs = ArrayD::from_shape_fn(IxDyn(&[BATCH, 28, 28]), |_| rng.random::<f32>());
    let labels = (0..BATCH)
        .map(|b| {
            let mean = (0..28).map(|p| inputs[[b, 0, p]]).sum::<f32>() / 28.0;
            ((mean * 10.0) as usize).min(9)
        })
        .collect();
    Minibatch {
        inputs,
        lengths: None,
        targets: Targets::Classes(labels),
    }
}

/// Serves `batch(0)`, `batch(1)`, ...; fails its `fail_at`-th batch on rank `fail_rank`.
struct Synthetic {
    served: u64,
    rank: usize,
    fail: Option<(usize, u64, bool)>,
}

impl Synthetic {
    fn new() -> Self {
        Synthetic {
            served: 0,
            rank: 0,
            fail: None,
        }
    }
}

impl TrainSource<f32> for Synthetic {
    fn next_batch(&mut self) -> recurrent::Result<Minibatch<f32>> {
        self.served += 1;
        if let Some((rank, at, panic)) = self.fail {
            if rank == self.rank && self.served == at {
                if panic {
                    panic!("the synthetic data panics on purpose");
                }
                return Err(recurrent::Error::invalid(
                    "the synthetic data fails on purpose",
                ));
            }
        }
        Ok(batch(self.served - 1))
    }
}

impl Resumable for Synthetic {
    fn position(&self) -> DataPosition {
        DataPosition::default()
    }
    fn restore(&mut self, _: &DataPosition) -> recurrent::Result<()> {
        Ok(())
    }
}

fn eval_batches() -> Vec<recurrent::Result<Minibatch<f32>>> {
    (0..5).map(|i| Ok(batch(500 + i))).collect()
}

/// The run in one process: `shards` gradient shards, no collective.
fn one_process(shards: usize) -> (ParamStore<f32>, Metrics) {
    let (model, params) = model(SEED);
    let mut trainer = Trainer::new(model, params, Adam::new(0.001).unwrap())
        .seed(SEED)
        .gradient_shards(shards)
        .unwrap()
        .parallel_shards();
    trainer
        .fit(
            &mut Synthetic::new(),
            &FitOptions::until_step(STEPS),
            None,
            &mut (),
        )
        .unwrap();
    let metrics = trainer.evaluate(eval_batches()).unwrap();
    (trainer.params().clone(), metrics)
}

/// What a rank of an `mpirun` a test started does: train, evaluate, write its parameters and
/// figures into `dir`.
fn rank_main(
    dir: &Path,
    shards: usize,
    fail: Option<(usize, u64, bool)>,
    seed_of: fn(usize) -> u64,
) {
    let mpi = Mpi::init().unwrap();
    let rank = mpi.rank();
    let (model, params) = model(seed_of(rank));
    let mut trainer = Trainer::new(model, params, Adam::new(0.001).unwrap())
        .seed(SEED)
        .gradient_shards(shards)
        .unwrap()
        .parallel_shards()
        .collective(mpi.collective())
        .unwrap();
    let mut data = Synthetic {
        served: 0,
        rank,
        fail,
    };
    if let Err(e) = trainer.fit(&mut data, &FitOptions::until_step(STEPS), None, &mut ()) {
        // Every rank gets the same error here (a failing rank alone would have aborted).
        std::fs::write(dir.join(format!("error{rank}.txt")), e.to_string()).unwrap();
        return;
    }
    let metrics = trainer.evaluate(eval_batches()).unwrap();
    checkpoint::save(
        trainer.params(),
        &dir.join(format!("rank{rank}.safetensors")),
    )
    .unwrap();
    let figures = format!(
        "{} {} {}",
        metrics.loss.to_bits(),
        metrics.accuracy.to_bits(),
        metrics.count
    );
    std::fs::write(dir.join(format!("metrics{rank}.txt")), figures).unwrap();
}

/// The folder a worker copy of this binary writes to, if this process is one.
fn worker_dir() -> Option<PathBuf> {
    std::env::var_os(WORKER_DIR).map(PathBuf::from)
}

/// Runs this test binary's test `test` on `ranks` MPI processes; kills it and fails after
/// [`TIMEOUT`].
fn mpirun(ranks: usize, test: &str, dir: &Path) -> (Output, Duration) {
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let mut child = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &ranks.to_string(),
        ])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(WORKER_DIR, dir)
        // One thread per rank: the ranks share the machine's cores.
        .env("RECURRENT_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (Debian: apt-get install openmpi-bin)");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > TIMEOUT {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "mpirun -np {ranks} {test} still running after {TIMEOUT:?} (a hang):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    (child.wait_with_output().unwrap(), elapsed)
}

/// Every rank's parameters and figures equal the one-process run's, bit for bit.
fn assert_ranks_match_one_process(ranks: usize, shards: usize, test: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = mpirun(ranks, test, dir.path());
    assert!(
        out.status.success(),
        "mpirun -np {ranks} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (reference, metrics) = one_process(shards);
    for rank in 0..ranks {
        let mut theirs = reference.clone();
        checkpoint::load(
            &mut theirs,
            &dir.path().join(format!("rank{rank}.safetensors")),
        )
        .unwrap();
        let mut compared = 0;
        for ((_, name, a), (_, _, b)) in reference.iter().zip(theirs.iter()) {
            let differ = a
                .iter()
                .zip(b.iter())
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "rank {rank} of {ranks}: {differ} values of {name} differ"
            );
            compared += a.len();
        }
        assert_eq!(compared, reference.num_params());
        let figures =
            std::fs::read_to_string(dir.path().join(format!("metrics{rank}.txt"))).unwrap();
        let expected = format!(
            "{} {} {}",
            metrics.loss.to_bits(),
            metrics.accuracy.to_bits(),
            metrics.count
        );
        assert_eq!(
            figures, expected,
            "rank {rank}: evaluation (loss bits, accuracy bits, count)"
        );
    }
    // Training moved the parameters: the comparison is not of two untouched initialisations.
    let (_, initial) = model(SEED);
    let moved = initial
        .iter()
        .zip(reference.iter())
        .any(|((_, _, a), (_, _, b))| a.iter().zip(b.iter()).any(|(x, y)| x != y));
    assert!(moved, "20 steps left every parameter unchanged");
    assert_eq!(metrics.count, 5 * BATCH);
}

fn same_seed(_: usize) -> u64 {
    SEED
}

#[test]
fn two_ranks_give_the_parameters_of_one_process() {
    if let Some(dir) = worker_dir() {
        return rank_main(&dir, 2, None, same_seed);
    }
    assert_ranks_match_one_process(2, 2, "two_ranks_give_the_parameters_of_one_process");
}

#[test]
fn four_ranks_give_the_parameters_of_one_process() {
    if let Some(dir) = worker_dir() {
        return rank_main(&dir, 4, None, same_seed);
    }
    assert_ranks_match_one_process(4, 4, "four_ranks_give_the_parameters_of_one_process");
}

#[test]
fn two_ranks_with_four_shards_give_the_parameters_of_one_process() {
    if let Some(dir) = worker_dir() {
        return rank_main(&dir, 4, None, same_seed);
    }
    assert_ranks_match_one_process(
        2,
        4,
        "two_ranks_with_four_shards_give_the_parameters_of_one_process",
    );
}

/// Asserts that `mpirun` failed within the timeout with `message` on stderr.
fn assert_job_stopped(out: &Output, elapsed: Duration, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job succeeded:\n{stderr}");
    assert!(stderr.contains(message), "no {message:?} in:\n{stderr}");
    eprintln!("the job stopped after {elapsed:?}");
}

#[test]
fn a_failing_rank_stops_the_job_naming_rank_and_step() {
    if let Some(dir) = worker_dir() {
        return rank_main(&dir, 2, Some((1, 5, false)), same_seed);
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, elapsed) = mpirun(
        2,
        "a_failing_rank_stops_the_job_naming_rank_and_step",
        dir.path(),
    );
    assert_job_stopped(
        &out,
        elapsed,
        "recurrent: rank 1 of 2 failed at step 5 (reading the batch): invalid argument: the \
         synthetic data fails on purpose",
    );
    // Rank 0 never finished: no parameters were written.
    assert!(!dir.path().join("rank0.safetensors").exists());
}

#[test]
fn a_panicking_rank_stops_the_job() {
    if let Some(dir) = worker_dir() {
        return rank_main(&dir, 2, Some((0, 3, true)), same_seed);
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, elapsed) = mpirun(2, "a_panicking_rank_stops_the_job", dir.path());
    assert_job_stopped(
        &out,
        elapsed,
        "recurrent: rank 0 of 2 panicked; stopping the job",
    );
    assert!(!dir.path().join("rank1.safetensors").exists());
}

#[test]
fn ranks_with_different_parameters_are_refused_by_name() {
    if let Some(dir) = worker_dir() {
        return rank_main(&dir, 4, None, |rank| if rank == 2 { 7 } else { SEED });
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = mpirun(
        4,
        "ranks_with_different_parameters_are_refused_by_name",
        dir.path(),
    );
    assert!(
        out.status.success(),
        "every rank should return the error, not crash:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for rank in 0..4 {
        let error = std::fs::read_to_string(dir.path().join(format!("error{rank}.txt"))).unwrap();
        assert!(
            error.starts_with("distributed training: the 4 ranks do not hold the same model: rank 2 has parameters "),
            "rank {rank}: {error}"
        );
        assert!(
            !error.contains("rank 1 ") && !error.contains("rank 3 "),
            "{error}"
        );
    }
}
