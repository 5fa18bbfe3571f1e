"""The student's loss on the labels (``Distiller.compile(loss=...)``), taken from logits."""

from __future__ import annotations

import keras

_LABEL_LOSSES_FROM_LOGITS = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
}


def student_label_loss(loss):
    """The student's loss on the labels, from ``Distiller.compile(loss=...)``: ``None`` (the
    default cross-entropy), or a Keras loss; a cross-entropy given by name is taken from
    logits, because the student outputs logits.

    Example:
        >>> student_label_loss("sparse_categorical_crossentropy").from_logits
        True
    """
    if loss is None:
        return None
    if isinstance(loss, str) and loss in _LABEL_LOSSES_FROM_LOGITS:
        return _LABEL_LOSSES_FROM_LOGITS[loss](from_logits=True)
    return keras.losses.get(loss)
