"""Ensembles, cached teacher outputs, teachers from files, unlabeled and augmented data."""

import os
import subprocess
import sys
import textwrap
from typing import ClassVar

import keras
import numpy as np
import pytest
from helpers import agreement, dense_model, hidden_softmax

from keras_distill import Distiller
from keras_distill.presets import student_mlp, teacher_cnn
from keras_distill.teachers import (
    Ensemble,
    FileTeacher,
    cache_outputs,
    fingerprint,
    teacher_outputs,
)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)




@pytest.fixture
def x6():
    return np.random.default_rng(0).normal(size=(20, 6)).astype("float32")


def test_ensemble_averages_probabilities_by_weight(x6):
    a, b = dense_model(4, 1, "a"), dense_model(4, 2, "b", softmax=True)
    c = keras.Sequential([dense_model(4, 3, "c_logits"), hidden_softmax()], name="c")
    ens = Ensemble([a, b, c], weights=[1, 2, 1])
    za = a.predict(x6, verbose=0)
    pb, pc = b.predict(x6, verbose=0), c.predict(x6, verbose=0)
    expected = (np_softmax(za) + 2 * pb + pc) / 4
    np.testing.assert_allclose(ens.predict(x6, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert ens.outputs_probabilities


def test_ensemble_averages_logits(x6):
    a, b = dense_model(4, 1, "a"), dense_model(4, 2, "b", softmax=True)
    ens = Ensemble([a, b], weights=[3, 1], average="logits")
    expected = (3 * a.predict(x6, verbose=0) + np.log(b.predict(x6, verbose=0))) / 4
    np.testing.assert_allclose(ens.predict(x6, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert not ens.outputs_probabilities


def test_ensemble_is_a_keras_model_that_evaluates(digits, trained_teacher):
    other = teacher_cnn(digits.input_shape, 10, width=8)
    other.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    other.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    ens = Ensemble([trained_teacher, other])
    ens.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    acc = ens.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)["accuracy"]
    assert acc > 0.9


def test_ensemble_rejects_bad_arguments(x6):
    with pytest.raises(ValueError, match="one per member"):
        Ensemble([dense_model(4, 1, "a"), dense_model(4, 2, "b")], weights=[1])
    with pytest.raises(ValueError, match="'probabilities' or 'logits'"):
        Ensemble([dense_model(4, 1, "a")], average="mean")
    with pytest.raises(ValueError, match="disagree on the output shape"):
        Ensemble([dense_model(4, 1, "a"), dense_model(3, 2, "b")])


def test_distiller_with_a_list_of_teachers_and_save_load(tmp_path, digits, trained_teacher):
    other = teacher_cnn(digits.input_shape, 10, width=8, name="small_teacher")
    other.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    other.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    student = student_mlp(digits.input_shape, 10)
    d = Distiller([trained_teacher, other], student, teacher_weights=[2, 1])
    assert int(d._teacher_kind.numpy()) == 1  # an ensemble of probabilities, known statically
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    d.fit(digits.x_train, digits.y_train, epochs=5, verbose=0)
    ens_pred = d.teacher.predict(digits.x_test, verbose=0)
    assert agreement(student.predict(digits.x_test, verbose=0), ens_pred) > 0.85
    d.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    np.testing.assert_allclose(loaded.teacher.predict(digits.x_test, verbose=0), ens_pred,
                               rtol=1e-5, atol=1e-6)


class _CountingTeacherLayer(keras.layers.Layer):
    """Counts the samples it sees, in a variable (works inside compiled functions)."""

    def build(self, input_shape):
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                    name="seen")

    def call(self, x):
        self.seen.assign_add(keras.ops.cast(keras.ops.shape(x)[0], "float32"))
        return x


def counting_teacher(teacher):
    counter = _CountingTeacherLayer()
    inputs = keras.Input(teacher.input_shape[1:])
    return keras.Model(inputs, teacher(counter(inputs))), counter


def test_cached_fit_matches_uncached_and_runs_the_teacher_once(digits, trained_teacher):
    n, epochs = len(digits.x_train), 3
    results = {}
    for cached in (False, True):
        teacher, counter = counting_teacher(trained_teacher)
        keras.utils.set_random_seed(7)
        student = student_mlp(digits.input_shape, 10)
        d = Distiller(teacher, student)
        d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
        history = d.fit(digits.x_train, digits.y_train, epochs=epochs, batch_size=64,
                        verbose=0, cache_teacher=cached)
        results[cached] = (student.get_weights(), history.history, float(counter.seen.numpy()))
    assert results[False][2] == n * epochs  # the teacher ran every step of every epoch
    assert results[True][2] == n  # once per sample
    for a, b in zip(results[False][0], results[True][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert results[True][1]["accuracy"] == pytest.approx(results[False][1]["accuracy"],
                                                         abs=1e-3)


def test_cache_on_disk_is_reused_and_a_stale_cache_is_not(tmp_path, digits):
    teacher = teacher_cnn(digits.input_shape, 10, width=4)
    x = digits.x_train[:200]
    out1, info1 = teacher_outputs(teacher, x, cache_dir=tmp_path)
    assert not info1["reused"] and os.path.exists(info1["path"])
    out2, info2 = teacher_outputs(teacher, x, cache_dir=tmp_path)
    assert info2["reused"] and info2["key"] == info1["key"]
    np.testing.assert_array_equal(out1, out2)
    # Other teacher weights: other key, recomputed.
    teacher.layers[-1].kernel.assign(teacher.layers[-1].kernel * 2.0)
    out3, info3 = teacher_outputs(teacher, x, cache_dir=tmp_path)
    assert not info3["reused"] and info3["key"] != info1["key"]
    assert not np.allclose(out3, out1)
    np.testing.assert_allclose(out3, teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # Other data: other key.
    assert fingerprint(teacher, x[:100]) != fingerprint(teacher, x)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".partial")]


def test_fit_cache_dir_records_what_was_used(tmp_path, digits, trained_teacher):
    d = Distiller(trained_teacher, student_mlp(digits.input_shape, 10))
    d.compile("adam")
    d.fit(digits.x_train, digits.y_train, epochs=1, verbose=0, cache_teacher=True,
          cache_dir=tmp_path)
    assert d.cache_info["reused"] is False
    d.fit(digits.x_train, digits.y_train, epochs=1, verbose=0, cache_teacher=True,
          cache_dir=tmp_path)
    assert d.cache_info["reused"] is True


def test_teacher_from_a_saved_model_file_through_the_cache(tmp_path, digits, trained_teacher):
    path = tmp_path / "teacher_savedmodel"
    trained_teacher.export(str(path), format="tf_saved_model", verbose=False)
    file_teacher = FileTeacher(path)
    np.testing.assert_allclose(file_teacher.predict(digits.x_test),
                               trained_teacher.predict(digits.x_test, verbose=0), atol=1e-4)
    student = student_mlp(digits.input_shape, 10)
    d = Distiller(file_teacher, student)
    d.compile(keras.optimizers.Adam(1e-2))
    with pytest.raises(ValueError, match="cache_teacher=True"):
        d.fit(digits.x_train, digits.y_train, epochs=1, verbose=0)
    d.fit(digits.x_train, digits.y_train, epochs=6, verbose=0, cache_teacher=True)
    teacher_pred = trained_teacher.predict(digits.x_test, verbose=0)
    assert agreement(student.predict(digits.x_test, verbose=0), teacher_pred) > 0.85


def test_teacher_known_only_by_its_outputs(digits, trained_teacher):
    """Logits computed elsewhere: Distiller(None, student) on a cache_outputs dataset."""
    ds = cache_outputs(trained_teacher, digits.x_train, digits.y_train, batch_size=64, seed=0)
    student = student_mlp(digits.input_shape, 10)
    d = Distiller(None, student)
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    history = d.fit(ds, epochs=6, verbose=0)
    assert history.history["accuracy"][-1] > 0.85
    assert agreement(student.predict(digits.x_test, verbose=0),
                     trained_teacher.predict(digits.x_test, verbose=0)) > 0.85
    with pytest.raises(ValueError, match="no Keras teacher"):
        d.fit(digits.x_train, digits.y_train, epochs=1, verbose=0)


def test_labels_below_zero_are_unlabeled(digits, trained_teacher):
    x, y = digits.x_train[:64], digits.y_train[:64].copy()
    d = Distiller(trained_teacher, student_mlp(digits.input_shape, 10), alpha=0.5)
    d.compile("sgd", metrics=["accuracy"])
    full = d.evaluate(x[:32], y[:32], batch_size=64, verbose=0, return_dict=True)
    y[32:] = -1
    mixed = d.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    # The label loss and accuracy count only the labeled half; distillation counts all rows.
    assert mixed["student_loss"] == pytest.approx(full["student_loss"] / 2, rel=1e-5)
    assert mixed["accuracy"] == pytest.approx(full["accuracy"], rel=1e-6)
    both = d.evaluate(x, digits.y_train[:64], batch_size=64, verbose=0, return_dict=True)
    assert mixed["distillation_loss"] == pytest.approx(both["distillation_loss"], rel=1e-6)


class _Recorder(keras.layers.Layer):
    seen: ClassVar[dict] = {}

    def call(self, x):
        if not isinstance(x, keras.KerasTensor):  # record real batches, not symbolic ones
            _Recorder.seen.setdefault(self.name, []).append(keras.ops.convert_to_numpy(x))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def recording(model, name):
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(_Recorder(name=name)(inputs)))


@pytest.mark.parametrize("kind", ["augment", "mixup"])
def test_teacher_and_student_see_the_same_augmented_inputs(kind, x6):
    teacher, student = (recording(dense_model(4, 1, "t"), "t_rec"),
                        recording(dense_model(4, 2, "s"), "s_rec"))
    kwargs = ({"augment": lambda x: x + 1.0} if kind == "augment" else {"mixup": 0.4})
    d = Distiller(teacher, student, **kwargs)
    d.compile("sgd", run_eagerly=True)
    _Recorder.seen.clear()
    y = np.arange(20) % 4
    d.fit(x6, y, batch_size=20, epochs=1, verbose=0, shuffle=False)
    t_in, s_in = _Recorder.seen["t_rec"][0], _Recorder.seen["s_rec"][0]
    np.testing.assert_array_equal(t_in, s_in)
    assert not np.allclose(t_in, x6)
    if kind == "augment":
        np.testing.assert_allclose(t_in, x6 + 1.0, rtol=1e-6)
    # Evaluation is not augmented.
    _Recorder.seen.clear()
    d.evaluate(x6, y, batch_size=20, verbose=0)
    np.testing.assert_array_equal(_Recorder.seen["t_rec"][0], x6)


def test_cache_with_a_feature_hint_is_refused(digits, trained_teacher):
    from keras_distill import losses
    from keras_distill.presets import student_cnn

    d = Distiller(trained_teacher, student_cnn(digits.input_shape, 10),
                  losses=["kl", losses.FeatureHint("relu3", "conv1")])
    d.compile("adam")
    with pytest.raises(ValueError, match="cannot be combined with feature-hint losses"):
        d.fit(digits.x_train, digits.y_train, epochs=1, verbose=0, cache_teacher=True)
    ds = cache_outputs(trained_teacher, digits.x_train[:64], digits.y_train[:64])
    with pytest.raises(ValueError, match="cannot feed feature-hint losses"):
        d.fit(ds, epochs=1, verbose=0)


def test_cache_with_augmentation_is_refused(digits, trained_teacher):
    d = Distiller(trained_teacher, student_mlp(digits.input_shape, 10),
                  augment=keras.layers.RandomTranslation(0.1, 0.1))
    d.compile("adam")
    with pytest.raises(ValueError, match="cannot be combined with augment"):
        d.fit(digits.x_train, digits.y_train, epochs=1, verbose=0, cache_teacher=True)
    ds = cache_outputs(trained_teacher, digits.x_train[:64], digits.y_train[:64])
    with pytest.raises(ValueError, match="cannot be used with augment"):
        d.fit(ds, epochs=1, verbose=0)


def test_augmented_distillation_trains_and_saves(tmp_path, digits, trained_teacher):
    student = student_mlp(digits.input_shape, 10)
    d = Distiller(trained_teacher, student, mixup=0.2,
                  augment=keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant"))
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    d.fit(digits.x_train, digits.y_train, epochs=4, verbose=0)
    acc = d.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)["accuracy"]
    assert acc > 0.8
    d.save(tmp_path / "aug.keras")
    loaded = keras.saving.load_model(tmp_path / "aug.keras")
    assert isinstance(loaded.augment, keras.layers.RandomTranslation) and loaded.mixup == 0.2


MIRRORED = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_distill import Distiller
    from keras_distill.teachers import cache_outputs
    from keras_distill.presets import teacher_cnn, student_mlp
    rng = np.random.default_rng(0)
    x = rng.random((256, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 256).astype("int32")

    def run(strategy, cached, binary=False):
        classes = 1 if binary else 10
        labels = (y % 2) if binary else y
        with strategy.scope():
            keras.utils.set_random_seed(0)
            teacher = teacher_cnn((8, 8, 1), classes, width=4)
            student = student_mlp((8, 8, 1), classes)
            d = Distiller(teacher, student)  # binary: the kind is read from the labels at fit
            d.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
        data = (cache_outputs(teacher, x, labels, batch_size=64, shuffle=False) if cached
                else tf.data.Dataset.from_tensor_slices((x, labels)).batch(64))
        h = d.fit(data, epochs=2, verbose=0)
        return [w.tolist() for w in student.get_weights()], h.history["loss"]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": mirrored.num_replicas_in_sync,
           "single": run(tf.distribute.get_strategy(), False),
           "mirrored": run(mirrored, False),
           "mirrored_cached": run(mirrored, True),
           "single_binary": run(tf.distribute.get_strategy(), False, True),
           "mirrored_binary": run(mirrored, False, True)}
    json.dump(out, open(sys.argv[1], "w"))
""")


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device(tmp_path):
    script, result = tmp_path / "mirrored.py", tmp_path / "out.json"
    script.write_text(MIRRORED)
    proc = subprocess.run([sys.executable, str(script), str(result)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    out = json.loads(result.read_text())
    assert out["replicas"] == 2
    for key, reference in (("mirrored", "single"), ("mirrored_cached", "single"),
                           ("mirrored_binary", "single_binary")):
        single_w, single_loss = out[reference]
        weights, loss = out[key]
        np.testing.assert_allclose(loss, single_loss, rtol=1e-4, err_msg=key)
        for a, b in zip(weights, single_w):
            np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-3, atol=1e-5,
                                       err_msg=key)


def test_load_teacher_is_safe_by_default(tmp_path):
    from keras_distill.teachers import load_teacher

    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="allow_unsafe=True"):
        load_teacher(tmp_path / "lambda.keras")
    loaded = load_teacher(tmp_path / "lambda.keras", allow_unsafe=True)
    np.testing.assert_allclose(loaded.predict(np.ones((1, 6), "float32"), verbose=0), 2.0)
    with pytest.raises(FileNotFoundError):
        load_teacher(tmp_path / "missing.keras")
