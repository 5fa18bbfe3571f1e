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
            "outputs", "ops", "signatures", "micro_op_resolver", "identifiers")


def artifact_rows(report, params, *, source=None, qat=None, gzip=False,
                  agreement="agreement_with_reference"):
    """One :class:`Row` and one manifest record per artifact of an export report.

    Args:
        report: the :class:`~keras_distill.export.ExportReport`.
        params: ``{False: parameters of the exported model, True: of its QAT twin}``.
        source, qat: the names of the exported model and of its QAT twin (``source_model``).
        gzip: fill the rows' gzip column (the table then has a ``gzip KiB`` column).
        agreement: the metric shown as the rows' agreement: ``"agreement_with_reference"``
            (with the teacher, in a run) or ``"agreement"`` (with the exported Keras model).

    Returns:
        ``(rows, records)``.
    """
    rows, records = [], []
    for a in report.artifacts:
        record = _record(a, qat if a.qat else source)
        records.append(record)
        mode = f"{a.quantization} QAT" if a.qat else a.quantization
        if not a.ok:
            label = f"{report.name}{'_qat' if a.qat else ''} {a.format}/{a.quantization}"
            rows.append(Row(label, a.format, mode, params[a.qat], None, status="failed",
                            note=(a.error or "")[:80]))
            continue
        m = a.metrics
        rows.append(Row(a.path, a.format, mode, params[a.qat], a.size_bytes, m["accuracy"],
                        m[agreement], m["latency_ms_median"],
                        gzip_bytes=record["gzip_size_bytes"] if gzip else None))
    return rows, records


def _record(a, source):
    record = {"file": a.path, "files": list(a.files), "format": a.format,
              "quantization": a.quantization, "status": a.status, "size_bytes": a.size_bytes,
              "sha256": a.sha256, "error": a.error, "export_metrics": dict(a.metrics),
              "source_model": source, "qat": a.qat}
    if not a.ok:
        return record
    m = a.metrics
    record.update(test_accuracy=m["accuracy"], agreement_with_teacher=m.get(
        "agreement_with_reference"), agreement_with_keras=m["agreement"],
        max_abs_error_vs_keras=m["max_abs_error"], latency_ms_median=m["latency_ms_median"],
        runtime=m["runtime"], input_dtype=a.details.get("input_dtype"), verified=True,
        gzip_size_bytes=a.details["gzip_size_bytes"])
    record.update({k: a.details[k] for k in _DETAILS if k in a.details})
    if a.format == "micro":
        record["arena_size"] = a.details["arena"]["arena_size"]
    return record


def export_errors(report):
    """One line per failed artifact (a float32 verification failure included)."""
    return [f"{'qat ' if a.qat else ''}{a.format}/{a.quantization}: {a.error}"
            for a in report.failed]


def data_info(data):
    return {"name": data.name, "summary": data.summary(), "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "n_train": len(data.x_train),
            "n_val": len(data.x_val), "n_test": len(data.x_test)}


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
    tool: str = "keras-distill run"
    created: str = dataclasses.field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))
    versions: dict = dataclasses.field(default_factory=versions)

    def to_dict(self):
        order = ("tool", "created", "command", "config_file", "config", "data", "models",
                 "teacher", "student", "selected", "pruning", "qat", "artifacts", "export",
                 "resumed", "notes", "errors", "seconds", "files", "versions")
        d = {k: getattr(self, k) for k in order}
        d["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        return d
