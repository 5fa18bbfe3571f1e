"""ONNX export of GELU (exact and tanh), LayerNormalization and MultiHeadAttention."""

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from keras_distill.export import onnx as onnx_export


def _gelu():
    inputs = keras.Input((8,))
    return keras.Model(inputs, keras.layers.Dense(4, activation="gelu")(inputs))


def _gelu_tanh():
    inputs = keras.Input((8,))
    x = keras.layers.Dense(4)(inputs)
    x = keras.layers.Lambda(lambda t: keras.activations.gelu(t, approximate=True))(x)
    return keras.Model(inputs, x)


def _layer_norm():
    inputs = keras.Input((8,))
    return keras.Model(inputs, keras.layers.LayerNormalization()(inputs))


def _encoder():
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 16)(inputs)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    x = keras.layers.LayerNormalization()(x + a)
    x = keras.layers.Dense(16, activation="gelu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.mark.slow
@pytest.mark.parametrize("build", [_gelu, _gelu_tanh, _layer_norm, _encoder],
                         ids=["gelu", "gelu_tanh", "layer_norm", "mha_encoder"])
def test_onnx_matches_keras(build):
    keras.utils.set_random_seed(0)
    model = build()
    rng = np.random.default_rng(0)
    if model.inputs[0].dtype == "int32":
        x = rng.integers(0, 50, (5, 12)).astype("int32")
    else:
        x = rng.normal(size=(5, 8)).astype("float32")
    data = onnx_export.convert(model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    assert np.abs(got - np.asarray(model(x))).max() <= 1e-4


def test_rejected_op_is_named():
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Erfc", ["x"], ["y"], name="functional/dense/Gelu/Erfc")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(RuntimeError, match="Erfc"):
        onnx_export.check_loadable(proto.SerializeToString())
    onnx_export._rewrite_erfc(proto)
    onnx_export.check_loadable(proto.SerializeToString())
    assert "Erfc" not in {n.op_type for n in onnx.load_from_string(
        proto.SerializeToString()).graph.node}


@pytest.mark.slow
def test_int8_quantization_leaves_no_file_in_the_working_directory(tmp_path, monkeypatch):
    # ONNX Runtime's symbolic shape inference dumps sym_shape_infer_temp.onnx and external
    # *.data files into the CWD when it cannot infer every shape (here: attention)
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    model = _encoder()
    ids = np.random.default_rng(0).integers(0, 50, (16, 12)).astype("int32")
    data = onnx_export.quantize_int8(onnx_export.convert(model), ids)
    assert len(data) > 0
    assert sorted(os.listdir(tmp_path)) == []
