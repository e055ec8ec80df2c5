"""The text examples side by side with their PyTorch references, seed by seed.

For each seed (0, 1, 2 by default) it runs, back to back and on 2 threads each
(RECURRENT_NUM_THREADS=2 for ours, `--threads 2` = torch.set_num_threads(2) for PyTorch's):

- `char_rnn --seed S --steps N` and `benches/char_rnn_torch.py --seed S --steps N` (the same
  text, model, batching and optimizer), reading `validation bits per character` and the median
  ms per training step of each;
- `word_language --seed S --epochs E` and `benches/word_language_torch.py --seed S --epochs E`
  (the same words for the same seed), reading `test accuracy` and the median ms per step;

then prints a table with a row per seed, the mean and the spread (sample standard deviation, and
the range) of each column, and PyTorch's ms/step over ours (> 1: ours is faster), each ratio from
the two runs of one seed, made one after the other. The CPU model (lscpu) and the load average
(before each run and at the end) are printed too: on a shared machine only the ratios mean much.

    python3 benches/text_compare.py                 # full length: 1500 char_rnn steps, 5 epochs
    python3 benches/text_compare.py --short         # a quick check of the script (minutes)
    python3 benches/text_compare.py --seeds 0 --char-steps 200 --only char_rnn
    python3 benches/text_compare.py --report-only --seeds 0 1   # the table of finished runs

Every run's whole output goes to --log-dir (default /tmp/text_compare), one file per run, so
the samples and confusion matrices can be read afterwards. Our examples are built with
`cargo build --release --examples` first unless --bin-dir names a folder with built
`char_rnn` and `word_language` (a copy, so that a rebuild cannot change a long run midway).
Environment: TORCH_PYTHON, a python with torch (default /tmp/torchenv/bin/python).

PyTorch's OpenMP threads busy-wait at every barrier by default; on a machine whose cores are
taken by other work that spinning costs it several times its speed (measured here under load
10 on 2 cores: 700 ms per char_rnn step spinning, 189 ms with OMP_WAIT_POLICY=PASSIVE), so the
PyTorch runs get OMP_WAIT_POLICY=PASSIVE unless --omp-wait-policy says otherwise (ACTIVE, or
"" to leave the environment alone). On a quiet machine the two are close.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_TEXT = os.path.normpath(os.path.join(ROOT, "..", "shared", "text", "shakespeare_plays.txt.gz"))

# What each run prints, as (name, regex of its one number).
OURS_CHAR = [
    ("quality", r"^validation bits per character: ([0-9.]+)"),
    ("ms", r"median ([0-9.]+) ms per training step"),
]
TORCH_CHAR = [
    ("quality", r"^validation bits per character: ([0-9.]+)"),
    ("ms", r"^ms per training step: ([0-9.]+)"),
]
OURS_WORD = [
    ("quality", r"^test accuracy: ([0-9.]+)"),
    ("ms", r"median ([0-9.]+) ms per training step"),
]
TORCH_WORD = [
    ("quality", r"^test accuracy: ([0-9.]+)"),
    ("ms", r"^ms per training step: ([0-9.]+)"),
]


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = ""
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    name = fields.get("Model name", "unknown CPU")
    return (
        f"{name} (family {fields.get('CPU family', '?')}), {fields.get('CPU(s)', '?')} CPUs, "
        f"L2 {fields.get('L2 cache', '?')}"
    )


def run(label, cmd, env, log_path, patterns, report_only=False):
    """Runs `cmd`, its output to `log_path`; the numbers `patterns` find (exit on failure).
    With `report_only`, reads an earlier run's `log_path` instead."""
    if report_only:
        with open(log_path) as f:
            text = f.read()
        found = parse(label, text, log_path, patterns)
        print(f"  {label} (from {log_path}): {found['quality']}, {found['ms']} ms/step", flush=True)
        return found
    print(f"  [{time.strftime('%H:%M:%S')}, load {load_average()}] {label}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(f"# {' '.join(cmd)}\n# load average before: {load_average()}\n")
        log.flush()
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - t0
    with open(log_path) as f:
        text = f.read()
    if proc.returncode != 0:
        sys.exit(f"{label} failed (exit {proc.returncode}); its output is in {log_path}:\n{text[-2000:]}")
    found = parse(label, text, log_path, patterns)
    print(f"      {found['quality']} , {found['ms']} ms/step, {wall:.0f} s wall", flush=True)
    return found


def parse(label, text, log_path, patterns):
    found = {}
    m = re.search(r"^# load average before: ([0-9.]+)", text, re.MULTILINE)
    found["load"] = float(m.group(1)) if m else float("nan")
    for name, pattern in patterns:
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            sys.exit(f"{label}: no match for {pattern!r} in its output ({log_path})")
        found[name] = float(m.group(1))
    return found


def spread(values):
    if len(values) < 2:
        return "-"
    return f"sd {statistics.stdev(values):.4f}, range {max(values) - min(values):.4f}"


def table(title, quality_name, rows, digits):
    """rows: [(seed, ours, torch)], each a dict with quality and ms."""
    print()
    print(f"{title}")
    head = f"{'seed':>6} | {'ours ' + quality_name:>18} | {'PyTorch ' + quality_name:>18} | {'ours ms/step':>12} | {'PyTorch ms/step':>15} | {'PyTorch/ours':>12} | {'load (1 min) before':>19}"
    print(head)
    print("-" * len(head))
    for seed, ours, torch in rows:
        ratio = torch["ms"] / ours["ms"]
        print(
            f"{seed:>6} | {ours['quality']:>18.{digits}f} | {torch['quality']:>18.{digits}f} | "
            f"{ours['ms']:>12.2f} | {torch['ms']:>15.2f} | {ratio:>12.2f} | "
            f"{ours['load']:>8.1f} / {torch['load']:<8.1f}"
        )
    cols = {
        "oq": [o["quality"] for _, o, _ in rows],
        "tq": [t["quality"] for _, _, t in rows],
        "om": [o["ms"] for _, o, _ in rows],
        "tm": [t["ms"] for _, _, t in rows],
        "r": [t["ms"] / o["ms"] for _, o, t in rows],
    }
    mean = {k: statistics.mean(v) for k, v in cols.items()}
    print(
        f"{'mean':>6} | {mean['oq']:>18.{digits}f} | {mean['tq']:>18.{digits}f} | "
        f"{mean['om']:>12.2f} | {mean['tm']:>15.2f} | {mean['r']:>12.2f}"
    )
    print(f"spread: ours {quality_name} {spread(cols['oq'])}; PyTorch {spread(cols['tq'])}")
    print(f"        ours ms/step {spread(cols['om'])}; PyTorch {spread(cols['tm'])}; ratio {spread(cols['r'])}")
    diff = mean["oq"] - mean["tq"]
    print(f"        mean {quality_name} ours - PyTorch: {diff:+.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--short", action="store_true",
                   help="a quick check: 30 char_rnn steps validated on 20000 characters, 60 word_language steps")
    p.add_argument("--char-steps", type=int, default=None, help="char_rnn training steps (default 1500)")
    p.add_argument("--word-epochs", type=int, default=5)
    p.add_argument("--only", choices=["char_rnn", "word_language"], default=None)
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--bin-dir", default=None, help="built char_rnn and word_language (no cargo build)")
    p.add_argument("--log-dir", default="/tmp/text_compare")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: the table from the logs an earlier run left in --log-dir")
    p.add_argument("--omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY for the PyTorch runs (default PASSIVE; '' leaves it alone)")
    args = p.parse_args()

    torch_python = os.environ.get("TORCH_PYTHON", "/tmp/torchenv/bin/python")
    char_steps = args.char_steps if args.char_steps is not None else (30 if args.short else 1500)
    char_extra = ["--max-validation-chars", "20000"] if args.short else []
    word_extra = ["--max-steps", "60"] if args.short else []
    os.makedirs(args.log_dir, exist_ok=True)

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average {load_average()}")
    print(f"CPU: {cpu_model()}")
    print(f"threads: {args.threads} each (RECURRENT_NUM_THREADS, torch.set_num_threads); "
          f"PyTorch's OMP_WAIT_POLICY={args.omp_wait_policy or os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
          f"seeds {args.seeds}")
    print(f"char_rnn: {char_steps} steps{' ' + ' '.join(char_extra) if char_extra else ''}; "
          f"word_language: {args.word_epochs} epochs{' ' + ' '.join(word_extra) if word_extra else ''}")
    print(f"logs: {args.log_dir}")

    if args.bin_dir or args.report_only:
        bin_dir = args.bin_dir or "."
    else:
        print("building: cargo build --release --examples", flush=True)
        subprocess.run(["cargo", "build", "--release", "--example", "char_rnn", "--example", "word_language"],
                       cwd=ROOT, check=True)
        bin_dir = os.path.join(ROOT, "target", "release", "examples")
    env = dict(os.environ, RECURRENT_NUM_THREADS=str(args.threads))
    torch_env = dict(env)
    if args.omp_wait_policy:
        torch_env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    threads = ["--threads", str(args.threads)]

    char_rows, word_rows = [], []
    for seed in args.seeds:
        s = str(seed)
        if args.only in (None, "char_rnn"):
            common = ["--seed", s, "--steps", str(char_steps), "--text", args.text] + char_extra
            ours = run(f"char_rnn seed {seed}", [os.path.join(bin_dir, "char_rnn")] + common, env,
                       os.path.join(args.log_dir, f"char_rnn_ours_seed{seed}.log"), OURS_CHAR, args.report_only)
            torch = run(f"char_rnn_torch seed {seed}",
                        [torch_python, os.path.join(HERE, "char_rnn_torch.py")] + common + threads, torch_env,
                        os.path.join(args.log_dir, f"char_rnn_torch_seed{seed}.log"), TORCH_CHAR, args.report_only)
            char_rows.append((seed, ours, torch))
        if args.only in (None, "word_language"):
            common = ["--seed", s, "--epochs", str(args.word_epochs)] + word_extra
            ours = run(f"word_language seed {seed}", [os.path.join(bin_dir, "word_language")] + common, env,
                       os.path.join(args.log_dir, f"word_language_ours_seed{seed}.log"), OURS_WORD, args.report_only)
            torch = run(f"word_language_torch seed {seed}",
                        [torch_python, os.path.join(HERE, "word_language_torch.py")] + common + threads, torch_env,
                        os.path.join(args.log_dir, f"word_language_torch_seed{seed}.log"), TORCH_WORD, args.report_only)
            word_rows.append((seed, ours, torch))

    if char_rows:
        table(f"char_rnn ({char_steps} steps): validation bits per character (lower is better)",
              "bits/char", char_rows, 3)
    if word_rows:
        table(f"word_language ({args.word_epochs} epochs): test accuracy (higher is better)",
              "accuracy", word_rows, 4)
    print()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average at the end {load_average()}")


if __name__ == "__main__":
    main()
