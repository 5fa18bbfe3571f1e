"""Output kinds: what each output of a model holds, and so how it is distilled and scored.

A model output is one of :data:`KINDS`:

- ``"multiclass"``: one softmax over the last axis (two or more units);
- ``"binary"``: one unit, a logit (or a sigmoid probability);
- ``"multilabel"``: k independent sigmoid units;
- ``"regression"``: real values.

Any axes between the batch and the last one (a tagger's steps) are positions: each is
distilled and scored on its own. :func:`resolve` finds the kind of every output of a model
from what the models show (a final softmax or sigmoid), the student's compiled loss and the
labels, or from what the user declares (``Distiller(task=...)``); where none of them tells, it
raises a ``ValueError`` that says how to declare it, rather than guess.

Example:
    >>> import keras
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> [o.kind for o in resolve(student, loss="binary_crossentropy")]
    ['binary']
    >>> [o.kind for o in resolve(student, labels=np.array([0.5, 2.5]))]
    ['regression']
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_distill import registry

KINDS = registry.OUTPUT_KINDS
MULTICLASS, BINARY, MULTILABEL, REGRESSION = KINDS
#: Kinds whose outputs are logits of classes or labels (scored by agreement).
CLASSIFICATION = (MULTICLASS, BINARY, MULTILABEL)


class AmbiguousOutput(ValueError):
    """An output whose kind nothing tells (a linear output, no compiled loss, no labels)."""


@dataclasses.dataclass(frozen=True)
class Output:
    """One output of a model.

    Attributes:
        name: the output's key in the model's output dict, or its layer's name.
        kind: one of :data:`KINDS`.
        units: the size of the last axis.
        positions: the number of axes between the batch and the last one (1 for a sequence
            tagger's ``(batch, steps, classes)``; 0 for ``(batch, classes)``).
    """

    name: str
    kind: str
    units: int
    positions: int = 0

    @property
    def is_classification(self):
        return self.kind in CLASSIFICATION

    @property
    def label_shape(self):
        """What integer labels look like for this output, for messages."""
        steps = ", steps" * self.positions
        if self.kind == MULTICLASS:
            return f"(N{steps}) class indices in [0, {self.units - 1}]"
        if self.kind == BINARY:
            return f"(N{steps}) labels 0 or 1"
        if self.kind == MULTILABEL:
            return f"(N{steps}, {self.units}) multi-hot values in [0, 1]"
        return f"(N{steps}, {self.units}) finite floats" if self.units > 1 else \
            f"(N{steps}) or (N{steps}, 1) finite floats"


def _names_and_shapes(model):
    """``[(name, shape)]`` for every output of ``model``, in ``keras.tree.flatten`` order."""
    struct = getattr(model, "_outputs_struct", None)
    tensors = list(getattr(model, "outputs", None) or [])
    if isinstance(struct, dict) and tensors:
        return [(key, tuple(t.shape)) for key, t in zip(sorted(struct), tensors)]
    if tensors:
        return [(_producer(t).name if _producer(t) is not None else f"output_{i}",
                 tuple(t.shape)) for i, t in enumerate(tensors)]
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return []
    if isinstance(shape, list):
        return [(f"output_{i}", tuple(s)) for i, s in enumerate(shape)]
    return [(getattr(model, "name", "output"), tuple(shape))]


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


def names(model):
    """The names of ``model``'s outputs, in the order of ``keras.tree.flatten(model(x))``.

    Example:
        >>> import keras
        >>> x = keras.Input((3,))
        >>> model = keras.Model(x, {"reg": keras.layers.Dense(1)(x),
        ...                         "cls": keras.layers.Dense(4)(x)})
        >>> names(model)
        ['cls', 'reg']
    """
    return [name for name, _ in _names_and_shapes(model)]


def final_activation(tensor):
    """``"softmax"``, ``"sigmoid"`` or None: what the layer that produced ``tensor`` applies last."""
    layer = _producer(tensor)
    if layer is None:
        return None
    import keras

    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", str(activation))
    return name if name in ("softmax", "sigmoid") else None


def visibly_linear(model):
    """Per output of ``model``: True where its last layer visibly applies no softmax or
    sigmoid (a layer with a known other activation, e.g. ``Dense(n)``), so the output holds
    logits or values; False where that cannot be seen (a custom layer, a subclassed model).

    Example:
        >>> import keras
        >>> visibly_linear(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
        [True]
    """
    if hasattr(model, "output_activation"):  # declared (keras_distill.teachers.Ensemble)
        return [model.output_activation is None]
    tensors = list(getattr(model, "outputs", None) or [])
    result = []
    for tensor in tensors:
        layer = _producer(tensor)
        activation = getattr(layer, "activation", None) if layer is not None else None
        result.append(activation is not None and final_activation(tensor) is None)
    return result or [False]


def activations(model):
    """One of ``"softmax"``, ``"sigmoid"`` or None per output of ``model``.

    A model may declare its ``output_activation`` (``keras_distill.teachers.Ensemble`` does)
    or ``outputs_probabilities`` (True means a softmax).
    """
    tensors = list(getattr(model, "outputs", None) or [])
    if hasattr(model, "output_activation"):  # declared (keras_distill.teachers.Ensemble)
        return [model.output_activation] * max(1, len(tensors))
    declared = getattr(model, "outputs_probabilities", None)
    if declared is not None:
        return ["softmax" if declared else None] * max(1, len(tensors))
    if tensors:
        return [final_activation(t) for t in tensors]
    try:
        last = model.layers[-1]
    except (AttributeError, IndexError, TypeError):
        return [None]
    import keras

    if isinstance(last, keras.layers.Softmax):
        return ["softmax"]
    name = getattr(getattr(last, "activation", None), "__name__", None)
    return [name if name in ("softmax", "sigmoid") else None]


_LOSS_KINDS = {
    "sparse_categorical_crossentropy": MULTICLASS,
    "categorical_crossentropy": MULTICLASS,
    "categorical_focal_crossentropy": MULTICLASS,
    "kl_divergence": MULTICLASS,
    "binary_crossentropy": BINARY,
    "binary_focal_crossentropy": BINARY,
    "hinge": BINARY,
    "squared_hinge": BINARY,
    "mean_squared_error": REGRESSION,
    "mean_absolute_error": REGRESSION,
    "mean_absolute_percentage_error": REGRESSION,
    "mean_squared_logarithmic_error": REGRESSION,
    "huber": REGRESSION,
    "log_cosh": REGRESSION,
}
_LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
                 "mape": "mean_absolute_percentage_error",
                 "msle": "mean_squared_logarithmic_error", "huber_loss": "huber",
                 "logcosh": "log_cosh", "kld": "kl_divergence", "kullback_leibler_divergence":
                 "kl_divergence"}


def kind_of_loss(loss, units=None):
    """The output kind a Keras label loss implies, or None when it says nothing.

    Example:
        >>> kind_of_loss("mse"), kind_of_loss("binary_crossentropy", units=5), kind_of_loss(None)
        ('regression', 'multilabel', None)
    """
    if loss is None:
        return None
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", None)
        fn = getattr(loss, "fn", None)  # LossFunctionWrapper
        if fn is not None:
            name = getattr(fn, "__name__", name)
    if not isinstance(name, str):
        return None
    name = name.lower()
    name = _LOSS_ALIASES.get(name, name)
    kind = _LOSS_KINDS.get(name)
    if kind == BINARY and units is not None and units > 1:
        return MULTILABEL
    return kind


def kind_of_labels(labels, shape):
    """The output kind that labels ``labels`` imply for an output of ``shape``, or None.

    Integer labels mean classes (binary for one unit); float labels of the output's shape
    mean multi-hot labels (values 0 or 1), one-hot or soft class rows (rows of values in
    [0, 1] that sum to 1) or, otherwise, regression targets. Float labels that could be either
    (0/1 values for one unit) count as binary.

    Example:
        >>> kind_of_labels(np.array([0, 2, 1]), (None, 3))
        'multiclass'
        >>> kind_of_labels(np.array([[1.0, 1.0, 0.0]]), (None, 3))
        'multilabel'
        >>> kind_of_labels(np.array([[1, 1, 0], [0, 1, 0]]), (None, 3))  # integer multi-hot
        'multilabel'
    """
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.dtype.kind not in "biuf" or y.size == 0:
        return None
    units = shape[-1] if shape else None
    rank = len(shape) if shape else None
    full_shape = rank is not None and y.ndim == rank and y.shape[-1] == units
    if y.dtype.kind in "biu":
        if units != 1 and full_shape and np.isin(y, (0, 1)).all() and \
                not (y.sum(axis=-1) == 1).all():
            return MULTILABEL  # integer multi-hot rows (one-hot rows stay classes)
        return BINARY if units == 1 else MULTICLASS
    finite = y[np.isfinite(y)]
    binary_values = finite.size and np.isin(finite, (0.0, 1.0)).all()
    if units == 1:
        return BINARY if binary_values else REGRESSION
    if not full_shape:  # index-like floats for several units: classes
        index_like = finite.size and (finite == np.round(finite)).all()
        return MULTICLASS if index_like else None
    in_unit = finite.size and (finite >= 0).all() and (finite <= 1).all()
    rows_sum_to_one = in_unit and np.allclose(y.sum(axis=-1), 1.0, atol=1e-3)
    if rows_sum_to_one:
        return MULTICLASS
    if binary_values:
        return MULTILABEL
    return REGRESSION


def check_declared(kind, units, name):
    """``kind`` when an output of ``units`` units can hold it, else a ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"task for output {name!r} must be one of {registry.TASKS}; "
                         f"got {kind!r}.")
    if kind == BINARY and units != 1:
        raise ValueError(
            f"Output {name!r} has {units} units, but a binary output has one (a logit). Use "
            f"task='multilabel' for {units} independent labels, or 'multiclass' for one of "
            f"{units} classes.")
    if kind == MULTICLASS and units is not None and units < 2:
        raise ValueError(
            f"Output {name!r} has one unit: a softmax over one value is always 1, so it "
            "cannot be a multiclass output. Use task='binary' (one logit) or 'regression'.")
    return kind


def _declared_kinds(task, output_names):
    if task is None or task == "auto":
        return {}
    if isinstance(task, str):
        if task not in registry.TASKS:
            raise ValueError(f"task must be one of {registry.TASKS} or a dict of them per "
                             f"output; got {task!r}.")
        return {name: task for name in output_names}
    if isinstance(task, dict):
        unknown = sorted(set(task) - set(output_names))
        if unknown:
            raise ValueError(f"task names outputs {unknown} that the student does not have; "
                             f"its outputs are {output_names}.")
        return {k: v for k, v in task.items() if v != "auto"}
    raise ValueError(f"task must be a string of {registry.TASKS} or a dict of them per "
                     f"output; got {task!r}.")


def per_output(value, output_names, what, *, lists=True):
    """``value`` as a list with one item per output.

    ``value`` may be a dict by output name (missing outputs get None), a list in output order
    (when ``lists``, for several outputs), or one item for every output.

    Example:
        >>> per_output({"reg": "mse"}, ["cls", "reg"], "loss")
        [None, 'mse']
    """
    count = len(output_names)
    if isinstance(value, dict) and (count > 1 or set(value) <= set(output_names)):
        unknown = sorted(set(value) - set(output_names))
        if unknown:
            raise ValueError(f"{what} names outputs {unknown} that the student does not "
                             f"have; its outputs are {output_names}.")
        return [value.get(name) for name in output_names]
    if count > 1 and lists and isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{what} has {len(value)} items for {count} outputs "
                             f"{output_names}; give one per output, or a dict by name.")
        return list(value)
    return [value] * count


def resolve(student, teacher=None, task="auto", *, loss=None, labels=None,
            teacher_activations=None):
    """The :class:`Output` of every output of ``student``: declared, or detected.

    Detection per output, first match wins: the declared ``task``; the teacher's final
    activation (softmax: multiclass; sigmoid: binary for one unit, else multi-label); the
    student's compiled ``loss``; the ``labels``.

    Args:
        student: a Keras model (it outputs logits or values).
        teacher: the teacher model, or None.
        task: ``"auto"``, one of :data:`KINDS`, or a dict of them by output name.
        loss: the student's loss on the labels (one, or a dict / list per output).
        labels: labels (one array, or a dict / list per output), or None.
        teacher_activations: the teacher's activation per output, when there is no teacher
            model to read it from.

    Raises:
        ValueError: an output whose kind nothing tells, or a declared kind that its width
            cannot hold; the message says what to declare.
    """
    shapes = _names_and_shapes(student)
    if not shapes:
        raise ValueError(f"The student {getattr(student, 'name', student)!r} has no known "
                         "output shape; build it (call it on a batch) first.")
    output_names = [name for name, _ in shapes]
    declared = _declared_kinds(task, output_names)
    losses = per_output(loss, output_names, "loss")
    label_list = by_output(labels, output_names)
    if teacher_activations is None:
        teacher_activations = activations(teacher) if teacher is not None else []
    teacher_activations = list(teacher_activations) + [None] * len(shapes)
    result = []
    for (name, shape), act, out_loss, y in zip(shapes, teacher_activations, losses,
                                               label_list):
        units = shape[-1] if shape else None
        kind = declared.get(name)
        if kind is None and act == "softmax":
            kind = MULTICLASS
        elif kind is None and act == "sigmoid":
            kind = BINARY if units == 1 else MULTILABEL
        kind = kind or kind_of_loss(out_loss, units) or kind_of_labels(y, shape)
        if kind is None:
            raise AmbiguousOutput(_ambiguous(name, shape, len(shapes)))
        check_declared(kind, units, name)
        result.append(Output(name, kind, int(units), max(0, len(shape) - 2)))
    return result


def by_output(value, output_names):
    """One entry per output, in output order, from one value (the first output's), a list in
    output order, or a dict by output name; missing entries are None.

    Example:
        >>> by_output({"reg": 1}, ["cls", "reg"]), by_output(None, ["cls"])
        ([None, 1], [None])
    """
    if value is None:
        return [None] * len(output_names)
    if isinstance(value, dict):
        return [value.get(name) for name in output_names]
    if isinstance(value, (list, tuple)) and len(output_names) > 1:
        return list(value) + [None] * (len(output_names) - len(value))
    return [value] + [None] * (len(output_names) - 1)


def _ambiguous(name, shape, count):
    units = shape[-1] if shape else "?"
    what = ("a binary logit or a regression value" if units == 1 else
            f"{units} class logits, {units} independent label logits or {units} regression "
            "values")
    where = f"task={{{name!r}: ...}}" if count > 1 else "task='...'"
    return (f"Cannot tell what the output {name!r} of shape {shape} holds: a linear output "
            f"may be {what}, and no final softmax or sigmoid, compiled loss or labels say "
            f"which. Declare it: Distiller(..., {where}) with one of {KINDS} (or "
            "compile(loss=...) with the label loss, or pass labels).")


def to_config(outputs):
    """The resolved kinds as a ``task`` value: a string for one output, else a dict."""
    if len(outputs) == 1:
        return outputs[0].kind
    return {o.name: o.kind for o in outputs}
