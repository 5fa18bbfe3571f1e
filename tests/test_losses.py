"""Each distillation loss against a hand-computed NumPy reference (float64)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import np_kl, np_log_softmax
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_distill import losses

TEMPERATURES = [0.5, 1.0, 2.0, 4.0, 8.0]


def np_dkd(t, s, labels, alpha, beta, temp):
    pt, ps = np.exp(np_log_softmax(t / temp)), np.exp(np_log_softmax(s / temp))
    rows = np.arange(len(t))
    bt = np.stack([pt[rows, labels], 1 - pt[rows, labels]], -1)
    bs = np.stack([ps[rows, labels], 1 - ps[rows, labels]], -1)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum(-1)
    mask = np.ones_like(t, bool)
    mask[rows, labels] = False
    qt = np.where(mask, pt, 0) / np.where(mask, pt, 0).sum(-1, keepdims=True)
    qs = np.where(mask, ps, 0) / np.where(mask, ps, 0).sum(-1, keepdims=True)
    nckd = np.where(mask, qt * (np.log(np.where(mask, qt, 1)) - np.log(np.where(mask, qs, 1))),
                    0).sum(-1)
    return (alpha * tckd + beta * nckd) * temp**2


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(16, 10)) * 3).astype("float32"), \
        (rng.normal(size=(16, 10)) * 3).astype("float32")


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_soft_target_kl_matches_numpy_with_t_squared(logits, temperature):
    t, s = logits
    expected = np_kl(t.astype("float64"), s.astype("float64"), temperature)
    per_sample = np.asarray(losses.soft_target_kl(t, s, temperature))
    np.testing.assert_allclose(per_sample, expected, rtol=1e-4, atol=1e-5)
    value = float(losses.SoftTargetKL(temperature=temperature)(t, s))
    np.testing.assert_allclose(value, expected.mean(), rtol=1e-4)
    # The T² factor: the same softened distributions without it are T² times smaller.
    unscaled = (expected / temperature**2).mean()
    assert value == pytest.approx(unscaled * temperature**2, rel=1e-4)


def test_soft_target_kl_default_temperature_is_4(logits):
    t, s = logits
    np.testing.assert_allclose(float(losses.SoftTargetKL()(t, s)),
                               np_kl(t.astype("float64"), s.astype("float64"), 4.0).mean(),
                               rtol=1e-4)


def test_hard_target_ce_matches_numpy(logits):
    t, s = logits
    expected = -np_log_softmax(s.astype("float64"))[np.arange(len(t)), t.argmax(-1)]
    np.testing.assert_allclose(np.asarray(losses.hard_target_ce(t, s)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(losses.HardTargetCE()(t, s)), expected.mean(), rtol=1e-5)


def test_logit_mse_matches_numpy(logits):
    t, s = logits
    expected = ((t.astype("float64") - s) ** 2).mean(-1)
    np.testing.assert_allclose(np.asarray(losses.logit_mse(t, s)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(losses.LogitMSE()(t, s)), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 8.0])
@pytest.mark.parametrize("alpha,beta", [(1.0, 8.0), (0.5, 2.0), (1.0, 0.0)])
def test_decoupled_kd_matches_numpy(logits, temperature, alpha, beta):
    t, s = logits
    labels = np.random.default_rng(1).integers(0, 10, len(t))
    expected = np_dkd(t.astype("float64"), s.astype("float64"), labels, alpha, beta,
                      temperature)
    got = np.asarray(losses.decoupled_kd(t, s, labels, alpha, beta, temperature))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6 * temperature**2)
    # One-hot labels are the same labels.
    got_onehot = np.asarray(losses.decoupled_kd(t, s, np.eye(10)[labels].astype("float32"),
                                                alpha, beta, temperature))
    np.testing.assert_allclose(got_onehot, got, rtol=1e-6)
    loss = losses.DecoupledKD(alpha=alpha, beta=beta, temperature=temperature)
    np.testing.assert_allclose(float(keras.ops.mean(loss.compute(t, s, labels))),
                               expected.mean(), rtol=2e-4)


def test_decoupled_kd_decomposes_classical_kd(logits):
    """Zhao et al., eq. 5: KD = TCKD + (1 − p_t(target)) · NCKD."""
    t, s = logits
    labels = t.argmax(-1)
    temp = 2.0
    tckd = np.asarray(losses.decoupled_kd(t, s, labels, 1.0, 0.0, temp))
    nckd = np.asarray(losses.decoupled_kd(t, s, labels, 0.0, 1.0, temp))
    p_target = np.exp(np_log_softmax(t.astype("float64") / temp))[np.arange(len(t)), labels]
    kd = np.asarray(losses.soft_target_kl(t, s, temp))
    np.testing.assert_allclose(tckd + (1 - p_target) * nckd, kd, rtol=1e-4, atol=1e-5)


def test_decoupled_kd_without_labels_uses_teacher_argmax(logits):
    t, s = logits
    np.testing.assert_allclose(np.asarray(losses.decoupled_kd(t, s, None)),
                               np.asarray(losses.decoupled_kd(t, s, t.argmax(-1))), rtol=1e-6)


def test_feature_hint_matches_numpy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 3, 3, 5)).astype("float32")
    b = rng.normal(size=(4, 3, 3, 5)).astype("float32")
    expected = ((a.astype("float64") - b) ** 2).reshape(4, -1).mean(-1)
    np.testing.assert_allclose(np.asarray(losses.feature_hint(a, b)), expected, rtol=1e-5)


LOGIT_LOSSES = [losses.SoftTargetKL(temperature=4.0), losses.HardTargetCE(), losses.LogitMSE(),
                losses.DecoupledKD(temperature=4.0)]


@pytest.mark.parametrize("loss", LOGIT_LOSSES, ids=lambda loss: loss.name)
def test_extreme_logits_give_finite_loss_and_gradients(loss):
    t = tf.constant([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], tf.float32)
    s = tf.Variable([[-1e4, 1e4, 0.0], [1e4, -1e4, -5e3]], dtype=tf.float32)
    with tf.GradientTape() as tape:
        value = loss.compute(t, s, labels=tf.constant([0, 1]))
        total = tf.reduce_mean(value)
    grad = tape.gradient(total, s)
    assert np.all(np.isfinite(value.numpy())), value.numpy()
    assert np.all(np.isfinite(grad.numpy())), grad.numpy()
    assert float(total) > 0  # the student is maximally wrong: a large, finite loss


def test_kl_with_zero_probability_teacher_classes_is_finite():
    """Log-probabilities of -inf (a teacher probability of exactly 0) contribute nothing."""
    t = tf.constant([[0.0, -np.inf, 1.0]], tf.float32)
    s = tf.Variable([[0.5, 0.1, 0.2]], dtype=tf.float32)
    with tf.GradientTape() as tape:
        value = losses.soft_target_kl(t, s, 1.0)
    grad = tape.gradient(value, s)
    expected = np_kl(np.array([[0.0, -1e30, 1.0]]), np.array([[0.5, 0.1, 0.2]]), 1.0)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5)
    assert np.all(np.isfinite(grad.numpy()))


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays("float32", (3, 5), elements=st.floats(-50, 50, width=32)),
    hnp.arrays("float32", (3, 5), elements=st.floats(-50, 50, width=32)),
    st.floats(-100, 100, width=32),
    st.sampled_from(TEMPERATURES),
)
def test_kl_properties(t, s, shift, temperature):
    kl = np.asarray(losses.soft_target_kl(t, s, temperature))
    assert np.all(kl >= -1e-4 * temperature**2)
    np.testing.assert_allclose(np.asarray(losses.soft_target_kl(t, t, temperature)), 0,
                               atol=1e-6)
    shifted = np.asarray(losses.soft_target_kl(t + shift, s - shift, temperature))
    np.testing.assert_allclose(shifted, kl, rtol=1e-3, atol=2e-3 * temperature**2)


def test_temperature_none_inherits_and_explicit_wins():
    inherited = losses.SoftTargetKL().with_temperature(2.0)
    assert inherited.effective_temperature == 2.0
    explicit = losses.SoftTargetKL(temperature=8.0).with_temperature(2.0)
    assert explicit.effective_temperature == 8.0
    assert losses.SoftTargetKL().effective_temperature == 4.0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "hot"])
def test_bad_temperature_is_rejected(bad):
    with pytest.raises(ValueError, match="temperature"):
        losses.SoftTargetKL(temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        losses.DecoupledKD(temperature=bad)


def test_bad_dkd_weights_and_hint_names_are_rejected():
    with pytest.raises(ValueError, match="beta"):
        losses.DecoupledKD(beta=-1)
    with pytest.raises(ValueError, match="teacher_layer"):
        losses.FeatureHint("", "x")


ALL_LOSSES = LOGIT_LOSSES + [losses.DecoupledKD(alpha=0.5, beta=2.0),
                             losses.FeatureHint("features", "hidden"), losses.SoftTargetKL()]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: loss.name)
def test_serialization_round_trip(loss, logits):
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    t, s = logits
    if not loss.uses_features:
        assert float(restored(t, s)) == pytest.approx(float(loss(t, s)))


def test_get_resolves_names_and_explains_unknown_ones():
    assert isinstance(losses.get("kl"), losses.SoftTargetKL)
    assert isinstance(losses.get("dkd"), losses.DecoupledKD)
    with pytest.raises(ValueError, match="soft_target_kl"):
        losses.get("kld")
    # a loss whose arguments have no default is named, with the class to use
    with pytest.raises(ValueError, match=r"needs teacher_layer and student_layer.*"
                                         r"FeatureHint\(teacher_layer=\.\.\., "):
        losses.get("feature_hint")


def test_logit_losses_work_in_plain_compile(logits):
    """Library use: a logit loss in model.compile, with teacher logits as targets."""
    t, _ = logits
    x = np.random.default_rng(3).normal(size=(16, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    model.compile("sgd", loss=losses.SoftTargetKL(temperature=2.0))
    before = model.evaluate(x, t, verbose=0)
    expected = np_kl(t.astype("float64"), model.predict(x, verbose=0).astype("float64"), 2.0)
    assert before == pytest.approx(expected.mean(), rel=1e-4)


@pytest.mark.parametrize("labels", [None, [0]])
def test_dkd_of_equal_distributions_at_large_logits_is_zero(labels):
    """Hypothesis found it: teacher logits [1e4, 1e4] and student [0, 0] are the same
    distribution, but the binary terms cancelled catastrophically in float32 (-5e-5 at T=0.5)
    until each row is shifted by its max."""
    t = np.array([[1e4, 1e4]], np.float32)
    s = np.zeros((1, 2), np.float32)
    y = None if labels is None else np.array(labels, np.int32)
    for temperature in (0.5, 4.0):
        dkd = keras.ops.convert_to_numpy(losses.decoupled_kd(t, s, y, 1.0, 8.0, temperature))
        assert np.abs(dkd).max() <= 1e-6, (temperature, dkd)

