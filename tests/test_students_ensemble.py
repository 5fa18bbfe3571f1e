"""Tests for keras_distill.students.ensemble: one flat, trainable Functional model that
outputs the (weighted) mean of its members' logits, distilled, saved and exported as one."""

import os

import keras
import numpy as np
import pytest
from helpers import round_trip

from keras_distill import Distiller
from keras_distill.presets import student_cnn, student_mlp
from keras_distill.students import ensemble


def _members(n=2, width=4):
    return [student_cnn((8, 8, 1), 10, width=width, name=f"s{i}") for i in range(n)]


@pytest.fixture
def x():
    return np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")


def test_output_is_the_mean_of_the_members_logits_and_the_model_is_flat(x):
    members = _members(3)
    model = ensemble(members)
    assert isinstance(model, keras.Model) and model.__class__.__name__ == "Functional"
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # flat
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names)) == 1 + 3 * 5 + 1  # input, 3 x 5 layers, "logits"
    assert {"m0_conv1", "m1_conv1", "m2_logits", "logits"} <= set(names)
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)
    assert model.count_params() == sum(m.count_params() for m in members)
    expected = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)


def test_weights_are_normalized_and_applied(x):
    members = _members(2)
    model = ensemble(members, weights=[1, 3])
    a, b = (m.predict(x, verbose=0) for m in members)
    np.testing.assert_allclose(model.predict(x, verbose=0), 0.25 * a + 0.75 * b, atol=1e-6)
    one = ensemble(members[:1])
    np.testing.assert_allclose(one.predict(x, verbose=0), a, atol=1e-6)


def test_members_are_copied_not_shared(x):
    members = _members(2)
    before = [m.get_weights() for m in members]
    model = ensemble(members)
    for w in model.trainable_variables:
        w.assign(w + 1.0)
    for m, weights in zip(members, before):
        assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), weights))


def test_frozen_members_give_a_trainable_ensemble():
    members = _members(2)
    for m in members:
        m.trainable = False
    model = ensemble(members)
    assert model.trainable and len(model.trainable_weights) == 2 * 6  # 3 kernels + 3 biases


@pytest.mark.parametrize("bad, message", [
    (lambda: ensemble([student_cnn((8, 8, 1), 10), student_cnn((8, 8, 1), 5)]),
     r"output shape: member 0 \('student'\) gives \(10,\), member 1 \('student'\) gives \(5,\)"),
    (lambda: ensemble([student_cnn((8, 8, 1), 10), student_mlp((64,), 10)]),
     (r"input shape: member 0 \('student'\) takes \(8, 8, 1\), member 1 \('student_mlp'\) "
      r"takes \(64,\)")),
    (lambda: ensemble(_members(2), average="probabilities"), "average must be 'logits'"),
    (lambda: ensemble(_members(2), weights=[1]), "weights must be 2 non-negative"),
    (lambda: ensemble(_members(2), weights=[1, -1]), "weights must be 2 non-negative"),
    (lambda: ensemble(_members(2), weights=[0, 0]), "weights must be 2 non-negative"),
    (lambda: ensemble([]), "non-empty list"),
])
def test_bad_arguments_are_refused_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        bad()


def test_subclassed_member_is_refused():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="ensemble"):
        ensemble([Sub()])


def test_the_flat_ensemble_is_accepted_by_quantize_aware_and_prune(x):
    from keras_distill.compress import is_quantize_aware, prune, quantize_aware

    model = ensemble(_members(2), weights=[1, 2])
    qat = quantize_aware(model)
    assert is_quantize_aware(qat) and qat.output_shape == (None, 10)
    assert qat.predict(x, verbose=0).shape == (16, 10)
    pruned, callback = prune(model, 0.5)
    assert pruned is model and callback is not None


@pytest.mark.slow
def test_distiller_trains_every_member_and_the_ensemble_learns(digits, trained_teacher):
    model = ensemble(_members(2))
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    assert len(before) == 12
    d = Distiller(trained_teacher, model)
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    d.fit(digits.x_train, digits.y_train, epochs=8, batch_size=64, verbose=0)
    after = {v.path: v.numpy() for v in model.trainable_variables}
    changed = {p for p, v0 in before.items() if np.abs(after[p] - v0).max() > 1e-4}
    assert changed == set(before), sorted(set(before) - changed)
    for i in range(2):
        assert any(p.startswith(f"m{i}_") for p in changed)
    logits = model.predict(digits.x_test, verbose=0)
    accuracy = float(np.mean(logits.argmax(1) == digits.y_test))
    assert accuracy > 0.85, accuracy


def test_keras_round_trip_gives_identical_predictions(tmp_path, x):
    model = ensemble(_members(2), weights=[2, 1])
    loaded = round_trip(model, tmp_path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.slow
def test_exports_to_one_tflite_and_onnx_per_mode_matching_the_ensemble(digits, tmp_path):
    from keras_distill.export import export
    from keras_distill.verify.runners import LiteRTRunner

    model = ensemble(_members(2), weights=[1, 2], name="ens")  # Rescaling + Add in int8
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64, verbose=0)
    report = export(model, tmp_path, formats=("tflite", "onnx"),
                    quantization=("float32", "int8"), representative_data=digits.x_train,
                    eval_data=(digits.x_test, digits.y_test))
    assert report.ok, [a.error for a in report.failed]
    assert all(a.ok for a in report.artifacts)
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith((".tflite", ".onnx")))
    assert files == ["ens_float32.onnx", "ens_float32.tflite", "ens_int8.onnx",
                     "ens_int8.tflite"]
    assert report.get("tflite", "float32").metrics["max_abs_error"] <= 1e-4
    assert report.get("onnx", "float32").metrics["max_abs_error"] <= 1e-4
    assert report.get("tflite", "int8").metrics["agreement"] >= 0.95

    runner = LiteRTRunner((tmp_path / "ens_float32.tflite").read_bytes())
    xs = digits.x_test[:20]
    got = np.concatenate([runner(xs[i:i + 1]) for i in range(len(xs))])
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), atol=1e-4)
