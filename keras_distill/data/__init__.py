"""Datasets: the bundled scikit-learn sets (digits, the default; breast_cancer; diabetes),
``.npz`` files, image folders, keras.datasets, and the checks shared by the stages.

Everything here returns a :class:`Splits`. Inputs are ``float32``: images of shape ``(N, H,
W, C)`` scaled to ``[0, 1]``, or feature vectors ``(N, features)``; as NumPy arrays (the
bundled sets, small ``.npz`` files) or, for data that may not fit in memory, as arrays read
a batch at a time (:class:`LazyArray`: image folders, TFRecord files, memory-mapped ``.npy``
files and large ``.npz`` files, ``keras.datasets`` kept as ``uint8``), which refuse to become
one array and stream in batches (``stream.dataset``). Labels are NumPy arrays. Labels
follow the data's task (``Splits.task``, one of ``registry.OUTPUT_KINDS``): ``int32`` class
indices ``(N,)`` for ``"multiclass"`` and ``"binary"``, ``float32`` multi-hot rows ``(N, k)``
for ``"multilabel"``, ``float32`` targets ``(N,)`` or ``(N, k)`` for ``"regression"``.

The package: ``splits`` (:class:`Splits`, :func:`split`, :func:`standardize`,
:func:`hash_split`), ``bundled`` (the scikit-learn sets), ``files`` (``.npz`` files,
:func:`detect_task`), ``arrays`` (memory-mapped ``.npy`` folders: :func:`load_npy_folder`),
``images`` (:class:`ImageFiles`, :func:`load_image_folder`), ``records`` (TFRecord files:
:class:`RecordImages`, :func:`load_tfrecords`), ``keras_datasets`` (:data:`KERAS_DATASETS`),
``sources`` (:func:`load`), ``lazy`` (arrays read on demand: :class:`LazyArray`,
:class:`Subset`, :class:`InMemory`), ``stream`` (batches as a ``tf.data`` pipeline), ``checks``
(:func:`check_finite`, :func:`check_training_arrays`), ``unlabeled`` (:func:`with_unlabeled`,
:data:`UNLABELED`), ``calibration`` (:func:`representative_samples`) and ``errors``
(:class:`DataError`).
"""

from __future__ import annotations

from keras_distill import registry
from keras_distill.data.arrays import load_npy_folder
from keras_distill.data.bundled import load_breast_cancer, load_diabetes, load_digits
from keras_distill.data.calibration import representative_samples
from keras_distill.data.checks import check_finite, check_training_arrays
from keras_distill.data.errors import DataError
from keras_distill.data.files import detect_task, load_npz
from keras_distill.data.images import ImageFiles, load_image_folder
from keras_distill.data.keras_datasets import KERAS_DATASETS, load_keras_dataset
from keras_distill.data.lazy import InMemory, LazyArray, Materialized, Subset, is_lazy
from keras_distill.data.records import RecordImages, load_tfrecords
from keras_distill.data.sources import load
from keras_distill.data.splits import (
    BINARY,
    MULTICLASS,
    MULTILABEL,
    REGRESSION,
    Splits,
    hash_split,
    split,
    standardize,
)
from keras_distill.data.unlabeled import UNLABELED, with_unlabeled

__all__ = [
    "BINARY", "KERAS_DATASETS", "MULTICLASS", "MULTILABEL", "REGRESSION", "UNLABELED",
    "DataError", "ImageFiles", "InMemory", "LazyArray", "Materialized", "RecordImages", "Splits",
    "Subset", "check_finite", "check_training_arrays", "detect_task", "hash_split", "is_lazy",
    "load", "load_breast_cancer", "load_diabetes", "load_digits", "load_image_folder",
    "load_keras_dataset", "load_npy_folder", "load_npz", "load_tfrecords", "registry",
    "representative_samples", "split", "standardize", "with_unlabeled",
]
