"""The datasets bundled with scikit-learn (no network): digits (the default), breast_cancer
(binary) and diabetes (regression)."""

from __future__ import annotations

from keras_distill import registry
from keras_distill.data.splits import Splits, split, standardize

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS


def load_digits(*, validation_fraction=0.15, test_fraction=0.2, seed=0) -> Splits:
    """scikit-learn's bundled handwritten digits (1,797 images of 8x8 pixels, 10 classes).

    It ships with scikit-learn, so it needs no network. Pixels are scaled from
    0..16 to [0, 1]; images have one channel.

    Example:
        >>> data = load_digits()
        >>> data.x_train.shape[1:]
        (8, 8, 1)
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (bunch.images.astype("float32") / 16.0)[..., None]
    y = bunch.target.astype("int32")
    parts = split(x, y, validation_fraction=validation_fraction,
                  test_fraction=test_fraction, seed=seed)
    return Splits(*parts, num_classes=10, class_names=[str(i) for i in range(10)],
                  name="digits")


def load_breast_cancer(*, validation_fraction=0.15, test_fraction=0.2, seed=0) -> Splits:
    """scikit-learn's bundled Wisconsin breast cancer set: 569 samples of 30 features, a
    binary task (0 = malignant, 1 = benign).

    It ships with scikit-learn, so it needs no network. The split is stratified; features are
    standardized with the training split's mean and std.

    Example:
        >>> data = load_breast_cancer()
        >>> data.task, data.x_train.shape[1:], data.class_names
        ('binary', (30,), ['malignant', 'benign'])
    """
    from sklearn.datasets import load_breast_cancer as _sk_load

    bunch = _sk_load()
    parts = split(bunch.data, bunch.target.astype("int32"),
                  validation_fraction=validation_fraction, test_fraction=test_fraction,
                  seed=seed)
    (x_train, x_val, x_test), _, _ = standardize(*parts[0::2])
    y_train, y_val, y_test = parts[1::2]
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes=2,
                  class_names=[str(c) for c in bunch.target_names], name="breast_cancer",
                  task=BINARY)


def load_diabetes(*, validation_fraction=0.15, test_fraction=0.2, seed=0) -> Splits:
    """scikit-learn's bundled diabetes set: 442 patients of 10 features, a regression task
    (disease progression after one year).

    It ships with scikit-learn, so it needs no network. The split is random (not stratified).
    Features and the target are standardized with the training split's mean and std;
    ``target_scale`` holds the target's ``(mean, std)``: ``y * std + mean`` is in the original
    units.

    Example:
        >>> data = load_diabetes()
        >>> mean, std = data.target_scale
        >>> round(float(data.y_test[0] * std + mean))
        321
    """
    from sklearn.datasets import load_diabetes as _sk_load

    bunch = _sk_load(scaled=False)
    parts = split(bunch.data, bunch.target, validation_fraction=validation_fraction,
                  test_fraction=test_fraction, seed=seed, stratify=False)
    (x_train, x_val, x_test), _, _ = standardize(*parts[0::2])
    (y_train, y_val, y_test), mean, std = standardize(*parts[1::2])
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes=1,
                  class_names=["disease progression"], name="diabetes", task=REGRESSION,
                  target_scale=(float(mean), float(std)))
