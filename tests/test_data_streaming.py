"""Data at scale: every source streams. Image folders, TFRecord files, memory-mapped .npy
folders, large .npz files and keras.datasets give inputs read on demand, with the values the
in-memory loads gave, splits that stay put as data grows, and memory far under the data's."""

import io
import os

import numpy as np
import pytest

from keras_distill import data
from keras_distill.data import DataError, Materialized, arrays, lazy, stream
from keras_distill.data.images import ImageFiles
from keras_distill.data.records import RecordImages


def _image(rng, height, width, channels=3):
    """A smooth random image (compresses like a photo, unlike noise)."""
    small = rng.integers(0, 256, (4, 4, channels), dtype=np.uint8)
    return np.asarray(
        np.kron(small, np.ones((height // 4 + 1, width // 4 + 1, 1), np.uint8))[:height, :width]
        ^ rng.integers(0, 8, (height, width, channels), dtype=np.uint8))


def _write_folder(root, counts, rng, size=(12, 10), start=0):
    """``root/<class>/<i>.png`` images; their pixels by relative path."""
    from PIL import Image

    pixels = {}
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + count):
            a = _image(rng, *size)
            Image.fromarray(a).save(root / name / f"{i}.png")
            pixels[f"{name}/{i}.png"] = a
    return pixels


def _keras_decode(root, **kwargs):
    """What the in-memory load read: keras.utils.image_dataset_from_directory / 255, by path."""
    import keras

    ds = keras.utils.image_dataset_from_directory(root, shuffle=False, batch_size=64,
                                                  verbose=False, **kwargs)
    x = np.concatenate([b.numpy() for b, _ in ds]) / 255.0
    return {os.path.relpath(p, root).replace(os.sep, "/"): row for p, row in
            zip(ds.file_paths, x)}


def _rel(root, paths):
    return [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]


# --- image folders --------------------------------------------------------------------------


def test_image_folder_values_equal_the_in_memory_decode(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    _write_folder(tmp_path, {"cat": 14, "dog": 14}, rng)
    # other formats and modes, decoded as tf.io.decode_image does
    Image.fromarray(_image(rng, 12, 10)).save(tmp_path / "cat" / "j.jpg", quality=80)
    Image.fromarray(_image(rng, 12, 10)[..., 0]).convert("L").save(tmp_path / "dog" / "g.png")
    Image.fromarray(_image(rng, 12, 10, 4), "RGBA").save(tmp_path / "dog" / "a.png")
    Image.fromarray(_image(rng, 20, 7)).save(tmp_path / "dog" / "other-size.png")
    for kwargs, atol in [({}, 1e-5), ({"image_size": (12, 10)}, 1e-5),
                         ({"image_size": (7, 15)}, 1e-4),
                         ({"image_size": (9, 9), "color_mode": "grayscale"}, 1e-4)]:
        keras_rows = _keras_decode(tmp_path, **{"image_size": (12, 10), **kwargs})
        s = data.load_image_folder(tmp_path, **kwargs)
        for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
            assert isinstance(x, ImageFiles) and y.dtype == np.int32
            expected = np.stack([keras_rows[k] for k in _rel(tmp_path, x.paths)])
            np.testing.assert_allclose(x[:], expected, rtol=0, atol=atol)
            np.testing.assert_array_equal(y, [k.startswith("dog") for k in _rel(tmp_path,
                                                                                  x.paths)])
        assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 32
    assert s.input_shape == (9, 9, 1) and s.class_names == ["cat", "dog"]


def test_image_folder_splits_by_file_hash_stay_put_when_files_are_added(tmp_path):
    rng = np.random.default_rng(1)
    _write_folder(tmp_path, {"a": 30, "b": 30}, rng, size=(8, 8))

    def split_of(s):
        return {k: part for part, x in (("train", s.x_train), ("val", s.x_val),
                                        ("test", s.x_test)) for k in _rel(tmp_path, x.paths)}

    before = split_of(data.load(str(tmp_path)))
    assert len(before) == 60 and set(before.values()) == {"train", "val", "test"}
    _write_folder(tmp_path, {"a": 40, "b": 40, "c": 20}, rng, size=(8, 8), start=30)
    grown = data.load(str(tmp_path))
    after = split_of(grown)
    assert len(after) == 160 and grown.class_names == ["a", "b", "c"]
    assert {k: after[k] for k in before} == before  # no old file moved
    # a different seed is another split; the same seed the same one
    assert split_of(data.load(str(tmp_path), seed=1)) != after
    assert split_of(data.load(str(tmp_path))) == after


def test_image_folder_splits_are_in_hash_order_with_classes_mixed(tmp_path):
    from keras_distill.data.splits import hash_fractions

    rng = np.random.default_rng(15)
    _write_folder(tmp_path, {"a": 30, "b": 30}, rng, size=(8, 8))

    def order(s):
        return [_rel(tmp_path, x.paths) for x in (s.x_train, s.x_val, s.x_test)]

    for seed in (0, 2):
        s = data.load(str(tmp_path), seed=seed)
        for keys, y in zip(order(s), (s.y_train, s.y_val, s.y_test)):
            assert (np.diff(hash_fractions(keys, seed)) > 0).all()  # not by path
            np.testing.assert_array_equal(y, [k.startswith("b/") for k in keys])
        assert set(s.y_train[:8].tolist()) == {0, 1}  # the first rows are not one class
        again = data.load(str(tmp_path), seed=seed)
        assert order(again) == order(s)  # deterministic
        assert again.x_train.fingerprint() == s.x_train.fingerprint()
    before = order(data.load(str(tmp_path)))
    _write_folder(tmp_path, {"a": 10, "c": 10}, rng, size=(8, 8), start=30)
    for old, new in zip(before, order(data.load(str(tmp_path)))):
        assert [k for k in new if k in old] == old  # added files slot in between


def test_hash_split_fractions_and_non_empty_splits():
    codes = data.hash_split([f"img/{i}.png" for i in range(20000)], validation_fraction=0.1,
                            test_fraction=0.25)
    np.testing.assert_allclose(np.bincount(codes) / 20000, [0.65, 0.1, 0.25], atol=0.01)
    with pytest.warns(UserWarning, match="split empty; moved"):
        few = data.hash_split(["a", "b", "c"], validation_fraction=0.05, test_fraction=0.05)
    assert sorted(few.tolist()) == [0, 1, 2]


def test_image_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no .bmp/.gif/.jpeg/.jpg/.png images"):
        data.load(str(tmp_path))
    _write_folder(tmp_path, {"one": 2}, np.random.default_rng(0))
    with pytest.raises(DataError, match="has 2 image"):
        data.load(str(tmp_path))
    with pytest.raises(DataError, match="color_mode must be one of"):
        data.load_image_folder(tmp_path, color_mode="cmyk")
    x = ImageFiles([tmp_path / "one" / "0.png", tmp_path / "missing.png"], (12, 10))
    with pytest.raises(DataError, match="missing.png.*moved or deleted"):
        x[:]


def test_fingerprints_follow_the_files_without_reading_them(tmp_path):
    _write_folder(tmp_path, {"a": 10, "b": 10}, np.random.default_rng(12), size=(8, 8))
    first, again = data.load(str(tmp_path)), data.load(str(tmp_path))
    assert first.x_test.fingerprint() == again.x_test.fingerprint()
    assert first.x_test.fingerprint() != first.x_val.fingerprint()
    assert first.x_test.fingerprint() != data.load(str(tmp_path), image_size=(4, 4)) \
        .x_test.fingerprint()
    test, train = first.x_test.fingerprint(), first.x_train.fingerprint()
    os.utime(first.x_test.paths[0], ns=(1, 1))  # a file of the test split changed
    assert data.load(str(tmp_path)).x_test.fingerprint() != test
    assert data.load(str(tmp_path)).x_train.fingerprint() == train


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    """3,000 images of 64×64×3 (141 MiB as float32)."""
    root = tmp_path_factory.mktemp("big")
    _write_folder(root, {"x": 1500, "y": 1500}, np.random.default_rng(2), size=(64, 64))
    return root


def _rss():
    """This process's resident memory, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        return pytest.importorskip("psutil").Process().memory_info().rss


def test_streaming_an_image_folder_stays_far_under_its_float32_size(big_folder):
    s = data.load(str(big_folder), validation_fraction=0.05, test_fraction=0.05)
    x = s.x_train
    with pytest.raises(Materialized):
        np.asarray(x)
    assert x.nbytes > 120 * 2**20
    for _ in stream.dataset(lazy.Subset(x, np.arange(256)), batch_size=32):
        pass  # tf.data's own start-up is not the data's
    base = peak = _rss()
    rows = 0
    for xb, yb in stream.dataset((x, s.y_train), batch_size=32, shuffle=True, seed=3):
        rows += len(xb)
        assert len(yb) == len(xb)
        peak = max(peak, _rss())
    assert rows == len(x)
    # a few batches in flight (measured: 11 to 14 MiB), whatever the data's size
    assert peak - base < 0.25 * x.nbytes, f"{(peak - base) / 2**20:.1f} MiB"


def test_streamed_batches_are_the_rows_with_their_labels(tmp_path):
    _write_folder(tmp_path, {"a": 20, "b": 20}, np.random.default_rng(4), size=(8, 8))
    s = data.load(str(tmp_path))
    x, y = s.x_train[:], s.y_train
    plain = np.concatenate([b.numpy() for b in stream.dataset(s.x_train, batch_size=7)])
    np.testing.assert_array_equal(plain, x)
    for xb, yb in stream.dataset((s.x_train, s.y_train), batch_size=7, shuffle=True, seed=5):
        for row, label in zip(xb.numpy(), yb.numpy()):
            (i,) = np.flatnonzero((x == row).all(axis=(1, 2, 3)))
            assert y[i] == label


# --- TFRecord files -------------------------------------------------------------------------


def _png(pixels):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _write_records(path, images, labels, *, image_key="image/encoded",
                   label_key="image/class/label", names=None):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for pixels, label in zip(images, labels):
            feature = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[_png(pixels)])),
                label_key: tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
            if names is not None:
                feature["image/class/text"] = tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[names[label].encode()]))
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=feature)).SerializeToString())


def _tagged_images(rng, n, start=0, size=(9, 11)):
    """Images whose first pixel is their id (to find them among the splits)."""
    images = [_image(rng, *size) for _ in range(n)]
    for i, a in enumerate(images):
        a[0, 0, 0] = start + i
    return images


def test_tfrecords_equal_their_source_images(tmp_path):
    rng = np.random.default_rng(6)
    images = _tagged_images(rng, 60)
    labels = np.arange(60) % 3
    names = ["ant", "bee", "cow"]
    _write_records(tmp_path / "part-0.tfrecord", images[:35], labels[:35], names=names)
    _write_records(tmp_path / "part-1.tfrecord", images[35:], labels[35:], image_key="image",
                   label_key="label", names=None)  # the other convention, in another file
    with pytest.raises(DataError, match="record 0 lacks 'image/encoded'"):
        data.load(str(tmp_path))  # one convention per source
    (tmp_path / "part-1.tfrecord").unlink()
    _write_records(tmp_path / "part-1.tfrecord", images[35:], labels[35:], names=names)
    s = data.load(str(tmp_path))
    assert s.class_names == names and s.num_classes == 3 and s.input_shape == (9, 11, 3)
    seen = []
    for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        assert isinstance(x, RecordImages) and y.dtype == np.int32 and len(x) > 0
        rows = x[:]
        ids = np.rint(rows[:, 0, 0, 0] * 255).astype(int)
        expected = np.stack([images[i] for i in ids]) / 255.0
        np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(y, labels[ids])
        seen += ids.tolist()
    assert sorted(seen) == list(range(60))
    with pytest.raises(Materialized):
        np.asarray(s.x_test)
    # a glob, a single file, and the other feature names
    _write_records(tmp_path / "other.tfr", images[:5], labels[:5], image_key="image",
                   label_key="label")
    assert len(data.load(str(tmp_path / "part-*.tfrecord")).y_train) == len(s.y_train)
    one = data.load(str(tmp_path / "other.tfr"), color_mode="grayscale", image_size=(4, 4))
    assert one.input_shape == (4, 4, 1) and one.class_names == ["0", "1", "2"]
    assert one.name == "other"


def test_tfrecord_files_named_by_split_are_those_splits(tmp_path):
    rng = np.random.default_rng(7)
    images = _tagged_images(rng, 50)
    labels = np.arange(50) % 2
    _write_records(tmp_path / "train-00000-of-00002.tfrecord", images[:20], labels[:20])
    _write_records(tmp_path / "train-00001-of-00002.tfrecord", images[20:35], labels[20:35])
    _write_records(tmp_path / "validation.tfrecord", images[35:42], labels[35:42])
    _write_records(tmp_path / "test.tfrecords", images[42:], labels[42:])
    s = data.load(str(tmp_path))

    def ids(x):
        return np.rint(x[:][:, 0, 0, 0] * 255).astype(int).tolist()

    assert sorted(ids(s.x_train)) == list(range(35))  # in hash order (see below)
    assert sorted(ids(s.x_val)) == list(range(35, 42))
    assert sorted(ids(s.x_test)) == list(range(42, 50))
    # without a test file, the test split comes from the training files, by hash
    (tmp_path / "test.tfrecords").unlink()
    t = data.load(str(tmp_path), test_fraction=0.3)
    assert sorted(ids(t.x_val)) == list(range(35, 42))
    assert sorted(ids(t.x_train) + ids(t.x_test)) == list(range(35)) and len(t.x_test) > 3


def test_tfrecord_splits_are_in_hash_order_with_classes_mixed(tmp_path):
    from keras_distill.data.splits import hash_fractions

    rng = np.random.default_rng(14)
    images = _tagged_images(rng, 60)
    # one class per file, as datasets are often written
    _write_records(tmp_path / "train-0.tfrecord", images[:25], [0] * 25)
    _write_records(tmp_path / "train-1.tfrecord", images[25:50], [1] * 25)
    _write_records(tmp_path / "val.tfrecord", images[50:], [0] * 5 + [1] * 5)
    file_of = {i: ("train-0.tfrecord", i) if i < 25 else ("train-1.tfrecord", i - 25)
               if i < 50 else ("val.tfrecord", i - 50) for i in range(60)}
    for seed in (0, 3):
        s = data.load(str(tmp_path), seed=seed, test_fraction=0.3)
        for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
            ids = np.rint(x[:][:, 0, 0, 0] * 255).astype(int)
            u = hash_fractions([f"{file_of[i][0]}:{file_of[i][1]}" for i in ids], seed)
            assert (np.diff(u) > 0).all()  # by a hash of (file name, index, seed)
            np.testing.assert_array_equal(y, [int(i >= 25) if i < 50 else int(i >= 55)
                                              for i in ids])
        assert set(s.y_train[:8].tolist()) == {0, 1}  # not one file, one class, after another
        assert set(s.y_val[:5].tolist()) == {0, 1}  # a file named by split too
        again = data.load(str(tmp_path), seed=seed, test_fraction=0.3)
        np.testing.assert_array_equal(again.x_train.offsets, s.x_train.offsets)
        assert again.x_train.fingerprint() == s.x_train.fingerprint()


def test_tfrecord_errors_list_what_was_found(tmp_path):
    import gzip

    import tensorflow as tf

    rng = np.random.default_rng(8)
    _write_records(tmp_path / "d.tfrecord", _tagged_images(rng, 4), [0, 1, 0, 1],
                   image_key="img", label_key="y")
    with pytest.raises(DataError, match=r"features \['img', 'y'\].*'image/encoded' or 'image'"):
        data.load(str(tmp_path / "d.tfrecord"))
    (tmp_path / "z.tfrecord").write_bytes(gzip.compress((tmp_path / "d.tfrecord").read_bytes()))
    with pytest.raises(DataError, match="GZIP-compressed"):
        data.load(str(tmp_path / "z.tfrecord"))
    good = tmp_path / "good.tfrecord"
    _write_records(good, _tagged_images(rng, 4), [0, 1, 0, 1])
    (tmp_path / "cut.tfrecord").write_bytes(good.read_bytes()[:-30])
    with pytest.raises(DataError, match="truncated"):
        data.load(str(tmp_path / "cut.tfrecord"))
    with pytest.raises(DataError, match="no files match"):
        data.load(str(tmp_path / "none-*.tfrecord"))
    assert tf.io.gfile.exists(str(good))


# --- arrays: .npy folders, large .npz files, keras.datasets ---------------------------------


def _npz_arrays(n=200):
    rng = np.random.default_rng(9)
    return {"x_train": rng.integers(0, 256, (n, 6, 6), dtype=np.uint8),
            "y_train": np.arange(n) % 4, "class_names": np.array(list("abcd"))}


def _same_splits(streamed, in_memory):
    for part in ("train", "val", "test"):
        x, ref = getattr(streamed, f"x_{part}"), getattr(in_memory, f"x_{part}")
        assert lazy.is_lazy(x) and isinstance(ref, np.ndarray)
        # InMemory multiplies by 1/255 where _inputs divides by 255: one float32 rounding
        np.testing.assert_allclose(x[:], ref, rtol=1.2e-7, atol=0)
        np.testing.assert_array_equal(getattr(streamed, f"y_{part}"),
                                      getattr(in_memory, f"y_{part}"))
    assert streamed.class_names == in_memory.class_names
    assert streamed.summary() == in_memory.summary()


def test_npz_above_the_threshold_is_converted_once_and_memory_mapped(tmp_path, capsys,
                                                                     monkeypatch):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, **_npz_arrays())
    in_memory = data.load_npz(path)  # 7 KiB of inputs: loaded as before
    assert isinstance(in_memory.x_train, np.ndarray) and capsys.readouterr().err == ""
    streamed = data.load_npz(path, stream_bytes=1000)
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and f"converted {path}" in note and "0.0 MiB" in note
    folder = tmp_path / "big.npz.npy"
    assert sorted(os.listdir(folder)) == ["class_names.npy", "converted-from.json",
                                          "x_train.npy", "y_train.npy"]
    assert isinstance(streamed.x_train.base.array, np.memmap)  # Subset of InMemory(memmap)
    _same_splits(streamed, in_memory)
    stamp = os.stat(folder / "x_train.npy").st_mtime_ns
    again = data.load_npz(path, stream_bytes=1000)
    assert capsys.readouterr().err == "" and os.stat(folder / "x_train.npy").st_mtime_ns == stamp
    _same_splits(again, in_memory)
    # the module's threshold, lowered; a changed file is converted again
    np.savez(path, **{**_npz_arrays(), "y_train": (np.arange(200) + 1) % 4})
    monkeypatch.setattr(arrays, "STREAM_BYTES", 1000)
    changed = data.load(str(path))
    assert "converted" in capsys.readouterr().err
    assert lazy.is_lazy(changed.x_train) and changed.y_train.dtype == np.int32
    np.testing.assert_array_equal(np.load(folder / "y_train.npy"), (np.arange(200) + 1) % 4)


def test_a_half_written_conversion_is_never_used(tmp_path, monkeypatch, capsys):
    import shutil

    path = tmp_path / "d.npz"
    np.savez(path, **_npz_arrays(120))
    reference = data.load_npz(path)
    # an interrupted conversion: a .partial folder and a target without its stamp
    for leftover in (tmp_path / "d.npz.npy.partial-1", tmp_path / "d.npz.npy"):
        leftover.mkdir()
        np.save(leftover / "x_train.npy", np.zeros((3, 6, 6), np.uint8))
        np.save(leftover / "y_train.npy", np.zeros(3, int))
    copies = []

    def crash(src, dst, length=0):
        copies.append(dst.name)
        if len(copies) == 2:
            raise OSError(28, "No space left on device")
        return original(src, dst, length)

    original = shutil.copyfileobj
    monkeypatch.setattr(arrays.shutil, "copyfileobj", crash)
    with pytest.raises(DataError, match="cannot be written .No space left on device"):
        data.load_npz(path, stream_bytes=1)
    assert not any(p.name.startswith(f"d.npz.npy.partial-{os.getpid()}")
                   for p in tmp_path.iterdir())
    monkeypatch.setattr(arrays.shutil, "copyfileobj", original)
    streamed = data.load_npz(path, stream_bytes=1)
    assert "converted" in capsys.readouterr().err
    _same_splits(streamed, reference)


def test_npy_folder_is_memory_mapped(tmp_path):
    rng = np.random.default_rng(10)
    x = rng.integers(0, 256, (150, 5, 5), dtype=np.uint8)
    features = rng.normal(size=(30, 7)).astype(np.float64)
    np.save(tmp_path / "x_train.npy", x)
    np.save(tmp_path / "y_train.npy", np.arange(150) % 3)
    np.save(tmp_path / "x_test.npy", x[:30])
    np.save(tmp_path / "y_test.npy", np.arange(30) % 3)
    np.save(tmp_path / "task.npy", np.array("multiclass"))
    s = data.load(str(tmp_path), validation_fraction=0.2)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (120, 30, 30)
    assert all(lazy.is_lazy(v) for v in (s.x_train, s.x_val, s.x_test))
    assert all(type(v) is np.ndarray for v in (s.y_train, s.y_val, s.y_test))
    assert isinstance(s.x_test.array, np.memmap) and s.input_shape == (5, 5, 1)
    np.testing.assert_allclose(s.x_test[:], x[:30, :, :, None] / 255.0, rtol=1.2e-7)
    with pytest.raises(Materialized):
        np.asarray(s.x_train)
    # feature vectors keep their values (float64 stored, float32 out)
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "x_train.npy", features)
    np.save(tmp_path / "f" / "y_train.npy", np.arange(30) % 2)
    f = data.load(str(tmp_path / "f"))
    rows = np.concatenate([f.x_train[:], f.x_val[:], f.x_test[:]])
    np.testing.assert_array_equal(np.sort(rows, axis=0), np.sort(features.astype(np.float32),
                                                                  axis=0))
    (tmp_path / "g").mkdir()
    np.save(tmp_path / "g" / "x_train.npy", features)
    with pytest.raises(DataError, match="no y_train.npy"):
        data.load(str(tmp_path / "g"))


def test_keras_dataset_stays_uint8(monkeypatch):
    import keras
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (100, 4, 4), dtype=np.uint8)
    y = np.arange(100) % 10
    x_test = x[:20].copy()
    monkeypatch.setattr(keras.datasets.mnist, "load_data",
                        lambda: ((x, y), (x_test, y[:20].reshape(-1, 1))))
    s = data.load("mnist", validation_fraction=0.1)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (90, 10, 20)
    assert s.x_train.base.array is x and s.x_test.array is x_test  # no float32 copy
    train, val = train_test_split(np.arange(100), test_size=0.1, random_state=0, stratify=y)
    np.testing.assert_array_equal(s.x_train.indices, train)  # the split it had before
    np.testing.assert_allclose(s.x_val[:], x[val, :, :, None] / 255.0, rtol=1.2e-7)
    np.testing.assert_array_equal(s.y_val, y[val])
    assert s.x_train.dtype == np.float32 and s.input_shape == (4, 4, 1)


# --- checks of lazy inputs ------------------------------------------------------------------


def test_training_checks_of_lazy_inputs_read_no_rows():
    import keras

    class Unreadable(lazy.InMemory):
        def _read(self, indices):
            raise AssertionError("the check read rows")

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    x = Unreadable(np.full((6, 4, 4), np.nan, np.float32), channel_axis=True)
    data.check_training_arrays(x, np.array([0, 1, 2, 0, 1, 2]), model, "fit")
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\]"):
        data.check_training_arrays(x, np.array([0, 1, 2, 0, 1, 3]), model, "fit")
    with pytest.raises(ValueError, match="x has 6 samples but y has 5"):
        data.check_training_arrays(x, np.zeros(5, int), model, "fit")
    with pytest.raises(ValueError, match=r"inputs of shape \(4, 4\) do not match"):
        data.check_training_arrays(Unreadable(np.zeros((6, 4, 4))), np.zeros(6, int), model,
                                   "fit")
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite values in rows"):
        list(stream.dataset(lazy.InMemory(x.array, channel_axis=True)))  # as it streams


# --- lazy arrays and what reads them --------------------------------------------------------


def test_subset_of_a_numpy_or_memory_mapped_array_keeps_its_row_order(tmp_path):
    base = np.arange(12, dtype=np.float32).reshape(6, 2) * 10
    np.save(tmp_path / "m.npy", base)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    rng = np.random.default_rng(13)
    for array in (base, mapped):
        s = lazy.Subset(array, [0, 2, 1, 3])  # spans 4 rows, not consecutive
        np.testing.assert_array_equal(s[:], base[[0, 2, 1, 3]])
        np.testing.assert_array_equal(s.rows([1, 2]), base[[2, 1]])
        np.testing.assert_array_equal(lazy.Subset(array, [3, 5, 4, 5])[:], base[[3, 5, 4, 5]])
        np.testing.assert_array_equal(lazy.Subset(array, [2, 3, 4])[::-1], base[[4, 3, 2]])
        nested = lazy.Subset(lazy.Subset(array, rng.permutation(6)), rng.permutation(6))
        ref = base[nested.base.indices][nested.indices]
        for _ in range(50):
            idx = rng.integers(-6, 6, rng.integers(0, 9))
            np.testing.assert_array_equal(nested[idx], ref[idx])
            np.testing.assert_array_equal(lazy.Subset(array, idx % 6)[:], base[idx % 6])


def test_qat_calibrates_on_rows_of_the_whole_split_not_its_first_rows(monkeypatch):
    import types

    from keras_distill import compress
    from keras_distill.pipeline import students

    class Calibrated(Exception):
        pass

    def calibrate(model, x):
        seen["labels"] = x[:, 0].astype(int)
        raise Calibrated

    seen = {}
    y = np.repeat(np.arange(4), 50)  # a split in class order, as files are listed
    x = lazy.InMemory(np.repeat(y[:, None], 3, axis=1).astype(np.uint8))
    splits = data.Splits(x, y, x, y, x, y, num_classes=4, class_names=list("abcd"))
    cfg = {"qat_epochs": 1, "qat_learning_rate": 1e-3, "learning_rate": 1e-3,
           "calibration_samples": 40, "seed": 0, "prune": 0, "quiet": True}
    ctx = types.SimpleNamespace(cfg=cfg, data=splits, log=lambda *a: None,
                                ckpt=types.SimpleNamespace(finished=lambda name: None))
    monkeypatch.setattr(compress, "quantize_aware", lambda model, name: model)
    monkeypatch.setattr(compress, "calibrate", calibrate)
    monkeypatch.setattr(students, "cache_kwargs", lambda ctx, teacher=None: {})
    with pytest.raises(Calibrated):
        students.train_qat(ctx, None, types.SimpleNamespace(name="s", model=None))
    assert len(seen["labels"]) == 40 and set(seen["labels"]) == {0, 1, 2, 3}
    np.testing.assert_array_equal(seen["labels"],
                                  data.representative_samples(x, 40, seed=0)[:, 0])
