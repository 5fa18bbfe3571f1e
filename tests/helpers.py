"""Shared, importable test helpers (``from helpers import ...`` in any test file).

Tiny models, NumPy references, a serialization round trip, "artifact agrees with Keras" with a
tolerance per quantization mode, failing writers and file corruption. Fixtures live in
``conftest.py``; plain functions live here so that test files import them by name.
"""

from __future__ import annotations

import errno
import os
import zipfile

import numpy as np

#: Every TFLite quantization mode (the default leaves out int16x8).
ALL_MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
#: Max abs error an artifact may show against Keras, per quantization mode (float modes), and
#: the top-1 agreement it must reach (every mode; int8 is judged statistically).
ARTIFACT_TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "dynamic": 0.5}
ARTIFACT_MIN_AGREEMENT = {"float32": 1.0, "float16": 0.99, "dynamic": 0.97, "int8": 0.9,
                          "int16x8": 0.97}


# --- NumPy references -----------------------------------------------------------------------

def np_log_softmax(z):
    """log_softmax over the last axis, in the input's precision."""
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(t, s, temp):
    """Per-row KL(softmax(t/T) || softmax(s/T)) · T²."""
    lt, ls = np_log_softmax(t / temp), np_log_softmax(s / temp)
    return (np.exp(lt) * (lt - ls)).sum(-1) * temp**2


def agreement(a, b):
    """Fraction of rows whose argmax agrees."""
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


# --- tiny models ----------------------------------------------------------------------------

def dense_model(units, seed, name, inputs=6, softmax=False):
    """A deterministic one-layer model (no dropout, no BN: training mode changes nothing)."""
    import keras

    return keras.Sequential([
        keras.Input((inputs,)),
        keras.layers.Dense(units, activation="softmax" if softmax else None, name="out",
                           kernel_initializer=keras.initializers.RandomNormal(seed=seed),
                           bias_initializer=keras.initializers.RandomNormal(seed=seed + 1)),
    ], name=name)


def hidden_softmax():
    """A layer computing softmax that model inspection cannot see (not a ``Softmax`` layer or
    a softmax activation): a teacher ending in it outputs probabilities only at run time."""
    import keras

    class HiddenSoftmax(keras.layers.Layer):
        def call(self, x):
            return keras.ops.softmax(x)

    return HiddenSoftmax()


def randomize_bn(model, seed=0):
    """Give every BatchNormalization distinct, non-trivial parameters and statistics."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.normal(1, 0.3, w.shape).astype("float32") if i != 3 else
                               rng.uniform(0.5, 2, w.shape).astype("float32")
                               for i, w in enumerate(layer.get_weights())])


def same_weights(a, b):
    """Two weight lists (or models) hold bit-identical arrays."""
    a = a.get_weights() if hasattr(a, "get_weights") else a
    b = b.get_weights() if hasattr(b, "get_weights") else b
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def round_trip(obj, tmp_path, name="model.keras"):
    """Save a Keras model (or layer-holding model) as ``.keras`` and load it back, without
    custom_objects: what a user's second notebook does."""
    import keras

    path = os.path.join(os.fspath(tmp_path), name)
    obj.save(path)
    return keras.saving.load_model(path)


# --- artifacts ------------------------------------------------------------------------------

def assert_artifact_matches_keras(outputs, keras_outputs, quantization):
    """An artifact's outputs agree with Keras: max abs error within the mode's tolerance
    (float modes) and top-1 agreement at least the mode's minimum (every mode)."""
    outputs = np.asarray(outputs, np.float64)
    keras_outputs = np.asarray(keras_outputs, np.float64).reshape(outputs.shape)
    tol = ARTIFACT_TOLERANCE.get(quantization)
    if tol is not None:
        err = float(np.abs(outputs - keras_outputs).max())
        assert err <= tol, f"{quantization}: max abs error {err:.3g} > {tol:g}"
    agree = agreement(outputs, keras_outputs)
    assert agree >= ARTIFACT_MIN_AGREEMENT[quantization], \
        f"{quantization}: agreement {agree:.4f} < {ARTIFACT_MIN_AGREEMENT[quantization]}"


def listing(folder):
    return sorted(os.listdir(folder))


def no_temporary_files(folder):
    """No temporary file of an atomic writer (hidden, or with ``.tmp`` in its name) is left in
    ``folder``."""
    return not [f for f in os.listdir(folder) if f.startswith(".") or ".tmp" in f]


# --- failing writes -------------------------------------------------------------------------

class _FailingFile:
    """A file object that takes ``limit`` bytes, then raises ``exc`` (as a disk would)."""

    def __init__(self, real, limit, exc):
        self.real, self.limit, self.exc, self.written = real, limit, exc, 0

    def write(self, data):
        room = self.limit - self.written
        if len(data) > room:
            self.real.write(bytes(data[:room]))
            self.real.flush()  # the partial data is on disk when the failure happens
            self.written = self.limit
            raise self.exc
        self.written += len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()
        return False


def failing_writes(monkeypatch, folder, exc, *, limit=64, only=""):
    """Writes through ``os.fdopen`` (both atomic writers use it) to files in ``folder`` whose
    name contains ``only`` fail with ``exc`` after ``limit`` bytes. Returns the list of the
    (temporary) files that were hit."""
    real_fdopen = os.fdopen
    folder = os.path.realpath(folder)
    hit = []

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return f
        if "w" in mode and os.path.dirname(target) == folder and only in \
                os.path.basename(target):
            hit.append(target)
            return _FailingFile(f, limit, exc)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)
    return hit


def enospc():
    """The error a full disk gives."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --- files --------------------------------------------------------------------------------

def snapshot(folder):
    """{relative path: bytes} of every file under ``folder`` (folders as ``path/``)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder) + "/"] = None
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


#: Ways to break a ``.keras`` file (:func:`corrupt_keras_file`).
KERAS_FILE_CORRUPTIONS = ("truncated", "empty", "text", "not a model", "zip without model",
                          "bad config json", "config not a model", "no weights",
                          "bit flip in weights")


def _flip_weights_byte(src, dst):
    """A copy of ``src`` with one byte in the middle of its weights file flipped."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        info = archive.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    dst.write_bytes(bytes(data))


def corrupt_keras_file(kind, good, path):
    """Write at ``path`` a broken version of the ``.keras`` file ``good``: ``kind`` is one of
    ``KERAS_FILE_CORRUPTIONS``."""
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("text", "not a model"):
        path.write_text("this is not a model\n")
    elif kind == "zip without model":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    elif kind == "bad config json":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{not json")
            archive.writestr("model.weights.h5", b"")
    elif kind == "config not a model":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "[1, 2, 3]")
            archive.writestr("model.weights.h5", b"")
    elif kind == "no weights":
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", src.read("config.json"))
            archive.writestr("metadata.json", src.read("metadata.json"))
    elif kind == "bit flip in weights":
        _flip_weights_byte(good, path)


def segfault_on_int8(saved_model_dir, quantization="float32", **kwargs):
    """``tflite.convert`` that crashes its process natively (SIGSEGV) for ``int8``: a stand-in
    for the calibrator's real segfaults, pointed to by ``export.steps.CONVERT`` in a test."""
    if quantization == "int8":
        import ctypes

        ctypes.string_at(0)  # reads address 0: a segmentation fault
    from keras_distill.export import tflite

    return tflite.convert(saved_model_dir, quantization, **kwargs)


def raise_unsupported():
    """Raises an error with attributes in the worker process (isolation's round trip)."""
    from keras_distill.verify.litert import UnsupportedOpError

    raise UnsupportedOpError("Op SIN in layer 'wave' cannot be quantized", op="SIN",
                             layer="wave", mode="int8")
