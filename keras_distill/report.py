"""Tables, the run's manifest and report, and the accuracy-versus-size plot.

One :class:`Row` per Keras model or exported artifact; the same rows make the console table
(:func:`format_table`), the Markdown table (:func:`markdown_table`) and the plot
(:func:`plot_accuracy_vs_size`). Their metric columns follow the task (:data:`METRIC_COLUMNS`):
accuracy and agreement for multiclass, AUC too for binary, micro-F1 for multi-label, MAE, RMSE
and the error against the reference for regression; :func:`caption` says what they are.
Files are written atomically (a temporary file, then a rename), so a crash never leaves a
half-written report.

Example:
    >>> rows = [Row("teacher", "keras", params=66218, size_bytes=300_000, accuracy=0.99,
    ...             agreement=1.0, latency_ms=0.9),
    ...         Row("student_int8.tflite", "tflite", "int8", params=3818, size_bytes=8_500,
    ...             accuracy=0.97, agreement=0.97, latency_ms=0.04)]
    >>> print(format_table(rows))  # doctest: +NORMALIZE_WHITESPACE
    model / artifact     runtime  quantization  params  size KiB  test acc  agreement  latency ms
    teacher              keras    float32       66,218     293.0    0.9900     1.0000       0.900
    student_int8.tflite  tflite   int8           3,818       8.3    0.9700     0.9700       0.040
"""

from __future__ import annotations

import dataclasses
import io
import json

from keras_distill.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "METRIC_COLUMNS",
    "Row",
    "caption",
    "format_table",
    "markdown",
    "markdown_table",
    "package_versions",
    "plot_accuracy_vs_size",
    "plot_curves",
    "run_markdown",
    "text_table",
    "write_json",
    "write_text",
]


@dataclasses.dataclass
class Row:
    """One model or artifact in a table.

    Attributes:
        name: what it is: a model name (``"teacher"``) or an artifact's file name.
        runtime: ``"keras"``, ``"tflite"``, ``"onnx"`` or ``"micro"``.
        quantization: ``"float32"`` (Keras models), ``"int8"``...
        params: parameter count of the model (of the exported model, for an artifact).
        size_bytes: size on disk (a ``.keras`` file; the flatbuffer or ONNX bytes).
        accuracy: test accuracy (classification; per label for multi-label).
        agreement: top-1 agreement with the reference (the teacher, in a run); for binary and
            multi-label, the same decision (per label).
        latency_ms: median time of one single-sample call.
        status: ``"ok"``, ``"failed"`` or ``"unverified"`` (written; its runtime is not
            installed here).
        note: e.g. ``"exported"``, or the error.
        gzip_bytes: size of the file gzip-compressed (where pruning's zeros pay off); the
            tables show a ``gzip KiB`` column when a row has it.
        scores: the task's other test scores, by key: ``auc`` (binary), ``micro_f1``
            (multi-label), ``mae``, ``rmse`` and ``reference_error`` (regression: the mean
            absolute difference from the reference's outputs).
    """

    name: str
    runtime: str
    quantization: str | None = "float32"
    params: int | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    agreement: float | None = None
    latency_ms: float | None = None
    status: str = "ok"
    note: str = ""
    gzip_bytes: int | None = None
    scores: dict = dataclasses.field(default_factory=dict)

    def value(self, key):
        """A metric of the row: ``accuracy`` and ``agreement`` are fields, the others are in
        :attr:`scores`."""
        if key in ("accuracy", "agreement"):
            return getattr(self, key)
        return self.scores.get(key)

    def to_dict(self):
        return dataclasses.asdict(self)


#: Placeholders of the metric headers that name the reference (``agreement_label``).
AGREEMENT, ERROR = "{agreement}", "{error}"
#: The metric columns of the tables per task: ``(header, key of Row.value)``.
METRIC_COLUMNS = {
    "multiclass": [("test acc", "accuracy"), (AGREEMENT, "agreement")],
    "binary": [("test acc", "accuracy"), ("test AUC", "auc"), (AGREEMENT, "agreement")],
    "multilabel": [("test acc/label", "accuracy"), ("test micro-F1", "micro_f1"),
                   (AGREEMENT, "agreement")],
    "regression": [("test MAE", "mae"), ("test RMSE", "rmse"), (ERROR, "reference_error")],
}
_HEADER = ["model / artifact", "runtime", "quantization", "params", "size KiB"]
_LATENCY = "latency ms"
_GZIP = "gzip KiB"


def _has_gzip(rows):
    return any(r.gzip_bytes is not None for r in rows)


def _error_label(agreement_label):
    """``"agree teacher"`` -> ``"MAE vs teacher"``: the regression column of the reference."""
    reference = agreement_label[len("agree "):] if agreement_label.startswith("agree ") \
        else "reference"
    return f"MAE vs {reference}"


def _metric_columns(task, agreement_label):
    labels = {AGREEMENT: agreement_label, ERROR: _error_label(agreement_label)}
    return [(labels.get(header, header), key) for header, key in METRIC_COLUMNS[task]]


def _header(rows, agreement_label, task="multiclass"):
    header = [*_HEADER, *(h for h, _ in _metric_columns(task, agreement_label)), _LATENCY]
    if _has_gzip(rows):
        header.insert(5, _GZIP)
    return header


def _kib(n, missing):
    return missing if n is None else f"{n / 1024:.1f}"


def _metric(value, key, missing):
    if value is None:
        return missing
    if key == "reference_error" and 0 < abs(value) < 1e-3:  # a float32 artifact vs Keras
        return f"{value:.1e}"
    return f"{value:.4f}"


def _cells(row, missing, gzip=False, task="multiclass"):
    def fmt(value, spec):
        return missing if value is None else format(value, spec)

    keys = [key for _, key in METRIC_COLUMNS[task]]
    cells = [row.name, row.runtime, row.quantization or missing, fmt(row.params, ","),
             _kib(row.size_bytes, missing),
             *(_metric(row.value(k), k, missing) for k in keys), fmt(row.latency_ms, ".3f")]
    if row.status != "ok":
        cells[5:] = [row.status] + [missing] * len(keys)
    if gzip:
        cells.insert(5, _kib(row.gzip_bytes, missing))
    return cells


def text_table(header, lines, *, right=(), suffixes=None):
    """Columns padded to their widest cell: the one plain-text table renderer.

    Args:
        header: column titles.
        lines: rows of cells (strings).
        right: indices of right-aligned (number) columns.
        suffixes: one string per row appended after its last column (e.g. a note).

    Example:
        >>> print(text_table(["file", "KiB"], [["a.tflite", "8.3"], ["bb.onnx", "12.0"]],
        ...                  right={1}))
        file       KiB
        a.tflite   8.3
        bb.onnx   12.0
    """
    table = [list(header)] + [list(line) for line in lines]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    out = []
    for i, line in enumerate(table):
        text = "  ".join(str(c).rjust(w) if j in right else str(c).ljust(w)
                         for j, (c, w) in enumerate(zip(line, widths)))
        if suffixes is not None and i > 0 and suffixes[i - 1]:
            text += "  " + suffixes[i - 1]
        out.append(text.rstrip())
    return "\n".join(out)


def markdown(header, lines, *, right=()):
    """A Markdown table (``|`` in cells escaped): the one Markdown table renderer.

    Example:
        >>> print(markdown(["file", "KiB"], [["a.tflite", "8.3"]], right={1}))
        | file | KiB |
        |---|---:|
        | a.tflite | 8.3 |
    """
    def cell(c):
        return str(c).replace("|", "\\|")

    rule = "|" + "".join("---:|" if j in right else "---|" for j in range(len(header)))
    return "\n".join(["| " + " | ".join(header) + " |", rule]
                     + ["| " + " | ".join(cell(c) for c in line) + " |" for line in lines])


def format_table(rows, *, agreement_label="agreement", notes=True, task="multiclass"):
    """A plain-text table, numbers right-aligned; ``note`` (if any) after the last column.

    Args:
        rows: :class:`Row` objects.
        agreement_label: header of the agreement column (e.g. ``"agree teacher"``); for
            regression the error column is named after the same reference (``"MAE vs
            teacher"``).
        notes: append each row's ``note``.
        task: the rows' task: its metric columns (:data:`METRIC_COLUMNS`).

    Example:
        >>> rows = [Row("student", "keras", params=1, size_bytes=2048, latency_ms=0.5,
        ...             scores={"mae": 0.41, "rmse": 0.52, "reference_error": 0.13})]
        >>> print(format_table(rows, agreement_label="agree teacher", task="regression"))
        model / artifact  runtime  quantization  params  size KiB  test MAE  test RMSE  MAE vs teacher  latency ms
        student           keras    float32            1       2.0    0.4100     0.5200          0.1300       0.500
    """
    header = _header(rows, agreement_label, task)
    gzip = _has_gzip(rows)
    return text_table(header, [_cells(r, "-", gzip, task) for r in rows],
                      right=set(range(3, len(header))),
                      suffixes=[r.note for r in rows] if notes else None)


def markdown_table(rows, *, agreement_label="agreement", task="multiclass"):
    """The rows as a Markdown table, with a ``note`` column (columns as :func:`format_table`)."""
    header = [*_header(rows, agreement_label, task), "note"]
    gzip = _has_gzip(rows)
    return markdown(header, [_cells(r, "—", gzip, task) + [r.note or ""] for r in rows],
                    right=set(range(3, len(header) - 1)))


def caption(task, *, reference="the teacher", name=None, target_scale=None):
    """What the metric columns of a table of ``task`` are, in one or two sentences.

    Args:
        task: the rows' task.
        reference: what the agreement (regression: error) column compares with.
        name: the reference's name in the headers (default the last word of ``reference``).
        target_scale: regression: the ``(mean, std)`` the targets were standardized with
            (``Splits.target_scale``), to say what one unit is.

    Example:
        >>> print(caption("regression", target_scale=(152.1, 77.0)))  # doctest: +NORMALIZE_WHITESPACE
        Test MAE and RMSE against the test targets, and MAE vs teacher: the mean absolute
        difference from the teacher's outputs; all in z-scores of the target (standardized
        with the training split's mean 152.1 and std 77.0: 1.0 is 77.0 in the target's units).
    """
    name = reference.split()[-1] if name is None else name
    if task == "regression":
        unit = ("all in z-scores of the target (standardized with the training split's mean "
                f"{target_scale[0]:.1f} and std {target_scale[1]:.1f}: 1.0 is "
                f"{target_scale[1]:.1f} in the target's units)" if target_scale else
                "in the target's units")
        return (f"Test MAE and RMSE against the test targets, and MAE vs {name}: the mean "
                f"absolute difference from {reference}'s outputs; {unit}.")
    if task == "binary":
        return ("Test accuracy: the logit's sign (probability 0.5) against the labels; test "
                f"AUC: the ROC AUC of the logit; agree {name}: the same predicted class as "
                f"{reference}.")
    if task == "multilabel":
        return ("Test accuracy per label (every sample and label once) and micro-F1 over all "
                f"labels; agree {name}: the same decision per label as {reference}.")
    return f"Test accuracy and top-1 agreement with {reference} on the test split."


def package_versions(packages):
    """``{package: version or None}`` of installed distributions: the one version collector.

    Example:
        >>> package_versions(["numpy"])["numpy"] is not None
        True
    """
    import importlib.metadata as md

    versions = {}
    for package in packages:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


#: The plot's y axis per task: ``(key of Row.value, scale, axis label, higher is better)``.
PLOT_METRIC = {
    "multiclass": ("accuracy", 100, "test accuracy (%)", True),
    "binary": ("accuracy", 100, "test accuracy (%)", True),
    "multilabel": ("micro_f1", 1, "test micro-F1", True),
    "regression": ("mae", 1, "test MAE (lower is better; axis inverted)", False),
}


def plot_accuracy_vs_size(rows, path, *, title="Test accuracy vs size", task="multiclass"):
    """Save a scatter plot of the task's test metric (:data:`PLOT_METRIC`: accuracy, or
    micro-F1, or MAE) against size (log scale), one labelled point per row that has both.
    Keras models are squares, artifacts circles; better is up (a lower-is-better metric's
    axis is inverted). Uses the Agg backend.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    key, scale, label, higher = PLOT_METRIC[task]
    points = [r for r in rows if r.status == "ok" and r.value(key) is not None
              and r.size_bytes]
    values = [scale * r.value(key) for r in points]
    markers = {"keras": "s", "tflite": "o", "onnx": "^", "micro": "D"}
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    try:
        for runtime, marker in markers.items():
            group = [(r, v) for r, v in zip(points, values) if r.runtime == runtime]
            if group:
                ax.scatter([r.size_bytes / 1024 for r, _ in group], [v for _, v in group],
                           marker=marker, s=46, label=runtime, zorder=3)
        span = max(values) - min(values) if values else 0.0
        offsets = _label_offsets(points, values if higher else [-v for v in values],
                                 0.1 if scale == 100 else max(span / 60, 1e-9))
        for r, v, offset in zip(points, values, offsets):
            ax.annotate(_short_label(r), (r.size_bytes / 1024, v), fontsize=7,
                        xytext=offset, textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"}
                        if abs(offset[1]) > 12 else None)
        ax.set_xscale("log")
        if not higher:
            ax.invert_yaxis()
        ax.set_xlabel("size (KiB, log scale)")
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if points:
            ax.legend(loc="lower right", fontsize=8)
            xs = [r.size_bytes / 1024 for r in points]
            ax.set_xlim(min(xs) / 1.6, max(xs) * 3.0)
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return path


def _save_png(fig, path):
    """Lay out ``fig`` and write it to ``path`` as a PNG, atomically."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def plot_curves(curves, path, *, metric="accuracy", reference=None, title=None):
    """Save the validation ``metric`` of each epoch of each model (``curves``: ``{name:
    ModelInfo.curves}``), with the teacher's validation level (``reference``) as a line.

    Returns:
        ``path``, or ``None`` when no model has the metric (nothing is written).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    key = f"val_{metric}"
    series = {name: c for name, c in curves.items() if c and c.get(key)}
    if not series:
        return None
    percent = 100 if metric in ("accuracy", "micro_f1", "auc") else 1
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        for name, c in series.items():
            epochs = range(c.get("first_epoch", 1), c.get("first_epoch", 1) + len(c[key]))
            ax.plot(list(epochs), [percent * v for v in c[key]], marker=".", label=name)
        if reference is not None:
            ax.axhline(percent * reference, color="0.3", linestyle="--", label="teacher")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {metric}" + (" (%)" if percent == 100 else ""))
        ax.set_title(title or f"validation {metric} per epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return path


def plot_search_front(candidates, target, path, *, chosen=None):
    """The front of a student search (``keras_distill.search``): validation accuracy against
    the RAM and the flash each candidate needs on the device (arena + interpreter RAM, model +
    TFLite Micro's code: ``targets.fit``), with the device's limits; the front joined, the
    final accuracies as squares, the chosen one starred, and the candidates that did not fit
    (never trained) as crosses on the bottom axis.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    def needed(c, key):
        fit = c.fit or {}
        value = fit.get("ram_needed" if key == "ram" else "flash_needed")
        if value is None:
            value = c.arena if key == "ram" else c.int8_bytes
        return None if value is None else value / 1024

    scored = [c for c in candidates if c.proxy_accuracy is not None]
    refused = [c for c in candidates if c.status == "too_big" and needed(c, "ram") is not None]
    bottom = min([c.proxy_accuracy for c in scored] or [0.0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    try:
        for ax, key, limit, label in ((axes[0], "ram", target.ram,
                                       "RAM needed: arena + interpreter (KiB)"),
                                      (axes[1], "flash", target.flash,
                                       "flash needed: model + TFLite Micro code (KiB)")):
            ax.scatter([needed(c, key) for c in scored], [c.proxy_accuracy for c in scored],
                       c="lightgray", label="candidates (proxy)")
            if refused:
                ax.scatter([needed(c, key) for c in refused], [bottom] * len(refused),
                           marker="x", color="tab:red", alpha=0.6,
                           label="did not fit (not trained)")
            front = sorted([c for c in scored if c.on_front], key=lambda c: needed(c, key))
            ax.plot([needed(c, key) for c in front], [c.proxy_accuracy for c in front], "o-",
                    color="tab:blue", label="front (proxy)")
            finals = [c for c in front if c.final_accuracy is not None]
            ax.scatter([needed(c, key) for c in finals], [c.final_accuracy for c in finals],
                       marker="s", color="tab:green", label="front (final)")
            for c in finals:
                if c.name == chosen:
                    ax.scatter([needed(c, key)], [c.final_accuracy], marker="*", s=250,
                               color="tab:red", label=f"chosen: {c.name}", zorder=5)
            if limit is not None:
                ax.axvline(limit / 1024, color="tab:red", linestyle="--",
                           label=f"{target.name} limit")
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("validation accuracy")
        axes[1].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"Student search for {target.name}")
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return path


def _short_label(row):
    if row.runtime == "keras":
        return row.name
    return f"{row.runtime} {row.quantization}"


def _label_offsets(points, values=None, resolution=0.1):
    """Text offsets (points) that fan out the labels of points at the same value, to
    ``resolution`` (``values`` as plotted; default the accuracy in %)."""
    if values is None:
        values = [100 * r.accuracy for r in points]
    offsets = [None] * len(points)
    clusters = {}
    for i, v in enumerate(values):
        clusters.setdefault(round(v / resolution), []).append(i)
    for members in clusters.values():
        members.sort(key=lambda i: points[i].size_bytes)
        for rank, i in enumerate(members):
            step = rank // 2 + 1
            dy = 11 * step - 5 if rank % 2 == 0 else -(11 * step + 3)
            offsets[i] = (6, dy if len(members) > 1 else 4)
    return offsets


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (``keras_distill.io.atomic_write_text``)."""
    return atomic_write_text(path, text)


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def run_markdown(manifest, rows):
    """``report.md`` of a ``keras-distill run``, from its manifest and table rows."""
    data = manifest["data"]
    sel = manifest["selected"]
    task = (manifest.get("task") or {}).get("kind", "multiclass")
    scale = data.get("target_scale")
    lines = ["# keras-distill run", "",
             f"Data: {data['summary']}.", "",
             f"**Exported student: {sel['student']}.** {sel['reason']}", "",
             markdown_table(rows, agreement_label="agree teacher", task=task), "",
             (caption(task, target_scale=scale)[:-1] + "; latency is "
              "the median of single-sample calls (Keras: `predict_on_batch`; artifacts: their "
              "runtime with one thread). Sizes: the `.keras` file, the `.tflite`/`.onnx` file, "
              "the flatbuffer inside the micro `.cc`.")]
    lines += _run_sections(manifest)
    artifacts = manifest.get("artifacts", [])
    failed = [a for a in artifacts if a.get("status") == "failed"]
    if failed:
        lines += ["", "## Failures", ""]
        lines += [f"- **{a['format']}/{a['quantization']}**: {a.get('error')}" for a in failed]
    unverified = [a for a in artifacts if a.get("status") == "unverified"]
    if unverified:
        lines += ["", "## Not verified", ""]
        lines += [f"- **{a['format']}/{a['quantization']}** (`{a['file']}`): "
                  f"{(a.get('export_metrics') or {}).get('reason')}" for a in unverified]
    notes = manifest.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    timings = manifest.get("seconds", {})
    if timings:
        lines += ["", "## Time", "",
                  ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + "."]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in manifest.get("files", [])]
    lines += ["", ("Reproduce: `keras-distill run --config config.toml` (the resolved "
                   "configuration, written next to this report).")]
    return "\n".join(lines) + "\n"


def _run_sections(manifest):
    """Sections of ``report.md`` for the optional stages: ensemble, shrunk student, pruning,
    QAT, resume."""
    lines = []
    teacher = manifest.get("teacher") or {}
    if teacher.get("ensemble"):
        weights = ", ".join(f"{w:.3g}" for w in teacher.get("weights") or [])
        lines += ["", "## Teacher", "",
                  (f"An ensemble of {', '.join(teacher['ensemble'])}: the weighted average of "
                  f"their {teacher.get('average')} (weights {weights}), saved as one model.")]
    shrink = (manifest.get("student") or {}).get("from_teacher")
    if shrink:
        lines += ["", "## Student", "",
                  f"The teacher shrunk to width {shrink['width']:g}"
                  + (f", depth {shrink['depth']}" if "depth" in shrink else "")
                  + f" ({shrink['params']:,} parameters); initial weights: "
                  + ("random (transfer = 'none')." if shrink["transfer"] == "none" else
                     f"transferred from the teacher ({shrink['transfer']}): "
                     f"{len(shrink['copied'])} layers copied, {len(shrink['sliced'])} sliced, "
                     f"{len(shrink['skipped'])} skipped.")
                  + " Baseline and distilled student start from these same weights."]
    pruning = manifest.get("pruning")
    if pruning:
        models = [(name, sp) for name, sp in pruning["sparsity"].items() if sp]
        layer_names = list(dict.fromkeys(n for _, sp in models for n in sp["layers"]))
        lines += ["", "## Pruning", "",
                  (f"Target sparsity {pruning['target_sparsity']:.0%} ({pruning['schedule']}). "
                  "Fraction of zero weights per Dense / Conv kernel:"), "",
                  "| layer | " + " | ".join(name for name, _ in models) + " |",
                  "|---|" + "---:|" * len(models)]
        for layer in [*layer_names, "all"]:
            cells = [(sp["overall"] if layer == "all" else sp["layers"].get(layer))
                     for _, sp in models]
            lines.append(f"| {layer} | " + " | ".join(
                "—" if c is None else f"{c:.1%}" for c in cells) + " |")
        lines += ["", "The zeros pay off compressed: see the `gzip KiB` column."]
    qat = manifest.get("qat")
    if qat:
        lines += ["", "## Quantization-aware training", "",
                  (f"`{qat['model']}`: {qat['from']} fine-tuned {qat['epochs']} epoch(s) with "
                  f"fake int8 quantization at learning rate {qat['learning_rate']:g}, distilled "
                  "from the teacher. Rows `int8 QAT` are its artifacts, next to the "
                  "post-training int8 ones (`int8`).")]
    if manifest.get("resumed"):
        lines += ["", "## Resumed", "",
                  "This run continued an interrupted one (`--resume`): "
                  + ", ".join(f"{name} {info['resumed']}" if info.get("resumed") else
                              f"{name} trained {info.get('epochs_run')} of {info.get('epochs')} "
                              "epochs here"
                              for name, info in manifest.get("models", {}).items()
                              if info.get("epochs")) + "."]
    return lines

