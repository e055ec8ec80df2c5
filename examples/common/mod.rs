//! What the MNIST examples share: the command line, data loading, the [`Trainer`] run with
//! its progress bar and log lines (an [`Observer`]), test evaluation, checkpoints, the `--plot`
//! picture and the summary. Each example only builds its model.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "errors.rs"]
mod errors;
pub use errors::{report_errors, AnyResult};

use clap::{Args, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use recurrent::data::{ensure_mnist, resolve_data_dir, DataSet, Mnist};
use recurrent::layers::Layer;
use recurrent::optim::Adam;
use recurrent::train::{FitOptions, Metrics, Observer, StepReport, Trainer};
use recurrent::{checkpoint, ParamStore};

/// The flags every MNIST example takes.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training steps (batches) in all; ignored when --epochs is given.
    #[arg(long)]
    pub steps: usize,
    /// Train for this many epochs over the 55000 training images instead of --steps.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per training batch.
    #[arg(long, default_value_t = 128, value_parser = positive())]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    /// Units of each LSTM cell.
    #[arg(long)]
    pub hidden: usize,
    /// Seeds the initial weights, the shuffling and the dropout masks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The MNIST folder (default: $MNIST_DIR, else data/mnist; missing files are downloaded).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Save the trained parameters (weights only) to this safetensors file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Load parameters from this safetensors file and only evaluate (no training).
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// Write the whole training state (weights, optimizer, data position) to this file at the
    /// end, and every --checkpoint-every steps.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// With --checkpoint: also write it every N steps.
    #[arg(long, value_parser = positive())]
    pub checkpoint_every: Option<usize>,
    /// Continue the run saved by --checkpoint in this file, up to --steps in all.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Draw loss and accuracy over training into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Measure validation accuracy every N steps (default: once per epoch, and at the end).
    #[arg(long, value_parser = positive())]
    pub eval_every: Option<usize>,
    /// Print a line every N steps.
    #[arg(long, default_value_t = 100, value_parser = positive())]
    pub log_every: usize,
    /// Also report test accuracy on the first N test images (several: --test-limit 128,1280).
    #[arg(long, value_delimiter = ',', value_parser = positive())]
    pub test_limit: Vec<usize>,
}

/// Parses a count that must be at least 1.
pub fn positive() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

impl TrainArgs {
    /// The number of training steps: `--epochs` over the training set if given, else `--steps`.
    pub fn total_steps(&self, train_size: usize) -> usize {
        match self.epochs {
            Some(e) => (e * train_size).div_ceil(self.batch_size),
            None => self.steps,
        }
    }
}

/// Parses the command line of an example whose flags include [`TrainArgs`], with the example's
/// own defaults for some of them (`("steps", "2000")`), so that `--help` shows them.
pub fn parse<C: Parser>(defaults: &[(&'static str, &'static str)]) -> C {
    let mut cmd = C::command();
    for &(name, value) in defaults {
        cmd = cmd.mut_arg(name, |a| a.default_value(value).required(false));
    }
    let matches = cmd.get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Test and validation images per evaluation batch.
// Large enough to keep both cores busy (several 64-example shards); the LSTM's working buffers
// on an inference tape are per shard, so only the outputs grow with it.
const EVAL_BATCH: usize = 256;

/// Loads MNIST from `--data-dir` (or `$MNIST_DIR`), downloading missing files.
fn load_mnist(args: &TrainArgs) -> AnyResult<(PathBuf, Mnist)> {
    let dir = resolve_data_dir(args.data_dir.as_deref());
    ensure_mnist(&dir)?;
    let mnist = Mnist::load(&dir, args.seed)?;
    Ok((dir, mnist))
}

/// One point of the training curves.
struct Point {
    step: u64,
    loss: f64,
    accuracy: f64,
}

/// The progress bar, the log lines and the curves: what the examples show while training.
struct Progress {
    bar: ProgressBar,
    log_every: u64,
    steps_per_epoch: f64,
    validation_size: usize,
    curve: Vec<Point>,
    validation: Vec<(u64, f64)>,
    step_times: Vec<Duration>,
    reduction_times: Vec<Duration>,
    last_step_end: Instant,
    eval_time: Duration,
    /// Whether this process prints (rank 0 of a distributed run, or the only process).
    show: bool,
}

/// The median of some durations, in milliseconds (0 for none).
fn median_of(times: &[Duration]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

impl Observer for Progress {
    fn on_step(&mut self, r: &StepReport) {
        self.step_times.push(r.elapsed);
        self.reduction_times.push(r.reduction);
        self.last_step_end = Instant::now();
        if !self.show {
            return;
        }
        self.curve.push(Point {
            step: r.step,
            loss: r.loss,
            accuracy: r.accuracy,
        });
        self.bar.set_position(r.step);
        self.bar
            .set_message(format!("loss {:.4}, acc {:.4}", r.loss, r.accuracy));
        if r.step.is_multiple_of(self.log_every) || r.step == self.bar.length().unwrap_or(0) {
            let recent = &self.step_times[self
                .step_times
                .len()
                .saturating_sub(self.log_every as usize)..];
            let ms = recent.iter().sum::<Duration>().as_secs_f64() * 1e3 / recent.len() as f64;
            self.bar.suspend(|| {
                println!(
                    "step {}: loss {:.4}, batch accuracy {:.4}, {ms:.1} ms/step",
                    r.step, r.loss, r.accuracy
                )
            });
        }
    }

    fn on_evaluation(&mut self, step: u64, m: &Metrics) {
        self.eval_time += self.last_step_end.elapsed();
        self.validation.push((step, m.accuracy));
        if !self.show {
            return;
        }
        let epoch = step as f64 / self.steps_per_epoch;
        self.bar.suspend(|| {
            println!(
                "step {step} (epoch {epoch:.2}): validation accuracy {:.4} ({} images)",
                m.accuracy, self.validation_size
            )
        });
    }

    fn on_checkpoint(&mut self, step: u64, path: &Path) {
        if !self.show {
            return;
        }
        self.bar.suspend(|| {
            println!(
                "step {step}: wrote the training state to {}",
                path.display()
            )
        });
    }
}

/// Trains `model` (or loads it with `--load`), then reports test accuracy, timing and throughput.
#[allow(dead_code)] // mnist_lstm calls run_with
pub fn run<M: Layer<f32>>(
    title: &str,
    model_lines: &[String],
    args: &TrainArgs,
    params: ParamStore<f32>,
    model: M,
) -> AnyResult<()> {
    run_with(title, model_lines, args, params, model, true, Ok)
}

/// [`run`] with the trainer set up by `configure` (gradient shards, a collective) and output
/// only if `show`: in a distributed run every rank trains, rank 0 alone prints and writes files.
pub fn run_with<M: Layer<f32>>(
    title: &str,
    model_lines: &[String],
    args: &TrainArgs,
    mut params: ParamStore<f32>,
    model: M,
    show: bool,
    configure: impl FnOnce(Trainer<f32, M>) -> recurrent::Result<Trainer<f32, M>>,
) -> AnyResult<()> {
    let start = Instant::now();
    let (dir, mnist) = load_mnist(args)?;
    let steps = args.total_steps(mnist.train.num_examples()) as u64;
    if show {
        println!("{title}");
        for line in model_lines {
            println!("  {line}");
        }
        println!(
            "  parameters: {} in {} tensors",
            params.num_params(),
            params.len()
        );
        println!("  data: {}", dir.display());
    }
    if let Some(path) = &args.load {
        if show {
            println!("  evaluating {} (no training)", path.display());
        }
        checkpoint::load(&mut params, path)?;
        let trainer = configure(Trainer::new(model, params, Adam::new(args.learning_rate)?))?;
        trainer.check_replicas()?;
        report_test(&trainer, &mnist.test, args, show)?;
        return Ok(());
    }
    let epochs = args
        .epochs
        .map(|e| format!(" ({e} epochs)"))
        .unwrap_or_default();
    if show {
        println!(
            "  training: {steps} steps{epochs}, batch {}, Adam lr {}, seed {}",
            args.batch_size, args.learning_rate, args.seed
        );
    }

    let Mnist {
        train,
        validation,
        test,
    } = mnist;
    let steps_per_epoch = train.num_examples().div_ceil(args.batch_size) as u64;
    let mut train = train.row_sequences(args.batch_size)?;
    let mut trainer =
        configure(Trainer::new(model, params, Adam::new(args.learning_rate)?).seed(args.seed))?;
    if let Some(path) = &args.resume {
        trainer.resume(path, &mut train)?;
        if show {
            println!("resumed {} at step {}", path.display(), trainer.step());
        }
    }
    let mut options = FitOptions::until_step(steps)
        .eval_every(args.eval_every.map_or(steps_per_epoch, |n| n as u64));
    // Only the printing process writes files (the other ranks hold the same state).
    if let Some(path) = args.checkpoint.as_ref().filter(|_| show) {
        options = options.checkpoint(path);
        if let Some(n) = args.checkpoint_every {
            options = options.checkpoint_every(n as u64);
        }
    }
    let style =
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ({eta})")?;
    let bar = if show {
        ProgressBar::new(steps)
    } else {
        ProgressBar::hidden()
    };
    let mut progress = Progress {
        bar: bar.with_style(style.progress_chars("=> ")),
        log_every: args.log_every as u64,
        steps_per_epoch: steps_per_epoch as f64,
        validation_size: validation.num_examples(),
        curve: Vec::new(),
        validation: Vec::new(),
        step_times: Vec::new(),
        reduction_times: Vec::new(),
        last_step_end: Instant::now(),
        eval_time: Duration::ZERO,
        show,
    };
    progress.bar.set_position(trainer.step());
    let mut validation_batches = || validation.row_sequence_batches(EVAL_BATCH, None).collect();
    let train_start = Instant::now();
    trainer.fit(
        &mut train,
        &options,
        Some(&mut validation_batches),
        &mut progress,
    )?;
    progress.bar.finish_and_clear();
    let train_time = train_start.elapsed();

    let test_acc = report_test(&trainer, &test, args, show)?;
    if !show {
        return Ok(());
    }
    if let Some(path) = &args.save {
        checkpoint::save(trainer.params(), path)?;
        println!("saved the parameters to {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot(path, title, &progress.curve, &progress.validation)?;
        println!("plotted the training curves to {}", path.display());
    }
    let trained = progress.step_times.len();
    let median_ms = median_of(&progress.step_times);
    let step_secs: f64 = progress.step_times.iter().sum::<Duration>().as_secs_f64();
    let final_loss = progress.curve.last().map_or(f64::NAN, |p| p.loss);
    println!(
        "summary: final training loss {final_loss:.6}, test accuracy {test_acc:.4}, {trained} steps \
         in {:.1} s (training {step_secs:.1} s, validation {:.1} s), wall time {:.1} s",
        train_time.as_secs_f64(),
        progress.eval_time.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "         {:.0} examples/s, median {median_ms:.1} ms per training step",
        (trained * args.batch_size) as f64 / step_secs
    );
    if trainer.shards() > 1 {
        let (_, ranks) = trainer.rank();
        let reduction_ms = median_of(&progress.reduction_times);
        println!(
            "         gradient reduction ({} shards, {ranks} rank{}): median {reduction_ms:.3} ms \
             per step, {:.1}% of the median step",
            trainer.shards(),
            if ranks == 1 { "" } else { "s" },
            100.0 * reduction_ms / median_ms.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// Prints test accuracy on all test images (and on the first N for each `--test-limit`),
/// returning the former.
fn report_test<M: Layer<f32>>(
    trainer: &Trainer<f32, M>,
    test: &DataSet,
    args: &TrainArgs,
    show: bool,
) -> AnyResult<f64> {
    let t = Instant::now();
    let all = trainer.evaluate(test.row_sequence_batches(EVAL_BATCH, None).map(Ok))?;
    if show {
        println!(
            "test accuracy {:.4} ({} images, {:.1} s)",
            all.accuracy,
            all.count,
            t.elapsed().as_secs_f64()
        );
    }
    for &limit in &args.test_limit {
        let part = trainer.evaluate(test.row_sequence_batches(EVAL_BATCH, Some(limit)).map(Ok))?;
        if show {
            println!(
                "test accuracy {:.4} (first {} images)",
                part.accuracy, part.count
            );
        }
    }
    Ok(all.accuracy)
}

/// Draws training loss (left) and accuracy (right: batch accuracy and validation accuracy) into
/// an SVG file. Per-step values are averaged over windows so the file stays small.
fn plot(path: &Path, title: &str, curve: &[Point], validation: &[(u64, f64)]) -> AnyResult<()> {
    use plotters::prelude::*;

    let window = curve.len().div_ceil(200).max(1);
    let averaged: Vec<(f64, f64, f64)> = curve
        .chunks(window)
        .map(|c| {
            let n = c.len() as f64;
            let step = c.iter().map(|p| p.step as f64).sum::<f64>() / n;
            let loss = c.iter().map(|p| p.loss).sum::<f64>() / n;
            let acc = c.iter().map(|p| p.accuracy).sum::<f64>() / n;
            (step, loss, acc)
        })
        .collect();
    let last_step = curve.last().map_or(1, |p| p.step) as f64;
    let max_loss = averaged.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3);

    let root = SVGBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let (left, right) = root.split_horizontally(450);

    let mut loss_chart = ChartBuilder::on(&left)
        .caption(
            if window > 1 {
                format!("training loss (mean over {window} steps)")
            } else {
                "training loss".to_string()
            },
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..last_step, 0.0..max_loss * 1.05)?;
    loss_chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("step")
        .y_label_formatter(&|y| format!("{y:.2}"))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    loss_chart.draw_series(LineSeries::new(averaged.iter().map(|p| (p.0, p.1)), &RED))?;

    let min_acc = averaged
        .iter()
        .map(|p| p.2)
        .chain(validation.iter().map(|v| v.1))
        .fold(1.0, f64::min)
        .max(0.0);
    let mut acc_chart = ChartBuilder::on(&right)
        .caption("accuracy", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..last_step, min_acc..1.0)?;
    acc_chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("step")
        .y_label_formatter(&|y| format!("{y:.2}"))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    acc_chart
        .draw_series(LineSeries::new(averaged.iter().map(|p| (p.0, p.2)), &BLUE))?
        .label("batch")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    acc_chart
        .draw_series(LineSeries::new(
            validation.iter().map(|&(s, a)| (s as f64, a)),
            GREEN.stroke_width(2),
        ))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], GREEN.stroke_width(2)));
    acc_chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
