"""Per-layer int8 diagnosis (keras_distill.export.diagnose)."""

import json

import keras
import numpy as np
import pytest

from keras_distill.export import budget, diagnose
from keras_distill.export.diagnose import _class_labels


def _conv_model(classes):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


@pytest.mark.slow
def test_a_damaged_layer_is_ranked_worst_under_its_keras_name():
    keras.utils.set_random_seed(0)
    model = _conv_model(3)
    kernel, bias = model.get_layer("conv2").get_weights()
    kernel[0, 0, 0, 0] = 200.0  # one huge outlier: its channel's int8 steps get coarse
    model.get_layer("conv2").set_weights([kernel, bias])
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")

    report = diagnose(model, x, x[:32], keep_float_top=0)
    layers = [d.layer for d in report.layers]
    assert {"conv1", "conv2", "conv3"} <= set(layers)  # real Keras layer names
    assert report.worst()[0].layer == "conv2", str(report)
    by_layer = {d.layer: d for d in report.layers}
    assert by_layer["conv2"].snr_db < by_layer["conv1"].snr_db - 10
    assert by_layer["conv1"].cosine > 0.999 and by_layer["conv1"].steps_rmse < 1.0
    assert "conv2" in str(report).splitlines()[1]
    assert report.keep_float_impact == []  # keep_float_top=0: none kept in float


@pytest.fixture(scope="module")
def damaged_classifier(digits):
    """A digits classifier whose conv2 int8 cannot represent: conv1's channel 0 is dead (always
    0, from before training on), and conv2 reads it with weights of 200.0. In float those
    weights multiply zeros (the model is unchanged); in int8 they set the per-channel weight
    scale of every conv2 filter to 200/127, which rounds its real weights to 0."""
    keras.utils.set_random_seed(0)
    model = _conv_model(digits.num_classes)
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., 0], bias[0] = 0.0, -1.0  # ReLU(-1): dead, and no gradient revives it
    model.get_layer("conv1").set_weights([kernel, bias])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, epochs=20, batch_size=64, verbose=0)
    before = model.predict(digits.x_val, verbose=0)
    kernel, bias = model.get_layer("conv2").get_weights()
    kernel[:, :, 0, :] = 200.0
    model.get_layer("conv2").set_weights([kernel, bias])
    np.testing.assert_allclose(model.predict(digits.x_val, verbose=0), before, atol=1e-5)
    return model


@pytest.mark.slow
def test_keeping_the_damaged_layer_in_float_wins_back_the_accuracy(digits,
                                                                   damaged_classifier):
    x, y = digits.x_val, digits.y_val
    report = diagnose(damaged_classifier, digits.x_train[:200], (x, y), keep_float_top=2)

    assert report.worst()[0].layer == "conv2", str(report)
    assert report.float_accuracy > 0.8, str(report)
    assert report.int8_accuracy < report.float_accuracy - 0.4, str(report)
    impact = report.keep_float_impact
    assert len(impact) == 2 and impact[0].layer == "conv2", str(report)
    damaged, other = impact
    assert other.layer not in (None, "conv2")
    # conv2 in float gives back (nearly) all of float's accuracy; the next layer nothing
    assert damaged.accuracy_gain > 0.5, str(report)
    assert damaged.accuracy_gain > other.accuracy_gain + 0.4, str(report)
    assert damaged.accuracy >= report.float_accuracy - 0.03, str(report)
    for d in impact:
        assert d.accuracy_gain == pytest.approx(d.accuracy - report.int8_accuracy, abs=1e-12)
        assert d.bytes_added == d.model_bytes - report.model_bytes
    assert damaged.bytes_added > 0  # conv2's float weights are 4 bytes each, not 1

    classes = report.per_class
    assert [c.label for c in classes] == sorted(set(y.tolist()))
    n = np.array([c.n for c in classes])
    assert n.sum() == len(x) and all(c.n == np.sum(y == c.label) for c in classes)
    for field, overall in (("float_accuracy", report.float_accuracy),
                           ("int8_accuracy", report.int8_accuracy)):
        per = np.array([getattr(c, field) for c in classes])
        assert abs(float(n @ per) / n.sum() - overall) < 1e-9

    data = json.loads(json.dumps(report.to_dict()))
    assert data["keep_float_impact"][0]["layer"] == "conv2"
    assert sum(row["n"] for row in data["per_class"]) == len(x)
    assert set(data["per_class"][0]) == {"class", "n", "float_accuracy", "int8_accuracy"}
    lines = str(report).splitlines()
    table = lines.index(next(line for line in lines if line.startswith("kept in float")))
    assert lines[table + 1].startswith("conv2 ") and f"{damaged.accuracy_gain:+.4f}" in \
        lines[table + 1]
    assert len(lines) == table + 3 + 1 + len(classes)  # 2 layers kept, the class table

    # without labels the float model's predictions are the labels: accuracy is agreement
    agreement = diagnose(damaged_classifier, digits.x_train[:200], x, keep_float_top=0)
    assert agreement.float_accuracy == 1.0 and agreement.keep_float_impact == []
    assert agreement.int8_accuracy < 0.5
    assert sum(c.n for c in agreement.per_class) == len(x)


def test_a_regression_model_gets_its_layers_and_no_accuracy(monkeypatch):
    def no_conversion(*args, **kwargs):
        raise AssertionError("keep_float called for a regression model")

    monkeypatch.setattr(budget, "keep_float", no_conversion)
    monkeypatch.setattr(budget, "conversions", no_conversion)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu",
                                                                     name="hidden"),
                              keras.layers.Dense(1, name="value")])
    x = np.random.default_rng(0).random((48, 6)).astype("float32")
    y = np.random.default_rng(1).normal(size=(48, 1)).astype("float32")

    report = diagnose(model, x, (x, y))
    assert "hidden" in {d.layer for d in report.layers}
    assert report.float_accuracy is None and report.int8_accuracy is None
    assert report.keep_float_impact is None and report.per_class is None
    data = report.to_dict()
    assert data["keep_float_impact"] is None and data["per_class"] is None
    assert "kept in float" not in str(report) and len(str(report).splitlines()) == \
        1 + len(report.layers)


def test_which_outputs_and_labels_count_as_classes():
    x = keras.Input((4,))
    logits = keras.Model(x, keras.layers.Dense(3)(x))
    reference = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0]], np.float32)
    np.testing.assert_array_equal(_class_labels(logits, reference, None), [1, 0])
    np.testing.assert_array_equal(_class_labels(logits, reference, np.array([2, 0])), [2, 0])
    np.testing.assert_array_equal(_class_labels(logits, reference, [[2], [0]]), [2, 0])
    one_hot = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(_class_labels(logits, reference, one_hot), [2, 0])
    assert _class_labels(logits, reference, np.array([[0.3, -1.2, 5.0], [0.5, 2.0, 1.0]])) \
        is None  # float targets of the output's shape: regression
    assert _class_labels(logits, reference, np.array([0, 1, 2])) is None  # not one per row
    multilabel = keras.Model(x, keras.layers.Dense(3, activation="sigmoid")(x))
    assert _class_labels(multilabel, reference, None) is None
    one_unit = keras.Model(x, keras.layers.Dense(1)(x))
    assert _class_labels(one_unit, reference[:, :1], np.array([0, 1])) is None
    two_outputs = keras.Model(x, [keras.layers.Dense(3)(x), keras.layers.Dense(3)(x)])
    assert _class_labels(two_outputs, reference, None) is None
    with pytest.raises(ValueError, match="keep_float_top"):
        diagnose(logits, reference, keep_float_top=-1)
