"""keras-distill: knowledge distillation for Keras 3, and export of the student to edge runtimes.

Public names are imported lazily, so ``import keras_distill`` (and the
command-line ``--help``) stays fast and never imports ONNX, tf2onnx or a runtime
until a function that needs one is called.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Distiller": "keras_distill.distiller",
    # `export` is the subpackage keras_distill/export/, which is callable:
    # keras_distill.export(model, ...) runs keras_distill.export.export(model, ...).
    "ExportReport": "keras_distill.export",
    "load_digits": "keras_distill.data",
    "Splits": "keras_distill.data",
}
_SUBMODULES = {"losses", "data", "presets", "distiller", "export", "verify", "students",
               "compress", "teachers", "report", "cli", "config", "pipeline", "io", "registry",
               "graph", "hints", "transfer", "guard", "backend", "outputs", "teacher_check",
               "locks",
               # deprecated names (modules that moved): keras_distill.compress, .verify
               "quantize", "evaluate"}

__all__ = ["__version__", *_EXPORTS, *sorted(_SUBMODULES)]  # noqa: PLE0604 (all str)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_distill.{name}")
    else:
        raise AttributeError(f"module 'keras_distill' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
