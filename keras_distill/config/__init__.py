"""The run configuration: a TOML file of plain data, checked against one schema.

Nothing in a file is imported or executed. Every key has a default, so no file is the default
run; every key has a command-line flag of the same name (:func:`flag_name`), which overrides
the file. Unknown keys and bad values are errors that name the key, the values it accepts and
the file or flag they came from.

The keys, with their defaults and help: :func:`example_toml` (``keras-distill run
--print-config`` prints the resolved ones), and the README, "The command line".

Modules: ``schema`` (the keys), ``checks`` (their values), ``cross_checks`` (keys that depend
on each other), ``loading`` (:func:`load`), ``resolved`` (:class:`Config` and its TOML). The
allowed names (presets, losses, formats, quantization modes, data sets) come from
:mod:`keras_distill.registry`. Only the standard library is imported, so that ``keras-distill
--help`` stays fast.

Example:
    >>> cfg = load(None, {"epochs": "5"})
    >>> cfg["epochs"], cfg.origin("epochs"), cfg["quantization"]
    (5, '--epochs', ['float32', 'float16', 'dynamic', 'int8'])
"""

from __future__ import annotations

from keras_distill.config.errors import ConfigError
from keras_distill.config.loading import load
from keras_distill.config.resolved import Config
from keras_distill.config.schema import (
    DEFAULT_TEACHER_EPOCHS,
    RESERVED,
    RESUME_FREE_KEYS,
    SCHEMA,
    SHORTHAND,
    Key,
    flag_name,
)
from keras_distill.registry import (
    COLOR_MODES,
    COMMANDS,
    DEFAULT_QUANTIZATION,
    ENSEMBLE_AVERAGES,
    EXPORT_STUDENT,
    FORMATS,
    KERAS_DATASETS,
    LOSS_ARGS,
    PRESET_ARGS,
    QUANTIZATION_MODES,
    TASKS,
    TRANSFER_METHODS,
)

__all__ = ["COLOR_MODES", "COMMANDS", "DEFAULT_QUANTIZATION", "DEFAULT_TEACHER_EPOCHS",
           "ENSEMBLE_AVERAGES", "EXPORT_STUDENT", "FORMATS", "KERAS_DATASETS", "LOSS_ARGS",
           "PRESET_ARGS", "QUANTIZATION_MODES", "RESERVED", "RESUME_FREE_KEYS", "SCHEMA",
           "SHORTHAND", "TASKS", "TRANSFER_METHODS", "Config", "ConfigError", "Key",
           "example_toml", "flag_name", "load"]


def example_toml():
    """A TOML file with every key at its default, each with its help as a comment.

    Example:
        >>> import tomllib
        >>> tomllib.loads(example_toml())["temperature"]
        4.0
    """
    return load().to_toml(absolute_paths=False,
                          title="keras-distill configuration: every key at its default")
