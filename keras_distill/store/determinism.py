"""The rule for caching a ``tf.data`` dataset's teacher outputs: the dataset must give the
same inputs, in the same order, every time it is iterated.

:func:`check` refuses what can be seen to break it:

- a ``shuffle`` that reshuffles each iteration (the default), or one without a seed (its
  order changes from one process to the next);
- random operations in the pipeline's functions (``tf.random.uniform``, random augmentation
  such as Keras's ``RandomFlip`` in a ``map``), and functions that update variables (a seed
  generator);
- and, as a last check, a first batch that differs between two iterations.

A seeded ``shuffle(..., seed=s, reshuffle_each_iteration=False)`` passes. Shuffle the cached
dataset instead (``fit`` on the store's pairing, or ``cache_outputs(..., shuffle=True)``).
"""

from __future__ import annotations

import numpy as np

SHUFFLES = {"ShuffleDataset", "ShuffleDatasetV2", "ShuffleDatasetV3",
            "ShuffleAndRepeatDataset", "ShuffleAndRepeatDatasetV2"}
RANDOM_OPS = {
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
    "RandomShuffle", "Multinomial", "RandomGamma", "RandomPoisson", "RandomPoissonV2",
    "RngReadAndSkip", "RngSkip", "StatefulUniform", "StatefulUniformInt",
    "StatefulUniformFullInt", "StatefulStandardNormalV2", "StatefulTruncatedNormal",
    "StatefulRandomBinomial", "AssignVariableOp", "AssignAddVariableOp",
    "AssignSubVariableOp", "RandomDataset", "RandomDatasetV2", "SamplingDataset",
    "DirectedInterleaveDataset", "ExperimentalDirectedInterleaveDataset",
}
HINT = ("Teacher outputs are cached per sample, so the dataset must give the same inputs in "
        "the same order every time: remove the {what} from the pipeline (shuffle and augment "
        "after the cache, or not at all), or fit without cache_teacher.")


class NonDeterministicDataset(ValueError):
    """The dataset can change between iterations, so its cached outputs would not match."""


def _graph(dataset):
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())
    return graph


def _const(nodes, name):
    node = nodes.get(name.split(":")[0].lstrip("^"))
    if node is None or node.op != "Const":
        return None
    import tensorflow as tf

    return int(tf.make_ndarray(node.attr["value"].tensor).reshape(-1)[0])


def check(dataset, *, compare_first_batch=True):
    """Refuse a dataset that can be seen to change between iterations (see the module).

    Raises:
        NonDeterministicDataset: naming what was found and the fix.

    Example:
        >>> import tensorflow as tf
        >>> check(tf.data.Dataset.range(8).shuffle(8).batch(4))
        Traceback (most recent call last):
        ...
        keras_distill.store.determinism.NonDeterministicDataset: The dataset reshuffles on every iteration (a shuffle with reshuffle_each_iteration=True, the default). Teacher outputs are cached per sample, so the dataset must give the same inputs in the same order every time: remove the shuffle from the pipeline (shuffle and augment after the cache, or not at all), or fit without cache_teacher.
    """
    graph = _graph(dataset)
    nodes = {n.name: n for n in graph.node}
    for node in graph.node:
        if node.op in SHUFFLES:
            if node.attr["reshuffle_each_iteration"].b or node.op.startswith("ShuffleAndRepeat"):
                raise NonDeterministicDataset(
                    "The dataset reshuffles on every iteration (a shuffle with "
                    "reshuffle_each_iteration=True, the default). " + HINT.format(what="shuffle"))
            seeds = [_const(nodes, i) for i in node.input[2:4]]
            if seeds == [0, 0]:
                raise NonDeterministicDataset(
                    "The dataset has a shuffle without a seed: its order changes from one run "
                    "to the next. Give it a seed and reshuffle_each_iteration=False, or "
                    + HINT[0].lower() + HINT[1:].format(what="shuffle"))
        if node.op in RANDOM_OPS:
            raise _random(node.op)
        if node.attr["deterministic"].s == b"false" or node.attr["sloppy"].b:
            raise NonDeterministicDataset(
                f"The dataset has a {node.op} with deterministic=False: its elements may come "
                "in another order every time. Drop deterministic=False (or set "
                "options.deterministic = True). " + HINT.format(what="non-deterministic map"))
    for function in graph.library.function:
        for node in function.node_def:
            if node.op in RANDOM_OPS or node.op in SHUFFLES:
                raise _random(node.op, function.signature.name)
    if compare_first_batch:
        _compare_first_batches(dataset)


def _random(op, where=None):
    place = f" in {where}" if where else ""
    return NonDeterministicDataset(
        f"The dataset's pipeline has a random or stateful operation ({op}{place}), e.g. random "
        "augmentation in a map. " + HINT.format(what="random operation"))


def _compare_first_batches(dataset):
    import keras

    def first():
        for element in dataset.take(1).as_numpy_iterator():
            return keras.tree.flatten(element)
        return []

    a, b = first(), first()
    if len(a) != len(b) or any(x.shape != y.shape or not np.array_equal(x, y, equal_nan=True)
                               for x, y in zip(a, b)):
        raise NonDeterministicDataset(
            "The dataset's first batch differs between two iterations. " +
            HINT.format(what="source of randomness"))
