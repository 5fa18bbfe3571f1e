"""keras_distill.graph: reading a model's layer graph from its config."""

import keras
import pytest
from keras import layers

from keras_distill import graph


def _two_branch_model():
    inputs = keras.Input((4,), name="x")
    a = layers.Dense(3, name="a")(inputs)
    b = layers.Dense(3, name="b")(a)
    c = layers.Dense(3, name="c")(a)
    out = layers.Add(name="add")([b, c])
    return keras.Model(inputs, [out, layers.Dense(2, name="head")(out)])


def test_read_graph_lists_layers_in_order_with_their_producers():
    nodes, inputs, outputs, config = graph.read_graph(_two_branch_model())
    assert inputs == ["x"] and outputs == ["add", "head"]
    assert [(n.name, n.class_name, n.inbound, n.calls) for n in nodes] == [
        ("a", "Dense", ["x"], 1), ("b", "Dense", ["a"], 1), ("c", "Dense", ["a"], 1),
        ("add", "Add", ["b", "c"], 1), ("head", "Dense", ["add"], 1)]
    assert [entry["class_name"] for entry in config["layers"]][:2] == ["InputLayer", "Dense"]
    assert graph.consumers(nodes, outputs) == {
        "x": ["a"], "a": ["b", "c"], "b": ["add"], "c": ["add"], "add": ["head", "__output__"],
        "head": ["__output__"]}


def test_read_graph_counts_the_calls_of_a_shared_layer():
    inputs = keras.Input((4,))
    shared = layers.Dense(4, name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    nodes, _, _, _ = graph.read_graph(model)
    assert [(n.name, n.calls) for n in nodes] == [("shared", 2)]


def test_read_graph_refuses_a_subclassed_model_and_names_the_caller():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="shrink cannot read the layer graph of Sub"):
        graph.read_graph(Sub(), "shrink")
    with pytest.raises(TypeError, match="probe expects a keras.Model; got int"):
        graph.read_graph(3, "probe")


def test_all_layers_recurses_into_nested_models():
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="i1"),
                              layers.Dense(3, name="i2")], name="inner")
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, layers.Dense(2, name="d")(inner(inputs)))
    assert [layer.name for layer in graph.all_layers(outer)][1:] == ["inner", "i1", "i2", "d"]
    assert [layer.name for layer in outer.layers][1:] == ["inner", "d"]
