"""Wall time of ``keras-distill run`` (the README's main job) against an earlier checkout.

Each round runs ``keras-distill run --quiet`` once from this checkout and once from the other
(alternating which goes first), each in a fresh process and output folder, and reads the
per-stage seconds from each run's manifest. The table gives medians, the process's CPU time
too (less sensitive than wall time to a shared machine's noise), and each run's test
accuracies, which must not change for the same seed.

    git worktree add /tmp/base <revision>        # the checkout to compare with
    python bench/run_speed.py --base /tmp/base   # about 5 minutes on 2 cores (3 rounds)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = "import sys; from keras_distill.cli import main; sys.exit(main())"
STAGES = ("data", "teacher", "baseline", "distill", "export", "total")


def one_run(checkout, out_dir):
    """``(wall s, cpu s, manifest)`` of one ``keras-distill run --quiet`` from ``checkout``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, "run", "--quiet", "--out-dir", out_dir],
                   cwd=checkout, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": checkout})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
        return wall, cpu, json.load(f)


def accuracies(manifest):
    return {name: m.get("test_accuracy") for name, m in manifest["models"].items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the earlier checkout's folder")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checkouts = {"base": os.path.abspath(args.base), "this": HERE}
    runs = {name: [] for name in checkouts}
    for r in range(args.rounds):
        order = list(checkouts) if r % 2 == 0 else list(reversed(checkouts))
        for name in order:
            with tempfile.TemporaryDirectory() as out:
                runs[name].append(one_run(checkouts[name], out))
            wall, cpu, _ = runs[name][-1]
            print(f"round {r + 1}: {name} {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    print(f"\n`keras-distill run --quiet`, {args.rounds} interleaved rounds, medians:\n")
    header = ["checkout", "wall s", "CPU s", *[f"{s} s" for s in STAGES]]
    rows = []
    for name, items in runs.items():
        med = [statistics.median(x[i] for x in items) for i in (0, 1)]
        stages = [statistics.median(x[2]["seconds"][s] for x in items) for s in STAGES]
        rows.append([name, *(f"{v:.1f}" for v in med + stages)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    base, this = (statistics.median(x[0] for x in runs[n]) for n in ("base", "this"))
    print(f"\nthis / base wall time: {this / base:.2f} ({1 - this / base:.0%} faster)")
    for name, items in runs.items():
        seen = {json.dumps(accuracies(x[2]), sort_keys=True) for x in items}
        print(f"{name} test accuracies: " + " | ".join(sorted(seen)))


if __name__ == "__main__":
    main()
