"""Per-layer int8 diagnosis (keras_distill.export.diagnose)."""

import keras
import numpy as np
import pytest

from keras_distill.export import diagnose


@pytest.mark.slow
def test_a_damaged_layer_is_ranked_worst_under_its_keras_name():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    kernel, bias = model.get_layer("conv2").get_weights()
    kernel[0, 0, 0, 0] = 200.0  # one huge outlier: its channel's int8 steps get coarse
    model.get_layer("conv2").set_weights([kernel, bias])
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")

    report = diagnose(model, x, x[:32])
    layers = [d.layer for d in report.layers]
    assert {"conv1", "conv2", "conv3"} <= set(layers)  # real Keras layer names
    assert report.worst()[0].layer == "conv2", str(report)
    by_layer = {d.layer: d for d in report.layers}
    assert by_layer["conv2"].snr_db < by_layer["conv1"].snr_db - 10
    assert by_layer["conv1"].cosine > 0.999 and by_layer["conv1"].steps_rmse < 1.0
    assert "conv2" in str(report).splitlines()[1]
