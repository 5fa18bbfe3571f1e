"""Epoch time of our Distiller against the cost of its parts and against ``keras.distillation``.

An online distiller pays at least one student training step and one teacher forward pass per
batch. This bench measures, in one run and interleaved (these machines are noisy), the epoch
time of:

* ``student.fit`` alone (Keras's defaults) and the teacher's forward pass over the same batches
  as a compiled ``tf.function`` (no ``predict()`` overhead): their sum is the limit;
* our ``Distiller`` at its defaults, with XLA off and on explicitly, with cached teacher
  outputs, and with the teacher in bfloat16 (``teacher_dtype``);
* ``keras.distillation.Distiller`` configured to compute the right loss
  (``LogitsDistillation(loss=KLDivergence())``; its default string skips the softmax), at
  Keras's defaults (``compile()`` with no ``jit_compile``: no XLA on a CPU) and with XLA.

Also our Distiller without its non-finite guard (what checking every loss term and gradient
before each update costs). Two workloads: the bundled digits (8x8 images, the training split
tiled 5 times, a 66k-parameter Conv2D teacher, a 6.6k-parameter student) and an MNIST-1D-like generated set (40-step signals, a ~93k-parameter Conv1D teacher,
a ~2k-parameter student, batch 128). Each round times one epoch of every trainer after a
warm-up epoch that absorbs tracing and XLA compilation; the table gives medians.

On a machine with a GPU the same rows run there, plus mixed precision (``mixed_bfloat16`` and
``mixed_float16`` policies); on a CPU-only machine the bench says so and skips those rows.

    python bench/distill_speed.py                 # about 6 minutes on 2 cores
    python bench/distill_speed.py --workload digits --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import keras
import numpy as np
from common import print_table, sparse_ce, tiled, train_teacher

from keras_distill import Distiller
from keras_distill.data import load_digits
from keras_distill.presets import student_cnn


def mnist1d_like(n=6000, length=40, seed=0):
    """A generated stand-in for MNIST-1D (Greydanus, 2020; not downloadable here): ten fixed
    12-point templates, each sample a template scaled, sheared, shifted, resampled to
    ``length`` steps, with correlated and white noise. Split 70 / 15 / 15."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(1234).normal(size=(10, 12))
    y = rng.integers(0, 10, n)
    grid = np.linspace(0, 1, 12)
    out = np.empty((n, length), np.float32)
    for i, label in enumerate(y):
        t = np.linspace(-0.3, 1.3, length) + rng.uniform(-0.25, 0.25)  # shift
        signal = np.interp(t, grid, templates[label], left=0.0, right=0.0)
        signal = signal * rng.uniform(0.6, 1.4) + rng.uniform(-0.5, 0.5) * np.linspace(-1, 1,
                                                                                      length)
        signal += np.cumsum(rng.normal(0, 0.05, length)) + rng.normal(0, 0.25, length)
        out[i] = signal
    x = out[..., None]
    a, b = int(0.7 * n), int(0.85 * n)
    return types.SimpleNamespace(x_train=x[:a], y_train=y[:a], x_val=x[a:b], y_val=y[a:b],
                                 x_test=x[b:], y_test=y[b:], input_shape=(length, 1),
                                 num_classes=10, name="mnist1d-like")


def conv1d_net(filters, num_classes, input_shape, name):
    layers = [keras.Input(input_shape)]
    x = layers[0]
    for f, k in zip(filters, (5, 5, 3)):
        x = keras.layers.Conv1D(f, k, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling1D(2)(x) if f != filters[-1] else x
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(layers[0], keras.layers.Dense(num_classes)(x), name=name)


def workload(name):
    """``(data, teacher, make_student, batch_size)`` of one workload, the teacher trained."""
    if name == "digits":
        data = load_digits(seed=0)
        teacher = train_teacher(data, seed=0, epochs=5)
        data = tiled(data, 5)  # 5,835 samples an epoch: Keras's fixed cost per fit call is
        # then a small part of what is timed
        return data, teacher, lambda: student_cnn(data.input_shape, 10, width=12), 64
    data = mnist1d_like()
    keras.utils.set_random_seed(0)
    teacher = conv1d_net((64, 128, 128), 10, data.input_shape, "teacher")
    teacher.compile(keras.optimizers.Adam(3e-3), sparse_ce(), metrics=["accuracy"])
    teacher.fit(data.x_train, data.y_train, epochs=5, batch_size=128, verbose=0)
    return data, teacher, lambda: conv1d_net((16, 32, 32), 10, data.input_shape, "student"), 128


def forward_epoch(teacher, jit):
    """A function timing one pass of ``teacher`` over ``batches`` as a compiled tf.function."""
    import tensorflow as tf

    step = tf.function(lambda x: teacher(x, training=False), jit_compile=jit,
                       reduce_retracing=True)

    def run(x, batch_size):
        batches = [tf.constant(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        start = time.perf_counter()
        for b in batches:
            out = step(b)
        out.numpy()
        return time.perf_counter() - start
    return run


class UnguardedDistiller(Distiller):
    """The Distiller without its non-finite guard (bench only: what the guard costs)."""

    def _apply(self, named, grads, variables):
        self.optimizer.apply_gradients(zip(grads, variables))


def fit_epoch(model, y):
    def run(x, batch_size):
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=True)
        return time.perf_counter() - start
    return run


def trainers(data, teacher, make_student, policies):
    """``{row name: epoch function}``."""
    from keras_distill.teachers import teacher_outputs

    y = data.y_train

    def student(policy=None):
        keras.utils.set_random_seed(0)
        if policy:
            keras.config.set_dtype_policy(policy)
        try:
            return make_student()
        finally:
            keras.config.set_dtype_policy("float32")

    rows = {}
    for jit, tag in ((False, ""), (True, ", XLA")):
        plain = student()
        plain.compile(keras.optimizers.Adam(1e-3), sparse_ce(), jit_compile=jit)
        rows[f"student.fit{tag}"] = fit_epoch(plain, y)
        rows[f"teacher forward (tf.function){tag}"] = forward_epoch(teacher, jit)

    def ours(policy=None, compile_kwargs=None, cls=Distiller, **kwargs):
        d = cls(teacher, student(policy), temperature=4.0, alpha=0.1, **kwargs)
        d.compile(keras.optimizers.Adam(1e-3), **(compile_kwargs or {}))
        return d

    rows["ours, defaults"] = fit_epoch(ours(), y)
    rows["ours, jit_compile=False"] = fit_epoch(ours(compile_kwargs={"jit_compile": False}), y)
    rows["ours, jit_compile=True"] = fit_epoch(ours(compile_kwargs={"jit_compile": True}), y)
    outputs, _ = teacher_outputs(teacher, data.x_train)
    rows["ours, cached teacher"] = fit_epoch(
        ours(), {"labels": y, "teacher_outputs": outputs})
    rows["ours, teacher_dtype=bfloat16"] = fit_epoch(ours(teacher_dtype="bfloat16"), y)
    rows["ours without its non-finite guard (bench only)"] = fit_epoch(
        ours(cls=UnguardedDistiller), y)
    for policy in policies:
        rows[f"ours, {policy}, XLA"] = fit_epoch(
            ours(policy, compile_kwargs={"jit_compile": True}), y)
    for jit, tag in ((None, ", Keras defaults"), (True, ", XLA")):
        theirs = keras.distillation.Distiller(
            teacher, student(),
            distillation_losses=keras.distillation.LogitsDistillation(
                temperature=4.0, loss=keras.losses.KLDivergence()),
            student_loss_weight=0.1)
        theirs.compile(keras.optimizers.Adam(1e-3), loss=sparse_ce(),
                       **({} if jit is None else {"jit_compile": jit}))
        rows[f"keras.distillation.Distiller{tag}"] = fit_epoch(theirs, y)
    return rows


def measure(name, rounds, policies):
    data, teacher, make_student, batch_size = workload(name)
    rows = trainers(data, teacher, make_student, policies)
    x = data.x_train
    times = {row: [] for row in rows}
    for row, run in rows.items():  # warm-up: tracing, XLA compilation, first-epoch costs
        run(x, batch_size)
    for _ in range(rounds):
        for row, run in rows.items():
            times[row].append(run(x, batch_size))
    med = {row: statistics.median(t) for row, t in times.items()}
    limit = med["student.fit"] + med["teacher forward (tf.function)"]
    ours = med["ours, defaults"]
    print(f"\n{name}: {len(x)} samples per epoch, batch {batch_size}, {rounds} interleaved "
          f"rounds; teacher {teacher.count_params():,} params, student "
          f"{make_student().count_params():,} params\n")
    print_table(["trainer", "median epoch ms", "× (student.fit + teacher forward)",
                 "ours (defaults) / this"],
                [[row, f"{m * 1000:.0f}", f"{m / limit:.2f}", f"{ours / m:.2f}"]
                 for row, m in med.items()])
    print(f"\nours (defaults) / (student.fit + teacher forward) = {ours / limit:.2f}; "
          f"ours / keras.distillation at Keras's defaults = "
          f"{ours / med['keras.distillation.Distiller, Keras defaults']:.2f}; "
          f"cached / student.fit = {med['ours, cached teacher'] / med['student.fit']:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workload", choices=("digits", "mnist1d", "both"), default="both")
    args = parser.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        print(f"GPU: {name}; mixed-precision rows included.")
        policies = ("mixed_bfloat16", "mixed_float16")
    else:
        print("No GPU here: the mixed-precision rows (mixed_bfloat16, mixed_float16 on a GPU) "
              "are skipped.")
        policies = ()
    for name in ("digits", "mnist1d") if args.workload == "both" else (args.workload,):
        measure(name, args.rounds, policies)


if __name__ == "__main__":
    main()
