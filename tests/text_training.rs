//! Short training runs on the real text data, as CI runs them: the `char_rnn` example's kind of
//! model on Shakespeare's plays and the `word_language` example's model on the Debian word
//! lists, each trained briefly and required to beat a bound an untrained model cannot reach.
//!
//! The text comes from `TEXT_DIR` (default: `../shared/text` beside the crate). The word lists
//! are in `/usr/share/dict` (`.ci/run` installs them). Without the data a test fails on CI (`CI`
//! set and not "false") and is skipped with a message elsewhere, as `tests/mnist_training.rs`
//! does for MNIST.

use std::path::{Path, PathBuf};

use recurrent::cell::{BasicLstmCell, MultiCell};
use recurrent::data::{
    apt_get_command, read_text, split_train_validation, CharVocab, LmBatcher, WordLanguages,
    DICT_DIR, TRAIN_FRACTION, WORD_LISTS,
};
use recurrent::layers::{Dense, Embedding, Returns, Rnn, Sequential};
use recurrent::optim::Adam;
use recurrent::train::{FitOptions, Trainer};
use recurrent::ParamStore;

const TEXT_FILE: &str = "shakespeare_plays.txt.gz";

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// The Shakespeare file, or `None` (after saying why) when the test should be skipped.
///
/// # Panics
/// On CI, if the file is not there.
fn text_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("TEXT_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/text"),
    };
    let file = dir.join(TEXT_FILE);
    if file.is_file() {
        return Some(file);
    }
    let problem = format!("{} is missing", file.display());
    assert!(
        !on_ci(),
        "{problem}: on CI the text training test needs {TEXT_FILE} in TEXT_DIR (default \
         ../shared/text)"
    );
    eprintln!("skipping the char-level training test: {problem} (set TEXT_DIR to run it)");
    None
}

/// A small char_rnn: embedding 16 -> one LSTM(128) (under `rnn/multi_rnn_cell/cell_0`, as the
/// example's stack) -> dense to the vocabulary at every step, trained 400 steps of 16 streams x
/// 32 characters with the state carried, Adam 0.02, clipped to norm 5. Validated on the first
/// 40000 validation characters (the whole 10% takes longer than a CI test should).
///
/// An untrained model predicts about uniformly: log2(85) = 6.41 bits per character (asserted
/// below); predicting each character by its training frequency alone (no context) gives 4.85 on
/// these 40000 characters, and short runs at a lower rate sit on that plateau (4.7 after 120
/// steps at 0.01). Measured here (seed 7, AMD EPYC Zen 5, 2 busy cores, release, 2026-12-01):
/// 3.04 bits per character after 400 steps, in 5-10 s (3.15 after 300, 2.99 after 500).
/// The bound, 3.6, needs the model to have learnt context.
#[test]
fn char_model_learns_shakespeare_in_a_short_run() {
    let Some(path) = text_file() else { return };
    let text = read_text(&path).unwrap();
    let vocab = CharVocab::from_text(&text);
    let ids = vocab.encode(&text);
    let (train_ids, valid_ids) = split_train_validation(&ids, TRAIN_FRACTION).unwrap();
    let (batch, num_steps, steps) = (16, 32, 400);
    let mut train = LmBatcher::new(train_ids, batch, num_steps).unwrap();
    let valid = LmBatcher::new(&valid_ids[..40_000], batch, num_steps).unwrap();

    let mut params = ParamStore::<f32>::new(7);
    let embedding = Embedding::new(&mut params, vocab.len(), 16).unwrap();
    let rnn = Rnn::build(&mut params, |params, scope| {
        let cell = BasicLstmCell::new(
            params,
            scope.sub("multi_rnn_cell/cell_0/basic_lstm_cell"),
            16,
            128,
        )?;
        MultiCell::new(vec![cell])
    })
    .unwrap();
    let dense = Dense::new(&mut params, "dense", 128, vocab.len()).unwrap();
    let model = Sequential::new().push(embedding).push(rnn).push(dense);
    let mut trainer = Trainer::new(model, params, Adam::new(0.02).unwrap())
        .seed(7)
        .clip_by_global_norm(5.0)
        .unwrap()
        .carry_state(true);

    let untrained = trainer.evaluate(valid.evaluation_minibatches()).unwrap();
    let t = std::time::Instant::now();
    trainer
        .fit(&mut train, &FitOptions::until_step(steps), None, &mut ())
        .unwrap();
    let trained = trainer.evaluate(valid.evaluation_minibatches()).unwrap();
    let (before, after) = (
        untrained.loss / std::f64::consts::LN_2,
        trained.loss / std::f64::consts::LN_2,
    );
    eprintln!(
        "char model: validation {before:.3} -> {after:.3} bits per character after {steps} \
         steps ({:.1} s, {} characters)",
        t.elapsed().as_secs_f64(),
        trained.count
    );
    assert!(
        (before - (vocab.len() as f64).log2()).abs() < 0.1,
        "untrained: {before}"
    );
    assert!(after < 3.6, "validation bits per character {after:.3}");
}

/// The word_language model, smaller and shorter: 2000 words per language, characters embedded
/// (16) -> LSTM(64) for each word's length -> last valid output -> dense 8, one epoch of
/// batches of 64 (225 steps), Adam 0.005.
///
/// Chance is 1/8 = 12.5%. Measured here (seed 3, AMD EPYC Zen 5, 2 busy cores, release,
/// 2026-12-01): 0.6075 test accuracy (972 of 1600) in about 1.5 s of training. The bound, 0.40,
/// is more than three times chance.
#[test]
fn word_language_model_beats_chance_in_a_short_run() {
    let dir = Path::new(DICT_DIR);
    let missing: Vec<&str> = WORD_LISTS
        .iter()
        .filter(|l| !dir.join(l.file).exists())
        .map(|l| l.package)
        .collect();
    if !missing.is_empty() {
        assert!(
            !on_ci(),
            "on CI the word lists must be installed (.ci/run does it): {missing:?}"
        );
        eprintln!(
            "skipping the word-language training test: {missing:?} not installed ({})",
            apt_get_command()
        );
        return;
    }
    let data = WordLanguages::load(dir, 2000, 3).unwrap();
    let vocab = CharVocab::from_chars(data.train.words.iter().flat_map(|w| w.chars()));
    let mut train = data.train.to_dataset(&vocab, 64, 3).unwrap();
    let test = data.test.to_dataset(&vocab, 256, 3).unwrap();
    let units = 64;
    let mut params = ParamStore::<f32>::new(3);
    let model = Sequential::new()
        .push(Embedding::new(&mut params, vocab.len(), 16).unwrap())
        .push(
            Rnn::lstm(&mut params, 16, units)
                .unwrap()
                .returns(Returns::LastOutput),
        )
        .push(Dense::new(&mut params, "dense", units, 8).unwrap());
    let mut trainer = Trainer::new(model, params, Adam::new(0.005).unwrap()).seed(3);
    let steps = train.batches_in_epoch() as u64;
    let t = std::time::Instant::now();
    trainer
        .fit(&mut train, &FitOptions::until_step(steps), None, &mut ())
        .unwrap();
    let batches = test.batches(256).unwrap().map(|b| Ok(b.into_minibatch()));
    let metrics = trainer.evaluate(batches).unwrap();
    eprintln!(
        "word-language model: test accuracy {:.4} on {} words after {steps} steps ({:.1} s)",
        metrics.accuracy,
        metrics.count,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(metrics.count, 8 * 200);
    assert!(
        metrics.accuracy > 0.40,
        "test accuracy {}",
        metrics.accuracy
    );
}
