"""Reading a ``.tflite`` flatbuffer with LiteRT: its ops and tensors, its input and output
details, its quantization mode, and the Keras layer an op came from; :class:`UnsupportedOpError`,
the error of an op a runtime cannot run.

Used by the runtimes (``keras_distill.verify``) and by the converters (``keras_distill.export``).
"""

from __future__ import annotations

import re

import numpy as np


class UnsupportedOpError(ValueError):
    """An op cannot run in the requested quantization mode or runtime.

    Attributes:
        op: the op's name (``"SIN"``, ``"GELU"``, ``"Erfinv"``...).
        layer: the Keras layer it comes from, or ``None`` when it could not be told.
        mode: the quantization mode or runtime that refused it.
        detail: the runtime's or converter's own words.
    """

    def __init__(self, message, *, op=None, layer=None, mode=None, detail=""):
        super().__init__(message)
        self.op = op
        self.layer = layer
        self.mode = mode
        self.detail = detail  # the runtime's or converter's own words


def list_ops(model_bytes):
    """The ops of a TFLite flatbuffer, with their tensors.

    Returns:
        A list of ``{"op": "CONV_2D", "inputs": [tensor...], "outputs": [tensor...]}`` where a
        tensor is ``{"name", "dtype", "shape"}``.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model_bytes))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def tensor(i):
        t = tensors[i]
        return {"name": t["name"], "dtype": np.dtype(t["dtype"]).name,
                "shape": [int(d) for d in t["shape"]]}

    ops = []
    for op in interpreter._get_ops_details():  # the only listing LiteRT's Python API offers
        ops.append({"op": op["op_name"],
                    "inputs": [tensor(i) for i in op["inputs"] if i >= 0],
                    "outputs": [tensor(i) for i in op["outputs"] if i >= 0]})
    return ops


def io_details(model_bytes):
    """Input and output tensor details of a TFLite flatbuffer.

    Returns:
        ``{"inputs": [...], "outputs": [...]}``, each entry ``{"name", "dtype", "shape",
        "scale", "zero_point"}`` (scale 0.0 and zero point 0 for float tensors).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model_bytes))

    def describe(d):
        scale, zero_point = d["quantization"]
        return {"name": d["name"], "dtype": np.dtype(d["dtype"]).name,
                "shape": [int(x) for x in d["shape_signature"]],
                "scale": float(scale), "zero_point": int(zero_point)}

    return {"inputs": [describe(d) for d in interpreter.get_input_details()],
            "outputs": [describe(d) for d in interpreter.get_output_details()]}


def output_names(interpreter):
    """The name of each output of a LiteRT ``interpreter``, in ``get_output_details()`` order.

    The names of the model's (one) signature's outputs, which ``export`` makes the Keras output
    names, where every output tensor is in it; else the tensors' own names. (The flatbuffer's
    output order is not the signature's: a two-output model may list its second output first.)

    Example:
        >>> from ai_edge_litert.interpreter import Interpreter  # doctest: +SKIP
        >>> output_names(Interpreter(model_path="two_heads_float32.tflite"))  # doctest: +SKIP
        ['cls', 'reg']
    """
    details = interpreter.get_output_details()
    signatures = interpreter.get_signature_list()
    key = "serving_default" if "serving_default" in signatures else (
        next(iter(signatures)) if len(signatures) == 1 else None)
    by_index = {}
    if key is not None:
        try:
            outputs = interpreter.get_signature_runner(key).get_output_details()
            by_index = {d["index"]: name for name, d in outputs.items()}
        except (ValueError, KeyError, RuntimeError):
            pass
    names = [by_index.get(d["index"]) for d in details]
    if all(names) and len(set(names)) == len(names):
        return names
    return [d["name"] for d in details]


def detect_quantization(model_bytes):
    """Guess the quantization mode of a TFLite flatbuffer from its tensor types.

    Returns:
        One of ``QUANTIZATION_MODES``.
    """
    io = io_details(model_bytes)
    io_types = {t["dtype"] for t in io["inputs"] + io["outputs"]}
    if "int16" in io_types:
        return "int16x8"
    if "int8" in io_types:
        return "int8"
    dtypes = {t["dtype"] for op in list_ops(model_bytes) for t in op["inputs"] + op["outputs"]}
    if "float16" in dtypes:
        return "float16"
    if "int8" in dtypes:
        return "dynamic"
    return "float32"


def layer_for_tensor(tensor_name, layer_names):
    """The Keras layer that produced a TFLite tensor or MLIR location, from its name.

    TensorFlow names tensors ``functional_1/conv1_1/Relu``: a path of name scopes where each
    layer name may carry a ``_<n>`` suffix. Fused tensors join several names with ``;``.

    Returns:
        The layer name, or ``None`` when no scope matches one.
    """
    names = set(layer_names)
    for part in re.split(r"[;@]", tensor_name):
        scopes = part.split("/")
        for scope in reversed(scopes[:-1] or scopes):
            # Scopes carry uniquifying suffixes more often than not (``lstm_1_1`` for layer
            # ``lstm`` of a model traced twice): prefer the most stripped name that is a layer.
            candidates = [scope]
            while re.search(r"_\d+$", candidates[-1]):
                candidates.append(re.sub(r"_\d+$", "", candidates[-1]))
            for candidate in reversed(candidates):
                if candidate in names:
                    return candidate
    return None
