"""Shared test setup: quiet TensorFlow, the TensorFlow backend, seeded runs, shared data.

Plain helper functions live in ``tests/helpers.py`` (``from helpers import ...``).
"""

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
