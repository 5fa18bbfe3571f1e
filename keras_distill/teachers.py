"""Teachers: ensembles, teacher outputs computed once (cached), and teachers loaded from files.

The teacher is the expensive half of distillation. When the training inputs are fixed, its
outputs can be computed once and reused every epoch (``Distiller.fit(..., cache_teacher=True)``
or ``cache_outputs``); several teachers can be combined into one (``Ensemble``); and a teacher
known only by its outputs (a SavedModel, a ``.tflite`` or ``.onnx`` file, or logits computed
elsewhere) drives distillation through the same cached path.
"""

from __future__ import annotations

import hashlib
import os

import keras
import numpy as np
from keras import ops

from keras_distill import outputs as outputs_lib
from keras_distill.graph import model_shape
from keras_distill.registry import ENSEMBLE_AVERAGES
from keras_distill.teacher_cache import (  # noqa: F401  (the cached-outputs API, re-exported)
    LABELS_KEY,
    TEACHER_OUTPUTS_KEY,
    cache_outputs,
    cached_targets,
    fingerprint,
    is_carrier,
    split_targets,
    targets_with_outputs,
    teacher_outputs,
)

_TINY = 1.1754944e-38


def outputs_probabilities(model):
    """True when ``model`` visibly outputs probabilities, False when visibly logits, else None.

    A model may declare it with an ``outputs_probabilities`` attribute (``Ensemble`` does);
    otherwise a final ``Softmax`` layer or softmax activation means probabilities.
    """
    declared = getattr(model, "outputs_probabilities", None)
    if declared is not None:
        return bool(declared)
    try:
        last = model.layers[-1]
    except (AttributeError, IndexError, TypeError):
        return None
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", str(activation))
    return name == "softmax" or activation is keras.activations.softmax


def to_log_probs(p):
    """Probabilities to log-probabilities, flooring at the smallest normal float32."""
    return ops.log(ops.maximum(ops.cast(p, "float32"), _TINY))


def looks_like_probabilities(out, atol=1e-3):
    """A boolean tensor: every value >= 0 and every row sums to 1 (within ``atol``)."""
    out = ops.cast(out, "float32")
    return ops.logical_and(ops.all(out >= 0), ops.all(ops.abs(ops.sum(out, axis=-1) - 1) < atol))


def sigmoid_to_logits(p):
    """Sigmoid probabilities to logits, ``log p − log(1 − p)``, both floored at the smallest
    normal float32 (so ``p = 0`` or ``1`` give about ∓87, never ±inf).

    Exact only as far as float32 resolves ``1 − p``: read a sigmoid model's logits before its
    activation where it shows them (the Distiller does, see :func:`logit_sources`).

    Example:
        >>> round(float(sigmoid_to_logits(np.float32(0.5))), 6), float(sigmoid_to_logits(1.0)) > 80
        (0.0, True)
    """
    p = ops.cast(p, "float32")
    return ops.log(ops.maximum(p, _TINY)) - ops.log(ops.maximum(1.0 - p, _TINY))


def looks_like_sigmoid(out):
    """A boolean tensor: every value is in [0, 1] (sigmoid probabilities, not logits)."""
    out = ops.cast(out, "float32")
    return ops.logical_and(ops.all(out >= 0), ops.all(out <= 1))


def logit_sources(model):
    """Where each output's logits can be read exactly, before a final softmax or sigmoid.

    Returns:
        One ``(tensor, head)`` per output of a Functional or Sequential ``model``, or None
        for other models: ``tensor`` is a symbolic tensor of the model, and the output's
        logits are ``tensor`` itself when ``head`` is None, else ``head``'s affine part applied
        to it (``head`` is the final ``Dense`` whose activation is skipped). An output whose
        activation cannot be skipped (or that has none) is the output tensor itself.

    Example:
        >>> x = keras.Input((3,))
        >>> model = keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(x))
        >>> [type(head).__name__ for _, head in logit_sources(model)]
        ['Dense']
    """
    try:
        tensors = list(model.outputs)
    except (AttributeError, ValueError):
        return None
    if not tensors:
        return None
    sources = []
    for tensor in tensors:
        layer = outputs_lib._producer(tensor)
        activation = outputs_lib.final_activation(tensor)
        source = (tensor, None)
        try:
            if activation is not None and isinstance(
                    layer, (keras.layers.Softmax, keras.layers.Activation)):
                source = (layer.input, None)
            elif activation is not None and type(layer) is keras.layers.Dense and \
                    getattr(layer, "quantization_mode", None) is None and \
                    getattr(layer, "lora_enabled", False) is False:
                source = (layer.input, layer)
        except (AttributeError, ValueError, RuntimeError):  # a layer used more than once
            pass
        sources.append(source)
    return sources


def dense_logits(head, h):
    """A final ``Dense`` layer's output before its activation: ``h · kernel + bias``."""
    z = ops.matmul(h, head.kernel)
    return z if head.bias is None else z + head.bias


# ------------------------------------------------------------------------------------------
# Ensembles
# ------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_distill")
class Ensemble(keras.Model):
    """Several teachers combined into one model (Hinton et al., 2015: "from an ensemble").

    Each member may output logits or probabilities (told by ``member_outputs`` or detected:
    a visible final softmax, else per batch, non-negative rows summing to 1). Members may differ
    in architecture but must share input and output shapes.

    Args:
        members: list of Keras models.
        weights: one non-negative weight per member (normalized to sum to 1). Default equal.
        average: ``"probabilities"`` (default; the usual definition of an ensemble's
            prediction: the model outputs the weighted mean of the members' probabilities) or
            ``"logits"`` (the model outputs the weighted mean of the members' logits, with
            log-probabilities standing in for a probability member's logits).
        member_outputs: ``"auto"`` or a list of ``"logits"``/``"probabilities"``, one per member.
        task: what the members' outputs hold (``keras_distill.outputs``): ``"auto"`` (a member
            ending in sigmoid means binary / multi-label; a linear output of one unit must be
            declared), ``"multiclass"`` (softmax probabilities or logits, as above),
            ``"binary"`` / ``"multilabel"`` (sigmoid probabilities averaged, or log-odds with
            ``average="logits"``) or ``"regression"`` (the weighted mean of the values).

    Example:
        >>> import keras
        >>> from keras_distill.presets import teacher_cnn
        >>> ens = Ensemble([teacher_cnn(width=8), teacher_cnn(width=16)], weights=[1, 2])
        >>> ens.outputs_probabilities
        True
    """

    def __init__(self, members, weights=None, average="probabilities", member_outputs="auto",
                 task="auto", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(members, (list, tuple)) or not members:
            raise ValueError(f"Ensemble needs a non-empty list of models; got {members!r}.")
        for m in members:
            if not isinstance(m, keras.Model):
                raise ValueError(  # noqa: TRY004 (a ValueError, as for every other argument)
                    f"Ensemble members must be keras.Model; got {type(m).__name__}.")
        if average not in ENSEMBLE_AVERAGES:
            raise ValueError(f"average must be {' or '.join(map(repr, ENSEMBLE_AVERAGES))}; "
                             f"got {average!r}.")
        if weights is None:
            weights = [1.0] * len(members)
        if len(weights) != len(members) or any(
                not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"weights must be {len(members)} non-negative numbers, not all zero (one per "
                f"member); got {weights!r}.")
        if member_outputs == "auto":
            kinds = [outputs_probabilities(m) for m in members]
        else:
            if len(member_outputs) != len(members) or any(
                    k not in ("logits", "probabilities") for k in member_outputs):
                raise ValueError(
                    "member_outputs must be 'auto' or a list with 'logits' or 'probabilities' "
                    f"for each of the {len(members)} members; got {member_outputs!r}.")
            kinds = [k == "probabilities" for k in member_outputs]
        shapes = {shape[1:] for shape in (model_shape(m, "output_shape") for m in members)
                  if shape is not None}
        if len(shapes) > 1:
            raise ValueError(f"Ensemble members disagree on the output shape: {sorted(shapes)}.")
        for m in members:
            m.trainable = False
        self.members = list(members)
        self.weights_ = [float(w) / float(sum(weights)) for w in weights]
        self.average = average
        self.member_outputs = member_outputs
        self.task = _ensemble_task(members, task, shapes)
        self._kinds = kinds  # True / False / None (decided per batch)
        if self.task in ("binary", "multilabel"):
            self._kinds = [outputs_lib.activations(m)[0] == "sigmoid" or
                           (member_outputs != "auto" and k) for m, k in zip(members, kinds)]
        #: The activation of the ensemble's output: what the Distiller converts from.
        self.output_activation = None
        if average == "probabilities" and self.task != "regression":
            self.output_activation = "softmax" if self.task == "multiclass" else "sigmoid"
        self.outputs_probabilities = self.output_activation == "softmax"
        self.built = all(getattr(m, "built", False) for m in members)

    def _member_log_probs_or_logits(self, out, kind):
        out = ops.cast(out, "float32")
        if kind is True:
            return to_log_probs(out), True
        if kind is False:
            return out, False
        return ops.where(looks_like_probabilities(out), to_log_probs(out), out), None

    def call(self, inputs, training=False):
        total = None
        for member, w, kind in zip(self.members, self.weights_, self._kinds):
            out = ops.cast(member(inputs, training=False), "float32")
            if self.task == "regression":
                term = w * out
            elif self.task == "multiclass":
                z, _ = self._member_log_probs_or_logits(out, kind)
                term = w * (ops.softmax(z, axis=-1) if self.average == "probabilities" else z)
            else:  # sigmoid outputs: probabilities averaged, or log-odds
                z = sigmoid_to_logits(out) if kind else out
                term = w * (ops.sigmoid(z) if self.average == "probabilities" else z)
            total = term if total is None else total + term
        return total

    def compute_output_shape(self, input_shape):
        return self.members[0].compute_output_shape(input_shape)

    def get_config(self):
        return {
            "name": self.name,
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
            "weights": list(self.weights_),
            "average": self.average,
            "member_outputs": self.member_outputs,
            "task": self.task,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return cls(**config)


def _ensemble_task(members, task, shapes):
    """The ensemble's output kind: declared, or told by the members' final activations."""
    if task != "auto":
        if task not in outputs_lib.KINDS:
            raise ValueError(f"Ensemble task must be 'auto' or one of {outputs_lib.KINDS}; "
                             f"got {task!r}.")
        return task
    acts = {a for m in members for a in outputs_lib.activations(m)[:1]}
    units = next(iter(shapes))[-1] if shapes else None
    if "sigmoid" in acts:
        return "binary" if units == 1 else "multilabel"
    if units == 1:
        raise ValueError(
            "Ensemble members with one linear output unit may give binary logits or "
            "regression values: declare Ensemble(..., task='binary') or task='regression'.")
    return "multiclass"


# ------------------------------------------------------------------------------------------
# Teachers from files
# ------------------------------------------------------------------------------------------


class FileTeacher:
    """A teacher known by a file that Keras cannot train: a SavedModel, ``.tflite`` or ``.onnx``.

    Only its outputs are used: ``predict(x)`` runs it in its own runtime, batch by batch, and
    ``cache_outputs`` turns those outputs into a dataset the Distiller trains on (with
    ``Distiller(teacher=None, ...)``).

    Args:
        path: a SavedModel folder, a ``.tflite`` file or an ``.onnx`` file.
        batch_size: samples per call (``.tflite`` runs one sample at a time unless its input
            has a dynamic batch dimension).

    Example:
        >>> teacher = FileTeacher("exported/teacher_float32.tflite")  # doctest: +SKIP
        >>> logits = teacher.predict(x)                               # doctest: +SKIP
    """

    def __init__(self, path, batch_size=256):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"Teacher file not found: {self.path}")
        self.batch_size = batch_size
        if os.path.isdir(self.path):
            self.kind = "saved_model"
        elif self.path.endswith(".tflite"):
            self.kind = "tflite"
        elif self.path.endswith(".onnx"):
            self.kind = "onnx"
        else:
            raise ValueError(
                f"Cannot use {self.path!r} as a teacher file: expected a SavedModel folder, a "
                ".tflite or an .onnx file (a .keras file loads with keras.saving.load_model).")
        # Opened now, so that a broken file is refused before any training.
        try:
            self._runner, self.input_shape = self._make_runner()
        except Exception as exc:  # noqa: BLE001  (each runtime raises its own types)
            what = {"saved_model": "TensorFlow SavedModel", "tflite": ".tflite file",
                    "onnx": ".onnx file"}[self.kind]
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ValueError(
                f"Cannot use {self.path!r} as a teacher: it does not load as a {what} "
                f"({reason}). Re-export the teacher (keras_distill.export, or "
                "model.export(path, format='tf_saved_model')), or pass its .keras file.") from None

    def _make_runner(self):
        """``(run, input_shape)``: a function from a batch of inputs to outputs, and the
        per-sample input shape the file declares (``None`` where a dimension is free)."""
        if self.kind == "saved_model":
            import tensorflow as tf

            loaded = tf.saved_model.load(self.path)
            fn = loaded.signatures.get("serving_default")
            if fn is None:
                raise ValueError(f"SavedModel {self.path!r} has no 'serving_default' signature.")
            specs = [*fn.structured_input_signature[0],
                     *fn.structured_input_signature[1].values()]
            shape = tuple(specs[0].shape[1:]) if specs else None

            def run(x):
                out = fn(tf.constant(x))
                return np.asarray(next(iter(out.values())))

            return run, shape
        if self.kind == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
            first = session.get_inputs()[0]
            shape = tuple(d if isinstance(d, int) else None for d in first.shape[1:])
            return (lambda x: session.run(None, {first.name: x.astype(np.float32)})[0]), shape
        # a .tflite file: the runtimes' LiteRT runner, one sample at a time (integer inputs
        # quantized and clipped, outputs dequantized, as on a device)
        from keras_distill.verify import LiteRTRunner, run_samples

        with open(self.path, "rb") as f:
            runner = LiteRTRunner(f.read(), num_threads=None)
        return (lambda x: run_samples(runner, x, warmup=0)[0]), runner.input_shape

    def _check_inputs(self, x):
        shape = self.input_shape
        if shape is None:
            return
        sample = tuple(x.shape[1:])
        if len(sample) != len(shape) or any(
                d is not None and d != s for d, s in zip(shape, sample)):
            raise ValueError(
                f"The teacher file {self.path!r} takes inputs of shape {shape} per sample, but "
                f"the data has samples of shape {sample}. Prepare the data as the teacher was "
                "trained (size, channels), or use the teacher made for this data.")

    def predict(self, x, batch_size=None, verbose=0):
        x = np.asarray(x, np.float32)
        self._check_inputs(x)
        bs = batch_size or self.batch_size
        return np.concatenate([self._runner(x[i:i + bs]) for i in range(0, len(x), bs)])

    def fingerprint(self):
        """A hash of the file's bytes (of every file, for a SavedModel folder)."""
        h = hashlib.sha256()
        paths = [self.path] if os.path.isfile(self.path) else sorted(
            os.path.join(root, f) for root, _, files in os.walk(self.path) for f in files)
        for p in paths:
            with open(p, "rb") as f:
                h.update(f.read())
        return h.hexdigest()


def load_teacher(path, *, allow_unsafe=False, **kwargs):
    """A teacher from a file: ``.keras`` loads as a Keras model (safely: see
    ``keras_distill.io.load_model``), other formats as ``FileTeacher``.

    Args:
        path: a ``.keras`` file, a SavedModel folder, a ``.tflite`` or an ``.onnx`` file.
        allow_unsafe: load a ``.keras`` file with ``Lambda`` layers (they can run arbitrary
            code). Never the default.
        **kwargs: passed to the loader.

    Example:
        >>> teacher = load_teacher("teacher.keras")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if path.endswith(".keras"):
        from keras_distill.io import load_model

        return load_model(path, allow_unsafe=allow_unsafe, **kwargs)
    return FileTeacher(path, **kwargs)
