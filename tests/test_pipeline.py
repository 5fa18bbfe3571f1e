"""keras_distill.pipeline.run with its optional stages (pruning, QAT, ensembles, cached teacher
outputs, a student shrunk from the teacher), interruptions and --resume, reproducibility.

Each fixture is one tiny end-to-end run (2-4 epochs), shared by the tests that each check one
of its promises; the stages are observed through the public ``on_stage`` hook. Slow-marked."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from helpers import listing, same_weights

from keras_distill import config, pipeline

pytestmark = pytest.mark.slow


def cfg_of(out_dir, **overrides):
    # a teacher of 2 epochs may be below the student trained alone: allowed (speed)
    values = {"epochs": "3", "teacher.epochs": "2", "teacher.allow_weak": True,
              "formats": "tflite",
              "quantization": "float32,int8", "calibration_samples": "50",
              "out_dir": str(out_dir), "quiet": True}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return config.load(None, values)


def quiet(_message):
    pass


def weights_of(path):
    import keras

    return keras.saving.load_model(path).get_weights()


class Recorder:
    """An ``on_stage`` hook: records each stage; ``stop_at={stage: epoch}`` interrupts that
    stage's fit (KeyboardInterrupt) once it has run ``epoch`` epochs."""

    def __init__(self, stop_at=None):
        self.stages, self.initial_weights, self.stop_at = [], {}, stop_at or {}

    def __call__(self, stage):
        import keras

        self.stages.append(stage)
        self.initial_weights[stage.name] = getattr(stage.model, "student",
                                                   stage.model).get_weights()
        if stage.name in self.stop_at:
            epoch = self.stop_at[stage.name]

            class Stop(keras.callbacks.Callback):
                def on_epoch_end(self, e, logs=None):
                    if e + 1 == epoch:
                        raise KeyboardInterrupt

            stage.callbacks.append(Stop())

    def fits(self):
        return [(s.name, s.epochs_run) for s in self.stages]


# --- prune + QAT ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned_qat(tmp_path_factory):
    """A run with pruning and QAT, every format, int8 only; the runtimes' runs counted."""
    from keras_distill import verify

    out = tmp_path_factory.mktemp("pruned_qat")
    recorder = Recorder()
    runs = []
    make_runner = verify.make_runner

    def counting(model_bytes, fmt, **kwargs):
        runs.append(fmt)
        return make_runner(model_bytes, fmt, **kwargs)

    verify.make_runner = counting
    os.environ["KERAS_DISTILL_ISOLATE"] = "0"  # the counting runner lives in this process
    try:
        cfg = cfg_of(out, prune="0.5", qat=True, qat_epochs="1", formats="tflite,onnx,micro",
                     quantization="int8")
        result = pipeline.run(cfg, log=quiet, on_stage=recorder)
    finally:
        verify.make_runner = make_runner
        os.environ.pop("KERAS_DISTILL_ISOLATE", None)
    return result, out, recorder, runs


def test_every_stage_fits_once_and_qat_keeps_the_zeros(pruned_qat):
    result, _, recorder, _ = pruned_qat
    assert result.ok, result.errors
    assert recorder.fits() == [("teacher", 2), ("student_baseline", 3),
                               ("student_distilled", 3), ("student_qat", 1)]
    callbacks = {s.name: [type(c).__name__ for c in s.callbacks] for s in recorder.stages}
    assert "PruningCallback" in callbacks["student_qat"]  # QAT keeps the zeros
    assert "EpochBackup" in callbacks["student_distilled"]


def test_both_students_and_the_qat_student_are_pruned_to_the_target(pruned_qat):
    from keras_distill.presets import student_cnn

    result, out, _, _ = pruned_qat
    m = result.manifest
    sizes = {layer.name: int(np.prod(layer.kernel.shape)) for layer in student_cnn().layers
             if hasattr(layer, "kernel")}
    expected = {name: round(0.5 * n) / n for name, n in sizes.items()}
    for name in ("student_baseline", "student_distilled", "student_qat"):
        sparsity = m["pruning"]["sparsity"][name]
        assert sparsity["layers"] == pytest.approx(expected, abs=1e-6), name
        assert m["models"][name]["sparsity"] == sparsity
        model = pipeline.load_model(out / m["models"][name]["path"])
        zeros = sum(int(np.sum(layer.get_weights()[0] == 0)) for layer in model.layers
                    if layer.name in sizes)
        assert zeros == sum(round(0.5 * n) for n in sizes.values()), name
    assert m["pruning"]["target_sparsity"] == 0.5


def test_one_export_holds_the_ptq_and_qat_artifacts(pruned_qat):
    result, out, _, _ = pruned_qat
    m = result.manifest
    arts = {a["file"]: a for a in m["artifacts"]}
    assert set(arts) == {"student_int8.tflite", "student_float32.onnx",
                         "student_int8.onnx", "student_model_data.cc",
                         "student_qat_int8.tflite", "student_qat_model_data.cc"}
    assert not [f for f in listing(out) if f.startswith("student_qat") and f.endswith(".onnx")]
    assert any("No ONNX for the QAT model" in n for n in m["notes"])
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
    assert m["qat"] == {"model": "student_qat", "from": chosen, "epochs": 1,
                        "learning_rate": pytest.approx(3e-4)}


def test_qat_int8_needs_no_calibration_data(pruned_qat):
    from keras_distill import compress

    result, out, _, _ = pruned_qat
    m = result.manifest
    assert m["export"]["settings"]["qat_model"] == "student_qat"
    assert m["export"]["settings"]["calibration_samples"] == 50  # the PTQ artifacts'
    assert any("take their scales from the ranges learned in training" in n
               for n in m["notes"])
    assert compress.is_quantize_aware(pipeline.load_model(out / "student_qat.keras"))


def test_each_artifact_is_verified_exactly_once(pruned_qat):
    result, _, _, runs = pruned_qat
    assert sorted(runs) == sorted(a["format"] for a in result.manifest["artifacts"])
    assert len(runs) == 6


def test_micro_records_what_a_microcontroller_build_needs(pruned_qat):
    result, out, _, _ = pruned_qat
    arts = {a["file"]: a for a in result.manifest["artifacts"]}
    micro = arts["student_qat_model_data.cc"]
    assert micro["ops"] == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE"]
    assert micro["micro_op_resolver"] == ["AddConv2D", "AddFullyConnected", "AddMaxPool2D",
                                          "AddReshape"]
    assert micro["arena_size"] > 0 and micro["inputs"][0]["shape"] == [1, 8, 8, 1]
    header = (out / "student_qat_model_data.h").read_text()
    assert f"student_qat_tensor_arena_size = {micro['arena_size']};" in header
    assert arts["student_int8.tflite"]["signatures"] == {
        "serving_default": {"inputs": ["image"], "outputs": ["output_0"]}}


def test_table_shows_gzip_and_ptq_and_qat_rows_side_by_side(pruned_qat):
    from keras_distill import report

    result, _, _, _ = pruned_qat
    arts = {a["file"]: a for a in result.manifest["artifacts"]}
    assert "gzip KiB" in result.table().splitlines()[0]
    rows = {r.name: r for r in result.rows}
    assert rows["student_int8.tflite"].quantization == "int8"
    assert rows["student_qat_int8.tflite"].quantization == "int8 QAT"
    assert rows["student_qat"].runtime == "keras"
    assert rows["student_qat_int8.tflite"].gzip_bytes == arts["student_qat_int8.tflite"][
        "gzip_size_bytes"]
    assert [r.name for r in result.rows[:4]] == ["teacher", "student_baseline",
                                                 "student_distilled", "student_qat"]
    labels = [report._short_label(r) for r in result.rows]
    assert "tflite int8" in labels and "tflite int8 QAT" in labels


def test_reports_list_every_file_and_nothing_else(pruned_qat):
    result, out, _, _ = pruned_qat
    text = (out / "report.md").read_text()
    assert "## Pruning" in text and "## Quantization-aware training" in text
    assert set(result.manifest["files"]) == set(listing(out))


# --- ensemble of teachers, cached teacher outputs, a student shrunk from the teacher -------


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    import keras

    from keras_distill.presets import teacher_cnn

    root = tmp_path_factory.mktemp("ensemble")
    keras.utils.set_random_seed(3)
    teacher_cnn((8, 8, 1), 10, width=8, name="mine").save(root / "mine.keras")
    digest = hashlib.sha256((root / "mine.keras").read_bytes()).hexdigest()
    (root / "run.toml").write_text("""
epochs = 2
cache_teacher = true
formats = []
out_dir = "out"
quiet = true
[teacher]
models = ["teacher_cnn", "mine.keras"]
weights = [3, 1]
epochs = 1
allow_weak = true  # one epoch: a weak teacher, allowed (speed)
preset_args = {width = 8}
[student]
from_teacher = {width = 0.5, transfer = "first"}
""")
    recorder = Recorder()
    result = pipeline.run(config.load(str(root / "run.toml")), log=quiet, on_stage=recorder)
    return result, root, digest, recorder


def test_ensemble_members_are_trained_as_copies(ensemble_run):
    result, root, digest, _ = ensemble_run
    out = root / "out"
    assert result.ok
    assert {"teacher_1.keras", "teacher_2.keras", "teacher.keras"} <= set(listing(out))
    # the input file is trained further as a copy in out/, and is never overwritten
    assert hashlib.sha256((root / "mine.keras").read_bytes()).hexdigest() == digest
    assert [r.name for r in result.rows[:3]] == ["teacher_1", "teacher_2", "teacher"]
    assert result.manifest["teacher"] == {"ensemble": ["teacher_1", "teacher_2"],
                                          "average": "probabilities", "weights": [0.75, 0.25]}
    assert "## Teacher" in (out / "report.md").read_text()


def test_ensemble_file_is_the_weighted_mean_of_the_members(ensemble_run, digits):
    import keras

    result, root, _, _ = ensemble_run
    out = root / "out"
    ensemble = pipeline.load_model(out / "teacher.keras")
    t1, t2 = (pipeline.load_model(out / f"teacher_{i}.keras") for i in (1, 2))
    x = digits.x_test
    expected = 0.75 * keras.ops.softmax(t1.predict(x, verbose=0)) + \
        0.25 * keras.ops.softmax(t2.predict(x, verbose=0))
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-5)
    pipeline.check_fits_data(ensemble, digits, "reference model")  # what `evaluate` checks
    assert result.manifest["models"]["teacher"]["params"] == \
        t1.count_params() + t2.count_params()


def test_teacher_outputs_are_computed_once_into_the_cache(ensemble_run):
    result, root, _, _ = ensemble_run
    out = root / "out"
    cached = [f for f in listing(out / "cache") if f.endswith(".npy")]
    assert len(cached) == 1
    assert np.load(out / "cache" / cached[0]).shape == (result.manifest["data"]["n_train"], 10)


def test_shrunk_student_starts_from_the_teacher_and_equally_for_both(ensemble_run):
    from keras_distill import students

    result, root, _, recorder = ensemble_run
    out, m = root / "out", result.manifest
    t1 = pipeline.load_model(out / "teacher_1.keras")
    shrunk = students.shrink(t1, 0.5)
    assert m["models"]["student_distilled"]["params"] == shrunk.count_params() == \
        m["models"]["student_baseline"]["params"]
    starts = recorder.initial_weights
    assert same_weights(starts["student_baseline"], starts["student_distilled"])
    student = pipeline.load_model(out / "student_distilled.keras")
    names = [w.path for w in student.weights]
    conv1 = starts["student_distilled"][names.index("conv1/kernel")]
    np.testing.assert_array_equal(conv1, t1.get_layer("conv1").get_weights()[0][..., :4])
    transfer = m["student"]["from_teacher"]
    assert transfer["width"] == 0.5 and transfer["transfer"] == "first"
    assert "conv1" in transfer["sliced"] and transfer["skipped"] == []


# --- interruptions, --resume and reproducibility ---------------------------------------------


def numbers(manifest):
    """What must be reproducible: accuracies, agreements, sizes (not latencies)."""
    models = {k: (v["test_accuracy"], v["val_accuracy"], v["agreement_with_teacher"],
                  v["params"]) for k, v in manifest["models"].items()}
    arts = {a["file"]: (a["test_accuracy"], a["agreement_with_teacher"], a["size_bytes"],
                        a["gzip_size_bytes"], a["max_abs_error_vs_keras"])
            for a in manifest["artifacts"]}
    return models, arts, manifest["selected"]


SETTINGS = {"epochs": "3", "prune": "0.5"}
MODEL_FILES = ("teacher.keras", "student_baseline.keras", "student_distilled.keras")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return pipeline.run(cfg_of(out, **SETTINGS), log=quiet), out


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run interrupted after 2 of the 3 epochs of distillation."""
    out = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg_of(out, **SETTINGS), log=quiet,
                     on_stage=Recorder(stop_at={"student_distilled": 2}))
    return out


def test_an_interruption_keeps_the_finished_models_and_the_last_epoch(interrupted):
    out = interrupted
    assert listing(out) == [".backup", "student_baseline.keras", "teacher.keras"]
    state = json.loads((out / ".backup" / "state.json").read_text())
    assert state["done"] == {"teacher": "teacher.keras",
                             "student_baseline": "student_baseline.keras"}
    meta = json.loads((out / ".backup" / "student_distilled" / "training_metadata.json")
                      .read_text())
    assert meta["epoch"] == 2


def test_same_seed_gives_the_same_weights(uninterrupted, interrupted):
    """A second run with the same seed (the interrupted one, up to its interruption) trains
    bit-identical models; the resumed run's numbers equal the first run's (below)."""
    _, a_dir = uninterrupted
    for file in ("teacher.keras", "student_baseline.keras"):
        assert same_weights(weights_of(a_dir / file), weights_of(interrupted / file)), file


def test_resume_with_another_configuration_is_refused(interrupted):
    with pytest.raises(ValueError, match=r"--resume: the interrupted run in .* had another "
                                         r"configuration \(epochs = 3 then, 4 now\)"):
        pipeline.run(cfg_of(interrupted, **{**SETTINGS, "epochs": "4"}), log=quiet,
                     resume=True)
    assert (interrupted / ".backup" / "state.json").exists()


@pytest.fixture(scope="module")
def resumed(interrupted, uninterrupted):
    """The interrupted run resumed, interrupted again during export, then resumed to the end."""
    from keras_distill.export import tflite

    out = interrupted
    shutil.copy(uninterrupted[1] / "manifest.json", out / "manifest.json")  # an earlier run's
    convert = tflite.convert

    def interrupted_int8(saved_model, mode, **kwargs):
        if mode == "int8":
            raise KeyboardInterrupt
        return convert(saved_model, mode, **kwargs)

    tflite.convert = interrupted_int8
    os.environ["KERAS_DISTILL_ISOLATE"] = "0"  # the patched converter lives in this process
    lines, recorder = [], Recorder()
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline.run(cfg_of(out, **SETTINGS), log=lines.append, resume=True,
                         on_stage=recorder)
    finally:
        tflite.convert = convert
        os.environ.pop("KERAS_DISTILL_ISOLATE", None)
    during_export = listing(out)
    result = pipeline.run(cfg_of(out, **SETTINGS), log=quiet, resume=True)
    return result, out, lines, recorder, during_export


def test_resume_continues_after_the_last_completed_epoch(resumed):
    _, out, lines, recorder, _ = resumed
    assert "Resuming the interrupted run in " + str(out) + ": reusing teacher, " \
           "student_baseline." in lines
    assert "  resuming student_distilled after epoch 2 of 3 (from .backup/student_distilled)." \
        in lines
    assert recorder.fits() == [("student_distilled", 1)]  # 2 epochs before, 1 after


def test_an_interrupted_export_leaves_no_manifest_and_no_partial_file(resumed):
    during_export = resumed[4]
    assert "manifest.json" not in during_export and "report.md" not in during_export
    assert "student_float32.tflite" in during_export
    assert not [f for f in during_export if f.endswith(".tmp")]


def test_a_resumed_run_equals_the_uninterrupted_one(resumed, uninterrupted):
    b, out, _, _, _ = resumed
    a, a_dir = uninterrupted
    assert not (out / ".backup").exists()
    models = b.manifest["models"]
    assert b.manifest["resumed"] is True
    assert models["teacher"]["resumed"] == models["student_baseline"]["resumed"] == \
        models["student_distilled"]["resumed"] == "reused"
    # the shuffling is seeded per epoch, and the pruning masks are restored from the zeros
    for file in MODEL_FILES:
        assert same_weights(weights_of(a_dir / file), weights_of(out / file)), file
    assert numbers(b.manifest) == numbers(a.manifest)
    for art in a.manifest["artifacts"]:  # the same bytes
        digest = hashlib.sha256((out / art["file"]).read_bytes()).hexdigest()
        assert digest == art["sha256"], art["file"]
    assert set(b.manifest["files"]) == set(listing(out))
    assert "## Resumed" in (out / "report.md").read_text()


def test_nothing_is_left_to_resume_after_a_finished_run(resumed):
    with pytest.raises(ValueError, match="there is no interrupted run to resume in"):
        pipeline.run(cfg_of(resumed[1], **SETTINGS), log=quiet, resume=True)
