"""Tests for keras_distill/quantize.py: native Keras 3 QAT, pruning, sparsity, gzip sizes."""

import os
import tempfile

import keras
import numpy as np
import pytest
from helpers import agreement, randomize_bn
from keras import layers

from keras_distill import quantize
from keras_distill.presets import student_cnn, student_mlp, teacher_cnn
from keras_distill.quantize import (
    FakeQuant,
    PruningCallback,
    QuantizedConv2D,
    QuantizedDense,
    calibrate,
    gzip_size,
    is_quantize_aware,
    keep_sparsity,
    prune,
    quantize_aware,
    sparsity_report,
    strip_pruning,
)

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _compile(model, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _to_tflite(model, *, int8):
    """SavedModel export, then TFLiteConverter (the robust path for Keras 3 models)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if int8:  # no representative_dataset: the fake-quant ops carry the ranges
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return bytes(converter.convert())


def _interpreter(tflite_bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    return interpreter


def _run_int8(interpreter, x):
    """Quantize x with the input scale, run the batch, return the raw int8 output."""
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    xq = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], xq)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def _weight_tensors(interpreter, ops=("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")):
    """The filter tensors (input 1) of the weight ops of a TFLite model."""
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ops:
            found.append(details[op["inputs"][1]])
    return found


# ---------------------------------------------------------------------------------------
# QAT building blocks
# ---------------------------------------------------------------------------------------


def test_fake_quant_tracks_a_moving_average_range_in_training_only():
    layer = FakeQuant(ema_decay=0.9)
    first = np.array([[-1.0, 0.5, 2.0]], "float32")
    layer(first, training=True)  # the first training batch sets the range
    assert float(layer.range_min.numpy()) == pytest.approx(-1.0)
    assert float(layer.range_max.numpy()) == pytest.approx(2.0)
    layer(np.array([[0.5, 1.0, 4.0]], "float32"), training=True)
    # min is clamped to include 0: 0.9 * -1 + 0.1 * 0; max: 0.9 * 2 + 0.1 * 4
    assert float(layer.range_min.numpy()) == pytest.approx(-0.9)
    assert float(layer.range_max.numpy()) == pytest.approx(2.2)
    out = layer(np.array([[100.0, -0.3]], "float32"), training=False)
    assert float(layer.range_max.numpy()) == pytest.approx(2.2)  # inference: unchanged
    out = np.asarray(out)
    assert out[0, 0] == pytest.approx(2.2, abs=0.01)  # clipped to the range
    step = (2.2 + 0.9) / 255
    assert abs(out[0, 1] + 0.3) <= step / 2 + 1e-6  # on the 8-bit grid


def test_kernel_quantization_is_per_channel_symmetric_and_keeps_zeros():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype("float32") * np.arange(1, 6)
    kernel[..., 0, 2] = 0.0
    q = np.asarray(quantize._quantize_kernel(kernel, 8))
    for c in range(5):
        scale = np.abs(kernel[..., c]).max() / 127
        levels = q[..., c] / scale
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # on the grid
        assert np.abs(np.round(levels)).max() == 127  # narrow range, symmetric
        assert np.abs(q[..., c] - kernel[..., c]).max() <= scale / 2 + 1e-6
    assert np.all(q[..., 0, 2] == 0)
    q_dense = np.asarray(quantize._quantize_kernel_ste(kernel.reshape(-1, 5), 8))
    np.testing.assert_allclose(q_dense, q.reshape(-1, 5), atol=1e-6)
    # a fully zero (pruned) channel stays finite and zero
    kernel[..., 3] = 0.0
    assert np.all(np.asarray(quantize._quantize_kernel(kernel, 8))[..., 3] == 0)


@pytest.mark.parametrize("kind", ["conv", "depthwise", "dense"])
def test_batchnorm_folding_is_exact_in_float(kind):
    rng = np.random.default_rng(1)
    if kind == "dense":
        layer, shape = layers.Dense(6), (5, 7)
    elif kind == "conv":
        layer, shape = layers.Conv2D(6, 3, padding="same"), (2, 5, 5, 3)
    else:
        layer, shape = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (2, 5, 5, 3)
    bn = layers.BatchNormalization(epsilon=1e-3)
    x = rng.normal(size=shape).astype("float32")
    y = layer(x)
    bn(y)
    bn.set_weights([rng.normal(1, 0.3, w.shape).astype("float32") if i != 3 else
                    rng.uniform(0.5, 2, w.shape).astype("float32")
                    for i, w in enumerate(bn.get_weights())])
    expected = np.asarray(bn(layer(x), training=False))
    kernel, bias = quantize._folded_weights(layer, bn)
    config = layer.get_config() | {"use_bias": True}
    folded = type(layer).from_config(config)
    folded(x)
    folded.set_weights([kernel, bias])
    np.testing.assert_allclose(np.asarray(folded(x)), expected, rtol=1e-4, atol=1e-4)


def test_quantize_aware_structure_of_the_teacher():
    teacher = teacher_cnn()
    qat = quantize_aware(teacher)
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert kinds == {
        "image": "InputLayer", "image_quant": "FakeQuant",
        "conv1": "QuantizedConv2D", "conv2": "QuantizedConv2D", "conv3": "QuantizedConv2D",
        "pool": "MaxPooling2D", "gap": "GlobalAveragePooling2D", "gap_quant": "FakeQuant",
        "features": "QuantizedDense", "dropout": "Dropout", "logits": "QuantizedDense",
    }  # bn1..3 folded, relu1..3 fused into the convolutions
    conv1 = qat.get_layer("conv1")
    assert conv1.use_bias and conv1.get_config()["activation"] == "relu"
    assert is_quantize_aware(qat) and not is_quantize_aware(teacher)
    assert teacher.get_layer("bn1") is not None  # the float model is not modified
    with pytest.raises(ValueError, match="weight_bits"):
        quantize_aware(teacher, weight_bits=16)
    with pytest.raises(ValueError, match="activation_bits"):
        quantize_aware(teacher, activation_bits=1)


def test_quantize_aware_handles_depthwise_relu6_add_and_sequential():
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = layers.Activation("relu", name="dw_relu")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.BatchNormalization(name="lonely_bn")(x)  # follows no conv: kept, quantized
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    qat = quantize_aware(model)
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert kinds["dw"] == "QuantizedDepthwiseConv2D" and "dw_relu" not in kinds
    assert qat.get_layer("stem").get_config()["activation"] == "relu6"
    assert {"add_quant", "lonely_bn", "lonely_bn_quant", "gap_quant"} <= set(kinds)
    seq = keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(4),
                            layers.ReLU(), layers.Dense(3, activation="softmax")])
    qseq = quantize_aware(seq)
    # ReLU fused; softmax (which TFLite cannot fuse) moved to its own quantized layer
    assert [type(layer).__name__ for layer in qseq.layers] == [
        "InputLayer", "FakeQuant", "Flatten", "QuantizedDense", "QuantizedDense",
        "Activation", "FakeQuant"]
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    calibrate(qseq, x)
    np.testing.assert_allclose(qseq.predict(x, verbose=0), seq.predict(x, verbose=0),
                               atol=0.05)


def test_qat_model_round_trips_through_a_keras_file(digits):
    keras.utils.set_random_seed(0)
    qat = quantize_aware(teacher_cnn())
    _compile(qat).fit(digits.x_train[:256], digits.y_train[:256], epochs=1, batch_size=64,
                      verbose=0)
    assert float(qat.get_layer("conv2").range_initialized.numpy()) == 1.0
    x = digits.x_test[:64]
    expected = qat.predict(x, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "qat.keras")
        qat.save(path)
        loaded = keras.models.load_model(path)  # no custom_objects: registered classes
    assert isinstance(loaded.get_layer("conv1"), QuantizedConv2D)
    assert isinstance(loaded.get_layer("logits"), QuantizedDense)
    for a, b in zip(qat.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert is_quantize_aware(loaded)


def test_qat_converts_to_all_int8_tflite_without_calibration_data(trained_teacher, digits):
    float_acc = float(np.mean(
        trained_teacher.predict(digits.x_test, verbose=0).argmax(1) == digits.y_test))
    qat = quantize_aware(trained_teacher)
    calibrate(qat, digits.x_train[:256])
    _compile(qat, 1e-4).fit(digits.x_train, digits.y_train, epochs=1, batch_size=64, verbose=0)
    keras_q = qat.predict(digits.x_test, verbose=0)
    qat_acc = float(np.mean(keras_q.argmax(1) == digits.y_test))
    assert qat_acc >= float_acc - 0.02, (qat_acc, float_acc)

    interpreter = _interpreter(_to_tflite(qat, int8=True))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert inp["quantization"][0] == pytest.approx(1 / 255, rel=0.02)  # input range [0, 1]
    weights = _weight_tensors(interpreter)
    assert len(weights) == 5  # conv1..3, features, logits
    for tensor in weights:
        assert tensor["dtype"] == np.int8
        # per-channel: one scale per output channel, zero points 0 (symmetric)
        params = tensor["quantization_parameters"]
        assert len(params["scales"]) == tensor["shape"][0]
        assert not np.any(params["zero_points"])
    float_tensors = [t["name"] for t in interpreter.get_tensor_details()
                     if t["dtype"] == np.float32]
    assert float_tensors == []  # all-int8: no float tensor anywhere

    lite_q = _run_int8(interpreter, digits.x_test)
    scale, zero = out["quantization"]
    lite = (lite_q.astype(np.float32) - zero) * scale
    assert agreement(lite, keras_q) >= 0.95
    assert np.median(np.abs(lite - keras_q)) <= 2 * scale
    lite_acc = float(np.mean(lite.argmax(1) == digits.y_test))
    assert lite_acc >= float_acc - 0.03, (lite_acc, float_acc)


# ---------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------


def test_polynomial_and_constant_schedules():
    _, callback = prune(student_mlp(), target_sparsity=0.8, begin_step=10, end_step=110,
                        frequency=5)
    assert callback.sparsity_at(0) == 0.0
    assert callback.sparsity_at(10) == pytest.approx(0.0)
    assert callback.sparsity_at(60) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert callback.sparsity_at(110) == pytest.approx(0.8)
    assert callback.sparsity_at(500) == pytest.approx(0.8)
    assert [s for s in range(130) if callback._should_update(s)] == list(range(10, 111, 5))
    _, constant = prune(student_mlp(), 0.5, schedule="constant", begin_step=3, frequency=4)
    assert [constant.sparsity_at(s) for s in (0, 2, 3, 50)] == [0, 0, 0.5, 0.5]
    for bad in ({"target_sparsity": 1.0}, {"schedule": "cubic"}, {"frequency": 0},
                {"begin_step": 5, "end_step": 2}, {"layers": ["nope"]}):
        with pytest.raises(ValueError):
            prune(student_mlp(), **bad)


def test_pruning_reaches_the_target_and_survives_strip_and_tflite(digits):
    keras.utils.set_random_seed(0)
    base = _compile(student_cnn(), 3e-3)
    base.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64, verbose=0)
    dense_acc = base.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    dense_bytes = _to_tflite(base, int8=False)

    model, callback = prune(base, target_sparsity=0.75, frequency=5)
    assert model is base
    history = model.fit(digits.x_train, digits.y_train, epochs=6, batch_size=64, verbose=0,
                        callbacks=[callback])
    assert len(history.history["loss"]) == 6
    steps = 6 * int(np.ceil(len(digits.x_train) / 64))
    assert callback.step == steps
    assert callback.resolved_end_step == int(0.75 * steps) - 1
    report = sparsity_report(model)
    assert set(report.layers) == {"conv1", "conv2", "logits"}
    for name in report.layers:
        assert abs(report[name] - 0.75) <= 0.01, (name, report[name])
    assert "conv1" in str(report)
    pruned_acc = model.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    assert pruned_acc >= dense_acc - 0.05, (pruned_acc, dense_acc)

    plain = strip_pruning(model, callback)
    assert plain is not model
    np.testing.assert_array_equal(plain.predict(digits.x_test[:32], verbose=0),
                                  model.predict(digits.x_test[:32], verbose=0))
    assert abs(sparsity_report(plain).overall - 0.75) <= 0.01

    tflite = _to_tflite(plain, int8=False)
    interpreter = _interpreter(tflite)
    kernels = _weight_tensors(interpreter)
    assert len(kernels) == 3
    for tensor in kernels:
        values = interpreter.get_tensor(tensor["index"])
        assert values.dtype == np.float32
        assert abs(np.mean(values == 0) - 0.75) <= 0.01
    # zeros pay off once compressed
    assert len(tflite) == pytest.approx(len(dense_bytes), rel=0.05)
    assert gzip_size(tflite) < 0.7 * gzip_size(dense_bytes)


def test_pruning_callback_finds_the_student_of_a_distiller_like_model(digits):
    class Wrapper(keras.Model):  # stands in for the Distiller: it trains `.student`
        def __init__(self, student):
            super().__init__()
            self.student = student

        def call(self, x, training=False):
            return self.student(x, training=training)

    keras.utils.set_random_seed(0)
    student = student_mlp()
    wrapper = _compile(Wrapper(student), 3e-3)
    callback = PruningCallback(target_sparsity=0.5, schedule="constant", frequency=3)
    wrapper.fit(digits.x_train[:512], digits.y_train[:512], epochs=2, batch_size=64,
                verbose=0, callbacks=[callback])
    report = sparsity_report(student)
    assert report["hidden"] == pytest.approx(0.5, abs=0.01)
    assert report["logits"] == pytest.approx(0.5, abs=0.01)


def test_sparsity_survives_strip_and_quantize_aware():
    model = teacher_cnn(width=8)
    randomize_bn(model)
    model, callback = prune(model, target_sparsity=0.6, schedule="constant")
    callback.update_masks()  # magnitude masks at the target, without training
    plain = strip_pruning(model, callback)
    before = sparsity_report(plain)
    assert before.overall == pytest.approx(0.6, abs=0.01)
    qat = quantize_aware(plain)
    after = sparsity_report(qat)
    # BN folding scales whole output channels and int8 is symmetric: zeros stay zeros
    for name in ("conv1", "conv2", "conv3", "features", "logits"):
        assert after[name] >= before[name] - 1e-9
        weights = qat.get_layer(name).kernel.numpy()
        original = plain.get_layer(name).get_weights()[0]
        assert np.all(weights[original == 0] == 0)
        quantized = np.asarray(quantize._quantize_kernel_ste(weights, 8))
        assert np.mean(quantized == 0) >= before[name] - 1e-9


@pytest.mark.slow
def test_sparsity_survives_qat_fine_tuning_and_int8_conversion(digits):
    keras.utils.set_random_seed(0)
    model = _compile(teacher_cnn(width=8), 3e-3)
    model, callback = prune(model, target_sparsity=0.6, schedule="constant", frequency=5)
    model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64, verbose=0,
              callbacks=[callback])
    plain = strip_pruning(model, callback)
    before = sparsity_report(plain)
    # BN folding scales whole output channels: every zero stays a zero
    qat = quantize_aware(plain)
    folded = sparsity_report(qat)
    for name in ("conv1", "conv2", "conv3", "features", "logits"):
        assert folded[name] >= before[name] - 1e-9 and folded[name] >= 0.59
    keeper = keep_sparsity(qat)
    _compile(qat, 1e-3).fit(digits.x_train, digits.y_train, epochs=1, batch_size=64,
                            verbose=0, callbacks=[keeper])
    after = sparsity_report(qat)
    for name in folded.layers:
        assert after[name] >= folded[name] - 1e-9
    # symmetric int8 keeps exact zeros in the converted weights
    interpreter = _interpreter(_to_tflite(qat, int8=True))
    for tensor in _weight_tensors(interpreter):
        values = interpreter.get_tensor(tensor["index"])
        assert values.dtype == np.int8 and np.mean(values == 0) >= 0.59


def test_gzip_size_of_bytes_and_files(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    assert gzip_size(bytes(10_000)) < 100
    assert gzip_size(noise) > 9_000
    path = tmp_path / "blob.bin"
    path.write_bytes(noise)
    assert gzip_size(path) == gzip_size(noise) == gzip_size(str(path))
    assert gzip_size(bytearray(noise)) == gzip_size(noise)
    with pytest.raises(ValueError, match="directory"):
        gzip_size(tmp_path)
    with pytest.raises(TypeError):
        gzip_size(123)


def test_module_exports():
    assert {"quantize_aware", "is_quantize_aware", "prune", "strip_pruning",
            "sparsity_report", "gzip_size"} <= set(quantize.__all__)


def test_masks_from_zeros_keeps_the_current_zeros(digits):
    model = student_mlp(digits.input_shape, 10)
    kernel = model.get_layer("hidden").kernel
    values = kernel.numpy()
    values[:, ::2] = 0.0
    kernel.assign(values)
    _, callback = quantize.prune(model, target_sparsity=0.5)
    callback.masks_from_zeros()
    kernel.assign(np.ones_like(values))
    callback.apply_masks()
    np.testing.assert_array_equal(kernel.numpy()[:, ::2], 0.0)
    np.testing.assert_array_equal(kernel.numpy()[:, 1::2], 1.0)
