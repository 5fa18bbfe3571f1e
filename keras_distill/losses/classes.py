"""The serializable distillation loss classes, thin wrappers of
:mod:`keras_distill.losses.functions`, and their names (:data:`ALIASES`, :func:`get`).

Each class says in ``kinds`` which output kinds it fits (``keras_distill.registry.OUTPUT_KINDS``);
:mod:`keras_distill.losses.kinds` turns that into checks and defaults.
"""

from __future__ import annotations

import math

import keras

from keras_distill import registry
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

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS


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
