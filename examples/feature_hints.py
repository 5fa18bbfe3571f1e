"""Distillation with a feature hint (FitNets): the student also learns the teacher's features.

The student's ``conv2`` feature map (4x4x8 at width 4) is mapped by a trainable 1x1
projection to the shape of the teacher's ``relu3`` map (4x4x64) and pulled towards it with a
mean squared error, while soft targets (``SoftTargetKL``) transfer the outputs. The projection
(``distiller.hint_adapters``) lives in the Distiller only: the trained student is the plain
``student_cnn``.

    python examples/feature_hints.py                  # about a minute on 2 cores
    python examples/feature_hints.py --epochs 5 --teacher-epochs 5 --out /tmp/hinted.keras

The same run from the command line (teacher, baseline, hinted student, export)::

    # hints.toml
    losses = ["soft_target_kl",
              {name = "feature_hint", teacher_layer = "relu3", student_layer = "conv2"}]
    loss_weights = [1.0, 1.0]

    keras-distill run --config hints.toml
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    """Train a teacher, distill a student with SoftTargetKL + FeatureHint, save the student.

    Returns:
        A dict of results: ``teacher_accuracy``, ``student_accuracy``, ``agreement`` (top-1
        with the teacher, test split), ``student_params``, ``adapter_params``, ``hint_loss``
        (per epoch) and ``path``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=4, help="student width")
    parser.add_argument("--out", default="exported/student_feature_hint.keras")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_distill import Distiller
    from keras_distill.data import load_digits
    from keras_distill.losses import FeatureHint, SoftTargetKL
    from keras_distill.presets import student_cnn, teacher_cnn

    data = load_digits(seed=0)
    keras.utils.set_random_seed(0)
    teacher = teacher_cnn(data.input_shape, data.num_classes)
    teacher.compile(keras.optimizers.Adam(3e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    teacher.fit(data.x_train, data.y_train, epochs=args.teacher_epochs, batch_size=64,
                verbose=0)

    student = student_cnn(data.input_shape, data.num_classes, width=args.width)
    distiller = Distiller(
        teacher, student, temperature=4.0, alpha=0.1,
        losses=[SoftTargetKL(), FeatureHint(teacher_layer="relu3", student_layer="conv2")],
        loss_weights=[1.0, 1.0])
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = distiller.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=64,
                            validation_data=(data.x_val, data.y_val), verbose=0)

    t_logits = teacher.predict(data.x_test, verbose=0)
    s_logits = distiller.student.predict(data.x_test, verbose=0)
    adapter = distiller.hint_adapters[0]
    results = {
        "teacher_accuracy": float(np.mean(t_logits.argmax(-1) == data.y_test)),
        "student_accuracy": float(np.mean(s_logits.argmax(-1) == data.y_test)),
        "agreement": float(np.mean(s_logits.argmax(-1) == t_logits.argmax(-1))),
        "teacher_params": int(teacher.count_params()),
        "student_params": int(distiller.student.count_params()),
        "adapter_params": int(adapter.count_params()) if adapter is not None else 0,
        "hint_loss": [float(v) for v in history.history["feature_hint"]],
        "path": args.out,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    distiller.student.save(args.out)  # the plain student: no teacher, no adapter

    print(f"teacher  {results['teacher_params']:>7,} params  test accuracy "
          f"{results['teacher_accuracy']:.4f}")
    print(f"student  {results['student_params']:>7,} params  test accuracy "
          f"{results['student_accuracy']:.4f}  agreement with the teacher "
          f"{results['agreement']:.4f}")
    print(f"hint projection {results['adapter_params']:,} params (training only); feature-hint "
          f"loss {results['hint_loss'][0]:.4f} -> {results['hint_loss'][-1]:.4f}")
    print(f"saved the student to {args.out}")
    return results


if __name__ == "__main__":
    main()
