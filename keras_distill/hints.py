"""Feature hints: intermediate layers of teacher and student, and the adapters between them.

A ``keras_distill.losses.FeatureHint`` loss compares a student layer's output with a teacher
layer's output (Romero et al., 2015, "FitNets"). This module finds those layers, builds the
trainable adapter that maps the student's features to the teacher's shape, and the
multi-output views of both models that return logits and features from one forward pass.
The Distiller owns the adapters; the trained student stays a plain model without them.
"""

from __future__ import annotations

import keras

from keras_distill import teachers as teachers_lib

__all__ = ["feature_views", "layer_output", "make_adapter"]


def layer_output(model, layer_name, role):
    """The symbolic output of layer ``layer_name`` of a Functional or Sequential model.

    Args:
        model: the teacher or the student.
        layer_name: the layer whose output is the feature.
        role: ``"teacher"`` or ``"student"``, for the error messages.

    Returns:
        The layer's output ``KerasTensor``.

    Raises:
        ValueError: no such layer (the message lists the model's layers), or a model not
            built on a ``keras.Input`` (whose layer outputs are not defined).

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden")])
        >>> layer_output(model, "hidden", "student").shape
        (None, 3)
        >>> layer_output(model, "nope", "student")
        Traceback (most recent call last):
        ...
        ValueError: FeatureHint: the student has no layer named 'nope'. Available layers: ['hidden'].
    """
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = [layer.name for layer in model.layers]
        raise ValueError(
            f"FeatureHint: the {role} has no layer named {layer_name!r}. "
            f"Available layers: {names}."
        ) from None
    try:
        return layer.output
    except (AttributeError, ValueError, RuntimeError):
        raise ValueError(
            f"FeatureHint needs a Functional or Sequential {role} built on a keras.Input; "
            f"the output of layer {layer_name!r} is not defined. Build the {role} with "
            "keras.Input(...) or call it once on data before creating the Distiller."
        ) from None


def make_adapter(student_shape, teacher_shape, name):
    """A trainable map from student features to the teacher's feature shape, or None.

    Feature maps of another height and width are resized (bilinear); then a Dense layer on
    the last axis (a 1x1 convolution for feature maps, a linear map for vectors) sets the
    number of channels.

    Args:
        student_shape: shape of the student's features, with the batch axis.
        teacher_shape: shape of the teacher's features, with the batch axis.
        name: the adapter model's name.

    Returns:
        A ``keras.Model`` from student to teacher feature shape; None when the shapes are
        already equal.

    Raises:
        ValueError: shapes of different ranks, or differing in more than height, width and
            channels.

    Example:
        >>> make_adapter((None, 4, 4, 8), (None, 2, 2, 16), "adapter").output_shape
        (None, 2, 2, 16)
        >>> make_adapter((None, 8), (None, 8), "adapter") is None
        True
    """
    s, t = tuple(student_shape[1:]), tuple(teacher_shape[1:])
    if s == t:
        return None
    if len(s) != len(t):
        raise ValueError(
            f"FeatureHint: cannot map student features of shape {s} to teacher features of "
            f"shape {t} (different ranks). Choose layers whose outputs have the same rank."
        )
    inputs = keras.Input(shape=s)
    x = inputs
    if len(s) == 3 and s[:2] != t[:2]:
        x = keras.layers.Resizing(t[0], t[1], interpolation="bilinear", name="resize")(x)
    elif len(s) > 1 and s[:-1] != t[:-1]:
        raise ValueError(
            f"FeatureHint: student features {s} and teacher features {t} differ in more than "
            "the channel axis; only 2-D spatial maps (height, width, channels) can be resized."
        )
    # Dense acts on the last axis: a 1x1 convolution for feature maps, a linear map for vectors.
    x = keras.layers.Dense(t[-1], name="project")(x)
    return keras.Model(inputs, x, name=name)


def feature_views(teacher, student, hints, teacher_outputs=None):
    """Adapters, and views of both models that also return the hinted features.

    Args:
        teacher: a single Functional or Sequential teacher.
        student: the student.
        hints: the losses that compare features (``loss.uses_features``), each with a
            ``teacher_layer`` and a ``student_layer``.
        teacher_outputs: the teacher's tensors to return first (default ``teacher.outputs``;
            the Distiller passes the tensors before a final activation).

    Returns:
        ``(adapters, teacher_view, student_view)``: one adapter per hint (None where the
        shapes already match, see :func:`make_adapter`), and two ``keras.Model`` views that
        share the layers (and weights) of teacher and student and output
        ``[*outputs, *features]``, so features and logits come from one forward pass.

    Raises:
        ValueError: no Keras teacher, or an ensemble (whose intermediate layers are not one
            model's); and as :func:`layer_output` and :func:`make_adapter`.

    Example:
        >>> from keras_distill.losses import FeatureHint
        >>> from keras_distill.presets import student_cnn, teacher_cnn
        >>> adapters, teacher_view, student_view = feature_views(
        ...     teacher_cnn(), student_cnn(), [FeatureHint("relu3", "conv2")])
        >>> adapters[0].output_shape, len(student_view.outputs)
        ((None, 4, 4, 64), 2)
    """
    if teacher is None or isinstance(teacher, teachers_lib.Ensemble):
        raise ValueError(
            "FeatureHint needs the teacher's intermediate layers: use a single Functional "
            "or Sequential teacher (not an ensemble, a file or cached outputs).")
    t_feats = [layer_output(teacher, h.teacher_layer, "teacher") for h in hints]
    s_feats = [layer_output(student, h.student_layer, "student") for h in hints]
    adapters = [make_adapter(sf.shape, tf_.shape, name=f"hint_adapter_{i}")
                for i, (tf_, sf) in enumerate(zip(t_feats, s_feats))]
    outputs = list(teacher.outputs if teacher_outputs is None else teacher_outputs)
    teacher_view = keras.Model(teacher.inputs, [*outputs, *t_feats])
    student_view = keras.Model(student.inputs, [*student.outputs, *s_feats])
    return adapters, teacher_view, student_view
