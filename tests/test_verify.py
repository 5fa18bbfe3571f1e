"""Tests for keras_distill.verify: artifacts run in LiteRT, ONNX Runtime and TFLM, on their own."""

import json
import os
import shutil

import numpy as np
import pytest

from keras_distill import verify as ev


@pytest.fixture(scope="module")
def folder(exported):
    """The session's shared export (``conftest.exported``): every format and mode."""
    return exported[1]


def _manifest(folder):
    data = json.loads((folder / "manifest.json").read_text())
    return {os.path.basename(a["path"]): a for a in data["artifacts"]}


def test_quantize_and_dequantize_by_hand():
    q = ev.quantize([0.0, 0.25, 1.0, 2.0, -1.0], 1 / 255, -128, np.int8)
    np.testing.assert_array_equal(q, [-128, -64, 127, 127, -128])  # 63.75 -> 64; clipped
    assert q.dtype == np.int8
    np.testing.assert_allclose(ev.dequantize([-128, 0, 127], 1 / 255, -128),
                               [0.0, 128 / 255, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(ev.quantize([3.0], 0.5, 10, np.int16), [16])


def test_metrics_by_hand():
    outputs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    reference = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    m = ev.metrics(outputs, y=[0, 1, 1], reference=reference)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["agreement"] == pytest.approx(2 / 3)
    assert m["max_abs_error"] == 1.0
    assert m["mean_abs_error"] == pytest.approx(1 / 3)
    assert ev.metrics(outputs) == {"accuracy": None, "agreement": None, "max_abs_error": None,
                                   "mean_abs_error": None}


def test_float32_tflite_against_the_keras_model(folder, student, digits):
    path = folder / "digits-student_float32.tflite"
    r = ev.evaluate_artifact(path, digits.x_test, digits.y_test, reference=student)
    expected_acc = float(np.mean(np.argmax(student.predict(digits.x_test, verbose=0), -1)
                                 == digits.y_test))
    assert r["format"] == "tflite" and r["runtime"] == "litert"
    assert r["quantization"] == "float32"
    assert r["size_bytes"] == r["file_bytes"] == path.stat().st_size
    assert r["n_samples"] == len(digits.x_test)
    assert r["accuracy"] == pytest.approx(expected_acc)
    assert r["agreement"] == 1.0
    assert r["max_abs_error"] <= 1e-4
    assert r["latency_ms_median"] > 0
    assert r["input_dtype"] == r["output_dtype"] == "float32"


def test_int8_runner_quantizes_like_a_device(folder, digits):
    """The runner's float-in/float-out call equals a hand-quantized LiteRT invocation."""
    from ai_edge_litert.interpreter import Interpreter

    data = (folder / "digits-student_int8.tflite").read_bytes()
    runner = ev.LiteRTRunner(data)
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (in_scale, in_zp), (out_scale, out_zp) = inp["quantization"], out["quantization"]
    for x1 in (digits.x_test[:1], digits.x_test[7:8]):
        q = np.clip(np.round(x1 / in_scale) + in_zp, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        expected = (interp.get_tensor(out["index"]).astype(np.float32) - out_zp) * out_scale
        np.testing.assert_allclose(runner(x1), expected, rtol=1e-6)
    assert runner.input_dtype == runner.output_dtype == "int8"


def test_reference_as_array_and_mismatch(folder, student, digits):
    x = digits.x_test[:30]
    reference = student.predict(x, verbose=0)
    r = ev.evaluate_artifact(folder / "digits-student_int8.tflite", x, reference=reference)
    assert r["accuracy"] is None and r["agreement"] >= 0.9
    assert 0 < r["max_abs_error"] < 1.0
    with pytest.raises(ValueError, match="reference has 29 rows"):
        ev.evaluate_artifact(folder / "digits-student_int8.tflite", x, reference=reference[:29])
    with pytest.raises(ValueError, match="3 labels"):
        ev.evaluate_artifact(folder / "digits-student_int8.tflite", x, y=digits.y_test[:3])


def test_micro_source_runs_in_tflm_with_its_recorded_arena(folder, digits):
    record = _manifest(folder)["digits_student_model_data.cc"]
    for name in ("digits_student_model_data.cc", "digits_student_model_data.h"):
        r = ev.evaluate_artifact(folder / name, digits.x_test, digits.y_test)
        assert r["format"] == "micro" and r["runtime"] == "tflite-micro"
        assert r["quantization"] == "int8"
        assert r["arena_size"] == record["details"]["arena"]["arena_size"]
        assert r["size_bytes"] == record["size_bytes"]
        assert r["file_bytes"] == (folder / "digits_student_model_data.cc").stat().st_size
        assert r["accuracy"] == pytest.approx(record["metrics"]["accuracy"])


def test_too_small_arena_is_an_error_not_a_crash(folder, digits):
    with pytest.raises(RuntimeError, match="arena_size=64"):
        ev.evaluate_artifact(folder / "digits_student_model_data.cc", digits.x_test[:5], arena_size=64)


def test_micro_source_without_arena_is_measured(folder, digits, tmp_path):
    text = (folder / "digits_student_model_data.cc").read_text()
    stripped = "\n".join(line for line in text.splitlines() if "arena" not in line)
    (tmp_path / "bare_model_data.cc").write_text(stripped)
    r = ev.evaluate_artifact(tmp_path / "bare_model_data.cc", digits.x_test[:20])
    assert r["arena_size"] == _manifest(folder)["digits_student_model_data.cc"]["details"]["arena"][
        "arena_size"]


def test_onnx_artifacts(folder, student, digits):
    f32 = ev.evaluate_artifact(folder / "digits-student_float32.onnx", digits.x_test, digits.y_test,
                               reference=student)
    assert f32["runtime"] == "onnxruntime" and f32["quantization"] == "float32"
    assert f32["max_abs_error"] <= 1e-4
    q = ev.evaluate_artifact(folder / "digits-student_int8.onnx", digits.x_test, digits.y_test,
                             reference=student)
    assert q["quantization"] == "int8"
    assert q["agreement"] >= 0.9


def test_evaluate_folder_reports_every_file(folder, digits, student, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("digits-student_float32.onnx", "digits-student_float32.tflite",
                 "digits-student_int8.onnx", "digits-student_int8.tflite",
                 "digits_student_model_data.cc", "digits_student_model_data.h", "report.md"):
        shutil.copy(folder / name, copy / name)
    (copy / "broken.tflite").write_bytes(b"not a flatbuffer")
    rows = ev.evaluate_folder(copy, digits.x_test, digits.y_test, reference=student)
    assert [r["file"] for r in rows] == [
        "broken.tflite", "digits-student_float32.onnx", "digits-student_float32.tflite",
        "digits-student_int8.onnx", "digits-student_int8.tflite",
        "digits_student_model_data.cc"]
    assert "error" in rows[0] and "error" not in rows[1]
    manifest = _manifest(folder)
    for r in rows[1:]:
        assert r["accuracy"] == pytest.approx(manifest[r["file"]]["metrics"]["accuracy"])
        assert r["agreement"] == pytest.approx(manifest[r["file"]]["metrics"]["agreement"])
    table = ev.format_table(rows)
    assert "broken.tflite" in table and "digits_student_model_data.cc" in table
    assert [r["file"] for r in ev.evaluate(copy / "digits-student_int8.tflite", digits.x_test[:5])] == [
        "digits-student_int8.tflite"]


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="model.pb"):
        ev.artifact_format("model.pb")
    with pytest.raises(ValueError, match="no artifacts"):
        ev.evaluate_folder(tmp_path, np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="not a folder"):
        ev.evaluate_folder(tmp_path / "missing", np.zeros((1, 8, 8, 1), "float32"))


def test_a_micro_source_without_tflite_micro_is_a_clear_error(folder, digits, monkeypatch):
    from keras_distill.verify import micro as micro_runtime

    monkeypatch.setattr(micro_runtime, "runtime_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"tflite-micro package\) is not installed"):
        ev.evaluate_artifact(folder / "digits_student_model_data.cc", digits.x_test[:5])



# --- scores per output kind (NumPy, against scikit-learn and by hand) -----------------------


def test_scores_of_every_kind_have_the_same_keys_and_none_where_missing():
    from keras_distill.verify import KEYS, scores

    outputs = {"multiclass": np.eye(3), "binary": np.array([[0.5], [-1.0], [2.0]]),
               "multilabel": np.array([[1.0, -1.0], [2.0, 0.5], [-3.0, 1.0]]),
               "regression": np.array([[0.5], [1.0], [2.0]])}
    labels = {"multiclass": [0, 1, 1], "binary": [1, 0, 0],
              "multilabel": [[1, 0], [1, 1], [0, 0]], "regression": [0.0, 1.0, 4.0]}
    for kind, out in outputs.items():
        empty = scores(kind, out)
        assert list(empty) == list(KEYS[kind]) and set(empty.values()) == {None}
        full = scores(kind, out, labels[kind], out)
        assert list(full) == list(KEYS[kind]) and None not in full.values(), kind
        assert full["max_abs_error"] == 0.0
    assert ev.metrics(np.eye(3), [0, 1, 1], kind="multiclass") == scores(
        "multiclass", np.eye(3), [0, 1, 1])


def test_binary_and_multilabel_scores_match_scikit_learn():
    from sklearn.metrics import f1_score, roc_auc_score

    from keras_distill.verify import scores

    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(size=(200, 1)), 1)  # rounded: ties, counted as one half
    y = (logits[:, 0] + rng.normal(size=200) > 0).astype(int)
    reference = logits + rng.normal(0, 0.3, logits.shape)
    s = scores("binary", logits, y, reference)
    assert s["auc"] == pytest.approx(roc_auc_score(y, logits[:, 0]))
    assert s["accuracy"] == pytest.approx(np.mean((logits[:, 0] > 0) == y))
    assert s["agreement"] == pytest.approx(np.mean((logits > 0) == (reference > 0)))
    assert scores("binary", logits, np.ones(200, int))["auc"] is None  # one class only
    multi = rng.normal(size=(100, 5))
    hot = (multi + rng.normal(size=(100, 5)) > 0.5).astype(int)
    s = scores("multilabel", multi, hot)
    assert s["micro_f1"] == pytest.approx(f1_score(hot, multi > 0, average="micro"))
    assert s["accuracy"] == pytest.approx(np.mean((multi > 0) == hot))
    hot[0] = -1  # a sample whose labels are unknown
    kept = scores("multilabel", multi, hot)
    assert kept["micro_f1"] == pytest.approx(f1_score(hot[1:], multi[1:] > 0, average="micro"))


def test_positions_are_flattened_and_minus_one_left_out():
    from keras_distill.verify import scores

    logits = np.zeros((2, 3, 4))
    logits[..., 1] = 1.0  # every position predicts class 1
    y = np.array([[1, 2, -1], [1, -1, -1]])
    assert scores("multiclass", logits, y)["accuracy"] == pytest.approx(2 / 3)
    one_hot = np.eye(4)[[[1, 2, 0], [1, 0, 0]]]
    assert scores("multiclass", logits, one_hot)["accuracy"] == pytest.approx(2 / 6)
    reference = logits.copy()
    reference[0, 0] = [5.0, 0, 0, 0]
    assert scores("multiclass", logits, reference=reference)["agreement"] == pytest.approx(5 / 6)


def test_regression_scores_by_hand():
    from keras_distill.verify import primary, scores

    out = np.array([[1.0], [2.0], [4.0]])
    s = scores("regression", out, labels=[1.0, 3.0, 2.0], reference=[[1.0], [2.5], [4.0]])
    assert s["mae"] == pytest.approx(1.0) and s["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert s["max_abs_error"] == 0.5 and s["mean_abs_error"] == pytest.approx(0.5 / 3)
    assert s["rms_error"] == pytest.approx(np.sqrt(0.25 / 3))
    assert [primary(k) for k in ("multiclass", "binary", "multilabel", "regression")] == [
        ("accuracy", True), ("accuracy", True), ("micro_f1", True), ("mae", False)]
    with pytest.raises(ValueError, match="one of"):
        scores("ranking", out)
    with pytest.raises(ValueError, match="2 regression targets for 3 outputs"):
        scores("regression", out, labels=[1.0, 2.0])


def test_latency_is_the_runners_call_not_reading_a_lazy_sample():
    import time

    from keras_distill.data import lazy
    from keras_distill.verify.runners import run_samples

    class SlowRows(lazy.InMemory):
        def _read(self, indices):  # a row read (and decoded) from disk
            time.sleep(0.02)
            return super()._read(indices)

    x = SlowRows(np.arange(12, dtype="float32").reshape(4, 3))
    outputs, seconds = run_samples(lambda x1: np.asarray(x1) * 2, x)
    np.testing.assert_array_equal(outputs, np.arange(12).reshape(4, 3) * 2)
    assert len(seconds) == 4 and seconds.max() < 0.01, seconds
