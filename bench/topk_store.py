"""Top-k teacher-output store: size against full float32, and the accuracy cost of top-k, on the
bundled digits (10 classes).

For each seed: trains ``teacher_cnn`` on the digits, writes its outputs on the training split
to a store in full (float32) and as top-k for several k (``keras_distill.store.write``, at the
Distiller's temperature T = 4), then distills the same ``student_cnn`` from each store
(``Distiller(None, student).fit(..., cache_teacher=<store>)``) and measures test accuracy.
It also measures the loss error of the top-k representation at other temperatures than the
stored one: ``SoftTargetKL(T')`` on the decoded top-k outputs against the same loss on the
full outputs, with a student trained alone as the student's logits (relative error, mean over
the training split).

    python bench/topk_store.py             # 3 seeds, ~5 minutes on 2 cores
    python bench/topk_store.py --seeds 1 --epochs 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras
import numpy as np
from common import accuracy, mean_std, print_table, sparse_ce, train_alone, train_teacher

from keras_distill import Distiller, store
from keras_distill.data import load_digits
from keras_distill.losses import SoftTargetKL
from keras_distill.presets import student_cnn
from keras_distill.store import topk

STORED_T = 4.0
KS = (1, 2, 3, 5)


def distill_from(path, data, seed, epochs):
    keras.utils.set_random_seed(seed)
    student = student_cnn(data.input_shape, data.num_classes)
    d = Distiller(None, student, temperature=STORED_T, alpha=0.1)
    d.compile(keras.optimizers.Adam(3e-3), loss=sparse_ce())
    d.fit(data.x_train, data.y_train, cache_teacher=path, epochs=epochs, batch_size=64,
          verbose=0)
    return accuracy(student, data.x_test, data.y_test)


def loss_errors(teacher_logits, student_logits, k, temperatures):
    """Relative error of SoftTargetKL(T') on top-k (stored at STORED_T) against full outputs."""
    decoded = topk.decode(topk.encode(teacher_logits, k, STORED_T), teacher_logits.shape[1],
                          STORED_T)
    restricted = topk.restricted(teacher_logits, k, STORED_T)
    q = keras.ops.log_softmax(student_logits / STORED_T).numpy().astype(np.float64)
    reference = float(np.mean(np.sum(restricted * (np.log(restricted) - q), 1))) * STORED_T ** 2
    errors = {"reference": abs(float(SoftTargetKL(STORED_T)(decoded, student_logits))
                               - reference) / reference}
    for t in temperatures:
        full = float(SoftTargetKL(t)(teacher_logits, student_logits))
        ours = float(SoftTargetKL(t)(decoded, student_logits))
        errors[t] = abs(ours - full) / full
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    data = load_digits(seed=0)
    start = time.time()
    acc = {"full": []} | {k: [] for k in KS}
    sizes, errs = {}, {k: {} for k in KS}
    temperatures = (1.0, 2.0, STORED_T, 8.0)
    for seed in range(args.seeds):
        teacher = train_teacher(data, seed)
        alone = train_alone(lambda: student_cnn(data.input_shape, data.num_classes), data,
                            seed, args.epochs)
        t_logits = teacher.predict(data.x_train, verbose=0)  # teacher_cnn outputs logits
        s_logits = alone.predict(data.x_train, verbose=0)
        with tempfile.TemporaryDirectory() as tmp:
            for k in ("full", *KS):
                path = os.path.join(tmp, str(k))
                written = store.write(teacher, data.x_train, path,
                                      top_k=None if k == "full" else k, temperature=STORED_T)
                sizes[k] = (written.nbytes(), written.full_nbytes())
                acc[k].append(distill_from(path, data, seed, args.epochs))
        for k in KS:
            for t, e in loss_errors(t_logits, s_logits, k, temperatures).items():
                errs[k].setdefault(t, []).append(e)
    print(f"\n## Top-k teacher-output store\n\n{data.summary()}; teacher_cnn, student_cnn "
          f"distilled at T = {STORED_T:g} (alpha 0.1) for {args.epochs} epochs; {args.seeds} "
          f"seeds; {time.time() - start:.0f} s\n")
    full_bytes = sizes["full"][1]
    rows = [["full float32", f"{sizes['full'][0]:,}", "1.00", mean_std(acc["full"])]]
    for k in KS:
        rows.append([f"top-{k}", f"{sizes[k][0]:,}", f"{full_bytes / sizes[k][0]:.2f}",
                     mean_std(acc[k])])
    print_table(["store", "bytes on disk", "float32 / store", "student test accuracy %"], rows)
    print(f"\nBytes per sample, computed: {topk.nbytes_per_sample(10)} (float32, 10 classes) vs "
          + ", ".join(f"top-{k} {topk.nbytes_per_sample(10, k)}" for k in KS)
          + f"; at 1,000 classes {topk.nbytes_per_sample(1000)} vs top-10 "
          f"{topk.nbytes_per_sample(1000, 10)}.\n")
    print(f"Loss error of top-k (stored at T = {STORED_T:g}) at other temperatures: "
          "|SoftTargetKL(T') on top-k - on the full outputs| / on the full outputs, "
          "mean ± std over seeds, in %:\n")
    print_table(["store", *[f"T' = {t:g}" for t in temperatures],
                 f"T = {STORED_T:g} vs the restricted reference"],
                [[f"top-{k}", *[mean_std(errs[k][t], digits=2) for t in temperatures],
                  mean_std(errs[k]["reference"], digits=3)] for k in KS])
    print("\nThe last column is the loss on the top-k store against the loss on the teacher's "
          "distribution restricted the same way (top k kept, the rest spread evenly), from the "
          "full outputs: what the representation is exact for, up to float16 rounding.")


if __name__ == "__main__":
    main()
