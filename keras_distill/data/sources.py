"""One entry point for every data source: :func:`load` by name or path."""

from __future__ import annotations

from keras_distill.data.arrays import is_npy_folder, load_npy_folder
from keras_distill.data.bundled import load_breast_cancer, load_diabetes, load_digits
from keras_distill.data.errors import DataError
from keras_distill.data.files import load_npz
from keras_distill.data.images import load_image_folder
from keras_distill.data.keras_datasets import KERAS_DATASETS, load_keras_dataset
from keras_distill.data.records import RECORD_SUFFIXES, is_record_source, load_tfrecords
from keras_distill.data.splits import Splits


def load(source="digits", *, validation_fraction=0.15, test_fraction=0.2, seed=0,
         image_size=None, color_mode="rgb") -> Splits:
    """Load a dataset by name or path, split into train / validation / test.

    Args:
        source: ``"digits"``, ``"breast_cancer"`` or ``"diabetes"`` (bundled with
            scikit-learn, no network); a ``keras.datasets`` name (``"mnist"``,
            ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``; downloaded on first use); the
            path of a ``.npz`` file (see :func:`load_npz`; large ones are memory-mapped); a
            folder of ``.npy`` files with ``x_train.npy`` and ``y_train.npy`` (memory-mapped,
            see :func:`~keras_distill.data.arrays.load_npy_folder`); TFRecord files of encoded
            images: a ``.tfrecord`` / ``.tfrecords`` / ``.tfr`` file, a glob or a folder of
            them (see :func:`~keras_distill.data.records.load_tfrecords`); or an image folder
            with one subfolder per class (see :func:`load_image_folder`). Files, records and
            memory-mapped arrays are read a batch at a time (their inputs are
            :class:`~keras_distill.data.lazy.LazyArray` objects).
        validation_fraction, test_fraction: held-out fractions for splits the data lacks.
        seed: seed of the splits.
        image_size, color_mode: for image folders and TFRecord files.

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
    fractions = {"validation_fraction": validation_fraction, "test_fraction": test_fraction,
                 "seed": seed}
    if source.endswith(".npz"):
        return load_npz(source, **fractions)
    if os.path.isdir(source) and is_npy_folder(source):
        return load_npy_folder(source, **fractions)
    if is_record_source(source):
        return load_tfrecords(source, **fractions, image_size=image_size, color_mode=color_mode)
    if os.path.isdir(source):
        return load_image_folder(source, **fractions, image_size=image_size,
                                 color_mode=color_mode)
    raise DataError(
        f"Unknown data source {source!r}: expected {', '.join(map(repr, bundled))}, a "
        f"keras.datasets name ({', '.join(KERAS_DATASETS)}), a .npz file, a folder of .npy "
        f"files (x_train.npy, y_train.npy, ...), TFRecord files (a {'/'.join(RECORD_SUFFIXES)} "
        "file, a glob or a folder of them) or an image folder (one subfolder per class).")
