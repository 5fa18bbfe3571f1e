"""The examples run and do what they say: examples/quickstart.ipynb, feature_hints.py and
micro_export.py, on small settings."""

import json
import os
import re
import runpy
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


@pytest.mark.slow  # about 40 s: a kernel start, TensorFlow import, training and export
def test_quickstart_notebook(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    monkeypatch.setenv("KD_QUICKSTART_EPOCHS", "2")
    monkeypatch.setenv("KD_QUICKSTART_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(os.path.join(EXAMPLES, "quickstart.ipynb"), as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    last = [o for o in nb.cells[-2].outputs if o.get("name") == "stdout"]
    summary = json.loads(last[-1].text.strip().splitlines()[-1])
    assert summary["artifacts"] == {"tflite/float32": "ok", "tflite/int8": "ok",
                                    "micro/int8": "ok"}
    assert summary["teacher_params"] > 10 * summary["student_params"]
    assert summary["int8_bytes"] < summary["float32_bytes"]
    assert 0.0 <= summary["student_accuracy"] <= 1.0 and 0.0 <= summary["agreement"] <= 1.0
    # the int8 artifact reloaded from disk keeps the Keras student's accuracy within 3 points
    assert abs(summary["int8_accuracy"] - summary["student_accuracy"]) <= 0.03
    assert sorted(os.listdir(tmp_path / "out")) == [
        "labels.txt", "manifest.json", "report.md", "student_float32.tflite",
        "student_int8.tflite", "student_model_data.cc", "student_model_data.h"]


def _run_script(name, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(os.path.join(EXAMPLES, name), run_name="__main__")
    return capsys.readouterr().out


def test_feature_hints(tmp_path):
    sys.path.insert(0, EXAMPLES)
    try:
        import feature_hints
    finally:
        sys.path.remove(EXAMPLES)
    out = tmp_path / "hinted.keras"
    r = feature_hints.main(["--epochs", "4", "--teacher-epochs", "3", "--out", str(out)])
    # the hint is learned: its loss falls; the projection exists during training only
    assert len(r["hint_loss"]) == 4 and r["hint_loss"][-1] < r["hint_loss"][0]
    assert r["adapter_params"] == 8 * 64 + 64  # 1x1 projection of 8 -> 64 channels
    import keras

    student = keras.saving.load_model(out)
    assert student.count_params() == r["student_params"] < r["teacher_params"] // 10
    assert not any("adapter" in layer.name for layer in student.layers)
    assert r["student_accuracy"] > 0.3  # well above chance (0.1) after 4 epochs


@pytest.mark.slow
def test_micro_export(tmp_path, monkeypatch, capsys):
    if not os.path.exists(os.path.join(EXAMPLES, "micro_export.py")):
        pytest.skip("examples/micro_export.py is not there yet")
    out = _run_script("micro_export.py", [str(tmp_path)], monkeypatch, capsys)
    arena = int(re.search(r"tensor arena: (\d+) bytes", out).group(1))
    accuracy = float(re.search(r"TFLM accuracy on the test split ([\d.]+)", out).group(1))
    size = int(re.search(r"model: (\d+) bytes", out).group(1))
    assert arena > 0 and accuracy > 0.8 and size > 0
    assert {"student_model_data.cc", "student_model_data.h"} <= set(os.listdir(tmp_path))
    header = (tmp_path / "student_model_data.h").read_text()
    assert f"student_tensor_arena_size = {arena};" in header  # the printed arena is the C one
    assert f"batch size 1, {size} bytes" in header
