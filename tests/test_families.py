"""Every architecture family a user brings distills and exports, or fails naming the cause.

One test per family (CNN with residuals, depthwise MobileNet, Conv1D, LSTM, GRU, Bidirectional,
transformer encoder, Conv2DTranspose decoder), each on small generated data of its shape: a
teacher (the family at twice the width) is trained one epoch and distilled into the student
for one epoch; then TFLite float32 (≤ 1e-4 from Keras), TFLite int8 (all-integer: the export
refuses a float op), ONNX float32 (≤ 1e-4) and int8, and TensorFlow Lite Micro; QAT and 50 % pruning
each export to int8. Where an artifact cannot be made, the test asserts the named cause.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import layers

from keras_distill import Distiller
from keras_distill.compress import (
    calibrate,
    prune,
    quantize_aware,
    sparsity_report,
    strip_pruning,
)
from keras_distill.export import export
from keras_distill.verify import micro

N, CLASSES = 96, 3


def _cnn_residual(width):
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    y = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(width, 3, padding="same")(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(CLASSES)(x))


def _mobilenet(width):
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    x = layers.Conv2D(2 * width, 1, use_bias=False)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(CLASSES)(x))


def _conv1d(width):
    inputs = keras.Input((32, 3))
    x = layers.Conv1D(width, 5, padding="causal", activation="relu")(inputs)
    x = layers.SeparableConv1D(2 * width, 5, activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(CLASSES)(x))


def _recurrent(kind):
    def build(width):
        inputs = keras.Input((10,), dtype="int32")
        x = layers.Embedding(40, 8)(inputs)
        rnn = {"lstm": lambda: layers.LSTM(width), "gru": lambda: layers.GRU(width),
               "bidirectional": lambda: layers.Bidirectional(layers.LSTM(width // 2))}[kind]
        return keras.Model(inputs, layers.Dense(CLASSES)(rnn()(x)))
    return build


def _encoder(width):
    inputs = keras.Input((10,), dtype="int32")
    x = layers.Embedding(40, width)(inputs)
    a = layers.MultiHeadAttention(num_heads=2, key_dim=width // 2)(x, x)
    x = layers.LayerNormalization()(x + a)
    x = layers.Dense(width, activation="gelu", name="ffn")(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(CLASSES)(x))


def _decoder(width):
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.UpSampling2D()(x)
    x = layers.Conv2D(width, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(CLASSES)(x))


#: family -> (builder, student width, what TFLite Micro says: None where it runs, else the op
#: it lacks, named in the failure)
FAMILIES = {
    "cnn_residual": (_cnn_residual, 8, None),
    "mobilenet": (_mobilenet, 8, None),
    "conv1d": (_conv1d, 8, None),
    "lstm": (_recurrent("lstm"), 8, None),
    "gru": (_recurrent("gru"), 8, None),
    "bidirectional": (_recurrent("bidirectional"), 8, None),
    "transformer": (_encoder, 8, "GELU"),
    "decoder": (_decoder, 4, None),
}


def _data(model, rng):
    shape = model.inputs[0].shape[1:]
    if "int" in str(model.inputs[0].dtype):
        x = rng.integers(0, 40, (N, *shape)).astype("int32")
        y = x[:, -1] % CLASSES  # the last token decides
    else:
        x = rng.normal(size=(N, *shape)).astype("float32")
        y = (x.reshape(N, -1).mean(1) > 0).astype("int64") + (x.reshape(N, -1)[:, 0] > 1)
    return x, y.astype("int64")


def _fit_one_epoch(model, x, y):
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    return model


def _export(model, tmp_path, name, x, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # failures are asserted from the report
        return export(model, tmp_path / name, name=name, representative_data=x,
                      eval_data=(x[:48], None), write_report=False, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_distills_and_exports(family, tmp_path):
    build, width, micro_missing = FAMILIES[family]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    teacher, student = build(2 * width), build(width)
    x, y = _data(student, rng)
    _fit_one_epoch(teacher, x, y)
    distiller = Distiller(teacher, student)
    distiller.compile(keras.optimizers.Adam(3e-3))
    history = distiller.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][-1])

    report = _export(student, tmp_path, "student", x, formats=("tflite", "onnx", "micro"),
                     quantization=("float32", "int8"))
    for fmt in ("tflite", "onnx"):
        artifact = report.get(fmt, "float32")
        assert artifact.ok and artifact.metrics["max_abs_error"] <= 1e-4, (fmt, artifact.error)
    int8 = report.get("tflite", "int8")
    assert int8.ok, int8.error
    assert report.get("onnx", "int8").ok, report.get("onnx", "int8").error
    ids = "int" in str(student.inputs[0].dtype)  # token ids stay int32; images become int8
    assert int8.details["inputs"][0]["dtype"] == ("int32" if ids else "int8")
    assert int8.details["outputs"][0]["dtype"] == "int8"
    chip = report.get("micro", "int8")
    if micro_missing is None:
        assert chip.status == ("ok" if micro.runtime_available() else "unverified"), chip.error
    elif micro.runtime_available():
        assert chip.status == "failed" and micro_missing in chip.error, chip.error

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # layers left float inside are named
        qat = calibrate(quantize_aware(student), x)
    _fit_one_epoch(qat, x, y)
    qat_report = _export(student, tmp_path, "qat", x, formats=("tflite",),
                         quantization=("int8",), qat_model=qat)
    (qat_int8,) = [a for a in qat_report.artifacts if a.qat]
    assert qat_int8.ok, qat_int8.error

    pruned, callback = prune(build(width), 0.5, end_step=2, frequency=1)
    pruned.set_weights(student.get_weights())
    pruned.compile(keras.optimizers.Adam(1e-3),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    stripped = strip_pruning(pruned, callback)
    assert sparsity_report(stripped).overall >= 0.45
    pruned_int8 = _export(stripped, tmp_path, "pruned", x, formats=("tflite",),
                          quantization=("int8",)).get("tflite", "int8")
    assert pruned_int8.ok, pruned_int8.error
