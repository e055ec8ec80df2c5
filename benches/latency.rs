//! Inference latency of `lstm128` (`benches/models/mod.rs`) for `benches/latency.sh`: the
//! forward pass to the logits on an inference tape, on one sequence (batch 1) and on a batch of
//! 128, 28 steps of 28 inputs each; the median and the best of 200 calls (batch 1) or 50 calls
//! (batch 128) after 20 warm-up calls, in milliseconds, as `benches/latency_torch.py` times
//! PyTorch and ONNX Runtime.
//!
//! Not a criterion bench (`harness = false`): `cargo bench --bench latency`. Prints one line per
//! batch size and the JSON `{"isa": .., "threads": .., "b1": {..}, "b128": {..}}` last.
//! Threads: `RECURRENT_NUM_THREADS` (latency.sh sets 2), else all cores.

mod models;

use std::time::Instant;

use ndarray::Array3;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recurrent::math::isa;
use recurrent::parallel::num_threads;
use serde_json::{json, Map, Value};

use models::{Model, INPUT, STEPS};

const WARM: usize = 20;

fn main() {
    // `cargo bench` passes `--bench`; a run of every bench (`cargo bench`) runs this too, briefly.
    let model = Model::new("lstm128", 0);
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Map::new();
    out.insert("isa".into(), Value::from(isa().name()));
    out.insert("threads".into(), Value::from(num_threads()));
    // LATENCY_REPEAT=n multiplies the calls (for profiling one batch size: LATENCY_BATCH=1).
    let repeat: usize = std::env::var("LATENCY_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let only: Option<usize> = std::env::var("LATENCY_BATCH")
        .ok()
        .and_then(|v| v.parse().ok());
    for (batch, calls) in [(1usize, 200usize), (128, 50)] {
        if only.is_some_and(|b| b != batch) {
            continue;
        }
        let calls = calls * repeat.max(1);
        let x = Array3::from_shape_simple_fn((batch, STEPS, INPUT), || rng.random::<f32>());
        for _ in 0..WARM {
            model.predict(&x).expect("forward");
        }
        let mut times: Vec<f64> = (0..calls)
            .map(|_| {
                let t0 = Instant::now();
                std::hint::black_box(model.predict(&x).expect("forward"));
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let (median, min) = (times[calls / 2], times[0]);
        println!(
            "recurrent    batch {batch:3}: median {median:.4} ms, best {min:.4} ms ({calls} calls)"
        );
        out.insert(
            format!("b{batch}"),
            json!({"median_ms": median, "min_ms": min, "calls": calls}),
        );
    }
    println!("{}", Value::Object(out));
}
