"""Shared test setup: quiet TensorFlow, the TensorFlow backend, seeded runs, shared data."""

import errno
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def digits():
    from keras_distill.data import load_digits

    return load_digits(seed=0)


@pytest.fixture(scope="session")
def trained_teacher(digits):
    """A digits teacher trained once per test session (a few seconds), then shared read-only."""
    import keras

    from keras_distill.presets import teacher_cnn

    keras.utils.set_random_seed(0)
    teacher = teacher_cnn(digits.input_shape, digits.num_classes)
    teacher.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(digits.x_train, digits.y_train, epochs=12, batch_size=64, verbose=0)
    acc = teacher.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    assert acc > 0.9, f"the shared test teacher only reached {acc:.3f} test accuracy"
    return teacher


def agreement(a, b):
    """Fraction of rows whose argmax agrees."""
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


def randomize_bn(model, seed=0):
    """Give every BatchNormalization distinct, non-trivial parameters and statistics."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.normal(1, 0.3, w.shape).astype("float32") if i != 3 else
                               rng.uniform(0.5, 2, w.shape).astype("float32")
                               for i, w in enumerate(layer.get_weights())])


class _FailingFile:
    """A file object that takes ``limit`` bytes, then raises ``exc`` (as a disk would)."""

    def __init__(self, real, limit, exc):
        self.real, self.limit, self.exc, self.written = real, limit, exc, 0

    def write(self, data):
        room = self.limit - self.written
        if len(data) > room:
            self.real.write(bytes(data[:room]))
            self.real.flush()  # the partial data is on disk when the failure happens
            self.written = self.limit
            raise self.exc
        self.written += len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()
        return False


def failing_writes(monkeypatch, folder, exc, *, limit=64, only=""):
    """Writes through ``os.fdopen`` (both atomic writers use it) to files in ``folder`` whose
    name contains ``only`` fail with ``exc`` after ``limit`` bytes. Returns the list of the
    (temporary) files that were hit."""
    real_fdopen = os.fdopen
    folder = os.path.realpath(folder)
    hit = []

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return f
        if "w" in mode and os.path.dirname(target) == folder and only in \
                os.path.basename(target):
            hit.append(target)
            return _FailingFile(f, limit, exc)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)
    return hit


def enospc():
    """The error a full disk gives."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
