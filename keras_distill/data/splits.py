"""The arrays of one dataset (:class:`Splits`), the train / validation / test split, and
standardization with the training split's statistics."""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_distill import registry

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS


@dataclasses.dataclass
class Splits:
    """Train / validation / test arrays of one dataset.

    Attributes:
        x_train, y_train, x_val, y_val, x_test, y_test: NumPy arrays.
        num_classes: number of classes (multiclass, binary: 2), labels (multilabel) or
            targets (regression).
        class_names: one name per class index, label or target.
        name: a short name for reports.
        task: what the labels are, one of ``registry.OUTPUT_KINDS``.
        target_scale: ``(mean, std)`` of the original targets when regression targets were
            standardized (``y = (original - mean) / std``), else None.

    Example:
        >>> from keras_distill.data import load_diabetes
        >>> data = load_diabetes()
        >>> data.task, data.output_units, data.y_train.dtype
        ('regression', 1, dtype('float32'))
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str]
    name: str = "data"
    task: str = MULTICLASS
    target_scale: tuple | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def output_units(self) -> int:
        """The width of the model output the labels are for: the number of classes
        (multiclass), 1 (binary: one logit), the number of labels (multilabel) or of targets
        (regression)."""
        if self.task == BINARY:
            return 1
        if self.task == MULTILABEL:
            return int(self.y_train.shape[-1])
        if self.task == REGRESSION:
            return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[-1])
        return int(self.num_classes)

    def summary(self) -> str:
        """One line: sizes, sample shape and what the labels are.

        Example:
            >>> from keras_distill.data import load_breast_cancer
            >>> load_breast_cancer().summary()
            'breast_cancer: 369 train / 86 validation / 114 test samples of shape (30,), binary (2 classes)'
        """
        units = self.output_units
        labels = {
            MULTICLASS: f"{self.num_classes} classes",
            BINARY: f"binary ({self.num_classes} classes)",
            MULTILABEL: f"multilabel ({units} label{'s' * (units != 1)})",
            REGRESSION: f"regression ({units} target{'s' * (units != 1)})",
        }.get(self.task, f"{self.task} ({units} outputs)")
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / "
            f"{len(self.x_test)} test samples of shape {self.input_shape}, {labels}"
        )


def split(x, y, *, validation_fraction=0.15, test_fraction=0.2, seed=0, stratify=True):
    """Split arrays into train / validation / test parts, stratified by class.

    Returns:
        ``(x_train, y_train, x_val, y_val, x_test, y_test)``.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < validation_fraction < 1 or not 0 < test_fraction < 1:
        raise ValueError(
            "validation_fraction and test_fraction must be in (0, 1); got "
            f"{validation_fraction} and {test_fraction}."
        )
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "validation_fraction + test_fraction must leave training data; got "
            f"{validation_fraction} + {test_fraction} >= 1."
        )
    strat = y if stratify else None
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=strat
    )
    val_of_rest = validation_fraction / (1.0 - test_fraction)
    strat = y_rest if stratify else None
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_of_rest, random_state=seed, stratify=strat
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def standardize(train, *others):
    """``(train, *others)`` as z-scores with the mean and std of ``train`` only (no leakage
    from the held-out parts), and those ``(mean, std)``.

    Columns (or values) without spread keep a std of 1, so they become 0 rather than NaN.

    Returns:
        ``([train, *others], mean, std)``, the arrays as ``float32``.

    Example:
        >>> (a, b), mean, std = standardize(np.array([1.0, 3.0]), np.array([5.0]))
        >>> a.tolist(), b.tolist(), float(mean), float(std)
        ([-1.0, 1.0], [3.0], 2.0, 1.0)
    """
    train = np.asarray(train, dtype="float64")
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ([((np.asarray(a, "float64") - mean) / std).astype("float32")
             for a in (train, *others)], mean, std)
