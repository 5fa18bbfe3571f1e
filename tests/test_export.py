"""Tests for keras_distill.export: real converters, checked in LiteRT, ONNX Runtime and TFLM.

Conversions are expensive (and each leaks ~22 MB in TF 2.21), so one full export of a trained
student (``conftest.exported``) is shared with the verify tests; the other tests convert small
models once each.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import ALL_MODES, assert_artifact_matches_keras, no_temporary_files
from keras import layers

from keras_distill.export import VerificationError, export, micro, tflite
from keras_distill.export import onnx as onnx_export


def _litert(path_or_bytes):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(path_or_bytes, bytes):
        return Interpreter(model_content=path_or_bytes)
    return Interpreter(model_path=str(path_or_bytes))


def _small_model(middle, name, *, dense_activation=None):
    """conv -> ``middle`` (a layer or None) -> flatten -> [dense] -> logits, on 8x8x1 inputs."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    if middle is not None:
        x = middle(x)
    x = layers.Flatten(name="flatten")(x)
    if dense_activation is not None:
        x = layers.Dense(16, activation=dense_activation, name="hidden")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


class Sine(layers.Layer):
    """An op (SIN) that LiteRT runs only in float."""

    def call(self, x):
        return keras.ops.sin(x)


class FakeQuant(layers.Layer):
    """Fixed-range 8-bit fake quantization: what quantization-aware training leaves behind."""

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def call(self, x):
        return keras.quantizers.fake_quant_with_min_max_vars(x, self.low, self.high, num_bits=8)


# --- the full export ------------------------------------------------------------------------


def test_every_artifact_is_written_and_listed(exported):
    report, out = exported
    assert report.ok, [a.error for a in report.failed]
    expected = {f"digits-student_{m}.tflite" for m in ALL_MODES} | {
        "digits-student_float32.onnx", "digits-student_int8.onnx",
        "digits_student_model_data.cc", "digits_student_model_data.h",
        "labels.txt", "manifest.json", "report.md"}
    assert set(os.listdir(out)) == expected
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(report.to_dict()))
    for record in manifest["artifacts"]:
        assert record["status"] == "ok"
        for name in record["files"]:
            assert (out / name).is_file()
        if record["format"] != "micro":
            assert record["size_bytes"] == (out / record["path"]).stat().st_size
    assert (out / "labels.txt").read_text().splitlines() == [str(i) for i in range(10)]
    markdown = (out / "report.md").read_text()
    assert markdown == report.to_markdown()
    assert "| digits-student_int8.tflite | tflite | int8 |" in markdown


def test_float32_artifacts_match_keras(exported, student, digits):
    report, out = exported
    x = digits.x_test[:64]
    expected = student.predict(x, verbose=0)
    interp = _litert(out / "digits-student_float32.tflite")
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert_artifact_matches_keras(got, expected, "float32")

    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "digits-student_float32.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] != 64  # the batch dimension is dynamic
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert_artifact_matches_keras(got, expected, "float32")
    for fmt in ("tflite", "onnx"):
        metrics = report.get(fmt, "float32").metrics
        assert metrics["max_abs_error"] <= 1e-4
        assert metrics["agreement"] == 1.0
        assert metrics["accuracy"] == pytest.approx(report.keras["accuracy"])


def test_every_tflite_mode_matches_keras_within_its_tolerance(exported, student, digits):
    """Each mode's file, run sample by sample in LiteRT as a device would: float modes within
    their max-error tolerance, every mode at its minimum top-1 agreement with Keras."""
    from keras_distill.verify import LiteRTRunner, run_samples

    _, out = exported
    x = digits.x_test[:100]
    expected = student.predict(x, verbose=0)
    for mode in ALL_MODES:
        runner = LiteRTRunner((out / f"digits-student_{mode}.tflite").read_bytes())
        assert_artifact_matches_keras(run_samples(runner, x)[0], expected, mode)


def test_int8_tflite_is_integer_only(exported):
    report, out = exported
    data = (out / "digits-student_int8.tflite").read_bytes()
    interp = _litert(data)
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    for op in tflite.list_ops(data):
        assert op["op"] not in ("QUANTIZE", "DEQUANTIZE")
        for t in op["inputs"] + op["outputs"]:
            assert t["dtype"] in ("int8", "int32"), (op["op"], t)
    details = report.get("tflite", "int8").details
    assert details["input_scale"] == pytest.approx(inp["quantization"][0])
    assert details["input_zero_point"] == inp["quantization"][1]
    assert details["output_scale"] == pytest.approx(outp["quantization"][0])
    assert details["output_zero_point"] == outp["quantization"][1]
    # inputs in [0, 1] calibrate to scale 1/255 and zero point -128
    assert details["input_scale"] == pytest.approx(1 / 255, rel=1e-3)
    assert details["input_zero_point"] == -128


def test_int16x8_float16_dynamic_tensor_types(exported):
    _, out = exported
    interp = _litert(out / "digits-student_int16x8.tflite")
    assert interp.get_input_details()[0]["dtype"] == np.int16
    assert interp.get_output_details()[0]["dtype"] == np.int16
    f16 = (out / "digits-student_float16.tflite").read_bytes()
    dtypes = {t["dtype"] for op in tflite.list_ops(f16) for t in op["inputs"] + op["outputs"]}
    assert "float16" in dtypes
    assert tflite.detect_quantization(f16) == "float16"
    dyn = (out / "digits-student_dynamic.tflite").read_bytes()
    assert tflite.detect_quantization(dyn) == "dynamic"
    assert _litert(dyn).get_input_details()[0]["dtype"] == np.float32


def test_quantized_sizes_and_agreement(exported):
    report, _ = exported
    size = {a.key: a.size_bytes for a in report.artifacts}
    f32 = size["tflite/float32"]
    assert size["tflite/float16"] < 0.7 * f32
    assert size["tflite/dynamic"] < 0.5 * f32
    assert size["tflite/int8"] < 0.5 * f32
    assert report.size_ratio(report.get("tflite", "int8")) == pytest.approx(
        size["tflite/int8"] / f32)
    keras_accuracy = report.keras["accuracy"]
    assert keras_accuracy > 0.9
    for a in report.artifacts:  # statistical tolerances for the quantized modes
        assert a.metrics["n_samples"] == 360
        assert a.metrics["agreement"] >= 0.95, a.key
        assert a.metrics["accuracy"] >= keras_accuracy - 0.03, a.key
        assert a.metrics["latency_ms_median"] > 0
    for key in ("tflite/float16", "tflite/dynamic", "tflite/int8", "micro/int8"):
        assert report.get(*key.split("/")).metrics["max_abs_error"] < 1.0


def test_micro_source_compiles_and_holds_the_int8_model(exported, tmp_path):
    report, out = exported
    record = report.get("micro")
    cc, h = out / "digits_student_model_data.cc", out / "digits_student_model_data.h"
    assert record.files == [h.name, cc.name] and record.path == cc.name
    cc_text, h_text = cc.read_text(), h.read_text()
    assert "alignas(16) const unsigned char digits_student_model_data[] = {" in cc_text
    assert "const unsigned int digits_student_model_data_len = " in cc_text
    arena = record.details["arena"]["arena_size"]
    assert f"digits_student_tensor_arena_size = {arena};" in h_text
    assert "64-bit host" in h_text and "upper bound for a 32-bit MCU" in h_text
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    obj = tmp_path / "model_data.o"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", str(cc), "-o", str(obj)],
                   check=True, capture_output=True)
    symbols = subprocess.run(["nm", str(obj)], capture_output=True, text=True,
                             check=True).stdout
    assert " R digits_student_model_data\n" in symbols
    assert " R digits_student_model_data_len\n" in symbols
    # the header's registration function adds exactly the model's ops, each once
    ops = list(dict.fromkeys(record.details["ops"]))
    assert f"constexpr unsigned int digits_student_op_count = {len(ops)};" in h_text
    stub = tmp_path / "register.cc"
    methods = "\n".join(f"  int {m}() {{ added.push_back(\"{m}\"); return 0; }}"
                        for m in record.details["micro_op_resolver"])
    stub.write_text(f"""#include <string>
#include <vector>
#include "{h.name}"
struct Resolver {{
  std::vector<std::string> added;
{methods}
}};
bool check() {{
  Resolver resolver;
  static_assert(digits_student_op_count == {len(ops)}, "op count");
  return digits_student_register_ops(resolver) && resolver.added.size() == {len(ops)};
}}
int main() {{ return check() ? 0 : 1; }}
""")
    binary = tmp_path / "register"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(out), str(stub),
                    "-o", str(binary)], check=True, capture_output=True)
    assert subprocess.run([str(binary)], check=False).returncode == 0  # each op added once
    data, info = micro.read_c_source(cc)
    assert len(data) == record.size_bytes and info["arena_size"] == arena
    # batch 1, int8 in and out
    interp = _litert(data)
    assert list(interp.get_input_details()[0]["shape_signature"]) == [1, 8, 8, 1]
    assert interp.get_input_details()[0]["dtype"] == np.int8
    tflite.check_integer_only(data)


def test_micro_arena_is_the_measured_minimum(exported):
    report, out = exported
    data, _ = micro.read_c_source(out / "digits_student_model_data.cc")
    arena = report.get("micro").details["arena"]
    assert arena["arena_size"] % 1024 == 0
    assert arena["arena_size"] - 1024 < arena["min_bytes"] <= arena["arena_size"]
    ok, message = micro.probe_arena(data, arena["arena_size"])
    assert ok, message
    ok, _ = micro.probe_arena(data, arena["arena_size"] - 1024)
    assert not ok
    assert micro.probe_arena(data, arena["min_bytes"])[0]
    assert not micro.probe_arena(data, arena["min_bytes"] - 1)[0]


def test_micro_agrees_with_litert_int8(exported):
    report, _ = exported
    m, t = report.get("micro").metrics, report.get("tflite", "int8").metrics
    assert m["runtime"] == "tflite-micro"
    assert m["accuracy"] == pytest.approx(t["accuracy"], abs=0.01)
    assert m["agreement"] >= 0.98


# --- errors --------------------------------------------------------------------------------


def test_int8_without_calibration_data_raises(student, tmp_path):
    for kwargs in ({"quantization": ("float32", "int8"), "formats": ("tflite",)},
                   {"quantization": ("int16x8",), "formats": ("tflite",)},
                   {"quantization": ("float32",), "formats": ("micro",)}):
        with pytest.raises(ValueError, match="representative_data"):
            export(student, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_bad_arguments_name_the_value(student, tmp_path, digits):
    cases = [({"formats": ("tflite", "coreml")}, "coreml"),
             ({"quantization": ("int4",)}, "int4"),
             ({"quantization": ()}, "quantization"),
             ({"name": "../evil"}, "name="),
             ({"onnx_opset": 19}, "onnx_opset=19"),
             ({"labels": ["a", "b"]}, "2 names"),
             ({"representative_data": np.zeros((5, 4, 4, 1), "float32")}, r"\(5, 4, 4, 1\)"),
             ({"eval_data": (digits.x_test, digits.y_test[:3])}, "3 labels"),
             ({"calibration_samples": 0}, "calibration_samples")]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            export(student, tmp_path / "out", **kwargs)
    with pytest.raises(TypeError, match="keras.Model"):
        export("model.keras", tmp_path / "out")


def test_without_tflite_micro_the_micro_artifact_is_written_unverified(student, digits,
                                                                       tmp_path, monkeypatch):
    """tflite-micro has wheels for Linux x86-64 only: elsewhere the micro source is written with
    an estimated arena and left unverified, saying why, and the other artifacts are made as
    usual (tests/test_micro_without_runtime.py blocks the import itself, in a child process)."""
    from keras_distill.verify import micro as micro_runtime

    monkeypatch.setattr(micro_runtime, "runtime_available", lambda: False)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="tflite-micro"):
        report = export(student, out, name="s", formats=("tflite", "micro"),
                        quantization=("float32",), representative_data=digits.x_train[:50],
                        eval_data=(digits.x_test[:40], digits.y_test[:40]))
    assert report.get("tflite", "float32").ok and report.failed == []
    unverified = report.get("micro")
    assert unverified.status == "unverified" and report.unverified == [unverified]
    assert unverified.metrics["verified"] is False
    assert "Linux x86-64 only" in unverified.metrics["reason"]
    assert unverified.details["arena"]["estimated"] is True
    assert sorted(os.listdir(out)) == ["manifest.json", "report.md", "s_float32.tflite",
                                       "s_model_data.cc", "s_model_data.h"]


def test_failure_mid_export_keeps_the_others(student, digits, tmp_path, monkeypatch):
    def broken_converter(model, **kwargs):
        raise RuntimeError("injected tf2onnx failure")

    monkeypatch.setattr(onnx_export, "convert", broken_converter)
    out = tmp_path / "out"
    out.mkdir()
    (out / "s_float32.onnx").write_bytes(b"stale onnx from an earlier export")
    (out / "notes.txt").write_text("not ours")
    with pytest.warns(UserWarning, match="injected"):
        report = export(student, out, name="s", quantization=("float32",),
                        representative_data=digits.x_train[:100],
                        eval_data=(digits.x_test[:50], digits.y_test[:50]))
    assert [(a.key, a.status) for a in report.artifacts] == [
        ("tflite/float32", "ok"), ("onnx/float32", "failed"), ("micro/int8", "ok")]
    assert sorted(os.listdir(out)) == ["manifest.json", "notes.txt", "report.md",
                                       "s_float32.tflite", "s_model_data.cc", "s_model_data.h"]
    manifest = json.loads((out / "manifest.json").read_text())
    failed = manifest["artifacts"][1]
    assert failed["status"] == "failed" and failed["path"] is None and failed["files"] == []
    assert "injected tf2onnx failure" in failed["error"]
    assert "injected tf2onnx failure" in (out / "report.md").read_text()
    assert no_temporary_files(out)


def test_float32_mismatch_raises_and_is_not_written(student, digits, tmp_path, monkeypatch):
    """A float32 artifact that does not reproduce Keras is an error, not a row."""
    other = keras.models.clone_model(student)
    other.set_weights([w * 1.01 for w in student.get_weights()])
    wrong = tflite.convert(tflite.saved_model(other, str(tmp_path / "sm")), "float32")
    real_convert = tflite.convert
    monkeypatch.setenv("KERAS_DISTILL_ISOLATE", "0")  # the patch is in this process
    monkeypatch.setattr(tflite, "convert", lambda sm, mode, **kw: wrong if mode == "float32"
                        else real_convert(sm, mode, **kw))
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="max abs error") as info:
        export(student, out, formats=("tflite",), quantization=("float32",),
               eval_data=(digits.x_test[:40], digits.y_test[:40]))
    assert info.value.report.get("tflite", "float32").status == "failed"
    assert sorted(os.listdir(out)) == ["manifest.json", "report.md"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"][0]["status"] == "failed"


def test_unquantizable_op_names_op_and_layer(digits, tmp_path):
    model = _small_model(Sine(name="wave"), "sine_net")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="SIN"):
        report = export(model, out, formats=("tflite",), quantization=("float32", "int8"),
                        representative_data=digits.x_train[:50])
    assert report.get("tflite", "float32").ok
    failed = report.get("tflite", "int8")
    assert failed.status == "failed"
    assert "SIN" in failed.error and "'wave'" in failed.error
    assert "dynamic" in failed.error and "float16" in failed.error
    assert sorted(os.listdir(out)) == ["manifest.json", "report.md", "sine_net_float32.tflite"]


def test_op_missing_from_tflm_is_named(digits, tmp_path):
    model = _small_model(None, "gelu_net", dense_activation="gelu")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="GELU"):
        report = export(model, out, formats=("tflite", "micro"), quantization=("int8",),
                        representative_data=digits.x_train[:50])
    assert report.get("tflite", "int8").ok  # LiteRT has an int8 GELU kernel...
    failed = report.get("micro")  # ...TensorFlow Lite Micro has none
    assert failed.status == "failed"
    assert "GELU" in failed.error and "'hidden'" in failed.error
    assert "Micro" in failed.error
    assert sorted(os.listdir(out)) == ["gelu_net_int8.tflite", "manifest.json", "report.md"]


def test_quantize_aware_model_needs_no_calibration(digits, tmp_path):
    inputs = keras.Input((8, 8, 1), name="image")
    x = FakeQuant(0.0, 1.0, name="fq_input")(inputs)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(16, activation="relu", name="hidden")(x)
    x = FakeQuant(0.0, 6.0, name="fq_hidden")(x)
    x = layers.Dense(10, name="logits")(x)
    outputs = FakeQuant(-8.0, 8.0, name="fq_logits")(x)
    model = keras.Model(inputs, outputs, name="qat")
    report = export(model, tmp_path / "out", formats=("tflite", "micro"),
                    quantization=("int8",), eval_data=(digits.x_test[:40], digits.y_test[:40]))
    assert report.ok, [a.error for a in report.failed]
    assert report.settings["quantize_aware"] is True
    assert report.settings["calibration_samples"] is None
    data = (tmp_path / "out" / "qat_int8.tflite").read_bytes()
    tflite.check_integer_only(data)
    details = report.get("tflite", "int8").details
    assert details["input_scale"] == pytest.approx(1 / 255)  # the fake-quant range [0, 1]
    assert details["output_scale"] == pytest.approx(16 / 255)  # the fake-quant range [-8, 8]
    assert report.get("micro").metrics["agreement"] >= 0.9


def test_package_attribute_export_is_callable():
    """``keras_distill.export(...)`` works even when the name resolves to the subpackage."""
    import keras_distill

    for export_fn in (keras_distill.export, sys.modules["keras_distill.export"]):
        with pytest.raises(TypeError, match="keras.Model"):
            export_fn("not a model")


def test_import_does_not_load_converters_or_runtimes():
    """Importing the export and verify modules loads no converter or runtime; and verify loads
    nothing of export (the export depends on verification, not the other way round)."""
    code = ("import sys, keras_distill.verify, keras_distill.verify.micro, "
            "keras_distill.verify.litert; "
            "print(sorted(m for m in sys.modules if m.startswith('keras_distill.export'))); "
            "import keras_distill, keras_distill.export, keras_distill.evaluate; "
            "heavy = [m for m in ('onnx', 'tf2onnx', 'onnxruntime', 'ai_edge_litert', "
            "'tflite_micro', 'tensorflow') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["[]", "[]"]


@pytest.mark.slow
def test_mobilenet_v2_exports(tmp_path):
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10,
                                           classifier_activation=None)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 32, 32, 3)).astype("float32")
    report = export(model, tmp_path / "out", name="mobilenet_v2", formats=("tflite", "onnx"),
                    quantization=("float32", "dynamic", "int8"), representative_data=x,
                    eval_data=(x[:16], None))
    assert report.ok, [a.error for a in report.failed]
    assert {a.key for a in report.artifacts} == {
        "tflite/float32", "tflite/dynamic", "tflite/int8", "onnx/float32", "onnx/int8"}
    assert report.get("tflite", "float32").metrics["max_abs_error"] <= 1e-4
    assert report.get("onnx", "float32").metrics["max_abs_error"] <= 1e-4
    data = (tmp_path / "out" / "mobilenet_v2_int8.tflite").read_bytes()
    tflite.check_integer_only(data)
    assert report.size_ratio(report.get("tflite", "int8")) < 0.35
    assert report.size_ratio(report.get("tflite", "dynamic")) < 0.35
