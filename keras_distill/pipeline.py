"""The jobs behind the command line, as library functions: ``run``, ``distill``, ``export``,
``evaluate``.

Each takes a resolved :class:`keras_distill.config.Config` (see ``keras_distill.config`` for the
keys) and returns a result object; ``keras_distill.cli`` only parses arguments and prints.

``run`` is the whole job: load the data; train a teacher; train the student alone (the
baseline) and distill the same student, from the same initial weights and with the same
shuffling, so that the teacher is the only difference; pick the student with the better
validation accuracy; export it to every format and quantization mode, verify each artifact in
its runtime (and again from the file on disk, against the teacher); write ``report.md``,
``manifest.json``, ``report.png``, ``config.toml`` and the three ``.keras`` models.

Example:
    >>> from keras_distill import config, pipeline
    >>> cfg = config.load(None, {"epochs": "2", "teacher.epochs": "2", "formats": "tflite",
    ...                          "quantization": "float32,int8", "out_dir": "out"})
    >>> result = pipeline.run(cfg)  # doctest: +SKIP
    >>> result.selected, sorted(result.manifest["models"])  # doctest: +SKIP
    ('student_distilled', ['student_baseline', 'student_distilled', 'teacher'])
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import time

import numpy as np

from keras_distill import report as report_lib
from keras_distill.report import Row

__all__ = [
    "DistillResult",
    "EvaluateResult",
    "ExportResult",
    "RunResult",
    "distill",
    "evaluate",
    "export",
    "load_data",
    "load_model",
    "run",
    "select_student",
]

TEACHER_FILE = "teacher.keras"
BASELINE_FILE = "student_baseline.keras"
DISTILLED_FILE = "student_distilled.keras"
EXPORT_NAME = "student"
MANIFEST, REPORT, PLOT, CONFIG = "manifest.json", "report.md", "report.png", "config.toml"


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ModelInfo:
    """A trained Keras model and its measurements (test split unless named ``val_``)."""

    name: str
    model: object = dataclasses.field(repr=False)
    path: str | None = None
    params: int = 0
    size_bytes: int | None = None
    val_accuracy: float | None = None
    val_agreement: float | None = None
    test_accuracy: float | None = None
    agreement: float | None = None
    latency_ms: float | None = None
    epochs: int = 0
    train_seconds: float = 0.0

    def to_dict(self):
        # not dataclasses.asdict: it would deep-copy (pickle) the Keras model
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        d["agreement_with_teacher"] = d.pop("agreement")
        d["val_agreement_with_teacher"] = d.pop("val_agreement")
        return d

    def row(self, note=""):
        return Row(self.name, "keras", "float32", self.params, self.size_bytes,
                   self.test_accuracy, self.agreement, self.latency_ms, note=note)


@dataclasses.dataclass
class RunResult:
    """What ``run`` did. ``ok`` is False when an artifact failed."""

    out_dir: str
    selected: str
    reason: str
    rows: list
    manifest: dict
    teacher: ModelInfo
    baseline: ModelInfo
    distilled: ModelInfo
    export_report: object = None
    errors: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.errors

    def table(self):
        return report_lib.format_table(self.rows, agreement_label="agree teacher")


@dataclasses.dataclass
class DistillResult:
    path: str
    teacher: ModelInfo
    student: ModelInfo
    rows: list

    def table(self):
        return report_lib.format_table(self.rows, agreement_label="agree teacher")


@dataclasses.dataclass
class ExportResult:
    out_dir: str
    rows: list
    export_report: object
    errors: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.errors

    def table(self):
        return report_lib.format_table(self.rows, agreement_label="agree keras")


@dataclasses.dataclass
class EvaluateResult:
    rows: list
    results: list
    reference: str | None

    @property
    def errors(self):
        return [r for r in self.results if "error" in r]

    def table(self):
        label = "agree reference" if self.reference else "agreement"
        return report_lib.format_table(self.rows, agreement_label=label)


# ------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------


def _epochs(n):
    return f"{n} epoch" + ("" if n == 1 else "s")


def _log_fn(log):
    return log if log is not None else (lambda message: print(message, flush=True))


def _fit_verbose(cfg):
    if cfg["quiet"]:
        return 0
    return 1 if sys.stdout.isatty() else 2


def load_data(cfg):
    """The data named by ``data.*`` keys, as :class:`keras_distill.data.Splits`."""
    from keras_distill import data

    return data.load(cfg["data.source"], validation_fraction=cfg["data.validation_fraction"],
                     test_fraction=cfg["data.test_fraction"], seed=cfg["seed"],
                     image_size=cfg["data.image_size"], color_mode=cfg["data.color_mode"])


def load_model(path, *, safe_mode=True, role="model"):
    """A ``.keras`` file as an uncompiled Keras model.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be loaded; for Lambda layers refused in safe mode, the
            message names ``--no-safe-mode`` / ``safe_mode = false``.
    """
    import keras

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{role} file not found: {path}")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except ValueError as exc:
        message = str(exc)
        if "safe_mode" in message or "Lambda" in message:
            raise ValueError(
                f"{role} {path} contains a Lambda layer (Python code), which safe mode refuses "
                "to load. If you trust the file, pass --no-safe-mode (or safe_mode = false in "
                "the config).") from None
        raise ValueError(f"cannot load {role} {path}: {message.splitlines()[0]}") from None


def _check_fits_data(model, data, role):
    in_shape = tuple(model.input_shape[1:])
    if in_shape != tuple(data.input_shape) and None not in in_shape:
        raise ValueError(f"the {role} {model.name!r} takes inputs of shape {in_shape} but the "
                         f"data {data.name!r} has samples of shape {data.input_shape}.")
    classes = model.output_shape[-1]
    if classes != data.num_classes:
        raise ValueError(f"the {role} {model.name!r} outputs {classes} classes but the data "
                         f"{data.name!r} has {data.num_classes}.")


def _build(cfg, role, data, name):
    """The ``teacher`` or ``student`` model: a fresh preset, or loaded from its file."""
    from keras_distill import presets

    ref = cfg[f"{role}.model"]
    if ref.endswith(".keras"):
        model = load_model(ref, safe_mode=cfg["safe_mode"], role=role)
    else:
        model = presets.PRESETS[ref](data.input_shape, data.num_classes, name=name,
                                     **cfg[f"{role}.preset_args"])
    _check_fits_data(model, data, role)
    return model


def _ends_in_softmax(model):
    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax"


def _compile_supervised(model, learning_rate):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model)),
        metrics=["accuracy"])


def _losses(cfg):
    from keras_distill import losses

    out = []
    for spec in cfg["losses"]:
        args = {k: v for k, v in spec.items() if k != "name"}
        cls = losses.FeatureHint if spec["name"] == "feature_hint" else losses.ALIASES[
            spec["name"]]
        out.append(cls(**args))
    return out


def _make_distiller(cfg, teacher, student):
    from keras_distill import Distiller

    return Distiller(teacher, student, temperature=cfg["temperature"], alpha=cfg["alpha"],
                     losses=_losses(cfg), loss_weights=cfg["loss_weights"])


def _check_distillable(cfg, teacher, student):
    """Construct a Distiller on copies, so that shape, softmax and layer-name mistakes are
    reported before any training (the real teacher stays trainable)."""
    import keras

    try:
        t, s = keras.models.clone_model(teacher), keras.models.clone_model(student)
    except Exception:  # noqa: BLE001  (subclassed models do not clone: checked when distilling)
        return
    _make_distiller(cfg, t, s)


def _predict(model, x):
    return np.asarray(model.predict(x, batch_size=512, verbose=0), np.float32)


def _keras_latency_ms(model, x, n=50):
    """Median wall time of ``predict_on_batch`` on one sample."""
    x1 = x[:1]
    for _ in range(3):
        model.predict_on_batch(x1)
    times = []
    for i in range(min(n, len(x))):
        xi = x[i:i + 1]
        start = time.perf_counter()
        model.predict_on_batch(xi)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _agree(a, b):
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


def _measure(info, data, teacher_val=None, teacher_test=None):
    """Fill accuracies, agreements with the teacher and latency of ``info.model``."""
    model = info.model
    val, test = _predict(model, data.x_val), _predict(model, data.x_test)
    info.params = int(model.count_params())
    info.val_accuracy = float(np.mean(np.argmax(val, -1) == data.y_val))
    info.test_accuracy = float(np.mean(np.argmax(test, -1) == data.y_test))
    if teacher_test is not None:
        info.val_agreement = _agree(val, teacher_val)
        info.agreement = _agree(test, teacher_test)
    info.latency_ms = _keras_latency_ms(model, data.x_test)
    return val, test


def save_model(model, path):
    """Save ``model`` to ``path`` (``.keras``) without optimizer state, atomically."""

    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    tmp = os.path.join(folder, f".{base[:-len('.keras')]}.{os.getpid()}.tmp.keras")
    try:
        try:  # an uncompiled copy (clone_model would copy the optimizer too)
            clean = model.__class__.from_config(model.get_config())
            clean.set_weights(model.get_weights())
        except Exception:  # noqa: BLE001  (models that do not rebuild: saved as they are)
            clean = model
        clean.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _same_file(a, b):
    return os.path.abspath(a) == os.path.abspath(b)


def _teacher_path(cfg, out_dir):
    """Where the teacher is saved: ``teacher.keras`` in ``out_dir``, unless that is the
    teacher file given as input and the job trains it further (then ``teacher_trained.keras``,
    so that an input file is never overwritten)."""
    path = os.path.join(out_dir, TEACHER_FILE)
    if cfg.teacher_epochs() and _same_file(path, cfg["teacher.model"]):
        return os.path.join(out_dir, "teacher_trained.keras")
    return path


def _train_teacher(cfg, data, teacher, log, verbose):
    """Train the ``teacher`` model for ``teacher.epochs`` (none: used as it is)."""
    epochs = cfg.teacher_epochs()
    info = ModelInfo("teacher", teacher, epochs=epochs)
    what = cfg["teacher.model"]
    if epochs == 0:
        log(f"Teacher: {what} ({teacher.count_params():,} parameters), used as it is.")
        return info
    if not teacher.trainable_weights:
        raise ValueError(
            f"teacher.epochs = {epochs} but the teacher {what} has no trainable weights (it is "
            "frozen); use it as it is with --teacher-epochs 0, or unfreeze it.")
    import keras

    log(f"Teacher: training {what} ({teacher.count_params():,} parameters) for "
        f"{_epochs(epochs)}.")
    keras.utils.set_random_seed(cfg["seed"])
    _compile_supervised(teacher, cfg["teacher.learning_rate"])
    start = time.perf_counter()
    teacher.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                epochs=epochs, batch_size=cfg["batch_size"], verbose=verbose)
    info.train_seconds = time.perf_counter() - start
    return info


def _student_pair(cfg, data):
    """Two copies of the student with the same initial weights (baseline, distilled)."""
    import keras

    keras.utils.set_random_seed(cfg["seed"])
    baseline = _build(cfg, "student", data, "student_baseline")
    distilled = _build(cfg, "student", data, "student_distilled")
    distilled.set_weights(baseline.get_weights())
    return baseline, distilled


def _train_baseline(cfg, data, student, log, verbose):
    import keras

    log(f"Baseline: training the student alone ({student.count_params():,} parameters, "
        f"{_epochs(cfg['epochs'])}).")
    keras.utils.set_random_seed(cfg["seed"])
    _compile_supervised(student, cfg["learning_rate"])
    start = time.perf_counter()
    student.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                epochs=cfg["epochs"], batch_size=cfg["batch_size"], verbose=verbose)
    return ModelInfo("student_baseline", student, epochs=cfg["epochs"],
                     train_seconds=time.perf_counter() - start)


def _distill(cfg, data, teacher, student, log, verbose):
    import keras

    names = ", ".join(s["name"] for s in cfg["losses"])
    log(f"Distilling: the same student from the teacher ({names}, temperature "
        f"{cfg['temperature']:g}, alpha {cfg['alpha']:g}, {_epochs(cfg['epochs'])}).")
    keras.utils.set_random_seed(cfg["seed"])
    distiller = _make_distiller(cfg, teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
                      metrics=["accuracy"])
    start = time.perf_counter()
    distiller.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                  epochs=cfg["epochs"], batch_size=cfg["batch_size"], verbose=verbose)
    return ModelInfo("student_distilled", distiller.student, epochs=cfg["epochs"],
                     train_seconds=time.perf_counter() - start)


def select_student(baseline, distilled, mode="auto"):
    """Which student to export, and why (one or two sentences).

    ``mode="auto"`` picks the higher validation accuracy; on a tie, the higher validation
    agreement with the teacher; on a second tie, the distilled student. The test split is never
    used to choose; a baseline that scored higher on it is still named.

    Args:
        baseline, distilled: measured :class:`ModelInfo` objects.
        mode: ``"auto"``, ``"distilled"`` or ``"baseline"``.

    Returns:
        ``(name, reason)``, name being ``"student_distilled"`` or ``"student_baseline"``.

    Example:
        >>> b = ModelInfo("student_baseline", None, val_accuracy=0.98, test_accuracy=0.97)
        >>> d = ModelInfo("student_distilled", None, val_accuracy=0.96, test_accuracy=0.96)
        >>> select_student(b, d)[0]
        'student_baseline'
    """
    b, d = baseline.val_accuracy, distilled.val_accuracy
    vs = f"validation accuracy {d:.4f} distilled vs {b:.4f} baseline (student trained alone)"
    if mode == "distilled":
        name, reason = "student_distilled", f"Chosen by export_student = 'distilled'; {vs}."
    elif mode == "baseline":
        name, reason = "student_baseline", f"Chosen by export_student = 'baseline'; {vs}."
    elif d > b:
        name, reason = "student_distilled", f"The distilled student did better: {vs}."
    elif b > d:
        name, reason = "student_baseline", (
            f"The baseline did better, so it is exported: {vs}. Distillation did not help with "
            "these settings.")
    else:
        da, ba = distilled.val_agreement or 0.0, baseline.val_agreement or 0.0
        name = "student_baseline" if ba > da else "student_distilled"
        reason = (f"Tie on validation accuracy ({d:.4f}); the {name.split('_')[1]} student "
                  f"agrees more with the teacher on validation ({max(da, ba):.4f} vs "
                  f"{min(da, ba):.4f})." if da != ba else
                  f"Tie on validation accuracy ({d:.4f}) and agreement with the teacher; the "
                  "distilled student is exported.")
    other = baseline if name == "student_distilled" else distilled
    chosen = distilled if name == "student_distilled" else baseline
    if other.val_accuracy > chosen.val_accuracy and mode != "auto":
        reason += f" Note: the {other.name.split('_')[1]} student did better on validation."
    if other.test_accuracy is not None and chosen.test_accuracy is not None and \
            other.test_accuracy > chosen.test_accuracy:
        reason += (f" Note: on the test split the {other.name.split('_')[1]} student scored "
                   f"higher ({other.test_accuracy:.4f} vs {chosen.test_accuracy:.4f}); the "
                   "choice uses validation data only.")
    return name, reason


def _export(cfg, model, data, out_dir, log, name=EXPORT_NAME):
    """``keras_distill.export`` with the config's formats; returns ``(report, errors)``."""
    import importlib
    import warnings

    # the module: `from keras_distill import export` is the function of the same name
    export_lib = importlib.import_module("keras_distill.export")

    formats, modes = tuple(cfg["formats"]), tuple(cfg["quantization"])
    log(f"Exporting {name}: {', '.join(formats)} x {', '.join(modes)}; verifying each artifact "
        "in its runtime.")
    errors = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="export: ")  # failures are in the report
        try:
            result = export_lib.export(
                model, out_dir, name=name, formats=formats, quantization=modes,
                representative_data=data.x_train, eval_data=(data.x_test, data.y_test),
                labels=data.class_names, calibration_samples=cfg["calibration_samples"])
        except export_lib.VerificationError as exc:
            if exc.report is None:
                raise
            result = exc.report
            errors.append(f"verification: {exc}")
    errors += [f"{a.format}/{a.quantization}: {a.error}" for a in result.failed
               if not (a.error or "").startswith("VerificationError")]
    return result, errors


def _artifact_rows(export_report, data, params, reference, out_dir):
    """Reload every artifact from disk, run it on the test split against ``reference``
    outputs; one :class:`Row` and one manifest record per artifact."""
    from keras_distill import evaluate as evaluate_lib

    rows, records = [], []
    for a in export_report.artifacts:
        record = {"file": a.path, "files": list(a.files), "format": a.format,
                  "quantization": a.quantization, "status": a.status,
                  "size_bytes": a.size_bytes, "sha256": a.sha256, "error": a.error,
                  "export_metrics": dict(a.metrics)}
        label = a.path or f"{EXPORT_NAME} {a.format}/{a.quantization}"
        if not a.ok:
            records.append(record)
            rows.append(Row(label, a.format, a.quantization, params, None, status="failed",
                            note=(a.error or "")[:80]))
            continue
        try:
            r = evaluate_lib.evaluate_artifact(os.path.join(out_dir, a.path), data.x_test,
                                               data.y_test, reference)
        except Exception as exc:  # noqa: BLE001  (one bad artifact must not hide the rest)
            record.update(status="failed", error=f"reload: {type(exc).__name__}: {exc}")
            records.append(record)
            rows.append(Row(label, a.format, a.quantization, params, a.size_bytes,
                            status="failed", note=record["error"][:80]))
            continue
        same = a.metrics.get("accuracy") is None or abs(
            r["accuracy"] - a.metrics["accuracy"]) < 1e-9
        record.update(test_accuracy=r["accuracy"], agreement_with_teacher=r["agreement"],
                      agreement_with_keras=a.metrics.get("agreement"),
                      max_abs_error_vs_keras=a.metrics.get("max_abs_error"),
                      latency_ms_median=r["latency_ms_median"], runtime=r["runtime"],
                      input_dtype=r["input_dtype"], verified=bool(same))
        if a.format == "micro":
            record["arena_size"] = r.get("arena_size")
        records.append(record)
        rows.append(Row(a.path, a.format, a.quantization, params, a.size_bytes, r["accuracy"],
                        r["agreement"], r["latency_ms_median"],
                        note="" if same else "differs from the export check"))
    return rows, records


def _versions():
    import importlib.metadata as md

    from keras_distill import __version__

    out = {"keras_distill": __version__, "python": sys.version.split()[0]}
    for package in ("tensorflow", "keras", "numpy"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    return out


def _data_info(data):
    return {"name": data.name, "summary": data.summary(), "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "n_train": len(data.x_train),
            "n_val": len(data.x_val), "n_test": len(data.x_test)}


def _prepare_out_dir(out_dir):
    out_dir = os.path.abspath(os.fspath(out_dir))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create the output folder {out_dir}: "
                      f"{exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK):
        raise PermissionError(f"the output folder {out_dir} is not writable; choose another "
                              "with --out-dir.")
    return out_dir


# ------------------------------------------------------------------------------------------
# the jobs
# ------------------------------------------------------------------------------------------


def run(cfg, *, log=None, command=None):
    """The whole job: teacher, baseline, distilled student, export, verification, reports.

    Args:
        cfg: a :class:`keras_distill.config.Config`.
        log: called with each progress line (default ``print``).
        command: the command line, recorded in the manifest.

    Returns:
        :class:`RunResult`; ``result.ok`` is False when an artifact failed (the reports are
        written all the same).
    """
    log = _log_fn(log)
    verbose = _fit_verbose(cfg)
    started = time.perf_counter()
    seconds = {}
    out_dir = _prepare_out_dir(cfg["out_dir"])

    t = time.perf_counter()
    data = load_data(cfg)
    seconds["data"] = time.perf_counter() - t
    log(f"Data: {data.summary()}.")

    import keras

    keras.utils.set_random_seed(cfg["seed"])
    teacher_model = _build(cfg, "teacher", data, "teacher")
    baseline_model, distilled_model = _student_pair(cfg, data)
    _check_distillable(cfg, teacher_model, distilled_model)  # before any training
    teacher = _train_teacher(cfg, data, teacher_model, log, verbose)
    # teacher training time, measured on its own
    seconds["teacher"] = teacher.train_seconds
    t_val, t_test = _measure(teacher, data)
    teacher.val_agreement = teacher.agreement = 1.0
    # saved now: the Distiller freezes the teacher (trainable=False) for distillation
    teacher_path = _teacher_path(cfg, out_dir)
    if not _same_file(teacher_path, cfg["teacher.model"]):
        save_model(teacher.model, teacher_path)
    teacher.path = os.path.basename(teacher_path)
    teacher.size_bytes = os.path.getsize(teacher_path)

    baseline = _train_baseline(cfg, data, baseline_model, log, verbose)
    seconds["baseline"] = baseline.train_seconds
    distilled = _distill(cfg, data, teacher.model, distilled_model, log, verbose)
    seconds["distill"] = distilled.train_seconds
    for info in (baseline, distilled):
        _measure(info, data, t_val, t_test)

    for info, file in ((baseline, BASELINE_FILE), (distilled, DISTILLED_FILE)):
        info.path = file
        info.size_bytes = os.path.getsize(save_model(info.model, os.path.join(out_dir, file)))

    selected, reason = select_student(baseline, distilled, cfg["export_student"])
    chosen = distilled if selected == "student_distilled" else baseline
    log(f"Selected: {selected}. {reason}")

    rows = [teacher.row(), baseline.row("exported" if chosen is baseline else ""),
            distilled.row("exported" if chosen is distilled else "")]
    export_report, errors, records = None, [], []
    if cfg["formats"]:
        t = time.perf_counter()
        export_report, errors = _export(cfg, chosen.model, data, out_dir, log)
        artifact_rows, records = _artifact_rows(export_report, data, chosen.params, t_test,
                                                out_dir)
        rows += artifact_rows
        errors += [f"{r['format']}/{r['quantization']}: {r['error']}" for r in records
                   if r["status"] != "ok" and r["error"].startswith("reload")]
        seconds["export"] = time.perf_counter() - t
    else:
        log("Export: skipped (formats = []).")

    files = [teacher.path, BASELINE_FILE, DISTILLED_FILE]
    if export_report is not None:
        for r in records:
            files += r["files"]
        if export_report.labels_file:
            files.append(export_report.labels_file)
    files += [CONFIG, MANIFEST, REPORT, PLOT]
    seconds["total"] = time.perf_counter() - started
    manifest = {
        "tool": "keras-distill run",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config_file": cfg.file,
        "config": cfg.to_dict(),
        "data": _data_info(data),
        "models": {i.name: i.to_dict() for i in (teacher, baseline, distilled)},
        "selected": {"student": selected, "reason": reason, "file": chosen.path,
                     "criterion": "validation accuracy" if cfg["export_student"] == "auto"
                     else f"export_student = {cfg['export_student']!r}"},
        "artifacts": records,
        "export": export_report.to_dict() if export_report is not None else None,
        "notes": list(export_report.notes) if export_report is not None else [],
        "errors": errors,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "files": files,
        "versions": _versions(),
    }
    report_lib.write_text(os.path.join(out_dir, CONFIG), cfg.to_toml(replace={"out_dir": "."}))
    report_lib.plot_accuracy_vs_size(
        rows, os.path.join(out_dir, PLOT),
        title=f"{data.name}: test accuracy vs size (exported: {selected})")
    report_lib.write_text(os.path.join(out_dir, REPORT), report_lib.run_markdown(manifest, rows))
    report_lib.write_json(os.path.join(out_dir, MANIFEST), manifest)
    return RunResult(out_dir, selected, reason, rows, manifest, teacher, baseline, distilled,
                     export_report, errors)


def distill(cfg, *, log=None):
    """Distill ``student.model`` from ``teacher.model`` on the data; save
    ``<out_dir>/student_distilled.keras``.

    A preset teacher is trained first (``teacher.epochs``); a ``.keras`` teacher is used as it
    is unless ``teacher.epochs`` is set.

    Returns:
        :class:`DistillResult`.
    """
    log = _log_fn(log)
    verbose = _fit_verbose(cfg)
    out_dir = _prepare_out_dir(cfg["out_dir"])
    data = load_data(cfg)
    log(f"Data: {data.summary()}.")
    import keras

    keras.utils.set_random_seed(cfg["seed"])
    teacher_model = _build(cfg, "teacher", data, "teacher")
    student_model = _build(cfg, "student", data, "student_distilled")
    _check_distillable(cfg, teacher_model, student_model)  # before any training
    teacher = _train_teacher(cfg, data, teacher_model, log, verbose)
    t_val, t_test = _measure(teacher, data)
    teacher.val_agreement = teacher.agreement = 1.0
    teacher_note = ""
    if cfg.teacher_epochs():  # trained here: saved (before the Distiller freezes it)
        teacher.path = save_model(teacher.model, _teacher_path(cfg, out_dir))
        teacher_note = f"saved to {teacher.path}"
    elif cfg["teacher.model"].endswith(".keras"):
        teacher.path = cfg["teacher.model"]
    if teacher.path:
        teacher.size_bytes = os.path.getsize(teacher.path)
    student = _distill(cfg, data, teacher.model, student_model, log, verbose)
    _measure(student, data, t_val, t_test)
    path = save_model(student.model, os.path.join(out_dir, DISTILLED_FILE))
    student.path, student.size_bytes = path, os.path.getsize(path)
    rows = [teacher.row(teacher_note), student.row(f"saved to {path}")]
    return DistillResult(path, teacher, student, rows)


def export(cfg, model_path, *, name=None, log=None):
    """Export a ``.keras`` model with the config's formats and quantization modes, calibrated
    on the training split and verified on the test split.

    Writes the artifacts, ``manifest.json`` and ``report.md`` (of ``keras_distill.export``) and
    ``report.png`` to ``out_dir``.

    Returns:
        :class:`ExportResult`.
    """
    import re

    log = _log_fn(log)
    out_dir = _prepare_out_dir(cfg["out_dir"])
    data = load_data(cfg)
    log(f"Data: {data.summary()}.")
    model = load_model(model_path, safe_mode=cfg["safe_mode"])
    _check_fits_data(model, data, "model")
    if name is None:
        stem = os.path.splitext(os.path.basename(os.fspath(model_path)))[0]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "model"
    info = ModelInfo(os.path.basename(os.fspath(model_path)), model, path=os.fspath(model_path),
                     size_bytes=os.path.getsize(model_path))
    _, test = _measure(info, data)
    info.agreement = 1.0
    if not cfg["formats"]:
        raise ValueError("formats is empty: nothing to export; pass e.g. --formats tflite.")
    export_report, errors = _export(cfg, model, data, out_dir, log, name=name)
    rows, records = _artifact_rows(export_report, data, info.params, test, out_dir)
    errors += [f"{r['format']}/{r['quantization']}: {r['error']}" for r in records
               if r["status"] != "ok" and r["error"].startswith("reload")]
    rows = [info.row("source model"), *rows]
    report_lib.plot_accuracy_vs_size(rows, os.path.join(out_dir, PLOT),
                                     title=f"{name} on {data.name}: test accuracy vs size")
    return ExportResult(out_dir, rows, export_report, errors)


def evaluate(cfg, path, *, reference=None, log=None):
    """Run an artifact, or every artifact in a folder, on the test split.

    Args:
        cfg: the configuration (``data.*`` keys, ``safe_mode``).
        path: a ``.tflite``, ``.onnx`` or ``*_model_data.cc`` file, or a folder of them.
        reference: a ``.keras`` model whose outputs the artifacts are compared with (top-1
            agreement). Default: ``teacher.keras`` next to the artifacts, if there is one.

    Returns:
        :class:`EvaluateResult`.
    """
    from keras_distill import evaluate as evaluate_lib

    log = _log_fn(log)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such artifact or folder: {path}")
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if reference is None and os.path.isfile(os.path.join(folder, TEACHER_FILE)):
        reference = os.path.join(folder, TEACHER_FILE)
    data = load_data(cfg)
    log(f"Data: {data.summary()}; metrics on the {len(data.x_test)} test samples.")
    ref_outputs = None
    if reference is not None:
        ref_model = load_model(reference, safe_mode=cfg["safe_mode"], role="reference model")
        _check_fits_data(ref_model, data, "reference model")
        ref_outputs = _predict(ref_model, data.x_test)
        log(f"Agreement: top-1 agreement with {reference}.")
    try:
        results = evaluate_lib.evaluate(path, data.x_test, data.y_test, ref_outputs)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001  (a file its runtime cannot run: a row)
        results = [{"path": path, "file": os.path.basename(path),
                    "error": f"{type(exc).__name__}: {exc}"}]
    rows = []
    for r in results:
        if "error" in r:
            rows.append(Row(r["file"], r.get("format", "?"), None, status="failed",
                            note=r["error"][:100]))
        else:
            rows.append(Row(r["file"], r["format"], r["quantization"], None, r["size_bytes"],
                            r["accuracy"], r["agreement"], r["latency_ms_median"]))
    return EvaluateResult(rows, results, reference)
