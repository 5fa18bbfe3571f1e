"""The distillation losses as pure functions: ``(teacher, student, ...)`` -> one value per
position, the last axis (classes, labels or values) reduced.

They work in log space (``log_softmax``, ``log σ(z) = −softplus(−z)``), so logits of magnitude
1e4 give a finite loss and finite gradients. The classes of
:mod:`keras_distill.losses.classes` wrap them.
"""

from __future__ import annotations

from keras import ops

# A large finite negative number used to mask logits without creating inf - inf.
_MASK = 1e9


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
