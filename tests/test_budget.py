"""int8 under an accuracy budget (keras_distill.export.budget, export(max_accuracy_drop=))."""

import json
import os

import keras
import numpy as np
import pytest

from keras_distill.export.budget import int8_within_budget


def _damaged_mlp(digits, units=10):
    """A digits MLP with one hidden unit 1000x larger and the next layer reading it 1000x
    smaller: the same float function (ReLU is positively homogeneous), but one per-tensor int8
    scale for the hidden output leaves the other units a step of several units."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu", name="hidden"),
                              keras.layers.Dense(units, name="logits")], name="damaged")
    if units == 1:
        model.compile("adam", "mse")
        model.fit(digits.x_train, digits.y_train.astype("float32") / 9, epochs=15,
                  batch_size=64, verbose=0)
    else:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(digits.x_train, digits.y_train, epochs=15, batch_size=64, verbose=0)
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 0], bias[0] = kernel[:, 0] * 1000, bias[0] * 1000
    model.get_layer("hidden").set_weights([kernel, bias])
    out_kernel, out_bias = model.get_layer("logits").get_weights()
    out_kernel[0] /= 1000
    model.get_layer("logits").set_weights([out_kernel, out_bias])
    return model


@pytest.fixture(scope="module")
def damaged(digits):
    return _damaged_mlp(digits)


@pytest.mark.slow
def test_the_layer_int8_breaks_is_kept_in_float_and_the_budget_holds(digits, damaged):
    result = int8_within_budget(damaged, digits.x_train[:300], (digits.x_val, digits.y_val),
                                max_accuracy_drop=0.01)
    assert result.float_accuracy > 0.9
    assert result.int8_accuracy < result.float_accuracy - 0.05, result.tried  # full int8 fails
    # the hidden output and the layer reading it must both stay float: int8 at either end of
    # that tensor crushes the small units
    assert result.within_budget and set(result.kept) == {"hidden", "logits"}, result.tried
    assert result.mode == "int8_mixed"
    assert result.accuracy >= result.float_accuracy - 0.01
    assert [v.mode for v in result.tried] == ["int8", "int8_mixed", "int8_mixed"]
    # each step's cost is measured: the float layers make the file larger
    assert result.tried[-1].size_bytes > result.tried[0].size_bytes
    assert all(v.latency_ms > 0 for v in result.tried)
    from ai_edge_litert.interpreter import Interpreter

    ops = [op["op_name"] for op in Interpreter(
        model_content=result.model_bytes)._get_ops_details()]
    assert "DEQUANTIZE" in ops and "QUANTIZE" in ops  # the float island, and int8 around it


@pytest.mark.slow
def test_with_one_float_layer_allowed_the_whole_model_step_is_tried(digits, damaged):
    result = int8_within_budget(damaged, digits.x_train[:300], (digits.x_val, digits.y_val),
                                max_accuracy_drop=0.02, max_layers=1)
    modes = [v.mode for v in result.tried]
    assert modes == ["int8", "int8_mixed", "int16x8"], result.tried
    # int16 activations give the small units 256x finer steps: that holds the budget
    # (measured: 1.5 points lost, against about 83 for int8)
    int16 = result.tried[-1]
    assert int16.drop <= 0.02 < result.tried[0].drop - 0.3, result.tried
    assert result.mode == "int16x8" and result.within_budget
    assert result.kept == []


@pytest.mark.slow
def test_a_regression_budget_is_on_the_relative_mae(digits):
    model = _damaged_mlp(digits, units=1)
    y_val = digits.y_val.astype("float32") / 9
    result = int8_within_budget(model, digits.x_train[:300], (digits.x_val, y_val),
                                max_accuracy_drop=0.05, kind="regression")
    assert result.metric == "mae"
    predictions = model.predict(digits.x_val, verbose=0).reshape(-1)
    assert result.float_score == pytest.approx(np.mean(np.abs(predictions - y_val)), rel=1e-5)
    for v in result.tried:
        assert v.drop == pytest.approx((v.score - result.float_score) / result.float_score)
    assert result.tried[0].drop > 0.05  # full int8 is over the budget on this model
    assert result.within_budget and result.drop <= 0.05


@pytest.mark.slow
def test_export_writes_the_budgeted_model_verified_and_run_in_micro(digits, damaged,
                                                                   tmp_path):
    from keras_distill import export

    report = export(damaged, tmp_path, formats=("tflite", "micro"),
                    quantization=("float32", "int8"), representative_data=digits.x_train,
                    eval_data=(digits.x_test, digits.y_test),
                    max_accuracy_drop=0.01, budget_data=(digits.x_val, digits.y_val))
    mixed = report.get("tflite", "int8_mixed")
    assert mixed is not None and mixed.ok, mixed
    assert mixed.path == "damaged_int8_mixed.tflite"
    assert set(mixed.details["budget"]["kept"]) == {"hidden", "logits"}
    assert mixed.details["budget"]["measured_on"] == "budget_data"
    # verified on the test data like every artifact: it recovers what full int8 lost
    keras_accuracy = report.keras["accuracy"]
    assert mixed.metrics["accuracy"] >= keras_accuracy - 0.02
    assert report.get("tflite", "int8").metrics["accuracy"] < keras_accuracy - 0.05
    # the int8 artifact records the decision too
    assert report.get("tflite", "int8").details["budget"]["mode"] == "int8_mixed"
    # and TFLite Micro runs it (it has float kernels for these ops), from its C source
    chip = report.get("micro", "int8_mixed")
    assert chip is not None and chip.ok, chip
    assert chip.files == ["damaged_int8_mixed_model_data.h", "damaged_int8_mixed_model_data.cc"]
    assert chip.details["arena"]["arena_size"] > 0
    assert chip.metrics["accuracy"] >= keras_accuracy - 0.02
    assert {"DEQUANTIZE", "QUANTIZE"} <= set(chip.details["ops"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"]["max_accuracy_drop"] == 0.01
    assert any("hidden" in note and "logits" in note for note in report.notes)
    assert os.path.isfile(tmp_path / "damaged_int8_mixed.tflite")
    # report.md: every model tried, and the layers the diagnosis ranked worst
    text = (tmp_path / "report.md").read_text()
    section = text[text.index("## int8 budget"):]
    assert "chosen: **int8_mixed** with" in section
    assert section.count("| int8_mixed |") == 2 and "| int8 |" in section
    ranked = [d["layer"] for d in mixed.details["budget"]["diagnosis"]]
    assert set(ranked[:2]) == {"hidden", "logits"}, ranked
    assert "Layers int8 hurts most" in section


@pytest.mark.slow
def test_a_model_int8_keeps_adds_no_artifact(digits, tmp_path):
    from keras_distill import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)], name="plain")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, epochs=5, verbose=0)
    report = export(model, tmp_path, formats=("tflite",), quantization=("int8",),
                    representative_data=digits.x_train, max_accuracy_drop=0.05)
    assert [a.quantization for a in report.artifacts] == ["int8"]
    budget = report.get("tflite", "int8").details["budget"]
    assert budget["mode"] == "int8" and budget["kept"] == [] and budget["drop"] <= 0.05
    assert budget["measured_on"].startswith("the representative data")


@pytest.mark.parametrize("kwargs, match", [
    ({"max_accuracy_drop": -0.1}, "must be a number >= 0"),
    ({"max_accuracy_drop": 0.01, "quantization": ("float32",)}, "add 'int8' to quantization"),
    ({"max_accuracy_drop": "1%"}, "must be a number"),
])
def test_bad_budget_arguments_are_named(digits, tmp_path, kwargs, match):
    from keras_distill import export

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)], name="plain")
    kwargs = {"quantization": ("int8",), **kwargs}
    with pytest.raises(ValueError, match=match):
        export(model, tmp_path, formats=("tflite",), representative_data=digits.x_train,
               **kwargs)
    assert not os.listdir(tmp_path)  # nothing written


def test_a_budget_no_model_meets_is_not_said_to_hold():
    from keras_distill.export.budget import BudgetResult, Variant

    tried = [Variant("int8", [], 0.90, 0.05, 5000, 0.01),
             Variant("int8_mixed", ["a"], 0.89, 0.06, 5400, 0.02),
             Variant("int16x8", [], None, None, None, None, error="UnsupportedOpError: x")]
    result = BudgetResult(b"", "int8", [], "multiclass", "accuracy", 0.95, 0.90, 0.90, 0.05,
                          0.01, False, tried)
    text = result.describe()
    assert "within the budget" not in text and "no model tried meets the budget" in text
    assert "int16x8: failed (UnsupportedOpError: x)" in text
    assert "a: 0.8900 (+400 bytes, +0.010 ms)" in text
