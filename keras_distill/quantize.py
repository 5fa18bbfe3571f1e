"""Deprecated: use :mod:`keras_distill.compress` instead.

This module used to hold both quantization-aware training and magnitude pruning. They now
live in the package ``keras_distill.compress``; every name this module exported is
re-exported here unchanged, so old code keeps working, with a ``DeprecationWarning`` on
import.

Moved to :mod:`keras_distill.compress.qat`: ``FakeQuant``, ``QuantizedDense``,
``QuantizedConv2D``, ``QuantizedDepthwiseConv2D``, ``quantize_aware``, ``calibrate``,
``is_quantize_aware``.

Moved to :mod:`keras_distill.compress.prune`: ``PruningCallback``, ``prune``,
``keep_sparsity``, ``strip_pruning``, ``SparsityReport``, ``sparsity_report``,
``gzip_size``.

All of them are also importable from :mod:`keras_distill.compress` itself. The QAT layers
keep their registered names (``keras_distill>QuantizedDense``, ...), so ``.keras`` files
saved before the move load as before.
"""

import warnings

# Every name of keras_distill.compress is a name this module had, and the other way round.
from keras_distill.compress import *
from keras_distill.compress import __all__  # noqa: F401

warnings.warn(
    "keras_distill.quantize is deprecated: import from keras_distill.compress (QAT names are "
    "in keras_distill.compress.qat, pruning names in keras_distill.compress.prune).",
    DeprecationWarning,
    stacklevel=2,
)
