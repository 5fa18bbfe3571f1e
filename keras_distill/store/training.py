"""A store paired with the inputs it was written for: what ``fit`` trains on."""

from __future__ import annotations

import numpy as np

from keras_distill.store.shards import StoreError, TeacherStore
from keras_distill.store.writer import (
    _run_lengths,
    _shard_hashes,
    batch_sizes,
    data_fingerprint,
    teacher_fingerprint,
)


def open_store(store):
    """A complete :class:`TeacherStore` from a path or a store."""
    store = store if isinstance(store, TeacherStore) else TeacherStore.open(store)
    store.check_complete()
    return store


def check_pairing(store, x):
    """Refuse a store written for other inputs than arrays ``x`` (count, then fingerprint)."""
    if store.meta["batches"] is not None:
        raise StoreError(f"{store.path} was written from a tf.data dataset; fit on that "
                         "dataset (the store pairs with it batch by batch), not on arrays.")
    if len(x) != store.meta["samples"]:
        raise StoreError(f"{store.path} holds {store.meta['samples']} samples but the inputs "
                         f"have {len(x)}: it was written for other data.")
    expected = store.meta.get("description", {}).get("data")
    if expected is not None and expected != data_fingerprint(x):
        raise StoreError(f"{store.path} was written for other inputs (data fingerprint "
                         f"{expected}); label these inputs, or pass the data it was written "
                         "for.")


def check_teacher(store, teacher):
    """Refuse a store another teacher wrote, where the teacher that will use it is known."""
    expected = store.meta.get("description", {}).get("teacher_fingerprint")
    if teacher is None or expected is None:
        return
    if teacher_fingerprint(teacher) != expected:
        raise StoreError(
            f"{store.path} holds the outputs of another teacher (its weights or architecture "
            "differ from this Distiller's teacher); label the data with this teacher, or "
            "distill from the teacher that wrote it (Distiller(None, student) to use the store "
            "alone).")


def check_dataset(store, dataset):
    """Refuse a store written from another dataset: the batch sizes and each shard's inputs
    (one pass over the data, no teacher) must be the ones it was written from."""
    if not store.meta["batches"]:
        raise StoreError(f"{store.path} was written from arrays; fit on those arrays.")
    hashes, batches = _shard_hashes(dataset, store.meta["shard_size"])
    if _run_lengths(batches) != store.meta["batches"]:
        raise StoreError(f"{store.path} was written from a dataset of {store.meta['samples']} "
                         f"samples in other batches; this one has {sum(batches)} samples: "
                         "pass the dataset it was written from.")
    stale = [i for i, h in enumerate(hashes) if store.shard_hash(i) != h]
    if stale:
        raise StoreError(f"{store.path} was written from other inputs (shards {stale[:5]} "
                         "differ); pass the dataset it was written from, or write it again.")


def pair_dataset(dataset, store):
    """``dataset``'s batches with the store's outputs for them: ``(x, {"labels": y,
    "teacher_outputs": t}[, sample_weight])``, batch by batch as the store was written."""
    import keras
    import tensorflow as tf

    from keras_distill.teachers import LABELS_KEY, TEACHER_OUTPUTS_KEY

    sizes = batch_sizes(store)
    if not sizes:
        raise StoreError(f"{store.path} was written from arrays; fit on those arrays.")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    outputs = store.outputs()
    leaves = keras.tree.flatten(outputs)

    def fetch(start, size):
        rows = np.arange(start, start + size)
        return [leaf.rows(rows) for leaf in leaves]

    def load(start, size):
        parts = tf.numpy_function(fetch, [start, size], [tf.float32] * len(leaves),
                                  stateful=False)
        for part, leaf in zip(parts, leaves):
            part.set_shape((None, *leaf.shape[1:]))
        return tf.nest.pack_sequence_as(
            outputs if not isinstance(outputs, list) else tuple(outputs), parts)

    teacher = tf.data.Dataset.from_tensor_slices((starts, np.asarray(sizes, np.int64))).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def carry(element, t):
        if isinstance(element, tuple):
            x, y, *rest = element if len(element) > 1 else (element[0], None)
        else:
            x, y, rest = element, None, []
        targets = {TEACHER_OUTPUTS_KEY: t}
        if y is not None:
            targets[LABELS_KEY] = y
        return (x, targets, *rest)

    return tf.data.Dataset.zip((dataset, teacher)).map(carry).prefetch(tf.data.AUTOTUNE)
