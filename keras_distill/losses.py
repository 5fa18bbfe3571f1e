"""Distillation losses: pure functions of tensors, plus thin serializable classes.

Every function here works in log space (``log_softmax``, never
``log(softmax(x) + eps)``), so teacher or student logits of magnitude 1e4 give
a finite loss and finite gradients. The functions return one value per sample;
the classes reduce them (mean over the batch, with optional sample weights) and
plug into ``keras_distill.Distiller(losses=[...])`` or, for the logit losses,
into any ``model.compile(loss=...)`` with the teacher's logits as ``y_true``.

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
"""

from __future__ import annotations

import keras
from keras import ops

from keras_distill import registry

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
# Pure functions: (teacher, student, ...) -> per-sample loss of shape (batch,)
# --------------------------------------------------------------------------------------------


def soft_target_kl(teacher_logits, student_logits, temperature=4.0):
    """KL(teacher ‖ student) on temperature-softened distributions, times T² (Hinton et al., 2015).

    ``T² · Σ_k p_t(k) · (log p_t(k) − log p_s(k))`` with ``p = softmax(logits / T)``.
    The T² factor keeps the gradient scale independent of the temperature.

    Args:
        teacher_logits: ``(batch, classes)`` teacher logits (or log-probabilities).
        student_logits: ``(batch, classes)`` student logits.
        temperature: softening temperature, > 0.

    Returns:
        ``(batch,)`` tensor of KL divergences, each >= 0.
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
        teacher_logits: ``(batch, classes)`` teacher logits or probabilities (only argmax is used).
        student_logits: ``(batch, classes)`` student logits.

    Returns:
        ``(batch,)`` tensor of cross-entropies.
    """
    target = ops.argmax(teacher_logits, axis=-1)
    return ops.sparse_categorical_crossentropy(target, student_logits, from_logits=True)


def logit_mse(teacher_logits, student_logits):
    """Mean squared error between teacher and student logits, averaged over classes.

    Returns:
        ``(batch,)`` tensor.
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
        teacher_logits: ``(batch, classes)``.
        student_logits: ``(batch, classes)``.
        labels: ``(batch,)`` integer class indices or ``(batch, classes)`` one-hot labels; when
            None, the teacher's argmax is the target class.
        alpha: weight of the target-class term.
        beta: weight of the non-target-class term.
        temperature: softening temperature, > 0.

    Returns:
        ``(batch,)`` tensor, >= 0.
    """
    dtype = student_logits.dtype
    teacher_logits = ops.cast(teacher_logits, dtype)
    num_classes = student_logits.shape[-1]
    if labels is None:
        labels = ops.argmax(teacher_logits, axis=-1)
    elif len(labels.shape) == len(student_logits.shape) and labels.shape[-1] == num_classes \
            and num_classes != 1:
        labels = ops.argmax(labels, axis=-1)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
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
    sample. As a ``keras.losses.Loss``, ``loss(teacher_logits, student_logits, sample_weight)``
    returns the batch mean, so the logit losses also work in a plain ``model.compile`` with the
    teacher's logits as targets.

    Attributes:
        uses_features: True for losses on intermediate features (``FeatureHint``), False for
            losses on the final logits.
        uses_temperature: True when the loss has a ``temperature`` that a Distiller may set.
    """

    uses_features = False
    uses_temperature = False

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


@keras.saving.register_keras_serializable(package="keras_distill")
class LogitMSE(_LossWithoutArguments):
    """Mean squared error between teacher and student logits (Ba & Caruana, 2014).

    With a teacher that outputs probabilities, its log-probabilities stand in for its logits.

    Example:
        >>> import numpy as np
        >>> float(LogitMSE()(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]])))
        2.5
    """

    function = staticmethod(logit_mse)
    default_name = "logit_mse"


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
    raise ValueError(
        f"Cannot use {identifier!r} as a distillation loss: pass a "
        "keras_distill.losses.DistillationLoss (SoftTargetKL, HardTargetCE, LogitMSE, "
        f"DecoupledKD, FeatureHint) or one of the names {sorted(ALIASES)}."
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
