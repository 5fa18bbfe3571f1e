"""The outputs an artifact's runtime gives, matched to the Keras outputs they come from, and
scored per output: what :func:`keras_distill.verify.evaluate_bytes` returns.

A model with one output is scored as one (flat keys: ``result["accuracy"]``); a model with
several is scored per output (``result["outputs"][name]["accuracy"]``), with the generic
``max_abs_error`` / ``mean_abs_error`` over all of them at the top. Labels, reference outputs
and kinds of a multi-output model are dicts by output name (lists in output order work too).

The runtime's output names are matched to the expected (Keras) names: by name when they are
the same set (``export`` names them so), else by the index in ``output_<i>`` (Keras's names
for a list of outputs) or in a TFLite tensor's ``...:<i>`` suffix, else in order.
"""

from __future__ import annotations

import re

import numpy as np

from keras_distill.verify import scores as kind_scores


def as_reference(reference, x):
    """A reference given as a model (``predict``) or a function of ``x``: its outputs; other
    values (arrays, dicts, lists) unchanged."""
    if reference is None:
        return None
    if hasattr(reference, "predict"):
        from keras_distill.data.stream import predict

        return predict(reference, x, batch_size=256)
    if callable(reference):
        return reference(x)
    return reference


def rows(value, n, what):
    """``value`` as a float32 array of ``n`` rows, else a ``ValueError`` naming ``what``."""
    value = np.asarray(value, np.float32)
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} rows but x has {n}; pass one {what} output "
                         "per sample.")
    return value


def check_labels(y, n, what="y"):
    if y is not None and len(y) != n:
        raise ValueError(f"{what} has {len(y)} labels but x has {n} samples.")
    return y


def single_kind(kind):
    """The kind of a one-output model: ``kind``, or the only value of a one-entry dict."""
    if isinstance(kind, dict):
        if len(kind) != 1:
            raise ValueError(f"kind names {len(kind)} outputs {list(kind)}, but the artifact "
                             "has one output; pass one kind.")
        kind = next(iter(kind.values()))
    return kind_scores.check_kind(kind)


def only(value):
    """The value of a one-entry dict (a one-output model's ``predict``), else ``value``."""
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value


def expected_names(kind, runtime_names, *values):
    """The Keras output names: those of ``kind`` or of the first dict among ``values``; the
    runtime's own names when nothing names them."""
    for value in (kind, *values):
        if isinstance(value, dict):
            return list(value)
    return list(runtime_names)


def match_names(runtime_names, expected):
    """``{runtime name: expected name}``; a ``ValueError`` when the counts differ.

    Example:
        >>> match_names(["output_1", "output_0"], ["cls", "reg"])
        {'output_1': 'reg', 'output_0': 'cls'}
    """
    runtime_names, expected = list(runtime_names), list(expected)
    if set(runtime_names) == set(expected):
        return {name: name for name in runtime_names}
    if len(runtime_names) != len(expected):
        raise ValueError(f"The artifact has {len(runtime_names)} outputs {runtime_names}; "
                         f"expected {len(expected)}: {expected}.")
    for pattern in (r"output_(\d+)", r".*:(\d+)"):
        found = [re.fullmatch(pattern, name) for name in runtime_names]
        if all(found):
            index = [int(m.group(1)) for m in found]
            if sorted(index) == list(range(len(expected))):
                return {name: expected[i] for name, i in zip(runtime_names, index)}
    return dict(zip(runtime_names, expected))


def per_output(value, names, what):
    """``value`` as ``{name: value}``: a dict by name, a list in output order, or ``None``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{what} names outputs {unknown} that the model does not have; "
                             f"its outputs are {names}.")
        return {name: value[name] for name in names if value.get(name) is not None}
    if isinstance(value, (list, tuple)) and len(value) == len(names):
        return {name: v for name, v in zip(names, value) if v is not None}
    raise ValueError(f"{what} of a model with outputs {names} must be a dict by output name "
                     f"(or a list in that order); got {type(value).__name__}.")


class Plan:
    """How the outputs of one artifact are scored: decided from its runtime's output names
    before it runs (so that bad labels or references fail before the first sample)."""

    def __init__(self, runtime_names, kind, x, y, reference, reference_outputs):
        n = len(x)
        self.multi = len(runtime_names) > 1
        if not self.multi:
            self.kind = single_kind(kind)
            y, reference, reference_outputs = (
                only(v) for v in (y, reference, reference_outputs))
            self.y = check_labels(y, n)
            self.reference = None if reference is None else rows(reference, n, "reference")
            self.reference_outputs = (None if reference_outputs is None else
                                      rows(reference_outputs, n, "reference"))
            return
        names = expected_names(kind, runtime_names, reference, y, reference_outputs)
        self.rename = match_names(runtime_names, names)
        self.kind = ({name: kind_scores.check_kind(k) for name, k in kind.items()}
                     if isinstance(kind, dict) else
                     {name: kind_scores.check_kind(kind) for name in names})
        if set(self.kind) != set(names):
            raise ValueError(f"kind names outputs {sorted(self.kind)}; the artifact's are "
                             f"{names}.")
        self.y = {k: check_labels(v, n, f"y[{k!r}]") for k, v in
                  per_output(y, names, "y").items()}
        self.reference = {k: rows(v, n, f"reference[{k!r}]") for k, v in
                          per_output(reference, names, "reference").items()}
        self.reference_outputs = {k: rows(v, n, f"reference_outputs[{k!r}]") for k, v in
                                  per_output(reference_outputs, names,
                                             "reference_outputs").items()}

    def score(self, outputs):
        """The scores of ``outputs`` (what :func:`run_samples` gave)."""
        if not self.multi:
            result = {"kind": self.kind,
                      **kind_scores.scores(self.kind, outputs, self.y, self.reference)}
            if self.reference_outputs is not None:
                result.update(with_reference(self.kind, outputs, self.reference_outputs))
            return result
        outputs = {self.rename[name]: value for name, value in outputs.items()}
        per = {}
        for name, kind in self.kind.items():
            per[name] = kind_scores.scores(kind, outputs[name], self.y.get(name),
                                           self.reference.get(name))
            if name in self.reference_outputs:
                per[name].update(with_reference(kind, outputs[name],
                                                self.reference_outputs[name]))
        return {"kind": dict(self.kind), **overall(outputs, self.reference), "outputs": per}

    def output_dtype(self, runner):
        """The output tensors' dtype: one name, or ``{output name: dtype}``."""
        if not self.multi:
            return runner.output_dtype
        return {self.rename[name]: dtype for name, dtype in runner.output_dtypes.items()}


def with_reference(kind, outputs, reference_outputs):
    """Scores against another model's outputs (a teacher's): ``agreement_with_reference``
    (``None`` for regression) and, for regression, ``mean_abs_error_with_reference``."""
    result = {"agreement_with_reference": kind_scores.agreement(kind, outputs,
                                                                reference_outputs)}
    if kind == kind_scores.REGRESSION:
        diff = np.abs(np.asarray(outputs, np.float64) -
                      np.asarray(reference_outputs, np.float64).reshape(np.shape(outputs)))
        result["mean_abs_error_with_reference"] = float(diff.mean()) if diff.size else 0.0
    return result


def reference_keys(kind):
    """The keys :func:`with_reference` gives for ``kind``."""
    if kind == kind_scores.REGRESSION:
        return ("agreement_with_reference", "mean_abs_error_with_reference")
    return ("agreement_with_reference",)


def overall(outputs, reference):
    """``max_abs_error`` and ``mean_abs_error`` over every output (every value counts once);
    ``None`` without a reference."""
    if not reference:
        return {"max_abs_error": None, "mean_abs_error": None}
    total = count = 0
    largest = 0.0
    for name, ref in reference.items():
        diff = np.abs(np.asarray(outputs[name], np.float64) - ref.reshape(outputs[name].shape))
        if diff.size:
            largest = max(largest, float(diff.max()))
            total, count = total + float(diff.sum()), count + diff.size
    return {"max_abs_error": largest, "mean_abs_error": total / count if count else 0.0}
