"""Reading a model's layer graph from its ``get_config()``: nodes, consumers, repeated blocks.

Functional and Sequential models describe their structure in their config; this module turns
that config into a list of :class:`Node` objects in topological order and answers questions
about it (who consumes a layer's output, which blocks repeat). Subclassed models, whose
structure Keras does not expose, are refused with a message saying what to do instead.

Example:
    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(3, name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
    >>> nodes, inputs, outputs, _ = read_graph(model)
    >>> [node.name for node in nodes], outputs
    (['hidden', 'logits'], ['logits'])
"""

from __future__ import annotations

import dataclasses

import keras

__all__ = [
    "Node",
    "all_layers",
    "consumers",
    "is_sequential",
    "layer_output_shape",
    "model_config",
    "model_shape",
    "read_graph",
    "repeated_blocks",
    "repeated_runs",
    "shapes_compatible",
]

#: The name ``read_graph`` gives the one input of a Sequential model.
SEQUENTIAL_INPUT = "__input__"
#: The consumer ``consumers`` lists for a layer whose output is a model output.
MODEL_OUTPUT = "__output__"


@dataclasses.dataclass
class Node:
    """One layer of a Functional / Sequential config, in topological order.

    Attributes:
        name: the layer's name.
        class_name: the layer's class, e.g. ``"Conv2D"``.
        entry: the serialized layer (``class_name``, ``config``, ``inbound_nodes``, ...).
        inbound: the names of the layers it reads, in argument order.
        calls: how many times the layer is called in the model (shared layers: more than 1).
    """

    name: str
    class_name: str
    entry: dict
    inbound: list
    calls: int


def is_sequential(model) -> bool:
    """Whether ``model`` is a ``keras.Sequential`` (whose config lists layers, not a graph).

    Example:
        >>> is_sequential(keras.Sequential([keras.layers.Dense(2)]))
        True
    """
    return isinstance(model, keras.Sequential)


def model_config(model, what: str) -> dict:
    """The config of a Functional or Sequential model; an error naming ``what`` otherwise.

    Args:
        model: the model to read.
        what: the caller, named in the error (``"shrink"``, ``"probe"``, ...).

    Returns:
        ``model.get_config()``.

    Raises:
        TypeError: ``model`` is not a ``keras.Model``.
        ValueError: a subclassed model (the message says how to build one Keras can read).

    Example:
        >>> model_config("not a model", "probe")
        Traceback (most recent call last):
        ...
        TypeError: probe expects a keras.Model; got str.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} expects a keras.Model; got {type(model).__name__}.")
    try:
        config = model.get_config()
    except NotImplementedError:
        config = None
    ok = isinstance(config, dict) and "layers" in config and (
        is_sequential(model) or "input_layers" in config
    )
    if not ok:
        raise ValueError(
            f"{what} cannot read the layer graph of {type(model).__name__} "
            f"'{model.name}': it is a subclassed keras.Model, whose structure Keras does "
            "not expose. Build the teacher as a Functional model "
            "(keras.Model(inputs, outputs)) or a keras.Sequential, or build the student "
            "by hand (for example with keras_distill.presets.student_cnn)."
        )
    return config


def _histories(obj):
    """All ``keras_history`` entries ([name, node_index, tensor_index]) nested in obj."""
    found = []
    if isinstance(obj, dict):
        if "keras_history" in obj:
            found.append(obj["keras_history"])
        for value in obj.values():
            found.extend(_histories(value))
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            found.extend(_histories(value))
    return found


def _tensor_refs(refs):
    """Flatten a config's input_layers / output_layers into [name, node, tensor] lists."""
    if isinstance(refs, (list, tuple)) and len(refs) == 3 and isinstance(refs[0], str):
        return [list(refs)]
    if isinstance(refs, dict):
        refs = list(refs.values())
    out = []
    for ref in refs:
        out.extend(_tensor_refs(ref))
    return out


def _sequential_nodes(config):
    nodes = []
    previous = SEQUENTIAL_INPUT
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            continue
        name = entry["config"]["name"]
        nodes.append(Node(name, entry["class_name"], entry, [previous], 1))
        previous = name
    return nodes, [SEQUENTIAL_INPUT], [previous]


def read_graph(model, what: str = "this function"):
    """The layers of a Functional or Sequential model as a graph, read from its config.

    Args:
        model: a Functional or Sequential ``keras.Model``.
        what: the caller, named in the error for a model whose graph cannot be read.

    Returns:
        ``(nodes, inputs, outputs, config)``: the :class:`Node` of every layer except the
        input layers, in topological order; the names of the input layers (a Sequential
        model's one input is named ``"__input__"``); the names of the layers whose outputs
        are the model's outputs; and ``model.get_config()``.

    Raises:
        TypeError, ValueError: as :func:`model_config`.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
        >>> nodes, inputs, outputs, _ = read_graph(model)
        >>> nodes[0].inbound, inputs, outputs
        (['__input__'], ['__input__'], ['d'])
    """
    config = model_config(model, what)
    if is_sequential(model):
        nodes, inputs, outputs = _sequential_nodes(config)
        return nodes, inputs, outputs, config
    nodes = []
    for entry in config["layers"]:
        name = entry.get("name", entry["config"]["name"])
        inbound = [h[0] for h in _histories(entry.get("inbound_nodes", []))]
        calls = len(entry.get("inbound_nodes", []))
        nodes.append(Node(name, entry["class_name"], entry, inbound, calls))
    inputs = [r[0] for r in _tensor_refs(config["input_layers"])]
    outputs = [r[0] for r in _tensor_refs(config["output_layers"])]
    nodes = [n for n in nodes if n.class_name != "InputLayer"]
    return nodes, inputs, outputs, config


def consumers(nodes, outputs) -> dict[str, list[str]]:
    """Who reads each layer's output.

    Args:
        nodes: the nodes from :func:`read_graph`.
        outputs: the output layer names from :func:`read_graph`.

    Returns:
        Layer name -> the names of the layers that read its output, with ``"__output__"``
        for a layer whose output is a model output. Layers nobody reads are absent.

    Example:
        >>> inputs = keras.Input((4,))
        >>> x = keras.layers.Dense(3, name="a")(inputs)
        >>> y = keras.layers.Add(name="add")([x, keras.layers.Dense(3, name="b")(x)])
        >>> nodes, _, outputs, _ = read_graph(keras.Model(inputs, y))
        >>> consumers(nodes, outputs)["a"], consumers(nodes, outputs)["add"]
        (['b', 'add'], ['__output__'])
    """
    found = {}
    for node in nodes:
        for producer in node.inbound:
            found.setdefault(producer, []).append(node.name)
    for name in outputs:
        found.setdefault(name, []).append(MODEL_OUTPUT)
    return found


def all_layers(model):
    """Every layer of a model, depth first, recursing into nested models.

    Args:
        model: a ``keras.Model`` (or anything with a ``layers`` list).

    Yields:
        Each layer of ``model.layers``; a nested model is yielded, then its own layers.

    Example:
        >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_d")],
        ...                          name="inner")
        >>> outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2, name="d")])
        >>> [layer.name for layer in all_layers(outer)]
        ['inner', 'inner_d', 'd']
    """
    for layer in model.layers:
        yield layer
        if isinstance(getattr(layer, "layers", None), (list, tuple)):
            yield from all_layers(layer)


def layer_output_shape(model, name):
    """The output shape of layer ``name`` in ``model``, or None when it is not defined.

    ``"__input__"`` (a Sequential model's input in :func:`read_graph`) is the model's input.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
        >>> layer_output_shape(model, "d"), layer_output_shape(model, "__input__")
        ((None, 2), (None, 4))
    """
    if name == SEQUENTIAL_INPUT:
        return tuple(model.inputs[0].shape)
    try:
        layer = model.get_layer(name)
    except ValueError:
        return None
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def model_shape(model, attr):
    """``model.input_shape`` or ``model.output_shape`` as a tuple, when there is one.

    Args:
        model: any model (or layer).
        attr: ``"input_shape"`` or ``"output_shape"``.

    Returns:
        The shape (batch axis included), or None when it is not defined yet or the model has
        several inputs / outputs.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model_shape(model, "output_shape"), model_shape(keras.Sequential(), "input_shape")
        ((None, 2), None)
    """
    try:
        shape = getattr(model, attr)
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, list):  # multi-input / multi-output models: not checked here
        return None
    return tuple(shape) if shape is not None else None


def shapes_compatible(a, b) -> bool:
    """Whether two shapes can describe the same tensors, the batch axis aside.

    None (a shape or an axis that is not known) is compatible with anything.

    Example:
        >>> shapes_compatible((None, 8, 8, 1), (32, 8, 8, None))
        True
        >>> shapes_compatible((None, 3), (None, 4))
        False
    """
    if a is None or b is None:
        return True
    if len(a) != len(b):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a[1:], b[1:]))


# --------------------------------------------------------------------------------------
# Repeated blocks
# --------------------------------------------------------------------------------------


def _segments(nodes, inputs, outputs):
    """Split the topologically ordered nodes at cut points.

    A cut point is a position after which the only tensor still needed is the
    output of the node just before it. The nodes between two cut points form a
    single-entry, single-exit segment (one layer in a plain chain; a whole
    residual block when a skip connection spans it).

    Returns a list of (entry_name, [node indices]) pairs, in order.
    """
    position = {name: -1 for name in inputs}
    for i, node in enumerate(nodes):
        position[node.name] = i
    last_use = {name: -1 for name in position}
    for i, node in enumerate(nodes):
        for producer in node.inbound:
            last_use[producer] = max(last_use.get(producer, -1), i)
    for name in outputs:
        last_use[name] = len(nodes)

    segments = []
    if len(inputs) != 1:
        return segments
    entry = inputs[0]
    current = []
    live = last_use.get(entry, -1)  # last position at which a tensor made so far is used
    for i, node in enumerate(nodes):
        current.append(i)
        if live <= i and node.calls == 1:  # only node i's output crosses the boundary
            segments.append((entry, current))
            entry, current = node.name, []
        live = max(live, last_use.get(node.name, -1))
    if current:
        segments.append((entry, current))
    return segments


def _config_without_name(config: dict) -> dict:
    config = dict(config)
    config.pop("name", None)
    return config


def _segment_signature(nodes, entry, indices):
    """What must be equal for two segments (or units) to count as repetitions."""
    local = {nodes[i].name: k for k, i in enumerate(indices)}
    signature = []
    for i in indices:
        node = nodes[i]
        if node.calls != 1:
            return None
        refs = tuple(("in", local[p]) if p in local else ("entry",) if p == entry else ("x", p)
                     for p in node.inbound)
        if any(r[0] == "x" for r in refs):
            return None
        config = _config_without_name(node.entry["config"])
        signature.append((node.class_name, repr(sorted(config.items(), key=lambda kv: kv[0])),
                          refs))
    return tuple(signature)


class _BlockFinder:
    """Blocks of consecutive segments of one model, compared by signature and shape."""

    def __init__(self, model, nodes, inputs, outputs):
        self.model, self.nodes = model, nodes
        self.segments = _segments(nodes, inputs, outputs)
        # A segment only reads its entry and its own layers, so a block's signature is
        # the sequence of its segments' signatures.
        self.signatures = [_segment_signature(nodes, entry, indices)
                           for entry, indices in self.segments]

    def block(self, start, length):
        """(entry name, node indices) of the block of ``length`` segments at ``start``."""
        entry = self.segments[start][0]
        indices = [i for _, seg in self.segments[start:start + length] for i in seg]
        return entry, indices

    def block_signature(self, start, length):
        """The block's signature, or None when it cannot repeat (or cannot be dropped)."""
        signatures = self.signatures[start:start + length]
        if any(signature is None for signature in signatures):
            return None
        entry, indices = self.block(start, length)
        shape = layer_output_shape(self.model, entry)
        if shape is None or shape != layer_output_shape(self.model, self.nodes[indices[-1]].name):
            return None  # not shape-preserving: cannot be dropped
        return tuple(signatures)

    def repetitions(self, start, length):
        """How many times the block of ``length`` segments at ``start`` repeats, back to back."""
        first = self.block_signature(start, length)
        if first is None:
            return 0
        reps = 1
        while (start + (reps + 1) * length <= len(self.segments)
               and self.block_signature(start + reps * length, length) == first):
            reps += 1
        return reps

    def starts_with_weights(self, start):
        first = self.nodes[self.segments[start][1][0]].name
        return bool(self.model.get_layer(first).weights)

    def longest_run(self, start):
        """(repetitions, block length) of the run at ``start`` covering most layers, or None."""
        best = None  # (coverage, -length, reps, length)
        for length in range(1, (len(self.segments) - start) // 2 + 1):
            reps = self.repetitions(start, length)
            if reps >= 2:
                candidate = (reps * length, -length, reps, length)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
        return None if best is None else best[2:]

    def aligned_to_weights(self, start, reps, length):
        """Shift a run to start at a layer with weights when the shifted blocks repeat as
        often: [conv ... add, relu] rather than [relu, conv ... add]. Returns (start, reps)."""
        if self.starts_with_weights(start):
            return start, reps
        for shift in range(1, length):
            shifted = start + shift
            if shifted < len(self.segments) and self.starts_with_weights(shifted) and \
                    self.repetitions(shifted, length) >= reps:
                return shifted, self.repetitions(shifted, length)
        return start, reps


def repeated_runs(model, nodes, inputs, outputs):
    """Runs of repeated blocks, as node indices (see :func:`repeated_blocks`).

    Args:
        model: the model ``nodes``, ``inputs`` and ``outputs`` were read from.
        nodes, inputs, outputs: as returned by :func:`read_graph`.

    Returns:
        A list of runs; each run a list of repetitions; each repetition a list of indices
        into ``nodes``.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4),
        ...                           keras.layers.Dense(4), keras.layers.Dense(4)])
        >>> nodes, inputs, outputs, _ = read_graph(model)
        >>> repeated_runs(model, nodes, inputs, outputs)
        [[[0], [1], [2]]]
    """
    finder = _BlockFinder(model, nodes, inputs, outputs)
    runs = []
    start = 0
    while start < len(finder.segments):
        found = finder.longest_run(start)
        if found is None:
            start += 1
            continue
        reps, length = found
        start, reps = finder.aligned_to_weights(start, reps, length)
        runs.append([finder.block(start + r * length, length)[1] for r in range(reps)])
        start += reps * length
    return runs


def repeated_blocks(model) -> list[list[list[str]]]:
    """The runs of repeated blocks in a Functional or Sequential model.

    Definitions used by :func:`keras_distill.students.shrink` (``depth``):

    - A *segment* is a single-entry, single-exit piece of the layer graph: cut
      the layers (in topological order) at every point where the only tensor
      still needed later is the one just produced. In a plain chain each layer
      is a segment; a residual block (whose skip connection keeps the block's
      input alive) is one segment up to its merge layer.
    - A *block* is one or more consecutive segments. A *run of repeated blocks*
      is two or more consecutive blocks whose layers have identical class and
      config apart from the name, wired identically, each of which **maps its
      input shape to the same output shape** (so any of them can be removed
      without changing the shapes around it). Shared layers never repeat.

    Runs are found greedily from the input side; at each position the block
    length that covers the most layers wins (the shortest on ties), and a run
    is shifted to start at a layer with weights when the shifted blocks repeat
    as often (so a ResNet block is [conv ... add, relu], not [relu, conv ... add]).

    Args:
        model: a Functional or Sequential ``keras.Model``.

    Returns:
        One list per run; each run is a list of repetitions; each repetition is
        the list of its layer names.

    Example:
        >>> inputs = keras.Input((8, 8, 1))
        >>> x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
        >>> for i in range(3):
        ...     x = keras.layers.Conv2D(8, 3, padding="same", name=f"c{i}")(x)
        ...     x = keras.layers.ReLU(name=f"r{i}")(x)
        >>> repeated_blocks(keras.Model(inputs, x))
        [[['c0', 'r0'], ['c1', 'r1'], ['c2', 'r2']]]
    """
    nodes, inputs, outputs, _ = read_graph(model, "repeated_blocks")
    runs = repeated_runs(model, nodes, inputs, outputs)
    return [[[nodes[i].name for i in rep] for rep in run] for run in runs]
