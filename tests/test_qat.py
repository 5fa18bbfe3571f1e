"""Tests for keras_distill/compress/qat.py and fake_quant.py: native Keras 3 QAT, its int8
TFLite conversion, .keras files, and the deprecated keras_distill.quantize module."""

import importlib
import os
import subprocess
import sys
import tempfile
import warnings

import keras
import numpy as np
import pytest
from helpers import agreement
from keras import layers

import keras_distill.compress
from keras_distill.compress import (
    FakeQuant,
    QuantizedConv2D,
    QuantizedDense,
    QuantizedDepthwiseConv2D,
    calibrate,
    is_quantize_aware,
    quantize_aware,
)
from keras_distill.compress.fake_quant import _quantize_kernel, _quantize_kernel_by_rounding
from keras_distill.compress.qat import _folded_weights
from keras_distill.presets import teacher_cnn

# ---------------------------------------------------------------------------------------
# helpers (test_prune.py imports them too)
# ---------------------------------------------------------------------------------------


def compile_classifier(model, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def to_tflite(model, *, int8):
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


def interpreter_for(tflite_bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    return interpreter


def run_int8(interpreter, x):
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


def weight_tensors(interpreter, ops=("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")):
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
    q = np.asarray(_quantize_kernel(kernel, 8))
    for c in range(5):
        scale = np.abs(kernel[..., c]).max() / 127
        levels = q[..., c] / scale
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # on the grid
        assert np.abs(np.round(levels)).max() == 127  # narrow range, symmetric
        assert np.abs(q[..., c] - kernel[..., c]).max() <= scale / 2 + 1e-6
    assert np.all(q[..., 0, 2] == 0)
    q_dense = np.asarray(_quantize_kernel_by_rounding(kernel.reshape(-1, 5), 8))
    np.testing.assert_allclose(q_dense, q.reshape(-1, 5), atol=1e-6)
    # a fully zero (pruned) channel stays finite and zero
    kernel[..., 3] = 0.0
    assert np.all(np.asarray(_quantize_kernel(kernel, 8))[..., 3] == 0)


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
    kernel, bias = _folded_weights(layer, bn)
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
    compile_classifier(qat).fit(digits.x_train[:256], digits.y_train[:256], epochs=1, batch_size=64,
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
    compile_classifier(qat, 1e-4).fit(digits.x_train, digits.y_train, epochs=1, batch_size=64, verbose=0)
    keras_q = qat.predict(digits.x_test, verbose=0)
    qat_acc = float(np.mean(keras_q.argmax(1) == digits.y_test))
    assert qat_acc >= float_acc - 0.02, (qat_acc, float_acc)

    interpreter = interpreter_for(to_tflite(qat, int8=True))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert inp["quantization"][0] == pytest.approx(1 / 255, rel=0.02)  # input range [0, 1]
    weights = weight_tensors(interpreter)
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

    lite_q = run_int8(interpreter, digits.x_test)
    scale, zero = out["quantization"]
    lite = (lite_q.astype(np.float32) - zero) * scale
    assert agreement(lite, keras_q) >= 0.95
    assert np.median(np.abs(lite - keras_q)) <= 2 * scale
    lite_acc = float(np.mean(lite.argmax(1) == digits.y_test))
    assert lite_acc >= float_acc - 0.03, (lite_acc, float_acc)


# ---------------------------------------------------------------------------------------
# .keras files and the package's names
# ---------------------------------------------------------------------------------------

#: What keras_distill.quantize exported before the move (a .keras file and user code rely on
#: these names).
OLD_QUANTIZE_NAMES = {
    "FakeQuant", "PruningCallback", "QuantizedConv2D", "QuantizedDense",
    "QuantizedDepthwiseConv2D", "SparsityReport", "calibrate", "gzip_size",
    "is_quantize_aware", "keep_sparsity", "prune", "quantize_aware", "sparsity_report",
    "strip_pruning",
}

#: The QAT names added since (keras_distill.compress exports them).
NEW_QAT_NAMES = {"float_inside_layers"}
NEW_QAT_LAYER_NAMES = {
    "QuantizedConv1D", "QuantizedConv2DTranspose", "QuantizedDepthwiseConv1D",
    "QuantizedSeparableConv1D", "QuantizedSeparableConv2D",
}


def test_qat_layers_keep_their_registered_names():
    # .keras files record these names: changing one would break every saved QAT model
    new = [getattr(keras_distill.compress, name) for name in sorted(NEW_QAT_LAYER_NAMES)]
    for cls in (FakeQuant, QuantizedDense, QuantizedConv2D, QuantizedDepthwiseConv2D, *new):
        name = f"keras_distill>{cls.__name__}"
        assert keras.saving.get_registered_name(cls) == name
        assert keras.saving.get_registered_object(name) is cls


def _small_qat_model():
    """A calibrated QAT model holding every QAT layer class (BN folded, ReLU fused)."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(3, name="logits")(x)
    model = quantize_aware(keras.Model(inputs, outputs))
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    return calibrate(model, x), x


def _run_python(script, *args):
    """Run ``script`` in a fresh Python process (nothing of this one imported); must succeed."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], check=False,
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


_LOAD_IN_A_FRESH_PROCESS = """
import sys
import numpy as np
import keras
import keras_distill.compress
model = keras.saving.load_model(sys.argv[1])  # no custom_objects
data = np.load(sys.argv[2])
weights = model.get_weights()
assert len(weights) == len(data.files) - 2, (len(weights), data.files)
for i, value in enumerate(weights):
    np.testing.assert_array_equal(value, data[f"weight_{i}"])
np.testing.assert_array_equal(model.predict(data["x"], verbose=0), data["expected"])
assert "keras_distill.quantize" not in sys.modules, "loaded through the deprecated module"
print(" ".join(sorted({type(layer).__name__ for layer in model.layers})))
# last, in the same fresh process (pytest's import hooks would stand between the deprecated
# module and its importer): the warning points at the importing line, the next one
import warnings
warnings.simplefilter("always")
from keras_distill.quantize import prune, quantize_aware
"""
#: The line of ``_LOAD_IN_A_FRESH_PROCESS`` that imports the deprecated module.
_DEPRECATED_IMPORT_LINE = 1 + _LOAD_IN_A_FRESH_PROCESS.splitlines().index(
    "from keras_distill.quantize import prune, quantize_aware")


def test_a_qat_keras_file_loads_after_importing_keras_distill_compress(tmp_path):
    model, x = _small_qat_model()
    path = tmp_path / "qat.keras"
    model.save(path)
    weights = {f"weight_{i}": value for i, value in enumerate(model.get_weights())}
    np.savez(tmp_path / "expected.npz", x=x, expected=model.predict(x, verbose=0), **weights)
    done = _run_python(_LOAD_IN_A_FRESH_PROCESS, path, tmp_path / "expected.npz")
    classes = done.stdout.splitlines()[-1].split()
    assert classes == ["FakeQuant", "GlobalAveragePooling2D", "InputLayer", "QuantizedConv2D",
                       "QuantizedDense", "QuantizedDepthwiseConv2D"], done.stdout
    # the deprecated import at the script's end warns at the importing line
    assert f"<string>:{_DEPRECATED_IMPORT_LINE}: DeprecationWarning: keras_distill.quantize is " \
        "deprecated" in done.stderr, done.stderr[-3000:]


def test_compress_exports_the_names_of_qat_and_prune():
    # (the attribute keras_distill.compress.prune is the function; the module is in sys.modules)
    qat_module = importlib.import_module("keras_distill.compress.qat")
    prune_module = importlib.import_module("keras_distill.compress.prune")

    assert set(keras_distill.compress.__all__) == \
        set(qat_module.__all__) | set(prune_module.__all__) == \
        OLD_QUANTIZE_NAMES | NEW_QAT_LAYER_NAMES | NEW_QAT_NAMES
    for name in keras_distill.compress.__all__:
        home = qat_module if name in qat_module.__all__ else prune_module
        assert getattr(keras_distill.compress, name) is getattr(home, name)
    assert {"quantize_aware", "is_quantize_aware", "prune", "strip_pruning",
            "sparsity_report", "gzip_size"} <= set(keras_distill.compress.__all__)


def test_the_deprecated_quantize_module_warns_and_still_exports_every_name(monkeypatch):
    monkeypatch.delitem(sys.modules, "keras_distill.quantize", raising=False)
    with pytest.warns(DeprecationWarning, match="keras_distill.compress") as caught:
        from keras_distill.quantize import prune, quantize_aware
    assert quantize_aware is keras_distill.compress.quantize_aware
    assert prune is keras_distill.compress.prune
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)]
    quantize = sys.modules["keras_distill.quantize"]
    assert set(quantize.__all__) == set(keras_distill.compress.__all__)
    assert set(quantize.__all__) >= OLD_QUANTIZE_NAMES
    for name in OLD_QUANTIZE_NAMES:
        assert getattr(quantize, name) is getattr(keras_distill.compress, name)
    assert {"quantize_aware", "is_quantize_aware", "prune", "strip_pruning",
            "sparsity_report", "gzip_size"} <= set(quantize.__all__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("keras_distill.quantize")  # imported once: no second warning
