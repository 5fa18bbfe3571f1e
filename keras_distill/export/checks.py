"""Argument checks of :func:`keras_distill.export.export`: each raises a ``ValueError`` (or
``TypeError``) that names the argument, the value and what would be accepted."""

from __future__ import annotations

import re

import numpy as np


def as_choices(value, arg, allowed):
    values = (value,) if isinstance(value, str) else tuple(value or ())
    if not values:
        raise ValueError(f"{arg} is empty; choose from {allowed}.")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"Unknown {arg} {bad}; expected any of {allowed}.")
    return tuple(dict.fromkeys(v for v in allowed if v in values))


def check_model(model):
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"export expects a keras.Model; got {type(model).__name__}.")
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise ValueError(f"Model {model.name!r} has no defined inputs/outputs; export a "
                         "Functional or Sequential model built on a keras.Input.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"export supports one input and one output; model {model.name!r} has "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    return {"name": model.name, "params": int(model.count_params()),
            "input_shape": list(model.inputs[0].shape),
            "output_shape": list(model.outputs[0].shape)}


def check_name(name, model):
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", model.name) or "model"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"name={name!r} is not a valid base name; use letters, digits, '_', "
                         "'.' and '-' (no path separators), starting with a letter, digit or "
                         "'_'.")
    return name


def check_labels(labels, model_info):
    if labels is None:
        return None
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of class names, not one string.")
    labels = [str(label) for label in labels]
    if any("\n" in label for label in labels):
        raise ValueError("labels must not contain newlines (labels.txt has one per line).")
    classes = model_info["output_shape"][-1]
    if classes is not None and len(labels) != classes:
        raise ValueError(f"labels has {len(labels)} names but the model outputs {classes} "
                         "classes.")
    return labels


def as_array(data, arg, input_shape):
    """Representative data as one array ``(N, *input_shape)``, or ``None``."""
    if data is None:
        return None
    if callable(data) and not hasattr(data, "shape"):
        data = data()
    if not isinstance(data, np.ndarray) and not hasattr(data, "__array__"):
        parts = []
        for item in data:  # tf.data.Dataset or an iterable of arrays / (x, y) pairs
            if isinstance(item, (tuple, list)):
                item = item[0]
            item = np.asarray(item)
            parts.append(item[None] if item.shape == tuple(input_shape) else item)
        data = np.concatenate(parts) if parts else np.zeros((0, *input_shape), np.float32)
    try:
        data = np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg} cannot be read as a numeric array ({exc}); pass a NumPy array "
                         f"of shape (N, *{tuple(input_shape)}).") from None
    if data.dtype.kind not in "fiub":
        raise ValueError(f"{arg} has dtype {data.dtype}; pass numbers: a float or integer "
                         f"array of shape (N, *{tuple(input_shape)}).")
    if data.ndim != len(input_shape) + 1 or tuple(data.shape[1:]) != tuple(input_shape):
        raise ValueError(f"{arg} has shape {data.shape}; expected (N, *{tuple(input_shape)}) "
                         "to match the model input.")
    if len(data) == 0:
        raise ValueError(f"{arg} is empty; pass some training inputs.")
    from keras_distill.data import check_finite

    check_finite(data, arg, "exporting")
    return data


def check_eval_data(eval_data, input_shape, num_classes=None):
    if eval_data is None:
        return None, None
    if isinstance(eval_data, (tuple, list)) and len(eval_data) in (1, 2):
        x = eval_data[0]
        y = eval_data[1] if len(eval_data) == 2 else None
    else:
        x, y = eval_data, None
    x = as_array(x, "eval_data x", input_shape)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
            y = np.argmax(y, -1)
        if y.dtype.kind not in "fiub":
            raise ValueError(f"eval_data labels hold {y.dtype} values; pass integer class "
                             "indices.")
        y = y.reshape(-1)
        top = num_classes - 1 if num_classes else None
        if len(y) and (not np.isfinite(y).all() or (y != np.round(y)).any() or y.min() < 0
                       or (top is not None and y.max() > top)):
            raise ValueError(
                "eval_data labels must be whole class indices in "
                f"[0, {top if top is not None else 'classes - 1'}]; found values from "
                f"{np.nanmin(y)} to {np.nanmax(y)}. Fix the labels (one per sample).")
        y = y.astype(np.int64)
        if len(y) != len(x):
            raise ValueError(f"eval_data has {len(x)} inputs but {len(y)} labels.")
    return x, y


def num_classes(model):
    try:
        shape = model.output_shape
        return int(shape[-1]) if shape and shape[-1] and shape[-1] > 1 else None
    except (AttributeError, ValueError, TypeError, RuntimeError):
        return None


_FAKE_QUANT_OPS = {"FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel",
                   "FakeQuantWithMinMaxArgs"}


def is_quantize_aware(model, input_shape, input_dtype):
    """True if ``keras_distill.compress.is_quantize_aware`` says so, or the traced model
    contains fake-quant ops (whose ranges let the converter skip calibration)."""
    from keras_distill.compress import is_quantize_aware as has_quantized_layers

    if has_quantized_layers(model):
        return True
    import tensorflow as tf

    try:
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec((None, *input_shape), input_dtype))
    except Exception:  # noqa: BLE001 - a model that does not trace will not convert either
        return False
    return any(op.type in _FAKE_QUANT_OPS for op in fn.graph.get_operations())
