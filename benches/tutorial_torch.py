"""The mnist_lstm example's model, written out in PyTorch as TensorFlow 1.x's tutorial defines it,
to see what a faithful implementation reaches when trained on the same settings with other seeds.

BasicLSTMCell(128, forget_bias 1.0) with TensorFlow's initialisers (Glorot-uniform kernel over
[input + units, 4 units], gate order i, j, f, o, zero bias), the last output -> dense with weights
and biases drawn from N(0, 1) (the tutorial's tf.random_normal), mean softmax cross-entropy,
TensorFlow 1.x's Adam (learning rate 0.001, epsilon outside the bias correction), batches of 128
from shared/bench/mnist_data.py (TensorFlow's read_data_sets split and next_batch), float32.

    benches/tutorial_torch.py [--steps 800] [--seeds 0,1,2]

prints, per seed, test accuracy on the first 128, the first 1280 and all 10000 test images, then
the means. benches/accuracy_seeds.sh runs it beside the example.
"""
import math
import os
import sys

import numpy as np
import torch

SHARED_DIR = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "..", "..", "shared"))
sys.path.insert(0, os.path.join(SHARED_DIR, "bench"))
import mnist_data  # noqa: E402
import seed_runs  # noqa: E402  (beside this script)

UNITS, INPUT, CLASSES, BATCH = 128, 28, 10, 128


def train_and_test(seed, steps):
    rng = np.random.RandomState(seed)
    data = mnist_data.read_data_sets(one_hot=False, seed=seed)
    limit = math.sqrt(6.0 / (INPUT + UNITS + 4 * UNITS))
    params = [
        torch.tensor(rng.uniform(-limit, limit, (INPUT + UNITS, 4 * UNITS)).astype(np.float32)),
        torch.zeros(4 * UNITS),
        torch.tensor(rng.randn(UNITS, CLASSES).astype(np.float32)),
        torch.tensor(rng.randn(CLASSES).astype(np.float32)),
    ]
    for p in params:
        p.requires_grad_(True)
    kernel, bias, out_kernel, out_bias = params

    def logits(x):
        c = torch.zeros(x.shape[0], UNITS)
        h = torch.zeros(x.shape[0], UNITS)
        for t in range(x.shape[1]):
            i, j, f, o = (torch.cat([x[:, t, :], h], 1) @ kernel + bias).split(UNITS, 1)
            c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)
            h = torch.tanh(c) * torch.sigmoid(o)
        return h @ out_kernel + out_bias

    lr, beta1, beta2, epsilon = 0.001, 0.9, 0.999, 1e-8
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for step in range(1, steps + 1):
        images, labels = data.train.next_batch(BATCH)
        x = torch.from_numpy(images.reshape(-1, 28, INPUT))
        loss = torch.nn.functional.cross_entropy(logits(x), torch.from_numpy(labels))
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            lr_t = lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
            for k, p in enumerate(params):
                m[k].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v[k].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                p.sub_(lr_t * m[k] / (v[k].sqrt() + epsilon))
    with torch.no_grad():
        x = torch.from_numpy(data.test.images.reshape(-1, 28, INPUT))
        correct = logits(x).argmax(1) == torch.from_numpy(data.test.labels)
    return seed_runs.accuracies(correct.numpy())


def main():
    args = seed_runs.parse_args(__doc__.split("\n\n")[0], default_threads=1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    seed_runs.report(train_and_test, args)


if __name__ == "__main__":
    main()
