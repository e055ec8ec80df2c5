//! Data sets: the IDX file format and MNIST as TensorFlow 1.x's `read_data_sets` serves it.
//!
//! - [`batch`]: the [`Minibatch`] a trainer consumes and its [`Targets`]; [`TrainSource`] is an
//!   endless, resumable supply of them.
//! - [`position`]: [`Resumable`] sources report and restore their [`DataPosition`], so a
//!   resumed training run sees the same batches as an uninterrupted one.
//! - [`idx`]: read and write IDX files (plain or gzip), validated, never panicking on bad bytes.
//! - [`mnist`]: [`Mnist`] with its `train` / `validation` / `test` [`DataSet`]s, seeded shuffled
//!   [`DataSet::next_batch`], in-order [`DataSet::batches`] for evaluation, and
//!   [`ensure_mnist`] to find or (with the default `download` feature) download the files.
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
pub mod mnist;
pub mod position;

pub use batch::{FixedBatches, Minibatch, Targets, TrainSource};
pub use idx::{
    encode_idx, parse_idx, parse_idx_with_limit, read_idx, read_idx_with_limit, write_idx,
    IdxArray, DEFAULT_MAX_IDX_BYTES,
};
pub use mnist::{
    ensure_files_from, ensure_mnist, ensure_mnist_from, file_sha256, resolve_data_dir, Batch,
    Batches, DataSet, Mnist, MnistFile, RowSequences, DEFAULT_DATA_DIR, DEFAULT_VALIDATION_SIZE,
    IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS, MNIST_FILES, MNIST_MIRRORS, NUM_CLASSES,
};
pub use position::{DataPosition, Resumable, RngPosition, ShuffleRng};
