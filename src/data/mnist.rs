//! MNIST the way TensorFlow 1.x's `input_data.read_data_sets` serves it.
//!
//! The 60000 training images are split into the first `validation_size` (5000 by default) for
//! [`Mnist::validation`] and the rest (55000) for [`Mnist::train`]; the 10000 test images are
//! [`Mnist::test`]. Pixels stay compact as bytes and become floats in `[0, 1]` (divided by 255)
//! one [`Batch`] at a time. [`DataSet::next_batch`] follows TensorFlow's shuffling exactly: shuffle
//! before the first batch, reshuffle at every epoch end, and a batch that crosses the end of an
//! epoch is the rest of the old epoch followed by the start of the new one.

use std::ops::Range;
use std::path::Path;

use ndarray::{Array2, Array3, ArrayD, ArrayView1, Axis, IxDyn};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::batch::{Minibatch, Targets, TrainSource};
use super::download::locate;
use super::idx::{read_idx, IdxArray};
use super::position::{check_order, DataPosition, Resumable, RngPosition, ShuffleRng};
use crate::error::{Error, Result};
use crate::scalar::Scalar;

pub use super::download::{
    ensure_files_from, ensure_mnist, ensure_mnist_from, file_sha256, resolve_data_dir, MnistFile,
    DEFAULT_DATA_DIR, MNIST_FILES, MNIST_MIRRORS,
};

/// Image height in pixels; also the number of time steps when an image is read row by row.
pub const IMAGE_ROWS: usize = 28;
/// Image width in pixels; also the input size per time step when read row by row.
pub const IMAGE_COLS: usize = 28;
/// Pixels per image (`28 * 28 = 784`).
pub const IMAGE_PIXELS: usize = IMAGE_ROWS * IMAGE_COLS;
/// Number of classes (the digits 0 to 9).
pub const NUM_CLASSES: usize = 10;
/// TensorFlow's default number of training images set aside for validation.
pub const DEFAULT_VALIDATION_SIZE: usize = 5000;

/// The three MNIST splits, as `read_data_sets` returns them.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// Training images after the validation ones (55000 by default).
    pub train: DataSet,
    /// The first `validation_size` training images (5000 by default).
    pub validation: DataSet,
    /// The 10000 test images.
    pub test: DataSet,
}

impl Mnist {
    /// Loads MNIST from `dir` with TensorFlow's default 5000 validation images.
    ///
    /// `dir` must hold the four files of [`MNIST_FILES`] (gzip-compressed, or decompressed without
    /// the `.gz`); this never downloads: call [`ensure_mnist`] first for that. Every split's
    /// shuffling is seeded with `seed`, as `read_data_sets(seed=seed)` does.
    ///
    /// # Errors
    /// [`Error::Io`] if a file is missing or unreadable; [`Error::Format`] if a file is corrupt, the
    /// images are not 28x28, or image and label counts differ.
    pub fn load(dir: &Path, seed: u64) -> Result<Mnist> {
        Mnist::load_with_validation(dir, DEFAULT_VALIDATION_SIZE, seed)
    }

    /// Loads MNIST from `dir`, setting aside the first `validation_size` training images for
    /// validation (TensorFlow's `validation_size`; 0 gives an empty validation set).
    ///
    /// # Errors
    /// As [`Mnist::load`], and [`Error::InvalidArgument`] if `validation_size` exceeds the number
    /// of training images.
    pub fn load_with_validation(dir: &Path, validation_size: usize, seed: u64) -> Result<Mnist> {
        let [train_images, train_labels, test_images, test_labels] = MNIST_FILES;
        let (mut images, mut labels) = read_split(dir, &train_images, &train_labels)?;
        let n = labels.len();
        if validation_size > n {
            return Err(Error::invalid(format!(
                "validation_size must be at most the {n} training images, got {validation_size}"
            )));
        }
        let train_pixels = images.split_off(validation_size * IMAGE_PIXELS);
        let train_labels = labels.split_off(validation_size);
        let validation = DataSet::new(to_matrix(images, validation_size)?, labels, seed)?;
        let train = DataSet::new(
            to_matrix(train_pixels, n - validation_size)?,
            train_labels,
            seed,
        )?;
        let (images, labels) = read_split(dir, &test_images, &test_labels)?;
        let n = labels.len();
        let test = DataSet::new(to_matrix(images, n)?, labels, seed)?;
        Ok(Mnist {
            train,
            validation,
            test,
        })
    }
}

fn to_matrix(pixels: Vec<u8>, n: usize) -> Result<Array2<u8>> {
    Array2::from_shape_vec((n, IMAGE_PIXELS), pixels)
        .map_err(|e| Error::Format(format!("MNIST images do not form [{n}, 784]: {e}")))
}

/// Reads one image file and its label file, checking shapes and counts.
fn read_split(dir: &Path, images: &MnistFile, labels: &MnistFile) -> Result<(Vec<u8>, Vec<u8>)> {
    let image_path = locate(dir, images.name)?;
    let label_path = locate(dir, labels.name)?;
    let IdxArray { dims, data } = read_idx(&image_path)?;
    if dims.len() != 3 || dims[1] != IMAGE_ROWS || dims[2] != IMAGE_COLS {
        return Err(Error::Format(format!(
            "{}: expected images of shape [n, 28, 28], got {dims:?}",
            image_path.display()
        )));
    }
    let n_images = dims[0];
    let IdxArray { dims, data: labels } = read_idx(&label_path)?;
    if dims.len() != 1 {
        return Err(Error::Format(format!(
            "{}: expected labels of shape [n], got {dims:?}",
            label_path.display()
        )));
    }
    if dims[0] != n_images {
        return Err(Error::Format(format!(
            "{} holds {n_images} images but {} holds {} labels",
            image_path.display(),
            label_path.display(),
            dims[0]
        )));
    }
    Ok((data, labels))
}

/// One split of MNIST: images as bytes `[n, 784]`, labels `0..10`, and the state of
/// [`next_batch`](DataSet::next_batch) (TensorFlow's `DataSet`).
#[derive(Debug, Clone)]
pub struct DataSet {
    images: Array2<u8>,
    labels: Vec<u8>,
    /// The current epoch's order: position `i` of the epoch is example `order[i]`.
    order: Vec<usize>,
    index_in_epoch: usize,
    epochs_completed: usize,
    rng: ShuffleRng,
}

impl DataSet {
    /// A data set from images `[n, 784]` (bytes, 0 = background) and `n` labels in `0..10`;
    /// `seed` seeds the shuffling of [`next_batch`](DataSet::next_batch).
    ///
    /// # Errors
    /// [`Error::Shape`] if `images` does not have 784 columns or its row count differs from the
    /// number of labels; [`Error::InvalidArgument`] if a label is 10 or more.
    pub fn new(images: Array2<u8>, labels: Vec<u8>, seed: u64) -> Result<DataSet> {
        let (n, d) = images.dim();
        if d != IMAGE_PIXELS || n != labels.len() {
            return Err(Error::shape(
                "DataSet::new",
                format!("images [{}, {IMAGE_PIXELS}]", labels.len()),
                &[n, d],
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= NUM_CLASSES)
        {
            return Err(Error::invalid(format!(
                "label {l} of example {i} is not a digit 0..{NUM_CLASSES}"
            )));
        }
        Ok(DataSet {
            images,
            labels,
            order: (0..n).collect(),
            index_in_epoch: 0,
            epochs_completed: 0,
            rng: ShuffleRng::seed_from_u64(seed),
        })
    }

    /// The number of examples.
    pub fn num_examples(&self) -> usize {
        self.labels.len()
    }

    /// All images `[n, 784]` as bytes, in file order (not the shuffled order of
    /// [`next_batch`](DataSet::next_batch)).
    pub fn images(&self) -> &Array2<u8> {
        &self.images
    }

    /// All labels, in file order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// How many full passes [`next_batch`](DataSet::next_batch) has finished (TensorFlow's
    /// `epochs_completed`): it grows when a batch needs examples past the end of an epoch.
    pub fn epochs_completed(&self) -> usize {
        self.epochs_completed
    }

    /// The position of the next example within the current epoch.
    pub fn index_in_epoch(&self) -> usize {
        self.index_in_epoch
    }

    /// The next `batch_size` examples in shuffled order, exactly as TensorFlow's
    /// `DataSet.next_batch(batch_size)`:
    ///
    /// - before the first batch the examples are shuffled;
    /// - when `index_in_epoch + batch_size` passes the end, `epochs_completed` grows, the order is
    ///   reshuffled and the batch is the rest of the old epoch followed by the start of the new one.
    ///
    /// Each epoch therefore shows every example exactly once. A `batch_size` larger than the set
    /// continues across as many epochs as needed (TensorFlow would return a short batch there).
    ///
    /// # Panics
    /// Where [`try_next_batch`](DataSet::try_next_batch) returns an error: if the set is empty
    /// and `batch_size > 0`, or if the batch cannot be allocated.
    pub fn next_batch<T: Scalar>(&mut self, batch_size: usize) -> Batch<T> {
        self.try_next_batch(batch_size)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`next_batch`](DataSet::next_batch), with its failures as errors.
    ///
    /// # Errors
    /// As [`next_indices`](DataSet::next_indices), and [`Error::Shape`] if the `[batch_size,
    /// 784]` images cannot be allocated (checked before the state advances).
    pub fn try_next_batch<T: Scalar>(&mut self, batch_size: usize) -> Result<Batch<T>> {
        // The image buffer first, so that a batch too large to hold leaves the state as it was.
        let images = crate::tensor::try_full(
            "DataSet::next_batch",
            &[batch_size, IMAGE_PIXELS],
            T::zero(),
        )?;
        let indices = self.next_indices(batch_size)?;
        Ok(self.gather_into(&indices, images))
    }

    /// The example indices (into [`images`](DataSet::images)) of the next batch, advancing the
    /// state as [`next_batch`](DataSet::next_batch) does.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the set is empty and `batch_size > 0`; [`Error::Shape`] if
    /// `batch_size` indices cannot be allocated. The state is then unchanged.
    pub fn next_indices(&mut self, batch_size: usize) -> Result<Vec<usize>> {
        let n = self.num_examples();
        if n == 0 && batch_size > 0 {
            return Err(Error::invalid(format!(
                "DataSet::next_batch({batch_size}) on an empty data set"
            )));
        }
        let mut indices = crate::tensor::try_vec("DataSet::next_indices", &[batch_size])?;
        if self.epochs_completed == 0 && self.index_in_epoch == 0 {
            self.order.shuffle(&mut self.rng);
        }
        let mut remaining = batch_size;
        loop {
            let take = remaining.min(n - self.index_in_epoch);
            let start = self.index_in_epoch;
            indices.extend_from_slice(&self.order[start..start + take]);
            self.index_in_epoch += take;
            remaining -= take;
            if remaining == 0 {
                return Ok(indices);
            }
            // The batch needs examples past the end: finish the epoch and start a new one.
            self.epochs_completed += 1;
            self.order.shuffle(&mut self.rng);
            self.index_in_epoch = 0;
        }
    }

    /// The examples `range` (file order) as one batch, for evaluation.
    ///
    /// # Panics
    /// If `range` goes past [`num_examples`](DataSet::num_examples) or is decreasing.
    pub fn as_batch<T: Scalar>(&self, range: Range<usize>) -> Batch<T> {
        assert!(
            range.start <= range.end && range.end <= self.num_examples(),
            "as_batch({range:?}) on a data set of {} examples",
            self.num_examples()
        );
        let indices: Vec<usize> = range.collect();
        self.gather(&indices)
    }

    /// The whole set in file order as batches of `batch_size` (the last one may be smaller), for
    /// evaluation; does not touch the [`next_batch`](DataSet::next_batch) state.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn batches<T: Scalar>(&self, batch_size: usize) -> Batches<'_, T> {
        assert!(
            batch_size > 0,
            "batches(0): the batch size must be positive"
        );
        Batches {
            set: self,
            batch_size,
            next: 0,
            _scalar: std::marker::PhantomData,
        }
    }

    /// The examples `indices` as a batch of floats in `[0, 1]`.
    fn gather<T: Scalar>(&self, indices: &[usize]) -> Batch<T> {
        self.gather_into(
            indices,
            ArrayD::zeros(IxDyn(&[indices.len(), IMAGE_PIXELS])),
        )
    }

    /// [`gather`](DataSet::gather) into a zeroed `[indices.len(), 784]` buffer.
    fn gather_into<T: Scalar>(&self, indices: &[usize], images: ArrayD<T>) -> Batch<T> {
        // Every byte maps to one of 256 floats: look them up instead of dividing per pixel.
        let lut: Vec<T> = (0..=255u8)
            .map(|b| T::from_f64_lossy(f64::from(b) / 255.0))
            .collect();
        let mut images = images
            .into_dimensionality::<ndarray::Ix2>()
            .expect("[n, 784]");
        for (mut row, &i) in images.axis_iter_mut(Axis(0)).zip(indices) {
            let src: ArrayView1<u8> = self.images.row(i);
            row.zip_mut_with(&src, |x, &b| *x = lut[usize::from(b)]);
        }
        let labels = indices
            .iter()
            .map(|&i| usize::from(self.labels[i]))
            .collect();
        Batch { images, labels }
    }
}

/// A [`DataSet`] as a [`TrainSource`] of images read row by row: inputs `[batch, 28, 28]`
/// (28 time steps of 28 pixels), [`Targets::Classes`] the digits, batches from
/// [`DataSet::next_batch`] (shuffled, reshuffled every epoch, resumable).
#[derive(Debug, Clone)]
pub struct RowSequences {
    set: DataSet,
    batch_size: usize,
}

impl DataSet {
    /// This set as training batches of `batch_size` images read row by row.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `batch_size` is 0 or the set is empty.
    pub fn row_sequences(self, batch_size: usize) -> Result<RowSequences> {
        if batch_size == 0 || self.num_examples() == 0 {
            return Err(Error::invalid(format!(
                "row_sequences: batches of {batch_size} from a set of {} examples",
                self.num_examples()
            )));
        }
        Ok(RowSequences {
            set: self,
            batch_size,
        })
    }

    /// The first `limit` examples (all if `None`) in file order as evaluation batches of
    /// `batch_size` images read row by row (the last batch may be smaller).
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn row_sequence_batches<T: Scalar>(
        &self,
        batch_size: usize,
        limit: Option<usize>,
    ) -> impl Iterator<Item = Minibatch<T>> + '_ {
        assert!(batch_size > 0, "row_sequence_batches(0)");
        let n = limit.map_or(self.num_examples(), |l| l.min(self.num_examples()));
        (0..n).step_by(batch_size).map(move |start| {
            self.as_batch::<T>(start..(start + batch_size).min(n))
                .into_minibatch()
        })
    }
}

impl RowSequences {
    /// The underlying data set.
    pub fn data_set(&self) -> &DataSet {
        &self.set
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

impl<T: Scalar> TrainSource<T> for RowSequences {
    fn next_batch(&mut self) -> Result<Minibatch<T>> {
        Ok(self.set.next_batch::<T>(self.batch_size).into_minibatch())
    }

    fn batches_per_epoch(&self) -> Option<usize> {
        Some(self.set.num_examples().div_ceil(self.batch_size))
    }
}

impl Resumable for RowSequences {
    fn position(&self) -> DataPosition {
        self.set.position()
    }

    fn restore(&mut self, position: &DataPosition) -> Result<()> {
        self.set.restore(position)
    }
}

impl Resumable for DataSet {
    /// Counters `[epochs_completed, index_in_epoch]`, the epoch's order and the generator.
    fn position(&self) -> DataPosition {
        DataPosition {
            counters: vec![self.epochs_completed as u64, self.index_in_epoch as u64],
            order: self.order.iter().map(|&i| i as u64).collect(),
            rng: RngPosition::of(&self.rng),
        }
    }

    fn restore(&mut self, position: &DataPosition) -> Result<()> {
        let n = self.num_examples();
        let [epochs, index] = position.counters[..] else {
            return Err(Error::invalid(format!(
                "DataSet::restore: {} counters, expected 2 (epochs, index in epoch)",
                position.counters.len()
            )));
        };
        let index = usize::try_from(index)
            .ok()
            .filter(|&i| i <= n)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "DataSet::restore: index in epoch {index} past the {n} examples"
                ))
            })?;
        let epochs = usize::try_from(epochs)
            .map_err(|_| Error::invalid("DataSet::restore: epoch count too large"))?;
        self.order = check_order("DataSet::restore", &position.order, n)?;
        self.epochs_completed = epochs;
        self.index_in_epoch = index;
        self.rng = position.rng.to_rng();
        Ok(())
    }
}

/// The batches of [`DataSet::batches`], in file order.
#[derive(Debug, Clone)]
pub struct Batches<'a, T> {
    set: &'a DataSet,
    batch_size: usize,
    next: usize,
    _scalar: std::marker::PhantomData<T>,
}

impl<T: Scalar> Iterator for Batches<'_, T> {
    type Item = Batch<T>;

    fn next(&mut self) -> Option<Batch<T>> {
        let n = self.set.num_examples();
        if self.next >= n {
            return None;
        }
        let end = (self.next + self.batch_size).min(n);
        let batch = self.set.as_batch(self.next..end);
        self.next = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.set.num_examples() - self.next;
        let k = left.div_ceil(self.batch_size);
        (k, Some(k))
    }
}

impl<T: Scalar> ExactSizeIterator for Batches<'_, T> {}

/// A batch of examples as floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    /// Images `[n, 784]`, row-major 28x28 pixels scaled to `[0, 1]` (byte / 255).
    pub images: Array2<T>,
    /// The digit of each image, `0..10`.
    pub labels: Vec<usize>,
}

impl<T: Scalar> Batch<T> {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if the batch has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels one-hot encoded, `[n, 10]` (TensorFlow's `one_hot=True`).
    ///
    /// # Panics
    /// If a label is 10 or more (impossible for batches from a [`DataSet`]).
    pub fn one_hot(&self) -> Array2<T> {
        crate::tensor::one_hot(&self.labels, NUM_CLASSES).expect("batch labels are digits 0..10")
    }

    /// The batch as a [`Minibatch`]: images read row by row (`[n, 28, 28]`), the digits as
    /// [`Targets::Classes`].
    pub fn into_minibatch(self) -> Minibatch<T> {
        Minibatch {
            inputs: self.images_as_sequences().into_dyn(),
            lengths: None,
            targets: Targets::Classes(self.labels),
        }
    }

    /// The images as sequences for a recurrent network, `[n, 28, 28]` (batch-major): time step
    /// `r` of example `i` is row `r` of image `i`, 28 pixels.
    ///
    /// # Panics
    /// If `images` does not have 784 columns (impossible for batches from a [`DataSet`]).
    pub fn images_as_sequences(&self) -> Array3<T> {
        let n = self.images.nrows();
        assert_eq!(
            self.images.ncols(),
            IMAGE_PIXELS,
            "images_as_sequences needs [n, 784] images"
        );
        self.images
            .to_shape((n, IMAGE_ROWS, IMAGE_COLS))
            .expect("[n, 784] reshapes to [n, 28, 28]")
            .into_owned()
    }
}
