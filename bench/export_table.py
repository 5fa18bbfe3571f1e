"""Export benchmark: every artifact of a digits student, run in its runtime.

Trains ``student_cnn`` on the bundled digits (plain Keras fit), exports TFLite (float32,
float16, dynamic, int8, int16x8), ONNX (float32, int8) and TensorFlow Lite Micro, and prints per
artifact: size, size relative to the float32 TFLite file, test accuracy, top-1 agreement with
Keras, max abs output error, median single-sample latency (one thread), and the TFLM arena.
Then checks the targets: int8 TFLite accuracy within 0.5 points of float32 TFLite, and the int8
file at most 0.3x the float32 file. Sizes and accuracies are deterministic for a seed; latencies
are noisy on shared machines, so compare them within one run only.

    python bench/export_table.py                 # widths 8 (default student) and 32, ~1 minute
    python bench/export_table.py --widths 8 --epochs 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras

from keras_distill.data import load_digits
from keras_distill.export import export
from keras_distill.presets import student_cnn

QUANTIZATION = ("float32", "float16", "dynamic", "int8", "int16x8")


def train_student(data, width, epochs, seed):
    """The student to export. Plain supervised training; swap in a distilled student here."""
    keras.utils.set_random_seed(seed)
    model = student_cnn(data.input_shape, data.num_classes, width=width,
                        name=f"student_w{width}")
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def table(report):
    headers = ["artifact", "size KiB", "x float32", "test acc", "agreement", "max abs err",
               "latency ms", "arena B"]
    rows = [["keras model", "", "", f"{100 * report.keras['accuracy']:.2f}", "", "", "", ""]]
    for a in report.artifacts:
        if not a.ok:
            rows.append([f"{a.key} FAILED", a.error[:70], "", "", "", "", "", ""])
            continue
        m = a.metrics
        arena = a.details["arena"]["arena_size"] if a.format == "micro" else ""
        rows.append([a.path, f"{a.size_bytes / 1024:.1f}", f"{report.size_ratio(a):.2f}",
                     f"{100 * m['accuracy']:.2f}", f"{100 * m['agreement']:.2f}",
                     f"{m['max_abs_error']:.1e}", f"{m['latency_ms_median']:.3f}", str(arena)])
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
              for r in rows]
    return "\n".join(lines)


def targets(report):
    f32, i8 = report.get("tflite", "float32"), report.get("tflite", "int8")
    drop = 100 * (f32.metrics["accuracy"] - i8.metrics["accuracy"])
    ratio = report.size_ratio(i8)
    return [(f"int8 accuracy drop vs float32: {drop:+.2f} points (target <= 0.5): "
             f"{'met' if drop <= 0.5 else 'NOT met'}"),
            (f"int8 size / float32 size: {ratio:.3f} (target <= 0.3): "
             f"{'met' if ratio <= 0.3 else 'NOT met'}")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 32],
                        help="student_cnn widths to export (8 is the default student)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="exported/bench", help="output folder root")
    args = parser.parse_args()

    data = load_digits(seed=0)
    print(data.summary())
    for width in args.widths:
        start = time.time()
        model = train_student(data, width, args.epochs, args.seed)
        report = export(model, os.path.join(args.out, f"w{width}"), quantization=QUANTIZATION,
                        representative_data=data.x_train,
                        eval_data=(data.x_test, data.y_test), labels=data.class_names)
        print(f"\nstudent_cnn(width={width}): {model.count_params()} parameters, "
              f"trained {args.epochs} epochs; {time.time() - start:.0f} s with export")
        print(table(report))
        for line in targets(report):
            print("  " + line)
    print("\nLatency: median of one-sample calls, one thread, this host. The TFLM arena was "
          "measured on a 64-bit host: an upper bound for a 32-bit MCU.")


if __name__ == "__main__":
    main()
