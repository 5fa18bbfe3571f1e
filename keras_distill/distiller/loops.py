"""The Distiller's loops: ``fit``, ``evaluate``, ``train_on_batch``, ``test_on_batch`` and
``predict`` as Keras's, plus what each adds: checks of NumPy inputs, teacher outputs computed
once, lazy arrays streamed, the ``teacher_dtype`` copy kept in step with the teacher, the
non-finite guard's error, and the XLA fallback (``keras_distill.distiller.xla``).

A mixin of :class:`keras_distill.Distiller` (which comes first in its bases, before
``keras.Model``); it holds no state of its own.
"""

from __future__ import annotations

from keras_distill import guard, precision
from keras_distill.data import check_training_arrays, stream
from keras_distill.distiller import caching, checks, xla


class FitLoops:
    """``fit`` and the other loops of the Distiller (see the module's docstring)."""

    def fit(self, x=None, y=None, *args, cache_teacher=False, cache_dir=None,
            cache_top_k=None, teacher_batch_size=256, **kwargs):
        """``keras.Model.fit``, plus teacher outputs computed once, and lazy arrays streamed.

        Args:
            x, y, *args, **kwargs: as for ``keras.Model.fit``; lazy arrays
                (``keras_distill.data.load`` gives them for files) are streamed in batches of
                ``batch_size``, shuffled each epoch unless ``shuffle=False``.
            cache_teacher: True: run the teacher once per sample (NumPy or lazy arrays, or a
                deterministic ``tf.data`` dataset: ``keras_distill.store.determinism``) and
                reuse its outputs every epoch; not with ``augment`` or ``mixup``. Or the path of
                a store written before for these inputs (``keras-distill label``).
                ``self.cache_info`` says where the outputs came from.
            cache_dir: where they are stored, keyed to the teacher's weights and the data.
            cache_top_k: keep the ``k`` most likely classes of multiclass outputs and the
                rest's total, at the Distiller's temperature (``keras_distill.store.topk``).
            teacher_batch_size: batch size of the teacher's one pass.

        A loss term or gradient that becomes NaN or infinite stops training with a
        ``FloatingPointError`` naming it; that step is not applied (``keras_distill.guard``).
        """
        import tensorflow as tf

        if isinstance(x, tf.data.Dataset) and int(x.cardinality()) == 0:
            raise ValueError("fit: the dataset is empty (0 batches); pass some data.")
        self._resolve_from_data(x, y, "fit")
        self._check_arrays(x, y, "fit", kwargs.get("validation_data"))
        self._sync_teacher()
        cached = caching.Cached()
        try:
            x, y, kwargs = cached.fit_data(self, x, y, kwargs, cache_teacher, cache_dir,
                                           cache_top_k, teacher_batch_size)
            callbacks = [guard.StopOnNonFinite(self._guard),
                         *(kwargs.pop("callbacks", None) or [])]
            return self._fit(x, y, args, callbacks, kwargs)
        finally:
            cached.close()

    def _fit(self, x, y, args, callbacks, kwargs):
        return xla.retrying(self, lambda: self._keras_fit(x, y, args, callbacks, kwargs))

    def _keras_fit(self, x, y, args, callbacks, kwargs):
        import tensorflow as tf

        try:
            return super().fit(x, y, *args, callbacks=callbacks, **kwargs)
        except tf.errors.InvalidArgumentError as err:
            if xla.is_compile_error(err):
                raise
            clear = guard.error_from(err) or checks.label_error(err) or \
                stream.clear_error(err)
            if clear is None:
                raise
            raise clear from None

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``, with the same checks of NumPy inputs as ``fit``; lazy
        arrays are streamed in batches."""
        self._resolve_from_data(x, y, "evaluate")
        self._check_arrays(x, y, "evaluate")
        self._sync_teacher()
        x, y, kwargs = stream.fit_arguments(x, y, kwargs, training=False)
        return xla.retrying(self, lambda: super(FitLoops, self).evaluate(x, y, *args,
                                                                          **kwargs))

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self._resolve_from_data(x, y, "train_on_batch")
        self._sync_teacher()
        self._guard.reset()
        out = xla.retrying(self, lambda: super(FitLoops, self).train_on_batch(
            x, y, *args, **kwargs))
        message = self._guard.message()  # as fit does: the step was not applied
        if message is not None:
            raise FloatingPointError(f"Distillation stopped: {message}")
        return out

    def test_on_batch(self, x, y=None, *args, **kwargs):
        self._resolve_from_data(x, y, "test_on_batch")
        self._sync_teacher()
        return xla.retrying(self, lambda: super(FitLoops, self).test_on_batch(
            x, y, *args, **kwargs))

    def predict(self, x, *args, **kwargs):
        """``keras.Model.predict``: the student's outputs."""
        return xla.retrying(self, lambda: super(FitLoops, self).predict(x, *args, **kwargs))

    def _sync_teacher(self):
        """The teacher_dtype copy takes the teacher's current weights."""
        if self.teacher is not None:
            precision.sync_weights(self.teacher, self._forward_teacher)

    def _check_arrays(self, x, y, where, validation=None):
        check_training_arrays(x, y, self.student, where, outputs=self.output_kinds)
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            self._check_arrays(validation[0], validation[1], "validation_data")
