"""The ``keras.datasets`` image datasets, downloaded on first use and kept as they come
(``uint8``): batches are converted to ``float32`` in [0, 1] when read
(:class:`~keras_distill.data.lazy.InMemory`)."""

from __future__ import annotations

from keras_distill import registry
from keras_distill.data.errors import DataError
from keras_distill.data.files import _labels, _lazy_inputs, _split_indices, _take
from keras_distill.data.splits import Splits

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


def load_keras_dataset(name, *, validation_fraction=0.15, seed=0) -> Splits:
    """A ``keras.datasets`` image dataset (downloaded once into ``~/.keras/datasets``).

    Its own test split is kept; ``validation_fraction`` of the training data is held out
    (stratified). The inputs stay ``uint8`` in memory (no ``float32`` copy of the whole set):
    ``x_train``, ``x_val`` and ``x_test`` are :class:`~keras_distill.data.lazy.LazyArray`
    views whose rows come out as ``float32`` in [0, 1].

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
    x, x_test = _lazy_inputs(x, f"{name} x_train"), _lazy_inputs(x_test, f"{name} x_test")
    y, y_test = _labels(y, f"{name} y_train", len(x)), _labels(y_test, f"{name} y_test",
                                                              len(x_test))
    train, val = _split_indices(y, validation_fraction, seed)
    x_train, x_val, y_train, y_val = _take(x, train), _take(x, val), y[train], y[val]
    names = KERAS_DATASETS[name]
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes=len(names),
                  class_names=list(names), name=name)
