//! The harness that `gru_variants` and `lstm_variants` share: a criterion group with one bench
//! per variant of a cell, or, with `<PREFIX>_ONLY=<name>` (and `<PREFIX>_STEPS=<n>`, default
//! 1), `n` training steps of one variant without criterion, for `valgrind --tool=callgrind`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};

/// Cells under comparison: one training step of the variant `name`, returning its loss.
pub trait Variants {
    fn run(&self, name: &str) -> f32;
}

/// Runs the benches (or the one-variant steps) of `names`, from cells made by `make`.
pub fn main<V: Variants>(
    group_name: &str,
    env_prefix: &str,
    names: &[&str],
    batch: usize,
    make: impl Fn() -> V,
) {
    if let Ok(name) = std::env::var(format!("{env_prefix}_ONLY")) {
        let steps: usize = std::env::var(format!("{env_prefix}_STEPS"))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let cells = make();
        for _ in 0..steps {
            black_box(cells.run(&name));
        }
        return;
    }
    let cells = make();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group(group_name);
    group
        .throughput(Throughput::Elements(batch as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for &name in names {
        group.bench_function(name, |b| b.iter(|| cells.run(name)));
    }
    group.finish();
    c.final_summary();
}
