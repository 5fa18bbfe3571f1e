"""What the jobs return: :class:`ModelInfo` per Keras model, and one result per job."""

from __future__ import annotations

import dataclasses

from keras_distill import report as report_lib
from keras_distill.report import Row


@dataclasses.dataclass
class ModelInfo:
    """A trained Keras model and its measurements (test split unless named ``val_``).

    ``epochs_run`` is how many epochs this process trained (fewer than ``epochs`` when a fit
    was resumed, 0 for a model reused from an interrupted run); ``resumed`` says which.

    ``val_scores`` and ``test_scores`` hold the scores of the ``task``
    (``keras_distill.verify.scores.KEYS``; those against the teacher's outputs end in
    ``_with_teacher``): multiclass ``accuracy``, ``agreement_with_teacher``; binary also
    ``auc``; multi-label ``micro_f1``; regression ``mae``, ``rmse`` and
    ``mean_abs_error_with_teacher`` / ``rms_error_with_teacher`` instead of accuracy and
    agreement. ``val_accuracy``, ``test_accuracy``, ``val_agreement`` and ``agreement`` repeat
    the classification ones (None for regression).
    """

    name: str
    model: object = dataclasses.field(repr=False)
    path: str | None = None
    params: int = 0
    size_bytes: int | None = None
    val_accuracy: float | None = None
    val_agreement: float | None = None
    test_accuracy: float | None = None
    agreement: float | None = None
    latency_ms: float | None = None
    epochs: int = 0
    train_seconds: float = 0.0
    epochs_run: int | None = None
    resumed: str | None = None
    sparsity: dict | None = None
    quantization: str = "float32"
    task: str = "multiclass"
    val_scores: dict | None = None
    test_scores: dict | None = None
    curves: dict | None = None  # {"first_epoch": n, "val_<metric>": [per epoch], ...}

    def val_score(self, key):
        """A validation score by its key (``"accuracy"``: ``val_accuracy``)."""
        if key == "accuracy" and self.val_accuracy is not None:
            return self.val_accuracy
        if key == "agreement_with_teacher" and self.val_agreement is not None:
            return self.val_agreement
        return (self.val_scores or {}).get(key)

    def test_score(self, key):
        """A test score by its key (``"accuracy"``: ``test_accuracy``)."""
        if key == "accuracy" and self.test_accuracy is not None:
            return self.test_accuracy
        if key == "agreement_with_teacher" and self.agreement is not None:
            return self.agreement
        return (self.test_scores or {}).get(key)

    def to_dict(self):
        # not dataclasses.asdict: it would deep-copy (pickle) the Keras model
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        d["agreement_with_teacher"] = d.pop("agreement")
        d["val_agreement_with_teacher"] = d.pop("val_agreement")
        return d

    def row(self, note=""):
        scores = {key: self.test_score(key) for key in ("auc", "micro_f1", "mae", "rmse")
                  if self.test_score(key) is not None}
        if self.task == "regression":
            scores["reference_error"] = self.test_score("mean_abs_error_with_teacher")
        return Row(self.name, "keras", self.quantization, self.params, self.size_bytes,
                   self.test_accuracy, self.agreement, self.latency_ms, note=note,
                   scores=scores)


class _Tabled:
    """``table()`` and ``caption()`` of a job's rows, for its task: the agreement column is
    with ``_reference`` (``report.caption``'s ``reference`` and ``name``)."""

    _agreement_label = "agree teacher"
    _reference = ()  # (("reference", ...), ("name", ...)) for report.caption

    def _label(self):
        return self._agreement_label

    def table(self):
        return report_lib.format_table(self.rows, agreement_label=self._label(),
                                       task=self.task)

    def caption(self):
        """What the table's metric columns are (:func:`keras_distill.report.caption`)."""
        return report_lib.caption(self.task, target_scale=self.target_scale,
                                  **dict(self._reference))


@dataclasses.dataclass
class RunResult(_Tabled):
    """What ``run`` did. ``ok`` is False when an artifact failed.

    ``members`` are the teachers of an ensemble (``teacher`` is then the ensemble); ``qat`` the
    quantization-aware student, when ``qat`` is on. One export produces every artifact:
    ``qat_export_report`` is that same ``export_report`` when it holds QAT artifacts (kept for
    code written when they were two).
    """

    out_dir: str
    selected: str
    reason: str
    rows: list
    manifest: dict
    teacher: ModelInfo
    baseline: ModelInfo
    distilled: ModelInfo
    export_report: object = None
    errors: list = dataclasses.field(default_factory=list)
    members: list = dataclasses.field(default_factory=list)
    qat: ModelInfo | None = None
    qat_export_report: object = None
    task: str = "multiclass"
    target_scale: tuple | None = None

    @property
    def ok(self):
        return not self.errors


@dataclasses.dataclass
class DistillResult(_Tabled):
    path: str
    teacher: ModelInfo
    student: ModelInfo
    rows: list
    task: str = "multiclass"
    target_scale: tuple | None = None


@dataclasses.dataclass
class ExportResult(_Tabled):
    out_dir: str
    rows: list
    export_report: object
    errors: list = dataclasses.field(default_factory=list)
    task: str = "multiclass"
    target_scale: tuple | None = None

    _agreement_label = "agree keras"
    _reference = (("reference", "the exported Keras model"), ("name", "keras"))

    @property
    def ok(self):
        return not self.errors


@dataclasses.dataclass
class EvaluateResult(_Tabled):
    rows: list
    results: list
    reference: str | None
    task: str = "multiclass"
    target_scale: tuple | None = None

    _reference = (("reference", "the reference model"), ("name", "reference"))

    @property
    def errors(self):
        return [r for r in self.results if "error" in r]

    def _label(self):
        return "agree reference" if self.reference else "agreement"
