"""Magnitude pruning for Keras 3 models: masks, schedules, sparsity and compressed sizes.

:func:`prune` prunes the Dense / Conv kernels of a model by magnitude, per layer,
with sparsity ramping per a schedule ("polynomial", Zhu & Gupta 2017, or
"constant"), done by a Keras callback (:class:`PruningCallback`) that re-applies
the masks after every training batch, so weights stay exactly zero after optimizer
updates; the model itself stays a plain Keras model. :func:`strip_pruning` gives a
plain copy for export, :func:`sparsity_report` the zeros per layer and
:func:`gzip_size` the compressed size where those zeros pay off.

To combine with quantization-aware training (:mod:`keras_distill.compress.qat`):
prune and fine-tune, :func:`strip_pruning`, ``quantize_aware``, then fine-tune with
:func:`keep_sparsity` as a callback so that the zeros survive (symmetric int8
weights keep 0 exact, and BN folding scales whole channels, keeping zeros).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os

import keras
import numpy as np
from keras import layers, ops

from keras_distill.graph import all_layers

__all__ = [
    "PruningCallback",
    "SparsityReport",
    "gzip_size",
    "keep_sparsity",
    "prune",
    "sparsity_report",
    "strip_pruning",
]

_SCHEDULES = ("polynomial", "constant")

_KERNEL_LAYERS = (layers.Dense, layers.Conv1D, layers.Conv2D, layers.Conv3D,
                  layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose,
                  layers.DepthwiseConv1D, layers.DepthwiseConv2D)


def _prunable_kernel(layer):
    """The kernel variable that pruning masks in ``layer``, or None."""
    if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        return layer.pointwise_kernel
    if isinstance(layer, _KERNEL_LAYERS):
        variable = getattr(layer, "_kernel", None)
        return variable if isinstance(variable, keras.Variable) else layer.kernel
    return None


def _prunable_kernels(model, names=None):
    """[(layer name, kernel variable)] of the Dense / Conv layers of a model."""
    found = []
    for layer in all_layers(model):
        if isinstance(layer, keras.Model):
            continue
        if names is not None and layer.name not in names:
            continue
        variable = _prunable_kernel(layer)
        if isinstance(variable, keras.Variable):
            found.append((layer.name, variable))
    if names is not None:
        missing = sorted(set(names) - {n for n, _ in found})
        if missing:
            prunable = [n for n, _ in _prunable_kernels(model)]
            raise ValueError(f"layers {missing} are not prunable Dense / Conv layers of "
                             f"'{model.name}'; prunable: {prunable}.")
    return found


def _as_numpy(variable) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(variable))


def _magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """1 where a weight is kept, 0 for the round(sparsity * size) smallest magnitudes."""
    flat = np.abs(weights).reshape(-1)
    k = round(sparsity * flat.size)
    mask = np.ones(flat.size, dtype=weights.dtype)
    if k > 0:
        mask[np.argsort(flat, kind="stable")[:k]] = 0
    return mask.reshape(weights.shape)


def _nonzero_mask(weights: np.ndarray) -> np.ndarray:
    """1 where a weight is not zero: the mask that keeps the current zeros."""
    return (weights != 0).astype(weights.dtype)


def _check_schedule(target_sparsity, schedule, begin_step, end_step, frequency,
                    initial_sparsity):
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {_SCHEDULES}; got {schedule!r}.")
    for arg, value in (("target_sparsity", target_sparsity),
                       ("initial_sparsity", initial_sparsity)):
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{arg} must be a number in [0, 1); got {value!r}.")
    if initial_sparsity > target_sparsity:
        raise ValueError(f"initial_sparsity ({initial_sparsity}) must not exceed "
                         f"target_sparsity ({target_sparsity}).")
    if not isinstance(begin_step, int) or begin_step < 0:
        raise ValueError(f"begin_step must be an int >= 0; got {begin_step!r}.")
    if end_step is not None and (not isinstance(end_step, int) or end_step < begin_step):
        raise ValueError(f"end_step must be None or an int >= begin_step ({begin_step}); "
                         f"got {end_step!r}.")
    if not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be an int >= 1; got {frequency!r}.")


class PruningCallback(keras.callbacks.Callback):
    """Magnitude pruning during ``fit``: per-layer masks on Dense / Conv kernels.

    At each mask update (every ``frequency`` training steps from ``begin_step``
    to ``end_step``, and at ``end_step``) each kernel's smallest-magnitude
    weights are masked so that its sparsity is the schedule's value for that
    step; after every training batch the masks are re-applied, so pruned weights
    stay exactly zero whatever the optimizer does. Steps are counted by the
    callback across ``fit`` calls (``callback.step``).

    Schedules:

    - ``"polynomial"`` (Zhu & Gupta, 2017): ``s(t) = s_f + (s_i - s_f) *
      (1 - (t - begin) / (end - begin))**3`` for ``begin <= t <= end``, then
      ``s_f``; ``s_i`` is ``initial_sparsity``, ``s_f`` the target.
    - ``"constant"``: ``target_sparsity`` from ``begin_step`` on (``end_step``
      None: masks keep being recomputed every ``frequency`` steps).

    Args:
        target: the model to prune. None: ``self.model.student`` if the model
            being fit has a ``student`` (a Distiller), else ``self.model``.
        target_sparsity: final fraction of zeros per kernel, in [0, 1).
        schedule: "polynomial" or "constant".
        begin_step: first step that prunes.
        end_step: last mask update. None for "polynomial": three quarters of
            the way through the first ``fit`` that uses this callback.
        frequency: steps between mask updates (>= 1).
        initial_sparsity: polynomial schedule's sparsity at ``begin_step``.
        layers: names of the layers to prune; None for every Dense / Conv layer.

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> model, callback = prune(student_mlp(), target_sparsity=0.5)
        >>> isinstance(callback, PruningCallback)
        True
    """

    def __init__(self, target=None, target_sparsity=0.5, schedule="polynomial", begin_step=0,
                 end_step=None, frequency=10, initial_sparsity=0.0, layers=None):
        super().__init__()
        _check_schedule(target_sparsity, schedule, begin_step, end_step, frequency,
                        initial_sparsity)
        if target is not None and not isinstance(target, keras.Model):
            raise TypeError(f"target must be a keras.Model or None; got {type(target).__name__}.")
        self.target = target
        self.target_sparsity = float(target_sparsity)
        self.schedule = schedule
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self.initial_sparsity = float(initial_sparsity)
        self.layers = None if layers is None else list(layers)
        self.step = 0
        self.resolved_end_step = end_step
        self._masks = {}  # layer name -> mask tensor
        self._kernels = None  # [(layer name, kernel variable)], found on first use
        self._fixed = False  # masks never recomputed (keep_sparsity)

    # -- the model ------------------------------------------------------------------------
    def _target(self):
        if self.target is not None:
            return self.target
        model = self.model
        student = getattr(model, "student", None)
        return student if isinstance(student, keras.Model) else model

    def _prunable_kernels(self):
        if self._kernels is None:
            target = self._target()
            if target is None:
                raise ValueError("PruningCallback has no model: pass target=... or use it in "
                                 "fit().")
            self._kernels = _prunable_kernels(target, self.layers)
        return self._kernels

    # -- the schedule ---------------------------------------------------------------------
    def sparsity_at(self, step: int) -> float:
        """The scheduled sparsity at a training step."""
        if step < self.begin_step:
            return 0.0
        if self.schedule == "constant":
            return self.target_sparsity
        end = self.resolved_end_step
        if end is None or step >= end:
            return self.target_sparsity
        progress = (step - self.begin_step) / max(1, end - self.begin_step)
        return self.target_sparsity + (self.initial_sparsity - self.target_sparsity) * \
            (1.0 - progress) ** 3

    def _should_update(self, step):
        if self._fixed or step < self.begin_step:
            return False
        end = self.resolved_end_step
        if end is not None and step > end:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == end

    def _resolve_end_step(self):
        """end_step=None (polynomial): three quarters of the way through this ``fit``."""
        steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
        if not steps or not epochs:
            raise ValueError("PruningCallback: end_step=None needs fit() to know its "
                             "number of steps; pass end_step=... (a training step index).")
        total = self.step + steps * epochs
        if total <= self.begin_step:
            raise ValueError(f"begin_step={self.begin_step} is after the last training "
                             f"step ({total - 1}); nothing would be pruned.")
        return self.begin_step + max(0, math.floor(0.75 * (total - self.begin_step)) - 1)

    # -- masks ----------------------------------------------------------------------------
    def _set_masks(self, mask_of):
        """Set each kernel's mask to ``mask_of(its weights)``, then apply the masks."""
        for name, variable in self._prunable_kernels():
            self._masks[name] = ops.convert_to_tensor(mask_of(_as_numpy(variable)))
        self.apply_masks()

    def update_masks(self, sparsity: float | None = None):
        """Recompute the masks by magnitude (at the scheduled sparsity) and apply them."""
        sparsity = self.sparsity_at(self.step) if sparsity is None else sparsity
        self._set_masks(lambda weights: _magnitude_mask(weights, sparsity))

    def masks_from_zeros(self):
        """Set the masks to the kernels' current non-zero pattern (the zeros stay zero).

        Weights masked by this callback are exactly zero after every batch, so on weights
        restored from a checkpoint this recovers the masks that were in force.
        """
        self._set_masks(_nonzero_mask)

    def apply_masks(self):
        """Zero the masked weights (called after every training batch)."""
        for name, variable in self._prunable_kernels():
            mask = self._masks.get(name)
            if mask is not None:
                variable.assign(ops.multiply(variable, ops.cast(mask, variable.dtype)))

    # -- callback hooks -------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        every = getattr(self.model, "steps_per_execution", 1) or 1
        if every > 1:
            raise ValueError(
                f"pruning applies its masks after every batch, but the model was compiled "
                f"with steps_per_execution={every} (Keras then calls callbacks once per "
                f"{every} batches): compile it with steps_per_execution=1.")
        self._prunable_kernels()
        if self.schedule == "polynomial" and self.resolved_end_step is None:
            self.resolved_end_step = self._resolve_end_step()
        self.apply_masks()

    def on_train_batch_begin(self, batch, logs=None):
        if self._should_update(self.step):
            self.update_masks()

    def on_train_batch_end(self, batch, logs=None):
        self.apply_masks()
        self.step += 1

    def on_train_end(self, logs=None):
        self.apply_masks()


def prune(model, target_sparsity: float = 0.5, schedule: str = "polynomial",
          begin_step: int = 0, end_step: int | None = None, frequency: int = 10, *,
          initial_sparsity: float = 0.0, layers=None):
    """Prepare magnitude pruning of ``model``: returns ``(model, callback)``.

    The model is returned as is (the same object): the masks live in the
    returned :class:`PruningCallback`, which applies them to the Dense / Conv
    kernels during ``fit`` (pass it in ``callbacks=[...]``), so the model stays
    a plain Keras model throughout. The callback targets ``model`` explicitly,
    so it also works with a Distiller whose student is ``model``. After
    training, :func:`strip_pruning` gives an independent plain copy for export.

    Args:
        model: a built ``keras.Model``.
        target_sparsity: final fraction of zeros in each pruned kernel, in [0, 1).
        schedule: "polynomial" (Zhu & Gupta 2017) or "constant".
        begin_step, end_step, frequency, initial_sparsity, layers: see
            :class:`PruningCallback`.

    Returns:
        ``(model, callback)``.

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> model, callback = prune(student_mlp(), target_sparsity=0.8, end_step=100)
        >>> callback.sparsity_at(0), callback.sparsity_at(100)
        (0.0, 0.8)
    """
    callback = PruningCallback(model, target_sparsity=target_sparsity, schedule=schedule,
                               begin_step=begin_step, end_step=end_step, frequency=frequency,
                               initial_sparsity=initial_sparsity, layers=layers)
    callback._prunable_kernels()  # fail early on bad layer names
    return model, callback


def keep_sparsity(model, layers=None) -> PruningCallback:
    """A callback that keeps the current zeros of ``model``'s kernels at zero during ``fit``.

    Use it to fine-tune a pruned model further, e.g. after
    ``quantize_aware`` (prune, strip, quantize_aware, fit with this callback).

    Args:
        model: the model whose Dense / Conv kernel zeros must stay zero.
        layers: names of the layers to watch; None for every Dense / Conv layer.

    Returns:
        A :class:`PruningCallback` with fixed masks (never recomputed).

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> callback = keep_sparsity(student_mlp())
    """
    callback = PruningCallback(model, schedule="constant", target_sparsity=0.0, layers=layers)
    callback._fixed = True
    callback.masks_from_zeros()
    return callback


def strip_pruning(model, callback: PruningCallback | None = None):
    """A plain, independent copy of a pruned model for export, with its zeros kept.

    Args:
        model: a Functional or Sequential model pruned with :func:`prune`.
        callback: its :class:`PruningCallback`; if given, its masks are applied
            first (they already are after every training batch).

    Returns:
        A new ``keras.Model`` with the same architecture and weights (no masks,
        no callback needed).

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> plain = strip_pruning(student_mlp())
    """
    if callback is not None:
        callback.apply_masks()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


@dataclasses.dataclass
class SparsityReport:
    """Fraction of zero weights per prunable layer (Dense / Conv kernels).

    Attributes:
        layers: layer name -> (number of zeros, number of weights).
    """

    layers: dict

    def __getitem__(self, name: str) -> float:
        zeros, size = self.layers[name]
        return zeros / size

    @property
    def overall(self) -> float:
        """Zeros over weights, across all the reported kernels."""
        size = sum(s for _, s in self.layers.values())
        return sum(z for z, _ in self.layers.values()) / size if size else 0.0

    def __str__(self) -> str:
        width = max([len(n) for n in self.layers] + [5])
        lines = [f"{'layer'.ljust(width)}  sparsity  zeros / weights"]
        for name, (zeros, size) in self.layers.items():
            lines.append(f"{name.ljust(width)}  {zeros / size:8.1%}  {zeros} / {size}")
        lines.append(f"{'all'.ljust(width)}  {self.overall:8.1%}")
        return "\n".join(lines)


def sparsity_report(model, layers=None) -> SparsityReport:
    """The sparsity of each Dense / Conv kernel of ``model``.

    Args:
        model: a ``keras.Model``.
        layers: names to report; None for every Dense / Conv layer.

    Returns:
        A :class:`SparsityReport`; ``report["conv1"]`` is a fraction,
        ``report.overall`` the total, ``print(report)`` a table.

    Example:
        >>> from keras_distill.presets import student_mlp
        >>> sparsity_report(student_mlp()).overall
        0.0
    """
    rows = {}
    for name, variable in _prunable_kernels(model, layers):
        weights = _as_numpy(variable)
        rows[name] = (int(np.count_nonzero(weights == 0)), int(weights.size))
    return SparsityReport(rows)


def gzip_size(path_or_bytes, level: int = 9) -> int:
    """Size in bytes of the gzip-compressed file or bytes (where pruning zeros pay off).

    Args:
        path_or_bytes: a file path, or bytes / bytearray / memoryview.
        level: gzip compression level, 1..9.

    Returns:
        The compressed size in bytes.

    Example:
        >>> gzip_size(bytes(10_000)) < 100
        True
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        if os.path.isdir(path_or_bytes):
            raise ValueError(f"gzip_size: {os.fspath(path_or_bytes)!r} is a directory; pass "
                             "a file (e.g. a .tflite or .keras file) or bytes.")
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    else:
        raise TypeError("gzip_size expects a path or bytes; got "
                        f"{type(path_or_bytes).__name__}.")
    return len(gzip.compress(data, compresslevel=level))
