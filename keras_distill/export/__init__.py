"""Export a trained Keras model to TFLite, ONNX and TensorFlow Lite Micro, verified in each runtime.

One public function, :func:`export`, and its result, :class:`ExportReport`. The converters live
in ``tflite.py``, ``onnx.py`` and ``micro.py``; the runtimes that verify each artifact in
``keras_distill.evaluate``.

Guarantees:

* Each artifact is written to a temporary file in ``out_dir`` and renamed into place, so a crash
  or a full disk never leaves a half-written artifact.
* A failure in one artifact leaves the others, and is recorded in ``manifest.json`` with its
  error; the manifest never lists a file that is not on disk.
* Every artifact is run in its real runtime (LiteRT, ONNX Runtime, the TFLM interpreter). A
  float32 artifact that differs from Keras by more than ``1e-4`` is a bug, not a row:
  :class:`VerificationError` is raised (after the manifest is written).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import types
import warnings

import numpy as np

from keras_distill.export.micro import ArenaMeasurement  # noqa: F401  (re-exported)
from keras_distill.export.tflite import CALIBRATED_MODES, QUANTIZATION_MODES, UnsupportedOpError

__all__ = [
    "FORMATS",
    "QUANTIZATION_MODES",
    "Artifact",
    "ExportReport",
    "UnsupportedOpError",
    "VerificationError",
    "export",
]

#: Formats :func:`export` writes.
FORMATS = ("tflite", "onnx", "micro")
DEFAULT_QUANTIZATION = ("float32", "float16", "dynamic", "int8")
#: A float32 artifact may differ from Keras by at most this much (max abs error on outputs).
FLOAT32_TOLERANCE = 1e-4
#: Calibration samples used for int8 by default.
DEFAULT_CALIBRATION_SAMPLES = 300
MANIFEST = "manifest.json"
REPORT = "report.md"
LABELS = "labels.txt"


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
        status: ``"ok"`` or ``"failed"``.
        size_bytes: size of the model (the flatbuffer for micro, whose ``.cc`` is text).
        sha256: SHA-256 of the model bytes.
        metrics: results in its runtime: ``accuracy``, ``agreement``, ``max_abs_error``,
            ``mean_abs_error``, ``latency_ms_median``, ``n_samples``, ``runtime``...
        details: input/output dtype, shape, scale and zero point; ``arena`` for micro.
        error: why it failed.
        seconds: time spent converting and verifying it.
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

    @property
    def ok(self):
        return self.status == "ok"

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
        keras: the Keras model: ``params``, ``input_shape``, ``output_shape`` and, when eval
            data was given, ``accuracy``.
        evaluated_on: what the metrics were computed on (``"eval_data"``,
            ``"representative_data"`` or ``"random inputs"``) and how many samples.
        settings: the arguments that shaped the export.
        labels_file: ``"labels.txt"`` when labels were written.
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
    labels_file: str | None = None
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
        return [a for a in self.artifacts if not a.ok]

    def get(self, format, quantization=None):
        """The artifact of ``format`` (and ``quantization``), or ``None``."""
        for a in self.artifacts:
            if a.format == format and (quantization is None or a.quantization == quantization):
                return a
        return None

    def path(self, format, quantization=None):
        """Absolute path of an artifact's main file, or ``None`` if absent or failed."""
        a = self.get(format, quantization)
        return os.path.join(self.out_dir, a.path) if a is not None and a.ok else None

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

    def to_markdown(self):
        """A Markdown report: one table row per artifact, then failures and notes."""
        lines = [f"# Export report: {self.name}", ""]
        k = self.keras
        lines.append(f"Keras model: {k.get('params', '?')} parameters, input "
                     f"{k.get('input_shape')}, output {k.get('output_shape')}"
                     + (f", accuracy {k['accuracy']:.4f}" if k.get("accuracy") is not None
                        else "") + ".")
        ev = self.evaluated_on
        if ev:
            lines.append(f"Metrics on {ev.get('source')} ({ev.get('n_samples')} samples), one "
                         "sample per call, one thread.")
        lines += ["", ("| artifact | format | quantization | size KiB | × float32 | accuracy | "
                       "agreement | max abs err | latency ms | arena B | status |"),
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for a in self.artifacts:
            m = a.metrics
            ratio = self.size_ratio(a)
            arena = a.details.get("arena", {}).get("arena_size") if a.format == "micro" else None
            lines.append("| " + " | ".join([
                a.path or "—", a.format, a.quantization,
                f"{a.size_bytes / 1024:.1f}" if a.size_bytes else "—",
                f"{ratio:.2f}" if ratio is not None else "—",
                _fmt(m.get("accuracy"), ".4f"), _fmt(m.get("agreement"), ".4f"),
                _fmt(m.get("max_abs_error"), ".2e"), _fmt(m.get("latency_ms_median"), ".3f"),
                str(arena) if arena else "—", a.status]) + " |")
        if self.failed:
            lines += ["", "## Failures", ""]
            lines += [f"- **{a.key}**: {a.error}" for a in self.failed]
        if self.labels_file:
            lines += ["", f"Labels: `{self.labels_file}`."]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def export(model, out_dir="exported", *, name=None, formats=FORMATS,
           quantization=DEFAULT_QUANTIZATION, representative_data=None, eval_data=None,
           labels=None, onnx_opset=17, calibration_samples=DEFAULT_CALIBRATION_SAMPLES):
    """Export ``model`` to every requested format and quantization, verified in its runtime.

    Args:
        model: a trained single-input, single-output ``keras.Model`` (a student: no teacher
            inside).
        out_dir: output folder, created if needed.
        name: base name of the files (letters, digits, ``_ . -``); default the model's name.
        formats: any of ``"tflite"`` (one ``<name>_<quantization>.tflite`` per mode),
            ``"onnx"`` (``<name>_float32.onnx``, plus ``<name>_int8.onnx`` when ``"int8"`` is
            requested and calibration data is given) and ``"micro"`` (the int8 model at batch
            size 1 as ``<name>_model_data.cc`` / ``.h``, with its measured tensor arena).
        quantization: TFLite modes, any of ``"float32"``, ``"float16"``, ``"dynamic"``,
            ``"int8"``, ``"int16x8"`` (opt-in).
        representative_data: float inputs ``(N, *input_shape)`` (array, ``tf.data.Dataset`` of
            ``x`` or ``(x, y)``, or an iterable of arrays) to calibrate ``int8``, ``int16x8``
            and ``micro``; ``calibration_samples`` of them are drawn. Not needed for a
            quantization-aware model.
        eval_data: ``(x, y)`` (or ``x`` alone) to verify every artifact on: accuracy, top-1
            agreement and max abs error against Keras, latency. Without it, artifacts are
            checked against Keras on representative data or random inputs.
        labels: class names, written one per line to ``labels.txt``.
        onnx_opset: ONNX opset, 9 to 18 (default 17).
        calibration_samples: how many representative samples calibrate int8 (default 300).

    Returns:
        An :class:`ExportReport`, also written as ``manifest.json`` and ``report.md``. An
        artifact that fails (an op int8 or TFLM cannot run, a converter error) does not stop
        the others: it is recorded with ``status="failed"`` and its ``error``, a warning is
        issued, and no file of its name is left in ``out_dir``. ``report.ok`` tells whether
        everything succeeded.

    Raises:
        ValueError: a bad argument, or int8 / int16x8 / micro without ``representative_data``
            for a model that is not quantization-aware.
        OSError: ``out_dir`` cannot be created or written.
        VerificationError: a float32 artifact differs from Keras by more than 1e-4.

    Example:
        >>> from keras_distill import export
        >>> report = export(student, "exported", representative_data=data.x_train,
        ...                 eval_data=(data.x_test, data.y_test), labels=data.class_names)
        ... # doctest: +SKIP
        >>> print(report.to_markdown())  # doctest: +SKIP
    """
    from keras_distill.export import micro, tflite
    from keras_distill.export import onnx as onnx_export

    formats = _as_choices(formats, "formats", FORMATS)
    quantization = _as_choices(quantization, "quantization", QUANTIZATION_MODES)
    model_info = _check_model(model)
    name = _check_name(name, model)
    if "onnx" in formats:
        onnx_export.check_opset(onnx_opset)
    if isinstance(calibration_samples, bool) or not isinstance(calibration_samples, int) or \
            calibration_samples < 1:
        raise ValueError(f"calibration_samples must be a positive int; got "
                         f"{calibration_samples!r}.")
    labels = _check_labels(labels, model_info)
    input_shape, input_dtype = tflite.input_spec(model)
    rep = _as_array(representative_data, "representative_data", input_shape)
    if rep is not None:
        from keras_distill.data import representative_samples

        rep = representative_samples(rep, n=calibration_samples).astype(input_dtype)
    x_eval, y_eval = _check_eval_data(eval_data, input_shape, _num_classes(model))

    needs_integer = ([m for m in quantization if m in CALIBRATED_MODES]
                     if "tflite" in formats else []) + (["micro"] if "micro" in formats else [])
    quantize_aware = False
    if needs_integer and rep is None:
        quantize_aware = _is_quantize_aware(model, input_shape, input_dtype)
        if not quantize_aware:
            raise ValueError(
                f"{' and '.join(needs_integer)} export needs calibration data: pass "
                "representative_data (a few hundred training inputs, e.g. x_train), or drop "
                f"{', '.join(repr(m) for m in needs_integer)} from quantization/formats. "
                f"Model {model.name!r} is not quantization-aware.")

    out_dir = _prepare_out_dir(out_dir)
    # The folder is being rewritten: an old manifest must not outlive files replaced or
    # removed below, should this export be interrupted. The new one is written at the end.
    for stale in (MANIFEST, REPORT):
        _remove_quietly(os.path.join(out_dir, stale))
    report = ExportReport(
        name=name, out_dir=out_dir, keras=model_info,
        settings={"formats": list(formats), "quantization": list(quantization),
                  "onnx_opset": onnx_opset if "onnx" in formats else None,
                  "calibration_samples": None if rep is None else len(rep),
                  "quantize_aware": quantize_aware,
                  "float32_tolerance": FLOAT32_TOLERANCE},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=_versions(formats))

    # What the artifacts are verified on, and the Keras outputs they are compared with.
    if x_eval is not None:
        source = "eval_data"
    elif rep is not None:
        source, x_eval = "representative_data", rep[:100]
    else:
        source = "random inputs"
        x_eval = np.random.default_rng(0).uniform(0, 1, (32, *input_shape)).astype(input_dtype)
    reference = np.asarray(model.predict(x_eval, batch_size=256, verbose=0), np.float32)
    report.evaluated_on = {"source": source, "n_samples": len(x_eval)}
    if y_eval is not None:
        report.keras["accuracy"] = float(np.mean(np.argmax(reference, -1) == y_eval))
    layer_names = [layer.name for layer in _all_layers(model)]
    float32_errors = []

    def verify(record, model_bytes, fmt, arena_size=None):
        from keras_distill.evaluate import evaluate_bytes

        result = evaluate_bytes(model_bytes, fmt, x_eval, y_eval, reference,
                                arena_size=arena_size, check_arena=False)
        record.metrics = {k: result[k] for k in (
            "runtime", "n_samples", "accuracy", "agreement", "max_abs_error", "mean_abs_error",
            "latency_ms_median")}
        record.details.setdefault("input_dtype", result["input_dtype"])
        record.details.setdefault("output_dtype", result["output_dtype"])
        # `not <=` so that a NaN error fails the check too.
        if record.quantization == "float32" and not result["max_abs_error"] <= FLOAT32_TOLERANCE:
            message = (f"float32 {fmt} artifact differs from Keras by max abs error "
                       f"{result['max_abs_error']:.3g} > {FLOAT32_TOLERANCE:g} on {source}")
            if fmt == "onnx" and (quantize_aware or _is_quantize_aware(model, input_shape,
                                                                        input_dtype)):
                message += (" (the model is quantization-aware, and tf2onnx converts its "
                            "fake-quant ops differently from TensorFlow: export ONNX from the "
                            "float model, or drop 'onnx' from formats)")
            float32_errors.append(message)
            raise VerificationError(message)

    def produce(fmt, mode, file_names, build):
        """Run ``build(record) -> {file name: bytes}``; write the files; record the outcome.

        On failure, files of the same names left by an earlier export are removed, so the
        folder never shows a stale artifact next to a manifest that says it failed.
        """
        record = Artifact(format=fmt, quantization=mode)
        start = time.perf_counter()
        try:
            files = build(record)
            assert sorted(files) == sorted(file_names), (files.keys(), file_names)
            _write_files(out_dir, files)
            record.files = list(files)
            record.path = record.files[-1]
        except Exception as exc:  # noqa: BLE001 - one failed artifact must not stop the others
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            record.metrics, record.path, record.files = {}, None, []
            record.size_bytes = record.sha256 = None
            for file_name in file_names:
                _remove_quietly(os.path.join(out_dir, file_name))
            if not isinstance(exc, VerificationError):
                warnings.warn(f"export: {fmt} {mode} failed: {record.error}", stacklevel=3)
        record.seconds = round(time.perf_counter() - start, 3)
        report.artifacts.append(record)
        return record

    def fill(record, model_bytes):
        record.size_bytes = len(model_bytes)
        record.sha256 = hashlib.sha256(model_bytes).hexdigest()

    with tempfile.TemporaryDirectory(prefix="keras_distill_export_") as tmp:
        saved = {}

        def saved_model(batch_size):
            if batch_size not in saved:
                path = os.path.join(tmp, f"saved_model_b{batch_size or 'dyn'}")
                saved[batch_size] = tflite.saved_model(model, path, batch_size=batch_size)
            return saved[batch_size]

        if "tflite" in formats:
            for mode in quantization:
                def build_tflite(record, mode=mode):
                    data = tflite.convert(saved_model(None), mode, representative_data=rep,
                                          layer_names=layer_names)
                    fill(record, data)
                    record.details.update(_io_record(tflite.io_details(data)))
                    verify(record, data, "tflite")
                    return {f"{name}_{mode}.tflite": data}

                produce("tflite", mode, [f"{name}_{mode}.tflite"], build_tflite)

        if "onnx" in formats:
            float_onnx = {}

            def build_onnx(record):
                data = onnx_export.convert(model, opset=onnx_opset)
                fill(record, data)
                record.details["opset"] = onnx_opset
                verify(record, data, "onnx")
                float_onnx["bytes"] = data  # int8 ONNX starts from a verified float model
                return {f"{name}_float32.onnx": data}

            produce("onnx", "float32", [f"{name}_float32.onnx"], build_onnx)
            if "int8" in quantization and rep is not None and "bytes" in float_onnx:
                def build_onnx_int8(record):
                    data = onnx_export.quantize_int8(float_onnx["bytes"], rep)
                    fill(record, data)
                    record.details.update(opset=onnx_opset, scheme="QDQ, per-channel weights, "
                                          "float32 input and output")
                    verify(record, data, "onnx")
                    return {f"{name}_int8.onnx": data}

                produce("onnx", "int8", [f"{name}_int8.onnx"], build_onnx_int8)
            elif "int8" in quantization and rep is None:
                report.notes.append("No int8 ONNX: it needs representative_data for "
                                    "onnxruntime static quantization.")
            elif "int8" in quantization:
                report.notes.append("No int8 ONNX: the float32 ONNX model it starts from "
                                    "failed.")

        if "micro" in formats:
            def build_micro(record):
                data = tflite.convert(saved_model(1), "int8", representative_data=rep,
                                      layer_names=layer_names)
                fill(record, data)
                io = tflite.io_details(data)
                record.details.update(_io_record(io))
                arena = micro.measure_arena(data, layer_names=layer_names)
                record.details["arena"] = arena.to_dict()
                # the arena was just checked in a fresh process: safe to run in this one
                verify(record, data, "micro", arena_size=arena.arena_size)
                from keras_distill import __version__

                cc, h = micro.c_source(data, name, arena=arena, io=io, version=__version__)
                record.details["identifiers"] = {"array": f"{ident}_model_data",
                                                 "length": f"{ident}_model_data_len",
                                                 "arena": f"{ident}_tensor_arena_size"}
                return {f"{ident}_model_data.h": h.encode(),
                        f"{ident}_model_data.cc": cc.encode()}

            ident = micro.sanitize_identifier(name)
            record = produce("micro", "int8",
                             [f"{ident}_model_data.h", f"{ident}_model_data.cc"], build_micro)
            if record.ok:
                report.notes.append(
                    f"TFLM tensor arena {record.details['arena']['arena_size']} bytes: "
                    f"{record.details['arena']['host']}.")

    if labels is not None:
        try:
            _write_files(out_dir, {LABELS: ("\n".join(labels) + "\n").encode()})
            report.labels_file = LABELS
        except OSError as exc:
            report.notes.append(f"labels.txt could not be written: {exc}")

    _write_report(report)
    if float32_errors:
        raise VerificationError("; ".join(float32_errors) + f". See {report.out_dir}/{MANIFEST}.",
                                report)
    return report


def _io_record(io):
    """Input/output details, plus flat ``input_scale`` ... keys for integer models."""
    record = dict(io)
    for kind in ("input", "output"):
        t = io[kind + "s"][0]
        if t["dtype"] in ("int8", "int16"):
            record[f"{kind}_scale"] = t["scale"]
            record[f"{kind}_zero_point"] = t["zero_point"]
    return record


def _write_report(report):
    """Write manifest.json and report.md; first drop any artifact whose files are missing."""
    for a in report.artifacts:
        if a.ok and not all(os.path.isfile(os.path.join(report.out_dir, f)) for f in a.files):
            a.status, a.error, a.path, a.files = "failed", "file missing after writing", None, []
    _write_files(report.out_dir, {
        MANIFEST: (json.dumps(report.to_dict(), indent=2) + "\n").encode(),
        REPORT: report.to_markdown().encode()})


def _write_files(out_dir, files):
    """Write ``{name: bytes}`` atomically, all or none (earlier ones removed on failure)."""
    written = []
    try:
        for file_name, data in files.items():
            _atomic_write(os.path.join(out_dir, file_name), data)
            written.append(file_name)
    except BaseException:
        for file_name in written:
            _remove_quietly(os.path.join(out_dir, file_name))
        raise


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _atomic_write(path, data):
    """Write ``data`` (bytes, or an iterable of bytes chunks) to ``path`` via a temporary file:
    all of it or nothing (``keras_distill.io.atomic_write_bytes``; its errors name the file)."""
    from keras_distill.io import atomic_write_bytes

    atomic_write_bytes(path, data)


def _prepare_out_dir(out_dir):
    out_dir = os.path.abspath(os.fspath(out_dir))
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=out_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        message = (f"export: cannot write to out_dir={out_dir!r} ({exc.strerror or exc}); pass "
                   "a writable folder as out_dir.")
        raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc
    return out_dir


def _as_choices(value, arg, allowed):
    values = (value,) if isinstance(value, str) else tuple(value or ())
    if not values:
        raise ValueError(f"{arg} is empty; choose from {allowed}.")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"Unknown {arg} {bad}; expected any of {allowed}.")
    return tuple(dict.fromkeys(v for v in allowed if v in values))


def _check_model(model):
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"export expects a keras.Model; got {type(model).__name__}.")
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise ValueError(f"Model {model.name!r} has no defined inputs/outputs; export a "
                         "Functional or Sequential model built on a keras.Input.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"export supports one input and one output; model {model.name!r} has "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    return {"name": model.name, "params": int(model.count_params()),
            "input_shape": list(model.inputs[0].shape),
            "output_shape": list(model.outputs[0].shape)}


def _check_name(name, model):
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", model.name) or "model"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"name={name!r} is not a valid base name; use letters, digits, '_', "
                         "'.' and '-' (no path separators), starting with a letter, digit or "
                         "'_'.")
    return name


def _check_labels(labels, model_info):
    if labels is None:
        return None
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of class names, not one string.")
    labels = [str(label) for label in labels]
    if any("\n" in label for label in labels):
        raise ValueError("labels must not contain newlines (labels.txt has one per line).")
    classes = model_info["output_shape"][-1]
    if classes is not None and len(labels) != classes:
        raise ValueError(f"labels has {len(labels)} names but the model outputs {classes} "
                         "classes.")
    return labels


def _as_array(data, arg, input_shape):
    """Representative data as one array ``(N, *input_shape)``, or ``None``."""
    if data is None:
        return None
    if callable(data) and not hasattr(data, "shape"):
        data = data()
    if not isinstance(data, np.ndarray) and not hasattr(data, "__array__"):
        parts = []
        for item in data:  # tf.data.Dataset or an iterable of arrays / (x, y) pairs
            if isinstance(item, (tuple, list)):
                item = item[0]
            item = np.asarray(item)
            parts.append(item[None] if item.shape == tuple(input_shape) else item)
        data = np.concatenate(parts) if parts else np.zeros((0, *input_shape), np.float32)
    try:
        data = np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg} cannot be read as a numeric array ({exc}); pass a NumPy array "
                         f"of shape (N, *{tuple(input_shape)}).") from None
    if data.dtype.kind not in "fiub":
        raise ValueError(f"{arg} has dtype {data.dtype}; pass numbers: a float or integer "
                         f"array of shape (N, *{tuple(input_shape)}).")
    if data.ndim != len(input_shape) + 1 or tuple(data.shape[1:]) != tuple(input_shape):
        raise ValueError(f"{arg} has shape {data.shape}; expected (N, *{tuple(input_shape)}) "
                         "to match the model input.")
    if len(data) == 0:
        raise ValueError(f"{arg} is empty; pass some training inputs.")
    from keras_distill.data import check_finite

    check_finite(data, arg, "exporting")
    return data


def _check_eval_data(eval_data, input_shape, num_classes=None):
    if eval_data is None:
        return None, None
    if isinstance(eval_data, (tuple, list)) and len(eval_data) in (1, 2):
        x = eval_data[0]
        y = eval_data[1] if len(eval_data) == 2 else None
    else:
        x, y = eval_data, None
    x = _as_array(x, "eval_data x", input_shape)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
            y = np.argmax(y, -1)
        if y.dtype.kind not in "fiub":
            raise ValueError(f"eval_data labels hold {y.dtype} values; pass integer class "
                             "indices.")
        y = y.reshape(-1)
        top = num_classes - 1 if num_classes else None
        if len(y) and (not np.isfinite(y).all() or (y != np.round(y)).any() or y.min() < 0
                       or (top is not None and y.max() > top)):
            raise ValueError(
                "eval_data labels must be whole class indices in "
                f"[0, {top if top is not None else 'classes - 1'}]; found values from "
                f"{np.nanmin(y)} to {np.nanmax(y)}. Fix the labels (one per sample).")
        y = y.astype(np.int64)
        if len(y) != len(x):
            raise ValueError(f"eval_data has {len(x)} inputs but {len(y)} labels.")
    return x, y


def _num_classes(model):
    try:
        shape = model.output_shape
        return int(shape[-1]) if shape and shape[-1] and shape[-1] > 1 else None
    except (AttributeError, ValueError, TypeError, RuntimeError):
        return None


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


_FAKE_QUANT_OPS = {"FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel",
                   "FakeQuantWithMinMaxArgs"}


def _is_quantize_aware(model, input_shape, input_dtype):
    """True if ``keras_distill.quantize.is_quantize_aware`` says so, or the traced model
    contains fake-quant ops (whose ranges let the converter skip calibration)."""
    try:
        from keras_distill.quantize import is_quantize_aware

        if is_quantize_aware(model):
            return True
    except (ImportError, AttributeError):
        pass
    import tensorflow as tf

    try:
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec((None, *input_shape), input_dtype))
    except Exception:  # noqa: BLE001 - a model that does not trace will not convert either
        return False
    return any(op.type in _FAKE_QUANT_OPS for op in fn.graph.get_operations())


def _versions(formats):
    import importlib.metadata as md

    packages = ["tensorflow", "keras", "ai-edge-litert"]
    if "onnx" in formats:
        packages += ["tf2onnx", "onnx", "onnxruntime"]
    if "micro" in formats:
        packages += ["tflite-micro"]
    versions = {}
    for package in packages:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


class _CallableModule(types.ModuleType):
    """Lets ``keras_distill.export(...)`` call :func:`export` even when the attribute is this
    subpackage: importing ``keras_distill.export.<anything>`` before the package root's lazy
    ``export`` attribute was read binds the subpackage, not the function, to that name."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
