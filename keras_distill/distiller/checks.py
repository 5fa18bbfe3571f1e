"""The Distiller's argument checks: each raises a ValueError naming the value and the fix."""

from __future__ import annotations

import keras

from keras_distill import outputs as outputs_lib
from keras_distill import teachers as teachers_lib
from keras_distill.graph import model_shape, shapes_compatible


def keras_and_file_teacher(teacher, teacher_weights, teacher_average):
    """``(Keras teacher or None, FileTeacher or None)`` from the ``teacher`` argument."""
    if isinstance(teacher, (list, tuple)):
        teacher = teachers_lib.Ensemble(teacher, weights=teacher_weights,
                                        average=teacher_average, name="teacher_ensemble")
    elif teacher_weights is not None:
        raise ValueError("teacher_weights is for a list of teachers; got one teacher.")
    if isinstance(teacher, teachers_lib.FileTeacher):
        return None, teacher
    if teacher is not None and not isinstance(teacher, keras.layers.Layer):
        raise ValueError(
            f"teacher must be a keras.Model, a list of models, a "
            f"keras_distill.teachers.FileTeacher or None; got {type(teacher).__name__}.")
    return teacher, None


def checked_alpha(alpha):
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}.") from None
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"alpha must be in [0, 1] (the weight of the loss on true labels; 0 = distill "
            f"only, 1 = ignore the teacher); got {alpha!r}."
        )
    return alpha


#: Output names the Distiller refuses: they are the keys of the cached-outputs carrier.
RESERVED_OUTPUT_NAMES = (teachers_lib.LABELS_KEY, teachers_lib.TEACHER_OUTPUTS_KEY)


def unique_names(names):
    """``names`` with repeats numbered: ``kl, kl`` -> ``kl, kl_1``."""
    seen, out = {}, []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out


def check_models(teacher, student):
    """Teacher and student read the same inputs and give outputs of the same shapes (and
    names, for several outputs); else a ValueError naming both."""
    t_in, s_in = model_shape(teacher, "input_shape"), model_shape(student, "input_shape")
    if not shapes_compatible(t_in, s_in):
        raise ValueError(
            f"teacher and student take different inputs: teacher input shape {t_in}, "
            f"student input shape {s_in}. Both must read the same data."
        )
    t_outs = outputs_lib._names_and_shapes(teacher)
    s_outs = outputs_lib._names_and_shapes(student)
    if len(s_outs) > 1 or len(t_outs) > 1:
        if len(t_outs) != len(s_outs) or (
                isinstance(getattr(student, "_outputs_struct", None), dict)
                and [n for n, _ in t_outs] != [n for n, _ in s_outs]):
            raise ValueError(
                f"teacher and student have different outputs: teacher {dict(t_outs)}, "
                f"student {dict(s_outs)}. Give the student the teacher's outputs, with "
                "the same names.")
        for (name, t_shape), (_, s_shape) in zip(t_outs, s_outs):
            if not shapes_compatible(t_shape, s_shape):
                raise ValueError(
                    f"teacher and student disagree on the output {name!r}: teacher shape "
                    f"{t_shape}, student shape {s_shape}.")
        return
    t_out, s_out = model_shape(teacher, "output_shape"), model_shape(student, "output_shape")
    if not shapes_compatible(t_out, s_out):
        raise ValueError(
            f"teacher and student disagree on the outputs: teacher output shape {t_out}, "
            f"student output shape {s_out}. Give the student one logit per teacher class."
        )

def check_student_outputs(student, names, task):
    """The student outputs logits: no final softmax or sigmoid (but on a declared regression
    output), and no output named like the keys of the cached-outputs carrier."""
    reserved = sorted(set(names) & set(RESERVED_OUTPUT_NAMES))
    if reserved:
        raise ValueError(
            f"The student has outputs named {reserved}: those names mark cached teacher "
            "outputs in the targets ({'labels': ..., 'teacher_outputs': ...}). Rename the "
            "outputs (the keys of the model's output dict, or their layers).")
    declared = outputs_lib.per_output(
        task if isinstance(task, dict) else {n: task for n in names}, names, "task")
    for name, activation, kind in zip(names, outputs_lib.activations(student), declared):
        if activation is None or kind == outputs_lib.REGRESSION:
            continue
        raise ValueError(
            f"The student {student.name!r} ends in a {activation} (output {name!r}), but "
            f"distillation needs its logits. Remove the {activation} from its last layer "
            f"(e.g. Dense(n) instead of Dense(n, activation='{activation}')); apply "
            f"{activation} at inference if needed.")


def check_student(student, teacher):
    if not isinstance(student, keras.Model):
        raise ValueError(  # noqa: TRY004 (a ValueError, as for every other argument)
            f"student must be a keras.Model; got {type(student).__name__}.")
    if teacher is student:
        raise ValueError("teacher and student are the same model; pass two models.")
    if getattr(student, "built", False) and not student.trainable_weights:
        raise ValueError(
            f"The student {student.name!r} has no trainable weights (is "
            "student.trainable False, e.g. copied from a frozen teacher?). Set "
            "student.trainable = True before distilling.")


def check_augmentation(augment, mixup):
    if not isinstance(mixup, (int, float)) or mixup < 0:
        raise ValueError(f"mixup must be a number >= 0 (0 turns it off); got {mixup!r}.")
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be a function or a Keras layer; got {augment!r}.")


def label_error(err):
    """A ValueError for a streamed batch whose class index is out of range (NumPy labels are
    checked before training; a dataset's only when the loss meets them)."""
    import re

    match = re.search(r"Received a label value of (-?\d+) which is outside the valid range "
                      r"of \[0, (\d+)\)", str(err))
    if match is None:
        return None
    value, classes = int(match.group(1)), int(match.group(2))
    return ValueError(
        f"fit: a batch of the dataset has the class index {value}, outside [0, {classes - 1}] "
        f"(the output has {classes} classes; -1 marks an unlabeled sample). Fix the labels, "
        "or give the output one unit per class.")
