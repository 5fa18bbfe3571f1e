"""The keras-distill command: fast help, exit codes, one-line errors, and the jobs end to end
on tiny settings."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tomllib

from keras_distill import cli, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- parsing: fast, no TensorFlow ---------------------------------------------------------


def test_help_of_every_command_imports_no_tensorflow():
    code = """
import contextlib, io, json, sys
from keras_distill import cli
result = {}
for argv in (["--help"], ["run", "--help"], ["distill", "--help"], ["export", "--help"],
             ["evaluate", "--help"], ["--version"]):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(argv)
    result[" ".join(argv)] = [code, buffer.getvalue()]
result["heavy"] = sorted(m for m in sys.modules
                         if m.split(".")[0] in ("tensorflow", "keras", "numpy", "matplotlib"))
print(json.dumps(result))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    result = json.loads(out.stdout)
    assert result.pop("heavy") == []
    assert result.pop("--version") == [0, "keras-distill 0.1.0\n"]
    assert all(code == 0 for code, _ in result.values())
    for command in ("run", "distill", "export", "evaluate"):
        text = result[f"{command} --help"][1]
        flags = [k.flag for k in config.SCHEMA.values()
                 if command in k.commands and k.kind != "table"]
        missing = [f for f in flags if f not in text]
        assert not missing, (command, missing)
    assert "--print-config" in result["run --help"][1] and "--resume" in result["run --help"][1]
    for command in ("run", "distill", "export", "evaluate"):
        assert "--allow-unsafe" in result[f"{command} --help"][1]
    assert "ARTIFACT_OR_FOLDER" in result["evaluate --help"][1]


def test_console_script_is_declared():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["keras-distill"] == "keras_distill.cli:main"


def test_no_command_and_unknown_flag_are_usage_errors(capsys):
    code, _, err = main([], capsys)
    assert code == 2 and "choose a command" in err
    code, _, err = main(["run", "--epoch", "3"], capsys)
    assert code == 2 and "unrecognized arguments: --epoch" in err


def test_bad_flag_value_is_a_one_line_usage_error(capsys):
    code, out, err = main(["run", "--alpha", "1.5"], capsys)
    assert code == 2 and out == ""
    assert err == ("keras-distill: error: --alpha: alpha = 1.5 is not allowed; expected a "
                   "number in [0, 1].\n")


def test_bad_config_file_is_a_one_line_failure(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('[data]\nsource = "digits"\ncolor_mode = "cmyk"\n')
    code, _, err = main(["run", "--config", path], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: data.color_mode = \"cmyk\" is not allowed; expected one of 'grayscale', " \
           "'rgb', 'rgba'." in err
    code, _, err = main(["run", "--config", tmp_path / "missing.toml"], capsys)
    assert code == 1 and "config file not found" in err and err.count("\n") == 1


def test_missing_teacher_file(tmp_path, capsys):
    code, _, err = main(["distill", "--teacher", tmp_path / "t.keras"], capsys)
    assert code == 2 and "--teacher: teacher.model = " in err and "file not found" in err


def test_print_config_round_trips(tmp_path, capsys):
    code, out, _ = main(["run", "--print-config", "--epochs", "3", "--formats", "tflite",
                         "--losses", "kl,logit_mse"], capsys)
    assert code == 0
    doc = tomllib.loads(out)
    assert doc["epochs"] == 3 and doc["formats"] == ["tflite"]
    assert doc["losses"] == ["kl", "logit_mse"]
    # one set of export defaults, the library's (int16x8 is opt-in)
    assert doc["quantization"] == ["float32", "float16", "dynamic", "int8"]
    (tmp_path / "c.toml").write_text(out)
    assert config.load(str(tmp_path / "c.toml"))["epochs"] == 3


def test_offline_keras_dataset_fails_with_a_clear_message(tmp_path, capsys, monkeypatch):
    import keras

    def offline():
        # what keras.utils.get_file raises offline: a bare Exception
        raise Exception(  # noqa: TRY002
            "URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
            "mnist.npz: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    code, _, err = main(["run", "--data", "mnist", "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "needs the internet" in err and "Temporary failure in name resolution" in err
    assert 'data = "digits"' in err and ".npz" in err and "image folder" in err


def test_model_that_does_not_fit_the_data_fails_before_training(tmp_path, capsys):
    from keras_distill import presets

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "three.npz", x_train=rng.random((90, 8, 8, 1), dtype=np.float32),
             y_train=np.arange(90) % 3)
    student = presets.student_cnn((8, 8, 1), 10)
    student.save(tmp_path / "s10.keras")
    code, out, err = main(["run", "--data", tmp_path / "three.npz", "--student",
                           tmp_path / "s10.keras", "--out-dir", tmp_path / "out", "--quiet"],
                          capsys)
    assert code == 1 and "Teacher: training" not in out
    assert "the student 'student' outputs 10 classes but the data 'three' has 3." in err


def test_output_folder_that_cannot_be_created(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code, out, err = main(["run", "--out-dir", tmp_path / "file" / "out", "--quiet"], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert f"cannot write to out_dir={str(tmp_path / 'file' / 'out')!r}" in err
    assert "pass a writable folder as out_dir (--out-dir on the command line)" in err


def test_lambda_layers_are_refused_in_safe_mode(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Flatten()(x)
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(tmp_path / "lam.keras")
    code, _, err = main(["distill", "--teacher", tmp_path / "lam.keras", "--out-dir",
                         tmp_path / "out", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "Lambda layer(s) 'lambda'" in err and "--allow-unsafe" in err
    assert "--no-safe-mode" in err and "safe_mode = false" in err
    from keras_distill import pipeline

    # the explicit flag loads it (the file is trusted)
    model = pipeline.load_model(tmp_path / "lam.keras", safe_mode=False)
    assert model.get_layer("lambda") is not None


def test_allow_unsafe_is_another_spelling_of_no_safe_mode(capsys):
    parser = cli.build_parser()
    for command in ("run", "distill", "export x.keras", "evaluate x"):
        args = vars(parser.parse_args([*command.split(), "--allow-unsafe"]))
        assert args["safe_mode"] is False, command
        assert "safe_mode" not in vars(parser.parse_args(command.split()))
    code, out, _ = main(["run", "--allow-unsafe", "--print-config"], capsys)
    assert code == 0 and "safe_mode = false" in out


def test_new_flags_reach_the_config(capsys):
    code, out, _ = main(["run", "--print-config", "--qat", "--prune", "0.5", "--qat-epochs",
                         "2", "--cache-teacher", "--teacher-models", "teacher_cnn,student_cnn",
                         "--teacher-weights", "2,1", "--teacher-average", "logits"], capsys)
    assert code == 0
    doc = tomllib.loads(out)
    assert (doc["qat"], doc["prune"], doc["qat_epochs"], doc["cache_teacher"]) == (
        True, 0.5, 2, True)
    assert doc["teacher"]["models"] == ["teacher_cnn", "student_cnn"]
    assert doc["teacher"]["weights"] == [2.0, 1.0] and doc["teacher"]["average"] == "logits"
    code, out, err = main(["run", "--prune", "1"], capsys)
    assert code == 2 and out == ""
    assert err == ("keras-distill: error: --prune: prune = 1.0 is not allowed; expected a "
                   "number in [0, 1).\n")
    code, _, err = main(["run", "--teacher-weights", "1,2"], capsys)
    assert code == 2 and "teacher.weights = [1.0, 2.0] only applies to an ensemble" in err


def test_resume_without_an_interrupted_run_or_with_other_settings(tmp_path, capsys):
    from keras_distill.pipeline.checkpoints import Checkpoints

    code, _, err = main(["run", "--resume", "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"there is no interrupted run to resume in {tmp_path}" in err
    assert "Run again without --resume" in err
    # the state an interrupted run leaves: its configuration and finished stages
    Checkpoints(str(tmp_path), config.load(None, {"out_dir": str(tmp_path), "epochs": "5"}),
                log=print)
    code, _, err = main(["run", "--resume", "--out-dir", tmp_path, "--epochs", "6",
                         "--formats", "tflite", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "had another configuration (epochs = 5 then, 6 now)" in err  # formats may change
    assert f"keras-distill run --config {tmp_path}/.backup/config.toml --resume" in err
    backup = config.load(str(tmp_path / ".backup" / "config.toml"))
    assert backup["epochs"] == 5 and backup["out_dir"] == str(tmp_path)
    # without --resume, a stale backup is cleared
    stale = tmp_path / ".backup" / "student_distilled" / "latest.weights.h5"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    ckpt = Checkpoints(str(tmp_path), config.load(None, {"out_dir": str(tmp_path)}))
    assert not stale.parent.exists() and ckpt.done == {}
    assert json.loads((tmp_path / ".backup" / "state.json").read_text())["config"]["epochs"] == 30


def test_an_interrupted_run_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from keras_distill import pipeline

    def interrupted(cfg, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    code, _, err = main(["run", "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 130 and err.count("\n") == 1
    assert f"interrupted. The finished models and the last completed epoch are kept in " \
           f"{tmp_path}/.backup: add --resume to the same command to continue." in err


# --- the jobs end to end, on tiny settings -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`keras-distill run` with 1-2 epochs, TFLite float32/int8 and micro."""
    out_dir = tmp_path_factory.mktemp("run") / "exported"
    argv = ["run", "--epochs", "2", "--teacher-epochs", "2", "--teacher-allow-weak",
            "--formats", "tflite,micro",
            "--quantization", "float32,int8", "--calibration-samples", "50", "--out-dir",
            str(out_dir), "--quiet", "--target", "nrf52840"]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    with open(out_dir / "manifest.json") as f:
        manifest = json.load(f)
    return {"code": code, "stdout": out.getvalue(), "out_dir": out_dir, "manifest": manifest}


def test_run_writes_models_artifacts_and_reports(tiny_run):
    assert tiny_run["code"] == 0
    out_dir, manifest = tiny_run["out_dir"], tiny_run["manifest"]
    expected = {"teacher.keras", "student_baseline.keras", "student_distilled.keras",
                "student_float32.tflite", "student_int8.tflite", "student_model_data.cc",
                "student_model_data.h", "labels.txt", "config.toml", "manifest.json",
                "report.md", "report.png", "curves.png"}
    assert expected <= set(os.listdir(out_dir))
    assert set(manifest["files"]) == expected
    assert not [f for f in os.listdir(out_dir) if f.startswith(".")]  # no temporary files
    assert (out_dir / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert (out_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # the curves plotted: each student's validation accuracy per epoch, as the fit measured it
    for name in ("student_baseline", "student_distilled"):
        model = manifest["models"][name]
        curves = model["curves"]
        assert curves["first_epoch"] == 1 and len(curves["val_accuracy"]) == 2
        assert all(0.0 <= v <= 1.0 for v in curves["val_accuracy"])
        # the last epoch's curve point is the model's validation accuracy (no early restore)
        assert curves["val_accuracy"][-1] == pytest.approx(model["val_accuracy"], abs=1e-6)
    assert (out_dir / "labels.txt").read_text().split() == [str(i) for i in range(10)]


def test_run_manifest_numbers(tiny_run):
    m, out_dir = tiny_run["manifest"], tiny_run["out_dir"]
    # the notes say what distillation gained, with the validation numbers of the three models
    (gain,) = [n for n in m["notes"] if n.startswith("Distillation ")]
    for name in ("teacher", "student_baseline", "student_distilled"):
        assert f"{m['models'][name]['val_accuracy']:.4f}" in gain
    # --target: the micro artifact's measured arena and model bytes against the device
    (chip,) = [a for a in m["artifacts"] if a["format"] == "micro"]
    assert chip["target"]["target"] == "nrf52840" and chip["target"]["fits"] is True
    # RAM: the arena and the interpreter's own RAM (keras_distill.footprint)
    counted = chip["target"]["counted"]
    assert chip["target"]["ram_margin"] == \
        256 * 1024 - chip["arena_size"] - counted["static_ram_bytes"]
    assert chip["target"]["flash_margin"] == \
        1024 * 1024 - chip["size_bytes"] - counted["tflm_code_bytes"]
    assert chip["latency_estimate"]["macs"] > 0 and chip["latency_estimate"]["ms"] > 0
    assert any(n.startswith("Estimated TFLM latency on nrf52840") for n in m["notes"])
    assert any(n.startswith("The micro artifact fits nrf52840") for n in m["notes"])
    # the baseline and the distilled student had the same budget: epochs, and epochs trained
    b, d = m["models"]["student_baseline"], m["models"]["student_distilled"]
    assert b["epochs"] == d["epochs"] == b["epochs_run"] == d["epochs_run"] == 2
    assert len(b["curves"]["val_accuracy"]) == len(d["curves"]["val_accuracy"]) == 2
    assert m["data"]["n_train"] == 1167 and m["data"]["n_test"] == 360
    models = m["models"]
    assert set(models) == {"teacher", "student_baseline", "student_distilled"}
    assert models["teacher"]["params"] > 10 * models["student_distilled"]["params"]
    assert models["student_baseline"]["params"] == models["student_distilled"]["params"]
    assert models["teacher"]["agreement_with_teacher"] == 1.0
    for model in models.values():
        assert model["size_bytes"] == os.path.getsize(out_dir / model["path"])
        assert 0.0 <= model["test_accuracy"] <= 1.0 and model["latency_ms"] > 0
    # the student with the better validation accuracy is exported (ties: agreement, then
    # distilled)
    b, d = models["student_baseline"], models["student_distilled"]
    key = (lambda x: (x["val_accuracy"], x["val_agreement_with_teacher"]))
    best = "student_baseline" if key(b) > key(d) else "student_distilled"
    assert m["selected"]["student"] == best
    assert m["selected"]["criterion"] == "validation accuracy"
    chosen = models[best]
    # every artifact was reloaded from disk and agrees with the export's own check
    arts = {(a["format"], a["quantization"]): a for a in m["artifacts"]}
    assert set(arts) == {("tflite", "float32"), ("tflite", "int8"), ("micro", "int8")}
    for a in arts.values():
        assert a["status"] == "ok" and a["verified"] is True and a["error"] is None
        assert a["test_accuracy"] == a["export_metrics"]["accuracy"]
        with open(out_dir / a["file"], "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == a["sha256"] or a["format"] == "micro"
    f32 = arts[("tflite", "float32")]
    assert f32["agreement_with_keras"] == 1.0 and f32["max_abs_error_vs_keras"] < 1e-4
    assert f32["test_accuracy"] == chosen["test_accuracy"]
    assert f32["agreement_with_teacher"] == chosen["agreement_with_teacher"]
    assert arts[("tflite", "int8")]["size_bytes"] < f32["size_bytes"]
    assert arts[("micro", "int8")]["arena_size"] > 0
    assert m["errors"] == [] and m["config"]["epochs"] == 2
    assert set(m["seconds"]) >= {"teacher", "baseline", "distill", "export", "total"}


def test_run_prints_the_table_and_the_choice(tiny_run):
    out, m = tiny_run["stdout"], tiny_run["manifest"]
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model / artifact"))
    names = [line.split()[0] for line in lines[header + 1:header + 7]]
    assert names == ["teacher", "student_baseline", "student_distilled",
                     "student_float32.tflite", "student_int8.tflite", "student_model_data.cc"]
    assert f"Exported: {m['selected']['student']}. {m['selected']['reason']}" in out
    (gain,) = [n for n in m["notes"] if n.startswith("Distillation ")]
    assert gain in out.splitlines()  # what distillation gained, printed too
    assert "report.png, curves.png, the .keras models" in out
    assert "Epoch 1/2" not in out  # --quiet: no progress bars
    report_md = (tiny_run["out_dir"] / "report.md").read_text()
    assert m["selected"]["reason"] in report_md
    for a in m["artifacts"]:
        assert f"| {a['file']} | {a['format']} | {a['quantization']} |" in report_md


def test_run_config_toml_reproduces_the_run_settings(tiny_run):
    out_dir = tiny_run["out_dir"]
    cfg = config.load(str(out_dir / "config.toml"))
    assert cfg["out_dir"] == str(out_dir)
    assert cfg.to_dict() == {**tiny_run["manifest"]["config"], "out_dir": str(out_dir)}


def test_saved_students_are_plain_models(tiny_run):
    import keras

    out_dir, m = tiny_run["out_dir"], tiny_run["manifest"]
    from keras_distill.data import load_digits

    data = load_digits(seed=0)
    for name in ("student_baseline", "student_distilled"):
        model = keras.saving.load_model(out_dir / f"{name}.keras")
        assert model.count_params() == m["models"][name]["params"]  # no teacher inside
        assert getattr(model, "optimizer", None) is None  # saved without optimizer state
        acc = float(np.mean(model.predict(data.x_test, verbose=0).argmax(-1) == data.y_test))
        assert acc == m["models"][name]["test_accuracy"]


def test_evaluate_folder_matches_the_run(tiny_run, capsys):
    out_dir, m = tiny_run["out_dir"], tiny_run["manifest"]
    code, out, err = main(["evaluate", out_dir, "--json", "--quiet"], capsys)
    assert code == 0, err
    rows = {r["file"]: r for r in json.loads(out[out.index("["):])}
    for a in m["artifacts"]:
        r = rows[a["file"]]
        assert r["accuracy"] == a["test_accuracy"]
        # teacher.keras next to the artifacts is the default reference
        assert r["agreement"] == a["agreement_with_teacher"]
    code, out, _ = main(["evaluate", out_dir / "student_int8.tflite", "--quiet"], capsys)
    assert code == 0 and "agree reference" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("student_")] == [
        "student_int8.tflite"]


def test_distill_command(tiny_run, tmp_path, capsys):
    teacher = tiny_run["out_dir"] / "teacher.keras"
    digest = hashlib.sha256(teacher.read_bytes()).hexdigest()
    code, out, err = main(["distill", "--teacher", teacher, "--student", "student_mlp",
                           "--epochs", "1", "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    assert "used as it is" in out and "Teacher: training" not in out
    assert hashlib.sha256(teacher.read_bytes()).hexdigest() == digest
    import keras

    student = keras.saving.load_model(tmp_path / "student_distilled.keras")
    assert student.output_shape == (None, 10) and student.get_layer("hidden") is not None
    assert os.listdir(tmp_path) == ["student_distilled.keras"]


def test_a_teacher_file_trained_further_is_never_overwritten(tiny_run, tmp_path, capsys):
    teacher = tmp_path / "teacher.keras"
    teacher.write_bytes((tiny_run["out_dir"] / "teacher.keras").read_bytes())
    digest = hashlib.sha256(teacher.read_bytes()).hexdigest()
    code, out, err = main(["distill", "--teacher", teacher, "--teacher-epochs", "1",
                           "--teacher-allow-weak", "--epochs", "1", "--out-dir", tmp_path,
                           "--quiet"], capsys)
    assert code == 0, err
    assert "Teacher: training" in out
    assert hashlib.sha256(teacher.read_bytes()).hexdigest() == digest
    assert sorted(os.listdir(tmp_path)) == ["student_distilled.keras", "teacher.keras",
                                            "teacher_trained.keras"]


def test_export_command_and_a_failed_artifact(tiny_run, tmp_path, capsys, monkeypatch):
    model = tiny_run["out_dir"] / "student_distilled.keras"
    from keras_distill.export import tflite

    convert = tflite.convert

    def broken_int8(saved_model, mode, **kwargs):
        if mode == "int8":
            raise RuntimeError("int8 converter crashed")
        return convert(saved_model, mode, **kwargs)

    monkeypatch.setenv("KERAS_DISTILL_ISOLATE", "0")  # the patch is in this process
    monkeypatch.setattr(tflite, "convert", broken_int8)
    code, out, err = main(["export", model, "--formats", "tflite", "--quantization",
                           "float32,int8", "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "1 artifact(s) failed: tflite/int8: RuntimeError: int8 converter crashed" in err
    assert "student_distilled_float32.tflite" in out and "failed" in out
    assert (tmp_path / "student_distilled_float32.tflite").is_file()
    assert not (tmp_path / "student_distilled_int8.tflite").exists()
    with open(tmp_path / "manifest.json") as f:
        arts = {a["quantization"]: a for a in json.load(f)["artifacts"]}
    assert arts["float32"]["status"] == "ok" and arts["int8"]["status"] == "failed"


def test_run_from_a_config_file_with_npz_data_and_a_teacher_file(tiny_run, tmp_path, capsys):
    from keras_distill.data import load_digits

    d = load_digits(seed=0)
    np.savez(tmp_path / "digits.npz", x_train=np.concatenate([d.x_train, d.x_val]),
             y_train=np.concatenate([d.y_train, d.y_val]), x_test=d.x_test, y_test=d.y_test)
    (tmp_path / "models").mkdir()
    teacher = tmp_path / "models" / "teacher.keras"
    teacher.write_bytes((tiny_run["out_dir"] / "teacher.keras").read_bytes())
    (tmp_path / "run.toml").write_text("""
data = "digits.npz"
teacher = "models/teacher.keras"
out_dir = "out"
epochs = 1
formats = []
export_student = "baseline"
losses = ["kl", {name = "feature_hint", teacher_layer = "relu3", student_layer = "conv2"}]
loss_weights = [1.0, 0.5]
[student]
model = "student_cnn"
preset_args = {width = 4}
""")
    code, out, err = main(["run", "--config", tmp_path / "run.toml", "--quiet"], capsys)
    assert code == 0, err
    with open(tmp_path / "out" / "manifest.json") as f:
        m = json.load(f)
    assert m["data"]["name"] == "digits" and m["data"]["n_test"] == 360
    assert m["data"]["n_train"] + m["data"]["n_val"] == 1167 + 270  # validation split off
    assert m["models"]["teacher"]["epochs"] == 0  # a teacher file is used as it is
    assert m["models"]["teacher"]["test_accuracy"] == \
        tiny_run["manifest"]["models"]["teacher"]["test_accuracy"]
    assert m["models"]["student_distilled"]["params"] == 1626  # student_cnn at width 4
    assert m["selected"]["student"] == "student_baseline"
    assert m["selected"]["criterion"] == "export_student = 'baseline'"
    assert m["artifacts"] == [] and m["export"] is None
    assert "Export: skipped" in out
    assert m["config_file"] == str(tmp_path / "run.toml")
    assert m["config"]["losses"][1]["teacher_layer"] == "relu3"


@pytest.mark.slow
def test_run_every_format_and_the_default_quantization_modes(tmp_path, capsys):
    code, out, err = main(["run", "--epochs", "3", "--teacher-epochs", "3",
                           "--teacher-allow-weak", "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    with open(tmp_path / "manifest.json") as f:
        m = json.load(f)
    keys = [(a["format"], a["quantization"]) for a in m["artifacts"]]
    # the defaults of the library's export(): int16x8 is opt-in (--quantization ...,int16x8)
    assert keys == [("tflite", q) for q in ("float32", "float16", "dynamic", "int8")] \
        + [("onnx", "float32"), ("onnx", "int8"), ("micro", "int8")]
    assert all(a["status"] == "ok" and a["verified"] for a in m["artifacts"])
    sizes = {k: a["size_bytes"] for k, a in zip(keys, m["artifacts"])}
    assert sizes[("tflite", "int8")] < sizes[("tflite", "float16")] < sizes[("tflite", "float32")]
    assert len([line for line in out.splitlines() if line.startswith("student_")]) == 2 + 7
