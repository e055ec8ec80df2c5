"""What benches/tutorial_torch.py and benches/tutorial_tf.py share: their command line, and the
per-seed and mean test accuracies on the first 128, the first 1280 and all 10000 test images,
printed in one format (benches/accuracy_seeds.sh prints ours the same way)."""
import argparse

import numpy as np

LIMITS = (128, 1280)


def parse_args(description, default_threads):
    """--steps (default 800), --seeds (default 0,1,2), --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=default_threads)
    return parser.parse_args()


def accuracies(hits):
    """[first 128, first 1280, all] from one 0/1 hit per test image, in test-set order."""
    hits = np.asarray(hits, dtype=np.float64)
    return [hits[:n].mean() for n in LIMITS] + [hits.mean()]


def report(train_and_test, args):
    """Runs train_and_test(seed, steps) -> accuracies(...) for every seed, printing each and
    the means."""
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        rows.append(train_and_test(seed, args.steps))
        print("seed %d: first 128 %.2f%%, first 1280 %.2f%%, all %.2f%%"
              % ((seed,) + tuple(100 * a for a in rows[-1])), flush=True)
    mean = np.mean(rows, axis=0) * 100
    print("mean of %d seeds: first 128 %.2f%%, first 1280 %.2f%%, all %.2f%%"
          % ((len(rows),) + tuple(mean)))
