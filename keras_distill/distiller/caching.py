"""What ``Distiller.fit`` trains on: cached teacher outputs (in memory, or a store on disk)
and lazy arrays streamed as a ``tf.data`` pipeline."""

from __future__ import annotations

import os
import shutil
import tempfile

from keras_distill import teachers as teachers_lib
from keras_distill.data import stream
from keras_distill.data.lazy import is_lazy


def _is_dataset(x):
    import tensorflow as tf

    return isinstance(x, tf.data.Dataset)


def _warn_temperature(store, temperature):
    """A top-k store is exact at its temperature only: say so when it is used at another."""
    import warnings

    if store.meta.get("top_k") and abs(store.meta["temperature"] - temperature) > 1e-6:
        warnings.warn(
            f"{store.path} holds top-{store.meta['top_k']} outputs stored at temperature "
            f"{store.meta['temperature']:g}; at this Distiller's {temperature:g} the loss on "
            "them is an approximation (README: Top-k). Label at this temperature for the "
            "exact loss.", stacklevel=4)


class Cached:
    """The data of one ``fit`` with cached teacher outputs, and the temporary store it may
    need (removed by :meth:`close`)."""

    def __init__(self):
        self.tmp = None
        self.info = None

    def close(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def _folder(self, cache_dir):
        """Where the stores go: ``cache_dir``, or a temporary folder removed after the fit."""
        if cache_dir is None:
            self.tmp = tempfile.mkdtemp(prefix="keras-distill-teacher-")
            return self.tmp
        os.makedirs(cache_dir, exist_ok=True)
        return os.fspath(cache_dir)

    def fit_data(self, distiller, x, y, kwargs, cache, cache_dir, top_k, batch_size):
        """``(x, y, kwargs)`` that ``keras.Model.fit`` trains on: with cached outputs when
        ``cache`` is set (``distiller.cache_info`` says where from), lazy arrays streamed."""
        if cache is not False and cache is not None:
            x, y = self.prepare(distiller, x, y, cache, cache_dir, top_k, batch_size)
            distiller.cache_info = self.info
        elif distiller.teacher is None and not _is_dataset(x) and not \
                teachers_lib.is_carrier(y):
            raise ValueError(
                "This Distiller has no Keras teacher: call fit(..., cache_teacher=True) (with a "
                "FileTeacher) or train on keras_distill.teachers.cache_outputs(...).")
        return stream.fit_arguments(x, y, kwargs, training=True)

    def prepare(self, distiller, x, y, cache, cache_dir, top_k, batch_size):
        """``(x, y)`` carrying the teacher's outputs (``cache``: True, or a store written
        before: its path or a ``TeacherStore``)."""
        from keras_distill import store as store_lib

        if distiller.augment is not None or distiller.mixup > 0:
            raise ValueError(
                "cache_teacher cannot be combined with augment or mixup: augmented inputs "
                "change every epoch, so the teacher must see each one. Turn the cache off, or "
                "the augmentation.")
        if distiller.hint_adapters:  # one per feature-hint loss
            raise ValueError(
                "cache_teacher cannot be combined with feature-hint losses (FeatureHint): the "
                "cache holds the teacher's outputs, not its intermediate features, which the "
                "teacher must compute at every step. Turn the cache off, or the hint loss.")
        teacher = distiller.file_teacher or distiller.teacher
        if cache is not True:
            store = store_lib.open_store(cache)
            store_lib.check_teacher(store, teacher)
            _warn_temperature(store, distiller.temperature)
            self.info = {"key": store.meta["key"], "path": store.path, "reused": True}
            return self._paired(store, x, y, check=True)
        if teacher is None:
            raise ValueError("cache_teacher=True needs a teacher (a Keras model or "
                             "FileTeacher); or pass a store's path: cache_teacher='store/'.")
        if not _is_dataset(x) and not is_lazy(x) and top_k is None:
            y, self.info = teachers_lib.cached_targets(teacher, x, y, cache_dir=cache_dir,
                                                       batch_size=batch_size)
            return x, y
        if teachers_lib.is_carrier(y):
            raise ValueError("cache_teacher=True: y already carries teacher outputs.")
        kinds = [o.kind for o in distiller.output_kinds or []] or "multiclass"
        kinds = kinds[0] if len(kinds) == 1 else kinds
        store = store_lib.write_cache(teacher, x, self._folder(cache_dir), top_k=top_k,
                                      temperature=distiller.temperature, kinds=kinds,
                                      batch_size=batch_size)
        # reused: no shard computed now (every one read back)
        self.info = {"key": store.meta["key"], "path": None if self.tmp else store.path,
                     "reused": store.written == 0}
        return self._paired(store, x, y, check=False)

    @staticmethod
    def _paired(store, x, y, check):
        from keras_distill import store as store_lib

        if _is_dataset(x):
            if y is not None:
                raise ValueError("fit: with a dataset, y must be None (the dataset gives it).")
            if check:
                store_lib.check_dataset(store, x)
            return store_lib.pair_dataset(x, store), None
        if check:
            store_lib.check_pairing(store, x)
        return x, teachers_lib.targets_with_outputs(store.outputs(), y)
