//! Data sets: the IDX file format, MNIST as TensorFlow 1.x's `read_data_sets` serves it, and
//! text and variable-length sequences.
//!
//! - [`batch`]: the [`Minibatch`] a trainer consumes and its [`Targets`]; [`TrainSource`] is an
//!   endless, resumable supply of them.
//! - [`position`]: [`Resumable`] sources report and restore their [`DataPosition`], so a
//!   resumed training run sees the same batches as an uninterrupted one.
//! - [`idx`]: read and write IDX files (plain or gzip), validated, never panicking on bad bytes.
//! - [`mnist`]: [`Mnist`] with its `train` / `validation` / `test` [`DataSet`]s, seeded shuffled
//!   [`DataSet::next_batch`], in-order [`DataSet::batches`] for evaluation, and
//!   [`ensure_mnist`] to find or (with the default `download` feature) download the files.
//! - [`text`]: [`read_text`] (UTF-8, plain or gzip; malformed bytes are an error naming the
//!   file and offset) and [`split_train_validation`] (first 90% train, last 10% validate).
//! - [`vocab`]: [`CharVocab`], characters to ids with padding (0) and unknown (1), saved as
//!   one line of text beside a model.
//! - [`sequence`]: [`SequenceDataSet`] of labelled variable-length sequences (token ids or
//!   feature vectors): seeded shuffled batches padded to their longest member with the lengths,
//!   optional [`Bucketing`] by length, in-order batches for evaluation.
//! - [`language_model`]: [`LmBatcher`], TensorFlow's PTB batching for truncated
//!   backpropagation through time (parallel streams, consecutive batches continue them).
//! - [`wordlists`]: [`WordLanguages`], words labelled by language from Debian's word lists.
//!
//! # Example
//!
//! ```no_run
//! use recurrent::data::{ensure_mnist, resolve_data_dir, Mnist};
//!
//! # fn main() -> recurrent::Result<()> {
//! let dir = resolve_data_dir(None); // `MNIST_DIR`, else `data/mnist`
//! ensure_mnist(&dir)?; // downloads and verifies missing files
//! let mut mnist = Mnist::load(&dir, 42)?;
//! assert_eq!(mnist.train.num_examples(), 55_000);
//!
//! // Training: shuffled batches, reshuffled each epoch.
//! let batch = mnist.train.next_batch::<f32>(128);
//! let x = batch.images_as_sequences(); // [128, 28, 28]: 28 time steps of 28 pixels
//! let y = batch.one_hot(); // [128, 10]
//! assert_eq!((x.dim(), y.dim()), ((128, 28, 28), (128, 10)));
//!
//! // Evaluation: the whole test set in order.
//! let mut seen = 0;
//! for batch in mnist.test.batches::<f32>(1000) {
//!     seen += batch.len();
//! }
//! assert_eq!(seen, 10_000);
//! # Ok(())
//! # }
//! ```

pub mod batch;
mod download;
pub mod idx;
pub mod language_model;
pub mod mnist;
pub mod position;
pub mod sequence;
pub mod text;
pub mod vocab;
pub mod wordlists;

pub use batch::{FixedBatches, Minibatch, Targets, TrainSource};
pub use idx::{
    encode_idx, parse_idx, parse_idx_with_limit, read_idx, read_idx_with_limit, write_idx,
    IdxArray, DEFAULT_MAX_IDX_BYTES,
};
pub use language_model::{LmBatch, LmBatcher};
pub use mnist::{
    ensure_files_from, ensure_mnist, ensure_mnist_from, file_sha256, resolve_data_dir, Batch,
    Batches, DataSet, Mnist, MnistFile, RowSequences, DEFAULT_DATA_DIR, DEFAULT_VALIDATION_SIZE,
    IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS, MNIST_FILES, MNIST_MIRRORS, NUM_CLASSES,
};
pub use position::{DataPosition, Resumable, RngPosition, ShuffleRng};
pub use sequence::{Bucketing, Sequence, SequenceBatch, SequenceBatches, SequenceDataSet};
pub use text::{
    decode_text, read_text, read_text_with_encoding, split_train_validation, TextEncoding,
    TRAIN_FRACTION,
};
pub use vocab::CharVocab;
pub use wordlists::{
    apt_get_command, clean_words, read_word_list, select_words, word_key, LabelledWords,
    WordLanguages, WordList, DICT_DIR, WORDS_PER_LANGUAGE, WORD_LISTS,
};
