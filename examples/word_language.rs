//! Which language is a word? A character-level classifier of variable-length sequences.
//!
//! Words of eight languages from Debian's word lists (`wamerican wngerman wfrench wspanish
//! witalian wdutch wportuguese wswedish`, files in `/usr/share/dict`), 20000 drawn per language
//! (seeded), the first 90% of each draw trains and the rest tests. Each word's UTF-8 characters
//! are embedded (32) and read by an LSTM(128) for the word's true length (the batch is padded to
//! its longest word; the lengths mask the rest); the output at the last valid character goes
//! through a dense layer to the 8 languages. Softmax cross-entropy, Adam (learning rate 0.001),
//! batch 64, 5 epochs reshuffled each epoch. `--bidirectional` reads each word both ways
//! (`Bidirectional`, the forward direction's last valid output beside the backward direction's
//! output at the first character, which has read the whole word).
//! `benches/word_language_torch.py` is the same model and the same words in PyTorch.
//!
//! ```text
//! sudo apt-get install wamerican wngerman wfrench wspanish witalian wdutch wportuguese wswedish
//! cargo run --release --example word_language
//! cargo run --release --example word_language -- --bidirectional
//! ```
//!
//! It prints the training loss per epoch with the time per step, then `test accuracy: X.XXXX`
//! and a confusion matrix with the languages' names, then a summary line.
//!
//! Expected with the defaults (seed 42), measured 2026-12-01 16:00 on the project's 2-core AMD
//! EPYC (Zen 5), quiet (load average 1.4-2.2): training loss 0.984 over the first epoch, 0.462
//! over the fifth; `test accuracy: 0.8281` (13249 of 16000; chance 0.125), Dutch the hardest
//! (75.5%) and Italian the easiest (89.3%); median 2.39 ms per training step (29 s for the 11250
//! steps, 31 s wall time). `--bidirectional`: 0.8214, median 5.23 ms per
//! step (66 s wall time). The README's "Text" section shows the confusion matrix.

#[path = "common/errors.rs"]
mod errors;
#[path = "common/text.rs"]
mod text;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use recurrent::data::{CharVocab, WordLanguages, DICT_DIR, WORDS_PER_LANGUAGE};
use recurrent::layers::{Bidirectional, Dense, Embedding, Returns, Rnn, Sequential};
use recurrent::optim::Adam;
use recurrent::train::{FitOptions, Trainer};
use recurrent::ParamStore;
use text::{AnyResult, LossUnit, Progress};

/// Train a character-level LSTM to tell the language of a word; print test accuracy and the
/// confusion matrix.
#[derive(Parser, Debug)]
struct Cli {
    /// The folder of the Debian word lists (if they are missing: sudo apt-get install wamerican
    /// wngerman wfrench wspanish witalian wdutch wportuguese wswedish).
    #[arg(long, default_value = DICT_DIR)]
    dict_dir: PathBuf,
    /// Words drawn from each language's list (90% train, 10% test).
    #[arg(long, default_value_t = WORDS_PER_LANGUAGE)]
    words_per_language: usize,
    /// Passes over the training words.
    #[arg(long, default_value_t = 5)]
    epochs: u64,
    /// Stop after this many steps (0: all epochs), for quick checks.
    #[arg(long, default_value_t = 0)]
    max_steps: u64,
    /// Words per training batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Width of the character embedding.
    #[arg(long, default_value_t = 32)]
    embedding: usize,
    /// Units of the LSTM (of each direction with --bidirectional).
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.001)]
    learning_rate: f64,
    /// Seeds the words drawn, the initial weights and the shuffling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Read each word in both directions.
    #[arg(long)]
    bidirectional: bool,
    /// Print a line every N steps (default: once per epoch).
    #[arg(long)]
    log_every: Option<u64>,
}

/// Words per evaluation batch.
const EVAL_BATCH: usize = 256;

fn main() -> ExitCode {
    text::report_errors(run(Cli::parse()))
}

/// Characters embedded -> LSTM (or a bidirectional LSTM) for each word's length -> the last
/// valid output -> dense to `classes`: ids `[batch, time]` with lengths to logits
/// `[batch, classes]`.
fn build_model(
    params: &mut ParamStore<f32>,
    vocab: usize,
    embedding: usize,
    hidden: usize,
    classes: usize,
    bidirectional: bool,
) -> recurrent::Result<Sequential<f32>> {
    let model = Sequential::new().push(Embedding::new(params, vocab, embedding)?);
    let (model, width) = if bidirectional {
        let birnn = Bidirectional::lstm(params, embedding, hidden)?.returns(Returns::LastOutput);
        (model.push(birnn), 2 * hidden)
    } else {
        let rnn = Rnn::lstm(params, embedding, hidden)?.returns(Returns::LastOutput);
        (model.push(rnn), hidden)
    };
    Ok(model.push(Dense::new(params, "dense", width, classes)?))
}

fn run(cli: Cli) -> AnyResult<()> {
    let start = Instant::now();
    // A missing list is an error naming its package and the apt-get command for all eight.
    let data = WordLanguages::load(&cli.dict_dir, cli.words_per_language, cli.seed)?;
    let vocab = CharVocab::from_chars(data.train.words.iter().flat_map(|w| w.chars()));
    let classes = data.languages.len();
    let mut train = data.train.to_dataset(&vocab, cli.batch_size, cli.seed)?;
    let test = data.test.to_dataset(&vocab, EVAL_BATCH, cli.seed)?;
    let per_epoch = train.batches_in_epoch() as u64;
    let steps = match cli.max_steps {
        0 => cli.epochs * per_epoch,
        n => n.min(cli.epochs * per_epoch),
    };
    println!("word_language");
    println!(
        "  words: {} training and {} test in {classes} languages ({}), {} per language drawn \
         with seed {}, from {}",
        data.train.len(),
        data.test.len(),
        data.languages.join(", "),
        cli.words_per_language,
        cli.seed,
        cli.dict_dir.display()
    );
    let mut params = ParamStore::<f32>::new(cli.seed);
    let model = build_model(
        &mut params,
        vocab.len(),
        cli.embedding,
        cli.hidden,
        classes,
        cli.bidirectional,
    )?;
    println!(
        "  model: {} characters embedded ({}) -> {}LSTM({}) for each word's length -> last valid \
         output -> dense {classes}; {} parameters",
        vocab.len(),
        cli.embedding,
        if cli.bidirectional {
            "bidirectional "
        } else {
            ""
        },
        cli.hidden,
        params.num_params()
    );
    println!(
        "  training: {steps} steps ({} epochs of {per_epoch} batches of {}), Adam lr {}, seed {}",
        cli.epochs, cli.batch_size, cli.learning_rate, cli.seed
    );
    let mut trainer = Trainer::new(model, params, Adam::new(cli.learning_rate)?).seed(cli.seed);
    let mut progress = Progress::new(
        steps,
        0,
        cli.log_every.unwrap_or(per_epoch),
        LossUnit::NatsAndAccuracy,
    )?;
    let train_start = Instant::now();
    trainer.fit(
        &mut train,
        &FitOptions::until_step(steps),
        None,
        &mut progress,
    )?;
    progress.finish();
    let train_secs = train_start.elapsed().as_secs_f64();

    // Test: every word once, in order; the confusion matrix from the predicted classes.
    let t = Instant::now();
    let mut confusion = vec![vec![0usize; classes]; classes];
    for batch in test.batches(EVAL_BATCH)? {
        let labels = batch.labels.clone();
        let mb = batch.into_minibatch::<f32>();
        let logits = trainer.predict(&mb.inputs, mb.lengths.as_deref())?;
        let predicted = recurrent::tensor::argmax(&logits)?; // [batch], ties to the first
        for (&guess, &truth) in predicted.iter().zip(&labels) {
            confusion[truth][guess] += 1;
        }
    }
    let correct: usize = (0..classes).map(|k| confusion[k][k]).sum();
    let total: usize = confusion.iter().flatten().sum();
    let accuracy = correct as f64 / total as f64;
    println!(
        "test accuracy: {accuracy:.4}  ({correct} of {total}; chance {:.4}; {:.1} s)",
        1.0 / classes as f64,
        t.elapsed().as_secs_f64()
    );
    print_confusion(&data.languages, &confusion);

    let (median, mean) = progress.ms_per_step(5);
    let final_loss = progress.losses.last().copied().unwrap_or(f64::NAN);
    println!(
        "summary: {} steps in {train_secs:.1} s, median {median:.2} ms per training step (mean \
         {mean:.2}, after 5 warm-up steps), last training loss {final_loss:.4}, test accuracy \
         {accuracy:.4}, wall time {:.1} s",
        progress.step_times.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Rows: the true language; columns: the predicted one (names shortened to 7 characters).
fn print_confusion(languages: &[String], confusion: &[Vec<usize>]) {
    let short: Vec<String> = languages
        .iter()
        .map(|l| l.chars().take(7).collect())
        .collect();
    println!("confusion (rows: true language, columns: predicted)");
    let header: String = short.iter().map(|n| format!("{n:>8}")).collect();
    println!("{:11}{header}", "");
    for (name, row) in short.iter().zip(confusion) {
        let cells: String = row.iter().map(|v| format!("{v:8}")).collect();
        println!("{name:>11}{cells}");
    }
}
