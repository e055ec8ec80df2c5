#!/usr/bin/env bash
# Times the three reference models' training steps in recurrent and in PyTorch, back to back on
# this machine, and prints a table of the two with their ratio.
#
#   benches/compare.sh [lstm128] [bilstm256] [multi3]      (all three by default)
#
# 1. `cargo bench --bench compare -- MODELS` (benches/compare.rs): 10 warm-up + 50 timed steps
#    on real MNIST batches of 128, median ms/step -> $BENCH_RESULTS/recurrent_bench.json;
# 2. shared/bench/bench_torch.py with $TORCH_PYTHON, if that python exists, the same protocol
#    -> $BENCH_RESULTS/torch_bench.json;
# 3. the table: model, ours ms/step, PyTorch ms/step, PyTorch / ours (> 1: recurrent is faster).
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
    models=(lstm128 bilstm256 multi3)
fi

echo "$(date '+%Y-%m-%d %H:%M:%S'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "MNIST_DIR=$MNIST_DIR BENCH_RESULTS=$BENCH_RESULTS RECURRENT_NUM_THREADS=$RECURRENT_NUM_THREADS"
mkdir -p "$BENCH_RESULTS"
# No stale numbers in the table.
rm -f "$BENCH_RESULTS/recurrent_bench.json" "$BENCH_RESULTS/torch_bench.json"

echo
echo "== recurrent"
cargo bench --quiet --bench compare -- "${models[@]}"

echo
echo "== PyTorch"
if [[ -x "$TORCH_PYTHON" && -f "$SHARED_DIR/bench/bench_torch.py" ]]; then
    "$TORCH_PYTHON" "$SHARED_DIR/bench/bench_torch.py" "${models[@]}"
else
    echo "skipped: no $TORCH_PYTHON or no $SHARED_DIR/bench/bench_torch.py (see shared/bench/README.md)"
fi

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
if ours_meta:
    print(f"recurrent {ours_meta['recurrent_version']}, {ours_meta['num_threads']} threads", end="")
if torch_meta:
    print(f"; PyTorch {torch_meta['torch_version']}, {torch_meta['num_threads']} threads", end="")
print()


def ms(configs, name):
    c = configs.get(name)
    return c["median_ms_per_step"] if c else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


header = "| model | ours ms/step | PyTorch ms/step | ratio PyTorch/ours |"
print(header)
print("|---|---:|---:|---:|")
for name in models:
    a, b = ms(ours, name), ms(torch, name)
    ratio = b / a if a and b else None
    print(f"| {name} | {fmt(a, '.1f')} | {fmt(b, '.1f')} | {fmt(ratio, '.2f')} |")
print("(medians of 50 steps, batch 128; ratio > 1: recurrent is faster)")
EOF
