"""Datasets: the bundled scikit-learn sets (digits, the default; breast_cancer; diabetes),
``.npz`` files, image folders, keras.datasets, and the checks shared by the stages.

Everything here returns NumPy arrays in a :class:`Splits`. Inputs are ``float32``: images of
shape ``(N, H, W, C)`` scaled to ``[0, 1]``, or feature vectors ``(N, features)``. Labels
follow the data's task (``Splits.task``, one of ``registry.OUTPUT_KINDS``): ``int32`` class
indices ``(N,)`` for ``"multiclass"`` and ``"binary"``, ``float32`` multi-hot rows ``(N, k)``
for ``"multilabel"``, ``float32`` targets ``(N,)`` or ``(N, k)`` for ``"regression"``.
"""

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


def check_finite(x, name, before):
    """Refuse a float array with NaN or infinite values, naming the rows and the fix.

    Args:
        x: ``(N, ...)`` array; non-float arrays pass unchecked.
        name: what ``x`` is, for the message (``"fit: x"``, ``"representative_data"``).
        before: what the data was meant for (``"training"``, ``"exporting"``).

    Raises:
        ValueError: "<name> has NaN or infinite values in <k> sample(s), e.g. rows [...]".

    Example:
        >>> check_finite(np.array([[0.0], [np.nan]]), "x", "training")
        Traceback (most recent call last):
        ...
        ValueError: x has NaN or infinite values in 1 sample(s), e.g. rows [1]. Drop or impute them (np.nan_to_num) before training.
    """
    rows = _nonfinite_rows(x)
    if len(rows):
        raise ValueError(
            f"{name} has NaN or infinite values in {len(rows)} sample(s), e.g. rows "
            f"{rows[:5].tolist()}. Drop or impute them (np.nan_to_num) before {before}.")


def check_training_arrays(x, y, model, where, outputs=None):
    """Clear errors for NumPy data a training step would choke on (or silently learn NaN from).

    Only NumPy inputs are checked; datasets, generators and dicts of inputs are checked by
    Keras as they stream. The inputs must be non-empty, finite and of the model's input shape.
    Labels given as arrays must be numbers, one per sample, that fit the model's outputs.
    Cached teacher outputs (``{"labels": y, "teacher_outputs": t}``) are not checked, their
    labels are.

    Without ``outputs``, the labels are class labels of the model's one output: integer class
    indices in ``[0, classes - 1]`` (``-1`` marks an unlabeled sample) of shape ``(N,)`` or
    ``(N, 1)``, or finite floats (index-like, or one-hot rows of ``classes`` columns). With
    ``outputs``, each output's labels are checked for its kind (``Output.label_shape``):

    - multiclass: class indices ``(N, steps...)`` (or with a last axis of 1) in
      ``[0, units - 1]`` or ``-1``, or float one-hot / soft rows ``(N, steps..., units)``;
    - binary: 0 or 1 (``-1``: unlabeled), or float soft labels in ``[0, 1]``, of shape
      ``(N, steps...)`` or ``(N, steps..., 1)``;
    - multilabel: values in ``[0, 1]`` of shape ``(N, steps..., units)``;
    - regression: finite numbers of shape ``(N, steps..., units)`` (or ``(N, steps...)`` for
      one unit).

    Args:
        x: the inputs.
        y: the labels, or None. With several outputs: a dict by output name or a list in
            output order.
        model: the model the data is for (the student); its input and output shapes are
            compared with the data's.
        where: the caller, first in every message (``"fit"``, ``"validation_data"``, ...).
        outputs: the model's :class:`keras_distill.outputs.Output` list, or None (one output
            of class logits).

    Raises:
        ValueError: naming ``where``, the output (when the model has several), what was
            expected and found, and how to fix it.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0, 2]), model, "fit")
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0, 3]), model, "fit")
        Traceback (most recent call last):
        ...
        ValueError: fit: labels must be class indices in [0, 2] (or -1 for an unlabeled sample); found values from 0 to 3. The student has 3 outputs.
        >>> from keras_distill.outputs import Output
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0.5, 2.0]), model, "fit",
        ...                       [Output("out", "multilabel", 3)])
        Traceback (most recent call last):
        ...
        ValueError: fit: multilabel labels must have shape (N, 3), one column per label; got (2,). Encode each sample's labels as a multi-hot row (e.g. with sklearn.preprocessing.MultiLabelBinarizer).
    """
    from keras_distill.graph import model_shape, shapes_compatible

    if not isinstance(x, np.ndarray):
        return
    if len(x) == 0:
        raise ValueError(f"{where}: x is empty (0 samples); pass some data.")
    expected = model_shape(model, "input_shape")
    if expected is not None and not shapes_compatible(expected, (None, *x.shape[1:])):
        raise ValueError(
            f"{where}: inputs of shape {x.shape[1:]} do not match the models' input shape "
            f"{tuple(expected[1:])}. Reshape the data (e.g. add a channel axis with "
            "x[..., None]) or build the models for this shape.")
    check_finite(x, f"{where}: x", "training")
    y = _without_teacher_outputs(y, [o.name for o in outputs or ()])
    if outputs is None:
        _check_class_labels(x, y, model_shape(model, "output_shape"), where)
        return
    outputs = list(outputs)
    shapes = _output_shapes(model, outputs)
    for out, labels in zip(outputs, _labels_by_output(y, outputs, where)):
        prefix = f"{where}: output {out.name!r}" if len(outputs) > 1 else where
        _check_output_labels(labels, len(x), out, shapes.get(out.name), prefix)


def _without_teacher_outputs(y, output_names):
    """The labels of cached teacher outputs ``{"labels": y, "teacher_outputs": t}``, else
    ``y``."""
    from keras_distill.teachers import LABELS_KEY, TEACHER_OUTPUTS_KEY

    if isinstance(y, dict) and (TEACHER_OUTPUTS_KEY in y or set(y) == {LABELS_KEY}) \
            and not set(y) & set(output_names):
        return y.get(LABELS_KEY)
    return y


def _output_shapes(model, outputs):
    """``{output name: shape}`` of ``model``'s outputs, where known."""
    from keras_distill import outputs as output_kinds
    from keras_distill.graph import model_shape

    if len(outputs) == 1:
        return {outputs[0].name: model_shape(model, "output_shape")}
    return dict(output_kinds._names_and_shapes(model))


def _labels_by_output(y, outputs, where):
    """One label array (or None: not checked) per output."""
    names = [o.name for o in outputs]
    if isinstance(y, dict):
        unknown = sorted(set(y) - set(names))
        if unknown:
            raise ValueError(f"{where}: the labels name outputs {unknown} that the student does "
                             f"not have; its outputs are {names}. Key the labels by output name.")
        return [y.get(name) for name in names]
    if len(outputs) > 1 and isinstance(y, (list, tuple)):
        if len(y) != len(outputs):
            raise ValueError(f"{where}: the labels are a list of {len(y)} arrays for "
                             f"{len(outputs)} outputs {names}; give one per output, in that "
                             "order, or a dict by output name.")
        return list(y)
    if len(outputs) > 1 and y is not None and hasattr(y, "shape"):
        raise ValueError(f"{where}: the labels are one array of shape {np.shape(y)}, but the "
                         f"student has {len(outputs)} outputs {names}; give a dict of labels "
                         "by output name (or a list in that order).")
    return [y] + [None] * (len(outputs) - 1)


def _check_class_labels(x, y, output_shape, where):
    """Labels of a model with one output of class logits (``outputs`` not given)."""
    if y is None or isinstance(y, dict) or not hasattr(y, "shape"):
        return
    y = np.asarray(y)
    if y.dtype.kind in "USO":
        raise ValueError(
            f"{where}: y holds {y.dtype} values; labels must be numbers. Encode class names "
            "as integers 0..classes-1 (e.g. with sklearn.preprocessing.LabelEncoder).")
    if len(y) != len(x):
        raise ValueError(f"{where}: x has {len(x)} samples but y has {len(y)}; give one "
                         "label per sample.")
    classes = output_shape[-1] if output_shape else None
    if np.issubdtype(y.dtype, np.integer) and classes:
        _check_integer_labels(y, classes, where)
    elif np.issubdtype(y.dtype, np.floating):
        _check_float_labels(y, classes, where)


def _check_integer_labels(y, classes, where):
    if y.ndim > 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise ValueError(
            f"{where}: integer labels must have shape (N,) or (N, 1); got {y.shape}. "
            "One-hot labels must be floats of shape (N, classes).")
    if len(y) and (y.max() >= classes or y.min() < -1):
        raise ValueError(
            f"{where}: labels must be class indices in [0, {classes - 1}] (or -1 for an "
            f"unlabeled sample); found values from {y.min()} to {y.max()}. The student "
            f"has {classes} outputs.")


def _check_float_labels(y, classes, where):
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: y has NaN or infinite values; fix the labels.")
    index_like = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and classes != 1)
    if index_like and classes and len(y) and (
            (y != np.round(y)).any() or y.max() >= classes or y.min() < -1):
        raise ValueError(
            f"{where}: labels must be class indices in [0, {classes - 1}] (or -1 for "
            f"an unlabeled sample); found values from {y.min()} to {y.max()}. The "
            f"student has {classes} outputs.")
    if y.ndim == 2 and classes and y.shape[1] not in (1, classes):
        raise ValueError(
            f"{where}: one-hot labels have {y.shape[1]} columns but the student has "
            f"{classes} outputs.")


# --- labels per output kind ---------------------------------------------------------------


def _check_output_labels(y, n, out, shape, prefix):
    """The labels ``y`` of the output ``out`` (whose model shape is ``shape``)."""
    if y is None or not hasattr(y, "shape"):
        return
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(
            f"{prefix}: the labels hold {y.dtype} values; labels must be numbers "
            f"({out.label_shape}). Encode class names as integers (e.g. with "
            "sklearn.preprocessing.LabelEncoder).")
    if y.dtype.kind == "b":
        y = y.astype("int32")
    if len(y) != n:
        raise ValueError(f"{prefix}: x has {n} samples but the labels have {len(y)}; give one "
                         "label per sample.")
    rows = _nonfinite_rows(y)
    if len(rows):
        raise ValueError(
            f"{prefix}: the labels have NaN or infinite values in {len(rows)} sample(s), e.g. "
            f"rows {rows[:5].tolist()}. Drop those samples or fix their labels.")
    known = shape is not None and len(shape) == out.positions + 2
    steps = tuple(shape[1:-1]) if known else (None,) * out.positions
    _KIND_CHECKS[out.kind](y, out, steps, prefix)


def _fits(shape, patterns):
    """Whether ``shape`` (the batch axis left out) is one of ``patterns`` (None: any size)."""
    return any(len(shape) == len(p) and all(a is None or a == b for a, b in zip(p, shape))
               for p in patterns)


def _shapes_text(patterns):
    """``"(N,) or (N, 1)"``; unknown position axes are ``steps``."""
    def one(p):
        axes = ["N", *("steps" if a is None else str(a) for a in p)]
        return f"({axes[0]},)" if len(axes) == 1 else "(" + ", ".join(axes) + ")"
    return " or ".join(one(p) for p in patterns)


def _span(y):
    return f"values from {y.min():g} to {y.max():g}"


def _unlabeled(out):
    return f"-1 for an unlabeled sample{' or position' if out.positions else ''}"


def _check_multiclass(y, out, steps, prefix):
    k = out.units
    index_shapes = [steps, (*steps, 1)]
    rows_shape = [(*steps, k)]
    if y.dtype.kind in "iu" or _fits(y.shape[1:], index_shapes):
        if not _fits(y.shape[1:], index_shapes):
            raise ValueError(
                f"{prefix}: class-index labels must have shape {_shapes_text(index_shapes)}; "
                f"got {y.shape}. One-hot labels are floats of shape {_shapes_text(rows_shape)}.")
        if y.size and ((y != np.round(y)).any() or y.max() >= k or y.min() < -1):
            raise ValueError(
                f"{prefix}: labels must be class indices in [0, {k - 1}] (or {_unlabeled(out)}); "
                f"found {_span(y)}. The output {out.name!r} has {k} classes: encode the labels "
                f"as 0..{k - 1}, or give the output one unit per class.")
        return
    if not _fits(y.shape[1:], rows_shape):
        raise ValueError(
            f"{prefix}: one-hot (or soft) labels must have shape {_shapes_text(rows_shape)}, one "
            f"column per class; got {y.shape}. Class indices have shape "
            f"{_shapes_text(index_shapes)}.")
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{prefix}: one-hot (or soft) labels must be probabilities in [0, 1]; found "
            f"{_span(y)}. Give one-hot rows, or class indices of shape "
            f"{_shapes_text(index_shapes)}.")


def _check_binary(y, out, steps, prefix):
    shapes = [steps, (*steps, 1)]
    if not _fits(y.shape[1:], shapes):
        raise ValueError(
            f"{prefix}: binary labels must have shape {_shapes_text(shapes)}, one 0 / 1 label "
            f"per sample; got {y.shape}. For several independent labels use a multilabel "
            "output (one unit per label); for one of several classes, a multiclass output.")
    if y.dtype.kind in "iu":
        if y.size and not np.isin(y, (-1, 0, 1)).all():
            raise ValueError(
                f"{prefix}: binary labels must be 0 or 1 (or {_unlabeled(out)}); found "
                f"{_span(y)}. Map the classes to 0 / 1 (e.g. y == positive_class); for more "
                "classes use a multiclass output.")
    elif y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{prefix}: binary labels must be 0 or 1, or soft labels (probabilities) in "
            f"[0, 1]; found {_span(y)}. Map the classes to 0 / 1; for real-valued targets use "
            "a regression output.")


def _check_multilabel(y, out, steps, prefix):
    shapes = [(*steps, out.units)]
    if not _fits(y.shape[1:], shapes):
        raise ValueError(
            f"{prefix}: multilabel labels must have shape {_shapes_text(shapes)}, one column "
            f"per label; got {y.shape}. Encode each sample's labels as a multi-hot row (e.g. "
            "with sklearn.preprocessing.MultiLabelBinarizer).")
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{prefix}: multilabel labels must be values in [0, 1] (1: the label applies); "
            f"found {_span(y)}. Give multi-hot rows of 0 and 1.")


def _check_regression(y, out, steps, prefix):
    shapes = ([steps] if out.units == 1 else []) + [(*steps, out.units)]
    if not _fits(y.shape[1:], shapes):
        raise ValueError(
            f"{prefix}: regression targets must have shape {_shapes_text(shapes)}, one per "
            f"unit of the output ({out.units}); got {y.shape}. Give one target per output "
            "unit, or build the output with as many units as there are targets.")


_KIND_CHECKS = {MULTICLASS: _check_multiclass, BINARY: _check_binary,
                MULTILABEL: _check_multilabel, REGRESSION: _check_regression}


def representative_samples(x, n=200, *, seed=0) -> np.ndarray:
    """A random subset of ``x`` (at most ``n`` rows) for int8 calibration."""
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("representative_samples: x is empty; pass some training inputs.")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[: min(n, len(x))]
    return x[np.sort(idx)]


# ------------------------------------------------------------------------------------------
# Other sources: .npz files, image folders, keras.datasets
# ------------------------------------------------------------------------------------------

_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                      "sneaker", "bag", "ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"],
    "cifar100": [str(i) for i in range(100)],
}
#: Class names of the keras.datasets that ``load`` accepts (``registry.KERAS_DATASETS``).
KERAS_DATASETS = {name: _CLASS_NAMES[name] for name in registry.KERAS_DATASETS}
_OFFLINE_HINT = ("Offline, use data = \"digits\" (or \"breast_cancer\", \"diabetes\": bundled "
                 "with scikit-learn), a .npz file with x_train and y_train, or an image folder "
                 "(one subfolder per class).")


UNLABELED = -1


def with_unlabeled(x_labeled, y_labeled, x_unlabeled, *, shuffle=True, seed=0):
    """Labeled and unlabeled inputs in one pair of arrays, for ``Distiller.fit``.

    Unlabeled samples get the label ``-1``: the Distiller distills them from the teacher but
    leaves them out of the label loss and of the metrics.

    Args:
        x_labeled: ``(N, ...)`` inputs with labels.
        y_labeled: ``(N,)`` integer class indices.
        x_unlabeled: ``(M, ...)`` inputs without labels, same sample shape.
        shuffle: mix the two parts (recommended: every batch then holds both).
        seed: seed of the shuffle.

    Returns:
        ``(x, y)`` with ``N + M`` rows.

    Example:
        >>> import numpy as np
        >>> x, y = with_unlabeled(np.zeros((2, 3)), np.array([4, 5]), np.ones((3, 3)),
        ...                       shuffle=False)
        >>> y.tolist()
        [4, 5, -1, -1, -1]
    """
    x_labeled, x_unlabeled = np.asarray(x_labeled), np.asarray(x_unlabeled)
    y_labeled = np.asarray(y_labeled)
    if x_labeled.shape[1:] != x_unlabeled.shape[1:]:
        raise ValueError(
            f"with_unlabeled: labeled samples have shape {x_labeled.shape[1:]} but unlabeled "
            f"ones {x_unlabeled.shape[1:]}; both must have the models' input shape.")
    if y_labeled.shape != (len(x_labeled),) or not np.issubdtype(y_labeled.dtype, np.integer):
        raise ValueError(
            "with_unlabeled: y_labeled must be integer class indices of shape "
            f"({len(x_labeled)},); got {y_labeled.dtype} of shape {y_labeled.shape}.")
    if (y_labeled < 0).any():
        raise ValueError("with_unlabeled: y_labeled has negative labels; -1 marks unlabeled "
                         "samples, pass those in x_unlabeled instead.")
    x = np.concatenate([x_labeled, x_unlabeled.astype(x_labeled.dtype)])
    y = np.concatenate([y_labeled.astype("int32"),
                        np.full(len(x_unlabeled), UNLABELED, "int32")])
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(x))
        x, y = x[order], y[order]
    return x, y


class DataError(ValueError):
    """Data that cannot be loaded: a missing file or key, bad shapes, no network."""


def load(source="digits", *, validation_fraction=0.15, test_fraction=0.2, seed=0,
         image_size=None, color_mode="rgb") -> Splits:
    """Load a dataset by name or path, split into train / validation / test.

    Args:
        source: ``"digits"``, ``"breast_cancer"`` or ``"diabetes"`` (bundled with
            scikit-learn, no network); a ``keras.datasets`` name (``"mnist"``,
            ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``; downloaded on first use); the
            path of a ``.npz`` file (see :func:`load_npz`); or an image folder with one
            subfolder per class (see :func:`load_image_folder`).
        validation_fraction, test_fraction: held-out fractions for splits the data lacks.
        seed: seed of the splits.
        image_size, color_mode: for image folders.

    Returns:
        :class:`Splits`.

    Raises:
        DataError: the source cannot be loaded; offline downloads name the alternatives.

    Example:
        >>> load("digits").summary()
        'digits: 1167 train / 270 validation / 360 test samples of shape (8, 8, 1), 10 classes'
    """
    import os

    source = os.fspath(source)
    bundled = {"digits": load_digits, "breast_cancer": load_breast_cancer,
               "diabetes": load_diabetes}
    if source in bundled:
        return bundled[source](validation_fraction=validation_fraction,
                               test_fraction=test_fraction, seed=seed)
    if source in KERAS_DATASETS:
        return load_keras_dataset(source, validation_fraction=validation_fraction, seed=seed)
    if source.endswith(".npz"):
        return load_npz(source, validation_fraction=validation_fraction,
                        test_fraction=test_fraction, seed=seed)
    if os.path.isdir(source):
        return load_image_folder(source, validation_fraction=validation_fraction,
                                 test_fraction=test_fraction, seed=seed, image_size=image_size,
                                 color_mode=color_mode)
    raise DataError(
        f"Unknown data source {source!r}: expected {', '.join(map(repr, bundled))}, a "
        f"keras.datasets name "
        f"({', '.join(KERAS_DATASETS)}), a .npz file or an image folder.")


def _inputs(x, what):
    """Inputs as float32.

    Images ``(N, H, W)`` or ``(N, H, W, C)``: integers are divided by 255, ``(N, H, W)`` gets
    a channel axis. Feature vectors ``(N, features)`` keep their values (only ``uint8`` ones,
    flattened pixels, are divided by 255).
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" or x.ndim < 2:
        raise DataError(f"{what} has shape {x.shape} and dtype {x.dtype}; expected a numeric "
                        "array of N samples, e.g. (N, features), (N, height, width) or (N, "
                        "height, width, channels).")
    if (x.dtype.kind in "biu" and x.ndim >= 3) or x.dtype == np.uint8:
        x = x.astype("float32") / 255.0
    x = x.astype("float32")
    if x.ndim == 3:
        x = x[..., None]
    return x


def _labels(y, what, n):
    """Class indices ``(N,)`` from indices or one-hot (or soft) rows."""
    y = np.asarray(y)
    if y.ndim > 2:
        raise DataError(f"{what} has shape {y.shape}; class labels are indices (N,) or one-hot "
                        "rows (N, classes).")
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=-1)
    y = y.reshape(-1)
    if len(y) != n:
        raise DataError(f"{what} has {len(y)} labels for {n} samples.")
    if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError(f"{what} must hold integer class indices (or one-hot rows).")
    if len(y) and y.min() < 0:
        raise DataError(f"{what} has negative class index {int(y.min())}.")
    return y.astype("int32")


def detect_task(y):
    """The task (one of ``registry.OUTPUT_KINDS``) that labels stored in a file imply.

    Integer labels, one-hot rows and rows of class probabilities are ``"multiclass"``; so are
    float labels that are the whole numbers ``0..K-1``, each present. Rows of 0 / 1 values
    that do not all sum to 1 are ``"multilabel"``. Other float labels are ``"regression"``
    targets. Binary is never detected (two classes are multiclass): declare it.

    Example:
        >>> detect_task(np.array([0, 2, 1])), detect_task(np.array([[1.0, 1.0], [0.0, 1.0]]))
        ('multiclass', 'multilabel')
        >>> detect_task(np.array([0.5, 2.0]))
        'regression'
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        zero_one = bool(np.isin(y, (0, 1)).all())
        if zero_one and not (y.sum(axis=1) == 1).all():
            return MULTILABEL
        if y.dtype.kind in "biu" or zero_one:
            return MULTICLASS
        in_unit = bool(((y >= 0) & (y <= 1)).all())
        return MULTICLASS if in_unit and np.allclose(y.sum(axis=1), 1.0, atol=1e-3) \
            else REGRESSION
    if y.dtype.kind in "biu" or y.size == 0:
        return MULTICLASS
    values = np.unique(y)
    whole = np.array_equal(values, np.arange(len(values)))
    return MULTICLASS if whole else REGRESSION


def _targets(y, task, what, n):
    """The labels ``y`` of a split for ``task``, converted and checked."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise DataError(f"{what} holds {y.dtype} values; labels must be numbers (encode class "
                        "names as integers 0..classes-1).")
    if len(y) != n:
        raise DataError(f"{what} has {len(y)} labels for {n} samples.")
    rows = _nonfinite_rows(y)
    if len(rows):
        raise DataError(f"{what} has NaN or infinite values in {len(rows)} sample(s), e.g. "
                        f"rows {rows[:5].tolist()}; drop those samples or fix their labels.")
    if task == MULTICLASS:
        return _labels(y, what, n)
    found = f"found shape {y.shape}" + (
        f", values from {y.min():g} to {y.max():g}" if y.size else "")
    if task == BINARY:
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1 or not np.isin(y, (0, 1)).all():
            raise DataError(f"{what}: task 'binary' needs labels 0 or 1 of shape (N,) or (N, 1); "
                            f"{found}. Map the classes to 0 / 1 (e.g. y == positive_class), or "
                            "set task to 'multiclass'.")
        return y.astype("int32")
    if task == MULTILABEL:
        if y.ndim != 2 or (y.size and not ((y >= 0) & (y <= 1)).all()):
            raise DataError(f"{what}: task 'multilabel' needs rows of values in [0, 1] (1: the "
                            f"label applies) of shape (N, labels); {found}.")
        return y.astype("float32")
    return y.astype("float32")


def _nonfinite_rows(a):
    """Indices of the rows of ``a`` with NaN or infinite values (none for non-floats)."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating) or len(a) == 0:
        return np.zeros(0, "int64")
    return np.flatnonzero(~np.isfinite(a).reshape(len(a), -1).all(axis=1))


def _declared_task(arrays, path):
    """The file's ``task`` entry, or None."""
    if "task" not in arrays:
        return None
    value = np.asarray(arrays["task"])
    task = value.reshape(-1)[0] if value.dtype.kind in "US" and value.size == 1 else None
    task = task.decode() if isinstance(task, bytes) else task
    if task not in registry.OUTPUT_KINDS:
        raise DataError(f"{path}: task must be one string, one of "
                        f"{', '.join(map(repr, registry.OUTPUT_KINDS))}; got {value!r}.")
    return str(task)


def load_npz(path, *, validation_fraction=0.15, test_fraction=0.2, seed=0) -> Splits:
    """A dataset from a ``.npz`` file.

    The file holds ``x_train`` and ``y_train``, and optionally ``x_val``/``y_val``,
    ``x_test``/``y_test``, ``class_names`` and ``task``. A missing validation or test pair is
    split from the training data (stratified for classes): ``test_fraction`` of it for the test
    set, then ``validation_fraction`` of the original training data for validation. Integer
    images are divided by 255; ``(N, H, W)`` inputs get a channel axis; ``(N, features)``
    inputs keep their values.

    The task is ``task`` (one of ``registry.OUTPUT_KINDS``, checked against the labels), else
    detected from ``y_train`` (:func:`detect_task`): class indices or one-hot rows are
    multiclass, multi-hot rows multilabel, other floats regression targets (kept as they are).

    Example:
        >>> np.savez("data.npz", x_train=x, y_train=y)  # doctest: +SKIP
        >>> load_npz("data.npz").summary()              # doctest: +SKIP
    """
    import os

    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    arrays = _read_npz(path)
    task = _declared_task(arrays, path)
    if task is None:
        task = detect_task(arrays["y_train"])
    parts = {}
    for part in ("train", "val", "test"):
        if f"x_{part}" in arrays:
            x = _inputs(arrays[f"x_{part}"], f"{path}: x_{part}")
            parts[part] = (x, _targets(arrays[f"y_{part}"], task, f"{path}: y_{part}", len(x)))
    x, y = parts["train"]
    n = len(x)
    stratify = task in (MULTICLASS, BINARY)
    if "test" not in parts:
        x, x_test, y, y_test = _split_off(x, y, test_fraction, seed, stratify=stratify)
        parts["test"] = (x_test, y_test)
    if "val" not in parts:
        x, x_val, y, y_val = _split_off(x, y, validation_fraction * n / len(x), seed,
                                        stratify=stratify)
        parts["val"] = (x_val, y_val)
    for i, what in ((0, "sample"), (1, "label")):
        shapes = {p: v[i].shape[1:] for p, v in parts.items()}
        if len(set(shapes.values())) != 1:
            raise DataError(f"{path}: the splits have different {what} shapes {shapes}.")
    num_classes, class_names = _npz_classes(parts, task, arrays, path)
    return Splits(x, y, *parts["val"], *parts["test"], num_classes=num_classes,
                  class_names=class_names, name=name, task=task)


def _read_npz(path):
    """The arrays of a ``.npz`` data file, with ``x_train``, ``y_train`` and whole pairs."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as a .npz file: {exc}") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks {' and '.join(missing)}; a .npz data file holds x_train "
                        f"and y_train (optionally x_val, y_val, x_test, y_test, class_names, "
                        f"task). It has: {', '.join(sorted(arrays)) or 'nothing'}.")
    for part in ("val", "test"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise DataError(f"{path} has only one of x_{part} and y_{part}; give both or "
                            "neither.")
    return arrays


def _npz_classes(parts, task, arrays, path):
    """``(num_classes, class_names)`` of a file's labels and its optional ``class_names``."""
    names = None
    if "class_names" in arrays:
        names = [str(c) for c in np.asarray(arrays["class_names"]).reshape(-1)]
    if task == MULTICLASS:
        count = int(max((int(v[1].max()) for v in parts.values() if len(v[1])), default=0) + 1)
        if names is not None and len(names) < count:
            raise DataError(f"{path}: class_names has {len(names)} names but the labels go up "
                            f"to {count - 1}.")
        return (len(names), names) if names is not None else (
            count, [str(i) for i in range(count)])
    y = parts["train"][1]
    count = 2 if task == BINARY else (1 if y.ndim == 1 else int(np.prod(y.shape[1:])))
    if names is not None and len(names) != count:
        what = {BINARY: "classes", MULTILABEL: "labels", REGRESSION: "targets"}[task]
        raise DataError(f"{path}: class_names has {len(names)} names but the {task} labels "
                        f"have {count} {what}; give one name per {what[:-1]}.")
    if names is None:
        names = (["target"] if task == REGRESSION and count == 1 else
                 [f"target {i}" if task == REGRESSION else str(i) for i in range(count)])
    return count, names


def _split_off(x, y, fraction, seed, *, stratify=True):
    """``(x_rest, x_part, y_rest, y_part)``, stratified (when ``stratify``) when every class
    has 2+ samples."""
    from sklearn.model_selection import train_test_split

    if len(x) < 3:
        raise DataError(f"only {len(x)} training samples: too few to split off validation or "
                        "test data; give x_val/y_val and x_test/y_test.")
    strat = None
    if stratify:
        counts = np.bincount(y)
        strat = y if counts[counts > 0].min() >= 2 else None
    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=strat)
    except ValueError:  # too few samples per class for a stratified split of that size
        return train_test_split(x, y, test_size=fraction, random_state=seed)


def load_image_folder(path, *, validation_fraction=0.15, test_fraction=0.2, seed=0,
                      image_size=None, color_mode="rgb") -> Splits:
    """Images in class subfolders (``path/<class>/<image>``), read with
    ``keras.utils.image_dataset_from_directory``, scaled to [0, 1] and split.

    Args:
        image_size: ``(height, width)`` to resize to; default the size of the first image.
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"``.

    Example:
        >>> load_image_folder("flowers/", image_size=(32, 32)).class_names  # doctest: +SKIP
        ['daisy', 'rose', 'tulip']
    """
    import os

    import keras

    path = os.fspath(path)
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise DataError(f"image folder {path!r} has no class subfolders; expected "
                        f"{path}/<class name>/<image files>.")
    if image_size is None:
        image_size = _first_image_size(path, classes)
    try:
        ds = keras.utils.image_dataset_from_directory(
            path, labels="inferred", label_mode="int", color_mode=color_mode,
            image_size=tuple(image_size), batch_size=256, shuffle=False, verbose=False)
    except ValueError as exc:
        raise DataError(f"cannot read images from {path!r}: {exc}") from None
    xs, ys = [], []
    for xb, yb in ds.as_numpy_iterator():
        xs.append(xb)
        ys.append(yb)
    if not xs:
        raise DataError(f"image folder {path!r} has no images.")
    x = (np.concatenate(xs) / 255.0).astype("float32")
    y = np.concatenate(ys).astype("int32")
    name = os.path.basename(os.path.normpath(path)) or "images"
    x_rest, x_test, y_rest, y_test = _split_off(x, y, test_fraction, seed)
    x_train, x_val, y_train, y_val = _split_off(
        x_rest, y_rest, validation_fraction / (1.0 - test_fraction), seed)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test,
                  num_classes=len(ds.class_names), class_names=list(ds.class_names), name=name)


def _first_image_size(path, classes):
    import os

    import keras

    for c in classes:
        folder = os.path.join(path, c)
        for f in sorted(os.listdir(folder)):
            if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif")):
                width, height = keras.utils.load_img(os.path.join(folder, f)).size
                return (height, width)
    raise DataError(f"image folder {path!r} has no .png/.jpg/.jpeg/.bmp/.gif images in "
                    f"its class subfolders {classes}.")


def load_keras_dataset(name, *, validation_fraction=0.15, seed=0) -> Splits:
    """A ``keras.datasets`` image dataset (downloaded once into ``~/.keras/datasets``).

    Its own test split is kept; ``validation_fraction`` of the training data is held out.

    Raises:
        DataError: an unknown name, or the download failed (the message says that it needs
            the internet and which offline sources work instead).

    Example:
        >>> load_keras_dataset("mnist").input_shape  # doctest: +SKIP
        (28, 28, 1)
    """
    import keras

    if name not in KERAS_DATASETS:
        raise DataError(f"Unknown keras.datasets name {name!r}; expected one of "
                        f"{', '.join(KERAS_DATASETS)}.")
    try:
        (x, y), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure on ...")
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) or "URL fetch failure" in str(exc) or "urlopen" in text:
            raise DataError(
                f"Could not download keras.datasets {name!r}: it needs the internet the first "
                f"time ({text.splitlines()[0] if text else 'download failed'}). "
                + _OFFLINE_HINT) from None
        raise
    x, x_test = _inputs(x, f"{name} x_train"), _inputs(x_test, f"{name} x_test")
    y, y_test = _labels(y, f"{name} y_train", len(x)), _labels(y_test, f"{name} y_test",
                                                              len(x_test))
    x_train, x_val, y_train, y_val = _split_off(x, y, validation_fraction, seed)
    names = KERAS_DATASETS[name]
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes=len(names),
                  class_names=list(names), name=name)
