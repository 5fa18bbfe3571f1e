"""The one Keras backend keras-distill runs on: TensorFlow.

The Distiller's training step, the teacher-output cache, SavedModel export and every converter
(TFLite, tf2onnx) are TensorFlow code; under another Keras backend they would fail deep inside
``train_step``. :func:`require_tensorflow` says so first.
"""

from __future__ import annotations

import os


def require_tensorflow(what):
    """Raise unless Keras runs on its TensorFlow backend.

    Args:
        what: what needs it, for the message (``"Distiller"``, ``"export"``).

    Raises:
        ValueError: naming the backend in use and how to select TensorFlow.

    Example:
        >>> require_tensorflow("Distiller")  # under KERAS_BACKEND=tensorflow: nothing
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"keras_distill's {what} needs Keras's TensorFlow backend, but Keras runs on "
            f"{backend!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '(unset)')}). Set "
            "KERAS_BACKEND=tensorflow before Python imports keras (or in "
            "~/.keras/keras.json), then start again.")
