"""The student search against the default student, on a device budget.

For each task: train the teacher, run ``keras_distill.search.search`` for the task's target,
and distill the default student (``student_cnn``, width 8) with the search's own final recipe
(the same epochs and cosine schedule), exported the same way. The table gives, for both: test
accuracy of the int8 model in LiteRT, int8 bytes, the TFLite Micro arena, whether it fits the
target, and the search's wall time.

Tasks:

* ``digits`` (the bundled 8x8 digits), target ``digits-tiny``: a device whose flash leaves the
  default student no room (:func:`tiny_target`): the search must find a smaller student that
  fits.
* ``textures`` (generated 16x16 images, 6 classes, :func:`export_table.preset_data` with noise
  1.75: the teacher reaches 98% on validation, a width-2 student alone 58%), target
  ``nrf52840``: everything small fits, and the search may spend the device on accuracy.

Usage:
    python bench/budget.py                 # both tasks, about 10 minutes on 2 cores
    python bench/budget.py --task digits   # one
Writes ``bench/results/budget_<task>/`` (each search's folder: search.md, front.png, ...) and
copies each front.png to ``docs/search_front_<task>.png`` (the README's plots).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import keras
from export_table import preset_data

from keras_distill import export, footprint, search, targets
from keras_distill.data import Splits, load_digits
from keras_distill.presets import student_cnn

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: The README's plots of the front.
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def tiny_target():
    """A device with room for TFLite Micro with student_cnn's ops (code and the interpreter's
    RAM, :mod:`keras_distill.footprint`), a 6 KiB model and 8 KiB of arena: the default digits
    student's int8 model is 7,920 bytes."""
    ops = ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    return targets.Target("digits-tiny", "a test device: TFLite Micro, a 6 KiB model, 8 KiB of "
                          "arena", ram=footprint.static_ram(None, ops)["bytes"] + 8 * 1024,
                          flash=footprint.code_size(ops)["bytes"] + 6 * 1024,
                          source="bench/budget.py")


def textures(seed=0):
    shape, classes = (16, 16, 1), 6
    x, y = preset_data(shape, classes, 3000, seed, noise=1.75, tile=4)
    n_train, n_val = 1800, 600
    return Splits(x[:n_train], y[:n_train], x[n_train:n_train + n_val],
                  y[n_train:n_train + n_val], x[n_train + n_val:], y[n_train + n_val:],
                  classes, [f"texture_{k}" for k in range(classes)], "textures")


TASKS = {"digits": (lambda: load_digits(seed=0), tiny_target),
         "textures": (textures, lambda: targets.get("nrf52840"))}


def default_student(teacher, data, target, epochs, seed):
    """The default student distilled with the search's final recipe and exported alike."""
    model = student_cnn(data.input_shape, data.num_classes)
    validation = search._distill(teacher, model, data, epochs, seed, 4.0, 0.1, 3e-3, 64,
                                 cosine=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = export(model, tmp, formats=("tflite", "micro"),
                        quantization=("float32", "int8"), representative_data=data.x_train,
                        eval_data=(data.x_test, data.y_test), target=target)
    return row("default student_cnn-w8-d2-r1", model.count_params(), validation, report, None)


def row(name, params, validation, report, seconds):
    tflite, chip = report.get("tflite", "int8"), report.get("micro", "int8")
    fit = chip.details.get("target", {})
    return [name, f"{params:,}", f"{100 * validation:.1f}",
            f"{100 * tflite.metrics['accuracy']:.1f}", f"{chip.size_bytes:,}",
            f"{chip.details['arena']['arena_size']:,}", "yes" if fit.get("fits") else "NO",
            "" if seconds is None else f"{seconds:.0f}"]


def run_task(name, epochs, proxy_epochs, seed):
    load, make_target = TASKS[name]
    data, target = load(), make_target()
    teacher = common.train_teacher(data, seed, epochs=20)
    teacher_acc = common.accuracy(teacher, data.x_test, data.y_test)
    out_dir = os.path.join(RESULTS, f"budget_{name}")
    shutil.rmtree(out_dir, ignore_errors=True)  # measured afresh, not resumed
    start = time.perf_counter()
    result = search.search(teacher, data, target, out_dir=out_dir, epochs=epochs,
                           proxy_epochs=proxy_epochs, seed=seed)
    seconds = time.perf_counter() - start
    shutil.copy(os.path.join(out_dir, search.PLOT), os.path.join(DOCS, f"search_front_{name}.png"))
    rows = []
    if result.chosen is not None:
        rows.append(row(f"search: {result.chosen.name}", result.chosen.params,
                        result.chosen.final_accuracy, result.export, seconds))
    rows.append(default_student(teacher, data, target, epochs, seed))
    print(f"\n{name} (teacher test accuracy {100 * teacher_acc:.1f}%), target {target.name}: "
          f"RAM {target.ram:,} B, flash {target.flash:,} B; {len(result.candidates)} candidates, "
          f"{sum(c.status == 'too_big' for c in result.candidates)} did not fit, front "
          f"{len(result.front)}; plot {out_dir}/front.png")
    common.print_table(["model", "params", "val %", "int8 test %", "int8 bytes", "arena",
                        "fits", "search s"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(TASKS), action="append")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--proxy-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    for name in args.task or TASKS:
        run_task(name, args.epochs, args.proxy_epochs, args.seed)


if __name__ == "__main__":
    main()
