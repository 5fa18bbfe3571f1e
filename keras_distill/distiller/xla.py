"""When the Distiller's steps run under XLA: ``Distiller.compile(jit_compile=...)``.

The rule is fixed by the machine and the model, never by a timing taken at run time (which
would make two runs of one configuration differ):

* ``"auto"`` (default): XLA where a GPU or TPU is visible, as Keras does, tried at the first
  step: when XLA cannot compile an op of the teacher, the student or a loss, the Distiller says
  so in one warning and trains without it. On a machine with CPUs only, XLA stays off:
  measured by ``bench/distill_speed.py`` on this project's 2-core CPU, it took between 0% and
  17% off an epoch of our step (varying between runs and workloads) while compiling the train
  and test steps cost about 3 s per ``fit``; the CLI's default run (35,000 samples seen per
  stage) would only get slower. For long CPU runs, ``"try"`` turns it on.
* ``"try"``: XLA on any device, with the same fallback.
* ``True`` / ``False``: XLA on (a compile error is raised) / off.

Under a ``tf.distribute`` strategy, or with ``run_eagerly=True``, ``"auto"`` and ``"try"`` mean
off, as in Keras.

XLA fuses operations and may sum in another order: a step's loss under XLA equals the loss
without it to float tolerance, not bit for bit (``tests/test_speed.py``); two XLA runs of one
configuration on one CPU are bit-identical.

Example:
    >>> import keras
    >>> x = keras.Input((4,))
    >>> model = keras.Model(x, keras.layers.Dense(2)(x))
    >>> choose(model, False)
    (False, False)
"""

from __future__ import annotations

import warnings

#: The accepted ``jit_compile`` values.
CHOICES = ("auto", "try", True, False)

#: What TensorFlow's errors say when XLA cannot compile a function.
_XLA_ERRORS = ("Detected unsupported operations when trying to compile graph",
               "XLA compilation requires", "could not be compiled with XLA",
               "XLA_CPU_JIT", "XLA_GPU_JIT", "XLA can't deduce compile time constant")


def accelerator_visible():
    import tensorflow as tf

    return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())


def choose(model, value, run_eagerly=False):
    """``(jit_compile for Keras, fall back when XLA cannot compile)`` of ``value``."""
    if value is True or value is False:
        return value, False
    if value not in CHOICES:
        raise ValueError(f"jit_compile must be one of {CHOICES}; got {value!r}.")
    if run_eagerly or getattr(model, "_distribute_strategy", None) is not None:
        return False, False
    if value == "auto" and not (accelerator_visible() and _keras_supports_jit(model)):
        return False, False
    return True, True


def _keras_supports_jit(model):
    """Keras's own check (no layer with ``supports_jit=False``, op determinism off)."""
    try:
        from keras.src.trainers.trainer import model_supports_jit
    except ImportError:  # a Keras that moved it: XLA is tried, and falls back if need be
        return True
    return model_supports_jit(model)


def is_compile_error(err):
    """Whether ``err`` is TensorFlow saying that XLA cannot compile the step."""
    message = str(getattr(err, "message", err))
    return any(marker in message for marker in _XLA_ERRORS)


def without_xla(model, err):
    """After ``err``: if it is an XLA compile error and ``model`` may fall back, turn XLA off
    (one warning naming the cause) and return True; else False."""
    if not (getattr(model, "_xla_fallback", False) and model.jit_compile
            and is_compile_error(err)):
        return False
    first = next((line.strip() for line in str(getattr(err, "message", err)).splitlines()
                  if "unsupported" in line.lower() or "XLA" in line), "")
    warnings.warn(
        "XLA cannot compile this Distiller's step, so it trains without XLA "
        f"({first[:200]}). Pass compile(jit_compile=False) to skip the attempt.", stacklevel=3)
    model.jit_compile = False
    object.__setattr__(model, "_xla_fallback", False)
    # Rebuilt now, not cleared: fit's epoch loop holds on to the model, and calls its
    # train_function again after a fallback in the validation pass.
    model.make_train_function(force=True)
    model.make_test_function(force=True)
    model.predict_function = None
    return True


def retrying(model, call):
    """``call()``; once again without XLA when XLA could not compile it (``without_xla``)."""
    try:
        return call()
    except Exception as err:  # XLA could not compile the step: again without it
        if not without_xla(model, err):
            raise
    return call()
