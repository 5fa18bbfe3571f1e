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
    if len(model.inputs) != 1:
        raise ValueError(f"export supports one input; model {model.name!r} has "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    info = {"name": model.name, "params": int(model.count_params()),
            "input_shape": list(model.inputs[0].shape)}
    if len(model.outputs) == 1:
        info["output_shape"] = list(model.outputs[0].shape)
    else:
        info["output_shape"] = dict(zip(output_names(model),
                                        (list(t.shape) for t in model.outputs)))
    return info


def output_names(model):
    """The names of ``model``'s outputs, in ``keras.tree.flatten`` order."""
    from keras_distill import outputs

    return outputs.names(model)


def resolve_outputs(model, task, labels):
    """The :class:`~keras_distill.outputs.Output` of every output of ``model``.

    ``task="auto"`` detects each kind from the labels (``outputs.resolve``). A one-output
    model whose kind nothing tells is exported as ``"multiclass"`` when it has two or more
    units (what every export did before output kinds: its metrics are unchanged); with one
    unit (a binary logit, or a regression value?) or several outputs, the ``ValueError`` says
    what to declare.
    """
    from keras_distill import outputs

    names = outputs.names(model)
    if len(names) > 1 and labels is not None:
        if not isinstance(labels, (dict, list, tuple)):
            raise TypeError(f"eval_data labels of a model with outputs {names} must be a dict "
                            f"by output name (or a list in that order); got "
                            f"{type(labels).__name__}.")
        unknown = sorted(set(labels) - set(names)) if isinstance(labels, dict) else []
        if unknown:
            raise ValueError(f"eval_data labels name outputs {unknown} that the model does "
                             f"not have; its outputs are {names}.")
    try:
        return outputs.resolve(model, task=task, labels=labels)
    except ValueError as error:
        ambiguous = isinstance(error, getattr(outputs, "AmbiguousOutput", ())) or \
            str(error).startswith("Cannot tell what the output")
        if not ambiguous:
            raise
        units = model.outputs[0].shape[-1]
        if not (task == "auto" and len(model.outputs) == 1 and units and units >= 2):
            raise ValueError(
                f"export cannot tell how to score the model's outputs: pass "
                f"export(..., task=...) with one of {outputs.KINDS} (a dict by output name for "
                f"several), or eval_data with labels. {error}") from None
    return outputs.resolve(model, task=outputs.MULTICLASS)


def check_name(name, model):
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", model.name) or "model"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"name={name!r} is not a valid base name; use letters, digits, '_', "
                         "'.' and '-' (no path separators), starting with a letter, digit or "
                         "'_'.")
    return name


def check_labels(labels, model_info, kinds=None):
    """Class (or value) names, one per unit of the output; for a binary output one or two
    names; for a model of several outputs a dict ``{output name: names}``."""
    if labels is None:
        return None
    kinds = kinds or []
    if len(kinds) > 1:
        if not isinstance(labels, dict):
            raise TypeError("labels of a model with several outputs must be a dict of names "
                            f"by output name (outputs {[o.name for o in kinds]}); got "
                            f"{type(labels).__name__}.")
        by_name = {o.name: o for o in kinds}
        unknown = sorted(set(labels) - set(by_name))
        if unknown:
            raise ValueError(f"labels names outputs {unknown} that the model does not have; "
                             f"its outputs are {sorted(by_name)}.")
        return {name: _names(names, by_name[name].units, by_name[name].kind, name)
                for name, names in labels.items() if names is not None}
    kind = kinds[0].kind if kinds else "multiclass"
    return _names(labels, model_info["output_shape"][-1], kind, None)


def _names(labels, units, kind, output):
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of class names, not one string.")
    labels = [str(label) for label in labels]
    if any("\n" in label for label in labels):
        raise ValueError("labels must not contain newlines (labels.txt has one per line).")
    allowed = {units, 2} if kind == "binary" else {units}
    if units is not None and len(labels) not in allowed:
        where = f"output {output!r}" if output else "the model"
        what = {"regression": "values", "multilabel": "labels"}.get(kind, "classes")
        raise ValueError(f"labels has {len(labels)} names but {where} outputs {units} "
                         f"{what}" + (" (a binary output takes 1 or 2 names)."
                                      if kind == "binary" else "."))
    return labels


def as_array(data, arg, input_shape, limit=None):
    """Representative data as one array ``(N, *input_shape)``, or ``None``; lazy arrays are
    returned as they are (read on demand). From a dataset or an iterable, at most ``limit``
    rows are read (the first ones)."""
    from keras_distill.data.lazy import is_lazy

    if is_lazy(data):  # read on demand: checked by shape here, by batch when read
        if tuple(data.shape[1:]) != tuple(input_shape) or len(data) == 0:
            raise ValueError(f"{arg} has shape {data.shape}; expected (N, "
                             f"*{tuple(input_shape)}) with N > 0 to match the model input.")
        return data
    if data is None:
        return None
    if callable(data) and not hasattr(data, "shape"):
        data = data()
    if not isinstance(data, np.ndarray) and not hasattr(data, "__array__"):
        parts, rows = [], 0
        for item in data:  # tf.data.Dataset or an iterable of arrays / (x, y) pairs
            if isinstance(item, (tuple, list)):
                item = item[0]
            item = np.asarray(item)
            parts.append(item[None] if item.shape == tuple(input_shape) else item)
            rows += len(parts[-1])
            if limit is not None and rows >= limit:  # a stream: read only what is needed
                break
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


def split_eval_data(eval_data):
    """``(x, y)`` of ``eval_data`` (``(x, y)``, ``(x,)`` or ``x``), unchecked."""
    if eval_data is None:
        return None, None
    if isinstance(eval_data, (tuple, list)) and len(eval_data) in (1, 2):
        return eval_data[0], (eval_data[1] if len(eval_data) == 2 else None)
    return eval_data, None


def check_eval_data(eval_data, input_shape, num_classes=None, *, outputs=None,
                    output_shapes=None):
    """The checked ``(x, y)`` of ``eval_data``.

    Args:
        eval_data: ``(x, y)``, ``(x,)`` or ``x``.
        input_shape: the model's per-sample input shape.
        num_classes: the classes of a multiclass output (without ``outputs``).
        outputs: the model's :class:`~keras_distill.outputs.Output` list: labels are checked
            per output kind (a dict by output name for several outputs).
        output_shapes: ``{output name: shape}`` (with the batch axis), to check the label
            shapes of positions and regression targets.

    Returns:
        ``(x, y)``: ``y`` is ``None``, an array, or (several outputs) ``{name: array}``.
    """
    x, y = split_eval_data(eval_data)
    if x is None:
        return None, None
    x = as_array(x, "eval_data x", input_shape)
    if y is None:
        return x, None
    if outputs is None or len(outputs) == 1 and outputs[0].kind == "multiclass" and \
            not outputs[0].positions:
        top = outputs[0].units if outputs else num_classes
        y = y.get(outputs[0].name) if isinstance(y, dict) and outputs and len(y) == 1 else y
        return x, _class_indices(y, len(x), top)
    if len(outputs) == 1:
        y = y.get(outputs[0].name) if isinstance(y, dict) and len(y) == 1 else y
        return x, output_labels(y, outputs[0], len(x), (output_shapes or {}).get(
            outputs[0].name), "eval_data labels")
    return x, _labels_per_output(y, outputs, len(x), output_shapes or {})


def _labels_per_output(y, outputs, n, output_shapes):
    names = [o.name for o in outputs]
    if isinstance(y, (list, tuple)) and len(y) == len(outputs):
        y = dict(zip(names, y))
    if not isinstance(y, dict):
        raise TypeError(f"eval_data labels of a model with outputs {names} must be a dict "
                         f"by output name (or a list in that order); got "
                         f"{type(y).__name__}.")
    unknown = sorted(set(y) - set(names))
    if unknown:
        raise ValueError(f"eval_data labels name outputs {unknown} that the model does not "
                         f"have; its outputs are {names}.")
    return {o.name: output_labels(y[o.name], o, n, output_shapes.get(o.name),
                                  f"eval_data labels[{o.name!r}]")
            for o in outputs if y.get(o.name) is not None}


def _class_indices(y, n, num_classes):
    """Class indices of a multiclass output without positions: one-hot rows become their
    argmax; whole numbers in [0, classes - 1]."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
        y = np.argmax(y, -1)
    if y.dtype.kind not in "fiub":
        raise ValueError(f"eval_data labels hold {y.dtype} values; pass integer class "
                         "indices.")
    y = y.reshape(-1)
    top = num_classes - 1 if num_classes else None
    if len(y) and (not np.isfinite(y).all() or (y != np.round(y)).any() or y.min() < -1
                   or (top is not None and y.max() > top)):
        raise ValueError(
            "eval_data labels must be whole class indices in "
            f"[0, {top if top is not None else 'classes - 1'}] (-1 leaves a sample out); "
            f"found values from {np.nanmin(y)} to {np.nanmax(y)}. Fix the labels (one per "
            "sample).")
    y = y.astype(np.int64)
    if len(y) != n:
        raise ValueError(f"eval_data has {n} inputs but {len(y)} labels.")
    return y


def output_labels(y, output, n, shape=None, what="labels"):
    """Labels of one output, checked for its kind (see ``Output.label_shape``).

    multiclass: class indices ``(N, *positions)`` (one-hot rows become their argmax), ``-1``
    leaving a position out; binary: 0 or 1 ``(N, *positions[, 1])``; multi-label: multi-hot
    ``(N, *positions, units)`` (integer ``-1`` leaves a label out); regression: finite
    floats of the output's shape (the last axis of one may be left out).
    """
    y = np.asarray(y)
    if y.dtype.kind not in "fiub":
        raise ValueError(f"{what} hold {y.dtype} values; pass {output.label_shape}.")
    if len(y) != n:
        raise ValueError(f"eval_data has {n} inputs but {len(y)} labels.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{what} for output {output.name!r} hold NaN or infinite values; "
                         f"pass {output.label_shape}.")
    steps = list(shape[1:-1]) if shape is not None else [None] * output.positions
    full = [n, *steps, output.units]
    if output.kind == "multiclass":
        if y.ndim == len(full) and y.shape[-1] == output.units:
            y = np.argmax(y, -1)
        elif y.ndim == len(full) and y.shape[-1] == 1:  # (N, steps, 1) indices, as fit takes
            y = y[..., 0]
        _check_shape(y, [n, *steps], output, what)
        whole = (y == np.round(y)).all()
        if not whole or y.min() < -1 or y.max() > output.units - 1:
            raise ValueError(f"{what} for output {output.name!r} must be whole class indices "
                             f"in [0, {output.units - 1}] (-1 leaves a position out); found "
                             f"values from {y.min()} to {y.max()}.")
        return y.astype(np.int64)
    if output.kind == "regression":
        _check_shape(y, full, output, what, drop_unit=output.units == 1)
        return y.astype(np.float32)
    if output.kind == "binary":
        _check_shape(y, full, output, what, drop_unit=True)
    else:
        _check_shape(y, full, output, what)
    allowed = (0, 1, -1) if y.dtype.kind in "iu" else (0, 1)
    if not np.isin(y, allowed).all():
        raise ValueError(f"{what} for the {output.kind} output {output.name!r} must be 0 or 1"
                         + (" (integer -1 leaves one out)" if y.dtype.kind in "iu" else "")
                         + f"; found values from {y.min()} to {y.max()}. Pass "
                         f"{output.label_shape}.")
    return y.astype(np.int64 if y.dtype.kind in "iub" else np.float32)


def _check_shape(y, expected, output, what, *, drop_unit=False):
    shapes = [expected] + ([expected[:-1]] if drop_unit else [])
    for shape in shapes:
        if y.ndim == len(shape) and all(d is None or d == s for d, s in zip(shape, y.shape)):
            return
    shown = " or ".join(str(tuple("?" if d is None else d for d in s)) for s in shapes)
    raise ValueError(f"{what} for output {output.name!r} have shape {y.shape}; expected "
                     f"{shown}: {output.label_shape}.")


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


#: At most this many ``budget_data`` samples measure the int8 budget (the first ones).
BUDGET_SAMPLES = 2000


def check_budget(max_drop, budget_data, formats, quantization, subject, kinds):
    """``(max_drop, x, y, source)`` of ``export(max_accuracy_drop=, budget_data=)``: a positive
    number, an int8 TFLite artifact to start from, calibration data, one output; ``y`` is
    ``None`` when the float model's predictions are the labels."""
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or \
            not np.isfinite(max_drop) or max_drop < 0:
        raise ValueError(f"max_accuracy_drop must be a number >= 0 (0.01: one point of "
                         f"accuracy); got {max_drop!r}.")
    missing = [what for what, ok in (("'tflite' to formats", "tflite" in formats),
                                     ("'int8' to quantization", "int8" in quantization))
               if not ok]
    if missing:
        raise ValueError(f"max_accuracy_drop applies to the int8 TFLite model: add "
                         f"{' and '.join(missing)}, or drop max_accuracy_drop.")
    if subject.calibration is None:
        raise ValueError("max_accuracy_drop needs representative_data: the budget keeps "
                         "layers in float in a calibrated int8 model.")
    if len(kinds) != 1:  # not an error: the run's other artifacts are made (a note says so)
        return None
    if budget_data is None:
        if kinds[0].kind == "regression":
            raise ValueError("A regression model's int8 budget is on the MAE against "
                             "targets: pass budget_data=(x_val, y_val).")
        return (float(max_drop), subject.calibration, None,
                "the representative data, labelled by the float model")
    x, y = budget_data if isinstance(budget_data, tuple) else (budget_data, None)
    x = as_array(x, "budget_data", subject.calibration.shape[1:])
    if y is not None:
        y = output_labels(y, kinds[0], len(x), what="budget_data labels")[:BUDGET_SAMPLES]
    x = np.asarray(x[:BUDGET_SAMPLES])  # a lazy array: only these rows are read
    return (float(max_drop), x.astype(subject.calibration.dtype), y,
            "budget_data" if y is not None else "budget_data, labelled by the float model")
