"""Output kinds: detection from activations, compiled losses and labels, and declarations."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_distill import outputs


def model(units, activation=None, steps=None):
    shape = (steps, 4) if steps else (4,)
    x = keras.Input(shape)
    return keras.Model(x, keras.layers.Dense(units, activation=activation)(x))


@pytest.mark.parametrize("teacher_activation, units, kind", [
    ("softmax", 3, "multiclass"), ("sigmoid", 1, "binary"), ("sigmoid", 4, "multilabel"),
])
def test_the_teachers_final_activation_tells(teacher_activation, units, kind):
    found = outputs.resolve(model(units), model(units, teacher_activation))
    assert [o.kind for o in found] == [kind]


@pytest.mark.parametrize("loss, units, kind", [
    ("sparse_categorical_crossentropy", 3, "multiclass"),
    (keras.losses.CategoricalCrossentropy(from_logits=True), 3, "multiclass"),
    ("binary_crossentropy", 1, "binary"), ("binary_crossentropy", 5, "multilabel"),
    (keras.losses.BinaryCrossentropy(from_logits=True), 1, "binary"),
    ("mse", 1, "regression"), ("mae", 3, "regression"), (keras.losses.Huber(), 2, "regression"),
    (keras.losses.MeanSquaredError(), 1, "regression"),
])
def test_the_compiled_loss_tells(loss, units, kind):
    assert [o.kind for o in outputs.resolve(model(units), loss=loss)] == [kind]


@pytest.mark.parametrize("labels, units, kind", [
    (np.array([0, 2, 1]), 3, "multiclass"),
    (np.array([0.0, 2.0, 1.0]), 3, "multiclass"),             # index-like floats
    (np.eye(3, dtype="float32")[[0, 2]], 3, "multiclass"),      # one-hot
    (np.array([[0.2, 0.8, 0.0]], "float32"), 3, "multiclass"),  # soft labels
    (np.array([0, 1, 1]), 1, "binary"),
    (np.array([0.0, 1.0]), 1, "binary"),
    (np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), 3, "multilabel"),
    (np.array([[1, 1, 0], [0, 1, 0]]), 3, "multilabel"),        # integer multi-hot
    (np.array([0.5, 2.5]), 1, "regression"),
    (np.array([[0.5, -2.0, 3.0]]), 3, "regression"),
])
def test_the_labels_tell(labels, units, kind):
    assert [o.kind for o in outputs.resolve(model(units), labels=labels)] == [kind]


def test_positions_are_counted_and_labels_per_step_tell():
    found = outputs.resolve(model(5, steps=7), labels=np.zeros((2, 7), "int32"))
    assert found == [outputs.Output(found[0].name, "multiclass", 5, positions=1)]


def test_declared_kind_wins_over_what_is_detected():
    found = outputs.resolve(model(1), model(1, "sigmoid"), task="regression")
    assert [o.kind for o in found] == ["regression"]


@pytest.mark.parametrize("units, what", [(1, "a binary logit or a regression value"),
                                         (4, "4 class logits")])
def test_nothing_tells_raises_what_to_declare(units, what):
    with pytest.raises(outputs.AmbiguousOutput, match=f"{what}.*Declare it.*task="):
        outputs.resolve(model(units))


def test_several_outputs_by_name():
    x = keras.Input((4,))
    two = keras.Model(x, {"reg": keras.layers.Dense(1)(x), "cls": keras.layers.Dense(3)(x)})
    assert outputs.names(two) == ["cls", "reg"]  # keras.tree.flatten order
    found = outputs.resolve(two, loss={"reg": "mse"}, labels={"cls": np.array([0, 2])})
    assert {o.name: o.kind for o in found} == {"cls": "multiclass", "reg": "regression"}
    assert outputs.to_config(found) == {"cls": "multiclass", "reg": "regression"}
    with pytest.raises(ValueError, match=r"task=\{'cls': \.\.\.\}"):
        outputs.resolve(two, loss={"reg": "mse"})
    with pytest.raises(ValueError, match="names outputs \\['nope'\\]"):
        outputs.per_output({"nope": 1}, ["cls", "reg"], "loss")
