//! Inference of `lstm128` (`benches/models/mod.rs`): the forward pass to the logits on an
//! inference tape (nothing recorded for backward), batch 128 of 28 steps of 28 inputs.
//!
//! Throughput is examples per second. Inputs are synthetic and seeded. Threads:
//! `RECURRENT_NUM_THREADS`, else all cores. Run with `cargo bench --bench inference`.

mod models;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use models::{synthetic_batch, Model, BATCH};

fn inference(c: &mut Criterion) {
    let (x, _) = synthetic_batch(7);
    let model = Model::new("lstm128", 0);
    let mut group = c.benchmark_group("inference");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("lstm128", |b| {
        b.iter(|| black_box(model.predict(black_box(&x)).expect("forward")))
    });
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
