"""The run's note on what distillation gained, and why not when it gained nothing
(keras_distill.pipeline.students.gain_note)."""

from keras_distill.pipeline.results import ModelInfo
from keras_distill.pipeline.students import LOW_AGREEMENT, gain_note


def _models(teacher, alone, distilled, task="multiclass"):
    return (ModelInfo("teacher", None, task=task, val_accuracy=teacher),
            ModelInfo("student_baseline", None, task=task, val_accuracy=alone),
            ModelInfo("student_distilled", None, task=task, val_accuracy=distilled))


def test_a_gain_is_the_fraction_of_the_gap_recovered():
    note = gain_note(*_models(0.99, 0.95, 0.97))
    assert note.startswith("Distillation recovered 50% of the gap")
    assert "teacher 0.9900, student alone 0.9500, distilled 0.9700" in note


def test_a_teacher_barely_better_than_the_student_is_named():
    note = gain_note(*_models(0.965, 0.96, 0.955), train_agreement=0.99)
    assert note.startswith("Distillation gained nothing")
    assert "only 0.5 points above the student alone" in note
    assert "capacity" not in note


def test_a_student_that_cannot_follow_the_teacher_is_named():
    note = gain_note(*_models(0.99, 0.96, 0.95), train_agreement=LOW_AGREEMENT - 0.1)
    assert "reproduces the teacher's labels on only 85.0% of its own training inputs" in note
    assert "teacher assistant" in note and "little to teach" not in note


def test_no_measured_cause_says_so_and_regression_has_no_gap_note():
    assert "neither a small teacher margin nor a lack of capacity" in gain_note(
        *_models(0.99, 0.96, 0.95), train_agreement=0.99)
    regression = [ModelInfo(n, None, task="regression", val_scores={"mae": v})
                  for n, v in (("teacher", 0.1), ("student_baseline", 0.3),
                               ("student_distilled", 0.2))]
    assert gain_note(*regression) is None  # lower is better: no fraction of a gap yet


def test_the_agreement_is_measured_only_when_distillation_gained_nothing():
    def never():
        raise AssertionError("measured although distillation gained")

    assert gain_note(*_models(0.99, 0.95, 0.97), train_agreement=never).startswith(
        "Distillation recovered")
    note = gain_note(*_models(0.99, 0.96, 0.95), train_agreement=lambda: 0.5)
    assert "on only 50.0% of its own training inputs" in note
