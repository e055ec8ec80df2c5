#!/usr/bin/env bash
# Times the reference models' training steps in recurrent and in PyTorch, back to back on this
# machine, measures the machine's GEMM limit, and prints a table of the three.
#
#   benches/compare.sh [lstm128] [bilstm256] [multi3] [gru128] [gru128ra]   (all five by default)
#
# 0. the CPU model and the SIMD extensions it reports (and the path recurrent's kernels take);
# 1. `cargo bench --bench compare -- MODELS` (benches/compare.rs): 10 warm-up + 50 timed steps
#    on real MNIST batches of 128, median ms/step -> $BENCH_RESULTS/recurrent_bench.json;
# 2. benches/torch_bench.py (shared/bench/bench_torch.py plus gru128, gru128ra) with $TORCH_PYTHON, if
#    that python exists, the same protocol -> $BENCH_RESULTS/torch_bench.json;
# 3. benches/gemm_limit.py: torch.mm's GFLOP/s at each model's per-step product on 1 and 2
#    threads -> $BENCH_RESULTS/gemm_limit.json;
# 4. the table: model, ours ms/step, PyTorch ms/step, PyTorch / ours (> 1: recurrent is
#    faster), the fastest steps' ratio, the step's GFLOP of matrix products (forward product,
#    and the backward's two of the same size), the GEMM-bound ideal (those FLOPs at the better
#    of the 1- and 2-thread torch.mm rates of the model's shape) and ours / ideal (1.0 would be
#    torch.mm's limit);
# 5. benches/fma_peak.rs: the CPU's FMA peak on 1 and 2 threads (independent FMAs in registers),
#    the bound no product can pass, and each model's step at that peak (peak ms) and ours / peak
#    ms: torch.mm can be far from the peak (MKL on an AMD EPYC Zen 5: 213 of 509 GFLOP/s on 2
#    threads), so its "ideal" alone can be beaten.
#
# Both use 2 threads (bench_torch.py calls torch.set_num_threads(2); RECURRENT_NUM_THREADS=2).
# Environment:
#   BENCH_RESULTS  where the JSON files go (default /tmp/recurrent-bench)
#   TORCH_PYTHON   a python with torch and numpy (default /tmp/torchenv/bin/python; set-up in
#                  shared/bench/README.md)
#   SHARED_DIR     the project's shared/ folder (default: the first `shared` folder beside the
#                  project root or one of its parents; benches/shared_dir.sh)
#   MNIST_DIR      the MNIST .gz files (default $SHARED_DIR/mnist, as mnist_data.py's default)
# The machine is shared: the load average is printed first; only ratios from one run mean much.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# shellcheck source=benches/shared_dir.sh
source "$root/benches/shared_dir.sh"
export BENCH_RESULTS=${BENCH_RESULTS:-/tmp/recurrent-bench}
export RECURRENT_NUM_THREADS=2
TORCH_PYTHON=${TORCH_PYTHON:-/tmp/torchenv/bin/python}

if [[ $# -gt 0 ]]; then
    models=("$@")
else
    models=(lstm128 bilstm256 multi3 gru128 gru128ra)
fi

echo "$(date '+%Y-%m-%d %H:%M:%S'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
family=$(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2- | tr -d ' ')
simd=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
    grep -E '^(sse4_2|avx|avx2|fma|avx512[a-z_0-9]*|avx_vnni|amx[a-z_0-9]*)$' | tr '\n' ' ')
echo "CPU: ${cpu:-unknown} (family ${family:-?}), SIMD: ${simd:-none found}"
echo "L2: $(lscpu 2>/dev/null | grep -m1 'L2 cache' | cut -d: -f2- | sed 's/^ *//')"
echo "MNIST_DIR=$MNIST_DIR BENCH_RESULTS=$BENCH_RESULTS RECURRENT_NUM_THREADS=$RECURRENT_NUM_THREADS"
mkdir -p "$BENCH_RESULTS"
# No stale numbers in the table.
rm -f "$BENCH_RESULTS/recurrent_bench.json" "$BENCH_RESULTS/torch_bench.json" \
    "$BENCH_RESULTS/gemm_limit.json" "$BENCH_RESULTS/fma_peak.txt"

echo
echo "== recurrent"
cargo bench --quiet --bench compare -- "${models[@]}"

echo
echo "== PyTorch"
if [[ -x "$TORCH_PYTHON" && -f "$SHARED_DIR/bench/bench_torch.py" ]]; then
    SHARED_BENCH="$SHARED_DIR/bench" "$TORCH_PYTHON" "$root/benches/torch_bench.py" "${models[@]}"
    echo
    echo "== GEMM limit (torch.mm)"
    "$TORCH_PYTHON" "$root/benches/gemm_limit.py" >"$BENCH_RESULTS/gemm_limit.json"
else
    echo "skipped: no $TORCH_PYTHON or no $SHARED_DIR/bench/bench_torch.py (see shared/bench/README.md)"
fi

echo
echo "== FMA peak"
cargo bench --quiet --bench fma_peak | tee "$BENCH_RESULTS/fma_peak.txt" ||
    echo "fma_peak failed: the table goes without the peak columns"

echo
echo "== comparison, $(date '+%H:%M:%S'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$BENCH_RESULTS" "${models[@]}" <<'EOF'
import json
import os
import sys

results, models = sys.argv[1], sys.argv[2:]


def configs(name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return {}, None
    with open(path) as f:
        data = json.load(f)
    return data.get("configs", {}), data


ours, ours_meta = configs("recurrent_bench.json")
torch, torch_meta = configs("torch_bench.json")
limit_path = os.path.join(results, "gemm_limit.json")
limit = json.load(open(limit_path))["shapes"] if os.path.exists(limit_path) else {}
peak_path = os.path.join(results, "fma_peak.txt")
peak = {}
if os.path.exists(peak_path):
    with open(peak_path) as f:
        lines = f.read().strip().splitlines()
    try:
        peak = {int(k): v for k, v in json.loads(lines[-1])["gflops"].items() if v}
    except (IndexError, KeyError, ValueError):
        peak = {}
# The peak of as many threads as the models ran on (2), or of one thread if that is all there is.
peak_rate = peak.get(2) or peak.get(1)
if ours_meta:
    print(f"recurrent {ours_meta['recurrent_version']}, {ours_meta['num_threads']} threads, "
          f"kernels {ours_meta.get('isa', '?')}", end="")
if torch_meta:
    print(f"; PyTorch {torch_meta['torch_version']}, {torch_meta['num_threads']} threads", end="")
print()


def ms(configs, name):
    c = configs.get(name)
    return c["median_ms_per_step"] if c else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


# Matrix-product FLOPs of one training step: per LSTM/GRU layer (input, units, gate blocks) the
# forward product [B*T, in + units] @ [in + units, gates * units] and the backward's two of the
# same size (weight gradient; input and recurrent gradients), plus multi3's input dense layer.
B, T = 128, 28
LAYERS = {
    "lstm128": [(28, 128, 4)],
    "bilstm256": [(28, 256, 4)] * 2,
    "multi3": [(128, 128, 4)] * 3,
    "gru128": [(28, 128, 3)],
    "gru128ra": [(28, 128, 3)],
}
EXTRA = {"multi3": 3 * 2.0 * B * T * 28 * 128}


def step_gflop(name):
    if name not in LAYERS:
        return None
    f = sum(3 * 2.0 * B * T * (i + u) * g * u for i, u, g in LAYERS[name])
    return (f + EXTRA.get(name, 0.0)) / 1e9


def best(configs, name):
    c = configs.get(name)
    return c["min_ms"] if c else None


header = ("| model | ours ms/step | PyTorch ms/step | PyTorch/ours | best steps, PyTorch/ours "
          "| GFLOP/step | GEMM GFLOP/s (1t, 2t) | ideal ms | ours/ideal | peak ms | ours/peak |")
print(header)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in models:
    a, b = ms(ours, name), ms(torch, name)
    ratio = b / a if a and b else None
    ba, bb = best(ours, name), best(torch, name)
    best_ratio = f"{fmt(ba, '.1f')} / {fmt(bb, '.1f')} = {fmt(bb / ba if ba and bb else None, '.2f')}"
    g = step_gflop(name)
    lim = limit.get(name, {}).get("gflops", {})
    r1, r2 = lim.get("1"), lim.get("2")
    # Two threads reach at least one thread's rate: a 2-thread figure below it was disturbed
    # (torch's OpenMP threads collapse when the cores are oversubscribed).
    rate = max(r for r in (r1, r2) if r) if (r1 or r2) else None
    ideal = g / rate * 1e3 if g and rate else None
    over = a / ideal if a and ideal else None
    rates = f"{fmt(r1, '.0f')}, {fmt(r2, '.0f')}"
    at_peak = g / peak_rate * 1e3 if g and peak_rate else None
    over_peak = a / at_peak if a and at_peak else None
    print(f"| {name} | {fmt(a, '.1f')} | {fmt(b, '.1f')} | {fmt(ratio, '.2f')} | {best_ratio} | {fmt(g, '.2f')} "
          f"| {rates} | {fmt(ideal, '.1f')} | {fmt(over, '.2f')} | {fmt(at_peak, '.1f')} | {fmt(over_peak, '.2f')} |")
if "cube" in limit:
    c = limit["cube"]["gflops"]
    print(f"GEMM on the 2048 cube: {c['1']:.0f} GFLOP/s on 1 thread, {c['2']:.0f} on 2")
if peak:
    print("FMA peak: " + ", ".join(f"{v:.0f} GFLOP/s on {k} thread{'s' if k > 1 else ''}"
                                   for k, v in sorted(peak.items())))
print("(medians of 50 steps, batch 128, and the fastest of the 50 (under load, the least disturbed);"
      " PyTorch/ours > 1: recurrent is faster; ideal: the step's FLOPs at the better of the 1- and"
      " 2-thread GEMM rates of its shape; peak: the step's FLOPs at the FMA peak, a bound no"
      " product reaches)")
EOF
