"""Writes gru_reset_after_reference.json: outputs and gradients of a real PyTorch `nn.GRU`
(two layers, bidirectional, packed sequences of several lengths, an initial state) and of a real
Keras `GRU(reset_after=True)` layer, with their weights as each framework stores them.
tests/reference.rs loads those weights into `recurrent`'s reset_after `GruCell` through
`recurrent::convert` and checks the outputs (float64 and float32) and the float64 gradients.

Run from the repository root (needs numpy, torch, and tensorflow for the Keras part):
    python3 tests/reference/gru_reset_after_torch_keras.py
The Keras part is skipped with a message when TensorFlow is not installed. The committed JSON
was written by torch 2.15.0 and tensorflow 2.21.0 (keras 3.15.1, CPU) in one interpreter: a
torch venv with a tensorflow-cpu venv's site-packages on PYTHONPATH.
"""
import json
import os

import numpy as np
import torch

BATCH, TIME, INPUT, UNITS, LAYERS = 4, 5, 3, 4, 2
LENGTHS = [5, 2, 4, 1]

rng = np.random.RandomState(2027)


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def entry(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "data": flat(a)}


# ---- PyTorch nn.GRU --------------------------------------------------------------------------
torch.manual_seed(2027)
gru64 = torch.nn.GRU(INPUT, UNITS, num_layers=LAYERS, bidirectional=True, batch_first=True,
                     dtype=torch.float64)
with torch.no_grad():
    # PyTorch's default init (uniform in +-1/sqrt(H)) but wider, so the gates are not all near
    # 0.5 and every bias (both of them) matters.
    for p in gru64.parameters():
        p.uniform_(-0.8, 0.8)
x = rng.uniform(-1.0, 1.0, (BATCH, TIME, INPUT))
h0 = rng.uniform(-0.5, 0.5, (LAYERS * 2, BATCH, UNITS))
# The gradient of sum(outputs * d_out) + sum(h_n * d_hn).
d_out = rng.uniform(-1.0, 1.0, (BATCH, TIME, 2 * UNITS))
d_hn = rng.uniform(-1.0, 1.0, (LAYERS * 2, BATCH, UNITS))


def run_torch(gru, dtype, grads):
    xt = torch.tensor(x, dtype=dtype, requires_grad=grads)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, LENGTHS, batch_first=True,
                                                     enforce_sorted=False)
    out, hn = gru(packed, torch.tensor(h0, dtype=dtype))
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=TIME)
    result = {"outputs": entry(out.detach().numpy()), "h_n": entry(hn.detach().numpy())}
    if grads:
        loss = (out * torch.tensor(d_out, dtype=dtype)).sum() + \
            (hn * torch.tensor(d_hn, dtype=dtype)).sum()
        gru.zero_grad()
        loss.backward()
        result["grads"] = {name: entry(p.grad.numpy()) for name, p in gru.named_parameters()}
        result["grads"]["x"] = entry(xt.grad.numpy())
    return result


gru32 = torch.nn.GRU(INPUT, UNITS, num_layers=LAYERS, bidirectional=True, batch_first=True)
gru32.load_state_dict({k: v.float() for k, v in gru64.state_dict().items()})
torch_part = {
    "generator": "torch " + torch.__version__,
    "state_dict": {k: entry(v.numpy()) for k, v in gru64.state_dict().items()},
    "f64": run_torch(gru64, torch.float64, True),
    "f32": run_torch(gru32, torch.float32, False),
}

out = {
    "generator": "tests/reference/gru_reset_after_torch_keras.py",
    "batch": BATCH, "time": TIME, "input": INPUT, "units": UNITS, "layers": LAYERS,
    "lengths": LENGTHS,
    "x": entry(x), "h0": entry(h0), "d_out": entry(d_out), "d_hn": entry(d_hn),
    "torch": torch_part,
}

# ---- Keras GRU(reset_after=True) ---------------------------------------------------------------
try:
    import tensorflow as tf
except ImportError:
    tf = None
    print("TensorFlow is not installed: the Keras part is not written")

if tf is not None:
    kernel = rng.uniform(-0.8, 0.8, (INPUT, 3 * UNITS))
    recurrent_kernel = rng.uniform(-0.8, 0.8, (UNITS, 3 * UNITS))
    bias = rng.uniform(-0.8, 0.8, (2, 3 * UNITS))
    h0_keras = rng.uniform(-0.5, 0.5, (BATCH, UNITS))
    d_seq = rng.uniform(-1.0, 1.0, (BATCH, TIME, UNITS))
    d_state = rng.uniform(-1.0, 1.0, (BATCH, UNITS))

    def run_keras(dtype, grads):
        layer = tf.keras.layers.GRU(UNITS, reset_after=True, return_sequences=True,
                                    return_state=True, dtype=dtype)
        xs = tf.constant(x, dtype=dtype)
        layer(xs, initial_state=tf.constant(h0_keras, dtype=dtype))  # builds the weights
        layer.set_weights([kernel.astype(dtype), recurrent_kernel.astype(dtype),
                           bias.astype(dtype)])
        with tf.GradientTape() as tape:
            tape.watch(xs)
            seq, state = layer(xs, initial_state=tf.constant(h0_keras, dtype=dtype))
            loss = tf.reduce_sum(seq * tf.constant(d_seq, dtype=dtype)) + \
                tf.reduce_sum(state * tf.constant(d_state, dtype=dtype))
        result = {"outputs": entry(seq.numpy()), "state": entry(state.numpy())}
        if grads:
            names = ["kernel", "recurrent_kernel", "bias"]
            g = tape.gradient(loss, [layer.cell.kernel, layer.cell.recurrent_kernel,
                                     layer.cell.bias, xs])
            result["grads"] = {n: entry(np.asarray(v)) for n, v in zip(names + ["x"], g)}
        return result

    out["keras"] = {
        "generator": "tensorflow " + tf.__version__ + ", keras " + tf.keras.__version__,
        "weights": {"kernel": entry(kernel), "recurrent_kernel": entry(recurrent_kernel),
                    "bias": entry(bias)},
        "h0": entry(h0_keras), "d_outputs": entry(d_seq), "d_state": entry(d_state),
        "f64": run_keras("float64", True),
        "f32": run_keras("float32", False),
    }

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gru_reset_after_reference.json")
with open(path, "w") as f:
    json.dump(out, f)
    f.write("\n")
print("wrote", path)
