"""Memory benchmark: peak RSS of distilling and exporting with a ~1M-parameter teacher.

Trains ``teacher_cnn(width=128)`` (about 1.0M parameters) on 20,000 digits-shaped samples (the
bundled digits resampled with Gaussian noise), distills ``student_cnn`` from it with
``keras_distill.Distiller``, and exports the student, then the teacher, with
``keras_distill.export`` (TFLite float32 + int8, ONNX, TFLite Micro by default). After each
stage it prints the process's resident memory now, its high-water mark
(``getrusage(RUSAGE_SELF).ru_maxrss``) and that of its finished children (the TFLM arena is
measured in a child process), and the sampled RSS of the process and its live children
together. Run it as a script, so that the high-water mark is the one of a
fresh process. Target: peak (self + children) within 4 GiB.

    python bench/memory.py                                  # ~3 minutes on 2 cores
    python bench/memory.py --samples 20000 --width 128 --formats tflite --epochs 1
    python bench/memory.py --stream         # 50,000 PNGs of 96x96x3, streamed; ~10 minutes

Example:
    >>> python bench/memory.py --formats tflite  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TARGET_MIB = 4096


def rss_now_mib():
    """Current resident set size of this process, from /proc (Linux), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peaks_mib():
    """High-water RSS of this process and of its largest finished child, in MiB.

    Returns:
        ``(self_mib, children_mib)``; ``ru_maxrss`` is in KiB on Linux, bytes on macOS.
    """
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale
    return own, children


def _rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def _descendants(pid):
    """Process ids of all live descendants of ``pid`` (Linux /proc)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(c) for c in f.read().split()]
            except OSError:
                continue
            out += kids
            stack += kids
    return out


class TreeSampler(threading.Thread):
    """Samples, every ``interval`` seconds, the RSS of this process plus its live children:
    the memory the whole job holds at once. ``ru_maxrss`` of children overstates it: a child
    made by fork starts with (and is charged for) the parent's pages before it execs."""

    def __init__(self, interval=0.02):
        super().__init__(daemon=True)
        self.interval, self.peak_kib, self.peak_children_kib = interval, 0, 0
        self._done = threading.Event()

    def run(self):
        me = os.getpid()
        mine = _cmdline(me)
        while not self._done.wait(self.interval):
            # A child that has not exec'd yet (same command line) shares this process's
            # pages copy-on-write: counting its RSS would count them twice.
            children = sum(_rss_kib(p) for p in _descendants(me) if _cmdline(p) != mine)
            self.peak_children_kib = max(self.peak_children_kib, children)
            self.peak_kib = max(self.peak_kib, _rss_kib(me) + children)

    def stop(self):
        self._done.set()
        self.join()


class Recorder:
    """Collects one row per stage: seconds, RSS now, peaks (self, children, sampled tree)."""

    def __init__(self, sampler):
        self.rows = []
        self.sampler = sampler

    def stage(self, name, start, note=""):
        own, children = peaks_mib()
        tree = self.sampler.peak_kib / 1024
        self.rows.append((name, time.perf_counter() - start, rss_now_mib(), own, children,
                          tree, note))
        print(f"  {name}: {self.rows[-1][1]:.1f} s, peak {own:.0f} MiB", flush=True)

    def table(self):
        lines = [("| stage | seconds | RSS now MiB | peak self MiB | peak children MiB | "
                 "sampled peak self + children MiB | notes |"),
                 "|---|---:|---:|---:|---:|---:|---|"]
        for name, seconds, now, own, children, tree, note in self.rows:
            lines.append(f"| {name} | {seconds:.1f} | {now:.0f} | {own:.0f} | {children:.0f} "
                         f"| {tree:.0f} | {note} |")
        return "\n".join(lines)


def make_data(n, seed=0, noise=0.05):
    """``n`` digits-shaped samples: the bundled digits resampled, plus Gaussian noise.

    Returns:
        ``(x, y, x_test, y_test, input_shape, num_classes)``; the test split is the bundled
        digits' own test set (no noise).
    """
    import numpy as np

    from keras_distill.data import load_digits

    digits = load_digits(seed=seed)
    base_x = np.concatenate([digits.x_train, digits.x_val])
    base_y = np.concatenate([digits.y_train, digits.y_val])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base_x), n)
    x = base_x[idx] + rng.normal(0.0, noise, (n, *base_x.shape[1:])).astype("float32")
    x = np.clip(x, 0.0, 1.0).astype("float32")
    return x, base_y[idx], digits.x_test, digits.y_test, digits.input_shape, digits.num_classes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=128, help="teacher_cnn width (128: ~1.0M "
                        "parameters)")
    parser.add_argument("--teacher-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--formats", default="tflite,onnx,micro")
    parser.add_argument("--quantization", default="float32,int8")
    parser.add_argument("--no-teacher-export", action="store_true",
                        help="export the student only")
    parser.add_argument("--stream", action="store_true", help="the streaming row instead: a "
                        "folder of generated 96x96x3 PNGs (bench/memory_stream.py)")
    parser.add_argument("--images", type=int, default=50_000, help="--stream: images to make")
    parser.add_argument("--folder", help="--stream: an image folder made before (kept)")
    parser.add_argument("--label", choices=("store", "beam"), default="store",
                        help="--stream: label with keras_distill.store.write or the Beam "
                             "pipeline of keras-distill label (DirectRunner, 2 workers)")
    args = parser.parse_args(argv)
    if args.stream:
        import memory_stream

        sampler = TreeSampler()
        return memory_stream.main(args, Recorder(sampler), sampler, peaks_mib)
    formats = tuple(f for f in args.formats.split(",") if f)
    quantization = tuple(q for q in args.quantization.split(",") if q)
    sampler = TreeSampler()
    sampler.start()
    rec = Recorder(sampler)

    t = time.perf_counter()
    import keras
    import tensorflow as tf  # noqa: F401

    import keras_distill
    from keras_distill import Distiller
    from keras_distill.presets import student_cnn, teacher_cnn

    rec.stage("import tensorflow, keras, keras_distill", t)

    t = time.perf_counter()
    x, y, x_test, y_test, input_shape, classes = make_data(args.samples)
    rec.stage("data", t, f"{len(x)} samples {x.shape[1:]}, {x.nbytes / 2**20:.1f} MiB")

    t = time.perf_counter()
    keras.utils.set_random_seed(0)
    teacher = teacher_cnn(input_shape, classes, width=args.width)
    teacher.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    teacher.fit(x, y, epochs=args.teacher_epochs, batch_size=args.batch_size, verbose=0)
    teacher_acc = teacher.evaluate(x_test, y_test, verbose=0)[1]
    rec.stage("train teacher", t, f"{teacher.count_params():,} parameters, {args.teacher_epochs} "
              f"epoch(s), test accuracy {teacher_acc:.3f}")

    t = time.perf_counter()
    student = student_cnn(input_shape, classes)
    distiller = Distiller(teacher, student, temperature=4.0, alpha=0.1)
    distiller.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    distiller.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    student.compile(metrics=["accuracy"],
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student_acc = student.evaluate(x_test, y_test, verbose=0)[1]
    rec.stage("distill student", t, f"{student.count_params():,} parameters, {args.epochs} "
              f"epoch(s), test accuracy {student_acc:.3f}")

    to_export = [("student", student)] + ([] if args.no_teacher_export else
                                          [("teacher", teacher)])
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as out:
        for role, model in to_export:
            t = time.perf_counter()
            report = keras_distill.export(
                model, os.path.join(out, role), name=role, formats=formats,
                quantization=quantization, representative_data=x, eval_data=(x_test, y_test))
            parts = [f"{a.key} {'ok' if a.ok else 'FAILED'}" for a in report.artifacts]
            rec.stage(f"export {role}", t, ", ".join(parts))

    sampler.stop()
    own, children = peaks_mib()
    tree = max(sampler.peak_kib / 1024, own)
    bound = own + children
    print()
    print(f"Peak memory of distilling and exporting with a {teacher.count_params():,}-parameter "
          f"teacher on {len(x):,} samples (formats {', '.join(formats)}; quantization "
          f"{', '.join(quantization)}):")
    print()
    print(rec.table())
    print()
    print(f"Peak memory: {tree:.0f} MiB (this process and its children at once, sampled every "
          f"{sampler.interval * 1000:.0f} ms; at least the process's own ru_maxrss).")
    print(f"Upper bound: {own:.0f} MiB (ru_maxrss, this process) + {children:.0f} MiB "
          f"(ru_maxrss, largest child, which counts the parent's pages it was forked with) = "
          f"{bound:.0f} MiB.")
    ok = bound <= TARGET_MIB
    print(f"Target: within {TARGET_MIB} MiB (checked on the upper bound): "
          f"{'PASS' if ok else 'FAIL'}.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
