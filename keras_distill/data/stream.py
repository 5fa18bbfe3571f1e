"""Batches of arrays as a ``tf.data`` pipeline: what streams lazy data (and large NumPy or
memory-mapped arrays) to ``fit``, ``predict``, calibration and verification.

:func:`dataset` reads rows by index, one batch at a time (in parallel, in order, with
prefetching), so only a few batches are ever in memory. A shuffle permutes the indices, not
the data: the same as Keras's own shuffle of NumPy arrays, with no shuffle buffer of samples.
The rows of every array of the structure are read with the same indices, so inputs, labels
and cached teacher outputs stay paired.
"""

from __future__ import annotations

import numpy as np

from keras_distill.data.lazy import LazyArray, Materialized, _rows_of, is_lazy

__all__ = ["Materialized", "batches", "chunks", "clear_error", "dataset", "fit_arguments",
           "is_lazy", "predict"]

#: At most this many bytes of inputs are read at once by :func:`predict` and :func:`chunks`.
CHUNK_BYTES = 64 * 2**20
#: Batches read at once, and batches read ahead, by :func:`dataset`.
PARALLEL_BATCHES = 2
PREFETCH_BATCHES = 2


def _length(structure):
    import keras

    lengths = {len(leaf) for leaf in keras.tree.flatten(structure)}
    if len(lengths) != 1:
        raise ValueError(f"the arrays to stream have different numbers of rows {sorted(lengths)}"
                         "; inputs, labels and teacher outputs need one row per sample.")
    return lengths.pop()


def _read(leaf, indices):
    """Rows ``indices`` (sorted) of a lazy or NumPy array."""
    out = leaf.rows(indices) if isinstance(leaf, LazyArray) else _rows_of(leaf, indices)
    return np.ascontiguousarray(out)


def dataset(structure, *, batch_size=32, shuffle=False, seed=0, check_finite=True):
    """A ``tf.data.Dataset`` of batches of ``structure`` (an array, or a tuple / dict of them
    with one row per sample), read by index.

    Args:
        structure: NumPy, memory-mapped or :class:`~keras_distill.data.lazy.LazyArray`
            arrays, or a nested tuple / dict of them.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: a new permutation of the rows every epoch (seeded by ``seed``).
        check_finite: refuse float batches with NaN or infinite values, naming the rows.

    Example:
        >>> ds = dataset((np.arange(5.0), np.arange(5)), batch_size=2)
        >>> [b[1].numpy().tolist() for b in ds]
        [[0, 1], [2, 3], [4]]
    """
    import keras
    import tensorflow as tf

    leaves = keras.tree.flatten(structure)
    n = _length(structure)
    dtypes = [tf.as_dtype(np.dtype(leaf.dtype)) for leaf in leaves]
    shapes = [tuple(leaf.shape[1:]) for leaf in leaves]

    def fetch(indices):
        order = np.argsort(indices, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        out = []
        for leaf, dtype in zip(leaves, dtypes):
            rows = _read(leaf, indices[order])[rank].astype(dtype.as_numpy_dtype, copy=False)
            if check_finite and rows.dtype.kind == "f" and not np.isfinite(rows).all():
                bad = indices[np.flatnonzero(~np.isfinite(rows.reshape(len(rows), -1)).all(1))]
                raise ValueError(
                    f"the data has NaN or infinite values in rows {bad[:5].tolist()} (of "
                    f"{n}); drop or impute them (np.nan_to_num) before training.")
            out.append(rows)
        return out

    def load(indices):
        parts = tf.numpy_function(fetch, [indices], dtypes, stateful=False)
        for part, shape in zip(parts, shapes):
            part.set_shape((None, *shape))
        return tf.nest.pack_sequence_as(_as_tuples(structure), parts)

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    # A fixed, small number of batches in flight: memory stays a few batches whatever the data
    # (tf.data's autotuning may buffer up to half the machine's memory).
    ds = ds.batch(batch_size).map(load, num_parallel_calls=PARALLEL_BATCHES,
                                  deterministic=True)
    return ds.prefetch(PREFETCH_BATCHES)


def _any_lazy(*structures):
    import keras

    return any(is_lazy(leaf) for s in structures if s is not None
               for leaf in keras.tree.flatten(s))


def fit_arguments(x, y, kwargs, *, training, seed=None):
    """``(x, y, kwargs)`` with lazy arrays (inputs, labels or cached outputs) replaced by a
    ``tf.data`` pipeline of batches (``batch_size``, ``shuffle`` and ``sample_weight`` taken
    from ``kwargs``; the shuffle seeded by ``seed``, default drawn from NumPy's generator,
    which ``keras.utils.set_random_seed`` seeds); other data unchanged. What ``fit`` and
    ``evaluate`` of the Distiller and of the pipeline's plain Keras models are given.

    Example:
        >>> from keras_distill.data.lazy import InMemory
        >>> x, y, kw = fit_arguments(InMemory(np.zeros((5, 2))), np.arange(5),
        ...                          {"batch_size": 2}, training=True, seed=0)
        >>> y is None, kw
        (True, {'shuffle': False})
    """
    import tensorflow as tf

    weights = kwargs.get("sample_weight")
    validation = kwargs.get("validation_data")
    if isinstance(validation, (tuple, list)) and _any_lazy(*validation):
        kwargs["validation_data"] = dataset(
            tuple(validation), batch_size=kwargs.get("validation_batch_size")
            or kwargs.get("batch_size") or 32)
    if isinstance(x, tf.data.Dataset):
        if training:
            kwargs.setdefault("shuffle", False)  # Keras ignores it for a dataset (and warns)
        return x, y, kwargs
    if not _any_lazy(x, y, weights):
        return x, y, kwargs
    if kwargs.get("validation_split"):
        raise ValueError("validation_split cannot split lazy arrays or teacher outputs read "
                         "from a store; pass validation_data (it streams too).")
    parts = tuple(p for p in (x, y, kwargs.pop("sample_weight", None)) if p is not None)
    batch_size = kwargs.pop("batch_size", None) or 32
    shuffle = kwargs.pop("shuffle", True) and training
    if seed is None:
        seed = int(np.random.randint(2**31 - 1)) if shuffle else 0
    if training:
        kwargs["shuffle"] = False  # the pipeline shuffles
    return dataset(parts, batch_size=batch_size, shuffle=shuffle, seed=seed), None, kwargs


def _as_tuples(structure):
    """``structure`` with lists as tuples (``tf.nest`` packs into its structure)."""
    if isinstance(structure, dict):
        return {k: _as_tuples(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return tuple(_as_tuples(v) for v in structure)
    return 0


def chunk_rows(x, max_bytes=None, multiple=1):
    """Rows of ``x`` that take at most ``max_bytes`` (default :data:`CHUNK_BYTES`; at least
    ``multiple``), a multiple of ``multiple``.

    Example:
        >>> chunk_rows(np.zeros((10, 1000), np.float32), max_bytes=16000)
        4
    """
    max_bytes = CHUNK_BYTES if max_bytes is None else max_bytes
    row = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * np.dtype(x.dtype).itemsize)
    return max(multiple, max_bytes // row // multiple * multiple)


def chunks(x, size=None):
    """``(start, rows)`` of ``x`` in chunks of ``size`` rows (default: :data:`CHUNK_BYTES` of
    them), NumPy, memory-mapped or lazy."""
    size = size or chunk_rows(x)
    for start in range(0, len(x), size):
        yield start, np.asarray(x[start:start + size])


def batches(x, size=None):
    """The rows of ``x`` in chunks of ``size`` (see :func:`chunks`)."""
    for _, rows in chunks(x, size):
        yield rows


def predict(model, x, *, batch_size=512):
    """``model.predict`` over NumPy or lazy inputs, read a chunk of at most
    :data:`CHUNK_BYTES` at a time; the outputs (one row per sample) as float32 NumPy arrays,
    in the model's output structure.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> predict(model, np.zeros((3, 2))).shape
        (3, 1)
    """
    import keras

    chunk = chunk_rows(x)  # rows of at most CHUNK_BYTES (fewer than a batch for large ones)
    batch_size = min(batch_size, chunk)
    if not is_lazy(x) and len(x) <= chunk:
        out = model.predict(x, batch_size=batch_size, verbose=0)
        return keras.tree.map_structure(lambda a: np.asarray(a, np.float32), out)
    parts = [model.predict(rows, batch_size=batch_size, verbose=0)
             for rows in batches(x, chunk)]
    return keras.tree.map_structure(lambda *a: np.concatenate(a).astype(np.float32), *parts)


def clear_error(err):
    """The one-line error a streamed batch raised inside ``tf.data`` (``ValueError`` /
    ``DataError`` from reading or checking it), out of TensorFlow's many-line
    ``InvalidArgumentError``; or None when the error is not one of those.

    Example:
        >>> clear_error(Exception("Graph execution error: ... ValueError: the data has NaN"))
        ValueError('the data has NaN')
    """
    import re

    match = re.search(r"\b(ValueError|DataError|Materialized): (.+)", str(err))
    if match is None:
        return None
    from keras_distill.data.errors import DataError

    kind = {"ValueError": ValueError, "DataError": DataError, "Materialized": Materialized}
    return kind[match.group(1)](match.group(2).strip())
