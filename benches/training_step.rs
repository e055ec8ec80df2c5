//! A whole training step of each reference model (`benches/models/mod.rs`): forward, mean
//! sparse softmax cross-entropy, backward and an Adam update, batch 128 of 28 steps of 28
//! inputs: `training_step/lstm128`, `training_step/bilstm256`, `training_step/multi3`, `training_step/gru128`, `training_step/gru128ra`.
//!
//! The criterion counterpart of `benches/compare.rs` (which uses real MNIST batches and
//! PyTorch's timing protocol); here the batches are synthetic and seeded, cycling through 8.
//! Throughput is examples per second. Threads: `RECURRENT_NUM_THREADS`, else all cores. Run with
//! `cargo bench --bench training_step`.

mod models;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

use models::{synthetic_batches, Model, BATCH, NAMES};

fn training_step(c: &mut Criterion) {
    let batches = synthetic_batches(8, 100);
    let mut group = c.benchmark_group("training_step");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        // Tens to hundreds of milliseconds a step: the same number of steps in every sample.
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for name in NAMES {
        let mut model = Model::new(name, 0);
        let mut k = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (x, labels) = &batches[k % batches.len()];
                k += 1;
                black_box(model.train_step(x, labels).expect("training step"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, training_step);
criterion_main!(benches);
