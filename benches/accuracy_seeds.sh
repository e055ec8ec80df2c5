#!/usr/bin/env bash
# Trains `mnist_lstm` with several seeds, then (if a python with torch is found) the same model
# written out in PyTorch (benches/tutorial_torch.py), then (if a python with tensorflow is found)
# the TensorFlow tutorial itself run by TensorFlow (benches/tutorial_tf.py), with as many seeds
# each, and prints test accuracy on the first 128, the first 1280 and all 10000 test images for
# each run, with the means: how far one run's figure is from another's, and whether ours, a
# faithful port and the reference implementation agree on average.
#
#   benches/accuracy_seeds.sh [STEPS] [SEEDS]      (default: 800 0,1,2,3,4,5,6,7,8,9,10,11)
#
# About 20 s per run of ours, 20 s per PyTorch run and a minute per TensorFlow run on this
# project's 2-core machine.
# Environment: MNIST_DIR, TORCH_PYTHON and SHARED_DIR as for benches/compare.sh; TF_PYTHON, a
# python with tensorflow and tf_keras (default /tmp/tfenv/bin/python; set up with
# `python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf_keras`).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
steps=${1:-800}
seeds=${2:-0,1,2,3,4,5,6,7,8,9,10,11}

# shellcheck source=benches/shared_dir.sh
source "$root/benches/shared_dir.sh"
TORCH_PYTHON=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
TF_PYTHON=${TF_PYTHON:-/tmp/tfenv/bin/python}

cargo build --release --quiet --example mnist_lstm
echo "recurrent, mnist_lstm --steps $steps:"
ours=$(for seed in ${seeds//,/ }; do
    ./target/release/examples/mnist_lstm --steps "$steps" --seed "$seed" --test-limit 128,1280 \
        | awk -v seed="$seed" '
            /^test accuracy .*\(10000 images/ { all = $3 }
            /^test accuracy .*\(first 128 images/ { a128 = $3 }
            /^test accuracy .*\(first 1280 images/ { a1280 = $3 }
            END { printf "seed %d: first 128 %.2f%%, first 1280 %.2f%%, all %.2f%%\n",
                         seed, 100 * a128, 100 * a1280, 100 * all }'
done)
echo "$ours"
# Fields: seed S: first 128 A%, first 1280 B%, all C%
echo "$ours" | awk '
    { n++; a += $5; b += $8; c += $10 }
    END { printf "mean of %d seeds: first 128 %.2f%%, first 1280 %.2f%%, all %.2f%%\n",
                 n, a / n, b / n, c / n }'

if [[ -x "$TORCH_PYTHON" ]] && "$TORCH_PYTHON" -c 'import torch' 2>/dev/null; then
    echo "PyTorch, benches/tutorial_torch.py --steps $steps:"
    "$TORCH_PYTHON" benches/tutorial_torch.py --steps "$steps" --seeds "$seeds"
else
    echo "no python with torch at $TORCH_PYTHON: skipped the PyTorch runs"
fi

if [[ -x "$TF_PYTHON" ]] && "$TF_PYTHON" -c 'import tensorflow, tf_keras' 2>/dev/null; then
    echo "TensorFlow, benches/tutorial_tf.py --steps $steps:"
    "$TF_PYTHON" benches/tutorial_tf.py --steps "$steps" --seeds "$seeds"
else
    echo "no python with tensorflow and tf_keras at $TF_PYTHON: skipped the TensorFlow runs"
fi
