"""Scores of a model's outputs per output kind, in NumPy: against labels, and against a
reference (the Keras model's outputs, or a teacher's).

Every output is logits (``multiclass``, ``binary``, ``multilabel``) or values
(``regression``); see ``keras_distill.outputs``. Axes between the batch and the last one
(a tagger's steps) are positions: they are flattened, so every position counts as a sample.
Integer labels ``-1`` (a padded position, an unlabelled class) are left out of the label
scores of the classification kinds (a regression target of ``-1`` is a value).

The keys of :func:`scores` per kind (:data:`KEYS`; every key is present, ``None`` where it
cannot be computed):

====================  ===============================================================
kind                  keys
====================  ===============================================================
``multiclass``        ``accuracy`` (argmax against the labels, class indices or one-hot),
                      ``agreement`` (argmax against the reference's argmax)
``binary``            ``accuracy`` (logit > 0 against the label), ``agreement`` (same sign
                      as the reference), ``auc`` (ROC AUC of the logits; ``None`` when the
                      labels hold one class only)
``multilabel``        ``accuracy`` and ``agreement`` per label (every sample x label
                      counts once), ``micro_f1`` against the labels
``regression``        ``mae``, ``rmse`` (against the labels), ``rms_error`` (against the
                      reference)
every kind            ``max_abs_error``, ``mean_abs_error``: against the reference
====================  ===============================================================

Example:
    >>> s = scores("binary", np.array([2.0, -1.0, 0.5]), labels=np.array([1, 0, 0]),
    ...            reference=np.array([1.5, -0.5, -0.1]))
    >>> s["accuracy"], s["agreement"], s["auc"]
    (0.6666666666666666, 0.6666666666666666, 1.0)
    >>> primary("regression")
    ('mae', False)
"""

from __future__ import annotations

import numpy as np

from keras_distill.registry import OUTPUT_KINDS

MULTICLASS, BINARY, MULTILABEL, REGRESSION = OUTPUT_KINDS

#: The keys of :func:`scores` for each kind, in order.
KEYS = {
    MULTICLASS: ("accuracy", "agreement", "max_abs_error", "mean_abs_error"),
    BINARY: ("accuracy", "agreement", "auc", "max_abs_error", "mean_abs_error"),
    MULTILABEL: ("accuracy", "agreement", "micro_f1", "max_abs_error", "mean_abs_error"),
    REGRESSION: ("mae", "rmse", "max_abs_error", "mean_abs_error", "rms_error"),
}
#: The keys that need labels (the others need a reference).
LABEL_KEYS = {
    MULTICLASS: ("accuracy",),
    BINARY: ("accuracy", "auc"),
    MULTILABEL: ("accuracy", "micro_f1"),
    REGRESSION: ("mae", "rmse"),
}
_PRIMARY = {
    "labels": {MULTICLASS: ("accuracy", True), BINARY: ("accuracy", True),
               MULTILABEL: ("micro_f1", True), REGRESSION: ("mae", False)},
    "reference": {MULTICLASS: ("agreement", True), BINARY: ("agreement", True),
                  MULTILABEL: ("agreement", True), REGRESSION: ("mean_abs_error", False)},
}


def check_kind(kind):
    """``kind`` if it is one of ``OUTPUT_KINDS``, else a ``ValueError`` naming them."""
    if kind not in KEYS:
        raise ValueError(f"kind must be one of {OUTPUT_KINDS}; got {kind!r}.")
    return kind


def primary(kind, against="labels"):
    """The score that ranks models of ``kind``: ``(key, higher_is_better)``.

    Args:
        kind: one of ``OUTPUT_KINDS``.
        against: ``"labels"`` (accuracy; micro-F1 for multi-label, whose per-label accuracy
            the many negatives inflate; MAE for regression) or ``"reference"`` (agreement;
            mean abs error for regression).

    Example:
        >>> primary("multiclass"), primary("multilabel"), primary("regression", "reference")
        (('accuracy', True), ('micro_f1', True), ('mean_abs_error', False))
    """
    if against not in _PRIMARY:
        raise ValueError(f"against must be 'labels' or 'reference'; got {against!r}.")
    return _PRIMARY[against][check_kind(kind)]


def scores(kind, outputs, labels=None, reference=None):
    """The scores of one output of ``kind`` (the keys of :data:`KEYS`).

    Args:
        kind: one of ``OUTPUT_KINDS``.
        outputs: float array ``(N, *positions, units)`` (logits, or regression values); a
            binary output may drop its last axis of one.
        labels: ``None``, or labels of the kind: class indices ``(N, *positions)`` or one-hot
            rows (multiclass); 0/1 ``(N, *positions[, 1])`` (binary); multi-hot
            ``(N, *positions, units)`` (multi-label); targets of the outputs' shape
            (regression). Integer ``-1`` leaves a label out (classification kinds).
        reference: ``None``, or float array of the outputs' shape (e.g. Keras's outputs).

    Returns:
        A dict with the keys of ``KEYS[kind]``; ``None`` where the input is missing (or, for
        ``auc`` / ``micro_f1``, where the labels make it undefined).

    Example:
        >>> scores("multiclass", np.eye(3), labels=[0, 1, 1])["accuracy"]
        0.6666666666666666
    """
    check_kind(kind)
    outputs = np.asarray(outputs, np.float32)
    result = dict.fromkeys(KEYS[kind])
    if labels is not None:
        result.update(_LABEL_SCORES[kind](outputs, labels))
    if reference is not None:
        reference = np.asarray(reference, np.float32).reshape(outputs.shape)
        diff = np.abs(outputs.astype(np.float64) - reference)
        result["max_abs_error"] = float(diff.max()) if diff.size else 0.0
        result["mean_abs_error"] = float(diff.mean()) if diff.size else 0.0
        if kind == REGRESSION:
            result["rms_error"] = float(np.sqrt(np.mean(diff ** 2))) if diff.size else 0.0
        else:
            result["agreement"] = agreement(kind, outputs, reference)
    return result


def agreement(kind, outputs, reference):
    """How often ``outputs`` decide as ``reference`` does: the same argmax (multiclass), the
    same sign (binary; per label for multi-label). ``None`` for regression or without a
    reference.

    Example:
        >>> agreement("multilabel", np.array([[1.0, -1.0]]), np.array([[2.0, 1.0]]))
        0.5
    """
    if reference is None or check_kind(kind) == REGRESSION:
        return None
    outputs = np.asarray(outputs)
    reference = np.asarray(reference).reshape(outputs.shape)
    if outputs.size == 0:
        return None
    if kind == MULTICLASS:
        return float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))
    return float(np.mean((outputs > 0) == (reference > 0)))


def output_scores(kinds, outputs, labels=None, reference=None):
    """:func:`scores` of every output of a multi-output model: ``{name: scores}``.

    Args:
        kinds: ``{output name: kind}``, in output order.
        outputs: ``{name: array}``.
        labels, reference: ``None``, or ``{name: array}`` (a missing name scores without).

    Example:
        >>> s = output_scores({"cls": "multiclass", "reg": "regression"},
        ...                   {"cls": np.eye(2), "reg": np.array([[1.0], [2.0]])},
        ...                   labels={"reg": np.array([1.0, 3.0])})
        >>> s["cls"]["accuracy"], s["reg"]["mae"]
        (None, 0.5)
    """
    labels, reference = labels or {}, reference or {}
    return {name: scores(kind, outputs[name], labels.get(name), reference.get(name))
            for name, kind in kinds.items()}


# --- label scores per kind --------------------------------------------------------------------


def _multiclass(outputs, labels):
    units = outputs.shape[-1] if outputs.ndim else 1
    y = np.asarray(labels)
    if y.ndim == outputs.ndim and y.ndim > 1 and y.shape[-1] == units and units > 1:
        y = np.argmax(y, -1)  # one-hot (or soft) rows
    y = y.reshape(-1)
    predicted = np.argmax(outputs, -1).reshape(-1)
    _check_count(y, predicted, "class labels", "position")
    keep = _kept(y)
    return {"accuracy": _mean(predicted[keep] == y[keep])}


def _binary(outputs, labels):
    logits = outputs.reshape(-1)
    y = np.asarray(labels).reshape(-1)
    _check_count(y, logits, "binary labels", "logit")
    keep = _kept(y)
    logits, positive = logits[keep], y[keep] >= 0.5
    return {"accuracy": _mean((logits > 0) == positive), "auc": roc_auc(positive, logits)}


def _multilabel(outputs, labels):
    units = outputs.shape[-1]
    logits = outputs.reshape(-1, units)
    y = np.asarray(labels)
    if y.size != logits.size:
        raise ValueError(f"multi-label labels have shape {y.shape} but the outputs "
                         f"{outputs.shape}; pass multi-hot labels of the outputs' shape.")
    y = y.reshape(-1, units)
    keep = _kept(y)
    predicted, positive = logits[keep] > 0, y[keep] >= 0.5
    tp = int(np.sum(predicted & positive))
    wrong = int(np.sum(predicted != positive))
    return {"accuracy": _mean(predicted == positive),
            "micro_f1": 2 * tp / (2 * tp + wrong) if 2 * tp + wrong else None}


def _regression(outputs, labels):
    values = outputs.reshape(-1).astype(np.float64)
    y = np.asarray(labels, np.float64).reshape(-1)
    _check_count(y, values, "regression targets", "value")
    if not values.size:
        return {"mae": None, "rmse": None}
    diff = values - y
    return {"mae": float(np.mean(np.abs(diff))), "rmse": float(np.sqrt(np.mean(diff ** 2)))}


_LABEL_SCORES = {MULTICLASS: _multiclass, BINARY: _binary, MULTILABEL: _multilabel,
                 REGRESSION: _regression}


def roc_auc(positive, scores):
    """ROC AUC of ``scores`` for the boolean ``positive`` (ties count one half), or ``None``
    when only one class is present. Equal to ``sklearn.metrics.roc_auc_score``.

    Example:
        >>> roc_auc(np.array([False, True, True]), np.array([0.1, 0.4, 0.1]))
        0.75
    """
    positive = np.asarray(positive, bool).reshape(-1)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, np.float64).reshape(-1))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values):
    """Ranks from 1, tied values sharing their mean rank (``scipy.stats.rankdata``)."""
    order = np.argsort(values, kind="mergesort")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(values.size)
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(first)[inverse]
    bounds = np.r_[np.flatnonzero(first), values.size]
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def _kept(y):
    """Which labels count: all but integer -1."""
    return y != -1 if y.dtype.kind in "iu" else np.ones(y.shape, bool)


def _check_count(y, outputs, what, per):
    if y.size != outputs.size:
        raise ValueError(f"{y.size} {what} for {outputs.size} outputs; pass one label per "
                         f"sample and {per}.")


def _mean(values):
    return float(np.mean(values)) if values.size else None


# --- tables ---------------------------------------------------------------------------------

#: The columns of a report for each kind: ``(header, key, format)``.
COLUMNS = {
    MULTICLASS: (("accuracy", "accuracy", ".4f"), ("agreement", "agreement", ".4f"),
                 ("max abs err", "max_abs_error", ".2e")),
    BINARY: (("accuracy", "accuracy", ".4f"), ("agreement", "agreement", ".4f"),
             ("AUC", "auc", ".4f"), ("max abs err", "max_abs_error", ".2e")),
    MULTILABEL: (("label agreement", "agreement", ".4f"), ("micro-F1", "micro_f1", ".4f"),
                 ("max abs err", "max_abs_error", ".2e")),
    REGRESSION: (("MAE", "mae", ".4g"), ("RMSE", "rmse", ".4g"),
                 ("max abs err", "max_abs_error", ".2e")),
}
#: How the label scores read in a sentence.
LABEL_NAMES = {"accuracy": "accuracy", "auc": "AUC", "micro_f1": "micro-F1", "mae": "MAE",
               "rmse": "RMSE"}


def columns(kind):
    """The report columns of a model whose ``kind`` is one kind or ``{output name: kind}``:
    ``[(header, (output name or None, key), format)]``; a multi-output model's headers start
    with the output's name.

    Example:
        >>> [h for h, _, _ in columns({"cls": "multiclass", "reg": "regression"})][:4]
        ['cls accuracy', 'cls agreement', 'cls max abs err', 'reg MAE']
    """
    if isinstance(kind, str):
        return [(header, (None, key), spec) for header, key, spec in COLUMNS[check_kind(kind)]]
    return [(f"{name} {header}", (name, key), spec)
            for name, k in kind.items() for header, key, spec in COLUMNS[check_kind(k)]]


def column_value(metrics, where):
    """The value of a column (see :func:`columns`) in a metrics dict, or None."""
    name, key = where
    if name is not None:
        metrics = (metrics.get("outputs") or {}).get(name) or {}
    return metrics.get(key)
