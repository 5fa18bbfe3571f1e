"""The run configuration: a TOML file of plain data, checked against one schema.

A configuration is plain data read with :mod:`tomllib`: strings, numbers, booleans, lists and
tables. Nothing in it is imported or executed. Every key has a default, so an empty file (or no
file) is the default run. Unknown keys and bad values are errors that name the key, the values
it accepts and the file (or command-line flag) they came from.

The keys (:data:`SCHEMA` is the one source of truth; :func:`example_toml` prints them all)::

    seed = 0                         # seeds data splits, weights and shuffling
    out_dir = "exported"             # output folder
    epochs = 30                      # student epochs (the baseline and the distilled one)
    batch_size = 64
    learning_rate = 0.003            # Adam, for both students
    temperature = 4.0
    alpha = 0.1                      # weight of the loss on true labels
    losses = ["soft_target_kl"]      # names, or tables such as
                                     # {name = "feature_hint", teacher_layer = "relu3",
                                     #  student_layer = "conv2"}
    loss_weights = [1.0]             # one per loss (default: all 1)
    export_student = "auto"          # "auto" (best validation accuracy), "distilled", "baseline"
    formats = ["tflite", "onnx", "micro"]
    quantization = ["float32", "float16", "dynamic", "int8", "int16x8"]
    calibration_samples = 300
    quiet = false                    # no Keras progress bars
    safe_mode = true                 # refuse .keras files with Lambda layers (arbitrary code)
    cache_teacher = false            # teacher outputs computed once (in <out_dir>/cache)
    prune = 0.0                      # target sparsity of magnitude pruning (0: off)
    qat = false                      # quantization-aware fine-tuning, then QAT int8 artifacts
    qat_epochs = 5
    qat_learning_rate = 0.0003       # default: learning_rate / 10

    [data]                           # or: data = "digits"
    source = "digits"                # "digits", a keras.datasets name ("mnist", ...), a .npz
                                     # file or an image folder
    validation_fraction = 0.15
    test_fraction = 0.2
    image_size = [28, 28]            # image folders only (default: the first image's size)
    color_mode = "rgb"               # image folders only: "grayscale", "rgb", "rgba"

    [teacher]                        # or: teacher = "teacher.keras"
    model = "teacher_cnn"            # a preset name or a .keras file
    models = ["teacher_cnn", "t.keras"]  # instead of model: an ensemble of teachers
    weights = [2, 1]                 # ensemble: one weight per teacher (default equal)
    average = "probabilities"        # ensemble: average "probabilities" or "logits"
    epochs = 20                      # 0 uses the model as it is (the default for a file)
    learning_rate = 0.003
    preset_args = {width = 32}       # keyword arguments of the preset

    [student]                        # or: student = "student_cnn"
    model = "student_cnn"
    preset_args = {width = 8}
    from_teacher = {width = 0.25, transfer = "select"}  # instead of model: the teacher shrunk

**Command-line flags.** Every key has a flag of the same name, with dots and underscores
written as dashes: ``epochs`` ↔ ``--epochs``, ``out_dir`` ↔ ``--out-dir``, ``teacher.epochs`` ↔
``--teacher-epochs``, ``data.test_fraction`` ↔ ``--data-test-fraction``. The three tables that
may be given as a string have the table's name as flag: ``--data`` sets ``data.source``,
``--teacher`` sets ``teacher.model`` and ``--student`` sets ``student.model`` (as ``data =
"mnist"`` does in the file). Lists are comma-separated (``--formats tflite,onnx``); booleans are
``--quiet`` / ``--no-quiet`` (``--allow-unsafe`` is another spelling of ``--no-safe-mode``).
Tables (``preset_args``, ``student.from_teacher``, losses with arguments) are set in the file
only. A flag overrides the file, which overrides the default.

**Paths** in a file are relative to the file's folder; on the command line, to the current
folder.

**Keys that exclude each other**: ``teacher.models`` replaces ``teacher.model`` and
``student.from_teacher`` replaces ``student.model`` (set one of the two); ``teacher.weights``
and ``teacher.average`` need ``teacher.models``.

This module imports only the standard library, so that ``keras-distill --help`` stays fast.

Example:
    >>> cfg = load(None, {"epochs": "5", "data.source": "digits"})
    >>> cfg["epochs"], cfg["temperature"], cfg["data.source"]
    (5, 4.0, 'digits')
    >>> cfg.origin("epochs")
    '--epochs'
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["FORMATS", "KERAS_DATASETS", "LOSS_ARGS", "PRESET_ARGS", "QUANTIZATION_MODES",
           "SCHEMA", "Config", "ConfigError", "Key", "example_toml", "flag_name", "load"]

#: Formats and TFLite quantization modes of ``keras_distill.export`` (kept in sync by a test).
FORMATS = ("tflite", "onnx", "micro")
QUANTIZATION_MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
#: Model presets and the keyword arguments each accepts (kept in sync with
#: ``keras_distill.presets`` by a test).
PRESET_ARGS = {
    "teacher_cnn": ("width", "dropout"),
    "student_cnn": ("width",),
    "student_mlp": ("units",),
}
#: Distillation losses by name and the arguments each accepts (``keras_distill.losses``).
LOSS_ARGS = {
    "soft_target_kl": ("temperature",),
    "kl": ("temperature",),
    "hard_target_ce": (),
    "logit_mse": (),
    "mse": (),
    "decoupled_kd": ("alpha", "beta", "temperature"),
    "dkd": ("alpha", "beta", "temperature"),
    "feature_hint": ("teacher_layer", "student_layer"),
}
_REQUIRED_LOSS_ARGS = {"feature_hint": ("teacher_layer", "student_layer")}
#: Image-classification datasets of ``keras.datasets`` (downloaded on first use).
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
EXPORT_STUDENT = ("auto", "distilled", "baseline")
COLOR_MODES = ("grayscale", "rgb", "rgba")
#: Tables that may be written as a string, and the key that string sets.
SHORTHAND = {"data": "data.source", "teacher": "teacher.model", "student": "student.model"}
#: Keys kept for later versions (refused with a message saying so). None at present.
RESERVED = {}
#: ``student.from_teacher``: how the shrunk student is initialized from the teacher.
TRANSFER_METHODS = ("select", "first", "none")
ENSEMBLE_AVERAGES = ("probabilities", "logits")
#: Keys that may change between an interrupted run and its ``--resume`` (they act after
#: training, or not at all on the results).
RESUME_FREE_KEYS = ("out_dir", "quiet", "formats", "quantization", "calibration_samples",
                    "export_student")
COMMANDS = ("run", "distill", "export", "evaluate")


class ConfigError(ValueError):
    """A bad configuration: unknown key, bad value or unreadable file.

    Attributes:
        key: the key at fault (dotted, e.g. ``"teacher.epochs"``), or ``None``.
        where: the file, or the flag, the value came from.
        usage: ``True`` when the mistake is on the command line (exit code 2), ``False`` when it
            is in a file (exit code 1).
    """

    def __init__(self, message, *, key=None, where=None, usage=False):
        super().__init__(message)
        self.key, self.where, self.usage = key, where, usage


# ------------------------------------------------------------------------------------------
# value checks: each returns the cleaned value or raises _Bad(description of allowed values)
# ------------------------------------------------------------------------------------------


class _Bad(Exception):
    """Raised by a check; the message says what would be accepted."""



def _finite(value):
    """math.isfinite for TOML numbers: an integer too large for a float is not finite."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int(minimum):
    def check(v):
        if not _is_int(v) or v < minimum:
            raise _Bad(f"an integer >= {minimum}")
        return v
    return check


def _number(low=None, high=None, *, low_open=False, high_open=False):
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    if low is not None and high is not None:
        text = f"a number in {lo}, {hi}"
    elif low is not None:
        text = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        text = "a number"

    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
            raise _Bad(text)
        v = float(v)
        if low is not None and (v < low or (low_open and v == low)):
            raise _Bad(text)
        if high is not None and (v > high or (high_open and v == high)):
            raise _Bad(text)
        return v
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise _Bad("true or false")
    return v


def _choice(choices):
    def check(v):
        if v not in choices:
            raise _Bad("one of " + ", ".join(repr(c) for c in choices))
        return v
    return check


def _nonempty_str(v):
    if not isinstance(v, str) or not v.strip():
        raise _Bad("a non-empty string")
    return v


def _subset(choices, *, allow_empty):
    text = ("a list of any of " if allow_empty else "a non-empty list of any of ") + ", ".join(
        repr(c) for c in choices)

    def check(v):
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or (not v and not allow_empty) or any(
                x not in choices for x in v):
            raise _Bad(text)
        return list(dict.fromkeys(v))
    return check


def _model_ref(v):
    text = ("a preset name (" + ", ".join(repr(p) for p in PRESET_ARGS)
            + ") or the path of an existing .keras file")
    if not isinstance(v, str) or not (v in PRESET_ARGS or v.endswith(".keras")):
        raise _Bad(text)
    if v.endswith(".keras") and not os.path.isfile(v):
        raise _Bad(text + " (file not found)")
    return v


def _model_refs(v):
    text = ("a list of two or more teachers, each a preset name (" + ", ".join(
        repr(p) for p in PRESET_ARGS) + ") or the path of an existing .keras file")
    if isinstance(v, str):
        v = [s.strip() for s in v.split(",") if s.strip()]
    if not isinstance(v, list) or len(v) < 2:
        raise _Bad(text)
    out = []
    for item in v:
        try:
            out.append(_model_ref(item))
        except _Bad as bad:
            missing = " (file not found: " + item + ")" if "not found" in str(bad) else ""
            raise _Bad(text + missing) from None
    return out


def _teacher_weights(v):
    text = "a list of numbers >= 0, not all 0, one per teacher of teacher.models"
    if not isinstance(v, list) or not v or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) or not _finite(w)
            or w < 0 for w in v) or not sum(v) > 0:
        raise _Bad(text)
    return [float(w) for w in v]


_FROM_TEACHER_TEXT = (
    "a table such as {width = 0.25, transfer = \"select\"}, with width a number in (0, 1] "
    "(default 0.5), depth an integer >= 1 or a fraction in (0, 1] (optional: fewer repeated "
    "blocks) and transfer one of " + ", ".join(repr(m) for m in TRANSFER_METHODS)
    + " (default 'select')")


def _from_teacher(v):
    if not isinstance(v, dict) or any(k not in ("width", "depth", "transfer") for k in v):
        raise _Bad(_FROM_TEACHER_TEXT)
    out = {"width": v.get("width", 0.5), "transfer": v.get("transfer", "select")}
    width = out["width"]
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise _Bad(_FROM_TEACHER_TEXT)
    out["width"] = float(width)
    if out["transfer"] not in TRANSFER_METHODS:
        raise _Bad(_FROM_TEACHER_TEXT)
    if "depth" in v:
        depth = v["depth"]
        if isinstance(depth, bool) or not (
                (_is_int(depth) and depth >= 1)
                or (isinstance(depth, float) and 0 < depth <= 1)):
            raise _Bad(_FROM_TEACHER_TEXT)
        out["depth"] = depth
    return out


def _data_source(v):
    text = ("'digits', a keras.datasets name (" + ", ".join(repr(d) for d in KERAS_DATASETS)
            + "), the path of a .npz file or the path of an image folder")
    if not isinstance(v, str) or not v.strip():
        raise _Bad(text)
    if v == "digits" or v in KERAS_DATASETS or os.path.isdir(v):
        return v
    if v.endswith(".npz"):
        if os.path.isfile(v):
            return v
        raise _Bad(text + " (file not found)")
    raise _Bad(text + " (no such folder)" if ("/" in v or os.sep in v) else text)


def _image_size(v):
    if (not isinstance(v, list) or len(v) != 2 or not all(_is_int(x) and x >= 1 for x in v)):
        raise _Bad("a list of two integers >= 1, [height, width]")
    return v


def _loss_weights(v):
    if not isinstance(v, list) or not v or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) or not _finite(w)
            or w < 0 for w in v):
        raise _Bad("a non-empty list of numbers >= 0, one per loss")
    return [float(w) for w in v]


def _losses(v):
    names = ", ".join(repr(n) for n in LOSS_ARGS)
    text = (f"a non-empty list of loss names ({names}) or tables such as "
            "{name = \"feature_hint\", teacher_layer = \"relu3\", student_layer = \"conv2\"}")
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise _Bad(text)
    out = []
    for item in v:
        if isinstance(item, str):
            if item not in LOSS_ARGS:
                raise _Bad(text)
            if item in _REQUIRED_LOSS_ARGS:
                raise _Bad(f"a table for {item!r}: {{name = {item!r}, "
                           + ", ".join(f"{a} = ..." for a in _REQUIRED_LOSS_ARGS[item]) + "}")
            out.append({"name": item})
        elif isinstance(item, dict):
            item = dict(item)
            name = item.get("name")
            if name not in LOSS_ARGS:
                raise _Bad(text)
            allowed = LOSS_ARGS[name]
            extra = [k for k in item if k != "name" and k not in allowed]
            missing = [k for k in _REQUIRED_LOSS_ARGS.get(name, ()) if k not in item]
            if extra or missing:
                raise _Bad(f"for loss {name!r}, only the arguments "
                           f"{', '.join(allowed) or '(none)'}"
                           + (f" (missing: {', '.join(missing)})" if missing else ""))
            for k in allowed:
                if k not in item:
                    continue
                if k.endswith("_layer"):
                    _nonempty_str(item[k])
                elif k == "temperature":
                    item[k] = _number(0, low_open=True)(item[k])
                else:
                    item[k] = _number(0)(item[k])
            out.append(item)
        else:
            raise _Bad(text)
    return out


def _preset_args(v):
    if not isinstance(v, dict) or any(
            not isinstance(x, (int, float, str, bool)) for x in v.values()):
        raise _Bad("a table of preset keyword arguments, e.g. {width = 16}")
    return dict(v)


# ------------------------------------------------------------------------------------------
# the schema
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Key:
    """One configuration key.

    Attributes:
        path: dotted name, e.g. ``"teacher.epochs"``.
        kind: how a command-line string is parsed: ``"int"``, ``"float"``, ``"bool"``,
            ``"str"``, ``"list"`` (comma-separated), ``"int_list"``, ``"float_list"`` or
            ``"table"`` (file only).
        default: the value when neither file nor flag sets it (``None``: decided at run time,
            see ``help``).
        check: cleans a value or raises with a description of the allowed values.
        help: one line for ``--help`` and :func:`example_toml`.
        commands: the subcommands that read it.
        is_path: a path, resolved relative to the config file's folder.
    """

    path: str
    kind: str
    default: object
    check: object
    help: str
    commands: tuple = COMMANDS
    is_path: bool = False

    @property
    def flag(self):
        return flag_name(self.path)


_TRAIN = ("run", "distill")
_DATA = COMMANDS
_EXPORT = ("run", "export")

SCHEMA = {k.path: k for k in [
    Key("seed", "int", 0, _int(0), "seed of data splits, weight initialization and shuffling"),
    Key("out_dir", "str", "exported", _nonempty_str, "output folder", is_path=True),
    Key("epochs", "int", 30, _int(1), "epochs of each student (baseline and distilled)",
        _TRAIN),
    Key("batch_size", "int", 64, _int(1), "batch size of all training", _TRAIN),
    Key("learning_rate", "float", 3e-3, _number(0, low_open=True),
        "Adam learning rate of the students", _TRAIN),
    Key("temperature", "float", 4.0, _number(0, low_open=True),
        "softening temperature of the distillation losses", _TRAIN),
    Key("alpha", "float", 0.1, _number(0, 1),
        "weight of the loss on true labels (0 = distill only, 1 = ignore the teacher)", _TRAIN),
    Key("losses", "list", ["soft_target_kl"], _losses,
        "distillation losses: " + ", ".join(LOSS_ARGS), _TRAIN),
    Key("loss_weights", "float_list", None, _loss_weights,
        "one weight per loss (default: all 1)", _TRAIN),
    Key("export_student", "str", "auto", _choice(EXPORT_STUDENT),
        "student to export: auto (best validation accuracy), distilled or baseline", ("run",)),
    Key("formats", "list", list(FORMATS), _subset(FORMATS, allow_empty=True),
        "export formats (empty: no export)", _EXPORT),
    Key("quantization", "list", list(QUANTIZATION_MODES),
        _subset(QUANTIZATION_MODES, allow_empty=False), "TFLite quantization modes", _EXPORT),
    Key("calibration_samples", "int", 300, _int(1),
        "training samples that calibrate int8 / int16x8 / micro", _EXPORT),
    Key("quiet", "bool", False, _bool, "no Keras progress bars"),
    Key("safe_mode", "bool", True, _bool,
        "refuse .keras files with Lambda layers (they can run arbitrary code; "
        "--allow-unsafe = --no-safe-mode)"),
    Key("cache_teacher", "bool", False, _bool,
        "compute the teacher's outputs once and reuse them every epoch (stored in "
        "<out_dir>/cache)", _TRAIN),
    Key("prune", "float", 0.0, _number(0, 1, high_open=True),
        "target sparsity of magnitude pruning of both students during training (0 = off)",
        _TRAIN),
    Key("qat", "bool", False, _bool,
        "quantization-aware fine-tuning of the exported student, then its int8 artifacts "
        "(student_qat_*) next to the post-training ones", ("run",)),
    Key("qat_epochs", "int", 5, _int(1), "epochs of quantization-aware fine-tuning",
        ("run",)),
    Key("qat_learning_rate", "float", None, _number(0, low_open=True),
        "Adam learning rate of quantization-aware fine-tuning (default: learning_rate / 10)",
        ("run",)),
    Key("data.source", "str", "digits", _data_source,
        "'digits', a keras.datasets name (" + ", ".join(KERAS_DATASETS)
        + "), a .npz file or an image folder", is_path=True),
    Key("data.validation_fraction", "float", 0.15, _number(0, 1, low_open=True, high_open=True),
        "fraction of the data held out for validation, where the data has none"),
    Key("data.test_fraction", "float", 0.2, _number(0, 1, low_open=True, high_open=True),
        "fraction of the data held out for testing, where the data has none"),
    Key("data.image_size", "int_list", None, _image_size,
        "[height, width] of images read from a folder (default: the first image's size)"),
    Key("data.color_mode", "str", "rgb", _choice(COLOR_MODES),
        "channels of images read from a folder"),
    Key("teacher.model", "str", "teacher_cnn", _model_ref,
        "teacher: a preset name or a .keras file", _TRAIN, is_path=True),
    Key("teacher.models", "list", None, _model_refs,
        "an ensemble of teachers instead of teacher.model: presets and/or .keras files",
        _TRAIN, is_path=True),
    Key("teacher.weights", "float_list", None, _teacher_weights,
        "ensemble: one weight per teacher of teacher.models (default: equal)", _TRAIN),
    Key("teacher.average", "str", "probabilities", _choice(ENSEMBLE_AVERAGES),
        "ensemble: what is averaged, the teachers' probabilities or their logits", _TRAIN),
    Key("teacher.epochs", "int", None, _int(0),
        "teacher training epochs (default: 20 for a preset, 0 for a .keras file)", _TRAIN),
    Key("teacher.learning_rate", "float", 3e-3, _number(0, low_open=True),
        "Adam learning rate of the teacher", _TRAIN),
    Key("teacher.preset_args", "table", {}, _preset_args,
        "keyword arguments of the teacher preset, e.g. {width = 32}", _TRAIN),
    Key("student.model", "str", "student_cnn", _model_ref,
        "student: a preset name or a .keras file (its architecture and initial weights)",
        _TRAIN, is_path=True),
    Key("student.preset_args", "table", {}, _preset_args,
        "keyword arguments of the student preset, e.g. {width = 8}", _TRAIN),
    Key("student.from_teacher", "table", None, _from_teacher,
        "instead of student.model: the teacher shrunk (keras_distill.students.shrink) and "
        "initialized from it, e.g. {width = 0.25, transfer = \"select\"} (transfer: select, "
        "first or none; depth = n keeps n repetitions of repeated blocks)", _TRAIN),
]}

DEFAULT_TEACHER_EPOCHS = 20


def flag_name(path):
    """The command-line flag of a key.

    Example:
        >>> flag_name("out_dir"), flag_name("teacher.epochs"), flag_name("teacher.model")
        ('--out-dir', '--teacher-epochs', '--teacher')
    """
    for short, target in SHORTHAND.items():
        if path == target:
            return f"--{short}"
    return "--" + path.replace(".", "-").replace("_", "-")


# ------------------------------------------------------------------------------------------
# the resolved configuration
# ------------------------------------------------------------------------------------------


class Config:
    """A resolved configuration: every key of :data:`SCHEMA` with its value.

    Index it by dotted key (``cfg["teacher.epochs"]``). :meth:`origin` says where a value came
    from (``"default"``, the file, or the flag); :meth:`to_dict` gives the nested form written
    to the manifest, :meth:`to_toml` a file that reproduces the run.
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
        for path, value in self._values.items():
            if absolute_paths:
                value = self._absolute(path, value)
            node = out
            *parents, leaf = path.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return out

    @staticmethod
    def _is_file(value):
        return isinstance(value, str) and not (
            value == "digits" or value in KERAS_DATASETS or value in PRESET_ARGS)

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
        for path, value in self._values.items():
            if path in replace:
                value = replace[path]
            elif absolute_paths:
                value = self._absolute(path, value)
            section, _, leaf = path.rpartition(".")
            help_text = f"  # {SCHEMA[path].help}" if comments else ""
            line = (f"# {leaf} = ...{help_text}" if value is None
                    else f"{leaf} = {_toml_value(value)}{help_text}")
            (sections.setdefault(section, []) if section else top).append(line)
        parts = [f"# {title}\n" + "\n".join(top)]
        parts += [f"[{name}]\n" + "\n".join(lines) for name, lines in sections.items()]
        return "\n\n".join(parts) + "\n"

    def __repr__(self):
        return f"Config(file={self.file!r}, {self._values!r})"


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        if all(isinstance(v, dict) and set(v) == {"name"} for v in value):
            value = [v["name"] for v in value]  # plain loss names
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def example_toml():
    """A TOML file with every key at its default, each with its help as a comment.

    Example:
        >>> import tomllib
        >>> tomllib.loads(example_toml())["temperature"]
        4.0
    """
    return load().to_toml(absolute_paths=False,
                          title="keras-distill configuration: every key at its default")


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------


def _flatten(doc, file):
    """``{dotted key: value}`` from a TOML document; unknown and reserved keys raise."""
    sections = {p.split(".")[0] for p in SCHEMA if "." in p}
    flat = {}
    for name, value in doc.items():
        if name in RESERVED:
            raise ConfigError(_reserved_message(name, file), key=name, where=file)
        if name in sections:
            if isinstance(value, str):
                flat[SHORTHAND[name]] = value
                continue
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{file}: [{name}] must be a table (or a string, short for "
                    f"{SHORTHAND[name]}); got {value!r}.", key=name, where=file)
            for leaf, v in value.items():
                path = f"{name}.{leaf}"
                if path in RESERVED:
                    raise ConfigError(_reserved_message(path, file), key=path, where=file)
                if path not in SCHEMA:
                    raise ConfigError(_unknown_message(path, file), key=path, where=file)
                flat[path] = v
        elif name in SCHEMA:
            flat[name] = value
        else:
            raise ConfigError(_unknown_message(name, file), key=name, where=file)
    return flat


def _unknown_message(path, file):
    section, _, _ = path.rpartition(".")
    siblings = sorted(p.rpartition(".")[2] for p in SCHEMA if p.rpartition(".")[0] == section)
    if not section:
        siblings += sorted(f"[{s}]" for s in SHORTHAND)
    leaf = path.rpartition(".")[2]
    close = difflib.get_close_matches(leaf, [s.strip("[]") for s in siblings], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    where = f"in [{section}]" if section else "at the top level"
    return (f"{file}: unknown key {path!r} {where}; allowed keys: {', '.join(siblings)}.{hint}")


def _reserved_message(path, file):
    return (f"{file}: key {path!r} ({RESERVED[path]}) is reserved for a later version of "
            "keras-distill and not supported yet; remove it.")


def _parse_flag(key, raw):
    """A command-line string to the key's type (before the key's own check)."""
    if not isinstance(raw, str):
        return raw
    try:
        if key.kind == "int":
            return int(raw)
        if key.kind == "float":
            return float(raw)
        if key.kind == "list":
            return [s.strip() for s in raw.split(",") if s.strip()]
        if key.kind == "int_list":
            return [int(s) for s in raw.split(",") if s.strip()]
        if key.kind == "float_list":
            return [float(s) for s in raw.split(",") if s.strip()]
    except ValueError:
        return raw  # the check then names what would be accepted
    return raw


def load(path=None, overrides=None):
    """Read a configuration file and apply command-line overrides.

    Args:
        path: a TOML file, or ``None`` for the defaults.
        overrides: ``{dotted key: value}`` from flags; string values are parsed to the key's
            type (``"5"`` → ``5``, ``"tflite,onnx"`` → ``["tflite", "onnx"]``).

    Returns:
        A :class:`Config`.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, bad value. The message names the
            key, the accepted values and the file or flag.

    Example:
        >>> load(None, {"alpha": "2"})
        Traceback (most recent call last):
        ...
        keras_distill.config.ConfigError: --alpha: alpha = 2.0 is not allowed; expected a number in [0, 1].
    """
    values = {p: None if k.default is None else k.check(copy.deepcopy(k.default))
              for p, k in SCHEMA.items()}
    origins = {}
    base = None
    if path is not None:
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}", where=path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}", where=path) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}", where=path) from None
        base = os.path.dirname(os.path.abspath(path))
        for key_path, value in _flatten(doc, path).items():
            key = SCHEMA[key_path]
            if key.is_path and isinstance(value, str) and value.strip():
                value = _resolve_path(key_path, value, base)
            elif key.is_path and isinstance(value, list):
                value = [_resolve_path(key_path, v, base)
                         if isinstance(v, str) and v.strip() else v for v in value]
            values[key_path], origins[key_path] = _checked(key, value, path, usage=False), path
    for key_path, raw in (overrides or {}).items():
        if key_path in RESERVED:
            raise ConfigError(_reserved_message(key_path, flag_name(key_path)), usage=True)
        if key_path not in SCHEMA:
            raise ConfigError(f"unknown key {key_path!r}; allowed keys: "
                              f"{', '.join(SCHEMA)}", key=key_path, usage=True)
        key = SCHEMA[key_path]
        values[key_path] = _checked(key, _parse_flag(key, raw), key.flag, usage=True)
        origins[key_path] = key.flag
    _check_together(values, origins)
    return Config(values, origins, file=path)


def _resolve_path(key_path, value, base):
    """Paths in a file are relative to the file's folder (names like 'digits' stay names)."""
    if key_path == "data.source" and (value == "digits" or value in KERAS_DATASETS):
        return value
    if key_path.endswith((".model", ".models")) and value in PRESET_ARGS:
        return value
    resolved = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if key_path == "data.source" and not (resolved.endswith(".npz") or os.path.isdir(resolved)):
        return value  # not a path: the check names what would be accepted
    return resolved


def _checked(key, value, where, *, usage):
    try:
        value = key.check(value)
    except _Bad as bad:
        raise ConfigError(
            f"{where}: {key.path} = {_show(value)} is not allowed; expected {bad}.",
            key=key.path, where=where, usage=usage) from None
    return value


def _show(value):
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


def _check_preset_args(path, args, where, usage, model):
    allowed = PRESET_ARGS[model]
    bad = [k for k in args if k not in allowed]
    if bad:
        raise ConfigError(
            f"{where}: {path} has {', '.join(repr(b) for b in bad)}, which preset {model!r} "
            f"does not take; allowed: {', '.join(allowed)}.", key=path, where=where,
            usage=usage)


def _check_together(values, origins):
    """Checks that involve two keys."""
    def where(*paths):
        for p in paths:
            if p in origins:
                return origins[p]
        return "default"

    def fail(message, key, *paths):
        w = where(*paths)
        raise ConfigError(f"{w}: {message}", key=key, where=w, usage=w.startswith("--"))

    default = {p: SCHEMA[p].default for p in SCHEMA}
    members = values["teacher.models"]
    if members is not None and values["teacher.model"] != default["teacher.model"]:
        fail(f"teacher.model = {_show(values['teacher.model'])} and teacher.models = "
             f"{_show(members)} exclude each other: teacher.models is an ensemble used instead "
             "of teacher.model; set one of the two.", "teacher.models", "teacher.models",
             "teacher.model")
    for path in ("teacher.weights", "teacher.average"):
        if members is None and values[path] != default[path]:
            fail(f"{path} = {_show(values[path])} only applies to an ensemble of teachers; set "
                 "teacher.models (a list of presets or .keras files) or remove "
                 f"{path}.", path, path)
    weights = values["teacher.weights"]
    if members is not None and weights is not None and len(weights) != len(members):
        fail(f"teacher.weights has {len(weights)} weight(s) but teacher.models has "
             f"{len(members)} teacher(s); give one weight per teacher.", "teacher.weights",
             "teacher.weights", "teacher.models")
    shrink = values["student.from_teacher"]
    if shrink is not None:
        for path in ("student.model", "student.preset_args"):
            if values[path] != default[path]:
                fail(f"student.from_teacher = {_show(shrink)} and {path} = "
                     f"{_show(values[path])} exclude each other: student.from_teacher builds the "
                     f"student from the teacher instead of student.model; set one of the two.",
                     "student.from_teacher", "student.from_teacher", path)
    refs = {"teacher": members or [values["teacher.model"]],
            "student": [values["student.model"]]}
    for role in ("teacher", "student"):
        args_path = f"{role}.preset_args"
        models = refs[role]
        if values[args_path]:
            presets = [m for m in models if not m.endswith(".keras")]
            if not presets:
                what = (f"{role}.model is the file {models[0]!r}" if len(models) == 1 else
                        f"every teacher of {role}.models is a file")
                raise ConfigError(
                    f"{where(args_path)}: {args_path} only applies to a preset, but "
                    f"{what}; remove {args_path}.",
                    key=args_path, where=where(args_path))
            for model in dict.fromkeys(presets):
                _check_preset_args(args_path, values[args_path], where(args_path), False,
                                   model)
    weights = values["loss_weights"]
    if weights is not None and len(weights) != len(values["losses"]):
        w = where("loss_weights", "losses")
        raise ConfigError(
            f"{w}: loss_weights has {len(weights)} weight(s) but losses has "
            f"{len(values['losses'])}; give one weight per loss.", key="loss_weights", where=w,
            usage=w.startswith("--"))
    vf, tf = values["data.validation_fraction"], values["data.test_fraction"]
    if vf + tf >= 1:
        w = where("data.validation_fraction", "data.test_fraction")
        raise ConfigError(
            f"{w}: data.validation_fraction + data.test_fraction = {vf + tf:g} leaves no "
            "training data; expected a sum < 1.", key="data.test_fraction", where=w,
            usage=w.startswith("--"))
