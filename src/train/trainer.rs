//! [`Trainer`]: the training loop's bookkeeping, written once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayD};

use super::shards::{
    batch_weight, params_fingerprint, shard_ranges, shard_seed, short_hex, slice_batch, Collective,
    Layout, ShardResult,
};
use super::state::{load_training_state, save_training_state, TrainingState};
use crate::data::{Minibatch, Targets, TrainSource};
use crate::layers::{Carry, Context, Layer};
use crate::optim::{check_finite_loss, clip_by_global_norm, LearningRateSchedule, Optimizer};
use crate::{Error, Grads, ParamStore, Result, Scalar, Tape, Var};

/// The seed of step `step`'s tape (dropout masks) in a run seeded with `seed`: every step draws
/// new masks, and a resumed run draws the same ones as an uninterrupted run.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(1 << 32).wrapping_add(step)
}

/// How many steps the divergence guard averages the training loss over: single batches vary
/// too much to compare one with the best so far.
pub const DIVERGENCE_WINDOW: usize = 10;

/// Loss and accuracy over some batches.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// The mean loss (per example, or per valid position for sequence targets).
    pub loss: f64,
    /// The fraction of correct predictions (per example or per valid position); NaN for
    /// regression targets.
    pub accuracy: f64,
    /// How many examples (or valid positions) the figures average over.
    pub count: usize,
}

/// What one training step did, as the [`Observer`] sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The step number (1 for the first update of the run, continued by a resumed run).
    pub step: u64,
    /// The batch's loss.
    pub loss: f64,
    /// The batch's accuracy (NaN for regression targets).
    pub accuracy: f64,
    /// The learning rate the update used.
    pub learning_rate: f64,
    /// The global norm of the gradients before clipping.
    pub gradient_norm: f64,
    /// The wall time of the step (batch, forward, backward, update).
    pub elapsed: Duration,
    /// The part of [`StepReport::elapsed`] spent combining the shards' gradients: the gather
    /// across ranks and the sum in shard order ([`Trainer::gradient_shards`]); zero for a
    /// step on one tape.
    pub reduction: Duration,
}

/// Why [`Trainer::fit`] returned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// It ran up to the requested step.
    Completed,
    /// The validation metric stopped improving ([`EarlyStopping`]); `best_step` is the step of
    /// the best evaluation.
    EarlyStopped {
        /// The step whose evaluation was the best.
        best_step: u64,
    },
}

/// Hooks into [`Trainer::fit`]: progress bars, logs, plots. Every method has an empty default.
pub trait Observer {
    /// After every training step.
    fn on_step(&mut self, _report: &StepReport) {}
    /// After every validation pass.
    fn on_evaluation(&mut self, _step: u64, _metrics: &Metrics) {}
    /// After every checkpoint written.
    fn on_checkpoint(&mut self, _step: u64, _path: &Path) {}
}

impl Observer for () {}

/// Which validation figure [`EarlyStopping`] watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// Lower is better.
    Loss,
    /// Higher is better.
    Accuracy,
}

/// Stop when the validation metric has not improved by more than `min_delta` for `patience`
/// evaluations in a row (Keras's `EarlyStopping`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    /// The metric.
    pub monitor: Monitor,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// The smallest change that counts as an improvement.
    pub min_delta: f64,
}

/// The options of one [`Trainer::fit`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Train until the optimizer has made this many steps in all (a resumed run continues
    /// towards the same number).
    pub until_step: u64,
    /// Evaluate on the validation batches every this many steps (and after the last); never if
    /// `None`.
    pub eval_every: Option<u64>,
    /// Write the whole training state to this file every [`FitOptions::checkpoint_every`]
    /// steps and after the last.
    pub checkpoint: Option<PathBuf>,
    /// How often to write the checkpoint; only at the end if `None`.
    pub checkpoint_every: Option<u64>,
}

impl FitOptions {
    /// Train until step `until_step`, with no evaluation and no checkpoint.
    pub fn until_step(until_step: u64) -> Self {
        FitOptions {
            until_step,
            eval_every: None,
            checkpoint: None,
            checkpoint_every: None,
        }
    }

    /// Evaluate every `n` steps.
    pub fn eval_every(mut self, n: u64) -> Self {
        self.eval_every = Some(n);
        self
    }

    /// Write the training state to `path` at the end (and every [`FitOptions::checkpoint_every`]).
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Write the checkpoint every `n` steps too.
    pub fn checkpoint_every(mut self, n: u64) -> Self {
        self.checkpoint_every = Some(n);
        self
    }
}

/// The training loop of a model: owns the model, its parameters and the optimizer, and does
/// the bookkeeping every loop repeats (Keras's `Model.fit`, PyTorch Lightning's `Trainer`).
///
/// Each step: a fresh tape seeded from the run's seed and the step ([`step_seed`]), the model's
/// forward pass with the batch's lengths (and the carried state, for language models), the loss
/// the batch's [`Targets`] call for, `backward`, optional [`clip_by_global_norm`], the learning
/// rate from the schedule, the update. Training stops with an [`Error::NonFinite`] naming the
/// step if the loss or a gradient is NaN or infinite, or with [`Error::Diverged`] if the loss
/// exceeds a set factor of its running minimum ([`Trainer::stop_on_divergence`]). Evaluation and
/// prediction run on inference tapes (no dropout, nothing kept for a backward pass).
///
/// [`Trainer::save`] writes everything a run needs to continue ([`TrainingState`]);
/// [`Trainer::resume`] takes it back, and the continued run gives bit-identical parameters to
/// an uninterrupted one.
///
/// ```
/// use ndarray::{Array2, ArrayD, IxDyn};
/// use recurrent::data::{DataPosition, Minibatch, Resumable, Targets, TrainSource};
/// use recurrent::layers::{Dense, Returns, Rnn, Sequential};
/// use recurrent::optim::Adam;
/// use recurrent::train::{FitOptions, Trainer};
/// use recurrent::ParamStore;
///
/// /// Sequences whose label is the sign of their first value: the same batch every step.
/// struct Toy;
/// impl TrainSource<f32> for Toy {
///     fn next_batch(&mut self) -> recurrent::Result<Minibatch<f32>> {
///         let inputs = ArrayD::from_shape_fn(IxDyn(&[8, 5, 1]), |i| {
///             if i[1] == 0 { if i[0] % 2 == 0 { 1.0 } else { -1.0 } } else { 0.1 }
///         });
///         let labels = (0..8).map(|b| b % 2).collect();
///         Ok(Minibatch { inputs, lengths: None, targets: Targets::Classes(labels) })
///     }
/// }
/// impl Resumable for Toy {
///     fn position(&self) -> DataPosition { DataPosition::default() }
///     fn restore(&mut self, _: &DataPosition) -> recurrent::Result<()> { Ok(()) }
/// }
///
/// let mut params = ParamStore::<f32>::new(0);
/// let model = Sequential::new()
///     .push(Rnn::lstm(&mut params, 1, 8)?.returns(Returns::LastOutput))
///     .push(Dense::new(&mut params, "dense", 8, 2)?);
/// let mut trainer = Trainer::new(model, params, Adam::new(0.05)?).seed(1);
/// let before = trainer.evaluate([Toy.next_batch()])?;
/// trainer.fit(&mut Toy, &FitOptions::until_step(30), None, &mut ())?;
/// let after = trainer.evaluate([Toy.next_batch()])?;
/// assert!(after.loss < before.loss && after.accuracy == 1.0);
/// # Ok::<(), recurrent::Error>(())
/// ```
pub struct Trainer<T: Scalar, M> {
    model: M,
    params: ParamStore<T>,
    optimizer: Box<dyn Optimizer<T>>,
    schedule: Option<Box<dyn LearningRateSchedule>>,
    clip_norm: Option<f64>,
    seed: u64,
    carry_state: bool,
    carry: Carry<T>,
    early_stopping: Option<EarlyStopping>,
    divergence_factor: Option<f64>,
    /// The best validation figure so far, its step, and evaluations since it.
    best: Option<(f64, u64)>,
    since_best: usize,
    /// The last [`DIVERGENCE_WINDOW`] training losses and the smallest of their means so far
    /// (the divergence guard's reference).
    recent_losses: Vec<f64>,
    running_min: f64,
    history: History,
    /// The gradient shards of a step (1: the whole batch on one tape).
    shards: usize,
    /// Computes a rank's shards: one after another, or on the thread pool
    /// ([`Trainer::parallel_shards`]).
    shard_runner: ShardRunner<T, M>,
    /// The other ranks of a data-parallel run.
    collective: Option<Box<dyn Collective<T>>>,
}

/// One shard's work: its examples, its tape seed, and its share of the batch's loss weight.
struct ShardTask<T: Scalar> {
    batch: Minibatch<T>,
    seed: u64,
    scale: f64,
}

/// Runs a rank's shard tasks and returns their results in shard order.
type ShardRunner<T, M> = fn(&M, &ParamStore<T>, Vec<ShardTask<T>>) -> Vec<Result<ShardResult<T>>>;

/// The shards one after another on the calling thread.
fn run_shards_in_turn<T: Scalar, M: Layer<T>>(
    model: &M,
    params: &ParamStore<T>,
    tasks: Vec<ShardTask<T>>,
) -> Vec<Result<ShardResult<T>>> {
    tasks
        .into_iter()
        .map(|task| shard_gradient(model, params, task))
        .collect()
}

/// The shards at once on the kernels' thread pool ([`crate::parallel`]), results in shard order.
fn run_shards_on_pool<T: Scalar, M: Layer<T> + Sync>(
    model: &M,
    params: &ParamStore<T>,
    tasks: Vec<ShardTask<T>>,
) -> Vec<Result<ShardResult<T>>> {
    crate::kernels::parallel::run_shards(tasks, |task| shard_gradient(model, params, task))
}

/// One shard's forward and backward pass on its own tape, its loss weighted by its share of
/// the batch so that the shards' losses add up to the batch's mean loss.
fn shard_gradient<T: Scalar, M: Layer<T> + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    task: ShardTask<T>,
) -> Result<ShardResult<T>> {
    let weight = batch_weight(&task.batch);
    if weight == 0 {
        // No valid position: nothing to learn from, and its mean loss would be 0 / 0.
        return Ok(ShardResult {
            loss: T::zero(),
            correct: 0.0,
            weight,
            grads: Grads::new(),
        });
    }
    let tape = Tape::new(params).with_seed(task.seed);
    let (loss, accuracy) = forward_loss(model, &tape, task.batch, None)?;
    let scale = T::from_f64(task.scale).expect("a share fits the float type");
    let loss = tape.scale(loss, scale);
    let value = tape.scalar(loss);
    let grads = tape.backward(loss)?;
    let correct = accuracy * weight as f64;
    Ok(ShardResult {
        loss: value,
        correct: if correct.is_nan() {
            correct
        } else {
            correct.round()
        },
        weight,
        grads,
    })
}

/// What a [`Trainer`] has measured so far in this process (Keras's `History`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Every training step's report, in order.
    pub steps: Vec<StepReport>,
    /// Every validation pass of [`Trainer::fit`], with its step.
    pub validation: Vec<(u64, Metrics)>,
}

impl<T: Scalar, M: Layer<T>> Trainer<T, M> {
    /// A trainer of `model` over `params` with `optimizer`; seed 0, no clipping, no schedule.
    pub fn new(model: M, params: ParamStore<T>, optimizer: impl Optimizer<T> + 'static) -> Self {
        Trainer {
            model,
            params,
            optimizer: Box::new(optimizer),
            schedule: None,
            clip_norm: None,
            seed: 0,
            carry_state: false,
            carry: Carry::new(),
            early_stopping: None,
            divergence_factor: None,
            best: None,
            since_best: 0,
            recent_losses: Vec::new(),
            running_min: f64::INFINITY,
            history: History::default(),
            shards: 1,
            shard_runner: run_shards_in_turn::<T, M>,
            collective: None,
        }
    }

    /// Computes every step's gradient as the sum of `shards` parts of the batch (shard `k`
    /// holds examples `k*B/shards .. (k+1)*B/shards` of a batch of `B`), each on its own tape
    /// with its loss weighted by its share of the batch, added in shard order. The sum depends
    /// on the shard count, never on which process or thread computed a shard: that is what
    /// makes a data-parallel run ([`Trainer::collective`]) bit-identical to one process with
    /// the same shard count. 1 (the default) runs the whole batch on one tape, as without
    /// shards; the two differ in the last bits (the batch's sums are associated differently).
    ///
    /// Each shard's dropout masks come from the step's seed and the shard's index, so they
    /// change with the shard count but not with the number of ranks. The shards run one after
    /// another unless [`Trainer::parallel_shards`] is set.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 shards, with [`Trainer::carry_state`] (carried state is
    /// per example and stays whole), or for a count the ranks of a set collective do not
    /// divide.
    pub fn gradient_shards(mut self, shards: usize) -> Result<Self> {
        if shards == 0 {
            return Err(Error::invalid(
                "Trainer: gradient shards must be >= 1, got 0",
            ));
        }
        self.shards = shards;
        self.check_sharding()?;
        Ok(self)
    }

    /// Trains on several processes ([`Collective`], for instance MPI's): each rank computes
    /// `shards / ranks` whole [gradient shards](Trainer::gradient_shards) of every batch
    /// (rank `r` the shards `r * shards / ranks ..`), the shards' gradients are gathered to
    /// every rank and summed there in shard order, and every rank applies the same update. All
    /// ranks must build the same model from the same seed and read the same batches; each
    /// takes its own shards of them. [`Trainer::fit`] first checks that every rank holds the
    /// same parameters ([`Trainer::check_replicas`]); evaluation splits the batches over the
    /// ranks. With a collective, an error on one rank during a step, an evaluation or a
    /// checkpoint ends the whole job ([`Collective::abort`]), naming the rank and the step.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the shard count is not a multiple of the rank count.
    pub fn collective(mut self, collective: impl Collective<T> + 'static) -> Result<Self> {
        self.collective = Some(Box::new(collective));
        self.check_sharding()?;
        Ok(self)
    }

    /// The rank of this process and the number of ranks: `(0, 1)` without a collective.
    pub fn rank(&self) -> (usize, usize) {
        self.collective
            .as_ref()
            .map_or((0, 1), |c| (c.rank(), c.size()))
    }

    /// The shard count and the collective fit together; no shards with carried state.
    fn check_sharding(&self) -> Result<()> {
        let (_, ranks) = self.rank();
        if !self.shards.is_multiple_of(ranks) {
            return Err(Error::invalid(format!(
                "Trainer: {} gradient shards cannot be split over {ranks} ranks (each rank \
                 computes whole shards; the shard count must be a multiple of the rank count)",
                self.shards
            )));
        }
        if self.carry_state && (self.shards > 1 || ranks > 1) {
            return Err(Error::invalid(
                "Trainer: gradient shards and data-parallel training do not carry state \
                 between batches (carry_state)",
            ));
        }
        Ok(())
    }

    /// Checks that every rank holds the same parameters (a SHA-256 of names, shapes and
    /// values), the same step count and the same shard count. Collective: every rank calls
    /// it; all of them get the same answer. Without a collective it is always `Ok`.
    ///
    /// # Errors
    /// [`Error::Distributed`] naming the ranks that differ from rank 0, and in what.
    pub fn check_replicas(&self) -> Result<()> {
        let Some(c) = &self.collective else {
            return Ok(());
        };
        let mut local: Vec<f64> = params_fingerprint(&self.params)
            .iter()
            .map(|&b| f64::from(b))
            .collect();
        local.push(self.step() as f64);
        local.push(self.shards as f64);
        let width = local.len();
        let all = c.all_gather_f64(&local)?;
        let ranks: Vec<&[f64]> = all.chunks(width).collect();
        let bytes = |r: &[f64]| r[..32].iter().map(|&b| b as u8).collect::<Vec<u8>>();
        let mut problems = Vec::new();
        for (rank, theirs) in ranks.iter().enumerate().skip(1) {
            if theirs[..32] != ranks[0][..32] {
                problems.push(format!(
                    "rank {rank} has parameters {}.. where rank 0 has {}..",
                    short_hex(&bytes(theirs)),
                    short_hex(&bytes(ranks[0]))
                ));
            }
            if theirs[32] != ranks[0][32] {
                problems.push(format!(
                    "rank {rank} is at step {} where rank 0 is at step {}",
                    theirs[32], ranks[0][32]
                ));
            }
            if theirs[33] != ranks[0][33] {
                problems.push(format!(
                    "rank {rank} has {} gradient shards where rank 0 has {}",
                    theirs[33], ranks[0][33]
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Distributed(format!(
                "the {} ranks do not hold the same model: {} (build the model from the same \
                 seed on every rank, and resume every rank from the same file)",
                ranks.len(),
                problems.join("; ")
            )))
        }
    }

    /// With a collective, ends the job on an error (the other ranks would wait for this one
    /// forever); without, hands the result back.
    fn or_abort<R>(&self, result: Result<R>, step: u64, during: &str) -> Result<R> {
        match (result, &self.collective) {
            (Err(e), Some(c)) => c.abort(&format!(
                "recurrent: rank {} of {} failed at step {step} ({during}): {e}; stopping the job",
                c.rank(),
                c.size()
            )),
            (result, _) => result,
        }
    }

    /// The seed of the run's dropout masks ([`step_seed`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Clips the gradients to this global norm before every update (`tf.clip_by_global_norm`).
    pub fn clip_by_global_norm(mut self, clip_norm: f64) -> Result<Self> {
        if !(clip_norm.is_finite() && clip_norm > 0.0) {
            return Err(Error::invalid(format!(
                "Trainer: clip norm must be finite and > 0, got {clip_norm}"
            )));
        }
        self.clip_norm = Some(clip_norm);
        Ok(self)
    }

    /// Sets the learning rate of every step from `schedule` (by the optimizer's step count).
    pub fn schedule(mut self, schedule: impl LearningRateSchedule + 'static) -> Self {
        self.schedule = Some(Box::new(schedule));
        self
    }

    /// Carries the recurrent layers' final states from each training batch to the next (and
    /// through each evaluation), for language models trained with truncated backpropagation
    /// through time on consecutive batches (TensorFlow's PTB model). The states restart from
    /// zero where the source says a batch begins new streams
    /// ([`TrainSource::starts_new_streams`]: each epoch of an
    /// [`LmBatcher`](crate::data::LmBatcher)).
    pub fn carry_state(mut self, carry: bool) -> Self {
        self.carry_state = carry;
        self
    }

    /// The number of gradient shards of a step ([`Trainer::gradient_shards`]).
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Stops [`Trainer::fit`] when the validation metric stops improving.
    pub fn early_stopping(mut self, early_stopping: EarlyStopping) -> Self {
        self.early_stopping = Some(early_stopping);
        self
    }

    /// Stops [`Trainer::fit`] with [`Error::Diverged`] when the mean training loss of the last
    /// [`DIVERGENCE_WINDOW`] steps (of all steps, before there are that many) exceeds `factor`
    /// times the smallest such mean so far (`factor > 1`), so that one easy batch does not set
    /// the bar.
    pub fn stop_on_divergence(mut self, factor: f64) -> Result<Self> {
        if !(factor.is_finite() && factor > 1.0) {
            return Err(Error::invalid(format!(
                "Trainer: the divergence factor must be finite and > 1, got {factor}"
            )));
        }
        self.divergence_factor = Some(factor);
        Ok(self)
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The parameters.
    pub fn params(&self) -> &ParamStore<T> {
        &self.params
    }

    /// The parameters, mutably (to load weights into them, say).
    pub fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.params
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer<T> {
        self.optimizer.as_ref()
    }

    /// The steps and evaluations of this process's runs so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The number of updates made so far (the optimizer's step count).
    pub fn step(&self) -> u64 {
        self.optimizer.step_count()
    }

    /// The model, parameters and optimizer back.
    pub fn into_parts(self) -> (M, ParamStore<T>, Box<dyn Optimizer<T>>) {
        (self.model, self.params, self.optimizer)
    }

    /// Trains on batches from `data` until the optimizer's step count reaches
    /// `options.until_step`, evaluating on the batches `validation` gives (called anew for each
    /// evaluation) and writing checkpoints as `options` say, and telling `observer` about each.
    ///
    /// # Errors
    /// Any error of the data, the model or the optimizer, naming the step where it matters;
    /// [`Error::NonFinite`] or [`Error::Diverged`] when training goes wrong (the parameters
    /// are then those of the last good step).
    pub fn fit<D: TrainSource<T> + ?Sized>(
        &mut self,
        data: &mut D,
        options: &FitOptions,
        mut validation: Option<&mut dyn FnMut() -> Vec<Minibatch<T>>>,
        observer: &mut dyn Observer,
    ) -> Result<Stop> {
        for (what, n) in [
            ("eval_every", options.eval_every),
            ("checkpoint_every", options.checkpoint_every),
        ] {
            if n == Some(0) {
                return Err(Error::invalid(format!("FitOptions: {what} must be >= 1")));
            }
        }
        // Collective, same answer on every rank: an error here stops all of them alike.
        self.check_replicas()?;
        while self.step() < options.until_step {
            let report = self.train_step(data)?;
            observer.on_step(&report);
            let step = report.step;
            let last = step == options.until_step;
            let mut stop = None;
            if let (Some(every), Some(make)) = (options.eval_every, validation.as_deref_mut()) {
                if step % every == 0 || last {
                    let metrics = self.evaluate(make().into_iter().map(Ok))?;
                    self.history.validation.push((step, metrics));
                    observer.on_evaluation(step, &metrics);
                    stop = self.early_stop(step, &metrics)?;
                }
            }
            if let Some(path) = &options.checkpoint {
                let due = options.checkpoint_every.is_some_and(|n| step % n == 0);
                if due || last || stop.is_some() {
                    let saved = self.save(path, data);
                    self.or_abort(saved, step, "writing the checkpoint")?;
                    observer.on_checkpoint(step, path);
                }
            }
            if let Some(stop) = stop {
                return Ok(stop);
            }
        }
        Ok(Stop::Completed)
    }

    /// One update on the next batch of `data`. With a [collective](Trainer::collective), an
    /// error before the gradients are combined (the batch, this rank's shards) ends the job.
    pub fn train_step<D: TrainSource<T> + ?Sized>(&mut self, data: &mut D) -> Result<StepReport> {
        let start = Instant::now();
        let step = self.step() + 1;
        let batch = data.next_batch().and_then(|b| b.check().map(|()| b));
        let batch = self.or_abort(batch, step, "reading the batch")?;
        // A copy: a failed step leaves the carried state as it was.
        let mut carry = self.carry.clone();
        if data.starts_new_streams() {
            carry.reset();
        }
        let sharded = self.shards > 1 || self.collective.is_some();
        let (loss, accuracy, mut grads, reduction) = if sharded {
            self.sharded_gradients(batch, step)?
        } else {
            let tape = Tape::new(&self.params).with_seed(step_seed(self.seed, step));
            let (loss, accuracy) = forward_loss(
                &self.model,
                &tape,
                batch,
                self.carry_state.then_some(&mut carry),
            )?;
            let value = tape.scalar(loss);
            check_finite_loss(value, step)?;
            (
                value.to_f64_lossless(),
                accuracy,
                tape.backward(loss)?,
                Duration::ZERO,
            )
        };
        let mut recent = self.recent_losses.clone();
        recent.push(loss);
        if recent.len() > DIVERGENCE_WINDOW {
            recent.remove(0);
        }
        // The mean of the last losses (of all of them while fewer than the window): early in a
        // run the losses are the largest of the run, so a short mean is a safe reference.
        let mean = recent.iter().sum::<f64>() / recent.len() as f64;
        if let Some(factor) = self.divergence_factor {
            if mean > factor * self.running_min {
                return Err(Error::Diverged(format!(
                    "at step {step} the mean loss of the last {} steps ({mean}) exceeds {factor} \
                     times the smallest such mean so far ({})",
                    recent.len(),
                    self.running_min
                )));
            }
        }
        let gradient_norm = match self.clip_norm {
            Some(clip) => clip_by_global_norm(&mut grads, clip)?,
            None => grads.global_norm(),
        };
        if let Some(schedule) = &self.schedule {
            let rate = schedule.rate(self.optimizer.step_count());
            self.optimizer.set_learning_rate(rate)?;
        }
        let learning_rate = self.optimizer.learning_rate();
        self.optimizer.apply(&mut self.params, &grads)?;
        // Only after a successful update: a failed step leaves the run as it was.
        self.carry = carry;
        self.running_min = self.running_min.min(mean);
        self.recent_losses = recent;
        let report = StepReport {
            step,
            loss,
            accuracy,
            learning_rate,
            gradient_norm,
            elapsed: start.elapsed(),
            reduction,
        };
        self.history.steps.push(report);
        Ok(report)
    }

    /// Step `step`'s loss, accuracy and gradient over shards: this rank's shards computed, all
    /// shards' buffers gathered (from the other ranks too), and summed in shard order; with the
    /// time the combining took.
    fn sharded_gradients(
        &self,
        batch: Minibatch<T>,
        step: u64,
    ) -> Result<(f64, f64, Grads<T>, Duration)> {
        let (rank, ranks) = self.rank();
        let local = (|| {
            self.check_sharding()?;
            let ranges = shard_ranges(batch.len(), self.shards)?;
            let total = batch_weight(&batch) as f64;
            let per_rank = self.shards / ranks;
            let tasks = (rank * per_rank..(rank + 1) * per_rank)
                .map(|k| {
                    let part = slice_batch(&batch, ranges[k].clone());
                    let share = if total > 0.0 {
                        batch_weight(&part) as f64 / total
                    } else {
                        0.0
                    };
                    ShardTask {
                        batch: part,
                        seed: shard_seed(step_seed(self.seed, step), k),
                        scale: share,
                    }
                })
                .collect();
            drop(batch);
            let layout = Layout::new(&self.params);
            let mut buffer = Vec::with_capacity(per_rank * layout.len());
            for result in (self.shard_runner)(&self.model, &self.params, tasks) {
                layout.pack(&result?, &mut buffer)?;
            }
            Ok((layout, buffer))
        })();
        let (layout, buffer) = self.or_abort(local, step, "computing its gradient shards")?;
        let start = Instant::now();
        let all = match &self.collective {
            Some(c) => c.all_gather(&buffer)?,
            None => buffer,
        };
        let (grads, loss, correct, weight) = layout.combine(&all, self.shards)?;
        let reduction = start.elapsed();
        // Every rank has the same sums: a non-finite loss stops all of them alike.
        check_finite_loss(loss, step)?;
        Ok((loss, correct / weight.max(1.0), grads, reduction))
    }

    /// Loss and accuracy over `batches`, on inference tapes, weighted by examples (or by valid
    /// positions for sequence targets). With [`Trainer::carry_state`] the batches are one
    /// continuing stream, starting from zero states.
    ///
    /// With a [collective](Trainer::collective) (every rank passing the same batches) rank `r`
    /// evaluates the batches `r, r + ranks, ...`, and every rank adds all batches' figures in
    /// batch order: the same bits as one process evaluating them all. An error on one rank
    /// then ends the job.
    pub fn evaluate<I>(&self, batches: I) -> Result<Metrics>
    where
        I: IntoIterator<Item = Result<Minibatch<T>>>,
    {
        let (rank, ranks) = match (&self.collective, self.carry_state) {
            // A carried state makes the batches one stream: every rank runs all of them.
            (Some(c), false) => (c.rank(), c.size()),
            _ => (0, 1),
        };
        // Each evaluated batch's (loss * n, correct, n), in batch order.
        let mut carry = Carry::new();
        let mut figures = Vec::new();
        let mut seen = 0usize;
        let local = (|| {
            for (i, batch) in batches.into_iter().enumerate() {
                seen = i + 1;
                if i % ranks != rank {
                    continue;
                }
                let batch = batch?;
                batch.check()?;
                let n = batch_weight(&batch);
                let tape = Tape::inference(&self.params);
                let (loss, accuracy) = forward_loss(
                    &self.model,
                    &tape,
                    batch,
                    self.carry_state.then_some(&mut carry),
                )?;
                figures.extend([
                    tape.scalar(loss).to_f64_lossless() * n as f64,
                    accuracy * n as f64,
                    n as f64,
                ]);
            }
            Ok(())
        })();
        self.or_abort(local, self.step(), "evaluating")?;
        if ranks > 1 {
            let c = self.collective.as_ref().expect("ranks > 1");
            // Every rank saw the same number of batches; rank r evaluated batch j * ranks + r.
            let per_rank = seen.div_ceil(ranks) * 3;
            figures.resize(per_rank, 0.0);
            let all = c.all_gather_f64(&figures)?;
            figures = (0..seen)
                .flat_map(|i| {
                    let at = (i % ranks) * per_rank + (i / ranks) * 3;
                    all[at..at + 3].to_vec()
                })
                .collect();
        }
        let (mut loss_sum, mut correct, mut count) = (0.0, 0.0, 0usize);
        for f in figures.chunks(3) {
            loss_sum += f[0];
            correct += f[1];
            count += f[2] as usize;
        }
        if count == 0 {
            return Err(Error::invalid(
                "Trainer::evaluate: no examples to evaluate (no batches, or no valid positions)",
            ));
        }
        Ok(Metrics {
            loss: loss_sum / count as f64,
            accuracy: correct / count as f64,
            count,
        })
    }

    /// The model's output for `inputs` (with each example's `lengths`, if given), on an
    /// inference tape: no dropout, nothing recorded for a backward pass.
    pub fn predict(&self, inputs: &ArrayD<T>, lengths: Option<&[usize]>) -> Result<ArrayD<T>> {
        predict(&self.params, &self.model, inputs, lengths)
    }

    /// The run's whole state besides the parameters, with `data`'s position.
    pub fn training_state<D: TrainSource<T> + ?Sized>(&self, data: &D) -> TrainingState<T> {
        let mut extra = std::collections::BTreeMap::new();
        if let Some((best, step)) = self.best {
            extra.insert("best_metric".to_string(), format!("{best:?}"));
            extra.insert("best_step".to_string(), step.to_string());
        }
        extra.insert("since_best".to_string(), self.since_best.to_string());
        extra.insert("running_min".to_string(), format!("{:?}", self.running_min));
        let recent: Vec<String> = self
            .recent_losses
            .iter()
            .map(|l| format!("{l:?}"))
            .collect();
        extra.insert("recent_losses".to_string(), recent.join(","));
        TrainingState {
            optimizer: self.optimizer.state(),
            data: Some(data.position()),
            carry: self.carry.clone(),
            seed: self.seed,
            extra,
        }
    }

    /// Writes the parameters and the training state to `path`, atomically.
    pub fn save<D: TrainSource<T> + ?Sized>(&self, path: &Path, data: &D) -> Result<()> {
        save_training_state(&self.params, &self.training_state(data), path)
    }

    /// Continues the run saved in `path`: parameters, optimizer, seed, carried states, the
    /// trainer's bookkeeping and `data`'s position. All or nothing: on error the trainer and
    /// `data` are unchanged.
    pub fn resume<D: TrainSource<T> + ?Sized>(&mut self, path: &Path, data: &mut D) -> Result<()> {
        let mut params = self.params.clone();
        let state = load_training_state(&mut params, path)?;
        let corrupt = |key: &str, value: &str| {
            Error::Checkpoint(format!(
                "{}: the entry {key:?} is {value:?}, not what the trainer wrote",
                path.display()
            ))
        };
        let extra = |key: &str| state.extra.get(key).map(String::as_str);
        let float = |key: &str, value: &str| -> Result<f64> {
            match value.parse::<f64>() {
                Ok(v) if !v.is_nan() => Ok(v),
                _ => Err(corrupt(key, value)),
            }
        };
        let whole = |key: &str, value: &str| value.parse::<u64>().map_err(|_| corrupt(key, value));
        let best = match (extra("best_metric"), extra("best_step")) {
            (Some(b), Some(s)) => Some((float("best_metric", b)?, whole("best_step", s)?)),
            (None, None) => None,
            (Some(_), None) => return Err(corrupt("best_step", "")),
            (None, Some(s)) => return Err(corrupt("best_metric", s)),
        };
        let since_best = match extra("since_best") {
            Some(v) => whole("since_best", v)? as usize,
            None => 0,
        };
        let running_min = match extra("running_min") {
            Some(v) => float("running_min", v)?,
            None => f64::INFINITY,
        };
        let recent_losses = match extra("recent_losses") {
            Some("") | None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(|l| float("recent_losses", l))
                .collect::<Result<Vec<_>>>()?,
        };
        // The optimizer and the data check their parts before changing; roll the optimizer
        // back if the data refuses.
        let old_optimizer = self.optimizer.state();
        self.optimizer.load_state(&params, &state.optimizer)?;
        if let Some(position) = &state.data {
            if let Err(e) = data.restore(position) {
                self.optimizer.load_state(&self.params, &old_optimizer)?;
                return Err(e);
            }
        }
        self.params = params;
        self.seed = state.seed;
        self.carry = state.carry;
        self.best = best;
        self.since_best = since_best;
        self.running_min = running_min;
        self.recent_losses = recent_losses;
        Ok(())
    }

    /// Updates the early-stopping bookkeeping with an evaluation; `Some` when it says stop.
    fn early_stop(&mut self, step: u64, metrics: &Metrics) -> Result<Option<Stop>> {
        let Some(rule) = self.early_stopping else {
            return Ok(None);
        };
        let value = match rule.monitor {
            Monitor::Loss => metrics.loss,
            Monitor::Accuracy => -metrics.accuracy,
        };
        if !value.is_finite() {
            return Err(Error::NonFinite(format!(
                "early stopping watches the validation {:?}, which is {} at step {step} \
                 (accuracy is undefined for regression targets)",
                rule.monitor,
                if rule.monitor == Monitor::Loss {
                    metrics.loss
                } else {
                    metrics.accuracy
                }
            )));
        }
        match self.best {
            Some((best, _)) if value > best - rule.min_delta => {
                self.since_best += 1;
                if self.since_best >= rule.patience {
                    let (_, best_step) = self.best.expect("checked above");
                    return Ok(Some(Stop::EarlyStopped { best_step }));
                }
            }
            _ => {
                self.best = Some((value, step));
                self.since_best = 0;
            }
        }
        Ok(None)
    }
}

impl<T: Scalar, M: Layer<T> + Sync> Trainer<T, M> {
    /// Runs a step's [gradient shards](Trainer::gradient_shards) at once on the kernels' thread
    /// pool ([`crate::parallel`]) instead of one after another; the result is the same, bit for
    /// bit. For models that can be shared between threads (`Sync`: plain layers are, a
    /// [`Sequential`](crate::layers::Sequential) of boxed layers is not).
    pub fn parallel_shards(mut self) -> Self {
        self.shard_runner = run_shards_on_pool::<T, M>;
        self
    }
}

/// The model's loss on `batch` recorded on `tape`, and the batch's accuracy. The batch is
/// taken by value so that its inputs and targets move onto the tape without a copy.
fn forward_loss<T: Scalar, M: Layer<T> + ?Sized>(
    model: &M,
    tape: &Tape<'_, T>,
    batch: Minibatch<T>,
    carry: Option<&mut Carry<T>>,
) -> Result<(Var, f64)> {
    let Minibatch {
        inputs,
        lengths,
        targets,
    } = batch;
    let x = tape.constant(inputs);
    let mut context = Context::new();
    if let Some(lengths) = &lengths {
        context = context.lengths(lengths);
    }
    if let Some(carry) = carry {
        context = context.carry(carry);
    }
    let output = model.forward(tape, x, &mut context)?;
    let lengths = lengths.as_deref();
    match targets {
        Targets::Classes(labels) => {
            let losses = tape.sparse_softmax_cross_entropy_with_logits(&labels, output)?;
            let accuracy = class_accuracy(&tape.value(output), &labels, None)?;
            Ok((tape.mean(losses), accuracy.0))
        }
        Targets::Sequence(targets) => {
            let weights = match lengths {
                Some(l) => Some(tape.sequence_mask(l, targets.ncols())?),
                None => None,
            };
            let loss = tape.sequence_loss(output, &targets, weights)?;
            let accuracy = class_accuracy(&tape.value(output), &[], Some((&targets, lengths)))?;
            Ok((loss, accuracy.0))
        }
        Targets::Values(values) => {
            let target = tape.constant(values);
            let shape = tape.shape(output);
            let loss = match lengths {
                // A sequence output: padded steps do not count (mean over valid steps).
                Some(l) if shape.len() >= 3 => {
                    let mut mask_shape = vec![shape[0], shape[1]];
                    mask_shape.resize(shape.len(), 1);
                    let mask = tape.reshape(tape.sequence_mask(l, shape[1])?, &mask_shape)?;
                    if tape.shape(target) != shape {
                        return Err(Error::shape(
                            "mean_squared_error",
                            format!("targets of the output's shape {shape:?}"),
                            &tape.shape(target),
                        ));
                    }
                    tape.masked_mean(tape.square(tape.sub(output, target)?), mask)?
                }
                _ => tape.mean_squared_error(output, target)?,
            };
            Ok((loss, f64::NAN))
        }
    }
}

/// `model`'s output for `inputs` (with each example's `lengths`, if given) on an inference
/// tape over `params`: no dropout, no gradient bookkeeping.
///
/// # Errors
/// Any error of the model (shapes that do not fit, bad ids).
pub fn predict<T: Scalar, M: Layer<T> + ?Sized>(
    params: &ParamStore<T>,
    model: &M,
    inputs: &ArrayD<T>,
    lengths: Option<&[usize]>,
) -> Result<ArrayD<T>> {
    let tape = Tape::inference(params);
    let x = tape.constant(inputs.clone());
    let mut context = Context::new();
    if let Some(l) = lengths {
        context = context.lengths(l);
    }
    let y = model.forward(&tape, x, &mut context)?;
    Ok(tape.to_array(y))
}

/// A model run one step at a time with its recurrent state kept between calls: streaming
/// inference and generation (Keras's `stateful=True` at inference).
///
/// ```
/// use recurrent::layers::{Dense, Rnn, Sequential};
/// use recurrent::train::Stepper;
/// use recurrent::ParamStore;
///
/// let mut params = ParamStore::<f32>::new(0);
/// let model = Sequential::new()
///     .push(Rnn::lstm(&mut params, 2, 8)?)
///     .push(Dense::new(&mut params, "dense", 8, 3)?);
/// let mut stepper = Stepper::new(&params, &model);
/// for _ in 0..4 {
///     let y = stepper.step(&ndarray::ArrayD::ones(ndarray::IxDyn(&[1, 1, 2])))?; // one step
///     assert_eq!(y.shape(), &[1, 1, 3]);
/// }
/// stepper.reset();
/// # Ok::<(), recurrent::Error>(())
/// ```
pub struct Stepper<'a, T: Scalar, M: ?Sized> {
    params: &'a ParamStore<T>,
    model: &'a M,
    carry: Carry<T>,
}

impl<'a, T: Scalar, M: Layer<T> + ?Sized> Stepper<'a, T, M> {
    /// A stepper starting from zero states.
    pub fn new(params: &'a ParamStore<T>, model: &'a M) -> Self {
        Stepper {
            params,
            model,
            carry: Carry::new(),
        }
    }

    /// Runs the model on `input` (usually one time step, `[batch, 1, ...]`), starting from the
    /// states the previous call left, and returns its output.
    pub fn step(&mut self, input: &ArrayD<T>) -> Result<ArrayD<T>> {
        let tape = Tape::inference(self.params);
        let x = tape.constant(input.clone());
        let y = self
            .model
            .forward(&tape, x, &mut Context::new().carry(&mut self.carry))?;
        Ok(tape.to_array(y))
    }

    /// Forgets the states: the next step starts from zeros.
    pub fn reset(&mut self) {
        self.carry.reset();
    }

    /// The states kept (by layer name).
    pub fn carry(&self) -> &Carry<T> {
        &self.carry
    }

    /// Replaces the kept states (for example with a trainer's carried ones).
    pub fn set_carry(&mut self, carry: Carry<T>) {
        self.carry = carry;
    }
}

/// The accuracy of `output` logits: against `labels` for `[batch, classes]`, or against
/// `[batch, time]` targets for `[batch, time, classes]` (valid positions only). Predictions are
/// [`tensor::argmax`](crate::tensor::argmax) (ties to the first class, as `tf.argmax`).
fn class_accuracy<T: Scalar>(
    output: &ArrayD<T>,
    labels: &[usize],
    sequence: Option<(&Array2<usize>, Option<&[usize]>)>,
) -> Result<(f64, usize)> {
    let predicted = crate::tensor::argmax(output)?;
    let (mut correct, mut count) = (0usize, 0usize);
    match sequence {
        None => {
            if predicted.len() != labels.len() {
                return Err(Error::shape(
                    "accuracy",
                    format!("logits [{}, classes]", labels.len()),
                    output.shape(),
                ));
            }
            for (&p, &label) in predicted.iter().zip(labels) {
                correct += usize::from(p == label);
            }
            count = labels.len();
        }
        Some((targets, lengths)) => {
            if predicted.shape() != targets.shape() {
                return Err(Error::shape(
                    "accuracy",
                    format!("logits [{}, {}, classes]", targets.nrows(), targets.ncols()),
                    output.shape(),
                ));
            }
            for ((&p, &target), (b, t)) in predicted
                .iter()
                .zip(targets.iter())
                .zip(ndarray::indices(targets.dim()))
            {
                if lengths.is_some_and(|l| t >= l[b]) {
                    continue;
                }
                correct += usize::from(p == target);
                count += 1;
            }
        }
    }
    Ok((correct as f64 / count.max(1) as f64, count))
}
