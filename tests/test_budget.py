"""int8 under an accuracy budget (keras_distill.export.budget)."""

import keras
import pytest

from keras_distill.export.budget import int8_within_budget


@pytest.mark.slow
def test_the_layer_int8_breaks_is_kept_in_float_and_the_budget_holds(digits):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu", name="hidden"),
                              keras.layers.Dense(10, name="logits")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, epochs=15, batch_size=64, verbose=0)
    # one hidden unit 1000x larger, the next layer reading it 1000x smaller: the same float
    # function (ReLU is positively homogeneous), but one per-tensor int8 scale for the hidden
    # output leaves the other units a step of several units
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 0], bias[0] = kernel[:, 0] * 1000, bias[0] * 1000
    model.get_layer("hidden").set_weights([kernel, bias])
    out_kernel, out_bias = model.get_layer("logits").get_weights()
    out_kernel[0] /= 1000
    model.get_layer("logits").set_weights([out_kernel, out_bias])

    result = int8_within_budget(model, digits.x_train[:300], (digits.x_val, digits.y_val),
                                max_accuracy_drop=0.01)
    assert result.float_accuracy > 0.9
    assert result.int8_accuracy < result.float_accuracy - 0.05, result.tried  # full int8 fails
    # the hidden output and the layer reading it must both stay float: int8 at either end of
    # that tensor crushes the small units
    assert result.within_budget and set(result.kept) == {"hidden", "logits"}, result.tried
    assert result.accuracy >= result.float_accuracy - 0.01
    from ai_edge_litert.interpreter import Interpreter

    ops = [op["op_name"] for op in Interpreter(
        model_content=result.model_bytes)._get_ops_details()]
    assert "DEQUANTIZE" in ops and "QUANTIZE" in ops  # the float island, and int8 around it
