//! What the MNIST examples share: the command line, data loading, the training loop with its
//! progress bar and log lines, evaluation in batches on an inference tape, checkpoints, the
//! `--plot` picture and the summary. Each example only builds its model and implements [`Model`].

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Ix2;
use recurrent::data::{ensure_mnist, resolve_data_dir, Batch, DataSet, Mnist};
use recurrent::metrics::accuracy;
use recurrent::optim::{check_finite_loss, Adam, Optimizer};
use recurrent::{checkpoint, ParamStore, Tape, Var};

/// Any error an example can end with.
pub type AnyResult<T> = Result<T, Box<dyn Error>>;

/// The flags every MNIST example takes.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training steps (batches); ignored when --epochs is given.
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
    /// Save the trained parameters to this safetensors file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Load parameters from this safetensors file and only evaluate (no training).
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// Draw loss and accuracy over training into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Measure validation accuracy every N steps (default: once per epoch, and at the end).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Print a line every N steps.
    #[arg(long, default_value_t = 100)]
    pub log_every: usize,
    /// Also report test accuracy on the first N test images (several: --test-limit 128,1280).
    #[arg(long, value_delimiter = ',', value_parser = positive())]
    pub test_limit: Vec<usize>,
}

/// Parses a count that must be at least 1.
fn positive() -> clap::builder::RangedU64ValueParser<usize> {
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

/// A classifier of MNIST batches: the part each example writes.
pub trait Model {
    /// The logits `[batch, 10]` of `batch` recorded on `tape`.
    fn logits(&self, tape: &Tape<'_, f32>, batch: &Batch<f32>) -> recurrent::Result<Var>;
}

/// Test and validation images per evaluation batch.
// Large enough to keep both cores busy (several 64-example shards); the LSTM's working buffers
// on an inference tape are per shard, so only the outputs grow with it.
const EVAL_BATCH: usize = 256;

/// Loads MNIST from `--data-dir` (or `$MNIST_DIR`), downloading missing files.
pub fn load_mnist(args: &TrainArgs) -> AnyResult<(PathBuf, Mnist)> {
    let dir = resolve_data_dir(args.data_dir.as_deref());
    ensure_mnist(&dir)?;
    let mnist = Mnist::load(&dir, args.seed)?;
    Ok((dir, mnist))
}

/// The accuracy of `model` on the first `limit` examples of `set` (all if `None`), evaluated in
/// batches of 256 on inference tapes (dropout off, nothing recorded for backward).
pub fn evaluate(
    params: &ParamStore<f32>,
    model: &impl Model,
    set: &DataSet,
    limit: Option<usize>,
) -> AnyResult<f64> {
    let n = limit.map_or(set.num_examples(), |l| l.min(set.num_examples()));
    let mut correct = 0.0;
    let mut start = 0;
    while start < n {
        let end = (start + EVAL_BATCH).min(n);
        let batch = set.as_batch::<f32>(start..end);
        let tape = Tape::inference(params);
        let logits = model.logits(&tape, &batch)?;
        let logits = tape.value(logits);
        let acc = accuracy(&logits.view().into_dimensionality::<Ix2>()?, &batch.labels)?;
        correct += acc * batch.len() as f64;
        start = end;
    }
    Ok(correct / n as f64)
}

/// Prints the configuration: the example's own lines, then the shared settings.
pub fn print_config(
    title: &str,
    model_lines: &[String],
    args: &TrainArgs,
    params: &ParamStore<f32>,
    data_dir: &Path,
    steps: usize,
) {
    println!("{title}");
    for line in model_lines {
        println!("  {line}");
    }
    println!(
        "  parameters: {} in {} tensors",
        params.num_params(),
        params.len()
    );
    println!("  data: {}", data_dir.display());
    match &args.load {
        Some(path) => println!("  evaluating {} (no training)", path.display()),
        None => println!(
            "  training: {steps} steps{}, batch {}, Adam lr {}, seed {}",
            args.epochs
                .map(|e| format!(" ({e} epochs)"))
                .unwrap_or_default(),
            args.batch_size,
            args.learning_rate,
            args.seed
        ),
    }
}

/// One point of the training curves.
struct Point {
    step: usize,
    loss: f64,
    accuracy: f64,
}

/// Trains `model` (or loads it with `--load`), then reports test accuracy, timing and throughput.
pub fn run(
    title: &str,
    model_lines: &[String],
    args: &TrainArgs,
    mut params: ParamStore<f32>,
    model: &impl Model,
) -> AnyResult<()> {
    let start = Instant::now();
    let (dir, mut mnist) = load_mnist(args)?;
    let steps = args.total_steps(mnist.train.num_examples());
    print_config(title, model_lines, args, &params, &dir, steps);

    if let Some(path) = &args.load {
        checkpoint::load(&mut params, path)?;
        println!("loaded {}", path.display());
        report_test(&params, model, &mnist, args)?;
        return Ok(());
    }

    let steps_per_epoch = mnist.train.num_examples().div_ceil(args.batch_size);
    let eval_every = args.eval_every.unwrap_or(steps_per_epoch).max(1);
    let log_every = args.log_every.max(1);
    let mut opt = Adam::<f32>::new(args.learning_rate)?;

    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ({eta})")?
            .progress_chars("=> "),
    );
    let mut curve: Vec<Point> = Vec::with_capacity(steps);
    let mut validation: Vec<(usize, f64)> = Vec::new();
    let mut step_times: Vec<Duration> = Vec::with_capacity(steps);
    let mut eval_time = Duration::ZERO;
    let train_start = Instant::now();

    for step in 1..=steps {
        let t0 = Instant::now();
        let batch = mnist.train.next_batch::<f32>(args.batch_size);
        let (loss, acc, grads) = {
            // A fresh tape per step; its dropout masks are seeded by the run's seed and the step.
            let tape = Tape::new(&params).with_seed(args.seed.wrapping_mul(1 << 32) + step as u64);
            let logits = model.logits(&tape, &batch)?;
            let losses = tape.sparse_softmax_cross_entropy_with_logits(&batch.labels, logits)?;
            let loss = tape.mean(losses);
            let acc = {
                let logits = tape.value(logits);
                accuracy(&logits.view().into_dimensionality::<Ix2>()?, &batch.labels)?
            };
            // A NaN or infinite loss (or gradient, checked by `apply`) stops training with an
            // error naming the step, instead of writing NaN weights.
            check_finite_loss(tape.scalar(loss), step as u64)?;
            (f64::from(tape.scalar(loss)), acc, tape.backward(loss)?)
        };
        opt.apply(&mut params, &grads)?;
        step_times.push(t0.elapsed());
        curve.push(Point {
            step,
            loss,
            accuracy: acc,
        });

        bar.set_message(format!("loss {loss:.4}, acc {acc:.4}"));
        bar.inc(1);
        if step % log_every == 0 || step == steps {
            let recent = &step_times[step_times.len().saturating_sub(log_every)..];
            let ms = recent.iter().sum::<Duration>().as_secs_f64() * 1e3 / recent.len() as f64;
            bar.suspend(|| {
                println!("step {step}: loss {loss:.4}, batch accuracy {acc:.4}, {ms:.1} ms/step")
            });
        }
        if step % eval_every == 0 || step == steps {
            let t = Instant::now();
            let val = evaluate(&params, model, &mnist.validation, None)?;
            eval_time += t.elapsed();
            validation.push((step, val));
            let epoch = step as f64 / steps_per_epoch as f64;
            bar.suspend(|| {
                println!(
                    "step {step} (epoch {epoch:.2}): validation accuracy {val:.4} ({} images)",
                    mnist.validation.num_examples()
                )
            });
        }
    }
    bar.finish_and_clear();
    let train_time = train_start.elapsed();

    let test_acc = report_test(&params, model, &mnist, args)?;
    if let Some(path) = &args.save {
        checkpoint::save(&params, path)?;
        println!("saved the parameters to {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot(path, title, &curve, &validation)?;
        println!("plotted the training curves to {}", path.display());
    }

    let mut sorted = step_times.clone();
    sorted.sort();
    let median_ms = sorted
        .get(sorted.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let step_secs: f64 = step_times.iter().sum::<Duration>().as_secs_f64();
    println!(
        "summary: test accuracy {test_acc:.4}, {steps} steps in {:.1} s (training {:.1} s, \
         validation {:.1} s), wall time {:.1} s",
        train_time.as_secs_f64(),
        step_secs,
        eval_time.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "         {:.0} examples/s, median {median_ms:.1} ms per training step",
        (steps * args.batch_size) as f64 / step_secs
    );
    Ok(())
}

/// Prints test accuracy on all test images (and on the first N for each `--test-limit`),
/// returning the former.
fn report_test(
    params: &ParamStore<f32>,
    model: &impl Model,
    mnist: &Mnist,
    args: &TrainArgs,
) -> AnyResult<f64> {
    let t = Instant::now();
    let acc = evaluate(params, model, &mnist.test, None)?;
    println!(
        "test accuracy {acc:.4} ({} images, {:.1} s)",
        mnist.test.num_examples(),
        t.elapsed().as_secs_f64()
    );
    for &limit in &args.test_limit {
        let part = evaluate(params, model, &mnist.test, Some(limit))?;
        println!(
            "test accuracy {part:.4} (first {} images)",
            limit.min(mnist.test.num_examples())
        );
    }
    Ok(acc)
}

/// Draws training loss (left) and accuracy (right: batch accuracy and validation accuracy) into
/// an SVG file. Per-step values are averaged over windows so the file stays small.
fn plot(path: &Path, title: &str, curve: &[Point], validation: &[(usize, f64)]) -> AnyResult<()> {
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
