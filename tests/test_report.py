"""keras_distill.report: tables, atomic writes, the plot; and how a run picks its student."""

import json
import os

import pytest
from helpers import enospc, failing_writes

from keras_distill import report
from keras_distill.report import Row

ROWS = [
    Row("teacher", "keras", "float32", 65834, 323_075, 0.9917, 1.0, 1.107),
    Row("student_distilled", "keras", "float32", 3818, 41_219, 0.9722, 0.975, 0.683,
        note="exported"),
    Row("student_int8.tflite", "tflite", "int8", 3818, 8_744, 0.9722, 0.975, 0.024),
    Row("student_int16x8.tflite", "tflite", "int16x8", 3818, None, status="failed",
        note="ConverterError: boom"),
]


def test_format_table_aligns_and_formats_numbers():
    lines = report.format_table(ROWS, agreement_label="agree teacher").splitlines()
    assert len(lines) == 1 + len(ROWS)
    assert lines[0].split() == ["model", "/", "artifact", "runtime", "quantization", "params",
                                "size", "KiB", "test", "acc", "agree", "teacher", "latency",
                                "ms"]
    assert lines[1].split() == ["teacher", "keras", "float32", "65,834", "315.5", "0.9917",
                                "1.0000", "1.107"]
    assert lines[2].split()[-1] == "exported"
    assert lines[3].split()[3:8] == ["3,818", "8.5", "0.9722", "0.9750", "0.024"]
    assert lines[4].split()[:6] == ["student_int16x8.tflite", "tflite", "int16x8", "3,818",
                                    "-", "failed"]
    # numbers are right-aligned: every data row ends its accuracy column at the same place
    ends = {line.index("0.97") + 6 for line in lines[2:4]}
    assert len(ends) == 1


def test_markdown_table():
    lines = report.markdown_table(ROWS, agreement_label="agree teacher").splitlines()
    assert len(lines) == 2 + len(ROWS)
    assert lines[0].count("|") == 10 and "agree teacher" in lines[0]
    assert "| student_int8.tflite | tflite | int8 | 3,818 | 8.5 | 0.9722 | 0.9750 | 0.024 |" \
        in lines[4]
    assert "failed" in lines[5] and "ConverterError: boom" in lines[5]


def test_gzip_column_appears_only_when_a_row_has_it():
    rows = [Row("student_distilled", "keras", "float32", 3818, 41_219, 0.97, 0.97, 0.6),
            Row("student_int8.tflite", "tflite", "int8", 3818, 8_704, 0.97, 0.97, 0.02,
                gzip_bytes=4_608),
            Row("student_qat_int8.tflite", "tflite", "int8 QAT", 3830, 8_864, 0.96, 0.96, 0.02,
                gzip_bytes=4_710)]
    lines = report.format_table(rows).splitlines()
    assert "size KiB  gzip KiB  test acc" in lines[0]
    assert lines[1].split()[3:6] == ["3,818", "40.3", "-"]
    assert lines[2].split()[3:6] == ["3,818", "8.5", "4.5"]
    assert lines[3].split()[:7] == ["student_qat_int8.tflite", "tflite", "int8", "QAT", "3,830",
                                    "8.7", "4.6"]
    md = report.markdown_table(rows).splitlines()
    assert md[0].count("|") == 11 and "| gzip KiB |" in md[0]
    assert md[1] == "|---|---|---|" + "---:|" * 6 + "---|"
    assert "| 8.5 | 4.5 | 0.9700 |" in md[3]
    # without gzip sizes, the tables are as before
    assert "gzip" not in report.format_table(rows[:1]) + report.markdown_table(rows[:1])


def test_run_markdown_describes_the_optional_stages():
    manifest = {
        "data": {"summary": "digits"}, "selected": {"student": "student_distilled",
                                                     "reason": "better."},
        "teacher": {"ensemble": ["teacher_1", "teacher_2"], "average": "probabilities",
                    "weights": [2 / 3, 1 / 3]},
        "student": {"from_teacher": {"width": 0.25, "transfer": "select", "params": 4562,
                                     "copied": [], "sliced": ["conv1", "logits"],
                                     "skipped": []}},
        "pruning": {"target_sparsity": 0.5, "schedule": "polynomial", "sparsity": {
            "student_distilled": {"overall": 0.5, "layers": {"conv1": 0.5, "logits": 0.5}},
            "student_qat": {"overall": 0.5, "layers": {"conv1": 0.5, "logits": 0.5}}}},
        "qat": {"model": "student_qat", "from": "student_distilled", "epochs": 5,
                "learning_rate": 3e-4},
        "resumed": True,
        "models": {"teacher": {"epochs": 20, "resumed": "reused"},
                   "student_distilled": {"epochs": 30, "epochs_run": 12, "resumed": None}},
    }
    text = report.run_markdown(manifest, ROWS[:1])
    assert "An ensemble of teacher_1, teacher_2: the weighted average of their probabilities " \
           "(weights 0.667, 0.333)" in text
    assert "The teacher shrunk to width 0.25 (4,562 parameters); initial weights: transferred " \
           "from the teacher (select): 0 layers copied, 2 sliced, 0 skipped." in text
    assert "| layer | student_distilled | student_qat |" in text
    assert "| conv1 | 50.0% | 50.0% |" in text and "| all | 50.0% | 50.0% |" in text
    assert "`student_qat`: student_distilled fine-tuned 5 epoch(s)" in text
    assert "teacher reused, student_distilled trained 12 of 30 epochs here." in text
    plain = report.run_markdown({"data": {"summary": "d"}, "selected": manifest["selected"]},
                                ROWS[:1])
    assert "## Pruning" not in plain and "## Teacher" not in plain and "QAT" not in plain


def test_plot_writes_a_png_with_one_label_per_point(tmp_path, monkeypatch):
    import matplotlib.axes

    labels = []
    original = matplotlib.axes.Axes.annotate

    def spy(self, text, *args, **kwargs):
        labels.append(text)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", spy)
    path = report.plot_accuracy_vs_size(ROWS, str(tmp_path / "p.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the failed artifact has no size or accuracy: not plotted
    assert labels == ["teacher", "student_distilled", "tflite int8"]
    assert os.listdir(tmp_path) == ["p.png"]  # no temporary file left


def test_label_offsets_fan_out_equal_accuracies():
    rows = [Row(f"a{i}", "tflite", "int8", 1, 1000 * (i + 1), 0.97) for i in range(4)]
    offsets = report._label_offsets(rows + [Row("t", "keras", "float32", 1, 10, 0.99)])
    assert len({dy for _, dy in offsets[:4]}) == 4
    assert offsets[4] == (6, 4)


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    report.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    hit = failing_writes(monkeypatch, tmp_path, enospc(), limit=5)  # "{half" reaches the disk
    with pytest.raises(OSError, match="No space left"):
        report.write_json(path, {"a": 2, "b": [1, 2, 3]})
    assert len(hit) == 1
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_write_json_handles_numpy_values(tmp_path):
    import numpy as np

    report.write_json(tmp_path / "m.json", {"acc": np.float32(0.5), "n": np.int64(3),
                                            "shape": np.array([8, 8])})
    assert json.loads((tmp_path / "m.json").read_text()) == {"acc": 0.5, "n": 3,
                                                             "shape": [8, 8]}


# --- choosing the student to export (keras_distill.pipeline.select_student) -----------------


def info(name, val, test=None, val_agreement=None):
    from keras_distill.pipeline import ModelInfo

    return ModelInfo(name, None, val_accuracy=val, test_accuracy=test,
                     val_agreement=val_agreement)


def test_select_distilled_when_it_is_better():
    from keras_distill.pipeline import select_student

    name, reason = select_student(info("student_baseline", 0.95, 0.95),
                                  info("student_distilled", 0.97, 0.96))
    assert name == "student_distilled"
    assert "0.9700 distilled vs 0.9500 baseline" in reason


def test_a_better_baseline_is_exported_and_said():
    from keras_distill.pipeline import select_student

    name, reason = select_student(info("student_baseline", 0.98, 0.97),
                                  info("student_distilled", 0.96, 0.96))
    assert name == "student_baseline"
    assert "baseline did better" in reason and "did not help" in reason


def test_test_split_never_chooses_but_is_named():
    from keras_distill.pipeline import select_student

    name, reason = select_student(info("student_baseline", 0.95, 0.99),
                                  info("student_distilled", 0.97, 0.96))
    assert name == "student_distilled"
    assert "on the test split the baseline student scored higher (0.9900 vs 0.9600)" in reason


def test_ties_go_to_agreement_then_distilled():
    from keras_distill.pipeline import select_student

    name, reason = select_student(info("student_baseline", 0.97, None, 0.99),
                                  info("student_distilled", 0.97, None, 0.95))
    assert name == "student_baseline" and "Tie" in reason
    name, _ = select_student(info("student_baseline", 0.97, None, 0.95),
                             info("student_distilled", 0.97, None, 0.95))
    assert name == "student_distilled"


def test_forced_choice_notes_a_better_other():
    from keras_distill.pipeline import select_student

    name, reason = select_student(info("student_baseline", 0.99), info("student_distilled", 0.9),
                                  mode="distilled")
    assert name == "student_distilled"
    assert "export_student = 'distilled'" in reason
    assert "the baseline student did better on validation" in reason


# --- tables, plot and choice of other tasks than multiclass ---------------------------------


REGRESSION_ROWS = [
    Row("teacher", "keras", "float32", 4929, 47_000, latency_ms=0.6,
        scores={"mae": 0.5624, "rmse": 0.719, "reference_error": 0.0}),
    Row("student_float32.tflite", "tflite", "float32", 385, 3_100, latency_ms=0.005,
        scores={"mae": 0.5710, "rmse": 0.7358, "reference_error": 5.4e-08}),
    Row("student_int8.tflite", "tflite", "int8", 385, None, status="failed", note="boom"),
]


def test_tables_follow_the_task():
    lines = report.format_table(REGRESSION_ROWS, agreement_label="agree teacher",
                                task="regression").splitlines()
    assert lines[0].split()[8:] == ["test", "MAE", "test", "RMSE", "MAE", "vs", "teacher",
                                    "latency", "ms"]
    assert lines[1].split()[5:] == ["0.5624", "0.7190", "0.0000", "0.600"]
    assert lines[2].split()[5:] == ["0.5710", "0.7358", "5.4e-08", "0.005"]  # vs Keras: tiny
    assert lines[3].split()[4:] == ["-", "failed", "-", "-", "-", "boom"]
    md = report.markdown_table(REGRESSION_ROWS, agreement_label="agree keras",
                               task="regression").splitlines()
    assert md[0].endswith("| test MAE | test RMSE | MAE vs keras | latency ms | note |")
    binary = [Row("student", "keras", "float32", 1025, 23_000, 0.9649, 0.9825, 0.4,
                  scores={"auc": 0.9924})]
    lines = report.format_table(binary, agreement_label="agree teacher",
                                task="binary").splitlines()
    assert "test acc  test AUC  agree teacher  latency ms" in lines[0]
    assert lines[1].split()[5:8] == ["0.9649", "0.9924", "0.9825"]
    # multiclass is the table it always was
    assert report.format_table(ROWS) == report.format_table(ROWS, task="multiclass")
    assert "z-scores of the target" in report.caption("regression", target_scale=(148.1, 77.8))
    assert report.caption("multiclass") == ("Test accuracy and top-1 agreement with the "
                                            "teacher on the test split.")


def test_regression_report_and_plot_follow_the_mae(tmp_path, monkeypatch):
    import matplotlib.axes

    seen = {"labels": [], "inverted": False}
    annotate, invert = matplotlib.axes.Axes.annotate, matplotlib.axes.Axes.invert_yaxis

    def spy(self, text, xy, *args, **kwargs):
        seen["labels"].append((text, xy[1]))
        return annotate(self, text, xy, *args, **kwargs)

    def spy_invert(self):
        seen["inverted"] = True
        return invert(self)

    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", spy)
    monkeypatch.setattr(matplotlib.axes.Axes, "invert_yaxis", spy_invert)
    report.plot_accuracy_vs_size(REGRESSION_ROWS, str(tmp_path / "p.png"), task="regression")
    assert seen["labels"] == [("teacher", 0.5624), ("tflite float32", 0.5710)]
    assert seen["inverted"]  # lower MAE is better: drawn higher
    manifest = {"data": {"summary": "diabetes", "target_scale": [148.1, 77.8]},
                "selected": {"student": "student_baseline", "reason": "better."},
                "task": {"kind": "regression"}}
    text = report.run_markdown(manifest, REGRESSION_ROWS)
    assert "| test MAE | test RMSE | MAE vs teacher |" in text
    assert "mean 148.1 and std 77.8: 1.0 is 77.8 in the target's units); latency is" in text


def regression_info(name, val_mae, test_mae=None, closeness=None):
    from keras_distill.pipeline import ModelInfo

    return ModelInfo(name, None, task="regression",
                     val_scores={"mae": val_mae, "mean_abs_error_with_teacher": closeness},
                     test_scores={"mae": test_mae})


def test_regression_students_are_chosen_by_the_lower_validation_mae():
    from keras_distill.pipeline import select_student

    name, reason = select_student(regression_info("student_baseline", 0.60, 0.55),
                                  regression_info("student_distilled", 0.62, 0.57))
    assert name == "student_baseline"
    assert reason.startswith("The baseline did better, so it is exported: validation MAE "
                             "0.6200 distilled vs 0.6000 baseline (student trained alone; lower "
                             "is better).")
    name, reason = select_student(regression_info("student_baseline", 0.60, 0.50),
                                  regression_info("student_distilled", 0.58, 0.52))
    assert name == "student_distilled"
    assert "on the test split the baseline student scored lower (0.5000 vs 0.5200; lower is " \
           "better)" in reason
    name, reason = select_student(regression_info("student_baseline", 0.6, None, 0.10),
                                  regression_info("student_distilled", 0.6, None, 0.20))
    assert name == "student_baseline"
    assert "the baseline student is closer to the teacher on validation (0.1000 vs " \
           "0.2000)" in reason
