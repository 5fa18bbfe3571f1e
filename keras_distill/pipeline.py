"""The jobs behind the command line, as library functions: ``run``, ``distill``, ``export``,
``evaluate``.

Each takes a resolved :class:`keras_distill.config.Config` (see ``keras_distill.config`` for the
keys) and returns a result object; ``keras_distill.cli`` only parses arguments and prints.

``run`` is the whole job: load the data; train a teacher (or the teachers of an ensemble); train
the student alone (the baseline) and distill the same student, from the same initial weights
and with the same shuffling, so that the teacher is the only difference; pick the student with
the better validation accuracy; export it to every format and quantization mode, verify each
artifact in its runtime (and again from the file on disk, against the teacher); write
``report.md``, ``manifest.json``, ``report.png``, ``config.toml`` and the ``.keras`` models.
Optional stages: a student shrunk from the teacher and initialized from its weights
(``student.from_teacher``), magnitude pruning of both students (``prune``), teacher outputs
computed once (``cache_teacher``), and quantization-aware fine-tuning of the exported student
with int8 artifacts of its own (``qat``).

**Interruptions.** Every fit saves its state (weights, optimizer, epoch:
``keras.callbacks.BackupAndRestore``) in ``<out_dir>/.backup/<stage>`` at the end of an epoch,
once ``CHECKPOINT_SECONDS`` have passed since its last save; every finished model is recorded in
``<out_dir>/.backup/state.json`` with the configuration. ``run(cfg, resume=True)``
(``keras-distill run --resume``) reuses the finished models, continues the interrupted fit from
its last saved epoch, and refuses a configuration that differs in anything but the export keys.
A resumed run ends with the same weights as an uninterrupted one (tested): the order in which
Keras shuffles an epoch does not depend on the epochs before it, and pruning masks are restored
from the zeros of the saved weights.
A run without ``resume`` clears the folder. ``manifest.json`` and ``report.md`` are removed when
a run starts and written last, so a folder never holds a manifest that describes files which
are not there; ``.backup`` is removed once they are written.

**Reproducibility.** With the same ``seed``, two runs on the same machine give bit-identical
weights and the same accuracies, agreements and sizes (not latencies): every stage re-seeds
Python, NumPy and TensorFlow (``keras.utils.set_random_seed``) before it builds or fits a model.
TensorFlow's CPU kernels are deterministic for a given number of threads, so nothing else is
set (``tf.config.experimental.enable_op_determinism()`` is not needed on CPU, and does not
remove the dependence on the thread count). A machine with another number of cores sums in
another order and ends with other weights (the teacher, with its BatchNormalization, first);
set ``TF_NUM_INTRAOP_THREADS=1`` to compare runs across machines.

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
import json
import math
import os
import shutil
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
QAT_FILE = "student_qat.keras"
EXPORT_NAME = "student"
QAT_EXPORT_NAME = "student_qat"
MANIFEST, REPORT, PLOT, CONFIG = "manifest.json", "report.md", "report.png", "config.toml"
#: Hidden folder of an unfinished run (what ``--resume`` continues); removed at the end.
BACKUP_DIR = ".backup"
STATE_FILE = "state.json"
#: A fit in progress is saved at the end of an epoch once this many seconds have passed since
#: its last save: ``--resume`` loses at most this much training.
CHECKPOINT_SECONDS = 5.0
#: Teacher outputs of ``cache_teacher = true``, keyed to the teacher's weights and the data.
CACHE_DIR = "cache"
#: QAT fine-tuning learning rate, as a fraction of ``learning_rate`` (``qat_learning_rate``).
QAT_LEARNING_RATE_FACTOR = 0.1
_QAT_NO_ONNX = ("No ONNX for the QAT student: tf2onnx converts its fake-quant ops differently "
                "from TensorFlow and the result fails verification; the .onnx files are those "
                "of the float student.")


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ModelInfo:
    """A trained Keras model and its measurements (test split unless named ``val_``).

    ``epochs_run`` is how many epochs this process trained (fewer than ``epochs`` when a fit
    was resumed, 0 for a model reused from an interrupted run); ``resumed`` says which.
    """

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
    epochs_run: int | None = None
    resumed: str | None = None
    sparsity: dict | None = None
    quantization: str = "float32"

    def to_dict(self):
        # not dataclasses.asdict: it would deep-copy (pickle) the Keras model
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        d["agreement_with_teacher"] = d.pop("agreement")
        d["val_agreement_with_teacher"] = d.pop("val_agreement")
        return d

    def row(self, note=""):
        return Row(self.name, "keras", self.quantization, self.params, self.size_bytes,
                   self.test_accuracy, self.agreement, self.latency_ms, note=note)


@dataclasses.dataclass
class RunResult:
    """What ``run`` did. ``ok`` is False when an artifact failed.

    ``members`` are the teachers of an ensemble (``teacher`` is then the ensemble); ``qat`` the
    quantization-aware student and ``qat_export_report`` its export, when ``qat`` is on.
    """

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
    members: list = dataclasses.field(default_factory=list)
    qat: ModelInfo | None = None
    qat_export_report: object = None

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
    """A ``.keras`` file as an uncompiled Keras model (``keras_distill.io.load_model``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be loaded (not a ``.keras`` file, truncated...); for
            Lambda layers refused in safe mode, the message names ``--allow-unsafe`` /
            ``safe_mode = false``.
    """
    # quantize and teachers register the classes of QAT students and ensembles
    from keras_distill import io, quantize, teachers  # noqa: F401

    path = os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{role} file not found: {path}")
    try:
        return io.load_model(path, allow_unsafe=not safe_mode, compile=False)
    except TypeError as exc:  # a class Keras cannot find (its message holds the whole config)
        found = str(exc).split(". Make sure")[0]
        raise ValueError(f"cannot load {role} {path}: {found}; register the class with "
                         "keras.saving.register_keras_serializable and import its module "
                         "first.") from None
    except io.UnsafeModelError as exc:
        what = (f"Lambda layer(s) {', '.join(repr(n) for n in exc.layers)}" if exc.layers
                else "Python code stored as bytecode")
        raise ValueError(
            f"{role} {path} contains {what}, which safe mode refuses to load: it runs when the "
            "file is loaded. If you trust the file, pass --allow-unsafe (or --no-safe-mode; "
            "safe_mode = false in the config).") from None


def _check_fits_data(model, data, role):
    name = model.name
    if not hasattr(model, "input_shape") and getattr(model, "members", None):
        model = model.members[0]  # an ensemble (a subclassed model) takes its members' shapes
    in_shape = tuple(model.input_shape[1:])
    if in_shape != tuple(data.input_shape) and None not in in_shape:
        raise ValueError(f"the {role} {name!r} takes inputs of shape {in_shape} but the "
                         f"data {data.name!r} has samples of shape {data.input_shape}.")
    classes = model.output_shape[-1]
    if classes != data.num_classes:
        raise ValueError(f"the {role} {name!r} outputs {classes} classes but the data "
                         f"{data.name!r} has {data.num_classes}.")


def _build(cfg, role, data, name, ref=None):
    """The ``teacher`` or ``student`` model ``ref`` (default ``<role>.model``): a fresh preset,
    or loaded from its file."""
    from keras_distill import presets

    ref = cfg[f"{role}.model"] if ref is None else ref
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


def _ensemble(cfg, members):
    from keras_distill.teachers import Ensemble

    return Ensemble(members, weights=cfg["teacher.weights"], average=cfg["teacher.average"],
                    name="teacher")


def _check_distillable(cfg, teachers, student):
    """Construct a Distiller on copies, so that shape, softmax and layer-name mistakes are
    reported before any training (the real teachers stay trainable)."""
    import keras

    try:
        t = [keras.models.clone_model(m) for m in teachers]
        s = keras.models.clone_model(student)
    except Exception:  # noqa: BLE001  (subclassed models do not clone: checked when distilling)
        return
    _make_distiller(cfg, t[0] if len(t) == 1 else _ensemble(cfg, t), s)


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


def _free_path(out_dir, file, inputs, suffix="_trained"):
    """``out_dir/file``, or ``..._trained.keras`` if that is one of the ``inputs`` (an input
    file is never overwritten)."""
    path = os.path.join(out_dir, file)
    if any(_same_file(path, i) for i in inputs if i.endswith(".keras")):
        return os.path.join(out_dir, file[:-len(".keras")] + f"{suffix}.keras")
    return path


def _teacher_path(cfg, out_dir):
    """Where the teacher is saved: ``teacher.keras`` in ``out_dir``, unless that is the
    teacher file given as input and the job trains it further (then ``teacher_trained.keras``,
    so that an input file is never overwritten)."""
    path = os.path.join(out_dir, TEACHER_FILE)
    if cfg.teacher_epochs() and _same_file(path, cfg["teacher.model"]):
        return os.path.join(out_dir, "teacher_trained.keras")
    return path


# ------------------------------------------------------------------------------------------
# interrupted runs: checkpoints and --resume
# ------------------------------------------------------------------------------------------


class _Checkpoints:
    """``<out_dir>/.backup``: the configuration of the run, the stages it finished (their
    ``.keras`` files) and a ``BackupAndRestore`` folder per fit in progress.

    Args:
        out_dir: the run's output folder.
        cfg: the configuration; with ``resume``, it must match the interrupted run's.
        resume: continue the interrupted run; otherwise a stale folder is cleared.
        enabled: False for jobs that are not resumable (nothing is written).
    """

    def __init__(self, out_dir, cfg, *, resume=False, log=print, enabled=True):
        self.out_dir = out_dir
        self.root = os.path.join(out_dir, BACKUP_DIR)
        self.enabled = enabled
        self.done = {}
        if not enabled:
            return
        state_path = os.path.join(self.root, STATE_FILE)
        fingerprint = _resume_fingerprint(cfg)
        if resume:
            try:
                with open(state_path, encoding="utf-8") as f:
                    state = json.load(f)
            except (OSError, ValueError):
                raise ValueError(
                    f"--resume: there is no interrupted run to resume in {out_dir} (no "
                    f"{BACKUP_DIR}/{STATE_FILE}: the last run there finished, or none started). "
                    "Run again without --resume.") from None
            _check_same_run(state.get("config", {}), fingerprint, out_dir)
            self.done = dict(state.get("done", {}))
            finished = [s for s, f in self.done.items()
                        if os.path.isfile(os.path.join(out_dir, f))]
            log(f"Resuming the interrupted run in {out_dir}: "
                + (f"reusing {', '.join(finished)}." if finished else "no model had finished."))
        elif os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.root, exist_ok=True)
        self._state = {"config": fingerprint, "done": self.done}
        self._write()
        report_lib.write_text(os.path.join(self.root, CONFIG), cfg.to_toml(
            title="keras-distill configuration of the interrupted run "
                  "(keras-distill run --config this-file --resume)"))

    def _write(self):
        report_lib.write_json(os.path.join(self.root, STATE_FILE), self._state)

    def finished(self, stage):
        """The file of a stage the interrupted run finished, or None."""
        file = self.done.get(stage)
        if file and os.path.isfile(os.path.join(self.out_dir, file)):
            return os.path.join(self.out_dir, file)
        return None

    def finish(self, stage, path):
        if self.enabled:
            self.done[stage] = os.path.relpath(path, self.out_dir)
            self._write()

    def callbacks(self, stage):
        """``[BackupAndRestore]`` for the fit of ``stage`` (none when disabled)."""
        if not self.enabled:
            return []
        return [_backup_callback(os.path.join(self.root, stage), CHECKPOINT_SECONDS)]

    def initial_epoch(self, stage):
        """The epoch the fit of ``stage`` restarts from (0: from the start)."""
        path = os.path.join(self.root, stage, "training_metadata.json")
        try:
            with open(path, encoding="utf-8") as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def close(self):
        if self.enabled and os.path.exists(self.root):
            shutil.rmtree(self.root, ignore_errors=True)


def _backup_callback(backup_dir, min_seconds):
    """``keras.callbacks.BackupAndRestore`` that saves at the end of an epoch only when
    ``min_seconds`` have passed since the last save (or the start): an interruption loses at
    most that much training, and short epochs do not pay for a save each."""
    import keras

    class Backup(keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self._saved_at = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() - self._saved_at >= min_seconds:
                super().on_epoch_end(epoch, logs)
                self._saved_at = time.monotonic()

    return Backup(backup_dir, double_checkpoint=True)


def _resume_fingerprint(cfg):
    from keras_distill.config import RESUME_FREE_KEYS

    return {k: v for k, v in cfg.flat(absolute_paths=True).items() if k not in RESUME_FREE_KEYS}


def _check_same_run(then, now, out_dir):
    keys = sorted(set(then) | set(now))
    diff = [k for k in keys if then.get(k) != now.get(k)]
    if not diff:
        return
    shown = "; ".join(f"{k} = {json.dumps(then.get(k))} then, {json.dumps(now.get(k))} now"
                      for k in diff[:4]) + ("; ..." if len(diff) > 4 else "")
    raise ValueError(
        f"--resume: the interrupted run in {out_dir} had another configuration ({shown}). "
        f"Resume it with the same settings (keras-distill run --config "
        f"{os.path.join(out_dir, BACKUP_DIR, CONFIG)} --resume), or run without --resume to "
        "start afresh.")


def _fit(model, data, cfg, *, stage, ckpt, log, verbose, epochs, callbacks=(), pruning=None,
         **fit_kwargs):
    """``model.fit`` on the training split with validation, resumable; returns ``(seconds,
    epochs run)``."""
    start_epoch = ckpt.initial_epoch(stage) if ckpt is not None else 0
    if start_epoch:
        log(f"  resuming {stage} after epoch {start_epoch} of {epochs} (from "
            f"{BACKUP_DIR}/{stage}).")
    callbacks = list(ckpt.callbacks(stage) if ckpt is not None else []) + list(callbacks)
    if pruning is not None:
        steps = math.ceil(len(data.x_train) / cfg["batch_size"])
        pruning.step = start_epoch * steps  # the schedule goes on where it stopped
        callbacks += [pruning, _masks_now(pruning)]
    start = time.perf_counter()
    history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                        epochs=epochs, batch_size=cfg["batch_size"], verbose=verbose,
                        callbacks=callbacks, **fit_kwargs)
    return time.perf_counter() - start, len(history.epoch)


def _masks_now(pruning):
    """A callback that, after a resume, restores the pruning masks from the restored weights.

    Masked weights are exactly zero after every batch, so the masks in force when the backup
    was saved are the non-zero pattern of its weights (``keep_sparsity``): the schedule then
    goes on exactly as in an uninterrupted run.
    """
    import keras

    class MasksNow(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if pruning.step > 0:
                pruning.masks_from_zeros()

    return MasksNow()


# ------------------------------------------------------------------------------------------
# teachers
# ------------------------------------------------------------------------------------------


def _build_teachers(cfg, data):
    """The teacher models, untrained: ``[(name, ref, model)]`` (one, or the members of an
    ensemble, named ``teacher_1``, ``teacher_2``...). Member ``i`` is seeded with
    ``seed + i``."""
    import keras

    refs = cfg.teacher_refs()
    ensemble = cfg["teacher.models"] is not None
    out = []
    for i, ref in enumerate(refs):
        name = f"teacher_{i + 1}" if ensemble else "teacher"
        keras.utils.set_random_seed(cfg["seed"] + i)
        model = _build(cfg, "teacher", data, name, ref=ref)
        if ensemble and ref.endswith(".keras") and model.name != name:
            model = _renamed(model, name)
        out.append((name, ref, model))
    return out


def _renamed(model, name):
    """A copy of ``model`` named ``name`` (the members of an ensemble need distinct names)."""
    config = model.get_config()
    if not isinstance(config, dict) or "name" not in config:
        return model
    copy = model.__class__.from_config({**config, "name": name})
    copy.set_weights(model.get_weights())
    return copy


def _train_teacher(cfg, data, teacher, log, verbose, *, ref=None, name="teacher", seed=None,
                   ckpt=None, path=None):
    """Train the teacher ``teacher`` (a model of ``ref``) for ``teacher.epochs`` (none: used as
    it is); save it to ``path``. A teacher the interrupted run finished is loaded instead."""
    ref = cfg["teacher.model"] if ref is None else ref
    epochs = cfg.teacher_epochs(ref)
    info = ModelInfo(name, teacher, epochs=epochs, epochs_run=0)
    label = "Teacher" if name == "teacher" else f"Teacher {name}"
    if epochs == 0:
        log(f"{label}: {ref} ({teacher.count_params():,} parameters), used as it is.")
        return info
    done = ckpt.finished(name) if ckpt is not None else None
    if done:
        info.model = load_model(done, safe_mode=cfg["safe_mode"], role="teacher")
        info.resumed, info.path = "reused", os.path.basename(done)
        log(f"{label}: reusing {info.path} (finished before the interruption).")
        return info
    if not teacher.trainable_weights:
        raise ValueError(
            f"teacher.epochs = {epochs} but the teacher {ref} has no trainable weights (it is "
            "frozen); use it as it is with --teacher-epochs 0, or unfreeze it.")
    import keras

    log(f"{label}: training {ref} ({teacher.count_params():,} parameters) for "
        f"{_epochs(epochs)}.")
    keras.utils.set_random_seed(cfg["seed"] if seed is None else seed)
    _compile_supervised(teacher, cfg["teacher.learning_rate"])
    info.train_seconds, info.epochs_run = _fit(teacher, data, cfg, stage=name, ckpt=ckpt,
                                               log=log, verbose=verbose, epochs=epochs)
    if path is not None:
        save_model(teacher, path)
        info.path = os.path.basename(path)
        if ckpt is not None:
            ckpt.finish(name, path)
    return info


def _teachers(cfg, data, built, out_dir, log, verbose, ckpt=None):
    """Train (or reuse) the teachers, save them and measure them.

    Returns:
        ``(teacher, members, t_val, t_test)``: the :class:`ModelInfo` of the teacher the
        students learn from (an ``Ensemble`` for ``teacher.models``), those of the members
        (empty for one teacher), and the teacher's outputs on validation and test data.
    """
    inputs = cfg.teacher_refs()
    if cfg["teacher.models"] is None:
        (name, ref, model), = built
        path = _teacher_path(cfg, out_dir)
        info = _train_teacher(cfg, data, model, log, verbose, ref=ref, ckpt=ckpt,
                              path=None if _same_file(path, ref) else path)
        t_val, t_test = _measure(info, data)
        info.val_agreement = info.agreement = 1.0
        # saved now: the Distiller freezes the teacher (trainable=False) for distillation
        if info.path is None and not _same_file(path, ref):  # used as it is: a copy
            save_model(info.model, path)
        info.path, info.size_bytes = os.path.basename(path), os.path.getsize(path)
        return info, [], t_val, t_test

    members = []
    for i, (name, ref, model) in enumerate(built):
        path = _free_path(out_dir, f"{name}.keras", inputs)
        info = _train_teacher(cfg, data, model, log, verbose, ref=ref, name=name,
                              seed=cfg["seed"] + i, ckpt=ckpt, path=path)
        if info.path is None:  # used as it is: its own file
            info.path = ref if ref.endswith(".keras") else None
        if info.path is not None:
            full = info.path if os.path.isabs(info.path) else os.path.join(out_dir, info.path)
            info.size_bytes = os.path.getsize(full)
        members.append(info)
    ensemble = _ensemble(cfg, [m.model for m in members])
    weights = ", ".join(f"{w:.3g}" for w in ensemble.weights_)
    teacher = ModelInfo("teacher", ensemble, epochs=0, epochs_run=0)
    t_val, t_test = _measure(teacher, data)
    teacher.val_agreement = teacher.agreement = 1.0
    for m in members:
        _measure(m, data, t_val, t_test)
    path = _free_path(out_dir, TEACHER_FILE, inputs, suffix="_ensemble")
    save_model(ensemble, path)
    teacher.path, teacher.size_bytes = os.path.basename(path), os.path.getsize(path)
    log(f"Teacher: an ensemble of {len(members)} ({', '.join(m.name for m in members)}; "
        f"average of their {cfg['teacher.average']}, weights {weights}): validation accuracy "
        f"{teacher.val_accuracy:.4f} (members: "
        + ", ".join(f"{m.val_accuracy:.4f}" for m in members) + ").")
    return teacher, members, t_val, t_test


# ------------------------------------------------------------------------------------------
# students
# ------------------------------------------------------------------------------------------


def _student_pair(cfg, data, teacher=None):
    """Two copies of the student with the same initial weights (baseline, distilled).

    With ``student.from_teacher``, the student is ``keras_distill.students.shrink(teacher,
    width, depth)`` (``teacher``: the first teacher; its weights are transferred later, by
    :func:`_transfer`, once it is trained).
    """
    import keras

    keras.utils.set_random_seed(cfg["seed"])
    shrink = cfg["student.from_teacher"]
    if shrink is None:
        baseline = _build(cfg, "student", data, "student_baseline")
        distilled = _build(cfg, "student", data, "student_distilled")
    else:
        from keras_distill import students

        baseline, distilled = (
            students.shrink(teacher, shrink["width"], shrink.get("depth"), name=name)
            for name in ("student_baseline", "student_distilled"))
        _check_fits_data(baseline, data, "student")
    distilled.set_weights(baseline.get_weights())
    return baseline, distilled


def _transfer(cfg, teacher, baseline, distilled, log):
    """``student.from_teacher``: initialize both students from the trained teacher."""
    shrink = cfg["student.from_teacher"]
    if shrink is None:
        return None
    desc = f"width {shrink['width']:g}" + (f", depth {shrink['depth']}" if "depth" in shrink
                                           else "")
    if shrink["transfer"] == "none":
        log(f"Student: the teacher shrunk ({desc}, {baseline.count_params():,} parameters), "
            "randomly initialized (transfer = 'none').")
        return {**shrink, "params": int(baseline.count_params())}
    from keras_distill import students

    report = students.transfer_weights(teacher, baseline, method=shrink["transfer"])
    distilled.set_weights(baseline.get_weights())
    text = str(report).splitlines()
    log(f"Student: the teacher shrunk ({desc}, {baseline.count_params():,} parameters), "
        f"initialized from it: {text[0]}.")
    if not cfg["quiet"]:
        log("\n".join(text[1:]))
    return {**shrink, "params": int(baseline.count_params()), "copied": report.copied,
            "sliced": report.sliced, "skipped": report.skipped,
            "layers": [{"layer": t.name, "teacher_layer": t.teacher_name, "status": t.status,
                        "detail": t.reason} for t in report.layers]}


def _pruning(cfg, data, model):
    """``prune``: ``keras_distill.quantize.prune`` of ``model`` (polynomial schedule reaching
    the target after three quarters of the epochs), or None."""
    if not cfg["prune"]:
        return None
    from keras_distill import quantize

    steps = math.ceil(len(data.x_train) / cfg["batch_size"]) * cfg["epochs"]
    _, callback = quantize.prune(model, target_sparsity=cfg["prune"],
                                 end_step=max(0, math.floor(0.75 * steps) - 1))
    return callback


def _stripped(info, pruning, log, quiet):
    """After pruning: the plain copy to save and export, and its per-layer sparsity."""
    if pruning is None:
        return
    from keras_distill import quantize

    info.model = quantize.strip_pruning(info.model, pruning)
    _sparsity(info, log, quiet)


def _sparsity(info, log, quiet):
    from keras_distill import quantize

    report = quantize.sparsity_report(info.model)
    info.sparsity = {"overall": round(report.overall, 6),
                     "layers": {name: round(report[name], 6) for name in report.layers}}
    log(f"  {info.name}: {report.overall:.1%} of its Dense / Conv weights are zero.")
    if not quiet:
        log("\n".join("    " + line for line in str(report).splitlines()))


def _train_baseline(cfg, data, student, log, verbose, *, ckpt=None, path=None):
    import keras

    info = ModelInfo("student_baseline", student, epochs=cfg["epochs"], epochs_run=0)
    done = ckpt.finished(info.name) if ckpt is not None else None
    if done:
        info.model = load_model(done, safe_mode=cfg["safe_mode"], role="student")
        info.resumed = "reused"
        log(f"Baseline: reusing {os.path.basename(done)} (finished before the interruption).")
        return info
    log(f"Baseline: training the student alone ({student.count_params():,} parameters, "
        f"{_epochs(cfg['epochs'])}" + (f", pruned to {cfg['prune']:.0%} sparsity"
                                        if cfg["prune"] else "") + ").")
    keras.utils.set_random_seed(cfg["seed"])
    _compile_supervised(student, cfg["learning_rate"])
    pruning = _pruning(cfg, data, student)
    info.train_seconds, info.epochs_run = _fit(student, data, cfg, stage=info.name, ckpt=ckpt,
                                               log=log, verbose=verbose, epochs=cfg["epochs"],
                                               pruning=pruning)
    _stripped(info, pruning, log, cfg["quiet"])
    if path is not None:
        save_model(info.model, path)
        if ckpt is not None:
            ckpt.finish(info.name, path)
    return info


def _distill(cfg, data, teacher, student, log, verbose, *, ckpt=None, path=None, out_dir=None):
    import keras

    info = ModelInfo("student_distilled", student, epochs=cfg["epochs"], epochs_run=0)
    done = ckpt.finished(info.name) if ckpt is not None else None
    if done:
        info.model = load_model(done, safe_mode=cfg["safe_mode"], role="student")
        info.resumed = "reused"
        log(f"Distilling: reusing {os.path.basename(done)} (finished before the interruption).")
        return info
    names = ", ".join(s["name"] for s in cfg["losses"])
    log(f"Distilling: the same student from the teacher ({names}, temperature "
        f"{cfg['temperature']:g}, alpha {cfg['alpha']:g}, {_epochs(cfg['epochs'])}"
        + (f", pruned to {cfg['prune']:.0%} sparsity" if cfg["prune"] else "")
        + (", teacher outputs computed once" if cfg["cache_teacher"] else "") + ").")
    keras.utils.set_random_seed(cfg["seed"])
    distiller = _make_distiller(cfg, teacher, student)
    distiller.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
                      metrics=["accuracy"])
    pruning = _pruning(cfg, data, student)
    info.train_seconds, info.epochs_run = _fit(
        distiller, data, cfg, stage=info.name, ckpt=ckpt, log=log, verbose=verbose,
        epochs=cfg["epochs"], pruning=pruning, **_cache_kwargs(cfg, out_dir))
    _log_cache(distiller, log)
    info.model = distiller.student
    _stripped(info, pruning, log, cfg["quiet"])
    if path is not None:
        save_model(info.model, path)
        if ckpt is not None:
            ckpt.finish(info.name, path)
    return info


def _cache_kwargs(cfg, out_dir):
    if not cfg["cache_teacher"]:
        return {}
    return {"cache_teacher": True,
            "cache_dir": None if out_dir is None else os.path.join(out_dir, CACHE_DIR)}


def _log_cache(distiller, log):
    info = getattr(distiller, "cache_info", None)
    if info:
        where = info.get("path") or "memory"
        log(f"  teacher outputs: {'read from' if info.get('reused') else 'computed once into'} "
            f"{where}.")


def _qat_learning_rate(cfg):
    rate = cfg["qat_learning_rate"]
    return cfg["learning_rate"] * QAT_LEARNING_RATE_FACTOR if rate is None else rate


def _train_qat(cfg, data, teacher, chosen, log, verbose, *, ckpt=None, path=None,
               out_dir=None):
    """``qat``: quantization-aware fine-tuning of the chosen student with the Distiller
    (``keras_distill.quantize.quantize_aware``; BatchNormalization folded, activation ranges
    calibrated on training inputs first), keeping the zeros of a pruned student."""
    import keras

    from keras_distill import quantize

    epochs, rate = cfg["qat_epochs"], _qat_learning_rate(cfg)
    info = ModelInfo("student_qat", None, epochs=epochs, epochs_run=0,
                     quantization="fake-quant int8")
    done = ckpt.finished(info.name) if ckpt is not None else None
    if done:
        info.model = load_model(done, safe_mode=cfg["safe_mode"], role="student")
        info.resumed = "reused"
        log(f"QAT: reusing {os.path.basename(done)} (finished before the interruption).")
    else:
        log(f"QAT: quantization-aware fine-tuning of {chosen.name} with the teacher "
            f"({_epochs(epochs)}, learning rate {rate:g}).")
        keras.utils.set_random_seed(cfg["seed"])
        model = quantize.quantize_aware(chosen.model, name="student_qat")
        quantize.calibrate(model, data.x_train[:cfg["calibration_samples"]])
        callbacks = [quantize.keep_sparsity(model)] if cfg["prune"] else []
        distiller = _make_distiller(cfg, teacher, model)
        distiller.compile(optimizer=keras.optimizers.Adam(rate), metrics=["accuracy"])
        info.train_seconds, info.epochs_run = _fit(
            distiller, data, cfg, stage=info.name, ckpt=ckpt, log=log, verbose=verbose,
            epochs=epochs, callbacks=callbacks, **_cache_kwargs(cfg, out_dir))
        info.model = distiller.student
        if path is not None:
            save_model(info.model, path)
            if ckpt is not None:
                ckpt.finish(info.name, path)
    if cfg["prune"]:
        _sparsity(info, log, cfg["quiet"])
    return info


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


def _export(cfg, model, data, out_dir, log, name=EXPORT_NAME, *, formats=None,
            quantization=None, calibrate=True):
    """``keras_distill.export`` with the config's formats (or ``formats`` /
    ``quantization``); returns ``(report, errors)``. ``calibrate=False`` passes no
    representative data (a quantization-aware model carries its own ranges)."""
    import importlib
    import warnings

    # the module: `from keras_distill import export` is the function of the same name
    export_lib = importlib.import_module("keras_distill.export")

    formats = tuple(cfg["formats"] if formats is None else formats)
    modes = tuple(cfg["quantization"] if quantization is None else quantization)
    log(f"Exporting {name}: {', '.join(formats)} x {', '.join(modes)}; verifying each artifact "
        "in its runtime.")
    errors = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="export: ")  # failures are in the report
        try:
            result = export_lib.export(
                model, out_dir, name=name, formats=formats, quantization=modes,
                representative_data=data.x_train if calibrate else None,
                eval_data=(data.x_test, data.y_test),
                labels=data.class_names, calibration_samples=cfg["calibration_samples"])
        except export_lib.VerificationError as exc:
            if exc.report is None:
                raise
            result = exc.report
            errors.append(f"verification: {exc}")
    errors += [f"{a.format}/{a.quantization}: {a.error}" for a in result.failed
               if not (a.error or "").startswith("VerificationError")]
    return result, errors


def _resolver_method(op):
    """``tflite::MicroMutableOpResolver``'s method for a TFLite builtin op: ``CONV_2D`` →
    ``AddConv2D``, ``MAX_POOL_2D`` → ``AddMaxPool2D``, ``FULLY_CONNECTED`` →
    ``AddFullyConnected``.

    Example:
        >>> [_resolver_method(o) for o in ("CONV_2D", "DEPTHWISE_CONV_2D", "RELU6")]
        ['AddConv2D', 'AddDepthwiseConv2D', 'AddRelu6']
    """
    return "Add" + "".join(t.upper() if t[:1].isdigit() else t.capitalize()
                           for t in op.split("_"))


def _flatbuffer(path, fmt):
    if fmt == "micro":
        from keras_distill.export import micro

        return micro.read_c_source(path)[0]
    with open(path, "rb") as f:
        return f.read()


def _signatures(model_bytes):
    """The TFLite model's signatures: ``{"serving_default": {"inputs": ["image"], "outputs":
    ["output_0"]}}`` (what ``Interpreter.getSignatureRunner`` takes on Android)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=bytes(model_bytes)).get_signature_list()


def _artifact_rows(export_report, data, params, reference, out_dir, *, source=None,
                   qat=False, gzip=False):
    """Reload every artifact from disk, run it on the test split against ``reference``
    outputs; one :class:`Row` and one manifest record per artifact.

    Records also carry ``source_model`` (the Keras model exported), ``qat``,
    ``gzip_size_bytes`` (of the model bytes: the flatbuffer inside a micro ``.cc``) and, for
    TFLite and micro, the model's ``ops`` (micro: with ``micro_op_resolver``, the
    ``MicroMutableOpResolver`` methods that register them). ``gzip`` adds the gzip size to the
    rows (the table's ``gzip KiB`` column); ``qat`` labels rows ``int8 QAT``.
    """
    from keras_distill import evaluate as evaluate_lib
    from keras_distill import quantize
    from keras_distill.export import tflite

    rows, records = [], []
    for a in export_report.artifacts:
        record = {"file": a.path, "files": list(a.files), "format": a.format,
                  "quantization": a.quantization, "status": a.status,
                  "size_bytes": a.size_bytes, "sha256": a.sha256, "error": a.error,
                  "export_metrics": dict(a.metrics), "source_model": source, "qat": qat}
        mode = f"{a.quantization} QAT" if qat else a.quantization
        label = a.path or f"{export_report.name} {a.format}/{a.quantization}"
        if not a.ok:
            records.append(record)
            rows.append(Row(label, a.format, mode, params, None, status="failed",
                            note=(a.error or "")[:80]))
            continue
        path = os.path.join(out_dir, a.path)
        try:
            r = evaluate_lib.evaluate_artifact(path, data.x_test, data.y_test, reference)
        except Exception as exc:  # noqa: BLE001  (one bad artifact must not hide the rest)
            record.update(status="failed", error=f"reload: {type(exc).__name__}: {exc}")
            records.append(record)
            rows.append(Row(label, a.format, mode, params, a.size_bytes,
                            status="failed", note=record["error"][:80]))
            continue
        same = a.metrics.get("accuracy") is None or abs(
            r["accuracy"] - a.metrics["accuracy"]) < 1e-9
        model_bytes = _flatbuffer(path, a.format) if a.format in ("tflite", "micro") else None
        if model_bytes is None:
            with open(path, "rb") as f:
                model_bytes = f.read()
        record.update(test_accuracy=r["accuracy"], agreement_with_teacher=r["agreement"],
                      agreement_with_keras=a.metrics.get("agreement"),
                      max_abs_error_vs_keras=a.metrics.get("max_abs_error"),
                      latency_ms_median=r["latency_ms_median"], runtime=r["runtime"],
                      input_dtype=r["input_dtype"], verified=bool(same),
                      gzip_size_bytes=quantize.gzip_size(model_bytes))
        for key in ("input_scale", "input_zero_point", "output_scale", "output_zero_point",
                    "inputs", "outputs"):
            if key in a.details:
                record[key] = a.details[key]
        if a.format in ("tflite", "micro"):
            record["ops"] = sorted({op["op"] for op in tflite.list_ops(model_bytes)})
        if a.format == "tflite":
            record["signatures"] = _signatures(model_bytes)
        if a.format == "micro":
            record["arena_size"] = r.get("arena_size")
            record["micro_op_resolver"] = [_resolver_method(op) for op in record["ops"]]
            record["identifiers"] = a.details.get("identifiers")
        records.append(record)
        rows.append(Row(a.path, a.format, mode, params, a.size_bytes, r["accuracy"],
                        r["agreement"], r["latency_ms_median"],
                        note="" if same else "differs from the export check",
                        gzip_bytes=record["gzip_size_bytes"] if gzip else None))
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


def _remove_stale_reports(out_dir):
    """A run rewrites the folder: the reports of an earlier run must not outlive the files
    they describe, should this one be interrupted. The new ones are written last."""
    for name in (MANIFEST, REPORT):
        try:
            os.remove(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass


def run(cfg, *, log=None, command=None, resume=False):
    """The whole job: teacher, baseline, distilled student, export, verification, reports.

    Args:
        cfg: a :class:`keras_distill.config.Config`.
        log: called with each progress line (default ``print``).
        command: the command line, recorded in the manifest.
        resume: continue the run interrupted in ``out_dir`` (``keras-distill run --resume``):
            reuse the models it finished and continue its interrupted fit from the last
            completed epoch. The configuration must be the same (export keys aside).

    Returns:
        :class:`RunResult`; ``result.ok`` is False when an artifact failed (the reports are
        written all the same).

    Raises:
        ValueError: bad data or models, or ``resume`` without an interrupted run (or with
            another configuration).
    """
    log = _log_fn(log)
    verbose = _fit_verbose(cfg)
    started = time.perf_counter()
    seconds = {}
    out_dir = _prepare_out_dir(cfg["out_dir"])
    _remove_stale_reports(out_dir)
    ckpt = _Checkpoints(out_dir, cfg, resume=resume, log=log)

    t = time.perf_counter()
    data = load_data(cfg)
    seconds["data"] = time.perf_counter() - t
    log(f"Data: {data.summary()}.")

    import keras

    keras.utils.set_random_seed(cfg["seed"])
    built = _build_teachers(cfg, data)
    baseline_model, distilled_model = _student_pair(cfg, data, built[0][2])
    _check_distillable(cfg, [m for _, _, m in built], distilled_model)  # before any training
    teacher, members, t_val, t_test = _teachers(cfg, data, built, out_dir, log, verbose, ckpt)
    # teacher training time, measured on its own
    seconds["teacher"] = teacher.train_seconds + sum(m.train_seconds for m in members)
    transfer = _transfer(cfg, (members[0] if members else teacher).model, baseline_model,
                         distilled_model, log)

    baseline = _train_baseline(cfg, data, baseline_model, log, verbose, ckpt=ckpt,
                               path=os.path.join(out_dir, BASELINE_FILE))
    seconds["baseline"] = baseline.train_seconds
    distilled = _distill(cfg, data, teacher.model, distilled_model, log, verbose, ckpt=ckpt,
                         path=os.path.join(out_dir, DISTILLED_FILE), out_dir=out_dir)
    seconds["distill"] = distilled.train_seconds
    for info, file in ((baseline, BASELINE_FILE), (distilled, DISTILLED_FILE)):
        _measure(info, data, t_val, t_test)
        info.path = file
        info.size_bytes = os.path.getsize(os.path.join(out_dir, file))
        if cfg["prune"] and info.sparsity is None:  # reused after an interruption
            _sparsity(info, lambda _: None, True)

    selected, reason = select_student(baseline, distilled, cfg["export_student"])
    chosen = distilled if selected == "student_distilled" else baseline
    log(f"Selected: {selected}. {reason}")

    rows = [m.row() for m in members]
    rows += [teacher.row(f"ensemble of {len(members)}" if members else ""),
             baseline.row("exported" if chosen is baseline else ""),
             distilled.row("exported" if chosen is distilled else "")]
    export_report, errors, records, notes = None, [], [], []
    gzip = bool(cfg["prune"])
    if cfg["formats"]:
        t = time.perf_counter()
        export_report, errors = _export(cfg, chosen.model, data, out_dir, log)
        _remove_stale_reports(out_dir)  # export's own; the run's manifest describes it all
        artifact_rows, records = _artifact_rows(export_report, data, chosen.params, t_test,
                                                out_dir, source=chosen.name, gzip=gzip)
        rows += artifact_rows
        errors += [f"{r['format']}/{r['quantization']}: {r['error']}" for r in records
                   if r["status"] != "ok" and r["error"].startswith("reload")]
        notes += list(export_report.notes)
        seconds["export"] = time.perf_counter() - t
    else:
        log("Export: skipped (formats = []).")

    qat, qat_report = None, None
    if cfg["qat"]:
        t = time.perf_counter()
        qat = _train_qat(cfg, data, teacher.model, chosen, log, verbose, ckpt=ckpt,
                         path=os.path.join(out_dir, QAT_FILE), out_dir=out_dir)
        _measure(qat, data, t_val, t_test)
        qat.path = QAT_FILE
        qat.size_bytes = os.path.getsize(os.path.join(out_dir, QAT_FILE))
        rows.insert(len(members) + 3, qat.row(f"QAT of {chosen.name}"))
        seconds["qat"] = time.perf_counter() - t
        qat_formats = [f for f in cfg["formats"] if f in ("tflite", "micro")]
        notes.append(f"QAT: {QAT_FILE} is {chosen.name} fine-tuned {_epochs(qat.epochs)} with "
                     f"fake int8 quantization (learning rate {_qat_learning_rate(cfg):g}, "
                     "distilled from the teacher)" + (
                         "; its int8 artifacts (student_qat_*) take their scales from the "
                         "ranges learned in training, without calibration data."
                         if qat_formats else "; not exported (formats has neither tflite nor "
                         "micro)."))
        if "onnx" in cfg["formats"]:
            notes.append(_QAT_NO_ONNX)
        if qat_formats:
            t = time.perf_counter()
            qat_report, qat_errors = _export(cfg, qat.model, data, out_dir, log,
                                             QAT_EXPORT_NAME, formats=qat_formats,
                                             quantization=("int8",), calibrate=False)
            _remove_stale_reports(out_dir)
            qat_rows, qat_records = _artifact_rows(qat_report, data, qat.params, t_test,
                                                   out_dir, source=qat.name, qat=True,
                                                   gzip=gzip)
            rows += qat_rows
            records += qat_records
            errors += qat_errors + [
                f"qat {r['format']}/{r['quantization']}: {r['error']}" for r in qat_records
                if r["status"] != "ok" and r["error"].startswith("reload")]
            notes += [f"{QAT_EXPORT_NAME}: {n}" for n in qat_report.notes]
            seconds["qat_export"] = time.perf_counter() - t
    if cfg["cache_teacher"]:
        notes.append(f"Teacher outputs were computed once and stored in {CACHE_DIR}/ (keyed to "
                     "the teacher's weights and the data; reused by later runs, safe to "
                     "delete).")

    files = [m.path for m in members if m.path and not os.path.isabs(m.path)]
    files += [teacher.path, BASELINE_FILE, DISTILLED_FILE] + ([QAT_FILE] if qat else [])
    labels = None
    for rep in (export_report, qat_report):
        if rep is not None and rep.labels_file:
            labels = rep.labels_file
    for r in records:
        files += r["files"]
    if labels:
        files.append(labels)
    files += [CONFIG, MANIFEST, REPORT, PLOT]
    seconds["total"] = time.perf_counter() - started
    models = {i.name: i.to_dict() for i in (*members, teacher, baseline, distilled)}
    if qat is not None:
        models[qat.name] = qat.to_dict()
    manifest = {
        "tool": "keras-distill run",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config_file": cfg.file,
        "config": cfg.to_dict(),
        "data": _data_info(data),
        "models": models,
        "teacher": {"ensemble": [m.name for m in members] or None,
                    "average": cfg["teacher.average"] if members else None,
                    "weights": list(teacher.model.weights_) if members else None},
        "student": {"from_teacher": transfer},
        "selected": {"student": selected, "reason": reason, "file": chosen.path,
                     "criterion": "validation accuracy" if cfg["export_student"] == "auto"
                     else f"export_student = {cfg['export_student']!r}"},
        "pruning": None if not cfg["prune"] else {
            "target_sparsity": cfg["prune"], "schedule": "polynomial, reaching the target after "
            "3/4 of the epochs; both students", "sparsity": {
                i.name: i.sparsity for i in (baseline, distilled, qat) if i is not None}},
        "qat": None if qat is None else {
            "model": qat.name, "from": chosen.name, "epochs": qat.epochs,
            "learning_rate": _qat_learning_rate(cfg),
            "export": qat_report.to_dict() if qat_report is not None else None},
        "artifacts": records,
        "export": export_report.to_dict() if export_report is not None else None,
        "resumed": resume,
        "notes": notes,
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
    ckpt.close()
    return RunResult(out_dir, selected, reason, rows, manifest, teacher, baseline, distilled,
                     export_report, errors, members, qat, qat_report)


def distill(cfg, *, log=None):
    """Distill ``student.model`` (or ``student.from_teacher``) from ``teacher.model`` (or the
    ensemble ``teacher.models``) on the data; save ``<out_dir>/student_distilled.keras``.

    A preset teacher is trained first (``teacher.epochs``); a ``.keras`` teacher is used as it
    is unless ``teacher.epochs`` is set. ``prune`` and ``cache_teacher`` apply as in ``run``.

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
    built = _build_teachers(cfg, data)
    _, student_model = _student_pair(cfg, data, built[0][2])
    _check_distillable(cfg, [m for _, _, m in built], student_model)  # before any training
    single = cfg["teacher.models"] is None
    teacher_notes = {}
    if single:
        (_, ref, model), = built
        trained = bool(cfg.teacher_epochs())
        path = _teacher_path(cfg, out_dir) if trained else None
        teacher = _train_teacher(cfg, data, model, log, verbose, ref=ref, path=path)
        t_val, t_test = _measure(teacher, data)
        teacher.val_agreement = teacher.agreement = 1.0
        members = []
        if trained:  # trained here: saved (before the Distiller freezes it)
            teacher.path = path
            teacher_notes[teacher.name] = f"saved to {teacher.path}"
        elif ref.endswith(".keras"):
            teacher.path = ref
        if teacher.path:
            teacher.size_bytes = os.path.getsize(teacher.path)
    else:
        teacher, members, t_val, t_test = _teachers(cfg, data, built, out_dir, log, verbose)
        teacher.path = os.path.join(out_dir, teacher.path)
        teacher_notes[teacher.name] = f"ensemble of {len(members)}, saved to {teacher.path}"
    _transfer(cfg, (members[0] if members else teacher).model, student_model, student_model,
              log)
    student = _distill(cfg, data, teacher.model, student_model, log, verbose, out_dir=out_dir)
    _measure(student, data, t_val, t_test)
    path = save_model(student.model, os.path.join(out_dir, DISTILLED_FILE))
    student.path, student.size_bytes = path, os.path.getsize(path)
    rows = [m.row() for m in members] + [teacher.row(teacher_notes.get(teacher.name, "")),
                                         student.row(f"saved to {path}")]
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
