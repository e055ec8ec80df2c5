//! Where a data source stands, so that an interrupted training run can continue exactly.
//!
//! Every shuffling data source of this crate draws from a [`ShuffleRng`] (ChaCha12, the
//! algorithm behind `rand`'s `StdRng`: the same seed gives the same stream) because its position
//! in the stream can be read and set again. A source reports its whole state as a
//! [`DataPosition`] ([`Resumable::position`]) and takes it back ([`Resumable::restore`]); the
//! training-state checkpoint stores it beside the parameters and the optimizer.

use rand_chacha::ChaCha12Rng;

use crate::{Error, Result};

/// The generator every shuffling data source uses: its position can be saved
/// ([`RngPosition::of`]) and restored ([`RngPosition::to_rng`]).
pub type ShuffleRng = ChaCha12Rng;

/// The exact position of a [`ShuffleRng`]: its seed, stream and word position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RngPosition {
    /// The 32-byte key the generator was seeded with.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// How many 32-bit words have been drawn.
    pub word_pos: u128,
}

impl RngPosition {
    /// The position of `rng`.
    pub fn of(rng: &ShuffleRng) -> Self {
        RngPosition {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }

    /// A generator at this position: it draws what the saved one would have drawn next.
    pub fn to_rng(&self) -> ShuffleRng {
        use rand::SeedableRng;
        let mut rng = ShuffleRng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }
}

/// The whole state of a data source's iteration: its counters, its current order of examples
/// and its generator. What each counter means is the source's to say (for a
/// [`DataSet`](crate::data::DataSet): epochs completed, index in the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataPosition {
    /// Small counters, in an order the source defines.
    pub counters: Vec<u64>,
    /// The current order of the examples (empty for a source that does not shuffle).
    pub order: Vec<u64>,
    /// The shuffling generator's position.
    pub rng: RngPosition,
}

/// A data source whose iteration can be saved and continued exactly.
pub trait Resumable {
    /// The current state.
    fn position(&self) -> DataPosition;

    /// Continues from a state [`Resumable::position`] gave (of a source built over the same
    /// data).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the state does not fit this source (another data size, a
    /// wrong number of counters); the source is then unchanged.
    fn restore(&mut self, position: &DataPosition) -> Result<()>;
}

/// Checks that `order` is a permutation of `0..n`, converting it to indices.
pub(crate) fn check_order(op: &str, order: &[u64], n: usize) -> Result<Vec<usize>> {
    if order.len() != n {
        return Err(Error::invalid(format!(
            "{op}: a saved order of {} examples for a source of {n}",
            order.len()
        )));
    }
    let mut seen = vec![false; n];
    order
        .iter()
        .map(|&i| {
            let i = usize::try_from(i).ok().filter(|&i| i < n && !seen[i]);
            match i {
                Some(i) => {
                    seen[i] = true;
                    Ok(i)
                }
                None => Err(Error::invalid(format!(
                    "{op}: the saved order is not a permutation of 0..{n}"
                ))),
            }
        })
        .collect()
}
