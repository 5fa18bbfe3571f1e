"""What a run records: a table row and a manifest record per artifact, and ``manifest.json``.

The artifacts were verified once, by the export, from their files on disk; this module only
reads their :class:`~keras_distill.export.Artifact` records.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys

from keras_distill.report import Row

#: Artifact details copied into the run's manifest records when present.
_DETAILS = ("input_scale", "input_zero_point", "output_scale", "output_zero_point", "inputs",
            "outputs", "ops", "signatures", "micro_op_resolver", "identifiers", "target",
            "lowered", "lowering_skipped", "macs", "budget", "micro", "latency_estimate")


#: Score keys of an artifact's metrics copied into the rows' ``scores``, per task.
_ROW_SCORES = {"multiclass": (), "binary": ("auc",), "multilabel": ("micro_f1",),
               "regression": ("mae", "rmse")}
#: The manifest record's names of the task's scores: ``{metrics key: record key}``.
_RECORD_SCORES = {"multiclass": {}, "binary": {"auc": "test_auc"},
                  "multilabel": {"micro_f1": "test_micro_f1"},
                  "regression": {"mae": "test_mae", "rmse": "test_rmse",
                                 "mean_abs_error": "mean_abs_error_vs_keras",
                                 "mean_abs_error_with_reference": "mean_abs_error_vs_teacher"}}


def metric_row(name, fmt, quantization, params, size_bytes, metrics, *, task="multiclass",
               agreement="agreement_with_reference", gzip_bytes=None, note=""):
    """The :class:`Row` of an artifact from its metrics (``keras_distill.verify``'s keys).

    Args:
        agreement: the reference of the agreement column: ``"agreement_with_reference"``
            (the teacher, in a run) or ``"agreement"`` (the exported Keras model, or the
            reference of ``evaluate``); for regression the error column is the matching mean
            absolute error (``mean_abs_error_with_reference`` or ``mean_abs_error``).
    """
    scores = {k: metrics.get(k) for k in _ROW_SCORES.get(task, ()) if metrics.get(k) is not None}
    if task == "regression":
        scores["reference_error"] = metrics.get(
            "mean_abs_error_with_reference" if agreement == "agreement_with_reference"
            else "mean_abs_error")
    return Row(name, fmt, quantization, params, size_bytes, metrics.get("accuracy"),
               metrics.get(agreement), metrics.get("latency_ms_median"), note=note,
               gzip_bytes=gzip_bytes, scores=scores)


def artifact_rows(report, params, *, source=None, qat=None, gzip=False,
                  agreement="agreement_with_reference", task="multiclass"):
    """One :class:`Row` and one manifest record per artifact of an export report.

    Args:
        report: the :class:`~keras_distill.export.ExportReport`.
        params: ``{False: parameters of the exported model, True: of its QAT twin}``.
        source, qat: the names of the exported model and of its QAT twin (``source_model``).
        gzip: fill the rows' gzip column (the table then has a ``gzip KiB`` column).
        agreement: the metric shown as the rows' agreement: ``"agreement_with_reference"``
            (with the teacher, in a run) or ``"agreement"`` (with the exported Keras model).
        task: the exported model's task: which scores the rows and records carry.

    Returns:
        ``(rows, records)``.
    """
    rows, records = [], []
    for a in report.artifacts:
        record = _record(a, qat if a.qat else source, task)
        records.append(record)
        mode = f"{a.quantization} QAT" if a.qat else a.quantization
        if a.status == "unverified":  # written, but its runtime is not installed here
            rows.append(Row(a.path, a.format, mode, params[a.qat], a.size_bytes,
                            status="unverified", note=(a.metrics.get("reason") or "")[:80]))
            continue
        if not a.ok:
            label = f"{report.name}{'_qat' if a.qat else ''} {a.format}/{a.quantization}"
            rows.append(Row(label, a.format, mode, params[a.qat], None, status="failed",
                            note=(a.error or "")[:80]))
            continue
        rows.append(metric_row(a.path, a.format, mode, params[a.qat], a.size_bytes, a.metrics,
                               task=task, agreement=agreement,
                               gzip_bytes=record["gzip_size_bytes"] if gzip else None))
    return rows, records


def _record(a, source, task="multiclass"):
    record = {"file": a.path, "files": list(a.files), "format": a.format,
              "quantization": a.quantization, "status": a.status, "size_bytes": a.size_bytes,
              "sha256": a.sha256, "error": a.error, "export_metrics": dict(a.metrics),
              "source_model": source, "qat": a.qat}
    if a.status == "unverified":
        arena = a.details.get("arena") or {}
        record.update(verified=False, arena_size=arena.get("arena_size"),
                      arena_estimated=bool(arena.get("estimated")))
        return record
    if not a.ok:
        return record
    m = a.metrics
    record.update(test_accuracy=m.get("accuracy"), agreement_with_teacher=m.get(
        "agreement_with_reference"), agreement_with_keras=m.get("agreement"),
        max_abs_error_vs_keras=m["max_abs_error"], latency_ms_median=m["latency_ms_median"],
        runtime=m["runtime"], input_dtype=a.details.get("input_dtype"), verified=True,
        gzip_size_bytes=a.details["gzip_size_bytes"])
    record.update({name: m.get(key) for key, name in _RECORD_SCORES.get(task, {}).items()})
    record.update({k: a.details[k] for k in _DETAILS if k in a.details})
    if a.format == "micro":
        record["arena_size"] = a.details["arena"]["arena_size"]
    return record


def export_errors(report):
    """One line per failed artifact (a float32 verification failure included)."""
    return [f"{'qat ' if a.qat else ''}{a.format}/{a.quantization}: {a.error}"
            for a in report.failed]


def data_info(data):
    scale = None if data.target_scale is None else [float(v) for v in data.target_scale]
    return {"name": data.name, "summary": data.summary(), "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "n_train": len(data.x_train),
            "n_val": len(data.x_val), "n_test": len(data.x_test), "task": data.task,
            "output_units": data.output_units, "target_scale": scale}


def task_info(cfg, data):
    """The manifest's ``task``: the kind the run used, where it came from, and the metrics
    that describe and choose its models."""
    from keras_distill.pipeline.tasks import CLOSENESS, CRITERIA, REGRESSION
    from keras_distill.report import METRIC_COLUMNS

    key, name, higher = CRITERIA[data.task]
    return {"kind": data.task, "declared": cfg["task"],
            "from": "data" if cfg["task"] == "auto" else "config",
            "output_units": data.output_units,
            "selection": {"metric": key, "name": name, "higher_is_better": higher},
            "closeness_to_teacher": CLOSENESS[data.task][0],
            "table_metrics": [k for _, k in METRIC_COLUMNS[data.task]],
            "units": ("z-scores of the target (data.target_scale: mean, std)"
                      if data.task == REGRESSION and data.target_scale else None)}


def versions():
    from keras_distill import __version__
    from keras_distill.report import package_versions

    return {"keras_distill": __version__, "python": sys.version.split()[0],
            **package_versions(["tensorflow", "keras", "numpy"])}


@dataclasses.dataclass
class RunManifest:
    """``manifest.json`` of ``keras-distill run``: what ran, on what, what came out.

    The sections hold plain data (``models`` and ``artifacts`` are dicts per model and per
    artifact); :meth:`to_dict` is the file's content.
    """

    command: object
    config_file: object
    config: dict
    data: dict
    models: dict
    teacher: dict
    student: dict
    selected: dict
    pruning: object
    qat: object
    artifacts: list
    export: object
    resumed: bool
    notes: list
    errors: list
    seconds: dict
    files: list
    task: dict | None = None
    tool: str = "keras-distill run"
    created: str = dataclasses.field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))
    versions: dict = dataclasses.field(default_factory=versions)

    def to_dict(self):
        order = ("tool", "created", "command", "config_file", "config", "data", "task",
                 "models", "teacher", "student", "selected", "pruning", "qat", "artifacts",
                 "export", "resumed", "notes", "errors", "seconds", "files", "versions")
        d = {k: getattr(self, k) for k in order}
        d["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        return d
