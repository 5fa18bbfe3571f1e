"""The distillation losses per output kind (multiclass, binary, multi-label, regression; per
sample and per position) against NumPy references (float64), and which loss fits which kind."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_distill import losses, registry

KINDS = registry.OUTPUT_KINDS
MULTICLASS, BINARY, MULTILABEL, REGRESSION = KINDS

# --- NumPy references -----------------------------------------------------------------------


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_bernoulli_kl(t, s, temp):
    """T² · mean over units of KL(Bernoulli(σ(t/T)) ‖ Bernoulli(σ(s/T)))."""
    zt, zs = t / temp, s / temp
    log_p_t, log_q_t = -np_softplus(-zt), -np_softplus(zt)
    log_p_s, log_q_s = -np_softplus(-zs), -np_softplus(zs)
    kl = np.exp(log_p_t) * (log_p_t - log_p_s) + np.exp(log_q_t) * (log_q_t - log_q_s)
    return kl.mean(-1) * temp**2


def np_huber(t, s, delta):
    d = np.abs(t - s)
    return np.where(d <= delta, 0.5 * d**2, delta * (d - 0.5 * delta)).mean(-1)


def np_teacher_bounded(t, s, y, margin):
    y = y.reshape(s.shape)
    e_s, e_t = ((s - y) ** 2).mean(-1), ((t - y) ** 2).mean(-1)
    return np.where(e_s + margin > e_t, e_s, 0.0)


def rng_normal(shape, seed, scale=3.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# --- bernoulli_kl ---------------------------------------------------------------------------

SHAPES = [(8, 1), (8, 5), (4, 3, 5)]  # binary, multi-label, multi-label tagger (batch, steps)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bernoulli_kl_matches_numpy(shape, temperature):
    t, s = rng_normal(shape, 0), rng_normal(shape, 1)
    expected = np_bernoulli_kl(t.astype("float64"), s.astype("float64"), temperature)
    assert expected.shape == shape[:-1]
    got = numpy(losses.bernoulli_kl(t, s, temperature))
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    value = float(losses.BernoulliKL(temperature=temperature)(t, s))
    np.testing.assert_allclose(value, expected.mean(), rtol=1e-4)


def test_bernoulli_kl_one_unit_by_hand():
    """σ(2) = 0.8808 against σ(0) = 0.5 at T = 1, written out."""
    p, q = 1 / (1 + np.exp(-2.0)), 0.5
    by_hand = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    got = numpy(losses.bernoulli_kl(np.array([[2.0]], "float32"),
                                    np.zeros((1, 1), "float32"), 1.0))
    np.testing.assert_allclose(got, [by_hand], rtol=1e-5)
    # T² scaling: at T = 2 the logits are halved, and the KL is multiplied by 4.
    p2 = 1 / (1 + np.exp(-1.0))
    by_hand_t2 = 4 * (p2 * np.log(p2 / q) + (1 - p2) * np.log((1 - p2) / (1 - q)))
    got_t2 = numpy(losses.bernoulli_kl(np.array([[2.0]], "float32"),
                                       np.zeros((1, 1), "float32"), 2.0))
    np.testing.assert_allclose(got_t2, [by_hand_t2], rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bernoulli_kl_is_zero_for_equal_and_positive_for_different_logits(shape):
    t = rng_normal(shape, 2)
    np.testing.assert_allclose(numpy(losses.bernoulli_kl(t, t, 4.0)), 0.0, atol=1e-6)
    different = numpy(losses.bernoulli_kl(t, t + 1.0, 4.0))
    assert np.all(different > 1e-4), different


def test_bernoulli_kl_extreme_logits_give_finite_loss_and_gradients():
    t = tf.constant([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], tf.float32)
    s = tf.Variable([[-1e4, 1e4, 0.0], [1e4, -1e4, -5e3]], dtype=tf.float32)
    for temperature in (1.0, 4.0):
        with tf.GradientTape() as tape:
            value = losses.bernoulli_kl(t, s, temperature)
            total = tf.reduce_mean(value)
        grad = tape.gradient(total, s).numpy()
        assert np.all(np.isfinite(value.numpy())) and np.all(np.isfinite(grad)), (value, grad)
        # The student is maximally wrong on two units of three: about 2 · 1e4 / T per row,
        # times T², averaged over three units.
        expected = np_bernoulli_kl(t.numpy().astype("float64"), s.numpy().astype("float64"),
                                   temperature)
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-4)
        assert float(total) > 1e3 * temperature
        # Equal extreme logits: zero.
        same = losses.bernoulli_kl(t, tf.identity(t), temperature).numpy()
        np.testing.assert_allclose(same, 0.0, atol=1e-6)


def test_bernoulli_kl_with_a_certain_teacher_is_finite():
    """Infinite teacher logits (a sigmoid teacher's probability of exactly 0 or 1) give the
    limit: the term of the impossible outcome contributes nothing."""
    t = tf.constant([[np.inf, -np.inf]], tf.float32)
    s = tf.Variable([[1.0, -2.0]], dtype=tf.float32)
    with tf.GradientTape() as tape:
        value = losses.bernoulli_kl(t, s, 1.0)
    grad = tape.gradient(value, s).numpy()
    # KL(1 ‖ σ(1)) = −log σ(1); KL(0 ‖ σ(−2)) = −log(1 − σ(−2)) = softplus(−2).
    expected = 0.5 * (np_softplus(-1.0) + np_softplus(-2.0))
    np.testing.assert_allclose(value.numpy(), [expected], rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_bernoulli_kl_takes_the_distiller_s_temperature():
    assert losses.BernoulliKL().effective_temperature == 4.0
    assert losses.BernoulliKL().with_temperature(2.0).effective_temperature == 2.0
    assert losses.BernoulliKL(temperature=8.0).with_temperature(2.0).effective_temperature == 8.0
    with pytest.raises(ValueError, match="temperature"):
        losses.BernoulliKL(temperature=0)


# --- regression -----------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("shape", [(16, 1), (16, 3), (4, 3, 2)], ids=str)
def test_huber_to_teacher_matches_numpy(shape, delta):
    t, s = rng_normal(shape, 3), rng_normal(shape, 4)
    d = np.abs(t - s)
    assert (d <= delta).any() and (d > delta).any()  # both the quadratic and the linear part
    expected = np_huber(t.astype("float64"), s.astype("float64"), delta)
    got = numpy(losses.huber_to_teacher(t, s, delta))
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(losses.Huber(delta=delta)(t, s)), expected.mean(),
                               rtol=1e-5)


def test_huber_is_half_the_squared_error_near_the_teacher_and_linear_far_from_it():
    t = np.zeros((1, 2), "float32")
    s = np.array([[0.5, 10.0]], "float32")
    # 0.5 · 0.25 and 1 · (10 − 0.5), averaged
    np.testing.assert_allclose(numpy(losses.huber_to_teacher(t, s, 1.0)),
                               [(0.125 + 9.5) / 2], rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "wide", None, True])
def test_huber_delta_must_be_positive(bad):
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(delta=bad)


@pytest.mark.parametrize("margin", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("shape", [(32, 1), (32, 3), (4, 5, 2)], ids=str)
def test_teacher_bounded_regression_matches_numpy(shape, margin):
    t, s, y = rng_normal(shape, 5, 1.0), rng_normal(shape, 6, 1.0), rng_normal(shape, 7, 1.0)
    expected = np_teacher_bounded(t.astype("float64"), s.astype("float64"),
                                  y.astype("float64"), margin)
    assert (expected == 0).any() and (expected > 0).any()  # both cases occur
    got = numpy(losses.teacher_bounded_regression(t, s, y, margin))
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    loss = losses.TeacherBoundedRegression(margin=margin)
    np.testing.assert_allclose(numpy(loss.compute(t, s, y)), expected, rtol=1e-5, atol=1e-7)


def test_teacher_bounded_regression_counts_only_a_student_worse_than_the_teacher():
    y = np.array([1.0, 1.0, 1.0], "float32")  # (batch,) labels for a (batch, 1) output
    teacher = np.array([[1.5], [1.5], [1.5]], "float32")  # e_t = 0.25 everywhere
    student = np.array([[1.2], [3.0], [0.6]], "float32")  # e_s = 0.04, 4.0, 0.16
    got = numpy(losses.teacher_bounded_regression(teacher, student, y))
    np.testing.assert_allclose(got, [0.0, 4.0, 0.0], atol=1e-6)  # better: 0; worse: e_s
    # The margin: a student better than the teacher by less than the margin is still pulled.
    # Row 3 is better by 0.09: counted with margin 0.1, not with 0.05.
    np.testing.assert_allclose(numpy(losses.teacher_bounded_regression(teacher, student, y,
                                                                       0.1)),
                               [0.0, 4.0, 0.16], rtol=1e-5)
    np.testing.assert_allclose(numpy(losses.teacher_bounded_regression(teacher, student, y,
                                                                       0.05)),
                               [0.0, 4.0, 0.0], rtol=1e-5, atol=1e-7)
    # A margin above every gap counts every position: the plain squared error to the labels.
    np.testing.assert_allclose(numpy(losses.teacher_bounded_regression(teacher, student, y,
                                                                       10.0)),
                               [0.04, 4.0, 0.16], rtol=1e-5)


def test_teacher_bounded_regression_pulls_only_where_it_counts():
    y = tf.constant([1.0, 1.0])
    teacher = tf.constant([[1.5], [1.5]])
    student = tf.Variable([[1.2], [3.0]])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.teacher_bounded_regression(teacher, student, y))
    grad = tape.gradient(total, student).numpy()
    np.testing.assert_allclose(grad, [[0.0], [2 * (3.0 - 1.0)]], rtol=1e-6)


def test_teacher_bounded_regression_needs_labels_and_a_valid_margin():
    loss = losses.TeacherBoundedRegression()
    t = np.zeros((2, 1), "float32")
    with pytest.raises(ValueError, match="needs the labels.*without labels"):
        loss.compute(t, t)
    with pytest.raises(ValueError, match="needs the labels"):
        loss(t, t)  # as a plain Keras loss there are no labels either
    for bad in (-0.1, float("nan"), float("inf"), "some", None):
        with pytest.raises(ValueError, match="margin"):
            losses.TeacherBoundedRegression(margin=bad)


def test_logit_mse_is_the_squared_error_to_the_teacher_s_values():
    t, s = rng_normal((6, 1), 8), rng_normal((6, 1), 9)
    np.testing.assert_allclose(numpy(losses.logit_mse(t, s)),
                               ((t.astype("float64") - s) ** 2)[:, 0], rtol=1e-5)


# --- positions: only the last axis is reduced -----------------------------------------------


def test_decoupled_kd_per_position_equals_the_flattened_positions():
    batch, steps, classes = 3, 4, 6
    t, s = rng_normal((batch, steps, classes), 10), rng_normal((batch, steps, classes), 11)
    labels = np.random.default_rng(12).integers(0, classes, (batch, steps))
    flat = numpy(losses.decoupled_kd(t.reshape(-1, classes), s.reshape(-1, classes),
                                     labels.reshape(-1), 1.0, 8.0, 2.0))
    expected = flat.reshape(batch, steps)
    variants = {
        "indices": labels,
        "indices with a trailing 1": labels[..., None],
        "one-hot": np.eye(classes, dtype="float32")[labels],
    }
    for what, y in variants.items():
        got = numpy(losses.decoupled_kd(t, s, y, 1.0, 8.0, 2.0))
        assert got.shape == (batch, steps), what
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=what)
    # Without labels: the teacher's argmax at each position.
    np.testing.assert_allclose(numpy(losses.decoupled_kd(t, s, None, 1.0, 8.0, 2.0)),
                               numpy(losses.decoupled_kd(t, s, t.argmax(-1), 1.0, 8.0, 2.0)),
                               rtol=1e-6)
    # The rows are really different targets: a mismatch would show.
    assert not np.allclose(expected, numpy(losses.decoupled_kd(t, s, (labels + 1) % classes,
                                                               1.0, 8.0, 2.0)))


def test_decoupled_kd_accepts_column_labels_for_a_batch_of_rows():
    t, s = rng_normal((5, 4), 13), rng_normal((5, 4), 14)
    labels = np.array([0, 3, 1, 2, 2])
    np.testing.assert_allclose(numpy(losses.decoupled_kd(t, s, labels[:, None])),
                               numpy(losses.decoupled_kd(t, s, labels)), rtol=1e-6)


def test_losses_with_labels_work_on_unknown_shapes_in_a_graph():
    """What the Distiller's compiled train_step sees: a batch (and steps) of unknown size."""
    dkd = tf.function(lambda t, s, y: losses.decoupled_kd(t, s, y), input_signature=[
        tf.TensorSpec((None, None, 6)), tf.TensorSpec((None, None, 6)),
        tf.TensorSpec((None, None), tf.int32)])
    t, s = rng_normal((2, 3, 6), 15), rng_normal((2, 3, 6), 16)
    y = np.random.default_rng(17).integers(0, 6, (2, 3)).astype("int32")
    np.testing.assert_allclose(dkd(t, s, y).numpy(), numpy(losses.decoupled_kd(t, s, y)),
                               rtol=1e-6)
    bounded = tf.function(lambda t, s, y: losses.teacher_bounded_regression(t, s, y),
                          input_signature=[tf.TensorSpec((None, 1)), tf.TensorSpec((None, 1)),
                                           tf.TensorSpec((None,))])
    np.testing.assert_allclose(bounded([[1.5], [1.5]], [[1.2], [3.0]], [1.0, 1.0]).numpy(),
                               [0.0, 4.0], atol=1e-6)


@pytest.mark.parametrize("fn", [
    lambda t, s, y: losses.soft_target_kl(t, s, 2.0),
    lambda t, s, y: losses.hard_target_ce(t, s),
    lambda t, s, y: losses.logit_mse(t, s),
    lambda t, s, y: losses.decoupled_kd(t, s, y),
    lambda t, s, y: losses.bernoulli_kl(t, s, 2.0),
    lambda t, s, y: losses.huber_to_teacher(t, s),
    lambda t, s, y: losses.teacher_bounded_regression(t, s, y.astype("float32")[..., None]
                                                      * np.ones(5, "float32")),
], ids=["soft_target_kl", "hard_target_ce", "logit_mse", "decoupled_kd", "bernoulli_kl",
        "huber_to_teacher", "teacher_bounded_regression"])
def test_every_logit_loss_reduces_only_the_last_axis(fn):
    batch, steps, units = 3, 4, 5
    t, s = rng_normal((batch, steps, units), 18), rng_normal((batch, steps, units), 19)
    y = np.random.default_rng(20).integers(0, units, (batch, steps))
    got = numpy(fn(t, s, y))
    assert got.shape == (batch, steps)
    flat = numpy(fn(t.reshape(-1, units), s.reshape(-1, units), y.reshape(-1)))
    np.testing.assert_allclose(got, flat.reshape(batch, steps), rtol=1e-5, atol=1e-6)


# --- which loss fits which kind -------------------------------------------------------------

FITS = {
    losses.SoftTargetKL: {MULTICLASS},
    losses.HardTargetCE: {MULTICLASS},
    losses.DecoupledKD: {MULTICLASS},
    losses.BernoulliKL: {BINARY, MULTILABEL},
    losses.LogitMSE: set(KINDS),
    losses.Huber: {REGRESSION},
    losses.TeacherBoundedRegression: {REGRESSION},
    losses.FeatureHint: set(KINDS),
}
SUGGESTED = {MULTICLASS: "SoftTargetKL", BINARY: "BernoulliKL", MULTILABEL: "BernoulliKL",
             REGRESSION: "LogitMSE"}


def instance(cls):
    return cls("features", "hidden") if cls is losses.FeatureHint else cls()


def test_kinds_and_labels_are_declared_on_every_loss():
    assert set(FITS) == set(losses.ALIASES.values())
    for cls, kinds in FITS.items():
        assert set(cls.kinds) == kinds, cls.__name__
        assert set(cls.kinds) <= set(KINDS)
    assert {cls for cls in FITS if cls.uses_labels} == {losses.DecoupledKD,
                                                          losses.TeacherBoundedRegression}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cls", list(FITS), ids=lambda cls: cls.__name__)
def test_check_kind_allows_what_fits_and_refuses_the_rest_naming_a_loss_that_fits(cls, kind):
    loss = instance(cls)
    if kind in FITS[cls]:
        assert losses.check_kind(loss, kind, "head") is None
        assert losses.check_kind(cls, kind, "head") is None
        return
    with pytest.raises(ValueError) as info:
        losses.check_kind(loss, kind, "head")
    message = str(info.value)
    assert cls.__name__ in message
    assert "'head'" in message and kind in message
    assert f"use {SUGGESTED[kind]} (the default for" in message
    fitting = {other.__name__ for other in FITS if kind in FITS[other]
               and other is not losses.FeatureHint}
    listed = message.rsplit(f". Losses that fit {kind} outputs: ", 1)[1]
    assert set(listed.rstrip(".").split(", ")) == fitting
    assert listed.startswith(SUGGESTED[kind])  # the default first


@pytest.mark.parametrize("cls,kind,why", [
    (losses.SoftTargetKL, BINARY,
     "a softmax over one logit is always 1, so this loss is identically zero"),
    (losses.HardTargetCE, BINARY, "identically zero"),
    (losses.DecoupledKD, BINARY, ">= 2 classes"),
    (losses.SoftTargetKL, REGRESSION, "values are not logits"),
    (losses.SoftTargetKL, MULTILABEL, "independent sigmoids"),
    (losses.BernoulliKL, MULTICLASS, "share one softmax"),
    (losses.BernoulliKL, REGRESSION, "values are not logits"),
    (losses.Huber, BINARY, "regression loss"),
    (losses.TeacherBoundedRegression, MULTILABEL, "labels are classes"),
])
def test_check_kind_says_why(cls, kind, why):
    with pytest.raises(ValueError, match=f"^{cls.__name__} cannot distil the output 'y', a "
                                         f"{kind} output: ") as info:
        losses.check_kind(cls(), kind, "y")
    assert why in str(info.value)


def test_check_kind_of_user_losses_and_unknown_kinds():
    class Mine(losses.DistillationLoss):  # says nothing: fits every kind
        pass

    class MyRegression(losses.DistillationLoss):
        kinds = (REGRESSION,)

    class MyKL(losses.SoftTargetKL):  # inherits SoftTargetKL's kinds and reasons
        pass

    for kind in KINDS:
        assert losses.check_kind(Mine(), kind, "y") is None
    with pytest.raises(ValueError, match="MyRegression .*'y', a binary output: it declares "
                                         "that it fits regression outputs only.*BernoulliKL"):
        losses.check_kind(MyRegression(), BINARY, "y")
    with pytest.raises(ValueError, match="MyKL .*identically zero"):
        losses.check_kind(MyKL(), BINARY, "y")
    with pytest.raises(ValueError, match="Unknown output kind 'ordinal'.*multiclass"):
        losses.check_kind(losses.LogitMSE(), "ordinal", "y")
    with pytest.raises(ValueError, match="Unknown output kind"):
        losses.default_for("auto")
    assert losses.fitting(REGRESSION) == ["LogitMSE", "Huber", "TeacherBoundedRegression"]


# --- defaults -------------------------------------------------------------------------------

DEFAULT_CASES = [  # (kind, output shape)
    (MULTICLASS, (6, 4)),
    (MULTICLASS, (2, 3, 4)),
    (BINARY, (6, 1)),
    (MULTILABEL, (6, 5)),
    (MULTILABEL, (2, 3, 5)),
    (REGRESSION, (6, 1)),
    (REGRESSION, (6, 3)),
]


@pytest.mark.parametrize("kind,shape", DEFAULT_CASES, ids=str)
def test_each_kind_s_default_is_positive_when_teacher_and_student_differ(kind, shape):
    loss = losses.default_for(kind)
    assert type(loss).__name__ == SUGGESTED[kind]
    assert losses.default_for(kind) is not loss  # a new instance each time
    losses.check_kind(loss, kind, "out")
    t, s = rng_normal(shape, 21), rng_normal(shape, 22)
    per_position = numpy(loss.compute(t, s))
    assert per_position.shape == shape[:-1]
    assert np.all(per_position > 1e-4), per_position
    np.testing.assert_allclose(numpy(loss.compute(t, t)), 0.0, atol=1e-6)


def test_softmax_losses_are_identically_zero_on_one_binary_logit():
    """Why binary outputs get BernoulliKL: a softmax over one logit is 1 whatever the logit."""
    t, s = rng_normal((8, 1), 23), rng_normal((8, 1), 24)
    assert not np.allclose(t, s)
    np.testing.assert_array_equal(numpy(losses.soft_target_kl(t, s, 4.0)), 0.0)
    np.testing.assert_array_equal(numpy(losses.hard_target_ce(t, s)), 0.0)
    bernoulli = numpy(losses.default_for(BINARY).compute(t, s))
    np.testing.assert_allclose(bernoulli, np_bernoulli_kl(t.astype("float64"),
                                                          s.astype("float64"), 4.0), rtol=1e-4)
    assert np.all(bernoulli > 0)


# --- names and serialization ----------------------------------------------------------------


def test_aliases_are_the_registry_s_names():
    assert list(losses.ALIASES) == list(registry.LOSS_ARGS)
    assert losses.ALIASES["bernoulli_kl"] is losses.BernoulliKL
    assert losses.ALIASES["huber"] is losses.Huber
    assert losses.ALIASES["teacher_bounded"] is losses.TeacherBoundedRegression


def test_get_resolves_the_new_names_with_their_defaults():
    bernoulli = losses.get("bernoulli_kl")
    assert isinstance(bernoulli, losses.BernoulliKL) and bernoulli.temperature is None
    assert bernoulli.name == "bernoulli_kl"
    huber = losses.get("Huber")
    assert isinstance(huber, losses.Huber) and huber.delta == 1.0 and huber.name == "huber"
    bounded = losses.get("teacher_bounded")
    assert isinstance(bounded, losses.TeacherBoundedRegression) and bounded.margin == 0.0
    assert bounded.name == "teacher_bounded"
    with pytest.raises(ValueError, match="BernoulliKL, Huber, TeacherBoundedRegression"):
        losses.get(3)


NEW_LOSSES = [losses.BernoulliKL(), losses.BernoulliKL(temperature=2.0, name="bkl"),
              losses.Huber(delta=0.5), losses.TeacherBoundedRegression(margin=0.25)]


@pytest.mark.parametrize("loss", NEW_LOSSES, ids=lambda loss: loss.name)
def test_serialization_round_trip_of_the_new_losses(loss):
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert isinstance(losses.get(config), type(loss))
    t, s, y = rng_normal((6, 3), 25), rng_normal((6, 3), 26), rng_normal((6, 3), 27)
    np.testing.assert_allclose(numpy(restored.compute(t, s, y)), numpy(loss.compute(t, s, y)),
                               rtol=1e-7)


def test_our_huber_is_not_keras_huber_after_a_round_trip():
    config = keras.saving.serialize_keras_object(losses.Huber(delta=2.0))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is losses.Huber and restored.delta == 2.0
