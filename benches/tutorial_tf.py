"""The TensorFlow 1.x tutorial that the mnist_lstm example follows, run by TensorFlow itself
(TensorFlow 2 in graph mode through tf.compat.v1), to see what the reference implementation
reaches with the same settings over several seeds.

The tutorial's model as it wrote it: tf.unstack(x, 28, 1) -> static_rnn(BasicLSTMCell(128,
forget_bias=1.0)) -> outputs[-1] @ W + b with W and b from tf.random_normal, mean
softmax_cross_entropy_with_logits, AdamOptimizer(0.001), batches of 128 from
shared/bench/mnist_data.py (TensorFlow's read_data_sets split and next_batch), float32. Every
initialiser, gradient and update is TensorFlow's own. A seed sets tf.set_random_seed, Python's
random (where Keras's initialisers take their seeds) and the batch order, and op determinism is
on, so a seed gives one run.

    benches/tutorial_tf.py [--steps 800] [--seeds 0,1,2]

prints, per seed, test accuracy on the first 128, the first 1280 and all 10000 test images, then
the means (benches/seed_runs.py). benches/accuracy_seeds.sh runs it beside the example when
$TF_PYTHON has tensorflow and tf_keras.
"""
import os
import random
import sys
import warnings

# Quiet: no C++ log lines, no search for a GPU, no deprecation notices (errors still raise).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# BasicLSTMCell and static_rnn live on in tf_keras (Keras 2); Keras 3 dropped them.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

SHARED_DIR = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "..", "..", "shared"))
sys.path.insert(0, os.path.join(SHARED_DIR, "bench"))
import mnist_data  # noqa: E402
import seed_runs  # noqa: E402  (beside this script)

UNITS, STEPS_PER_IMAGE, INPUT, CLASSES, BATCH = 128, 28, 28, 10, 128

v1 = tf.compat.v1
tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message=".*is deprecated", category=UserWarning)


def train_and_test(seed, steps):
    data = mnist_data.read_data_sets(one_hot=True, seed=seed)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        # Keras's initialisers (BasicLSTMCell's Glorot kernel) draw their own seed from Python's
        # global generator when given none.
        random.seed(seed)
        x = v1.placeholder(tf.float32, [None, STEPS_PER_IMAGE, INPUT])
        y = v1.placeholder(tf.float32, [None, CLASSES])
        weights = tf.Variable(v1.random_normal([UNITS, CLASSES]))
        biases = tf.Variable(v1.random_normal([CLASSES]))
        inputs = tf.unstack(x, STEPS_PER_IMAGE, 1)
        cell = v1.nn.rnn_cell.BasicLSTMCell(UNITS, forget_bias=1.0)
        outputs, _ = v1.nn.static_rnn(cell, inputs, dtype=tf.float32)
        logits = tf.matmul(outputs[-1], weights) + biases
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=y))
        train = v1.train.AdamOptimizer(learning_rate=0.001).minimize(loss)
        correct = tf.equal(tf.argmax(logits, 1), tf.argmax(y, 1))
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            for _ in range(steps):
                images, labels = data.train.next_batch(BATCH)
                session.run(train, {x: images.reshape(-1, STEPS_PER_IMAGE, INPUT), y: labels})
            hits = session.run(correct, {
                x: data.test.images.reshape(-1, STEPS_PER_IMAGE, INPUT),
                y: data.test.labels,
            })
    return seed_runs.accuracies(hits)


def main():
    args = seed_runs.parse_args(__doc__.split("\n\n")[0], default_threads=2)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    # Deterministic kernels, so that with the seeds set in train_and_test a seed is one run.
    tf.config.experimental.enable_op_determinism()
    seed_runs.report(train_and_test, args)


if __name__ == "__main__":
    main()
