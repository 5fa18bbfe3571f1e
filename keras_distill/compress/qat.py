"""Quantization-aware training (QAT) for Keras 3 models: :func:`quantize_aware`.

The fake-quant layers (:mod:`keras_distill.compress.fake_quant`, re-exported here) lower to
TensorFlow's ``FakeQuantWithMinMaxVars`` ops, which the TFLite converter reads, so a QAT
model converts to an **all-int8** TFLite model without calibration data::

    model.export(tmpdir, format="tf_saved_model")
    converter = tf.lite.TFLiteConverter.from_saved_model(tmpdir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tflite_bytes = converter.convert()          # no representative_dataset

What :func:`quantize_aware` does:

- Dense, Conv1D, Conv2D, DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D,
  SeparableConv2D and Conv2DTranspose become their ``Quantized*`` versions
  (:class:`QuantizedDense`, :class:`QuantizedConv2D`, ...): weights are fake
  quantized per output channel, symmetric, narrow range (int8 in [-127, 127],
  zero point 0, as TFLite requires), recomputed from the weights at every call;
  their output is fake quantized per tensor. A separable convolution runs as TFLite
  runs it, a depthwise then a pointwise convolution, with the tensor between them
  fake quantized too. A Conv2DTranspose fuses no ReLU (TFLite's TRANSPOSE_CONV has
  none): its activation runs as a layer of its own. Other layers with weights
  (MultiHeadAttention, LayerNormalization, recurrent layers) stay float inside, with
  a warning naming them: the int8 converter finds no range for their inner tensors.
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

To combine with pruning (:mod:`keras_distill.compress.prune`): prune and fine-tune,
``strip_pruning``, :func:`quantize_aware`, then fine-tune with ``keep_sparsity`` as a
callback so that the zeros survive (symmetric int8 weights keep 0 exact, and BN folding
scales whole channels, keeping zeros).
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np
from keras import layers

from keras_distill.compress.fake_quant import (
    FAKE_QUANT_LAYERS,
    QUANTIZED_VERSION,
    FakeQuant,
    QuantizedConv1D,
    QuantizedConv2D,
    QuantizedConv2DTranspose,
    QuantizedDense,
    QuantizedDepthwiseConv1D,
    QuantizedDepthwiseConv2D,
    QuantizedSeparableConv1D,
    QuantizedSeparableConv2D,
    check_activation_settings,
    check_bits,
)
from keras_distill.graph import MODEL_OUTPUT, all_layers, consumers, read_graph

__all__ = [
    "FakeQuant",
    "QuantizedConv1D",
    "QuantizedConv2D",
    "QuantizedConv2DTranspose",
    "QuantizedDense",
    "QuantizedDepthwiseConv1D",
    "QuantizedDepthwiseConv2D",
    "QuantizedSeparableConv1D",
    "QuantizedSeparableConv2D",
    "calibrate",
    "float_inside_layers",
    "is_quantize_aware",
    "quantize_aware",
]

_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
# Layers with weights that keep no quantization-aware version but whose int8 conversion
# needs no range inside them (a folded or standalone BatchNormalization, a table lookup).
_FLOAT_INSIDE_OK = ("BatchNormalization", "Embedding")
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


def is_quantize_aware(model) -> bool:
    """Whether ``model`` simulates quantization with the fake-quant layers.

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
    if isinstance(model, FAKE_QUANT_LAYERS):
        return True
    if not isinstance(model, keras.Model):
        return False
    return any(isinstance(layer, FAKE_QUANT_LAYERS) for layer in all_layers(model))


# --------------------------------------------------------------------------------------
# BatchNormalization folding and activation fusion
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
        name = _activation_name(layer.activation)
        return name if name in ("relu", "relu6") else None
    return None


def _activation_name(activation) -> str:
    name = keras.activations.serialize(activation) if activation is not None else "linear"
    return name if isinstance(name, str) else getattr(activation, "__name__", "")


def _is_linear(activation) -> bool:
    return activation is None or activation is keras.activations.linear or \
        getattr(activation, "__name__", "") == "linear"


def _can_fold_batchnorm(layer, bn) -> bool:
    """Whether ``bn`` is a channels-last BatchNormalization that folds into ``layer``."""
    if type(bn) is not layers.BatchNormalization:
        return False
    axis = bn.axis if isinstance(bn.axis, int) else None
    rank = len(layer.output.shape)
    if axis not in (-1, rank - 1):
        return False
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _folded_weights(layer, bn):
    """The kernel(s) and bias of ``layer`` with the following BatchNormalization folded in
    (a separable convolution's depthwise kernel is kept; the pointwise one is scaled)."""
    weights = layer.get_weights()
    kept = weights[:1] if isinstance(layer, _SEPARABLE) else []
    weights = weights[len(kept):]
    kernel = weights[0].astype("float64")
    channels = bn.moving_mean.shape[0]
    bias = weights[1].astype("float64") if layer.use_bias else np.zeros(channels)
    gamma = np.asarray(bn.gamma) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta) if bn.center else np.zeros(channels)
    mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
    scale = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    elif isinstance(layer, layers.Conv2DTranspose):  # kernel (h, w, out, in)
        kernel = kernel * scale[:, None]
    else:
        kernel = kernel * scale
    bias = (bias - mean) * scale + beta
    return [*kept, kernel.astype("float32"), bias.astype("float32")]


# --------------------------------------------------------------------------------------
# quantize_aware, step by step: plan the fusions, clone with quantizers, copy the weights
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _LayerPlan:
    """How one Dense / Conv2D / DepthwiseConv2D becomes its ``Quantized*`` layer."""

    folded_batchnorm: layers.BatchNormalization | None = None
    fused_relu: str | None = None  # "relu" / "relu6", taken from the layer that follows
    fused_relu_layer: str | None = None  # the name of that layer
    separate_activation: object = None  # its own activation, moved to a layer of its own

    @property
    def absorbed_layers(self) -> list[str]:
        """Names of the following layers this one takes over (they leave the graph)."""
        names = [self.folded_batchnorm.name] if self.folded_batchnorm is not None else []
        return names + ([self.fused_relu_layer] if self.fused_relu is not None else [])


@dataclasses.dataclass
class _QuantizationPlan:
    """The layers that become ``Quantized*`` (name -> plan) and the layers they absorb."""

    quantized: dict = dataclasses.field(default_factory=dict)
    absorbed: set = dataclasses.field(default_factory=set)


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


def _operation(functional, name):
    """The layer or operation ``name`` of ``functional`` (an operator such as ``x + y`` is
    an operation, not a layer: ``get_layer`` does not find it)."""
    for operation in functional.operations:
        if operation.name == name:
            return operation
    return functional.get_layer(name)


def _refuse_nested_models(functional, nodes):
    for node in nodes:
        if isinstance(_operation(functional, node.name), keras.Model):
            raise ValueError(f"quantize_aware: layer {node.name!r} is a nested model; flatten "  # noqa: TRY004
                             "it into one Functional model first.")


def _sole_consumers(functional, nodes, outputs) -> dict:
    """Layer name -> the layer that alone consumes its output, where there is exactly one
    such layer, called once (a model output counts as a consumer)."""
    calls = {node.name: node.calls for node in nodes}
    found = {}
    for name, users in consumers(nodes, outputs).items():
        if len(users) == 1 and users[0] != MODEL_OUTPUT and calls[users[0]] == 1:
            found[name] = _operation(functional, users[0])
    return found


def _becomes_quantized(layer) -> bool:
    if type(layer) not in QUANTIZED_VERSION:
        return False
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _plan_layer(layer, sole_consumers, fold_batchnorm) -> _LayerPlan:
    """Fold a following BatchNormalization and fuse a following ReLU into a linear layer;
    move a layer's own activation that TFLite cannot fuse to a layer of its own."""
    plan = _LayerPlan()
    # TFLite's TRANSPOSE_CONV fuses no activation: its own output needs a range of its own.
    fuses_relu = not isinstance(layer, layers.Conv2DTranspose)
    if _is_linear(layer.activation):
        after = sole_consumers.get(layer.name)
        if fold_batchnorm and after is not None and _can_fold_batchnorm(layer, after):
            plan.folded_batchnorm = after
        tail = plan.folded_batchnorm.name if plan.folded_batchnorm is not None else layer.name
        after = sole_consumers.get(tail)
        kind = _relu_kind(after) if after is not None and fuses_relu else None
        if kind is not None:
            plan.fused_relu, plan.fused_relu_layer = kind, after.name
    elif not fuses_relu or _activation_name(layer.activation) not in ("relu", "relu6"):
        # TFLite fuses only ReLU-like activations: run any other one (softmax,
        # sigmoid, ...) as its own layer, on a quantized linear output.
        plan.separate_activation = layer.activation
    return plan


def _plan_quantization(functional, fold_batchnorm) -> _QuantizationPlan:
    nodes, _, outputs, _ = read_graph(functional, "quantize_aware")
    _refuse_nested_models(functional, nodes)
    sole_consumers = _sole_consumers(functional, nodes, outputs)
    plan = _QuantizationPlan()
    for node in nodes:
        layer = _operation(functional, node.name)
        if node.calls == 1 and _becomes_quantized(layer):
            layer_plan = _plan_layer(layer, sole_consumers, fold_batchnorm)
            plan.quantized[node.name] = layer_plan
            plan.absorbed.update(layer_plan.absorbed_layers)
    return plan


class _QuantizedCloner:
    """``clone_function`` and ``call_function`` for ``keras.models.clone_model`` that turn
    a float Functional model into its quantization-aware version, following a plan."""

    def __init__(self, functional, plan: _QuantizationPlan, settings: dict):
        self.functional = functional
        self.plan = plan
        self.settings = settings  # weight_bits, activation_bits, ema_decay
        self.taken_names = {layer.name for layer in functional.layers}
        self.input_quantizers = {}  # id(model input tensor) -> its fake-quantized tensor

    def clone(self, name):
        cloned = keras.models.clone_model(self.functional, clone_function=self.clone_layer,
                                          call_function=self.call_layer)
        return keras.Model(cloned.input, cloned.output, name=name)

    def clone_layer(self, layer):
        layer_plan = self.plan.quantized.get(layer.name)
        if layer_plan is None:
            return layer.__class__.from_config(layer.get_config())
        config = layer.get_config()
        if layer_plan.folded_batchnorm is not None:
            config["use_bias"] = True
        if layer_plan.fused_relu is not None:
            config["activation"] = layer_plan.fused_relu
        if layer_plan.separate_activation is not None:
            config["activation"] = "linear"
        config.update(self.settings)
        return QUANTIZED_VERSION[type(layer)].from_config(config)

    def call_layer(self, layer, *args, **kwargs):
        if layer.name in self.plan.absorbed:
            return args[0]
        args, kwargs = keras.tree.map_structure(self._quantize_model_input, (args, kwargs))
        out = layer(*args, **kwargs)
        layer_plan = self.plan.quantized.get(layer.name)
        if layer_plan is not None and layer_plan.separate_activation is not None:
            out = layers.Activation(layer_plan.separate_activation,
                                    name=self._unique_name(f"{layer.name}_activation"))(out)
        elif layer_plan is not None or type(layer).__name__ in _SAME_SCALE:
            return out
        if not isinstance(out, keras.KerasTensor) or "float" not in str(out.dtype):
            return out
        return self._new_quantizer(f"{layer.name}_quant")(out)

    def _quantize_model_input(self, x):
        history = getattr(x, "_keras_history", None)
        operation = getattr(history, "operation", None)
        if not isinstance(operation, layers.InputLayer) or "float" not in str(x.dtype):
            return x
        if id(x) not in self.input_quantizers:
            self.input_quantizers[id(x)] = self._new_quantizer(f"{operation.name}_quant")(x)
        return self.input_quantizers[id(x)]

    def _new_quantizer(self, base_name):
        return FakeQuant(activation_bits=self.settings["activation_bits"],
                         ema_decay=self.settings["ema_decay"],
                         name=self._unique_name(base_name))

    def _unique_name(self, base):
        candidate, i = base, 1
        while candidate in self.taken_names:
            candidate, i = f"{base}_{i}", i + 1
        self.taken_names.add(candidate)
        return candidate


def _copy_weights(functional, qat, plan: _QuantizationPlan):
    """Copy the float weights into the QAT model, with each planned BatchNormalization
    folded into its layer's kernel and bias."""
    for layer in functional.layers:
        if isinstance(layer, layers.InputLayer) or layer.name in plan.absorbed:
            continue
        new = qat.get_layer(layer.name)
        layer_plan = plan.quantized.get(layer.name)
        if layer_plan is None:
            new.set_weights(layer.get_weights())
            continue
        bn = layer_plan.folded_batchnorm
        weights = _folded_weights(layer, bn) if bn is not None else layer.get_weights()
        for variable, value in zip(new._own_variables(), weights):  # kernel(s), then bias
            variable.assign(value)


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
    check_bits("weight_bits", weight_bits)
    check_activation_settings(activation_bits, ema_decay)
    if is_quantize_aware(model):
        raise ValueError(f"quantize_aware: model '{model.name}' is already quantization-aware "
                         "(it has fake-quant layers); pass the float model.")
    functional = _as_functional(model)
    plan = _plan_quantization(functional, fold_batchnorm)
    settings = {"weight_bits": weight_bits, "activation_bits": activation_bits,
                "ema_decay": ema_decay}
    qat = _QuantizedCloner(functional, plan, settings).clone(name or f"{model.name}_qat")
    _copy_weights(functional, qat, plan)
    _warn_float_layers(qat)
    return qat


def float_inside_layers(model) -> list[str]:
    """``"name (Type)"`` of each layer of a QAT model that has weights but no
    quantization-aware version (MultiHeadAttention, LayerNormalization, LSTM, ...): only
    its output is fake quantized, so an int8 conversion needs calibration data for the
    tensors inside it.

    Example:
        >>> from keras_distill.presets import student_cnn
        >>> float_inside_layers(quantize_aware(student_cnn()))
        []
    """
    return [f"{layer.name} ({type(layer).__name__})" for layer in all_layers(model)
            if layer.weights and not isinstance(layer, (*FAKE_QUANT_LAYERS, keras.Model))
            and type(layer).__name__ not in _FLOAT_INSIDE_OK]


def _warn_float_layers(qat):
    """Warn, naming them, of the layers with weights that stay float inside: only their
    outputs are fake quantized, so the int8 converter finds no range for their inner
    tensors."""
    left = float_inside_layers(qat)
    if left:
        warnings.warn(
            f"quantize_aware: {len(left)} layer(s) have no quantization-aware version and "
            f"train in float, with only their outputs fake quantized: {', '.join(left)}. "
            "Its int8 conversion calibrates the tensors inside them: export(...) does so "
            "with representative_data (required for such a QAT model).", stacklevel=3)


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
    quantizers = [quantizer for layer in all_layers(model)
                  if isinstance(layer, FAKE_QUANT_LAYERS) for quantizer in _quantizers(layer)]
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


def _quantizers(layer):
    """The range quantizers of a fake-quant layer: itself, and a separable convolution's
    quantizer of its depthwise output (a sublayer, which ``all_layers`` does not list)."""
    inner = getattr(layer, "depthwise_quant", None)
    return [layer] + ([inner] if inner is not None else [])
