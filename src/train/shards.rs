//! Gradient shards: a step's gradient as the sum, in a fixed order, of the gradients of fixed
//! parts of the batch, and the [`Collective`] that lets several processes compute the parts.
//!
//! With `S` shards the batch of `B` examples is cut into `S` contiguous parts (shard `k` holds
//! examples `k*B/S .. (k+1)*B/S`), each part runs its own forward and backward pass with its
//! loss weighted by its share of the batch, and the step's gradient is
//! `((g_0 + g_1) + g_2) + ...`, added in shard order. Which process or thread computed a shard
//! does not enter the result: one process computing all `S` shards and `N` processes computing
//! `S / N` each give the same bits (ARCHITECTURE.md, "Distributed training").

use std::ops::Range;

use ndarray::{s, Axis};
use sha2::{Digest, Sha256};

use crate::data::{Minibatch, Targets};
use crate::{Error, Grads, ParamId, ParamStore, Result, Scalar};

/// Communication between the processes (ranks) of a data-parallel run: what a
/// [`Trainer`](crate::train::Trainer) needs to train one model on several processes.
///
/// Every rank runs the same program; each call is collective (every rank makes it, in the same
/// order, with buffers of the same length). The MPI implementation is
/// `recurrent::distributed::MpiCollective` (cargo feature `mpi`).
pub trait Collective<T: Scalar> {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Every rank's `local` (of the same length on every rank) concatenated in rank order, on
    /// every rank: `[size() * local.len()]`.
    ///
    /// # Errors
    /// [`Error::Distributed`] if the communication fails.
    fn all_gather(&self, local: &[T]) -> Result<Vec<T>>;

    /// [`Collective::all_gather`] for `f64` values (evaluation sums, fingerprints).
    ///
    /// # Errors
    /// [`Error::Distributed`] if the communication fails.
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>>;

    /// Ends the whole job after printing `message` on stderr. A rank that fails alone calls
    /// this: the other ranks would otherwise wait for it forever in the next collective.
    fn abort(&self, message: &str) -> !;
}

/// The examples of shard `k` of `shards` in a batch of `batch`: `k*batch/shards ..
/// (k+1)*batch/shards`, a function of the two counts alone.
///
/// # Errors
/// [`Error::InvalidArgument`] if `shards` is 0 or larger than `batch` (a shard would be empty).
pub fn shard_ranges(batch: usize, shards: usize) -> Result<Vec<Range<usize>>> {
    if shards == 0 || shards > batch {
        return Err(Error::invalid(format!(
            "gradient shards: cannot cut a batch of {batch} examples into {shards} non-empty shards"
        )));
    }
    Ok((0..shards)
        .map(|k| k * batch / shards..(k + 1) * batch / shards)
        .collect())
}

/// The seed of shard `k`'s tape in a step whose tape seed is `step_seed`: dropout masks
/// depend on the shard count (which examples share a tape) but not on which rank computes a
/// shard.
pub(crate) fn shard_seed(step_seed: u64, shard: usize) -> u64 {
    // SplitMix64's increment: distinct, well-spread seeds per shard.
    step_seed.wrapping_add((shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// What a batch's mean loss averages over: examples, or valid positions for sequence targets
/// and for value targets with lengths and a time axis.
pub(crate) fn batch_weight<T: Scalar>(batch: &Minibatch<T>) -> usize {
    match (&batch.targets, &batch.lengths) {
        (Targets::Sequence(t), Some(l)) => l.iter().map(|&l| l.min(t.ncols())).sum(),
        (Targets::Sequence(t), None) => t.len(),
        (Targets::Values(v), Some(l)) if v.ndim() >= 3 => {
            l.iter().map(|&l| l.min(v.shape()[1])).sum()
        }
        _ => batch.len(),
    }
}

/// The examples `rows` of `batch` (inputs, lengths and targets).
pub(crate) fn slice_batch<T: Scalar>(batch: &Minibatch<T>, rows: Range<usize>) -> Minibatch<T> {
    let targets = match &batch.targets {
        Targets::Classes(labels) => Targets::Classes(labels[rows.clone()].to_vec()),
        Targets::Sequence(t) => Targets::Sequence(t.slice(s![rows.clone(), ..]).to_owned()),
        Targets::Values(v) => {
            Targets::Values(v.slice_axis(Axis(0), rows.clone().into()).to_owned())
        }
    };
    Minibatch {
        inputs: batch
            .inputs
            .slice_axis(Axis(0), rows.clone().into())
            .to_owned(),
        lengths: batch.lengths.as_ref().map(|l| l[rows].to_vec()),
        targets,
    }
}

/// One shard's part of a step: its weighted loss, its correct predictions (NaN for value
/// targets), its weight ([`batch_weight`]) and its gradients.
pub(crate) struct ShardResult<T: Scalar> {
    pub loss: T,
    pub correct: f64,
    pub weight: usize,
    pub grads: Grads<T>,
}

/// How a shard's result lies in a flat buffer: every parameter's gradient (zeros when the shard
/// gave none) in the store's order, one presence flag per parameter, then the loss, the correct
/// count and the weight. One buffer per shard; the buffers of all shards travel in one gather.
pub(crate) struct Layout {
    params: Vec<(ParamId, Vec<usize>, Range<usize>)>,
    gradients: usize,
}

impl Layout {
    pub fn new<T: Scalar>(params: &ParamStore<T>) -> Self {
        let mut offset = 0;
        let params = params
            .iter()
            .map(|(id, _, value)| {
                let range = offset..offset + value.len();
                offset = range.end;
                (id, value.shape().to_vec(), range)
            })
            .collect();
        Layout {
            params,
            gradients: offset,
        }
    }

    /// The length of one shard's buffer.
    pub fn len(&self) -> usize {
        self.gradients + self.params.len() + 3
    }

    /// Appends `result`'s buffer to `out`.
    pub fn pack<T: Scalar>(&self, result: &ShardResult<T>, out: &mut Vec<T>) -> Result<()> {
        let start = out.len();
        out.resize(start + self.len(), T::zero());
        let buffer = &mut out[start..];
        let flags = self.gradients;
        for (i, (id, shape, range)) in self.params.iter().enumerate() {
            if let Some(g) = result.grads.get(*id) {
                if g.shape() != shape.as_slice() {
                    return Err(Error::shape(
                        "gradient shards",
                        format!("a gradient of its parameter's shape {shape:?}"),
                        g.shape(),
                    ));
                }
                for (slot, &v) in buffer[range.clone()].iter_mut().zip(g.iter()) {
                    *slot = v;
                }
                buffer[flags + i] = T::one();
            }
        }
        let tail = flags + self.params.len();
        buffer[tail] = result.loss;
        buffer[tail + 1] = T::from_f64(result.correct).unwrap_or_else(T::nan);
        buffer[tail + 2] = T::from_usize(result.weight).expect("a count fits the float type");
        Ok(())
    }

    /// Sums the buffers of `shards` shards laid end to end in `all`, in shard order: the
    /// gradients (each parameter over the shards that gave one), and the loss, the correct
    /// count and the weight (in `f64`). The same inputs give the same bits on every rank.
    pub fn combine<T: Scalar>(
        &self,
        all: &[T],
        shards: usize,
    ) -> Result<(Grads<T>, f64, f64, f64)> {
        let n = self.len();
        if all.len() != n * shards {
            return Err(Error::Distributed(format!(
                "gathered {} gradient values, expected {shards} shards of {n}",
                all.len()
            )));
        }
        let buffers: Vec<&[T]> = all.chunks(n).collect();
        let flags = self.gradients;
        let mut grads = Grads::new();
        for (i, (id, shape, range)) in self.params.iter().enumerate() {
            let mut sum: Option<Vec<T>> = None;
            for buffer in &buffers {
                if buffer[flags + i] == T::zero() {
                    continue;
                }
                let part = &buffer[range.clone()];
                match sum.as_mut() {
                    None => sum = Some(part.to_vec()),
                    Some(acc) => acc.iter_mut().zip(part).for_each(|(a, &b)| *a += b),
                }
            }
            if let Some(sum) = sum {
                let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), sum)
                    .expect("the layout's shape");
                grads.insert(*id, array);
            }
        }
        let tail = flags + self.params.len();
        let (mut loss, mut correct, mut weight) = (0.0, 0.0, 0.0);
        for buffer in &buffers {
            loss += buffer[tail].to_f64_lossless();
            correct += buffer[tail + 1].to_f64_lossless();
            weight += buffer[tail + 2].to_f64_lossless();
        }
        Ok((grads, loss, correct, weight))
    }
}

/// SHA-256 of the parameters: every name, shape and value (by its bits), in the store's order.
pub(crate) fn params_fingerprint<T: Scalar>(params: &ParamStore<T>) -> [u8; 32] {
    let mut hash = Sha256::new();
    for (_, name, value) in params.iter() {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((value.ndim() as u64).to_le_bytes());
        for &d in value.shape() {
            hash.update((d as u64).to_le_bytes());
        }
        for &v in value.iter() {
            hash.update(v.to_f64_lossless().to_bits().to_le_bytes());
        }
    }
    hash.finalize().into()
}

/// The first eight bytes of a fingerprint in hex, for messages.
pub(crate) fn short_hex(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
