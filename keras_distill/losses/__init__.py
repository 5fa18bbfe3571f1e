"""Distillation losses: pure functions of tensors, plus thin serializable classes.

Every function here works in log space (``log_softmax``, ``log σ(z) = −softplus(−z)``, never
``log(softmax(x) + eps)``), so teacher or student logits of magnitude 1e4 give a finite loss
and finite gradients. The functions reduce only the last axis (classes, labels or values), so
they return one value per sample for ``(batch, units)`` outputs and one per position for a
sequence tagger's ``(batch, steps, units)``. The classes reduce those values (mean over the
batch and positions, with optional sample weights) and plug into
``keras_distill.Distiller(losses=[...])`` or, for the logit losses, into any
``model.compile(loss=...)`` with the teacher's logits as ``y_true``.

Output kinds (``keras_distill.outputs``): each loss class says in ``kinds`` which outputs it
fits. A softmax loss on a one-logit binary output is identically zero, so a binary or
multi-label output is distilled with :class:`BernoulliKL`, a regression output with
:class:`LogitMSE` (or :class:`Huber`, :class:`TeacherBoundedRegression`); :func:`check_kind`
refuses a loss that does not fit, saying which ones do, and :func:`default_for` gives the
default loss of each kind.

Teachers that output probabilities are handled by the Distiller, which turns
them into log-probabilities first (``log p`` are valid logits: ``softmax(log p) == p``).

The losses' names (:data:`ALIASES`, for :func:`get` and the configuration) and their arguments
are those of ``keras_distill.registry.LOSS_ARGS``.

The package: ``functions`` (the pure functions), ``classes`` (the serializable classes,
:data:`ALIASES` and :func:`get`), ``kinds`` (which loss fits which output kind, and why not)
and ``label_loss`` (the student's loss on the labels).

Example:
    >>> import numpy as np
    >>> from keras_distill import losses
    >>> teacher = np.array([[2.0, 0.5, -1.0]], "float32")
    >>> student = np.array([[1.0, 1.0, 0.0]], "float32")
    >>> float(losses.SoftTargetKL(temperature=2.0)(teacher, student)) > 0
    True
    >>> type(losses.default_for("binary")).__name__
    'BernoulliKL'
"""

from __future__ import annotations

from keras_distill import registry
from keras_distill.losses.classes import (
    ALIASES,
    BINARY,
    MULTICLASS,
    MULTILABEL,
    REGRESSION,
    BernoulliKL,
    DecoupledKD,
    DistillationLoss,
    FeatureHint,
    HardTargetCE,
    Huber,
    LogitMSE,
    SoftTargetKL,
    TeacherBoundedRegression,
    check_temperature,
    get,
)
from keras_distill.losses.functions import (
    bernoulli_kl,
    decoupled_kd,
    feature_hint,
    hard_target_ce,
    huber_to_teacher,
    logit_mse,
    soft_target_kl,
    teacher_bounded_regression,
)
from keras_distill.losses.kinds import check_kind, default_for, fitting
from keras_distill.losses.label_loss import student_label_loss

__all__ = [
    "ALIASES", "BINARY", "MULTICLASS", "MULTILABEL", "REGRESSION",
    "BernoulliKL", "DecoupledKD", "DistillationLoss", "FeatureHint", "HardTargetCE", "Huber",
    "LogitMSE", "SoftTargetKL", "TeacherBoundedRegression",
    "bernoulli_kl", "check_kind", "check_temperature", "decoupled_kd", "default_for",
    "feature_hint", "fitting", "get", "hard_target_ce", "huber_to_teacher", "logit_mse",
    "registry", "soft_target_kl", "student_label_loss", "teacher_bounded_regression",
]
