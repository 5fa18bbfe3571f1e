"""Tables, the run's manifest and report, and the accuracy-versus-size plot.

One :class:`Row` per Keras model or exported artifact; the same rows make the console table
(:func:`format_table`), the Markdown table (:func:`markdown_table`) and the plot
(:func:`plot_accuracy_vs_size`). Files are written atomically (a temporary file, then a
rename), so a crash never leaves a half-written report.

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
    "Row",
    "format_table",
    "markdown",
    "markdown_table",
    "package_versions",
    "plot_accuracy_vs_size",
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
        accuracy: test accuracy.
        agreement: top-1 agreement with the reference (the teacher, in a run).
        latency_ms: median time of one single-sample call.
        status: ``"ok"`` or ``"failed"``.
        note: e.g. ``"exported"``, or the error.
        gzip_bytes: size of the file gzip-compressed (where pruning's zeros pay off); the
            tables show a ``gzip KiB`` column when a row has it.
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

    def to_dict(self):
        return dataclasses.asdict(self)


_HEADER = ["model / artifact", "runtime", "quantization", "params", "size KiB", "test acc",
           "agreement", "latency ms"]
_GZIP = "gzip KiB"


def _has_gzip(rows):
    return any(r.gzip_bytes is not None for r in rows)


def _header(rows, agreement_label):
    header = [*_HEADER[:6], agreement_label, _HEADER[7]]
    if _has_gzip(rows):
        header.insert(5, _GZIP)
    return header


def _kib(n, missing):
    return missing if n is None else f"{n / 1024:.1f}"


def _cells(row, missing, gzip=False):
    def fmt(value, spec):
        return missing if value is None else format(value, spec)

    cells = [row.name, row.runtime, row.quantization or missing, fmt(row.params, ","),
             _kib(row.size_bytes, missing),
             fmt(row.accuracy, ".4f"), fmt(row.agreement, ".4f"), fmt(row.latency_ms, ".3f")]
    if row.status != "ok":
        cells[5:] = ["failed", missing, missing]
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


def format_table(rows, *, agreement_label="agreement", notes=True):
    """A plain-text table, numbers right-aligned; ``note`` (if any) after the last column.

    Args:
        rows: :class:`Row` objects.
        agreement_label: header of the agreement column (e.g. ``"agree teacher"``).
        notes: append each row's ``note``.
    """
    header = _header(rows, agreement_label)
    gzip = _has_gzip(rows)
    return text_table(header, [_cells(r, "-", gzip) for r in rows],
                      right=set(range(3, len(header))),
                      suffixes=[r.note for r in rows] if notes else None)


def markdown_table(rows, *, agreement_label="agreement"):
    """The rows as a Markdown table, with a ``note`` column."""
    header = [*_header(rows, agreement_label), "note"]
    gzip = _has_gzip(rows)
    return markdown(header, [_cells(r, "—", gzip) + [r.note or ""] for r in rows],
                    right=set(range(3, len(header) - 1)))


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


def plot_accuracy_vs_size(rows, path, *, title="Test accuracy vs size"):
    """Save a scatter plot of test accuracy against size (log scale), one labelled point per
    row that has both. Keras models are squares, artifacts circles; uses the Agg backend.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.status == "ok" and r.accuracy is not None
              and r.size_bytes]
    markers = {"keras": "s", "tflite": "o", "onnx": "^", "micro": "D"}
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    try:
        for runtime, marker in markers.items():
            group = [r for r in points if r.runtime == runtime]
            if group:
                ax.scatter([r.size_bytes / 1024 for r in group], [100 * r.accuracy for r in group],
                           marker=marker, s=46, label=runtime, zorder=3)
        for r, offset in zip(points, _label_offsets(points)):
            ax.annotate(_short_label(r), (r.size_bytes / 1024, 100 * r.accuracy), fontsize=7,
                        xytext=offset, textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"}
                        if abs(offset[1]) > 12 else None)
        ax.set_xscale("log")
        ax.set_xlabel("size (KiB, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if points:
            ax.legend(loc="lower right", fontsize=8)
            xs = [r.size_bytes / 1024 for r in points]
            ax.set_xlim(min(xs) / 1.6, max(xs) * 3.0)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        atomic_write_bytes(path, buffer.getvalue())
    finally:
        plt.close(fig)
    return path


def _short_label(row):
    if row.runtime == "keras":
        return row.name
    return f"{row.runtime} {row.quantization}"


def _label_offsets(points):
    """Text offsets (points) that fan out the labels of points at the same accuracy."""
    offsets = [None] * len(points)
    clusters = {}
    for i, r in enumerate(points):
        clusters.setdefault(round(100 * r.accuracy, 1), []).append(i)
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
    lines = ["# keras-distill run", "",
             f"Data: {data['summary']}.", "",
             f"**Exported student: {sel['student']}.** {sel['reason']}", "",
             markdown_table(rows, agreement_label="agree teacher"), "",
             ("Test accuracy and top-1 agreement with the teacher on the test split; latency is "
              "the median of single-sample calls (Keras: `predict_on_batch`; artifacts: their "
              "runtime with one thread). Sizes: the `.keras` file, the `.tflite`/`.onnx` file, "
              "the flatbuffer inside the micro `.cc`.")]
    lines += _run_sections(manifest)
    failed = [a for a in manifest.get("artifacts", []) if a.get("status") != "ok"]
    if failed:
        lines += ["", "## Failures", ""]
        lines += [f"- **{a['format']}/{a['quantization']}**: {a.get('error')}" for a in failed]
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

