"""`keras-distill run` beyond multi-class softmax: the bundled breast_cancer (binary, one logit)
and diabetes (regression, z-scored targets) end to end, and what the task decides: the MLP
presets for feature vectors, the losses, every model's and artifact's metrics, the student's
selection, the report's columns; declared tasks that fit the data and those that do not.

Each run fixture is one short `keras-distill run` (a few epochs, TFLite float32 and int8, the
diabetes one with TFLite Micro too), shared by the tests that check one of its promises."""

import contextlib
import io
import json
import os

import numpy as np
import pytest

from keras_distill import cli, config


def main(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(out_dir, *argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["run", "--epochs", "6", "--teacher-epochs", "12", "--quantization",
                         "float32,int8", "--calibration-samples", "100", "--out-dir",
                         str(out_dir), "--quiet", *map(str, argv)])
    with open(out_dir / "manifest.json") as f:
        manifest = json.load(f)
    return {"code": code, "stdout": out.getvalue(), "out_dir": out_dir, "manifest": manifest}


def artifacts(manifest):
    return {(a["format"], a["quantization"]): a for a in manifest["artifacts"]}


def table_header(stdout):
    return next(line for line in stdout.splitlines() if line.startswith("model / artifact"))


# --- declared tasks, presets by input shape: no training -----------------------------------


def test_the_task_and_the_defaults_follow_the_data():
    from keras_distill.data import load_breast_cancer, load_diabetes, load_digits
    from keras_distill.pipeline import tasks

    cfg = config.load(None, {})
    same, digits = tasks.resolve(cfg, load_digits())
    assert same is cfg and digits.task == "multiclass"  # digits: nothing changes
    cfg_b, data = tasks.resolve(cfg, load_breast_cancer())
    assert (data.task, data.output_units) == ("binary", 1)
    assert (cfg_b["teacher.model"], cfg_b["student.model"]) == ("teacher_mlp", "student_mlp")
    assert cfg_b["losses"] == [{"name": "bernoulli_kl"}]
    # two softmax logits for two classes, when declared: the multiclass default loss stays
    cfg_m, data = tasks.resolve(config.load(None, {"task": "multiclass"}), load_breast_cancer())
    assert (data.task, data.output_units) == ("multiclass", 2)
    assert cfg_m["losses"] == [{"name": "soft_target_kl"}]
    # what the user named is kept
    named = config.load(None, {"student.model": "student_cnn", "losses": "logit_mse"})
    cfg_n, _ = tasks.resolve(named, load_diabetes())
    assert cfg_n["student.model"] == "student_cnn" and cfg_n["teacher.model"] == "teacher_mlp"
    assert cfg_n["losses"] == [{"name": "logit_mse"}]
    with pytest.raises(ValueError, match="task = 'regression' does not fit the data "
                       "'breast_cancer', whose labels are class indices of 2 classes: class "
                       "labels are not regression targets. Use task = 'auto' \\(here 'binary'\\)"
                       " or 'multiclass'."):
        tasks.task_of(config.load(None, {"task": "regression"}), load_breast_cancer())
    with pytest.raises(ValueError, match="task = 'binary' does not fit the data 'digits'.*of "
                       "10 classes: a binary output \\(one logit\\) has two classes"):
        tasks.task_of(config.load(None, {"task": "binary"}), load_digits())


def test_default_losses_are_the_library_defaults_and_print_config_resolves_them(tmp_path,
                                                                              capsys):
    import tomllib

    from keras_distill import losses
    from keras_distill.pipeline import tasks

    for task, name in tasks.DEFAULT_LOSSES.items():
        assert type(losses.default_for(task)) is losses.ALIASES[name], task
    code, out, _ = main(["run", "--data", "diabetes", "--print-config"], capsys)
    assert code == 0
    doc = tomllib.loads(out)
    assert doc["losses"] == ["logit_mse"] and doc["teacher"]["model"] == "teacher_mlp"
    assert doc["student"]["model"] == "student_mlp" and doc["task"] == "auto"
    (tmp_path / "run.toml").write_text(out)
    cfg, data = tasks.resolve(config.load(str(tmp_path / "run.toml")), tasks_data("diabetes"))
    assert (cfg["teacher.model"], data.task) == ("teacher_mlp", "regression")


def tasks_data(name):
    from keras_distill import data

    return data.load(name)


def test_a_task_or_preset_that_does_not_fit_fails_before_training(tmp_path, capsys):
    code, out, err = main(["run", "--data", "diabetes", "--task", "binary", "--out-dir",
                           tmp_path, "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1 and "Teacher: training" not in out
    assert "task = 'binary' does not fit the data 'diabetes', whose labels are real-valued " \
           "regression targets (1): a classification task needs class labels." in err
    code, out, err = main(["run", "--data", "breast_cancer", "--teacher", "teacher_cnn",
                           "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 1 and "Teacher: training" not in out
    assert "the teacher preset 'teacher_cnn' takes images (height, width, channels) but the " \
           "data 'breast_cancer' has samples of shape (30,); use teacher_mlp" in err
    code, out, err = main(["run", "--data", "breast_cancer", "--losses", "soft_target_kl",
                           "--out-dir", tmp_path, "--quiet"], capsys)
    assert code == 1 and "Teacher: training" not in out
    assert "SoftTargetKL cannot distil" in err and "BernoulliKL" in err


# --- breast_cancer: binary, one logit -------------------------------------------------------


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    return run_cli(tmp_path_factory.mktemp("bc") / "exported", "--data", "breast_cancer",
                   "--formats", "tflite")


@pytest.mark.slow
def test_binary_run_uses_one_logit_mlps_and_the_binary_loss(binary_run):
    m = binary_run["manifest"]
    assert binary_run["code"] == 0 and m["errors"] == []
    assert m["task"]["kind"] == "binary" and m["task"]["from"] == "data"
    assert m["data"]["output_units"] == 1
    assert m["config"]["teacher"]["model"] == "teacher_mlp"
    assert m["config"]["student"]["model"] == "student_mlp"
    assert m["config"]["losses"] == [{"name": "bernoulli_kl"}]
    # teacher_mlp: 30·64 + 64 + 64·64 + 64 + 64 + 1; student_mlp: 30·32 + 32 + 32 + 1
    assert m["models"]["teacher"]["params"] == 6209
    assert m["models"]["student_distilled"]["params"] == 1025
    # config.toml reproduces the resolved run
    cfg = config.load(str(binary_run["out_dir"] / "config.toml"))
    assert cfg["teacher.model"] == "teacher_mlp" and cfg["losses"] == [{"name": "bernoulli_kl"}]


@pytest.mark.slow
def test_binary_teacher_scores_are_those_of_its_logits(binary_run):
    import keras
    from sklearn.metrics import roc_auc_score

    from keras_distill.data import load_breast_cancer

    data, m = load_breast_cancer(), binary_run["manifest"]
    teacher = m["models"]["teacher"]
    assert teacher["test_accuracy"] > 0.9 and teacher["test_scores"]["auc"] > 0.95
    model = keras.saving.load_model(binary_run["out_dir"] / "teacher.keras")
    logits = model.predict(data.x_test, verbose=0)[:, 0]
    assert teacher["test_accuracy"] == pytest.approx(np.mean((logits > 0) == data.y_test))
    assert teacher["test_scores"]["auc"] == pytest.approx(roc_auc_score(data.y_test, logits))
    student = m["models"]["student_distilled"]
    assert 0.5 <= student["test_scores"]["agreement_with_teacher"] <= 1.0
    assert set(student["test_scores"]) >= {"accuracy", "auc", "agreement_with_teacher"}


@pytest.mark.slow
def test_binary_artifacts_are_verified_with_the_binary_metrics(binary_run):
    m = binary_run["manifest"]
    chosen = m["models"][m["selected"]["student"]]
    arts = artifacts(m)
    assert set(arts) == {("tflite", "float32"), ("tflite", "int8")}
    f32, int8 = arts[("tflite", "float32")], arts[("tflite", "int8")]
    assert f32["max_abs_error_vs_keras"] < 1e-4
    assert f32["test_accuracy"] == pytest.approx(chosen["test_accuracy"])
    assert f32["test_auc"] == pytest.approx(chosen["test_scores"]["auc"], abs=1e-6)
    assert int8["agreement_with_keras"] >= 0.9 and int8["test_auc"] > 0.9
    assert m["selected"]["criterion"] == "validation accuracy"


@pytest.mark.slow
def test_binary_report_has_the_binary_columns(binary_run):
    out, out_dir = binary_run["stdout"], binary_run["out_dir"]
    assert "test acc  test AUC  agree teacher  latency ms" in table_header(out)
    assert "test AUC: the ROC AUC of the logit" in out
    report_md = (out_dir / "report.md").read_text()
    assert "| test acc | test AUC | agree teacher | latency ms |" in report_md
    assert (out_dir / "labels.txt").read_text().split() == ["malignant", "benign"]


# --- diabetes: regression, z-scored targets --------------------------------------------------


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    return run_cli(tmp_path_factory.mktemp("db") / "exported", "--data", "diabetes",
                   "--formats", "tflite,micro")


@pytest.mark.slow
def test_regression_teacher_beats_predicting_the_training_mean(regression_run):
    import keras

    from keras_distill.data import load_diabetes

    data, m = load_diabetes(), regression_run["manifest"]
    assert regression_run["code"] == 0 and m["errors"] == []
    assert m["task"]["kind"] == "regression" and m["config"]["losses"] == [{"name": "logit_mse"}]
    mean_mae = float(np.mean(np.abs(data.y_test - data.y_train.mean())))  # 0.759
    teacher = m["models"]["teacher"]["test_scores"]
    assert teacher["mae"] < 0.9 * mean_mae
    model = keras.saving.load_model(regression_run["out_dir"] / "teacher.keras")
    predicted = model.predict(data.x_test, verbose=0)[:, 0]
    assert teacher["mae"] == pytest.approx(np.mean(np.abs(predicted - data.y_test)), rel=1e-5)
    assert m["models"]["teacher"]["test_accuracy"] is None  # no accuracy for regression
    assert m["data"]["target_scale"] == pytest.approx(list(data.target_scale))


@pytest.mark.slow
def test_regression_student_is_chosen_by_validation_mae(regression_run):
    m = regression_run["manifest"]
    models = m["models"]
    assert m["selected"]["criterion"] == "validation MAE"
    assert m["task"]["selection"] == {"metric": "mae", "name": "validation MAE",
                                      "higher_is_better": False}
    b = models["student_baseline"]["val_scores"]["mae"]
    d = models["student_distilled"]["val_scores"]["mae"]
    assert m["selected"]["student"] == ("student_baseline" if b < d else "student_distilled")
    assert f"validation MAE {d:.4f} distilled vs {b:.4f} baseline" in m["selected"]["reason"]
    for name in ("student_baseline", "student_distilled"):
        scores = models[name]["test_scores"]
        assert 0 < scores["mean_abs_error_with_teacher"] <= scores["rms_error_with_teacher"]


@pytest.mark.slow
def test_regression_artifacts_match_keras(regression_run):
    m = regression_run["manifest"]
    chosen = m["models"][m["selected"]["student"]]
    arts = artifacts(m)
    assert set(arts) == {("tflite", "float32"), ("tflite", "int8"), ("micro", "int8")}
    f32 = arts[("tflite", "float32")]
    assert f32["max_abs_error_vs_keras"] < 1e-4 and f32["mean_abs_error_vs_keras"] < 1e-4
    assert f32["test_mae"] == pytest.approx(chosen["test_scores"]["mae"], abs=1e-5)
    assert f32["mean_abs_error_vs_teacher"] == pytest.approx(
        chosen["test_scores"]["mean_abs_error_with_teacher"], abs=1e-5)
    for key in (("tflite", "int8"), ("micro", "int8")):  # int8: within 5% of float32's MAE
        assert arts[key]["test_mae"] == pytest.approx(f32["test_mae"], rel=0.05)
        assert arts[key]["test_accuracy"] is None


@pytest.mark.slow
def test_regression_report_columns_say_what_and_in_which_unit(regression_run):
    out, out_dir, m = regression_run["stdout"], regression_run["out_dir"], \
        regression_run["manifest"]
    header = table_header(out)
    assert "test MAE  test RMSE  MAE vs teacher  latency ms" in header and "acc" not in header
    std = m["data"]["target_scale"][1]
    assert f"all in z-scores of the target (standardized with the training split's mean " \
           f"{m['data']['target_scale'][0]:.1f} and std {std:.1f}" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()
             if line.startswith(("teacher ", "student_"))}
    assert lines["teacher"][5:8] == [f"{m['models']['teacher']['test_scores']['mae']:.4f}",
                                     f"{m['models']['teacher']['test_scores']['rmse']:.4f}",
                                     "0.0000"]
    report_md = (out_dir / "report.md").read_text()
    assert "| test MAE | test RMSE | MAE vs teacher | latency ms |" in report_md
    assert "z-scores of the target" in report_md


@pytest.mark.slow
def test_evaluate_and_export_score_regression_artifacts(regression_run, tmp_path, capsys):
    out_dir, m = regression_run["out_dir"], regression_run["manifest"]
    code, out, err = main(["evaluate", out_dir, "--data", "diabetes", "--json", "--quiet"],
                          capsys)
    assert code == 0, err
    rows = {r["file"]: r for r in json.loads(out[out.index("["):])}
    for a in m["artifacts"]:
        assert rows[a["file"]]["mae"] == pytest.approx(a["test_mae"], abs=1e-6)
    code, out, err = main(["export", out_dir / "student_distilled.keras", "--data", "diabetes",
                           "--formats", "tflite", "--quantization", "float32", "--out-dir",
                           tmp_path, "--quiet"], capsys)
    assert code == 0, err
    assert "test MAE  test RMSE  MAE vs keras" in table_header(out)
    line = next(x for x in out.splitlines() if x.startswith("student_distilled_float32"))
    assert float(line.split()[7]) < 1e-4  # MAE vs Keras of the float32 file
    assert os.path.isfile(tmp_path / "student_distilled_float32.tflite")
