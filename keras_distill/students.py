"""Student builders: shrink a teacher, initialize a student from it, and simple students.

- :func:`shrink` makes an untrained copy of a Functional or Sequential teacher
  with fewer filters / units per layer (``width``) and, optionally, fewer
  repetitions of its repeated blocks (``depth``, see :func:`repeated_blocks`).
- :func:`transfer_weights` (from :mod:`keras_distill.transfer`) initializes a
  student from its teacher by copying the weights whose shapes match and
  *selecting* a consistent subset of the teacher's filters / units where the
  student is narrower.
- :func:`linear` is multinomial logistic regression; :func:`probe` is a linear
  head on the frozen features of a teacher layer (a linear probe).
- :func:`ensemble` combines several students into one flat, trainable Functional model
  that outputs the (weighted) mean of their logits, so a teacher can be distilled into an
  ensemble that ships as one model.

Everything works from a model's ``get_config()`` graph (:mod:`keras_distill.graph`), so
subclassed models (whose structure Keras cannot read) are refused with a message saying
what to do instead.
"""

from __future__ import annotations

import copy
import math
import numbers

import keras
from keras import layers

from keras_distill.graph import (
    is_sequential,
    model_config,
    read_graph,
    repeated_blocks,
    repeated_runs,
)
from keras_distill.transfer import LayerTransfer, TransferReport, transfer_weights

__all__ = [
    "LayerTransfer",
    "TransferReport",
    "ensemble",
    "linear",
    "probe",
    "repeated_blocks",
    "shrink",
    "transfer_weights",
]

_WIDTH_KEYS = ("filters", "units")


def _kept_repetitions(depth, reps: int) -> int:
    if isinstance(depth, float):
        return max(1, min(reps, math.floor(depth * reps + 0.5)))
    return max(1, min(reps, depth))


def _check_depth(depth):
    if depth is None:
        return
    if isinstance(depth, bool) or not isinstance(depth, (int, float)):
        raise TypeError(f"depth must be None, an int >= 1 or a float in (0, 1]; got {depth!r}.")
    if isinstance(depth, int) and depth < 1:
        raise ValueError(f"depth as an int is the number of repetitions kept (>= 1); got {depth}.")
    if isinstance(depth, float) and not 0 < depth <= 1:
        raise ValueError(f"depth as a float is the fraction of repetitions kept, in (0, 1]; "
                         f"got {depth}.")


def _rewire(obj, old: str, new: str):
    """A copy of a config with references to layer ``old`` pointing to ``new`` instead."""
    if isinstance(obj, dict):
        out = {k: _rewire(v, old, new) for k, v in obj.items()}
        history = obj.get("keras_history")
        if isinstance(history, (list, tuple)) and history and history[0] == old:
            out["keras_history"] = [new, 0, history[2]]
        return out
    if isinstance(obj, (list, tuple)):
        if len(obj) == 3 and obj[0] == old and isinstance(obj[1], int):
            return [new, 0, obj[2]]  # an input_layers / output_layers reference
        return type(obj)(_rewire(v, old, new) for v in obj)
    return obj


# --------------------------------------------------------------------------------------
# shrink
# --------------------------------------------------------------------------------------


def _scaled(value: int, width: float) -> int:
    return max(1, math.floor(value * width + 0.5))


def _fixed_width_layers(nodes, outputs) -> set[str]:
    """Layers whose filters / units set the model's output size and so keep them.

    Walks back from each output through layers without filters / units (an
    Activation, Softmax, Dropout, ...) to the first layer that has them.
    """
    by_name = {n.name: n for n in nodes}
    fixed = set()
    stack = list(outputs)
    seen = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        node = by_name[name]
        if any(k in node.entry["config"] for k in _WIDTH_KEYS):
            fixed.add(name)
        else:
            stack.extend(node.inbound)
    return fixed


def shrink(teacher, width: float = 0.5, depth=None, *, name: str | None = None):
    """A new, untrained model with the teacher's structure, narrower and optionally shallower.

    The student is rebuilt from ``teacher.get_config()``: every layer keeps its
    class, name and settings, except that ``filters`` (convolutions) and
    ``units`` (Dense, recurrent layers) are multiplied by ``width`` and rounded
    half up, with a minimum of 1. The layer(s) producing the model outputs keep
    their units (found by walking back from each output through layers without
    filters / units, such as a final Activation). Layers without a size
    (BatchNormalization, DepthwiseConv2D, pooling, ...) follow their inputs.

    ``depth`` drops repeated blocks as defined in :func:`repeated_blocks`: runs
    of two or more consecutive, identically configured blocks that keep their
    input shape. In each run the first repetitions are kept and the rest
    removed (their consumers are rewired to the last kept repetition). Names are
    kept, so :func:`transfer_weights` matches student and teacher layers by name.

    Args:
        teacher: a Functional or Sequential ``keras.Model``. Subclassed models
            are refused with a ValueError.
        width: float in (0, 1], the factor applied to filters / units.
        depth: None (keep every layer), an int ``n >= 1`` (keep at most ``n``
            repetitions of each run), or a float in (0, 1] (keep that fraction of
            each run, rounded half up, at least one).
        name: name of the student; defaults to ``"<teacher name>_shrunk"``.

    Returns:
        An untrained, trainable model of the teacher's kind (Functional or Sequential), even
        when the teacher is frozen.

    Raises:
        ValueError: bad ``width`` / ``depth``, a subclassed teacher, ``depth``
            given for a teacher without repeated blocks, or a graph whose shapes
            no longer fit once narrowed.

    Example:
        >>> from keras_distill.presets import teacher_cnn
        >>> student = shrink(teacher_cnn(), width=0.5)
        >>> student.get_layer("conv1").filters, student.get_layer("logits").units
        (16, 10)
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise ValueError(f"width must be a number in (0, 1]; got {width!r}.")
    _check_depth(depth)
    nodes, inputs, outputs, config = read_graph(teacher, "shrink")
    config = copy.deepcopy(config)
    config["name"] = name or f"{teacher.name}_shrunk"
    removed = set()
    if depth is not None:
        removed = _drop_repetitions(teacher, config, depth, nodes, inputs, outputs)
    fixed = _fixed_width_layers(nodes, outputs)
    config["layers"] = [_narrowed(entry, width, fixed) for entry in config["layers"]
                        if entry["config"].get("name") not in removed]
    try:
        if is_sequential(teacher):
            student = keras.Sequential.from_config(config)
            if not student.built and teacher.built:
                student.build(teacher.input_shape)
        else:
            student = keras.Model.from_config(config)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"shrink(width={width}, depth={depth!r}) could not rebuild teacher "
            f"'{teacher.name}' with narrower layers: {error}. A layer whose size is fixed by "
            "its config (a Reshape target shape, an Add with the raw input) may not fit a "
            "narrower model; try width=1 for such a model or build the student by hand."
        ) from error
    # A new student trains, whatever the teacher's state: a Distiller freezes its teacher
    # (trainable=False), and that flag is part of the config read above.
    student.trainable = True
    return student


def _drop_repetitions(teacher, config, depth, nodes, inputs, outputs) -> set[str]:
    """Rewire ``config`` past the repetitions ``depth`` drops; return their layer names."""
    runs = repeated_runs(teacher, nodes, inputs, outputs)
    if not runs:
        raise ValueError(
            f"shrink(depth={depth!r}): teacher '{teacher.name}' has no repeated blocks "
            "(two or more consecutive, identically configured blocks that keep their "
            "input shape; see keras_distill.students.repeated_blocks). Pass depth=None."
        )
    removed = set()
    for run in runs:
        keep = _kept_repetitions(depth, len(run))
        if keep == len(run):
            continue
        last_kept = nodes[run[keep - 1][-1]].name
        last = nodes[run[-1][-1]].name
        for rep in run[keep:]:
            removed.update(nodes[i].name for i in rep)
        if not is_sequential(teacher):
            config["layers"] = _rewire(config["layers"], last, last_kept)
            config["output_layers"] = _rewire(config["output_layers"], last, last_kept)
    return removed


def _narrowed(entry, width, fixed):
    """A layer's serialized entry with its filters / units scaled by ``width`` (in place)."""
    entry.pop("build_config", None)
    entry.pop("compile_config", None)
    layer_config = entry["config"]
    if layer_config.get("name") not in fixed:
        for key in _WIDTH_KEYS:
            value = layer_config.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                layer_config[key] = _scaled(value, width)
    return entry


# --------------------------------------------------------------------------------------
# Simple students
# --------------------------------------------------------------------------------------


def linear(input_shape, num_classes: int, *, name: str = "linear"):
    """Multinomial logistic regression as a Keras model: flatten, then one Dense (logits).

    Args:
        input_shape: shape of one input, without the batch axis, e.g. ``(8, 8, 1)``.
        num_classes: number of classes (>= 2).
        name: model name.

    Returns:
        An untrained Functional ``keras.Model`` whose output is logits.

    Example:
        >>> model = linear((8, 8, 1), 10)
        >>> model.output_shape, model.count_params()
        ((None, 10), 650)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Flatten(name="flatten")(inputs)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def probe(teacher, layer_name: str, num_classes: int | None = None, *, name: str | None = None):
    """A linear probe: the teacher's frozen features up to ``layer_name`` plus a trainable head.

    The feature part is a **copy** of the teacher up to that layer (same
    weights), frozen (``trainable=False``) and always run in inference mode, so
    BatchNormalization statistics and Dropout stay fixed while the head trains.
    The teacher itself is not modified. Features with spatial axes are flattened
    before the Dense head, which outputs logits.

    Args:
        teacher: a built Functional or Sequential ``keras.Model``.
        layer_name: the teacher layer whose output feeds the head.
        num_classes: classes of the head; defaults to the teacher's output size.
        name: model name; defaults to ``"<teacher>_probe_<layer_name>"``.

    Returns:
        A Functional ``keras.Model`` with a nested frozen model named
        ``"features"`` and a Dense layer named ``"probe_logits"``.

    Raises:
        ValueError: unknown ``layer_name`` (the message lists the available names).

    Example:
        >>> from keras_distill.presets import teacher_cnn
        >>> model = probe(teacher_cnn(), "gap")
        >>> model.get_layer("features").trainable
        False
    """
    model_config(teacher, "probe")
    names = [layer.name for layer in teacher.layers]
    if layer_name not in names:
        raise ValueError(f"probe: teacher '{teacher.name}' has no layer {layer_name!r}; "
                         f"available layers: {names}.")
    if num_classes is None:
        num_classes = int(teacher.output_shape[-1])
    source = keras.Model(teacher.input, teacher.get_layer(layer_name).output)
    features = keras.models.clone_model(source)
    features.set_weights(source.get_weights())
    features = keras.Model(features.input, features.output, name="features")
    features.trainable = False

    inputs = keras.Input(shape=tuple(teacher.input_shape[1:]), name="image")
    x = features(inputs, training=False)
    if len(x.shape) > 2:
        x = layers.Flatten(name="probe_flatten")(x)
    outputs = layers.Dense(num_classes, name="probe_logits")(x)
    return keras.Model(inputs, outputs, name=name or f"{teacher.name}_probe_{layer_name}")


# --------------------------------------------------------------------------------------
# Ensemble of students
# --------------------------------------------------------------------------------------


def _member_shapes(members):
    """Check ``ensemble``'s members; return their shared (input shape, output shape)."""
    if not isinstance(members, (list, tuple)) or not members:
        raise ValueError(f"ensemble needs a non-empty list of models; got {members!r}.")
    shapes = []
    for i, member in enumerate(members):
        model_config(member, "ensemble")
        if len(member.inputs) != 1 or len(member.outputs) != 1:
            raise ValueError(
                f"ensemble: member {i} ('{member.name}') has {len(member.inputs)} inputs and "
                f"{len(member.outputs)} outputs; every member needs exactly one of each.")
        shapes.append((tuple(member.inputs[0].shape[1:]), tuple(member.outputs[0].shape[1:])))
    for i, (in_shape, out_shape) in enumerate(shapes[1:], start=1):
        if in_shape != shapes[0][0]:
            raise ValueError(
                f"ensemble: members disagree on the input shape: member 0 "
                f"('{members[0].name}') takes {shapes[0][0]}, member {i} "
                f"('{members[i].name}') takes {in_shape}.")
        if out_shape != shapes[0][1]:
            raise ValueError(
                f"ensemble: members disagree on the output shape: member 0 "
                f"('{members[0].name}') gives {shapes[0][1]}, member {i} "
                f"('{members[i].name}') gives {out_shape}.")
    return shapes[0]


def _inlined(member, prefix: str, inputs):
    """The output tensor of a copy of ``member`` applied to ``inputs``, layers renamed
    ``<prefix><name>`` and holding the member's current weights."""
    def rename(layer):
        config = layer.get_config()
        config["name"] = f"{prefix}{layer.name}"
        clone = layer.__class__.from_config(config)
        clone.trainable = True  # a frozen member (trainable=False) still trains here
        return clone

    copy_ = keras.models.clone_model(member, input_tensors=inputs, clone_function=rename)
    copy_.set_weights(member.get_weights())
    return copy_.outputs[0]


def ensemble(members, *, average: str = "logits", weights=None, name: str = "ensemble"):
    """One trainable Functional model that outputs the (weighted) mean of its members' logits.

    Meant for distilling a teacher into an ensemble of small students that ships as one
    model: ``Distiller(teacher, ensemble([s1, s2]))`` trains every member through the
    combined prediction. (:class:`keras_distill.teachers.Ensemble` combines *teachers*: it is a
    subclassed model that freezes its members, so it cannot be a student.)

    The members' layers are **inlined**: each member is cloned onto the new input with its
    layers renamed ``m<i>_<name>`` (``m0_conv1``, ``m1_conv1``, ...) and its current weights
    copied, so the result is one flat Functional model (quantization-aware training and
    pruning refuse nested models), saved and loaded as ``.keras`` without custom objects.
    The members themselves are not modified or shared. A model nested inside a member stays
    nested. The outputs are combined with ``layers.Average`` (equal weights) or one
    ``layers.Rescaling`` per member and ``layers.Add`` (weights), named ``"logits"``: ops
    that convert to full-integer int8 TFLite. Every layer of the result is trainable.

    Args:
        members: list of Functional or Sequential models with one input and one output each,
            of the same input shape and the same output shape, outputting logits.
        average: ``"logits"``, the only mode: the mean of the members' logits. (A mean of
            probabilities needs a log after it, which int8 converters handle poorly.)
        weights: one non-negative weight per member, normalized to sum to 1; default equal.
        name: model name.

    Returns:
        A trainable Functional ``keras.Model`` whose output is the combined logits.

    Raises:
        ValueError: an empty list, a subclassed member, a member with several inputs or
            outputs, members whose input or output shapes differ (named in the message),
            bad ``weights`` or an ``average`` other than ``"logits"``.

    Example:
        >>> from keras_distill.presets import student_cnn
        >>> model = ensemble([student_cnn(width=4), student_cnn(width=4)])
        >>> model.output_shape, model.get_layer("m1_conv1").filters
        ((None, 10), 4)
        >>> model.count_params() == 2 * student_cnn(width=4).count_params()
        True
    """
    if average != "logits":
        raise ValueError(f"ensemble: average must be 'logits' (the mean of the members' "
                         f"logits); got {average!r}.")
    in_shape, _ = _member_shapes(members)
    if weights is None:
        weights = [1.0] * len(members)
    if len(weights) != len(members) or any(
            isinstance(w, bool) or not isinstance(w, numbers.Real) or w < 0 for w in weights
    ) or sum(weights) <= 0:
        raise ValueError(f"ensemble: weights must be {len(members)} non-negative numbers, not "
                         f"all zero (one per member); got {weights!r}.")
    first = members[0].inputs[0]
    inputs = keras.Input(shape=in_shape, dtype=first.dtype, name=first.name.split(":")[0])
    outs = [_inlined(m, f"m{i}_", inputs) for i, m in enumerate(members)]
    total = float(sum(weights))
    if len(outs) == 1:
        output = layers.Rescaling(1.0, name="logits")(outs[0])
    elif len(set(weights)) == 1:
        output = layers.Average(name="logits")(outs)
    else:
        scaled = [layers.Rescaling(w / total, name=f"m{i}_weight")(o)
                  for i, (w, o) in enumerate(zip(weights, outs))]
        output = layers.Add(name="logits")(scaled)
    return keras.Model(inputs, output, name=name)
