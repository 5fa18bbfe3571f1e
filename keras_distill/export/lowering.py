"""Lowerings of Keras layers to ops that the int8 TFLite converter and TFLite Micro support.

The export converts a copy of the model (:func:`quantizable_copy`) in which these layers are
replaced by ones that compute the same function with other ops; the copy is checked against
the model in float (``FLOAT_TOLERANCE``) before it is used, and every artifact is verified
against the original model as before.

- ``LayerNormalization`` computes ``x * inv + (beta - mean * inv)``; the ``-mean`` becomes a
  TFLite ``NEG`` op, which the converter cannot quantize to int8.
  :class:`QuantizableLayerNormalization` computes ``(x - mean) * rsqrt(var + eps) * gamma +
  beta`` (MEAN, SUB, MUL, ADD, RSQRT: int8 kernels in TFLite and TFLite Micro).
- ``Embedding`` looks ids up with ``ops.take``, which wraps negative ids with a ``where``: a
  ``SELECT`` op that TFLite Micro has no kernel for. :class:`GatherEmbedding` gathers directly
  (ids are non-negative in an embedding).
- ``UpSampling2D`` (nearest) repeats rows and columns with ``TILE``, which TFLite Micro lacks;
  :class:`ResizeUpSampling2D` resizes (``RESIZE_NEAREST_NEIGHBOR``): the same values.
- ``LSTM``, ``GRU``, ``SimpleRNN`` (also inside ``Bidirectional``) over a known sequence of at
  most ``UNROLL_MAX_STEPS`` steps are unrolled: TF 2.21's int8 calibrator segfaults on the
  WHILE loop of a rolled recurrence (tensorflow/tensorflow#41305), and a dynamic batch leaves
  TensorList ops; unrolled, the steps are builtin ops that int8 and TFLite Micro run.
- A float model input read only by ``Embedding`` layers (token ids declared float) becomes an
  int32 input: the ids pass as they are (an int8 model would otherwise quantize them).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

FLOAT_TOLERANCE = 1e-5  # max abs difference allowed between a copy and its original, in float
_UNSUPPORTED = ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint")


@keras.saving.register_keras_serializable(package="keras_distill")
class QuantizableLayerNormalization(keras.layers.Layer):
    """``LayerNormalization`` computed with int8-quantizable ops (no ``NEG``).

    Takes the config of ``keras.layers.LayerNormalization`` and owns the same weights
    (``gamma``, then ``beta``, each present as there), so
    ``layer.set_weights(layer_norm.get_weights())`` works.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(2, 6)).astype("float32")
        >>> ref = keras.layers.LayerNormalization()
        >>> low = QuantizableLayerNormalization()
        >>> _ = ref(x), low(x)
        >>> low.set_weights(ref.get_weights())
        >>> bool(np.abs(ref(x) - low(x)).max() < 1e-5)
        True
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", **kwargs):
        for key in _UNSUPPORTED:
            if kwargs.pop(key, None) is not None:
                raise ValueError(f"QuantizableLayerNormalization does not support {key}; it is "
                                 "meant for inference (export), not training.")
        super().__init__(**kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon = float(epsilon)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), bool(rms_scaling)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        rank = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        self._axes = sorted(a % rank for a in axes)
        if any(input_shape[a] is None for a in self._axes):
            raise ValueError(f"QuantizableLayerNormalization needs known sizes on axes "
                             f"{self._axes}; got input shape {tuple(input_shape)}.")
        shape = tuple(input_shape[a] for a in self._axes)
        self._broadcast = [input_shape[a] if a in self._axes else 1 for a in range(rank)]
        self.gamma = self.beta = None
        if self.scale or self.rms_scaling:
            self.gamma = self.add_weight(name="gamma", shape=shape,
                                         initializer=self.gamma_initializer, autocast=False)
        if self.center and not self.rms_scaling:
            self.beta = self.add_weight(name="beta", shape=shape,
                                        initializer=self.beta_initializer, autocast=False)

    def _param(self, w):
        return w if self._axes == [len(self._broadcast) - 1] else ops.reshape(w, self._broadcast)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        mean = ops.mean(x, axis=self._axes, keepdims=True)
        d = x - mean
        inv = ops.rsqrt(ops.mean(d * d, axis=self._axes, keepdims=True) + self.epsilon)
        # rms_scaling as Keras computes it: x scaled by the variance's rsqrt, not re-centred
        y = (x if self.rms_scaling else d) * inv
        if self.gamma is not None:
            y = y * self._param(self.gamma)
        if self.beta is not None:
            y = y + self._param(self.beta)
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer)}


@keras.saving.register_keras_serializable(package="keras_distill")
class GatherEmbedding(keras.layers.Embedding):
    """``keras.layers.Embedding`` that gathers its rows directly (TFLite ``GATHER``, no
    ``SELECT``); ids must be in ``[0, input_dim)``, as for any embedding. TensorFlow only.

    Example:
        >>> ref = keras.layers.Embedding(10, 3)
        >>> low = GatherEmbedding.from_config(ref.get_config())
        >>> ids = np.array([[1, 2, 9]])
        >>> _ = ref(ids), low(ids)
        >>> low.set_weights(ref.get_weights())
        >>> bool(np.array_equal(ref(ids), low(ids)))
        True
    """

    def call(self, inputs):
        import tensorflow as tf

        if self.quantization_mode is not None:  # Keras's own quantized embedding
            return super().call(inputs)
        ids = inputs if inputs.dtype in ("int32", "int64") else ops.cast(inputs, "int32")
        return ops.cast(tf.gather(self.embeddings, ids), self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_distill")
class ResizeUpSampling2D(keras.layers.UpSampling2D):
    """``keras.layers.UpSampling2D`` (nearest, channels last) as a nearest-neighbour resize
    (TFLite ``RESIZE_NEAREST_NEIGHBOR``, which TFLite Micro has, instead of ``TILE``).

    Example:
        >>> x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)
        >>> ref, low = keras.layers.UpSampling2D((2, 3)), ResizeUpSampling2D((2, 3))
        >>> bool(np.array_equal(ref(x), low(x)))
        True
    """

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if self.interpolation != "nearest" or self.data_format != "channels_last" or \
                height is None or width is None:
            return super().call(inputs)
        size = (height * self.size[0], width * self.size[1])
        return ops.image.resize(inputs, size, interpolation="nearest")


def _lowered_norm(layer):
    """A QuantizableLayerNormalization with ``layer``'s config (not yet its weights); the
    regularizers and constraints are dropped (inference only: the weights carry their effect)."""
    config = {k: v for k, v in layer.get_config().items() if k not in _UNSUPPORTED}
    return QuantizableLayerNormalization.from_config(config)


def _lowered_upsampling(layer):
    config = layer.get_config()
    if config.get("interpolation") != "nearest" or \
            config.get("data_format", "channels_last") != "channels_last":
        return None
    return ResizeUpSampling2D.from_config(config)


def _lowered_embedding(layer):
    return None if layer.quantization_mode is not None else \
        GatherEmbedding.from_config(layer.get_config())


#: The longest sequence whose recurrence is unrolled (each step is a copy of the cell's ops).
UNROLL_MAX_STEPS = 128


def _timesteps(layer):
    """The sequence length of the input of ``layer`` if it is called exactly once, else
    ``None`` (a shared layer may see sequences of several lengths)."""
    if len(getattr(layer, "_inbound_nodes", ())) != 1:
        return None
    shape = keras.tree.flatten(layer.input)[0].shape  # (with a mask: [sequence, mask])
    return shape[1] if len(shape) >= 3 else None


def _unrolled_config(config):
    # implementation 1: one product per gate with its slice of the kernel (a constant, folded),
    # instead of one product SPLIT into the gates, a SPLIT the int8 converter leaves in float
    # in some conversions and not others
    return {**config, "unroll": True, "implementation": 1}


def _lowered_recurrent(layer):
    """LSTM / GRU / SimpleRNN unrolled over a known, short sequence: the steps become plain
    FULLY_CONNECTED, ADD, MUL, LOGISTIC and TANH ops, which int8 TFLite calibrates and TFLite
    Micro runs (the WHILE loop of the rolled recurrence crashes TF's int8 calibrator)."""
    steps = _timesteps(layer)
    if _is_lowered(layer) or steps is None or steps > UNROLL_MAX_STEPS:
        return None
    return type(layer).from_config(_unrolled_config(layer.get_config()))


def _is_lowered(rnn):
    return rnn.unroll and getattr(rnn.cell, "implementation", 1) == 1


def _lowered_bidirectional(layer):
    steps = _timesteps(layer)
    inner = (layer.forward_layer, layer.backward_layer)
    if steps is None or steps > UNROLL_MAX_STEPS or \
            any(type(rnn) not in _RECURRENT for rnn in inner) or \
            all(_is_lowered(rnn) for rnn in inner):
        return None
    config = layer.get_config()
    for key in ("layer", "backward_layer"):
        if key in config:
            config[key] = {**config[key], "config": _unrolled_config(config[key]["config"])}
    lowered = keras.layers.Bidirectional.from_config(config)
    for rnn in (lowered.forward_layer, lowered.backward_layer):
        if hasattr(rnn.cell, "implementation"):  # Bidirectional re-serializes its layer, and
            rnn.cell.implementation = 1  # the LSTM / GRU config does not carry it
    return lowered


_RECURRENT = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
#: Layer class -> a function of a layer returning its lowered clone (``None``: keep it).
LOWERINGS = {keras.layers.LayerNormalization: _lowered_norm,
             keras.layers.UpSampling2D: _lowered_upsampling,
             keras.layers.Embedding: _lowered_embedding,
             keras.layers.Bidirectional: _lowered_bidirectional,
             **dict.fromkeys(_RECURRENT, _lowered_recurrent)}


def _lowered(layer):
    lower = LOWERINGS.get(type(layer))
    return lower(layer) if lower is not None else None


def quantizable_copy(model, *, check=True, inputs=None, seed=0):
    """A copy of ``model`` whose top-level layers of :data:`LOWERINGS` are lowered.

    Args:
        model: a Functional or Sequential ``keras.Model``. Nested models are copied unchanged.
        check: compare the copy with ``model`` in float (:func:`max_float_diff`) and raise if
            they differ by more than ``FLOAT_TOLERANCE``.
        inputs: the inputs of that comparison (say, the model's evaluation data); ``None``:
            random inputs of the model's input spec, drawn with ``seed``.
        seed: seed of those random inputs.

    Returns:
        ``(copy, replaced)``: the clone, with every other layer's weights copied, and the names
        of the replaced layers. ``(model, [])`` when there is nothing to replace or ``model``
        is subclassed.

    Raises:
        ValueError: the copy does not match ``model`` in float.
    """
    functional = type(model) is keras.Sequential or type(model).__name__ == "Functional"
    if any(getattr(layer, "stateful", False) for layer in model.layers):
        return model, []  # comparing would move its states (and a copy starts from zero)
    if not functional:
        return model, []
    ids_input = _float_ids_input(model)
    lowered = {layer.name: _lowered(layer) for layer in model.layers}
    lowered = {name: layer for name, layer in lowered.items() if layer is not None}
    if ids_input is None and not lowered:
        return model, []
    input_name = ids_input._keras_history.operation.name if ids_input is not None else None
    replaced = ([input_name] if ids_input is not None else []) + list(lowered)

    def clone(layer):
        if layer.name in lowered:
            return lowered[layer.name]
        return layer.__class__.from_config(layer.get_config())

    input_tensors = None
    if ids_input is not None:  # token ids as integers: an int8 model then takes them as they are
        input_tensors = keras.Input(batch_shape=ids_input.shape, dtype="int32",
                                    name=input_name)
    copy = keras.models.clone_model(model, input_tensors=input_tensors, clone_function=clone)
    for old, new in zip(model.layers, copy.layers):
        new.set_weights(old.get_weights())
    if check:
        diff, scale = max_float_diff(model, copy, inputs=inputs, seed=seed, scale=True)
        if not diff <= FLOAT_TOLERANCE * max(1.0, scale):
            raise ValueError(f"The lowered copy of model {model.name!r} differs from it by "
                             f"{diff:.3g} in float (tolerance {FLOAT_TOLERANCE} x "
                             f"max(1, {scale:.3g}), the outputs' largest magnitude); layers "
                             f"replaced: {replaced}.")
    return copy, replaced


def _float_ids_input(model):
    """The model's one input, if it is a float tensor read only by Embedding layers (token ids
    declared float: ``keras.Input((n,))``); else ``None``. The Embedding casts it to int32; in
    an int8 model the cast would read the quantized input, which the converter refuses."""
    if len(model.inputs) != 1 or "float" not in str(model.inputs[0].dtype):
        return None
    tensor = model.inputs[0]
    readers = [node.operation for node in tensor._keras_history.operation._outbound_nodes]
    embeddings = [op for op in readers if isinstance(op, keras.layers.Embedding)]
    # Embedding(mask_zero=True): the input also feeds the mask's NotEqual(ids, 0)
    masks = [op for op in readers if type(op).__name__ == "NotEqual"]
    if embeddings and len(embeddings) + len(masks) == len(readers):
        return tensor
    return None


def random_inputs(model, n=16, seed=0):
    """Random inputs for ``model``'s inputs: normal floats, or integers in ``[0, v)``, ``v``
    the smallest vocabulary of the model's embeddings (8 without any), also for ids declared
    float; one array, or a list for several inputs."""
    rng = np.random.default_rng(seed)
    vocabulary = min([layer.input_dim for layer in model.layers
                      if isinstance(layer, keras.layers.Embedding)] or [8])
    float_ids = _float_ids_input(model) if len(model.inputs) == 1 else None
    arrays = []
    for tensor in model.inputs:
        shape, dtype = (n, *tensor.shape[1:]), str(tensor.dtype)
        if any(d is None for d in shape):
            raise ValueError(f"Input {tensor.name!r} of shape {tuple(tensor.shape)} has unknown "
                             "dimensions other than the batch.")
        if "int" in dtype or "bool" in dtype or float_ids is not None:
            arrays.append(rng.integers(0, vocabulary, size=shape).astype(dtype))
        else:
            arrays.append(rng.normal(size=shape).astype(dtype))
    return arrays[0] if len(arrays) == 1 else arrays


def max_float_diff(model, copy, *, inputs=None, n=16, seed=0, scale=False):
    """The max abs difference of the outputs of ``model`` and ``copy`` on ``inputs``, or on
    ``n`` random inputs; with ``scale``, ``(difference, the outputs' largest magnitude)``."""
    x = random_inputs(model, n, seed) if inputs is None else inputs
    a = [np.asarray(u) for u in keras.tree.flatten(model(x, training=False))]
    b = [np.asarray(v) for v in keras.tree.flatten(copy(x, training=False))]
    diff = max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))
    return (diff, max(float(np.max(np.abs(u))) for u in a)) if scale else diff
