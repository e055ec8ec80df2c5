"""The machine's single-precision GEMM limit at the reference models' step shapes, for
benches/compare.sh: `torch.mm` (PyTorch's MKL / oneDNN kernels) on 1 and 2 threads.

    python benches/gemm_limit.py > gemm_limit.json

For each model the shape is its per-step recurrent product over the whole batch,
`[128 x (input + units)] @ [(input + units) x gates * units]` (the product every step of the
forward pass runs, and whose transposes the backward runs), plus the 2048 cube. Each figure is
the best of 25 samples of about 0.03 s, in GFLOP/s. Prints JSON:
{"torch": version, "shapes": {"128x156@156x512": {"flop": .., "gflops": {"1": .., "2": ..}}}}.
"""
import json
import sys
import time

import numpy as np
import torch

SHAPES = {
    "lstm128": (128, 156, 512),
    "bilstm256": (128, 284, 1024),
    "multi3": (128, 256, 512),
    "gru128": (128, 156, 384),
    "gru128ra": (128, 156, 384),
    "cube": (2048, 2048, 2048),
}


def rate(m, k, n):
    rng = np.random.RandomState(0)
    a = torch.from_numpy(rng.rand(m, k).astype(np.float32))
    b = torch.from_numpy(rng.rand(k, n).astype(np.float32))
    c = torch.empty(m, n)
    flop = 2.0 * m * n * k
    for _ in range(3):
        torch.mm(a, b, out=c)
    t0 = time.perf_counter()
    torch.mm(a, b, out=c)
    reps = max(1, int(0.03 / max(time.perf_counter() - t0, 1e-7)))
    best = float("inf")
    # Many short samples: on a shared machine the best of them is the one least disturbed.
    for _ in range(25):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        best = min(best, (time.perf_counter() - t0) / reps)
    return flop / best / 1e9


res = {"torch": torch.__version__, "shapes": {}}
for name, (m, k, n) in SHAPES.items():
    key = f"{m}x{k}@{k}x{n}"
    entry = {"models": [name], "flop": 2.0 * m * n * k, "gflops": {}}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        entry["gflops"][str(threads)] = rate(m, k, n)
    res["shapes"][name] = dict(entry, shape=key)
    print(f"{name:10} {key:18} {entry['gflops']['1']:7.1f} GFLOP/s on 1 thread, "
          f"{entry['gflops']['2']:7.1f} on 2", file=sys.stderr, flush=True)
print(json.dumps(res))
