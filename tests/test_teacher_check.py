"""A teacher that cannot teach is caught, with its measured cause."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_distill.teacher_check import TeacherCannotTeach, check_teacher


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(900, 6)).astype("float32")
    # 3 classes by thresholds on a sum: a teacher of these inputs depends on their scale
    y = np.digitize(x[:, :3].sum(-1), [1.3, 1.7]).astype("int32")
    return x[:600], y[:600], x[600:], y[600:]


def _mlp(batch_norm=False, momentum=0.99, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((6,)), keras.layers.Dense(32, activation="relu")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(momentum=momentum))
    layers.append(keras.layers.Dense(3))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture(scope="module")
def teacher(data):
    x, y, _, _ = data
    model = _mlp()
    model.fit(x, y, epochs=40, batch_size=64, verbose=0)
    return model


def test_a_good_teacher_passes(teacher, data):
    _, _, xv, yv = data
    check = check_teacher(teacher, xv, yv)
    assert check.ok and check.kind == "multiclass" and check.score > 0.9
    assert check.needed == pytest.approx(0.5)  # 1.5 x chance, 3 classes
    assert not check.causes


def test_inputs_scaled_differently_are_named(teacher, data):
    _, _, xv, yv = data
    check = check_teacher(teacher, xv * 255.0, yv)
    assert not check.ok
    assert "rescaled to [0, 1]" in check.message()
    with pytest.raises(TeacherCannotTeach, match="rescaled to \\[0, 1\\].*--teacher-allow-weak"):
        check_teacher(teacher, xv * 255.0, yv, raise_error=True)


def test_labels_in_another_order_are_named(teacher, data):
    _, _, xv, yv = data
    permuted = np.array([2, 0, 1])[yv]
    check = check_teacher(teacher, xv, permuted)
    assert not check.ok and check.score < 0.2
    assert "another order" in check.message() and "teacher class 0 → label 2" in check.message()


def test_unsettled_batch_norm_is_measured_on_a_copy(data):
    x, y, xv, yv = data
    model = _mlp(batch_norm=True, momentum=0.9999)  # its statistics barely move
    model.fit(x * 4.0 + 3.0, y, epochs=30, batch_size=64, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    check = check_teacher(model, xv * 4.0 + 3.0, yv)
    assert not check.ok
    assert "BatchNormalization statistics not settled" in check.message()
    for before, after in zip(weights, model.get_weights()):  # the teacher is untouched
        np.testing.assert_array_equal(before, after)


def test_below_the_student_trained_alone(teacher, data):
    _, _, xv, yv = data
    score = check_teacher(teacher, xv, yv).score

    def noise(baseline):  # two standard errors of the baseline's accuracy, plus one sample
        p = min(baseline, 1.0)
        return 2 * np.sqrt(p * (1 - p) / len(yv)) + 1 / len(yv)

    within = score + 0.5 * noise(score)  # above the teacher, within the sampling noise
    check = check_teacher(teacher, xv, yv, baseline=within)
    assert check.ok and check.margin == pytest.approx(noise(within))
    beyond = score + 3 * noise(score)
    check = check_teacher(teacher, xv, yv, baseline=beyond)
    assert not check.ok and "below the student trained alone" in check.message()
    assert check.margin == pytest.approx(noise(beyond))


def test_a_regression_teacher_no_better_than_the_mean(data):
    _, _, xv, _ = data
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])
    y = np.random.default_rng(1).normal(size=len(xv)).astype("float32")  # unrelated targets
    check = check_teacher(model, xv, y, kind="regression")
    assert not check.ok and check.metric == "r2" and check.score <= 0
    assert "no better than the mean" in check.message()
