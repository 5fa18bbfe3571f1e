"""Fake-quant layers: Keras 3 layers that simulate integer arithmetic while staying float.

Why native: tensorflow-model-optimization 0.8.1 rejects Keras 3 models
(``quantize_model`` raises "can only either be a keras Sequential or
Functional model", because it checks for tf_keras classes), and rebuilding the
model in tf_keras to work around it fails. So QAT here is written with Keras 3
layers and ``keras.quantizers.fake_quant_with_min_max_vars``, which on the
TensorFlow backend lowers to TensorFlow's ``FakeQuantWithMinMaxVars`` ops. The
TFLite converter reads those ops, so a model made of these layers converts to an
**all-int8** TFLite model without calibration data.

- :class:`FakeQuant` fake quantizes a tensor per tensor, with a range tracked by an
  exponential moving average of the batch min / max in training mode (non-trainable
  variables; the first training batch sets them), always containing 0.
- :class:`QuantizedDense`, :class:`QuantizedConv2D`, :class:`QuantizedDepthwiseConv2D`
  fake quantize their weights per output channel, symmetric, narrow range (int8 in
  [-127, 127], zero point 0, as TFLite requires), recomputed from the weights at every
  call, and their output per tensor, as :class:`FakeQuant` does.

:func:`keras_distill.compress.qat.quantize_aware` builds a model of these layers from a
float model. They are registered with Keras under their historical names
(``keras_distill>FakeQuant``, ...), so ``.keras`` files that hold them load without
``custom_objects``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

__all__ = [
    "FakeQuant",
    "QuantizedConv2D",
    "QuantizedDense",
    "QuantizedDepthwiseConv2D",
]

# The registered names ("keras_distill>QuantizedDense", ...) are what .keras files record:
# they must not change.
_PACKAGE = "keras_distill"
_fake_quant = keras.quantizers.fake_quant_with_min_max_vars


def check_bits(name, value, low=2, high=8):
    """Raise ValueError unless ``value`` (the argument ``name``) is an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}]; got {value!r}. "
                         "Only 8 converts to an int8 TFLite model.")


def check_activation_settings(activation_bits, ema_decay):
    """Raise ValueError unless activation_bits is in [2, 16] and ema_decay in [0, 1)."""
    check_bits("activation_bits", activation_bits, 2, 16)
    if not isinstance(ema_decay, (int, float)) or not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be a number in [0, 1); got {ema_decay!r}.")


# --------------------------------------------------------------------------------------
# Fake quantization of kernels and activations
# --------------------------------------------------------------------------------------


def _channel_bounds(kernel):
    """max |w| of each output channel (the last axis), as a constant (no gradient).

    A channel of zeros (pruned) still needs a positive range; it is kept small but large
    enough that its int32 bias scale stays representable.
    """
    axes = tuple(range(len(kernel.shape) - 1))
    bound = ops.max(ops.abs(kernel), axis=axes)
    bound = ops.maximum(bound, ops.max(bound) * 1e-3 + 1e-8)
    return ops.stop_gradient(bound)


def _quantize_kernel(kernel, bits, depthwise=False, rounding=False):
    """Per-output-channel, symmetric, narrow-range fake quantization of a kernel.

    ``rounding``: by :func:`_quantize_kernel_by_rounding` instead of a FakeQuant op (for the
    kernels of 1-D convolutions, which TF lowers to 2-D ones with an ExpandDims that the
    converter cannot quantize after a per-channel FakeQuant op).
    """
    shape = kernel.shape
    k = ops.reshape(kernel, (*shape[:-2], shape[-2] * shape[-1])) if depthwise else kernel
    if rounding:
        q = _quantize_kernel_by_rounding(k, bits)
    else:
        bound = _channel_bounds(k)
        q = _fake_quant(k, -bound, bound, num_bits=bits, narrow_range=True, axis=-1)
    return ops.reshape(q, shape) if depthwise else q


def _quantize_kernel_by_rounding(kernel, bits, axis=-1):
    """The same per-output-channel symmetric quantization, written with plain ops.

    Used for Dense: a per-channel FakeQuant op on a (in, out) MatMul kernel makes
    the TFLite converter fail ("tfl.transpose op has mismatched quantized axes")
    when it transposes the kernel to FULLY_CONNECTED's (out, in). Written with
    round / clip (straight-through gradient), the converter folds the result into
    a constant that lies on the int8 grid, and its own per-channel weight
    quantization (scale = max|w| / 127) then reproduces exactly these integers. ``axis`` is
    the output-channel axis (-2 for a transposed convolution's (h, w, out, in) kernel).
    """
    levels = float(2 ** (bits - 1) - 1)
    moved = ops.moveaxis(kernel, axis, -1) if axis != -1 else kernel
    scale = _channel_bounds(moved) / levels
    q = ops.clip(ops.round(moved / scale), -levels, levels) * scale
    q = ops.moveaxis(q, -1, axis) if axis != -1 else q
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

    def _moving_average(self, old, batch):
        """The range's moving average with this batch; the batch alone before any batch."""
        seen, decay = self.range_initialized, self.ema_decay
        return seen * (decay * old + (1 - decay) * batch) + (1 - seen) * batch

    def _track_range(self, x):
        """Update the range with the batch ``x`` (its min / max, always containing 0)."""
        x32 = ops.stop_gradient(ops.cast(x, "float32"))
        new_min = self._moving_average(self.range_min, ops.minimum(ops.min(x32), 0.0))
        new_max = self._moving_average(self.range_max, ops.maximum(ops.max(x32), 0.0))
        new_max = ops.maximum(new_max, new_min + 1e-6)
        self.range_min.assign(new_min)
        self.range_max.assign(new_max)
        self.range_initialized.assign(1.0)
        return new_min, new_max

    def _quantize_output(self, x, training):
        if training or getattr(self, "_calibrating", False):
            low, high = self._track_range(x)
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
        >>> import numpy as np
        >>> layer = FakeQuant()
        >>> y = layer(np.linspace(-1, 1, 11, dtype="float32")[None], training=True)
        >>> float(layer.range_min.numpy()), float(layer.range_max.numpy())
        (-1.0, 1.0)
    """

    def __init__(self, activation_bits=8, ema_decay=0.99, **kwargs):
        super().__init__(**kwargs)
        check_activation_settings(activation_bits, ema_decay)
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
    """Mixin for weight layers: the QAT settings, the range variables, and ``call``.

    ``call`` is the float layer's: ``_apply_quantized_kernel``, plus the bias, then the
    activation, then the fake-quantized output. Subclasses say how the kernel is applied.
    """

    def __init__(self, *args, weight_bits=8, activation_bits=8, ema_decay=0.99, **kwargs):
        super().__init__(*args, **kwargs)
        check_bits("weight_bits", weight_bits)
        check_activation_settings(activation_bits, ema_decay)
        self.weight_bits = weight_bits
        self.activation_bits = activation_bits
        self.ema_decay = ema_decay

    def build(self, input_shape):
        super().build(input_shape)
        self._add_range_weights()

    def _apply_quantized_kernel(self, inputs, training=None):
        raise NotImplementedError

    def _broadcastable_bias(self):
        """The bias, shaped to add to a convolution's output in its data format."""
        channels = self.bias.shape[0]
        if self.data_format == "channels_last":
            return ops.reshape(self.bias, (1,) * (self.rank + 1) + (channels,))
        return ops.reshape(self.bias, (1, channels) + (1,) * self.rank)

    def call(self, inputs, training=None):
        outputs = self._apply_quantized_kernel(inputs, training)
        if self.bias is not None:
            outputs = ops.add(outputs, self._broadcastable_bias())
        if self.activation is not None:
            outputs = self.activation(outputs)
        return self._quantize_output(outputs, training)

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

    def get_config(self):
        config = super().get_config()
        config.update(weight_bits=self.weight_bits, activation_bits=self.activation_bits,
                      ema_decay=self.ema_decay)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedDense(_QuantizedLayer, layers.Dense):
    """A ``keras.layers.Dense`` that simulates int8: fake-quantized kernel and output.

    The kernel is fake quantized per output unit (symmetric, narrow range); the
    output, after the activation, per tensor with a moving-average range (see
    :class:`FakeQuant`). Made by :func:`~keras_distill.compress.qat.quantize_aware`.

    Args:
        *args, **kwargs: as for ``keras.layers.Dense``.
        weight_bits: bits of the simulated integer weights (8 for int8).
        activation_bits: bits of the simulated integer output.
        ema_decay: moving-average decay of the output range.

    Example:
        >>> import numpy as np
        >>> layer = QuantizedDense(4)
        >>> tuple(layer(np.ones((2, 3), "float32")).shape)
        (2, 4)
    """

    def __init__(self, *args, **kwargs):
        kwargs.pop("quantization_config", None)  # this layer does its own quantization
        super().__init__(*args, **kwargs)

    def _apply_quantized_kernel(self, inputs, training=None):
        return ops.matmul(inputs, _quantize_kernel_by_rounding(self.kernel, self.weight_bits))

    def _broadcastable_bias(self):
        return self.bias


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedConv2D(_QuantizedLayer, layers.Conv2D):
    """A ``keras.layers.Conv2D`` that simulates int8: fake-quantized kernel and output.

    Per-output-channel symmetric kernel quantization; per-tensor output
    quantization after the activation. Made by
    :func:`~keras_distill.compress.qat.quantize_aware`.

    Args:
        *args, **kwargs: as for ``keras.layers.Conv2D``.
        weight_bits, activation_bits, ema_decay: as for :class:`QuantizedDense`.

    Example:
        >>> import numpy as np
        >>> layer = QuantizedConv2D(4, 3, padding="same")
        >>> tuple(layer(np.ones((1, 8, 8, 1), "float32")).shape)
        (1, 8, 8, 4)
    """

    def _apply_quantized_kernel(self, inputs, training=None):
        return self.convolution_op(inputs, _quantize_kernel(self.kernel, self.weight_bits))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedDepthwiseConv2D(_QuantizedLayer, layers.DepthwiseConv2D):
    """A ``keras.layers.DepthwiseConv2D`` that simulates int8.

    The depthwise kernel is fake quantized per output channel (input channel x
    depth multiplier, TFLite's quantized dimension 3); the output per tensor.
    Made by :func:`~keras_distill.compress.qat.quantize_aware`.

    Args:
        *args, **kwargs: as for ``keras.layers.DepthwiseConv2D``.
        weight_bits, activation_bits, ema_decay: as for :class:`QuantizedDense`.

    Example:
        >>> import numpy as np
        >>> layer = QuantizedDepthwiseConv2D(3, padding="same")
        >>> tuple(layer(np.ones((1, 8, 8, 2), "float32")).shape)
        (1, 8, 8, 2)
    """

    def _apply_quantized_kernel(self, inputs, training=None):
        kernel = _quantize_kernel(self.kernel, self.weight_bits, depthwise=True,
                                  rounding=self.rank == 1)
        return ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding,
                                  dilation_rate=self.dilation_rate,
                                  data_format=self.data_format)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedConv1D(_QuantizedLayer, layers.Conv1D):
    """A ``keras.layers.Conv1D`` that simulates int8 (as :class:`QuantizedConv2D`; causal
    padding too). Made by :func:`~keras_distill.compress.qat.quantize_aware`.

    Example:
        >>> import numpy as np
        >>> layer = QuantizedConv1D(4, 3, padding="causal")
        >>> tuple(layer(np.ones((1, 8, 2), "float32")).shape)
        (1, 8, 4)
    """

    def _apply_quantized_kernel(self, inputs, training=None):
        kernel = _quantize_kernel(self.kernel, self.weight_bits, rounding=True)
        if self.padding != "causal":
            return self.convolution_op(inputs, kernel)
        return ops.conv(ops.pad(inputs, self._compute_causal_padding()), kernel,
                        strides=list(self.strides), padding="valid",
                        dilation_rate=self.dilation_rate, data_format=self.data_format)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedDepthwiseConv1D(_QuantizedLayer, layers.DepthwiseConv1D):
    """A ``keras.layers.DepthwiseConv1D`` that simulates int8 (as
    :class:`QuantizedDepthwiseConv2D`).

    Example:
        >>> import numpy as np
        >>> layer = QuantizedDepthwiseConv1D(3, padding="same")
        >>> tuple(layer(np.ones((1, 8, 2), "float32")).shape)
        (1, 8, 2)
    """

    _apply_quantized_kernel = QuantizedDepthwiseConv2D._apply_quantized_kernel


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedConv2DTranspose(_QuantizedLayer, layers.Conv2DTranspose):
    """A ``keras.layers.Conv2DTranspose`` that simulates int8: the (h, w, out, in) kernel is
    quantized per output channel (its axis -2) by rounding, as TFLite's TRANSPOSE_CONV
    quantizes it; the output per tensor.

    Example:
        >>> import numpy as np
        >>> layer = QuantizedConv2DTranspose(4, 3, strides=2, padding="same")
        >>> tuple(layer(np.ones((1, 4, 4, 2), "float32")).shape)
        (1, 8, 8, 4)
    """

    def _apply_quantized_kernel(self, inputs, training=None):
        kernel = _quantize_kernel_by_rounding(self.kernel, self.weight_bits, axis=-2)
        return ops.conv_transpose(inputs, kernel, strides=list(self.strides),
                                  padding=self.padding, output_padding=self.output_padding,
                                  dilation_rate=self.dilation_rate,
                                  data_format=self.data_format)


class _QuantizedSeparable(_QuantizedLayer):
    """Mixin: a separable convolution as TFLite runs it, a depthwise convolution (its
    output fake quantized per tensor by a :class:`FakeQuant` of its own) then a pointwise
    one, both kernels per output channel."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.depthwise_quant = FakeQuant(activation_bits=self.activation_bits,
                                         ema_decay=self.ema_decay,
                                         name=f"{self.name}_depthwise_quant")

    def build(self, input_shape):
        super().build(input_shape)
        self.depthwise_quant.build(None)

    def _apply_quantized_kernel(self, inputs, training=None):
        rounding = self.rank == 1
        depthwise = _quantize_kernel(self.depthwise_kernel, self.weight_bits, depthwise=True,
                                     rounding=rounding)
        middle = ops.depthwise_conv(inputs, depthwise, strides=self.strides,
                                    padding=self.padding, dilation_rate=self.dilation_rate,
                                    data_format=self.data_format)
        middle = self.depthwise_quant(middle, training=training)
        pointwise = _quantize_kernel(self.pointwise_kernel, self.weight_bits, rounding=rounding)
        return ops.conv(middle, pointwise, strides=1, padding="valid",
                        data_format=self.data_format)

    def _own_variables(self):
        return [self.depthwise_kernel, self.pointwise_kernel,
                *([self.bias] if self.bias is not None else []),
                self.range_min, self.range_max, self.range_initialized]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedSeparableConv1D(_QuantizedSeparable, layers.SeparableConv1D):
    """A ``keras.layers.SeparableConv1D`` that simulates int8 (see
    :class:`QuantizedSeparableConv2D`).

    Example:
        >>> import numpy as np
        >>> layer = QuantizedSeparableConv1D(4, 3, padding="same")
        >>> tuple(layer(np.ones((1, 8, 2), "float32")).shape)
        (1, 8, 4)
    """


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizedSeparableConv2D(_QuantizedSeparable, layers.SeparableConv2D):
    """A ``keras.layers.SeparableConv2D`` that simulates int8 as TFLite runs it: a
    depthwise convolution with a fake-quantized output, then a pointwise one; both kernels
    per output channel, the output per tensor.

    Example:
        >>> import numpy as np
        >>> layer = QuantizedSeparableConv2D(4, 3, padding="same")
        >>> tuple(layer(np.ones((1, 8, 8, 2), "float32")).shape)
        (1, 8, 8, 4)
    """


#: The float layer classes that quantize_aware replaces, and their replacements.
QUANTIZED_VERSION = {
    layers.Dense: QuantizedDense, layers.Conv1D: QuantizedConv1D,
    layers.Conv2D: QuantizedConv2D, layers.DepthwiseConv1D: QuantizedDepthwiseConv1D,
    layers.DepthwiseConv2D: QuantizedDepthwiseConv2D,
    layers.SeparableConv1D: QuantizedSeparableConv1D,
    layers.SeparableConv2D: QuantizedSeparableConv2D,
    layers.Conv2DTranspose: QuantizedConv2DTranspose,
}
#: The layer classes that make a model quantization-aware.
FAKE_QUANT_LAYERS = (FakeQuant, *QUANTIZED_VERSION.values())
