"""Shared test setup: quiet TensorFlow, the TensorFlow backend, seeded runs, shared data.

Plain helper functions live in ``tests/helpers.py`` (``from helpers import ...``).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples (derandomized): a submission passes
# or fails on its code, not on the draw. Locally each run explores new examples.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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


@pytest.fixture(scope="session")
def student(digits):
    """A digits student (student_cnn, width 8) trained once per session, shared read-only by
    the export and verify tests."""
    import keras

    from keras_distill.presets import student_cnn

    keras.utils.set_random_seed(0)
    model = student_cnn(digits.input_shape, digits.num_classes, width=8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, epochs=12, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def exported(student, digits, tmp_path_factory):
    """One export of ``student`` to every format and quantization mode, verified on the digits
    test split: ``(report, folder)``. Tests that change files work on a copy."""
    from helpers import ALL_MODES

    from keras_distill.export import export

    out = tmp_path_factory.mktemp("exported")
    report = export(student, out, name="digits-student", quantization=ALL_MODES,
                    representative_data=digits.x_train, eval_data=(digits.x_test, digits.y_test),
                    labels=digits.class_names)
    return report, out
