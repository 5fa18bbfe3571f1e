"""Run an exported artifact in its real runtime and measure it against labels and Keras outputs.

``keras_distill.export`` verifies every artifact it writes once, here, from the bytes on disk
(:func:`verify_file`); ``keras-distill evaluate`` runs files a user brings
(:func:`evaluate_artifact`, :func:`evaluate_folder`). ``litert.py`` reads ``.tflite``
flatbuffers (ops, tensors, quantization); ``micro.py`` reads a micro ``.cc`` back and probes
and measures TFLM arenas in child processes. Nothing here imports ``keras_distill.export``:
the export depends on verification, not the other way round.

Runtimes: LiteRT (``ai_edge_litert``) for ``.tflite``, ONNX Runtime for ``.onnx``, and the
TensorFlow Lite Micro interpreter (``tflite_micro``) for a ``<name>_model_data.cc`` (the model
bytes are read back from the C array, the arena from the ``tensor_arena_size`` it records).

Every sample is run on its own (batch of 1), as on a device: integer inputs are quantized with
the model's recorded scale and zero point and integer outputs dequantized, so metrics compare
like with like. Interpreters use one thread.

Metrics (keys of the returned dict) follow the output's kind (``kind=``, default
``"multiclass"``; see :mod:`keras_distill.verify.scores`): for a multiclass output
``accuracy`` (when labels are given), ``agreement`` (top-1 agreement with the reference
outputs), ``max_abs_error`` and ``mean_abs_error`` (against the reference, after
dequantizing); ``auc`` for binary, ``micro_f1`` for multi-label, ``mae`` / ``rmse`` /
``rms_error`` for regression. Then ``latency_ms_median`` (median wall time of one
single-sample call: quantize, set input, invoke, read and dequantize outputs),
``size_bytes``. A model of several outputs is scored per output: ``result["outputs"][name]``
holds that output's scores, ``result["max_abs_error"]`` / ``["mean_abs_error"]`` are over all
of them (see :mod:`keras_distill.verify.per_output`). The scores module's names are
re-exported here (``KEYS``, ``primary``...); the function ``scores`` takes its module's name
(``keras_distill.verify.scores`` is the function, while ``from keras_distill.verify.scores
import KEYS`` still reads the module).

Example:
    >>> from keras_distill.verify import evaluate_folder
    >>> rows = evaluate_folder("exported", data.x_test, data.y_test)  # doctest: +SKIP
    >>> [(r["file"], r["accuracy"]) for r in rows]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os

import numpy as np

from keras_distill.data.lazy import is_lazy
from keras_distill.verify import per_output as _per_output
from keras_distill.verify import scores as _scores  # the module (before `scores` is the function)
from keras_distill.verify.litert import detect_quantization as _tflite_quantization
from keras_distill.verify.micro import measure_arena, probe_arena, read_c_source
from keras_distill.verify.micro import require_runtime as require_micro_runtime
from keras_distill.verify.runners import (  # noqa: F401  (re-exported)
    LiteRTRunner,
    MicroRunner,
    OnnxRunner,
    dequantize,
    make_runner,
    quantize,
    run_samples,
)
from keras_distill.verify.scores import (  # noqa: F401  (re-exported)
    COLUMNS,
    KEYS,
    LABEL_KEYS,
    columns,
    output_scores,
    primary,
    roc_auc,
    scores,
)

#: File endings :func:`evaluate_folder` picks up, and the format each one is.
ARTIFACT_SUFFIXES = {".tflite": "tflite", ".onnx": "onnx", "_model_data.cc": "micro"}
RUNTIMES = {"tflite": "litert", "onnx": "onnxruntime", "micro": "tflite-micro"}


def metrics(outputs, y=None, reference=None, kind="multiclass"):
    """The scores of one output of ``kind`` (:func:`keras_distill.verify.scores.scores`).

    Args:
        outputs: float array ``(N, classes)`` (``(N, *positions, units)`` for any kind).
        y: labels (integer class indices ``(N,)`` for multiclass) or ``None``.
        reference: float array of the outputs' shape (e.g. the Keras model's outputs) or
            ``None``.
        kind: one of ``"multiclass"`` (default), ``"binary"``, ``"multilabel"``,
            ``"regression"``.

    Returns:
        For multiclass a dict with ``accuracy``, ``agreement``, ``max_abs_error``,
        ``mean_abs_error`` (``None`` where the input is missing); for the other kinds the
        keys of ``KEYS[kind]``.
    """
    return scores(kind, outputs, y, reference)


def agreement(outputs, reference, kind="multiclass"):
    """Top-1 agreement of two output arrays ``(N, classes)`` (``None`` without a reference);
    sign agreement for ``kind="binary"`` (per label for ``"multilabel"``).

    Example:
        >>> agreement(np.eye(3), np.eye(3)[[0, 1, 0]])
        0.6666666666666666
    """
    return _scores.agreement(kind, outputs, reference)


def evaluate_bytes(model_bytes, fmt, x, y=None, reference=None, *, kind="multiclass",
                   arena_size=None, num_threads=1, check_arena=True, reference_outputs=None):
    """Evaluate an artifact held in memory (see :func:`evaluate_artifact`).

    Args:
        model_bytes: the ``.tflite`` / ``.onnx`` bytes (for ``"micro"``, the flatbuffer).
        fmt: ``"tflite"``, ``"onnx"`` or ``"micro"``.
        x, y, reference: inputs, optional labels, optional reference outputs (array, or a
            model with ``predict``); for a model of several outputs, dicts by output name.
        kind: the output's kind (``"multiclass"`` by default), or ``{output name: kind}``.
        arena_size: TFLM arena for ``"micro"``; measured when ``None``.
        num_threads: interpreter threads (1 by default, as on a small device).
        check_arena: for ``"micro"``, first try ``arena_size`` in a child process (the
            tflite-micro package can crash the process on a too-small arena).
        reference_outputs: another model's outputs (e.g. the teacher's, where ``reference``
            is the exported Keras model's), measured in the same pass as
            ``agreement_with_reference`` (and, for regression,
            ``mean_abs_error_with_reference``).

    Returns:
        A dict: ``format``, ``runtime``, ``n_samples``, ``kind``, the kind's scores (for
        several outputs: ``outputs`` by name, and ``max_abs_error`` / ``mean_abs_error`` over
        all), ``latency_ms_median``, ``input_dtype``, ``output_dtype`` (by output name for
        several).
    """
    x = x if is_lazy(x) else np.asarray(x)  # lazy inputs are read a sample at a time
    if len(x) == 0:
        raise ValueError("evaluate needs at least one sample in x.")
    if isinstance(y, np.ndarray):
        _per_output.check_labels(y, len(x))
    reference = _per_output.as_reference(reference, x)
    reference_outputs = _per_output.as_reference(reference_outputs, x)
    if isinstance(reference, np.ndarray):
        _per_output.rows(reference, len(x), "reference")
    arena_size = _usable_arena(model_bytes, fmt, arena_size, check_arena)
    runner = make_runner(model_bytes, fmt, arena_size=arena_size, num_threads=num_threads)
    plan = _per_output.Plan(runner.output_names, kind, x, y, reference, reference_outputs)
    outputs, times = run_samples(runner, x)
    result = {"format": fmt, "runtime": runner.runtime, "n_samples": len(x)}
    result.update(plan.score(outputs))
    result.update(latency_ms_median=float(np.median(times) * 1e3),
                  input_dtype=runner.input_dtype, output_dtype=plan.output_dtype(runner))
    if fmt == "micro":
        result["arena_size"] = int(arena_size)
    return result


def _usable_arena(model_bytes, fmt, arena_size, check):
    """The TFLM arena to run ``model_bytes`` with: measured when ``None``, else probed in a
    child process first when ``check`` (a too-small arena can crash the process)."""
    if fmt != "micro":
        return arena_size
    require_micro_runtime()
    if arena_size is None:
        return measure_arena(model_bytes).arena_size
    if check:
        ok, message = probe_arena(model_bytes, arena_size)
        if not ok:
            raise RuntimeError(f"arena_size={arena_size} does not let TensorFlow Lite Micro "
                               f"allocate and run this model: {message}")
    return arena_size


def artifact_format(path):
    """The format of an artifact file from its name: ``"tflite"``, ``"onnx"`` or ``"micro"``.

    Example:
        >>> artifact_format("exported/student_int8.tflite"), artifact_format("s_model_data.h")
        ('tflite', 'micro')
    """
    name = os.path.basename(os.fspath(path))
    for suffix, fmt in ARTIFACT_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    if name.endswith("_model_data.h"):
        return "micro"
    raise ValueError(f"Cannot tell the format of {name!r}; expected a file ending in "
                     f"{', '.join(ARTIFACT_SUFFIXES)} (or _model_data.h).")


def read_artifact(path):
    """The model bytes of an artifact file, as its runtime loads them.

    Returns:
        ``(fmt, model_bytes, file_bytes, recorded_arena)``: the format, the ``.tflite`` /
        ``.onnx`` bytes (for a micro ``.cc`` / ``.h``: the flatbuffer in its C array), the
        size of the file on disk, and the ``tensor_arena_size`` a micro source records
        (``None`` otherwise).

    Example:
        >>> fmt, data, size, arena = read_artifact("exported/student_model_data.cc")
        ... # doctest: +SKIP
        >>> fmt, len(data) < size, arena  # doctest: +SKIP
        ('micro', True, 3072)
    """
    path = os.fspath(path)
    fmt = artifact_format(path)
    if fmt == "micro":
        model_bytes, info = read_c_source(path)
        cc_path = path[:-2] + ".cc" if path.endswith(".h") else path
        return fmt, model_bytes, os.path.getsize(cc_path), info["arena_size"]
    with open(path, "rb") as f:
        model_bytes = f.read()
    return fmt, model_bytes, len(model_bytes), None


def verify_file(path, x, y=None, keras_outputs=None, *, kind="multiclass",
                reference_outputs=None, arena_size=None):
    """Run a file that was just written, once, in its runtime: what ``export`` records.

    Args:
        path: the artifact's main file (``.tflite``, ``.onnx``, ``<name>_model_data.cc``).
        x, y: the verification inputs and optional labels.
        keras_outputs: the exported Keras model's outputs on ``x`` (agreement and errors);
            a dict by output name for a model of several outputs.
        kind: the output's kind (``"multiclass"`` by default), or ``{output name: kind}``.
        reference_outputs: another model's outputs on ``x`` (the teacher's, in a run): its
            agreement is measured in the same pass (``agreement_with_reference``; for
            regression also ``mean_abs_error_with_reference``).
        arena_size: the TFLM arena for a micro source (default: the one it records); it must
            already have been found to work (``keras_distill.verify.micro.measure_arena``).

    Returns:
        ``(result, model_bytes)``: the metrics of :func:`evaluate_bytes` (with
        ``agreement_with_reference``, per output for several, ``None`` without
        ``reference_outputs``) and the model bytes read back from the file.

    Example:
        >>> result, data = verify_file("exported/student_int8.tflite", x_test, y_test,
        ...                            student.predict(x_test),
        ...                            reference_outputs=teacher.predict(x_test))
        ... # doctest: +SKIP
        >>> result["agreement"], result["agreement_with_reference"]  # doctest: +SKIP
        (0.9972, 0.9806)
    """
    fmt, model_bytes, _, recorded = read_artifact(path)
    result = evaluate_bytes(model_bytes, fmt, x, y, keras_outputs, kind=kind,
                            arena_size=arena_size or recorded, check_arena=False,
                            reference_outputs=reference_outputs)
    if "outputs" in result:
        for name, output_kind in result["kind"].items():
            for key in _per_output.reference_keys(output_kind):
                result["outputs"][name].setdefault(key, None)
    else:
        for key in _per_output.reference_keys(result["kind"]):
            result.setdefault(key, None)
    return result, model_bytes


def evaluate_artifact(path, x, y=None, reference=None, *, kind="multiclass", arena_size=None,
                      num_threads=1):
    """Run one artifact file in its runtime and measure it.

    Args:
        path: a ``.tflite``, ``.onnx``, or ``<name>_model_data.cc`` / ``.h`` file.
        x: inputs ``(N, *input_shape)``, float as the Keras model takes them.
        y: labels of the kind (integer class indices ``(N,)`` for multiclass), for accuracy
            and the other label scores (optional); a dict by output name for several outputs.
        reference: reference outputs ``(N, classes)``, or a model with ``predict`` (e.g. the
            Keras model), for agreement and errors (optional); a dict by output name for
            several outputs.
        kind: the output's kind, ``"multiclass"`` by default (see
            :mod:`keras_distill.verify.scores`), or ``{output name: kind}``.
        arena_size: TFLM arena for a micro artifact; default the ``tensor_arena_size``
            recorded in the file, else measured.
        num_threads: interpreter threads.

    Returns:
        A dict: ``path``, ``file``, ``format``, ``runtime``, ``quantization``, ``size_bytes``
        (the flatbuffer for micro), ``file_bytes``, ``n_samples``, ``kind``, the kind's
        scores (multiclass: ``accuracy``, ``agreement``, ``max_abs_error``,
        ``mean_abs_error``; several outputs: ``outputs`` by name), ``latency_ms_median``,
        ``input_dtype``, ``output_dtype`` (and ``arena_size`` for micro).

    Example:
        >>> r = evaluate_artifact("exported/student_int8.tflite", x_test, y_test,
        ...                       reference=keras_model)  # doctest: +SKIP
        >>> r["accuracy"], r["agreement"], r["input_dtype"]  # doctest: +SKIP
        (0.97, 0.99, 'int8')
    """
    path = os.fspath(path)
    fmt, model_bytes, file_bytes, recorded = read_artifact(path)
    result = {"path": path, "file": os.path.basename(path), "format": fmt,
              "quantization": detect_quantization(model_bytes, fmt),
              "size_bytes": len(model_bytes), "file_bytes": file_bytes}
    result.update(evaluate_bytes(model_bytes, fmt, x, y, reference, kind=kind,
                                 arena_size=arena_size or recorded, num_threads=num_threads))
    return result


def detect_quantization(model_bytes, fmt):
    """The quantization mode of an artifact's bytes (``"int8"``, ``"float32"``...)."""
    if fmt in ("tflite", "micro"):
        return _tflite_quantization(model_bytes)
    import onnx

    graph = onnx.load_from_string(bytes(model_bytes)).graph
    ops = {node.op_type for node in graph.node}
    return "int8" if ops & {"QuantizeLinear", "QLinearConv", "QLinearMatMul"} else "float32"


def evaluate_folder(folder, x, y=None, reference=None, *, kind="multiclass", num_threads=1):
    """Evaluate every artifact in a folder (``.tflite``, ``.onnx``, ``*_model_data.cc``).

    A ``manifest.json`` written by ``keras_distill.export`` is not needed; the TFLM arena is
    read from each ``.cc``. One artifact failing does not stop the others: its row carries
    ``error``.

    Args:
        folder: the folder, e.g. ``"exported"``.
        x, y, reference, kind: as for :func:`evaluate_artifact`.
        num_threads: interpreter threads.

    Returns:
        A list of result dicts (see :func:`evaluate_artifact`), sorted by file name.

    Example:
        >>> for r in evaluate_folder("exported", x_test, y_test):  # doctest: +SKIP
        ...     print(r["file"], r.get("accuracy"), r.get("error"))
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"evaluate_folder: {folder!r} is not a folder.")
    files = sorted(f for f in os.listdir(folder)
                   if any(f.endswith(s) for s in ARTIFACT_SUFFIXES) and not f.startswith("."))
    if not files:
        raise ValueError(f"evaluate_folder: no artifacts ({', '.join(ARTIFACT_SUFFIXES)}) in "
                         f"{folder!r}.")
    x = x if is_lazy(x) else np.asarray(x)
    reference = _per_output.as_reference(reference, x)
    rows = []
    for name in files:
        path = os.path.join(folder, name)
        try:
            rows.append(evaluate_artifact(path, x, y, reference, kind=kind,
                                          num_threads=num_threads))
        except Exception as exc:  # noqa: BLE001 - one bad file must not hide the others
            rows.append({"path": path, "file": name, "format": artifact_format(name),
                         "error": f"{type(exc).__name__}: {exc}"})
    return rows


def evaluate(path, x, y=None, reference=None, **kwargs):
    """:func:`evaluate_folder` for a folder, :func:`evaluate_artifact` (in a list) for a file.

    This is what ``keras-distill evaluate ARTIFACT_OR_FOLDER`` calls.

    Returns:
        A list of result dicts.
    """
    if os.path.isdir(path):
        return evaluate_folder(path, x, y, reference, **kwargs)
    return [evaluate_artifact(path, x, y, reference, **kwargs)]


def format_table(rows):
    """A plain-text table of result dicts: file, runtime, size, the scores of the rows' kind
    (accuracy, agreement and max abs error for multiclass; see
    :data:`keras_distill.verify.scores.COLUMNS`), latency."""
    from keras_distill.report import text_table

    cols = _table_columns(rows)
    header = ["file", "runtime", "size KiB", *(h for h, _, _ in cols), "latency ms"]
    lines = []
    for r in rows:
        if "error" in r:
            lines.append([r["file"], r.get("format", ""), "", *[""] * len(cols),
                          r["error"][:60]])
            continue
        lines.append([r["file"], r["runtime"], f"{r['size_bytes'] / 1024:.1f}",
                      *(_fmt(_scores.column_value(r, where), spec) for _, where, spec in cols),
                      f"{r['latency_ms_median']:.3f}"])
    return text_table(header, lines)


def _table_columns(rows):
    """The columns of every kind among ``rows``, in order, each once."""
    found = {}
    for r in rows:
        if "error" not in r:
            for col in columns(r.get("kind", "multiclass")):
                found.setdefault(col[:2], col)
    return list(found.values()) or columns("multiclass")


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def to_json(rows):
    """The result dicts as JSON text."""
    return json.dumps(rows, indent=2)
