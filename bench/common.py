"""Shared pieces of the benchmark scripts: seeded training of teachers and students (on digits,
and on the data of the other output kinds), and the tables' number formats."""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np

from keras_distill import Distiller
from keras_distill.presets import teacher_cnn


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train_teacher(data, seed, epochs=20, batch_size=64, **kwargs):
    keras.utils.set_random_seed(seed)
    teacher = teacher_cnn(data.input_shape, data.num_classes, **kwargs)
    teacher.compile(keras.optimizers.Adam(3e-3), sparse_ce(), metrics=["accuracy"])
    teacher.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    return teacher


def train_alone(make_student, data, seed, epochs, batch_size=64, lr=3e-3):
    keras.utils.set_random_seed(seed)
    student = make_student()
    student.compile(keras.optimizers.Adam(lr), sparse_ce(), metrics=["accuracy"])
    student.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    return student


def tiled(data, passes):
    """``data`` with its training arrays repeated ``passes`` times, so that one Keras epoch is
    ``passes`` passes over the training split (Keras shuffles all copies together each
    epoch: every sample is seen ``passes`` times per epoch). On sets of a few hundred samples
    Keras's fixed cost per epoch would otherwise outweigh the training steps."""
    if passes == 1:
        return data
    return dataclasses.replace(data, x_train=np.concatenate([data.x_train] * passes),
                               y_train=np.concatenate([data.y_train] * passes))


def train_on_labels(build, data, seed, epochs, loss, batch_size=64, lr=3e-3, patience=None):
    """``build()`` trained on the labels alone with ``loss`` and Adam(lr), seeded.

    With ``patience``, training stops once the validation loss has not improved for that many
    epochs, and the best epoch's weights are kept (``epochs`` is then the maximum).
    """
    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(keras.optimizers.Adam(lr), loss)
    callbacks, validation = None, None
    if patience:
        callbacks = [keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)]
        validation = (data.x_val, data.y_val)
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0,
              validation_data=validation, callbacks=callbacks)
    return model


def distill(teacher, make_student, data, seed, epochs, batch_size=64, lr=3e-3, callbacks=None,
            metrics=("accuracy",), **kwargs):
    keras.utils.set_random_seed(seed)
    student = make_student()
    distiller = Distiller(teacher, student, **kwargs)
    distiller.compile(keras.optimizers.Adam(lr), metrics=list(metrics) if metrics else None)
    distiller.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0,
                  callbacks=callbacks)
    return student


def int8_accuracy(model, data, representative=True):
    """Test accuracy of the int8 TFLite model, run in LiteRT, through keras_distill.export."""
    import tempfile

    from keras_distill.export import export

    with tempfile.TemporaryDirectory() as out:
        report = export(model, out, formats=("tflite",), quantization=("int8",),
                        representative_data=data.x_train[:300] if representative else None,
                        eval_data=(data.x_test, data.y_test))
        artifact = report.get("tflite", "int8")
        if not artifact.ok:
            raise RuntimeError(artifact.error)
        return artifact.metrics["accuracy"]


def accuracy(model, x, y):
    return float((model.predict(x, verbose=0, batch_size=512).argmax(-1) == y).mean())


def outputs(model, x):
    """The model's outputs (logits or values) on ``x``, as NumPy."""
    return model.predict(x, verbose=0, batch_size=512)


def mean_std(values, scale=100, digits=1):
    """``"mean ± std"`` of ``values`` times ``scale`` (100: fractions as percentages)."""
    if not values:
        return "—"
    values = [scale * v for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.{digits}f} ± {std:.{digits}f}"


def print_table(headers, rows):
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
