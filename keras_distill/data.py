"""Datasets: the bundled scikit-learn digits (the default), and helpers shared by the stages.

Everything here returns NumPy arrays shaped for Keras image models: ``x`` is
``float32`` of shape ``(N, H, W, C)`` scaled to ``[0, 1]``, ``y`` is ``int32``
class indices of shape ``(N,)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Splits:
    """Train / validation / test arrays of one dataset.

    Attributes:
        x_train, y_train, x_val, y_val, x_test, y_test: NumPy arrays.
        num_classes: number of classes.
        class_names: one name per class index.
        name: a short name for reports.
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

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / "
            f"{len(self.x_test)} test samples of shape {self.input_shape}, "
            f"{self.num_classes} classes"
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


def representative_samples(x, n=200, *, seed=0) -> np.ndarray:
    """A random subset of ``x`` (at most ``n`` rows) for int8 calibration."""
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("representative_samples: x is empty; pass some training inputs.")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[: min(n, len(x))]
    return x[np.sort(idx)]
