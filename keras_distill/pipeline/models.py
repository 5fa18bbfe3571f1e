"""Models and data of the jobs: loading, building, compiling, measuring, where files go."""

from __future__ import annotations

import os
import time

import numpy as np

from keras_distill.io import save_model  # noqa: F401  (the jobs' atomic .keras writer)
from keras_distill.pipeline import tasks
from keras_distill.pipeline.tasks import BINARY, MULTICLASS, MULTILABEL, REGRESSION

TEACHER_FILE = "teacher.keras"


def load_data(cfg):
    """The data named by ``data.*`` keys, as :class:`keras_distill.data.Splits` (its own task:
    :func:`keras_distill.pipeline.tasks.resolve` applies ``task``)."""
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
    # compress and teachers register the classes of QAT students and ensembles
    from keras_distill import compress, io, teachers  # noqa: F401

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


def check_fits_data(model, data, role):
    """Raise a ValueError naming both shapes when ``model`` does not take ``data``'s samples or
    its output is not as wide as the data's task needs (``Splits.output_units``)."""
    name = model.name
    if not hasattr(model, "input_shape") and getattr(model, "members", None):
        model = model.members[0]  # an ensemble (a subclassed model) takes its members' shapes
    in_shape = tuple(model.input_shape[1:])
    if in_shape != tuple(data.input_shape) and None not in in_shape:
        raise ValueError(f"the {role} {name!r} takes inputs of shape {in_shape} but the "
                         f"data {data.name!r} has samples of shape {data.input_shape}.")
    units = model.output_shape[-1]
    if units == data.output_units:
        return
    if data.task == MULTICLASS:
        raise ValueError(f"the {role} {name!r} outputs {units} classes but the data "
                         f"{data.name!r} has {data.num_classes}.")
    need = {BINARY: "1 (one logit)", MULTILABEL: f"{data.output_units} (one logit per label)",
            REGRESSION: f"{data.output_units} (one value per target)"}[data.task]
    hint = (" For two softmax logits, set task = 'multiclass'." if data.task == BINARY and
            units == 2 else "")
    raise ValueError(f"the {role} {name!r} outputs {units} values but the {data.task} task of "
                     f"the data {data.name!r} needs {need}.{hint}")


#: What each image preset needs of a sample (the feature-vector presets take any shape).
_IMAGE_PRESETS = ("teacher_cnn", "student_cnn", "resnet8", "ds_cnn", "mobilenet_v1",
                  "student_scaled")


def build(cfg, role, data, name, ref=None):
    """The ``teacher`` or ``student`` model ``ref`` (default ``<role>.model``): a fresh preset,
    or loaded from its file."""
    from keras_distill import presets

    ref = cfg[f"{role}.model"] if ref is None else ref
    if ref.endswith(".keras"):
        model = load_model(ref, safe_mode=cfg["safe_mode"], role=role)
    else:
        if ref in _IMAGE_PRESETS and len(data.input_shape) != 3:
            raise ValueError(
                f"the {role} preset {ref!r} takes images (height, width, channels) but the "
                f"data {data.name!r} has samples of shape {data.input_shape}; use "
                f"{role}_mlp (the default for feature vectors).")
        model = presets.PRESETS[ref](data.input_shape, data.output_units, name=name,
                                     **cfg[f"{role}.preset_args"])
    check_fits_data(model, data, role)
    return model


#: Batches per compiled call of a stage's ``fit`` (Keras's ``steps_per_execution``): the same
#: updates in the same order (bit-identical weights, ``tests/test_speed.py``), with Keras's
#: per-batch Python work (callbacks, the iterator, the call into the graph) paid once per 32
#: batches. Measured on digits, alone: 3-12% of a stage's CPU time; within the noise of a whole
#: ``keras-distill run`` (``bench/run_speed.py``).
STEPS_PER_EXECUTION = 32


def steps_per_execution(cfg, role="student"):
    """``STEPS_PER_EXECUTION``, or 1 for the students of a pruned run (the pruning callbacks
    act after every batch)."""
    return 1 if role == "student" and cfg["prune"] else STEPS_PER_EXECUTION


def compile_supervised(model, learning_rate, task=MULTICLASS, steps_per_execution=1):
    """Compile ``model`` for training on the labels of ``task`` (Adam; the task's loss)."""
    import keras

    loss, metrics = tasks.supervised_loss_and_metrics(model, task)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics,
                  steps_per_execution=steps_per_execution)


def losses_of(cfg):
    """The distillation losses of the ``losses`` key, as loss objects."""
    from keras_distill import losses

    return [losses.ALIASES[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})
            for spec in cfg["losses"]]


def make_distiller(cfg, teacher, student, task=MULTICLASS):
    from keras_distill import Distiller

    return Distiller(teacher, student, temperature=cfg["temperature"], alpha=cfg["alpha"],
                     losses=losses_of(cfg), loss_weights=cfg["loss_weights"], task=task)


def ensemble(cfg, members, task=MULTICLASS):
    from keras_distill.teachers import Ensemble

    return Ensemble(members, weights=cfg["teacher.weights"], average=cfg["teacher.average"],
                    task=task, name="teacher")


def check_distillable(cfg, teachers, student, task=MULTICLASS):
    """Construct a Distiller on copies, so that shape, softmax, loss-kind and layer-name
    mistakes are reported before any training (the real teachers stay trainable)."""
    import keras

    try:
        t = [keras.models.clone_model(m) for m in teachers]
        s = keras.models.clone_model(student)
    except Exception:  # noqa: BLE001  (subclassed models do not clone: checked when distilling)
        return
    make_distiller(cfg, t[0] if len(t) == 1 else ensemble(cfg, t, task), s, task)


def predict(model, x):
    """``model``'s outputs on ``x`` (NumPy or lazy, read a chunk at a time), float32."""
    from keras_distill.data.stream import predict as streamed

    return np.asarray(streamed(model, x, batch_size=512), np.float32)


def keras_latency_ms(model, x, n=50):
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


def measure(info, data, teacher_val=None, teacher_test=None, *, own_reference=False):
    """Fill the scores of the data's task (validation and test, against the labels and the
    teacher's outputs), parameters and latency of ``info.model``.

    Args:
        info: the model's :class:`ModelInfo`.
        data: the :class:`keras_distill.data.Splits` (its ``task`` says what is scored).
        teacher_val, teacher_test: the teacher's outputs (as :func:`measure` returns them).
        own_reference: the model is the teacher: it is its own reference (agreement 1,
            error 0).

    Returns:
        ``(val, test)``: the model's outputs, as logits where it ends in sigmoid (the
        reference of the students' scores and of the artifacts' agreement).
    """
    model, task = info.model, data.task
    val = tasks.as_logits(model, predict(model, data.x_val), task)
    test = tasks.as_logits(model, predict(model, data.x_test), task)
    if own_reference:
        teacher_val, teacher_test = val, test
    info.params, info.task = int(model.count_params()), task
    info.val_scores = tasks.model_scores(task, val, data.y_val, teacher_val)
    info.test_scores = tasks.model_scores(task, test, data.y_test, teacher_test)
    if task != tasks.REGRESSION:
        info.val_accuracy = info.val_scores["accuracy"]
        info.test_accuracy = info.test_scores["accuracy"]
        if teacher_test is not None:
            info.val_agreement = info.val_scores["agreement_with_teacher"]
            info.agreement = info.test_scores["agreement_with_teacher"]
    info.latency_ms = keras_latency_ms(model, data.x_test)
    return val, test


def same_file(a, b):
    return os.path.abspath(a) == os.path.abspath(b)


def free_path(out_dir, file, inputs, suffix="_trained"):
    """``out_dir/file``, or ``..._trained.keras`` if that is one of the ``inputs`` (an input
    file is never overwritten)."""
    path = os.path.join(out_dir, file)
    if any(same_file(path, i) for i in inputs if i.endswith(".keras")):
        return os.path.join(out_dir, file[:-len(".keras")] + f"{suffix}.keras")
    return path


def teacher_path(cfg, out_dir):
    """Where the teacher is saved: ``teacher.keras`` in ``out_dir``, unless that is the
    teacher file given as input and the job trains it further (then ``teacher_trained.keras``,
    so that an input file is never overwritten)."""
    path = os.path.join(out_dir, TEACHER_FILE)
    if cfg.teacher_epochs() and same_file(path, cfg["teacher.model"]):
        return os.path.join(out_dir, "teacher_trained.keras")
    return path
