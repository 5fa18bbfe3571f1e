"""QAT beyond 2-D convolutions: 1-D, depthwise 1-D, separable and transposed convolutions,
operator-written residual adds, and the warning for layers that stay float inside.

Each model is made quantization-aware, calibrated, converted to int8 TFLite without
calibration data (the fake-quant ops carry every range) and run in LiteRT."""

import warnings

import keras
import numpy as np
import pytest
from keras import layers
from test_qat import interpreter_for, run_int8, to_tflite

from keras_distill.compress import calibrate, quantize_aware
from keras_distill.compress.fake_quant import QUANTIZED_VERSION
from keras_distill.compress.qat import _folded_weights


def _randomize_batchnorms(model, rng):
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
            layer.gamma.assign(rng.normal(1, 0.2, layer.gamma.shape))


def _time_series():
    """Conv1D (causal, BN folded, ReLU fused), DepthwiseConv1D, SeparableConv1D twice (one
    with a folded BN and a ReLU6)."""
    inputs = keras.Input((32, 3))
    x = layers.Conv1D(8, 5, padding="causal", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv1D(3, activation="relu")(x)
    x = layers.SeparableConv1D(16, 5, activation="relu", padding="same")(x)
    x = layers.SeparableConv1D(16, 3, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu6")(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


def _decoder():
    """SeparableConv2D + BN + ReLU, Conv2DTranspose with a ReLU, UpSampling2D, Concatenate,
    and a residual add written as an operator."""
    inputs = keras.Input((8, 8, 2))
    x = layers.SeparableConv2D(8, 3, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = x + layers.Conv2D(8, 1)(inputs)
    x = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.UpSampling2D()(x)
    x = layers.Concatenate()([x, x])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3)(x))


@pytest.mark.slow
@pytest.mark.parametrize("build", [_time_series, _decoder], ids=["time_series", "decoder"])
def test_every_weight_layer_becomes_quantized_and_converts_to_all_int8(build):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = build()
    _randomize_batchnorms(model, rng)
    x = rng.normal(size=(96, *model.inputs[0].shape[1:])).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer with weights has a QAT version
        qat = calibrate(quantize_aware(model), x)
    kinds = [type(layer).__name__ for layer in qat.layers]
    assert "BatchNormalization" not in kinds  # folded
    weighted = [layer for layer in model.layers if type(layer) in QUANTIZED_VERSION]
    for layer in weighted:
        assert type(qat.get_layer(layer.name)) is QUANTIZED_VERSION[type(layer)]
    reference = np.asarray(model(x))
    simulated = np.asarray(qat(x))
    # int8 simulation: within a few percent of the output range of the float model
    assert np.abs(simulated - reference).max() <= 0.05 * np.abs(reference).max()

    interpreter = interpreter_for(to_tflite(qat, int8=True))
    float_tensors = [t["name"] for t in interpreter.get_tensor_details()
                     if t["dtype"] == np.float32]
    assert float_tensors == []  # no calibration data, yet every tensor has an int8 range
    out = interpreter.get_output_details()[0]
    scale, zero = out["quantization"]
    lite = (run_int8(interpreter, x[:32]).astype(np.float32) - zero) * scale
    # LiteRT runs what the QAT model simulated: within 2 output steps
    assert np.abs(lite - simulated[:32]).max() <= 2 * scale + 1e-6


@pytest.mark.parametrize("kind", ["conv1d", "depthwise1d", "separable1d", "separable2d",
                                  "transpose"])
def test_batchnorm_folds_exactly_into_every_new_layer(kind):
    rng = np.random.default_rng(1)
    layer, shape = {
        "conv1d": (layers.Conv1D(6, 3, padding="causal"), (2, 9, 3)),
        "depthwise1d": (layers.DepthwiseConv1D(3, depth_multiplier=2), (2, 9, 3)),
        "separable1d": (layers.SeparableConv1D(6, 3, depth_multiplier=2), (2, 9, 3)),
        "separable2d": (layers.SeparableConv2D(6, 3, padding="same"), (2, 5, 5, 3)),
        "transpose": (layers.Conv2DTranspose(6, 3, strides=2), (2, 4, 4, 3)),
    }[kind]
    x = rng.normal(size=shape).astype("float32")
    bn = layers.BatchNormalization(epsilon=1e-3)
    bn(layer(x))
    bn.set_weights([rng.normal(1, 0.3, w.shape).astype("float32") if i != 3 else
                    rng.uniform(0.5, 2, w.shape).astype("float32")
                    for i, w in enumerate(bn.get_weights())])
    expected = np.asarray(bn(layer(x), training=False))
    folded = type(layer).from_config(layer.get_config() | {"use_bias": True})
    folded(x)
    folded.set_weights(_folded_weights(layer, bn))
    np.testing.assert_allclose(np.asarray(folded(x)), expected, rtol=1e-4, atol=1e-4)


def test_new_qat_layers_round_trip_through_a_keras_file(tmp_path):
    rng = np.random.default_rng(2)
    model = _time_series()
    x = rng.normal(size=(16, 32, 3)).astype("float32")
    qat = calibrate(quantize_aware(model), x)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in qat.layers]
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(qat(x)))


def test_layers_that_stay_float_inside_are_named_in_a_warning():
    inputs = keras.Input((12,), dtype="int32")
    x = layers.Embedding(50, 16)(inputs)
    a = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(x, x)
    x = layers.LayerNormalization(name="norm")(x + a)  # an operator-written residual add
    x = layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, layers.Dense(3, name="logits")(x))
    with pytest.warns(UserWarning, match="2 layer") as caught:
        qat = quantize_aware(model)
    message = str(caught[0].message)
    assert "attention (MultiHeadAttention)" in message and "norm (LayerNormalization)" in \
        message and "Embedding" not in message
    assert type(qat.get_layer("logits")).__name__ == "QuantizedDense"
    x = np.random.default_rng(3).integers(0, 50, (4, 12)).astype("int32")
    assert np.abs(np.asarray(calibrate(qat, x)(x)) - np.asarray(model(x))).max() <= \
        0.05 * np.abs(np.asarray(model(x))).max()


def test_calibrate_sets_the_range_between_a_separable_convolutions_two_halves():
    inputs = keras.Input((8, 8, 2))
    x = layers.SeparableConv2D(4, 3, depth_multiplier=2, name="sep")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    x = 5 * np.random.default_rng(0).normal(size=(16, 8, 8, 2)).astype("float32")
    qat = calibrate(quantize_aware(model), x)
    inner = qat.get_layer("sep").depthwise_quant
    assert float(inner.range_initialized.numpy()) == 1.0
    assert (float(inner.range_min.numpy()), float(inner.range_max.numpy())) != (-6.0, 6.0)
