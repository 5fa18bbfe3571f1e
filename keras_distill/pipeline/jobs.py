"""The four jobs of the command line: ``run``, ``distill``, ``export``, ``evaluate``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time

from keras_distill import io, isolation, locks
from keras_distill import report as report_lib
from keras_distill.pipeline import manifest as manifest_lib
from keras_distill.pipeline import tasks
from keras_distill.pipeline.checkpoints import Checkpoints
from keras_distill.pipeline.models import (
    TEACHER_FILE,
    check_distillable,
    check_fits_data,
    load_data,
    load_model,
    measure,
    predict,
    save_model,
    teacher_path,
)
from keras_distill.pipeline.results import (
    DistillResult,
    EvaluateResult,
    ExportResult,
    ModelInfo,
    RunResult,
)
from keras_distill.pipeline.stages import (
    CACHE_DIR,
    Context,
    build_teachers,
    check_teacher_can_teach,
    epochs_text,
    record_sparsity,
    teachers,
    train_teacher,
)
from keras_distill.pipeline.students import (
    qat_learning_rate,
    select_student,
    student_pair,
    train_baseline,
    train_distilled,
    train_qat,
    transfer,
)
from keras_distill.report import Row

BASELINE_FILE = "student_baseline.keras"
DISTILLED_FILE = "student_distilled.keras"
QAT_FILE = "student_qat.keras"
EXPORT_NAME = "student"
MANIFEST, REPORT, PLOT, CONFIG = "manifest.json", "report.md", "report.png", "config.toml"
#: The validation curves of the students, with the teacher's level.
CURVES = "curves.png"


def _log_fn(log):
    return log if log is not None else (lambda message: print(message, flush=True))


def _start(cfg, log, out_dir):
    """What every job begins with (in its held output folder, see :func:`_locked`): its log
    function, the data and the configuration with the task and the data's defaults resolved
    (:func:`tasks.resolve`)."""
    log = _log_fn(log)
    cfg, data = tasks.resolve(cfg, load_data(cfg))
    log(f"Data: {data.summary()}" + _task_text(cfg, data) + ".")
    return cfg, log, out_dir, data


def _task_text(cfg, data):
    """``"; task binary (declared)"`` where the task is not the data's own multiclass."""
    if cfg["task"] == "auto" and data.task == tasks.MULTICLASS:
        return ""
    return f"; task {data.task} ({'from the data' if cfg['task'] == 'auto' else 'declared'})"


@dataclasses.dataclass
class _Trained:
    """The models of a run, trained and measured."""

    teacher: ModelInfo
    members: list
    t_val: object
    t_test: object
    transfer: dict | None
    baseline: ModelInfo
    distilled: ModelInfo
    selected: str
    reason: str
    qat: ModelInfo | None = None

    @property
    def chosen(self):
        return self.distilled if self.selected == "student_distilled" else self.baseline


def run(cfg, *, log=None, command=None, resume=False, on_stage=None):
    """The whole job: teacher, baseline, distilled student, QAT, export, verification, reports.

    Args:
        cfg: a :class:`keras_distill.config.Config`.
        log: called with each progress line (default ``print``).
        command: the command line, recorded in the manifest.
        resume: continue the run interrupted in ``out_dir`` (``keras-distill run --resume``):
            reuse the models it finished and continue its interrupted fit after the last
            completed epoch. The configuration must be the same (export keys aside).
        on_stage: called with each :class:`~keras_distill.pipeline.Stage` just before its
            ``fit`` (it may add Keras callbacks to ``stage.callbacks``).

    Returns:
        :class:`RunResult`; ``result.ok`` is False when an artifact failed (the reports are
        written all the same).

    Raises:
        ValueError: bad data or models, or ``resume`` without an interrupted run (or with
            another configuration).
    """
    with _locked(cfg, "run") as out_dir:
        return _run(cfg, out_dir, log=log, command=command, resume=resume, on_stage=on_stage)


@contextlib.contextmanager
def _locked(cfg, command):
    """The output folder, created and held for ``command`` (``keras_distill.locks``): a second
    command writing the same folder at once is refused, naming this one."""
    out_dir = io.output_folder(cfg["out_dir"])
    with locks.folder_lock(out_dir, command):
        yield out_dir


def _run(cfg, out_dir, *, log, command, resume, on_stage):
    log = _log_fn(log)
    started, seconds = time.perf_counter(), {}
    if cfg["formats"]:
        # The export's worker process imports TensorFlow while this one trains: that import
        # is otherwise paid at the export's first conversion.
        isolation.warm_up()
    for name in (MANIFEST, REPORT):  # an earlier run's reports must not outlive its files
        io.remove_quietly(os.path.join(out_dir, name))
    t = time.perf_counter()
    cfg, data = tasks.resolve(cfg, load_data(cfg))
    seconds["data"] = time.perf_counter() - t
    # after the data: the configuration it records has the data's defaults resolved
    ckpt = Checkpoints(out_dir, cfg, resume=resume, log=log)
    log(f"Data: {data.summary()}" + _task_text(cfg, data) + ".")
    ctx = Context(cfg, data, out_dir, log, ckpt, on_stage)
    trained = _train(ctx, seconds)
    rows = [m.row() for m in trained.members] + [
        trained.teacher.row(f"ensemble of {len(trained.members)}" if trained.members else ""),
        trained.baseline.row("exported" if trained.chosen is trained.baseline else ""),
        trained.distilled.row("exported" if trained.chosen is trained.distilled else "")]
    if trained.qat is not None:
        rows.append(trained.qat.row(f"QAT of {trained.chosen.name}"))
    t = time.perf_counter()
    export_report, artifact_rows, records, errors = _export_run(ctx, trained)
    if export_report is not None:
        seconds["export"] = time.perf_counter() - t
    rows += artifact_rows
    seconds["total"] = time.perf_counter() - started
    manifest = _run_manifest(ctx, trained, export_report, records, errors, seconds, command,
                             resume).to_dict()
    _write_run_reports(ctx, manifest, rows, trained.selected)
    ckpt.close()
    has_qat = export_report is not None and any(a.qat for a in export_report.artifacts)
    return RunResult(out_dir, trained.selected, trained.reason, rows, manifest,
                     trained.teacher, trained.baseline, trained.distilled, export_report,
                     errors, trained.members, trained.qat,
                     export_report if has_qat else None, data.task, data.target_scale)


def _train(ctx, seconds):
    """Teachers, the two students and (with ``qat``) the QAT student, measured."""
    import keras

    cfg, data, out_dir = ctx.cfg, ctx.data, ctx.out_dir
    keras.utils.set_random_seed(cfg["seed"])
    built = build_teachers(cfg, data)
    baseline_model, distilled_model = student_pair(cfg, data, built[0][2])
    # before any training: shapes, softmax students, losses that do not fit the task
    check_distillable(cfg, [m for _, _, m in built], distilled_model, data.task)
    teacher, members, t_val, t_test = teachers(ctx, built)
    seconds["teacher"] = teacher.train_seconds + sum(m.train_seconds for m in members)
    check_teacher_can_teach(ctx, teacher)  # before any student trains
    shrunk = transfer(cfg, (members[0] if members else teacher).model, baseline_model,
                      distilled_model, ctx.log)
    baseline = train_baseline(ctx, baseline_model, path=os.path.join(out_dir, BASELINE_FILE))
    seconds["baseline"] = baseline.train_seconds
    check_teacher_can_teach(ctx, teacher, baseline)  # before distillation
    distilled = train_distilled(ctx, teacher.model, distilled_model,
                                path=os.path.join(out_dir, DISTILLED_FILE))
    seconds["distill"] = distilled.train_seconds
    for info, file in ((baseline, BASELINE_FILE), (distilled, DISTILLED_FILE)):
        _measure_saved(ctx, info, file, t_val, t_test)
    selected, reason = select_student(baseline, distilled, cfg["export_student"])
    ctx.log(f"Selected: {selected}. {reason}")
    trained = _Trained(teacher, members, t_val, t_test, shrunk, baseline, distilled, selected,
                       reason)
    if cfg["qat"]:
        t = time.perf_counter()
        trained.qat = train_qat(ctx, teacher.model, trained.chosen,
                                path=os.path.join(out_dir, QAT_FILE))
        _measure_saved(ctx, trained.qat, QAT_FILE, t_val, t_test)
        seconds["qat"] = time.perf_counter() - t
    return trained


def _measure_saved(ctx, info, file, t_val, t_test):
    measure(info, ctx.data, t_val, t_test)
    info.path = file
    info.size_bytes = os.path.getsize(os.path.join(ctx.out_dir, file))
    if ctx.cfg["prune"] and info.sparsity is None:  # reused after an interruption
        record_sparsity(info, lambda _: None, True)


def _qat_formats(cfg):
    return [f for f in cfg["formats"] if f in ("tflite", "micro")]


def _export_run(ctx, trained):
    """One export of the chosen student (and its QAT twin): ``(report, rows, records,
    errors)``."""
    cfg, data = ctx.cfg, ctx.data
    if not cfg["formats"]:
        ctx.log("Export: skipped (formats = []).")
        return None, [], [], []
    chosen, qat = trained.chosen, trained.qat
    qat_model = qat.model if qat is not None and _qat_formats(cfg) else None
    ctx.log(f"Exporting {EXPORT_NAME}: {', '.join(cfg['formats'])} x "
            f"{', '.join(cfg['quantization'])}" + (" (and student_qat: int8)" if qat_model
                                                   else "")
            + "; verifying each artifact in its runtime.")
    report = _export(cfg, chosen.model, data, ctx.out_dir, EXPORT_NAME,
                     reference_outputs=trained.t_test, qat_model=qat_model, write_report=False)
    params = {False: chosen.params, True: qat.params if qat is not None else None}
    rows, records = manifest_lib.artifact_rows(report, params, source=chosen.name,
                                               qat="student_qat", gzip=bool(cfg["prune"]),
                                               task=data.task)
    return report, rows, records, manifest_lib.export_errors(report)


def _export(cfg, model, data, out_dir, name, **kwargs):
    """``keras_distill.export`` with the config's formats and modes, calibrated on the
    training split and verified on the test split; a float32 verification failure is in the
    report (and its errors), not raised."""
    import importlib
    import warnings

    # the module: `from keras_distill import export` may be the function of the same name
    export_lib = importlib.import_module("keras_distill.export")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="export: ")  # failures are in the report
        try:
            return export_lib.export(
                model, out_dir, name=name, formats=cfg["formats"],
                quantization=cfg["quantization"], representative_data=data.x_train,
                eval_data=(data.x_test, data.y_test), labels=data.class_names, task=data.task,
                calibration_samples=cfg["calibration_samples"], target=cfg["target"],
                max_accuracy_drop=cfg["max_accuracy_drop"],
                budget_data=None if cfg["max_accuracy_drop"] is None else (data.x_val,
                                                                          data.y_val),
                **kwargs)
        except export_lib.VerificationError as exc:
            if exc.report is None:
                raise
            return exc.report


def _notes(ctx, trained, export_report):
    cfg, qat, notes = ctx.cfg, trained.qat, []
    gain = _gain_note(ctx, trained)
    if gain is not None:
        notes.append(gain)
    if export_report is not None:
        notes += list(export_report.notes)
    if qat is not None:
        notes.append(f"QAT: {QAT_FILE} is {trained.chosen.name} fine-tuned "
                     f"{epochs_text(qat.epochs)} with fake int8 quantization (learning rate "
                     f"{qat_learning_rate(cfg):g}, distilled from the teacher)" + (
                         "; its int8 artifacts (student_qat_*) take their scales from the "
                         "ranges learned in training, without calibration data."
                         if _qat_formats(cfg) else "; not exported (formats has neither "
                         "tflite nor micro)."))
    if cfg["cache_teacher"]:
        notes.append(f"Teacher outputs were computed once and stored in {CACHE_DIR}/ (keyed to "
                     "the teacher's weights and the data; reused by later runs, safe to "
                     "delete).")
    return notes


#: Training inputs on which a distilled student that gained nothing is compared with the
#: teacher (its capacity to follow the teacher).
AGREEMENT_SAMPLES = 2000


def _gain_note(ctx, trained):
    """What distillation gained (``students.gain_note``); when it gained nothing, for a
    multiclass task on in-memory data, measured with the distilled student's agreement with
    the teacher on its own training inputs."""
    import numpy as np

    from keras_distill.pipeline.students import gain_note

    def agreement():
        x = ctx.data.x_train[:AGREEMENT_SAMPLES]
        teacher = np.argmax(trained.teacher.model.predict(x, verbose=0), -1)
        student = np.argmax(trained.distilled.model.predict(x, verbose=0), -1)
        return float(np.mean(teacher == student))

    measurable = ctx.data.task == tasks.MULTICLASS and isinstance(ctx.data.x_train, np.ndarray)
    return gain_note(trained.teacher, trained.baseline, trained.distilled,
                     train_agreement=agreement if measurable else None)


def _run_files(trained, export_report, records):
    files = [m.path for m in trained.members if m.path and not os.path.isabs(m.path)]
    files += [trained.teacher.path, BASELINE_FILE, DISTILLED_FILE]
    files += [QAT_FILE] if trained.qat is not None else []
    for r in records:
        files += r["files"]
    if export_report is not None and export_report.labels_file:
        files.append(export_report.labels_file)
    return files + [CONFIG, MANIFEST, REPORT, PLOT]


def _run_manifest(ctx, trained, export_report, records, errors, seconds, command, resume):
    cfg, t = ctx.cfg, trained
    models = [*t.members, t.teacher, t.baseline, t.distilled] + ([t.qat] if t.qat else [])
    criterion = tasks.CRITERIA[ctx.data.task][1]
    return manifest_lib.RunManifest(
        command=command, config_file=cfg.file, config=cfg.to_dict(),
        data=manifest_lib.data_info(ctx.data), task=manifest_lib.task_info(cfg, ctx.data),
        models={i.name: i.to_dict() for i in models},
        teacher={"ensemble": [m.name for m in t.members] or None,
                 "average": cfg["teacher.average"] if t.members else None,
                 "weights": list(t.teacher.model.weights_) if t.members else None},
        student={"from_teacher": t.transfer},
        selected={"student": t.selected, "reason": t.reason, "file": t.chosen.path,
                  "criterion": criterion if cfg["export_student"] == "auto"
                  else f"export_student = {cfg['export_student']!r}"},
        pruning=None if not cfg["prune"] else {
            "target_sparsity": cfg["prune"], "schedule": "polynomial, reaching the target after "
            "3/4 of the epochs; both students", "sparsity": {
                i.name: i.sparsity for i in (t.baseline, t.distilled, t.qat) if i is not None}},
        qat=None if t.qat is None else {
            "model": t.qat.name, "from": t.chosen.name, "epochs": t.qat.epochs,
            "learning_rate": qat_learning_rate(cfg)},
        artifacts=records,
        export=export_report.to_dict() if export_report is not None else None,
        resumed=resume, notes=_notes(ctx, t, export_report), errors=errors,
        seconds=seconds, files=_run_files(t, export_report, records))


def _write_run_reports(ctx, manifest, rows, selected):
    """config.toml, report.png, report.md and, last, manifest.json (``manifest``: its dict)."""
    out_dir, data = ctx.out_dir, ctx.data
    report_lib.write_text(os.path.join(out_dir, CONFIG),
                          ctx.cfg.to_toml(replace={"out_dir": "."}))
    report_lib.plot_accuracy_vs_size(
        rows, os.path.join(out_dir, PLOT), task=data.task,
        title=f"{data.name}: {_plotted(data.task)} vs size (exported: {selected})")
    _plot_curves(ctx, manifest)
    report_lib.write_text(os.path.join(out_dir, REPORT), report_lib.run_markdown(manifest, rows))
    report_lib.write_json(os.path.join(out_dir, MANIFEST), manifest)


def _plot_curves(ctx, manifest):
    """curves.png: each student's validation metric per epoch, and the teacher's level."""
    models = manifest["models"]
    metric = tasks.distiller_metrics(ctx.data.task)[0]
    level = (models.get("teacher", {}).get("val_scores") or {}).get(metric)
    curves = {name: models[name].get("curves") for name in
              ("student_baseline", "student_distilled", "student_qat") if name in models}
    written = report_lib.plot_curves(curves, os.path.join(ctx.out_dir, CURVES), metric=metric,
                                     reference=level,
                                     title=f"{ctx.data.name}: validation {metric} per epoch")
    if written is not None:
        manifest["files"].append(CURVES)


def _plotted(task):
    """The plot's metric, for its title: ``"test accuracy"``, ``"test MAE"``..."""
    return report_lib.PLOT_METRIC[task][2].split(" (")[0]


def distill(cfg, *, log=None, on_stage=None):
    """Distill ``student.model`` (or ``student.from_teacher``) from ``teacher.model`` (or the
    ensemble ``teacher.models``) on the data; save ``<out_dir>/student_distilled.keras``.

    A preset teacher is trained first (``teacher.epochs``); a ``.keras`` teacher is used as it
    is unless ``teacher.epochs`` is set. ``prune`` and ``cache_teacher`` apply as in ``run``.

    Returns:
        :class:`DistillResult`.
    """
    with _locked(cfg, "distill") as out_dir:
        return _distill(cfg, out_dir, log=log, on_stage=on_stage)


def _distill(cfg, out_dir, *, log, on_stage):
    import keras

    cfg, log, out_dir, data = _start(cfg, log, out_dir)
    ctx = Context(cfg, data, out_dir, log, Checkpoints.disabled(out_dir), on_stage)
    keras.utils.set_random_seed(cfg["seed"])
    built = build_teachers(cfg, data)
    _, student_model = student_pair(cfg, data, built[0][2])
    check_distillable(cfg, [m for _, _, m in built], student_model, data.task)  # before training
    teacher, members, t_val, t_test, note = _distill_teachers(ctx, built)
    check_teacher_can_teach(ctx, teacher)
    transfer(cfg, (members[0] if members else teacher).model, student_model, student_model,
             log)
    student = train_distilled(ctx, teacher.model, student_model)
    measure(student, data, t_val, t_test)
    path = save_model(student.model, os.path.join(out_dir, DISTILLED_FILE))
    student.path, student.size_bytes = path, os.path.getsize(path)
    rows = [m.row() for m in members] + [teacher.row(note), student.row(f"saved to {path}")]
    return DistillResult(path, teacher, student, rows, data.task, data.target_scale)


def _distill_teachers(ctx, built):
    """The teachers of ``distill``: trained and saved only when ``teacher.epochs`` asks."""
    cfg, out_dir = ctx.cfg, ctx.out_dir
    if cfg["teacher.models"] is not None:
        teacher, members, t_val, t_test = teachers(ctx, built)
        teacher.path = os.path.join(out_dir, teacher.path)
        return teacher, members, t_val, t_test, (f"ensemble of {len(members)}, saved to "
                                                 f"{teacher.path}")
    (_, ref, model), = built
    trained = bool(cfg.teacher_epochs())
    path = teacher_path(cfg, out_dir) if trained else None
    teacher = train_teacher(ctx, model, ref, path=path)
    t_val, t_test = measure(teacher, ctx.data, own_reference=True)
    note = ""
    if trained:  # trained here: saved (before the Distiller freezes it)
        teacher.path, note = path, f"saved to {path}"
    elif ref.endswith(".keras"):
        teacher.path = ref
    if teacher.path:
        teacher.size_bytes = os.path.getsize(teacher.path)
    return teacher, [], t_val, t_test, note


def export(cfg, model_path, *, name=None, log=None):
    """Export a ``.keras`` model with the config's formats and quantization modes, calibrated
    on the training split and verified on the test split.

    Writes the artifacts, ``manifest.json`` and ``report.md`` (of ``keras_distill.export``) and
    ``report.png`` to ``out_dir``.

    Returns:
        :class:`ExportResult`.
    """
    with _locked(cfg, "export") as out_dir:
        return _export_job(cfg, out_dir, model_path, name=name, log=log)


def _export_job(cfg, out_dir, model_path, *, name, log):
    cfg, log, out_dir, data = _start(cfg, log, out_dir)
    model = load_model(model_path, safe_mode=cfg["safe_mode"])
    check_fits_data(model, data, "model")
    if name is None:
        stem = os.path.splitext(os.path.basename(os.fspath(model_path)))[0]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "model"
    info = ModelInfo(os.path.basename(os.fspath(model_path)), model, path=os.fspath(model_path),
                     size_bytes=os.path.getsize(model_path))
    measure(info, data, own_reference=True)  # the artifacts' reference: agreement 1
    if not cfg["formats"]:
        raise ValueError("formats is empty: nothing to export; pass e.g. --formats tflite.")
    log(f"Exporting {name}: {', '.join(cfg['formats'])} x {', '.join(cfg['quantization'])}; "
        "verifying each artifact in its runtime.")
    export_report = _export(cfg, model, data, out_dir, name)
    rows, _ = manifest_lib.artifact_rows(export_report, {False: info.params},
                                         agreement="agreement", task=data.task)
    rows = [info.row("source model"), *rows]
    report_lib.plot_accuracy_vs_size(
        rows, os.path.join(out_dir, PLOT), task=data.task,
        title=f"{name} on {data.name}: {_plotted(data.task)} vs size")
    return ExportResult(out_dir, rows, export_report, manifest_lib.export_errors(export_report),
                        data.task, data.target_scale)


def evaluate(cfg, path, *, reference=None, log=None):
    """Run an artifact, or every artifact in a folder, on the test split.

    Args:
        cfg: the configuration (``data.*`` keys, ``task``, ``safe_mode``).
        path: a ``.tflite``, ``.onnx`` or ``*_model_data.cc`` file, or a folder of them.
        reference: a ``.keras`` model whose outputs the artifacts are compared with (the
            task's agreement; for regression the errors). Default: ``teacher.keras`` next to
            the artifacts, if there is one.

    Returns:
        :class:`EvaluateResult`.
    """
    from keras_distill import verify

    log = _log_fn(log)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such artifact or folder: {path}")
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if reference is None and os.path.isfile(os.path.join(folder, TEACHER_FILE)):
        reference = os.path.join(folder, TEACHER_FILE)
    cfg, data = tasks.resolve(cfg, load_data(cfg))
    log(f"Data: {data.summary()}" + _task_text(cfg, data)
        + f"; metrics on the {len(data.x_test)} test samples.")
    ref_outputs = None
    if reference is not None:
        ref_model = load_model(reference, safe_mode=cfg["safe_mode"], role="reference model")
        check_fits_data(ref_model, data, "reference model")
        ref_outputs = tasks.as_logits(ref_model, predict(ref_model, data.x_test), data.task)
        log(f"{'Error' if data.task == tasks.REGRESSION else 'Agreement'}: against the "
            f"outputs of {reference}.")
    try:
        results = verify.evaluate(path, data.x_test, data.y_test, ref_outputs, kind=data.task)
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
            rows.append(manifest_lib.metric_row(r["file"], r["format"], r["quantization"], None,
                                                r["size_bytes"], r, task=data.task,
                                                agreement="agreement"))
    return EvaluateResult(rows, results, reference, data.task, data.target_scale)
