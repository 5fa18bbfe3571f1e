"""The steps of an export: convert one artifact, write its files, verify it once from disk.

:func:`produce` is the one place an artifact is made: ``build`` converts (in memory), the
files are written atomically, then the main file is read back and run once in its runtime
(``keras_distill.verify.verify_file``) against the Keras model's outputs and, optionally, a
reference's (the teacher's). A failure at any step leaves no file of the artifact behind and
is recorded on the :class:`~keras_distill.export.artifacts.Artifact`. A micro artifact made
where tflite-micro is not installed is written, with an estimated arena, and not run: its
status is ``"unverified"``, with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
import time
import warnings

import numpy as np

from keras_distill import io, isolation
from keras_distill.export import causes
from keras_distill.export.artifacts import Artifact, VerificationError
from keras_distill.verify import KEYS
from keras_distill.verify.litert import UnsupportedOpError
from keras_distill.verify.per_output import reference_keys

#: A float32 artifact may differ from Keras by at most this much (max abs error on outputs).
FLOAT32_TOLERANCE = 1e-4
#: What is not known of a micro artifact made without tflite-micro (``metrics["unchecked"]``).
MICRO_UNCHECKED = ("not run in TFLM: its outputs, whether TFLM has a kernel for each of its "
                   "ops, and its tensor arena (estimated from its tensors) are unchecked")
#: Layer types whose conversion needs a static batch dimension.
RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D",
                    "ConvLSTM2D", "ConvLSTM3D")
#: The tasks that can crash natively, run in keras-distill's worker process
#: (:mod:`keras_distill.isolation`); module attributes so that a test can point one at a
#: function that crashes.
CONVERT = "keras_distill.export.tflite:convert"
VERIFY = "keras_distill.verify:verify_file"
ONNX_QUANTIZE = "keras_distill.export.onnx:quantize_int8"


@dataclasses.dataclass
class Subject:
    """A Keras model being exported, and what its artifacts are compared with.

    Attributes:
        model: the Keras model.
        name: base name of its files.
        keras_outputs: its outputs on the verification inputs (``{name: array}`` for a
            model of several outputs).
        calibration: representative inputs for int8 (``None``: quantization-aware).
        qat: the quantization-aware twin of the main model (``export(qat_model=...)``).
        sample_inputs: inputs on which its lowered copy is checked against it (``None``:
            random ones).
    """

    model: object
    name: str
    keras_outputs: np.ndarray | dict | None
    calibration: np.ndarray | None
    qat: bool = False
    sample_inputs: np.ndarray | None = None
    lowering_skipped: str | None = None  # why the lowered copy was not used (recorded)
    target: object = None  # a keras_distill.targets.Target its micro artifacts must fit

    @functools.cached_property
    def quantize_aware(self):
        """Its fake-quant ops carry the int8 ranges (found by tracing: asked only when
        needed)."""
        from keras_distill.export import checks, tflite

        shape, dtype = tflite.input_spec(self.model)
        return checks.is_quantize_aware(self.model, shape, dtype)

    @functools.cached_property
    def tflite_batch(self):
        """The batch size of its ``.tflite`` files: ``None`` (dynamic), or 1 for a model with a
        rolled recurrence (with a dynamic batch the converter leaves TensorList ops that TFLite
        has no builtin for; with a static one the recurrence is a WHILE loop of builtin ops).
        Recurrent layers over short sequences are unrolled by the lowering: dynamic batch."""
        return 1 if self.rolled_recurrent else None

    @functools.cached_property
    def rolled_recurrent(self):
        """The type names of the recurrent layers that the converted model still runs as a
        loop (not unrolled by :mod:`keras_distill.export.lowering`)."""
        from keras_distill.graph import all_layers

        model, _ = self.lowered
        return sorted({type(layer).__name__ for layer in all_layers(model)
                       if type(layer).__name__ in RECURRENT_LAYERS and not _unrolled(layer)})

    @property
    def tflite_calibration(self):
        """The calibration inputs in the dtype of the converted (lowered) model's input."""
        from keras_distill.export import tflite

        if self.calibration is None:
            return None
        _, dtype = tflite.input_spec(self.lowered[0])
        return np.asarray(self.calibration).astype(dtype, copy=False)

    @functools.cached_property
    def layer_types(self):
        from keras_distill.graph import all_layers

        return sorted({type(layer).__name__ for layer in all_layers(self.model)})

    @functools.cached_property
    def lowered(self):
        """``(model, replaced)``: the model its ``.tflite`` files are converted from, a copy
        whose layers that int8 TFLite or TFLite Micro cannot run are rewritten with ops they
        can (checked against the model in float; :mod:`keras_distill.export.lowering`), and
        the names of those layers (``[]``: the model itself)."""
        from keras_distill.export.lowering import quantizable_copy

        try:
            return quantizable_copy(self.model, inputs=self.sample_inputs)
        except Exception as exc:  # noqa: BLE001 - the model itself still converts (or says why)
            self.lowering_skipped = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"export: {self.name}: converting the model as it is, without "
                          f"lowering its layers for int8 / TFLite Micro: {exc}", stacklevel=2)
            return self.model, []

    @functools.cached_property
    def layer_names(self):
        from keras_distill.graph import all_layers

        return [layer.name for layer in all_layers(self.model)]


@dataclasses.dataclass
class Verification:
    """What every artifact runs on: inputs, optional labels and reference outputs, and the
    kind of each output (one kind, or ``{output name: kind}`` for several outputs); labels and
    reference outputs are then dicts by output name too."""

    x: np.ndarray
    y: np.ndarray | dict | None
    source: str
    reference_outputs: np.ndarray | dict | None = None
    kind: str | dict = "multiclass"


class Workspace:
    """A temporary folder of SavedModels, one per (model, batch size), made on first use."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="keras_distill_export_")
        self._saved = {}

    def saved_model(self, subject, batch_size):
        from keras_distill.export import tflite

        key = (subject.name, batch_size)
        if key not in self._saved:
            path = os.path.join(self._tmp.name, f"{subject.name}_b{batch_size or 'dyn'}")
            model, _ = subject.lowered
            self._saved[key] = tflite.saved_model(model, path, batch_size=batch_size)
        return self._saved[key]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()
        return False


def produce(fmt, mode, subject, builder, out_dir, verification):
    """Make one artifact with ``builder = (file names, build)``: ``build() -> ({file name:
    bytes}, model_bytes, details)``; write the files, verify the main (last) file from disk.

    Never raises for the artifact's own failure: the returned :class:`Artifact` says
    ``status="failed"`` with the error, and no file of its names is left in ``out_dir`` (not
    even one of an earlier export, which would sit next to a manifest saying it failed). An
    artifact whose runtime is not installed (micro without tflite-micro) is written and
    checked on disk but not run: ``status="unverified"``, ``metrics`` say why, with a warning.
    """
    record = Artifact(format=fmt, quantization=mode, qat=subject.qat)
    start = time.perf_counter()
    names, build = builder
    try:
        files, model_bytes, details = build()
        assert list(files) == names, (list(files), names)
        record.details.update(details)
        io.write_files(out_dir, files)
        record.files, record.path = names, names[-1]
        not_run = _runtime_missing(record)
        if not_run:
            _record_unverified(record, model_bytes, out_dir, not_run)
        else:
            _verify(record, subject, model_bytes, out_dir, verification)
    except Exception as exc:  # noqa: BLE001 - one failed artifact must not stop the others
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        record.metrics, record.path, record.files = {}, None, []
        record.size_bytes = record.sha256 = None
        for name in names:
            io.remove_quietly(os.path.join(out_dir, name))
        if isinstance(exc, isolation.NativeCrash):
            record.details["crash"] = exc.to_dict()
        if not isinstance(exc, VerificationError):
            warnings.warn(f"export: {fmt} {mode} failed: {record.error}", stacklevel=4)
    if record.status == "unverified":
        warnings.warn(f"export: {fmt} {mode} written but not verified ("
                      f"{record.metrics['unchecked']}): {record.metrics['reason']}.",
                      stacklevel=4)
    record.seconds = round(time.perf_counter() - start, 3)
    return record


def convert(subject, saved_model_dir, mode):
    """``tflite.convert`` in the worker process: the converter and its calibrator can crash
    natively (they have segfaulted on an LSTM at batch 1)."""
    from keras_distill.registry import CALIBRATED_MODES

    calibrated = mode in CALIBRATED_MODES and subject.calibration is not None
    return isolation.call(
        CONVERT, saved_model_dir, mode, representative_data=subject.tflite_calibration,
        layer_names=subject.layer_names,
        stage=f"TFLite {mode} conversion" + (" and calibration" if calibrated else ""),
        remedy=_crash_remedy(subject, "the TFLite converter", calibrated=calibrated))


def _unrolled(layer):
    inner = [getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)]
    inner = [rnn for rnn in inner if rnn is not None] or [layer]
    return all(getattr(rnn, "unroll", False) for rnn in inner)


def _crash_remedy(subject, what, *, calibrated=False):
    from keras_distill.export.lowering import UNROLL_MAX_STEPS

    if subject.rolled_recurrent and calibrated:
        return (f"TensorFlow's int8 calibrator crashes on the loop of a rolled "
                f"{', '.join(subject.rolled_recurrent)} layer (tensorflow/tensorflow#41305, "
                f"still so in TF 2.21). The export unrolls recurrent layers over sequences of "
                f"at most {UNROLL_MAX_STEPS} steps, which then calibrate; this one is longer or "
                f"of unknown length. The float32, float16 and dynamic artifacts (int8 weights, "
                f"float activations) are made without the calibrator; TensorFlow Lite Micro "
                f"needs the int8 model, so there is none for this model.")
    return (f"The model's layer types: {', '.join(subject.layer_types)}. The crash is in "
            f"{what}, not in your code; for this artifact try another quantization mode, or "
            f"find the layer that crashes it by exporting a model with fewer of these layer "
            f"types.")


def _runtime_missing(record):
    """Why ``record`` cannot be run here (its arena was estimated: no TFLM), or ``None``."""
    arena = record.details.get("arena") or {}
    return arena.get("reason") if arena.get("estimated") else None


def _record_unverified(record, model_bytes, out_dir, why):
    """What can be known of an artifact without its runtime: its bytes read back from disk,
    size, hash, ops; ``status="unverified"`` and ``metrics`` saying it was not run and why."""
    from keras_distill.verify.micro import read_c_source

    on_disk, _ = read_c_source(os.path.join(out_dir, record.path))
    if bytes(on_disk) != bytes(model_bytes):
        raise RuntimeError(f"{record.path} on disk does not hold the converted model.")
    record.size_bytes = len(model_bytes)
    record.sha256 = hashlib.sha256(model_bytes).hexdigest()
    record.status = "unverified"
    record.metrics = {"verified": False, "reason": why, "unchecked": MICRO_UNCHECKED}
    record.details.setdefault("input_dtype", record.details["inputs"][0]["dtype"])
    record.details.setdefault("output_dtype", record.details["outputs"][0]["dtype"])
    record.details.update(_inspect(record.format, model_bytes))


def _verify(record, subject, model_bytes, out_dir, verification):
    """Run the file just written, once; record metrics and what a deployment needs."""
    arena = record.details.get("arena", {}).get("arena_size")
    runtime = {"tflite": "LiteRT", "onnx": "ONNX Runtime", "micro": "TensorFlow Lite Micro"}
    result, on_disk = isolation.call(
        VERIFY, os.path.join(out_dir, record.path), verification.x, verification.y,
        subject.keras_outputs, kind=verification.kind,
        reference_outputs=verification.reference_outputs, arena_size=arena,
        stage=f"Running the {record.quantization} {record.format} artifact in "
              f"{runtime[record.format]}",
        remedy=_crash_remedy(subject, "the runtime"))
    if bytes(on_disk) != bytes(model_bytes):
        raise RuntimeError(f"{record.path} on disk does not hold the converted model.")
    record.size_bytes = len(model_bytes)
    record.sha256 = hashlib.sha256(model_bytes).hexdigest()
    record.metrics = {k: result[k] for k in metric_keys(verification.kind)}
    record.details.setdefault("input_dtype", result["input_dtype"])
    record.details.setdefault("output_dtype", result["output_dtype"])
    record.details.update(_inspect(record.format, model_bytes))
    # `not <=` so that a NaN error fails the check too.
    if record.quantization == "float32" and not result["max_abs_error"] <= FLOAT32_TOLERANCE:
        message = (f"float32 {record.format} artifact differs from Keras by max abs error "
                   f"{result['max_abs_error']:.3g} > {FLOAT32_TOLERANCE:g} on "
                   f"{verification.source}")
        if record.format == "onnx" and subject.quantize_aware:
            message += (" (the model is quantization-aware, and tf2onnx converts its "
                        "fake-quant ops differently from TensorFlow: export ONNX from the "
                        "float model, or drop 'onnx' from formats)")
        raise VerificationError(message)


def metric_keys(kind):
    """The keys of an artifact's ``metrics`` for a model of ``kind`` (one kind, or a dict by
    output name: then the scores of each output are under ``metrics["outputs"][name]``)."""
    if isinstance(kind, dict):
        return ("runtime", "n_samples", "max_abs_error", "mean_abs_error", "outputs",
                "latency_ms_median")
    return ("runtime", "n_samples", *KEYS[kind], *reference_keys(kind), "latency_ms_median")


def _inspect(fmt, model_bytes):
    """Size compressed, ops, signatures and the TFLM op resolver of an artifact's bytes."""
    from keras_distill.compress import gzip_size

    details = {"gzip_size_bytes": gzip_size(model_bytes)}
    if fmt in ("tflite", "micro"):
        from keras_distill.export import tflite

        details["ops"] = sorted({op["op"] for op in tflite.list_ops(model_bytes)})
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        details["signatures"] = Interpreter(
            model_content=bytes(model_bytes)).get_signature_list()
    if fmt == "micro":
        from keras_distill.export.micro import resolver_method

        details["micro_op_resolver"] = [resolver_method(op) for op in details["ops"]]
    return details


def io_record(io_details, output_names=None):
    """Input/output details, plus flat ``input_scale`` ... keys for integer models (of the
    first output); for a model of several outputs also ``output_names`` (the Keras name of
    each entry of ``outputs``) and, for integer models, ``output_scales`` /
    ``output_zero_points`` by output name."""
    record = dict(io_details)
    for kind in ("input", "output"):
        t = io_details[kind + "s"][0]
        if t["dtype"] in ("int8", "int16"):
            record[f"{kind}_scale"] = t["scale"]
            record[f"{kind}_zero_point"] = t["zero_point"]
    outputs = io_details["outputs"]
    if output_names is not None and len(outputs) > 1:
        record["output_names"] = list(output_names)
        if outputs[0]["dtype"] in ("int8", "int16"):
            record["output_scales"] = {n: t["scale"] for n, t in zip(output_names, outputs)}
            record["output_zero_points"] = {n: t["zero_point"]
                                            for n, t in zip(output_names, outputs)}
    return record


def _output_names(model_bytes):
    from ai_edge_litert.interpreter import Interpreter

    from keras_distill.verify.litert import output_names

    return output_names(Interpreter(model_content=bytes(model_bytes)))


# ------------------------------------------------------------------------------------------
# builders: each returns ({file name: bytes}, model_bytes, details)
# ------------------------------------------------------------------------------------------


def tflite_builder(subject, mode, workspace):
    return _tflite_file(subject, mode, lambda: convert(
        subject, workspace.saved_model(subject, subject.tflite_batch), mode))


def tflite_bytes_builder(subject, mode, model_bytes, details=None):
    """A ``.tflite`` made elsewhere (the model an accuracy budget chose), written and recorded
    as :func:`tflite_builder` writes a converted one, with ``details`` added."""
    return _tflite_file(subject, mode, lambda: bytes(model_bytes), details)


def _tflite_file(subject, mode, model_bytes, extra=None):
    """``(file names, build)`` of ``<name>_<mode>.tflite`` holding ``model_bytes()``."""
    name = f"{subject.name}_{mode}.tflite"

    def build():
        from keras_distill.export import tflite

        data = model_bytes()
        details = io_record(tflite.io_details(data), _output_names(data))
        return {name: data}, data, {**details, **_lowered_record(subject), **(extra or {})}
    return [name], build


def _lowered_record(subject):
    """``{"lowered": [layer names]}`` when the file comes from the lowered copy,
    ``{"lowering_skipped": why}`` when the lowering failed, else ``{}``."""
    _, replaced = subject.lowered
    if subject.lowering_skipped:
        return {"lowering_skipped": subject.lowering_skipped}
    return {"lowered": list(replaced)} if replaced else {}


def onnx_builder(subject, opset):
    name = f"{subject.name}_float32.onnx"

    def build():
        from keras_distill.export import onnx as onnx_export

        data = onnx_export.convert(subject.model, opset=opset)
        return {name: data}, data, {"opset": opset}
    return [name], build


def onnx_int8_builder(subject, float_path, opset):
    name = f"{subject.name}_int8.onnx"

    def build():
        with open(float_path, "rb") as f:  # the verified float model, as written
            float_bytes = f.read()
        data = isolation.call(ONNX_QUANTIZE, float_bytes, subject.calibration,
                              stage="ONNX int8 quantization",
                              remedy=_crash_remedy(subject, "ONNX Runtime's quantizer"))
        return ({name: data}, data, {"opset": opset, "scheme": "QDQ, per-channel weights, "
                                                           "float32 input and output"})
    return [name], build


def micro_builder(subject, workspace):
    """The int8, batch-1 model as C source, with its arena measured in TFLM; where tflite-micro
    is not installed, with its arena estimated from the model's tensors (and the artifact
    left unverified by :func:`produce`)."""
    def converted():
        return convert(subject, workspace.saved_model(subject, 1), "int8")
    return _micro_files(subject, subject.name, converted)


def micro_bytes_builder(subject, name, model_bytes):
    """A ``.tflite`` made elsewhere (the int8 model with float layers of an accuracy budget)
    as C source for TFLM, as :func:`micro_builder` writes it."""
    return _micro_files(subject, name, lambda: bytes(model_bytes))


def _micro_files(subject, name, model_bytes):
    """``(file names, build)`` of the C source of ``model_bytes()`` named ``name``."""
    from keras_distill.export import micro

    ident = micro.sanitize_identifier(name)
    names = [f"{ident}_model_data.h", f"{ident}_model_data.cc"]

    def build():
        from keras_distill import __version__
        from keras_distill.export import tflite
        from keras_distill.verify import micro as micro_runtime

        data = model_bytes()
        io_details = tflite.io_details(data)
        outputs = _output_names(data)
        if micro_runtime.runtime_available():
            try:
                arena = micro.measure_arena(data, layer_names=subject.layer_names)
            except UnsupportedOpError as exc:  # the cause and remedy from export's table
                raise UnsupportedOpError(
                    causes.message(exc.op, "micro", layer=exc.layer, detail=exc.detail),
                    op=exc.op, layer=exc.layer, mode="micro", detail=exc.detail) from exc
        else:  # tflite-micro has wheels for Linux x86-64 only
            arena = micro.estimate_arena(data)
        listed = tflite.list_ops(data)
        ops = [op["op"] for op in listed]
        cc, h = micro.c_source(data, name, arena=arena, io=io_details,
                               version=__version__, output_names=outputs, ops=ops)
        details = {**io_record(io_details, outputs), "arena": arena.to_dict(),
                   "identifiers": {"array": f"{ident}_model_data",
                                   "length": f"{ident}_model_data_len",
                                   "arena": f"{ident}_tensor_arena_size"},
                   "macs": micro.macs(listed), **_lowered_record(subject)}
        if subject.target is not None:
            from keras_distill import targets

            details["target"] = targets.fit({"arena_size": arena.arena_size,
                                             "model_bytes": len(data), "ops": ops},
                                            subject.target)
            details["latency_estimate"] = _latency_estimate(listed, subject.target)
        return dict(zip(names, (h.encode(), cc.encode()))), data, details
    return names, build


def _latency_estimate(listed, target):
    """:func:`keras_distill.footprint.latency` on ``target``; ``None`` for a device with no
    known core and clock (one of your own)."""
    from keras_distill import footprint

    try:
        return footprint.latency(listed, target)
    except ValueError:
        return None
