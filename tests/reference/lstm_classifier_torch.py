"""Writes lstm_classifier_trajectory.json: a few training steps of the MNIST tutorial's model
(BasicLSTMCell with forget_bias 1.0 over every step, the last output -> dense -> softmax
cross-entropy, TensorFlow 1.x's Adam) computed by PyTorch's autograd in float64, on a small random
problem. tests/reference.rs trains the same model with `recurrent` from the same start and checks
every loss and the final parameters against these values.

Run from the repository root (needs numpy and torch):
    python3 tests/reference/lstm_classifier_torch.py
"""
import json
import math
import os

import numpy as np
import torch

# A batch of 66 is split into two shards of 33 by the LSTM kernel, so the cross-shard sums of
# the weight gradients are covered too.
BATCH, TIME, INPUT, UNITS, CLASSES, STEPS = 66, 5, 3, 6, 3, 6
FORGET_BIAS = 1.0
LEARNING_RATE, BETA1, BETA2, EPSILON = 0.01, 0.9, 0.999, 1e-8

rng = np.random.RandomState(2026)
# Glorot-uniform kernel as TensorFlow initialises it; a random (not zero) bias so that its
# gradient path is exercised from the first step; the tutorial's N(0, 1) output layer.
limit = math.sqrt(6.0 / (INPUT + UNITS + 4 * UNITS))
start = {
    "kernel": rng.uniform(-limit, limit, (INPUT + UNITS, 4 * UNITS)),
    "bias": rng.uniform(-0.1, 0.1, (4 * UNITS,)),
    "dense_kernel": rng.randn(UNITS, CLASSES),
    "dense_bias": rng.randn(CLASSES),
}
batches = [
    # Inputs are bytes scaled to [0, 1] like MNIST's pixels (and short to store).
    {"x_bytes": rng.randint(0, 256, (BATCH, TIME, INPUT)), "labels": rng.randint(0, CLASSES, BATCH)}
    for _ in range(STEPS)
]

params = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True)
          for name, value in start.items()}


def logits(x):
    # TensorFlow's BasicLSTMCell: [i, j, f, o] = split(concat([x, h]) @ kernel + bias, 4).
    c = torch.zeros(x.shape[0], UNITS, dtype=torch.float64)
    h = torch.zeros(x.shape[0], UNITS, dtype=torch.float64)
    for t in range(x.shape[1]):
        z = torch.cat([x[:, t, :], h], dim=1) @ params["kernel"] + params["bias"]
        i, j, f, o = z.split(UNITS, dim=1)
        c = c * torch.sigmoid(f + FORGET_BIAS) + torch.sigmoid(i) * torch.tanh(j)
        h = torch.tanh(c) * torch.sigmoid(o)
    return h @ params["dense_kernel"] + params["dense_bias"]


# TensorFlow 1.x AdamOptimizer: lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t),
# var -= lr_t * m / (sqrt(v) + epsilon) (epsilon outside the bias correction, unlike torch.optim).
m = {name: torch.zeros_like(p) for name, p in params.items()}
v = {name: torch.zeros_like(p) for name, p in params.items()}
losses = []
for step, batch in enumerate(batches, start=1):
    x = torch.tensor(batch["x_bytes"], dtype=torch.float64) / 255.0
    y = torch.tensor(batch["labels"], dtype=torch.int64)
    loss = torch.nn.functional.cross_entropy(logits(x), y)  # mean over the batch
    for p in params.values():
        p.grad = None
    loss.backward()
    losses.append(loss.item())
    with torch.no_grad():
        lr_t = LEARNING_RATE * math.sqrt(1 - BETA2 ** step) / (1 - BETA1 ** step)
        for name, p in params.items():
            m[name].mul_(BETA1).add_(p.grad, alpha=1 - BETA1)
            v[name].mul_(BETA2).addcmul_(p.grad, p.grad, value=1 - BETA2)
            p.sub_(lr_t * m[name] / (v[name].sqrt() + EPSILON))


def flat(a):
    return [float(value) for value in np.asarray(a).reshape(-1)]


out = {
    "generator": "tests/reference/lstm_classifier_torch.py, torch " + torch.__version__,
    "batch": BATCH, "time": TIME, "input": INPUT, "units": UNITS, "classes": CLASSES,
    "forget_bias": FORGET_BIAS, "learning_rate": LEARNING_RATE,
    "start": {name: flat(value) for name, value in start.items()},
    "batches": [{"x_bytes": [int(v) for v in b["x_bytes"].reshape(-1)],
                 "labels": [int(label) for label in b["labels"]]} for b in batches],
    "losses": losses,
    "final": {name: flat(p.detach().numpy()) for name, p in params.items()},
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_classifier_trajectory.json")
with open(path, "w") as f:
    json.dump(out, f)
    f.write("\n")
print("wrote", path, "losses", losses)
