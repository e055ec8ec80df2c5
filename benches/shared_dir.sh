# Sourced by the bench scripts: sets and exports SHARED_DIR (the project's shared/ folder with
# bench/mnist_data.py: $SHARED_DIR if set, else the first `shared` folder beside the project root
# or one of its parents, else ../shared) and MNIST_DIR (default $SHARED_DIR/mnist). Needs $root.
if [[ -z "${SHARED_DIR:-}" ]]; then
    dir=$root
    while [[ "$dir" != / ]]; do
        dir=$(dirname "$dir")
        if [[ -f "$dir/shared/bench/mnist_data.py" ]]; then
            SHARED_DIR=$dir/shared
            break
        fi
    done
fi
export SHARED_DIR=${SHARED_DIR:-$root/../shared}
export MNIST_DIR=${MNIST_DIR:-$SHARED_DIR/mnist}
