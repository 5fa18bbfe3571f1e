"""The table of known export failures (keras_distill.export.causes), row by row, and the real
failures that use it."""

import keras
import numpy as np
import pytest

from keras_distill.export import causes, tflite
from keras_distill.verify.litert import UnsupportedOpError, layer_for_tensor

#: A case per row of the table: (op, mode, the converter's or runtime's words).
CASES = {
    "recurrent_dynamic_batch": ("TensorListReserve", "float32", "TensorList ops left"),
    "layer_norm_neg": ("NEG", "int8", "left it in float"),
    "embedding_select_micro": ("SELECT_V2", "micro", ""),
    "gelu_micro": ("GELU", "micro", "Didn't find op for builtin opcode 'GELU'"),
    "tile_micro": ("TILE", "micro", ""),
    "micro_kernel_failed": ("CONV_2D", "micro", "Node CONV_2D (number 3) failed to prepare"),
    "micro_kernel": ("SIN", "micro", "Didn't find op for builtin opcode 'SIN'"),
    "left_in_float": ("SIN", "int8", "left it in float"),
    "not_quantizable": ("Erfinv", "int16x8", "failed to legalize"),
    "not_builtin": ("Erfinv", "float32", "is neither a custom op nor a flex op"),
}


def test_every_row_has_a_case():
    assert set(CASES) == set(causes.CAUSES_BY_KEY)


@pytest.mark.parametrize("key", list(CASES))
def test_each_row_is_chosen_for_its_case_and_written_into_the_message(key):
    op, mode, words = CASES[key]
    row = causes.CAUSES_BY_KEY[key]
    assert causes.cause_of(op, mode, words) is row
    text = causes.message(op, mode, layer="dense_1", evidence=words)
    assert text.startswith(f"Op {op} in layer 'dense_1' cannot ")
    assert row.why in text and f"Remedy: {row.remedy}." in text


def test_an_untraced_layer_is_said_so_never_layer_none():
    text = causes.message("SPLIT", "int8", tensor="functional/split")
    assert "None" not in text
    assert "in no Keras layer the converter could name (tensor 'functional/split')" in text


def test_a_scope_traced_twice_still_names_its_layer():
    # a model traced twice (the lowered copy) names its scopes lstm_1_1, lstm_cell_1...
    name = "functional_1_1/lstm_1_1/lstm_cell_1/split;functional_1_1/lstm_1_1/lstm_cell_1/s1"
    assert layer_for_tensor(name, ["embedding", "lstm", "dense"]) == "lstm"
    assert layer_for_tensor("model/conv_1_1/Relu", ["conv", "conv_1"]) == "conv"
    assert layer_for_tensor("model/conv_1/Relu", ["conv_1"]) == "conv_1"


@pytest.mark.slow
def test_a_real_neg_is_reported_with_its_row(tmp_path):
    # tflite.convert converts the model as it is (export() would lower the normalization)
    inputs = keras.Input((4,))
    x = keras.layers.LayerNormalization(name="norm")(keras.layers.Dense(8)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    with pytest.raises(UnsupportedOpError) as info:
        tflite.convert(tflite.saved_model(model, tmp_path / "sm"), "int8",
                       representative_data=x, layer_names=[layer.name for layer in model.layers])
    assert (info.value.op, info.value.layer, info.value.mode) == ("NEG", "norm", "int8")
    assert causes.CAUSES_BY_KEY["layer_norm_neg"].why in str(info.value)
    assert "None" not in str(info.value)
