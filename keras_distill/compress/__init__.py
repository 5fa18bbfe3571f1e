"""Model compression: quantization-aware training and magnitude pruning.

- :mod:`keras_distill.compress.qat`: fake-quant layers (``FakeQuant``, ``QuantizedDense``,
  ``QuantizedConv2D``, ``QuantizedDepthwiseConv2D``, their 1-D, separable and transposed
  versions), ``quantize_aware`` (with
  BatchNormalization folding), ``calibrate``, ``is_quantize_aware``. The layers themselves
  are defined in :mod:`keras_distill.compress.fake_quant`.
- :mod:`keras_distill.compress.prune`: ``PruningCallback``, ``prune``, ``keep_sparsity``,
  ``strip_pruning``, ``SparsityReport``, ``sparsity_report``, ``gzip_size``. (The attribute
  ``keras_distill.compress.prune`` is the function; ``from keras_distill.compress.prune
  import ...`` reaches the module.)

Importing this package registers the QAT layers with Keras, so ``.keras`` files that hold
them load without ``custom_objects``.
"""

from keras_distill.compress.prune import (
    PruningCallback,
    SparsityReport,
    gzip_size,
    keep_sparsity,
    prune,
    sparsity_report,
    strip_pruning,
)
from keras_distill.compress.qat import (
    FakeQuant,
    QuantizedConv1D,
    QuantizedConv2D,
    QuantizedConv2DTranspose,
    QuantizedDense,
    QuantizedDepthwiseConv1D,
    QuantizedDepthwiseConv2D,
    QuantizedSeparableConv1D,
    QuantizedSeparableConv2D,
    calibrate,
    float_inside_layers,
    is_quantize_aware,
    quantize_aware,
)

__all__ = [
    "FakeQuant",
    "PruningCallback",
    "QuantizedConv1D",
    "QuantizedConv2D",
    "QuantizedConv2DTranspose",
    "QuantizedDense",
    "QuantizedDepthwiseConv1D",
    "QuantizedDepthwiseConv2D",
    "QuantizedSeparableConv1D",
    "QuantizedSeparableConv2D",
    "SparsityReport",
    "calibrate",
    "float_inside_layers",
    "gzip_size",
    "is_quantize_aware",
    "keep_sparsity",
    "prune",
    "quantize_aware",
    "sparsity_report",
    "strip_pruning",
]
