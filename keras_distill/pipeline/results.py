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

    def to_dict(self):
        # not dataclasses.asdict: it would deep-copy (pickle) the Keras model
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        d["agreement_with_teacher"] = d.pop("agreement")
        d["val_agreement_with_teacher"] = d.pop("val_agreement")
        return d

    def row(self, note=""):
        return Row(self.name, "keras", self.quantization, self.params, self.size_bytes,
                   self.test_accuracy, self.agreement, self.latency_ms, note=note)


@dataclasses.dataclass
class RunResult:
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

    @property
    def ok(self):
        return not self.errors

    def table(self):
        return report_lib.format_table(self.rows, agreement_label="agree teacher")


@dataclasses.dataclass
class DistillResult:
    path: str
    teacher: ModelInfo
    student: ModelInfo
    rows: list

    def table(self):
        return report_lib.format_table(self.rows, agreement_label="agree teacher")


@dataclasses.dataclass
class ExportResult:
    out_dir: str
    rows: list
    export_report: object
    errors: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.errors

    def table(self):
        return report_lib.format_table(self.rows, agreement_label="agree keras")


@dataclasses.dataclass
class EvaluateResult:
    rows: list
    results: list
    reference: str | None

    @property
    def errors(self):
        return [r for r in self.results if "error" in r]

    def table(self):
        label = "agree reference" if self.reference else "agreement"
        return report_lib.format_table(self.rows, agreement_label=label)
