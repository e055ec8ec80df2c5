//! Static versus dynamic unrolling of `lstm128` (`benches/models/mod.rs`): forward to the mean
//! cross-entropy and backward, without the optimizer, batch 128 of 28 steps of 28 inputs.
//!
//! - `unroll_lstm128/dynamic_rnn`: `dynamic_rnn` on the `[batch, 28, 28]` tensor, which runs the
//!   whole sequence as one fused op (one input projection for all steps before the loop, one
//!   weight-gradient product after it);
//! - `unroll_lstm128/static_rnn`: `static_rnn` on the 28 unstacked steps, one fused step op each;
//! - `unroll_lstm128/dynamic_rnn_forward` and `unroll_lstm128/dynamic_rnn_backward`: the two
//!   halves of the first, apart (the backward is timed on a tape recorded outside the timing).
//!
//! Both compute the same loss (checked before timing). Throughput is examples per second. Data
//! is synthetic and seeded. Threads: `RECURRENT_NUM_THREADS`, else all cores. Run with
//! `cargo bench --bench unroll`.

mod models;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use recurrent::Tape;

use models::{synthetic_batch, Model, Runner, BATCH};

fn unroll(c: &mut Criterion) {
    let (x, labels) = synthetic_batch(3);
    let model = Model::new("lstm128", 0);
    let forward = |runner: Runner| {
        let tape = Tape::new(model.params());
        let input = tape.constant(x.clone().into_dyn());
        let loss = model
            .loss_with(&tape, input, &labels, runner)
            .expect("forward");
        (tape, loss)
    };
    let forward_backward = |runner: Runner| {
        let (tape, loss) = forward(runner);
        let grads = tape.backward(loss).expect("backward");
        (tape.scalar(loss), grads)
    };
    let (dynamic, _) = forward_backward(Runner::Dynamic);
    let (unrolled, _) = forward_backward(Runner::Static);
    assert!(
        (dynamic - unrolled).abs() <= 1e-5 * dynamic.abs().max(1.0),
        "static_rnn and dynamic_rnn disagree: loss {unrolled} vs {dynamic}"
    );

    let mut group = c.benchmark_group("unroll_lstm128");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, runner) in [
        ("dynamic_rnn", Runner::Dynamic),
        ("static_rnn", Runner::Static),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(forward_backward(black_box(runner))))
        });
    }
    group.bench_function("dynamic_rnn_forward", |b| {
        b.iter(|| black_box(forward(black_box(Runner::Dynamic))))
    });
    group.bench_function("dynamic_rnn_backward", |b| {
        b.iter_batched(
            || forward(Runner::Dynamic),
            // The tape is handed back so that it is dropped outside the timing too.
            |(tape, loss)| {
                let grads = tape.backward(black_box(loss)).expect("backward");
                (grads, tape)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, unroll);
criterion_main!(benches);
