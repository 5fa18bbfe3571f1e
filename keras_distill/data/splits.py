"""The arrays of one dataset (:class:`Splits`), the train / validation / test split (of arrays,
or of files and records by a hash of their names: :func:`hash_split`), and standardization
with the training split's statistics."""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

import numpy as np

from keras_distill import registry

MULTICLASS, BINARY, MULTILABEL, REGRESSION = registry.OUTPUT_KINDS


@dataclasses.dataclass
class Splits:
    """Train / validation / test arrays of one dataset.

    Attributes:
        x_train, x_val, x_test: the inputs: NumPy arrays, or arrays read on demand
            (:class:`~keras_distill.data.lazy.LazyArray`: image files, TFRecords, memory-mapped
            ``.npy`` files), which stream in batches (``keras_distill.data.stream``).
        y_train, y_val, y_test: the labels, NumPy arrays (in memory: labels are small).
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

    x_train: object  # np.ndarray or LazyArray
    y_train: np.ndarray
    x_val: object
    y_val: np.ndarray
    x_test: object
    y_test: np.ndarray
    num_classes: int
    class_names: list[str]
    name: str = "data"
    task: str = MULTICLASS
    target_scale: tuple | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def streamed(self) -> bool:
        """Whether the inputs are read on demand (lazy), rather than NumPy arrays in memory."""
        from keras_distill.data.lazy import is_lazy

        return any(is_lazy(x) for x in (self.x_train, self.x_val, self.x_test))

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

    _check_fractions(validation_fraction, test_fraction)
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


def _check_fractions(validation_fraction, test_fraction):
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


#: The split codes of :func:`hash_split`.
TRAIN, VALIDATION, TEST = 0, 1, 2


def hash_fractions(keys, seed=0) -> np.ndarray:
    """A number ``u`` in [0, 1) for each key (a file's relative path, a record's name), from the
    SHA-1 of ``"<seed>:<key>"``: the same key and seed always give the same ``u``.

    Example:
        >>> u = hash_fractions(["a.png", "b.png"])
        >>> u.round(4).tolist(), bool((hash_fractions(["a.png"]) == u[0]).all())
        ([0.9821, 0.795], True)
    """
    out = np.empty(len(keys), np.float64)
    for i, key in enumerate(keys):
        digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
        out[i] = int.from_bytes(digest[:7], "big") / 2.0**56
    return out


def hash_split(keys, *, validation_fraction=0.15, test_fraction=0.2, seed=0,
               what="samples", fractions=None) -> np.ndarray:
    """The split of each key, decided by its own hash (:func:`hash_fractions`): ``TEST`` (2)
    when ``u < test_fraction``, ``VALIDATION`` (1) when ``u < test_fraction +
    validation_fraction``, else ``TRAIN`` (0). Adding keys never moves another key to another
    split (unlike a shuffled split), so a growing folder keeps its test set.

    With 3 keys or more every split gets at least one: when the hashes leave a split empty,
    the key whose ``u`` lies nearest to that split's interval moves into it (from a split with
    two or more), with a warning naming it.

    Args:
        keys: strings, one per sample.
        what: what the keys are, for the warning (``"images"``, ``"records"``).
        fractions: the keys' :func:`hash_fractions` with ``seed``, when already computed.

    Example:
        >>> codes = hash_split([f"{i}.png" for i in range(1000)], seed=0)
        >>> np.bincount(codes).tolist()
        [655, 141, 204]
    """
    _check_fractions(validation_fraction, test_fraction)
    u = hash_fractions(keys, seed) if fractions is None else np.asarray(fractions, np.float64)
    codes = np.where(u < test_fraction, TEST,
                     np.where(u < test_fraction + validation_fraction, VALIDATION, TRAIN))
    if len(keys) >= 3:
        bounds = {TEST: (0.0, test_fraction),
                  VALIDATION: (test_fraction, test_fraction + validation_fraction),
                  TRAIN: (test_fraction + validation_fraction, 1.0)}
        for code in (TEST, VALIDATION, TRAIN):
            if (codes == code).any():
                continue
            counts = np.bincount(codes, minlength=3)
            movable = np.flatnonzero(counts[codes] >= 2)
            low, high = bounds[code]
            distance = np.maximum(low - u[movable], u[movable] - high)
            moved = movable[np.argmin(distance)]
            codes[moved] = code
            warnings.warn(
                f"the hash split of {len(keys)} {what} left the "
                f"{['training', 'validation', 'test'][code]} split empty; moved {keys[moved]!r} "
                "into it. Add data (or change the fractions or the seed) for a stable split.",
                stacklevel=3)
    return codes


def hash_ordered(rows, fractions) -> np.ndarray:
    """``rows`` ordered by their hash value (``fractions[rows]``, see :func:`hash_fractions`):
    a deterministic order that mixes classes (files listed class by class are not read one
    class after another), and that adding keys never changes for the others (they keep their
    relative order).

    Example:
        >>> u = hash_fractions(["a/1.png", "a/2.png", "b/1.png", "b/2.png"])
        >>> hash_ordered(np.arange(4), u).tolist()
        [3, 1, 2, 0]
    """
    rows = np.asarray(rows, np.int64)
    return rows[np.argsort(np.asarray(fractions)[rows], kind="stable")]
