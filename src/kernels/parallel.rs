//! How many threads the fused kernels use, and how they split work.
//!
//! Examples of a batch are independent through an RNN's time loop, so the fused LSTM splits the
//! batch into shards and runs each shard's whole sequence on one thread (the weight gradient is
//! the sum of the shards'). Each shard's matrix products are single-threaded, so threads never
//! compete. The default is the machine's available parallelism.
//!
//! The threads are a persistent pool (`rayon`), built at the first parallel op and rebuilt when
//! [`set_num_threads`] changes the count: a statically unrolled LSTM runs one op per time step,
//! and starting an OS thread for each cost about 40 µs here, 56 times per training step of
//! `mnist_lstm`: 11% of it.
//!
//! The shards depend only on the batch size (at most [`MAX_ROWS_PER_SHARD`] examples each), never
//! on the thread count, and their partial sums are added in shard order: results are
//! bit-identical whatever the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon::ThreadPool;

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The pool and its thread count.
static POOL: Mutex<Option<(usize, Arc<ThreadPool>)>> = Mutex::new(None);

/// The largest shard: big enough that a shard's per-step products (`[64, units] x [units, 4
/// units]`) run at full speed, small enough that a batch of 128 keeps two cores busy.
pub const MAX_ROWS_PER_SHARD: usize = 64;

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
/// Results do not depend on it, bit for bit (see the module documentation).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
}

/// The shard size for splitting `rows` examples: as few shards of at most
/// [`MAX_ROWS_PER_SHARD`] as possible, balanced. A function of `rows` alone.
pub(crate) fn shard_rows(rows: usize) -> usize {
    let shards = rows.div_ceil(MAX_ROWS_PER_SHARD).max(1);
    rows.div_ceil(shards).max(1)
}

/// The pool of `threads` threads: the current one, or a new one if the count changed. `None` if
/// the operating system refuses the threads (the caller then runs the shards itself).
fn pool(threads: usize) -> Option<Arc<ThreadPool>> {
    // A panic while the lock was held cannot leave the Option half-written.
    let mut slot = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((n, pool)) = slot.as_ref() {
        if *n == threads {
            return Some(Arc::clone(pool));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("recurrent-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    *slot = Some((threads, Arc::clone(&pool)));
    Some(pool)
}

/// Runs `work` on every shard, spread over the pool's [`num_threads`] threads, and returns the
/// results in shard order.
pub(crate) fn run_shards<S: Send, R: Send>(
    shards: Vec<S>,
    work: impl Fn(S) -> R + Sync + Send,
) -> Vec<R> {
    let threads = num_threads();
    if threads == 1 || shards.len() == 1 {
        return shards.into_iter().map(work).collect();
    }
    match pool(threads) {
        // `collect` keeps shard order, whichever thread ran a shard.
        Some(pool) => pool.install(|| shards.into_par_iter().map(work).collect()),
        None => shards.into_iter().map(work).collect(),
    }
}
