"""The student stages of a job: the baseline and distilled pair, weight transfer from the
teacher, quantization-aware fine-tuning, and which student to export."""

from __future__ import annotations

from keras_distill.pipeline.models import (
    build,
    check_fits_data,
    compile_supervised,
    make_distiller,
    steps_per_execution,
)
from keras_distill.pipeline.results import ModelInfo
from keras_distill.pipeline.stages import (
    QAT_LEARNING_RATE_FACTOR,
    cache_kwargs,
    epochs_text,
    pruning_schedule,
    record_sparsity,
    train_stage,
)
from keras_distill.pipeline.tasks import CLOSENESS, CRITERIA, distiller_metrics
from keras_distill.registry import LOSS_ARGS


def student_pair(cfg, data, teacher=None):
    """Two copies of the student with the same initial weights (baseline, distilled).

    With ``student.from_teacher``, the student is ``keras_distill.students.shrink(teacher,
    width, depth)`` (``teacher``: the first teacher; its weights are transferred later, by
    :func:`transfer`, once it is trained).
    """
    import keras

    keras.utils.set_random_seed(cfg["seed"])
    shrink = cfg["student.from_teacher"]
    if shrink is None:
        baseline = build(cfg, "student", data, "student_baseline")
        distilled = build(cfg, "student", data, "student_distilled")
    else:
        from keras_distill import students

        baseline, distilled = (
            students.shrink(teacher, shrink["width"], shrink.get("depth"), name=name)
            for name in ("student_baseline", "student_distilled"))
        check_fits_data(baseline, data, "student")
    distilled.set_weights(baseline.get_weights())
    return baseline, distilled


def transfer(cfg, teacher, baseline, distilled, log):
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


def train_baseline(ctx, student, *, path=None):
    """The student trained alone on the labels (pruned too, with ``prune``)."""
    cfg = ctx.cfg
    info = ModelInfo("student_baseline", student, epochs=cfg["epochs"], epochs_run=0)
    if not ctx.ckpt.finished(info.name):
        ctx.log(f"Baseline: training the student alone ({student.count_params():,} "
                f"parameters, {epochs_text(cfg['epochs'])}" + _pruned_text(cfg) + ").")

    def trainable():
        compile_supervised(student, cfg["learning_rate"], ctx.data.task,
                           steps_per_execution(cfg))
        return student
    return train_stage(ctx, info, trainable, label="Baseline", path=path,
                       pruning=pruning_schedule(ctx))


def train_distilled(ctx, teacher, student, *, path=None):
    """The same student distilled from ``teacher`` (a Keras model or ensemble)."""
    import keras

    cfg, task = ctx.cfg, ctx.data.task
    info = ModelInfo("student_distilled", student, epochs=cfg["epochs"], epochs_run=0)
    if not ctx.ckpt.finished(info.name):
        names = ", ".join(s["name"] for s in cfg["losses"])
        hot = any("temperature" in LOSS_ARGS[s["name"]] for s in cfg["losses"])
        ctx.log(f"Distilling: the same student from the teacher ({names}, "
                + (f"temperature {cfg['temperature']:g}, " if hot else "")
                + f"alpha {cfg['alpha']:g}, {epochs_text(cfg['epochs'])}"
                + _pruned_text(cfg)
                + (", teacher outputs stored in cache/" if cfg["cache_teacher"] else "") + ").")

    def trainable():
        distiller = make_distiller(cfg, teacher, student, task)
        distiller.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
                          metrics=distiller_metrics(task),
                          steps_per_execution=steps_per_execution(cfg))
        trainable.distiller = distiller
        return distiller
    train_stage(ctx, info, trainable, label="Distilling", path=path,
                pruning=pruning_schedule(ctx), fit_kwargs=cache_kwargs(ctx, teacher))
    _log_cache(getattr(trainable, "distiller", None), ctx.log)
    return info


def _pruned_text(cfg):
    return f", pruned to {cfg['prune']:.0%} sparsity" if cfg["prune"] else ""


def _log_cache(distiller, log):
    info = getattr(distiller, "cache_info", None)
    if info:
        where = info.get("path") or "memory"
        log(f"  teacher outputs: {'read from' if info.get('reused') else 'computed once into'} "
            f"{where}.")


def qat_learning_rate(cfg):
    rate = cfg["qat_learning_rate"]
    return cfg["learning_rate"] * QAT_LEARNING_RATE_FACTOR if rate is None else rate


def train_qat(ctx, teacher, chosen, *, path=None):
    """``qat``: quantization-aware fine-tuning of the chosen student with the Distiller
    (``keras_distill.compress.quantize_aware``; BatchNormalization folded, activation ranges
    calibrated on training inputs first), keeping the zeros of a pruned student."""
    import keras

    from keras_distill import compress
    from keras_distill.data import representative_samples

    cfg = ctx.cfg
    epochs, rate = cfg["qat_epochs"], qat_learning_rate(cfg)
    info = ModelInfo("student_qat", None, epochs=epochs, epochs_run=0,
                     quantization="fake-quant int8")
    if not ctx.ckpt.finished(info.name):
        ctx.log(f"QAT: quantization-aware fine-tuning of {chosen.name} with the teacher "
                f"({epochs_text(epochs)}, learning rate {rate:g}).")

    def trainable():
        model = compress.quantize_aware(chosen.model, name="student_qat")
        compress.calibrate(model, representative_samples(  # random rows, not the first ones
            ctx.data.x_train, cfg["calibration_samples"], seed=cfg["seed"]))
        distiller = make_distiller(cfg, teacher, model, ctx.data.task)
        distiller.compile(optimizer=keras.optimizers.Adam(rate),
                          metrics=distiller_metrics(ctx.data.task),
                          steps_per_execution=steps_per_execution(cfg))
        return distiller

    def keep_zeros(model):
        return [compress.keep_sparsity(model)] if cfg["prune"] else []
    train_stage(ctx, info, trainable, label="QAT", path=path, callbacks=keep_zeros,
                fit_kwargs=cache_kwargs(ctx, teacher))
    if cfg["prune"]:
        record_sparsity(info, ctx.log, cfg["quiet"])
    return info


def select_student(baseline, distilled, mode="auto"):
    """Which student to export, and why (one or two sentences).

    ``mode="auto"`` picks the better validation score of the students' task
    (:data:`~keras_distill.pipeline.tasks.CRITERIA`: accuracy for multiclass and binary,
    micro-F1 for multi-label, MAE for regression, lower being better), computed on each
    student's predictions against the labels; on a tie, the student closer to the teacher on
    validation (agreement; for regression the mean absolute difference); on a second tie, the
    distilled student. The test split is never used to choose; a baseline that scored better
    on it is still named.

    Args:
        baseline, distilled: measured :class:`ModelInfo` objects (of the same task).
        mode: ``"auto"``, ``"distilled"`` or ``"baseline"``.

    Returns:
        ``(name, reason)``, name being ``"student_distilled"`` or ``"student_baseline"``.

    Example:
        >>> b = ModelInfo("student_baseline", None, val_accuracy=0.98, test_accuracy=0.97)
        >>> d = ModelInfo("student_distilled", None, val_accuracy=0.96, test_accuracy=0.96)
        >>> select_student(b, d)[0]
        'student_baseline'
        >>> b = ModelInfo("student_baseline", None, task="regression", val_scores={"mae": 0.5})
        >>> d = ModelInfo("student_distilled", None, task="regression", val_scores={"mae": 0.4})
        >>> select_student(b, d)
        ('student_distilled', 'The distilled student did better: validation MAE 0.4000 distilled vs 0.5000 baseline (student trained alone; lower is better).')
    """
    key, what, higher = CRITERIA[distilled.task]

    def better(x, y):  # x better than y
        return x is not None and y is not None and (x > y if higher else x < y)

    b, d = baseline.val_score(key), distilled.val_score(key)
    vs = (f"{what} {d:.4f} distilled vs {b:.4f} baseline (student trained alone"
          + ("" if higher else "; lower is better") + ")")
    if mode == "distilled":
        name, reason = "student_distilled", f"Chosen by export_student = 'distilled'; {vs}."
    elif mode == "baseline":
        name, reason = "student_baseline", f"Chosen by export_student = 'baseline'; {vs}."
    elif better(d, b):
        name, reason = "student_distilled", f"The distilled student did better: {vs}."
    elif better(b, d):
        name, reason = "student_baseline", (
            f"The baseline did better, so it is exported: {vs}. Distillation did not help with "
            "these settings.")
    else:
        name, reason = _tie(baseline, distilled, what, d)
    other = baseline if name == "student_distilled" else distilled
    chosen = distilled if name == "student_distilled" else baseline
    if better(other.val_score(key), chosen.val_score(key)) and mode != "auto":
        reason += f" Note: the {other.name.split('_')[1]} student did better on validation."
    t_other, t_chosen = other.test_score(key), chosen.test_score(key)
    if better(t_other, t_chosen):
        reason += (f" Note: on the test split the {other.name.split('_')[1]} student scored "
                   f"{'higher' if higher else 'lower'} ({t_other:.4f} vs {t_chosen:.4f}"
                   + ("" if higher else "; lower is better")
                   + "); the choice uses validation data only.")
    return name, reason


def _tie(baseline, distilled, what, value):
    """The tie-break of :func:`select_student`: closeness to the teacher, then distilled."""
    key, closeness, higher = CLOSENESS[distilled.task]
    worst = 0.0 if higher else float("inf")
    dc, bc = distilled.val_score(key), baseline.val_score(key)
    dc, bc = (worst if dc is None else dc), (worst if bc is None else bc)
    if dc == bc:
        return "student_distilled", (f"Tie on {what} ({value:.4f}) and {closeness}; the "
                                     "distilled student is exported.")
    baseline_closer = bc > dc if higher else bc < dc
    name = "student_baseline" if baseline_closer else "student_distilled"
    first, second = (bc, dc) if baseline_closer else (dc, bc)
    verb = "agrees more with the teacher" if higher else "is closer to the teacher"
    return name, (f"Tie on {what} ({value:.4f}); the {name.split('_')[1]} student {verb} on "
                  f"validation ({first:.4f} vs {second:.4f}).")


#: A teacher this little above the student alone (points of the validation metric, as a
#: fraction) leaves little to learn from it.
SMALL_TEACHER_MARGIN = 0.01
#: A distilled student that reproduces fewer of the teacher's training labels than this lacks
#: the capacity to follow it.
LOW_AGREEMENT = 0.95


def gain_note(teacher, baseline, distilled, *, train_agreement=None):
    """What distillation gained, in a sentence with the measured numbers, and, when it gained
    nothing, the measured reasons (a teacher barely better than the student alone; a student
    that cannot reproduce the teacher's labels on its own training inputs).

    Args:
        teacher, baseline, distilled: measured :class:`ModelInfo` objects (validation scores).
        train_agreement: the distilled student's top-1 agreement with the teacher on the
            training inputs, or a function that measures it (called only when distillation
            gained nothing), or ``None``.

    Returns:
        The note, or ``None`` for a task without a higher-is-better validation metric.

    Example:
        >>> t = ModelInfo("teacher", None, val_accuracy=0.99)
        >>> b = ModelInfo("student_baseline", None, val_accuracy=0.96)
        >>> d = ModelInfo("student_distilled", None, val_accuracy=0.975)
        >>> gain_note(t, b, d)[:74]
        'Distillation recovered 50% of the gap between the student alone and the te'
    """
    key, what, higher = CRITERIA[distilled.task]
    t, b, d = teacher.val_score(key), baseline.val_score(key), distilled.val_score(key)
    if not higher or None in (t, b, d):
        return None
    numbers = f"{what}: teacher {t:.4f}, student alone {b:.4f}, distilled {d:.4f}"
    if d > b and t > b:
        return (f"Distillation recovered {(d - b) / (t - b):.0%} of the gap between the "
                f"student alone and the teacher ({numbers}).")
    reasons = []
    if t - b < SMALL_TEACHER_MARGIN:
        reasons.append(f"the teacher is only {100 * (t - b):.1f} points above the student "
                       f"alone: it has little to teach this student")
    if callable(train_agreement):
        train_agreement = train_agreement()
    if train_agreement is not None and train_agreement < LOW_AGREEMENT:
        reasons.append(f"the distilled student reproduces the teacher's labels on only "
                       f"{train_agreement:.1%} of its own training inputs: it lacks the "
                       f"capacity to follow the teacher (a wider student, or distilling "
                       f"through an intermediate teacher assistant, may help)")
    if not reasons:
        reasons.append("neither a small teacher margin nor a lack of capacity explains it: "
                       "try a longer schedule or another temperature")
    return (f"Distillation gained nothing ({numbers}): " + "; ".join(reasons) + ".")
