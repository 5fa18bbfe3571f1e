"""Conversion of a Keras model to ONNX through tf2onnx, and optional int8 ONNX.

``tf2onnx.convert.from_keras`` fails on Keras 3 models; converting a ``tf.function`` with an
input signature (dynamic batch dimension) through ``tf2onnx.convert.from_function`` works and
matches Keras to about 1e-7. tf2onnx 1.17 refuses opsets above 18.

int8 ONNX uses ``onnxruntime.quantization.quantize_static`` (QDQ format, per-channel weights)
calibrated on representative samples.

tf2onnx, onnx and onnxruntime are imported inside the functions, never at module import.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

DEFAULT_OPSET = 17
#: Opsets tf2onnx 1.17 can write.
SUPPORTED_OPSETS = range(9, 19)


def check_opset(opset):
    """Raise ``ValueError`` unless ``opset`` is an opset tf2onnx can write."""
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or \
            opset not in SUPPORTED_OPSETS:
        raise ValueError(f"onnx_opset={opset!r} is not supported; tf2onnx writes opsets "
                         f"{SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} "
                         f"(default {DEFAULT_OPSET}).")


def convert(model, *, opset=DEFAULT_OPSET):
    """Convert a single-input Keras model to a float32 ONNX model.

    Args:
        model: a built ``keras.Model`` with one input.
        opset: ONNX opset, 9 to 18 (default 17).

    Returns:
        The serialized ONNX ``ModelProto`` as ``bytes``. The input keeps the Keras input's
        name and has a dynamic batch dimension; the outputs of a model of several are named
        as its Keras outputs.

    Example:
        >>> data = convert(student)  # doctest: +SKIP
        >>> open("student_float32.onnx", "wb").write(data)  # doctest: +SKIP
    """
    import keras
    import tensorflow as tf
    import tf2onnx

    from keras_distill.export.tflite import input_name, input_spec, output_names

    check_opset(opset)
    shape, dtype = input_spec(model)
    signature = [tf.TensorSpec((None, *shape), dtype, name=input_name(model))]

    names = output_names(model) if len(model.outputs) > 1 else None

    @tf.function(input_signature=signature)
    def serve(x):
        outputs = model(x, training=False)
        if names is None:
            return outputs
        # named outputs: tf2onnx names graph outputs after a returned dict's keys
        return dict(zip(names, keras.tree.flatten(outputs)))

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=int(opset))
    _rewrite_erfc(proto)
    data = proto.SerializeToString()
    check_loadable(data, model)
    return data


def _rewrite_erfc(proto):
    """Replace each ``Erfc(x)`` (no ONNX op; tf2onnx leaves it in) by ``Sub(1, Erf(x))``."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    if not any(n.op_type == "Erfc" and n.domain in ("", "ai.onnx") for n in graph.node):
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph
        types = {v.name: v.type.tensor_type.elem_type
                 for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    except Exception:  # noqa: BLE001 - fall back to float32 below
        types = {}
    nodes = []
    for node in graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        elem = types.get(node.input[0]) or onnx.TensorProto.FLOAT
        one_name = f"{node.name}/one"
        erf_out = f"{node.output[0]}/erf"
        one = np.ones((), dtype=helper.tensor_dtype_to_np_dtype(elem))
        graph.initializer.append(numpy_helper.from_array(one, one_name))
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf_out], name=f"{node.name}/Erf"))
        nodes.append(helper.make_node("Sub", [one_name, erf_out], list(node.output),
                                      name=node.name))
    del graph.node[:]
    graph.node.extend(nodes)


def _layer_of(node_name, model):
    """The Keras layer a tf2onnx node name (``functional_1/dense_1/Gelu/...``) comes from."""
    from keras_distill.verify.litert import layer_for_tensor

    return layer_for_tensor(node_name, [layer.name for layer in getattr(model, "layers", ())])


def check_loadable(data, model=None):
    """Raise ``RuntimeError`` unless ONNX Runtime accepts the serialized model ``data``.

    The message names the rejected node's op type and, where known, its Keras layer.
    """
    import onnx
    import onnxruntime as ort

    proto = onnx.load_from_string(data)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            onnx.defs.get_schema(node.op_type, opset, "")
        except Exception:  # noqa: BLE001 - onnx raises SchemaError
            layer = _layer_of(node.name, model) if model is not None else None
            where = f" (Keras layer {layer!r})" if layer else ""
            raise RuntimeError(f"ONNX export produced op {node.op_type!r} in node "
                               f"{node.name!r}{where}, which ONNX opset {opset} does not "
                               "define; ONNX Runtime rejects the model.") from None
    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise RuntimeError(f"ONNX Runtime rejects the exported model: {e}") from e


@contextlib.contextmanager
def _working_folder(path):
    """Run the block with ``path`` as the working directory (then restore it)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def quantize_int8(onnx_bytes, representative_data):
    """Statically quantize a float ONNX model to int8 (QDQ format, per-channel weights).

    Args:
        onnx_bytes: a float32 ONNX model from :func:`convert`.
        representative_data: float array ``(N, *input_shape)`` for calibration.

    Returns:
        The int8 ONNX model as ``bytes``. Inputs and outputs stay float32; ONNX Runtime runs
        the quantized ops in between.

    Example:
        >>> data = quantize_int8(convert(student), x_train[:300])  # doctest: +SKIP
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if representative_data is None or len(representative_data) == 0:
        raise ValueError("int8 ONNX needs representative_data for calibration.")
    graph_input = onnx.load_from_string(onnx_bytes).graph.input[0]
    input_name = graph_input.name
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
    samples = np.asarray(representative_data).astype(dtype)  # float, or int32 token ids

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._rows = iter(range(len(samples)))

        def get_next(self):
            i = next(self._rows, None)
            return None if i is None else {input_name: samples[i:i + 1]}

    with tempfile.TemporaryDirectory(prefix="keras_distill_onnx_") as tmp:
        src, pre, dst = (os.path.join(tmp, f) for f in ("f.onnx", "pre.onnx", "q.onnx"))
        with open(src, "wb") as f:
            f.write(onnx_bytes)
        # ONNX Runtime's symbolic shape inference fails on some graphs (attention), after
        # dumping files into the working directory: then ONNX's own shape inference only
        with _working_folder(tmp):
            try:
                quant_pre_process(src, pre)
            except Exception as exc:  # "Incomplete symbolic shape inference"
                if "symbolic shape" not in str(exc):
                    raise
                quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        with open(dst, "rb") as f:
            return f.read()
