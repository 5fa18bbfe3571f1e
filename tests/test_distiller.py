"""The Distiller: loss values, what it trains, Keras integration, saving, and its errors."""

import os
from typing import ClassVar

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import agreement, dense_model, hidden_softmax, np_kl, np_log_softmax, round_trip

from keras_distill import Distiller, losses
from keras_distill.presets import student_cnn, student_mlp


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 4, 32).astype("int32")
    return x, y


def hand_loss(teacher_logits, student_logits, y, alpha, temperature, weights=None):
    w = np.ones(len(y)) if weights is None else weights
    ce = -np_log_softmax(student_logits)[np.arange(len(y)), y]
    kl = np_kl(teacher_logits, student_logits, temperature)
    student = (w * ce).sum() / len(y)
    distill = (w * kl).sum() / len(y)
    return alpha * student + (1 - alpha) * distill, student, distill


@pytest.mark.parametrize("alpha,temperature", [(0.1, 4.0), (0.5, 1.0), (0.0, 8.0), (1.0, 2.0)])
def test_loss_equals_hand_computed_reference(small, alpha, temperature):
    x, y = small
    teacher, student = dense_model(4, 1, "t"), dense_model(4, 7, "s")
    d = Distiller(teacher, student, alpha=alpha, temperature=temperature)
    d.compile("sgd")
    got = d.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    total, ce, kl = hand_loss(teacher.predict(x, verbose=0).astype("float64"),
                              student.predict(x, verbose=0).astype("float64"), y, alpha,
                              temperature)
    tol = 2e-6 * temperature**2  # float32 rounding, amplified by the T² factor
    assert got["loss"] == pytest.approx(total, rel=1e-5, abs=tol)
    assert got["student_loss"] == pytest.approx(ce, rel=1e-5)
    assert got["distillation_loss"] == pytest.approx(kl, rel=1e-5, abs=tol)


def test_logged_losses_are_per_sample_means_whatever_the_batch_size(small):
    x, y = small
    d = Distiller(dense_model(4, 1, "t"), dense_model(4, 7, "s"))
    d.compile("sgd")
    whole = d.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    uneven = d.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)  # 12 + 12 + 8
    assert uneven == pytest.approx(whole, rel=1e-5)


@pytest.mark.parametrize("loss", [None, "sparse_categorical_crossentropy",
                                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                  keras.losses.sparse_categorical_crossentropy])
def test_student_loss_choices_read_logits(small, loss):
    x, y = small
    teacher, student = dense_model(4, 1, "t"), dense_model(4, 7, "s")
    d = Distiller(teacher, student, alpha=0.5)
    if callable(loss) and not isinstance(loss, keras.losses.Loss):
        def per_sample(y_true, y_pred):  # a plain function of (labels, logits)
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        loss = per_sample
    d.compile("sgd", loss=loss)
    got = d.evaluate(x, y, verbose=0, return_dict=True)
    _, ce, _ = hand_loss(teacher.predict(x, verbose=0).astype("float64"),
                         student.predict(x, verbose=0).astype("float64"), y, 0.5, 4.0)
    assert got["student_loss"] == pytest.approx(ce, rel=1e-5)


def test_sample_weights_weight_every_term(small):
    x, y = small
    teacher, student = dense_model(4, 1, "t"), dense_model(4, 7, "s")
    d = Distiller(teacher, student, alpha=0.3, temperature=2.0)
    d.compile("sgd")
    w = np.where(np.arange(len(y)) % 3 == 0, 0.0, 2.0)
    got = d.evaluate(x, y, sample_weight=w, batch_size=32, verbose=0, return_dict=True)
    total, ce, kl = hand_loss(teacher.predict(x, verbose=0).astype("float64"),
                              student.predict(x, verbose=0).astype("float64"), y, 0.3, 2.0, w)
    assert got["student_loss"] == pytest.approx(ce, rel=1e-5)
    assert got["distillation_loss"] == pytest.approx(kl, rel=1e-5)
    assert got["loss"] == pytest.approx(total, rel=1e-5)


def test_one_hot_labels_give_the_same_losses_as_integer_labels(small):
    x, y = small
    d = Distiller(dense_model(4, 1, "t"), dense_model(4, 7, "s"))
    d.compile("sgd", metrics=["accuracy"])
    sparse = d.evaluate(x, y, verbose=0, return_dict=True)
    d.compile("sgd", metrics=["accuracy"])  # "accuracy" resolves per label format, as in Keras
    onehot = d.evaluate(x, np.eye(4, dtype="float32")[y], verbose=0, return_dict=True)
    for key in ("loss", "student_loss", "distillation_loss", "accuracy"):
        assert onehot[key] == pytest.approx(sparse[key], rel=1e-6), key




@pytest.mark.parametrize("how", ["declared", "auto_static", "auto_first_batch"])
def test_probability_teacher_gives_the_same_loss_as_logit_teacher(small, how):
    x, y = small
    logit_teacher, student = dense_model(4, 1, "t"), dense_model(4, 7, "s")
    reference = Distiller(logit_teacher, student, teacher_outputs="logits", alpha=0.2)
    reference.compile("sgd")
    expected = reference.evaluate(x, y, verbose=0, return_dict=True)

    if how == "auto_first_batch":
        prob_teacher = keras.Sequential([logit_teacher, hidden_softmax()])
    else:
        prob_teacher = keras.Sequential([logit_teacher, keras.layers.Softmax()])
    outputs = "probabilities" if how == "declared" else "auto"
    d = Distiller(prob_teacher, student, teacher_outputs=outputs, alpha=0.2)
    if how == "auto_first_batch":
        assert int(d._teacher_kind.numpy()) == -1  # undecided until data is seen
    d.compile("sgd")
    got = d.evaluate(x, y, verbose=0, return_dict=True)
    assert int(d._teacher_kind.numpy()) == 1
    assert got["distillation_loss"] == pytest.approx(expected["distillation_loss"], rel=1e-5)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_auto_keeps_logits_for_a_logit_teacher(small):
    x, y = small
    d = Distiller(dense_model(4, 1, "t"), dense_model(4, 7, "s"))
    d.compile("sgd")
    d.evaluate(x, y, verbose=0)
    assert int(d._teacher_kind.numpy()) == 0


def test_teacher_is_bit_for_bit_unchanged_and_student_trains(digits, trained_teacher):
    teacher = trained_teacher
    before = {v.path: v.numpy().copy() for v in teacher.variables}
    assert any("moving_mean" in p for p in before)  # BatchNormalization statistics are checked
    student = student_cnn(digits.input_shape, 10)
    student_before = [v.numpy().copy() for v in student.trainable_variables]
    d = Distiller(teacher, student)
    d.compile(keras.optimizers.Adam(3e-3))
    d.fit(digits.x_train, digits.y_train, epochs=1, batch_size=64, verbose=0)
    for v in teacher.variables:
        np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
    changed = [not np.array_equal(a, v.numpy())
               for a, v in zip(student_before, student.trainable_variables)]
    assert all(changed)
    # The optimizer holds state for the student's variables only.
    n_student = sum(int(np.prod(v.shape)) for v in student.trainable_variables)
    n_slots = sum(int(np.prod(v.shape)) for v in d.optimizer.variables
                  if len(v.shape) > 0)
    assert n_slots == 2 * n_student  # Adam: one momentum and one velocity per weight


def test_distilled_student_agrees_with_teacher(digits, trained_teacher):
    student = student_cnn(digits.input_shape, 10)
    d = Distiller(trained_teacher, student, temperature=4.0, alpha=0.1)
    d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = d.fit(digits.x_train, digits.y_train, epochs=8, batch_size=64, verbose=0,
                    validation_data=(digits.x_val, digits.y_val))
    assert set(history.history) == {
        "loss", "student_loss", "distillation_loss", "accuracy",
        "val_loss", "val_student_loss", "val_distillation_loss", "val_accuracy"}
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    teacher_pred = trained_teacher.predict(digits.x_test, verbose=0)
    assert agreement(student.predict(digits.x_test, verbose=0), teacher_pred) > 0.9
    # predict and evaluate describe the student.
    np.testing.assert_allclose(d.predict(digits.x_test, verbose=0),
                               student.predict(digits.x_test, verbose=0), atol=1e-6)
    acc = d.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)["accuracy"]
    assert acc > 0.88


def test_unlabeled_data_distills_from_the_teacher_alone(digits, trained_teacher):
    student = student_mlp(digits.input_shape, 10)
    teacher_pred = trained_teacher.predict(digits.x_test, verbose=0)
    start = agreement(student.predict(digits.x_test, verbose=0), teacher_pred)
    # Without labels, nothing says that the linear outputs are class logits: declared.
    with pytest.raises(ValueError, match="task="):
        Distiller(trained_teacher, student).fit(digits.x_train, epochs=1, verbose=0)
    d = Distiller(trained_teacher, student, alpha=0.5, task="multiclass")
    d.compile(keras.optimizers.Adam(1e-2))
    history = d.fit(digits.x_train, epochs=6, batch_size=64, verbose=0)
    assert history.history["student_loss"] == [0.0] * 6
    assert history.history["loss"] == pytest.approx(history.history["distillation_loss"])
    end = agreement(student.predict(digits.x_test, verbose=0), teacher_pred)
    assert start < 0.5
    assert end > 0.85


def test_tf_data_dataset_with_sample_weights(digits, trained_teacher):
    ds = tf.data.Dataset.from_tensor_slices(
        (digits.x_train, digits.y_train, np.ones(len(digits.y_train), "float32"))
    ).batch(64)
    d = Distiller(trained_teacher, student_mlp(digits.input_shape, 10))
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    history = d.fit(ds, epochs=3, verbose=0)
    assert history.history["accuracy"][-1] > 0.8


def test_multiple_losses_are_weighted_and_logged(small):
    x, y = small
    teacher, student = dense_model(4, 1, "t"), dense_model(4, 7, "s")
    d = Distiller(teacher, student, losses=[losses.SoftTargetKL(), "hard_target_ce",
                                            losses.SoftTargetKL(temperature=1.0)],
                  loss_weights=[1.0, 0.5, 2.0], temperature=2.0)
    d.compile("sgd")
    got = d.evaluate(x, y, verbose=0, return_dict=True)
    assert {"soft_target_kl", "hard_target_ce", "soft_target_kl_1"} <= set(got)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    assert got["soft_target_kl"] == pytest.approx(
        float(losses.SoftTargetKL(temperature=2.0)(t, s)), rel=1e-5)  # inherits T=2
    assert got["soft_target_kl_1"] == pytest.approx(
        float(losses.SoftTargetKL(temperature=1.0)(t, s)), rel=1e-5)  # keeps its own T
    assert got["distillation_loss"] == pytest.approx(
        got["soft_target_kl"] + 0.5 * got["hard_target_ce"] + 2.0 * got["soft_target_kl_1"],
        rel=1e-5)


def test_decoupled_kd_uses_the_true_labels(small):
    x, y = small
    teacher, student = dense_model(4, 1, "t"), dense_model(4, 7, "s")
    d = Distiller(teacher, student, losses=[losses.DecoupledKD()], temperature=3.0)
    d.compile("sgd")
    got = d.evaluate(x, y, verbose=0, return_dict=True)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    expected = float(keras.ops.mean(losses.decoupled_kd(t, s, y, 1.0, 8.0, 3.0)))
    assert got["distillation_loss"] == pytest.approx(expected, rel=1e-5)


class _Counting(keras.layers.Layer):
    calls: ClassVar[dict] = {}

    def call(self, x):
        _Counting.calls[self.name] = _Counting.calls.get(self.name, 0) + 1
        return x


def test_feature_hints_train_an_adapter_outside_the_student(digits, trained_teacher):
    student = student_mlp(digits.input_shape, 10)
    n_params = student.count_params()
    d = Distiller(trained_teacher, student,
                  losses=[losses.SoftTargetKL(), losses.FeatureHint("features", "hidden")],
                  loss_weights=[1.0, 0.5])
    assert d.hint_adapters[0] is not None  # 32 student units -> 128 teacher units
    adapter_before = [w.numpy().copy() for w in d.hint_adapters[0].weights]
    d.compile(keras.optimizers.Adam(3e-3))
    first = d.evaluate(digits.x_train, digits.y_train, verbose=0, return_dict=True)
    d.fit(digits.x_train, digits.y_train, epochs=4, batch_size=64, verbose=0)
    last = d.evaluate(digits.x_train, digits.y_train, verbose=0, return_dict=True)
    assert last["feature_hint"] < 0.7 * first["feature_hint"]
    assert any(not np.array_equal(a, w.numpy())
               for a, w in zip(adapter_before, d.hint_adapters[0].weights))
    assert student.count_params() == n_params  # the adapter is not part of the student


def test_feature_hints_resize_feature_maps(digits, trained_teacher):
    student = student_cnn(digits.input_shape, 10)
    # teacher relu3: 4x4x64; student conv1: 8x8x8 -> resize to 4x4, project to 64 channels
    d = Distiller(trained_teacher, student, losses=[losses.FeatureHint("relu3", "conv1")])
    assert d.hint_adapters[0].output_shape == (None, 4, 4, 64)
    d.compile("adam")
    history = d.fit(digits.x_train[:256], digits.y_train[:256], epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_each_model_runs_once_per_step_with_hints():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, name="t_hidden")(_Counting(name="t_count")(inputs))
    teacher = keras.Model(inputs, keras.layers.Dense(4)(h))
    inputs = keras.Input((6,))
    h = keras.layers.Dense(3, name="s_hidden")(_Counting(name="s_count")(inputs))
    student = keras.Model(inputs, keras.layers.Dense(4)(h))
    d = Distiller(teacher, student, losses=["kl", losses.FeatureHint("t_hidden", "s_hidden")])
    d.compile("sgd", run_eagerly=True)
    _Counting.calls.clear()
    x = np.zeros((40, 6), "float32")
    d.fit(x, np.zeros(40, "int32"), batch_size=10, epochs=1, verbose=0)
    assert _Counting.calls == {"t_count": 4, "s_count": 4}  # 4 steps, one pass of each


def test_callbacks_early_stopping_checkpoint_tensorboard(tmp_path, digits, trained_teacher):
    student = student_mlp(digits.input_shape, 10)
    d = Distiller(trained_teacher, student)
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    ckpt = tmp_path / "best.weights.h5"
    # min_delta=0.3: the run stops once an epoch improves val_loss by less than 0.3.
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=0.3,
                                         restore_best_weights=True)
    callbacks = [
        stop,
        keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb")),
    ]
    history = d.fit(digits.x_train, digits.y_train, epochs=40, batch_size=64, verbose=0,
                    validation_data=(digits.x_val, digits.y_val), callbacks=callbacks)
    val = history.history["val_loss"]
    assert len(val) < 40 and stop.stopped_epoch > 0  # stopped early
    restored = d.evaluate(digits.x_val, digits.y_val, verbose=0, return_dict=True)["loss"]
    assert stop.best in val and stop.best != val[-1]
    assert restored == pytest.approx(stop.best, rel=1e-4)  # the best weights were restored
    assert ckpt.exists()
    assert any("events" in name for _, _, files in os.walk(tmp_path / "tb") for name in files)


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_backup_and_restore_resumes_after_interruption(tmp_path, digits, trained_teacher):
    def make():
        keras.utils.set_random_seed(5)
        d = Distiller(trained_teacher, student_mlp(digits.input_shape, 10))
        d.compile(keras.optimizers.Adam(1e-2))
        return d

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    d = make()
    with pytest.raises(KeyboardInterrupt):
        d.fit(digits.x_train, digits.y_train, epochs=5, verbose=0,
              callbacks=[backup, _StopAt(2)])
    saved = [w.numpy().copy() for w in d.student.weights]
    d2 = make()
    history = d2.fit(digits.x_train, digits.y_train, epochs=5, verbose=0, callbacks=[backup])
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only: it resumed
    assert not all(np.array_equal(a, w.numpy()) for a, w in zip(saved, d2.student.weights))


def test_keras_round_trip_of_the_whole_distiller(tmp_path, digits, trained_teacher):
    student = student_mlp(digits.input_shape, 10)
    d = Distiller(trained_teacher, student, temperature=3.0, alpha=0.25,
                  losses=[losses.SoftTargetKL(), losses.FeatureHint("features", "hidden")],
                  loss_weights=[1.0, 0.1])
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    d.fit(digits.x_train, digits.y_train, epochs=1, verbose=0)
    loaded = round_trip(d, tmp_path, "distiller.keras")  # no custom_objects needed
    assert isinstance(loaded, Distiller)
    assert (loaded.temperature, loaded.alpha, loaded.loss_weights) == (3.0, 0.25, [1.0, 0.1])
    assert [type(loss) for loss in loaded.distillation_losses] == [
        losses.SoftTargetKL, losses.FeatureHint]
    np.testing.assert_array_equal(loaded.predict(digits.x_test, verbose=0),
                                  d.predict(digits.x_test, verbose=0))
    np.testing.assert_array_equal(loaded.teacher.predict(digits.x_test, verbose=0),
                                  trained_teacher.predict(digits.x_test, verbose=0))
    for a, b in zip(loaded.hint_adapters[0].weights, d.hint_adapters[0].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # It is compiled again and evaluates to the same numbers.
    assert loaded.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True) == \
        pytest.approx(d.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True),
                      rel=1e-5)


def test_the_student_saves_alone_without_the_teacher(tmp_path, digits, trained_teacher):
    student = student_cnn(digits.input_shape, 10)
    d = Distiller(trained_teacher, student)
    d.compile("adam")
    d.fit(digits.x_train[:128], digits.y_train[:128], epochs=1, verbose=0)
    d.student.save(tmp_path / "student.keras")
    loaded = keras.saving.load_model(tmp_path / "student.keras")
    assert loaded.count_params() == student.count_params()
    assert loaded.count_params() < trained_teacher.count_params() / 10
    assert {layer.name for layer in loaded.layers} == {layer.name for layer in student.layers}
    np.testing.assert_array_equal(loaded.predict(digits.x_test, verbose=0),
                                  student.predict(digits.x_test, verbose=0))


def test_get_config_round_trip():
    d = Distiller(dense_model(4, 1, "t"), dense_model(4, 7, "s"), temperature=2.5, alpha=0.3,
                  losses=["logit_mse"], teacher_outputs="logits")
    clone = Distiller.from_config(d.get_config())
    assert clone.get_config() == d.get_config()


# ------------------------------------------------------------------------------------------
# Errors before training
# ------------------------------------------------------------------------------------------


def test_different_output_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"teacher output shape \(None, 4\).*\(None, 3\)"):
        Distiller(dense_model(4, 1, "t"), dense_model(3, 2, "s"))


def test_different_input_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"teacher input shape \(None, 6\).*\(None, 5\)"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s", inputs=5))


@pytest.mark.parametrize("temperature", [0, -2.0, float("nan")])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a positive"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s"), temperature=temperature)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "x"])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must be .*\[0, 1\]"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s"), alpha=alpha)


def test_frozen_student_is_rejected():
    student = dense_model(4, 2, "s")
    student.trainable = False
    with pytest.raises(ValueError, match="no trainable weights.*student.trainable = True"):
        Distiller(dense_model(4, 1, "t"), student)


def test_student_ending_in_softmax_is_rejected():
    with pytest.raises(ValueError, match="ends in a softmax.*logits"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s", softmax=True))


def test_loss_weights_must_match_losses():
    with pytest.raises(ValueError, match="one weight per loss: 2 loss"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s"), losses=["kl", "mse"],
                  loss_weights=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s"), losses=["kl"],
                  loss_weights=[-1.0])


def test_bad_teacher_outputs_value():
    with pytest.raises(ValueError, match="'auto', 'logits', 'probabilities'"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s"), teacher_outputs="softmax")


def test_unknown_hint_layer_lists_available_names():
    with pytest.raises(ValueError, match=r"no layer named 'nope'.*Available layers: \['out'\]"):
        Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s"),
                  losses=[losses.FeatureHint("nope", "out")])


def test_compile_rejects_loss_weights_and_fit_requires_compile(small):
    d = Distiller(dense_model(4, 1, "t"), dense_model(4, 2, "s"))
    with pytest.raises(ValueError, match=r"must call `compile\(\)`"):
        d.fit(*small, verbose=0)
    with pytest.raises(ValueError, match="constructor"):
        d.compile("sgd", loss_weights=[1.0])


class _NaNAfter(keras.layers.Layer):
    def call(self, x):
        return x * float("nan")


def test_nan_teacher_outputs_are_not_masked():
    t = np.array([[np.nan, 0.0, 1.0]], "float32")
    s = np.zeros((1, 3), "float32")
    for loss in (losses.SoftTargetKL(), losses.DecoupledKD(), losses.LogitMSE()):
        assert np.isnan(float(loss(t, s))), loss.name


def test_non_finite_term_stops_fit_and_names_it(small):
    x, y = small
    teacher = keras.Sequential([dense_model(4, 1, "t"), _NaNAfter()])
    d = Distiller(teacher, dense_model(4, 2, "s"), teacher_outputs="logits")
    d.compile("sgd")
    with pytest.raises(FloatingPointError, match="'distillation_loss' term became NaN"):
        d.fit(x, y, verbose=0, epochs=1)


@pytest.mark.parametrize("case,match", [
    ("nan", r"NaN or infinite values in 2 sample\(s\), e.g. rows \[3, 7\].*nan_to_num"),
    ("inf", "NaN or infinite"),
    ("label_high", r"labels must be class indices in \[0, 3\].*from 0 to 9"),
    ("label_shape", r"shape \(N,\) or \(N, 1\)"),
    ("length", "x has 32 samples but the labels have 31"),
    ("input_shape", r"inputs of shape \(5,\) do not match the models' input shape \(6,\)"),
    ("empty", "x is empty"),
    ("onehot_cols", r"one-hot \(or soft\) labels must have shape \(N, 4\)"),
])
def test_bad_numpy_data_is_refused_before_training(small, case, match):
    x, y = small
    x, y = x.copy(), y.copy()
    if case == "nan":
        x[[3, 7], 0] = np.nan
    elif case == "inf":
        x[0, 0] = np.inf
    elif case == "label_high":
        y[0] = 9
    elif case == "label_shape":
        y = np.stack([y, y], 1)
    elif case == "length":
        y = y[:-1]
    elif case == "input_shape":
        x = x[:, :5]
    elif case == "empty":
        x, y = x[:0], y[:0]
    elif case == "onehot_cols":
        y = np.eye(3, dtype="float32")[y % 3]
    student = dense_model(4, 7, "s")
    before = [w.copy() for w in student.get_weights()]
    d = Distiller(dense_model(4, 1, "t"), student)
    d.compile("sgd")
    with pytest.raises(ValueError, match=match):
        d.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=match):
        d.evaluate(x, y, verbose=0)
    for a, b in zip(before, student.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing was trained
