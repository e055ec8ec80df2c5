"""The char_rnn example's model written out in PyTorch, on the same data pipeline, as the
reference for quality (validation bits per character) and speed (ms per training step).

Data, as recurrent::data does it:
- the text is read as UTF-8 (gzip recognised by its first two bytes), malformed bytes an error
  naming the byte offset;
- vocabulary (CharVocab): id 0 padding, id 1 unknown, then the distinct characters of the whole
  text in ascending code point order;
- split (split_train_validation): the first int(n * 0.9) characters train, the rest validate;
- batches (LmBatcher, TensorFlow's ptb_producer): the ids cut into `batch` rows of
  n // batch tokens, batch i of an epoch is columns [i * steps, (i + 1) * steps) with the targets
  shifted by one, (batch_len - 1) // steps batches per epoch; the state is carried (and detached)
  from each batch to the next and reset to zero at the start of each epoch;
- validation (LmBatcher::evaluation_batches): the validation ids in `batch` rows, every target of
  every row once (the last window narrower), the state carried throughout.

Model: embedding 64, two stacked LSTM(256), a dense layer to the vocabulary at every step, mean
softmax cross-entropy; Adam (learning rate 0.002), gradients clipped to global norm 5; batch 32,
64 steps. Initialised as recurrent's layers are (TensorFlow's defaults: Glorot-uniform LSTM
kernels over [input + units, 4 units], zero biases with forget bias 1.0, Glorot-uniform dense
kernel, embedding uniform in [-0.05, 0.05]); --torch-init keeps PyTorch's own initialisation.

    python3 benches/char_rnn_torch.py [--text FILE] [--steps 1500] [--seed 0] [--threads 2]

prints the training loss in bits per character every --log-every steps, then
`validation bits per character: X.XXX` and `ms per training step: X.X`. Don't run the full
1500 steps on a shared machine unless that is the measurement.
"""
import argparse
import gzip
import math
import os
import statistics
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_DIR = os.environ.get("SHARED_DIR", os.path.join(HERE, "..", "..", "shared"))
DEFAULT_TEXT = os.path.join(SHARED_DIR, "text", "shakespeare_plays.txt.gz")

PAD_ID, UNK_ID, FIRST_CHAR_ID = 0, 1, 2
TRAIN_FRACTION = 0.9


def read_text(path):
    """UTF-8 text, plain or gzip (by the magic bytes 1f 8b), as recurrent::data::read_text."""
    with open(path, "rb") as f:
        data = f.read()
    gzipped = data[:2] == b"\x1f\x8b"
    if gzipped:
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = " of the decompressed text" if gzipped else ""
        sys.exit(f"{path}: invalid UTF-8 at byte offset {e.start}{where}")


def build_vocab(text):
    """CharVocab::from_text: padding 0, unknown 1, then the characters by code point."""
    chars = sorted(set(text))
    return chars, {c: k + FIRST_CHAR_ID for k, c in enumerate(chars)}


def vocab_text_form(chars):
    """CharVocab's Display form, to compare with the Rust side's `vocab.to_string()`."""
    return "char-vocab/1 pad=0 unk=1 chars=" + ",".join(f"{ord(c):x}" for c in chars)


def split_train_validation(ids, fraction=TRAIN_FRACTION):
    n_train = int(len(ids) * fraction)
    return ids[:n_train], ids[n_train:]


def ptb_rows(ids, batch, num_steps):
    """LmBatcher::new: `batch` rows of len(ids) // batch tokens."""
    batch_len = len(ids) // batch
    if (batch_len - 1) // num_steps == 0:
        sys.exit(f"{len(ids)} tokens are too few for batch {batch} and num_steps {num_steps}")
    return torch.tensor(ids[: batch * batch_len], dtype=torch.long).view(batch, batch_len)


def training_batches(rows, num_steps):
    """LmBatcher::next_batch forever: (inputs, targets, reset_state)."""
    epoch_size = (rows.shape[1] - 1) // num_steps
    while True:
        for i in range(epoch_size):
            s = i * num_steps
            yield rows[:, s : s + num_steps], rows[:, s + 1 : s + num_steps + 1], i == 0


def evaluation_batches(rows, num_steps):
    """LmBatcher::evaluation_batches: every target of every row once."""
    targets = rows.shape[1] - 1
    for s in range(0, targets, num_steps):
        w = min(num_steps, targets - s)
        yield rows[:, s : s + w], rows[:, s + 1 : s + w + 1]


def glorot_uniform_(t, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        t.uniform_(-limit, limit)


class CharRnn(nn.Module):
    def __init__(self, vocab, embedding=64, units=256, layers=2, tf_init=True):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, units, num_layers=layers, batch_first=True)
        self.dense = nn.Linear(units, vocab)
        if tf_init:
            self.tf_init(embedding, units, layers)

    def tf_init(self, embedding, units, layers):
        with torch.no_grad():
            self.embedding.weight.uniform_(-0.05, 0.05)
            for layer in range(layers):
                inputs = embedding if layer == 0 else units
                # TensorFlow's kernel [inputs + units, 4 units] is one Glorot-uniform matrix:
                # both PyTorch halves get its limit.
                for name in (f"weight_ih_l{layer}", f"weight_hh_l{layer}"):
                    glorot_uniform_(getattr(self.lstm, name), inputs + units, 4 * units)
                getattr(self.lstm, f"bias_ih_l{layer}").zero_()
                getattr(self.lstm, f"bias_hh_l{layer}").zero_()
                # PyTorch's gates are i, f, g, o: the forget bias is the second quarter.
                getattr(self.lstm, f"bias_ih_l{layer}")[units : 2 * units] = 1.0
            glorot_uniform_(self.dense.weight, units, self.dense.out_features)
            self.dense.bias.zero_()

    def forward(self, x, state=None):
        out, state = self.lstm(self.embedding(x), state)
        return self.dense(out), state


def bits(loss_nats):
    return loss_nats / math.log(2.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--num-steps", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.002)
    p.add_argument("--clip-norm", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--torch-init", action="store_true", help="PyTorch's default initialisation")
    p.add_argument(
        "--max-validation-chars",
        type=int,
        default=0,
        help="evaluate on only the first N validation characters (0: all; for quick checks)",
    )
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    text = read_text(args.text)
    chars, ids_of = build_vocab(text)
    vocab = len(chars) + FIRST_CHAR_ID
    ids = [ids_of[c] for c in text]
    train_ids, valid_ids = split_train_validation(ids)
    if args.max_validation_chars > 0:
        valid_ids = valid_ids[: args.max_validation_chars]
    train_rows = ptb_rows(train_ids, args.batch, args.num_steps)
    valid_rows = ptb_rows(valid_ids, args.batch, args.num_steps)
    print(
        f"text {args.text}: {len(ids)} characters, vocabulary {vocab} ({len(chars)} characters "
        f"+ padding + unknown), train {len(train_ids)}, validation {len(valid_ids)}; "
        f"epoch of {(train_rows.shape[1] - 1) // args.num_steps} batches; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, seed {args.seed}",
        flush=True,
    )
    print(f"vocabulary: {vocab_text_form(chars)}", flush=True)

    model = CharRnn(vocab, tf_init=not args.torch_init)
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    batches = training_batches(train_rows, args.num_steps)
    state = None
    times, recent = [], []
    model.train()
    for step in range(1, args.steps + 1):
        x, y, reset = next(batches)
        t0 = time.perf_counter()
        if reset:
            state = None
        else:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = loss_fn(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
        opt.step()
        times.append(time.perf_counter() - t0)
        recent.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            print(
                f"step {step:5d}  training loss {bits(sum(recent) / len(recent)):.3f} bits/char",
                flush=True,
            )
            recent = []

    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in evaluation_batches(valid_rows, args.num_steps):
            logits, state = model(x, state)
            total += nn.functional.cross_entropy(
                logits.reshape(-1, vocab), y.reshape(-1), reduction="sum"
            ).item()
            count += y.numel()
    print(f"validation bits per character: {bits(total / count):.3f}  ({count} characters)")
    timed = times[min(5, len(times) - 1) :]  # the first steps warm up the allocator
    print(
        f"ms per training step: {1000 * statistics.median(timed):.1f} "
        f"(median of {len(timed)} steps after warm-up; mean {1000 * statistics.mean(timed):.1f})"
    )


if __name__ == "__main__":
    main()
