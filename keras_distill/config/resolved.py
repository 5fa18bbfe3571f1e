"""The resolved configuration (:class:`Config`) and its form as a TOML file."""

from __future__ import annotations

import os

from keras_distill import registry
from keras_distill.config.checks import DATASET_NAMES
from keras_distill.config.schema import DEFAULT_TEACHER_EPOCHS, SCHEMA


class Config:
    """A resolved configuration: every key of :data:`SCHEMA` with its value.

    Index it by dotted key (``cfg["teacher.epochs"]``). :meth:`origin` says where a value came
    from (``"default"``, the file, or the flag); :meth:`to_dict` gives the nested form written
    to the manifest, :meth:`to_toml` a file that reproduces the run.

    Example:
        >>> from keras_distill.config import load
        >>> cfg = load(None, {"teacher.model": "student_mlp"})
        >>> cfg["teacher.model"], cfg.origin("teacher.model"), cfg.teacher_epochs()
        ('student_mlp', '--teacher', 20)
    """

    def __init__(self, values, origins, file=None):
        self._values = dict(values)
        self._origins = dict(origins)
        self.file = file

    def __getitem__(self, path):
        return self._values[path]

    def __contains__(self, path):
        return path in self._values

    def origin(self, path):
        """``"default"``, the config file's path, or the flag that set ``path``."""
        return self._origins.get(path, "default")

    def teacher_refs(self):
        """The teachers: ``teacher.models`` (an ensemble), else ``[teacher.model]``."""
        return list(self["teacher.models"] or [self["teacher.model"]])

    def teacher_epochs(self, ref=None):
        """``teacher.epochs``, with its default resolved (20 for a preset, 0 for a file).

        Args:
            ref: one teacher (a preset name or a file) of :meth:`teacher_refs`; default
                ``teacher.model``.
        """
        epochs = self["teacher.epochs"]
        if epochs is None:
            ref = self["teacher.model"] if ref is None else ref
            return 0 if ref.endswith(".keras") else DEFAULT_TEACHER_EPOCHS
        return epochs

    def flat(self, *, absolute_paths=False):
        """``{dotted key: value}`` (``absolute_paths``: file paths made absolute)."""
        return {p: self._absolute(p, v) if absolute_paths else v
                for p, v in self._values.items()}

    def to_dict(self, *, absolute_paths=False):
        """Nested plain data: ``{"epochs": 30, ..., "teacher": {"model": ..., ...}}``.

        Args:
            absolute_paths: file paths made absolute (to compare configurations).
        """
        out = {}
        for path, value in self.flat(absolute_paths=absolute_paths).items():
            node = out
            *parents, leaf = path.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return out

    @staticmethod
    def _is_file(value):
        return isinstance(value, str) and not (
            value in DATASET_NAMES or value in registry.PRESET_ARGS)

    def _absolute(self, path, value):
        """``value`` of ``path`` with its file paths made absolute."""
        if not SCHEMA[path].is_path:
            return value
        if isinstance(value, list):
            return [os.path.abspath(v) if self._is_file(v) else v for v in value]
        return os.path.abspath(value) if self._is_file(value) else value

    def to_toml(self, *, replace=None, absolute_paths=True, comments=True,
                title="keras-distill configuration"):
        """The configuration as a TOML file, one key per line with its help as a comment
        (keys without a value are commented out).

        Args:
            replace: ``{dotted key: value}`` written instead of the config's values (e.g.
                ``{"out_dir": "."}`` for a file saved in the output folder).
            absolute_paths: write paths absolute, so that the file works from any folder.
            comments: end each line with the key's help.
            title: first comment line.
        """
        replace = replace or {}
        top, sections = [], {}
        for path, value in self.flat(absolute_paths=absolute_paths).items():
            value = replace.get(path, value)
            section, _, leaf = path.rpartition(".")
            help_text = f"  # {SCHEMA[path].help}" if comments else ""
            line = (f"# {leaf} = ...{help_text}" if value is None
                    else f"{leaf} = {toml_value(value)}{help_text}")
            (sections.setdefault(section, []) if section else top).append(line)
        parts = [f"# {title}\n" + "\n".join(top)]
        parts += [f"[{name}]\n" + "\n".join(lines) for name, lines in sections.items()]
        return "\n\n".join(parts) + "\n"

    def __repr__(self):
        return f"Config(file={self.file!r}, {self._values!r})"


def toml_value(value):
    """``value`` written as TOML (a list of plain loss tables as a list of names).

    Example:
        >>> toml_value({"width": 8, "names": ["a", "b"]})
        '{width = 8, names = ["a", "b"]}'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        if all(isinstance(v, dict) and set(v) == {"name"} for v in value):
            value = [v["name"] for v in value]  # plain loss names
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def show(value):
    """``value`` as TOML for a message (its ``repr`` where TOML cannot write it)."""
    try:
        return toml_value(value)
    except TypeError:
        return repr(value)
