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

import math

import keras
from keras import ops

from keras_distill import registry

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS

# A large finite negative number used to mask logits without creating inf - inf.
_MASK = 1e9


def check_temperature(temperature, allow_none=False):
    """``temperature`` as a positive finite float (``None`` passes when ``allow_none``).

    Raises:
        ValueError: naming the value and what is accepted.

    Example:
        >>> check_temperature(2)
        2.0
    """
    if temperature is None and allow_none:
        return None
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a positive number; got {temperature!r}.") from None
    if not 0 < value < float("inf"):  # also rejects NaN
        raise ValueError(
            f"temperature must be a positive, finite number (1 means no softening, 2-8 is "
            f"typical); got {temperature!r}."
        )
    return value


# --------------------------------------------------------------------------------------------
# Pure functions: (teacher, student, ...) -> one value per position: the last axis reduced
# --------------------------------------------------------------------------------------------


def soft_target_kl(teacher_logits, student_logits, temperature=4.0):
    """KL(teacher ‖ student) on temperature-softened distributions, times T² (Hinton et al., 2015).

    ``T² · Σ_k p_t(k) · (log p_t(k) − log p_s(k))`` with ``p = softmax(logits / T)``.
    The T² factor keeps the gradient scale independent of the temperature.

    Args:
        teacher_logits: ``(batch, ..., classes)`` teacher logits (or log-probabilities).
        student_logits: ``(batch, ..., classes)`` student logits.
        temperature: softening temperature, > 0.

    Returns:
        ``(batch, ...)`` tensor of KL divergences, each >= 0.

    Example:
        >>> import numpy as np
        >>> z = np.array([[1.0, 0.0]], "float32")
        >>> float(soft_target_kl(z, z)[0])
        0.0
    """
    t = ops.convert_to_tensor(temperature, dtype=student_logits.dtype)
    teacher_logits = ops.cast(teacher_logits, student_logits.dtype)
    log_p_t = ops.log_softmax(teacher_logits / t, axis=-1)
    log_p_s = ops.log_softmax(student_logits / t, axis=-1)
    p_t = ops.exp(log_p_t)
    # Where the teacher gives exactly zero probability the term is zero (0 · log 0 := 0);
    # the `where` keeps -inf teacher log-probabilities from producing 0 · inf = nan. It masks
    # exact zeros only, so NaN teacher outputs still surface as a NaN loss.
    terms = ops.where(p_t == 0, ops.zeros_like(p_t), p_t * (log_p_t - log_p_s))
    return ops.sum(terms, axis=-1) * t * t


def hard_target_ce(teacher_logits, student_logits):
    """Cross-entropy of the student against the teacher's top-1 class ("the teacher's labels").

    Args:
        teacher_logits: ``(batch, ..., classes)`` teacher logits or probabilities (only argmax
            is used).
        student_logits: ``(batch, ..., classes)`` student logits.

    Returns:
        ``(batch, ...)`` tensor of cross-entropies.

    Example:
        >>> import numpy as np
        >>> t, s = np.array([[0.0, 5.0]], "float32"), np.zeros((1, 2), "float32")
        >>> round(float(hard_target_ce(t, s)[0]), 4)  # log(2)
        0.6931
    """
    target = ops.argmax(teacher_logits, axis=-1)
    return ops.sparse_categorical_crossentropy(target, student_logits, from_logits=True)


def logit_mse(teacher_logits, student_logits):
    """Mean squared error between teacher and student logits (or values), averaged over the
    last axis. It fits every output kind: logits of classes or labels, or regression values.

    Args:
        teacher_logits: ``(batch, ..., units)`` teacher logits or values.
        student_logits: ``(batch, ..., units)`` student logits or values.

    Returns:
        ``(batch, ...)`` tensor.

    Example:
        >>> import numpy as np
        >>> float(logit_mse(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]]))[0])
        2.5
    """
    diff = ops.cast(teacher_logits, student_logits.dtype) - student_logits
    return ops.mean(ops.square(diff), axis=-1)


def decoupled_kd(teacher_logits, student_logits, labels=None, alpha=1.0, beta=8.0,
                 temperature=4.0):
    """Decoupled knowledge distillation (Zhao et al., CVPR 2022).

    Splits KD into a target-class term (TCKD: KL between the binary distributions
    ``[p(target), 1 − p(target)]``) and a non-target-class term (NCKD: KL between the
    distributions over the non-target classes, renormalized), and weights them
    separately: ``T² · (alpha · TCKD + beta · NCKD)``.

    Args:
        teacher_logits: ``(batch, ..., classes)``.
        student_logits: ``(batch, ..., classes)``.
        labels: ``(batch, ...)`` integer class indices (a trailing axis of 1 is allowed) or
            ``(batch, ..., classes)`` one-hot labels; when None, the teacher's argmax is the
            target class.
        alpha: weight of the target-class term.
        beta: weight of the non-target-class term.
        temperature: softening temperature, > 0.

    Returns:
        ``(batch, ...)`` tensor, >= 0.

    Example:
        >>> import numpy as np
        >>> z = np.zeros((2, 3, 4), "float32")  # (batch, steps, classes)
        >>> tuple(decoupled_kd(z, z, labels=np.zeros((2, 3), "int32")).shape)
        (2, 3)
    """
    dtype = student_logits.dtype
    teacher_logits = ops.cast(teacher_logits, dtype)
    num_classes = student_logits.shape[-1]
    if labels is None:
        labels = ops.argmax(teacher_logits, axis=-1)
    else:
        labels = ops.convert_to_tensor(labels)
        if len(labels.shape) == len(student_logits.shape) and labels.shape[-1] == num_classes \
                and num_classes != 1:
            labels = ops.argmax(labels, axis=-1)
    # One class index per position: (batch, ...) like the logits without their last axis.
    labels = ops.reshape(ops.cast(labels, "int32"), ops.shape(student_logits)[:-1])
    target = ops.one_hot(labels, num_classes, dtype=dtype)
    t = ops.convert_to_tensor(temperature, dtype=dtype)
    # Each row shifted by its max (log-probabilities do not change): the binary terms below
    # subtract log-sum-exps, which would cancel catastrophically at logits of 1e4 / T.
    zt, zs = teacher_logits / t, student_logits / t
    zt = zt - ops.max(zt, axis=-1, keepdims=True)
    zs = zs - ops.max(zs, axis=-1, keepdims=True)

    def binary_log_probs(z):
        # log p(target) and log(1 − p(target)), both in log space.
        lse_all = ops.logsumexp(z, axis=-1)
        log_target = ops.sum(z * target, axis=-1) - lse_all
        log_rest = ops.logsumexp(z - _MASK * target, axis=-1) - lse_all
        return log_target, log_rest

    lt_t, lr_t = binary_log_probs(zt)
    lt_s, lr_s = binary_log_probs(zs)
    tckd = ops.exp(lt_t) * (lt_t - lt_s) + ops.exp(lr_t) * (lr_t - lr_s)

    log_q_t = ops.log_softmax(zt - _MASK * target, axis=-1)
    log_q_s = ops.log_softmax(zs - _MASK * target, axis=-1)
    q_t = ops.exp(log_q_t)
    nckd = ops.sum(ops.where(q_t == 0, ops.zeros_like(q_t), q_t * (log_q_t - log_q_s)), axis=-1)
    return (alpha * tckd + beta * nckd) * t * t


def bernoulli_kl(teacher_logits, student_logits, temperature=4.0):
    """KL between the teacher's and the student's softened Bernoulli distributions, per unit.

    For binary (one logit) and multi-label (k independent logits) outputs, each unit is a
    yes/no distribution ``p = σ(z / T)``; the loss is
    ``T² · mean_k [p_t · (log p_t − log p_s) + (1 − p_t) · (log(1 − p_t) − log(1 − p_s))]``,
    computed in log space (``log σ(z) = −softplus(−z)``, ``log(1 − σ(z)) = −softplus(z)``).

    Args:
        teacher_logits: ``(batch, ..., units)`` teacher logits (``log p − log(1 − p)`` for a
            teacher that outputs sigmoid probabilities).
        student_logits: ``(batch, ..., units)`` student logits.
        temperature: softening temperature, > 0.

    Returns:
        ``(batch, ...)`` tensor: the mean over the last axis, each >= 0.

    Example:
        >>> import numpy as np
        >>> t = np.array([[2.0]], "float32")  # one binary logit
        >>> round(float(bernoulli_kl(t, np.zeros((1, 1), "float32"), temperature=1.0)[0]), 4)
        0.3278
    """
    t = ops.convert_to_tensor(temperature, dtype=student_logits.dtype)
    teacher_logits = ops.cast(teacher_logits, student_logits.dtype)
    zt, zs = teacher_logits / t, student_logits / t
    log_p_t, log_q_t = -ops.softplus(-zt), -ops.softplus(zt)
    log_p_s, log_q_s = -ops.softplus(-zs), -ops.softplus(zs)
    p_t, q_t = ops.exp(log_p_t), ops.exp(log_q_t)
    # 0 · log 0 := 0 for a teacher certain of a unit (an infinite logit), as in soft_target_kl.
    yes = ops.where(p_t == 0, ops.zeros_like(p_t), p_t * (log_p_t - log_p_s))
    no = ops.where(q_t == 0, ops.zeros_like(q_t), q_t * (log_q_t - log_q_s))
    return ops.mean(yes + no, axis=-1) * t * t


def huber_to_teacher(teacher, student, delta=1.0):
    """Huber loss between the teacher's and the student's values, averaged over the last axis.

    ``0.5 · d²`` where ``|d| <= delta``, else ``delta · (|d| − 0.5 · delta)``, with
    ``d = teacher − student``: squared near the teacher, linear far from it, so a few large
    teacher errors do not dominate.

    Args:
        teacher: ``(batch, ..., units)`` teacher outputs (regression values).
        student: ``(batch, ..., units)`` student outputs.
        delta: where the loss turns from quadratic to linear, > 0.

    Returns:
        ``(batch, ...)`` tensor.

    Example:
        >>> import numpy as np
        >>> float(huber_to_teacher(np.array([[0.5, 3.0]]), np.zeros((1, 2)), delta=1.0)[0])
        1.3125
    """
    diff = ops.abs(ops.cast(teacher, student.dtype) - student)
    delta = ops.convert_to_tensor(delta, dtype=student.dtype)
    quadratic = ops.minimum(diff, delta)
    return ops.mean(0.5 * ops.square(quadratic) + delta * (diff - quadratic), axis=-1)


def teacher_bounded_regression(teacher, student, labels, margin=0.0):
    """Teacher-bounded regression loss (Chen et al., NeurIPS 2017).

    Per position, with ``e_s`` and ``e_t`` the student's and the teacher's mean squared error
    to the labels over the last axis: ``e_s`` where ``e_s + margin > e_t``, else 0. The
    teacher is an upper bound: the student is pulled toward the labels only where it is worse
    than the teacher (by the margin), never toward the teacher's own mistakes.

    Args:
        teacher: ``(batch, ..., units)`` teacher outputs.
        student: ``(batch, ..., units)`` student outputs.
        labels: regression targets of the student's shape (``(batch,)`` for a ``(batch, 1)``
            output is reshaped).
        margin: >= 0.

    Returns:
        ``(batch, ...)`` tensor, >= 0.

    Example:
        >>> import numpy as np
        >>> y = np.array([1.0, 1.0])
        >>> teacher = np.array([[1.5], [1.5]])  # error 0.25
        >>> student = np.array([[1.2], [3.0]])  # errors 0.04 (better), 4.0 (worse)
        >>> [round(float(v), 4) for v in teacher_bounded_regression(teacher, student, y)]
        [0.0, 4.0]
    """
    dtype = student.dtype
    labels = ops.reshape(ops.cast(labels, dtype), ops.shape(student))
    e_s = ops.mean(ops.square(student - labels), axis=-1)
    e_t = ops.mean(ops.square(ops.cast(teacher, dtype) - labels), axis=-1)
    margin = ops.convert_to_tensor(margin, dtype=dtype)
    return ops.where(e_s + margin > e_t, e_s, ops.zeros_like(e_s))


def feature_hint(teacher_features, student_features):
    """FitNets hint loss: mean squared error between (adapted) intermediate features.

    Args:
        teacher_features: ``(batch, ...)`` teacher activations.
        student_features: student activations of the same shape (after the adapter).

    Returns:
        ``(batch,)`` tensor: the mean over all non-batch axes.
    """
    diff = ops.cast(teacher_features, student_features.dtype) - student_features
    sq = ops.square(diff)
    return ops.mean(ops.reshape(sq, (ops.shape(sq)[0], -1)), axis=-1)


# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------


class DistillationLoss(keras.losses.Loss):
    """Base class of the distillation losses.

    Subclasses implement ``compute(teacher, student, labels=None)`` returning one value per
    sample (per position, for ``(batch, steps, units)`` outputs). As a ``keras.losses.Loss``,
    ``loss(teacher_logits, student_logits, sample_weight)`` returns the batch mean, so the logit
    losses also work in a plain ``model.compile`` with the teacher's logits as targets.

    Attributes:
        uses_features: True for losses on intermediate features (``FeatureHint``), False for
            losses on the final logits.
        uses_temperature: True when the loss has a ``temperature`` that a Distiller may set.
        uses_labels: True when ``compute`` reads the labels (``TeacherBoundedRegression``
            needs them; ``DecoupledKD`` uses them when given).
        kinds: the output kinds (``keras_distill.registry.OUTPUT_KINDS``) the loss fits;
            :func:`check_kind` refuses the others. A subclass that does not say fits all.
    """

    uses_features = False
    uses_temperature = False
    uses_labels = False
    kinds = registry.OUTPUT_KINDS

    def compute(self, teacher, student, labels=None):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        return self.compute(y_true, y_pred)

    def with_temperature(self, temperature):
        """Return this loss, or a copy whose unset temperature is ``temperature``."""
        return self


class _LossWithoutArguments(DistillationLoss):
    """A loss that is ``function(teacher, student)``, named ``default_name`` unless told."""

    function = None
    default_name = None

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name or self.default_name, **kwargs)

    def compute(self, teacher, student, labels=None):
        return self.function(teacher, student)


class _TemperatureLoss(DistillationLoss):
    uses_temperature = True
    default_temperature = 4.0

    def __init__(self, temperature=None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_temperature(temperature, allow_none=True)

    @property
    def effective_temperature(self):
        return self.default_temperature if self.temperature is None else self.temperature

    def with_temperature(self, temperature):
        if self.temperature is not None:
            return self
        config = self.get_config()
        config["temperature"] = check_temperature(temperature)
        return self.__class__.from_config(config)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_distill")
class SoftTargetKL(_TemperatureLoss):
    """Soft-target distillation: KL(teacher ‖ student) at temperature T, times T².

    The default loss of ``keras_distill.Distiller`` (Hinton et al., 2015).

    Args:
        temperature: softening temperature, > 0. ``None`` (the default) takes the
            Distiller's ``temperature``, or 4.0 when the loss is used on its own.

    Example:
        >>> import numpy as np
        >>> loss = SoftTargetKL(temperature=4.0)
        >>> z = np.array([[3.0, 1.0, 0.2]], "float32")
        >>> float(loss(z, z))  # identical distributions
        0.0
    """

    kinds = (MULTICLASS,)

    def __init__(self, temperature=None, name="soft_target_kl", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def compute(self, teacher, student, labels=None):
        return soft_target_kl(teacher, student, self.effective_temperature)


@keras.saving.register_keras_serializable(package="keras_distill")
class HardTargetCE(_LossWithoutArguments):
    """Cross-entropy against the teacher's argmax: the teacher's predictions used as labels.

    Example:
        >>> import numpy as np
        >>> teacher = np.array([[0.0, 5.0]], "float32")
        >>> student = np.array([[0.0, 0.0]], "float32")
        >>> round(float(HardTargetCE()(teacher, student)), 4)  # log(2)
        0.6931
    """

    function = staticmethod(hard_target_ce)
    default_name = "hard_target_ce"
    kinds = (MULTICLASS,)


@keras.saving.register_keras_serializable(package="keras_distill")
class LogitMSE(_LossWithoutArguments):
    """Mean squared error between teacher and student logits (Ba & Caruana, 2014).

    With a teacher that outputs probabilities, its log-probabilities stand in for its logits.
    It fits every output kind, and is the default for regression outputs, where it is the
    squared error to the teacher's values.

    Example:
        >>> import numpy as np
        >>> float(LogitMSE()(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]])))
        2.5
    """

    function = staticmethod(logit_mse)
    default_name = "logit_mse"
    kinds = registry.OUTPUT_KINDS


@keras.saving.register_keras_serializable(package="keras_distill")
class DecoupledKD(_TemperatureLoss):
    """Decoupled knowledge distillation (Zhao et al., CVPR 2022).

    ``T² · (alpha · TCKD + beta · NCKD)``: the target-class and non-target-class parts of
    the KL divergence, weighted separately. Uses the true labels when the Distiller has them,
    else the teacher's argmax.

    Args:
        alpha: weight of the target-class term (TCKD), >= 0.
        beta: weight of the non-target-class term (NCKD), >= 0.
        temperature: > 0; ``None`` takes the Distiller's temperature (4.0 alone).

    Example:
        >>> import numpy as np
        >>> z = np.array([[2.0, 0.0, -1.0]], "float32")
        >>> float(DecoupledKD()(z, z))
        0.0
    """

    default_temperature = 4.0
    kinds = (MULTICLASS,)
    uses_labels = True

    def __init__(self, alpha=1.0, beta=8.0, temperature=None, name="decoupled_kd", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)
        for arg, value in (("alpha", alpha), ("beta", beta)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"DecoupledKD: {arg} must be a number >= 0; got {value!r}.")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def compute(self, teacher, student, labels=None):
        return decoupled_kd(teacher, student, labels, self.alpha, self.beta,
                            self.effective_temperature)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="keras_distill")
class BernoulliKL(_TemperatureLoss):
    """KL between softened sigmoid probabilities, per unit, times T²: the distillation loss of
    binary (one logit) and multi-label (independent sigmoid) outputs.

    A softmax over one logit is always 1, so :class:`SoftTargetKL` on a binary output is
    identically zero; this loss compares ``σ(z_t / T)`` with ``σ(z_s / T)`` instead.

    Args:
        temperature: softening temperature, > 0. ``None`` (the default) takes the
            Distiller's ``temperature``, or 4.0 when the loss is used on its own.

    Example:
        >>> import numpy as np
        >>> loss = BernoulliKL(temperature=1.0)
        >>> teacher = np.array([[2.0], [-1.0]], "float32")  # one logit: a binary output
        >>> float(loss(teacher, teacher))
        0.0
        >>> float(loss(teacher, np.zeros((2, 1), "float32"))) > 0
        True
    """

    kinds = (BINARY, MULTILABEL)

    def __init__(self, temperature=None, name="bernoulli_kl", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def compute(self, teacher, student, labels=None):
        return bernoulli_kl(teacher, student, self.effective_temperature)


def _check_number(owner, arg, value, *, positive):
    """``value`` as a finite float, > 0 when ``positive`` else >= 0, or a ``ValueError``."""
    bound = "> 0" if positive else ">= 0"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or \
            (positive and number == 0):
        raise ValueError(f"{owner}: {arg} must be a finite number {bound}; got {value!r}.")
    return number


@keras.saving.register_keras_serializable(package="keras_distill")
class Huber(DistillationLoss):
    """Huber loss between the teacher's and the student's regression values.

    Quadratic within ``delta`` of the teacher, linear beyond it: a regression student is not
    dragged far by the teacher's rare large outputs.

    Args:
        delta: where the loss turns from quadratic to linear, > 0.

    Example:
        >>> import numpy as np
        >>> float(Huber(delta=1.0)(np.array([[0.5, 3.0]]), np.zeros((1, 2))))
        1.3125
    """

    kinds = (REGRESSION,)

    def __init__(self, delta=1.0, name="huber", **kwargs):
        super().__init__(name=name, **kwargs)
        self.delta = _check_number("Huber", "delta", delta, positive=True)

    def compute(self, teacher, student, labels=None):
        return huber_to_teacher(teacher, student, self.delta)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


@keras.saving.register_keras_serializable(package="keras_distill")
class TeacherBoundedRegression(DistillationLoss):
    """Teacher-bounded regression loss (Chen et al., NeurIPS 2017): the student's squared error
    to the labels, counted only where it exceeds the teacher's (minus ``margin``).

    It needs the labels: batches without labels (teacher-only data) cannot use it.

    Args:
        margin: how much worse than the teacher the student may be before it is pulled, >= 0.

    Example:
        >>> import numpy as np
        >>> loss = TeacherBoundedRegression(margin=0.0)
        >>> y = np.array([1.0, 1.0])
        >>> teacher, student = np.array([[1.5], [1.5]]), np.array([[1.2], [3.0]])
        >>> [round(float(v), 4) for v in loss.compute(teacher, student, y)]
        [0.0, 4.0]
    """

    kinds = (REGRESSION,)
    uses_labels = True

    def __init__(self, margin=0.0, name="teacher_bounded", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = _check_number("TeacherBoundedRegression", "margin", margin,
                                    positive=False)

    def compute(self, teacher, student, labels=None):
        if labels is None:
            raise ValueError(
                "TeacherBoundedRegression needs the labels: it compares the student's and the "
                "teacher's errors to them. Batches without labels (teacher-only or unlabeled "
                "data) cannot use it; use LogitMSE or Huber there.")
        return teacher_bounded_regression(teacher, student, labels, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="keras_distill")
class FeatureHint(DistillationLoss):
    """FitNets hint loss between two named intermediate layers (Romero et al., 2015).

    The Distiller reads the output of ``teacher_layer`` and of ``student_layer`` from the same
    forward passes that produce the logits. When the shapes differ it trains an adapter (a
    Dense layer, or a 1x1 convolution with resizing when spatial sizes differ) that maps the
    student's features to the teacher's; the adapter belongs to the Distiller, not to the
    student.

    Args:
        teacher_layer: name of a layer of the teacher (Functional or Sequential).
        student_layer: name of a layer of the student.

    Example:
        >>> hint = FeatureHint("features", "hidden")
        >>> hint.teacher_layer, hint.student_layer
        ('features', 'hidden')
    """

    uses_features = True
    kinds = registry.OUTPUT_KINDS  # on features: whatever the outputs hold

    def __init__(self, teacher_layer, student_layer, name="feature_hint", **kwargs):
        super().__init__(name=name, **kwargs)
        for arg, value in (("teacher_layer", teacher_layer), ("student_layer", student_layer)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"FeatureHint: {arg} must be a layer name (str); got {value!r}.")
        self.teacher_layer = teacher_layer
        self.student_layer = student_layer

    def compute(self, teacher, student, labels=None):
        return feature_hint(teacher, student)

    def get_config(self):
        return {**super().get_config(), "teacher_layer": self.teacher_layer,
                "student_layer": self.student_layer}


#: The loss classes by name: the names (and arguments) of ``keras_distill.registry.LOSS_ARGS``.
ALIASES = {
    "soft_target_kl": SoftTargetKL,
    "kl": SoftTargetKL,
    "hard_target_ce": HardTargetCE,
    "logit_mse": LogitMSE,
    "mse": LogitMSE,
    "decoupled_kd": DecoupledKD,
    "dkd": DecoupledKD,
    "feature_hint": FeatureHint,
    "bernoulli_kl": BernoulliKL,
    "huber": Huber,
    "teacher_bounded": TeacherBoundedRegression,
}


def get(identifier):
    """Resolve a loss from a ``DistillationLoss``, a name of :data:`ALIASES` (``"kl"``,
    ``"dkd"``...; a loss whose arguments have no default, such as ``FeatureHint``, needs its
    class) or a config dict.

    Example:
        >>> get("dkd").beta
        8.0
    """
    if isinstance(identifier, DistillationLoss):
        return identifier
    if isinstance(identifier, str):
        return _from_name(identifier)
    if isinstance(identifier, dict):
        obj = keras.saving.deserialize_keras_object(identifier)
        if isinstance(obj, DistillationLoss):
            return obj
    classes = ", ".join(dict.fromkeys(cls.__name__ for cls in ALIASES.values()))
    raise ValueError(
        f"Cannot use {identifier!r} as a distillation loss: pass a "
        f"keras_distill.losses.DistillationLoss ({classes}) or one of the names "
        f"{sorted(ALIASES)}."
    )


def _from_name(identifier):
    key = identifier.lower()
    if key not in ALIASES:
        raise ValueError(
            f"Unknown distillation loss {identifier!r}; expected one of {sorted(ALIASES)} or a "
            "keras_distill.losses.DistillationLoss instance.")
    required = registry.REQUIRED_LOSS_ARGS.get(key)
    if required:
        cls = ALIASES[key].__name__
        raise ValueError(
            f"The distillation loss {identifier!r} needs {' and '.join(required)}, which have "
            f"no default: pass keras_distill.losses.{cls}("
            + ", ".join(f"{a}=..." for a in required) + ") instead of its name.")
    return ALIASES[key]()


# --------------------------------------------------------------------------------------------
# Output kinds: which loss fits which output
# --------------------------------------------------------------------------------------------

_DEFAULTS = {MULTICLASS: SoftTargetKL, BINARY: BernoulliKL, MULTILABEL: BernoulliKL,
             REGRESSION: LogitMSE}
#: The loss classes offered for each kind in messages, the default first.
_OFFERED = (SoftTargetKL, DecoupledKD, HardTargetCE, BernoulliKL, LogitMSE, Huber,
            TeacherBoundedRegression)

_USE = {
    MULTICLASS: "use SoftTargetKL (the default for multiclass outputs), DecoupledKD or "
                "HardTargetCE",
    BINARY: "use BernoulliKL (the default for binary outputs), the KL between the teacher's "
            "and the student's sigmoid probabilities",
    MULTILABEL: "use BernoulliKL (the default for multi-label outputs), a KL per label",
    REGRESSION: "use LogitMSE (the default for regression outputs), Huber or "
                "TeacherBoundedRegression",
}
_NOT_LOGITS = "its values are not logits: "
_CLASSIFICATION_LABELS = ("a classification output's labels are classes, not values its logits "
                          "should equal")

#: Why a loss does not fit a kind, by (loss class, kind); the advice of _USE follows.
_WHY = {
    (SoftTargetKL, BINARY): "a softmax over one logit is always 1, so this loss is "
                            "identically zero",
    (SoftTargetKL, MULTILABEL): "its labels are independent sigmoids, but this loss takes one "
                                "softmax over them, which makes the labels compete for one "
                                "unit of probability and distils a distribution the teacher "
                                "never predicted",
    (SoftTargetKL, REGRESSION): _NOT_LOGITS + "a softmax over them means nothing (and over one "
                                "value it is identically zero)",
    (HardTargetCE, BINARY): "the argmax of one logit is always 0 and a softmax over one logit "
                            "is always 1, so this cross-entropy is identically zero",
    (HardTargetCE, MULTILABEL): "it keeps only the teacher's single highest label, as if the "
                                "labels were exclusive classes, and drops every other label",
    (HardTargetCE, REGRESSION): _NOT_LOGITS + "the index of the largest value is not a class",
    (DecoupledKD, BINARY): "it splits a softmax into the target class and the non-target "
                           "classes, which needs >= 2 classes; over one logit both parts are "
                           "identically zero",
    (DecoupledKD, MULTILABEL): "it splits one softmax into a target class and the others, but "
                               "several labels may be on at once, each its own sigmoid",
    (DecoupledKD, REGRESSION): _NOT_LOGITS + "there is no softmax and no target class to "
                               "decouple",
    (BernoulliKL, MULTICLASS): "it treats each class as an independent sigmoid label, but a "
                               "multiclass output's classes share one softmax (only the "
                               "differences of their logits matter), so it distils "
                               "probabilities the teacher never predicted",
    (BernoulliKL, REGRESSION): _NOT_LOGITS + "their sigmoid is not a probability, and it "
                               "saturates, so large values stop being distilled",
    (Huber, MULTICLASS): "it is a regression loss, for real values, but a multiclass output "
                         "holds logits, whose softmax is what the teacher predicts (LogitMSE "
                         "matches the logits themselves)",
    (Huber, BINARY): "it is a regression loss, for real values, but a binary output holds "
                     "a logit, whose sigmoid is what the teacher predicts (LogitMSE matches the "
                     "logit itself)",
    (Huber, MULTILABEL): "it is a regression loss, for real values, but a multi-label output "
                         "holds logits, whose sigmoids are what the teacher predicts "
                         "(LogitMSE matches the logits themselves)",
    (TeacherBoundedRegression, MULTICLASS): "it compares squared errors to regression "
                                            "targets, but " + _CLASSIFICATION_LABELS,
    (TeacherBoundedRegression, BINARY): "it compares squared errors to regression targets, "
                                        "but " + _CLASSIFICATION_LABELS,
    (TeacherBoundedRegression, MULTILABEL): "it compares squared errors to regression "
                                            "targets, but " + _CLASSIFICATION_LABELS,
}


def _check_output_kind(kind):
    if kind not in registry.OUTPUT_KINDS:
        raise ValueError(f"Unknown output kind {kind!r}; expected one of "
                         f"{registry.OUTPUT_KINDS}.")


def fitting(kind):
    """The names of the library's loss classes that fit outputs of ``kind``, the default first.

    Example:
        >>> fitting("binary")
        ['BernoulliKL', 'LogitMSE']
    """
    _check_output_kind(kind)
    return [cls.__name__ for cls in _OFFERED if kind in cls.kinds]


def check_kind(loss, kind, output_name):
    """Return None when ``loss`` fits an output of ``kind``, else raise a ``ValueError``.

    Args:
        loss: a :class:`DistillationLoss` (instance or class).
        kind: the output's kind, one of ``keras_distill.registry.OUTPUT_KINDS``.
        output_name: the output's name, for the message.

    Raises:
        ValueError: naming the loss, the output and its kind, why the loss does not fit and
            the losses that do.

    Example:
        >>> check_kind(LogitMSE(), "regression", "price") is None
        True
        >>> check_kind(SoftTargetKL(), "binary", "spam")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: SoftTargetKL cannot distil the output 'spam', a binary output: a softmax ...
    """
    _check_output_kind(kind)
    cls = loss if isinstance(loss, type) else type(loss)
    kinds = getattr(cls, "kinds", registry.OUTPUT_KINDS)
    if kind in kinds:
        return
    reason = next((_WHY[(base, kind)] for base in cls.__mro__ if (base, kind) in _WHY), None)
    if reason is None:
        reason = f"it declares that it fits {', '.join(kinds) or 'no'} outputs only"
    raise ValueError(
        f"{cls.__name__} cannot distil the output {output_name!r}, a {kind} output: {reason}; "
        f"{_USE[kind]}. Losses that fit {kind} outputs: {', '.join(fitting(kind))}.")


def default_for(kind):
    """A new instance of the default distillation loss for outputs of ``kind``.

    ``SoftTargetKL`` for multiclass outputs, ``BernoulliKL`` for binary and multi-label ones,
    ``LogitMSE`` for regression: none of them is identically zero for any model of its kind.

    Example:
        >>> [type(default_for(k)).__name__ for k in ("multiclass", "binary", "regression")]
        ['SoftTargetKL', 'BernoulliKL', 'LogitMSE']
    """
    _check_output_kind(kind)
    return _DEFAULTS[kind]()


_LABEL_LOSSES_FROM_LOGITS = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
}


def student_label_loss(loss):
    """The student's loss on the labels, from ``Distiller.compile(loss=...)``: ``None`` (the
    default cross-entropy), or a Keras loss; a cross-entropy given by name is taken from
    logits, because the student outputs logits.

    Example:
        >>> student_label_loss("sparse_categorical_crossentropy").from_logits
        True
    """
    if loss is None:
        return None
    if isinstance(loss, str) and loss in _LABEL_LOSSES_FROM_LOGITS:
        return _LABEL_LOSSES_FROM_LOGITS[loss](from_logits=True)
    return keras.losses.get(loss)
