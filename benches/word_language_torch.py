"""The word_language example's model written out in PyTorch, on the same words, as the reference
for quality (test accuracy) and speed (ms per training step).

Data, as recurrent::data::WordLanguages does it (the same words for the same seed):
- the eight Debian word lists in /usr/share/dict (UTF-8; wswedish is ISO-8859-1);
- cleaning (clean_words): each line trimmed and lowercased, kept only if non-empty and all
  letters, repeats dropped (the first kept);
- drawing (select_words): the words ordered by word_key (FNV-1a 64 of the UTF-8 bytes, mixed
  with the seed by SplitMix64; ties by the bytes), the first --words-per-language taken;
- split: the first int(n * 0.9) of each language's draw train, the rest test;
- vocabulary (CharVocab): id 0 padding, id 1 unknown, then the characters of the training words
  in ascending code point order.

Model: characters embedded (32), LSTM(128) run on each word's true length
(pack_padded_sequence), its last valid output (the final state h_n), dense to the 8 languages,
mean softmax cross-entropy; Adam (learning rate 0.001), batch 64, 5 epochs, reshuffled each epoch
(torch's generator, seeded). --bidirectional concatenates the final states of both directions
(the backward one has read the whole word). Initialised as recurrent's layers are (Glorot-uniform
LSTM kernel over [input + units, 4 units], zero biases, forget bias 1.0, Glorot-uniform dense,
embedding uniform in [-0.05, 0.05]); --torch-init keeps PyTorch's own initialisation.

    python3 benches/word_language_torch.py [--epochs 5] [--seed 0] [--bidirectional]

prints the training loss per epoch, then `test accuracy: X.XXXX`, a confusion matrix and
`ms per training step: X.X`. If a list is missing it says which apt-get command installs them.
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
from torch import nn

DICT_DIR = "/usr/share/dict"
# (language, Debian package, file, encoding Debian ships it in): recurrent::data::WORD_LISTS.
WORD_LISTS = [
    ("English", "wamerican", "american-english", "utf-8"),
    ("German", "wngerman", "ngerman", "utf-8"),
    ("French", "wfrench", "french", "utf-8"),
    ("Spanish", "wspanish", "spanish", "utf-8"),
    ("Italian", "witalian", "italian", "utf-8"),
    ("Dutch", "wdutch", "dutch", "utf-8"),
    ("Portuguese", "wportuguese", "portuguese", "utf-8"),
    ("Swedish", "wswedish", "swedish", "latin-1"),
]
APT_GET = "sudo apt-get install " + " ".join(p for _, p, _, _ in WORD_LISTS)
PAD_ID, UNK_ID, FIRST_CHAR_ID = 0, 1, 2
TRAIN_FRACTION = 0.9
MASK = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def word_key(word, seed):
    """recurrent::data::word_key."""
    h = 0xCBF29CE484222325
    for b in word.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return splitmix64(h ^ splitmix64(seed))


def clean_words(text):
    """recurrent::data::clean_words (lines split at \\n, a trailing \\r dropped)."""
    seen, words = set(), []
    for line in text.split("\n"):
        w = line.strip().lower()
        if w and w.isalpha() and w not in seen:
            seen.add(w)
            words.append(w)
    return words


def read_word_list(directory, language, package, file, encoding):
    path = os.path.join(directory, file)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        sys.exit(
            f"the {language} word list {path} is missing (Debian package {package}); install the "
            f"word lists with: {APT_GET}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if encoding != "latin-1":
            sys.exit(f"{path}: invalid UTF-8 at byte offset {e.start}")
        text = data.decode("latin-1")
    return clean_words(text)


def load(directory, per_language, seed):
    train, test = [], []
    for label, (language, package, file, encoding) in enumerate(WORD_LISTS):
        words = read_word_list(directory, language, package, file, encoding)
        if len(words) < per_language:
            sys.exit(f"{file} has {len(words)} distinct words, fewer than {per_language}")
        chosen = sorted(words, key=lambda w: (word_key(w, seed), w.encode("utf-8")))[:per_language]
        n_train = int(len(chosen) * TRAIN_FRACTION)
        train += [(w, label) for w in chosen[:n_train]]
        test += [(w, label) for w in chosen[n_train:]]
    return train, test


def encode(pairs, ids_of):
    seqs = [torch.tensor([ids_of.get(c, UNK_ID) for c in w], dtype=torch.long) for w, _ in pairs]
    labels = torch.tensor([l for _, l in pairs], dtype=torch.long)
    return seqs, labels


def pad_batch(seqs, idx):
    """A batch padded with PAD_ID to its longest word, with the lengths."""
    chosen = [seqs[i] for i in idx]
    lengths = torch.tensor([len(s) for s in chosen], dtype=torch.long)
    x = nn.utils.rnn.pad_sequence(chosen, batch_first=True, padding_value=PAD_ID)
    return x, lengths


def glorot_uniform_(t, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        t.uniform_(-limit, limit)


class WordLanguage(nn.Module):
    def __init__(self, vocab, classes, embedding=32, units=128, bidirectional=False, tf_init=True):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, units, batch_first=True, bidirectional=bidirectional)
        self.dense = nn.Linear(units * (2 if bidirectional else 1), classes)
        if tf_init:
            with torch.no_grad():
                self.embedding.weight.uniform_(-0.05, 0.05)
                for suffix in ["", "_reverse"] if bidirectional else [""]:
                    for name in ("weight_ih_l0", "weight_hh_l0"):
                        glorot_uniform_(getattr(self.lstm, name + suffix), embedding + units, 4 * units)
                    getattr(self.lstm, "bias_ih_l0" + suffix).zero_()
                    getattr(self.lstm, "bias_hh_l0" + suffix).zero_()
                    # gates i, f, g, o: the forget bias is the second quarter
                    getattr(self.lstm, "bias_ih_l0" + suffix)[units : 2 * units] = 1.0
                glorot_uniform_(self.dense.weight, self.dense.in_features, classes)
                self.dense.bias.zero_()

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(x), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)  # h: [directions, batch, units] at each word's last step
        return self.dense(torch.cat(list(h), dim=1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dict-dir", default=DICT_DIR)
    p.add_argument("--words-per-language", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: all epochs)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--torch-init", action="store_true", help="PyTorch's default initialisation")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    train, test = load(args.dict_dir, args.words_per_language, args.seed)
    chars = sorted({c for w, _ in train for c in w})
    ids_of = {c: k + FIRST_CHAR_ID for k, c in enumerate(chars)}
    vocab = len(chars) + FIRST_CHAR_ID
    train_x, train_y = encode(train, ids_of)
    test_x, test_y = encode(test, ids_of)
    classes = len(WORD_LISTS)
    print(
        f"{len(train)} training and {len(test)} test words in {classes} languages, vocabulary "
        f"{vocab}; torch {torch.__version__}, {torch.get_num_threads()} threads, seed {args.seed}",
        flush=True,
    )

    model = WordLanguage(vocab, classes, bidirectional=args.bidirectional, tf_init=not args.torch_init)
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    times, step = [], 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=gen).tolist()
        losses = []
        for start in range(0, len(order), args.batch):
            idx = order[start : start + args.batch]
            x, lengths = pad_batch(train_x, idx)
            y = train_y[idx]
            t0 = time.perf_counter()
            loss = loss_fn(model(x, lengths), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
            losses.append(loss.item())
            step += 1
            if args.max_steps and step >= args.max_steps:
                break
        print(f"epoch {epoch}: training loss {sum(losses) / len(losses):.4f} ({len(losses)} steps)", flush=True)
        if args.max_steps and step >= args.max_steps:
            break

    model.eval()
    confusion = [[0] * classes for _ in range(classes)]
    with torch.no_grad():
        for start in range(0, len(test_x), 256):
            idx = list(range(start, min(start + 256, len(test_x))))
            x, lengths = pad_batch(test_x, idx)
            predicted = model(x, lengths).argmax(dim=1).tolist()
            for truth, guess in zip(test_y[idx].tolist(), predicted):
                confusion[truth][guess] += 1
    correct = sum(confusion[k][k] for k in range(classes))
    print(f"test accuracy: {correct / len(test_x):.4f}  ({correct} of {len(test_x)})")
    names = [l[:7] for l, _, _, _ in WORD_LISTS]
    print("confusion (rows: true language, columns: predicted)")
    print(" " * 11 + "".join(f"{n:>8}" for n in names))
    for k, row in enumerate(confusion):
        print(f"{names[k]:>11}" + "".join(f"{v:8d}" for v in row))
    timed = times[min(5, len(times) - 1) :]
    print(
        f"ms per training step: {1000 * statistics.median(timed):.2f} "
        f"(median of {len(timed)} steps after warm-up; mean {1000 * statistics.mean(timed):.2f})"
    )


if __name__ == "__main__":
    main()
