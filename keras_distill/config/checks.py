"""Value checks of the configuration keys: each returns the cleaned value or raises
:class:`NotAllowed`.

A check receives a value as TOML gives it (or as a flag's string was parsed) and returns it
cleaned (``2`` becomes ``2.0`` for a number, a single name becomes a list of one). A value it
refuses raises :class:`NotAllowed`, whose message says what would be accepted; the loader adds
the key and the file or flag it came from.

Example:
    >>> integer_at_least(1)(3)
    3
    >>> integer_at_least(1)(0)
    Traceback (most recent call last):
    ...
    keras_distill.config.checks.NotAllowed: an integer >= 1
"""

from __future__ import annotations

import math
import os

from keras_distill import registry

#: Values of ``data.source`` that name a data set rather than a file or folder.
DATASET_NAMES = registry.BUNDLED_DATASETS + registry.KERAS_DATASETS


class NotAllowed(Exception):
    """Raised by a check; the message says what would be accepted."""


def _quoted(names):
    return ", ".join(repr(n) for n in names)


# --- scalars ------------------------------------------------------------------------------


def is_finite(value):
    """:func:`math.isfinite` for TOML numbers: an integer too large for a float is not finite."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_integer(value):
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer_at_least(minimum):
    """A check that accepts integers ``>= minimum``."""
    def check(v):
        if not is_integer(v) or v < minimum:
            raise NotAllowed(f"an integer >= {minimum}")
        return v
    return check


def _interval_text(low, high, low_open, high_open):
    if low is not None and high is not None:
        return (f"a number in {'(' if low_open else '['}{low:g}, "
                f"{high:g}{')' if high_open else ']'}")
    if low is not None:
        return f"a number {'>' if low_open else '>='} {low:g}"
    return "a number"


def number(low=None, high=None, *, low_open=False, high_open=False):
    """A check that accepts finite numbers in an interval (open or closed at each end), as
    floats.

    Example:
        >>> number(0, 1, high_open=True)(0.5)
        0.5
    """
    text = _interval_text(low, high, low_open, high_open)

    def check(v):
        if not is_number(v) or not is_finite(v):
            raise NotAllowed(text)
        v = float(v)
        if low is not None and (v < low or (low_open and v == low)):
            raise NotAllowed(text)
        if high is not None and (v > high or (high_open and v == high)):
            raise NotAllowed(text)
        return v
    return check


positive_number = number(0, low_open=True)
fraction = number(0, 1, low_open=True, high_open=True)


def boolean(v):
    if not isinstance(v, bool):
        raise NotAllowed("true or false")
    return v


def nonempty_string(v):
    if not isinstance(v, str) or not v.strip():
        raise NotAllowed("a non-empty string")
    return v


def one_of(choices):
    """A check that accepts one of ``choices``."""
    def check(v):
        if v not in choices:
            raise NotAllowed("one of " + _quoted(choices))
        return v
    return check


def subset_of(choices, *, allow_empty):
    """A check that accepts a list of ``choices`` (or one of them), without repetitions."""
    text = ("a list of any of " if allow_empty else "a non-empty list of any of ") + _quoted(
        choices)

    def check(v):
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or (not v and not allow_empty) or any(
                x not in choices for x in v):
            raise NotAllowed(text)
        return list(dict.fromkeys(v))
    return check


def _weights(v, text, *, not_all_zero):
    if not isinstance(v, list) or not v or any(
            not is_number(w) or not is_finite(w) or w < 0 for w in v) or (
            not_all_zero and not sum(v) > 0):
        raise NotAllowed(text)
    return [float(w) for w in v]


# --- models -------------------------------------------------------------------------------

_PRESETS = _quoted(registry.PRESET_ARGS)
_MODEL_TEXT = f"a preset name ({_PRESETS}) or the path of an existing .keras file"
_TEACHERS_TEXT = (f"a list of two or more teachers, each a preset name ({_PRESETS}) or the path "
                  "of an existing .keras file")
_FROM_TEACHER_TEXT = (
    "a table such as {width = 0.25, transfer = \"select\"}, with width a number in (0, 1] "
    "(default 0.5), depth an integer >= 1 or a fraction in (0, 1] (optional: fewer repeated "
    f"blocks) and transfer one of {_quoted(registry.TRANSFER_METHODS)} (default 'select')")


def model(v):
    """``teacher.model``, ``student.model``: a preset name or an existing ``.keras`` file."""
    if not isinstance(v, str) or not (v in registry.PRESET_ARGS or v.endswith(".keras")):
        raise NotAllowed(_MODEL_TEXT)
    if v.endswith(".keras") and not os.path.isfile(v):
        raise NotAllowed(_MODEL_TEXT + " (file not found)")
    return v


def teacher_models(v):
    """``teacher.models``: two or more models (a list, or a comma-separated string)."""
    if isinstance(v, str):
        v = [s.strip() for s in v.split(",") if s.strip()]
    if not isinstance(v, list) or len(v) < 2:
        raise NotAllowed(_TEACHERS_TEXT)
    out = []
    for item in v:
        try:
            out.append(model(item))
        except NotAllowed as refused:
            missing = " (file not found: " + item + ")" if "not found" in str(refused) else ""
            raise NotAllowed(_TEACHERS_TEXT + missing) from None
    return out


def teacher_weights(v):
    return _weights(v, "a list of numbers >= 0, not all 0, one per teacher of teacher.models",
                    not_all_zero=True)


def from_teacher(v):
    """``student.from_teacher``: width, depth and transfer of a student shrunk from the
    teacher, with the defaults filled in."""
    if not isinstance(v, dict) or any(k not in ("width", "depth", "transfer") for k in v):
        raise NotAllowed(_FROM_TEACHER_TEXT)
    out = {"width": v.get("width", 0.5), "transfer": v.get("transfer", "select")}
    if not is_number(out["width"]) or not 0 < out["width"] <= 1:
        raise NotAllowed(_FROM_TEACHER_TEXT)
    out["width"] = float(out["width"])
    if out["transfer"] not in registry.TRANSFER_METHODS:
        raise NotAllowed(_FROM_TEACHER_TEXT)
    if "depth" in v:
        depth = v["depth"]
        if not ((is_integer(depth) and depth >= 1)
                or (isinstance(depth, float) and 0 < depth <= 1)):
            raise NotAllowed(_FROM_TEACHER_TEXT)
        out["depth"] = depth
    return out


def preset_args(v):
    if not isinstance(v, dict) or any(
            not isinstance(x, (int, float, str, bool)) for x in v.values()):
        raise NotAllowed("a table of preset keyword arguments, e.g. {width = 16}")
    return dict(v)


# --- data ---------------------------------------------------------------------------------


def data_source(v):
    """``data.source``: a data set name, an existing ``.npz`` file, TFRecord file (or a glob of
    them), or a folder (of images, ``.npy`` arrays or TFRecord files)."""
    import glob

    text = (f"{_quoted(registry.BUNDLED_DATASETS)}, a keras.datasets name "
            f"({_quoted(registry.KERAS_DATASETS)}), the path of a .npz file, of a TFRecord file "
            "(.tfrecord, .tfrecords, .tfr; or a glob of them), or of a folder (images in class "
            "subfolders, x_train.npy and y_train.npy, or TFRecord files)")
    if not isinstance(v, str) or not v.strip():
        raise NotAllowed(text)
    if v in DATASET_NAMES or os.path.isdir(v):
        return v
    if v.endswith((".npz", ".tfrecord", ".tfrecords", ".tfr")) or glob.has_magic(v):
        if os.path.isfile(v) or (glob.has_magic(v) and glob.glob(v)):
            return v
        raise NotAllowed(text + (" (no file matches)" if glob.has_magic(v) else
                                 " (file not found)"))
    raise NotAllowed(text + " (no such folder)" if ("/" in v or os.sep in v) else text)


def image_size(v):
    if not isinstance(v, list) or len(v) != 2 or not all(is_integer(x) and x >= 1 for x in v):
        raise NotAllowed("a list of two integers >= 1, [height, width]")
    return v


# --- losses -------------------------------------------------------------------------------

_LOSSES_TEXT = (
    f"a non-empty list of loss names ({_quoted(registry.LOSS_ARGS)}) or tables such as "
    "{name = \"feature_hint\", teacher_layer = \"relu3\", student_layer = \"conv2\"}")


def loss_weights(v):
    return _weights(v, "a non-empty list of numbers >= 0, one per loss", not_all_zero=False)


def losses(v):
    """``losses``: names and tables of losses, each as a table ``{name = ..., args...}``."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise NotAllowed(_LOSSES_TEXT)
    return [_loss_name(item) if isinstance(item, str) else _loss_table(item) for item in v]


def _loss_name(name):
    if name not in registry.LOSS_ARGS:
        raise NotAllowed(_LOSSES_TEXT)
    if name in registry.REQUIRED_LOSS_ARGS:
        raise NotAllowed(f"a table for {name!r}: {{name = {name!r}, "
                         + ", ".join(f"{a} = ..." for a in registry.REQUIRED_LOSS_ARGS[name]) + "}")
    return {"name": name}


def _loss_table(item):
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
            or item["name"] not in registry.LOSS_ARGS:
        raise NotAllowed(_LOSSES_TEXT)
    item = dict(item)
    name = item["name"]
    allowed = registry.LOSS_ARGS[name]
    extra = [k for k in item if k != "name" and k not in allowed]
    missing = [k for k in registry.REQUIRED_LOSS_ARGS.get(name, ()) if k not in item]
    if extra or missing:
        raise NotAllowed(f"for loss {name!r}, only the arguments {', '.join(allowed) or '(none)'}"
                         + (f" (missing: {', '.join(missing)})" if missing else ""))
    for arg in allowed:
        if arg in item:
            item[arg] = _loss_argument(arg)(item[arg])
    return item


def _loss_argument(arg):
    """The check of a loss argument: a layer name, a temperature or a weight."""
    if arg.endswith("_layer"):
        return nonempty_string
    if arg == "temperature":
        return positive_number
    return number(0)
