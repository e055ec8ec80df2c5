#!/usr/bin/env bash
# Inference latency of lstm128, back to back: recurrent (benches/latency.rs), PyTorch under
# torch.inference_mode and ONNX Runtime (benches/latency_torch.py, the model exported from
# PyTorch), on one sequence (batch 1) and a batch of 128, 2 threads each; prints the medians
# and PyTorch / ours, ONNX Runtime / ours (> 1: recurrent is faster).
#
#   benches/latency.sh
#
# Environment: TORCH_PYTHON (default /tmp/torchenv/bin/python, with torch, numpy, onnx and
# onnxruntime), SHARED_DIR (benches/shared_dir.sh). The machine is shared: compare the ratios
# of one run, and run it more than once.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/shared_dir.sh
source "$root/benches/shared_dir.sh"
export RECURRENT_NUM_THREADS=2
TORCH_PYTHON=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "$(date '+%Y-%m-%d %H:%M:%S'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
cargo bench --quiet --bench latency | tee "$tmp/ours.txt"
SHARED_BENCH="$SHARED_DIR/bench" "$TORCH_PYTHON" "$root/benches/latency_torch.py" \
    2> >(grep -v -i warn >&2) >"$tmp/torch.json"
tail -n 1 "$tmp/ours.txt" >"$tmp/ours.json"
python3 - "$tmp/ours.json" "$tmp/torch.json" <<'PY'
import json
import sys

ours = json.load(open(sys.argv[1]))
other = json.load(open(sys.argv[2]))
print(f"recurrent ({ours['isa']} kernels, {ours['threads']} threads), PyTorch "
      f"{other['torch_version']}, ONNX Runtime {other.get('onnxruntime_version', '-')}")
print("| batch | ours ms | PyTorch ms | ONNX Runtime ms | PyTorch/ours | ORT/ours |")
print("|---:|---:|---:|---:|---:|---:|")
for b in ("b1", "b128"):
    a = ours[b]["median_ms"]
    t = other["torch"].get(b, {}).get("median_ms")
    o = other["onnxruntime"].get(b, {}).get("median_ms")
    f = lambda v, s=".3f": "-" if v is None else format(v, s)
    print(f"| {b[1:]} | {f(a)} | {f(t)} | {f(o)} | {f(t and t / a, '.2f')} | {f(o and o / a, '.2f')} |")
print("(medians; ratios > 1: recurrent is faster)")
PY
