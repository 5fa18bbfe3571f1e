"""Quantization-aware training (QAT) and magnitude pruning for Keras 3 models.

Why native: tensorflow-model-optimization 0.8.1 rejects Keras 3 models
(``quantize_model`` raises "can only either be a keras Sequential or
Functional model", because it checks for tf_keras classes), and rebuilding the
model in tf_keras to work around it fails. So QAT here is written with Keras 3
layers and ``keras.quantizers.fake_quant_with_min_max_vars``, which on the
TensorFlow backend lowers to TensorFlow's ``FakeQuantWithMinMaxVars`` ops. The
TFLite converter reads those ops, so a QAT model converts to an **all-int8**
TFLite model without calibration data::

    model.export(tmpdir, format="tf_saved_model")
    converter = tf.lite.TFLiteConverter.from_saved_model(tmpdir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tflite_bytes = converter.convert()          # no representative_dataset

QAT (:func:`quantize_aware`):

- Dense, Conv2D and DepthwiseConv2D become :class:`QuantizedDense`,
  :class:`QuantizedConv2D`, :class:`QuantizedDepthwiseConv2D`: weights are fake
  quantized per output channel, symmetric, narrow range (int8 in [-127, 127],
  zero point 0, as TFLite requires), recomputed from the weights at every call;
  their output is fake quantized per tensor.
- A BatchNormalization that directly and only follows one of them is **folded**
  into its kernel and bias (using the moving statistics at the time of
  :func:`quantize_aware`) and removed, so the BN statistics are frozen during
  QAT fine-tuning (the usual "freeze BN" step of QAT) and training sees exactly
  the arithmetic the int8 model will run. A ReLU / ReLU6 that directly and only
  follows is fused into the layer's activation, as TFLite fuses it; any other
  activation of the layer (softmax, sigmoid, ...) is moved to an Activation
  layer of its own with its own output quantizer, so it runs in int8 too.
- Activation ranges are per tensor, tracked by an exponential moving average of
  the batch min / max in training mode (non-trainable variables; the first
  training batch sets them), always containing 0. Layers that TFLite runs with
  the scale of their input (max / average pooling, reshape, flatten, dropout,
  padding) get no quantizer of their own; every other layer (add, concatenate,
  global average pooling, standalone activations, a BatchNormalization that
  could not be folded) gets a :class:`FakeQuant` on its output. The model input is fake
  quantized too (it sets the int8 input scale).

Pruning (:func:`prune`): magnitude pruning of Dense / Conv kernels per layer,
with sparsity ramping per a schedule ("polynomial", Zhu & Gupta 2017, or
"constant"), done by a Keras callback that re-applies the masks after every
training batch, so weights stay exactly zero after optimizer updates; the model
itself stays a plain Keras model. Compose with QAT as: prune and fine-tune,
:func:`strip_pruning`, :func:`quantize_aware`, then fine-tune with
:func:`keep_sparsity` as a callback so that the zeros survive (symmetric int8
weights keep 0 exact, and BN folding scales whole channels, keeping zeros).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os

import keras
import numpy as np
from keras import layers, ops

__all__ = [
    "FakeQuant",
    "PruningCallback",
    "QuantizedConv2D",
    "QuantizedDense",
    "QuantizedDepthwiseConv2D",
    "SparsityReport",
    "calibrate",
    "gzip_size",
    "is_quantize_aware",
    "keep_sparsity",
    "prune",
    "quantize_aware",
    "sparsity_report",
    "strip_pruning",
]

_PACKAGE = "keras_distill"
_fake_quant = keras.quantizers.fake_quant_with_min_max_vars

# Layers that TFLite runs in int8 with the scale of their input: no quantizer after them.
_SAME_SCALE = (
    "InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "Flatten", "Reshape", "Permute",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "Identity",
    "ActivityRegularization", "UpSampling1D", "UpSampling2D", "UpSampling3D",
)


def _check_bits(name, value, low=2, high=8):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}]; got {value!r}. "
                         "Only 8 converts to an int8 TFLite model.")


def _check_decay(value):
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"ema_decay must be a number in [0, 1); got {value!r}.")


# --------------------------------------------------------------------------------------
# Fake quantization
# --------------------------------------------------------------------------------------


def _quantize_kernel(kernel, bits, depthwise=False):
    """Per-output-channel, symmetric, narrow-range fake quantization of a kernel."""
    shape = kernel.shape
    k = ops.reshape(kernel, (*shape[:-2], shape[-2] * shape[-1])) if depthwise else kernel
    axes = tuple(range(len(k.shape) - 1))
    bound = ops.max(ops.abs(k), axis=axes)
    # A channel of zeros (pruned) still needs a positive range; keep it small but
    # large enough that its int32 bias scale stays representable.
    bound = ops.maximum(bound, ops.max(bound) * 1e-3 + 1e-8)
    bound = ops.stop_gradient(bound)
    q = _fake_quant(k, -bound, bound, num_bits=bits, narrow_range=True, axis=-1)
    return ops.reshape(q, shape) if depthwise else q


def _quantize_kernel_ste(kernel, bits):
    """The same per-output-channel symmetric quantization, written with plain ops.

    Used for Dense: a per-channel FakeQuant op on a (in, out) MatMul kernel makes
    the TFLite converter fail ("tfl.transpose op has mismatched quantized axes")
    when it transposes the kernel to FULLY_CONNECTED's (out, in). Written with
    round / clip (straight-through gradient), the converter folds the result into
    a constant that lies on the int8 grid, and its own per-channel weight
    quantization (scale = max|w| / 127) then reproduces exactly these integers.
    """
    axes = tuple(range(len(kernel.shape) - 1))
    bound = ops.max(ops.abs(kernel), axis=axes)
    bound = ops.stop_gradient(ops.maximum(bound, ops.max(bound) * 1e-3 + 1e-8))
    levels = float(2 ** (bits - 1) - 1)
    scale = bound / levels
    q = ops.clip(ops.round(kernel / scale), -levels, levels) * scale
    return kernel + ops.stop_gradient(q - kernel)


class _RangeQuantizer:
    """Mixin: a per-tensor activation quantizer with moving-average range tracking."""

    def _add_range_weights(self):
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer=keras.initializers.Constant(-6.0),
            trainable=False, dtype="float32")
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer=keras.initializers.Constant(6.0),
            trainable=False, dtype="float32")
        self.range_initialized = self.add_weight(
            name="range_initialized", shape=(), initializer="zeros", trainable=False,
            dtype="float32")
        self._calibrating = False

    def _quantize_output(self, x, training):
        if training or getattr(self, "_calibrating", False):
            x32 = ops.stop_gradient(ops.cast(x, "float32"))
            batch_min = ops.minimum(ops.min(x32), 0.0)
            batch_max = ops.maximum(ops.max(x32), 0.0)
            seen = self.range_initialized
            decay = self.ema_decay
            new_min = seen * (decay * self.range_min + (1 - decay) * batch_min) + \
                (1 - seen) * batch_min
            new_max = seen * (decay * self.range_max + (1 - decay) * batch_max) + \
                (1 - seen) * batch_max
            new_max = ops.maximum(new_max, new_min + 1e-6)
            self.range_min.assign(new_min)
            self.range_max.assign(new_max)
            self.range_initialized.assign(1.0)
            low, high = new_min, new_max
        else:
            low, high = self.range_min, self.range_max
        return _fake_quant(x, low, high, num_bits=self.activation_bits, narrow_range=False)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FakeQuant(_RangeQuantizer, layers.Layer):
    """Per-tensor fake quantization of activations, with a moving-average range.

    In training mode the range ``[range_min, range_max]`` (non-trainable
    variables, always containing 0) follows the batch min / max by an
    exponential moving average (the first training batch sets it); in inference
    mode it is fixed. The output is ``fake_quant_with_min_max_vars`` of the
    input, which converts to TFLite's quantization parameters.

    Args:
        activation_bits: bits of the simulated integer (8 for int8).
        ema_decay: weight of the old range in the moving average, in [0, 1).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> layer = FakeQuant()
        >>> y = layer(np.linspace(-1, 1, 11, dtype="float32")[None], training=True)
        >>> float(layer.range_min.numpy()), float(layer.range_max.numpy())
        (-1.0, 1.0)
    """

    def __init__(self, activation_bits=8, ema_decay=0.99, **kwargs):
        super().__init__(**kwargs)
        _check_bits("activation_bits", activation_bits, 2, 16)
        _check_decay(ema_decay)
        self.activation_bits = activation_bits
        self.ema_decay = ema_decay

    def build(self, input_shape):
        self._add_range_weights()
        self.built = True

    def call(self, inputs, training=None):
        return self._quantize_output(inputs, training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(activation_bits=self.activation_bits, ema_decay=self.ema_decay)
        return config


class _QuantizedLayer(_RangeQuantizer):
    """Mixin for weight layers: stores the QAT settings and builds the range variables."""

    def _init_quant(self, weight_bits, activation_bits, ema_decay):
        _check_bits("weight_bits", weight_bits)
        _check_bits("activation_bits", activation_bits, 2, 16)
        _check_decay(ema_decay)
        self.weight_bits = weight_bits
        self.activation_bits = activation_bits
        self.ema_decay = ema_decay

    def build(self, input_shape):
        super().build(input_shape)
        self._add_range_weights()

    # Dense / Conv save only their kernel and bias (their own quantization modes
    # decide the list); save the range variables too, in a fixed order.
    def _own_variables(self):
        bias = getattr(self, "bias", None)
        return [self.kernel if not hasattr(self, "_kernel") else self._kernel,
                *([bias] if bias is not None else []),
                self.range_min, self.range_max, self.range_initialized]

    def save_own_variables(self, store):
        if not self.built:
            return
        for i, variable in enumerate(self._own_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        variables = self._own_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(f"Layer '{self.name}' expected {len(variables)} variables, but "
                             f"the file has {len(store.keys())}.")
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    def _quant_config(self, config):
        config.update(weight_bits=self.weight_bits, activation_bits=self.activation_bits,
                      ema_decay=self.ema_decay)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedDense(_QuantizedLayer, layers.Dense):
    """A ``keras.layers.Dense`` that simulates int8: fake-quantized kernel and output.

    The kernel is fake quantized per output unit (symmetric, narrow range); the
    output, after the activation, per tensor with a moving-average range (see
    :class:`FakeQuant`). Made by :func:`quantize_aware`.

    Args:
        *args, **kwargs: as for ``keras.layers.Dense``.
        weight_bits: bits of the simulated integer weights (8 for int8).
        activation_bits: bits of the simulated integer output.
        ema_decay: moving-average decay of the output range.

    Example:
        >>> layer = QuantizedDense(4)
        >>> tuple(layer(np.ones((2, 3), "float32")).shape)
        (2, 4)
    """

    def __init__(self, *args, weight_bits=8, activation_bits=8, ema_decay=0.99, **kwargs):
        kwargs.pop("quantization_config", None)
        super().__init__(*args, **kwargs)
        self._init_quant(weight_bits, activation_bits, ema_decay)

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, _quantize_kernel_ste(self.kernel, self.weight_bits))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return self._quantize_output(x, training)

    def get_config(self):
        return self._quant_config(super().get_config())


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedConv2D(_QuantizedLayer, layers.Conv2D):
    """A ``keras.layers.Conv2D`` that simulates int8: fake-quantized kernel and output.

    Per-output-channel symmetric kernel quantization; per-tensor output
    quantization after the activation. Made by :func:`quantize_aware`.

    Args:
        *args, **kwargs: as for ``keras.layers.Conv2D``.
        weight_bits, activation_bits, ema_decay: as for :class:`QuantizedDense`.

    Example:
        >>> layer = QuantizedConv2D(4, 3, padding="same")
        >>> tuple(layer(np.ones((1, 8, 8, 1), "float32")).shape)
        (1, 8, 8, 4)
    """

    def __init__(self, *args, weight_bits=8, activation_bits=8, ema_decay=0.99, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(weight_bits, activation_bits, ema_decay)

    def call(self, inputs, training=None):
        outputs = self.convolution_op(inputs, _quantize_kernel(self.kernel, self.weight_bits))
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return self._quantize_output(outputs, training)

    def get_config(self):
        return self._quant_config(super().get_config())


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedDepthwiseConv2D(_QuantizedLayer, layers.DepthwiseConv2D):
    """A ``keras.layers.DepthwiseConv2D`` that simulates int8.

    The depthwise kernel is fake quantized per output channel (input channel x
    depth multiplier, TFLite's quantized dimension 3); the output per tensor.
    Made by :func:`quantize_aware`.

    Args:
        *args, **kwargs: as for ``keras.layers.DepthwiseConv2D``.
        weight_bits, activation_bits, ema_decay: as for :class:`QuantizedDense`.

    Example:
        >>> layer = QuantizedDepthwiseConv2D(3, padding="same")
        >>> tuple(layer(np.ones((1, 8, 8, 2), "float32")).shape)
        (1, 8, 8, 2)
    """

    def __init__(self, *args, weight_bits=8, activation_bits=8, ema_decay=0.99, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(weight_bits, activation_bits, ema_decay)

    def call(self, inputs, training=None):
        kernel = _quantize_kernel(self.kernel, self.weight_bits, depthwise=True)
        outputs = ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding,
                                     dilation_rate=self.dilation_rate,
                                     data_format=self.data_format)
        if self.use_bias:
            channels = self.bias.shape[0]
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (channels,)
            else:
                bias_shape = (1, channels) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return self._quantize_output(outputs, training)

    def get_config(self):
        return self._quant_config(super().get_config())


_QUANTIZED = {layers.Dense: QuantizedDense, layers.Conv2D: QuantizedConv2D,
              layers.DepthwiseConv2D: QuantizedDepthwiseConv2D}
_QUANT_CLASSES = (FakeQuant, QuantizedDense, QuantizedConv2D, QuantizedDepthwiseConv2D)


def _all_layers(model):
    """Every layer of a model, recursing into nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def is_quantize_aware(model) -> bool:
    """Whether ``model`` simulates quantization with this module's fake-quant layers.

    Such a model carries its own int8 ranges, so its TFLite int8 conversion needs
    no calibration (representative) data.

    Args:
        model: a ``keras.Model`` (nested models are searched too).

    Returns:
        True if any layer is a :class:`FakeQuant` or a ``Quantized*`` layer.

    Example:
        >>> from keras_distill.presets import student_cnn
        >>> is_quantize_aware(student_cnn()), is_quantize_aware(quantize_aware(student_cnn()))
        (False, True)
    """
    if isinstance(model, _QUANT_CLASSES):
        return True
    if not isinstance(model, keras.Model):
        return False
    return any(isinstance(layer, _QUANT_CLASSES) for layer in _all_layers(model))


# --------------------------------------------------------------------------------------
# quantize_aware
# --------------------------------------------------------------------------------------


def _relu_kind(layer) -> str | None:
    """'relu' or 'relu6' if the layer is a plain ReLU / ReLU6 that TFLite can fuse."""
    if isinstance(layer, layers.ReLU):
        slope = float(layer.negative_slope or 0.0)
        threshold = float(layer.threshold or 0.0)
        if slope != 0.0 or threshold != 0.0:
            return None
        if layer.max_value is None:
            return "relu"
        if float(layer.max_value) == 6.0:
            return "relu6"
        return None
    if type(layer) is layers.Activation:
        name = keras.activations.serialize(layer.activation)
        name = name if isinstance(name, str) else getattr(layer.activation, "__name__", "")
        return name if name in ("relu", "relu6") else None
    return None


def _activation_name(activation) -> str:
    name = keras.activations.serialize(activation) if activation is not None else "linear"
    return name if isinstance(name, str) else getattr(activation, "__name__", "")


def _is_linear(activation) -> bool:
    return activation is None or activation is keras.activations.linear or \
        getattr(activation, "__name__", "") == "linear"


def _foldable_bn(layer, bn) -> bool:
    if type(bn) is not layers.BatchNormalization:
        return False
    axis = bn.axis if isinstance(bn.axis, int) else None
    rank = len(layer.output.shape)
    if axis not in (-1, rank - 1):
        return False
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _folded_weights(layer, bn):
    """(kernel, bias) of ``layer`` with the following BatchNormalization folded in."""
    weights = layer.get_weights()
    kernel = weights[0].astype("float64")
    channels = bn.moving_mean.shape[0]
    bias = weights[1].astype("float64") if layer.use_bias else np.zeros(channels)
    gamma = np.asarray(bn.gamma) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta) if bn.center else np.zeros(channels)
    mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
    scale = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(layer, layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * scale
    bias = (bias - mean) * scale + beta
    return [kernel.astype("float32"), bias.astype("float32")]


def _as_functional(model):
    """A Functional copy of a Sequential model (same weights), or the model itself."""
    if not isinstance(model, keras.Sequential):
        return model
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    spec = model.inputs[0]
    inputs = keras.Input(batch_shape=spec.shape, dtype=spec.dtype, name="input")
    x = inputs
    for layer in clone.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def quantize_aware(model, *, weight_bits: int = 8, activation_bits: int = 8,
                   ema_decay: float = 0.99, fold_batchnorm: bool = True, name=None):
    """A quantization-aware copy of ``model`` that simulates int8 with fake quantization.

    Dense, Conv2D and DepthwiseConv2D layers become ``Quantized*`` layers
    (per-channel symmetric weights, per-tensor outputs); BatchNormalization
    directly after one of them is folded into it and a directly following
    ReLU / ReLU6 fused; the input and the outputs of other non-same-scale layers
    get a :class:`FakeQuant` (see the module docstring). Weights are copied from
    ``model`` (which is not modified). Activation ranges start at [-6, 6] and are
    set by training: fine-tune the returned model (compile + fit, or a
    Distiller), or at least run :func:`calibrate` on some inputs, before
    exporting. The result converts to an all-int8 TFLite model without
    calibration data.

    Args:
        model: a Functional or Sequential ``keras.Model`` (no nested models).
        weight_bits: bits of simulated weights, 2..8 (8 to convert to int8).
        activation_bits: bits of simulated activations, 2..16 (8 for int8).
        ema_decay: moving-average decay of activation ranges, in [0, 1).
        fold_batchnorm: fold BatchNormalization into the preceding layer
            (recommended; otherwise it stays a float layer with a quantized output).
        name: name of the new model; defaults to ``"<model name>_qat"``.

    Returns:
        A Functional ``keras.Model`` (uncompiled).

    Raises:
        ValueError: bad bit widths, a subclassed or nested model, or a model that is
            already quantization-aware.

    Example:
        >>> from keras_distill.presets import student_cnn
        >>> qat = quantize_aware(student_cnn())
        >>> type(qat.get_layer("conv1")).__name__
        'QuantizedConv2D'
    """
    from keras_distill.students import _consumers, _read_graph

    _check_bits("weight_bits", weight_bits)
    _check_bits("activation_bits", activation_bits, 2, 16)
    _check_decay(ema_decay)
    if is_quantize_aware(model):
        raise ValueError(f"quantize_aware: model '{model.name}' is already quantization-aware "
                         "(it has fake-quant layers); pass the float model.")
    functional = _as_functional(model)
    nodes, _, outputs, _ = _read_graph(functional, "quantize_aware")
    consumers = _consumers(nodes, outputs)
    by_name = {n.name: n for n in nodes}
    for node in nodes:
        if isinstance(functional.get_layer(node.name), keras.Model):
            raise ValueError(f"quantize_aware: layer {node.name!r} is a nested model; flatten "  # noqa: TRY004
                             "it into one Functional model first.")

    def single_consumer(name):
        users = consumers.get(name, [])
        if len(users) == 1 and users[0] != "__output__" and by_name[users[0]].calls == 1:
            return functional.get_layer(users[0])
        return None

    plan = {}  # quantized layer name -> (bn layer or None, fused activation or None)
    split = {}  # quantized layer name -> its own activation, moved to a layer of its own
    absorbed = set()  # names of folded BN / fused activation layers
    for node in nodes:
        layer = functional.get_layer(node.name)
        if type(layer) not in _QUANTIZED or node.calls != 1:
            continue
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)) and \
                layer.data_format != "channels_last":
            continue
        bn = activation = None
        tail = node.name
        if _is_linear(layer.activation):
            after = single_consumer(tail)
            if fold_batchnorm and after is not None and _foldable_bn(layer, after):
                bn, tail = after, after.name
            after = single_consumer(tail)
            kind = _relu_kind(after) if after is not None else None
            if kind is not None:
                activation, tail = kind, after.name
        elif _activation_name(layer.activation) not in ("relu", "relu6"):
            # TFLite fuses only ReLU-like activations: run any other one (softmax,
            # sigmoid, ...) as its own layer, on a quantized linear output.
            split[node.name] = layer.activation
        plan[node.name] = (bn, activation)
        if bn is not None:
            absorbed.add(bn.name)
        if activation is not None:
            absorbed.add(tail)

    settings = {"weight_bits": weight_bits, "activation_bits": activation_bits,
                "ema_decay": ema_decay}

    def clone_function(layer):
        if layer.name in plan:
            bn, activation = plan[layer.name]
            config = layer.get_config()
            if bn is not None:
                config["use_bias"] = True
            if activation is not None:
                config["activation"] = activation
            if layer.name in split:
                config["activation"] = "linear"
            config.update(settings)
            return _QUANTIZED[type(layer)].from_config(config)
        return layer.__class__.from_config(layer.get_config())

    input_quantizers = {}
    taken = {layer.name for layer in functional.layers}

    def unique(base):
        candidate, i = base, 1
        while candidate in taken:
            candidate, i = f"{base}_{i}", i + 1
        taken.add(candidate)
        return candidate

    def quantize_input(x):
        history = getattr(x, "_keras_history", None)
        operation = getattr(history, "operation", None)
        if not isinstance(operation, layers.InputLayer) or "float" not in str(x.dtype):
            return x
        if id(x) not in input_quantizers:
            quantizer = FakeQuant(activation_bits=activation_bits, ema_decay=ema_decay,
                                  name=unique(f"{operation.name}_quant"))
            input_quantizers[id(x)] = quantizer(x)
        return input_quantizers[id(x)]

    def call_function(layer, *args, **kwargs):
        if layer.name in absorbed:
            return args[0]
        args, kwargs = keras.tree.map_structure(quantize_input, (args, kwargs))
        out = layer(*args, **kwargs)
        if layer.name in split:
            out = layers.Activation(split[layer.name],
                                    name=unique(f"{layer.name}_activation"))(out)
        elif layer.name in plan or type(layer).__name__ in _SAME_SCALE:
            return out
        if not isinstance(out, keras.KerasTensor) or "float" not in str(out.dtype):
            return out
        return FakeQuant(activation_bits=activation_bits, ema_decay=ema_decay,
                         name=unique(f"{layer.name}_quant"))(out)

    cloned = keras.models.clone_model(functional, clone_function=clone_function,
                                      call_function=call_function)
    qat = keras.Model(cloned.input, cloned.output, name=name or f"{model.name}_qat")

    for layer in functional.layers:
        if isinstance(layer, layers.InputLayer) or layer.name in absorbed:
            continue
        new = qat.get_layer(layer.name)
        if layer.name in plan:
            bn, _ = plan[layer.name]
            weights = _folded_weights(layer, bn) if bn is not None else layer.get_weights()
            new.kernel.assign(weights[0])
            if len(weights) > 1:
                new.bias.assign(weights[1])
        else:
            new.set_weights(layer.get_weights())
    return qat


def calibrate(model, x, *, batch_size: int = 64, reset: bool = True):
    """Set the activation ranges of a QAT model from inputs, without training it.

    Runs ``model`` in inference mode on ``x`` batch by batch while its
    quantizers update their moving-average ranges (as in training). Useful
    before QAT fine-tuning (a better start than the default [-6, 6]) or to
    export a QAT model that was not fine-tuned.

    Args:
        model: a model made by :func:`quantize_aware`.
        x: inputs (NumPy array).
        batch_size: batch size of the forward passes.
        reset: forget the current ranges first (the first batch sets them).

    Returns:
        ``model`` (its quantizer ranges updated in place).

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> qat = calibrate(quantize_aware(student_mlp()), np.random.rand(32, 8, 8, 1))
        >>> float(qat.get_layer("image_quant").range_max.numpy()) <= 1.0
        True
    """
    quantizers = [layer for layer in _all_layers(model) if isinstance(layer, _QUANT_CLASSES)]
    if not quantizers:
        raise ValueError(f"calibrate: model '{model.name}' has no fake-quant layers; "
                         "make it with quantize_aware(model) first.")
    x = np.asarray(x)
    try:
        for layer in quantizers:
            layer._calibrating = True
            if reset:
                layer.range_initialized.assign(0.0)
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size], training=False)
    finally:
        for layer in quantizers:
            layer._calibrating = False
    return model


# --------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------

_SCHEDULES = ("polynomial", "constant")


def _prunable(model, names=None):
    """[(layer name, kernel variable)] of the Dense / Conv layers of a model."""
    found = []
    for layer in _all_layers(model):
        if isinstance(layer, keras.Model):
            continue
        if names is not None and layer.name not in names:
            continue
        variable = None
        if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
            variable = layer.pointwise_kernel
        elif isinstance(layer, (layers.Dense, layers.Conv1D, layers.Conv2D, layers.Conv3D,
                                layers.Conv1DTranspose, layers.Conv2DTranspose,
                                layers.Conv3DTranspose, layers.DepthwiseConv1D,
                                layers.DepthwiseConv2D)):
            variable = getattr(layer, "_kernel", None)
            if not isinstance(variable, keras.Variable):
                variable = layer.kernel
        if isinstance(variable, keras.Variable):
            found.append((layer.name, variable))
    if names is not None:
        missing = sorted(set(names) - {n for n, _ in found})
        if missing:
            raise ValueError(f"layers {missing} are not prunable Dense / Conv layers of "
                             f"'{model.name}'; prunable: {[n for n, _ in _prunable(model)]}.")
    return found


def _magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """1 where a weight is kept, 0 for the round(sparsity * size) smallest magnitudes."""
    flat = np.abs(weights).reshape(-1)
    k = round(sparsity * flat.size)
    mask = np.ones(flat.size, dtype=weights.dtype)
    if k > 0:
        mask[np.argsort(flat, kind="stable")[:k]] = 0
    return mask.reshape(weights.shape)


class PruningCallback(keras.callbacks.Callback):
    """Magnitude pruning during ``fit``: per-layer masks on Dense / Conv kernels.

    At each mask update (every ``frequency`` training steps from ``begin_step``
    to ``end_step``, and at ``end_step``) each kernel's smallest-magnitude
    weights are masked so that its sparsity is the schedule's value for that
    step; after every training batch the masks are re-applied, so pruned weights
    stay exactly zero whatever the optimizer does. Steps are counted by the
    callback across ``fit`` calls (``callback.step``).

    Schedules:

    - ``"polynomial"`` (Zhu & Gupta, 2017): ``s(t) = s_f + (s_i - s_f) *
      (1 - (t - begin) / (end - begin))**3`` for ``begin <= t <= end``, then
      ``s_f``; ``s_i`` is ``initial_sparsity``, ``s_f`` the target.
    - ``"constant"``: ``target_sparsity`` from ``begin_step`` on (``end_step``
      None: masks keep being recomputed every ``frequency`` steps).

    Args:
        target: the model to prune. None: ``self.model.student`` if the model
            being fit has a ``student`` (a Distiller), else ``self.model``.
        target_sparsity: final fraction of zeros per kernel, in [0, 1).
        schedule: "polynomial" or "constant".
        begin_step: first step that prunes.
        end_step: last mask update. None for "polynomial": three quarters of
            the way through the first ``fit`` that uses this callback.
        frequency: steps between mask updates (>= 1).
        initial_sparsity: polynomial schedule's sparsity at ``begin_step``.
        layers: names of the layers to prune; None for every Dense / Conv layer.

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> model, callback = prune(student_mlp(), target_sparsity=0.5)
        >>> isinstance(callback, PruningCallback)
        True
    """

    def __init__(self, target=None, target_sparsity=0.5, schedule="polynomial", begin_step=0,
                 end_step=None, frequency=10, initial_sparsity=0.0, layers=None):
        super().__init__()
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}; got {schedule!r}.")
        for arg, value in (("target_sparsity", target_sparsity),
                           ("initial_sparsity", initial_sparsity)):
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{arg} must be a number in [0, 1); got {value!r}.")
        if initial_sparsity > target_sparsity:
            raise ValueError(f"initial_sparsity ({initial_sparsity}) must not exceed "
                             f"target_sparsity ({target_sparsity}).")
        if not isinstance(begin_step, int) or begin_step < 0:
            raise ValueError(f"begin_step must be an int >= 0; got {begin_step!r}.")
        if end_step is not None and (not isinstance(end_step, int) or end_step < begin_step):
            raise ValueError(f"end_step must be None or an int >= begin_step ({begin_step}); "
                             f"got {end_step!r}.")
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an int >= 1; got {frequency!r}.")
        if target is not None and not isinstance(target, keras.Model):
            raise TypeError(f"target must be a keras.Model or None; got {type(target).__name__}.")
        self.target = target
        self.target_sparsity = float(target_sparsity)
        self.schedule = schedule
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self.initial_sparsity = float(initial_sparsity)
        self.layers = None if layers is None else list(layers)
        self.step = 0
        self.resolved_end_step = end_step
        self._masks = {}  # layer name -> mask tensor
        self._variables = None
        self._fixed = False  # masks never recomputed (keep_sparsity)

    # -- the model ------------------------------------------------------------------------
    def _target(self):
        if self.target is not None:
            return self.target
        model = self.model
        student = getattr(model, "student", None)
        return student if isinstance(student, keras.Model) else model

    def _prunable(self):
        if self._variables is None:
            target = self._target()
            if target is None:
                raise ValueError("PruningCallback has no model: pass target=... or use it in "
                                 "fit().")
            self._variables = _prunable(target, self.layers)
        return self._variables

    # -- the schedule ---------------------------------------------------------------------
    def sparsity_at(self, step: int) -> float:
        """The scheduled sparsity at a training step."""
        if step < self.begin_step:
            return 0.0
        if self.schedule == "constant":
            return self.target_sparsity
        end = self.resolved_end_step
        if end is None or step >= end:
            return self.target_sparsity
        progress = (step - self.begin_step) / max(1, end - self.begin_step)
        return self.target_sparsity + (self.initial_sparsity - self.target_sparsity) * \
            (1.0 - progress) ** 3

    def _should_update(self, step):
        if self._fixed or step < self.begin_step:
            return False
        end = self.resolved_end_step
        if end is not None and step > end:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == end

    # -- masks ----------------------------------------------------------------------------
    def update_masks(self, sparsity: float | None = None):
        """Recompute the masks by magnitude (at the scheduled sparsity) and apply them."""
        sparsity = self.sparsity_at(self.step) if sparsity is None else sparsity
        for name, variable in self._prunable():
            weights = np.asarray(ops.convert_to_numpy(variable))
            self._masks[name] = ops.convert_to_tensor(_magnitude_mask(weights, sparsity))
        self.apply_masks()

    def masks_from_zeros(self):
        """Set the masks to the kernels' current non-zero pattern (the zeros stay zero).

        Weights masked by this callback are exactly zero after every batch, so on weights
        restored from a checkpoint this recovers the masks that were in force.
        """
        for name, variable in self._prunable():
            weights = np.asarray(ops.convert_to_numpy(variable))
            self._masks[name] = ops.convert_to_tensor((weights != 0).astype(weights.dtype))
        self.apply_masks()

    def apply_masks(self):
        """Zero the masked weights (called after every training batch)."""
        for name, variable in self._prunable():
            mask = self._masks.get(name)
            if mask is not None:
                variable.assign(ops.multiply(variable, ops.cast(mask, variable.dtype)))

    # -- callback hooks -------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._prunable()
        if self.schedule == "polynomial" and self.resolved_end_step is None:
            steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
            if not steps or not epochs:
                raise ValueError("PruningCallback: end_step=None needs fit() to know its "
                                 "number of steps; pass end_step=... (a training step index).")
            total = self.step + steps * epochs
            if total <= self.begin_step:
                raise ValueError(f"begin_step={self.begin_step} is after the last training "
                                 f"step ({total - 1}); nothing would be pruned.")
            self.resolved_end_step = self.begin_step + \
                max(0, math.floor(0.75 * (total - self.begin_step)) - 1)
        self.apply_masks()

    def on_train_batch_begin(self, batch, logs=None):
        if self._should_update(self.step):
            self.update_masks()

    def on_train_batch_end(self, batch, logs=None):
        self.apply_masks()
        self.step += 1

    def on_train_end(self, logs=None):
        self.apply_masks()


def prune(model, target_sparsity: float = 0.5, schedule: str = "polynomial",
          begin_step: int = 0, end_step: int | None = None, frequency: int = 10, *,
          initial_sparsity: float = 0.0, layers=None):
    """Prepare magnitude pruning of ``model``: returns ``(model, callback)``.

    The model is returned as is (the same object): the masks live in the
    returned :class:`PruningCallback`, which applies them to the Dense / Conv
    kernels during ``fit`` (pass it in ``callbacks=[...]``), so the model stays
    a plain Keras model throughout. The callback targets ``model`` explicitly,
    so it also works with a Distiller whose student is ``model``. After
    training, :func:`strip_pruning` gives an independent plain copy for export.

    Args:
        model: a built ``keras.Model``.
        target_sparsity: final fraction of zeros in each pruned kernel, in [0, 1).
        schedule: "polynomial" (Zhu & Gupta 2017) or "constant".
        begin_step, end_step, frequency, initial_sparsity, layers: see
            :class:`PruningCallback`.

    Returns:
        ``(model, callback)``.

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> model, callback = prune(student_mlp(), target_sparsity=0.8, end_step=100)
        >>> callback.sparsity_at(0), callback.sparsity_at(100)
        (0.0, 0.8)
    """
    callback = PruningCallback(model, target_sparsity=target_sparsity, schedule=schedule,
                               begin_step=begin_step, end_step=end_step, frequency=frequency,
                               initial_sparsity=initial_sparsity, layers=layers)
    callback._prunable()  # fail early on bad layer names
    return model, callback


def keep_sparsity(model, layers=None) -> PruningCallback:
    """A callback that keeps the current zeros of ``model``'s kernels at zero during ``fit``.

    Use it to fine-tune a pruned model further, e.g. after
    :func:`quantize_aware` (prune, strip, quantize_aware, fit with this callback).

    Args:
        model: the model whose Dense / Conv kernel zeros must stay zero.
        layers: names of the layers to watch; None for every Dense / Conv layer.

    Returns:
        A :class:`PruningCallback` with fixed masks (never recomputed).

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> callback = keep_sparsity(student_mlp())
    """
    callback = PruningCallback(model, schedule="constant", target_sparsity=0.0, layers=layers)
    callback._fixed = True
    callback.masks_from_zeros()
    return callback


def strip_pruning(model, callback: PruningCallback | None = None):
    """A plain, independent copy of a pruned model for export, with its zeros kept.

    Args:
        model: a Functional or Sequential model pruned with :func:`prune`.
        callback: its :class:`PruningCallback`; if given, its masks are applied
            first (they already are after every training batch).

    Returns:
        A new ``keras.Model`` with the same architecture and weights (no masks,
        no callback needed).

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> plain = strip_pruning(student_mlp())
    """
    if callback is not None:
        callback.apply_masks()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


@dataclasses.dataclass
class SparsityReport:
    """Fraction of zero weights per prunable layer (Dense / Conv kernels).

    Attributes:
        layers: layer name -> (number of zeros, number of weights).
    """

    layers: dict

    def __getitem__(self, name: str) -> float:
        zeros, size = self.layers[name]
        return zeros / size

    @property
    def overall(self) -> float:
        """Zeros over weights, across all the reported kernels."""
        size = sum(s for _, s in self.layers.values())
        return sum(z for z, _ in self.layers.values()) / size if size else 0.0

    def __str__(self) -> str:
        width = max([len(n) for n in self.layers] + [5])
        lines = [f"{'layer'.ljust(width)}  sparsity  zeros / weights"]
        for name, (zeros, size) in self.layers.items():
            lines.append(f"{name.ljust(width)}  {zeros / size:8.1%}  {zeros} / {size}")
        lines.append(f"{'all'.ljust(width)}  {self.overall:8.1%}")
        return "\n".join(lines)


def sparsity_report(model, layers=None) -> SparsityReport:
    """The sparsity of each Dense / Conv kernel of ``model``.

    Args:
        model: a ``keras.Model``.
        layers: names to report; None for every Dense / Conv layer.

    Returns:
        A :class:`SparsityReport`; ``report["conv1"]`` is a fraction,
        ``report.overall`` the total, ``print(report)`` a table.

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> sparsity_report(student_mlp()).overall
        0.0
    """
    rows = {}
    for name, variable in _prunable(model, layers):
        weights = np.asarray(ops.convert_to_numpy(variable))
        rows[name] = (int(np.count_nonzero(weights == 0)), int(weights.size))
    return SparsityReport(rows)


def gzip_size(path_or_bytes, level: int = 9) -> int:
    """Size in bytes of the gzip-compressed file or bytes (where pruning zeros pay off).

    Args:
        path_or_bytes: a file path, or bytes / bytearray / memoryview.
        level: gzip compression level, 1..9.

    Returns:
        The compressed size in bytes.

    Example:
        >>> gzip_size(bytes(10_000)) < 100
        True
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        if os.path.isdir(path_or_bytes):
            raise ValueError(f"gzip_size: {os.fspath(path_or_bytes)!r} is a directory; pass "
                             "a file (e.g. a .tflite or .keras file) or bytes.")
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    else:
        raise TypeError("gzip_size expects a path or bytes; got "
                        f"{type(path_or_bytes).__name__}.")
    return len(gzip.compress(data, compresslevel=level))
