"""The MLPerf Tiny reference presets and ``student_scaled``: shapes, parameter counts (those
their docstrings state, within ±15%), and full-integer int8 TFLite conversion run in LiteRT."""

import keras
import numpy as np
import pytest

from keras_distill import presets
from keras_distill.presets import (
    REFERENCE_PRESETS,
    ds_cnn,
    fc_autoencoder,
    mobilenet_v1,
    reference_preset_for,
    resnet8,
    student_scaled,
)

# name: (function, default input shape, default outputs, params stated in the docstring,
#        another input shape)
CASES = {
    "resnet8": (resnet8, (32, 32, 3), 10, 78_666, (64, 48, 3)),
    "ds_cnn": (ds_cnn, (49, 10, 1), 12, 24_908, (98, 40, 1)),
    "mobilenet_v1": (mobilenet_v1, (96, 96, 3), 2, 221_794, (64, 80, 3)),
    "fc_autoencoder": (fc_autoencoder, (640,), 640, 269_992, (128,)),
    "student_scaled": (student_scaled, (8, 8, 1), 10, 3_818, (28, 28, 1)),
}


def _within(count, stated, tolerance=0.15):
    return abs(count - stated) <= tolerance * stated


def _is_linear(model):
    logits = model.get_layer("logits")
    return isinstance(logits, keras.layers.Dense) and logits.activation is keras.activations.linear


def test_reference_presets_dict_and_presets_untouched():
    assert list(REFERENCE_PRESETS) == list(CASES)
    assert list(presets.PRESETS) == ["teacher_cnn", "student_cnn", "student_mlp", "teacher_mlp",
                                     *REFERENCE_PRESETS]
    assert all(presets.PRESETS[name] is fn for name, fn in REFERENCE_PRESETS.items())


@pytest.mark.parametrize("name", list(CASES))
def test_default_build(name):
    fn, shape, outputs, stated, _ = CASES[name]
    model = fn()
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, outputs)
    assert _is_linear(model)
    assert _within(model.count_params(), stated), model.count_params()
    assert fn.__doc__ and f"{stated:,}" in fn.__doc__


@pytest.mark.parametrize("name", list(CASES))
def test_other_size(name):
    fn, _, _, stated, shape = CASES[name]
    outputs = shape[0] if name == "fc_autoencoder" else 5
    model = fn(shape, outputs)
    assert model.output_shape == (None, outputs)
    assert _is_linear(model)
    y = model(np.zeros((2, *shape), "float32"))
    assert tuple(y.shape) == (2, outputs)
    if name in ("resnet8", "ds_cnn", "mobilenet_v1"):  # the count does not depend on the size
        head = model.get_layer("logits").count_params()
        default_head = fn().get_layer("logits").count_params()
        assert model.count_params() - head == stated - default_head


def test_fc_autoencoder_scales_with_input():
    # 128·128 + 128 per hidden layer, BN 4·128; the 128-wide input and output change.
    assert fc_autoencoder((128,), 128).count_params() == 269_992 - 2 * 512 * 128 - 512
    assert fc_autoencoder().get_layer("bn5").input.shape == (None, 8)


@pytest.mark.parametrize("shape", [(96, 96, 3), (96, 96, 1), (224, 224, 3), (8, 8, 3),
                                   (9, 13, 1), (49, 10, 1)])
def test_student_scaled_stays_small(shape):
    model = student_scaled(shape, 10)
    features = model.get_layer("logits").input.shape[-1]
    assert features <= 256
    assert model.count_params() < 20_000, model.count_params()
    assert model.output_shape == (None, 10)


def test_student_scaled_at_96x96x3_beats_student_cnn():
    model = student_scaled((96, 96, 3), 10)
    assert model.count_params() == 12_122
    assert model.get_layer("logits").input.shape[-1] == 144  # 3x3x16
    assert presets.student_cnn((96, 96, 3), 10).get_layer("logits").input.shape[-1] == 36_864
    small = student_scaled((96, 96, 3), 10, max_features=64)
    assert small.get_layer("logits").input.shape[-1] <= 64


def test_student_scaled_like_student_cnn_at_8x8():
    ours = student_scaled((8, 8, 1), 10).count_params()
    theirs = presets.student_cnn((8, 8, 1), 10).count_params()
    assert 0.5 * theirs <= ours <= 2 * theirs, (ours, theirs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="images"):
        student_scaled((64,), 10)
    with pytest.raises(ValueError, match="max_features"):
        student_scaled((32, 32, 3), 10, max_features=8)
    with pytest.raises(ValueError, match="images"):
        resnet8((32, 32), 10)


@pytest.mark.parametrize("shape, task, units, expected", [
    ((49, 10, 1), "multiclass", None, "ds_cnn"),
    ((98, 40, 1), "multiclass", None, "ds_cnn"),
    ((32, 32, 3), "multiclass", None, "resnet8"),
    ((64, 64, 3), "binary", None, "resnet8"),
    ((96, 96, 3), "binary", None, "mobilenet_v1"),
    ((224, 224, 3), "multiclass", None, "mobilenet_v1"),
    ((640,), "regression", 640, "fc_autoencoder"),
    ((640,), "regression", 1, None),
    ((640,), "multiclass", 640, None),
    ((30,), "binary", None, None),
    ((8, 8, 1), "multiclass", None, None),
    ((28, 28, 1), "multiclass", None, None),
    ((16, 16, 3), "multiclass", None, None),
    ((32, 32, 3), "regression", None, None),
])
def test_reference_preset_for(shape, task, units, expected):
    assert reference_preset_for(shape, task, output_units=units) == expected
    if expected is not None:
        model = REFERENCE_PRESETS[expected](shape, units or 2)
        assert model.input_shape == (None, *shape)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_int8_tflite_runs(name, tmp_path):
    from keras_distill.export import export

    fn, shape, _, _, _ = CASES[name]
    model = fn()
    x = np.random.default_rng(0).normal(size=(64, *shape)).astype("float32")
    kwargs = {"task": "regression"} if name == "fc_autoencoder" else {}
    report = export(model, tmp_path, formats=("tflite",), quantization=("int8",),
                    representative_data=x, **kwargs)
    artifact = report.get("tflite", "int8")
    assert artifact is not None and artifact.ok, artifact and artifact.error
    assert 0 < artifact.size_bytes < 2 * 4 * model.count_params() + 200_000
    print(f"{name}: {model.count_params()} params, int8 {artifact.size_bytes} bytes")


def _data(shape, task="multiclass", units=10):
    import types

    return types.SimpleNamespace(name="generated", task=task, input_shape=shape,
                                 output_units=units, num_classes=units)


@pytest.mark.parametrize("shape, task, units, teacher, student", [
    ((8, 8, 1), "multiclass", 10, "teacher_cnn", "student_cnn"),  # digits: unchanged
    ((28, 28, 1), "multiclass", 10, "teacher_cnn", "student_cnn"),
    ((32, 32, 3), "multiclass", 10, "resnet8", "student_cnn"),
    ((96, 96, 3), "binary", 1, "mobilenet_v1", "student_scaled"),
    ((49, 10, 1), "multiclass", 12, "ds_cnn", "student_cnn"),
    ((640,), "regression", 640, "fc_autoencoder", "student_mlp"),
    ((30,), "binary", 1, "teacher_mlp", "student_mlp"),
])
def test_the_cli_takes_the_presets_that_fit_the_data(shape, task, units, teacher, student):
    from keras_distill import config
    from keras_distill.pipeline.tasks import resolve

    cfg, _ = resolve(config.load(None, {}), _data(shape, task, units))
    assert (cfg["teacher.model"], cfg["student.model"]) == (teacher, student)
    if teacher not in ("teacher_cnn", "teacher_mlp"):
        assert "MLPerf Tiny reference" in cfg.origin("teacher.model")
    # a model the user chose is kept
    chosen = config.load(None, {"teacher.model": "teacher_cnn", "student.model": "student_mlp"})
    cfg, _ = resolve(chosen, _data(shape, task, units))
    assert (cfg["teacher.model"], cfg["student.model"]) == ("teacher_cnn", "student_mlp")
