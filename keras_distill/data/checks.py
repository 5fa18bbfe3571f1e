"""Checks of NumPy data before training: finite values (:func:`check_finite`) and inputs and
labels that fit the model and each output's kind (:func:`check_training_arrays`)."""

from __future__ import annotations

import numpy as np

from keras_distill import registry

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS


def check_finite(x, name, before):
    """Refuse a float array with NaN or infinite values, naming the rows and the fix.

    Args:
        x: ``(N, ...)`` array; non-float arrays pass unchecked.
        name: what ``x`` is, for the message (``"fit: x"``, ``"representative_data"``).
        before: what the data was meant for (``"training"``, ``"exporting"``).

    Raises:
        ValueError: "<name> has NaN or infinite values in <k> sample(s), e.g. rows [...]".

    Example:
        >>> check_finite(np.array([[0.0], [np.nan]]), "x", "training")
        Traceback (most recent call last):
        ...
        ValueError: x has NaN or infinite values in 1 sample(s), e.g. rows [1]. Drop or impute them (np.nan_to_num) before training.
    """
    rows = _nonfinite_rows(x)
    if len(rows):
        raise ValueError(
            f"{name} has NaN or infinite values in {len(rows)} sample(s), e.g. rows "
            f"{rows[:5].tolist()}. Drop or impute them (np.nan_to_num) before {before}.")


def check_training_arrays(x, y, model, where, outputs=None):
    """Clear errors for NumPy data a training step would choke on (or silently learn NaN from).

    Only NumPy and lazy inputs (:class:`~keras_distill.data.lazy.LazyArray`) are checked;
    datasets, generators and dicts of inputs are checked by Keras as they stream. The inputs
    must be non-empty, finite (lazy ones: checked per batch as they stream, not read here) and
    of the model's input shape.
    Labels given as arrays must be numbers, one per sample, that fit the model's outputs.
    Cached teacher outputs (``{"labels": y, "teacher_outputs": t}``) are not checked, their
    labels are.

    Without ``outputs``, the labels are class labels of the model's one output: integer class
    indices in ``[0, classes - 1]`` (``-1`` marks an unlabeled sample) of shape ``(N,)`` or
    ``(N, 1)``, or finite floats (index-like, or one-hot rows of ``classes`` columns). With
    ``outputs``, each output's labels are checked for its kind (``Output.label_shape``):

    - multiclass: class indices ``(N, steps...)`` (or with a last axis of 1) in
      ``[0, units - 1]`` or ``-1``, or float one-hot / soft rows ``(N, steps..., units)``;
    - binary: 0 or 1 (``-1``: unlabeled), or float soft labels in ``[0, 1]``, of shape
      ``(N, steps...)`` or ``(N, steps..., 1)``;
    - multilabel: values in ``[0, 1]`` of shape ``(N, steps..., units)``;
    - regression: finite numbers of shape ``(N, steps..., units)`` (or ``(N, steps...)`` for
      one unit).

    Args:
        x: the inputs.
        y: the labels, or None. With several outputs: a dict by output name or a list in
            output order.
        model: the model the data is for (the student); its input and output shapes are
            compared with the data's.
        where: the caller, first in every message (``"fit"``, ``"validation_data"``, ...).
        outputs: the model's :class:`keras_distill.outputs.Output` list, or None (one output
            of class logits).

    Raises:
        ValueError: naming ``where``, the output (when the model has several), what was
            expected and found, and how to fix it.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0, 2]), model, "fit")
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0, 3]), model, "fit")
        Traceback (most recent call last):
        ...
        ValueError: fit: labels must be class indices in [0, 2] (or -1 for an unlabeled sample); found values from 0 to 3. The student has 3 outputs.
        >>> from keras_distill.outputs import Output
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0.5, 2.0]), model, "fit",
        ...                       [Output("out", "multilabel", 3)])
        Traceback (most recent call last):
        ...
        ValueError: fit: multilabel labels must have shape (N, 3), one column per label; got (2,). Encode each sample's labels as a multi-hot row (e.g. with sklearn.preprocessing.MultiLabelBinarizer).
    """
    from keras_distill.data.lazy import is_lazy
    from keras_distill.graph import model_shape, shapes_compatible

    if not isinstance(x, np.ndarray) and not is_lazy(x):
        return
    if len(x) == 0:
        raise ValueError(f"{where}: x is empty (0 samples); pass some data.")
    expected = model_shape(model, "input_shape")
    if expected is not None and not shapes_compatible(expected, (None, *x.shape[1:])):
        raise ValueError(
            f"{where}: inputs of shape {tuple(x.shape[1:])} do not match the models' input "
            f"shape {tuple(expected[1:])}. Reshape the data (e.g. add a channel axis with "
            "x[..., None]) or build the models for this shape.")
    if not is_lazy(x):
        check_finite(x, f"{where}: x", "training")
    y = _without_teacher_outputs(y, [o.name for o in outputs or ()])
    if outputs is None:
        _check_class_labels(x, y, model_shape(model, "output_shape"), where)
        return
    outputs = list(outputs)
    shapes = _output_shapes(model, outputs)
    for out, labels in zip(outputs, _labels_by_output(y, outputs, where)):
        prefix = f"{where}: output {out.name!r}" if len(outputs) > 1 else where
        _check_output_labels(labels, len(x), out, shapes.get(out.name), prefix)


def _without_teacher_outputs(y, output_names):
    """The labels of cached teacher outputs ``{"labels": y, "teacher_outputs": t}``, else
    ``y``."""
    from keras_distill.teachers import LABELS_KEY, TEACHER_OUTPUTS_KEY

    if isinstance(y, dict) and (TEACHER_OUTPUTS_KEY in y or set(y) == {LABELS_KEY}) \
            and not set(y) & set(output_names):
        return y.get(LABELS_KEY)
    return y


def _output_shapes(model, outputs):
    """``{output name: shape}`` of ``model``'s outputs, where known."""
    from keras_distill import outputs as output_kinds
    from keras_distill.graph import model_shape

    if len(outputs) == 1:
        return {outputs[0].name: model_shape(model, "output_shape")}
    return dict(output_kinds._names_and_shapes(model))


def _labels_by_output(y, outputs, where):
    """One label array (or None: not checked) per output."""
    names = [o.name for o in outputs]
    if isinstance(y, dict):
        unknown = sorted(set(y) - set(names))
        if unknown:
            raise ValueError(f"{where}: the labels name outputs {unknown} that the student does "
                             f"not have; its outputs are {names}. Key the labels by output name.")
        return [y.get(name) for name in names]
    if len(outputs) > 1 and isinstance(y, (list, tuple)):
        if len(y) != len(outputs):
            raise ValueError(f"{where}: the labels are a list of {len(y)} arrays for "
                             f"{len(outputs)} outputs {names}; give one per output, in that "
                             "order, or a dict by output name.")
        return list(y)
    if len(outputs) > 1 and y is not None and hasattr(y, "shape"):
        raise ValueError(f"{where}: the labels are one array of shape {np.shape(y)}, but the "
                         f"student has {len(outputs)} outputs {names}; give a dict of labels "
                         "by output name (or a list in that order).")
    return [y] + [None] * (len(outputs) - 1)


def _check_class_labels(x, y, output_shape, where):
    """Labels of a model with one output of class logits (``outputs`` not given)."""
    if y is None or isinstance(y, dict) or not hasattr(y, "shape"):
        return
    y = np.asarray(y)
    if y.dtype.kind in "USO":
        raise ValueError(
            f"{where}: y holds {y.dtype} values; labels must be numbers. Encode class names "
            "as integers 0..classes-1 (e.g. with sklearn.preprocessing.LabelEncoder).")
    if len(y) != len(x):
        raise ValueError(f"{where}: x has {len(x)} samples but y has {len(y)}; give one "
                         "label per sample.")
    classes = output_shape[-1] if output_shape else None
    if np.issubdtype(y.dtype, np.integer) and classes:
        _check_integer_labels(y, classes, where)
    elif np.issubdtype(y.dtype, np.floating):
        _check_float_labels(y, classes, where)


def _check_integer_labels(y, classes, where):
    if y.ndim > 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise ValueError(
            f"{where}: integer labels must have shape (N,) or (N, 1); got {y.shape}. "
            "One-hot labels must be floats of shape (N, classes).")
    if len(y) and (y.max() >= classes or y.min() < -1):
        raise ValueError(
            f"{where}: labels must be class indices in [0, {classes - 1}] (or -1 for an "
            f"unlabeled sample); found values from {y.min()} to {y.max()}. The student "
            f"has {classes} outputs.")


def _check_float_labels(y, classes, where):
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: y has NaN or infinite values; fix the labels.")
    index_like = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and classes != 1)
    if index_like and classes and len(y) and (
            (y != np.round(y)).any() or y.max() >= classes or y.min() < -1):
        raise ValueError(
            f"{where}: labels must be class indices in [0, {classes - 1}] (or -1 for "
            f"an unlabeled sample); found values from {y.min()} to {y.max()}. The "
            f"student has {classes} outputs.")
    if y.ndim == 2 and classes and y.shape[1] not in (1, classes):
        raise ValueError(
            f"{where}: one-hot labels have {y.shape[1]} columns but the student has "
            f"{classes} outputs.")


# --- labels per output kind ---------------------------------------------------------------


def _check_output_labels(y, n, out, shape, prefix):
    """The labels ``y`` of the output ``out`` (whose model shape is ``shape``)."""
    if y is None or not hasattr(y, "shape"):
        return
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(
            f"{prefix}: the labels hold {y.dtype} values; labels must be numbers "
            f"({out.label_shape}). Encode class names as integers (e.g. with "
            "sklearn.preprocessing.LabelEncoder).")
    if y.dtype.kind == "b":
        y = y.astype("int32")
    if len(y) != n:
        raise ValueError(f"{prefix}: x has {n} samples but the labels have {len(y)}; give one "
                         "label per sample.")
    rows = _nonfinite_rows(y)
    if len(rows):
        raise ValueError(
            f"{prefix}: the labels have NaN or infinite values in {len(rows)} sample(s), e.g. "
            f"rows {rows[:5].tolist()}. Drop those samples or fix their labels.")
    known = shape is not None and len(shape) == out.positions + 2
    steps = tuple(shape[1:-1]) if known else (None,) * out.positions
    _KIND_CHECKS[out.kind](y, out, steps, prefix)


def _fits(shape, patterns):
    """Whether ``shape`` (the batch axis left out) is one of ``patterns`` (None: any size)."""
    return any(len(shape) == len(p) and all(a is None or a == b for a, b in zip(p, shape))
               for p in patterns)


def _shapes_text(patterns):
    """``"(N,) or (N, 1)"``; unknown position axes are ``steps``."""
    def one(p):
        axes = ["N", *("steps" if a is None else str(a) for a in p)]
        return f"({axes[0]},)" if len(axes) == 1 else "(" + ", ".join(axes) + ")"
    return " or ".join(one(p) for p in patterns)


def _span(y):
    return f"values from {y.min():g} to {y.max():g}"


def _unlabeled(out):
    return f"-1 for an unlabeled sample{' or position' if out.positions else ''}"


def _check_multiclass(y, out, steps, prefix):
    k = out.units
    index_shapes = [steps, (*steps, 1)]
    rows_shape = [(*steps, k)]
    if y.dtype.kind in "iu" or _fits(y.shape[1:], index_shapes):
        if not _fits(y.shape[1:], index_shapes):
            raise ValueError(
                f"{prefix}: class-index labels must have shape {_shapes_text(index_shapes)}; "
                f"got {y.shape}. One-hot labels are floats of shape {_shapes_text(rows_shape)}.")
        if y.size and ((y != np.round(y)).any() or y.max() >= k or y.min() < -1):
            raise ValueError(
                f"{prefix}: labels must be class indices in [0, {k - 1}] (or {_unlabeled(out)}); "
                f"found {_span(y)}. The output {out.name!r} has {k} classes: encode the labels "
                f"as 0..{k - 1}, or give the output one unit per class.")
        return
    if not _fits(y.shape[1:], rows_shape):
        raise ValueError(
            f"{prefix}: one-hot (or soft) labels must have shape {_shapes_text(rows_shape)}, one "
            f"column per class; got {y.shape}. Class indices have shape "
            f"{_shapes_text(index_shapes)}.")
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{prefix}: one-hot (or soft) labels must be probabilities in [0, 1]; found "
            f"{_span(y)}. Give one-hot rows, or class indices of shape "
            f"{_shapes_text(index_shapes)}.")


def _check_binary(y, out, steps, prefix):
    shapes = [steps, (*steps, 1)]
    if not _fits(y.shape[1:], shapes):
        raise ValueError(
            f"{prefix}: binary labels must have shape {_shapes_text(shapes)}, one 0 / 1 label "
            f"per sample; got {y.shape}. For several independent labels use a multilabel "
            "output (one unit per label); for one of several classes, a multiclass output.")
    if y.dtype.kind in "iu":
        if y.size and not np.isin(y, (-1, 0, 1)).all():
            raise ValueError(
                f"{prefix}: binary labels must be 0 or 1 (or {_unlabeled(out)}); found "
                f"{_span(y)}. Map the classes to 0 / 1 (e.g. y == positive_class); for more "
                "classes use a multiclass output.")
    elif y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{prefix}: binary labels must be 0 or 1, or soft labels (probabilities) in "
            f"[0, 1]; found {_span(y)}. Map the classes to 0 / 1; for real-valued targets use "
            "a regression output.")


def _check_multilabel(y, out, steps, prefix):
    shapes = [(*steps, out.units)]
    if not _fits(y.shape[1:], shapes):
        raise ValueError(
            f"{prefix}: multilabel labels must have shape {_shapes_text(shapes)}, one column "
            f"per label; got {y.shape}. Encode each sample's labels as a multi-hot row (e.g. "
            "with sklearn.preprocessing.MultiLabelBinarizer).")
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{prefix}: multilabel labels must be values in [0, 1] (1: the label applies); "
            f"found {_span(y)}. Give multi-hot rows of 0 and 1.")


def _check_regression(y, out, steps, prefix):
    shapes = ([steps] if out.units == 1 else []) + [(*steps, out.units)]
    if not _fits(y.shape[1:], shapes):
        raise ValueError(
            f"{prefix}: regression targets must have shape {_shapes_text(shapes)}, one per "
            f"unit of the output ({out.units}); got {y.shape}. Give one target per output "
            "unit, or build the output with as many units as there are targets.")


_KIND_CHECKS = {MULTICLASS: _check_multiclass, BINARY: _check_binary,
                MULTILABEL: _check_multilabel, REGRESSION: _check_regression}


def _nonfinite_rows(a):
    """Indices of the rows of ``a`` with NaN or infinite values (none for non-floats)."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating) or len(a) == 0:
        return np.zeros(0, "int64")
    return np.flatnonzero(~np.isfinite(a).reshape(len(a), -1).all(axis=1))
