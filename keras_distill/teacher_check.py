"""Is the teacher able to teach? Measured on validation data before any student trains.

A teacher at chance level distills nothing but noise, and nothing in a distillation run says
so: the student simply ends worse than one trained alone. :func:`check_teacher` scores the
teacher on validation data and, when it is too weak to teach (a classifier below 1.5× chance
accuracy, a regression teacher with R² ≤ 0, or either below the student trained alone by more
than the sampling noise), measures the usual causes and names the one it finds:

- inputs scaled differently from the teacher's training (the score is measured again with the
  inputs rescaled: [0, 1] ↔ [−1, 1] ↔ 0–255);
- BatchNormalization statistics that never settled (the score in training mode, on a *copy* of
  the teacher, against inference mode; the teacher itself is never changed);
- class labels in another order than the teacher's (the best one-to-one mapping of the
  teacher's classes onto the labels).

Example:
    >>> import keras, numpy as np
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> teacher.set_weights([np.array([[-5.0, 5.0], [0, 0], [0, 0], [0, 0]]), np.zeros(2)])
    >>> check_teacher(teacher, x, y).ok
    True
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_distill import outputs as outputs_lib

#: A classifier teacher must reach this multiple of chance accuracy (1 / classes).
CHANCE_FACTOR = 1.5
#: How much better a rescaled input, training-mode BatchNormalization or a class mapping must
#: score to be named as the cause.
CAUSE_MARGIN = 0.15


class TeacherCannotTeach(ValueError):
    """The teacher scores too low on the validation data to teach a student."""


@dataclasses.dataclass
class TeacherCheck:
    """What :func:`check_teacher` measured.

    Attributes:
        kind: the teacher's output kind.
        metric: ``"accuracy"`` (classification) or ``"r2"`` (regression).
        score: the teacher's validation score.
        needed: the score below which it cannot teach.
        baseline: the student trained alone's score, when given.
        causes: the measured likely causes, each a sentence with its numbers and fix.
    """

    kind: str
    metric: str
    score: float
    needed: float
    baseline: float | None = None
    margin: float = 0.0
    causes: list = dataclasses.field(default_factory=list)

    @property
    def below_baseline(self):
        """Below the student trained alone by more than the sampling noise (``margin``)."""
        return self.baseline is not None and self.score < self.baseline - self.margin

    @property
    def ok(self):
        return self.score > self.needed and not self.below_baseline

    def message(self):
        what = (f"validation {self.metric} {self.score:.4f}, below "
                + (f"the student trained alone ({self.baseline:.4f}, by more than the "
                   f"sampling noise {self.margin:.4f})"
                   if self.below_baseline and self.score > self.needed else
                   (f"{CHANCE_FACTOR}× chance ({self.needed:.4f})"
                    if self.metric == "accuracy" else "0 (no better than the mean)")))
        causes = " ".join(self.causes) if self.causes else (
            "No usual cause was found (input scaling, BatchNormalization statistics, label "
            "order); check that the teacher was trained on this task and data.")
        return (f"The teacher cannot teach: {what}. Distilling from it would teach the "
                f"student noise. {causes} To distill anyway, pass --teacher-allow-weak "
                "(teacher.allow_weak = true in a configuration file).")


def check_teacher(teacher, x, y, *, kind=None, baseline=None, batch_size=256,
                  raise_error=False):
    """Score ``teacher`` on validation data and diagnose it when it is too weak to teach.

    Args:
        teacher: a Keras model (logits or probabilities).
        x, y: validation inputs and labels (class indices, 0/1, or float targets).
        kind: the output kind (``keras_distill.outputs``), or None to detect it from the
            teacher and the labels.
        baseline: the validation score of the student trained alone (in the check's metric:
            see :func:`score`), if known: a teacher below it by more than the sampling noise
            (two standard errors of the accuracy; 0.05 of R²) cannot teach either.
        batch_size: prediction batch size.
        raise_error: raise :class:`TeacherCannotTeach` instead of returning a failed check.

    Returns:
        A :class:`TeacherCheck`.
    """
    x, y = np.asarray(x), np.asarray(y)
    if kind is None:
        kind = outputs_lib.resolve(teacher, teacher, labels=y)[0].kind
    activation = outputs_lib.activations(teacher)[0]

    def score_of(out):
        return score(kind, out, y, activation)

    out = np.asarray(teacher.predict(x, batch_size=batch_size, verbose=0))
    value = score_of(out)
    if kind == outputs_lib.REGRESSION:
        metric, needed = "r2", 0.0
    else:
        classes = max(2, out.shape[-1]) if kind == outputs_lib.MULTICLASS else 2
        metric, needed = "accuracy", CHANCE_FACTOR / classes
    check = TeacherCheck(kind, metric, float(value), float(needed),
                         None if baseline is None else float(baseline),
                         _noise(metric, baseline, y.size))
    if not check.ok:
        check.causes = _causes(teacher, x, y, kind, value, score_of, batch_size)
        if raise_error:
            raise TeacherCannotTeach(check.message())
    return check


def _noise(metric, baseline, count):
    """How far below the baseline a teacher may score by chance of the validation sample: two
    standard errors of an accuracy (plus one sample), or 0.05 of R²."""
    if baseline is None:
        return 0.0
    if metric == "r2":
        return 0.05
    p = min(max(float(baseline), 0.0), 1.0)
    return 2.0 * float(np.sqrt(p * (1.0 - p) / max(count, 1))) + 1.0 / max(count, 1)


def score(kind, out, y, activation=None):
    """The check's metric of outputs ``out`` against labels ``y``: accuracy (per label for
    binary and multi-label outputs; ``activation="sigmoid"`` for probabilities) or R².

    Example:
        >>> score("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
        1.0
    """
    out = np.asarray(out, np.float64)
    if kind == outputs_lib.REGRESSION:
        target = y.reshape(out.shape) if y.size == out.size else y
        residual = ((target - out) ** 2).sum()
        total = ((target - target.mean(axis=0)) ** 2).sum()
        return float(1.0 - residual / total) if total > 0 else 0.0
    if kind == outputs_lib.MULTICLASS:
        labels = y.argmax(-1) if y.ndim == out.ndim and y.shape[-1] == out.shape[-1] else \
            y.reshape(out.shape[:-1])
        keep = labels >= 0
        return float(np.mean(out.argmax(-1)[keep] == labels[keep]))
    threshold = 0.5 if activation == "sigmoid" else 0.0
    labels = y.reshape(out.shape)
    keep = labels >= 0
    return float(np.mean((out > threshold)[keep] == (labels > 0.5)[keep]))


def _causes(teacher, x, y, kind, current, score_of, batch_size):
    causes = []
    scaled = _rescaled(teacher, x, current, score_of, batch_size)
    if scaled:
        causes.append(scaled)
    bn = _batch_norm(teacher, x, current, score_of)
    if bn:
        causes.append(bn)
    if kind == outputs_lib.MULTICLASS:
        order = _label_order(teacher, x, y, current, batch_size)
        if order:
            causes.append(order)
    return causes


def _rescaled(teacher, x, current, score_of, batch_size):
    """The input range under which the teacher scores much better, if one does."""
    lo, hi = float(np.min(x)), float(np.max(x))
    candidates = []
    if lo >= 0 and hi <= 1.0 + 1e-6:
        candidates = [("[-1, 1]", x * 2.0 - 1.0), ("0-255", x * 255.0)]
    elif lo >= -1.0 - 1e-6 and hi <= 1.0 + 1e-6:
        candidates = [("[0, 1]", (x + 1.0) / 2.0), ("0-255", (x + 1.0) * 127.5)]
    elif lo >= 0 and hi <= 255.0 + 1e-6:
        candidates = [("[0, 1]", x / 255.0), ("[-1, 1]", x / 127.5 - 1.0)]
    best = None
    for name, alt in candidates:
        s = score_of(teacher.predict(alt.astype(np.float32), batch_size=batch_size, verbose=0))
        if s >= current + CAUSE_MARGIN and (best is None or s > best[1]):
            best = (name, s)
    if best is None:
        return None
    return (f"Inputs scaled differently from the teacher's training: it scores {best[1]:.4f} "
            f"with the inputs rescaled to {best[0]} (the data is in [{lo:.3g}, {hi:.3g}]); "
            "prepare the data as the teacher was trained.")


def _batch_norm(teacher, x, current, score_of):
    """Training-mode against inference-mode scores, measured on a copy of the teacher."""
    import keras

    if not any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in _all_layers(teacher)):
        return None
    try:
        copy = keras.models.clone_model(teacher)
        copy.set_weights(teacher.get_weights())
    except Exception:  # noqa: BLE001  (a model Keras cannot clone: no diagnosis)
        return None
    copy.trainable = True  # a frozen BatchNormalization always runs in inference mode
    batch = x[: min(len(x), 512)]
    training = score_of(np.asarray(copy(batch, training=True)))
    inference = score_of(np.asarray(copy(batch, training=False)))
    if training < inference + CAUSE_MARGIN:
        return None
    return (f"BatchNormalization statistics not settled: on a copy of the teacher it scores "
            f"{training:.4f} in training mode but {inference:.4f} in inference mode; train the "
            "teacher longer (or with a lower BatchNormalization momentum), or re-estimate its "
            "statistics on training data.")


def _label_order(teacher, x, y, current, batch_size):
    """The best one-to-one mapping of the teacher's classes onto the labels, if it scores much
    better than the identity (labels in another order, e.g. class folder names)."""
    from scipy.optimize import linear_sum_assignment

    out = np.asarray(teacher.predict(x, batch_size=batch_size, verbose=0))
    if out.ndim != 2 or y.ndim != 1:
        return None
    classes = out.shape[-1]
    keep = (y >= 0) & (y < classes)
    pred, labels = out.argmax(-1)[keep], y[keep]
    counts = np.zeros((classes, classes))
    np.add.at(counts, (pred, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    mapped = counts[rows, cols].sum() / max(1, keep.sum())
    if mapped < current + CAUSE_MARGIN:
        return None
    moved = [(int(r), int(c)) for r, c in zip(rows, cols) if r != c][:5]
    pairs = ", ".join(f"teacher class {r} → label {c}" for r, c in moved)
    return (f"Class labels in another order than the teacher's: mapping its classes onto the "
            f"labels ({pairs}) scores {mapped:.4f}; give the labels in the teacher's class "
            "order (e.g. class folder names sorted as when it was trained).")


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)
