"""Arrays read on demand: inputs that stay on disk (or in their stored dtype) until a batch
needs them.

A :class:`LazyArray` looks like a NumPy array where the stages use one: ``len(x)``,
``x.shape``, ``x.dtype``, ``x[start:stop]``, ``x[indices]`` and ``x[i]`` give NumPy rows,
read and converted only then. It refuses to become one whole array (``np.asarray(x)``
raises :class:`Materialized`), so that no stage loads a dataset by mistake: they read it in
batches (``keras_distill.data.stream``).

Subclasses say how to read rows (:meth:`LazyArray._read`, given sorted unique indices) and
what identifies their content (:meth:`LazyArray.identity`, hashed by :meth:`fingerprint`
without reading the data). :class:`Subset` is a view of some rows (a split), and
:class:`InMemory` wraps a NumPy array (in its stored dtype, e.g. ``uint8``) with the
conversion a batch gets (``scale``: images as ``float32`` in [0, 1]).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


class Materialized(TypeError):
    """A lazy array was asked to become one NumPy array (``np.asarray``)."""


class LazyArray:
    """Rows read on demand. Subclasses set ``shape`` and ``dtype`` and define ``_read``.

    Attributes:
        shape: ``(N, *sample_shape)``, as the rows come out.
        dtype: the rows' dtype as they come out (``float32`` for inputs).
    """

    shape: tuple
    dtype: np.dtype

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """What the whole array would take in memory as it comes out."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def _read(self, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (sorted, unique, int64) as an array of ``(len(indices),
        *shape[1:])``."""
        raise NotImplementedError

    def identity(self):
        """What identifies the content (JSON-serializable), without reading it: file paths,
        sizes and modification times, the rows taken, the conversion."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hash of :meth:`identity` (for keys of cached teacher outputs)."""
        text = json.dumps([type(self).__name__, self.identity()], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def rows(self, indices) -> np.ndarray:
        """Rows ``indices`` (any order, repeats allowed) as a NumPy array."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        n = len(self)
        if len(indices) and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        indices = np.where(indices < 0, indices + n, indices)
        unique, inverse = np.unique(indices, return_inverse=True)
        out = np.asarray(self._read(unique))
        return out if len(unique) == len(indices) and (unique == indices).all() \
            else out[inverse]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.rows(np.arange(len(self))[key])
        if isinstance(key, (int, np.integer)):
            return self.rows([key])[0]
        if isinstance(key, tuple):
            raise TypeError("a lazy array takes rows only: x[start:stop], x[indices] or x[i]")
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self.rows(key)

    def __array__(self, dtype=None, copy=None):
        raise Materialized(
            f"{type(self).__name__} of shape {self.shape} is read on demand: read rows "
            f"(x[start:stop], x[indices]) or batches (keras_distill.data.stream.dataset; "
            f"predictions: keras_distill.data.stream.predict(model, x)), not the whole array "
            f"({self.nbytes / 2**30:.2f} GiB). Distiller.fit and evaluate take it as it is.")

    def __iter__(self):
        raise Materialized(f"iterate a {type(self).__name__} in batches "
                           "(keras_distill.data.stream.batches), not row by row")

    def __repr__(self):
        return f"{type(self).__name__}(shape={self.shape}, dtype={np.dtype(self.dtype)})"


class Subset(LazyArray):
    """Rows ``indices`` of ``base`` (a split of a lazy array, or of a NumPy one).

    Example:
        >>> s = Subset(InMemory(np.arange(10, dtype="uint8").reshape(5, 2)), [4, 0])
        >>> s.shape, s[:].tolist()
        ((2, 2), [[8.0, 9.0], [0.0, 1.0]])
    """

    def __init__(self, base, indices):
        self.base = base
        self.indices = np.asarray(indices, np.int64).reshape(-1)
        self.shape = (len(self.indices), *base.shape[1:])
        self.dtype = base.dtype

    def _read(self, indices):
        # the base's rows in order (a memory map reads fastest so), then in this view's order
        wanted = self.indices[indices]
        if np.all(wanted[1:] >= wanted[:-1]):
            return _rows_of(self.base, wanted)
        order = np.argsort(wanted, kind="stable")
        unsort = np.empty_like(order)
        unsort[order] = np.arange(len(order))
        return _rows_of(self.base, wanted[order])[unsort]

    def identity(self):
        base = self.base.identity() if isinstance(self.base, LazyArray) else \
            _array_digest(self.base)
        return {"base": base, "rows": hashlib.sha256(self.indices.tobytes()).hexdigest()}


class InMemory(LazyArray):
    """A NumPy array kept in its stored dtype; rows come out as ``dtype``, times ``scale``,
    with a channel axis added to ``(N, H, W)`` images when ``channel_axis``.

    Example:
        >>> a = InMemory(np.full((3, 2, 2), 255, "uint8"), scale=1 / 255, channel_axis=True)
        >>> a.shape, a.dtype, float(a[0].max())
        ((3, 2, 2, 1), dtype('float32'), 1.0)
    """

    def __init__(self, array, *, scale=None, channel_axis=False, dtype="float32"):
        self.array = array
        self.scale = scale
        self.channel_axis = bool(channel_axis)
        self.dtype = np.dtype(dtype)
        self.shape = (*array.shape, 1) if channel_axis else tuple(array.shape)

    def _read(self, indices):
        out = _rows_of(self.array, indices).astype(self.dtype)
        if self.scale is not None:
            out *= self.dtype.type(self.scale)
        return out[..., None] if self.channel_axis else out

    def identity(self):
        base = self.array.identity() if isinstance(self.array, LazyArray) else \
            _array_digest(self.array)
        return {"base": base, "scale": self.scale, "channel_axis": self.channel_axis,
                "dtype": str(self.dtype)}


def _rows_of(base, indices):
    """Rows ``indices`` (in that order) of a lazy or NumPy (memory-mapped) array; consecutive
    indices are read as one slice."""
    if isinstance(base, LazyArray):
        return base.rows(indices)
    if len(indices) and np.all(np.diff(indices) == 1):  # consecutive: one read
        return np.asarray(base[int(indices[0]):int(indices[-1]) + 1])
    return np.asarray(base[indices])


def _array_digest(a):
    """What identifies a NumPy array: a memory map by its file, an array by a hash of it."""
    filename = getattr(a, "filename", None)
    if filename is not None:
        import os

        st = os.stat(filename)
        return {"file": os.path.abspath(filename), "size": st.st_size,
                "mtime_ns": st.st_mtime_ns, "offset": int(getattr(a, "offset", 0)),
                "shape": list(a.shape), "dtype": str(a.dtype)}
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(str((a.shape, a.dtype)).encode())
    h.update(memoryview(a).cast("B"))
    return {"sha256": h.hexdigest()}


def is_lazy(x) -> bool:
    """Whether ``x`` is read on demand (a :class:`LazyArray`)."""
    return isinstance(x, LazyArray)
