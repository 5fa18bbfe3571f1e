"""keras_distill.data for every output kind: the bundled breast_cancer (binary) and diabetes
(regression) sets, .npz files with multi-hot or float targets, the labels check per output kind,
and the tabular MLP teacher."""

import keras
import numpy as np
import pytest

from keras_distill import data
from keras_distill.data import DataError
from keras_distill.outputs import Output

# --- the bundled tabular sets --------------------------------------------------------------


def _raw_splits(loader, stratify):
    """The unscaled arrays split as the loader splits them (same seed, same fractions)."""
    bunch = loader()
    y = bunch.target.astype("int32") if stratify else bunch.target
    return data.split(bunch.data, y, seed=0, stratify=stratify)


def test_breast_cancer_is_binary_standardized_on_the_training_split_only():
    from sklearn.datasets import load_breast_cancer

    s = data.load("breast_cancer")
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (369, 86, 114)
    assert s.input_shape == (30,) and s.x_train.dtype == np.float32
    assert s.y_train.dtype == np.int32 and s.y_train.shape == (369,)
    assert s.task == "binary" and s.num_classes == 2 and s.output_units == 1
    assert s.class_names == ["malignant", "benign"] and s.target_scale is None
    assert set(np.unique(np.concatenate([s.y_train, s.y_val, s.y_test]))) == {0, 1}
    assert s.summary() == ("breast_cancer: 369 train / 86 validation / 114 test samples of "
                           "shape (30,), binary (2 classes)")
    # stratified: each split has the data's share of benign samples (357 of 569)
    for y in (s.y_train, s.y_val, s.y_test):
        assert abs(y.mean() - 357 / 569) < 0.01
    # z-scores of the training split; the held-out splits are scaled with the same numbers
    np.testing.assert_allclose(s.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(axis=0), 1, atol=1e-5)
    assert np.abs(s.x_test.mean(axis=0)).max() > 0.05
    x_train, _, _, _, x_test, _ = _raw_splits(load_breast_cancer, stratify=True)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    np.testing.assert_allclose(s.x_test, (x_test - mean) / std, rtol=1e-5, atol=1e-5)


def test_diabetes_is_regression_with_standardized_targets_that_convert_back():
    from sklearn.datasets import load_diabetes

    s = data.load("diabetes")
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (286, 67, 89)
    assert s.input_shape == (10,) and s.x_train.dtype == np.float32
    assert s.y_train.dtype == np.float32 and s.y_train.shape == (286,)
    assert s.task == "regression" and s.num_classes == 1 and s.output_units == 1
    assert s.class_names == ["disease progression"]
    assert s.summary().endswith("samples of shape (10,), regression (1 target)")
    np.testing.assert_allclose(s.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(axis=0), 1, atol=1e-5)
    assert abs(float(s.y_train.mean())) < 1e-5 and abs(float(s.y_train.std()) - 1) < 1e-5
    assert abs(float(s.y_test.mean())) > 1e-3  # scaled with the training split's numbers
    x_train, y_train, x_val, y_val, _x_test, y_test = _raw_splits(
        lambda: load_diabetes(scaled=False), stratify=False)
    mean, std = s.target_scale
    assert (mean, std) == pytest.approx((y_train.mean(), y_train.std()))
    for scaled, original in ((s.y_train, y_train), (s.y_val, y_val), (s.y_test, y_test)):
        np.testing.assert_allclose(scaled * std + mean, original, atol=1e-3)
    assert 25 <= (s.y_test * std + mean).min() and (s.y_test * std + mean).max() <= 346
    np.testing.assert_allclose(s.x_val, (x_val - x_train.mean(0)) / x_train.std(0), atol=1e-5)


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
def test_tabular_splits_are_fixed_by_the_seed(name):
    a, b, other = data.load(name, seed=0), data.load(name, seed=0), data.load(name, seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_test, other.x_test)
    small = data.load(name, validation_fraction=0.1, test_fraction=0.1)
    n = sum(len(p) for p in (small.x_train, small.x_val, small.x_test))
    assert n == {"breast_cancer": 569, "diabetes": 442}[name]
    assert len(small.x_test) == int(np.ceil(0.1 * n))  # scikit-learn rounds the test part up


def test_output_units_per_task():
    z = np.zeros((4, 3), "float32")
    def splits(y, task, classes):
        return data.Splits(z, y, z, y, z, y, classes, ["a"] * classes, "d", task)
    assert splits(np.zeros(4, "int32"), "multiclass", 5).output_units == 5
    assert splits(np.zeros(4, "int32"), "binary", 2).output_units == 1
    assert splits(np.zeros((4, 6), "float32"), "multilabel", 6).output_units == 6
    assert splits(np.zeros(4, "float32"), "regression", 1).output_units == 1
    assert splits(np.zeros((4, 2), "float32"), "regression", 2).output_units == 2
    # positional construction without a task: multiclass, as before
    old = data.Splits(z, np.zeros(4, "int32"), z, z, z, z, 3, ["a", "b", "c"], "old")
    assert old.task == "multiclass" and old.output_units == 3 and old.target_scale is None
    assert old.summary().endswith(", 3 classes")
    assert splits(np.zeros((4, 6), "float32"), "multilabel", 6).summary().endswith(
        "multilabel (6 labels)")
    assert splits(np.zeros((4, 2), "float32"), "regression", 2).summary().endswith(
        "regression (2 targets)")


# --- .npz files of every kind --------------------------------------------------------------


def _npz(tmp_path, name="d", **arrays):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return str(path)


X = np.random.default_rng(0).random((60, 5), dtype=np.float32)


def test_npz_multi_hot_labels_are_multilabel(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random((60, 3)) < 0.4).astype("float32")
    y[0] = [1, 1, 0]  # rows need not sum to 1
    s = data.load(_npz(tmp_path, x_train=X, y_train=y), test_fraction=0.2)
    assert s.task == "multilabel" and s.num_classes == 3 and s.output_units == 3
    assert s.y_train.dtype == np.float32 and s.y_train.shape == (len(s.x_train), 3)
    assert s.class_names == ["0", "1", "2"] and s.summary().endswith("multilabel (3 labels)")
    # the rows are kept (no argmax): every original row is among the splits
    rows = {tuple(r) for r in np.concatenate([s.y_train, s.y_val, s.y_test])}
    assert rows == {tuple(r) for r in y}
    # integer multi-hot rows too (they were argmaxed before)
    assert data.load(_npz(tmp_path, "i", x_train=X, y_train=y.astype("int64"))).task == \
        "multilabel"


def test_npz_float_targets_are_regression_kept_as_they_are(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.normal(5.0, 2.0, 60)
    s = data.load(_npz(tmp_path, x_train=X, y_train=y), validation_fraction=0.1,
                  test_fraction=0.25)
    assert s.task == "regression" and s.num_classes == 1 and s.output_units == 1
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (39, 6, 15)
    assert s.y_train.dtype == np.float32 and s.y_train.ndim == 1
    assert s.class_names == ["target"] and s.target_scale is None
    np.testing.assert_allclose(np.sort(np.concatenate([s.y_train, s.y_val, s.y_test])),
                               np.sort(y).astype("float32"))  # not standardized
    # x rows still pair with their targets after the (random, unstratified) split
    by_row = {tuple(r): t for r, t in zip(X, y.astype("float32"))}
    assert all(by_row[tuple(r)] == t for r, t in zip(s.x_test, s.y_test))
    two = data.load(_npz(tmp_path, "two", x_train=X, y_train=rng.normal(size=(60, 2)),
                         class_names=np.array(["height", "weight"])))
    assert two.task == "regression" and two.y_train.shape[1:] == (2,) and two.output_units == 2
    assert two.class_names == ["height", "weight"]
    # whole-number targets that are not the class indices 0..K-1: regression
    assert data.load(_npz(tmp_path, "w", x_train=X, y_train=np.arange(60) * 2.0 + 25)).task \
        == "regression"


def test_npz_class_labels_stay_multiclass(tmp_path):
    y = np.arange(60) % 3
    for name, labels in (("int", y), ("float", y.astype("float64")),
                         ("onehot", np.eye(3, dtype="float32")[y])):
        s = data.load(_npz(tmp_path, name, x_train=X, y_train=labels))
        assert s.task == "multiclass" and s.num_classes == 3 and s.y_train.dtype == np.int32
        assert s.summary().endswith(", 3 classes")
        assert np.bincount(s.y_test).tolist() == [4, 4, 4]  # stratified


def test_npz_task_entry_overrides_detection_and_is_checked(tmp_path):
    y01 = np.arange(60) % 2
    s = data.load(_npz(tmp_path, "b", x_train=X, y_train=y01, task=np.array("binary")))
    assert s.task == "binary" and s.num_classes == 2 and s.output_units == 1
    assert s.y_train.dtype == np.int32 and s.class_names == ["0", "1"]
    assert np.bincount(s.y_test).tolist() == [6, 6]  # stratified
    r = data.load(_npz(tmp_path, "r", x_train=X, y_train=np.arange(60) % 4,
                       task=np.array(["regression"])))
    assert r.task == "regression" and r.y_train.dtype == np.float32
    with pytest.raises(DataError, match=r"y_train: task 'binary' needs labels 0 or 1 of shape "
                                        r"\(N,\) or \(N, 1\); found shape \(60,\), values from "
                                        r"0 to 2\. Map the classes to 0 / 1"):
        data.load(_npz(tmp_path, "b3", x_train=X, y_train=np.arange(60) % 3, task="binary"))
    with pytest.raises(DataError, match=r"task must be one string, one of 'multiclass', "
                                        r"'binary', 'multilabel', 'regression'; got"):
        data.load(_npz(tmp_path, "t", x_train=X, y_train=y01, task="classification"))
    with pytest.raises(DataError, match=r"task 'multilabel' needs rows of values in \[0, 1\]"):
        data.load(_npz(tmp_path, "m", x_train=X, y_train=np.arange(60) % 3, task="multilabel"))
    with pytest.raises(DataError, match="class_names has 2 names but the multilabel labels "
                                        "have 3 labels"):
        data.load(_npz(tmp_path, "n", x_train=X, y_train=np.eye(3)[np.arange(60) % 3],
                       task="multilabel", class_names=np.array(["a", "b"])))


def test_npz_non_finite_targets_name_the_split_and_rows(tmp_path):
    y = np.linspace(0, 1, 60) * 7.3
    bad = y.copy()
    bad[[3, 17]] = np.nan
    with pytest.raises(DataError, match=r"y_train has NaN or infinite values in 2 sample\(s\), "
                                        r"e\.g\. rows \[3, 17\]"):
        data.load(_npz(tmp_path, x_train=X, y_train=bad))
    val = y[:10].copy()
    val[4] = np.inf
    with pytest.raises(DataError, match=r"y_val has NaN or infinite values in 1 sample\(s\), "
                                        r"e\.g\. rows \[4\]"):
        data.load(_npz(tmp_path, "v", x_train=X, y_train=y, x_val=X[:10], y_val=val))
    with pytest.raises(DataError, match="different label shapes"):
        data.load(_npz(tmp_path, "s", x_train=X, y_train=np.zeros((60, 2)) + 0.3,
                       x_val=X[:4], y_val=np.zeros(4) + 0.3))


def test_npz_feature_vectors_pass_unchanged_and_images_are_scaled(tmp_path):
    features = np.random.default_rng(3).normal(50, 20, (60, 7))
    s = data.load(_npz(tmp_path, "f", x_train=features, y_train=np.arange(60) % 2))
    assert s.input_shape == (7,) and s.x_train.dtype == np.float32
    rows = {tuple(r) for r in features.astype("float32")}
    assert all(tuple(r) in rows for r in s.x_train) and s.x_train.max() > 50  # not rescaled
    counts = np.arange(60 * 4).reshape(60, 4).astype("int32")
    c = data.load(_npz(tmp_path, "c", x_train=counts, y_train=np.arange(60) % 2))
    assert c.input_shape == (4,) and c.x_train.max() > 200  # integer features keep values
    pixels = np.full((60, 4), 255, np.uint8)
    assert data.load(_npz(tmp_path, "p", x_train=pixels, y_train=np.arange(60) % 2)
                     ).x_train.max() == 1.0  # uint8: flattened pixels, / 255
    images = np.full((60, 3, 3), 51, np.int32)
    i = data.load(_npz(tmp_path, "i", x_train=images, y_train=np.arange(60) % 2))
    assert i.input_shape == (3, 3, 1)
    np.testing.assert_allclose(i.x_train, 0.2)


# --- the labels check per output kind ------------------------------------------------------


def dense(units, inputs=4):
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(units)])


X4 = np.zeros((4, 4), "float32")


def check(y, model, outputs, where="fit"):
    return data.check_training_arrays(X4, y, model, where, outputs)


@pytest.mark.parametrize("kind, units, y", [
    ("binary", 1, np.array([0, 1, -1, 1])),
    ("binary", 1, np.array([[0], [1], [1], [0]])),
    ("binary", 1, np.array([0.0, 0.25, 1.0, 0.9], "float32")),
    ("binary", 1, np.array([True, False, True, True])),
    ("multilabel", 3, np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], "float32")),
    ("multilabel", 3, np.full((4, 3), 0.5)),
    ("regression", 1, np.array([-3.5, 0.0, 1e3, 2.0])),
    ("regression", 1, np.array([[-3.5], [0.0], [1e3], [2.0]])),
    ("regression", 2, np.ones((4, 2), "float32")),
    ("multiclass", 3, np.array([0, 2, -1, 1])),
    ("multiclass", 3, np.eye(3, dtype="float32")[[0, 1, 2, 0]]),
    ("multiclass", 3, np.array([0.0, 2.0, 1.0, -1.0])),
])
def test_good_labels_of_each_kind_pass(kind, units, y):
    assert check(y, dense(units), [Output("out", kind, units)]) is None


@pytest.mark.parametrize("kind, units, y, message", [
    ("binary", 1, np.array([0, 1, 2, 1]),
     (r"^fit: binary labels must be 0 or 1 \(or -1 for an unlabeled sample\); found values "
      r"from 0 to 2\. Map the classes to 0 / 1")),
    ("binary", 1, np.array([0.0, 1.5, 1.0, 0.0]),
     (r"^fit: binary labels must be 0 or 1, or soft labels \(probabilities\) in \[0, 1\]; "
      r"found values from 0 to 1.5")),
    ("binary", 1, np.zeros((4, 2), "int32"),
     (r"^fit: binary labels must have shape \(N,\) or \(N, 1\), one 0 / 1 label per sample; "
      r"got \(4, 2\)\. For several independent labels use a multilabel output")),
    ("multilabel", 3, np.array([0, 1, 2, 1]),
     (r"^fit: multilabel labels must have shape \(N, 3\), one column per label; got \(4,\)\. "
      r"Encode each sample's labels as a multi-hot row")),
    ("multilabel", 3, np.ones((4, 4)), r"must have shape \(N, 3\).*got \(4, 4\)"),
    ("multilabel", 3, np.full((4, 3), 2.0),
     (r"^fit: multilabel labels must be values in \[0, 1\] \(1: the label applies\); found "
      r"values from 2 to 2")),
    ("regression", 1, np.array([0.0, np.nan, 1.0, np.inf]),
     (r"^fit: the labels have NaN or infinite values in 2 sample\(s\), e\.g\. rows \[1, 3\]\. "
      r"Drop those samples")),
    ("regression", 2, np.zeros(4),
     (r"^fit: regression targets must have shape \(N, 2\), one per unit of the output \(2\); "
      r"got \(4,\)")),
    ("regression", 1, np.zeros((4, 3)), r"must have shape \(N,\) or \(N, 1\).*got \(4, 3\)"),
    ("regression", 1, np.array(["a", "b", "c", "d"]), r"^fit: the labels hold <U1 values"),
    ("regression", 1, np.zeros(3), r"^fit: x has 4 samples but the labels have 3"),
    ("multiclass", 3, np.array([0, 1, 3, 1]),
     (r"^fit: labels must be class indices in \[0, 2\] \(or -1 for an unlabeled sample\); found "
      r"values from 0 to 3\. The output 'out' has 3 classes")),
    ("multiclass", 3, np.zeros((4, 4), "float32"),
     (r"^fit: one-hot \(or soft\) labels must have shape \(N, 3\), one column per class; got "
      r"\(4, 4\)")),
    ("multiclass", 3, np.zeros((4, 2), "int32"),
     r"^fit: class-index labels must have shape \(N,\) or \(N, 1\); got \(4, 2\)"),
])
def test_bad_labels_of_each_kind_are_refused_with_shape_or_range(kind, units, y, message):
    with pytest.raises(ValueError, match=message):
        check(y, dense(units), [Output("out", kind, units)])


def test_sequence_output_takes_steps_of_class_indices_with_padding():
    inputs = keras.Input((6, 4))
    tagger = keras.Model(inputs, keras.layers.Dense(5)(inputs))  # (None, 6, 5)
    tags = [Output("tags", "multiclass", 5, positions=1)]
    x = np.zeros((3, 6, 4), "float32")
    y = np.array([[0, 4, 2, -1, -1, -1], [1, 1, 1, 1, 1, 1], [3, -1, -1, -1, -1, -1]])
    assert data.check_training_arrays(x, y, tagger, "fit", tags) is None
    assert data.check_training_arrays(x, y[..., None], tagger, "fit", tags) is None
    assert data.check_training_arrays(x, np.eye(5, dtype="float32")[np.maximum(y, 0)], tagger,
                                      "fit", tags) is None
    with pytest.raises(ValueError, match=r"^fit: class-index labels must have shape \(N, 6\) "
                                         r"or \(N, 6, 1\); got \(3, 5\)"):
        data.check_training_arrays(x, y[:, :5], tagger, "fit", tags)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\] \(or -1 for an unlabeled "
                                         r"sample or position\); found values from -1 to 5"):
        data.check_training_arrays(x, np.where(y == 4, 5, y), tagger, "fit", tags)
    binary_steps = [Output("tags", "binary", 1, positions=1)]
    one = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    assert data.check_training_arrays(x, (y > 0).astype("int32"), one, "fit",
                                      binary_steps) is None
    with pytest.raises(ValueError, match=r"binary labels must have shape \(N, 6\) or \(N, 6, 1\)"):
        data.check_training_arrays(x, np.zeros((3,), "int32"), one, "fit", binary_steps)


def _two_outputs():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"cls": keras.layers.Dense(3)(inputs),
                                 "reg": keras.layers.Dense(1)(inputs)})
    return model, [Output("cls", "multiclass", 3), Output("reg", "regression", 1)]


def test_two_output_model_checks_each_output_by_name():
    model, outs = _two_outputs()
    good = {"cls": np.array([0, 1, 2, 0]), "reg": np.array([0.5, -1.0, 2.0, 3.0])}
    assert check(good, model, outs) is None
    assert check([good["cls"], good["reg"]], model, outs) is None
    assert check({"reg": good["reg"]}, model, outs) is None  # an output without labels
    with pytest.raises(ValueError, match=r"^validation_data: output 'cls': labels must be class "
                                         r"indices in \[0, 2\].*from 0 to 7"):
        check({**good, "cls": np.array([0, 7, 1, 1])}, model, outs, "validation_data")
    with pytest.raises(ValueError, match=r"^fit: output 'reg': the labels have NaN"):
        check({**good, "reg": np.array([0.0, np.nan, 1.0, 1.0])}, model, outs)
    with pytest.raises(ValueError, match=r"^fit: output 'reg': regression targets must have "
                                         r"shape \(N,\) or \(N, 1\)"):
        check([good["cls"], np.zeros((4, 2))], model, outs)
    with pytest.raises(ValueError, match=r"the labels name outputs \['class'\] that the student "
                                         r"does not have; its outputs are \['cls', 'reg'\]"):
        check({"class": good["cls"]}, model, outs)
    with pytest.raises(ValueError, match=r"a list of 1 arrays for 2 outputs"):
        check([good["cls"]], model, outs)
    with pytest.raises(ValueError, match=r"one array of shape \(4,\), but the student has 2 "
                                         r"outputs \['cls', 'reg'\]; give a dict"):
        check(good["cls"], model, outs)


def test_cached_teacher_outputs_are_skipped_but_their_labels_checked():
    model, outs = _two_outputs()
    teacher = {"cls": np.zeros((4, 3)), "reg": np.zeros((4, 1))}
    good = {"cls": np.array([0, 1, 2, 0]), "reg": np.zeros(4)}
    assert check({"labels": good, "teacher_outputs": teacher}, model, outs) is None
    assert check({"teacher_outputs": teacher}, model, outs) is None
    with pytest.raises(ValueError, match=r"^fit: output 'cls': labels must be class indices"):
        check({"labels": {**good, "cls": np.array([5, 0, 0, 0])}, "teacher_outputs": teacher},
              model, outs)
    # without outputs: the labels of the cached form are checked as class labels
    with pytest.raises(ValueError, match=r"^fit: labels must be class indices in \[0, 2\]"):
        data.check_training_arrays(X4, {"labels": np.array([0, 3, 1, 1]),
                                        "teacher_outputs": np.zeros((4, 3))}, dense(3), "fit")


# --- the tabular teacher --------------------------------------------------------------------


def test_mlp_presets_take_feature_vectors():
    from keras_distill.presets import PRESETS, student_mlp, teacher_mlp

    teacher = teacher_mlp((30,), 1)
    assert teacher.output_shape == (None, 1)
    assert teacher.get_layer("logits").activation.__name__ == "linear"
    assert [layer.name for layer in teacher.layers if "hidden" in layer.name] == [
        "hidden1", "hidden2"]
    assert teacher.count_params() == 30 * 64 + 64 + 64 * 64 + 64 + 64 + 1
    assert teacher_mlp((10,), 3, units=8).output_shape == (None, 3)
    assert PRESETS["teacher_mlp"] is teacher_mlp
    student = student_mlp((30,), 1, units=8)
    assert student.output_shape == (None, 1)
    assert student(np.zeros((2, 30), "float32")).shape == (2, 1)


def test_teacher_mlp_learns_breast_cancer():
    from keras_distill.presets import teacher_mlp

    s = data.load("breast_cancer")
    keras.utils.set_random_seed(0)
    model = teacher_mlp(s.input_shape, s.output_units)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
    model.fit(s.x_train, s.y_train.astype("float32"), epochs=5, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(s.x_val, s.y_val.astype("float32"), verbose=0)
    assert accuracy > 0.9, accuracy
