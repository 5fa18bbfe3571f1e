"""Per-layer int8 diagnosis: which layers lose the most when the model runs in int8.

:func:`diagnose` converts the model to int8 with TFLite's quantization debugger
(``tf.lite.experimental.QuantizationDebugger``), which runs the int8 model in LiteRT with each
quantized tensor checked against the float model's, and reports for every layer output, under
its Keras layer name: the RMSE between float and int8 in quantization steps (the RMSE over the
tensor's scale), the signal-to-noise ratio in dB, the cosine similarity and the largest
absolute error, worst (lowest SNR) first. The conversion and calibration run in
keras-distill's worker process (:mod:`keras_distill.isolation`): a native crash there is an
exception, not the end of the caller.

Example:
    >>> report = diagnose(student, x_train[:200], x_val[:200])  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    layer     steps RMSE  SNR dB  cosine  max abs error
    conv2         0.912    18.3  0.9921          0.231
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile

import numpy as np

from keras_distill import isolation

#: The worker's task (a module attribute, so that a test can point it elsewhere).
DEBUG = "keras_distill.export.diagnose:_debug_saved_model"


@dataclasses.dataclass
class LayerDiagnosis:
    """One quantized layer output.

    Attributes:
        layer: the Keras layer (the model's output is its last layer's; ``None`` for a tensor
            no layer names).
        tensor: the TFLite tensor it was measured on.
        steps_rmse: RMSE of int8 against float, in quantization steps of the tensor.
        snr_db: signal-to-noise ratio, 10·log10(Σ float² / Σ (float − int8)²).
        cosine: cosine similarity of the float and int8 outputs.
        max_abs_error: the largest absolute difference.
    """

    layer: str | None
    tensor: str
    steps_rmse: float
    snr_db: float
    cosine: float
    max_abs_error: float


@dataclasses.dataclass
class Diagnosis:
    """The layers of one model, worst (lowest SNR) first."""

    layers: list

    def worst(self, n=1):
        return self.layers[:n]

    def to_dict(self):
        return {"layers": [dataclasses.asdict(d) for d in self.layers]}

    def __str__(self):
        width = max([len(d.layer or "(output)") for d in self.layers] + [5])
        lines = [f"{'layer'.ljust(width)}  steps RMSE  SNR dB  cosine  max abs error"]
        for d in self.layers:
            lines.append(f"{(d.layer or '(output)').ljust(width)}  {d.steps_rmse:10.3f}  "
                         f"{d.snr_db:6.1f}  {d.cosine:6.4f}  {d.max_abs_error:13.4g}")
        return "\n".join(lines)


def diagnose(model, representative_data, eval_data=None, *, samples=64):
    """Run ``model`` in int8 layer by layer against float and rank its layers.

    Args:
        model: a Keras model with one input (converted as ``export()`` converts it: the
            lowered copy of :mod:`keras_distill.export.lowering`).
        representative_data: inputs that calibrate int8 (a few hundred training inputs).
        eval_data: inputs the layers are compared on (an array, or ``(x, y)``); default the
            representative data.
        samples: at most this many inputs of each are used.

    Returns:
        A :class:`Diagnosis`, worst layer first.
    """
    from keras_distill.graph import all_layers

    calibration = np.asarray(representative_data)[:samples]
    x = eval_data[0] if isinstance(eval_data, tuple) else eval_data
    x = calibration if x is None else np.asarray(x)[:samples]
    names = [layer.name for layer in all_layers(model)]
    with _lowered_saved_model(model, calibration) as (path, dtype):
        stats = isolation.call(DEBUG, path, calibration.astype(dtype), x.astype(dtype),
                               stage="int8 quantization debugging",
                               remedy="Diagnose a smaller part of the model.")
    rows = [LayerDiagnosis(_layer(_tensor_name(name), names, model), _tensor_name(name),
                           values["steps_rmse"], values["snr_db"], values["cosine"],
                           values["max_abs_error"])
            for name, values in stats.items()]
    return Diagnosis(sorted(rows, key=lambda d: d.snr_db))


@contextlib.contextmanager
def _lowered_saved_model(model, calibration):
    """``(path, input dtype)`` of a temporary SavedModel of ``model``'s lowered copy (as
    ``export()`` converts it, :mod:`keras_distill.export.lowering`), checked on
    ``calibration``; removed after the block."""
    from keras_distill.export import lowering, tflite

    copy, _ = lowering.quantizable_copy(model, inputs=calibration[:32])
    _, dtype = tflite.input_spec(copy)
    with tempfile.TemporaryDirectory(prefix="keras_distill_int8_") as tmp:
        yield str(tflite.saved_model(copy, os.path.join(tmp, "sm"))), dtype


def _layer(tensor, names, model):
    """The Keras layer of a tensor; the signature's output (``StatefulPartitionedCall...``)
    is the model's last layer's."""
    from keras_distill.export.tflite import layer_for_tensor

    layer = layer_for_tensor(tensor, names)
    if layer is None and tensor.startswith("StatefulPartitionedCall"):
        return model.layers[-1].name
    return layer


def _tensor_name(debug_name):
    """``NumericVerify/functional_1/conv2_1/Relu;...:18`` -> ``functional_1/conv2_1/Relu;...``"""
    return re.sub(r":\d+$", "", debug_name.removeprefix("NumericVerify/"))


# ---- in the worker process ---------------------------------------------------------------


def _flat(tensors, scale=1.0, zero_point=0):
    return np.concatenate([(np.asarray(t, np.float64).ravel() - zero_point) * scale
                           for t in tensors])


def _steps_rmse(floats, quantized, scale, zero_point):
    error = _flat(floats) - _flat(quantized, scale, zero_point)
    return float(math.sqrt(np.mean(error ** 2)) / scale) if scale else 0.0


def _snr_db(floats, quantized, scale, zero_point):
    f = _flat(floats)
    noise = float(np.sum((f - _flat(quantized, scale, zero_point)) ** 2))
    signal = float(np.sum(f ** 2))
    return 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else 200.0


def _cosine(floats, quantized, scale, zero_point):
    f, q = _flat(floats), _flat(quantized, scale, zero_point)
    norm = float(np.linalg.norm(f) * np.linalg.norm(q))
    return float(f @ q / norm) if norm else 1.0


def _debugger(saved_model_dir, calibration, x, **options):
    """TFLite's ``QuantizationDebugger`` for the int8 model of ``saved_model_dir`` calibrated
    on ``calibration``, comparing on ``x`` (``options``: of ``QuantizationDebugOptions``)."""
    import tensorflow as tf

    def dataset(samples):
        def gen():
            for i in range(len(samples)):
                yield [samples[i:i + 1]]
        return gen

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset(calibration)
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=dataset(x),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(**options))


def _debug_saved_model(saved_model_dir, calibration, x):
    """``{debug tensor name: {steps_rmse, snr_db, cosine, max_abs_error}}`` of the int8 model
    of ``saved_model_dir`` calibrated on ``calibration`` and compared on ``x``."""
    debug = _debugger(saved_model_dir, calibration, x, layer_direct_compare_metrics={
        "steps_rmse": _steps_rmse, "snr_db": _snr_db, "cosine": _cosine})
    debug.run()
    return {name: {key: float(values[key]) for key in
                   ("steps_rmse", "snr_db", "cosine", "max_abs_error")}
            for name, values in debug.layer_statistics.items()}
