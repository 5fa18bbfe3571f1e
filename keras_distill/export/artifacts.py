"""What :func:`keras_distill.export.export` produced: one :class:`Artifact` per file, the
:class:`ExportReport` around them, and :class:`VerificationError`."""

from __future__ import annotations

import dataclasses
import os


class VerificationError(RuntimeError):
    """A float32 artifact does not reproduce the Keras model (max abs error > 1e-4).

    Attributes:
        report: the :class:`ExportReport`, already written to ``out_dir`` with the failure.
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class Artifact:
    """One exported artifact, or one that failed.

    Attributes:
        format: ``"tflite"``, ``"onnx"`` or ``"micro"``.
        quantization: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"`` or ``"int16x8"``.
        path: file name inside ``out_dir`` (the ``.cc`` for micro); ``None`` if it failed.
        files: every file of the artifact (micro: the ``.cc`` and the ``.h``).
        status: ``"ok"`` (written and verified in its runtime), ``"unverified"`` (written,
            and checked on disk, but not run: its runtime is not installed here; only a micro
            artifact without tflite-micro, whose arena is then estimated) or ``"failed"``.
        size_bytes: size of the model (the flatbuffer for micro, whose ``.cc`` is text).
        sha256: SHA-256 of the model bytes.
        metrics: results in its runtime, measured once on the file written to disk:
            ``runtime``, ``n_samples``, the scores of the output's kind
            (``keras_distill.verify.scores.KEYS``; multiclass: ``accuracy``, ``agreement``
            (with Keras), ``max_abs_error``, ``mean_abs_error``), ``agreement_with_reference``
            (with ``reference_outputs``, e.g. the teacher's; for regression also
            ``mean_abs_error_with_reference``), ``latency_ms_median``. For a model of several
            outputs: ``runtime``, ``n_samples``, ``max_abs_error`` and ``mean_abs_error``
            (over every output), ``outputs`` (``{output name: that output's scores and
            reference keys}``), ``latency_ms_median``. An ``"unverified"`` artifact has only
            ``verified`` (False), ``reason`` (why it was not run) and ``unchecked`` (what is
            therefore not known).
        details: input/output dtype, shape, scale and zero point (several outputs:
            ``output_names``, and ``output_scales`` / ``output_zero_points`` by name for
            integer models); ``ops`` (TFLite and micro),
            ``signatures`` (TFLite), ``gzip_size_bytes``; ``arena``, ``micro_op_resolver``
            and ``identifiers`` for micro (``arena["estimated"]`` True, with ``host`` and
            ``reason``, for an arena estimated from the model's tensors, not measured).
        error: why it failed.
        seconds: time spent converting and verifying it.
        qat: True for an artifact of the quantization-aware twin (``export(qat_model=...)``).
    """

    format: str
    quantization: str
    path: str | None = None
    files: list = dataclasses.field(default_factory=list)
    status: str = "ok"
    size_bytes: int | None = None
    sha256: str | None = None
    metrics: dict = dataclasses.field(default_factory=dict)
    details: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    qat: bool = False

    @property
    def ok(self):
        """Written and verified in its runtime."""
        return self.status == "ok"

    @property
    def written(self):
        """Its files are in ``out_dir`` (verified or not)."""
        return self.status in ("ok", "unverified")

    @property
    def key(self):
        return f"{self.format}/{self.quantization}"

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ExportReport:
    """What :func:`export` wrote and how each artifact performed in its runtime.

    Written to ``out_dir`` as ``manifest.json`` (:meth:`to_dict`) and ``report.md``
    (:meth:`to_markdown`).

    Attributes:
        name: base name of the files.
        out_dir: the output folder (absolute).
        artifacts: list of :class:`Artifact`, in the order they were produced.
        keras: the Keras model: ``params``, ``input_shape``, ``output_shape`` (by output name
            for several), ``task`` (the kind of its output, or ``{output name: kind}``) and,
            when eval data with labels was given, its label scores (multiclass
            ``accuracy``; binary ``accuracy``, ``auc``; multi-label ``accuracy``,
            ``micro_f1``; regression ``mae``, ``rmse``; for several outputs
            ``outputs[name]``).
        evaluated_on: what the metrics were computed on (``"eval_data"``,
            ``"representative_data"`` or ``"random inputs"``) and how many samples.
        settings: the arguments that shaped the export.
        labels_file: ``"labels.txt"`` when labels were written (``{output: file}`` for
            several outputs).
        notes: remarks (e.g. the arena is an upper bound for 32-bit MCUs).
        created: ISO timestamp.
        versions: versions of the converters and runtimes.

    Example:
        >>> report = export(student, "exported", representative_data=x_train,
        ...                 eval_data=(x_test, y_test))  # doctest: +SKIP
        >>> report.get("tflite", "int8").metrics["accuracy"]  # doctest: +SKIP
        0.972
    """

    name: str
    out_dir: str
    artifacts: list = dataclasses.field(default_factory=list)
    keras: dict = dataclasses.field(default_factory=dict)
    evaluated_on: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)
    labels_file: str | dict | None = None
    notes: list = dataclasses.field(default_factory=list)
    created: str = ""
    versions: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self):
        """True when every artifact was written and verified."""
        return all(a.ok for a in self.artifacts)

    @property
    def failed(self):
        """The artifacts that failed."""
        return [a for a in self.artifacts if a.status == "failed"]

    @property
    def unverified(self):
        """The artifacts written but not run (their runtime is not installed here)."""
        return [a for a in self.artifacts if a.status == "unverified"]

    def get(self, format, quantization=None):
        """The artifact of ``format`` (and ``quantization``), or ``None``."""
        for a in self.artifacts:
            if a.format == format and (quantization is None or a.quantization == quantization):
                return a
        return None

    def path(self, format, quantization=None):
        """Absolute path of an artifact's main file (verified or not), or ``None`` if absent
        or failed."""
        a = self.get(format, quantization)
        return os.path.join(self.out_dir, a.path) if a is not None and a.written else None

    def size_ratio(self, artifact):
        """``artifact.size_bytes`` over the float32 TFLite size, or ``None``."""
        base = self.get("tflite", "float32")
        if base is None or not base.ok or not artifact.size_bytes:
            return None
        return artifact.size_bytes / base.size_bytes

    def to_dict(self):
        """A JSON-serializable dict (the content of ``manifest.json``)."""
        d = dataclasses.asdict(self)
        for record, artifact in zip(d["artifacts"], self.artifacts):
            ratio = self.size_ratio(artifact)
            record["size_ratio_vs_tflite_float32"] = None if ratio is None else round(ratio, 4)
        return d

    @property
    def task(self):
        """The kind of the model's output, or ``{output name: kind}`` (``"multiclass"`` for a
        report written before output kinds)."""
        return self.keras.get("task") or "multiclass"

    def to_markdown(self):
        """A Markdown report: one table row per artifact, with the columns of the output's
        kind (multiclass: accuracy, agreement, max abs error), then failures, the artifacts
        not verified (and why), and notes."""
        from keras_distill.report import markdown
        from keras_distill.verify.scores import columns

        lines = [f"# Export report: {self.name}", ""]
        k = self.keras
        lines.append(f"Keras model: {k.get('params', '?')} parameters, input "
                     f"{k.get('input_shape')}, output {k.get('output_shape')}"
                     + self._keras_scores() + ".")
        ev = self.evaluated_on
        if ev:
            lines.append(f"Metrics on {ev.get('source')} ({ev.get('n_samples')} samples), one "
                         "sample per call, one thread.")
        cols = columns(self.task)
        header = ["artifact", "format", "quantization", "size KiB", "× float32",
                  *(h for h, _, _ in cols), "latency ms", "arena B", "status"]
        lines += ["", markdown(header, [self._markdown_cells(a, cols) for a in self.artifacts],
                               right=set(range(3, len(header) - 1)))]
        if self.failed:
            lines += ["", "## Failures", ""]
            lines += [f"- **{a.key}**: {a.error}" for a in self.failed]
        if self.unverified:
            lines += ["", "## Not verified", ""]
            lines += [f"- **{a.key}** (`{a.path}`): {_why_unverified(a)}"
                      for a in self.unverified]
        lines += _budget_section(self.get("tflite", "int8"))
        if self.labels_file:
            files = (self.labels_file.values() if isinstance(self.labels_file, dict)
                     else [self.labels_file])
            lines += ["", "Labels: " + ", ".join(f"`{f}`" for f in files) + "."]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _keras_scores(self):
        """``, accuracy 0.9722`` (the Keras model's label scores), per output for several."""
        from keras_distill.verify.scores import LABEL_KEYS, LABEL_NAMES

        def phrase(kind, scores):
            return ", ".join(f"{LABEL_NAMES[key]} {scores[key]:.4f}" for key in LABEL_KEYS[kind]
                             if scores.get(key) is not None)

        task = self.task
        if isinstance(task, str):
            text = phrase(task, self.keras)
            return f", {text}" if text else ""
        per = self.keras.get("outputs") or {}
        parts = [f"{name}: {phrase(kind, per[name])}" for name, kind in task.items()
                 if phrase(kind, per.get(name, {}))]
        return ", " + "; ".join(parts) if parts else ""

    def _markdown_cells(self, a, cols):
        from keras_distill.verify.scores import column_value

        m, ratio = a.metrics, self.size_ratio(a)
        arena = a.details.get("arena", {}) if a.format == "micro" else {}
        arena = (f"{arena['arena_size']} (estimated)" if arena.get("estimated")
                 else arena.get("arena_size"))
        return [a.path or "—", a.format, a.quantization,
                f"{a.size_bytes / 1024:.1f}" if a.size_bytes else "—",
                f"{ratio:.2f}" if ratio is not None else "—",
                *(_fmt(column_value(m, where), spec) for _, where, spec in cols),
                _fmt(m.get("latency_ms_median"), ".3f"),
                str(arena) if arena else "—", a.status]


def _budget_section(int8):
    """``## int8 budget``: every model tried for ``max_accuracy_drop`` and the layers the
    diagnosis ranked worst (from the int8 artifact's ``details.budget``); none without it."""
    from keras_distill.report import markdown

    budget = None if int8 is None else int8.details.get("budget")
    if not budget:
        return []
    unit = "relative MAE increase" if budget["metric"] == "mae" else f"{budget['metric']} drop"
    lines = ["", "## int8 budget", "",
             f"Budget: {unit} at most {budget['max_drop']:g} against float "
             f"({budget['metric']} {budget['float']:.4f}), measured on {budget['measured_on']}; "
             f"chosen: **{budget['mode']}**"
             + (f" with {', '.join(budget['kept'])} in float" if budget["kept"] else "")
             + ("" if budget["within_budget"] else " (**no model tried meets the budget**)")
             + ".", ""]
    rows = [[v["mode"], ", ".join(v["kept"]) or "—",
             "failed" if v.get("error") else f"{v['score']:.4f}",
             "—" if v.get("error") else f"{v['drop']:+.4f}",
             "—" if v.get("error") else f"{v['size_bytes']:,}",
             "—" if v.get("error") else f"{v['latency_ms']:.3f}"] for v in budget["tried"]]
    lines.append(markdown(["model", "kept in float", budget["metric"], "drop", "bytes",
                           "LiteRT ms"], rows, right={2, 3, 4, 5}))
    if budget.get("diagnosis"):
        lines += ["", "Layers int8 hurts most (quantization debugger, worst first):", "",
                  markdown(["layer", "SNR dB", "RMSE in steps", "cosine"],
                           [[d["layer"], f"{d['snr_db']:.1f}", f"{d['steps_rmse']:.3f}",
                             f"{d['cosine']:.4f}"] for d in budget["diagnosis"]],
                           right={1, 2, 3})]
    return lines


def _why_unverified(a):
    text = (f"written, {a.metrics.get('unchecked') or 'not run'}: "
            f"{a.metrics.get('reason') or 'its runtime is not installed'}.")
    arena = a.details.get("arena") or {}
    if arena.get("estimated"):
        text += f" Its tensor arena, {arena['arena_size']} bytes, is {arena['host']}."
    return text


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)
