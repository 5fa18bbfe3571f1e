"""Datasets: the bundled scikit-learn digits (the default), and helpers shared by the stages.

Everything here returns NumPy arrays shaped for Keras image models: ``x`` is
``float32`` of shape ``(N, H, W, C)`` scaled to ``[0, 1]``, ``y`` is ``int32``
class indices of shape ``(N,)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_distill import registry


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
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating) or len(x) == 0:
        return
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has NaN or infinite values in {len(rows)} sample(s), e.g. rows "
            f"{rows[:5].tolist()}. Drop or impute them (np.nan_to_num) before {before}.")


def check_training_arrays(x, y, model, where):
    """Clear errors for NumPy data a training step would choke on (or silently learn NaN from).

    Only NumPy inputs are checked; datasets, generators and dicts are checked by Keras as
    they stream. The inputs must be non-empty, finite and of the model's input shape; labels
    (when given as an array) must be numbers, one per sample, and fit the model's outputs:
    integer class indices in ``[0, classes - 1]`` (``-1`` marks an unlabeled sample) of shape
    ``(N,)`` or ``(N, 1)``, or finite floats (index-like, or one-hot rows of ``classes``
    columns).

    Args:
        x: the inputs.
        y: the labels, or None.
        model: the model the data is for (the student); its input and output shapes are
            compared with the data's.
        where: the caller, first in every message (``"fit"``, ``"validation_data"``, ...).

    Raises:
        ValueError: naming ``where``, what is wrong and how to fix it.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0, 2]), model, "fit")
        >>> check_training_arrays(np.zeros((2, 4)), np.array([0, 3]), model, "fit")
        Traceback (most recent call last):
        ...
        ValueError: fit: labels must be class indices in [0, 2] (or -1 for an unlabeled sample); found values from 0 to 3. The student has 3 outputs.
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
    classes = model_shape(model, "output_shape")
    classes = classes[-1] if classes else None
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
_OFFLINE_HINT = ("Offline, use data = \"digits\" (bundled with scikit-learn), a .npz file with "
                 "x_train and y_train, or an image folder (one subfolder per class).")


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
        source: ``"digits"`` (bundled, no network); a ``keras.datasets`` name (``"mnist"``,
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
    if source == "digits":
        return load_digits(validation_fraction=validation_fraction, test_fraction=test_fraction,
                           seed=seed)
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
        f"Unknown data source {source!r}: expected 'digits', a keras.datasets name "
        f"({', '.join(KERAS_DATASETS)}), a .npz file or an image folder.")


def _images(x, what):
    """Inputs as float32 images ``(N, H, W, C)``: integers are divided by 255, ``(N, H, W)``
    gets a channel axis."""
    x = np.asarray(x)
    if x.dtype == object or x.ndim < 2:
        raise DataError(f"{what} has shape {x.shape} and dtype {x.dtype}; expected a numeric "
                        "array of N samples, e.g. (N, height, width) or (N, height, width, "
                        "channels).")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        x = x.astype("float32") / 255.0
    x = x.astype("float32")
    if x.ndim == 3:
        x = x[..., None]
    return x


def _labels(y, what, n):
    y = np.asarray(y)
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


def load_npz(path, *, validation_fraction=0.15, test_fraction=0.2, seed=0) -> Splits:
    """A dataset from a ``.npz`` file.

    The file holds ``x_train`` and ``y_train``, and optionally ``x_val``/``y_val``,
    ``x_test``/``y_test`` and ``class_names``. A missing validation or test pair is split from
    the training data (stratified): ``test_fraction`` of it for the test set, then
    ``validation_fraction`` of the original training data for validation. Integer inputs are
    divided by 255; ``(N, H, W)`` inputs get a channel axis; labels may be indices or one-hot.

    Example:
        >>> np.savez("data.npz", x_train=x, y_train=y)  # doctest: +SKIP
        >>> load_npz("data.npz").summary()              # doctest: +SKIP
    """
    import os

    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
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
                        f"and y_train (optionally x_val, y_val, x_test, y_test, class_names). "
                        f"It has: {', '.join(sorted(arrays)) or 'nothing'}.")
    for part in ("val", "test"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise DataError(f"{path} has only one of x_{part} and y_{part}; give both or "
                            "neither.")
    parts = {}
    for part in ("train", "val", "test"):
        if f"x_{part}" in arrays:
            x = _images(arrays[f"x_{part}"], f"{path}: x_{part}")
            parts[part] = (x, _labels(arrays[f"y_{part}"], f"{path}: y_{part}", len(x)))
    x, y = parts["train"]
    n = len(x)
    if "test" not in parts:
        x, x_test, y, y_test = _split_off(x, y, test_fraction, seed)
        parts["test"] = (x_test, y_test)
    if "val" not in parts:
        x, x_val, y, y_val = _split_off(x, y, validation_fraction * n / len(x), seed)
        parts["val"] = (x_val, y_val)
    shapes = {p: v[0].shape[1:] for p, v in parts.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{path}: the splits have different sample shapes {shapes}.")
    num_classes = int(max(int(v[1].max()) for v in parts.values() if len(v[1])) + 1)
    if "class_names" in arrays:
        class_names = [str(c) for c in np.asarray(arrays["class_names"]).reshape(-1)]
        if len(class_names) < num_classes:
            raise DataError(f"{path}: class_names has {len(class_names)} names but the labels "
                            f"go up to {num_classes - 1}.")
        num_classes = len(class_names)
    else:
        class_names = [str(i) for i in range(num_classes)]
    return Splits(x, y, *parts["val"], *parts["test"], num_classes=num_classes,
                  class_names=class_names, name=name)


def _split_off(x, y, fraction, seed):
    """``(x_rest, x_part, y_rest, y_part)``, stratified when every class has 2+ samples."""
    from sklearn.model_selection import train_test_split

    if len(x) < 3:
        raise DataError(f"only {len(x)} training samples: too few to split off validation or "
                        "test data; give x_val/y_val and x_test/y_test.")
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
    x, x_test = _images(x, f"{name} x_train"), _images(x_test, f"{name} x_test")
    y, y_test = _labels(y, f"{name} y_train", len(x)), _labels(y_test, f"{name} y_test",
                                                              len(x_test))
    x_train, x_val, y_train, y_val = _split_off(x, y, validation_fraction, seed)
    names = KERAS_DATASETS[name]
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes=len(names),
                  class_names=list(names), name=name)
