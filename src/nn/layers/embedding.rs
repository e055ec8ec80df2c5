//! [`Embedding`]: token ids to vectors.

use ndarray::ArrayD;

use super::{layer_shape_error, Context, Layer};
use crate::init::Initializer;
use crate::params::{ParamId, ParamStore};
use crate::{Error, Result, Scalar, Tape, Var};

/// Token ids to dense vectors (`tf.keras.layers.Embedding(vocab, dim)`,
/// `tf.nn.embedding_lookup`): row `id` of a `[vocab, dim]` table for every id.
///
/// The ids arrive as a tensor of the model's element type holding whole numbers (as Keras
/// feeds them), so an embedding is the first layer of a [`Sequential`](super::Sequential) like
/// any other: build the input with [`Embedding::ids`]. An id that is negative, fractional or not
/// below `vocab` is an error naming the layer. The gradient touches only the rows used.
///
/// # Shapes
/// Ids `[d0, ..., dk]` (`[batch, time]` for sequences) give `[d0, ..., dk, dim]`.
///
/// # Parameters
/// `{scope}/embeddings` `[vocab, dim]`, uniform in `[-0.05, 0.05)` (Keras's default), in a
/// scope unique in the store (`embedding`, `embedding_1`, ...).
///
/// ```
/// use ndarray::array;
/// use recurrent::layers::{Embedding, Layer};
/// use recurrent::{ParamStore, Tape};
///
/// let mut params = ParamStore::<f32>::new(0);
/// let embedding = Embedding::new(&mut params, 10, 4)?;
/// assert_eq!(params.name(embedding.table()), "embedding/embeddings");
/// let tape = Tape::inference(&params);
/// let ids = Embedding::ids(&tape, &array![[1, 2, 3], [4, 0, 0]].into_dyn());
/// let vectors = embedding.apply(&tape, ids)?;
/// assert_eq!(tape.shape(vectors), vec![2, 3, 4]);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Embedding {
    name: String,
    table: ParamId,
    vocab: usize,
    dim: usize,
}

impl Embedding {
    /// A table of `vocab` vectors of `dim`, uniform in `[-0.05, 0.05)`.
    pub fn new<T: Scalar>(params: &mut ParamStore<T>, vocab: usize, dim: usize) -> Result<Self> {
        let init = Initializer::RandomUniform {
            min: -0.05,
            max: 0.05,
        };
        Self::with_init(params, vocab, dim, init)
    }

    /// A table drawn from `init`.
    pub fn with_init<T: Scalar>(
        params: &mut ParamStore<T>,
        vocab: usize,
        dim: usize,
        init: Initializer,
    ) -> Result<Self> {
        if vocab == 0 || dim == 0 {
            return Err(Error::invalid(format!(
                "Embedding sizes must be positive, got vocab {vocab}, dim {dim}"
            )));
        }
        // Ids travel as whole numbers of the element type: every id must be exact in it
        // (f32 holds whole numbers exactly up to 2^24).
        let last = (vocab - 1) as f64;
        if T::from_f64_lossy(last).to_f64_lossless() != last {
            return Err(Error::invalid(format!(
                "Embedding: a vocabulary of {vocab} has ids that {} cannot hold exactly",
                T::DTYPE
            )));
        }
        let scope = params.unique_scope("embedding");
        let table = params.create(&scope.join("embeddings"), &[vocab, dim], init)?;
        Ok(Embedding {
            name: scope.path().to_string(),
            table,
            vocab,
            dim,
        })
    }

    /// A layer over a table already in a store (`[vocab, dim]`).
    pub fn from_param<T: Scalar>(params: &ParamStore<T>, table: ParamId) -> Result<Self> {
        params.check_ids("Embedding::from_param", &[table])?;
        let shape = params.value(table).shape();
        if shape.len() != 2 {
            return Err(Error::shape(
                "Embedding::from_param",
                "a table [vocab, dim]",
                shape,
            ));
        }
        let name = params.name(table);
        Ok(Embedding {
            name: name.strip_suffix("/embeddings").unwrap_or(name).to_string(),
            table,
            vocab: shape[0],
            dim: shape[1],
        })
    }

    /// Token ids as the constant input of a model (whole numbers in the element type).
    pub fn ids<T: Scalar>(tape: &Tape<'_, T>, ids: &ArrayD<usize>) -> Var {
        tape.constant(ids.mapv(|id| T::from_f64_lossy(id as f64)))
    }

    /// The layer's name (its scope), as [`Layer::name`] gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's handle.
    pub fn table(&self) -> ParamId {
        self.table
    }

    /// The number of rows.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// The width of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl<T: Scalar> Layer<T> for Embedding {
    fn forward(&self, tape: &Tape<'_, T>, x: Var, _context: &mut Context<'_, T>) -> Result<Var> {
        let ids = {
            let values = tape.value(x);
            if values.ndim() == 0 {
                return Err(layer_shape_error(
                    "Embedding",
                    &self.name,
                    "ids of rank 1 or more",
                    values.shape(),
                ));
            }
            let mut ids = ArrayD::<usize>::zeros(values.raw_dim());
            for (id, &v) in ids.iter_mut().zip(values.iter()) {
                let f = v.to_f64_lossless();
                if !(f >= 0.0 && f.fract() == 0.0 && f < self.vocab as f64) {
                    return Err(Error::invalid(format!(
                        "Embedding {:?}: id {f} is not a whole number in 0..{}",
                        self.name, self.vocab
                    )));
                }
                *id = f as usize;
            }
            ids
        };
        tape.embedding_lookup(tape.param(self.table), &ids)
    }

    fn param_ids(&self) -> Vec<ParamId> {
        vec![self.table]
    }

    fn name(&self) -> &str {
        &self.name
    }
}
