"""The non-finite guard of a training step: a NaN or infinite loss term or gradient never
reaches the weights, and ``fit`` stops with a ``FloatingPointError`` naming it.

Both the loss terms and every gradient are checked, in the same compiled step, before the
optimizer applies anything: with oneDNN (TensorFlow's default on x86) ``ReLU(NaN)`` is 0, so a
NaN input can leave every loss term finite while the first layer's gradient is NaN.

One promise, kept three ways:

* In a single-replica step (eager, graph or XLA-compiled), the step computes one finite flag
  per term and gradient, applies the update only when all are finite (``tf.cond``), and records
  the first non-finite one in a guard variable; :class:`StopOnNonFinite` (added by
  ``Distiller.fit``) raises after the batch. ``tf.debugging`` assertions are not enough here:
  XLA drops them.
* Under a ``keras.optimizers.LossScaleOptimizer`` (the ``mixed_float16`` policy), only the
  loss terms are checked: scaled gradients overflow now and then by design, and that
  optimizer skips those steps itself, lowering its scale.
* Under a ``tf.distribute`` strategy with several replicas, where the optimizer aggregates
  gradients across replicas (a synchronization point a ``tf.cond`` branch cannot hold), the
  step asserts that every term and gradient is finite before the update instead.
"""

from __future__ import annotations

import keras

#: Marks the guard's messages inside TensorFlow errors (the assertion path).
TAG = "keras_distill non-finite loss"


def term_message(name):
    return (f"the {name!r} term became NaN or infinite. Lower the learning rate, check the "
            "data for NaN/inf values, or check the teacher's outputs (use "
            "teacher_outputs='probabilities' if it ends in softmax).")


def gradient_message(path):
    return (f"the gradient of {path!r} became NaN or infinite (the loss terms were finite: a "
            "NaN or inf input can do this, since ReLU maps NaN to 0 on some CPU kernels); the "
            "weights were not updated: check the data for NaN/inf values, or lower the "
            "learning rate.")


class Guard:
    """Holds what a step found: ``-1`` when every value was finite, else the index of the first
    non-finite one in ``names`` (the loss terms, then the gradients' variables).

    A plain object (not a Keras layer or variable), so that the model saving it carries no
    extra weight.
    """

    def __init__(self):
        import tensorflow as tf

        self.first_bad = tf.Variable(-1, dtype=tf.int32, trainable=False,
                                     name="keras_distill_nonfinite")
        self.names = []

    def message(self):
        """The message of the recorded failure, or ``None``."""
        index = int(self.first_bad.numpy())
        if index < 0:
            return None
        kind, name = self.names[index]
        return term_message(name) if kind == "term" else gradient_message(name)

    def reset(self):
        self.first_bad.assign(-1)


def guarded_apply(guard, optimizer, named, grads, variables):
    """Apply ``grads`` with ``optimizer`` only when every loss term in ``named`` and every
    gradient is finite; otherwise record the first non-finite one in ``guard``."""
    import tensorflow as tf

    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        # mixed_float16: scaled gradients overflow now and then by design; the loss-scale
        # optimizer skips those steps and lowers its scale. The loss terms are still checked.
        pairs = []
    guard.names = [("term", n) for n in named] + [("gradient", v.path) for _, v in pairs]
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        with tf.control_dependencies(_assertions(named, pairs)):
            grads = [None if g is None else tf.identity(g) for g in grads]
        optimizer.apply_gradients(zip(grads, variables))
        return
    flags = tf.stack([tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v)))
                      for v in [*named.values(), *(g for g, _ in pairs)]])
    finite = tf.reduce_all(flags)
    first = tf.cast(tf.argmin(tf.cast(flags, tf.int32)), tf.int32)
    clean = guard.first_bad < 0
    # The first failure is kept, and once one is recorded no later step of the same execution
    # (steps_per_execution > 1) updates the weights before fit stops.
    guard.first_bad.assign(tf.where(clean & ~finite, first, guard.first_bad))
    finite = finite & clean
    if not optimizer.built:
        optimizer.build(variables)

    def apply():
        optimizer.apply_gradients(zip(grads, variables))
        return tf.constant(True)

    tf.cond(finite, apply, lambda: tf.constant(False))


def _assertions(named, pairs):
    import tensorflow as tf

    checks = [tf.debugging.assert_all_finite(value, f"{TAG}: {term_message(name)}")
              for name, value in named.items()]
    checks += [tf.debugging.assert_all_finite(tf.convert_to_tensor(g),
                                              f"{TAG}: {gradient_message(v.path)}")
               for g, v in pairs]
    return checks


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops ``fit`` with a ``FloatingPointError`` after a batch whose step was skipped."""

    def __init__(self, guard):
        super().__init__()
        self.guard = guard

    def on_train_begin(self, logs=None):
        self.guard.reset()

    def on_train_batch_end(self, batch, logs=None):
        message = self.guard.message()
        if message is not None:
            raise FloatingPointError(f"Distillation stopped: {message}")


def error_from(err):
    """The ``FloatingPointError`` of a TensorFlow error raised by the assertion path, or
    ``None``."""
    message = str(getattr(err, "message", err))
    if TAG not in message:
        return None
    start = message.index(TAG) + len(TAG) + 2
    detail = message[start:].split("\n")[0].split(" : Tensor")[0]
    return FloatingPointError(f"Distillation stopped: {detail}")
