"""The known causes of a failed conversion or runtime check, and their remedies: one table.

Every :class:`~keras_distill.verify.litert.UnsupportedOpError` of an export is written from a
row of :data:`CAUSES`: what went wrong (the op, the Keras layer it comes from, the mode or
runtime that refused it) and what to do. :func:`explain` picks the first row that applies;
the last rows are the generic ones, so that every failure gets a cause. A layer the converter
cannot trace to a Keras layer is said so ("no Keras layer"), never ``layer None``.

Example:
    >>> why, remedy = explain("NEG", "int8")
    >>> why.split(" (")[0]
    'the int8 converter cannot quantize a NEG op'
"""

from __future__ import annotations

import dataclasses

#: The remedy of an op that a full-integer mode cannot quantize.
FLOAT_FALLBACK = "use quantization 'dynamic' or 'float16' for this model, or replace the layer"


@dataclasses.dataclass(frozen=True)
class Cause:
    """One row: a test of ``(op, mode, text)``, the explanation, and the remedy.

    Attributes:
        key: the row's name (``causes.CAUSES_BY_KEY[key]``).
        ops: the TFLite / TensorFlow op names it applies to (empty: any op).
        modes: the modes or runtimes it applies to (``"int8"``, ``"micro"``, ...; empty: any).
        text: a substring of the converter's or runtime's message that it needs (``""``: none).
        why: what went wrong.
        remedy: what to do.
    """

    key: str
    ops: tuple
    modes: tuple
    text: str
    why: str
    remedy: str

    def applies(self, op, mode, message):
        return ((not self.ops or op in self.ops) and (not self.modes or mode in self.modes)
                and self.text in (message or ""))


_INTEGER = ("int8", "int16x8")
_FLOAT = ("float32", "float16", "dynamic")

#: The table, most specific rows first.
CAUSES = (
    Cause("recurrent_dynamic_batch", (), (), "TensorList",
          "a recurrent layer (LSTM, GRU, RNN) converted with a dynamic batch dimension leaves "
          "TensorList ops, which TFLite has no builtin for",
          "write the SavedModel with a fixed batch (saved_model(model, path, batch_size=1), "
          "as export() does for a rolled recurrence), or unroll the layer over a short "
          "sequence (export() does so up to 128 steps): the recurrence then converts to "
          "builtin ops"),
    Cause("layer_norm_neg", ("NEG",), _INTEGER, "",
          "the int8 converter cannot quantize a NEG op (Keras's LayerNormalization lowers to "
          "one, as does any negation)",
          "for a LayerNormalization, export a Functional or Sequential model: export() "
          "converts a copy whose LayerNormalization is rewritten without NEG "
          "(keras_distill.export.lowering); in a subclassed model compute (x - mean) * "
          "rsqrt(var + eps) * gamma + beta instead; write a negation as a subtraction"),
    Cause("embedding_select_micro", ("SELECT", "SELECT_V2"), ("micro",), "",
          "TensorFlow Lite Micro has no SELECT kernel (an Embedding's lookup, which wraps "
          "negative ids, gives one, as does ops.where)",
          "for an Embedding, export a Functional or Sequential model: export() converts a copy "
          "whose Embedding gathers directly (keras_distill.export.lowering); else replace the "
          "where"),
    Cause("gelu_micro", ("GELU",), ("micro",), "",
          "TensorFlow Lite Micro has no GELU kernel",
          "use activation='relu' in the student for a microcontroller, or deploy the .tflite "
          "files (LiteRT runs GELU in int8)"),
    Cause("tile_micro", ("TILE",), ("micro",), "",
          "TensorFlow Lite Micro has no TILE kernel (a nearest UpSampling2D repeats with it, "
          "as does ops.tile)",
          "export a Functional or Sequential model: export() converts a copy whose nearest "
          "UpSampling2D is a resize (keras_distill.export.lowering); else replace the layer"),
    Cause("micro_kernel_failed", (), ("micro",), "failed to",
          "its TensorFlow Lite Micro kernel failed to prepare or run (a shape, type or "
          "parameter that kernel does not support)",
          "replace the layer with TFLM-supported ops, or deploy the .tflite files (LiteRT) "
          "instead"),
    Cause("micro_kernel", (), ("micro",), "",
          "TensorFlow Lite Micro has no kernel for it",
          "replace the layer with TFLM-supported ops, or deploy the .tflite files (LiteRT) "
          "instead"),
    Cause("left_in_float", (), _INTEGER, "left it in float",
          "the converter could not quantize it and left it in float between DEQUANTIZE and "
          "QUANTIZE ops: not an integer-only model", FLOAT_FALLBACK),
    Cause("not_quantizable", (), _INTEGER, "",
          "the converter cannot convert it in full-integer mode", FLOAT_FALLBACK),
    Cause("not_builtin", (), _FLOAT, "",
          "it is not a TFLite builtin op",
          "replace the layer with builtin ops (Select TF ops would need the Flex delegate, "
          "which microcontrollers and most apps do not ship)"),
)
CAUSES_BY_KEY = {cause.key: cause for cause in CAUSES}


def cause_of(op, mode, message=""):
    """The first :class:`Cause` of :data:`CAUSES` that applies to ``op`` in ``mode``."""
    for cause in CAUSES:
        if cause.applies(op, mode, message):
            return cause
    return CAUSES_BY_KEY["not_builtin"]


def explain(op, mode, evidence=""):
    """``(why, remedy)`` of ``op`` refused in ``mode``; ``evidence``: the converter's or
    runtime's words, which some rows need (``"TensorList"``, ``"left it in float"``)."""
    cause = cause_of(op, mode, evidence)
    return cause.why, cause.remedy


def where(layer, tensor=None):
    """``in layer 'conv1'`` (with the tensor), or that no Keras layer could be told."""
    at = f" (tensor {tensor!r})" if tensor else ""
    if layer:
        return f"in layer {layer!r}{at}"
    return f"in no Keras layer the converter could name{at}"


def message(op, mode, *, layer=None, tensor=None, evidence="", detail="", what=None):
    """The error text of ``op`` refused in ``mode``: op, layer, cause, remedy, then ``detail``
    (say, the converter's or runtime's own words).

    Example:
        >>> message("GELU", "micro", layer="ffn")[:60]
        "Op GELU in layer 'ffn' cannot run on TensorFlow Lite Micro: "
    """
    why, remedy = explain(op, mode, f"{evidence} {detail}")
    what = what or ("run on TensorFlow Lite Micro" if mode == "micro" else
                    f"be converted to TFLite {mode}")
    text = f"Op {op} {where(layer, tensor)} cannot {what}: {why}. Remedy: {remedy}."
    return f"{text} {detail}" if detail else text
