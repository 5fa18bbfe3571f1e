"""Per-layer int8 diagnosis: which layers lose the most when the model runs in int8.

:func:`diagnose` converts the model to int8 with TFLite's quantization debugger
(``tf.lite.experimental.QuantizationDebugger``), which runs the int8 model in LiteRT with each
quantized tensor checked against the float model's, and reports for every layer output, under
its Keras layer name: the RMSE between float and int8 in quantization steps (the RMSE over the
tensor's scale), the signal-to-noise ratio in dB, the cosine similarity and the largest
absolute error, worst (lowest SNR) first. The conversion and calibration run in
keras-distill's worker process (:mod:`keras_distill.isolation`): a native crash there is an
exception, not the end of the caller.

For a single-output classifier it also measures, in LiteRT on all the evaluation inputs, what
the ranking costs in accuracy: the full int8 model's accuracy against the float model's, per
class too, and the accuracy and size of the int8 model with each of the worst few layers kept
in float (:func:`~keras_distill.export.budget.keep_float`), one at a time.

Example:
    >>> report = diagnose(student, x_train[:200], (x_val, y_val))  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    layer     steps RMSE  SNR dB  cosine  max abs error
    conv2         0.912    18.3  0.9921          0.231
    ...
    <BLANKLINE>
    accuracy: float 0.9148, int8 0.1185 (5616 bytes)
    kept in float  accuracy     gain     bytes  bytes added
    conv2            0.9185  +0.8000      6544         +928
    conv3            0.1222  +0.0037      7408        +1792
    class       n   float    int8
    0          27  0.9630  0.0000
    ...
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
class KeepFloatImpact:
    """The int8 model with one layer kept in float, against the full int8 model.

    Attributes:
        layer: the Keras layer kept in float.
        accuracy: that model's accuracy on the evaluation data (in LiteRT).
        accuracy_gain: ``accuracy`` minus the full int8 model's.
        model_bytes: the size of its ``.tflite`` in bytes.
        bytes_added: ``model_bytes`` minus the full int8 model's.
    """

    layer: str
    accuracy: float
    accuracy_gain: float
    model_bytes: int
    bytes_added: int


@dataclasses.dataclass
class ClassAccuracy:
    """The accuracy of the float and the full int8 model among the samples of one class.

    Attributes:
        label: the class index (``"class"`` in :meth:`Diagnosis.to_dict`).
        n: the evaluation samples (positions, for per-position outputs) of that label.
        float_accuracy, int8_accuracy: the Keras model's and the full int8 model's accuracy
            on them.
    """

    label: int
    n: int
    float_accuracy: float
    int8_accuracy: float

    def to_dict(self):
        return {"class": self.label, "n": self.n, "float_accuracy": self.float_accuracy,
                "int8_accuracy": self.int8_accuracy}


@dataclasses.dataclass
class Diagnosis:
    """The layers of one model, worst (lowest SNR) first.

    Attributes:
        layers: the :class:`LayerDiagnosis` of every quantized layer output, worst first.
        float_accuracy, int8_accuracy: the Keras model's and the full int8 model's accuracy
            on the evaluation data (``None`` for a model that is not a single-output
            classifier, or labels that are not classes).
        keep_float_impact: a :class:`KeepFloatImpact` for each of the worst layers kept in
            float alone, worst layer first (``None`` where the accuracies are).
        per_class: a :class:`ClassAccuracy` for each label of the evaluation data, in order
            (``None`` where the accuracies are).
        model_bytes: the size of the full int8 ``.tflite`` (``None`` where the accuracies
            are).
    """

    layers: list
    float_accuracy: float | None = None
    int8_accuracy: float | None = None
    keep_float_impact: list | None = None
    per_class: list | None = None
    model_bytes: int | None = None

    def worst(self, n=1):
        return self.layers[:n]

    def to_dict(self):
        return {"layers": [dataclasses.asdict(d) for d in self.layers],
                "float_accuracy": self.float_accuracy, "int8_accuracy": self.int8_accuracy,
                "model_bytes": self.model_bytes,
                "keep_float_impact": None if self.keep_float_impact is None else
                [dataclasses.asdict(d) for d in self.keep_float_impact],
                "per_class": None if self.per_class is None else
                [c.to_dict() for c in self.per_class]}

    def __str__(self):
        width = max([len(d.layer or "(output)") for d in self.layers] + [5])
        lines = [f"{'layer'.ljust(width)}  steps RMSE  SNR dB  cosine  max abs error"]
        for d in self.layers:
            lines.append(f"{(d.layer or '(output)').ljust(width)}  {d.steps_rmse:10.3f}  "
                         f"{d.snr_db:6.1f}  {d.cosine:6.4f}  {d.max_abs_error:13.4g}")
        if self.int8_accuracy is None:
            return "\n".join(lines)
        lines += ["", (f"accuracy: float {self.float_accuracy:.4f}, "
                       f"int8 {self.int8_accuracy:.4f} ({self.model_bytes} bytes)")]
        if self.keep_float_impact:
            width = max([len(d.layer) for d in self.keep_float_impact] + [13])
            lines.append(f"{'kept in float'.ljust(width)}  accuracy     gain     bytes  "
                         "bytes added")
            for d in self.keep_float_impact:
                lines.append(f"{d.layer.ljust(width)}  {d.accuracy:8.4f}  "
                             f"{d.accuracy_gain:+7.4f}  {d.model_bytes:8d}  "
                             f"{d.bytes_added:+11d}")
        if self.per_class:
            width = max([len(str(c.label)) for c in self.per_class] + [5])
            lines.append(f"{'class'.ljust(width)}  {'n':>6}   float    int8")
            for c in self.per_class:
                lines.append(f"{str(c.label).ljust(width)}  {c.n:6d}  "
                             f"{c.float_accuracy:6.4f}  {c.int8_accuracy:6.4f}")
        return "\n".join(lines)


def diagnose(model, representative_data, eval_data=None, *, samples=64, keep_float_top=3):
    """Run ``model`` in int8 layer by layer against float and rank its layers.

    Args:
        model: a Keras model with one input (converted as ``export()`` converts it: the
            lowered copy of :mod:`keras_distill.export.lowering`).
        representative_data: inputs that calibrate int8 (a few hundred training inputs).
        eval_data: inputs the layers are compared on (an array, or ``(x, y)`` with class
            labels: indices or one-hot rows); default the representative data.
        samples: at most this many inputs of each are used for the per-layer comparison.
        keep_float_top: for a single-output classifier (two or more units, no sigmoid), how
            many of the worst layers to measure kept in float, one at a time (0: none;
            ``None``: no accuracy at all, the per-layer statistics only). The
            accuracies are measured in LiteRT on all of the evaluation inputs, against the
            labels (without labels, the float model's predictions: accuracy is agreement
            with it); the int8 models are calibrated on all of ``representative_data``, as
            :func:`~keras_distill.export.budget.keep_float` makes them.

    Returns:
        A :class:`Diagnosis`, worst layer first; for a classifier with its accuracies, per
        class, and the impact of keeping each of the worst ``keep_float_top`` layers in float
        (for any other model those are ``None``).
    """
    from keras_distill.graph import all_layers

    if keep_float_top is not None and (isinstance(keep_float_top, bool) or not isinstance(
            keep_float_top, int) or keep_float_top < 0):
        raise ValueError(f"keep_float_top must be an int >= 0 (or None: no accuracy is "
                         f"measured); got {keep_float_top!r}.")
    calibration = np.asarray(representative_data)[:samples]
    x_all, y = eval_data if isinstance(eval_data, tuple) else (eval_data, None)
    x = calibration if x_all is None else np.asarray(x_all)[:samples]
    names = [layer.name for layer in all_layers(model)]
    with _lowered_saved_model(model, calibration) as (path, dtype):
        stats = isolation.call(DEBUG, path, calibration.astype(dtype), x.astype(dtype),
                               stage="int8 quantization debugging",
                               remedy="Diagnose a smaller part of the model.")
    rows = [LayerDiagnosis(_layer(_tensor_name(name), names, model), _tensor_name(name),
                           values["steps_rmse"], values["snr_db"], values["cosine"],
                           values["max_abs_error"])
            for name, values in stats.items()]
    report = Diagnosis(sorted(rows, key=lambda d: d.snr_db))
    if keep_float_top is not None:
        x_all = np.asarray(representative_data) if x_all is None else np.asarray(x_all)
        _measure_accuracy(report, model, representative_data, x_all, y, keep_float_top)
    return report


def _class_labels(model, reference, y):
    """The class index of every prediction (``reference``'s rows, flattened) as a 1-D array,
    or None where ``model`` is not a single-output classifier or ``y`` holds no classes."""
    from keras_distill import outputs

    if len(model.outputs) != 1 or reference.ndim < 2 or reference.shape[-1] < 2 or \
            outputs.final_activation(model.outputs[0]) == "sigmoid":
        return None
    if y is None:
        return np.argmax(reference, -1).reshape(-1)
    y = np.asarray(y)
    if outputs.kind_of_labels(y, reference.shape) != outputs.MULTICLASS:
        return None
    if y.shape == reference.shape:  # one-hot (or soft) rows
        y = np.argmax(y, -1)
    y = y.reshape(-1)
    return y.astype(np.int64) if y.size == reference[..., 0].size else None


def _measure_accuracy(report, model, representative_data, x, y, keep_float_top):
    """Fill ``report``'s accuracies, per class and kept in float (a classifier's only)."""
    from keras_distill.export.budget import conversions

    reference = np.asarray(model.predict(x, verbose=0))
    labels = _class_labels(model, reference, y)
    if labels is None:
        return
    with conversions(model, representative_data) as convert:  # one lowered SavedModel
        data = convert.keep_float([])
        keep = labels >= 0  # -1: a position left out (padding), as verify.scores leaves it
        float_hits = (np.argmax(reference, -1).reshape(-1) == labels)[keep]
        int8_hits = _hits(data, x, labels)[keep]
        all_labels, labels = labels, labels[keep]
        report.float_accuracy, report.int8_accuracy = _mean(float_hits), _mean(int8_hits)
        report.model_bytes = len(data)
        report.per_class = [ClassAccuracy(int(c), int(np.sum(labels == c)),
                                          _mean(float_hits[labels == c]),
                                          _mean(int8_hits[labels == c]))
                            for c in np.unique(labels)]
        report.keep_float_impact = []
        worst = list(dict.fromkeys(d.layer for d in report.layers if d.layer))[:keep_float_top]
        for layer in worst:
            mixed = convert.keep_float([layer])
            accuracy = _mean(_hits(mixed, x, all_labels)[keep])
            report.keep_float_impact.append(KeepFloatImpact(
                layer, accuracy, accuracy - report.int8_accuracy, len(mixed),
                len(mixed) - report.model_bytes))


def _hits(model_bytes, x, labels):
    """Per prediction (flattened), whether the float-IO ``.tflite`` gets ``labels`` right."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model_bytes))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x), *x.shape[1:]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    return np.argmax(interpreter.get_tensor(out["index"]), -1).reshape(-1) == labels


def _mean(hits):
    return float(np.mean(hits)) if len(hits) else float("nan")


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
