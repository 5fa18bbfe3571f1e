"""The task of a job: what the models' output holds, and what follows from it.

The task is ``cfg["task"]``, or with ``"auto"`` the data's (``Splits.task``): ``multiclass``
(softmax logits, one per class), ``binary`` (one logit), ``multilabel`` (one logit per label)
or ``regression`` (the targets' values). It decides the width of the presets' outputs
(``Splits.output_units``), the teachers' and baselines' training loss, the distillation loss
when ``losses`` is left at its default, the metrics of every model and artifact, and the
validation metric that picks the student to export (:data:`CRITERIA`).

Feature vectors (tabular data, inputs of one axis) get the MLP presets (``teacher_mlp``,
``student_mlp``) where ``teacher.model`` / ``student.model`` are left at their defaults; images
keep the CNNs, except that a teacher left at its default becomes the MLPerf Tiny reference
architecture that fits the data's shape (``resnet8`` for RGB images up to 64 pixels a side,
``mobilenet_v1`` above, ``ds_cnn`` for 49x10 MFCC-like features, ``fc_autoencoder`` for an
autoencoder's regression), and images of more than 32x32 pixels get ``student_scaled``. :func:`resolve` writes what it decided into the configuration, so that the
``config.toml`` of a run reproduces it.

Example:
    >>> from keras_distill import config
    >>> from keras_distill.data import load_breast_cancer
    >>> cfg, data = resolve(config.load(None, {}), load_breast_cancer())
    >>> data.task, data.output_units, cfg["teacher.model"], cfg["student.model"]
    ('binary', 1, 'teacher_mlp', 'student_mlp')
    >>> cfg["losses"], cfg.origin("losses")
    ([{'name': 'bernoulli_kl'}], 'default for binary outputs')
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_distill.registry import OUTPUT_KINDS
from keras_distill.verify.scores import LABEL_KEYS, LABEL_NAMES, primary, scores

MULTICLASS, BINARY, MULTILABEL, REGRESSION = OUTPUT_KINDS

#: The validation metric that picks the student to export, per task: ``(score key, name,
#: higher is better)``, from ``keras_distill.verify.scores.primary(task)``; the same metric on
#: the test split is each model's headline number.
CRITERIA = {kind: (primary(kind)[0], f"validation {LABEL_NAMES[primary(kind)[0]]}",
                   primary(kind)[1]) for kind in OUTPUT_KINDS}
#: How close a model is to the teacher, per task: ``(score key, name, higher is better)``,
#: from ``primary(task, "reference")``.
CLOSENESS = {
    kind: (f"{primary(kind, 'reference')[0]}_with_teacher",
           "mean absolute difference from the teacher" if kind == REGRESSION else
           ("per-label agreement with the teacher" if kind == MULTILABEL else
            "agreement with the teacher"), primary(kind, "reference")[1])
    for kind in OUTPUT_KINDS}
#: The feature-vector presets that replace the image ones left at their defaults.
_VECTOR_PRESETS = {"teacher.model": "teacher_mlp", "student.model": "student_mlp"}


def task_of(cfg, data):
    """The task of a job on ``data``: ``cfg["task"]``, or the data's with ``"auto"``.

    A declared task other than the data's is taken where the labels mean the same: two-class
    labels (0 or 1) are ``binary`` (one logit) or ``multiclass`` (two softmax logits).

    Raises:
        ValueError: the declared task does not fit the data's labels, naming both and the
            tasks that do fit.

    Example:
        >>> from keras_distill import config
        >>> from keras_distill.data import load_breast_cancer
        >>> task_of(config.load(None, {"task": "multiclass"}), load_breast_cancer())
        'multiclass'
    """
    declared = cfg["task"]
    if declared in ("auto", data.task):
        return data.task
    two_classes = data.task in (MULTICLASS, BINARY) and data.num_classes == 2
    if two_classes and declared in (MULTICLASS, BINARY):
        return declared
    fitting = [data.task] + ([BINARY if data.task == MULTICLASS else MULTICLASS]
                             if two_classes else [])
    raise ValueError(
        f"task = {declared!r} does not fit the data {data.name!r}, whose labels are "
        f"{_labels_text(data)}: {_why_not(declared, data)}. Use task = 'auto' (here "
        f"{data.task!r})" + (f" or {fitting[1]!r}" if len(fitting) > 1 else "") + ".")


def _labels_text(data):
    if data.task == REGRESSION:
        return f"real-valued regression targets ({data.output_units})"
    if data.task == MULTILABEL:
        return f"multi-hot rows of {data.output_units} labels"
    return f"class indices of {data.num_classes} classes"


def _why_not(declared, data):
    if data.task == REGRESSION:
        return "a classification task needs class labels"
    if declared == REGRESSION:
        return "class labels are not regression targets"
    if declared == BINARY:
        return "a binary output (one logit) has two classes"
    if declared == MULTILABEL:
        return "a multi-label output needs multi-hot rows, one value per label"
    return "a multiclass output needs one class index per sample"


def resolve(cfg, data):
    """The configuration and data of a job, with the task and the data-dependent defaults
    resolved.

    Returns:
        ``(cfg, data)``: ``data`` with ``task`` set to :func:`task_of`'s answer; ``cfg`` with
        ``teacher.model`` / ``student.model`` at their defaults replaced by the MLP presets for
        feature vectors, and ``losses`` at its default replaced by the task's default
        distillation loss (``keras_distill.losses.default_for``) for other tasks than
        multiclass. The replaced keys' :meth:`~keras_distill.config.Config.origin` says why.
        Digits (images, multiclass) come back unchanged.
    """
    task = task_of(cfg, data)
    if task != data.task:
        data = dataclasses.replace(data, task=task)
    changes = {}
    for path, (preset, why) in _shape_presets(data, task).items():
        unused = "teacher.models" if path.startswith("teacher") else "student.from_teacher"
        if cfg.origin(path) == "default" and cfg[unused] is None:
            changes[path] = (preset, why)
    if task != MULTICLASS and cfg.origin("losses") == "default":
        changes["losses"] = ([{"name": default_loss_name(task)}],
                             f"default for {task} outputs")
    if not changes:
        return cfg, data
    from keras_distill.config import Config

    values = {**cfg.flat(), **{path: value for path, (value, _) in changes.items()}}
    origins = {path: cfg.origin(path) for path in values if cfg.origin(path) != "default"}
    origins.update({path: why for path, (_, why) in changes.items()})
    return Config(values, origins, cfg.file), data


def _shape_presets(data, task):
    """``{key: (preset, why)}``: the presets that replace ``teacher.model`` / ``student.model``
    left at their defaults, for the data's shape: the MLPs for feature vectors, the MLPerf Tiny
    reference architecture that fits (``registry.reference_preset_for``) for the teacher, and
    ``student_scaled`` for images of more than ``LARGE_IMAGE_PIXELS`` pixels."""
    from keras_distill.registry import LARGE_IMAGE_PIXELS, reference_preset_for

    shape = tuple(data.input_shape)
    found = {}
    if len(shape) == 1:
        found = {path: (preset, "default for feature vectors")
                 for path, preset in _VECTOR_PRESETS.items()}
    reference = reference_preset_for(shape, task, output_units=data.output_units)
    if reference is not None:
        found["teacher.model"] = (reference, f"the MLPerf Tiny reference for {_shape(shape)}")
    if len(shape) == 3 and shape[0] * shape[1] > LARGE_IMAGE_PIXELS:
        why = f"default for {_shape(shape)} images (more than {LARGE_IMAGE_PIXELS} pixels)"
        found["student.model"] = ("student_scaled", why)
    return found


def _shape(shape):
    return "x".join(str(d) for d in shape)


#: The configuration names of ``keras_distill.losses.default_for(task)`` (no Keras import:
#: ``--print-config`` resolves them without TensorFlow).
DEFAULT_LOSSES = {MULTICLASS: "soft_target_kl", BINARY: "bernoulli_kl",
                  MULTILABEL: "bernoulli_kl", REGRESSION: "logit_mse"}


def default_loss_name(task):
    """The configuration name of the task's default distillation loss.

    Example:
        >>> default_loss_name("binary"), default_loss_name("regression")
        ('bernoulli_kl', 'logit_mse')
    """
    return DEFAULT_LOSSES[task]


def resolve_without_tensorflow(cfg):
    """``cfg`` with the data's defaults resolved (:func:`resolve`) where the data loads
    without TensorFlow or a download: the bundled sets and ``.npz`` files. Image sources
    (folders, ``keras.datasets``) are images of classes, whose defaults ``cfg`` already holds.
    What ``keras-distill run --print-config`` prints.

    Example:
        >>> from keras_distill import config
        >>> resolve_without_tensorflow(config.load(None, {"data.source": "diabetes"}))["losses"]
        [{'name': 'logit_mse'}]
    """
    from keras_distill import data
    from keras_distill.registry import BUNDLED_DATASETS

    source = str(cfg["data.source"])
    if source not in BUNDLED_DATASETS and not source.endswith(".npz"):
        return cfg
    loaded = data.load(source, validation_fraction=cfg["data.validation_fraction"],
                       test_fraction=cfg["data.test_fraction"], seed=cfg["seed"])
    return resolve(cfg, loaded)[0]


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


def supervised_loss_and_metrics(model, task):
    """The loss and metrics a teacher or baseline is trained with on the labels: sparse
    cross-entropy (multiclass), binary cross-entropy (binary, multi-label), mean squared
    error (regression); from logits unless the model visibly ends in softmax or sigmoid."""
    import keras

    from keras_distill import outputs as outputs_lib

    activation = outputs_lib.activations(model)[0]
    if task == MULTICLASS:
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=activation != "softmax"), ["accuracy"]
    if task in (BINARY, MULTILABEL):
        logits = activation != "sigmoid"
        metrics = [keras.metrics.BinaryAccuracy(threshold=0.0 if logits else 0.5,
                                                name="accuracy")]
        if task == BINARY:
            metrics.append(keras.metrics.AUC(from_logits=logits, name="auc"))
        return keras.losses.BinaryCrossentropy(from_logits=logits), metrics
    return keras.losses.MeanSquaredError(), [keras.metrics.MeanAbsoluteError(name="mae")]


def distiller_metrics(task):
    """``Distiller.compile(metrics=...)`` of the task (the Distiller reads binary and
    multi-label metrics from logits)."""
    return {MULTICLASS: ["accuracy"], BINARY: ["accuracy", "auc"],
            MULTILABEL: ["accuracy"], REGRESSION: ["mae"]}[task]


# ------------------------------------------------------------------------------------------
# scores
# ------------------------------------------------------------------------------------------


def as_logits(model, outputs, task):
    """``outputs`` of ``model`` as the task's scores read them: a binary or multi-label model
    that ends in sigmoid gives probabilities, turned into logits (``log p − log(1 − p)``);
    anything else is returned as it is (a softmax keeps its argmax)."""
    from keras_distill import outputs as outputs_lib

    if task not in (BINARY, MULTILABEL) or outputs_lib.activations(model)[0] != "sigmoid":
        return outputs
    p = np.clip(np.asarray(outputs, np.float64), 1e-7, 1 - 1e-7)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def model_scores(task, outputs, labels, teacher=None):
    """The scores of a Keras model's outputs (``keras_distill.verify.scores``) against the
    labels and the teacher's outputs, the teacher's keys named ``..._with_teacher``.

    Example:
        >>> s = model_scores("regression", np.array([[1.0], [2.0]]), np.array([1.0, 3.0]),
        ...                  teacher=np.array([[1.0], [2.5]]))
        >>> s["mae"], s["mean_abs_error_with_teacher"]
        (0.5, 0.25)
    """
    raw = scores(task, outputs, labels, teacher)
    return {(k if k in LABEL_KEYS[task] else f"{k}_with_teacher"): v for k, v in raw.items()}
