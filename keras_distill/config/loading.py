"""Reading a configuration: defaults, then the file, then the flags; every value checked.

Example:
    >>> cfg = load(None, {"epochs": "5", "data.source": "digits"})
    >>> cfg["epochs"], cfg["temperature"], cfg["data.source"]
    (5, 4.0, 'digits')
    >>> cfg.origin("epochs")
    '--epochs'
"""

from __future__ import annotations

import copy
import difflib
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from keras_distill import registry
from keras_distill.config.checks import DATASET_NAMES, NotAllowed
from keras_distill.config.cross_checks import check_across_keys
from keras_distill.config.errors import ConfigError
from keras_distill.config.resolved import Config, show
from keras_distill.config.schema import RESERVED, SCHEMA, SHORTHAND, flag_name


def load(path=None, overrides=None):
    """Read a configuration file and apply command-line overrides.

    A flag overrides the file, which overrides the default. Paths in a file are relative to
    the file's folder; in ``overrides``, to the current folder. A table that may be written as
    a string (``data = "mnist"``) sets its main key (``data.source``); see ``SHORTHAND``.

    Args:
        path: a TOML file, or ``None`` for the defaults.
        overrides: ``{dotted key: value}`` from flags; string values are parsed to the key's
            type (``"5"`` → ``5``, ``"tflite,onnx"`` → ``["tflite", "onnx"]``).

    Returns:
        A :class:`Config`.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, bad value, keys that exclude each
            other. The message names the key, the accepted values and the file or flag.

    Example:
        >>> load(None, {"alpha": "2"})
        Traceback (most recent call last):
        ...
        keras_distill.config.ConfigError: --alpha: alpha = 2.0 is not allowed; expected a number in [0, 1].
    """
    values = {p: None if k.default is None else k.check(copy.deepcopy(k.default))
              for p, k in SCHEMA.items()}
    origins = {}
    if path is not None:
        path = os.fspath(path)
        for key_path, value in _file_values(path).items():
            values[key_path] = _checked(SCHEMA[key_path], value, path, usage=False)
            origins[key_path] = path
    for key_path, raw in (overrides or {}).items():
        key = _flag_key(key_path)
        values[key_path] = _checked(key, _parse_flag(key, raw), key.flag, usage=True)
        origins[key_path] = key.flag
    check_across_keys(values, origins)
    return Config(values, origins, file=path)


# --- the file -----------------------------------------------------------------------------


def _read(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}", where=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}", where=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", where=path) from None


def _file_values(path):
    """``{dotted key: value}`` of a file, with its paths made relative to the file's folder."""
    base = os.path.dirname(os.path.abspath(path))
    values = {}
    for key_path, value in _flatten(_read(path), path).items():
        if SCHEMA[key_path].is_path:
            if isinstance(value, list):
                value = [_resolve_path(key_path, v, base) for v in value]
            else:
                value = _resolve_path(key_path, value, base)
        values[key_path] = value
    return values


def _flatten(doc, file):
    """``{dotted key: value}`` from a TOML document; unknown and reserved keys raise."""
    sections = {p.split(".")[0] for p in SCHEMA if "." in p}
    flat = {}
    for name, value in doc.items():
        if name in sections and isinstance(value, str):
            flat[SHORTHAND[name]] = value
        elif name in sections:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{file}: [{name}] must be a table (or a string, short for "
                    f"{SHORTHAND[name]}); got {value!r}.", key=name, where=file)
            for leaf, v in value.items():
                flat[_known(f"{name}.{leaf}", file)] = v
        else:
            flat[_known(name, file)] = value
    return flat


def _known(path, file):
    """``path``, if it is a key of the schema; else a ConfigError that says what is."""
    if path in RESERVED:
        raise ConfigError(_reserved_message(path, file), key=path, where=file)
    if path not in SCHEMA:
        raise ConfigError(_unknown_message(path, file), key=path, where=file)
    return path


def _unknown_message(path, file):
    section, _, leaf = path.rpartition(".")
    siblings = sorted(p.rpartition(".")[2] for p in SCHEMA if p.rpartition(".")[0] == section)
    if not section:
        siblings += sorted(f"[{s}]" for s in SHORTHAND)
    close = difflib.get_close_matches(leaf, [s.strip("[]") for s in siblings], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    where = f"in [{section}]" if section else "at the top level"
    return f"{file}: unknown key {path!r} {where}; allowed keys: {', '.join(siblings)}.{hint}"


def _reserved_message(path, where):
    return (f"{where}: key {path!r} ({RESERVED[path]}) is reserved for a later version of "
            "keras-distill and not supported yet; remove it.")


def _resolve_path(key_path, value, base):
    """Paths in a file are relative to the file's folder (names like 'digits' stay names)."""
    if not isinstance(value, str) or not value.strip():
        return value  # the check names what would be accepted
    if key_path == "data.source" and value in DATASET_NAMES:
        return value
    if key_path.endswith((".model", ".models")) and value in registry.PRESET_ARGS:
        return value
    resolved = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if key_path == "data.source" and not (resolved.endswith(".npz") or os.path.isdir(resolved)):
        return value  # not a path: the check names what would be accepted
    return resolved


# --- the flags ----------------------------------------------------------------------------


def _flag_key(path):
    """The key of a command-line override; unknown and reserved keys are usage errors."""
    if path in RESERVED:
        raise ConfigError(_reserved_message(path, flag_name(path)), usage=True)
    if path not in SCHEMA:
        raise ConfigError(f"unknown key {path!r}; allowed keys: {', '.join(SCHEMA)}",
                          key=path, usage=True)
    return SCHEMA[path]


_PARSERS = {
    "int": int,
    "float": float,
    "list": lambda raw: [s.strip() for s in raw.split(",") if s.strip()],
    "int_list": lambda raw: [int(s) for s in raw.split(",") if s.strip()],
    "float_list": lambda raw: [float(s) for s in raw.split(",") if s.strip()],
}


def _parse_flag(key, raw):
    """A command-line string to the key's type (before the key's own check)."""
    parse = _PARSERS.get(key.kind)
    if not isinstance(raw, str) or parse is None:
        return raw
    try:
        return parse(raw)
    except ValueError:
        return raw  # the check then names what would be accepted


def _checked(key, value, where, *, usage):
    try:
        return key.check(value)
    except NotAllowed as refused:
        raise ConfigError(
            f"{where}: {key.path} = {show(value)} is not allowed; expected {refused}.",
            key=key.path, where=where, usage=usage) from None
