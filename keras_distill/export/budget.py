"""int8 under an accuracy budget: keep the layers int8 hurts most in float until it holds.

:func:`int8_within_budget` converts the model to int8 and scores it in LiteRT against the
float Keras model on validation data. While the loss exceeds ``max_accuracy_drop`` it keeps one
more layer in float, worst first by :func:`~keras_distill.export.diagnose.diagnose` (the
converter's quantization debugger writes the model with DEQUANTIZE / QUANTIZE around the layers
it is told to keep). When no mix of at most ``max_layers`` float layers holds the budget, the
whole-model step is tried: int16 activations with int8 weights (``int16x8``). Conversions run in
keras-distill's worker process.

The budget is on the task's metric (:func:`keras_distill.verify.scores.primary`): for
classification kinds the points of accuracy lost (0.01: one point); for regression the relative
increase of the mean absolute error (0.01: 1% higher MAE).

Example:
    >>> result = int8_within_budget(student, x_train[:300], (x_val, y_val),
    ...                             max_accuracy_drop=0.01)  # doctest: +SKIP
    >>> result.mode, result.kept, result.within_budget  # doctest: +SKIP
    ('int8_mixed', ['conv2'], True)
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from keras_distill import isolation

#: The worker's tasks.
MIXED = "keras_distill.export.budget:_mixed_saved_model"
WHOLE = "keras_distill.export.tflite:convert"
#: The modes a budgeted model can end in: full int8, int8 with float layers, int16x8.
MODES = ("int8", "int8_mixed", "int16x8")
#: Layers of the diagnosis a result keeps (worst first).
DIAGNOSIS_ROWS = 8


@dataclasses.dataclass
class Variant:
    """One model measured: its mode, the layers it keeps in float, its score on the budget's
    data, the drop from float, its size and its median LiteRT latency (one sample, host CPU)."""

    mode: str
    kept: list
    score: float | None
    drop: float | None
    size_bytes: int | None
    latency_ms: float | None
    error: str | None = None  # the conversion failed (then no score)

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BudgetResult:
    """The model that meets the budget, or the best one tried.

    Attributes:
        model_bytes: the ``.tflite`` flatbuffer (``int8`` and ``int8_mixed``: float input and
            output, int8 inside but for the ``kept`` layers; ``int16x8``: int16 input and
            output).
        mode: ``"int8"`` (full int8 meets the budget), ``"int8_mixed"`` or ``"int16x8"``.
        kept: the Keras layers kept in float, in the order they were added.
        kind, metric: the output's kind and the metric the budget is on (``accuracy``,
            ``micro_f1`` or ``mae``).
        float_score, int8_score, score: the Keras model's, full int8's and this model's
            metric on the budget's data.
        drop: this model's loss against float (points of accuracy; for ``mae`` the relative
            increase); ``max_drop``: the budget.
        within_budget: ``drop <= max_drop``.
        tried: every :class:`Variant` measured, in order.
        diagnosis: the worst layers by the diagnosis, when it ran (full int8 over the
            budget): ``[{"layer", "snr_db", "steps_rmse", "cosine"}, ...]``, worst first.
    """

    model_bytes: bytes
    mode: str
    kept: list
    kind: str
    metric: str
    float_score: float
    int8_score: float
    score: float
    drop: float
    max_drop: float
    within_budget: bool
    tried: list
    diagnosis: list = dataclasses.field(default_factory=list)

    # the names of a classifier's scores
    float_accuracy = property(lambda self: self.float_score)
    int8_accuracy = property(lambda self: self.int8_score)
    accuracy = property(lambda self: self.score)

    def to_dict(self):
        """The result without its bytes (for a manifest)."""
        return {"mode": self.mode, "kept": list(self.kept), "kind": self.kind,
                "metric": self.metric, "float": self.float_score, "int8": self.int8_score,
                "score": self.score, "drop": self.drop, "max_drop": self.max_drop,
                "within_budget": self.within_budget,
                "tried": [v.to_dict() for v in self.tried], "diagnosis": list(self.diagnosis)}

    def describe(self):
        """What the budget chose, in a sentence or two."""
        unit = "relative MAE increase" if self.metric == "mae" else f"{self.metric} drop"
        full = self.tried[0]
        text = (f"int8 budget ({unit} at most {self.max_drop:g}): full int8 "
                f"{self.metric} {full.score:.4f} against float {self.float_score:.4f} "
                f"(drop {full.drop:.4f})")
        if self.mode == "int8" and self.within_budget:
            return text + ", within the budget: no layer kept in float."
        steps = "; ".join(
            f"{'+'.join(v.kept) if v.kept else v.mode}: " + (
                f"failed ({v.error})" if v.error else
                f"{v.score:.4f} ({v.size_bytes - full.size_bytes:+,} bytes, "
                f"{v.latency_ms - full.latency_ms:+.3f} ms)") for v in self.tried[1:])
        verdict = (f"chose {self.mode}" + (f" with {', '.join(self.kept)} in float"
                                           if self.mode == "int8_mixed" else "")
                   if self.within_budget else
                   f"no model tried meets the budget; the best is {self.mode}"
                   + (f" with {', '.join(self.kept)} in float" if self.kept else ""))
        return (f"{text}; tried {steps}; {verdict} (drop {self.drop:.4f}). Quantization-aware "
                "training (--qat) is the other way to recover int8 accuracy.")


class _Conversions:
    """The int8 conversions of one model, all from one lowered SavedModel, in the worker
    process (the lowering and the SavedModel export are done once, not once per model)."""

    def __init__(self, path, calibration, layer_names, output_layer):
        self._path, self._calibration = path, calibration
        self._names, self._output = layer_names, output_layer

    def keep_float(self, layers):
        """int8 with the Keras ``layers`` kept in float."""
        return isolation.call(MIXED, self._path, self._calibration, list(layers), self._names,
                              self._output, stage="int8 conversion with float layers",
                              remedy="Keep fewer layers in float, or use QAT.")

    def int16x8(self):
        """int16 activations, int8 weights."""
        return isolation.call(WHOLE, self._path, "int16x8",
                              representative_data=self._calibration, layer_names=self._names,
                              stage="TFLite int16x8 conversion and calibration",
                              remedy="Keep layers in float instead (int8_mixed), or use QAT.")


@contextlib.contextmanager
def conversions(model, representative_data):
    """A :class:`_Conversions` of ``model`` calibrated on ``representative_data``."""
    from keras_distill.export.diagnose import _lowered_saved_model
    from keras_distill.graph import all_layers

    calibration = np.asarray(representative_data)
    names = [layer.name for layer in all_layers(model)]
    with _lowered_saved_model(model, calibration) as (path, dtype):
        yield _Conversions(path, calibration.astype(dtype), names, model.layers[-1].name)


def keep_float(model, representative_data, layers):
    """The int8 ``.tflite`` of ``model`` with the Keras ``layers`` kept in float."""
    with conversions(model, representative_data) as convert:
        return convert.keep_float(layers)


def whole_int16x8(model, representative_data):
    """The ``int16x8`` ``.tflite`` of ``model`` (int16 activations, int8 weights)."""
    with conversions(model, representative_data) as convert:
        return convert.int16x8()


def int8_within_budget(model, representative_data, eval_data, *, max_accuracy_drop=0.01,
                       max_layers=8, kind="auto", whole_model=True):
    """int8 with as few float layers as keep the metric within ``max_accuracy_drop``.

    Args:
        model: a single-output Keras model (logits, or values for regression).
        representative_data: calibration inputs (a few hundred training inputs).
        eval_data: ``(x, y)`` with labels of the kind (validation data, not the test set), or
            ``x`` alone for a classifier (then the float model's predictions are the labels:
            the score is agreement with it, and the drop is the share of inputs int8
            changes, never less than the accuracy it loses).
        max_accuracy_drop: the most the model may lose: points of accuracy (0.01: one point;
            micro-F1 for multi-label), or for regression the relative increase of the MAE.
        max_layers: keep at most this many layers in float.
        kind: ``"auto"`` (two or more units: multiclass; one: binary for 0/1 labels, else
            regression), or one of ``keras_distill.outputs.OUTPUT_KINDS``.
        whole_model: when no mix of float layers meets the budget, also try ``int16x8``.

    Returns:
        A :class:`BudgetResult`.
    """
    from keras_distill.export.diagnose import diagnose
    from keras_distill.verify.scores import primary, scores

    x, y = eval_data if isinstance(eval_data, tuple) else (eval_data, None)
    x = np.asarray(x)
    reference = np.asarray(model.predict(x, verbose=0), np.float32)
    kind = _kind(kind, reference, y)
    metric, higher = primary(kind)
    if y is None:
        if kind == "regression":
            raise ValueError("A regression budget is on the MAE against targets: pass "
                             "eval_data=(x_val, y_val).")
        y = np.argmax(reference, -1) if kind == "multiclass" else (reference > 0).astype(int)
    y = np.asarray(y)
    float_score = float(scores(kind, reference, y)[metric])

    def drop(score):
        if higher:
            return float_score - score
        return (score - float_score) / float_score if float_score > 0 else score - float_score

    def measure(mode, kept, data):
        result = isolation.call("keras_distill.verify:evaluate_bytes", bytes(data), "tflite",
                                x, y, kind=kind, stage=f"Running the {mode} model in LiteRT")
        score = float(result[metric])
        variant = Variant(mode, list(kept), score, drop(score), len(data),
                          round(result["latency_ms_median"], 4))
        tried.append((variant, data))
        return variant

    def attempt(mode, kept, convert):
        """Measure one more model; a conversion that fails is recorded, not raised."""
        try:
            data = convert()
        except Exception as exc:  # noqa: BLE001 - the models measured so far stand
            variant = Variant(mode, list(kept), None, None, None, None,
                              error=f"{type(exc).__name__}: {exc}")
            tried.append((variant, None))
            return variant
        return measure(mode, kept, data)

    def over(variant):
        return variant.error is not None or variant.drop > max_accuracy_drop

    tried, kept, worst = [], [], []
    with conversions(model, representative_data) as convert:
        full = measure("int8", [], convert.keep_float([]))
        if over(full):
            layers = [d for d in diagnose(model, representative_data, x,
                                          keep_float_top=None).layers if d.layer]
            worst = [{"layer": d.layer, "snr_db": d.snr_db, "steps_rmse": d.steps_rmse,
                      "cosine": d.cosine} for d in layers[:DIAGNOSIS_ROWS]]
            for layer in list(dict.fromkeys(d.layer for d in layers))[:max_layers]:
                kept.append(layer)
                if not over(attempt("int8_mixed", kept, lambda: convert.keep_float(kept))):
                    break
            if whole_model and over(tried[-1][0]):
                attempt("int16x8", [], convert.int16x8)
    measured = [(v, d) for v, d in tried if v.error is None]
    within = [(v, d) for v, d in measured if v.drop <= max_accuracy_drop]
    chosen, data = within[0] if within else min(measured, key=lambda t: t[0].drop)
    return BudgetResult(bytes(data), chosen.mode, list(chosen.kept), kind, metric, float_score,
                        full.score, chosen.score, chosen.drop, max_accuracy_drop,
                        chosen.drop <= max_accuracy_drop, [v for v, _ in tried], worst)


def _kind(kind, reference, y):
    if kind != "auto":
        from keras_distill.verify.scores import check_kind

        return check_kind(kind)
    if reference.ndim > 1 and reference.shape[-1] >= 2:
        return "multiclass"
    if y is None or set(np.unique(np.asarray(y))) <= {0, 1}:
        return "binary"
    return "regression"


# ---- in the worker process ---------------------------------------------------------------


def _mixed_saved_model(saved_model_dir, calibration, layers, layer_names, output_layer):
    """int8 of ``saved_model_dir`` with the ops of ``layers`` denylisted (kept in float): the
    float model's op outputs that :func:`layer_for_tensor` maps to them (the signature's output,
    ``StatefulPartitionedCall...``, is ``output_layer``'s, as in the diagnosis)."""
    from keras_distill.export.diagnose import _debugger
    from keras_distill.export.tflite import convert, layer_for_tensor, list_ops

    def owner(name):
        layer = layer_for_tensor(name, layer_names)
        return output_layer if layer is None and name.startswith(
            "StatefulPartitionedCall") else layer

    nodes = []
    if layers:
        float_model = convert(saved_model_dir, "float32")
        for op in list_ops(float_model):  # an op's layer: from its outputs, else its inputs
            owners = [owner(t["name"]) for t in op["outputs"]] + [
                layer_for_tensor(t["name"], layer_names) for t in op["inputs"]]
            if next((o for o in owners if o), None) in layers:
                nodes += [t["name"] for t in op["outputs"]]
    debug = _debugger(saved_model_dir, calibration, calibration, denylisted_nodes=nodes)
    return bytes(debug.get_nondebug_quantized_model())
