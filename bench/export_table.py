"""Export benchmark: every artifact of a digits student, run in its runtime.

Trains ``student_cnn`` on the bundled digits (plain Keras fit), exports TFLite (float32,
float16, dynamic, int8, int16x8), ONNX (float32, int8) and TensorFlow Lite Micro, and prints per
artifact: size, size relative to the float32 TFLite file, test accuracy, top-1 agreement with
Keras, max abs output error, median single-sample latency (one thread), and the TFLM arena.
Then checks the targets: int8 TFLite accuracy within 0.5 points of float32 TFLite, and the int8
file at most 0.3x the float32 file. Sizes and accuracies are deterministic for a seed; latencies
are noisy on shared machines, so compare them within one run only.

With ``--presets`` it prints instead one row per MLPerf Tiny reference preset
(``keras_distill.presets.REFERENCE_PRESETS``, each at its reference shape), trained briefly on
generated data of that shape and exported to int8 TFLite and TensorFlow Lite Micro: parameters,
int8 file size, TFLM arena, int8 score against float32 (accuracy, or reconstruction MSE for the
autoencoder), and conversion times. The classifiers' data are learnable: one random texture
(a small tile repeated over the image) per class, shifted at random, plus Gaussian noise; the
autoencoder's are rank-8 vectors plus noise (see ``preset_data``). The task is easy on
purpose: the scores show what int8 loses against float32, not how good the presets are.
``--widths`` and ``--epochs`` do not apply (each preset's epochs are in ``PRESET_SHAPES``);
mobilenet_v1 takes about 40% of the time.

    python bench/export_table.py                 # widths 8 (default student) and 32, ~1 minute
    python bench/export_table.py --widths 8 --epochs 20
    python bench/export_table.py --presets       # the reference presets, ~2.5 minutes on 2 cores
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
import numpy as np

from keras_distill.data import load_digits
from keras_distill.export import export
from keras_distill.presets import REFERENCE_PRESETS, student_cnn

QUANTIZATION = ("float32", "float16", "dynamic", "int8", "int16x8")
#: The reference presets' shapes: (input shape, output units, training epochs). The output
#: units equal the input size for the autoencoder (a regression that reconstructs its input).
PRESET_SHAPES = {"resnet8": ((32, 32, 3), 10, 6), "ds_cnn": ((49, 10, 1), 12, 8),
                 "mobilenet_v1": ((96, 96, 3), 2, 10), "fc_autoencoder": ((640,), 640, 30),
                 "student_scaled": ((96, 96, 3), 2, 4)}


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
    return markdown_table(headers, rows)


def markdown_table(headers, rows):
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


def preset_data(shape, units, n, seed, noise=1.0, tile=8):
    """``(x, y)``: ``n`` generated samples of ``shape``, the same task for every ``seed`` call.

    Images (three dimensions): class ``k`` is a random ``tile x tile`` texture of unit variance
    repeated over the image, rolled by a random offset per sample, plus Gaussian noise of std
    ``noise``: local patterns tell the classes apart, as a conv net with global pooling needs.
    Vectors: ``x`` is rank-8 structure plus noise of std 0.1 (per unit of signal), and ``y`` is
    ``x`` (the autoencoder reconstructs its input). The task is drawn from ``seed`` and each
    call's samples from ``seed + n``, so training and evaluation sets share the task.
    """
    task, draw = np.random.default_rng(seed), np.random.default_rng(seed + n)
    if len(shape) == 1:
        basis = task.normal(size=(8, shape[0])) / np.sqrt(8)
        x = draw.normal(size=(n, 8)) @ basis + 0.1 * draw.normal(size=(n, shape[0]))
        return x.astype("float32"), x.astype("float32")
    h, w, c = shape
    reps = (-(-h // tile), -(-w // tile), 1)
    protos = np.stack([np.tile(task.normal(size=(tile, tile, c)), reps)[:h, :w]
                       for _ in range(units)])
    y = draw.integers(0, units, size=n)
    x = np.stack([np.roll(protos[k], tuple(draw.integers(0, tile, size=2)), axis=(0, 1))
                  for k in y])
    x = x + noise * draw.normal(size=x.shape)
    return x.astype("float32"), y.astype("int32")


def recalibrate_batchnorm(model, x):
    """Set every BatchNormalization's moving statistics to those of ``x`` (one batch).

    The presets keep Keras's momentum of 0.99, which a few hundred training steps leave far from
    the data's statistics: the float model would then score worse than it is trained to.
    """
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns:
        return
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(bns, saved):
        layer.momentum = momentum


def export_preset(preset, out_root, seed, n_train=512, n_eval=256):
    """Train ``preset`` briefly on its generated data and export it: (model, report, s)."""
    shape, units, epochs = PRESET_SHAPES[preset]
    regression = len(shape) == 1
    x_train, y_train = preset_data(shape, units, n_train, seed)
    x_eval, y_eval = preset_data(shape, units, n_eval, seed)
    start = time.time()
    keras.utils.set_random_seed(seed)
    model = REFERENCE_PRESETS[preset](shape, units)
    loss = ("mse" if regression
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(keras.optimizers.Adam(3e-3), loss)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    recalibrate_batchnorm(model, x_train[:256])
    report = export(model, os.path.join(out_root, preset), name=preset,
                    formats=("tflite", "micro"), quantization=("float32", "int8"),
                    representative_data=x_train, eval_data=(x_eval, y_eval),
                    task="regression" if regression else "multiclass")
    return model, report, time.time() - start


def preset_row(preset, model, report, seconds):
    shape, units, epochs = PRESET_SHAPES[preset]
    f32, i8, micro = (report.get("tflite", "float32"), report.get("tflite", "int8"),
                      report.get("micro", "int8"))
    failed = [a for a in (f32, i8, micro) if a is None or not a.ok]
    head = [preset, "x".join(map(str, shape)), str(units), str(epochs),
            str(model.count_params())]
    if failed:
        what = failed[0].key if failed[0] is not None else "missing artifact"
        return head + [f"{what} FAILED", (failed[0].error or "")[:60] if failed[0] else "",
                       "", "", "", "", "", "", "", f"{seconds:.0f}"]
    arena = micro.details["arena"]
    arena = f"{arena['arena_size']}{' (est.)' if arena.get('estimated') else ''}"
    if len(shape) == 1:
        metric, f, q = "MSE", f"{f32.metrics['rmse'] ** 2:.4f}", f"{i8.metrics['rmse'] ** 2:.4f}"
        agreement = "—"
    else:
        metric = "accuracy %"
        f, q = f"{100 * f32.metrics['accuracy']:.2f}", f"{100 * i8.metrics['accuracy']:.2f}"
        agreement = f"{100 * i8.metrics['agreement']:.2f}"
    return head + [str(i8.size_bytes), arena, metric, f, q, agreement,
                   f"{i8.metrics['max_abs_error']:.1e}", f"{i8.seconds:.1f}",
                   f"{micro.seconds:.1f}", f"{seconds:.0f}"]


def presets_section(args):
    """One row per reference preset (``--presets``)."""
    headers = ["preset", "input", "out", "epochs", "params", "int8 B", "arena B", "score",
               "float32", "int8", "int8 agreement %", "int8 max abs err", "int8 s", "micro s",
               "total s"]
    rows, start = [], time.time()
    for preset in PRESET_SHAPES:
        model, report, seconds = export_preset(preset, os.path.join(args.out, "presets"),
                                               args.seed)
        rows.append(preset_row(preset, model, report, seconds))
        print(f"{preset}: done in {seconds:.0f} s", file=sys.stderr)
    print(f"Reference presets, trained on generated data (512 train / 256 eval samples, seed "
          f"{args.seed}); {time.time() - start:.0f} s in all.")
    print(markdown_table(headers, rows))
    print("\nScores on the eval set, run in LiteRT (float32 and int8 .tflite files); agreement "
          "and max abs error (of the logits or values) of int8 against Keras. MSE: mean squared "
          "reconstruction error (the data's variance is about 1.01 per value). "
          "int8 s / micro s: the artifacts' conversion and verification time; total s: "
          "training and export. The TFLM arena was measured on a 64-bit host: an upper bound "
          "for a 32-bit MCU.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 32],
                        help="student_cnn widths to export (8 is the default student)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="exported/bench", help="output folder root")
    parser.add_argument("--presets", action="store_true",
                        help="the MLPerf Tiny reference presets instead of the width table")
    args = parser.parse_args()
    if args.presets:
        presets_section(args)
        return

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
