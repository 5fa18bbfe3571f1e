"""Distillation quality on the bundled digits data: test accuracy, mean ± std over seeds.

Sections (``--section``, default all):
- ``losses``: the teacher; the student trained alone; the same student distilled with each
  loss. The student is deliberately small (a 4-filter CNN, ~1.6k parameters, 40x fewer than the
  teacher) so that what the teacher adds is visible.
- ``teachers``: a student distilled from an ensemble of three teachers versus from the best
  single one; with 20% of the labels, a student distilled on the labeled part only versus on
  the labeled part plus the other 80% as unlabeled inputs; with and without augmentation.
- ``students``: a shrunk teacher distilled from random init versus from transferred weights; a
  linear student alone versus distilled; int8 accuracy after post-training quantization versus
  after quantization-aware distillation; a 50%-pruned student versus the dense one.

    python bench/distill_quality.py                       # 3 seeds, ~12 minutes on 2 cores
    python bench/distill_quality.py --section losses --seeds 1
"""

import argparse
import time

import keras
import numpy as np
from common import (
    accuracy,
    distill,
    int8_accuracy,
    mean_std,
    print_table,
    train_alone,
    train_teacher,
)

from keras_distill import losses
from keras_distill.data import load_digits
from keras_distill.presets import student_cnn
from keras_distill.teachers import Ensemble

LOSS_ROWS = {
    "distilled: SoftTargetKL (T=4, default)": dict(),
    "distilled: HardTargetCE": dict(losses=[losses.HardTargetCE()]),
    "distilled: LogitMSE": dict(losses=[losses.LogitMSE()]),
    "distilled: DecoupledKD (alpha=1, beta=8)": dict(losses=[losses.DecoupledKD()]),
    "distilled: SoftTargetKL + FeatureHint(relu3 <- conv2)": dict(
        losses=[losses.SoftTargetKL(), losses.FeatureHint("relu3", "conv2")],
        loss_weights=[1.0, 1.0]),
}


def section_losses(data, seed, args, results, make_student):
    teacher = train_teacher(data, seed)
    results["teacher (teacher_cnn, 65.8k params)"].append(
        accuracy(teacher, data.x_test, data.y_test))
    alone = train_alone(make_student, data, seed, args.epochs)
    results["student alone"].append(accuracy(alone, data.x_test, data.y_test))
    for name, kwargs in LOSS_ROWS.items():
        student = distill(teacher, make_student, data, seed, args.epochs, **kwargs)
        results[name].append(accuracy(student, data.x_test, data.y_test))


def section_teachers(data, seed, args, results, make_student):
    teachers = [train_teacher(data, seed + 100 * i, width=w) for i, w in enumerate((32, 16, 8))]
    accs = [accuracy(t, data.x_test, data.y_test) for t in teachers]
    best = teachers[int(np.argmax([accuracy(t, data.x_val, data.y_val) for t in teachers]))]
    ensemble = Ensemble(teachers)
    results["best single teacher (by validation)"].append(accuracy(best, data.x_test,
                                                                   data.y_test))
    results["ensemble of 3 teachers (widths 32, 16, 8)"].append(
        accuracy(ensemble, data.x_test, data.y_test))
    results["  mean of the 3 members"].append(float(np.mean(accs)))
    for name, teacher in (("student distilled from the best single teacher", best),
                          ("student distilled from the ensemble of 3", ensemble)):
        student = distill(teacher, make_student, data, seed, args.epochs)
        results[name].append(accuracy(student, data.x_test, data.y_test))

    # 20% of the training labels; the rest as unlabeled inputs (label -1).
    rng = np.random.default_rng(seed)
    labeled = rng.permutation(len(data.x_train))[: len(data.x_train) // 5]
    few = type(data)(data.x_train[labeled], data.y_train[labeled], data.x_val, data.y_val,
                     data.x_test, data.y_test, data.num_classes, data.class_names, "digits-20%")
    teacher = train_teacher(few, seed, epochs=40)
    results["20% labels: teacher"].append(accuracy(teacher, data.x_test, data.y_test))
    alone = train_alone(make_student, few, seed, args.epochs * 3)
    results["20% labels: student alone"].append(accuracy(alone, data.x_test, data.y_test))
    student = distill(teacher, make_student, few, seed, args.epochs * 3)
    results["20% labels: distilled on the labeled 20%"].append(
        accuracy(student, data.x_test, data.y_test))
    y_mixed = np.full(len(data.y_train), -1, "int32")
    y_mixed[labeled] = data.y_train[labeled]
    mixed = type(data)(data.x_train, y_mixed, data.x_val, data.y_val, data.x_test, data.y_test,
                       data.num_classes, data.class_names, "digits-mixed")
    student = distill(teacher, make_student, mixed, seed, args.epochs)
    results["20% labels: distilled on labeled 20% + unlabeled 80%"].append(
        accuracy(student, data.x_test, data.y_test))

    # Consistent augmentation (the same augmented batch for teacher and student).
    teacher = teachers[0]
    plain = distill(teacher, make_student, data, seed, args.epochs)
    results["distilled, no augmentation"].append(accuracy(plain, data.x_test, data.y_test))
    augment = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", seed=seed)
    aug = distill(teacher, make_student, data, seed, args.epochs * 2, augment=augment)
    results["distilled, random translation (±1 px), 2x epochs"].append(
        accuracy(aug, data.x_test, data.y_test))
    mix = distill(teacher, make_student, data, seed, args.epochs * 2, augment=augment,
                  mixup=0.2)
    results["distilled, translation + mixup 0.2, 2x epochs"].append(
        accuracy(mix, data.x_test, data.y_test))


def section_students(data, seed, args, results, make_student):
    from keras_distill import students
    from keras_distill.compress import prune, quantize_aware, sparsity_report, strip_pruning

    teacher = train_teacher(data, seed)

    # Structure and parameter transfer: a teacher shrunk to a quarter of its width.
    def shrunk(method=None):
        def make():
            student = students.shrink(teacher, width=0.25, name="shrunk")
            if method:
                students.transfer_weights(teacher, student, method=method)
            return student
        return make

    params = shrunk()().count_params()
    label = f"shrink(teacher, 0.25) ({params:,} params), distilled {args.epochs // 3} epochs"
    for method, row in ((None, "random init"), ("select", 'transfer "select"'),
                        ("first", 'transfer "first"')):
        student = distill(teacher, shrunk(method), data, seed, args.epochs // 3)
        results[f"{label}: {row}"].append(accuracy(student, data.x_test, data.y_test))

    # Simple students.
    def linear():
        return students.linear(data.input_shape, data.num_classes)

    alone = train_alone(linear, data, seed, args.epochs)
    results["linear student (650 params): alone"].append(
        accuracy(alone, data.x_test, data.y_test))
    student = distill(teacher, linear, data, seed, args.epochs)
    results["linear student: distilled"].append(accuracy(student, data.x_test, data.y_test))

    # int8 after post-training quantization versus after quantization-aware distillation.
    dense = distill(teacher, make_student, data, seed, args.epochs)
    results["student: distilled, float32 (Keras)"].append(
        accuracy(dense, data.x_test, data.y_test))
    results["student: distilled, then PTQ int8 (TFLite)"].append(int8_accuracy(dense, data))

    q = distill(teacher, lambda: quantize_aware(dense), data, seed, 5, lr=3e-4)
    results["student: distilled, then 5 epochs QAT distillation, int8 (TFLite)"].append(
        int8_accuracy(q, data, representative=False))

    # 50% magnitude pruning while distilling further: the distilled dense student, pruned
    # gradually over 10 more epochs of distillation (prune-while-fine-tuning); for this
    # section's student and for the CLI's default student (width 8).
    def pruned_vs_dense(dense, label):
        copy = keras.models.clone_model(dense)
        copy.set_weights(dense.get_weights())
        model, callback = prune(copy, target_sparsity=0.5)
        student = distill(teacher, lambda: model, data, seed, 10, lr=1e-3,
                          callbacks=[callback])
        plain = strip_pruning(student, callback)
        results[f"{label}: distilled, then 10 epochs distillation with 50% pruning"].append(
            accuracy(plain, data.x_test, data.y_test))
        results[f"  ({label}: measured sparsity)"].append(sparsity_report(plain).overall)

    pruned_vs_dense(dense, "student")
    wide = distill(teacher, lambda: student_cnn(data.input_shape, data.num_classes, width=8),
                   data, seed, args.epochs)
    results["student width 8 (3,818 params): distilled, dense"].append(
        accuracy(wide, data.x_test, data.y_test))
    pruned_vs_dense(wide, "student width 8")


SECTIONS = {"losses": section_losses, "teachers": section_teachers,
            "students": section_students}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=int, default=4, help="student conv width")
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    args = parser.parse_args()

    data = load_digits(seed=0)

    def make_student():
        return student_cnn(data.input_shape, data.num_classes, width=args.width)

    params = make_student().count_params()
    for name, section in SECTIONS.items():
        if args.section not in (name, "all"):
            continue
        results = _Results()
        start = time.time()
        for seed in range(args.seeds):
            section(data, seed, args, results, make_student)
        print(f"\n## {name}\n\n{data.summary()}; {args.seeds} seeds; {args.epochs} epochs per "
              f"student unless noted; student {params:,} params; {time.time() - start:.0f} s\n")
        print_table(["model", "test accuracy % (mean ± std)"],
                    [[row, mean_std(values)] for row, values in results.items()])


class _Results(dict):
    def __missing__(self, key):
        self[key] = []
        return self[key]


if __name__ == "__main__":
    main()
