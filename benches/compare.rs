//! Training steps of the reference models on real MNIST, timed the way
//! `shared/bench/bench_torch.py` times PyTorch, for `benches/compare.sh`.
//!
//! For each model named on the command line (all of them when none is; a name is matched as a
//! substring, like criterion's filters, unless it is a model's whole name: `gru128` runs
//! `gru128` alone, `gru` both GRUs): 10 warm-up and 50 timed training steps (forward, mean
//! sparse softmax cross-entropy, backward, Adam update; `benches/models/mod.rs`) on shuffled
//! MNIST training batches of 128 (`Mnist::load(dir, 0)`, `next_batch`), each step timed alone.
//! Prints the median, minimum and maximum ms per step and examples per second, and writes
//! `$BENCH_RESULTS/recurrent_bench.json` (default `/tmp/recurrent-bench`), shaped like
//! `bench_torch.py`'s `torch_bench.json`, with the CPU time of all threads per step beside it.
//! `COMPARE_STEPS=WARM,TIMED` changes the step counts (short runs under a profiler).
//!
//! Not a criterion bench (`harness = false`): `cargo bench --bench compare -- lstm128 bilstm256
//! multi3 gru128 gru128ra`. MNIST is read from `MNIST_DIR` (else `data/mnist`) and never downloaded; when it is
//! missing a plain `cargo bench` skips this, a run that names a model fails. Threads:
//! `RECURRENT_NUM_THREADS` (compare.sh sets 2, as `bench_torch.py` uses 2), else all cores.

mod models;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use recurrent::data::{resolve_data_dir, Mnist};
use recurrent::math::isa;
use recurrent::parallel::num_threads;
use serde_json::{json, Map, Value};

use models::{Model, BATCH, NAMES};

const WARM: usize = 10;
const TIMED: usize = 50;

/// The warm-up and timed step counts: [`WARM`] and [`TIMED`], or `COMPARE_STEPS=WARM,TIMED`
/// (shorter runs under a profiler such as callgrind).
fn step_counts() -> (usize, usize) {
    std::env::var("COMPARE_STEPS")
        .ok()
        .and_then(|v| {
            let (w, t) = v.split_once(',')?;
            Some((w.trim().parse().ok()?, t.trim().parse().ok()?))
        })
        .filter(|&(_, t)| t > 0)
        .unwrap_or((WARM, TIMED))
}

/// User plus system CPU time of this process in seconds, all threads (Linux `/proc`; clock
/// ticks taken as the usual 100 per second).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest` (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn run(name: &str, mnist: &mut Mnist) -> recurrent::Result<Value> {
    let (warm, timed) = step_counts();
    let mut model = Model::new(name, 0);
    let mut times = Vec::with_capacity(timed);
    let (mut c0, mut w0) = (None, Instant::now());
    let mut last_loss = 0.0;
    for step in 0..warm + timed {
        let batch = mnist.train.next_batch::<f32>(BATCH);
        let x = batch.images_as_sequences();
        if step == warm {
            c0 = cpu_seconds();
            w0 = Instant::now();
        }
        let t0 = Instant::now();
        last_loss = model.train_step(&x, &batch.labels)?;
        if step >= warm {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let wall = w0.elapsed().as_secs_f64();
    let cpu = c0.zip(cpu_seconds()).map(|(c0, c1)| c1 - c0);
    let cpu_over_wall = cpu.map_or(Value::Null, |c| Value::from(c / wall));
    // CPU time of all threads per timed step: the work done, which a busy machine inflates far
    // less than the wall time (it does not count the time spent waiting for a core).
    let cpu_ms = cpu.map(|c| c * 1e3 / times.len() as f64);
    times.sort_by(f64::total_cmp);
    let med = median(&times);
    let (min, max) = (times[0], times[times.len() - 1]);
    let examples_per_s = BATCH as f64 / (med / 1e3);
    let cpu_text = cpu_ms.map_or_else(|| "?".to_string(), |c| format!("{c:.2}"));
    println!(
        "{name:<10} median {med:8.2} ms/step  min {min:8.2}  max {max:8.2}  {examples_per_s:8.0} examples/s  cpu {cpu_text} ms/step  (loss after {} steps {last_loss:.3})",
        warm + timed
    );
    Ok(json!({
        "median_ms_per_step": med,
        "min_ms": min,
        "max_ms": max,
        "examples_per_s": examples_per_s,
        "params": model.num_params(),
        "cpu_over_wall": cpu_over_wall,
        "cpu_ms_per_step": cpu_ms,
    }))
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and criterion options meant for other benches): only the
    // free arguments are model filters.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&str> = NAMES
        .into_iter()
        .filter(|name| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    // A whole model name selects that model only (gru128 is in gru128ra).
                    f == name || (!NAMES.contains(&f.as_str()) && name.contains(f.as_str()))
                })
        })
        .collect();
    if selected.is_empty() {
        return ExitCode::SUCCESS;
    }
    let dir = resolve_data_dir(None);
    let mut mnist = match Mnist::load(&dir, 0) {
        Ok(m) => m,
        Err(e) if filters.is_empty() => {
            println!(
                "compare: skipped, no MNIST in {} ({e}); set MNIST_DIR",
                dir.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("compare: cannot load MNIST from {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    println!(
        "recurrent {}: training steps on MNIST batches of {BATCH} ({} warm-up, {} timed), {} thread(s), {} kernels",
        env!("CARGO_PKG_VERSION"),
        step_counts().0,
        step_counts().1,
        num_threads(),
        isa().name()
    );
    let mut configs = Map::new();
    for name in selected {
        match run(name, &mut mnist) {
            Ok(result) => {
                configs.insert(name.to_string(), result);
            }
            Err(e) => {
                eprintln!("compare: {name} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let results = json!({
        "recurrent_version": env!("CARGO_PKG_VERSION"),
        "num_threads": num_threads(),
        "isa": isa().name(),
        "batch_size": BATCH,
        "warm_up_steps": step_counts().0,
        "timed_steps": step_counts().1,
        "configs": configs,
    });
    let outdir = std::env::var("BENCH_RESULTS").unwrap_or_else(|_| "/tmp/recurrent-bench".into());
    let path = Path::new(&outdir).join("recurrent_bench.json");
    let written = std::fs::create_dir_all(&outdir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&results).expect("JSON") + "\n",
        )
    });
    match written {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compare: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
