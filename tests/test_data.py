"""keras_distill.data: digits, .npz files, image folders, keras.datasets (offline)."""

import numpy as np
import pytest
from helpers import dense_model

from keras_distill import data
from keras_distill.data import DataError


def test_digits_splits_are_fixed_by_the_seed():
    a, b = data.load("digits", seed=0), data.load("digits", seed=0)
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (1167, 270, 360)
    assert a.x_train.shape[1:] == (8, 8, 1) and a.x_train.dtype == np.float32
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(data.load("digits", seed=1).y_test, a.y_test)


def test_npz_with_train_only_is_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 6, 6), dtype=np.uint8)
    y = np.repeat(np.arange(4), 50)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    s = data.load(str(tmp_path / "d.npz"), validation_fraction=0.1, test_fraction=0.25)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (130, 20, 50)
    assert s.input_shape == (6, 6, 1) and s.num_classes == 4 and s.name == "d"
    assert s.x_train.dtype == np.float32 and s.x_train.max() <= 1.0  # uint8 / 255
    counts = np.bincount(s.y_test)
    assert counts.max() - counts.min() <= 1  # stratified


def test_npz_keeps_given_splits_onehot_labels_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((60, 5, 5, 3), dtype=np.float32)
    y = np.eye(3)[np.arange(60) % 3]
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:9], y_test=y[:9],
             class_names=np.array(["cat", "dog", "owl"]))
    s = data.load_npz(tmp_path / "d.npz", validation_fraction=0.2)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (48, 12, 9)
    np.testing.assert_array_equal(s.y_test, np.arange(9) % 3)
    np.testing.assert_allclose(s.x_test, x[:9])  # floats are kept as they are
    assert s.class_names == ["cat", "dog", "owl"] and s.input_shape == (5, 5, 3)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 2, 2))}, "lacks x_train and y_train"),
    ({"x_train": np.zeros((9, 2, 2)), "y_train": np.zeros(9), "x_val": np.zeros((2, 2, 2))},
     "only one of x_val and y_val"),
    ({"x_train": np.zeros((9, 2, 2)), "y_train": np.zeros(8)}, "8 labels for 9 samples"),
    ({"x_train": np.zeros((9, 2, 2)), "y_train": np.zeros(9), "x_test": np.zeros((3, 3, 3)),
      "y_test": np.zeros(3)}, "different sample shapes"),
])
def test_bad_npz_files_say_what_is_wrong(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        data.load(str(tmp_path / "bad.npz"))


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["circle", "square"]):
        (tmp_path / name).mkdir()
        for i in range(20):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    s = data.load(str(tmp_path))
    assert s.input_shape == (12, 10, 3)  # the first image's size
    # each file's split is decided by a hash of its path (data.hash_split), not a shuffle
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (32, 2, 6)
    assert s.class_names == ["circle", "square"] and s.num_classes == 2
    x = s.x_train[:]  # image files are read on demand
    assert 0.0 <= x.min() and x.max() <= 1.0
    g = data.load_image_folder(tmp_path, image_size=(8, 8), color_mode="grayscale")
    assert g.input_shape == (8, 8, 1)


def test_image_folder_without_classes(tmp_path):
    with pytest.raises(DataError, match="has no class subfolders"):
        data.load(str(tmp_path))


def test_keras_dataset_offline_says_so(monkeypatch):
    import keras

    def offline():
        # what keras.utils.get_file raises when the name cannot be resolved
        raise Exception(  # noqa: TRY002
            "URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
            "mnist.npz: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError) as info:
        data.load("mnist")
    message = str(info.value)
    assert "keras.datasets 'mnist'" in message and "needs the internet" in message
    assert "Name or service not known" in message
    for alternative in ('"digits"', ".npz", "image folder"):
        assert alternative in message


def test_keras_dataset_loads_and_splits(monkeypatch):
    import keras

    x = np.zeros((100, 4, 4), np.uint8)
    y = np.arange(100) % 10
    monkeypatch.setattr(keras.datasets.mnist, "load_data",
                        lambda: ((x, y), (x[:20], y[:20].reshape(-1, 1))))
    s = data.load("mnist", validation_fraction=0.1)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (90, 10, 20)
    assert s.input_shape == (4, 4, 1) and s.num_classes == 10


def test_unknown_source():
    with pytest.raises(DataError, match="Unknown data source 'imagenet'"):
        data.load("imagenet")


def test_with_unlabeled_marks_and_mixes(digits):
    x, y = data.with_unlabeled(digits.x_train[:100], digits.y_train[:100],
                               digits.x_train[100:400], seed=0)
    assert x.shape == (400, 8, 8, 1) and y.dtype == np.int32
    assert (y == -1).sum() == 300
    assert 0 < (y[:100] == -1).sum() < 100  # shuffled: both kinds in the first batches
    with pytest.raises(ValueError, match="shape"):
        data.with_unlabeled(digits.x_train[:10], digits.y_train[:10], np.zeros((5, 4, 4, 1)))
    with pytest.raises(ValueError, match="-1 marks unlabeled"):
        data.with_unlabeled(digits.x_train[:2], np.array([-1, 3]), digits.x_train[:2])


X6 = np.zeros((4, 6), "float32")


@pytest.mark.parametrize("x,y,message", [
    (X6[:0], None, r"^fit: x is empty \(0 samples\)"),
    (X6[:, :5], None, r"^fit: inputs of shape \(5,\) do not match the models' input shape \(6,\)"),
    (X6 + np.inf, None, r"^fit: x has NaN or infinite values in 4 sample\(s\)"),
    (X6, np.array(["a", "b", "c", "d"]), r"^fit: y holds <U1 values"),
    (X6, np.zeros(3, int), r"^fit: x has 4 samples but y has 3"),
    (X6, np.zeros((4, 2), int), r"^fit: integer labels must have shape \(N,\) or \(N, 1\)"),
    (X6, np.array([0, 1, 2, 4]), r"^fit: labels must be class indices in \[0, 3\] .* 0 to 4\."),
    (X6, np.array([0, -2, 1, 1]), r"found values from -2 to 1\. The student has 4 outputs"),
    (X6, np.array([0.0, np.nan, 1, 1]), r"^fit: y has NaN or infinite values"),
    (X6, np.array([0.0, 0.5, 1, 1]), r"^fit: labels must be class indices"),
    (X6, np.zeros((4, 3), "float32"), r"^fit: one-hot labels have 3 columns but the student has 4"),
])
def test_check_training_arrays_names_the_problem(x, y, message):
    with pytest.raises(ValueError, match=message):
        data.check_training_arrays(x, y, dense_model(4, 0, "m"), "fit")


def test_check_training_arrays_accepts_good_data_and_leaves_streams_to_keras():
    model = dense_model(4, 0, "m")
    for y in (None, np.array([0, 3, -1, 2]), np.array([[1], [2], [0], [3]]),
              np.eye(4, dtype="float32"), np.array([0.0, 1.0, 2.0, -1.0]),
              {"labels": np.zeros(4)}):
        assert data.check_training_arrays(X6, y, model, "fit") is None
    # Not NumPy inputs: not checked here, even when obviously wrong.
    assert data.check_training_arrays([[np.nan]], np.array(["a"]), model, "fit") is None
