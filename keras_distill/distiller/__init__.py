"""The Distiller: a ``keras.Model`` that trains a student to imitate a teacher.

``compile``, ``fit``, ``evaluate``, ``predict`` and Keras callbacks work as with any Keras
model. ``call`` (and so ``predict``) returns the student's logits; ``distiller.student`` is the
trained student, a plain Keras model with no teacher inside.

The package: ``model`` (the class: its step and serialization), ``loops`` (``fit``,
``evaluate`` and the other loops), ``heads`` (each output's kind, losses, labels, masks and
means), ``teacher_logits`` (how the teacher's outputs become logits), ``caching`` (what ``fit``
trains on), ``xla`` (the ``jit_compile`` rule) and ``checks`` (its arguments' checks).
"""

from keras_distill.distiller.model import TEACHER_OUTPUTS, Distiller

__all__ = ["TEACHER_OUTPUTS", "Distiller"]
