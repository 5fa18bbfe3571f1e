"""Reading model files safely and writing files atomically.

Two concerns the rest of the package (and the command line) share:

* :func:`load_model` reads a Keras v3 ``.keras`` file with errors that name the file, what is
  wrong with it and how to fix it, instead of Keras' generic messages (a truncated file is
  reported by Keras as "File not found"). Models with ``Lambda`` layers are refused unless
  ``allow_unsafe=True``: a ``Lambda`` layer stores Python bytecode that runs when it is loaded.
* :func:`atomic_write_bytes` and :func:`atomic_write_text` write through a temporary file in the
  destination folder, fsynced and renamed into place, so an interrupted write (a crash, Ctrl-C,
  a full disk) never leaves a half-written file and never damages the previous one. They have
  the semantics of ``keras_distill.export._atomic_write``, plus errors that name the file.

Example:
    >>> from keras_distill.io import atomic_write_text, load_model
    >>> atomic_write_text("labels.txt", "cat\\ndog\\n")  # doctest: +SKIP
    >>> model = load_model("student.keras")  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import zipfile
import zlib

__all__ = ["KERAS_SUFFIX", "UnsafeModelError", "atomic_write_bytes", "atomic_write_text",
           "load_model", "output_folder", "remove_quietly", "save_model", "write_files"]

#: The one model file format :func:`load_model` reads.
KERAS_SUFFIX = ".keras"
_CONFIG = "config.json"
_WEIGHTS_PREFIX = "model.weights."
# Class names in a model config whose deserialization runs code stored in the file.
_UNSAFE_CLASSES = ("Lambda", "__lambda__")
_OTHER_FORMATS = {
    ".h5": "a legacy HDF5 model: load it with the Keras version that saved it and re-save it "
           "with model.save('model.keras')",
    ".hdf5": "a legacy HDF5 model: load it with the Keras version that saved it and re-save it "
             "with model.save('model.keras')",
    ".tflite": "a TFLite model: use it as a teacher through keras_distill.teachers.FileTeacher",
    ".onnx": "an ONNX model: use it as a teacher through keras_distill.teachers.FileTeacher",
    ".pb": "a TensorFlow SavedModel: pass its folder to keras_distill.teachers.FileTeacher",
}


class UnsafeModelError(ValueError):
    """A model file refused in safe mode: it holds code (``Lambda`` layers) that loading runs.

    Attributes:
        path: the file.
        layers: names of the layers that hold code.
    """

    def __init__(self, message, *, path=None, layers=()):
        super().__init__(message)
        self.path = path
        self.layers = list(layers)


def load_model(path, *, allow_unsafe=False, **kwargs):
    """Load a Keras model from a ``.keras`` file, with errors that name the problem and the fix.

    The file is checked before Keras reads it: it must exist, be a ``.keras`` zip archive with a
    model configuration, and, unless ``allow_unsafe=True``, hold no ``Lambda`` layer. Then
    ``keras.saving.load_model(path, safe_mode=not allow_unsafe, **kwargs)`` loads it.

    Args:
        path: path of a ``.keras`` file (written by ``model.save("model.keras")``).
        allow_unsafe: load models with ``Lambda`` layers (or other Python code stored as
            bytecode). Loading runs that code: pass ``True`` only for files you trust. Never
            the default; on the command line, ``--allow-unsafe``.
        **kwargs: passed to ``keras.saving.load_model`` (``custom_objects``, ``compile``).
            ``safe_mode`` is not accepted: use ``allow_unsafe``.

    Returns:
        The ``keras.Model``.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeModelError: (a ``ValueError``) the model has ``Lambda`` layers and
            ``allow_unsafe`` is False; the message names the layers and ``allow_unsafe=True``.
        ValueError: ``path`` is not a ``.keras`` file (the message names the accepted format
            and where other formats go), or the file is truncated, empty, not a zip archive or
            not a Keras model ("not a valid .keras file (truncated or corrupt?)", with the fix:
            re-save it with ``model.save(path)``).
        TypeError: ``safe_mode`` given in ``kwargs``.

    Example:
        >>> from keras_distill.io import load_model
        >>> teacher = load_model("teacher.keras")  # doctest: +SKIP
        >>> trusted = load_model("lambda_model.keras", allow_unsafe=True)  # doctest: +SKIP
    """
    if "safe_mode" in kwargs:
        raise TypeError("load_model() takes allow_unsafe=True instead of safe_mode=False "
                        "(safe mode is on unless allow_unsafe=True).")
    if not isinstance(allow_unsafe, bool):
        raise TypeError(f"allow_unsafe must be True or False; got {allow_unsafe!r}.")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    _check_suffix(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a .keras file; pass the .keras file that "
                         "model.save('model.keras') wrote (a SavedModel folder is read by "
                         "keras_distill.teachers.FileTeacher).")
    config = _read_config(path)
    unsafe = _unsafe_layers(config)
    if unsafe and not allow_unsafe:
        raise _unsafe_error(path, unsafe)

    import keras

    try:
        return keras.saving.load_model(path, safe_mode=not allow_unsafe, **kwargs)
    except TypeError:  # a class Keras cannot find (its message holds the whole config)
        unknown = _unknown_classes(config, kwargs.get("custom_objects"))
        if not unknown:
            raise
        names = ", ".join(f"{name!r} (module {module})" for name, module in unknown)
        raise ValueError(
            f"cannot load {path}: it uses the class(es) {names}, which this Python process "
            "does not know. Import the module that defines each class, registered with "
            "@keras.saving.register_keras_serializable(), before loading (or pass "
            "custom_objects={name: class}).") from None
    except ValueError as exc:
        if "safe_mode" in str(exc):  # code stored elsewhere than in a Lambda layer
            raise _unsafe_error(path, []) from exc
        if isinstance(exc, json.JSONDecodeError):
            raise _corrupt_error(path, exc) from exc
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError) as exc:
        raise _corrupt_error(path, exc) from exc
    except OSError as exc:
        # h5py reports a damaged weights file as OSError; a real I/O error has an errno.
        if exc.errno is None:
            raise _corrupt_error(path, exc) from exc
        raise


def _check_suffix(path):
    if path.endswith(KERAS_SUFFIX):  # case-sensitive, as in keras.saving
        return
    suffix = os.path.splitext(path)[1].lower()
    where = _OTHER_FORMATS.get(suffix)
    if where is None and os.path.isdir(path):
        where = "a folder (a SavedModel?): pass it to keras_distill.teachers.FileTeacher"
    hint = f" It looks like {where}." if where else ""
    raise ValueError(
        f"{path}: unsupported model file{f' {suffix!r}' if suffix else ''}; load_model reads "
        f"Keras v3 '{KERAS_SUFFIX}' files (saved with model.save('model.keras')).{hint}")


def _corrupt_error(path, cause=None):
    detail = f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})" \
        if cause is not None else ""
    return ValueError(
        f"{path} is not a valid .keras file (truncated or corrupt?){detail}. A .keras file is the "
        "zip archive written by model.save(path): re-save the model with model.save(path), or "
        "copy the file again in full.")


def _unsafe_error(path, layers):
    what = (f"Lambda layer(s) {', '.join(repr(n) for n in layers)}" if layers
            else "Python code stored as bytecode")
    return UnsafeModelError(
        f"{path} is refused in safe mode: the model contains {what}, and Lambda layers can run "
        "arbitrary code when the file is loaded. If you trust the file's source, load it with "
        "allow_unsafe=True (command line: --allow-unsafe); better, replace each Lambda layer "
        "with a layer class registered with keras.saving.register_keras_serializable.",
        path=path, layers=layers)


def _read_config(path):
    """The model configuration inside a ``.keras`` archive; ValueError if there is none."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if _CONFIG not in names:
                raise _corrupt_error(path, KeyError(f"no {_CONFIG} in the archive "
                                                    f"(members: {names[:5]})"))
            if not any(n.startswith(_WEIGHTS_PREFIX) for n in names):
                raise _corrupt_error(path, KeyError("no model.weights file in the archive"))
            raw = archive.read(_CONFIG)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise _corrupt_error(path, exc) from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR):
            raise
        raise _corrupt_error(path, exc) from None
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _corrupt_error(path, exc) from None
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise _corrupt_error(path, ValueError(f"{_CONFIG} does not describe a Keras model"))
    return config


def _unsafe_layers(config):
    """Names of the layers (at any depth) whose deserialization runs stored code."""
    found = []
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in _UNSAFE_CLASSES:
                cfg = node.get("config")
                name = cfg.get("name") if isinstance(cfg, dict) else None
                found.append(name or node.get("class_name"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    # A Lambda's own function entry ("__lambda__") is part of the same layer: report layers.
    layers = [n for n in found if n != "__lambda__"]
    return sorted(set(layers)) or sorted(set(found))


def _unknown_classes(config, custom_objects=None):
    """``[(class name, module)]`` of the objects in a model config that Keras cannot find:
    neither registered, nor given in ``custom_objects``, nor importable from their module."""
    import keras

    known = set(custom_objects or {})
    found, stack = [], [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name, module = node.get("class_name"), node.get("module")
            if isinstance(name, str) and "config" in node and "registered_name" in node and \
                    name not in known:
                registered = node.get("registered_name") or name
                if keras.saving.get_registered_object(registered) is None and \
                        not _importable(module, name):
                    found.append((name, module or "not recorded"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(set(found))


def _importable(module, name):
    import importlib

    if not module:
        return False
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return True


# ------------------------------------------------------------------------------------------
# Atomic writes
# ------------------------------------------------------------------------------------------


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically: all of it, or nothing.

    The bytes go to a temporary file in the same folder (``.<name>.<random>.tmp``), which is
    flushed, fsynced, given mode ``0o644`` and renamed over ``path`` with ``os.replace``. On any
    exception, ``KeyboardInterrupt`` included, the temporary file is removed and the previous
    ``path``, if any, is left untouched. Same semantics as ``keras_distill.export``'s writer.

    Args:
        path: destination file; its folder must exist.
        data: ``bytes`` (or ``bytearray`` / ``memoryview``), or an iterable of ``bytes`` chunks.

    Returns:
        The absolute path written.

    Raises:
        TypeError: ``data`` is a ``str`` (use :func:`atomic_write_text`) or holds non-bytes.
        OSError: the folder is missing or not writable, or the disk is full; the message names
            ``path`` and says what to do, and ``errno`` is the original one.

    Example:
        >>> from keras_distill.io import atomic_write_bytes
        >>> atomic_write_bytes("model.tflite", model_bytes)  # doctest: +SKIP
    """
    if isinstance(data, str):
        raise TypeError("atomic_write_bytes needs bytes; for text use atomic_write_text.")
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _write_error(exc, path, folder) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
            for chunk in chunks:
                if isinstance(chunk, str):
                    raise TypeError("atomic_write_bytes: data yielded a str chunk; encode it.")
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_quietly(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise _write_error(exc, path, folder) from exc
        raise
    _fsync_folder(folder)
    return path


def atomic_write_text(path, text, *, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Args:
        path: destination file; its folder must exist.
        text: a ``str``, written as is (no newline translation).
        encoding: text encoding, default UTF-8.

    Returns:
        The absolute path written.

    Raises:
        TypeError: ``text`` is not a ``str``.
        OSError: as :func:`atomic_write_bytes`.

    Example:
        >>> from keras_distill.io import atomic_write_text
        >>> atomic_write_text("report.md", "# Export report\\n")  # doctest: +SKIP
    """
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text needs a str; got {type(text).__name__} (use "
                        "atomic_write_bytes for bytes).")
    return atomic_write_bytes(path, text.encode(encoding))


def _write_error(exc, path, folder):
    """An OSError (of the same errno, hence the same subclass) that names the file and the fix."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some disk space (or quota), or write to another folder"
    elif exc.errno == errno.ENOENT:
        fix = f"create the folder {folder} first"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a folder you can write to"
    elif exc.errno == errno.ENOTDIR:
        fix = f"{folder} is not a folder (part of it is a file): choose another path"
    else:
        fix = "check the folder and try again"
    return OSError(exc.errno, f"cannot write {path}: {reason}. Nothing was written and any "
                              f"previous file is unchanged; {fix}.")


def _fsync_folder(folder):
    """Make the rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_quietly(path):
    """Remove a file if it is there (no error when it is not, or cannot be removed)."""
    try:
        os.remove(path)
    except OSError:
        pass


def write_files(folder, files):
    """Write ``{file name: bytes}`` into ``folder`` atomically, all or none: each file through
    :func:`atomic_write_bytes`; on a failure the ones already written are removed again.

    Returns:
        The names written.

    Example:
        >>> import tempfile
        >>> write_files(tempfile.mkdtemp(), {"m_model_data.h": b"...", "m_model_data.cc": b"..."})
        ['m_model_data.h', 'm_model_data.cc']
    """
    written = []
    try:
        for name, data in files.items():
            atomic_write_bytes(os.path.join(folder, name), data)
            written.append(name)
    except BaseException:
        for name in written:
            remove_quietly(os.path.join(folder, name))
        raise
    return written


def output_folder(path, *, arg="out_dir"):
    """Create ``path`` if needed and check that files can be written in it.

    Returns:
        The absolute path.

    Raises:
        OSError: naming the folder, the reason and the fix (``arg`` is the argument or
            configuration key that set it; ``--out-dir`` on the command line).

    Example:
        >>> import tempfile
        >>> output_folder(tempfile.mkdtemp()).startswith("/")
        True
    """
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        message = (f"cannot write to {arg}={path!r} ({exc.strerror or exc}); pass a writable "
                   f"folder as {arg} (--{arg.replace('_', '-')} on the command line).")
        raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc
    return path


def save_model(model, path):
    """Save a Keras model to ``path`` (``.keras``) atomically, without its optimizer state.

    The model is rebuilt from its config with the same weights (an uncompiled copy), so the
    file holds no optimizer; models that do not rebuild are saved as they are. The file is
    written under a temporary name in the same folder and renamed into place.

    Returns:
        The absolute path.

    Example:
        >>> save_model(distiller.student, "exported/student.keras")  # doctest: +SKIP
        '/.../exported/student.keras'
    """
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    tmp = os.path.join(folder, f".{base[:-len(KERAS_SUFFIX)]}.{os.getpid()}.tmp{KERAS_SUFFIX}")
    try:
        try:  # an uncompiled copy (clone_model would copy the optimizer too)
            clean = model.__class__.from_config(model.get_config())
            clean.set_weights(model.get_weights())
        except Exception:  # noqa: BLE001  (models that do not rebuild: saved as they are)
            clean = model
        clean.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    return path
