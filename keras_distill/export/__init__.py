"""Export a trained Keras model to TFLite, ONNX and TensorFlow Lite Micro, verified in each runtime.

One public function, :func:`export`, and its result, :class:`ExportReport`. The converters live
in ``tflite.py``, ``onnx.py`` and ``micro.py``; the argument checks in ``checks.py``; making one
artifact (convert, write, verify once from disk) in ``steps.py``; the runtimes that run each
artifact in ``keras_distill.verify``.

Guarantees:

* Each artifact is written to a temporary file in ``out_dir`` and renamed into place, so a crash
  or a full disk never leaves a half-written artifact.
* A failure in one artifact leaves the others, and is recorded in ``manifest.json`` with its
  error; the manifest never lists a file that is not on disk.
* Every artifact is run once in its real runtime (LiteRT, ONNX Runtime, the TFLM interpreter),
  from the file written to disk. A float32 artifact that differs from Keras by more than
  ``1e-4`` is a bug, not a row: :class:`VerificationError` is raised (after the manifest is
  written).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import types

import numpy as np

from keras_distill import io
from keras_distill.backend import require_tensorflow
from keras_distill.export import checks, steps
from keras_distill.export.artifacts import Artifact, ExportReport, VerificationError
from keras_distill.export.budget import BudgetResult, int8_within_budget, keep_float
from keras_distill.export.diagnose import Diagnosis, LayerDiagnosis, diagnose
from keras_distill.export.micro import ArenaMeasurement  # noqa: F401  (re-exported)
from keras_distill.export.steps import FLOAT32_TOLERANCE
from keras_distill.export.tflite import UnsupportedOpError
from keras_distill.registry import (
    CALIBRATED_MODES,
    DEFAULT_QUANTIZATION,
    FORMATS,
    QUANTIZATION_MODES,
)

__all__ = [
    "DEFAULT_QUANTIZATION",
    "FLOAT32_TOLERANCE",
    "FORMATS",
    "QUANTIZATION_MODES",
    "Artifact",
    "BudgetResult",
    "Diagnosis",
    "ExportReport",
    "LayerDiagnosis",
    "UnsupportedOpError",
    "VerificationError",
    "diagnose",
    "export",
    "int8_within_budget",
    "keep_float",
]

#: Calibration samples used for int8 by default.
DEFAULT_CALIBRATION_SAMPLES = 300
MANIFEST = "manifest.json"
REPORT = "report.md"
LABELS = "labels.txt"
QAT_NO_ONNX = ("No ONNX for the QAT model: tf2onnx converts its fake-quant ops differently "
               "from TensorFlow and the result fails verification; the .onnx files are those "
               "of the float model.")


def export(model, out_dir="exported", *, name=None, formats=FORMATS,
           quantization=DEFAULT_QUANTIZATION, representative_data=None, eval_data=None,
           labels=None, task="auto", onnx_opset=17,
           calibration_samples=DEFAULT_CALIBRATION_SAMPLES, reference_outputs=None,
           qat_model=None, write_report=True, target=None, max_accuracy_drop=None,
           budget_data=None):
    """Export ``model`` to every requested format and quantization, verified in its runtime.

    Args:
        model: a trained single-input ``keras.Model`` (a student: no teacher inside) with
            one output or several (a dict or list of outputs: every artifact keeps all of
            them, named as the Keras outputs). Each output holds logits (classification) or
            values (regression), possibly per position (``(batch, steps, classes)``).
        out_dir: output folder, created if needed.
        name: base name of the files (letters, digits, ``_ . -``); default the model's name.
        formats: any of ``"tflite"`` (one ``<name>_<quantization>.tflite`` per mode),
            ``"onnx"`` (``<name>_float32.onnx``, plus ``<name>_int8.onnx`` when ``"int8"`` is
            requested and calibration data is given) and ``"micro"`` (the int8 model at batch
            size 1 as ``<name>_model_data.cc`` / ``.h``, with its measured tensor arena).
        quantization: TFLite modes, any of ``"float32"``, ``"float16"``, ``"dynamic"``,
            ``"int8"``, ``"int16x8"`` (default: all but ``"int16x8"``, which is opt-in).
        representative_data: float inputs ``(N, *input_shape)`` (array, ``tf.data.Dataset`` of
            ``x`` or ``(x, y)``, or an iterable of arrays) to calibrate ``int8``, ``int16x8``
            and ``micro``; ``calibration_samples`` of them are drawn (a lazy array's are read
            alone; from a dataset, the first ``calibration_samples``, no more is read). Not
            needed for a quantization-aware model.
        eval_data: ``(x, y)`` (or ``x`` alone) to verify every artifact on: the scores of
            the output's kind (multiclass: accuracy, top-1 agreement and max abs error against
            Keras; see ``keras_distill.verify.scores``), latency. ``y`` holds labels of the
            kind: class indices or one-hot rows (multiclass), 0/1 (binary), multi-hot rows
            (multi-label), float targets of the output's shape (regression); a dict by output
            name for several outputs. Without it, artifacts are checked against Keras on
            representative data or random inputs.
        labels: class names, written one per line to ``labels.txt`` (one per unit; a binary
            output takes one or two); for several outputs a dict of them by output name,
            written to ``labels_<output>.txt``.
        task: what each output holds: ``"auto"`` (detected from ``eval_data``'s labels by
            ``keras_distill.outputs.resolve``; a one-output model that nothing tells about,
            with two or more units, is scored as ``"multiclass"``), one of
            ``"multiclass"``, ``"binary"``, ``"multilabel"``, ``"regression"``, or a dict of
            them by output name.
        onnx_opset: ONNX opset, 9 to 18 (default 17).
        calibration_samples: how many representative samples calibrate int8 (default 300).
        reference_outputs: another model's outputs on the ``eval_data`` inputs (e.g. the
            teacher's; a dict by output name for several outputs): each artifact's agreement
            with them is measured in the same run (``metrics["agreement_with_reference"]``;
            for regression also ``metrics["mean_abs_error_with_reference"]``).
        qat_model: the quantization-aware twin of ``model``
            (``keras_distill.compress.quantize_aware``, fine-tuned): its int8 artifacts
            (``<name>_qat_int8.tflite`` and ``<name>_qat_model_data.cc``, for the requested
            ones of ``tflite`` / ``micro``) take their scales from its fake-quant ranges.
        write_report: write ``manifest.json`` and ``report.md`` (``False`` when the caller
            writes one manifest for more than this export, as ``keras-distill run`` does).
        target: a device (a name of ``keras_distill.targets.TARGETS``, or a ``Target``): each
            micro artifact records whether its measured arena and model fit its RAM and flash
            (``details["target"]``, with the margins).
        max_accuracy_drop: the most the int8 model may lose against the float model (points
            of accuracy, 0.01 = one point; for regression the relative increase of the MAE),
            measured in LiteRT on ``budget_data``. When full int8 loses more, the layers it
            hurts most are kept in float one at a time (``export.int8_within_budget``), then
            int16x8 is tried, and the model that meets the budget is written as
            ``<name>_int8_mixed.tflite`` (or ``<name>_int16x8.tflite``), verified on
            ``eval_data`` like every artifact; with ``"micro"`` also as C source for TFLite
            Micro (``<name>_int8_mixed_model_data.cc``, run there like every micro artifact,
            or failed with why it cannot run). The int8 artifact's ``details["budget"]``
            records every model tried. Needs
            ``"tflite"`` with ``"int8"`` and ``representative_data``; one output.
        budget_data: ``(x, y)`` on which the budget is measured: validation data, not
            ``eval_data`` (the test set, which would then pick the model). Default: the
            representative data, labelled by the float model (the drop is then the share
            of inputs int8 changes, never less than the accuracy it loses; regression needs
            ``(x, y)``).

    Returns:
        An :class:`ExportReport`, also written as ``manifest.json`` and ``report.md``. Each
        artifact's ``metrics`` hold the scores of the output's kind (flat keys); for a model
        of several outputs ``metrics["outputs"][name]`` holds each output's scores, and
        ``metrics["max_abs_error"]`` / ``["mean_abs_error"]`` are over all of them. An
        artifact that fails (an op int8 or TFLM cannot run, a converter error) does not stop
        the others: it is recorded with ``status="failed"`` and its ``error``, a warning is
        issued, and no file of its name is left in ``out_dir``. ``report.ok`` tells whether
        everything succeeded.

    Raises:
        ValueError: a bad argument, labels that do not fit the output's kind, an output whose
            kind cannot be told (pass ``task``), or int8 / int16x8 / micro without
            ``representative_data`` for a model that is not quantization-aware.
        OSError: ``out_dir`` cannot be created or written.
        VerificationError: a float32 artifact differs from Keras by more than 1e-4.

    Example:
        >>> from keras_distill import export
        >>> report = export(student, "exported", representative_data=data.x_train,
        ...                 eval_data=(data.x_test, data.y_test), labels=data.class_names)
        ... # doctest: +SKIP
        >>> print(report.to_markdown())  # doctest: +SKIP
    """
    formats = checks.as_choices(formats, "formats", FORMATS)
    quantization = checks.as_choices(quantization, "quantization", QUANTIZATION_MODES)
    model_info = checks.check_model(model)
    require_tensorflow("export")
    name = checks.check_name(name, model)
    if "onnx" in formats:
        from keras_distill.export import onnx as onnx_export

        onnx_export.check_opset(onnx_opset)
    if isinstance(calibration_samples, bool) or not isinstance(calibration_samples, int) or \
            calibration_samples < 1:
        raise ValueError(f"calibration_samples must be a positive int; got "
                         f"{calibration_samples!r}.")
    from keras_distill import isolation, precision

    isolation.warm_up()  # the worker imports TensorFlow while the model is traced below
    model = precision.float32_model(model)  # a mixed-precision model: its float32 copy
    kinds = checks.resolve_outputs(model, task, checks.split_eval_data(eval_data)[1])
    labels = checks.check_labels(labels, model_info, kinds)
    subject, verification = _subject(model, name, formats, quantization, representative_data,
                                     eval_data, calibration_samples, reference_outputs, kinds)
    if target is not None:
        from keras_distill import targets

        subject.target = targets.get(target)  # an unknown name fails here, before any work
    qat = None if qat_model is None else _qat_subject(qat_model, name, verification,
                                                      subject.calibration)
    budget = None if max_accuracy_drop is None else checks.check_budget(
        max_accuracy_drop, budget_data, formats, quantization, subject, kinds)
    budget_skipped = max_accuracy_drop is not None and budget is None

    out_dir = io.output_folder(out_dir)
    if write_report:  # an old manifest must not outlive files replaced below
        for stale in (MANIFEST, REPORT):
            io.remove_quietly(os.path.join(out_dir, stale))
    report = _new_report(subject, name, out_dir, model_info, formats, quantization,
                         onnx_opset, verification, qat)
    with steps.Workspace() as workspace:
        _produce_all(report, subject, formats, quantization, onnx_opset, workspace,
                     verification)
        if budget is not None:
            _produce_budget(report, subject, formats, verification, budget)
        elif budget_skipped:
            import warnings

            message = (f"max_accuracy_drop is not applied: it supports a model with one "
                       f"output, and this one has {len(kinds)}; the int8 artifact is full "
                       f"int8 (drop max_accuracy_drop, or export each output's model alone).")
            report.notes.append(message)
            warnings.warn(f"export: {message}", stacklevel=2)
        if qat is not None:
            _produce_qat(report, qat, formats, workspace, verification)
    if labels is not None:
        _write_labels(report, labels)
    if write_report:
        write_report_files(report)
    float32_errors = [a.error for a in report.failed if a.quantization == "float32"
                      and (a.error or "").startswith("VerificationError")]
    if float32_errors:
        raise VerificationError("; ".join(e.split(": ", 1)[1] for e in float32_errors)
                                + (f". See {report.out_dir}/{MANIFEST}." if write_report
                                   else "."), report)
    return report


def _subject(model, name, formats, quantization, representative_data, eval_data,
             calibration_samples, reference_outputs, kinds):
    """The checked inputs: the model to export and what its artifacts are verified on."""
    from keras_distill.export import tflite

    input_shape, input_dtype = tflite.input_spec(model)
    rep = checks.as_array(representative_data, "representative_data", input_shape,
                          limit=calibration_samples)
    if rep is not None:
        from keras_distill.data import representative_samples

        rep = representative_samples(rep, n=calibration_samples).astype(input_dtype)
    names = [o.name for o in kinds]
    x_eval, y_eval = checks.check_eval_data(
        eval_data, input_shape, outputs=kinds,
        output_shapes=dict(zip(names, (tuple(t.shape) for t in model.outputs))))
    needs_integer = _integer_artifacts(formats, quantization)
    subject = steps.Subject(model, name, None, rep)
    if needs_integer and rep is None and not subject.quantize_aware:
        raise ValueError(
            f"{' and '.join(needs_integer)} export needs calibration data: pass "
            "representative_data (a few hundred training inputs, e.g. x_train), or drop "
            f"{', '.join(repr(m) for m in needs_integer)} from quantization/formats. "
            f"Model {model.name!r} is not quantization-aware.")
    if x_eval is not None:
        source = "eval_data"
    elif rep is not None:
        source, x_eval = "representative_data", rep[:100]
    else:
        source = "random inputs"
        x_eval = np.random.default_rng(0).uniform(0, 1, (32, *input_shape)).astype(input_dtype)
    reference_outputs = _reference_outputs(reference_outputs, names, len(x_eval), source)
    subject.keras_outputs = _predict(model, x_eval, names)
    subject.sample_inputs = x_eval[:32]
    kind = kinds[0].kind if len(kinds) == 1 else {o.name: o.kind for o in kinds}
    return subject, steps.Verification(x_eval, y_eval, source, reference_outputs, kind)


def _predict(model, x, names):
    """``model``'s outputs on ``x``: an array, or ``{name: array}`` for several outputs."""
    import keras

    from keras_distill.data.stream import predict

    outputs = predict(model, x, batch_size=256)
    if len(names) == 1:
        outputs = outputs[names[0]] if isinstance(outputs, dict) else outputs
        return np.asarray(outputs, np.float32)
    values = [outputs[n] for n in names] if isinstance(outputs, dict) else \
        keras.tree.flatten(outputs)
    return {n: np.asarray(v, np.float32) for n, v in zip(names, values)}


def _reference_outputs(reference_outputs, names, n, source):
    """``reference_outputs`` as float32 arrays of ``n`` rows (by output name for several)."""
    if reference_outputs is None:
        return None
    if len(names) > 1:
        if isinstance(reference_outputs, (list, tuple)) and len(reference_outputs) == len(names):
            reference_outputs = dict(zip(names, reference_outputs))
        if not isinstance(reference_outputs, dict) or set(reference_outputs) - set(names):
            raise ValueError(f"reference_outputs of a model with outputs {names} must be a "
                             "dict by output name (or a list in that order).")
        return {k: _reference_rows(v, n, source, f"reference_outputs[{k!r}]")
                for k, v in reference_outputs.items()}
    if isinstance(reference_outputs, dict) and len(reference_outputs) == 1:
        reference_outputs = next(iter(reference_outputs.values()))
    return _reference_rows(reference_outputs, n, source, "reference_outputs")


def _reference_rows(value, n, source, what):
    value = np.asarray(value, np.float32)
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} rows but the verification inputs "
                         f"({source}) have {n}; pass one row per eval_data sample.")
    return value


def _label_scores(kind, outputs, y):
    """The Keras model's scores against the labels (multiclass: ``accuracy``): flat for one
    output, ``{"outputs": {name: scores}}`` for several."""
    from keras_distill.verify.scores import LABEL_KEYS, scores

    if isinstance(kind, str):
        result = scores(kind, outputs, y)
        return {k: result[k] for k in LABEL_KEYS[kind]}
    per = {}
    for name, k in kind.items():
        result = scores(k, outputs[name], y.get(name))
        per[name] = {key: result[key] for key in LABEL_KEYS[k]}
    return {"outputs": per}


def _integer_artifacts(formats, quantization):
    """The requested artifacts that are integer models (they need calibration data)."""
    return ([m for m in quantization if m in CALIBRATED_MODES] if "tflite" in formats
            else []) + (["micro"] if "micro" in formats else [])


def _qat_subject(qat_model, name, verification, calibration):
    """The QAT model's subject. Layers with no quantization-aware version (attention, layer
    normalization, recurrent) have float tensors inside: those, and only those QAT models,
    are calibrated with the representative data (measured: a QAT encoder with attention then
    converts to all-int8 within 1.2% of its output range; without, the converter leaves
    the attention in float)."""
    from keras_distill.compress.qat import float_inside_layers

    checks.check_model(qat_model)
    # (with no representative_data, such a model's int8 artifact fails naming the float op)
    calibration = calibration if float_inside_layers(qat_model) else None
    subject = steps.Subject(qat_model, f"{name}_qat", None, calibration, qat=True)
    if not subject.quantize_aware:
        raise ValueError(f"qat_model {qat_model.name!r} is not quantization-aware; make it "
                         "with keras_distill.compress.quantize_aware.")
    names = checks.output_names(qat_model)
    subject.keras_outputs = _predict(qat_model, verification.x, names)
    subject.sample_inputs = verification.x[:32]
    return subject


def _new_report(subject, name, out_dir, model_info, formats, quantization, onnx_opset,
                verification, qat):
    keras_info = dict(model_info, task=verification.kind)
    if verification.y is not None:
        keras_info.update(_label_scores(verification.kind, subject.keras_outputs,
                                        verification.y))
    rep = subject.calibration
    from keras_distill.report import package_versions

    packages = ["tensorflow", "keras", "ai-edge-litert"]
    packages += ["tf2onnx", "onnx", "onnxruntime"] if "onnx" in formats else []
    packages += ["tflite-micro"] if "micro" in formats else []
    return ExportReport(
        name=name, out_dir=out_dir, keras=keras_info,
        evaluated_on={"source": verification.source, "n_samples": len(verification.x)},
        settings={"formats": list(formats), "quantization": list(quantization),
                  "onnx_opset": onnx_opset if "onnx" in formats else None,
                  "calibration_samples": None if rep is None else len(rep),
                  "quantize_aware": rep is None and bool(
                      _integer_artifacts(formats, quantization)) and subject.quantize_aware,
                  "float32_tolerance": FLOAT32_TOLERANCE,
                  "qat_model": None if qat is None else qat.model.name},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=package_versions(packages))


def _produce_all(report, subject, formats, quantization, opset, workspace, verification):
    """Every artifact of ``subject``, in order: TFLite modes, ONNX, micro."""
    def produce(fmt, mode, builder):
        record = steps.produce(fmt, mode, subject, builder, report.out_dir, verification)
        report.artifacts.append(record)
        return record

    if "tflite" in formats:
        for mode in quantization:
            produce("tflite", mode, steps.tflite_builder(subject, mode, workspace))
    if "onnx" in formats:
        onnx_float = produce("onnx", "float32", steps.onnx_builder(subject, opset))
        if "int8" in quantization and subject.calibration is None:
            report.notes.append("No int8 ONNX: it needs representative_data for "
                                "onnxruntime static quantization.")
        elif "int8" in quantization and not onnx_float.ok:
            report.notes.append("No int8 ONNX: the float32 ONNX model it starts from failed.")
        elif "int8" in quantization:
            path = os.path.join(report.out_dir, onnx_float.path)
            produce("onnx", "int8", steps.onnx_int8_builder(subject, path, opset))
    if "micro" in formats:
        record = produce("micro", "int8", steps.micro_builder(subject, workspace))
        if record.ok:
            prefix = f"{subject.name}: " if subject.qat else ""
            report.notes.append(f"{prefix}TFLM tensor arena "
                                f"{record.details['arena']['arena_size']} bytes: "
                                f"{record.details['arena']['host']}.")
            if "target" in record.details:
                from keras_distill import targets

                report.notes.append(prefix + targets.describe(record.details["target"]))
            estimate = record.details.get("latency_estimate")
            if estimate is not None and estimate["ms"] is not None:
                report.notes.append(
                    f"{prefix}Estimated TFLM latency on {record.details['target']['target']}: "
                    f"{estimate['ms']:.2f} ms per inference ({estimate['macs']:,} "
                    f"multiply-accumulates times cycles per MAC of each kernel family, at the "
                    f"device's clock; an estimate, not a measurement: {estimate['source']}).")


def _produce_budget(report, subject, formats, verification, budget):
    """The int8 model within ``budget = (max_drop, x, y, source)``. The int8 artifact records
    the measurement (``details.budget``) in every case; when full int8 is over the budget the
    model chosen is written as ``<name>_int8_mixed.tflite`` (or ``<name>_int16x8.tflite``),
    and with ``micro`` as C source for TFLM too (``<name>_int8_mixed_model_data.cc``), each
    verified like the others."""
    from keras_distill.export.budget import int8_within_budget

    max_drop, x, y, source = budget
    full = report.get("tflite", "int8")
    if full is None or not full.ok:
        report.notes.append("No int8 budget: the int8 artifact it starts from failed.")
        return
    try:
        result = int8_within_budget(subject.model, subject.calibration,
                                    x if y is None else (x, y), max_accuracy_drop=max_drop,
                                    kind=verification.kind)
    except Exception as exc:  # noqa: BLE001 - the other artifacts stand
        report.notes.append(f"No int8 budget: {type(exc).__name__}: {exc}")
        return
    record = dict(result.to_dict(), measured_on=source)
    report.settings["max_accuracy_drop"] = max_drop
    report.notes.append(result.describe() + f" Measured on {source}.")
    full.details["budget"] = record
    if result.mode == "int8":
        return
    mode = result.mode
    existing = report.get("tflite", mode)
    if existing is not None and existing.ok:  # int16x8 was asked for: it is the same model
        existing.details["budget"] = record
    else:
        existing = steps.produce("tflite", mode, subject, steps.tflite_bytes_builder(
            subject, mode, result.model_bytes, {"budget": record}), report.out_dir,
            verification)
        report.artifacts.append(existing)
    if existing.ok and "micro" in formats:
        chip = steps.produce("micro", mode, subject, steps.micro_bytes_builder(
            subject, f"{subject.name}_{mode}", result.model_bytes), report.out_dir,
            verification)
        report.artifacts.append(chip)
        report.notes.append(
            f"{existing.path} runs in LiteRT; in TensorFlow Lite Micro, "
            + (f"as {chip.path}: arena {chip.details['arena']['arena_size']:,} bytes"
               + ("" if chip.status == "unverified" else
                  f", {chip.metrics['latency_ms_median']:.3f} ms per inference on this host")
               if chip.written else f"it does not run: {chip.error}") + ".")


def _produce_qat(report, qat, formats, workspace, verification):
    """The int8 artifacts of the quantization-aware twin (TFLite and micro; no ONNX)."""
    qat_formats = [f for f in formats if f in ("tflite", "micro")]
    if "onnx" in formats:
        report.notes.append(QAT_NO_ONNX)
    _produce_all(report, qat, qat_formats, ("int8",), None, workspace, verification)


def _write_labels(report, labels):
    """``labels.txt``; for several outputs one ``labels_<output>.txt`` each (then
    ``report.labels_file`` is ``{output: file}``)."""
    files = ({LABELS: labels} if not isinstance(labels, dict) else
             {f"labels_{_file_part(name)}.txt": names for name, names in labels.items()})
    try:
        io.write_files(report.out_dir, {f: ("\n".join(names) + "\n").encode()
                                        for f, names in files.items()})
        report.labels_file = LABELS if not isinstance(labels, dict) else dict(
            zip(labels, files))
    except OSError as exc:
        report.notes.append(f"{', '.join(files)} could not be written: {exc}")


def _file_part(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))


def write_report_files(report):
    """Write ``manifest.json`` and ``report.md``; first drop any artifact whose files are
    missing (the manifest never lists a file that is not on disk)."""
    for a in report.artifacts:
        if a.ok and not all(os.path.isfile(os.path.join(report.out_dir, f)) for f in a.files):
            a.status, a.error, a.path, a.files = "failed", "file missing after writing", None, []
    io.write_files(report.out_dir, {
        MANIFEST: (json.dumps(report.to_dict(), indent=2) + "\n").encode(),
        REPORT: report.to_markdown().encode()})


class _CallableModule(types.ModuleType):
    """Lets ``keras_distill.export(...)`` call :func:`export` even when the attribute is this
    subpackage: importing ``keras_distill.export.<anything>`` binds the subpackage, not the
    function, to the package root's ``export`` attribute (Python's import system does so after
    any submodule import), so ``from keras_distill import export`` may give either. Renaming
    the subpackage would break ``keras_distill.export.tflite`` imports; this keeps both."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
