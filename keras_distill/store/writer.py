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
#: At most this many bytes of inputs are read for one teacher call of :func:`write`.
CHUNK_BYTES = 64 * 2**20


def teacher_fingerprint(teacher):
    """A hash of the teacher's weights, in order with their shapes and dtypes (not their
    names: a model built in memory and the same model loaded from its file name their
    variables differently), or of its file, for a ``FileTeacher``."""
    from keras_distill.teachers import FileTeacher

    h = hashlib.sha256()
    if isinstance(teacher, FileTeacher):
        h.update(teacher.fingerprint().encode())
    else:
        for v in teacher.weights:
            arr = np.ascontiguousarray(keras.ops.convert_to_numpy(v))
            h.update(str((arr.shape, arr.dtype)).encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:32]


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
                         "value (top_k=None).")
    return structure, names, infos


def _fields(store, outputs):
    leaves = keras.tree.flatten(outputs)
    return [encode_output(leaf, info, store.meta["temperature"])
            for leaf, info in zip(leaves, store.meta["outputs"])]


def write(teacher, x, path, *, top_k=None, temperature=1.0, kinds=MULTICLASS,
          shard_size=4096, batch_size=256, key=None, log=None):
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

    Returns:
        The complete :class:`~keras_distill.store.shards.TeacherStore`.
    """
    n = len(x)
    if n == 0:
        raise ValueError("the inputs are empty; pass the samples to label.")
    data_fp = data_fingerprint(x)
    key = key or store_key(teacher_fingerprint(teacher), data_fp, top_k, temperature)
    store = TeacherStore.create(path, key=key, shard_size=shard_size, top_k=top_k,
                                temperature=temperature)
    store.describe(data=data_fp)  # what fit(..., cache_teacher=<store>) checks its inputs by
    # inputs are read a chunk of at most CHUNK_BYTES at a time (a shard of large images
    # would otherwise be hundreds of MiB at once)
    chunk = min(shard_size, chunk_rows(x, CHUNK_BYTES, multiple=batch_size))
    for i in range(store.shard_count(n)):
        if store.has_shard(i):
            continue
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
    return store


def write_dataset(teacher, dataset, path, *, top_k=None, temperature=1.0, kinds=MULTICLASS,
                  shard_size=4096, key=None):
    """The teacher's outputs on a deterministic ``tf.data`` dataset of batches in a store.

    The dataset is checked first (:func:`keras_distill.store.determinism.check`). Each shard
    keeps a hash of its inputs: a resumed or repeated write reuses a shard only when the
    dataset gives the same inputs there, and computes it again otherwise.

    Returns:
        The complete store, with the dataset's batch sizes (``meta["batches"]``).
    """
    determinism.check(dataset)
    key = key or store_key(teacher_fingerprint(teacher), "tf.data", top_k, temperature)
    store = TeacherStore.create(path, key=key, shard_size=shard_size, top_k=top_k,
                                temperature=temperature)
    batches, pending, hasher, shard = [], [], hashlib.sha256(), 0
    filled = 0

    def flush():
        nonlocal pending, hasher, shard, filled
        if not pending:
            return
        digest = hasher.hexdigest()
        if store.shard_hash(shard) != digest:
            xs = np.concatenate([p for p in pending])
            outputs = teacher.predict(xs, batch_size=max(len(p) for p in pending), verbose=0)
            store.set_outputs(*describe_outputs(outputs, kinds, top_k))
            store.write_shard(shard, _fields(store, outputs), inputs_hash=digest, replace=True)
        pending, hasher, shard, filled = [], hashlib.sha256(), shard + 1, 0

    for element in dataset.as_numpy_iterator():
        x = element[0] if isinstance(element, tuple) else element
        x = np.asarray(x)
        batches.append(len(x))
        while len(x):
            take = x[:shard_size - filled]
            pending.append(take)
            hasher.update(np.ascontiguousarray(take).tobytes())
            filled += len(take)
            x = x[len(take):]
            if filled == shard_size:
                flush()
    flush()
    samples = sum(batches)
    if samples == 0:
        raise ValueError("the dataset is empty; pass some data.")
    store.finish(samples, batches=_run_lengths(batches))
    return store


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
           "teacher_fingerprint", "topk", "write", "write_dataset"]
