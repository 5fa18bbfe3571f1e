"""Output kinds: which distillation loss fits which output (:func:`check_kind`, with the reason
a loss does not fit), the losses that fit a kind (:func:`fitting`) and its default loss
(:func:`default_for`).
"""

from __future__ import annotations

from keras_distill import registry
from keras_distill.losses.classes import (
    BernoulliKL,
    DecoupledKD,
    HardTargetCE,
    Huber,
    LogitMSE,
    SoftTargetKL,
    TeacherBoundedRegression,
)

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS

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
