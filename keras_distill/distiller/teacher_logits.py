"""How a teacher's outputs become logits, per output.

Where the teacher shows its logits (a final ``Softmax`` or sigmoid ``Activation`` layer, or a
final ``Dense`` with that activation) they are read before the activation, which is exact;
a visibly linear last layer (``Dense(n)``) holds logits. Otherwise softmax probabilities become log-probabilities and sigmoid probabilities log-odds
(``keras_distill.teachers.sigmoid_to_logits``); with ``teacher_outputs="auto"`` and nothing
visible, the first batch decides, once, inside the compiled step (a variable per output, saved
with the Distiller). Regression values are used as they are.

Example:
    >>> import keras
    >>> x = keras.Input((3,))
    >>> teacher = keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(x))
    >>> reader = TeacherLogits(teacher, 1, "auto")
    >>> reader.forms, reader.needs_view
    (['logits'], True)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_distill import outputs as outputs_lib
from keras_distill import teachers as teachers_lib


class TeacherLogits:
    """The teacher side of the Distiller: for each output, where its logits come from.

    Args:
        teacher: the Keras teacher, or None (its outputs come with the batches).
        count: the number of outputs.
        teacher_outputs: ``"auto"``, ``"logits"`` or ``"probabilities"`` (the Distiller's).

    Attributes:
        activations: the teacher's final activation per output (``"softmax"``, ``"sigmoid"``
            or None).
        forms: per output, ``"logits"`` (read exactly), ``"probabilities"`` (converted) or
            ``"auto"`` (the first batch decides).
        tensors: the teacher's tensors to read, for a view of the teacher, or None when the
            teacher's own outputs serve.
        variables: per output, whether the teacher outputs probabilities: -1 undecided,
            0 logits, 1 probabilities (the Distiller tracks them, so they are saved).
    """

    def __init__(self, teacher, count, teacher_outputs):
        plan = _read_plan(teacher, count, teacher_outputs)
        self.activations, self.forms, self.raw_forms = plan.activations, plan.forms, \
            plan.raw_forms
        self.dense_heads, self.needs_view = plan.dense_heads, plan.needs_view
        self.tensors = plan.tensors if self.needs_view else None
        self.variables = []
        for i, activation in enumerate(self.activations):
            value = {"logits": 0, "probabilities": 1}.get(teacher_outputs, -1)
            if teacher_outputs == "auto":
                value = 1 if activation is not None else (0 if plan.linear[i] else -1)
            self.variables.append(keras.Variable(
                value, dtype="int32", trainable=False,
                name="teacher_output_kind" if i == 0 else f"teacher_output_kind_{i}",
                aggregation="only_first_replica"))

    def from_view(self, outs):
        """The view's tensors as the outputs' values: a skipped ``Dense`` applied."""
        return [o if head is None else teachers_lib.dense_logits(head, o)
                for o, head in zip(outs, self.dense_heads)]

    def as_logits(self, out, index, kind, cached=False):
        """A teacher output as logits: probabilities become log-probabilities (softmax) or
        log-odds (sigmoid); regression values are used as they are.

        ``cached``: ``out`` is what ``teacher.predict`` returned (cached outputs), not the
        view's pre-activation tensor: an output whose logits the view reads is then after its
        activation, probabilities."""
        out = ops.cast(out, "float32")
        form = (self.raw_forms if cached else self.forms)[index]
        if kind == outputs_lib.REGRESSION or form == "logits":
            return out
        multiclass = kind == outputs_lib.MULTICLASS
        converted = teachers_lib.to_log_probs(out) if multiclass else \
            teachers_lib.sigmoid_to_logits(out)
        if form == "probabilities":
            return converted
        variable = self.variables[index]
        looks = teachers_lib.looks_like_probabilities(out) if multiclass else \
            teachers_lib.looks_like_sigmoid(out)
        decided = ops.where(variable < 0, ops.cast(looks, "int32"), variable)
        variable.assign(decided)
        return ops.where(decided == 1, converted, out)


def reads_before_activation(teacher, count):
    """Whether the Distiller reads ``teacher``'s logits before a final softmax or sigmoid (a
    view of the teacher): its cached outputs (what ``predict`` returns, probabilities) then
    differ from what the step reads, since probabilities saturate in float32."""
    return _read_plan(teacher, count, "auto").needs_view


def _read_plan(teacher, count, teacher_outputs):
    """Where each output's logits come from (see :class:`TeacherLogits`), without creating
    its variables."""
    import types

    activations = outputs_lib.activations(teacher) if teacher is not None else []
    activations = (list(activations) + [None] * count)[:count]
    sources = None if teacher is None or hasattr(teacher, "output_activation") else \
        teachers_lib.logit_sources(teacher)
    linear = (outputs_lib.visibly_linear(teacher) if teacher is not None else []) + \
        [False] * count
    forms, raw_forms, tensors, dense_heads = [], [], [], []
    for i, activation in enumerate(activations):
        source = sources[i] if sources and i < len(sources) else None
        exact = activation is not None and source is not None and (
            source[1] is not None or source[0] is not teacher.outputs[i])
        if exact:
            forms.append("logits")
        elif teacher_outputs != "auto":
            forms.append(teacher_outputs)
        elif activation is not None:
            forms.append("probabilities")
        else:  # a visibly linear last layer holds logits; else the first batch decides
            forms.append("logits" if linear[i] else "auto")
        # What teacher.predict returns, as cached outputs hold it: after the activation.
        raw_forms.append("probabilities" if exact else forms[-1])
        tensors.append(source[0] if exact else (teacher.outputs[i] if sources else None))
        dense_heads.append(source[1] if exact else None)
    # A view of the teacher, when any output's logits lie before its final activation.
    needs_view = any(f == "logits" and a is not None for f, a in zip(forms, activations))
    return types.SimpleNamespace(activations=activations, forms=forms, raw_forms=raw_forms,
                                 tensors=tensors, dense_heads=dense_heads, linear=linear,
                                 needs_view=needs_view)
