"""int8 under an accuracy budget: keep the layers int8 hurts most in float until it holds.

:func:`int8_within_budget` converts the model to int8, measures its accuracy in LiteRT against
the float model's on evaluation data, and while the drop exceeds ``max_accuracy_drop`` keeps
one more layer in float, worst first by :func:`~keras_distill.export.diagnose.diagnose` (the
converter's quantization debugger writes the model with DEQUANTIZE / QUANTIZE around the layers
it is told to keep). Conversions run in keras-distill's worker process.

Example:
    >>> result = int8_within_budget(student, x_train[:300], (x_val, y_val),
    ...                             max_accuracy_drop=0.01)  # doctest: +SKIP
    >>> result.kept, result.within_budget  # doctest: +SKIP
    (['conv2'], True)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_distill import isolation

#: The worker's task.
MIXED = "keras_distill.export.budget:_mixed_saved_model"


@dataclasses.dataclass
class BudgetResult:
    """The int8 model that meets the budget, or the last one tried.

    Attributes:
        model_bytes: the ``.tflite`` flatbuffer (float input and output; int8 inside, but for
            the ``kept`` layers).
        kept: the Keras layers kept in float, in the order they were added.
        float_accuracy, int8_accuracy, accuracy: the Keras model's, full int8's and this
            model's accuracy on the evaluation data.
        within_budget: whether ``float_accuracy - accuracy <= max_accuracy_drop``.
        tried: ``[(kept layers, accuracy), ...]``, every model measured.
    """

    model_bytes: bytes
    kept: list
    float_accuracy: float
    int8_accuracy: float
    accuracy: float
    within_budget: bool
    tried: list


def keep_float(model, representative_data, layers):
    """The int8 ``.tflite`` of ``model`` with the Keras ``layers`` kept in float."""
    from keras_distill.export.diagnose import _lowered_saved_model
    from keras_distill.graph import all_layers

    calibration = np.asarray(representative_data)
    names = [layer.name for layer in all_layers(model)]
    with _lowered_saved_model(model, calibration) as (path, dtype):
        return isolation.call(MIXED, path, calibration.astype(dtype), list(layers), names,
                              stage="int8 conversion with float layers",
                              remedy="Keep fewer layers in float, or use QAT.")


def int8_within_budget(model, representative_data, eval_data, *, max_accuracy_drop=0.01,
                       max_layers=8):
    """int8 with as few float layers as keep accuracy within ``max_accuracy_drop``.

    Args:
        model: a single-output classifier (logits or probabilities).
        representative_data: calibration inputs (a few hundred training inputs).
        eval_data: ``(x, y)`` with class labels, or ``x`` alone (then the float model's
            predictions are the labels: accuracy is agreement with it).
        max_accuracy_drop: the largest accuracy the int8 model may lose (0.01: one point).
        max_layers: keep at most this many layers in float.

    Returns:
        A :class:`BudgetResult`.
    """
    from keras_distill.export.diagnose import diagnose

    x, y = eval_data if isinstance(eval_data, tuple) else (eval_data, None)
    x = np.asarray(x)
    reference = np.asarray(model.predict(x, verbose=0))
    y = np.argmax(reference, -1) if y is None else np.asarray(y).reshape(-1)
    float_accuracy = float(np.mean(np.argmax(reference, -1) == y))
    kept, tried = [], []
    data = keep_float(model, representative_data, kept)
    accuracy = int8_accuracy = _accuracy(data, x, y)
    tried.append(([], accuracy))
    if float_accuracy - accuracy > max_accuracy_drop:
        order = [d.layer for d in diagnose(model, representative_data, x).layers if d.layer]
        for layer in list(dict.fromkeys(order))[:max_layers]:
            kept.append(layer)
            data = keep_float(model, representative_data, kept)
            accuracy = _accuracy(data, x, y)
            tried.append((list(kept), accuracy))
            if float_accuracy - accuracy <= max_accuracy_drop:
                break
    return BudgetResult(data, kept, float_accuracy, int8_accuracy, accuracy,
                        float_accuracy - accuracy <= max_accuracy_drop, tried)


def _accuracy(model_bytes, x, y):
    """Top-1 accuracy of a float-input, float-output ``.tflite`` in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model_bytes))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x), *x.shape[1:]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    return float(np.mean(np.argmax(interpreter.get_tensor(out["index"]), -1) == y))


# ---- in the worker process ---------------------------------------------------------------


def _mixed_saved_model(saved_model_dir, calibration, layers, layer_names):
    """int8 of ``saved_model_dir`` with the ops of ``layers`` denylisted (kept in float): the
    float model's op outputs that :func:`layer_for_tensor` maps to them."""
    from keras_distill.export.diagnose import _debugger
    from keras_distill.export.tflite import convert, layer_for_tensor, list_ops

    nodes = []
    if layers:
        float_model = convert(saved_model_dir, "float32")
        for op in list_ops(float_model):  # an op's layer: from its outputs, else its weights
            owners = [layer_for_tensor(t["name"], layer_names)
                      for t in op["outputs"] + op["inputs"]]
            if next((o for o in owners if o), None) in layers:
                nodes += [t["name"] for t in op["outputs"]]
    debug = _debugger(saved_model_dir, calibration, calibration, denylisted_nodes=nodes)
    return bytes(debug.get_nondebug_quantized_model())
