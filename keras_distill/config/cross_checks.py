"""Checks that involve two keys or more: keys that exclude each other, lists of one item per
teacher or per loss, preset arguments that the preset takes.

Each takes the checked values and where each came from, and raises a
:class:`~keras_distill.config.ConfigError` naming the file or flag of the keys at fault.
"""

from __future__ import annotations

from keras_distill import registry
from keras_distill.config.errors import ConfigError
from keras_distill.config.resolved import show
from keras_distill.config.schema import SCHEMA


def check_across_keys(values, origins):
    """Raise a ConfigError for values that are fine alone but not together.

    Args:
        values: ``{dotted key: checked value}`` of every key.
        origins: ``{dotted key: file or flag}`` of the keys that were set.
    """
    _check_ensemble(values, origins)
    _check_shrunk_student(values, origins)
    for role in ("teacher", "student"):
        _check_preset_args(role, values, origins)
    _check_loss_weights(values, origins)
    _check_fractions(values, origins)
    _check_budget(values, origins)


def _where(origins, *paths):
    """The file or flag of the first of ``paths`` that was set, else ``"default"``."""
    return next((origins[p] for p in paths if p in origins), "default")


def _fail(origins, message, key, *paths, usage=None):
    """Raise a ConfigError from where the first of ``paths`` came from (a flag: a usage
    error)."""
    where = _where(origins, *paths)
    raise ConfigError(f"{where}: {message}", key=key, where=where,
                      usage=where.startswith("--") if usage is None else usage)


def _is_set(values, path):
    return values[path] != SCHEMA[path].default


def _check_ensemble(values, origins):
    members = values["teacher.models"]
    if members is not None and _is_set(values, "teacher.model"):
        _fail(origins, f"teacher.model = {show(values['teacher.model'])} and teacher.models = "
              f"{show(members)} exclude each other: teacher.models is an ensemble used instead "
              "of teacher.model; set one of the two.", "teacher.models", "teacher.models",
              "teacher.model")
    for path in ("teacher.weights", "teacher.average"):
        if members is None and _is_set(values, path):
            _fail(origins, f"{path} = {show(values[path])} only applies to an ensemble of "
                  "teachers; set teacher.models (a list of presets or .keras files) or remove "
                  f"{path}.", path, path)
    weights = values["teacher.weights"]
    if members is not None and weights is not None and len(weights) != len(members):
        _fail(origins, f"teacher.weights has {len(weights)} weight(s) but teacher.models has "
              f"{len(members)} teacher(s); give one weight per teacher.", "teacher.weights",
              "teacher.weights", "teacher.models")


def _check_shrunk_student(values, origins):
    shrink = values["student.from_teacher"]
    if shrink is None:
        return
    for path in ("student.model", "student.preset_args"):
        if _is_set(values, path):
            _fail(origins, f"student.from_teacher = {show(shrink)} and {path} = "
                  f"{show(values[path])} exclude each other: student.from_teacher builds the "
                  "student from the teacher instead of student.model; set one of the two.",
                  "student.from_teacher", "student.from_teacher", path)


def _check_preset_args(role, values, origins):
    """``<role>.preset_args`` needs a preset, and only arguments that each preset takes."""
    path = f"{role}.preset_args"
    args = values[path]
    if not args:
        return
    models = (values["teacher.models"] if role == "teacher" else None) or [
        values[f"{role}.model"]]
    presets = [m for m in models if not m.endswith(".keras")]
    if not presets:
        what = (f"{role}.model is the file {models[0]!r}" if len(models) == 1 else
                f"every teacher of {role}.models is a file")
        _fail(origins, f"{path} only applies to a preset, but {what}; remove {path}.", path,
              path, usage=False)
    for preset in dict.fromkeys(presets):
        allowed = registry.PRESET_ARGS[preset]
        refused = [k for k in args if k not in allowed]
        if refused:
            _fail(origins, f"{path} has {', '.join(repr(k) for k in refused)}, which preset "
                  f"{preset!r} does not take; allowed: {', '.join(allowed)}.", path, path,
                  usage=False)


def _check_loss_weights(values, origins):
    weights, losses = values["loss_weights"], values["losses"]
    if weights is not None and len(weights) != len(losses):
        _fail(origins, f"loss_weights has {len(weights)} weight(s) but losses has "
              f"{len(losses)}; give one weight per loss.", "loss_weights", "loss_weights",
              "losses")


def _check_fractions(values, origins):
    total = values["data.validation_fraction"] + values["data.test_fraction"]
    if total >= 1:
        _fail(origins, f"data.validation_fraction + data.test_fraction = {total:g} leaves no "
              "training data; expected a sum < 1.", "data.test_fraction",
              "data.validation_fraction", "data.test_fraction")


def _check_budget(values, origins):
    """``max_accuracy_drop`` is a budget of the int8 TFLite model: it needs both."""
    if values["max_accuracy_drop"] is None:
        return
    missing = [what for what, ok in (("'tflite' in formats", "tflite" in values["formats"]),
                                     ("'int8' in quantization",
                                      "int8" in values["quantization"])) if not ok]
    if missing:
        _fail(origins, f"max_accuracy_drop = {values['max_accuracy_drop']:g} is a budget of "
              f"the int8 TFLite model, which needs {' and '.join(missing)}; add it, or remove "
              "max_accuracy_drop.", "max_accuracy_drop", "max_accuracy_drop", "formats",
              "quantization")
