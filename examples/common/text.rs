//! What the text examples (`char_rnn`, `word_language`) share: printing errors as text, finding
//! the shared data folder, the progress bar with per-step times (an [`Observer`]), and the
//! timing summary. The MNIST examples' own parts stay in `common/mod.rs`.

// Each example uses part of this module (one shows bits, the other accuracy).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use recurrent::train::{Observer, StepReport};

pub use crate::errors::{report_errors, AnyResult};

/// `path` as given if it exists (or is absolute), else the same relative path from the crate's
/// folder: the defaults (`../shared/text/...`) work from the repository root and from anywhere
/// under `cargo run`.
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let from_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if from_crate.exists() {
        from_crate
    } else {
        path.to_path_buf()
    }
}

/// How a step's loss is shown.
#[derive(Clone, Copy)]
pub enum LossUnit {
    /// Cross-entropy in bits per token (the loss divided by ln 2).
    Bits,
    /// The loss as it is (nats), with the batch accuracy.
    NatsAndAccuracy,
}

/// The progress bar and a log line every `log_every` steps, with each step's wall time kept.
pub struct Progress {
    bar: ProgressBar,
    log_every: u64,
    unit: LossUnit,
    /// Every step's wall time, in order.
    pub step_times: Vec<Duration>,
    /// Every step's loss (nats), in order.
    pub losses: Vec<f64>,
}

impl Progress {
    /// A bar up to step `steps`, starting at `start` (a resumed run).
    pub fn new(steps: u64, start: u64, log_every: u64, unit: LossUnit) -> AnyResult<Progress> {
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ({eta})",
        )?;
        let bar = ProgressBar::new(steps).with_style(style.progress_chars("=> "));
        bar.set_position(start);
        Ok(Progress {
            bar,
            log_every: log_every.max(1),
            unit,
            step_times: Vec::new(),
            losses: Vec::new(),
        })
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Prints a line above the bar.
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    /// The median step time in milliseconds, leaving out the first `warm_up` steps (as the
    /// PyTorch references do: their first steps warm up the allocator), and the mean.
    pub fn ms_per_step(&self, warm_up: usize) -> (f64, f64) {
        ms_per_step(&self.step_times, warm_up)
    }
}

/// Median and mean of `times` in milliseconds after the first `warm_up` (fewer if that leaves
/// none).
pub fn ms_per_step(times: &[Duration], warm_up: usize) -> (f64, f64) {
    let timed = &times[warm_up.min(times.len().saturating_sub(1))..];
    if timed.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut sorted: Vec<f64> = timed.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    (median, sorted.iter().sum::<f64>() / sorted.len() as f64)
}

impl Observer for Progress {
    fn on_step(&mut self, r: &StepReport) {
        self.step_times.push(r.elapsed);
        self.losses.push(r.loss);
        self.bar.set_position(r.step);
        let ms = r.elapsed.as_secs_f64() * 1e3;
        let shown = match self.unit {
            LossUnit::Bits => format!("{:.3} bits/char, {ms:.0} ms/step", r.loss / LN_2),
            LossUnit::NatsAndAccuracy => {
                format!("loss {:.4}, acc {:.3}, {ms:.1} ms/step", r.loss, r.accuracy)
            }
        };
        self.bar.set_message(shown);
        if r.step.is_multiple_of(self.log_every) || Some(r.step) == self.bar.length() {
            let n = (self.log_every as usize).min(self.losses.len());
            let recent = &self.losses[self.losses.len() - n..];
            let mean = recent.iter().sum::<f64>() / n as f64;
            let times = &self.step_times[self.step_times.len() - n..];
            let ms = times.iter().sum::<Duration>().as_secs_f64() * 1e3 / n as f64;
            let line = match self.unit {
                LossUnit::Bits => format!(
                    "step {:5}: training loss {:.3} bits/char (mean of the last {n} steps), \
                     {ms:.1} ms/step",
                    r.step,
                    mean / LN_2
                ),
                LossUnit::NatsAndAccuracy => format!(
                    "step {:5}: training loss {mean:.4} (mean of the last {n} steps), batch \
                     accuracy {:.3}, {ms:.2} ms/step",
                    r.step, r.accuracy
                ),
            };
            self.println(&line);
        }
    }

    fn on_checkpoint(&mut self, step: u64, path: &Path) {
        self.println(&format!(
            "step {step}: wrote the training state to {}",
            path.display()
        ));
    }
}

/// ln 2: nats per bit.
pub const LN_2: f64 = std::f64::consts::LN_2;
