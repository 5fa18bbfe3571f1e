"""The training stages of a job: teacher(s), baseline, distilled student, QAT student.

Every stage goes through :func:`train_stage`: reuse the model an interrupted run finished, or
seed, build what ``fit`` trains, fit it (resumable, with the pruning schedule where asked),
take the trained Keras model out, strip pruning, save it and record it as finished. A job's
``on_stage`` hook sees each :class:`Stage` just before its fit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

from keras_distill.pipeline.models import (
    TEACHER_FILE,
    build,
    compile_supervised,
    ensemble,
    free_path,
    load_model,
    measure,
    same_file,
    save_model,
    steps_per_execution,
    teacher_path,
)
from keras_distill.pipeline.results import ModelInfo
from keras_distill.pipeline.tasks import CRITERIA

#: Teacher outputs of ``cache_teacher = true``, keyed to the teacher's weights and the data.
CACHE_DIR = "cache"
#: QAT fine-tuning learning rate, as a fraction of ``learning_rate`` (``qat_learning_rate``).
QAT_LEARNING_RATE_FACTOR = 0.1


@dataclasses.dataclass
class Stage:
    """One fit of a job, as the ``on_stage`` hook of :func:`keras_distill.pipeline.run` (and
    ``distill``) sees it just before ``fit``.

    Attributes:
        name: ``"teacher"`` (or ``"teacher_1"``... for an ensemble), ``"student_baseline"``,
            ``"student_distilled"`` or ``"student_qat"``.
        model: what ``fit`` trains: the model itself, or a ``Distiller`` whose ``student`` it is.
        epochs: the epochs of the whole fit.
        initial_epoch: the epochs already done by an interrupted run (0 from the start).
        callbacks: the Keras callbacks of the fit; the hook may append its own.
        epochs_run: set after the fit: the epochs this process trained.
        seconds: set after the fit: its wall time.
        curves: set after the fit: ``{"val_accuracy": [per epoch], ...}``, the validation
            metrics of each epoch this process trained (after ``initial_epoch``).

    Example:
        >>> stages = []
        >>> result = run(cfg, on_stage=stages.append)  # doctest: +SKIP
        >>> [(s.name, s.epochs_run) for s in stages]  # doctest: +SKIP
        [('teacher', 20), ('student_baseline', 30), ('student_distilled', 30)]
    """

    name: str
    model: object
    epochs: int
    initial_epoch: int = 0
    callbacks: list = dataclasses.field(default_factory=list)
    epochs_run: int | None = None
    seconds: float | None = None
    curves: dict | None = None


@dataclasses.dataclass
class Context:
    """What every stage of one job shares."""

    cfg: object
    data: object
    out_dir: str
    log: object
    ckpt: object
    on_stage: object = None

    @property
    def verbose(self):
        if self.cfg["quiet"]:
            return 0
        return 1 if sys.stdout.isatty() else 2


def epochs_text(n):
    return f"{n} epoch" + ("" if n == 1 else "s")


def train_stage(ctx, info, trainable, *, label, path=None, seed=None, pruning=None,
                callbacks=None, fit_kwargs=None):
    """Fit one stage and save what it trained; or reuse what an interrupted run finished.

    Args:
        ctx: the job's :class:`Context`.
        info: the stage's :class:`ModelInfo` (``info.name`` is the stage's name); its model,
            times, path and sparsity are filled in.
        trainable: a function that builds what ``fit`` trains (a compiled model or
            ``Distiller``), called after seeding.
        label: the stage's name in log lines (``"Baseline"``, ``"Distilling"``...).
        path: where to save the trained model (``None``: not saved).
        seed: the seed set before building (default ``seed``).
        pruning: a function ``model -> PruningCallback`` (``prune``), or None; the trained
            model is then stripped of it and its sparsity recorded.
        callbacks: a function ``model -> [callbacks]`` of more callbacks of the fit (the model
            being the trained Keras model, the student of a ``Distiller``).
        fit_kwargs: more keyword arguments of ``fit`` (the teacher-output cache).

    Returns:
        ``info``.
    """
    import keras

    done = ctx.ckpt.finished(info.name)
    if done:
        role = "teacher" if info.name.startswith("teacher") else "student"
        info.model = load_model(done, safe_mode=ctx.cfg["safe_mode"], role=role)
        info.resumed, info.path = "reused", os.path.basename(done)
        ctx.log(f"{label}: reusing {info.path} (finished before the interruption).")
        return info
    keras.utils.set_random_seed(ctx.cfg["seed"] if seed is None else seed)
    model = trainable()
    student = getattr(model, "student", model)
    callback = pruning(student) if pruning is not None else None
    extra = callbacks(student) if callbacks is not None else []
    stage = Stage(info.name, model, info.epochs, ctx.ckpt.initial_epoch(info.name),
                  [*ctx.ckpt.callbacks(info.name), *extra])
    _fit(ctx, stage, callback, fit_kwargs or {})
    info.train_seconds, info.epochs_run = stage.seconds, stage.epochs_run
    info.curves = {"first_epoch": stage.initial_epoch + 1, **stage.curves} \
        if stage.curves else None
    info.model = getattr(model, "student", model)
    if callback is not None:
        from keras_distill.compress import strip_pruning

        info.model = strip_pruning(info.model, callback)
        record_sparsity(info, ctx.log, ctx.cfg["quiet"])
    if path is not None:
        save_model(info.model, path)
        info.path = os.path.basename(path)
        ctx.ckpt.finish(info.name, path)
    return info


def _fit(ctx, stage, pruning, fit_kwargs):
    """``fit`` on the training split with validation, resumable."""
    data, cfg = ctx.data, ctx.cfg
    if stage.initial_epoch:
        ctx.log(f"  resuming {stage.name} after epoch {stage.initial_epoch} of {stage.epochs} "
                f"(from .backup/{stage.name}).")
    if pruning is not None:
        steps = math.ceil(len(data.x_train) / cfg["batch_size"])
        pruning.step = stage.initial_epoch * steps  # the schedule goes on where it stopped
        stage.callbacks += [pruning, _masks_from_restored_weights(pruning)]
    if ctx.on_stage is not None:
        ctx.on_stage(stage)
    start = time.perf_counter()
    train, feed = _fit_data(stage.model, data, cfg)
    try:
        history = stage.model.fit(*train, epochs=stage.epochs, verbose=ctx.verbose,
                                  callbacks=stage.callbacks, **feed, **fit_kwargs)
    except Exception as err:  # a streamed batch's error, out of TensorFlow's long message
        from keras_distill.data.stream import clear_error

        clear = clear_error(err) if type(err).__name__ == "InvalidArgumentError" else None
        if clear is None:
            raise
        raise clear from None
    stage.seconds, stage.epochs_run = time.perf_counter() - start, len(history.epoch)
    stage.curves = {key: [round(float(v), 6) for v in values]
                    for key, values in history.history.items() if key.startswith("val_")}


def _fit_data(model, data, cfg):
    """``(train, kwargs)`` for ``fit``: the arrays, or for streamed data (lazy arrays)
    ``tf.data`` pipelines of batches shuffled each epoch; ``kwargs`` holds the validation data
    and the batch size. A Distiller streams lazy arrays itself (after computing cached teacher
    outputs for them)."""
    from keras_distill.data import stream
    from keras_distill.distiller import Distiller

    feed = {"validation_data": _validation(data.x_val, data.y_val, cfg["batch_size"]),
            "batch_size": cfg["batch_size"]}
    if isinstance(model, Distiller):
        return (data.x_train, data.y_train), feed
    x, y, feed = stream.fit_arguments(data.x_train, data.y_train, feed, training=True,
                                      seed=cfg["seed"])
    return ((x,) if y is None else (x, y)), feed


def _validation(x, y, batch_size):
    """The validation split as ``fit`` takes it: in-memory arrays become one ``tf.data``
    pipeline of the same batches, built once and cached, instead of the arrays, which Keras
    wraps in a new pipeline at every epoch's evaluation (a ``student_cnn`` epoch on digits with
    validation: 74 ms with the arrays, 53 ms with this). Lazy arrays stay as they are (they are
    streamed)."""
    import numpy as np
    import tensorflow as tf

    arrays = [x, *(y.values() if isinstance(y, dict) else [y])]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return (x, y)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache()


def _masks_from_restored_weights(pruning):
    """A callback that, after a resume, restores the pruning masks from the restored weights.

    Masked weights are exactly zero after every batch, so the masks in force when the backup
    was saved are the non-zero pattern of its weights: the schedule then goes on exactly as in
    an uninterrupted run.
    """
    import keras

    class MasksFromZeros(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if pruning.step > 0:
                pruning.masks_from_zeros()

    return MasksFromZeros()


def record_sparsity(info, log, quiet):
    """Measure the zeros of ``info.model``'s kernels into ``info.sparsity``; log them."""
    from keras_distill.compress import sparsity_report

    report = sparsity_report(info.model)
    info.sparsity = {"overall": round(report.overall, 6),
                     "layers": {name: round(report[name], 6) for name in report.layers}}
    log(f"  {info.name}: {report.overall:.1%} of its Dense / Conv weights are zero.")
    if not quiet:
        log("\n".join("    " + line for line in str(report).splitlines()))


def pruning_schedule(ctx):
    """``prune``: a function making ``keras_distill.compress.prune``'s callback for a model
    (polynomial schedule reaching the target after three quarters of the epochs), or None."""
    cfg = ctx.cfg
    if not cfg["prune"]:
        return None
    steps = math.ceil(len(ctx.data.x_train) / cfg["batch_size"]) * cfg["epochs"]

    def make(model):
        from keras_distill.compress import prune

        return prune(model, target_sparsity=cfg["prune"],
                     end_step=max(0, math.floor(0.75 * steps) - 1))[1]
    return make


def cache_kwargs(ctx, teacher=None):
    """``fit`` keyword arguments of ``cache_teacher`` for distilling from ``teacher``."""
    if ctx.cfg["teacher_outputs"]:
        return {"cache_teacher": ctx.cfg["teacher_outputs"]}
    if not ctx.cfg["cache_teacher"]:
        from keras_distill.data import is_lazy

        # Arrays in memory are the same inputs every epoch (the pipeline does not augment):
        # the teacher runs once over them, in memory, instead of once per batch and epoch
        # (not for feature hints, which need the teacher's features at every step).
        hints = any(spec["name"] == "feature_hint" for spec in ctx.cfg["losses"])
        exact = teacher is not None and _cached_outputs_are_exact(teacher)
        return {"cache_teacher": True} if exact and not hints and \
            not is_lazy(ctx.data.x_train) else {}
    return {"cache_teacher": True, "cache_dir": os.path.join(ctx.out_dir, CACHE_DIR)}


def _cached_outputs_are_exact(teacher):
    """Whether the teacher's cached outputs (what ``predict`` returns) give the Distiller the
    values it reads in the step: not for a teacher whose logits it reads before a final
    softmax or sigmoid (probabilities saturate in float32: a sigmoid logit of 20 comes back as
    87), which is then run at every step."""
    import keras

    from keras_distill import outputs
    from keras_distill.distiller.teacher_logits import reads_before_activation

    if not isinstance(teacher, keras.Model):
        return False
    return not reads_before_activation(teacher, len(outputs.names(teacher)))


# ------------------------------------------------------------------------------------------
# teachers
# ------------------------------------------------------------------------------------------


def build_teachers(cfg, data):
    """The teacher models, untrained: ``[(name, ref, model)]`` (one, or the members of an
    ensemble, named ``teacher_1``, ``teacher_2``...). Member ``i`` is seeded with
    ``seed + i``."""
    import keras

    ensemble_of = cfg["teacher.models"] is not None
    out = []
    for i, ref in enumerate(cfg.teacher_refs()):
        name = f"teacher_{i + 1}" if ensemble_of else "teacher"
        keras.utils.set_random_seed(cfg["seed"] + i)
        model = build(cfg, "teacher", data, name, ref=ref)
        if ensemble_of and ref.endswith(".keras") and model.name != name:
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


def train_teacher(ctx, teacher, ref, *, name="teacher", seed=None, path=None):
    """Train ``teacher`` (a model of ``ref``) for ``teacher.epochs`` (none: used as it is) and
    save it to ``path``."""
    cfg = ctx.cfg
    epochs = cfg.teacher_epochs(ref)
    info = ModelInfo(name, teacher, epochs=epochs, epochs_run=0)
    label = "Teacher" if name == "teacher" else f"Teacher {name}"
    if epochs == 0:
        ctx.log(f"{label}: {ref} ({teacher.count_params():,} parameters), used as it is.")
        return info
    if not ctx.ckpt.finished(name):
        if not teacher.trainable_weights:
            raise ValueError(
                f"teacher.epochs = {epochs} but the teacher {ref} has no trainable weights (it "
                "is frozen); use it as it is with --teacher-epochs 0, or unfreeze it.")
        ctx.log(f"{label}: training {ref} ({teacher.count_params():,} parameters) for "
                f"{epochs_text(epochs)}.")

    def trainable():
        compile_supervised(teacher, cfg["teacher.learning_rate"], ctx.data.task,
                           steps_per_execution(cfg, "teacher"))
        return teacher
    return train_stage(ctx, info, trainable, label=label, path=path, seed=seed)


def teachers(ctx, built):
    """Train (or reuse) the teachers, save them and measure them.

    Returns:
        ``(teacher, members, t_val, t_test)``: the :class:`ModelInfo` of the teacher the
        students learn from (an ``Ensemble`` for ``teacher.models``), those of the members
        (empty for one teacher), and the teacher's outputs on validation and test data.
    """
    cfg, out_dir = ctx.cfg, ctx.out_dir
    if cfg["teacher.models"] is None:
        (_, ref, model), = built
        path = teacher_path(cfg, out_dir)
        info = train_teacher(ctx, model, ref, path=None if same_file(path, ref) else path)
        t_val, t_test = measure(info, ctx.data, own_reference=True)
        # saved now: the Distiller freezes the teacher (trainable=False) for distillation
        if info.path is None and not same_file(path, ref):  # used as it is: a copy
            save_model(info.model, path)
        info.path, info.size_bytes = os.path.basename(path), os.path.getsize(path)
        return info, [], t_val, t_test
    members = [_member(ctx, i, name, ref, model) for i, (name, ref, model) in enumerate(built)]
    return _ensemble_teacher(ctx, members)


def _member(ctx, i, name, ref, model):
    path = free_path(ctx.out_dir, f"{name}.keras", ctx.cfg.teacher_refs())
    info = train_teacher(ctx, model, ref, name=name, seed=ctx.cfg["seed"] + i, path=path)
    if info.path is None:  # used as it is: its own file
        info.path = ref if ref.endswith(".keras") else None
    if info.path is not None:
        full = info.path if os.path.isabs(info.path) else os.path.join(ctx.out_dir, info.path)
        info.size_bytes = os.path.getsize(full)
    return info


def _ensemble_teacher(ctx, members):
    cfg = ctx.cfg
    model = ensemble(cfg, [m.model for m in members], ctx.data.task)
    weights = ", ".join(f"{w:.3g}" for w in model.weights_)
    teacher = ModelInfo("teacher", model, epochs=0, epochs_run=0)
    t_val, t_test = measure(teacher, ctx.data, own_reference=True)
    for m in members:
        measure(m, ctx.data, t_val, t_test)
    path = free_path(ctx.out_dir, TEACHER_FILE, cfg.teacher_refs(), suffix="_ensemble")
    save_model(model, path)
    teacher.path, teacher.size_bytes = os.path.basename(path), os.path.getsize(path)
    key, name, _ = CRITERIA[ctx.data.task]
    ctx.log(f"Teacher: an ensemble of {len(members)} ({', '.join(m.name for m in members)}; "
            f"average of their {cfg['teacher.average']}, weights {weights}): {name} "
            f"{teacher.val_score(key):.4f} (members: "
            + ", ".join(f"{m.val_score(key):.4f}" for m in members) + ").")
    return teacher, members, t_val, t_test


#: Validation samples the teacher check reads from streamed data (it makes several passes).
CHECK_SAMPLES = 4096


def _check_sample(data):
    """The validation split, or (streamed data) a fixed sample of it of ``CHECK_SAMPLES``."""
    from keras_distill.data import is_lazy, representative_samples

    if not is_lazy(data.x_val) or len(data.x_val) <= CHECK_SAMPLES:
        return (data.x_val[:] if is_lazy(data.x_val) else data.x_val), data.y_val
    import numpy as np

    rows = np.sort(np.random.default_rng(0).permutation(len(data.x_val))[:CHECK_SAMPLES])
    return representative_samples(data.x_val, CHECK_SAMPLES), data.y_val[rows]


def check_teacher_can_teach(ctx, teacher, baseline=None):
    """Stop before distillation when the teacher cannot teach (``keras_distill.teacher_check``
    on the validation data; against the student trained alone when ``baseline`` is given),
    naming the measured cause; with ``teacher.allow_weak``, say so and go on."""
    from keras_distill import teacher_check

    x_val, y_val = _check_sample(ctx.data)
    base = None
    if baseline is not None:
        base = teacher_check.score(ctx.data.task, baseline.model.predict(x_val, verbose=0),
                                   y_val)
    check = teacher_check.check_teacher(teacher.model, x_val, y_val, kind=ctx.data.task,
                                        baseline=base)
    if check.ok:
        return check
    if not ctx.cfg["teacher.allow_weak"]:
        raise teacher_check.TeacherCannotTeach(check.message())
    ctx.log(f"Warning: {check.message()} Distilling anyway (teacher.allow_weak).")
    return check
