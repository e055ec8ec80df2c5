"""shared/bench/bench_torch.py with one more model, `gru128`, for benches/compare.sh.

    python benches/torch_bench.py [lstm128] [bilstm256] [multi3] [gru128] [gru128ra]

`gru128` is nn.GRU(28, 128, batch_first=True) + Linear(128, 10) on the last output, the PyTorch
side of benches/compare.rs's gru128. PyTorch's GRU applies the reset gate after the recurrent
product (`n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`), TensorFlow 1.x's GRUCell before it
(`c = tanh([x, r * h] @ W_c + b_c)`): the two models have the same size and the same matrix
products per step, but are not the same function. `gru128ra` is the same PyTorch model, timed
again under the name of benches/compare.rs's `gru128ra` (our GruCell with reset_after), which
is PyTorch's function. The other models come unchanged from
shared/bench/torch_models.py; the timing protocol is bench_torch.py's, run as it is.
"""
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
shared = os.environ.get("SHARED_BENCH", os.path.join(os.environ.get("SHARED_DIR", ""), "bench"))
sys.path.insert(0, shared)
import torch.nn as nn  # noqa: E402

import torch_models  # noqa: E402


class GRUClassifier(nn.Module):
    """'gru128': nn.GRU(28, 128, batch_first=True) + Linear(128, 10) on the last step's output."""

    def __init__(self, hidden=128):
        super().__init__()
        self.gru = nn.GRU(28, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.fc(out[:, -1, :])


_make = torch_models.make


def make(name):
    if name in ("gru128", "gru128ra"):
        return GRUClassifier(128)
    return _make(name)


torch_models.make = make
sys.argv = [os.path.join(shared, "bench_torch.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
