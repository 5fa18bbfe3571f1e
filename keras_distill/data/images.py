"""Image files read on demand: :class:`ImageFiles` (a list of paths, decoded when a batch needs
them) and :func:`load_image_folder` (one subfolder per class, split by a hash of each file's
path).

Images come out as ``keras.utils.image_dataset_from_directory`` makes them, divided by 255:
``float32`` in [0, 1] of shape ``(height, width, channels)``, decoded as
``tf.io.decode_image`` does (8-bit PNGs of gray, RGB or RGBA pixels by Pillow, which gives the
same pixels faster) and resized bilinearly with half-pixel centers, without antialiasing (as
``tf.image.resize``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

import numpy as np

from keras_distill.data.errors import DataError
from keras_distill.data.lazy import LazyArray

#: The file extensions of images (those of ``keras.utils.image_dataset_from_directory``).
IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: Channels of each ``color_mode``.
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}

_PNG = b"\x89PNG\r\n\x1a\n"
# Pillow gives the pixels tf.io.decode_image gives for 8-bit PNGs of these modes (measured);
# other files (JPEG: another IDCT; palettes; 16 bits; color to gray) are decoded by TensorFlow.
_PIL_MODES = {1: ("L", {"L", "LA"}), 3: ("RGB", {"L", "LA", "RGB", "RGBA"}),
              4: ("RGBA", {"L", "LA", "RGB", "RGBA"})}


def decode_image(data: bytes, *, channels=3, image_size=None, what="image") -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, GIF: its first frame) as ``float32`` pixels in
    [0, 1] of shape ``(height, width, channels)``, resized to ``image_size`` when given.

    Raises:
        DataError: the bytes are not an image of a known format (naming ``what``).

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (3, 2), (255, 51, 0)).save(buffer, "PNG")
        >>> decode_image(buffer.getvalue(), image_size=(4, 6))[0, 0].tolist()
        [1.0, 0.20000000298023224, 0.0]
    """
    pixels = _pixels(data, channels, what)
    if image_size is not None and tuple(pixels.shape[:2]) != tuple(image_size):
        pixels = resize_bilinear(pixels, image_size)
    return pixels.astype(np.float32) / np.float32(255.0)


def _pixels(data, channels, what):
    """The ``uint8`` pixels ``(h, w, channels)`` of encoded image bytes."""
    if data[:8] == _PNG and data[24:25] == b"\x08":  # an 8-bit PNG
        import io

        from PIL import Image

        target, modes = _PIL_MODES[channels]
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.mode in modes and "transparency" not in im.info:
                    pixels = np.asarray(im if im.mode == target else im.convert(target))
                    return pixels.reshape(*pixels.shape[:2], channels)
        except (OSError, ValueError):
            pass  # TensorFlow says what is wrong with it
    import tensorflow as tf

    try:
        return tf.io.decode_image(data, channels=channels, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as exc:
        reason = str(exc).split("[Op:")[0].split("}}")[-1].strip()
        raise DataError(f"cannot decode {what} as an image with {channels} channel(s): "
                        f"{reason}. Give PNG, JPEG, BMP or GIF images; GIF files decode with "
                        "color_mode 'rgb' only, BMP files with 'rgb' or 'rgba'.") from None


def resize_bilinear(pixels, size) -> np.ndarray:
    """``pixels`` ``(h, w, c)`` resized to ``size`` ``(height, width)`` as ``float32``, as
    ``tf.image.resize(pixels, size)`` does (bilinear, half-pixel centers, no antialiasing).

    Example:
        >>> resize_bilinear(np.array([[[0], [100]]], "uint8"), (1, 4))[..., 0].tolist()
        [[0.0, 25.0, 75.0, 100.0]]
    """
    pixels = np.asarray(pixels)
    y0, y1, wy = _axis_weights(pixels.shape[0], int(size[0]))
    x0, x1, wx = _axis_weights(pixels.shape[1], int(size[1]))
    # along the width first, each source row once; then between rows (TensorFlow's order of
    # operations, so the same float32 values)
    left = np.take(pixels, x0, axis=1).astype(np.float32)
    right = np.take(pixels, x1, axis=1).astype(np.float32)
    right -= left
    right *= wx[None, :, None]
    left += right
    top, bottom = np.take(left, y0, axis=0), np.take(left, y1, axis=0)
    bottom -= top
    bottom *= wy[:, None, None]
    top += bottom
    return top


def _axis_weights(in_size, out_size):
    """The two source indices and the weight of the second, per output position (TensorFlow's
    ``HalfPixelScaler`` in float32)."""
    scale = np.float32(in_size) / np.float32(out_size)
    where = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(where)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(where), in_size - 1).astype(np.int64)
    return lower, upper, (where - floor).astype(np.float32)


def image_size_of(path) -> tuple[int, int]:
    """``(height, width)`` of an image file, from its header (Pillow), else by decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except (OSError, ValueError):
        with open(path, "rb") as f:
            return tuple(_pixels(f.read(), 3, repr(os.fspath(path))).shape[:2])


_POOL = {"pid": None, "pool": None}
_POOL_LOCK = threading.Lock()


def decode_many(decode, items, out):
    """``out[j] = decode(items[j])`` for each item, on a few threads (decoders release the GIL)
    when there are enough items."""
    if len(items) < 8:
        for j, item in enumerate(items):
            out[j] = decode(item)
        return out
    with _POOL_LOCK:
        if _POOL["pid"] != os.getpid():  # a new process (after fork) starts its own threads
            from concurrent.futures import ThreadPoolExecutor

            workers = min(8, 2 * (os.cpu_count() or 1))
            _POOL.update(pid=os.getpid(), pool=ThreadPoolExecutor(
                workers, thread_name_prefix="keras_distill-decode"))
        pool = _POOL["pool"]

    def one(j):
        out[j] = decode(items[j])

    for _ in pool.map(one, range(len(items))):
        pass
    return out


class ImageFiles(LazyArray):
    """Image files decoded on demand: rows ``(height, width, channels)`` of ``float32`` in
    [0, 1], as ``keras.utils.image_dataset_from_directory`` reads them, divided by 255.

    Args:
        paths: the image files (PNG, JPEG, BMP, GIF), one per row.
        image_size: ``(height, width)`` every image is resized to (bilinearly, where it
            differs).
        color_mode: ``"grayscale"`` (1 channel), ``"rgb"`` (3) or ``"rgba"`` (4).

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> folder = tempfile.mkdtemp()
        >>> Image.new("RGB", (4, 2), (255, 0, 0)).save(os.path.join(folder, "red.png"))
        >>> x = ImageFiles([os.path.join(folder, "red.png")], image_size=(2, 4))
        >>> x.shape, x[0][0, 0].tolist()
        ((1, 2, 4, 3), [1.0, 0.0, 0.0])
    """

    def __init__(self, paths, image_size, color_mode="rgb"):
        if color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {', '.join(map(repr, COLOR_MODES))}; "
                             f"got {color_mode!r}.")
        height, width = (int(d) for d in image_size)
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be (height, width) of positive sizes; got "
                             f"{tuple(image_size)}.")
        self.paths = [os.fspath(p) for p in paths]
        self.image_size = (height, width)
        self.color_mode = color_mode
        self.shape = (len(self.paths), height, width, COLOR_MODES[color_mode])
        self.dtype = np.dtype("float32")

    def _decode(self, path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise DataError(f"cannot read image {path!r} ({exc.strerror or exc}); was it moved "
                            "or deleted after the data was loaded? Load the folder again.") \
                from None
        return decode_image(data, channels=self.shape[-1], image_size=self.image_size,
                            what=repr(path))

    def _read(self, indices):
        out = np.empty((len(indices), *self.shape[1:]), np.float32)
        return decode_many(self._decode, [self.paths[i] for i in indices], out)

    def identity(self):
        """The files (a hash of their paths, sizes and modification times), the image size
        and the color mode."""
        h = hashlib.sha256()
        for path in self.paths:
            try:
                st = os.stat(path)
            except OSError as exc:
                raise DataError(f"cannot read image {path!r} ({exc.strerror or exc}); was it "
                                "moved or deleted after the data was loaded? Load the folder "
                                "again.") from None
            h.update(json.dumps([os.path.abspath(path), st.st_size, st.st_mtime_ns]).encode())
        return {"files": len(self.paths), "first": self.paths[0] if self.paths else None,
                "digest": h.hexdigest(), "image_size": list(self.image_size),
                "color_mode": self.color_mode}


def list_image_folder(path):
    """``(files, labels, class_names)`` of an image folder: the image files of each class
    subfolder (searched recursively; sorted, as Keras lists them) and their class indices in
    the sorted class names.

    Raises:
        DataError: the folder is missing or has no class subfolders.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"image folder {path!r} not found.")
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise DataError(f"image folder {path!r} has no class subfolders; expected "
                        f"{path}/<class name>/<image files>.")
    files, labels = [], []
    for label, name in enumerate(classes):
        for root, _, names in sorted(os.walk(os.path.join(path, name)), key=lambda t: t[0]):
            for file in sorted(names):
                if file.lower().endswith(IMAGE_FORMATS):
                    files.append(os.path.join(root, file))
                    labels.append(label)
    return files, np.asarray(labels, np.int32), classes


def load_image_folder(path, *, validation_fraction=0.15, test_fraction=0.2, seed=0,
                      image_size=None, color_mode="rgb"):
    """Images in class subfolders (``path/<class>/<image>``), listed (not read: they are
    decoded when a batch needs them, see :class:`ImageFiles`) and split by file.

    Each file's split is decided by a hash of its path relative to ``path`` and ``seed``
    (:func:`~keras_distill.data.splits.hash_split`): ``test_fraction`` of the files (in
    expectation) are test data, ``validation_fraction`` validation data. Adding images never
    moves an image already there to another split. Within a split the files are in the order
    of that hash (deterministic, classes mixed), not by path: the first rows of a split are not
    all of one class.

    Args:
        image_size: ``(height, width)`` to resize to; default the size of the first image.
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"``.

    Returns:
        :class:`~keras_distill.data.splits.Splits` whose inputs are :class:`ImageFiles` and
        labels ``int32`` class indices of the sorted class folder names.

    Example:
        >>> load_image_folder("flowers/", image_size=(32, 32)).class_names  # doctest: +SKIP
        ['daisy', 'rose', 'tulip']
    """
    from keras_distill.data.splits import (
        TEST,
        TRAIN,
        VALIDATION,
        Splits,
        hash_fractions,
        hash_ordered,
        hash_split,
    )

    path = os.fspath(path)
    if color_mode not in COLOR_MODES:
        raise DataError(f"color_mode must be one of {', '.join(map(repr, COLOR_MODES))}; got "
                        f"{color_mode!r}.")
    files, labels, classes = list_image_folder(path)
    if not files:
        raise DataError(f"image folder {path!r} has no {'/'.join(IMAGE_FORMATS)} images in "
                        f"its class subfolders {classes}.")
    if len(files) < 3:
        raise DataError(f"image folder {path!r} has {len(files)} image(s): too few for "
                        "training, validation and test splits (3 or more).")
    image_size = tuple(image_size) if image_size is not None else image_size_of(files[0])
    keys = [os.path.relpath(f, path).replace(os.sep, "/") for f in files]
    u = hash_fractions(keys, seed)
    codes = hash_split(keys, validation_fraction=validation_fraction,
                       test_fraction=test_fraction, seed=seed, what="images", fractions=u)
    parts = []
    for code in (TRAIN, VALIDATION, TEST):
        rows = hash_ordered(np.flatnonzero(codes == code), u)  # classes mixed, not by path
        parts += [ImageFiles([files[i] for i in rows], image_size, color_mode), labels[rows]]
    name = os.path.basename(os.path.normpath(path)) or "images"
    return Splits(*parts, num_classes=len(classes), class_names=list(classes), name=name)
