"""Distillation quality on the bundled digits data: test accuracy, mean ± std over seeds.

Rows: the teacher; the student trained alone; the same student distilled with each loss.
The student is deliberately small (a 4-filter CNN, ~1.6k parameters, 40x fewer than the
teacher) so that what the teacher adds is visible.

    python bench/distill_quality.py            # 3 seeds, about 4 minutes on 2 cores
    python bench/distill_quality.py --seeds 1  # quicker
"""

import argparse
import time

from common import accuracy, distill, mean_std, print_table, train_alone, train_teacher

from keras_distill import losses
from keras_distill.data import load_digits
from keras_distill.presets import student_cnn

ROWS = {
    "distilled: SoftTargetKL (T=4, default)": dict(),
    "distilled: HardTargetCE": dict(losses=[losses.HardTargetCE()]),
    "distilled: LogitMSE": dict(losses=[losses.LogitMSE()]),
    "distilled: DecoupledKD (alpha=1, beta=8)": dict(losses=[losses.DecoupledKD()]),
    "distilled: SoftTargetKL + FeatureHint(relu3 <- conv2)": dict(
        losses=[losses.SoftTargetKL(), losses.FeatureHint("relu3", "conv2")],
        loss_weights=[1.0, 1.0]),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=int, default=4, help="student conv width")
    args = parser.parse_args()

    data = load_digits(seed=0)
    results = {"teacher (teacher_cnn)": [], "student alone": []}
    results.update({name: [] for name in ROWS})
    params = {}
    start = time.time()
    for seed in range(args.seeds):
        teacher = train_teacher(data, seed)
        params["teacher (teacher_cnn)"] = teacher.count_params()
        results["teacher (teacher_cnn)"].append(accuracy(teacher, data.x_test, data.y_test))

        def make_student():
            return student_cnn(data.input_shape, data.num_classes, width=args.width)

        alone = train_alone(make_student, data, seed, args.epochs)
        results["student alone"].append(accuracy(alone, data.x_test, data.y_test))
        for name, kwargs in ROWS.items():
            student = distill(teacher, make_student, data, seed, args.epochs, **kwargs)
            results[name].append(accuracy(student, data.x_test, data.y_test))
        params["student"] = alone.count_params()

    print(f"\n{data.summary()}; {args.seeds} seeds; {args.epochs} epochs per student; "
          f"teacher {params['teacher (teacher_cnn)']:,} params, student {params['student']:,} "
          f"params; {time.time() - start:.0f} s\n")
    print_table(["model", "test accuracy % (mean ± std)"],
                [[name, mean_std(values)] for name, values in results.items()])


if __name__ == "__main__":
    main()
