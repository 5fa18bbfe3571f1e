"""keras_distill.pipeline.run with its optional stages (pruning, QAT, ensembles, cached teacher
outputs, a student shrunk from the teacher), interruptions and --resume, reproducibility.

Each test is a few tiny end-to-end runs (2-4 epochs, TFLite and micro only): slow-marked."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from keras_distill import config, pipeline

pytestmark = pytest.mark.slow


def cfg_of(out_dir, **overrides):
    values = {"epochs": "3", "teacher.epochs": "2", "formats": "tflite",
              "quantization": "float32,int8", "calibration_samples": "50",
              "out_dir": str(out_dir), "quiet": True}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return config.load(None, values)


def quiet(_message):
    pass


def weights_of(path):
    import keras

    return keras.saving.load_model(path).get_weights()


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def listing(folder):
    return sorted(os.listdir(folder))


# --- prune + QAT ----------------------------------------------------------------------------


def test_pruned_and_quantization_aware_students_side_by_side(tmp_path, monkeypatch):
    fits = []
    fit = pipeline._fit

    def spy(model, data, cfg, *, stage, **kwargs):
        out = fit(model, data, cfg, stage=stage, **kwargs)
        fits.append((stage, out[1], [type(c).__name__ for c in kwargs.get("callbacks", ())]))
        return out

    monkeypatch.setattr(pipeline, "_fit", spy)
    cfg = cfg_of(tmp_path, prune="0.5", qat=True, qat_epochs="1",
                 formats="tflite,onnx,micro", quantization="int8")
    result = pipeline.run(cfg, log=quiet)
    m = result.manifest
    assert result.ok, result.errors
    assert [(s, n) for s, n, _ in fits] == [("teacher", 2), ("student_baseline", 3),
                                           ("student_distilled", 3), ("student_qat", 1)]
    assert fits[3][2] == ["PruningCallback"]  # QAT keeps the zeros (keep_sparsity)

    # both students pruned (fair comparison), the QAT student keeps the zeros: 50% per kernel
    from keras_distill.presets import student_cnn

    sizes = {layer.name: int(np.prod(layer.kernel.shape)) for layer in student_cnn().layers
             if hasattr(layer, "kernel")}
    expected = {name: round(0.5 * n) / n for name, n in sizes.items()}
    for name in ("student_baseline", "student_distilled", "student_qat"):
        sparsity = m["pruning"]["sparsity"][name]
        assert sparsity["layers"] == pytest.approx(expected, abs=1e-6), name
        assert m["models"][name]["sparsity"] == sparsity
        model = pipeline.load_model(tmp_path / m["models"][name]["path"])
        zeros = sum(int(np.sum(layer.get_weights()[0] == 0)) for layer in model.layers
                    if layer.name in sizes)
        assert zeros == sum(round(0.5 * n) for n in sizes.values()), name
    assert m["pruning"]["target_sparsity"] == 0.5

    arts = {a["file"]: a for a in m["artifacts"]}
    assert set(arts) == {"student_int8.tflite", "student_float32.onnx",
                         "student_int8.onnx", "student_model_data.cc",
                         "student_qat_int8.tflite", "student_qat_model_data.cc"}
    assert not [f for f in listing(tmp_path) if f.startswith("student_qat") and
                f.endswith(".onnx")]
    assert any("No ONNX for the QAT student" in n for n in m["notes"])
    chosen = m["selected"]["student"]
    for name, a in arts.items():
        assert a["status"] == "ok" and a["verified"], name
        assert a["qat"] is name.startswith("student_qat")
        assert a["source_model"] == ("student_qat" if a["qat"] else chosen)
        # zeros compress: every model file gzips to well under its size
        assert 0 < a["gzip_size_bytes"] < 0.8 * a["size_bytes"], name
    for name in ("student_int8.tflite", "student_qat_int8.tflite", "student_model_data.cc",
                 "student_qat_model_data.cc"):
        a = arts[name]
        assert a["quantization"] == "int8" and a["input_dtype"] == "int8"
        assert a["inputs"][0]["dtype"] == a["outputs"][0]["dtype"] == "int8"
        assert 0 < a["input_scale"] < 1 and -128 <= a["input_zero_point"] <= 127
    # QAT int8 needs no calibration data: its scales come from training
    assert m["qat"]["export"]["settings"]["quantize_aware"] is True
    assert m["qat"]["export"]["settings"]["calibration_samples"] is None
    assert m["qat"] == {**m["qat"], "model": "student_qat", "from": chosen, "epochs": 1,
                        "learning_rate": pytest.approx(3e-4)}
    qat_model = pipeline.load_model(tmp_path / "student_qat.keras")
    from keras_distill import quantize

    assert quantize.is_quantize_aware(qat_model)
    # what a microcontroller build needs
    micro = arts["student_qat_model_data.cc"]
    assert micro["ops"] == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE"]
    assert micro["micro_op_resolver"] == ["AddConv2D", "AddFullyConnected", "AddMaxPool2D",
                                          "AddReshape"]
    assert micro["arena_size"] > 0 and micro["inputs"][0]["shape"] == [1, 8, 8, 1]
    header = (tmp_path / "student_qat_model_data.h").read_text()
    assert f"student_qat_tensor_arena_size = {micro['arena_size']};" in header
    assert arts["student_int8.tflite"]["signatures"] == {
        "serving_default": {"inputs": ["image"], "outputs": ["output_0"]}}

    # the table: a gzip column, PTQ and QAT int8 rows side by side
    table = result.table().splitlines()
    assert "gzip KiB" in table[0]
    rows = {r.name: r for r in result.rows}
    assert rows["student_int8.tflite"].quantization == "int8"
    assert rows["student_qat_int8.tflite"].quantization == "int8 QAT"
    assert rows["student_qat"].runtime == "keras"
    assert rows["student_qat_int8.tflite"].gzip_bytes == arts["student_qat_int8.tflite"][
        "gzip_size_bytes"]
    from keras_distill import report

    labels = [report._short_label(r) for r in result.rows]
    assert "tflite int8" in labels and "tflite int8 QAT" in labels
    text = (tmp_path / "report.md").read_text()
    assert "## Pruning" in text and "## Quantization-aware training" in text
    assert set(m["files"]) == set(listing(tmp_path))


# --- ensemble of teachers, cached teacher outputs, a student shrunk from the teacher -------


def test_ensemble_cached_outputs_and_a_shrunk_student(tmp_path, monkeypatch):
    import keras

    from keras_distill import students
    from keras_distill.presets import teacher_cnn

    keras.utils.set_random_seed(3)
    teacher_cnn((8, 8, 1), 10, width=8, name="mine").save(tmp_path / "mine.keras")
    mine = hashlib.sha256((tmp_path / "mine.keras").read_bytes()).hexdigest()
    starts = {}
    fit = pipeline._fit

    def spy(model, data, cfg, *, stage, **kwargs):
        student = getattr(model, "student", model)
        starts[stage] = student.get_weights()
        return fit(model, data, cfg, stage=stage, **kwargs)

    monkeypatch.setattr(pipeline, "_fit", spy)
    (tmp_path / "run.toml").write_text("""
epochs = 2
cache_teacher = true
formats = []
out_dir = "out"
quiet = true
[teacher]
models = ["teacher_cnn", "mine.keras"]
weights = [3, 1]
epochs = 1
preset_args = {width = 8}
[student]
from_teacher = {width = 0.5, transfer = "first"}
""")
    cfg = config.load(str(tmp_path / "run.toml"))
    result = pipeline.run(cfg, log=quiet)
    out, m = tmp_path / "out", result.manifest
    assert result.ok
    assert {"teacher_1.keras", "teacher_2.keras", "teacher.keras"} <= set(listing(out))
    # the input file is trained further as a copy in out/, and is never overwritten
    assert hashlib.sha256((tmp_path / "mine.keras").read_bytes()).hexdigest() == mine
    assert [r.name for r in result.rows[:3]] == ["teacher_1", "teacher_2", "teacher"]
    assert m["teacher"] == {"ensemble": ["teacher_1", "teacher_2"], "average": "probabilities",
                            "weights": [0.75, 0.25]}
    # teacher.keras is the ensemble: the weighted mean of the members' probabilities
    from keras_distill.data import load_digits

    x = load_digits(seed=0).x_test
    ensemble = pipeline.load_model(out / "teacher.keras")
    t1, t2 = (pipeline.load_model(out / f"teacher_{i}.keras") for i in (1, 2))
    expected = 0.75 * keras.ops.softmax(t1.predict(x, verbose=0)) + \
        0.25 * keras.ops.softmax(t2.predict(x, verbose=0))
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-5)
    pipeline._check_fits_data(ensemble, load_digits(seed=0), "reference model")  # `evaluate`
    assert m["models"]["teacher"]["params"] == t1.count_params() + t2.count_params()
    # teacher outputs computed once, stored under the cache folder
    cached = [f for f in listing(out / "cache") if f.endswith(".npy")]
    assert len(cached) == 1
    assert np.load(out / "cache" / cached[0]).shape == (m["data"]["n_train"], 10)
    # the student is teacher_1 shrunk to half width, initialized with its first filters; the
    # baseline starts from exactly the same architecture and weights as the distilled student
    shrunk = students.shrink(t1, 0.5)
    assert m["models"]["student_distilled"]["params"] == shrunk.count_params() == \
        m["models"]["student_baseline"]["params"]
    assert same_weights(starts["student_baseline"], starts["student_distilled"])
    student = pipeline.load_model(out / "student_distilled.keras")
    names = [w.path for w in student.weights]
    conv1 = starts["student_distilled"][names.index("conv1/kernel")]
    np.testing.assert_array_equal(conv1, t1.get_layer("conv1").get_weights()[0][..., :4])
    transfer = m["student"]["from_teacher"]
    assert transfer["width"] == 0.5 and transfer["transfer"] == "first"
    assert "conv1" in transfer["sliced"] and transfer["skipped"] == []
    assert "## Teacher" in (out / "report.md").read_text()


# --- interruptions, --resume and reproducibility ---------------------------------------------


def interrupting(monkeypatch, stage, epoch):
    """Make ``pipeline._fit`` of ``stage`` raise KeyboardInterrupt after ``epoch`` epochs."""
    import keras

    fit = pipeline._fit

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            if e + 1 == epoch:
                raise KeyboardInterrupt

    def patched(model, data, cfg, *, stage, callbacks=(), **kwargs):
        if stage == target:
            callbacks = [*callbacks, Stop()]
        return fit(model, data, cfg, stage=stage, callbacks=callbacks, **kwargs)

    target = stage
    monkeypatch.setattr(pipeline, "_fit", patched)
    return fit


def numbers(manifest):
    """What must be reproducible: accuracies, agreements, sizes (not latencies)."""
    models = {k: (v["test_accuracy"], v["val_accuracy"], v["agreement_with_teacher"],
                  v["params"]) for k, v in manifest["models"].items()}
    arts = {a["file"]: (a["test_accuracy"], a["agreement_with_teacher"], a["size_bytes"],
                        a["gzip_size_bytes"], a["max_abs_error_vs_keras"])
            for a in manifest["artifacts"]}
    return models, arts, manifest["selected"]


def test_resume_and_reproducibility(tmp_path, monkeypatch):
    from keras_distill.export import tflite

    monkeypatch.setattr(pipeline, "CHECKPOINT_SECONDS", 0.0)  # save every epoch
    settings = {"epochs": "3", "prune": "0.5"}
    a = pipeline.run(cfg_of(tmp_path / "a", **settings), log=quiet)
    # reproducible: a second run with the same seed gives the same weights and numbers (its
    # artifacts are compared below, with those of the resumed run)
    c = pipeline.run(cfg_of(tmp_path / "c", **settings, formats=""), log=quiet)
    for file in ("teacher.keras", "student_baseline.keras", "student_distilled.keras"):
        assert same_weights(weights_of(tmp_path / "a" / file), weights_of(tmp_path / "c" / file))
    assert numbers(a.manifest)[0] == numbers(c.manifest)[0]
    assert numbers(a.manifest)[2] == numbers(c.manifest)[2]

    # interrupted after 2 of the 3 epochs of distillation: teacher and baseline are finished
    out = tmp_path / "b"
    fit = interrupting(monkeypatch, "student_distilled", 2)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg_of(out, **settings), log=lines.append)
    assert listing(out) == [".backup", "student_baseline.keras", "teacher.keras"]
    state = json.loads((out / ".backup" / "state.json").read_text())
    assert state["done"] == {"teacher": "teacher.keras",
                             "student_baseline": "student_baseline.keras"}
    meta = json.loads((out / ".backup" / "student_distilled" / "training_metadata.json")
                      .read_text())
    assert meta["epoch"] == 2
    monkeypatch.setattr(pipeline, "_fit", fit)

    # another configuration is refused, naming the difference; the backup is kept
    with pytest.raises(ValueError, match=r"--resume: the interrupted run in .* had another "
                                         r"configuration \(epochs = 3 then, 4 now\)"):
        pipeline.run(cfg_of(out, **{**settings, "epochs": "4"}), log=quiet, resume=True)
    assert (out / ".backup" / "state.json").exists()

    # an earlier run's manifest is there; the resumed run is interrupted during export
    shutil.copy(tmp_path / "a" / "manifest.json", out / "manifest.json")
    convert = tflite.convert

    def interrupted_int8(saved_model, mode, **kwargs):
        if mode == "int8":
            raise KeyboardInterrupt
        return convert(saved_model, mode, **kwargs)

    monkeypatch.setattr(tflite, "convert", interrupted_int8)
    fits = []

    def spy(model, data, cfg, *, stage, **kwargs):
        out = fit(model, data, cfg, stage=stage, **kwargs)
        fits.append((stage, out[1]))
        return out

    monkeypatch.setattr(pipeline, "_fit", spy)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg_of(out, **settings), log=lines.append, resume=True)
    assert "Resuming the interrupted run in " + str(out) + ": reusing teacher, " \
           "student_baseline." in lines
    assert "  resuming student_distilled after epoch 2 of 3 (from .backup/student_distilled)." \
        in lines
    assert fits == [("student_distilled", 1)]  # 2 epochs before the interruption, 1 after
    # no manifest describes files that are not there, no half-written file is left
    assert "manifest.json" not in listing(out) and "report.md" not in listing(out)
    assert "student_float32.tflite" in listing(out)
    assert not [f for f in listing(out) if f.endswith(".tmp")]
    monkeypatch.setattr(tflite, "convert", convert)
    monkeypatch.setattr(pipeline, "_fit", fit)

    b = pipeline.run(cfg_of(out, **settings), log=quiet, resume=True)
    assert not (out / ".backup").exists()
    models = b.manifest["models"]
    assert b.manifest["resumed"] is True
    assert models["teacher"]["resumed"] == models["student_baseline"]["resumed"] == \
        models["student_distilled"]["resumed"] == "reused"
    # the resumed run equals the uninterrupted one (the shuffling is seeded per epoch, and the
    # pruning masks are restored from the weights' zeros)
    for file in ("teacher.keras", "student_baseline.keras", "student_distilled.keras"):
        assert same_weights(weights_of(tmp_path / "a" / file), weights_of(out / file)), file
    assert numbers(b.manifest) == numbers(a.manifest)
    for art in a.manifest["artifacts"]:  # the same bytes
        digest = hashlib.sha256((out / art["file"]).read_bytes()).hexdigest()
        assert digest == art["sha256"], art["file"]
    assert set(b.manifest["files"]) == set(listing(out))
    assert "## Resumed" in (out / "report.md").read_text()

    # nothing left to resume
    with pytest.raises(ValueError, match="there is no interrupted run to resume in"):
        pipeline.run(cfg_of(out, **settings), log=quiet, resume=True)
