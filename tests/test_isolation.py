"""Native crashes stay in keras-distill's worker process: the caller gets an exception, the
other artifacts are made, the manifest records the crash."""

import json
import os
import warnings

import pytest

from keras_distill import export, isolation
from keras_distill.export import steps
from keras_distill.verify.litert import UnsupportedOpError


def test_a_segfault_becomes_an_exception_and_the_next_call_works():
    with pytest.raises(isolation.NativeCrash, match=r"int8 calibration crashed the process "
                       r"with SIGSEGV.*Try dynamic\.") as info:
        isolation.call("ctypes:string_at", 0, stage="int8 calibration", remedy="Try dynamic.")
    assert info.value.to_dict() == {"stage": "int8 calibration", "signal": "SIGSEGV",
                                    "exitcode": -11}
    assert isolation.call("os:getpid", stage="pid") != os.getpid()  # a new worker


def test_an_abort_and_a_hang_are_named():
    with pytest.raises(isolation.NativeCrash, match="SIGABRT"):
        isolation.call("os:abort", stage="conversion")
    with pytest.raises(isolation.NativeCrash, match=r"did not finish within 1 s") as info:
        isolation.call("time:sleep", 30, stage="calibration", timeout=1)
    assert info.value.signal == "timeout"
    assert isolation.call("math:sqrt", 16.0, stage="after") == 4.0


def test_a_python_error_keeps_its_type_message_and_attributes():
    with pytest.raises(UnsupportedOpError, match="Op SIN in layer 'wave'") as info:
        isolation.call("helpers:raise_unsupported", stage="conversion")
    assert (info.value.op, info.value.layer, info.value.mode) == ("SIN", "wave", "int8")
    assert "worker process" in info.value.__notes__[0]
    with pytest.raises(json.JSONDecodeError):
        isolation.call("json:loads", "{", stage="parse")


def test_isolation_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("KERAS_DISTILL_ISOLATE", "0")
    assert isolation.call("os:getpid", stage="pid") == os.getpid()


def test_a_crashing_conversion_fails_its_artifact_only(student, digits, tmp_path,
                                                       monkeypatch):
    """The int8 conversion segfaults (in the worker): the float32 and dynamic artifacts are
    made and verified, the int8 one is recorded as crashed, with no file, and this process
    goes on."""
    monkeypatch.setattr(steps, "CONVERT", "helpers:segfault_on_int8")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="SIGSEGV"):
        report = export(student, out, formats=("tflite",),
                        quantization=("float32", "int8", "dynamic"),
                        representative_data=digits.x_train[:50],
                        eval_data=(digits.x_test[:40], digits.y_test[:40]))
    assert report.get("tflite", "float32").ok and report.get("tflite", "dynamic").ok
    failed = report.get("tflite", "int8")
    assert failed.status == "failed" and "NativeCrash" in failed.error
    assert "TFLite int8 conversion and calibration crashed the process with SIGSEGV" in \
        failed.error
    assert "Conv2D" in failed.error  # the model's layer types are named
    assert sorted(p.name for p in out.glob("*.tflite")) == [
        f"{report.name}_dynamic.tflite", f"{report.name}_float32.tflite"]
    manifest = json.loads((out / "manifest.json").read_text())
    crashed = next(a for a in manifest["artifacts"] if a["quantization"] == "int8")
    assert crashed["status"] == "failed"
    assert crashed["details"]["crash"] == {"stage": "TFLite int8 conversion and calibration",
                                           "signal": "SIGSEGV", "exitcode": -11}


def _recurrent_model(kind):
    import keras
    from keras import layers

    inp = keras.Input((12,))
    h = layers.Embedding(50, 8)(inp)
    h = {"lstm": lambda: layers.LSTM(16), "gru": lambda: layers.GRU(16),
         "bidirectional": lambda: layers.Bidirectional(layers.LSTM(8))}[kind]()(h)
    return keras.Model(inp, layers.Dense(3)(h), name=f"{kind}_net")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru", "bidirectional"])
def test_recurrent_models_get_every_artifact_unrolled(kind, tmp_path):
    """LSTM, GRU and Bidirectional over a short sequence are unrolled by the export's lowering:
    every artifact is made, int8 and TFLite Micro included (the rolled loop crashes TF's int8
    calibrator), at a dynamic batch, with builtin ops only; ONNX float32 matches Keras."""
    import keras
    import numpy as np

    from keras_distill.verify import micro

    keras.utils.set_random_seed(0)
    model = _recurrent_model(kind)
    x = np.random.default_rng(0).integers(0, 50, size=(256, 12)).astype("float32")
    y = (x[:, -1] % 3).astype("int64")  # the last token's id mod 3: a trained model's range
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        report = export(model, tmp_path, formats=("tflite", "onnx", "micro"),
                        quantization=("float32", "dynamic", "int8"),
                        representative_data=x, eval_data=(x, y))
    for mode in ("float32", "dynamic", "int8"):
        artifact = report.get("tflite", mode)
        assert artifact.ok, artifact.error
        assert artifact.details["inputs"][0]["shape"] == [-1, 12]  # a dynamic batch
        assert model.layers[2].name in artifact.details["lowered"]
        ops = artifact.details["ops"]
        assert "WHILE" not in ops and not [op for op in ops if "TensorList" in op or "Flex" in op]
    reference = np.asarray(model(x))
    assert report.get("tflite", "float32").metrics["max_abs_error"] <= 1e-4
    int8 = report.get("tflite", "int8").metrics
    assert int8["max_abs_error"] <= 0.1 * np.ptp(reference), int8["max_abs_error"]
    assert int8["agreement"] >= 0.9, int8  # measured 0.94 to 1.0 (bidirectional lowest)
    assert report.get("onnx", "float32").metrics["max_abs_error"] <= 1e-4
    chip = report.get("micro", "int8")
    assert chip.status == ("ok" if micro.runtime_available() else "unverified"), chip.error


@pytest.mark.slow
def test_a_rolled_recurrence_survives_the_calibrator(tmp_path, monkeypatch):
    """A sequence too long to unroll keeps the loop: .tflite files at batch 1 (a dynamic
    batch leaves TensorList ops), and the int8 calibrator's segfault on it is an artifact's
    failure with its cause, not the end of the process."""
    import numpy as np

    from keras_distill.export import lowering, tflite

    monkeypatch.setattr(lowering, "UNROLL_MAX_STEPS", 4)  # the lowering runs in this process
    model = _recurrent_model("lstm")
    x = np.random.default_rng(0).integers(0, 50, size=(64, 12)).astype("float32")
    with pytest.warns(UserWarning, match="SIGSEGV"):
        report = export(model, tmp_path, formats=("tflite",),
                        quantization=("float32", "int8"), representative_data=x,
                        eval_data=(x, None))
    artifact = report.get("tflite", "float32")
    assert artifact.ok, artifact.error
    assert artifact.details["inputs"][0]["shape"] == [1, 12]
    assert artifact.metrics["max_abs_error"] <= 1e-4
    ops = artifact.details["ops"]
    assert "WHILE" in ops and not [op for op in ops if "TensorList" in op or "Flex" in op]
    crashed = report.get("tflite", "int8")
    assert crashed.status == "failed" and crashed.details["crash"]["signal"] == "SIGSEGV"
    assert "tensorflow/tensorflow#41305" in crashed.error and "at most 4 steps" in crashed.error
    with pytest.raises(tflite.UnsupportedOpError, match="TensorList ops.*batch_size=1"):
        tflite.convert(tflite.saved_model(model, tmp_path / "sm"), "float32")
