"""The Distiller's fast paths keep its numbers: XLA on and off, the ``jit_compile`` rule and its
fallback, several steps per execution (with the non-finite guard), a teacher in bfloat16
(``teacher_dtype``), and training under a mixed-precision policy."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import round_trip, same_weights

from keras_distill import Distiller
from keras_distill.distiller import xla
from keras_distill.presets import student_cnn

BATCH = 64


def _distiller(teacher, digits, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return Distiller(teacher, student_cnn(digits.input_shape, 10, width=8), temperature=4.0,
                     alpha=0.1, **kwargs)


def _one_step(teacher, digits, jit):
    """The loss terms of one batch before and after one training step, and the weights."""
    d = _distiller(teacher, digits)
    d.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
    x, y = digits.x_train[:BATCH], digits.y_train[:BATCH]
    before = d.test_on_batch(x, y, return_dict=True)
    d.train_on_batch(x, y)
    after = d.test_on_batch(x, y, return_dict=True)
    return before, after, d.student.get_weights()


@pytest.mark.slow
def test_xla_on_and_off_give_the_same_loss_on_one_batch(trained_teacher, digits):
    plain = _one_step(trained_teacher, digits, False)
    fused = _one_step(trained_teacher, digits, True)
    for a, b in zip(plain[:2], fused[:2]):
        for name in ("loss", "student_loss", "distillation_loss"):
            assert a[name] > 0
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, err_msg=name)
    for w, v in zip(plain[2], fused[2]):
        np.testing.assert_allclose(v, w, rtol=1e-4, atol=1e-6)
    assert not same_weights(plain[2], _distiller(trained_teacher, digits).student)  # it trained
    again = _one_step(trained_teacher, digits, True)
    assert same_weights(fused[2], again[2])  # two XLA runs on one machine: bit-identical


@pytest.mark.skipif(xla.accelerator_visible(), reason="the rule for CPU-only machines")
def test_jit_compile_auto_is_off_on_a_cpu_only_machine_and_try_is_on(trained_teacher, digits):
    d = _distiller(trained_teacher, digits)
    d.compile("adam")
    assert d.jit_compile is False
    d.compile("adam", jit_compile="try")
    assert d.jit_compile is True
    with pytest.raises(ValueError, match=r"jit_compile must be one of .*got 'yes'"):
        d.compile("adam", jit_compile="yes")


class PyIdentity(keras.layers.Layer):
    """An identity that runs in Python (``tf.numpy_function``): XLA cannot compile it."""

    def call(self, x):
        out = tf.numpy_function(lambda a: a, [x], tf.float32)
        out.set_shape(x.shape)
        return out


def _python_op_teacher(trained_teacher, digits):
    x = keras.Input(digits.input_shape)
    return keras.Model(x, trained_teacher(PyIdentity()(x)), name="py_teacher")


@pytest.mark.slow
def test_try_falls_back_to_no_xla_when_xla_cannot_compile_the_step(trained_teacher, digits):
    teacher = _python_op_teacher(trained_teacher, digits)
    histories, notes = {}, {}
    for jit in ("try", False):
        d = _distiller(teacher, digits)
        d.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            histories[jit] = d.fit(digits.x_train[:256], digits.y_train[:256], epochs=2,
                                   batch_size=BATCH, verbose=0, shuffle=False).history
        notes[jit] = [str(w.message) for w in caught if "XLA cannot compile" in str(w.message)]
        assert len(notes[jit]) == (1 if jit == "try" else 0), notes
        assert d.jit_compile is False
    print(notes["try"][0])
    assert "PyFunc" in notes["try"][0], notes
    np.testing.assert_allclose(histories["try"]["loss"], histories[False]["loss"], rtol=1e-6)
    d = _distiller(teacher, digits)
    d.compile(keras.optimizers.Adam(1e-3), jit_compile=True)  # asked for: the error is raised
    with pytest.raises(Exception, match="XLA|unsupported operations"):
        d.fit(digits.x_train[:128], digits.y_train[:128], epochs=1, batch_size=BATCH,
              verbose=0)


@pytest.mark.slow
def test_a_fallback_in_the_validation_pass_keeps_fit_going(trained_teacher, digits):
    """Cached outputs: the train step (no teacher) compiles under XLA, the validation step (the
    teacher runs) does not; fit falls back there and trains on to the end."""
    d = _distiller(_python_op_teacher(trained_teacher, digits), digits)
    d.compile(keras.optimizers.Adam(1e-3), jit_compile="try")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = d.fit(digits.x_train[:256], digits.y_train[:256], epochs=3,
                        batch_size=BATCH, verbose=0, cache_teacher=True,
                        validation_data=(digits.x_val[:64], digits.y_val[:64])).history
    assert sum("XLA cannot compile" in str(w.message) for w in caught) == 1
    assert len(history["loss"]) == len(history["val_loss"]) == 3
    assert d.jit_compile is False and d.optimizer.iterations.numpy() == 3 * 4


def test_train_on_batch_stops_on_a_non_finite_step_and_recovers(trained_teacher, digits):
    d = _distiller(trained_teacher, digits)
    d.compile(keras.optimizers.Adam(1e-3))
    x, y = digits.x_train[:BATCH].copy(), digits.y_train[:BATCH]
    before = d.student.get_weights()
    x_bad = x.copy()
    x_bad[3] = np.nan
    with pytest.raises(FloatingPointError, match="became NaN or infinite"):
        d.train_on_batch(x_bad, y)
    assert same_weights(before, d.student)
    d.train_on_batch(x, y)  # a finite batch after it updates again
    assert not same_weights(before, d.student)


def test_compile_config_keeps_the_jit_compile_asked_for(trained_teacher, digits, tmp_path):
    d = _distiller(trained_teacher, digits)
    d.compile("adam", metrics=["accuracy"])
    d.fit(digits.x_train[:128], digits.y_train[:128], epochs=1, verbose=0)
    assert d.get_compile_config()["jit_compile"] == "auto"
    loaded = round_trip(d, tmp_path)
    assert loaded.jit_compile is d.jit_compile


@pytest.mark.slow
def test_steps_per_execution_trains_as_one_step_at_a_time(trained_teacher, digits):
    weights = []
    for every in (1, 8):
        d = _distiller(trained_teacher, digits)
        d.compile(keras.optimizers.Adam(1e-3), steps_per_execution=every)
        d.fit(digits.x_train[:640], digits.y_train[:640], epochs=2, batch_size=BATCH,
              verbose=0, shuffle=False)
        weights.append(d.student.get_weights())
    assert not same_weights(weights[0], _distiller(trained_teacher, digits).student)
    assert same_weights(*weights)  # the same updates in the same order: bit-identical


def test_a_nan_batch_inside_an_execution_stops_every_later_update(trained_teacher, digits):
    """With 4 steps per execution and a NaN in the second batch, the weights are those after
    the first batch alone: neither the bad step nor the two after it reach them."""
    x, y = digits.x_train[:4 * BATCH].copy(), digits.y_train[:4 * BATCH]
    x[BATCH + 3] = np.nan
    d = _distiller(trained_teacher, digits)
    d.compile(keras.optimizers.Adam(1e-3), steps_per_execution=4)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)  # not checked ahead
    with pytest.raises(FloatingPointError, match="became NaN or infinite"):
        d.fit(batches, epochs=1, verbose=0)
    one = _distiller(trained_teacher, digits)
    one.compile(keras.optimizers.Adam(1e-3))
    one.fit(x[:BATCH], y[:BATCH], epochs=1, batch_size=BATCH, verbose=0, shuffle=False)
    assert same_weights(d.student, one.student)


# --- teacher_dtype --------------------------------------------------------------------------

#: The largest relative change of the distillation loss with a bfloat16 teacher, on the digits
#: validation split (measured: 0.008% with an untrained student; bfloat16 keeps 8 bits of
#: mantissa).
TEACHER_DTYPE_RTOL = 0.02


def test_a_bfloat16_teacher_changes_the_distillation_loss_within_tolerance(trained_teacher,
                                                                           digits):
    scores = {}
    for dtype in (None, "bfloat16"):
        d = _distiller(trained_teacher, digits, teacher_dtype=dtype)
        d.compile("adam", metrics=["accuracy"])
        scores[dtype] = d.evaluate(digits.x_val, digits.y_val, verbose=0, return_dict=True)
    a, b = scores[None]["distillation_loss"], scores["bfloat16"]["distillation_loss"]
    assert a > 0 and a != b  # the teacher did run in another precision
    assert abs(b - a) / a < TEACHER_DTYPE_RTOL, (a, b)
    assert scores[None]["student_loss"] == scores["bfloat16"]["student_loss"]
    # the user's teacher is left in float32
    assert all(layer.dtype_policy.name == "float32" for layer in trained_teacher.layers)


def test_a_bfloat16_teacher_follows_the_teachers_weights(trained_teacher, digits, tmp_path):
    d = _distiller(trained_teacher, digits, teacher_dtype="bfloat16")
    d.compile("adam")
    reference = d.evaluate(digits.x_val, digits.y_val, verbose=0, return_dict=True)
    loaded = round_trip(d, tmp_path)  # weights loaded after the copy was made
    assert loaded.teacher_dtype == "bfloat16"
    again = loaded.evaluate(digits.x_val, digits.y_val, verbose=0, return_dict=True)
    np.testing.assert_allclose(again["distillation_loss"], reference["distillation_loss"],
                               rtol=1e-6)


def test_precision_copies_recast_nested_models_and_leave_integer_layers():
    from keras_distill.graph import all_layers
    from keras_distill.precision import float32_model, teacher_copy

    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)], name="inner")
    x = keras.Input((4,))
    teacher = keras.Model(x, keras.layers.Dense(3)(inner(x)))
    copy = teacher_copy(teacher, "bfloat16")
    dense = [layer for layer in all_layers(copy) if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 2 and all(layer.compute_dtype == "bfloat16" for layer in dense)
    assert same_weights(teacher, copy)
    tokens = keras.Input((5,), dtype="int32")
    with_int = keras.Model(tokens, keras.layers.Dense(2)(keras.layers.Embedding(10, 4)(tokens)))
    assert float32_model(with_int) is with_int  # nothing in low precision: left as it is


def test_teacher_dtype_is_checked():
    with pytest.raises(ValueError, match=r"teacher_dtype must be one of .*got 'int8'"):
        Distiller(None, keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
                  teacher_dtype="int8")


# --- mixed precision ------------------------------------------------------------------------

@pytest.mark.slow
def test_a_mixed_bfloat16_distiller_trains_and_its_student_exports(trained_teacher, digits,
                                                                   tmp_path):
    from keras_distill.export import export

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        student = student_cnn(digits.input_shape, 10)
        d = Distiller(trained_teacher, student, temperature=4.0, alpha=0.1)
        d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
        history = d.fit(digits.x_train, digits.y_train, epochs=8, batch_size=BATCH,
                        verbose=0).history
    finally:
        keras.config.set_dtype_policy("float32")
    assert student.layers[1].compute_dtype == "bfloat16"
    assert student.layers[1].variable_dtype == "float32"
    losses = history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
    scores = d.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)
    assert scores["accuracy"] > 0.85, scores
    report = export(student, tmp_path, formats=("tflite",), quantization=("float32", "int8"),
                    representative_data=digits.x_train[:200],
                    eval_data=(digits.x_test, digits.y_test))
    for mode in ("float32", "int8"):
        artifact = report.get("tflite", mode)
        assert artifact.ok, artifact.error
        assert abs(artifact.metrics["accuracy"] - scores["accuracy"]) < 0.03, (mode,
                                                                               artifact.metrics)


# --- the command line's teacher outputs, computed once ----------------------------------------

def _ctx(x_train, **cfg):
    import types

    settings = {"teacher_outputs": None, "cache_teacher": False,
                "losses": [{"name": "soft_target_kl"}], **cfg}
    return types.SimpleNamespace(cfg=settings, data=types.SimpleNamespace(x_train=x_train),
                                 out_dir="out")


def test_the_run_labels_in_memory_data_once_when_the_cache_is_exact(trained_teacher, digits):
    """In memory, with a teacher whose outputs are its logits, the run's distill stage labels
    the data once (same values); not for a teacher whose logits are read before a sigmoid
    (probabilities saturate in float32), not with a feature hint, not for streamed data."""
    from keras_distill.data import InMemory
    from keras_distill.pipeline.stages import cache_kwargs

    x = digits.x_train
    assert cache_kwargs(_ctx(x), trained_teacher) == {"cache_teacher": True}
    inputs = keras.Input((4,))
    sigmoid = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    assert cache_kwargs(_ctx(x), sigmoid) == {}
    hint = [{"name": "soft_target_kl"}, {"name": "feature_hint"}]
    assert cache_kwargs(_ctx(x, losses=hint), trained_teacher) == {}
    assert cache_kwargs(_ctx(InMemory(x)), trained_teacher) == {}
    assert cache_kwargs(_ctx(x, cache_teacher=True), trained_teacher)["cache_dir"].endswith(
        "cache")


def test_pruning_refuses_several_steps_per_execution(digits):
    """Pruning applies its masks after every batch: with 4 batches per call Keras would call it
    once per 4, and the weights between would not be pruned."""
    from keras_distill.compress import prune

    model, callback = prune(student_cnn(digits.input_shape, 10, width=8), target_sparsity=0.5)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=4)
    with pytest.raises(ValueError, match=r"steps_per_execution=4 .*compile it with "
                                         r"steps_per_execution=1"):
        model.fit(digits.x_train[:256], digits.y_train[:256], epochs=1, verbose=0,
                  callbacks=[callback])
