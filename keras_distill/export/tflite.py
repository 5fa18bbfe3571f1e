"""Conversion of a Keras model to TensorFlow Lite (LiteRT) flatbuffers, one per quantization mode.

The robust path on Keras 3 is ``model.export(dir, format="tf_saved_model")`` followed by
``tf.lite.TFLiteConverter.from_saved_model`` (``from_keras_model`` crashes on some Keras 3
models, tensorflow#117453, and converting a concrete function keeps the weights as resource
variables that int8 calibration cannot read). :func:`saved_model` writes that SavedModel, with a
dynamic batch dimension or a fixed one (``batch_size=1`` for TensorFlow Lite Micro), and
:func:`convert` turns it into a ``.tflite`` flatbuffer.

Integer modes are checked after conversion: the converter silently keeps an op it cannot quantize
in float between DEQUANTIZE and QUANTIZE ops, so :func:`check_integer_only` looks at every tensor
and raises :class:`UnsupportedOpError`, naming the op and the Keras layer, when one is float.
"""

from __future__ import annotations

import re

import numpy as np

from keras_distill.export import causes
from keras_distill.registry import CALIBRATED_MODES, QUANTIZATION_MODES

# The flatbuffer readers live with the runtimes; re-exported here, where they were first.
from keras_distill.verify.litert import (  # noqa: F401
    UnsupportedOpError,
    detect_quantization,
    io_details,
    layer_for_tensor,
    list_ops,
)


def saved_model(model, path, *, batch_size=None):
    """Write ``model`` as a TensorFlow SavedModel with one ``serve`` signature.

    A model of several outputs gets a signature whose outputs are named as the Keras outputs
    (a dict model's keys, a list model's output layer names), so the ``.tflite`` converted
    from it names them too.

    Args:
        model: a built ``keras.Model`` with one input.
        path: the SavedModel folder to create.
        batch_size: ``None`` for a dynamic batch dimension, or a fixed batch size
            (``1`` for TensorFlow Lite Micro, whose tensors have static shapes).

    Returns:
        ``path``.

    Example:
        >>> saved_model(student, "/tmp/student_b1", batch_size=1)  # doctest: +SKIP
    """
    import tensorflow as tf

    shape, dtype = input_spec(model)
    signature = [tf.TensorSpec((batch_size, *shape), dtype, name=input_name(model))]
    if len(model.outputs) > 1 and not isinstance(getattr(model, "_outputs_struct", None), dict):
        _export_named(model, path, signature)
    else:  # one output, or a dict of them: the signature's outputs already carry their names
        model.export(str(path), format="tf_saved_model", verbose=False,
                     input_signature=signature)
    return path


def _export_named(model, path, signature):
    """A SavedModel whose ``serve`` signature returns the outputs as a dict by Keras output
    name (a list of outputs would be ``output_0``, ``output_1``...)."""
    import keras

    names = output_names(model)

    def serve(x):
        return dict(zip(names, keras.tree.flatten(model(x, training=False))))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=signature)
    archive.write_out(str(path), verbose=False)


def output_names(model):
    """The Keras names of ``model``'s outputs (``keras_distill.outputs.names``)."""
    from keras_distill import outputs

    return outputs.names(model)


def input_spec(model):
    """The per-sample input shape and dtype of a single-input Keras model.

    Returns:
        ``(shape_without_batch, dtype_name)``.
    """
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no defined inputs; build it on a keras.Input "
            "(a Functional or Sequential model with an input shape) before exporting."
        )
    if len(inputs) != 1:
        raise ValueError(f"export supports models with one input; model {model.name!r} has "
                         f"{len(inputs)}.")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"Model input shape {tuple(inputs[0].shape)} has unknown dimensions "
                         "other than the batch; export needs a fixed per-sample shape.")
    return shape, str(inputs[0].dtype)


def input_name(model):
    name = re.sub(r"[^A-Za-z0-9_]", "_", model.inputs[0].name.split(":")[0]) or "input"
    return name


def convert(saved_model_dir, quantization="float32", *, representative_data=None,
            layer_names=()):
    """Convert a SavedModel to a TFLite flatbuffer in one quantization mode.

    Args:
        saved_model_dir: a folder written by :func:`saved_model`.
        quantization: one of ``QUANTIZATION_MODES``: ``"float32"``; ``"float16"`` (float16
            weights); ``"dynamic"`` (int8 weights, float activations); ``"int8"`` (full
            integer, int8 input and output, ``TFLITE_BUILTINS_INT8`` ops only); ``"int16x8"``
            (int16 activations, int8 weights, int16 input and output).
        representative_data: float array ``(N, *input_shape)`` used to calibrate ``int8`` and
            ``int16x8``. ``None`` is accepted only for a quantization-aware model (fake-quant
            ops carry the ranges).
        layer_names: the Keras layer names, used to name the layer in error messages.

    Returns:
        The ``.tflite`` flatbuffer as ``bytes``.

    Raises:
        UnsupportedOpError: an op cannot be converted, or cannot be quantized in ``int8`` /
            ``int16x8``; the message names the op and the layer.

    Example:
        >>> data = convert(saved_model(student, "/tmp/sm"), "int8",
        ...                representative_data=x_train[:300])  # doctest: +SKIP
    """
    import tensorflow as tf

    if quantization not in QUANTIZATION_MODES:
        raise ValueError(f"Unknown quantization {quantization!r}; expected one of "
                         f"{QUANTIZATION_MODES}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in CALIBRATED_MODES:
        if representative_data is not None:
            samples = np.asarray(representative_data)

            def representative_dataset():
                for i in range(len(samples)):
                    yield [samples[i:i + 1]]

            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = (
                [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] if quantization == "int8" else
                [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8])
        # Without calibration data (a quantization-aware model) the converter refuses a
        # restricted op set; the ranges come from the fake-quant ops and
        # check_integer_only() below enforces integer-only ops instead.
        io_type = tf.int8 if quantization == "int8" else tf.int16
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    try:
        data = bytes(converter.convert())
    except Exception as exc:  # the converter raises several types; describe the op if it can
        raise _describe_converter_error(exc, quantization, layer_names) from exc
    if quantization in CALIBRATED_MODES:
        check_integer_only(data, quantization, layer_names=layer_names,
                           calibrated=representative_data is not None)
    return data


def check_integer_only(model_bytes, quantization="int8", *, layer_names=(), calibrated=True):
    """Raise unless every op of ``model_bytes`` runs on integer tensors.

    The converter keeps an op it cannot quantize in float, between DEQUANTIZE and QUANTIZE
    ops, even when asked for ``TFLITE_BUILTINS_INT8``; such a model is not an int8 model.

    Args:
        model_bytes: a ``.tflite`` flatbuffer.
        quantization: the mode it was converted in, for the message.
        layer_names: Keras layer names, to name the layer of the failing op.
        calibrated: whether calibration data was given (the message suggests it if not).

    Raises:
        UnsupportedOpError: naming the first float op and its layer.
    """
    float_ops = []
    for op in list_ops(model_bytes):
        tensors = op["inputs"] + op["outputs"]
        if any(t["dtype"] in ("float32", "float16") for t in tensors):
            float_ops.append(op)
    if not float_ops:
        return
    # Report the op that stayed in float, not the QUANTIZE / DEQUANTIZE around it.
    culprits = [op for op in float_ops if op["op"] not in ("QUANTIZE", "DEQUANTIZE")] or float_ops
    op = culprits[0]
    tensor_name = (op["outputs"] or op["inputs"])[0]["name"]
    layer = layer_for_tensor(tensor_name, layer_names)
    others = sorted({o["op"] for o in culprits[1:]} - {op["op"]})
    more = f"Also left in float: {', '.join(others)}." if others else ""
    hint = "" if calibrated else (
        " The model has no calibration data: pass representative_data, or make every layer "
        "quantization-aware.")
    text = causes.message(op["op"], quantization, layer=layer, tensor=tensor_name,
                          evidence="left it in float", detail=f"{more}{hint}".strip(),
                          what=f"be quantized to {quantization}")
    raise UnsupportedOpError(text, op=op["op"], layer=layer, mode=quantization)


def _describe_converter_error(exc, quantization, layer_names):
    """Turn a converter exception into an UnsupportedOpError naming the op and the layer."""
    op = layer = None
    for error in getattr(exc, "errors", None) or []:
        op_name = getattr(getattr(error, "operator", None), "name", "")
        if op_name:
            op = op_name.split(".", 1)[-1]
            for call in getattr(getattr(error, "location", None), "call", []):
                layer = layer_for_tensor(call.name, layer_names)
                if layer:
                    break
            break
    if op is None:
        match = re.search(r"'(?:tf|tfl)\.(\w+)' op", str(exc))
        op = match.group(1) if match else None
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "TensorList" in str(exc):  # the converter then blames "Op Const in layer None"
        op = "TensorListReserve"
        return UnsupportedOpError(causes.message(op, quantization, evidence="TensorList"),
                                  op=op, layer=None, mode=quantization)
    if op is None:
        return RuntimeError(f"TFLite conversion ({quantization}) failed: {first_line}")
    return UnsupportedOpError(
        causes.message(op, quantization, layer=layer,
                       detail=f"Converter message: {first_line}"),
        op=op, layer=layer, mode=quantization)
