"""Writing a store: the teacher run over arrays (NumPy, memory-mapped or lazy) or over a
deterministic ``tf.data`` dataset, a shard at a time, resumable."""

from __future__ import annotations

import hashlib
import sys

import keras
import numpy as np

from keras_distill.data.stream import chunk_rows
from keras_distill.store import determinism, topk
from keras_distill.store.shards import StoreError, TeacherStore, encode_output

MULTICLASS = "multiclass"


def teacher_fingerprint(teacher):
    """A hash of the teacher's weights, in order with their shapes and dtypes (not their
    names: a model built in memory and the same model loaded from its file name their
    variables differently), or of its file, for a ``FileTeacher``."""
    from keras_distill.teachers import FileTeacher

    h = hashlib.sha256()
    if isinstance(teacher, FileTeacher):
        h.update(teacher.fingerprint().encode())
    else:
        h.update(_architecture(teacher).encode())
        for v in teacher.weights:
            arr = np.ascontiguousarray(keras.ops.convert_to_numpy(v))
            h.update(str((arr.shape, arr.dtype)).encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:32]


def _architecture(model):
    """What the model computes, apart from its weights: its configuration (layers, their
    activations, an ensemble's weights and average) without names, which differ between a
    model built in memory and the same one loaded from its file."""
    import json

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("name", "build_config", "trainable", "compile_config")}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value

    try:
        config = {"class": type(model).__name__, "config": strip(model.get_config())}
    except (NotImplementedError, TypeError, AttributeError):  # a model without get_config
        config = {"class": type(model).__name__, "layers": [
            type(layer).__name__ for layer in getattr(model, "layers", [])]}
    return json.dumps(config, sort_keys=True, default=str)


def data_fingerprint(x):
    """A hash of the inputs: of their bytes (NumPy), of what identifies them (lazy arrays:
    files, sizes, modification times, the rows taken)."""
    from keras_distill.data.lazy import LazyArray

    if isinstance(x, LazyArray):
        return x.fingerprint()
    x = np.ascontiguousarray(x)
    h = hashlib.sha256(str((x.shape, x.dtype)).encode())
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()[:32]


def store_key(teacher_fp, data_fp, top_k=None, temperature=1.0):
    text = f"{teacher_fp}|{data_fp}|{top_k}|{float(temperature) if top_k else ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _looks_like_probabilities(a):
    a = np.asarray(a, np.float64)
    return a.ndim >= 2 and bool((a >= 0).all()) and bool(
        np.allclose(a.sum(axis=-1), 1.0, atol=1e-3))


def describe_outputs(outputs, kinds, top_k):
    """``(structure, names, infos)`` of a first shard's outputs: how they nest, and for each
    its sample shape, form and the ``top_k`` it is stored with (multiclass outputs of more than
    ``top_k + 1`` classes only)."""
    structure = "dict" if isinstance(outputs, dict) else \
        "list" if isinstance(outputs, (list, tuple)) else "single"
    names = sorted(outputs) if structure == "dict" else None
    leaves = keras.tree.flatten(outputs)
    kinds = kinds if isinstance(kinds, (list, tuple)) else [kinds] * len(leaves)
    infos = []
    for leaf, kind in zip(leaves, kinds):
        leaf = np.asarray(leaf)
        form = "probabilities" if _looks_like_probabilities(leaf) else "logits"
        k = top_k if (top_k and kind == MULTICLASS and leaf.ndim == 2
                      and leaf.shape[1] > top_k + 1) else None
        infos.append({"shape": list(leaf.shape[1:]), "form": form, "top_k": k, "kind": kind})
    if top_k and not any(i["top_k"] for i in infos):
        raise StoreError(f"top_k={top_k} applies to multiclass outputs of more than "
                         f"{top_k + 1} classes; this teacher has none ({infos}). Store every "
                         "value: top_k=None (fit: cache_top_k=None; label: no --top-k).")
    return structure, names, infos


def _fields(store, outputs):
    leaves = keras.tree.flatten(outputs)
    return [encode_output(leaf, info, store.meta["temperature"])
            for leaf, info in zip(leaves, store.meta["outputs"])]


def write(teacher, x, path, *, top_k=None, temperature=1.0, kinds=MULTICLASS,
          shard_size=4096, batch_size=256, key=None, log=None, fingerprints=None):
    """The teacher's outputs on arrays ``x`` (NumPy, memory-mapped or lazy) in a store at
    ``path``, a shard at a time; shards already there are kept (a resumed write).

    Args:
        teacher: a Keras model, an ``Ensemble`` or a ``FileTeacher`` (``predict``).
        x: the inputs, one row per sample.
        path: the store's folder.
        top_k: keep the ``top_k`` most likely classes of multiclass outputs
            (:mod:`keras_distill.store.topk`), or None for every value in float32.
        temperature: the temperature the top-k probabilities are stored at.
        kinds: each output's kind (a string, or a list in output order); top-k applies to
            ``"multiclass"`` outputs.
        key: the store's key; default the teacher's and the data's fingerprints.
        log: a function given one progress line per shard, or None.
        fingerprints: ``(teacher_fingerprint, data_fingerprint)`` when the caller has them
            (hashing a large teacher or NumPy ``x`` again is not free).

    Returns:
        The complete :class:`~keras_distill.store.shards.TeacherStore`.
    """
    n = len(x)
    if n == 0:
        raise ValueError("the inputs are empty; pass the samples to label.")
    teacher_fp, data_fp = fingerprints or (teacher_fingerprint(teacher), data_fingerprint(x))
    key = key or store_key(teacher_fp, data_fp, top_k, temperature)
    store = TeacherStore.create(path, key=key, shard_size=shard_size, top_k=top_k,
                                temperature=temperature)
    # what fit(..., cache_teacher=<store>) checks its inputs and teacher by
    store.describe(data=data_fp, teacher_fingerprint=teacher_fp)
    shard_size = store.meta["shard_size"]  # a resumed store keeps its own
    # inputs are read a chunk of at most stream.CHUNK_BYTES at a time (a shard of large
    # images would otherwise be hundreds of MiB at once)
    chunk = min(shard_size, chunk_rows(x, multiple=batch_size))
    written = 0
    for i in range(store.shard_count(n)):
        if store.has_shard(i):
            continue
        written += 1
        start, stop = i * shard_size, min(n, (i + 1) * shard_size)
        parts = [teacher.predict(np.asarray(x[s:min(stop, s + chunk)]), batch_size=batch_size,
                                 verbose=0) for s in range(start, stop, chunk)]
        outputs = parts[0] if len(parts) == 1 else keras.tree.map_structure(
            lambda *a: np.concatenate(a), *parts)
        store.set_outputs(*describe_outputs(outputs, kinds, top_k))
        store.write_shard(i, _fields(store, outputs))
        if log is not None:
            log(f"  teacher outputs: shard {i + 1} of {store.shard_count(n)} written.")
    store.finish(n)
    store.written = written
    return store


def write_dataset(teacher, dataset, path, *, top_k=None, temperature=1.0, kinds=MULTICLASS,
                  shard_size=4096, key=None, teacher_fp=None):
    """The teacher's outputs on a deterministic, finite ``tf.data`` dataset of batches in a
    store.

    The dataset is checked first (:func:`keras_distill.store.determinism.check`). Each shard
    keeps a hash of its inputs: where a store is there already, one pass over the data (no
    teacher) compares them, and the teacher runs only for the shards whose inputs differ (the
    store is marked incomplete until they are written again). The teacher runs batch by batch,
    so only outputs are held, never a shard of inputs.

    Returns:
        The complete store, with the dataset's batch sizes (``meta["batches"]``) and
        ``written`` (how many shards were computed now; 0: all reused).
    """
    import tensorflow as tf

    if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("the dataset repeats forever (.repeat()): cache the finite dataset "
                         "and repeat after, or fit without cache_teacher.")
    determinism.check(dataset)
    teacher_fp = teacher_fp or teacher_fingerprint(teacher)
    key = key or store_key(teacher_fp, "tf.data", top_k, temperature)
    store = TeacherStore.create(path, key=key, shard_size=shard_size, top_k=top_k,
                                temperature=temperature)
    store.describe(teacher_fingerprint=teacher_fp)
    size = store.meta["shard_size"]
    todo = None  # None: every shard
    if store.shard_names():
        hashes, batches = _shard_hashes(dataset, size)
        todo = {i for i, h in enumerate(hashes) if store.shard_hash(i) != h}
        if not todo and store.meta.get("complete") and \
                store.meta.get("batches") == _run_lengths(batches):
            store.written = 0
            return store
        store.meta["complete"] = False  # shards are about to change
        store._save()
    batches, written = _write_shards(teacher, dataset, store, size, todo, kinds, top_k)
    samples = sum(batches)
    if samples == 0:
        raise ValueError("the dataset is empty; pass some data.")
    store.finish(samples, batches=_run_lengths(batches))
    store.written = written
    return store


def write_cache(teacher, x, folder, *, top_k=None, temperature=1.0, kinds=MULTICLASS,
                batch_size=256):
    """The store of ``teacher``'s outputs on ``x`` (arrays, or a deterministic dataset) in
    ``folder/teacher-<key>``: one folder per teacher, data, ``top_k`` and temperature, reused
    (resumed) when it is there. What ``fit(cache_teacher=True)`` and ``cache_outputs`` use.

    Returns:
        The complete store (``written``: the shards computed now; 0: all reused).

    Example:
        >>> store = write_cache(teacher, x_train, "cache")   # doctest: +SKIP
        >>> write_cache(teacher, x_train, "cache").written   # doctest: +SKIP
        0
    """
    import os

    import tensorflow as tf

    teacher_fp = teacher_fingerprint(teacher)
    if isinstance(x, tf.data.Dataset):
        key = store_key(teacher_fp, f"tf.data {x.element_spec}", top_k, temperature)
        return write_dataset(teacher, x, os.path.join(folder, f"teacher-{key}"), top_k=top_k,
                             temperature=temperature, kinds=kinds, key=key,
                             teacher_fp=teacher_fp)
    data_fp = data_fingerprint(x)
    key = store_key(teacher_fp, data_fp, top_k, temperature)
    return write(teacher, x, os.path.join(folder, f"teacher-{key}"), top_k=top_k,
                 temperature=temperature, kinds=kinds, batch_size=batch_size, key=key,
                 fingerprints=(teacher_fp, data_fp))


def _inputs_of(element):
    x = element[0] if isinstance(element, tuple) else element
    return np.asarray(x)


def _segments(dataset, size, batches):
    """``(shard, rows, last)`` for each part of each batch of inputs that falls in one shard of
    ``size`` samples (``last``: the shard ends with it); the batch sizes go to ``batches``."""
    shard, filled = 0, 0
    for element in dataset.as_numpy_iterator():
        x = _inputs_of(element)
        batches.append(len(x))
        while len(x):
            take = x[:size - filled]
            filled += len(take)
            x = x[len(take):]
            yield shard, take, filled == size
            if filled == size:
                shard, filled = shard + 1, 0
    if filled:
        yield shard, x[:0], True  # the short last shard ends here


def _shard_hashes(dataset, size):
    """``(hashes, batch sizes)``: a hash of the inputs of each shard of ``size`` samples."""
    hashes, batches, hasher = [], [], hashlib.sha256()
    for _, rows, last in _segments(dataset, size, batches):
        hasher.update(np.ascontiguousarray(rows).tobytes())
        if last:
            hashes.append(hasher.hexdigest())
            hasher = hashlib.sha256()
    return hashes, batches


def _write_shards(teacher, dataset, store, size, todo, kinds, top_k):
    """One pass: the teacher on the batches of the shards in ``todo`` (None: all), each shard
    written with its inputs' hash. Returns ``(batch sizes, shards written)``."""
    batches, outputs, hasher, written = [], [], hashlib.sha256(), 0
    for shard, rows, last in _segments(dataset, size, batches):
        if todo is None or shard in todo:
            hasher.update(np.ascontiguousarray(rows).tobytes())
            if len(rows):
                outputs.append(teacher.predict(rows, batch_size=len(rows), verbose=0))
        if last:
            if outputs:
                joined = keras.tree.map_structure(lambda *a: np.concatenate(a), *outputs)
                store.set_outputs(*describe_outputs(joined, kinds, top_k))
                store.write_shard(shard, _fields(store, joined), inputs_hash=hasher.hexdigest(),
                                  replace=True)
                written += 1
            outputs, hasher = [], hashlib.sha256()
    return batches, written


def _run_lengths(sizes):
    """``[[size, count], ...]`` of a list of batch sizes."""
    runs = []
    for s in sizes:
        if runs and runs[-1][0] == s:
            runs[-1][1] += 1
        else:
            runs.append([int(s), 1])
    return runs


def batch_sizes(store):
    """The batch sizes a dataset's store was written with."""
    return [size for size, count in store.meta["batches"] or [] for _ in range(count)]


def note(text):
    print(text, file=sys.stderr)


__all__ = ["batch_sizes", "data_fingerprint", "describe_outputs", "store_key",
           "teacher_fingerprint", "topk", "write", "write_cache", "write_dataset"]
