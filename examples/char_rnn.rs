//! A character-level language model of Shakespeare's plays: the classic first program after
//! MNIST (Karpathy's `char-rnn`, TensorFlow's PTB model at the character level).
//!
//! Characters embedded (64) -> two stacked `BasicLstmCell(256)` (`rnn/multi_rnn_cell/cell_k/
//! basic_lstm_cell`) -> dense to the vocabulary at every step, softmax cross-entropy at every
//! position; batch 32, 64 steps of truncated backpropagation through time with the state carried
//! from each batch to the next (`Trainer::carry_state`), Adam (learning rate 0.002), gradients
//! clipped to global norm 5, 1500 steps. The text (`../shared/text/shakespeare_plays.txt.gz`,
//! or any UTF-8 file with `--text`): the first 90% trains, the last 10% validates.
//! `benches/char_rnn_torch.py` is the same model and data pipeline in PyTorch.
//!
//! ```text
//! cargo run --release --example char_rnn                       # train, validate, sample
//! cargo run --release --example char_rnn -- --save shakespeare.safetensors
//! cargo run --release --example char_rnn -- --load shakespeare.safetensors --sample-only \
//!     --prompt "HAMLET." --sample-len 1000 --temperature 0.6
//! ```
//!
//! It prints the training loss in bits per character (the cross-entropy divided by ln 2) and the
//! time per step, then `validation bits per character: X.XXX` over the whole validation part
//! (its 32 parallel streams read to the end, the state carried throughout), then a sample.
//! `--save` writes the weights and the vocabulary (and the model's sizes) to one safetensors
//! file; `--load FILE` rebuilds the model from it.
//!
//! Expected with the defaults (seed 42), measured 2026-12-01 16:00 on the project's 2-core AMD
//! EPYC (Zen 5), quiet (load average 1.4): training loss 4.72 bits per character over the first
//! 100 steps, 2.22 over the last 100; `validation bits per character: 2.339` (484992 characters,
//! 3.4 s); median 39.4 ms per training step (62 s for the 1500 steps,
//! 65 s wall time). The README's "Text" section shows the sample.

#[path = "common/errors.rs"]
mod errors;
#[path = "common/text.rs"]
mod text;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::cell::{BasicLstmCell, MultiCell};
use recurrent::data::{read_text, split_train_validation, CharVocab, LmBatcher, TRAIN_FRACTION};
use recurrent::layers::{Dense, Embedding, Rnn, Sequential};
use recurrent::ndarray::{s, Array2};
use recurrent::optim::Adam;
use recurrent::train::{FitOptions, Stepper, Trainer};
use recurrent::{checkpoint, ParamStore};
use text::{AnyResult, LossUnit, Progress, LN_2};

/// Train a character-level LSTM language model, report validation bits per character, sample.
#[derive(Parser, Debug)]
struct Cli {
    /// The text: any UTF-8 file, plain or gzip. A relative path is tried from the current folder,
    /// then from the crate's, so the default works from the repository root.
    #[arg(long, default_value = "../shared/text/shakespeare_plays.txt.gz")]
    text: PathBuf,
    /// Training steps (batches).
    #[arg(long, default_value_t = 1500)]
    steps: u64,
    /// Parallel streams per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Steps of truncated backpropagation through time per batch.
    #[arg(long, default_value_t = 64)]
    num_steps: usize,
    /// Width of the character embedding.
    #[arg(long, default_value_t = 64)]
    embedding: usize,
    /// Units of each LSTM layer.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Stacked LSTM layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.002)]
    learning_rate: f64,
    /// Clip the gradients to this global norm.
    #[arg(long, default_value_t = 5.0)]
    clip_norm: f64,
    /// Seeds the initial weights and the sample.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print a line every N steps.
    #[arg(long, default_value_t = 100)]
    log_every: u64,
    /// Validate on only the first N validation characters (0: all; for quick checks).
    #[arg(long, default_value_t = 0)]
    max_validation_chars: usize,
    /// The text the sample starts from (fed to the model first, printed with the sample).
    #[arg(long, default_value = "HAMLET.\n")]
    prompt: String,
    /// Characters to generate after the prompt.
    #[arg(long, default_value_t = 300)]
    sample_len: usize,
    /// Softmax temperature of the sample (lower: safer, more repetitive).
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Save the weights, the vocabulary and the model's sizes to this safetensors file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Load a model saved with --save instead of training (then validate and sample).
    #[arg(long)]
    load: Option<PathBuf>,
    /// With --load: only generate (no text is read, no validation).
    #[arg(long, requires = "load")]
    sample_only: bool,
    /// Write the whole training state (weights, optimizer, data position, carried state) here
    /// at the end and every --checkpoint-every steps.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// With --checkpoint: also write it every N steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Continue the run saved by --checkpoint in this file, up to --steps in all.
    #[arg(long)]
    resume: Option<PathBuf>,
}

/// The metadata keys of a `--save` file.
const VOCAB_KEY: &str = "char_rnn_vocabulary";
const SIZES_KEY: &str = "char_rnn_sizes";

/// The model's sizes, as stored beside the weights.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sizes {
    embedding: usize,
    hidden: usize,
    layers: usize,
}

impl Sizes {
    fn to_metadata(self) -> String {
        format!(
            "embedding={} hidden={} layers={}",
            self.embedding, self.hidden, self.layers
        )
    }

    fn from_metadata(s: &str) -> AnyResult<Sizes> {
        let mut sizes = [None; 3];
        for field in s.split(' ') {
            let (key, value) = field.split_once('=').ok_or("no '=' in a size")?;
            let slot = match key {
                "embedding" => 0,
                "hidden" => 1,
                "layers" => 2,
                _ => return Err(format!("unknown size {key:?} in {s:?}").into()),
            };
            sizes[slot] = Some(value.parse::<usize>()?);
        }
        match sizes {
            [Some(embedding), Some(hidden), Some(layers)] => Ok(Sizes {
                embedding,
                hidden,
                layers,
            }),
            _ => Err(format!("the sizes {s:?} lack one of embedding, hidden, layers").into()),
        }
    }
}

/// Embedding -> `layers` stacked LSTMs over a `MultiCell` -> dense to the vocabulary, at
/// every step: ids `[batch, time]` to logits `[batch, time, vocab]`.
fn build_model(
    params: &mut ParamStore<f32>,
    vocab: usize,
    sizes: Sizes,
) -> recurrent::Result<Sequential<f32>> {
    let embedding = Embedding::new(params, vocab, sizes.embedding)?;
    let rnn = Rnn::build(params, |params, scope| {
        let stack = scope.sub("multi_rnn_cell");
        let cells = (0..sizes.layers)
            .map(|k| {
                let input = if k == 0 {
                    sizes.embedding
                } else {
                    sizes.hidden
                };
                let scope = stack.sub(format!("cell_{k}")).sub("basic_lstm_cell");
                BasicLstmCell::new(params, scope, input, sizes.hidden)
            })
            .collect::<recurrent::Result<Vec<_>>>()?;
        MultiCell::new(cells)
    })?;
    let dense = Dense::new(params, "dense", sizes.hidden, vocab)?;
    Ok(Sequential::new().push(embedding).push(rnn).push(dense))
}

fn main() -> ExitCode {
    text::report_errors(run(Cli::parse()))
}

fn run(cli: Cli) -> AnyResult<()> {
    let start = Instant::now();
    if !(cli.temperature.is_finite() && cli.temperature > 0.0) {
        return Err(format!("--temperature must be > 0, got {}", cli.temperature).into());
    }
    if let Some(path) = &cli.load {
        return run_loaded(&cli, path, start);
    }
    let path = text::resolve(&cli.text);
    let text = read_text(&path)?;
    let vocab = CharVocab::from_text(&text);
    let ids = vocab.encode(&text);
    let (train_ids, valid_ids) = split_train_validation(&ids, TRAIN_FRACTION)?;
    let valid_ids = limit(valid_ids, cli.max_validation_chars);
    let mut train = LmBatcher::new(train_ids, cli.batch_size, cli.num_steps)?;
    let valid = LmBatcher::new(valid_ids, cli.batch_size, cli.num_steps)?;
    println!("char_rnn");
    println!(
        "  text: {}: {} characters, vocabulary {} ({} characters + padding + unknown)",
        path.display(),
        ids.len(),
        vocab.len(),
        vocab.num_chars()
    );
    println!(
        "  split: {} training, {} validation characters; an epoch is {} batches of {} x {}",
        train_ids.len(),
        valid_ids.len(),
        train.epoch_size(),
        cli.batch_size,
        cli.num_steps
    );

    let sizes = Sizes {
        embedding: cli.embedding,
        hidden: cli.hidden,
        layers: cli.layers,
    };
    let mut params = ParamStore::<f32>::new(cli.seed);
    let model = build_model(&mut params, vocab.len(), sizes)?;
    println!(
        "  model: embedding {} -> {} x BasicLstmCell({}) -> dense {} at every step; {} parameters",
        sizes.embedding,
        sizes.layers,
        sizes.hidden,
        vocab.len(),
        params.num_params()
    );
    println!(
        "  training: {} steps, Adam lr {}, clip_by_global_norm {}, state carried, seed {}",
        cli.steps, cli.learning_rate, cli.clip_norm, cli.seed
    );
    let mut trainer = Trainer::new(model, params, Adam::new(cli.learning_rate)?)
        .seed(cli.seed)
        .clip_by_global_norm(cli.clip_norm)?
        .carry_state(true);
    if let Some(path) = &cli.resume {
        trainer.resume(path, &mut train)?;
        println!("resumed {} at step {}", path.display(), trainer.step());
    }
    let mut options = FitOptions::until_step(cli.steps);
    if let Some(path) = &cli.checkpoint {
        options = options.checkpoint(path);
        if let Some(n) = cli.checkpoint_every {
            options = options.checkpoint_every(n);
        }
    }
    let mut progress = Progress::new(cli.steps, trainer.step(), cli.log_every, LossUnit::Bits)?;
    let train_start = Instant::now();
    trainer.fit(&mut train, &options, None, &mut progress)?;
    progress.finish();
    let train_secs = train_start.elapsed().as_secs_f64();

    let t = Instant::now();
    let metrics = trainer.evaluate(valid.evaluation_minibatches())?;
    let bpc = metrics.loss / LN_2;
    println!(
        "validation bits per character: {bpc:.3}  ({} characters, {:.1} s)",
        metrics.count,
        t.elapsed().as_secs_f64()
    );
    if let Some(path) = &cli.save {
        let metadata = BTreeMap::from([
            (VOCAB_KEY.to_string(), vocab.to_string()),
            (SIZES_KEY.to_string(), sizes.to_metadata()),
        ]);
        checkpoint::save_with_metadata(trainer.params(), path, &metadata)?;
        println!("saved the model and its vocabulary to {}", path.display());
    }
    print_sample(&cli, trainer.params(), trainer.model(), &vocab)?;

    let (median, mean) = progress.ms_per_step(5);
    let steps = progress.step_times.len();
    let final_bits = progress.losses.last().map_or(f64::NAN, |l| l / LN_2);
    println!(
        "summary: {steps} steps in {train_secs:.1} s, median {median:.1} ms per training step \
         (mean {mean:.1}, after 5 warm-up steps), last training loss {final_bits:.3} bits/char, \
         validation {bpc:.3} bits/char, wall time {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--load`: the model rebuilt from the file's vocabulary and sizes, then (unless
/// `--sample-only`) validated on `--text`, then sampled.
fn run_loaded(cli: &Cli, path: &std::path::Path, start: Instant) -> AnyResult<()> {
    let metadata = checkpoint::read_metadata(path)?;
    let missing = |key: &str| {
        format!(
            "{} has no {key:?} entry: not a file written by char_rnn --save",
            path.display()
        )
    };
    let vocab: CharVocab = metadata
        .get(VOCAB_KEY)
        .ok_or_else(|| missing(VOCAB_KEY))?
        .parse()?;
    let sizes = Sizes::from_metadata(metadata.get(SIZES_KEY).ok_or_else(|| missing(SIZES_KEY))?)?;
    let mut params = ParamStore::<f32>::new(cli.seed);
    let model = build_model(&mut params, vocab.len(), sizes)?;
    checkpoint::load(&mut params, path)?;
    println!(
        "char_rnn: loaded {} (vocabulary {}, embedding {} -> {} x LSTM({}) -> dense; no training)",
        path.display(),
        vocab.len(),
        sizes.embedding,
        sizes.layers,
        sizes.hidden
    );
    if !cli.sample_only {
        let text_path = text::resolve(&cli.text);
        let ids = vocab.encode(&read_text(&text_path)?);
        let (_, valid_ids) = split_train_validation(&ids, TRAIN_FRACTION)?;
        let valid = LmBatcher::new(
            limit(valid_ids, cli.max_validation_chars),
            cli.batch_size,
            cli.num_steps,
        )?;
        let trainer = Trainer::new(model, params, Adam::new(cli.learning_rate)?).carry_state(true);
        let metrics = trainer.evaluate(valid.evaluation_minibatches())?;
        println!(
            "validation bits per character: {:.3}  ({} characters of {})",
            metrics.loss / LN_2,
            metrics.count,
            text_path.display()
        );
        print_sample(cli, trainer.params(), trainer.model(), &vocab)?;
    } else {
        print_sample(cli, &params, &model, &vocab)?;
    }
    println!("summary: wall time {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The first `n` ids (all if `n` is 0).
fn limit(ids: &[usize], n: usize) -> &[usize] {
    if n == 0 {
        ids
    } else {
        &ids[..n.min(ids.len())]
    }
}

fn print_sample(
    cli: &Cli,
    params: &ParamStore<f32>,
    model: &Sequential<f32>,
    vocab: &CharVocab,
) -> AnyResult<()> {
    let t = Instant::now();
    let generated = sample(
        params,
        model,
        vocab,
        &cli.prompt,
        cli.sample_len,
        cli.temperature,
        cli.seed,
    )?;
    println!(
        "sample ({} characters at temperature {}, seed {}, {:.1} s):",
        cli.sample_len,
        cli.temperature,
        cli.seed,
        t.elapsed().as_secs_f64()
    );
    println!("----\n{}{generated}\n----", cli.prompt);
    Ok(())
}

/// `len` characters generated after `prompt`: the prompt is fed through the model first (one
/// forward pass over its characters, the state kept by a [`Stepper`]), then each sampled
/// character is fed back one step at a time. Each character is drawn from the softmax of the
/// last logits divided by `temperature`, with a generator seeded by `seed`; padding and
/// "unknown" are not characters and are never drawn.
fn sample(
    params: &ParamStore<f32>,
    model: &Sequential<f32>,
    vocab: &CharVocab,
    prompt: &str,
    len: usize,
    temperature: f64,
    seed: u64,
) -> AnyResult<String> {
    let ids = vocab.encode(prompt);
    if ids.is_empty() {
        return Err("--prompt must not be empty: the model needs a first character".into());
    }
    let unknown: Vec<char> = prompt.chars().filter(|&c| !vocab.contains(c)).collect();
    if !unknown.is_empty() {
        println!(
            "note: the prompt's characters {unknown:?} are not in the vocabulary (read as unknown)"
        );
    }
    let mut stepper = Stepper::new(params, model);
    let input =
        |ids: &[usize]| Array2::from_shape_fn((1, ids.len()), |(_, t)| ids[t] as f32).into_dyn();
    let mut logits = stepper.step(&input(&ids))?; // [1, prompt length, vocab]
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        let last = logits.slice(s![0, -1, ..]);
        let scaled: Vec<f64> = last.iter().map(|&l| f64::from(l) / temperature).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scaled
            .iter()
            .enumerate()
            .map(|(id, &l)| {
                if id < CharVocab::FIRST_CHAR_ID {
                    0.0
                } else {
                    (l - max).exp()
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut r = rng.random::<f64>() * total;
        let mut id = weights.len() - 1;
        for (k, &w) in weights.iter().enumerate() {
            if r < w {
                id = k;
                break;
            }
            r -= w;
        }
        out.push(
            vocab
                .char_of(id)
                .ok_or("sampled an id outside the vocabulary")?,
        );
        logits = stepper.step(&input(&[id]))?;
    }
    Ok(out)
}
