//! How many threads the fused kernels use, and how they split work.
//!
//! Examples of a batch are independent through an RNN's time loop, so the fused LSTM splits the
//! batch into shards and runs each shard's whole sequence on one thread (the weight gradient is
//! the sum of the shards'). Each shard's matrix products are single-threaded, so threads never
//! compete. The default is the machine's available parallelism.
//!
//! The shards depend only on the batch size (at most [`MAX_ROWS_PER_SHARD`] examples each), never
//! on the thread count, and their partial sums are added in shard order: results are
//! bit-identical whatever the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

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

/// Runs `work` on every shard, spread over up to [`num_threads`] threads (the calling thread is
/// one of them), and returns the results in shard order.
pub(crate) fn run_shards<S: Send, R: Send>(shards: Vec<S>, work: impl Fn(S) -> R + Sync) -> Vec<R> {
    let n = shards.len();
    let threads = num_threads().min(n).max(1);
    if threads == 1 {
        return shards.into_iter().map(work).collect();
    }
    let mut groups: Vec<Vec<(usize, S)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, shard) in shards.into_iter().enumerate() {
        groups[i % threads].push((i, shard));
    }
    let run_group = |group: Vec<(usize, S)>| -> Vec<(usize, R)> {
        group.into_iter().map(|(i, s)| (i, work(s))).collect()
    };
    let mut results: Vec<Option<R>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let run_group = &run_group;
        let mut groups = groups.into_iter();
        let mine = groups.next().expect("threads >= 2");
        let handles: Vec<_> = groups.map(|g| scope.spawn(move || run_group(g))).collect();
        let mut done = run_group(mine);
        for handle in handles {
            done.extend(handle.join().expect("a kernel thread panicked"));
        }
        for (i, r) in done {
            results[i] = Some(r);
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every shard ran"))
        .collect()
}
