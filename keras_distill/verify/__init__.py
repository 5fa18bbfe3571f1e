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

Metrics (keys of the returned dict): ``accuracy`` (when labels are given), ``agreement`` (top-1
agreement with the reference outputs), ``max_abs_error`` and ``mean_abs_error`` (against the
reference, after dequantizing), ``latency_ms_median`` (median wall time of one single-sample
call: quantize, set input, invoke, read and dequantize output), ``size_bytes``.

Example:
    >>> from keras_distill.verify import evaluate_folder
    >>> rows = evaluate_folder("exported", data.x_test, data.y_test)  # doctest: +SKIP
    >>> [(r["file"], r["accuracy"]) for r in rows]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from keras_distill.verify.litert import detect_quantization as _tflite_quantization
from keras_distill.verify.micro import measure_arena, probe_arena, read_c_source
from keras_distill.verify.micro import require_runtime as require_micro_runtime

#: File endings :func:`evaluate_folder` picks up, and the format each one is.
ARTIFACT_SUFFIXES = {".tflite": "tflite", ".onnx": "onnx", "_model_data.cc": "micro"}
RUNTIMES = {"tflite": "litert", "onnx": "onnxruntime", "micro": "tflite-micro"}


def quantize(x, scale, zero_point, dtype):
    """Float to integer: ``round(x / scale) + zero_point``, clipped to ``dtype``."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    """Integer to float: ``(q - zero_point) * scale``."""
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)


class _Runner:
    """Runs one sample (batch of 1) at a time; float in, float out."""

    input_dtype = output_dtype = "float32"
    input_quant = output_quant = None  # (scale, zero_point) for integer tensors

    def _to_input(self, x1):
        if self.input_quant is not None:
            return quantize(x1, *self.input_quant, np.dtype(self.input_dtype))
        return np.asarray(x1, dtype=self.input_dtype)

    def _from_output(self, y1):
        if self.output_quant is not None:
            return dequantize(y1, *self.output_quant)
        return np.asarray(y1, np.float32)

    def __call__(self, x1):
        raise NotImplementedError


def _integer_quant(dtype, scale, zero_point):
    if np.issubdtype(np.dtype(dtype), np.integer) and scale:
        return float(scale), int(zero_point)
    return None


class LiteRTRunner(_Runner):
    """A ``.tflite`` flatbuffer in the LiteRT interpreter (``ai_edge_litert``)."""

    runtime = "litert"

    def __init__(self, model_bytes, *, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        self._interp = Interpreter(model_content=bytes(model_bytes), num_threads=num_threads)
        inp = self._interp.get_input_details()[0]
        if len(self._interp.get_input_details()) != 1:
            raise ValueError("evaluate supports models with one input.")
        if inp["shape"][0] != 1:
            self._interp.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.input_dtype, self.output_dtype = np.dtype(inp["dtype"]).name, np.dtype(
            out["dtype"]).name
        self.input_quant = _integer_quant(inp["dtype"], *inp["quantization"])
        self.output_quant = _integer_quant(out["dtype"], *out["quantization"])
        #: the per-sample input shape
        self.input_shape = tuple(int(d) for d in inp["shape"][1:])

    def __call__(self, x1):
        self._interp.set_tensor(self._in, self._to_input(x1))
        self._interp.invoke()
        return self._from_output(self._interp.get_tensor(self._out))


class OnnxRunner(_Runner):
    """An ``.onnx`` model in ONNX Runtime (CPU)."""

    runtime = "onnxruntime"

    def __init__(self, model_bytes, *, num_threads=1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = num_threads
        options.log_severity_level = 3
        self._session = ort.InferenceSession(bytes(model_bytes), options,
                                             providers=["CPUExecutionProvider"])
        if len(self._session.get_inputs()) != 1:
            raise ValueError("evaluate supports models with one input.")
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        types = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}
        self.input_dtype = types.get(self._session.get_inputs()[0].type, "float32")
        self.output_dtype = types.get(self._session.get_outputs()[0].type, "float32")

    def __call__(self, x1):
        out = self._session.run([self._output], {self._input: self._to_input(x1)})[0]
        return self._from_output(out)


class MicroRunner(_Runner):
    """A ``.tflite`` flatbuffer in the TensorFlow Lite Micro interpreter.

    ``arena_size`` must be one that allocates (see ``keras_distill.verify.micro``): the
    tflite-micro package can crash the process on a too-small arena.
    """

    runtime = "tflite-micro"

    def __init__(self, model_bytes, *, arena_size):
        from tflite_micro.python.tflite_micro import runtime

        self._interp = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
        inp = self._interp.get_input_details(0)
        out = self._interp.get_output_details(0)
        self._shape = tuple(int(d) for d in inp["shape"])
        self.input_dtype = np.dtype(inp["dtype"]).name
        self.output_dtype = np.dtype(out["dtype"]).name

        def quant(details):
            params = details["quantization_parameters"]
            if len(params["scales"]) == 0:
                return None
            return _integer_quant(details["dtype"], params["scales"][0],
                                  params["zero_points"][0])

        self.input_quant, self.output_quant = quant(inp), quant(out)

    def __call__(self, x1):
        self._interp.set_input(self._to_input(x1).reshape(self._shape), 0)
        self._interp.invoke()
        return self._from_output(self._interp.get_output(0))


def _as_reference(reference, x):
    if reference is None:
        return None
    if hasattr(reference, "predict"):
        return np.asarray(reference.predict(x, batch_size=256, verbose=0), np.float32)
    if callable(reference):
        return np.asarray(reference(x), np.float32)
    reference = np.asarray(reference, np.float32)
    if len(reference) != len(x):
        raise ValueError(f"reference has {len(reference)} rows but x has {len(x)}; pass one "
                         "reference output per sample.")
    return reference


def run_samples(runner, x, *, warmup=1):
    """Run ``runner`` on every sample of ``x`` alone.

    Returns:
        ``(outputs, latencies_seconds)``: outputs stacked to ``(N, ...)`` (float32, batch
        dimension of each call removed) and one wall time per call.
    """
    x = np.asarray(x)
    for i in range(min(warmup, len(x))):
        runner(x[i:i + 1])
    outputs, times = [], []
    for i in range(len(x)):
        start = time.perf_counter()
        y = runner(x[i:i + 1])
        times.append(time.perf_counter() - start)
        outputs.append(np.asarray(y, np.float32).reshape(-1, *np.shape(y)[1:])[0])
    return np.stack(outputs), np.asarray(times)


def metrics(outputs, y=None, reference=None):
    """Accuracy, top-1 agreement and output errors of ``outputs``.

    Args:
        outputs: float array ``(N, classes)``.
        y: integer labels ``(N,)`` or ``None``.
        reference: float array ``(N, classes)`` (e.g. the Keras model's outputs) or ``None``.

    Returns:
        A dict with ``accuracy``, ``agreement``, ``max_abs_error``, ``mean_abs_error``
        (``None`` where the input is missing).
    """
    outputs = np.asarray(outputs, np.float32)
    result = {"accuracy": None, "agreement": None, "max_abs_error": None,
              "mean_abs_error": None}
    if y is not None:
        y = np.asarray(y).reshape(-1)
        result["accuracy"] = float(np.mean(np.argmax(outputs, -1) == y))
    if reference is not None:
        reference = np.asarray(reference, np.float32).reshape(outputs.shape)
        result["agreement"] = float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))
        diff = np.abs(outputs.astype(np.float64) - reference)
        result["max_abs_error"] = float(diff.max()) if diff.size else 0.0
        result["mean_abs_error"] = float(diff.mean()) if diff.size else 0.0
    return result


def agreement(outputs, reference):
    """Top-1 agreement of two output arrays ``(N, classes)`` (``None`` without a reference).

    Example:
        >>> agreement(np.eye(3), np.eye(3)[[0, 1, 0]])
        0.6666666666666666
    """
    if reference is None:
        return None
    outputs = np.asarray(outputs)
    reference = np.asarray(reference).reshape(outputs.shape)
    return float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))


def make_runner(model_bytes, fmt, *, arena_size=None, num_threads=1):
    """The runner for an artifact's bytes: ``fmt`` is ``"tflite"``, ``"onnx"`` or ``"micro"``.

    For ``"micro"`` without ``arena_size`` the arena is measured first (in child processes).
    """
    if fmt == "tflite":
        return LiteRTRunner(model_bytes, num_threads=num_threads)
    if fmt == "onnx":
        return OnnxRunner(model_bytes, num_threads=num_threads)
    if fmt == "micro":
        if arena_size is None:
            arena_size = measure_arena(model_bytes).arena_size
        return MicroRunner(model_bytes, arena_size=arena_size)
    raise ValueError(f"Unknown artifact format {fmt!r}; expected 'tflite', 'onnx' or 'micro'.")


def evaluate_bytes(model_bytes, fmt, x, y=None, reference=None, *, arena_size=None,
                   num_threads=1, check_arena=True, reference_outputs=None):
    """Evaluate an artifact held in memory (see :func:`evaluate_artifact`).

    Args:
        model_bytes: the ``.tflite`` / ``.onnx`` bytes (for ``"micro"``, the flatbuffer).
        fmt: ``"tflite"``, ``"onnx"`` or ``"micro"``.
        x, y, reference: inputs, optional labels, optional reference outputs (array, or a
            model with ``predict``).
        arena_size: TFLM arena for ``"micro"``; measured when ``None``.
        num_threads: interpreter threads (1 by default, as on a small device).
        check_arena: for ``"micro"``, first try ``arena_size`` in a child process (the
            tflite-micro package can crash the process on a too-small arena).
        reference_outputs: another model's outputs (e.g. the teacher's, where ``reference``
            is the exported Keras model's), measured in the same pass as
            ``agreement_with_reference``.

    Returns:
        A dict of metrics, plus ``format``, ``runtime``, ``n_samples``, ``latency_ms_median``,
        ``input_dtype``, ``output_dtype``.
    """
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("evaluate needs at least one sample in x.")
    if y is not None and len(y) != len(x):
        raise ValueError(f"y has {len(y)} labels but x has {len(x)} samples.")
    reference = _as_reference(reference, x)
    reference_outputs = _as_reference(reference_outputs, x)
    arena_size = _usable_arena(model_bytes, fmt, arena_size, check_arena)
    runner = make_runner(model_bytes, fmt, arena_size=arena_size, num_threads=num_threads)
    outputs, times = run_samples(runner, x)
    result = {"format": fmt, "runtime": runner.runtime, "n_samples": len(x)}
    result.update(metrics(outputs, y, reference))
    if reference_outputs is not None:
        result["agreement_with_reference"] = agreement(outputs, reference_outputs)
    result.update(latency_ms_median=float(np.median(times) * 1e3),
                  input_dtype=runner.input_dtype, output_dtype=runner.output_dtype)
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


def verify_file(path, x, y=None, keras_outputs=None, *, reference_outputs=None,
                arena_size=None):
    """Run a file that was just written, once, in its runtime: what ``export`` records.

    Args:
        path: the artifact's main file (``.tflite``, ``.onnx``, ``<name>_model_data.cc``).
        x, y: the verification inputs and optional labels.
        keras_outputs: the exported Keras model's outputs on ``x`` (agreement and errors).
        reference_outputs: another model's outputs on ``x`` (the teacher's, in a run): its
            agreement is measured in the same pass (``agreement_with_reference``).
        arena_size: the TFLM arena for a micro source (default: the one it records); it must
            already have been found to work (``keras_distill.verify.micro.measure_arena``).

    Returns:
        ``(result, model_bytes)``: the metrics of :func:`evaluate_bytes` (with
        ``agreement_with_reference``) and the model bytes read back from the file.

    Example:
        >>> result, data = verify_file("exported/student_int8.tflite", x_test, y_test,
        ...                            student.predict(x_test),
        ...                            reference_outputs=teacher.predict(x_test))
        ... # doctest: +SKIP
        >>> result["agreement"], result["agreement_with_reference"]  # doctest: +SKIP
        (0.9972, 0.9806)
    """
    fmt, model_bytes, _, recorded = read_artifact(path)
    result = evaluate_bytes(model_bytes, fmt, x, y, keras_outputs,
                            arena_size=arena_size or recorded, check_arena=False,
                            reference_outputs=reference_outputs)
    result.setdefault("agreement_with_reference", None)
    return result, model_bytes


def evaluate_artifact(path, x, y=None, reference=None, *, arena_size=None, num_threads=1):
    """Run one artifact file in its runtime and measure it.

    Args:
        path: a ``.tflite``, ``.onnx``, or ``<name>_model_data.cc`` / ``.h`` file.
        x: inputs ``(N, *input_shape)``, float as the Keras model takes them.
        y: integer labels ``(N,)``, for accuracy (optional).
        reference: reference outputs ``(N, classes)``, or a model with ``predict`` (e.g. the
            Keras model), for agreement and errors (optional).
        arena_size: TFLM arena for a micro artifact; default the ``tensor_arena_size``
            recorded in the file, else measured.
        num_threads: interpreter threads.

    Returns:
        A dict: ``path``, ``file``, ``format``, ``runtime``, ``quantization``, ``size_bytes``
        (the flatbuffer for micro), ``file_bytes``, ``n_samples``, ``accuracy``,
        ``agreement``, ``max_abs_error``, ``mean_abs_error``, ``latency_ms_median``,
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
    result.update(evaluate_bytes(model_bytes, fmt, x, y, reference,
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


def evaluate_folder(folder, x, y=None, reference=None, *, num_threads=1):
    """Evaluate every artifact in a folder (``.tflite``, ``.onnx``, ``*_model_data.cc``).

    A ``manifest.json`` written by ``keras_distill.export`` is not needed; the TFLM arena is
    read from each ``.cc``. One artifact failing does not stop the others: its row carries
    ``error``.

    Args:
        folder: the folder, e.g. ``"exported"``.
        x, y, reference: as for :func:`evaluate_artifact`.
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
    x = np.asarray(x)
    reference = _as_reference(reference, x)
    rows = []
    for name in files:
        path = os.path.join(folder, name)
        try:
            rows.append(evaluate_artifact(path, x, y, reference, num_threads=num_threads))
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
    """A plain-text table of result dicts (file, size, accuracy, agreement, error, latency)."""
    from keras_distill.report import text_table

    header = ["file", "runtime", "size KiB", "accuracy", "agreement", "max abs err",
              "latency ms"]
    lines = []
    for r in rows:
        if "error" in r:
            lines.append([r["file"], r.get("format", ""), "", "", "", "", r["error"][:60]])
            continue
        lines.append([r["file"], r["runtime"], f"{r['size_bytes'] / 1024:.1f}",
                      _fmt(r["accuracy"], ".4f"), _fmt(r["agreement"], ".4f"),
                      _fmt(r["max_abs_error"], ".2e"), f"{r['latency_ms_median']:.3f}"])
    return text_table(header, lines)


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def to_json(rows):
    """The result dicts as JSON text."""
    return json.dumps(rows, indent=2)
