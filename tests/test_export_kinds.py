"""Export and verification of every output kind: binary, regression, multi-label, a sequence
tagger and a two-output model, through the real converters and runtimes (LiteRT, ONNX Runtime,
TFLM). Each model is small and trained once per module on generated data."""

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers
from sklearn.metrics import f1_score, roc_auc_score

from keras_distill import verify
from keras_distill.export import export
from keras_distill.verify import KEYS, LiteRTRunner, OnnxRunner, run_samples

N_TRAIN = 400


def _mlp(units, name, inputs=6):
    x = keras.Input((inputs,), name="features")
    h = layers.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(x, layers.Dense(units, name="head")(h), name=name)


def _fit(model, x, y, loss, epochs=30, rate=1e-2):
    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.Adam(rate), loss)
    model.fit(x[:N_TRAIN], y if isinstance(y, dict) else y[:N_TRAIN], epochs=epochs,
              batch_size=32, verbose=0)
    return model


def _file(report, fmt, mode=None):
    return Path(report.path(fmt, mode))


def _runner_outputs(path, x):
    data = path.read_bytes()
    runner = OnnxRunner(data) if path.suffix == ".onnx" else LiteRTRunner(data)
    return run_samples(runner, x)[0]


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(600, 6)).astype("float32")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tmp_path_factory.mktemp("kinds")


# --- binary ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binary(x, ckpt):
    rng = np.random.default_rng(1)
    y = (x @ rng.normal(size=6) + 0.3 * rng.normal(size=len(x)) > 0).astype("int64")
    model = _fit(_mlp(1, "binary_net"), x, y,
                 keras.losses.BinaryCrossentropy(from_logits=True))
    report = export(model, ckpt / "binary", formats=("tflite",),
                    quantization=("float32", "int8"), representative_data=x[:N_TRAIN],
                    eval_data=(x[N_TRAIN:], y[N_TRAIN:]), labels=["no", "yes"])
    return model, y[N_TRAIN:], report


def test_binary_logit_is_verified_with_auc_and_agreement(binary, x):
    model, y, report = binary
    assert report.ok, [a.error for a in report.failed]
    logits = model.predict(x[N_TRAIN:], verbose=0)[:, 0]
    assert report.keras["task"] == "binary"
    assert report.keras["auc"] == pytest.approx(roc_auc_score(y, logits))
    assert report.keras["accuracy"] == pytest.approx(np.mean((logits > 0) == y))
    assert report.keras["accuracy"] > 0.85
    f32, int8 = report.get("tflite", "float32"), report.get("tflite", "int8")
    assert set(f32.metrics) == {"runtime", "n_samples", *KEYS["binary"],
                                "agreement_with_reference", "latency_ms_median"}
    assert f32.metrics["agreement"] == 1.0 and f32.metrics["max_abs_error"] <= 1e-4
    assert f32.metrics["auc"] == pytest.approx(report.keras["auc"], abs=1e-6)
    # the int8 file, run here on its own: AUC and sign agreement as the report says
    got = _runner_outputs(_file(report, "tflite", "int8"), x[N_TRAIN:])[:, 0]
    assert int8.metrics["auc"] == pytest.approx(roc_auc_score(y, got))
    assert int8.metrics["agreement"] == pytest.approx(np.mean((got > 0) == (logits > 0)))
    assert int8.metrics["agreement"] >= 0.9
    assert abs(int8.metrics["auc"] - report.keras["auc"]) < 0.02
    markdown = report.to_markdown()
    assert "| accuracy | agreement | AUC | max abs err |" in markdown
    assert (_file(report, "tflite", "float32").parent / "labels.txt").read_text() == \
        "no\nyes\n"


# --- regression -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regression(x, ckpt):
    y = (3 * np.sin(x[:, 0]) + x[:, 1] ** 2).astype("float32")[:, None]
    model = _fit(_mlp(1, "reg_net"), x, y, "mse", epochs=60)
    report = export(model, ckpt / "regression", formats=("tflite",),
                    quantization=("float32", "int8"), representative_data=x[:N_TRAIN],
                    eval_data=(x[N_TRAIN:], y[N_TRAIN:]))
    return model, y[N_TRAIN:], report


def test_regression_float32_matches_keras_and_int8_error_is_dequantized(regression, x):
    from ai_edge_litert.interpreter import Interpreter

    model, y, report = regression
    assert report.ok, [a.error for a in report.failed]
    expected = model.predict(x[N_TRAIN:], verbose=0)
    assert report.keras["task"] == "regression"
    assert report.keras["mae"] == pytest.approx(np.mean(np.abs(expected - y)), rel=1e-5)
    assert report.keras["rmse"] == pytest.approx(np.sqrt(np.mean((expected - y) ** 2)),
                                                 rel=1e-5)
    f32, int8 = report.get("tflite", "float32").metrics, report.get("tflite", "int8")
    assert set(f32) >= set(KEYS["regression"]) and "accuracy" not in f32
    assert f32["mean_abs_error"] < 1e-4 and f32["max_abs_error"] < 1e-4
    assert f32["mae"] == pytest.approx(report.keras["mae"], abs=1e-5)
    # int8: the int8 output tensor dequantized by hand with its own scale and zero point
    interp = Interpreter(model_path=str(_file(report, "tflite", "int8")))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert out["dtype"] == np.int8
    (in_scale, in_zp), (out_scale, out_zp) = inp["quantization"], out["quantization"]
    assert int8.details["output_scale"] == pytest.approx(out_scale)
    by_hand = []
    for row in x[N_TRAIN:]:
        q = np.clip(np.round(row[None] / in_scale) + in_zp, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        by_hand.append((interp.get_tensor(out["index"]).astype(np.float32) - out_zp) * out_scale)
    error = np.abs(np.concatenate(by_hand) - expected)
    assert int8.metrics["max_abs_error"] == pytest.approx(error.max(), rel=1e-5)
    assert int8.metrics["mean_abs_error"] == pytest.approx(error.mean(), rel=1e-5)
    # measured: 0.095 on an output range of 9.6 (1 %, about 2 output steps of 0.04)
    value_range = float(expected.max() - expected.min())
    assert int8.metrics["max_abs_error"] < 0.03 * value_range
    assert int8.metrics["max_abs_error"] > out_scale / 4  # a real int8 error, not a float one
    assert "| MAE | RMSE | max abs err |" in report.to_markdown()


def test_evaluate_a_regression_artifact_with_its_kind(regression, x):
    model, y, report = regression
    path = _file(report, "tflite", "int8")
    r = verify.evaluate_artifact(path, x[N_TRAIN:], y, reference=model, kind="regression")
    metrics = report.get("tflite", "int8").metrics
    assert r["kind"] == "regression" and r["quantization"] == "int8"
    for key in KEYS["regression"]:
        assert r[key] == pytest.approx(metrics[key])
    table = verify.format_table([r])
    assert "MAE" in table and "RMSE" in table and "accuracy" not in table


# --- multi-label ----------------------------------------------------------------------------


def test_multilabel_scores_micro_f1_and_per_label_agreement(x, tmp_path):
    rng = np.random.default_rng(2)
    y = (x[:, :4] + 0.3 * rng.normal(size=(len(x), 4)) > 0.3).astype("float32")
    model = _fit(_mlp(4, "ml_net"), x, y, keras.losses.BinaryCrossentropy(from_logits=True))
    report = export(model, tmp_path, formats=("tflite",), quantization=("float32", "int8"),
                    representative_data=x[:N_TRAIN], eval_data=(x[N_TRAIN:], y[N_TRAIN:]))
    assert report.ok, [a.error for a in report.failed]
    assert report.keras["task"] == "multilabel"  # float multi-hot labels tell
    logits = model.predict(x[N_TRAIN:], verbose=0)
    assert report.keras["micro_f1"] == pytest.approx(
        f1_score(y[N_TRAIN:], logits > 0, average="micro"))
    f32, int8 = report.get("tflite", "float32").metrics, report.get("tflite", "int8").metrics
    assert f32["agreement"] == 1.0 and f32["micro_f1"] == pytest.approx(report.keras["micro_f1"])
    got = _runner_outputs(_file(report, "tflite", "int8"), x[N_TRAIN:])
    assert int8["agreement"] == pytest.approx(np.mean((got > 0) == (logits > 0)))  # per label
    assert int8["micro_f1"] == pytest.approx(f1_score(y[N_TRAIN:], got > 0, average="micro"))
    assert int8["agreement"] >= 0.95
    assert "| label agreement | micro-F1 | max abs err |" in report.to_markdown()


# --- a sequence tagger ----------------------------------------------------------------------


def test_sequence_tagger_is_scored_at_every_labelled_position(tmp_path):
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(400, 8, 3)).astype("float32")
    ys = np.argmax(xs @ rng.normal(size=(3, 4)), -1)
    ys[:, -2:] = -1  # padding: left out
    inputs = keras.Input((8, 3), name="tokens")
    h = layers.Conv1D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, layers.Conv1D(4, 1, name="tags")(h), name="tagger")
    model = _fit(model, xs, ys, keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1))
    x_eval, y_eval = xs[300:], ys[300:]
    report = export(model, tmp_path, formats=("tflite",), quantization=("float32", "int8"),
                    representative_data=xs[:300], eval_data=(x_eval, y_eval))
    assert report.ok, [a.error for a in report.failed]
    logits = model.predict(x_eval, verbose=0)
    labelled = y_eval != -1
    accuracy = np.mean(np.argmax(logits, -1)[labelled] == y_eval[labelled])
    assert report.keras["task"] == "multiclass" and report.keras["accuracy"] == accuracy
    f32, int8 = report.get("tflite", "float32").metrics, report.get("tflite", "int8").metrics
    assert f32["accuracy"] == pytest.approx(accuracy) and f32["agreement"] == 1.0
    got = _runner_outputs(_file(report, "tflite", "int8"), x_eval)
    assert got.shape == logits.shape == (100, 8, 4)
    # agreement is over every position (padding too: the artifact must reproduce Keras there)
    assert int8["agreement"] == pytest.approx(np.mean(np.argmax(got, -1) ==
                                                      np.argmax(logits, -1)))
    assert int8["agreement"] >= 0.95
    assert int8["accuracy"] == pytest.approx(np.mean(np.argmax(got, -1)[labelled] ==
                                                     y_eval[labelled]))


# --- two outputs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_heads(x, ckpt):
    rng = np.random.default_rng(4)
    y = {"cls": np.argmax(x @ rng.normal(size=(6, 3)), -1),
         "reg": (2 * x[:, 0] + np.sin(x[:, 1])).astype("float32")[:, None]}
    inputs = keras.Input((6,), name="features")
    h = layers.Dense(16, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, {"reg": layers.Dense(1, name="reg_head")(h),
                                 "cls": layers.Dense(3, name="cls_head")(h)}, name="two_heads")
    model = _fit(model, x, {k: v[:N_TRAIN] for k, v in y.items()},
                 {"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  "reg": "mse"}, epochs=40)
    x_eval = x[N_TRAIN:]
    y_eval = {k: v[N_TRAIN:] for k, v in y.items()}
    keras_outputs = model.predict(x_eval, verbose=0)
    teacher = {"cls": keras_outputs["cls"] + rng.normal(0, 0.5, (len(x_eval), 3)),
               "reg": keras_outputs["reg"] + 0.1}
    report = export(model, ckpt / "two", formats=("tflite", "onnx", "micro"),
                    quantization=("float32", "int8"), representative_data=x[:N_TRAIN],
                    eval_data=(x_eval, y_eval), reference_outputs=teacher,
                    labels={"cls": ["a", "b", "c"]})
    return model, y_eval, keras_outputs, teacher, report


def test_two_outputs_are_exported_named_and_verified_per_output(two_heads, x):
    _, y, expected, teacher, report = two_heads
    assert report.ok, [a.error for a in report.failed]
    assert [a.key for a in report.artifacts] == ["tflite/float32", "tflite/int8",
                                                 "onnx/float32", "onnx/int8", "micro/int8"]
    assert report.keras["task"] == {"cls": "multiclass", "reg": "regression"}
    assert report.keras["output_shape"] == {"cls": [None, 3], "reg": [None, 1]}
    assert report.keras["outputs"]["cls"]["accuracy"] > 0.9
    for a in report.artifacts:
        m = a.metrics
        assert set(m) == {"runtime", "n_samples", "max_abs_error", "mean_abs_error",
                          "outputs", "latency_ms_median"}, a.key
        assert set(m["outputs"]["cls"]) == {*KEYS["multiclass"], "agreement_with_reference"}
        assert set(m["outputs"]["reg"]) == {*KEYS["regression"], "agreement_with_reference",
                                            "mean_abs_error_with_reference"}
        assert m["max_abs_error"] == max(o["max_abs_error"] for o in m["outputs"].values())
        reg = m["outputs"]["reg"]
        assert reg["mean_abs_error_with_reference"] == pytest.approx(0.1, abs=0.05)
        assert reg["agreement_with_reference"] is None
        tolerance = 1e-4 if a.quantization == "float32" else 0.05 * np.ptp(expected["reg"])
        assert reg["max_abs_error"] < tolerance, a.key
        assert m["outputs"]["cls"]["agreement"] >= (1.0 if a.quantization == "float32"
                                                    else 0.9), a.key
    # each file run here: outputs by name, the reported scores recomputed from them
    for fmt, mode in (("tflite", "float32"), ("tflite", "int8"), ("onnx", "float32")):
        got = _runner_outputs(_file(report, fmt, mode), x[N_TRAIN:])
        assert sorted(got) == ["cls", "reg"]
        assert got["cls"].shape == (200, 3) and got["reg"].shape == (200, 1)
        per = report.get(fmt, mode).metrics["outputs"]
        assert per["cls"]["accuracy"] == pytest.approx(np.mean(np.argmax(got["cls"], -1) ==
                                                               y["cls"]))
        assert per["cls"]["agreement_with_reference"] == pytest.approx(
            np.mean(np.argmax(got["cls"], -1) == np.argmax(teacher["cls"], -1)))
        assert per["reg"]["mae"] == pytest.approx(np.mean(np.abs(got["reg"] - y["reg"])),
                                                  rel=1e-5)
        if mode == "float32":
            for name in ("cls", "reg"):
                assert np.abs(got[name] - expected[name]).max() <= 1e-4, (fmt, name)
    assert (_file(report, "tflite", "float32").parent / "labels_cls.txt").read_text() \
        == "a\nb\nc\n"
    assert report.labels_file == {"cls": "labels_cls.txt"}
    assert "| cls accuracy | cls agreement | cls max abs err | reg MAE | reg RMSE |" in \
        report.to_markdown()


def test_two_output_files_name_their_outputs(two_heads):
    from ai_edge_litert.interpreter import Interpreter

    *_, report = two_heads
    for mode in ("float32", "int8"):
        interp = Interpreter(model_path=str(_file(report, "tflite", mode)))
        assert interp.get_signature_list()["serving_default"]["outputs"] == ["cls", "reg"]
    import onnx

    for mode in ("float32", "int8"):
        graph = onnx.load(str(_file(report, "onnx", mode))).graph
        assert [o.name for o in graph.output] == ["cls", "reg"]
    int8 = report.get("tflite", "int8").details
    assert int8["output_names"] == ["cls", "reg"]
    assert int8["output_scales"]["cls"] != int8["output_scales"]["reg"]
    # the micro source: every output's index, scale and zero point by name
    micro = report.get("micro")
    header = (_file(report, "micro").parent / micro.files[0]).read_text()
    names = micro.details["output_names"]
    for i, name in enumerate(names):
        assert f"constexpr int two_heads_{name}_output_index = {i};" in header
        scale = micro.details["output_scales"][name]
        assert f"constexpr float two_heads_{name}_output_scale = {scale!r}f;" in header
    assert micro.metrics["outputs"]["cls"]["agreement"] >= 0.9
    assert micro.metrics["runtime"] == "tflite-micro"


def test_evaluate_folder_of_a_two_output_model(two_heads, x):
    model, y, *_, report = two_heads
    rows = verify.evaluate_folder(report.out_dir, x[N_TRAIN:], y, reference=model,
                                  kind={"cls": "multiclass", "reg": "regression"})
    assert [r["file"] for r in rows] == sorted(a.path for a in report.artifacts)
    by_file = {a.path: a.metrics for a in report.artifacts}
    for r in rows:
        assert "error" not in r, r
        for name in ("cls", "reg"):
            key = "accuracy" if name == "cls" else "mae"
            assert r["outputs"][name][key] == pytest.approx(
                by_file[r["file"]]["outputs"][name][key], rel=1e-5)
    table = verify.format_table(rows)
    assert "cls accuracy" in table and "reg MAE" in table


def test_list_outputs_are_named_after_their_layers(x, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((6,), name="features")
    h = layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, [layers.Dense(3, name="scores")(h),
                                 layers.Dense(1, name="value")(h)], name="listed")
    report = export(model, tmp_path, formats=("tflite", "onnx"), quantization=("float32",),
                    eval_data=(x[:50],), task={"scores": "multiclass", "value": "regression"})
    assert report.ok, [a.error for a in report.failed]
    interp = Interpreter(model_path=str(_file(report, "tflite", "float32")))
    assert interp.get_signature_list()["serving_default"]["outputs"] == ["scores", "value"]
    expected = model.predict(x[:50], verbose=0)
    for fmt in ("tflite", "onnx"):
        got = _runner_outputs(_file(report, fmt, "float32"), x[:50])
        np.testing.assert_allclose(got["scores"], expected[0], atol=1e-5)
        np.testing.assert_allclose(got["value"], expected[1], atol=1e-5)
        assert report.get(fmt, "float32").metrics["outputs"]["value"]["rms_error"] < 1e-5


# --- what export decides, and refuses -------------------------------------------------------


def test_a_linear_output_without_labels(x, tmp_path):
    """Several units: scored as multiclass, as every export did before output kinds. One unit
    (a binary logit or a regression value?): refused, naming task=."""
    report = export(_mlp(3, "three"), tmp_path / "three", formats=("tflite",),
                    quantization=("float32",), eval_data=(x[:20],))
    assert report.keras["task"] == "multiclass" and report.ok
    assert set(KEYS["multiclass"]) <= set(report.get("tflite").metrics)
    with pytest.raises(ValueError, match=r"export\(\.\.\., task=\.\.\.\)"):
        export(_mlp(1, "one"), tmp_path / "one", formats=("tflite",), quantization=("float32",))
    assert not (tmp_path / "one").exists()


@pytest.mark.parametrize("units, kwargs, error, match", [
    (1, {"eval_data": "binary 2"}, ValueError, "must be 0 or 1"),
    (1, {"task": "binary", "eval_data": "floats"}, ValueError, "must be 0 or 1"),
    (2, {"task": "regression", "eval_data": "floats"}, ValueError, r"shape \(20,\)"),
    (3, {"task": "binary"}, ValueError, "has 3 units"),
    (3, {"task": "multilabel", "eval_data": "binary 2"}, ValueError, r"shape \(20,\)"),
    (1, {"task": "regression", "labels": ["a", "b"]}, ValueError, "labels has 2 names"),
    (3, {"task": "sentiment"}, ValueError, "task must be one of"),
])
def test_labels_must_fit_the_output_kind(units, kwargs, error, match, x, tmp_path):
    kwargs = dict(kwargs)
    labels = {"binary 2": np.arange(20) % 3, "floats": np.linspace(0, 1, 20)}
    if "eval_data" in kwargs:
        kwargs["eval_data"] = (x[:20], labels[kwargs["eval_data"]])
    with pytest.raises(error, match=match):
        export(_mlp(units, "m"), tmp_path / "out", formats=("tflite",),
               quantization=("float32",), **kwargs)
    assert not (tmp_path / "out").exists()


def test_two_output_labels_are_a_dict_by_name(two_heads, x, tmp_path):
    model, y, *_ = two_heads
    with pytest.raises(TypeError, match="dict by output name"):
        export(model, tmp_path / "out", formats=("tflite",), quantization=("float32",),
               eval_data=(x[:20], y["cls"][:20]))
    with pytest.raises(ValueError, match=r"outputs \['score'\]"):
        export(model, tmp_path / "out", formats=("tflite",), quantization=("float32",),
               eval_data=(x[:20], {"score": y["cls"][:20]}))
