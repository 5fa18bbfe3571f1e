"""TFRecord files of encoded images, read by offset: :class:`RecordImages` and
:func:`load_tfrecords`.

Each record is a ``tf.train.Example`` with an encoded image (PNG, JPEG, BMP, GIF) under
``image/encoded`` or ``image``, an ``int64`` class index under ``image/class/label`` or
``label``, and optionally the class name under ``image/class/text``. One pass over the files
finds where each record starts and reads its label (the TFRecord framing: a ``uint64`` length,
a ``uint32`` CRC of it, the data, a ``uint32`` CRC of the data; the CRCs are not checked);
images are decoded only when a batch needs them, as image folders decode theirs
(:func:`keras_distill.data.images.decode_image`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import struct

import numpy as np

from keras_distill.data.errors import DataError
from keras_distill.data.images import COLOR_MODES, _pixels, decode_image, decode_many
from keras_distill.data.lazy import LazyArray

#: File names of TFRecord files.
RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")
#: Where an encoded image may be, and its class index (the first key found is used).
IMAGE_KEYS = ("image/encoded", "image")
LABEL_KEYS = ("image/class/label", "label")
TEXT_KEY = "image/class/text"

_SPLIT_NAME = re.compile(r"^(?:(train)(?:ing)?|(val)(?:idation)?|(test))(?![a-z])",
                         re.IGNORECASE)


def _example(data):
    from tensorflow.core.example import example_pb2

    return example_pb2.Example.FromString(data)


class RecordImages(LazyArray):
    """Images stored in TFRecord files, read by offset and decoded on demand: rows
    ``(height, width, channels)`` of ``float32`` in [0, 1].

    Args:
        files: the TFRecord files.
        file_ids, offsets, lengths: per row, the index of its file in ``files``, where its
            record's data starts and how long it is (see :func:`index_records`).
        image_size: ``(height, width)`` every image is resized to (where it differs).
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"``.
        image_key: the feature holding the encoded image.

    Example:
        >>> import tempfile, io
        >>> import tensorflow as tf
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (3, 2), 51).save(buffer, "PNG")
        >>> path = os.path.join(tempfile.mkdtemp(), "d.tfrecord")
        >>> feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(
        ...     value=[buffer.getvalue()])),
        ...     "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
        >>> with tf.io.TFRecordWriter(path) as writer:
        ...     writer.write(tf.train.Example(features=tf.train.Features(
        ...         feature=feature)).SerializeToString())
        >>> index = index_records([path])
        >>> x = RecordImages([path], index["file_ids"], index["offsets"], index["lengths"],
        ...                  (2, 3), "grayscale", index["image_key"])
        >>> x.shape, round(float(x[0].max()), 6), index["labels"].tolist()
        ((1, 2, 3, 1), 0.2, [1])
    """

    def __init__(self, files, file_ids, offsets, lengths, image_size, color_mode="rgb",
                 image_key="image/encoded"):
        if color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {', '.join(map(repr, COLOR_MODES))}; "
                             f"got {color_mode!r}.")
        self.files = [os.fspath(f) for f in files]
        self.file_ids = np.asarray(file_ids, np.int64).reshape(-1)
        self.offsets = np.asarray(offsets, np.int64).reshape(-1)
        self.lengths = np.asarray(lengths, np.int64).reshape(-1)
        self.image_size = tuple(int(d) for d in image_size)
        self.color_mode = color_mode
        self.image_key = image_key
        self.shape = (len(self.offsets), *self.image_size, COLOR_MODES[color_mode])
        self.dtype = np.dtype("float32")

    def _read(self, indices):
        records = [None] * len(indices)
        fds = {}
        # read in file and offset order (rows in hash order lie all over the files)
        order = np.lexsort((self.offsets[indices], self.file_ids[indices]))
        try:
            for j in order:
                i = indices[j]
                file = int(self.file_ids[i])
                if file not in fds:
                    fds[file] = os.open(self.files[file], os.O_RDONLY)
                data = os.pread(fds[file], int(self.lengths[i]), int(self.offsets[i]))
                records[j] = (file, int(i), data)
        except OSError as exc:
            raise DataError(f"cannot read {self.files[file]!r} ({exc.strerror or exc}); was it "
                            "moved or changed after the data was loaded? Load it again.") \
                from None
        finally:
            for fd in fds.values():
                os.close(fd)
        out = np.empty((len(indices), *self.shape[1:]), np.float32)
        return decode_many(self._decode, records, out)

    def _decode(self, record):
        file, row, data = record
        feature = _example(data).features.feature.get(self.image_key)
        if feature is None or not feature.bytes_list.value:
            raise DataError(f"{self.files[file]!r}: the record at byte {self.offsets[row]} has "
                            f"no image under {self.image_key!r}.")
        return decode_image(feature.bytes_list.value[0], channels=self.shape[-1],
                            image_size=self.image_size,
                            what=f"the image of the record at byte {self.offsets[row]} of "
                                 f"{self.files[file]!r}")

    def identity(self):
        """The files (paths, sizes, modification times), the records taken, the image size,
        the color mode and the image feature."""
        files = []
        for f in self.files:
            st = os.stat(f)
            files.append([os.path.abspath(f), st.st_size, st.st_mtime_ns])
        rows = hashlib.sha256(self.file_ids.tobytes() + self.offsets.tobytes()).hexdigest()
        return {"files": files, "rows": rows, "image_size": list(self.image_size),
                "color_mode": self.color_mode, "image_key": self.image_key}


def record_files(source) -> list[str]:
    """The TFRecord files of ``source``: a file, a glob (``data/train-*.tfrecord``) or a folder
    (its files ending in ``.tfrecord``, ``.tfrecords`` or ``.tfr``), sorted.

    Raises:
        DataError: no such file, or nothing matches.
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        files = sorted(os.path.join(source, f) for f in os.listdir(source)
                       if f.lower().endswith(RECORD_SUFFIXES)
                       and os.path.isfile(os.path.join(source, f)))
        if not files:
            raise DataError(f"folder {source!r} has no TFRecord files "
                            f"({', '.join(RECORD_SUFFIXES)}).")
        return files
    if glob.has_magic(source):
        files = sorted(f for f in glob.glob(source) if os.path.isfile(f))
        if not files:
            raise DataError(f"no files match {source!r}.")
        return files
    if not os.path.isfile(source):
        raise DataError(f"TFRecord file not found: {source}")
    return [source]


def is_record_source(source) -> bool:
    """Whether ``source`` names TFRecord files: a path ending in ``.tfrecord``, ``.tfrecords``
    or ``.tfr``, a glob, or a folder holding such files."""
    source = os.fspath(source)
    if source.lower().endswith(RECORD_SUFFIXES) or glob.has_magic(source):
        return True
    return os.path.isdir(source) and any(
        f.lower().endswith(RECORD_SUFFIXES) for f in os.listdir(source))


def index_records(files) -> dict:
    """One pass over TFRecord files: where each record is, its label (and class name).

    Returns:
        a dict of ``file_ids``, ``offsets``, ``lengths``, ``labels`` (``int64`` arrays, one
        entry per record), ``names`` (``{label: class name}`` from ``image/class/text``),
        ``image_key`` and ``first_image`` (the encoded bytes of the first image).

    Raises:
        DataError: a file that is not an uncompressed TFRecord file, or a record without an
            image or a label (listing the features it has).
    """
    found = {"file_ids": [], "offsets": [], "lengths": [], "labels": []}
    keys = {"names": {}, "image_key": None, "label_key": None, "first_image": None}
    for file_id, path in enumerate(files):
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = row = 0
            while offset < size:
                header = f.read(12)
                (length,) = struct.unpack("<Q", header[:8]) if len(header) == 12 else (-1,)
                if length < 0 or offset + 16 + length > size:
                    raise DataError(_framing_error(path, offset, header))
                data = f.read(length)
                f.seek(4, os.SEEK_CUR)
                label = _label_of(_example(data), path, row, keys)
                for name, value in (("file_ids", file_id), ("offsets", offset + 12),
                                    ("lengths", length), ("labels", label)):
                    found[name].append(value)
                offset += 16 + length
                row += 1
    out = {k: np.asarray(v, np.int64) for k, v in found.items()}
    return {**out, "names": keys["names"], "image_key": keys["image_key"],
            "first_image": keys["first_image"]}


def _framing_error(path, offset, header):
    if offset == 0 and header[:2] == b"\x1f\x8b":
        return (f"{path!r} is a GZIP-compressed TFRecord file; records are read by offset, "
                "which needs uncompressed files: decompress it (gunzip) or write it with "
                "tf.io.TFRecordWriter(path) without compression.")
    return (f"{path!r} is not a TFRecord file, or is truncated or compressed: the record at "
            f"byte {offset} does not fit in the file. Give uncompressed TFRecord files of "
            "tf.train.Example records.")


def _label_of(example, path, row, keys):
    """The class index of a record; the image and label features are found in the first
    record (``keys``) and required in all."""
    features = example.features.feature
    if keys["image_key"] is None:
        keys["image_key"] = next((k for k in IMAGE_KEYS if k in features
                                  and features[k].bytes_list.value), None)
        keys["label_key"] = next((k for k in LABEL_KEYS if k in features
                                  and features[k].int64_list.value), None)
        if keys["image_key"] is None or keys["label_key"] is None:
            raise DataError(
                f"{path!r}: the records have the features {sorted(features) or 'none'}; "
                f"expected an encoded image (bytes) under {' or '.join(map(repr, IMAGE_KEYS))} "
                f"and an int64 class index under {' or '.join(map(repr, LABEL_KEYS))}.")
        keys["first_image"] = features[keys["image_key"]].bytes_list.value[0]
    label = features.get(keys["label_key"])
    if label is None or not label.int64_list.value or keys["image_key"] not in features:
        raise DataError(
            f"{path!r}: record {row} lacks {keys['image_key']!r} or an int64 "
            f"{keys['label_key']!r} (it has {sorted(features)}); every record needs both.")
    value = int(label.int64_list.value[0])
    if value < 0:
        raise DataError(f"{path!r}: record {row} has the negative class index {value}.")
    text = features.get(TEXT_KEY)
    if text is not None and text.bytes_list.value:
        keys["names"].setdefault(value, text.bytes_list.value[0].decode("utf-8", "replace"))
    return value


def split_name(file) -> str | None:
    """The split a file's name declares (``"train"``, ``"val"``, ``"test"``), or None.

    Example:
        >>> [split_name(f) for f in ("train-00000-of-00004.tfrecord", "validation.tfr",
        ...                          "val_1.tfrecord", "test.tfrecords", "values.tfrecord")]
        ['train', 'val', 'val', 'test', None]
    """
    match = _SPLIT_NAME.match(os.path.basename(os.fspath(file)))
    if match is None:
        return None
    return ["train", "val", "test"][[g is not None for g in match.groups()].index(True)]


def _split_codes(files, index, *, validation_fraction, test_fraction, seed):
    """The split of each record (``splits.TRAIN``, ``VALIDATION``, ``TEST``): its file's
    (named by split), else by a hash of the file's name and the record's index in it. Records
    of training files are split by hash too for a split that no file name gives.

    Returns:
        ``(codes, fractions)``: the split of each record, and the hash value of each record's
        file name, index and ``seed`` (:func:`~keras_distill.data.splits.hash_fractions`), which
        orders the records of a split (those of named files included)."""
    from keras_distill.data.splits import TEST, TRAIN, VALIDATION, hash_fractions, hash_split

    named = [split_name(f) for f in files]
    need = {"val": "val" not in named, "test": "test" not in named}
    record_split = np.asarray([named[i] or "" for i in index["file_ids"]])
    first_of_file = np.searchsorted(index["file_ids"], index["file_ids"])
    keys = [f"{os.path.basename(files[f])}:{r}" for f, r in
            zip(index["file_ids"], np.arange(len(record_split)) - first_of_file)]
    u = hash_fractions(keys, seed)
    pooled = (record_split == "") | ((record_split == "train") & (need["val"] or need["test"]))
    codes = np.full(len(record_split), TRAIN)
    codes[record_split == "val"] = VALIDATION
    codes[record_split == "test"] = TEST
    if pooled.any():
        hashed = hash_split([k for k, p in zip(keys, pooled) if p],
                            validation_fraction=validation_fraction,
                            test_fraction=test_fraction, seed=seed, what="records",
                            fractions=u[pooled])
        from_train = record_split[pooled] == "train"
        hashed[from_train & (hashed == VALIDATION) & (not need["val"])] = TRAIN
        hashed[from_train & (hashed == TEST) & (not need["test"])] = TRAIN
        codes[pooled] = hashed
    return codes, u


def load_tfrecords(source, *, validation_fraction=0.15, test_fraction=0.2, seed=0,
                   image_size=None, color_mode="rgb"):
    """A dataset of images in TFRecord files (a file, a glob or a folder of them), indexed
    in one pass (labels read, images not decoded) and read by offset (:class:`RecordImages`).

    Files whose names start with ``train``, ``validation`` / ``val`` or ``test`` hold that
    split. The records of other files (and, for a split no file name gives, those of the
    training files) are split by a hash of the file name, the record's index and ``seed``
    (:func:`~keras_distill.data.splits.hash_split`), so appending records never moves one.
    Within each split the records are in the order of a hash of the file name, the record's
    index and ``seed`` (deterministic, classes mixed), not in file order, the records of files
    named by split included.
    Class names come from ``image/class/text``, else they are ``"0"`` to ``"k-1"``.

    Args:
        image_size: ``(height, width)`` to resize to; default the size of the first image.
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"``.

    Example:
        >>> load_tfrecords("records/", image_size=(96, 96)).summary()  # doctest: +SKIP
        'records: 40120 train / 7113 validation / 9477 test samples of shape (96, 96, 3), 5 classes'
    """
    from keras_distill.data.splits import TEST, TRAIN, VALIDATION, Splits, hash_ordered

    if color_mode not in COLOR_MODES:
        raise DataError(f"color_mode must be one of {', '.join(map(repr, COLOR_MODES))}; got "
                        f"{color_mode!r}.")
    files = record_files(source)
    index = index_records(files)
    if len(index["labels"]) < 3:
        raise DataError(f"{os.fspath(source)!r} has {len(index['labels'])} record(s): too few "
                        "for training, validation and test splits (3 or more).")
    if image_size is None:
        image_size = _pixels(index["first_image"], COLOR_MODES[color_mode],
                             f"the first image of {files[0]!r}").shape[:2]
    codes, u = _split_codes(files, index, validation_fraction=validation_fraction,
                            test_fraction=test_fraction, seed=seed)
    parts = []
    for code, what in ((TRAIN, "training"), (VALIDATION, "validation"), (TEST, "test")):
        rows = hash_ordered(np.flatnonzero(codes == code), u)  # classes mixed, not file order
        if not len(rows):
            raise DataError(f"{os.fspath(source)!r} gives no {what} records; name files by "
                            "split (train*, validation* or val*, test*) or give files without a "
                            "split name, which are split by hash.")
        parts += [RecordImages(files, index["file_ids"][rows], index["offsets"][rows],
                               index["lengths"][rows], image_size, color_mode,
                               index["image_key"]),
                  index["labels"][rows].astype(np.int32)]
    count = int(index["labels"].max()) + 1
    names = [index["names"].get(i, str(i)) for i in range(count)]
    return Splits(*parts, num_classes=count, class_names=names, name=_name_of(source, files))


def _name_of(source, files):
    source = os.fspath(source)
    if os.path.isdir(source):
        return os.path.basename(os.path.normpath(source)) or "records"
    if len(files) == 1 and not glob.has_magic(source):
        return os.path.splitext(os.path.basename(source))[0]
    return os.path.basename(os.path.dirname(os.path.abspath(files[0]))) or "records"
