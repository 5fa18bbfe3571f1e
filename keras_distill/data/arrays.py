"""Arrays too large to load: folders of ``.npy`` files, memory-mapped, and large ``.npz`` files,
converted once to such a folder.

A data folder holds ``x_train.npy`` and ``y_train.npy`` and optionally ``x_val.npy`` /
``y_val.npy``, ``x_test.npy`` / ``y_test.npy``, ``class_names.npy`` and ``task.npy`` (the
members of a ``.npz`` data file, as ``.npy`` files). The inputs stay on disk (``np.load(...,
mmap_mode="r")``) and are converted a batch at a time, as ``load_npz`` converts them
(:class:`~keras_distill.data.lazy.InMemory`); the labels are read into memory.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np

from keras_distill.data.errors import DataError

#: ``.npz`` files whose ``x`` arrays take this many bytes or more (uncompressed) are converted
#: to a folder of ``.npy`` files and memory-mapped rather than loaded (``load_npz``).
STREAM_BYTES = 256 * 2**20

_MEMBERS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "class_names", "task")
_STAMP = "converted-from.json"


def is_npy_folder(path) -> bool:
    """Whether ``path`` is a folder of ``.npy`` data files (it has ``x_train.npy``)."""
    return os.path.isfile(os.path.join(os.fspath(path), "x_train.npy"))


def npz_input_bytes(path) -> int:
    """The uncompressed size of the ``x_*`` arrays of a ``.npz`` file (0 when it cannot be read
    as one: loading it then says why)."""
    import zipfile

    try:
        with zipfile.ZipFile(os.fspath(path)) as z:
            return sum(i.file_size for i in z.infolist()
                       if i.filename.startswith("x_") and i.filename.endswith(".npy"))
    except (OSError, zipfile.BadZipFile):
        return 0


def npz_to_npy_folder(path) -> str:
    """The folder of ``.npy`` files (``<path>.npy/``) holding the arrays of the ``.npz`` file
    ``path``, converted now or reused from an earlier conversion of the same file (same size
    and modification time).

    Each member is copied from the zip stream (decompressed a block at a time, so memory stays
    small) into a ``.partial`` folder that is renamed when complete: an interrupted conversion
    is never used. A conversion prints one line to stderr.

    Raises:
        DataError: the folder beside the file cannot be written (naming it and what to do).

    Example:
        >>> import contextlib, io, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(path, x_train=np.zeros((4, 2)), y_train=np.arange(4))
        >>> with contextlib.redirect_stderr(io.StringIO()) as note:
        ...     folder = npz_to_npy_folder(path)
        >>> note.getvalue().startswith(f"keras_distill: converted {path} to .npy files in")
        True
        >>> sorted(os.listdir(folder)), npz_to_npy_folder(path) == folder
        (['converted-from.json', 'x_train.npy', 'y_train.npy'], True)
    """
    import zipfile

    path = os.fspath(path)
    target = path + ".npy"
    st = os.stat(path)
    stamp = {"file": os.path.basename(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if _stamp_of(target) == stamp:
        return target
    partial = f"{target}.partial-{os.getpid()}"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        total = 0
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename
                if not name.endswith(".npy") or name[:-4] not in _MEMBERS:
                    continue
                with z.open(info) as src, open(os.path.join(partial, name), "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
                total += info.file_size
        with open(os.path.join(partial, _STAMP), "w") as f:
            json.dump(stamp, f)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(
            f"{path} is large ({st.st_size / 2**20:.0f} MiB) and is converted to .npy files "
            f"beside it to be memory-mapped, but {target!r} cannot be written "
            f"({exc.strerror or exc}). Make its folder writable, or unpack the .npz into a "
            "folder of .npy files yourself (x_train.npy, y_train.npy, ...) and give that "
            "folder as the data.") from None
    except zipfile.BadZipFile as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"cannot read {path} as a .npz file: {exc}") from None
    print(f"keras_distill: converted {path} to .npy files in {target} "
          f"({total / 2**20:.1f} MiB) to memory-map them", file=sys.stderr)
    return target


def _stamp_of(folder):
    """The stamp of a finished conversion in ``folder``, or None."""
    try:
        with open(os.path.join(folder, _STAMP)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_npy_folder(path, *, validation_fraction=0.15, test_fraction=0.2, seed=0, name=None,
                    what=None):
    """A dataset from a folder of ``.npy`` files (``x_train.npy``, ``y_train.npy``, optional
    ``x_val``/``y_val``, ``x_test``/``y_test``, ``class_names``, ``task``), with the rules of
    ``load_npz``. The inputs are memory-mapped and come out as ``float32`` a batch at a time
    (:class:`~keras_distill.data.lazy.InMemory`); missing validation or test splits are
    :class:`~keras_distill.data.lazy.Subset` views, split by the labels.

    Args:
        name: the dataset's name (default the folder's name).
        what: the source named in messages (default the folder).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> np.save(os.path.join(folder, "x_train.npy"), np.full((40, 4, 4), 255, "uint8"))
        >>> np.save(os.path.join(folder, "y_train.npy"), np.arange(40) % 2)
        >>> data = load_npy_folder(folder)
        >>> data.summary().split(": ")[1], float(data.x_train[0].max())
        ('26 train / 6 validation / 8 test samples of shape (4, 4, 1), 2 classes', 1.0)
    """
    from keras_distill.data.files import _lazy_inputs, _splits_of

    path = os.fspath(path)
    what = what or path
    if not is_npy_folder(path):
        raise DataError(f"{path!r} has no x_train.npy; a folder of .npy data files holds "
                        "x_train.npy and y_train.npy (optionally x_val, y_val, x_test, y_test, "
                        "class_names, task).")
    arrays = {}
    for member in _MEMBERS:
        file = os.path.join(path, f"{member}.npy")
        if os.path.isfile(file):
            arrays[member] = _open(file, mmap=member.startswith("x_"))
    if "y_train" not in arrays:
        raise DataError(f"{path!r} has x_train.npy but no y_train.npy; give the labels too.")
    for part in ("val", "test"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise DataError(f"{path!r} has only one of x_{part}.npy and y_{part}.npy; give both "
                            "or neither.")
    name = name or os.path.basename(os.path.normpath(path))
    return _splits_of(arrays, what, name, _lazy_inputs, validation_fraction=validation_fraction,
                      test_fraction=test_fraction, seed=seed)


def _open(file, *, mmap):
    """A ``.npy`` file: memory-mapped (inputs) or read (labels, names)."""
    try:
        if mmap:
            return np.load(file, mmap_mode="r", allow_pickle=False)
        return np.asarray(np.load(file, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {file!r} as a .npy array: {exc}") from None
