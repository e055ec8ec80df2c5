"""Inference latency of lstm128 in PyTorch (`torch.inference_mode`) and ONNX Runtime, for
benches/latency.sh.

    python benches/latency_torch.py > latency_torch.json

The model is shared/bench/torch_models.py's lstm128 (nn.LSTM(28, 128) + Linear(128, 10) on the
last output, seeded weights); ONNX Runtime runs it exported from PyTorch (`torch.onnx.export`,
opset 17, dynamic batch), with the CPU execution provider. Both on 2 threads (intra-op; ORT's
inter-op 1, sequential execution). For batch 1 and batch 128 of 28 steps of 28 inputs: the
median and the best of 200 calls (batch 1) or 50 calls (batch 128) after 20 warm-up calls, in
milliseconds. Prints JSON {"torch": {..}, "onnxruntime": {..}} with "b1" and "b128" entries.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

shared = os.environ.get("SHARED_BENCH", os.path.join(os.environ.get("SHARED_DIR", ""), "bench"))
sys.path.insert(0, shared)
from torch_models import make  # noqa: E402

THREADS = 2
CALLS = {1: 200, 128: 50}
WARM = 20


def timed(f, calls):
    for _ in range(WARM):
        f()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "calls": calls}


torch.set_num_threads(THREADS)
torch.manual_seed(0)
model = make("lstm128").eval()
rng = np.random.RandomState(7)
inputs = {b: rng.rand(b, 28, 28).astype(np.float32) for b in CALLS}
res = {"threads": THREADS, "torch_version": torch.__version__, "torch": {}, "onnxruntime": {}}
for b, x in inputs.items():
    xt = torch.from_numpy(x)

    def run_torch():
        with torch.inference_mode():
            return model(xt)

    res["torch"][f"b{b}"] = timed(run_torch, CALLS[b])
    print(f"torch        batch {b:3}: {res['torch'][f'b{b}']}", file=sys.stderr, flush=True)

try:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "lstm128.onnx")
        torch.onnx.export(model, (torch.from_numpy(inputs[1]),), path, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}},
                          opset_version=17, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    res["onnxruntime_version"] = ort.__version__
    for b, x in inputs.items():
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"x": x})[0]
        assert np.abs(got - want).max() < 1e-4, "ONNX Runtime disagrees with PyTorch"
        res["onnxruntime"][f"b{b}"] = timed(lambda: sess.run(None, {"x": x}), CALLS[b])
        print(f"onnxruntime  batch {b:3}: {res['onnxruntime'][f'b{b}']}", file=sys.stderr,
              flush=True)
except ImportError as e:
    print(f"onnxruntime skipped: {e}", file=sys.stderr)
print(json.dumps(res))
