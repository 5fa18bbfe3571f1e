"""keras_distill.io: loading .keras files with clear errors, and atomic writes."""

import errno
import os

import numpy as np
import pytest
from helpers import corrupt_keras_file, enospc, failing_writes, snapshot

from keras_distill import io as kio


def _dense_model(lam=False, nested_lam=False):
    import keras

    inputs = keras.Input((4,), name="x")
    x = inputs
    if lam:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    if nested_lam:
        inner_in = keras.Input((4,))
        inner = keras.Model(inner_in, keras.layers.Lambda(lambda t: t + 1.0, name="plus_one")(
            inner_in), name="inner")
        x = inner(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x), name="dense")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A plain model, a Lambda model and a nested-Lambda model saved as .keras files."""
    folder = tmp_path_factory.mktemp("models")
    files = {}
    for key, kwargs in {"plain": {}, "lambda": {"lam": True},
                        "nested": {"nested_lam": True}}.items():
        model = _dense_model(**kwargs)
        path = folder / f"{key}.keras"
        model.save(path)
        files[key] = (path, model)
    return files


# --- load_model ------------------------------------------------------------------------------


def test_load_model_round_trip(model_files):
    path, model = model_files["plain"]
    loaded = kio.load_model(path)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert kio.load_model(str(path), compile=False).name == "dense"  # kwargs are forwarded


@pytest.mark.parametrize("key, layers", [("lambda", ["double"]), ("nested", ["plus_one"])])
def test_lambda_refused_by_default_and_loaded_when_allowed(model_files, key, layers):
    path, model = model_files[key]
    before = path.read_bytes()
    with pytest.raises(kio.UnsafeModelError) as info:
        kio.load_model(path)
    message = str(info.value)
    assert str(path) in message and "safe mode" in message and "Lambda" in message
    assert "arbitrary code" in message
    assert "allow_unsafe=True" in message and "--allow-unsafe" in message
    assert info.value.layers == layers and isinstance(info.value, ValueError)
    assert path.read_bytes() == before

    loaded = kio.load_model(path, allow_unsafe=True)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_lambda_check_does_not_depend_on_keras(model_files, monkeypatch):
    """The file is refused before Keras reads it: Keras' own safe mode is a second line."""
    import keras

    def fail(*args, **kwargs):
        raise AssertionError("keras.saving.load_model must not be reached")

    monkeypatch.setattr(keras.saving, "load_model", fail)
    with pytest.raises(kio.UnsafeModelError):
        kio.load_model(model_files["lambda"][0])


def test_safe_mode_keyword_is_refused(model_files):
    with pytest.raises(TypeError, match="allow_unsafe"):
        kio.load_model(model_files["plain"][0], safe_mode=False)
    with pytest.raises(TypeError, match="allow_unsafe"):
        kio.load_model(model_files["plain"][0], allow_unsafe="yes")


@pytest.mark.parametrize("name, hint", [
    ("model.h5", "re-save"), ("model.tflite", "FileTeacher"), ("model.onnx", "FileTeacher"),
    ("model", None), ("weights.npz", None)])
def test_other_formats_name_the_accepted_one(tmp_path, name, hint):
    path = tmp_path / name
    path.write_bytes(b"whatever")
    with pytest.raises(ValueError) as info:
        kio.load_model(path)
    message = str(info.value)
    assert str(path) in message and "'.keras'" in message and "model.save" in message
    if hint:
        assert hint in message


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found") as info:
        kio.load_model(tmp_path / "nope.keras")
    assert str(tmp_path / "nope.keras") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_folder_named_keras(tmp_path):
    (tmp_path / "m.keras").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        kio.load_model(tmp_path / "m.keras")


CORRUPTIONS = ["truncated", "empty", "text", "zip without model", "bad config json",
               "config not a model", "no weights", "bit flip in weights"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_files_say_so_and_name_the_fix(model_files, tmp_path, kind):
    path = tmp_path / "bad.keras"
    corrupt_keras_file(kind, model_files["plain"][0], path)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as info:
        kio.load_model(path)
    message = str(info.value)
    assert not isinstance(info.value, kio.UnsafeModelError)
    assert str(path) in message
    assert "not a valid .keras file (truncated or corrupt?)" in message
    assert "model.save(path)" in message
    assert snapshot(tmp_path) == before  # nothing written or changed


# --- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_bytes_and_text(tmp_path):
    path = tmp_path / "a.bin"
    assert kio.atomic_write_bytes(path, b"\x00\x01") == str(path)
    assert path.read_bytes() == b"\x00\x01"
    kio.atomic_write_bytes(path, iter([b"ab", bytearray(b"cd"), memoryview(b"ef")]))
    assert path.read_bytes() == b"abcdef"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    kio.atomic_write_text(tmp_path / "t.txt", "héllo\r\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\r\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "t.txt"]


def test_atomic_write_rejects_wrong_types_before_writing(tmp_path):
    with pytest.raises(TypeError, match="atomic_write_text"):
        kio.atomic_write_bytes(tmp_path / "x", "text")
    with pytest.raises(TypeError, match="atomic_write_bytes"):
        kio.atomic_write_text(tmp_path / "x", b"bytes")
    with pytest.raises(TypeError, match="encode"):
        kio.atomic_write_bytes(tmp_path / "x", [b"ok", "not bytes"])
    assert list(tmp_path.iterdir()) == []


def _failing_chunks(exc, first=b"partial data " * 100):
    yield first
    raise exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("boom"),
                                 OSError(errno.EIO, "I/O error")],
                         ids=["KeyboardInterrupt", "RuntimeError", "EIO"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_interrupted_write_leaves_nothing_and_keeps_the_original(tmp_path, exc, existing):
    path = tmp_path / "model.tflite"
    if existing:
        path.write_bytes(b"original")
    before = snapshot(tmp_path)
    with pytest.raises(type(exc)):
        kio.atomic_write_bytes(path, _failing_chunks(exc))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_full_disk_gives_a_clear_error_and_no_partial_file(tmp_path, monkeypatch, existing):
    path = tmp_path / "model.tflite"
    if existing:
        path.write_bytes(b"original")
    before = snapshot(tmp_path)
    seen = failing_writes(monkeypatch, tmp_path, enospc(), limit=100)
    with pytest.raises(OSError) as info:
        kio.atomic_write_bytes(path, b"x" * 1000)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert str(path) in message and "No space left" in message and "free some disk space" in \
        message
    assert len(seen) == 1 and os.path.basename(seen[0]).startswith(".model.tflite.")
    assert snapshot(tmp_path) == before  # the 100 bytes written to the temporary file are gone


def test_unwritable_destinations_name_the_path_and_the_fix(tmp_path):
    (tmp_path / "file").write_text("a regular file")
    before = snapshot(tmp_path)
    with pytest.raises(NotADirectoryError) as info:
        kio.atomic_write_text(tmp_path / "file" / "out.txt", "x")
    assert str(tmp_path / "file" / "out.txt") in str(info.value)
    assert "not a folder" in str(info.value)
    with pytest.raises(FileNotFoundError, match="create the folder"):
        kio.atomic_write_text(tmp_path / "missing" / "out.txt", "x")
    assert snapshot(tmp_path) == before


def test_write_files_writes_all_or_none(tmp_path, monkeypatch):
    """The export's writer of an artifact's files (a micro .h and .cc): a failure on the second
    file removes the first, and leaves the earlier version of each untouched."""
    (tmp_path / "m_model_data.cc").write_bytes(b"old cc")
    before = snapshot(tmp_path)
    failing_writes(monkeypatch, tmp_path, enospc(), limit=10, only="model_data.cc")
    with pytest.raises(OSError, match="No space left"):
        kio.write_files(tmp_path, {"m_model_data.h": b"new header", "m_model_data.cc": b"x" * 99})
    assert snapshot(tmp_path) == before
    assert (tmp_path / "m_model_data.cc").read_bytes() == b"old cc"
    monkeypatch.undo()
    assert kio.write_files(tmp_path, {"a.bin": b"1", "b.bin": b"2"}) == ["a.bin", "b.bin"]
    assert (tmp_path / "b.bin").read_bytes() == b"2"


def test_output_folder_is_created_or_names_the_fix(tmp_path):
    assert kio.output_folder(tmp_path / "new" / "out") == str(tmp_path / "new" / "out")
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(OSError, match=r"cannot write to out_dir=.*pass a writable folder as "
                                      r"out_dir \(--out-dir on the command line\)"):
        kio.output_folder(tmp_path / "file" / "out")
