//! How many threads the fused kernels use.
//!
//! Examples of a batch are independent through an RNN's time loop, so the fused LSTM splits the
//! batch into shards and runs each shard's whole sequence on its own thread (the weight gradient
//! is the sum of the shards'). Each shard's matrix products are single-threaded, so the threads
//! never compete. The default is the machine's available parallelism.

use std::sync::atomic::{AtomicUsize, Ordering};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The smallest shard worth a thread of its own: below this the thread's start-up and the
/// smaller matrix products cost more than they save.
const MIN_ROWS_PER_SHARD: usize = 16;

/// The number of threads kernels may use (at least 1): the last [`set_num_threads`], else the
/// environment variable `RECURRENT_NUM_THREADS`, else the machine's available parallelism.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("RECURRENT_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            NUM_THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Sets the number of threads kernels may use; 0 restores the default (all available cores).
///
/// Results do not depend on it up to floating-point summation order of weight gradients
/// (shards' partial sums are added in a fixed order, so a given thread count is deterministic).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
}

/// The shard size for splitting `rows` across the kernel threads.
pub(crate) fn shard_rows(rows: usize) -> usize {
    let shards = num_threads().min(rows / MIN_ROWS_PER_SHARD).max(1);
    rows.div_ceil(shards).max(1)
}
