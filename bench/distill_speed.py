"""Epoch time of our Distiller versus plain ``student.fit`` and versus ``keras.distillation``.

Also the Distiller with teacher outputs computed once (``fit(..., cache_teacher=True)``), and
without its non-finite guard (what checking every loss term and gradient before each update
costs).

Measured in one run, interleaved (these machines are noisy): each round times one epoch of
every trainer, after a warm-up epoch that absorbs tracing. The teacher is about 10x the
student's size. Keras's Distiller uses ``LogitsDistillation(loss=KLDivergence())`` so that it
computes the right thing (its default, ``loss="kl_divergence"``, skips the softmax).

    python bench/distill_speed.py             # about 2 minutes on 2 cores
"""

import argparse
import statistics
import time

import keras
import numpy as np
from common import print_table, sparse_ce, train_teacher

from keras_distill import Distiller
from keras_distill.data import load_digits
from keras_distill.presets import student_cnn
from keras_distill.teachers import teacher_outputs


class UnguardedDistiller(Distiller):
    """The Distiller without its non-finite guard (bench only: what the guard costs)."""

    def _apply(self, named, grads, variables):
        self.optimizer.apply_gradients(zip(grads, variables))


def timed_epoch(model, x, y, batch_size):
    start = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="tile the training set N times")
    args = parser.parse_args()

    data = load_digits(seed=0)
    x = np.concatenate([data.x_train] * args.repeat)
    y = np.concatenate([data.y_train] * args.repeat)
    teacher = train_teacher(data, seed=0, epochs=5)

    def student():
        keras.utils.set_random_seed(0)
        return student_cnn(data.input_shape, data.num_classes, width=12)

    plain = student()
    plain.compile(keras.optimizers.Adam(1e-3), sparse_ce(), metrics=["accuracy"])
    ours = Distiller(teacher, student(), temperature=4.0, alpha=0.1)
    ours.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    theirs = keras.distillation.Distiller(
        teacher, student(),
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=4.0, loss=keras.losses.KLDivergence()),
        student_loss_weight=0.1,
    )
    theirs.compile(keras.optimizers.Adam(1e-3), loss=sparse_ce(), metrics=["accuracy"])
    unguarded = UnguardedDistiller(teacher, student(), temperature=4.0, alpha=0.1)
    unguarded.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    cached = Distiller(teacher, student(), temperature=4.0, alpha=0.1)
    cached.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    # What fit(..., cache_teacher=True) does: one teacher pass, then the outputs ride along.
    start = time.perf_counter()
    outputs, _ = teacher_outputs(teacher, x)
    cache_seconds = time.perf_counter() - start
    cached_y = {"labels": y, "teacher_outputs": outputs}

    trainers = {"student.fit (no teacher)": (plain, y), "keras_distill.Distiller": (ours, y),
                "keras_distill.Distiller, cached teacher": (cached, cached_y),
                "keras_distill.Distiller without its non-finite guard": (unguarded, y),
                "keras.distillation.Distiller": (theirs, y)}
    times = {name: [] for name in trainers}
    for name, (model, targets) in trainers.items():  # warm-up: tracing, first-epoch costs
        timed_epoch(model, x, targets, args.batch_size)
    for _ in range(args.rounds):
        for name, (model, targets) in trainers.items():
            times[name].append(timed_epoch(model, x, targets, args.batch_size))

    base = statistics.median(times["student.fit (no teacher)"])
    ours_t = statistics.median(times["keras_distill.Distiller"])
    rows = [[name, f"{statistics.median(t) * 1000:.0f}", f"{statistics.median(t) / base:.2f}",
             f"{ours_t / statistics.median(t):.2f}"] for name, t in times.items()]
    print(f"\n{len(x)} samples per epoch, batch {args.batch_size}, {args.rounds} interleaved "
          f"rounds; teacher {teacher.count_params():,} params, student "
          f"{plain.count_params():,} params ({teacher.count_params() / plain.count_params():.1f}x)"
          "\n")
    print_table(["trainer", "median epoch ms", "x student.fit", "ours / this"], rows)
    print(f"\nThe cached run's one teacher pass over {len(x)} samples took "
          f"{cache_seconds * 1000:.0f} ms (once, not per epoch).")


if __name__ == "__main__":
    main()
