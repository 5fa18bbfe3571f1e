"""Copies of a model computing in another precision: the teacher's forward pass in a cheaper
one (``Distiller(..., teacher_dtype=...)``), and the float32 model that ``export`` converts
when a student was built under a mixed-precision policy.

The teacher never trains, so its forward pass may run in ``bfloat16`` (CPUs with AVX-512
BF16 or AMX, TPUs, recent GPUs) or ``float16`` (GPUs): the Distiller runs a copy of the
teacher whose layers compute in that dtype (their variables stay float32 and are cast per
call, as under Keras's mixed policies), and casts its outputs to float32 before any loss.
The user's teacher is left as it is. The copy's weights are taken from the teacher at every
``fit`` / ``evaluate``, so a teacher whose weights change between fits (or are loaded after
the Distiller is built, as ``keras.saving.load_model`` does) is always the one that teaches.

How much this moves the distillation loss is measured in ``tests/test_speed.py`` and by
``bench/distill_speed.py``.

Example:
    >>> import keras
    >>> x = keras.Input((4,))
    >>> teacher = keras.Model(x, keras.layers.Dense(3)(x))
    >>> copy = teacher_copy(teacher, "bfloat16")
    >>> copy.layers[-1].dtype_policy.name, copy.layers[-1].variable_dtype
    ('mixed_bfloat16', 'float32')
"""

from __future__ import annotations

import keras

#: The accepted ``teacher_dtype`` values (None: the teacher's own precision).
TEACHER_DTYPES = (None, "float32", "bfloat16", "float16")


def check_teacher_dtype(value, teacher):
    """``value`` checked: one of ``TEACHER_DTYPES``, and a teacher to copy."""
    if value not in TEACHER_DTYPES:
        raise ValueError(f"teacher_dtype must be one of {TEACHER_DTYPES}; got {value!r}.")
    if value not in (None, "float32") and teacher is None:
        raise ValueError(
            f"teacher_dtype={value!r} needs a Keras teacher; this Distiller's teacher outputs "
            "come with the batches (or from a file). Leave teacher_dtype=None.")
    return value


#: Compute dtypes that mixed precision gives (what ``float32_model`` undoes).
LOW_PRECISION = ("bfloat16", "float16")


def _is_float_policy(layer):
    return getattr(layer, "compute_dtype", None) in ("float32", *LOW_PRECISION)


def recast(model, policy):
    """A copy of ``model`` (Functional or Sequential, nested ones too) whose float layers have
    the dtype ``policy`` (integer and string layers keep theirs), its weights copied."""
    from keras_distill.graph import all_layers

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config and _is_float_policy(layer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    left = [layer.name for layer in all_layers(copy) if _is_float_policy(layer)
            and not isinstance(layer, (keras.Model, keras.layers.InputLayer))
            and layer.compute_dtype != policy.compute_dtype]
    if left:
        raise ValueError(f"layers {left} keep their own dtype in the copy (layers built "
                         "inside custom layers are not recast)")
    sync_weights(model, copy)
    return copy


def float32_model(model):
    """``model``, or where a layer computes in bfloat16 or float16 (a student built under
    ``mixed_bfloat16`` or ``mixed_float16``) its float32 copy: TFLite and ONNX converters get
    float32 graphs (a bfloat16 ``Conv2D`` is not a TFLite builtin op)."""
    from keras_distill.graph import all_layers

    low = [layer.name for layer in all_layers(model)
           if getattr(layer, "compute_dtype", None) in LOW_PRECISION]
    if not low:
        return model
    try:
        return recast(model, keras.DTypePolicy("float32"))
    except Exception as err:  # noqa: BLE001 (any failure to clone: named in the message)
        raise ValueError(
            f"the model {model.name!r} has layers computing in low precision ({low[:5]}, a "
            f"mixed-precision policy) and could not be copied to float32 for export ({err}). "
            "Rebuild it under keras.config.set_dtype_policy('float32') and copy its "
            "weights.") from None


def teacher_copy(teacher, dtype):
    """A copy of ``teacher`` (a Functional or Sequential model) computing in ``dtype`` with
    float32 variables, its weights copied; or ``teacher`` itself for None / float32."""
    if dtype in (None, "float32"):
        return teacher
    try:
        copy = recast(teacher, keras.DTypePolicy(f"mixed_{dtype}"))
    except Exception as err:  # noqa: BLE001 (subclassed models, layers without from_config)
        raise ValueError(
            f"teacher_dtype={dtype!r} needs a teacher Keras can clone (a Functional or "
            f"Sequential model); the teacher {teacher.name!r} ({type(teacher).__name__}) could "
            f"not be: {err}. Leave teacher_dtype=None, or build the teacher under "
            f"keras.config.set_dtype_policy('mixed_{dtype}').") from None
    copy.trainable = False
    return copy


def sync_weights(teacher, copy):
    """Copy ``teacher``'s weights into ``copy`` (nothing when they are the same model)."""
    if copy is teacher:
        return
    for source, target in zip(teacher.weights, copy.weights):
        target.assign(source)
