"""Distillation quality per output kind: test metrics, mean ± std over seeds.

Sections on the bundled digits (multi-class; ``--section``, default all):
- ``losses``: the teacher; the student trained alone; the same student distilled with each
  loss. The student is deliberately small (a 4-filter CNN, ~1.6k parameters, 40x fewer than the
  teacher) so that what the teacher adds is visible.
- ``teachers``: a student distilled from an ensemble of three teachers versus from the best
  single one; with 20% of the labels, a student distilled on the labeled part only versus on
  the labeled part plus the other 80% as unlabeled inputs; with and without augmentation.
- ``students``: a shrunk teacher distilled from random init versus from transferred weights; a
  linear student alone versus distilled; int8 accuracy after post-training quantization versus
  after quantization-aware distillation; a 50%-pruned student versus the dense one.
- ``ensemble``: one student alone; an ensemble of three such students
  (``students.ensemble``, one Functional model averaging the members' logits) trained alone
  on the labels and distilled with the Distiller's defaults; one wider student_cnn of about
  the ensemble's parameter count (the width with the closest count) distilled. All with the
  same epochs, Adam 3e-3 and batch 64 as the other digits sections.

Sections of the other output kinds, each on its own data, with three rows: the teacher; the
student trained alone on the labels; the same student distilled by ``Distiller(task=...)``
with the kind's default loss. Both students of a section have the same architecture, seed,
optimizer (Adam, lr 3e-3), batch size and number of passes over the training split (no early
stopping). Teachers train for at most 200 passes with early stopping on the validation loss
(checked every 5 passes, patience 20 passes, best weights kept). One Keras epoch is 5 passes
(the training arrays tiled 5x, ``common.tiled``): on these small sets Keras's fixed cost per
epoch would otherwise outweigh the steps. Test metrics are on the held-out test split;
"agreement" is the fraction of test predictions (samples, labels or positions) equal to the
teacher's. The generated sets use data seed 0; the seeds vary the models' initialization and
the order of the batches.
- ``binary``: bundled breast_cancer (569 samples, 30 standardized features); teacher_mlp with
  one logit (6,209 params) versus student_mlp(units=4) (129 params). Distilled with
  BernoulliKL, T=4, alpha=0.1. Metrics: accuracy, ROC AUC, agreement (logit > 0).
- ``regression``: bundled diabetes (442 samples, 10 features, z-scored target); teacher_mlp
  with one output (4,929 params) versus student_mlp(units=4) (49 params). Distilled with
  LogitMSE (MSE to the teacher's outputs), alpha=0.5 (no temperature). Metrics: MAE and RMSE
  in the target's original units (de-standardized with ``target_scale``), R² against the
  labels and R² against the teacher's test outputs.
- ``multilabel``: generated (``kinds_data.make_multilabel``: 4,000 samples of 12 features from
  a 4-component Gaussian mixture, 6 labels that are nonlinear functions of the inputs, 10% of
  the labels flipped, the test labels too); teacher_mlp with 6 logits (5,382 params) versus
  student_mlp(units=8) (158 params). Distilled with BernoulliKL, T=4, alpha=0.1. Metrics:
  per-label accuracy (mean over labels), micro-F1, per-label agreement.
- ``sequence``: generated tagging (``kinds_data.make_tagging``: 3,000 one-hot token sequences,
  16 tokens, 24 steps, lengths 8-24 padded with label −1; 6 tags, each a function of the
  token's ±2 neighbours, 10% random tags); a Conv1D teacher (Conv1D 64×5, Conv1D 64×3, Dense;
  17,926 params) versus a Conv1D student (Conv1D 8×5, Dense; 702 params). Distilled with
  SoftTargetKL per position, T=4, alpha=0.1, averaged over the valid positions. Metrics:
  per-position accuracy and agreement, over valid (non-padded) positions.

Distillation settings were fixed once, before any run, from the usual defaults (Hinton et al.,
2015: T=4 and a small weight on the labels, alpha=0.1, as the Distiller's defaults and the
digits sections). Regression has no temperature and no dark knowledge to soften, so its labels
and the teacher's outputs get equal weight (alpha=0.5). They were not tuned: where
distillation does not help, the tables say so. (Training lengths were shortened once, for run
time, identically for both students.)

    python bench/distill_quality.py                       # all sections, 3 seeds: 25 min
                                                          # on 2 busy cores (digits 19 min),
                                                          # measured before the ensemble
                                                          # section (about 2.5 min more)
    python bench/distill_quality.py --section ensemble --seeds 5   # 4 min on 2 busy cores
    python bench/distill_quality.py --section losses --seeds 1
    python bench/distill_quality.py --section binary      # one output kind alone

``--epochs`` and ``--width`` apply to the digits sections (losses, teachers, students,
ensemble) only; ``--seeds`` to every section.
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
    outputs,
    print_table,
    tiled,
    train_alone,
    train_on_labels,
    train_teacher,
)
from kinds_data import make_multilabel, make_tagging

from keras_distill import losses
from keras_distill.data import load_breast_cancer, load_diabetes, load_digits
from keras_distill.presets import student_cnn, student_mlp, teacher_mlp
from keras_distill.teachers import Ensemble

LOSS_ROWS = {
    "distilled: SoftTargetKL (T=4, default)": {},
    "distilled: HardTargetCE": {"losses": [losses.HardTargetCE()]},
    "distilled: LogitMSE": {"losses": [losses.LogitMSE()]},
    "distilled: DecoupledKD (alpha=1, beta=8)": {"losses": [losses.DecoupledKD()]},
    "distilled: SoftTargetKL + FeatureHint(relu3 <- conv2)": {
        "losses": [losses.SoftTargetKL(), losses.FeatureHint("relu3", "conv2")],
        "loss_weights": [1.0, 1.0]},
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


ENSEMBLE_SIZE = 3


def section_ensemble(data, seed, args, results, make_student):
    from keras_distill import students

    teacher = train_teacher(data, seed)
    single = make_student().count_params()
    total = ENSEMBLE_SIZE * single
    wide = _closest_width(data, total)
    wide_params = student_cnn(data.input_shape, data.num_classes, width=wide).count_params()

    def make_ensemble():
        return students.ensemble([
            student_cnn(data.input_shape, data.num_classes, width=args.width, name=f"s{i}")
            for i in range(ENSEMBLE_SIZE)])

    def make_wide():
        return student_cnn(data.input_shape, data.num_classes, width=wide)

    members = f"ensemble of {ENSEMBLE_SIZE} x width {args.width} ({total:,} params)"
    alone = train_alone(make_student, data, seed, args.epochs)
    results[f"one student width {args.width} ({single:,} params): alone"].append(
        accuracy(alone, data.x_test, data.y_test))
    alone = train_alone(make_ensemble, data, seed, args.epochs)
    results[f"{members}: alone"].append(accuracy(alone, data.x_test, data.y_test))
    student = distill(teacher, make_ensemble, data, seed, args.epochs)
    results[f"{members}: distilled"].append(accuracy(student, data.x_test, data.y_test))
    student = distill(teacher, make_wide, data, seed, args.epochs)
    results[f"one student width {wide} ({wide_params:,} params): distilled"].append(
        accuracy(student, data.x_test, data.y_test))


def _closest_width(data, params):
    """The student_cnn width whose parameter count is closest to ``params`` (the count grows
    with the width: the search stops at the first width past it)."""
    width, below = 1, None
    while True:
        count = student_cnn(data.input_shape, data.num_classes, width=width).count_params()
        if count >= params:
            return width if below is None or count - params < params - below else width - 1
        width, below = width + 1, count


DIGITS_SECTIONS = {"losses": section_losses, "teachers": section_teachers,
                   "students": section_students, "ensemble": section_ensemble}


# --------------------------------------------------------------------------------------------
# The other output kinds: teacher, student alone, student distilled
# --------------------------------------------------------------------------------------------

#: The settings of each kind's section, fixed up front (see the module docstring). Lengths
#: are in passes over the training split; a Keras epoch is PASSES_PER_EPOCH of them.
KIND_SETTINGS = {
    "binary": {"passes": 60, "teacher_passes": 200, "batch_size": 32, "alpha": 0.1,
               "temperature": 4.0, "student_units": 4},
    "regression": {"passes": 60, "teacher_passes": 200, "batch_size": 32, "alpha": 0.5,
                   "student_units": 4},
    "multilabel": {"passes": 60, "teacher_passes": 200, "batch_size": 64, "alpha": 0.1,
                   "temperature": 4.0, "student_units": 8},
    "sequence": {"passes": 40, "teacher_passes": 200, "batch_size": 64, "alpha": 0.1,
                 "temperature": 4.0},
}
LR = 3e-3
PASSES_PER_EPOCH = 5
PATIENCE = 4  # epochs: 20 passes


def _kind_models(data, seed, kind, make_teacher, make_student, label_loss):
    """The section's three models: teacher, student alone, student distilled."""
    s = KIND_SETTINGS[kind]
    train = tiled(data, PASSES_PER_EPOCH)
    teacher = train_on_labels(make_teacher, train, seed,
                              s["teacher_passes"] // PASSES_PER_EPOCH, label_loss,
                              batch_size=s["batch_size"], lr=LR, patience=PATIENCE)
    epochs = s["passes"] // PASSES_PER_EPOCH
    alone = train_on_labels(make_student, train, seed, epochs, label_loss,
                            batch_size=s["batch_size"], lr=LR)
    task = "multiclass" if kind == "sequence" else kind
    options = {k: s[k] for k in ("alpha", "temperature") if k in s}
    distilled = distill(teacher, make_student, train, seed, epochs,
                        batch_size=s["batch_size"], lr=LR, metrics=None, task=task, **options)
    return teacher, alone, distilled


def _rows(kind, teacher, student, loss_name):
    s = KIND_SETTINGS[kind]
    t = f", T={s['temperature']:g}" if "temperature" in s else ""
    return (f"teacher ({teacher.count_params():,} params)",
            f"student alone ({student.count_params():,} params)",
            f"student distilled ({loss_name}{t}, alpha={s['alpha']:g})")


def section_binary(data, seed, results):
    from sklearn.metrics import roc_auc_score

    def make_teacher():
        return teacher_mlp(data.input_shape, 1)

    def make_student():
        return student_mlp(data.input_shape, 1, units=KIND_SETTINGS["binary"]["student_units"])

    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    models = _kind_models(data, seed, "binary", make_teacher, make_student, bce)
    logits = [outputs(m, data.x_test)[:, 0] for m in models]
    y = data.y_test
    for row, z in zip(_rows("binary", models[0], models[1], "BernoulliKL"), logits):
        results[row]["accuracy %"].append(float(((z > 0) == y).mean()))
        results[row]["ROC AUC %"].append(float(roc_auc_score(y, z)))
        if z is not logits[0]:
            results[row]["agreement with teacher %"].append(
                float(((z > 0) == (logits[0] > 0)).mean()))


def section_regression(data, seed, results):
    def make_teacher():
        return teacher_mlp(data.input_shape, 1)

    def make_student():
        return student_mlp(data.input_shape, 1,
                           units=KIND_SETTINGS["regression"]["student_units"])

    models = _kind_models(data, seed, "regression", make_teacher, make_student,
                          keras.losses.MeanSquaredError())
    _, std = data.target_scale
    preds = [outputs(m, data.x_test)[:, 0] for m in models]
    y = data.y_test
    for row, p in zip(_rows("regression", models[0], models[1], "LogitMSE"), preds):
        results[row]["MAE (original units)"].append(float(np.abs(p - y).mean() * std))
        results[row]["RMSE (original units)"].append(float(np.sqrt(((p - y) ** 2).mean()) * std))
        results[row]["R² vs labels"].append(_r2(y, p))
        if p is not preds[0]:
            results[row]["R² vs teacher outputs"].append(_r2(preds[0], p))


def _r2(target, prediction):
    return float(1.0 - ((prediction - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())


def section_multilabel(data, seed, results):
    from sklearn.metrics import f1_score

    units = data.output_units

    def make_teacher():
        return teacher_mlp(data.input_shape, units)

    def make_student():
        return student_mlp(data.input_shape, units,
                           units=KIND_SETTINGS["multilabel"]["student_units"])

    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    models = _kind_models(data, seed, "multilabel", make_teacher, make_student, bce)
    predicted = [outputs(m, data.x_test) > 0 for m in models]
    y = data.y_test > 0.5
    for row, p in zip(_rows("multilabel", models[0], models[1], "BernoulliKL"), predicted):
        results[row]["per-label accuracy %"].append(float((p == y).mean()))
        results[row]["micro-F1 %"].append(float(f1_score(y, p, average="micro")))
        if p is not predicted[0]:
            results[row]["per-label agreement with teacher %"].append(
                float((p == predicted[0]).mean()))


def conv_tagger(input_shape, tags, layers_spec, name):
    """A Conv1D tagger: ``(steps, features)`` -> ``(steps, tags)`` logits; ``layers_spec`` is
    ``[(filters, kernel size)]``, each a ReLU "same" convolution."""
    inputs = keras.Input(shape=input_shape, name="tokens")
    x = inputs
    for i, (filters, kernel) in enumerate(layers_spec):
        x = keras.layers.Conv1D(filters, kernel, padding="same", activation="relu",
                                name=f"conv{i + 1}")(x)
    return keras.Model(inputs, keras.layers.Dense(tags, name="logits")(x), name=name)


def section_sequence(data, seed, results):
    tags = data.num_classes

    def make_teacher():
        return conv_tagger(data.input_shape, tags, [(64, 5), (64, 3)], "teacher_tagger")

    def make_student():
        return conv_tagger(data.input_shape, tags, [(8, 5)], "student_tagger")

    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    models = _kind_models(data, seed, "sequence", make_teacher, make_student, ce)
    tagged = [outputs(m, data.x_test).argmax(-1) for m in models]
    valid = data.y_test >= 0
    for row, p in zip(_rows("sequence", models[0], models[1], "SoftTargetKL"), tagged):
        results[row]["per-position accuracy %"].append(float((p == data.y_test)[valid].mean()))
        if p is not tagged[0]:
            results[row]["per-position agreement with teacher %"].append(
                float((p == tagged[0])[valid].mean()))


KIND_SECTIONS = {
    "binary": (section_binary, load_breast_cancer),
    "regression": (section_regression, load_diabetes),
    "multilabel": (section_multilabel, make_multilabel),
    "sequence": (section_sequence, make_tagging),
}
#: Columns that are not fractions (printed as they are, not as percentages).
_PLAIN_COLUMNS = {"MAE (original units)": (1, 1), "RMSE (original units)": (1, 1),
                  "R² vs labels": (1, 3), "R² vs teacher outputs": (1, 3)}


def run_kind_section(name, seeds):
    section, load = KIND_SECTIONS[name]
    data = load(seed=0)
    results = _Table()
    start = time.time()
    for seed in range(seeds):
        section(data, seed, results)
    s = KIND_SETTINGS[name]
    epochs = (f"students {s['passes']} passes over the training split, teacher at most "
              f"{s['teacher_passes']} (early stopping, patience "
              f"{PATIENCE * PASSES_PER_EPOCH}); Adam {LR:g}, batch {s['batch_size']}")
    extra = ""
    if name == "sequence":
        extra = (f"; {int((data.y_test >= 0).sum()):,} valid test positions of "
                 f"{data.y_test.size:,}")
    if name == "regression":
        extra = f"; target std {data.target_scale[1]:.1f} (original units)"
    print(f"\n## {name}\n\n{data.summary()}{extra}; {seeds} seeds; {epochs}; "
          f"{time.time() - start:.0f} s\n")
    columns = list(dict.fromkeys(c for metrics in results.values() for c in metrics))
    rows = []
    for row, metrics in results.items():
        cells = []
        for column in columns:
            scale, digits = _PLAIN_COLUMNS.get(column, (100, 1))
            cells.append(mean_std(metrics.get(column, []), scale=scale, digits=digits))
        rows.append([row, *cells])
    print_table(["model", *columns], rows)


SECTIONS = [*DIGITS_SECTIONS, *KIND_SECTIONS]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30,
                        help="epochs per digits student (losses, teachers, students, ensemble)")
    parser.add_argument("--width", type=int, default=4, help="digits student conv width")
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    args = parser.parse_args()

    total = time.time()
    if args.section in (*DIGITS_SECTIONS, "all"):
        run_digits_sections(args)
    for name in KIND_SECTIONS:
        if args.section in (name, "all"):
            run_kind_section(name, args.seeds)
    print(f"\ntotal {time.time() - total:.0f} s")


def run_digits_sections(args):
    data = load_digits(seed=0)

    def make_student():
        return student_cnn(data.input_shape, data.num_classes, width=args.width)

    params = make_student().count_params()
    for name, section in DIGITS_SECTIONS.items():
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


class _Table(dict):
    """Row -> column -> values, created on first use."""

    def __missing__(self, key):
        self[key] = _Results()
        return self[key]


if __name__ == "__main__":
    main()
