//! The machine's single-precision FMA peak, for `benches/compare.sh`: the GFLOP/s of independent
//! fused multiply-adds in registers on the widest vectors the CPU has (AVX-512, else AVX2+FMA),
//! on one thread and on `RECURRENT_NUM_THREADS` (default: every core) at once.
//!
//! No matrix product reaches this figure, but it bounds them all. `compare.sh` prints it beside
//! `torch.mm`'s rate because on some CPUs PyTorch's GEMM is far from it (MKL on an AMD EPYC Zen 5
//! ran the 2048 cube at 213 GFLOP/s on 2 threads, against this peak of 509; 2026-12-01), so a
//! "GEMM-bound ideal" taken from `torch.mm` alone can be beaten.
//!
//! Not a criterion bench (`harness = false`): `cargo bench --bench fma_peak`. Prints one line per
//! thread count and the JSON `{"isa": .., "gflops": {"1": .., "N": ..}}` last (`null` rates on a
//! CPU with neither path).

use std::time::Instant;

use recurrent::parallel::num_threads;
use serde_json::{json, Map, Value};

/// Independent accumulator chains: more than the FMA latency times the FMA ports (4 x 2 on
/// current x86 cores), so the chains never wait on each other.
const CHAINS: usize = 12;

/// FMA rounds per chain in one call: 24 GFLOP on AVX-512, about 0.1 s of one core at 250 GFLOP/s
/// (long enough that starting the threads and the clock's ramp do not count).
const ROUNDS: u64 = 62_500_000;

/// Runs [`ROUNDS`] x [`CHAINS`] vector FMAs; returns the lanes per vector (0 without a path) and
/// a value that depends on every result, so nothing is optimised away.
fn fma_rounds() -> (u64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F (checked above).
            return (16, unsafe { x86::avx512(ROUNDS) });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return (8, unsafe { x86::avx2(ROUNDS) });
        }
    }
    (0, 0.0)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAINS;

    /// Twelve named accumulators (not an array, which the compiler may keep in memory).
    macro_rules! chains {
        ($set1:ident, $fma:ident, $add:ident, $reduce:expr, $rounds:expr) => {{
            let b = $set1(1.000_000_1);
            let c = $set1(1e-7);
            let (mut a0, mut a1, mut a2, mut a3) = ($set1(0.0), $set1(1.0), $set1(2.0), $set1(3.0));
            let (mut a4, mut a5, mut a6, mut a7) = ($set1(4.0), $set1(5.0), $set1(6.0), $set1(7.0));
            let (mut a8, mut a9, mut a10, mut a11) =
                ($set1(8.0), $set1(9.0), $set1(10.0), $set1(11.0));
            for _ in 0..$rounds {
                a0 = $fma(a0, b, c);
                a1 = $fma(a1, b, c);
                a2 = $fma(a2, b, c);
                a3 = $fma(a3, b, c);
                a4 = $fma(a4, b, c);
                a5 = $fma(a5, b, c);
                a6 = $fma(a6, b, c);
                a7 = $fma(a7, b, c);
                a8 = $fma(a8, b, c);
                a9 = $fma(a9, b, c);
                a10 = $fma(a10, b, c);
                a11 = $fma(a11, b, c);
            }
            let s = $add(
                $add(
                    $add($add(a0, a1), $add(a2, a3)),
                    $add($add(a4, a5), $add(a6, a7)),
                ),
                $add($add(a8, a9), $add(a10, a11)),
            );
            $reduce(s)
        }};
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(rounds: u64) -> f32 {
        const _: () = assert!(CHAINS == 12);
        chains!(
            _mm512_set1_ps,
            _mm512_fmadd_ps,
            _mm512_add_ps,
            |s| _mm512_reduce_add_ps(s),
            rounds
        )
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(rounds: u64) -> f32 {
        let reduce = |s: __m256| {
            let mut lanes = [0.0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), s);
            lanes.iter().sum::<f32>()
        };
        chains!(
            _mm256_set1_ps,
            _mm256_fmadd_ps,
            _mm256_add_ps,
            reduce,
            rounds
        )
    }
}

/// GFLOP/s of `threads` threads running [`fma_rounds`] at once: the best of three tries.
fn rate(threads: usize) -> Option<f64> {
    let mut best = None::<f64>;
    for _ in 0..3 {
        let t0 = Instant::now();
        let lanes: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(fma_rounds)).collect();
            handles
                .into_iter()
                .map(|h| {
                    let (lanes, sum) = h.join().expect("FMA thread");
                    std::hint::black_box(sum);
                    lanes
                })
                .collect()
        });
        let seconds = t0.elapsed().as_secs_f64();
        if lanes[0] == 0 {
            return None;
        }
        // Two FLOPs per lane per FMA.
        let flop = (2 * lanes[0] * CHAINS as u64 * ROUNDS * threads as u64) as f64;
        let gflops = flop / seconds / 1e9;
        best = Some(best.map_or(gflops, |b| b.max(gflops)));
    }
    best
}

fn main() {
    let isa = match fma_rounds().0 {
        16 => "avx512",
        8 => "avx2+fma",
        _ => "none",
    };
    let mut rates = Map::new();
    let mut counts = vec![1];
    if num_threads() > 1 {
        counts.push(num_threads());
    }
    for threads in counts {
        let r = rate(threads);
        match r {
            Some(r) => println!(
                "FMA peak ({isa}), {threads} thread{}: {r:.0} GFLOP/s",
                if threads == 1 { "" } else { "s" }
            ),
            None => println!("FMA peak: no AVX-512 or AVX2+FMA path on this CPU"),
        }
        rates.insert(threads.to_string(), json!(r));
    }
    println!("{}", json!({"isa": isa, "gflops": Value::Object(rates)}));
}
