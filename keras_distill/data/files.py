"""Datasets from files: ``.npz`` files (with the task they declare or imply; large ones are
memory-mapped, see ``keras_distill.data.arrays``), and the conversion rules of stored arrays
shared by every array source. Image folders live in ``keras_distill.data.images``
(:func:`load_image_folder` is re-exported here)."""

from __future__ import annotations

import numpy as np

from keras_distill import registry
from keras_distill.data.checks import _nonfinite_rows
from keras_distill.data.errors import DataError
from keras_distill.data.images import load_image_folder
from keras_distill.data.lazy import InMemory, Subset, is_lazy
from keras_distill.data.splits import Splits

__all__ = ["detect_task", "load_image_folder", "load_npz"]

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS


def _input_rule(x, what):
    """``(scale, channel_axis)`` of stored inputs ``x`` (a NumPy or memory-mapped array).

    Images ``(N, H, W)`` or ``(N, H, W, C)``: integers are divided by 255, ``(N, H, W)`` gets
    a channel axis. Feature vectors ``(N, features)`` keep their values (only ``uint8`` ones,
    flattened pixels, are divided by 255).
    """
    if x.dtype.kind not in "biuf" or x.ndim < 2:
        raise DataError(f"{what} has shape {x.shape} and dtype {x.dtype}; expected a numeric "
                        "array of N samples, e.g. (N, features), (N, height, width) or (N, "
                        "height, width, channels).")
    scaled = (x.dtype.kind in "biu" and x.ndim >= 3) or x.dtype == np.uint8
    return (1 / 255 if scaled else None), x.ndim == 3


def _inputs(x, what):
    """Inputs as a float32 NumPy array (see :func:`_input_rule`)."""
    x = np.asarray(x)
    scale, channel_axis = _input_rule(x, what)
    if scale is not None:
        x = x.astype("float32") / 255.0
    x = x.astype("float32")
    if channel_axis:
        x = x[..., None]
    return x


def _lazy_inputs(x, what):
    """Inputs kept in their stored dtype (a memory map, or downloaded ``uint8`` images),
    converted a batch at a time as :func:`_inputs` converts them (to within a float32
    rounding: rows are multiplied by 1/255 rather than divided by 255)."""
    x = x if isinstance(x, np.ndarray) else np.asarray(x)  # a memory map stays one
    scale, channel_axis = _input_rule(x, what)
    return InMemory(x, scale=scale, channel_axis=channel_axis)


def _labels(y, what, n):
    """Class indices ``(N,)`` from indices or one-hot (or soft) rows."""
    y = np.asarray(y)
    if y.ndim > 2:
        raise DataError(f"{what} has shape {y.shape}; class labels are indices (N,) or one-hot "
                        "rows (N, classes).")
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=-1)
    y = y.reshape(-1)
    if len(y) != n:
        raise DataError(f"{what} has {len(y)} labels for {n} samples.")
    if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError(f"{what} must hold integer class indices (or one-hot rows).")
    if len(y) and y.min() < 0:
        raise DataError(f"{what} has negative class index {int(y.min())}.")
    return y.astype("int32")


def detect_task(y):
    """The task (one of ``registry.OUTPUT_KINDS``) that labels stored in a file imply.

    Integer labels, one-hot rows and rows of class probabilities are ``"multiclass"``; so are
    float labels that are the whole numbers ``0..K-1``, each present. Rows of 0 / 1 values
    that do not all sum to 1 are ``"multilabel"``. Other float labels are ``"regression"``
    targets. Binary is never detected (two classes are multiclass): declare it.

    Example:
        >>> detect_task(np.array([0, 2, 1])), detect_task(np.array([[1.0, 1.0], [0.0, 1.0]]))
        ('multiclass', 'multilabel')
        >>> detect_task(np.array([0.5, 2.0]))
        'regression'
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        zero_one = bool(np.isin(y, (0, 1)).all())
        if zero_one and not (y.sum(axis=1) == 1).all():
            return MULTILABEL
        if y.dtype.kind in "biu" or zero_one:
            return MULTICLASS
        in_unit = bool(((y >= 0) & (y <= 1)).all())
        return MULTICLASS if in_unit and np.allclose(y.sum(axis=1), 1.0, atol=1e-3) \
            else REGRESSION
    if y.dtype.kind in "biu" or y.size == 0:
        return MULTICLASS
    values = np.unique(y)
    whole = np.array_equal(values, np.arange(len(values)))
    return MULTICLASS if whole else REGRESSION


def _targets(y, task, what, n):
    """The labels ``y`` of a split for ``task``, converted and checked."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise DataError(f"{what} holds {y.dtype} values; labels must be numbers (encode class "
                        "names as integers 0..classes-1).")
    if len(y) != n:
        raise DataError(f"{what} has {len(y)} labels for {n} samples.")
    rows = _nonfinite_rows(y)
    if len(rows):
        raise DataError(f"{what} has NaN or infinite values in {len(rows)} sample(s), e.g. "
                        f"rows {rows[:5].tolist()}; drop those samples or fix their labels.")
    if task == MULTICLASS:
        return _labels(y, what, n)
    found = f"found shape {y.shape}" + (
        f", values from {y.min():g} to {y.max():g}" if y.size else "")
    if task == BINARY:
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1 or not np.isin(y, (0, 1)).all():
            raise DataError(f"{what}: task 'binary' needs labels 0 or 1 of shape (N,) or (N, 1); "
                            f"{found}. Map the classes to 0 / 1 (e.g. y == positive_class), or "
                            "set task to 'multiclass'.")
        return y.astype("int32")
    if task == MULTILABEL:
        if y.ndim != 2 or (y.size and not ((y >= 0) & (y <= 1)).all()):
            raise DataError(f"{what}: task 'multilabel' needs rows of values in [0, 1] (1: the "
                            f"label applies) of shape (N, labels); {found}.")
        return y.astype("float32")
    return y.astype("float32")


def _declared_task(arrays, path):
    """The file's ``task`` entry, or None."""
    if "task" not in arrays:
        return None
    value = np.asarray(arrays["task"])
    task = value.reshape(-1)[0] if value.dtype.kind in "US" and value.size == 1 else None
    task = task.decode() if isinstance(task, bytes) else task
    if task not in registry.OUTPUT_KINDS:
        raise DataError(f"{path}: task must be one string, one of "
                        f"{', '.join(map(repr, registry.OUTPUT_KINDS))}; got {value!r}.")
    return str(task)


def load_npz(path, *, validation_fraction=0.15, test_fraction=0.2, seed=0,
             stream_bytes=None) -> Splits:
    """A dataset from a ``.npz`` file.

    The file holds ``x_train`` and ``y_train``, and optionally ``x_val``/``y_val``,
    ``x_test``/``y_test``, ``class_names`` and ``task``. A missing validation or test pair is
    split from the training data (stratified for classes): ``test_fraction`` of it for the test
    set, then ``validation_fraction`` of the original training data for validation. Integer
    images are divided by 255; ``(N, H, W)`` inputs get a channel axis; ``(N, features)``
    inputs keep their values.

    The task is ``task`` (one of ``registry.OUTPUT_KINDS``, checked against the labels), else
    detected from ``y_train`` (:func:`detect_task`): class indices or one-hot rows are
    multiclass, multi-hot rows multilabel, other floats regression targets (kept as they are).

    A file whose ``x`` arrays take ``stream_bytes`` or more (default
    ``keras_distill.data.arrays.STREAM_BYTES``, 256 MiB) is not loaded: it is converted once
    to a folder of ``.npy`` files beside it (``<file>.npy/``) whose inputs are memory-mapped
    (see :func:`keras_distill.data.arrays.load_npy_folder`).

    Example:
        >>> np.savez("data.npz", x_train=x, y_train=y)  # doctest: +SKIP
        >>> load_npz("data.npz").summary()              # doctest: +SKIP
    """
    import os

    from keras_distill.data import arrays as arrays_lib

    limit = arrays_lib.STREAM_BYTES if stream_bytes is None else stream_bytes
    if arrays_lib.npz_input_bytes(path) >= limit:
        folder = arrays_lib.npz_to_npy_folder(path)
        return arrays_lib.load_npy_folder(
            folder, validation_fraction=validation_fraction, test_fraction=test_fraction,
            seed=seed, name=os.path.splitext(os.path.basename(os.fspath(path)))[0],
            what=os.fspath(path))
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return _splits_of(_read_npz(path), path, name, _inputs,
                      validation_fraction=validation_fraction, test_fraction=test_fraction,
                      seed=seed)


def _splits_of(arrays, path, name, inputs, *, validation_fraction, test_fraction, seed):
    """The :class:`Splits` of a file's arrays (``x_train``, ``y_train``, optional pairs,
    ``class_names``, ``task``), the inputs converted by ``inputs`` (:func:`_inputs` or
    :func:`_lazy_inputs`), missing pairs split off the training data."""
    task = _declared_task(arrays, path)
    if task is None:
        task = detect_task(arrays["y_train"])
    parts = {}
    for part in ("train", "val", "test"):
        if f"x_{part}" in arrays:
            x = inputs(arrays[f"x_{part}"], f"{path}: x_{part}")
            parts[part] = (x, _targets(arrays[f"y_{part}"], task, f"{path}: y_{part}", len(x)))
    x, y = parts["train"]
    n = len(x)
    stratify = task in (MULTICLASS, BINARY)
    rest = np.arange(n)
    if "test" not in parts:
        keep, test = _split_indices(y, test_fraction, seed, stratify=stratify)
        parts["test"] = (_take(x, test), y[test])
        rest = rest[keep]
    if "val" not in parts:
        keep, val = _split_indices(y[rest], validation_fraction * n / len(rest), seed,
                                   stratify=stratify)
        parts["val"] = (_take(x, rest[val]), y[rest[val]])
        rest = rest[keep]
    if len(rest) < n:
        parts["train"] = (_take(x, rest), y[rest])
    for i, what in ((0, "sample"), (1, "label")):
        shapes = {p: tuple(v[i].shape[1:]) for p, v in parts.items()}
        if len(set(shapes.values())) != 1:
            raise DataError(f"{path}: the splits have different {what} shapes {shapes}.")
    num_classes, class_names = _npz_classes(parts, task, arrays, path)
    return Splits(*parts["train"], *parts["val"], *parts["test"], num_classes=num_classes,
                  class_names=class_names, name=name, task=task)


def _take(x, rows):
    """Rows ``rows`` of ``x``: a copy of a NumPy array, a :class:`Subset` of a lazy one."""
    return Subset(x, rows) if is_lazy(x) else x[rows]


def _read_npz(path):
    """The arrays of a ``.npz`` data file, with ``x_train``, ``y_train`` and whole pairs."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as a .npz file: {exc}") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks {' and '.join(missing)}; a .npz data file holds x_train "
                        f"and y_train (optionally x_val, y_val, x_test, y_test, class_names, "
                        f"task). It has: {', '.join(sorted(arrays)) or 'nothing'}.")
    for part in ("val", "test"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise DataError(f"{path} has only one of x_{part} and y_{part}; give both or "
                            "neither.")
    return arrays


def _npz_classes(parts, task, arrays, path):
    """``(num_classes, class_names)`` of a file's labels and its optional ``class_names``."""
    names = None
    if "class_names" in arrays:
        names = [str(c) for c in np.asarray(arrays["class_names"]).reshape(-1)]
    if task == MULTICLASS:
        count = int(max((int(v[1].max()) for v in parts.values() if len(v[1])), default=0) + 1)
        if names is not None and len(names) < count:
            raise DataError(f"{path}: class_names has {len(names)} names but the labels go up "
                            f"to {count - 1}.")
        return (len(names), names) if names is not None else (
            count, [str(i) for i in range(count)])
    y = parts["train"][1]
    count = 2 if task == BINARY else (1 if y.ndim == 1 else int(np.prod(y.shape[1:])))
    if names is not None and len(names) != count:
        what = {BINARY: "classes", MULTILABEL: "labels", REGRESSION: "targets"}[task]
        raise DataError(f"{path}: class_names has {len(names)} names but the {task} labels "
                        f"have {count} {what}; give one name per {what[:-1]}.")
    if names is None:
        names = (["target"] if task == REGRESSION and count == 1 else
                 [f"target {i}" if task == REGRESSION else str(i) for i in range(count)])
    return count, names


def _split_indices(y, fraction, seed, *, stratify=True):
    """``(rest, part)``: the indices of ``fraction`` of the samples labeled ``y`` and of the
    others, in the order ``sklearn.model_selection.train_test_split`` gives them; stratified
    (when ``stratify``) when every class has 2+ samples."""
    from sklearn.model_selection import train_test_split

    if len(y) < 3:
        raise DataError(f"only {len(y)} training samples: too few to split off validation or "
                        "test data; give x_val/y_val and x_test/y_test.")
    index = np.arange(len(y))
    strat = None
    if stratify:
        counts = np.bincount(y)
        strat = y if counts[counts > 0].min() >= 2 else None
    try:
        return train_test_split(index, test_size=fraction, random_state=seed, stratify=strat)
    except ValueError:  # too few samples per class for a stratified split of that size
        return train_test_split(index, test_size=fraction, random_state=seed)
