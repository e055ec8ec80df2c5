//! How many threads the fused kernels use, and how they split work.
//!
//! Examples of a batch are independent through an RNN's time loop, so the fused LSTM splits the
//! batch into shards and runs each shard's whole sequence on one thread (the weight gradient is
//! the sum of the shards'). Each shard's matrix products are single-threaded, so threads never
//! compete. The default is the machine's available parallelism.
//!
//! The count is bounded by [`max_threads`] (4 per available core). The threads are a persistent
//! pool (`rayon`), built at the first parallel op and rebuilt only when [`set_num_threads`]
//! changes the count (a build the system refuses is not retried for the same count): a statically unrolled LSTM runs one op per time step,
//! and starting an OS thread for each cost about 40 µs here, 56 times per training step of
//! `mnist_lstm`: 11% of it.
//!
//! The shards depend only on the batch size (at most [`MAX_ROWS_PER_SHARD`] examples each, and
//! two from twice [`MIN_ROWS_PER_SHARD`] up), never on the thread count, and their partial sums
//! are added in shard order: results are bit-identical whatever the number of threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use rand_chacha::ChaCha12Rng;
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon::ThreadPool;

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The pool and its thread count; `None` in place of the pool when building it failed for that
/// count (it is not tried again until the count changes).
static POOL: Mutex<Option<(usize, Option<Arc<ThreadPool>>)>> = Mutex::new(None);

/// The largest shard: big enough that a shard's per-step products (`[64, units] x [units, 4
/// units]`) run at full speed, small enough that a batch of 128 keeps two cores busy.
pub const MAX_ROWS_PER_SHARD: usize = 64;

/// The smallest shard a batch is split into so that two cores share it: a batch of 32 (the
/// character-level language model's) runs as two shards of 16 rather than one of 32, which left
/// the second core idle through the whole time loop (char_rnn's step took 60.6 ms on one core
/// and 38.3 ms on two, AMD EPYC Zen 5). Below 16 rows a product's per-call overhead outweighs
/// the second core.
pub const MIN_ROWS_PER_SHARD: usize = 16;

/// How many threads per available core the kernels may use at most: a larger request (a typo
/// such as `RECURRENT_NUM_THREADS=100000`) is reduced to this bound with a warning on stderr.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The machine's available parallelism (at least 1).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most threads the kernels use: [`MAX_THREADS_PER_CORE`] times the available cores.
pub fn max_threads() -> usize {
    cores().saturating_mul(MAX_THREADS_PER_CORE)
}

/// `n` reduced to [`max_threads`], with a warning on stderr (once per process) when it is.
fn bounded(n: usize, source: &str) -> usize {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let max = max_threads();
    if n > max {
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "recurrent: {source} asks for {n} threads; using {max} ({MAX_THREADS_PER_CORE} per available core)"
            );
        }
        max
    } else {
        n
    }
}

/// The number of threads kernels may use, between 1 and [`max_threads`]: the last
/// [`set_num_threads`], else the environment variable `RECURRENT_NUM_THREADS`, else the machine's
/// available parallelism. A larger request is reduced to [`max_threads`] with a warning on
/// stderr; an unparsable or zero `RECURRENT_NUM_THREADS` is ignored.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("RECURRENT_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .map_or_else(cores, |n| bounded(n, "RECURRENT_NUM_THREADS"));
            NUM_THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Sets the number of threads kernels may use; 0 restores the default (all available cores, or
/// `RECURRENT_NUM_THREADS`). More than [`max_threads`] is reduced to it, with a warning on stderr.
///
/// Results do not depend on it, bit for bit (see the module documentation).
pub fn set_num_threads(n: usize) {
    let n = if n == 0 {
        0
    } else {
        bounded(n, "set_num_threads")
    };
    NUM_THREADS.store(n, Ordering::Relaxed);
}

/// The shard size for splitting `rows` examples: as few shards of at most
/// [`MAX_ROWS_PER_SHARD`] as possible, but at least two once there are two of
/// [`MIN_ROWS_PER_SHARD`] rows, balanced. A function of `rows` alone, never of the thread count,
/// so results do not depend on the thread count.
pub(crate) fn shard_rows(rows: usize) -> usize {
    let shards = rows
        .div_ceil(MAX_ROWS_PER_SHARD)
        .max((rows / MIN_ROWS_PER_SHARD).min(2))
        .max(1);
    rows.div_ceil(shards).max(1)
}

/// The pool of `threads` threads: the current one, or a new one if the count changed. `None` if
/// the operating system refuses the threads (the caller then runs the shards itself); that
/// outcome is kept too, so a refused count is not retried at every op.
fn pool(threads: usize) -> Option<Arc<ThreadPool>> {
    // A panic while the lock was held cannot leave the Option half-written.
    let mut slot = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((n, pool)) = slot.as_ref() {
        if *n == threads {
            return pool.clone();
        }
    }
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("recurrent-{i}"))
        .build()
    {
        Ok(pool) => Some(Arc::new(pool)),
        Err(e) => {
            eprintln!(
                "recurrent: cannot start {threads} threads ({e}); running on the calling thread"
            );
            None
        }
    };
    *slot = Some((threads, pool.clone()));
    pool
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

/// Draws below which [`fill_words`] fills on the calling thread (starting the pool's threads
/// would cost more than the drawing).
const PARALLEL_FILL_WORDS: usize = 1 << 16;

/// Fills `out` with the next `out.len()` words of `rng`'s stream, exactly as
/// `rng.fill(out)` does, and leaves `rng` after them; large fills are split into pieces drawn
/// on the pool's threads, each from a copy of `rng` set to its piece's position in the stream
/// (ChaCha is a counter-mode generator), so the words do not depend on the thread count. A
/// stacked LSTM's dropout masks (1.4 million draws per training step) were a sixth of the work
/// left on the calling thread.
pub(crate) fn fill_words(rng: &mut ChaCha12Rng, out: &mut [u32]) {
    let threads = num_threads();
    let n = out.len();
    if threads == 1 || n < PARALLEL_FILL_WORDS {
        rng.fill(out);
        return;
    }
    let Some(pool) = pool(threads) else {
        rng.fill(out);
        return;
    };
    let start = rng.get_word_pos();
    let piece = n.div_ceil(threads);
    let pieces: Vec<(u128, &mut [u32])> = out
        .chunks_mut(piece)
        .enumerate()
        .map(|(k, chunk)| (start + (k * piece) as u128, chunk))
        .collect();
    let base = rng.clone();
    pool.install(|| {
        pieces.into_par_iter().for_each(|(pos, chunk)| {
            let mut r = base.clone();
            r.set_word_pos(pos);
            r.fill(chunk);
        })
    });
    rng.set_word_pos(start + n as u128);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    /// Batches of two minimum shards or more are split in two (char_rnn's 32, word_language's
    /// 64), larger ones into shards of at most 64, smaller ones not at all; the shards cover the
    /// batch.
    #[test]
    fn shard_sizes_use_two_cores_from_32_rows() {
        let shards = |rows: usize| rows.div_ceil(shard_rows(rows));
        for (rows, expected) in [
            (1, 1),
            (16, 1),
            (31, 1),
            (32, 2),
            (64, 2),
            (100, 2),
            (128, 2),
        ] {
            assert_eq!(shards(rows), expected, "{rows} rows");
        }
        assert_eq!((shards(129), shard_rows(129)), (3, 43));
        for rows in 1..600 {
            let size = shard_rows(rows);
            assert!(size <= MAX_ROWS_PER_SHARD, "{rows} rows: shard of {size}");
            let n = shards(rows);
            assert!(n * size >= rows && (n - 1) * size < rows, "{rows} rows");
            assert!(rows >= 2 * MIN_ROWS_PER_SHARD || n == rows.div_ceil(MAX_ROWS_PER_SHARD));
        }
    }

    /// The tape's generator gives `StdRng`'s stream (so masks are those drawn before the tape
    /// named ChaCha12 directly), and a parallel fill gives the sequential fill's words and
    /// leaves the generator where the sequential fill does, whatever the thread count.
    #[test]
    fn parallel_fill_is_the_sequential_stream() {
        let mut std_rng = StdRng::seed_from_u64(7);
        let mut chacha = ChaCha12Rng::seed_from_u64(7);
        for _ in 0..100 {
            assert_eq!(std_rng.next_u32(), chacha.next_u32());
        }
        for n in [
            3,
            PARALLEL_FILL_WORDS - 1,
            PARALLEL_FILL_WORDS + 5,
            3 * PARALLEL_FILL_WORDS + 1,
        ] {
            let mut want = vec![0u32; n];
            let mut sequential = ChaCha12Rng::seed_from_u64(11);
            sequential.next_u32(); // start mid-block
            let start = sequential.clone();
            sequential.fill(&mut want[..]);
            for threads in [1, 2, 3] {
                set_num_threads(threads);
                let mut p = start.clone();
                let mut got = vec![0u32; n];
                fill_words(&mut p, &mut got);
                assert_eq!(got, want, "{n} words on {threads} threads");
                assert_eq!(p.clone().next_u64(), sequential.clone().next_u64());
            }
            set_num_threads(0);
        }
    }
}
