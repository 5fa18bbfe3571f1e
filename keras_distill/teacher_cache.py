"""Teacher outputs computed once: in memory or cached on disk for NumPy inputs
(:func:`teacher_outputs`), carried with the labels to ``fit`` (:func:`targets_with_outputs`),
and as a ready ``tf.data`` pipeline (:func:`cache_outputs`). Lazy inputs, datasets and top-k
go to a store (``keras_distill.store``). ``keras_distill.teachers`` re-exports all of it.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np

TEACHER_OUTPUTS_KEY = "teacher_outputs"
LABELS_KEY = "labels"


def fingerprint(teacher, x):
    """A key for teacher outputs: a hash of the teacher's weights (or file) and of the inputs
    (their bytes; for lazy arrays, what identifies them: files, sizes, times, rows).

    A cache stored under this key is never reused for other weights or other data.
    """
    from keras_distill.store.writer import data_fingerprint, teacher_fingerprint

    text = f"{teacher_fingerprint(teacher)}|{data_fingerprint(x)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def teacher_outputs(teacher, x, *, batch_size=256, cache_dir=None, verbose=0):
    """The teacher's outputs on ``x``, computed once per sample, in batches.

    With ``cache_dir``, they are stored in ``<cache_dir>/teacher-<key>.npy`` (read back as a
    memory map, so larger-than-memory caches work) together with a ``.json`` description;
    ``key`` hashes the teacher's weights and the inputs, so a stale cache (other weights, other
    data) is never reused: it is simply not found, and is recomputed. A teacher with several
    outputs (a dict or list) gives the same structure of arrays, one file per output
    (``teacher-<key>-<i>.npy``).

    Args:
        teacher: a Keras model, an ``Ensemble`` or a ``FileTeacher``.
        x: NumPy inputs.
        batch_size: samples per teacher call.
        cache_dir: folder for the cache, or None to keep the outputs in memory only.

    Returns:
        ``(outputs, info)``: a float32 array with one row per sample (or a dict / list of them,
        as the teacher outputs), and a dict with ``key``, ``path`` (or None) and ``reused``
        (True when read from ``cache_dir``).
    """
    from keras_distill.data.lazy import is_lazy

    x = x if is_lazy(x) else np.asarray(x)
    if len(x) == 0:
        raise ValueError("teacher_outputs: x is empty; pass the training inputs.")
    key = fingerprint(teacher, x)
    path = None
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(os.fspath(cache_dir), f"teacher-{key}.npy")
        reused = _read_cache(path, key, len(x))
        if reused is not None:
            return reused, {"key": key, "path": path, "reused": True}
    leaves = structure = None
    # Large chunks, each one predict() call in batches: a predict() call has a fixed cost, and
    # a chunk bounds the memory a memory-mapped x needs at once.
    from keras_distill.data.stream import chunk_rows

    chunk = max(batch_size, min(16384, chunk_rows(x, multiple=batch_size)))
    for start in range(0, len(x), chunk):
        part = teacher.predict(x[start:start + chunk], batch_size=batch_size, verbose=0)
        parts = [np.asarray(p, np.float32) for p in keras.tree.flatten(part)]
        if leaves is None:
            structure = part
            paths = [None] * len(parts) if path is None else _leaf_paths(path, len(parts))
            leaves = [_new_leaf(p, (len(x), *a.shape[1:])) for p, a in zip(paths, parts)]
        for leaf, a in zip(leaves, parts):
            leaf[start:start + len(a)] = a
    if path is not None:
        for leaf in leaves:
            leaf.flush()
        del leaves
        paths = _leaf_paths(path, len(keras.tree.flatten(structure)))
        for p in paths:  # never a half-written cache under the real name
            os.replace(p + ".partial", p)
        names = sorted(structure) if isinstance(structure, dict) else None
        with open(path[:-4] + ".json.partial", "w") as f:
            json.dump({"key": key, "samples": len(x), "outputs": len(paths), "names": names,
                       "teacher": getattr(teacher, "name", None)
                       or getattr(teacher, "path", None)}, f)
        os.replace(path[:-4] + ".json.partial", path[:-4] + ".json")
        return _read_cache(path, key, len(x)), {"key": key, "path": path, "reused": False}
    return keras.tree.pack_sequence_as(structure, leaves), {"key": key, "path": None,
                                                            "reused": False}


def _leaf_paths(path, count):
    return [path] if count == 1 else [f"{path[:-4]}-{i}.npy" for i in range(count)]


def _new_leaf(path, shape):
    if path is None:
        return np.empty(shape, np.float32)
    return np.lib.format.open_memmap(path + ".partial", mode="w+", dtype=np.float32,
                                     shape=shape)


def _read_cache(path, key, samples):
    """The cached outputs under ``path`` (memory-mapped), or None when absent or stale."""
    meta_path = path[:-4] + ".json"
    if not (os.path.exists(path) or os.path.exists(path[:-4] + "-0.npy")) or \
            not os.path.exists(meta_path):
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    paths = _leaf_paths(path, int(meta.get("outputs", 1)))
    if meta.get("key") != key or not all(os.path.exists(p) for p in paths):
        return None
    leaves = [np.load(p, mmap_mode="r") for p in paths]
    if any(leaf.shape[0] != samples for leaf in leaves):
        return None
    if len(leaves) == 1 and meta.get("names") is None:
        return leaves[0]
    names = meta.get("names")
    return dict(zip(names, leaves)) if names else leaves


def cached_targets(teacher, x, y, *, cache_dir=None, batch_size=256):
    """``(targets, info)`` for ``Distiller.fit(..., cache_teacher=True)``: the teacher's
    outputs on NumPy ``x`` (see :func:`teacher_outputs`) carried with the labels ``y``."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset) or not hasattr(x, "shape") or is_carrier(y):
        raise ValueError(
            "cache_teacher=True needs NumPy arrays x (and y). For a tf.data pipeline, build "
            "the cached dataset with keras_distill.teachers.cache_outputs(teacher, x, y) "
            "and fit on it.")
    if teacher is None:
        raise ValueError("cache_teacher=True needs a teacher (a Keras model or FileTeacher).")
    outputs, info = teacher_outputs(teacher, x, batch_size=batch_size, cache_dir=cache_dir)
    return targets_with_outputs(outputs, y), info


def targets_with_outputs(outputs, labels=None):
    """Training targets that carry the teacher's outputs, the form the Distiller recognizes.

    Args:
        outputs: the teacher's outputs, one row per sample.
        labels: the true labels, or None (distill from the teacher alone).

    Returns:
        ``{"teacher_outputs": outputs}``, plus ``"labels": labels`` when given.

    Example:
        >>> targets = targets_with_outputs(np.zeros((2, 3)), np.array([0, 1]))
        >>> sorted(targets), split_targets(targets)[0].tolist()
        (['labels', 'teacher_outputs'], [0, 1])
    """
    from keras_distill.data.lazy import is_lazy

    def keep(a):  # lazy arrays (a store's outputs) stay lazy: they are streamed
        return a if is_lazy(a) else np.asarray(a)

    targets = {TEACHER_OUTPUTS_KEY: keras.tree.map_structure(keep, outputs)}
    if labels is not None:
        targets[LABELS_KEY] = keras.tree.map_structure(keep, labels)
    return targets


def is_carrier(y):
    """Whether targets ``y`` carry cached teacher outputs: a dict with the key
    ``"teacher_outputs"`` and no key but it and ``"labels"`` (a model's own dict of labels has
    its output names as keys; the Distiller refuses outputs named like these two)."""
    return isinstance(y, dict) and TEACHER_OUTPUTS_KEY in y and \
        set(y) <= {TEACHER_OUTPUTS_KEY, LABELS_KEY}


def split_targets(y):
    """``(labels, teacher outputs)`` from a batch's targets; plain labels give ``(y, None)``.

    Example:
        >>> split_targets(np.array([1, 2]))
        (array([1, 2]), None)
    """
    if is_carrier(y):
        return y.get(LABELS_KEY), y[TEACHER_OUTPUTS_KEY]
    return y, None


def cache_outputs(teacher, x, y=None, *, batch_size=32, shuffle=True, seed=None,
                  teacher_batch_size=256, cache_dir=None, top_k=None, temperature=1.0):
    """A ``tf.data.Dataset`` of ``(x, {"labels": y, "teacher_outputs": t})`` batches.

    The teacher runs once per sample; the Distiller recognizes the ``"teacher_outputs"`` key
    and skips its teacher. Without ``y`` the dict holds only the teacher outputs (distillation
    from the teacher alone). Use it for a teacher known only by its outputs
    (``Distiller(teacher=None, student=...)``) or to reuse one cache across runs.

    ``x`` may be NumPy, lazy (``keras_distill.data.lazy``: streamed, the outputs in a store)
    or a deterministic ``tf.data`` dataset of ``(x, y)`` batches (``y`` then None; its batches
    are kept, and ``shuffle`` shuffles their order). With ``top_k`` (or lazy inputs, or a
    dataset) the outputs go to a store (``keras_distill.store``) in ``cache_dir`` (default a
    temporary folder, removed when the process exits).

    Example:
        >>> ds = cache_outputs(teacher, x_train, y_train, batch_size=64)  # doctest: +SKIP
        >>> Distiller(None, student).fit(ds, epochs=10)                   # doctest: +SKIP
    """
    import tensorflow as tf

    from keras_distill.data import stream
    from keras_distill.data.lazy import is_lazy

    dataset = isinstance(x, tf.data.Dataset)
    if not dataset and not is_lazy(x) and top_k is None:
        outputs, _ = teacher_outputs(teacher, x, batch_size=teacher_batch_size,
                                     cache_dir=cache_dir)
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(x),
                                                 targets_with_outputs(outputs, y)))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    from keras_distill import store as store_lib

    written = store_lib.write_cache(
        teacher, x, cache_dir if cache_dir is not None else _temporary_folder(), top_k=top_k,
        temperature=temperature, batch_size=teacher_batch_size)
    if dataset:
        ds = store_lib.pair_dataset(x, written)
        batches = len(store_lib.writer.batch_sizes(written))
        return ds.shuffle(batches, seed=seed) if shuffle else ds
    return stream.dataset((x, targets_with_outputs(written.outputs(), y)),
                          batch_size=batch_size, shuffle=shuffle, seed=seed or 0)


def _temporary_folder():
    """A folder removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="keras-distill-teacher-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
