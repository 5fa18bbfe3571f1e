"""When the Distiller's steps run under XLA: ``Distiller.compile(jit_compile=...)``.

The rule is fixed by the machine and the model, never by a timing taken at run time (which
would make two runs of one configuration differ):

* ``"auto"`` (default): XLA where a GPU or TPU is visible, as Keras does, tried at the first
  step: when XLA cannot compile an op of the teacher, the student or a loss, the Distiller says
  so in one warning and trains without it. On a machine with CPUs only, XLA stays off: measured
  by ``bench/distill_speed.py`` on this project's 2-core CPU, it takes at most 3% off an epoch
  of our step (0% on digits, 3% on an MNIST-1D-like Conv1D task) while compiling it costs
  seconds, so a short run (the CLI's default run) only gets slower.
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
    if value == "auto" and not accelerator_visible():
        return False, False
    return True, True


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
    model.train_function = model.test_function = model.predict_function = None
    return True
