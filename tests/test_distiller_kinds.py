"""The Distiller on every output kind: binary, multi-label, regression, positions, several outputs.

Losses are compared with NumPy references computed here; training tests assert agreement
with the teacher on held-out inputs after a short fit with ``alpha=0`` (distillation alone).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_distill import Distiller, losses
from keras_distill.teachers import cache_outputs

INPUTS = 8


def np_log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def np_bernoulli_kl(t, s, temp):
    """Mean over the last axis of KL(Bern(σ(t/T)) ‖ Bern(σ(s/T))), times T²."""
    t, s = t / temp, s / temp
    lt, ls = np_log_sigmoid(t), np_log_sigmoid(s)
    lnt, lns = np_log_sigmoid(-t), np_log_sigmoid(-s)
    kl = np.exp(lt) * (lt - ls) + np.exp(lnt) * (lnt - lns)
    return kl.mean(-1) * temp * temp


def np_kl(t, s, temp):
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lt, ls = log_softmax(t / temp), log_softmax(s / temp)
    return (np.exp(lt) * (lt - ls)).sum(-1) * temp * temp


def mlp(units, seed, name, activation=None, hidden=32, inputs=INPUTS):
    init = keras.initializers.GlorotUniform(seed=seed)
    x = keras.Input((inputs,))
    h = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init)(x)
    out = keras.layers.Dense(units, activation=activation, name="out",
                             kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1),
                             bias_initializer=keras.initializers.RandomNormal(seed=seed + 2))(h)
    return keras.Model(x, out, name=name)


def scaled(model, factor):
    """``model`` with its output layer's weights multiplied by ``factor`` (larger logits)."""
    layer = model.get_layer("out")
    layer.set_weights([w * factor for w in layer.get_weights()])
    return model


def twin_with(model, activation, name):
    """A copy of ``model`` whose output layer applies ``activation``: same logits inside."""
    twin = mlp(model.output_shape[-1], 0, name, activation=activation)
    twin.set_weights(model.get_weights())
    return twin


@pytest.fixture(scope="module")
def xs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(768, INPUTS)).astype("float32")


def trained(model, x, y, loss, epochs=40):
    model.compile(keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def distill(teacher, student, x, epochs=30, **kwargs):
    d = Distiller(teacher, student, alpha=0.0, **kwargs)
    d.compile(keras.optimizers.Adam(1e-2))
    d.fit(x, epochs=epochs, batch_size=64, verbose=0)
    return d


# --------------------------------------------------------------------------------------------
# The loss the Distiller computes, against NumPy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("units, kind", [(1, "binary"), (5, "multilabel")])
def test_binary_and_multilabel_loss_matches_numpy(xs, units, kind, temperature):
    teacher, student = mlp(units, 1, "t"), mlp(units, 7, "s")
    d = Distiller(teacher, student, task=kind, temperature=temperature, alpha=0.0)
    d.compile("sgd")
    got = d.evaluate(xs[:128], batch_size=128, verbose=0, return_dict=True)
    t = teacher.predict(xs[:128], verbose=0).astype("float64")
    s = student.predict(xs[:128], verbose=0).astype("float64")
    expected = np_bernoulli_kl(t, s, temperature).mean()
    assert isinstance(d.distillation_losses[0], losses.BernoulliKL)
    assert got["distillation_loss"] == pytest.approx(expected, rel=1e-5)
    assert got["distillation_loss"] > 1e-3  # never identically zero for one logit


def test_one_logit_with_softmax_kl_would_be_zero_and_is_refused(xs):
    teacher, student = mlp(1, 1, "t"), mlp(1, 7, "s")
    t = teacher.predict(xs[:32], verbose=0)
    s = student.predict(xs[:32], verbose=0)
    assert float(np.max(np.abs(losses.soft_target_kl(t, s, 4.0)))) == 0.0  # why it is refused
    with pytest.raises(ValueError, match="BernoulliKL"):
        Distiller(teacher, student, task="binary", losses=["kl"])


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_regression_loss_is_mse_to_the_teacher(xs, temperature):
    teacher, student = mlp(3, 1, "t"), mlp(3, 7, "s")
    y = xs[:128, :3] * 2.5  # float targets of the output's shape with a regression loss
    d = Distiller(teacher, student, temperature=temperature, alpha=0.25)
    d.compile("sgd", loss="mse")
    got = d.evaluate(xs[:128], y, batch_size=128, verbose=0, return_dict=True)
    t = teacher.predict(xs[:128], verbose=0).astype("float64")
    s = student.predict(xs[:128], verbose=0).astype("float64")
    assert [o.kind for o in d.output_kinds] == ["regression"]
    assert got["distillation_loss"] == pytest.approx(((t - s) ** 2).mean(), rel=1e-5)
    assert got["student_loss"] == pytest.approx(((y - s) ** 2).mean(), rel=1e-5)
    assert got["loss"] == pytest.approx(0.25 * got["student_loss"]
                                        + 0.75 * got["distillation_loss"], rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_positions_average_over_valid_positions(temperature):
    """(batch, steps, classes): KL per position, averaged over the positions not marked -1;
    the label loss likewise; a sample_weight of 0 marks padding the same way."""
    rng = np.random.default_rng(1)
    steps, classes = 6, 4
    x = rng.normal(size=(16, steps, 3)).astype("float32")
    y = rng.integers(0, classes, size=(16, steps)).astype("int32")
    lengths = rng.integers(2, steps + 1, size=16)
    pad = np.arange(steps)[None, :] >= lengths[:, None]
    y[pad] = -1

    def tagger(seed, name):
        inp = keras.Input((steps, 3))
        return keras.Model(inp, keras.layers.Conv1D(
            classes, 3, padding="same",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(inp), name=name)

    teacher, student = tagger(1, "t"), tagger(2, "s")
    d = Distiller(teacher, student, temperature=temperature, alpha=0.5)
    d.compile("sgd")
    got = d.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    t = teacher.predict(x, verbose=0).astype("float64")
    s = student.predict(x, verbose=0).astype("float64")
    valid = ~pad
    kl = np_kl(t, s, temperature)
    log_p = s - np.log(np.exp(s).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, np.maximum(y, 0)[..., None], -1)[..., 0]
    assert got["distillation_loss"] == pytest.approx(kl[valid].mean(), rel=1e-5)
    assert got["student_loss"] == pytest.approx(ce[valid].mean(), rel=1e-5)
    # the same padding given as a sample_weight of 0 (labels of padded steps set to 0)
    weighted = d.evaluate(x, np.maximum(y, 0), sample_weight=valid.astype("float32"),
                          batch_size=16, verbose=0, return_dict=True)
    assert weighted["distillation_loss"] == pytest.approx(got["distillation_loss"], rel=1e-5)
    assert weighted["student_loss"] == pytest.approx(got["student_loss"], rel=1e-5)


# --------------------------------------------------------------------------------------------
# Sigmoid probabilities become logits, never read as logits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dense_sigmoid", "activation_layer", "declared"])
def test_sigmoid_teacher_gives_the_logit_twins_loss(xs, form):
    """Logits up to about 15 in magnitude: the sigmoid teacher's loss equals its logit
    twin's within 1e-4 (read before the activation, which is exact)."""
    logit_teacher = scaled(mlp(3, 1, "t"), 6.0)
    z = logit_teacher.predict(xs, verbose=0)
    assert 10 < np.abs(z).max() < 40
    mask = np.abs(z).max(-1) <= 15
    x = xs[mask][:256]
    student = mlp(3, 7, "s")
    reference = Distiller(logit_teacher, student, task="multilabel", alpha=0.0)
    reference.compile("sgd")
    expected = reference.evaluate(x, batch_size=256, verbose=0, return_dict=True)
    if form == "dense_sigmoid":
        teacher = twin_with(logit_teacher, "sigmoid", "t_sigmoid")
        d = Distiller(teacher, student, alpha=0.0)  # the sigmoid says: multi-label
    else:
        teacher = keras.Sequential([logit_teacher, keras.layers.Activation("sigmoid")])
        d = Distiller(teacher, student, alpha=0.0, task="multilabel",
                      teacher_outputs="probabilities" if form == "declared" else "auto")
    d.compile("sgd")
    got = d.evaluate(x, batch_size=256, verbose=0, return_dict=True)
    assert [o.kind for o in d.output_kinds] == ["multilabel"]
    assert abs(got["distillation_loss"] - expected["distillation_loss"]) < 1e-4


def test_hidden_sigmoid_probabilities_are_converted_to_logits(xs):
    """A sigmoid that inspection cannot see: the first batch shows values in [0, 1], read as
    probabilities and turned into log-odds (close to the twin's loss, not the raw values')."""

    class HiddenSigmoid(keras.layers.Layer):
        def call(self, x):
            return 1.0 / (1.0 + keras.ops.exp(-x))

    logit_teacher = mlp(1, 1, "t")
    teacher = keras.Sequential([logit_teacher, HiddenSigmoid()])
    student = mlp(1, 7, "s")
    reference = Distiller(logit_teacher, student, task="binary", alpha=0.0)
    reference.compile("sgd")
    expected = reference.evaluate(xs, verbose=0, return_dict=True)["distillation_loss"]
    d = Distiller(teacher, student, task="binary", alpha=0.0)
    d.compile("sgd")
    got = d.evaluate(xs, verbose=0, return_dict=True)["distillation_loss"]
    assert int(d._teacher_kind.numpy()) == 1
    assert got == pytest.approx(expected, rel=1e-3)
    wrong = Distiller(teacher, student, task="binary", alpha=0.0, teacher_outputs="logits")
    wrong.compile("sgd")
    as_logits = wrong.evaluate(xs, verbose=0, return_dict=True)["distillation_loss"]
    assert abs(as_logits - expected) > 10 * abs(got - expected)


# --------------------------------------------------------------------------------------------
# Distillation alone teaches every kind
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_binary_student_learns_from_the_teacher_alone(xs):
    rng = np.random.default_rng(2)
    w = rng.normal(size=INPUTS)
    y = ((xs @ w) + 0.5 * np.sin(3 * xs[:, 0]) > 0).astype("int32")
    teacher = trained(mlp(1, 1, "t", activation="sigmoid"), xs[:512], y[:512],
                      "binary_crossentropy")
    student = mlp(1, 9, "s", hidden=16)
    held_out = xs[512:]
    t = teacher.predict(held_out, verbose=0)[:, 0] > 0.5
    start = np.mean((student.predict(held_out, verbose=0)[:, 0] > 0) == t)
    d = distill(teacher, student, xs[:512])
    end = np.mean((student.predict(held_out, verbose=0)[:, 0] > 0) == t)
    assert [o.kind for o in d.output_kinds] == ["binary"]
    assert start < 0.8
    assert end >= 0.9


@pytest.mark.slow
def test_multilabel_student_learns_from_the_teacher_alone(xs):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(INPUTS, 5))
    y = ((xs @ w) > 0.3).astype("float32")
    teacher = trained(mlp(5, 1, "t"), xs[:512], y[:512],
                      keras.losses.BinaryCrossentropy(from_logits=True))
    student = mlp(5, 9, "s", hidden=16)
    held_out = xs[512:]
    t = teacher.predict(held_out, verbose=0) > 0
    d = distill(teacher, student, xs[:512], task="multilabel")
    assert isinstance(d.distillation_losses[0], losses.BernoulliKL)
    end = np.mean((student.predict(held_out, verbose=0) > 0) == t)
    assert end >= 0.9


@pytest.mark.slow
def test_regression_student_learns_from_the_teacher_alone(xs):
    y = (np.sin(xs[:, :2]).sum(-1, keepdims=True) + 0.3 * xs[:, 2:3] ** 2).astype("float32")
    teacher = trained(mlp(1, 1, "t"), xs[:512], y[:512], "mse", epochs=60)
    student = mlp(1, 9, "s", hidden=16)
    held_out = xs[512:]
    t = teacher.predict(held_out, verbose=0)
    d = distill(teacher, student, xs[:512], task="regression", epochs=40)
    s = student.predict(held_out, verbose=0)
    r2 = 1 - ((t - s) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    assert isinstance(d.distillation_losses[0], losses.LogitMSE)
    assert r2 >= 0.8


@pytest.mark.slow
def test_sequence_student_agrees_per_step():
    rng = np.random.default_rng(4)
    steps, classes = 12, 4
    x = rng.normal(size=(640, steps, 3)).astype("float32")
    # the tag at each step depends on a window of neighbours
    window = x[..., 0] + np.roll(x[..., 1], 1, axis=1) - np.roll(x[..., 2], -1, axis=1)
    y = np.digitize(window, [-1.0, 0.0, 1.0]).astype("int32")

    def tagger(width, name, seed):
        inp = keras.Input((steps, 3))
        h = keras.layers.Conv1D(width, 3, padding="same", activation="relu",
                                kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(inp)
        return keras.Model(inp, keras.layers.Conv1D(classes, 1)(h), name=name)

    teacher = trained(tagger(32, "t", 1), x[:512], y[:512],
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student = tagger(8, "s", 2)
    held_out = x[512:]
    d = distill(teacher, student, x[:512], task="multiclass", epochs=30)
    t = teacher.predict(held_out, verbose=0).argmax(-1)
    s = student.predict(held_out, verbose=0).argmax(-1)
    assert d.output_kinds[0].positions == 1
    assert np.mean(t == s) >= 0.8


# --------------------------------------------------------------------------------------------
# Ambiguous or wrong combinations are refused, saying what to declare
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case, pattern", [
    ("linear one unit, nothing tells", "a binary logit or a regression value.*task="),
    ("linear units, nothing tells", "class logits.*regression values.*task="),
    ("binary with 3 units", "has 3 units, but a binary output has one"),
    ("multiclass with 1 unit", "cannot be a multiclass output"),
    ("kl on regression", "SoftTargetKL.*regression"),
    ("dkd on binary", "DecoupledKD.*binary"),
    ("student ends in sigmoid", "ends in a sigmoid.*Remove the sigmoid"),
    ("unknown task", "task must be one of"),
    ("output named labels", "outputs named \\['labels'\\]"),
    ("task for a missing output", "task names outputs \\['nope'\\]"),
])
def test_ambiguous_or_wrong_combinations_are_refused(xs, case, pattern):
    def run():
        if case == "linear one unit, nothing tells":
            Distiller(mlp(1, 1, "t"), mlp(1, 2, "s")).fit(xs, epochs=1, verbose=0)
        elif case == "linear units, nothing tells":
            Distiller(mlp(3, 1, "t"), mlp(3, 2, "s")).fit(xs, epochs=1, verbose=0)
        elif case == "binary with 3 units":
            Distiller(mlp(3, 1, "t"), mlp(3, 2, "s"), task="binary")
        elif case == "multiclass with 1 unit":
            Distiller(mlp(1, 1, "t"), mlp(1, 2, "s"), task="multiclass")
        elif case == "kl on regression":
            Distiller(mlp(1, 1, "t"), mlp(1, 2, "s"), task="regression", losses=["kl"])
        elif case == "dkd on binary":
            Distiller(mlp(1, 1, "t"), mlp(1, 2, "s"), task="binary", losses=["dkd"])
        elif case == "student ends in sigmoid":
            Distiller(mlp(1, 1, "t"), mlp(1, 2, "s", activation="sigmoid"))
        elif case == "unknown task":
            Distiller(mlp(1, 1, "t"), mlp(1, 2, "s"), task="ordinal")
        elif case == "output named labels":
            x = keras.Input((INPUTS,))
            two = keras.Model(x, {"labels": keras.layers.Dense(2)(x)})
            Distiller(None, two, task="multiclass")
        elif case == "task for a missing output":
            Distiller(mlp(1, 1, "t"), mlp(1, 2, "s"), task={"nope": "binary"})

    with pytest.raises(ValueError, match=pattern):
        run()


def test_detection_from_the_compiled_loss_and_from_labels(xs):
    d = Distiller(mlp(1, 1, "t"), mlp(1, 2, "s"))
    assert d.output_kinds is None
    d.compile("sgd", loss="binary_crossentropy")
    assert [o.kind for o in d.output_kinds] == ["binary"]
    d = Distiller(mlp(1, 1, "t"), mlp(1, 2, "s"))
    d.compile("sgd")
    d.fit(xs[:64], (xs[:64, 0] * 3).astype("float32"), epochs=1, verbose=0)  # float targets
    assert [o.kind for o in d.output_kinds] == ["regression"]
    d = Distiller(mlp(1, 1, "t", activation="sigmoid"), mlp(1, 2, "s"))  # the teacher says
    assert [o.kind for o in d.output_kinds] == ["binary"]


# --------------------------------------------------------------------------------------------
# Several outputs
# --------------------------------------------------------------------------------------------


def two_heads(width, name, seed):
    init = keras.initializers.GlorotUniform(seed=seed)
    x = keras.Input((INPUTS,))
    h = keras.layers.Dense(width, activation="relu", kernel_initializer=init,
                           name=f"{name}_hidden")(x)
    return keras.Model(x, {"cls": keras.layers.Dense(3, name=f"{name}_cls")(h),
                           "reg": keras.layers.Dense(1, name=f"{name}_reg")(h)}, name=name)


@pytest.fixture(scope="module")
def two_head_data(xs):
    y_cls = (xs[:, 0] > 0).astype("int32") + (xs[:, 1] > 0.5)
    y_reg = (xs[:, 2] * 2 + np.sin(xs[:, 3])).astype("float32")
    return {"cls": y_cls, "reg": y_reg}


def test_multi_output_losses_per_output_match_numpy(xs, two_head_data):
    teacher, student = two_heads(32, "t", 1), two_heads(8, "s", 2)
    d = Distiller(teacher, student, alpha=0.5, temperature=2.0,
                  losses={"cls": "kl", "reg": ["mse", losses.Huber(delta=0.5)]},
                  loss_weights={"cls": 2.0, "reg": [1.0, 0.5]})
    d.compile("sgd", metrics={"cls": ["accuracy"], "reg": ["mae"]})
    x = xs[:128]
    y = {k: v[:128] for k, v in two_head_data.items()}
    got = d.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    kl = np_kl(t["cls"].astype("float64"), s["cls"].astype("float64"), 2.0).mean()
    mse = ((t["reg"] - s["reg"]) ** 2).mean()
    diff = np.abs(t["reg"] - s["reg"])
    huber = np.where(diff <= 0.5, 0.5 * diff ** 2, 0.5 * (diff - 0.25)).mean()
    assert got["cls_soft_target_kl"] == pytest.approx(kl, rel=1e-5)
    assert got["reg_logit_mse"] == pytest.approx(mse, rel=1e-5)
    assert got["reg_huber"] == pytest.approx(huber, rel=1e-5)
    assert got["distillation_loss"] == pytest.approx(2 * kl + mse + 0.5 * huber, rel=1e-5)
    log_p = s["cls"] - np.log(np.exp(s["cls"]).sum(-1, keepdims=True))
    ce = -log_p[np.arange(128), y["cls"]].mean()
    label_mse = ((s["reg"][:, 0] - y["reg"]) ** 2).mean()
    assert got["student_loss"] == pytest.approx(ce + label_mse, rel=1e-4)
    assert got["cls_accuracy"] == pytest.approx(np.mean(s["cls"].argmax(-1) == y["cls"]))
    assert got["reg_mae"] == pytest.approx(np.abs(s["reg"][:, 0] - y["reg"]).mean(), rel=1e-4)


@pytest.mark.slow
def test_multi_output_distills_saves_and_loads(tmp_path, xs, two_head_data):
    teacher = trained(two_heads(48, "t", 1), xs, two_head_data, {
        "cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"})
    student = two_heads(12, "s", 2)
    d = Distiller(teacher, student, alpha=0.0)
    d.compile(keras.optimizers.Adam(1e-2))
    d.fit(xs[:512], two_head_data_slice(two_head_data, 512), epochs=30, batch_size=64,
          verbose=0)
    held_out = xs[512:]
    t, s = teacher.predict(held_out, verbose=0), student.predict(held_out, verbose=0)
    assert np.mean(t["cls"].argmax(-1) == s["cls"].argmax(-1)) >= 0.85
    r2 = 1 - ((t["reg"] - s["reg"]) ** 2).sum() / ((t["reg"] - t["reg"].mean()) ** 2).sum()
    assert r2 >= 0.8
    assert {o.name: o.kind for o in d.output_kinds} == {"cls": "multiclass",
                                                        "reg": "regression"}
    path = tmp_path / "distiller.keras"
    d.save(path)
    loaded = keras.saving.load_model(path)
    assert {o.name: o.kind for o in loaded.output_kinds} == {"cls": "multiclass",
                                                             "reg": "regression"}
    again = loaded.predict(held_out, verbose=0)
    np.testing.assert_allclose(again["reg"], s["reg"], atol=1e-6)
    np.testing.assert_allclose(again["cls"], s["cls"], atol=1e-6)
    before = d.evaluate(held_out, two_head_data_slice(two_head_data, 512, end=False),
                        verbose=0, return_dict=True)
    after = loaded.evaluate(held_out, two_head_data_slice(two_head_data, 512, end=False),
                            verbose=0, return_dict=True)
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-5)
    # the distilled student exports with both outputs, each verified in LiteRT
    from keras_distill import export

    labels = two_head_data_slice(two_head_data, 512, end=False)
    report = export(student, tmp_path / "exported", formats=("tflite",),
                    quantization=("float32", "int8"), representative_data=xs[:256],
                    eval_data=(held_out, labels))
    assert report.ok, [a.error for a in report.failed]
    assert report.keras["task"] == {"cls": "multiclass", "reg": "regression"}
    f32 = report.get("tflite", "float32").metrics["outputs"]
    int8 = report.get("tflite", "int8").metrics["outputs"]
    assert f32["cls"]["agreement"] == 1.0 and f32["reg"]["max_abs_error"] < 1e-4
    assert int8["cls"]["agreement"] >= 0.9
    assert int8["reg"]["max_abs_error"] < 0.1 * np.ptp(s["reg"])


def two_head_data_slice(data, n, end=True):
    return {k: (v[:n] if end else v[n:]) for k, v in data.items()}


def test_multi_output_cached_teacher_outputs_are_not_confused_with_labels(xs, two_head_data):
    teacher, student = two_heads(32, "t", 1), two_heads(8, "s", 2)
    live = Distiller(teacher, student, alpha=0.5)
    live.compile("sgd")
    expected = live.evaluate(xs[:256], two_head_data_slice(two_head_data, 256),
                             batch_size=256, verbose=0, return_dict=True)
    ds = cache_outputs(teacher, xs[:256], two_head_data_slice(two_head_data, 256),
                       batch_size=256, shuffle=False)
    cached = Distiller(None, student, alpha=0.5, task={"cls": "multiclass",
                                                       "reg": "regression"})
    cached.compile("sgd")
    got = cached.evaluate(ds, verbose=0, return_dict=True)
    assert got["distillation_loss"] == pytest.approx(expected["distillation_loss"], rel=1e-5)
    assert got["student_loss"] == pytest.approx(expected["student_loss"], rel=1e-5)


def test_multi_output_cache_on_disk_round_trips(tmp_path, xs):
    from keras_distill.teachers import teacher_outputs

    teacher = two_heads(16, "t", 1)
    first, info = teacher_outputs(teacher, xs, cache_dir=tmp_path)
    again, info2 = teacher_outputs(teacher, xs, cache_dir=tmp_path)
    assert not info["reused"] and info2["reused"]
    expected = teacher.predict(xs, verbose=0)
    for key in ("cls", "reg"):
        np.testing.assert_allclose(np.asarray(first[key]), expected[key], atol=1e-6)
        np.testing.assert_allclose(np.asarray(again[key]), expected[key], atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"teacher-{info['key']}-0.npy", f"teacher-{info['key']}-1.npy",
        f"teacher-{info['key']}.json"]


def test_feature_hints_on_a_multi_output_model(xs, two_head_data):
    teacher, student = two_heads(32, "t", 1), two_heads(8, "s", 2)
    d = Distiller(teacher, student, alpha=0.5,
                  losses={"cls": ["kl", losses.FeatureHint("t_hidden", "s_hidden")],
                          "reg": "mse"})
    d.compile(keras.optimizers.Adam(1e-2))
    history = d.fit(xs[:256], two_head_data_slice(two_head_data, 256), epochs=3,
                    batch_size=64, verbose=0)
    hint = history.history["feature_hint"]
    assert hint[-1] < hint[0]
    assert d.hint_adapters[0] is not None  # 8 -> 32 features


@pytest.mark.parametrize("kind", ["binary", "sequence"])
def test_kinds_compile_under_xla(xs, kind):
    if kind == "binary":
        teacher, student = mlp(1, 1, "t", activation="sigmoid"), mlp(1, 2, "s")
        x, y = xs[:128], (xs[:128, 0] > 0).astype("int32")
    else:
        inp = keras.Input((6, INPUTS))
        teacher = keras.Model(inp, keras.layers.Conv1D(3, 3, padding="same")(inp))
        inp = keras.Input((6, INPUTS))
        student = keras.Model(inp, keras.layers.Conv1D(3, 1)(inp))
        x = np.tile(xs[:128, None, :], (1, 6, 1))
        y = np.where(np.arange(6)[None] < 4, 1, -1).repeat(128, 0).astype("int32")
    d = Distiller(teacher, student)
    d.compile("adam", jit_compile=True)
    history = d.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert d.jit_compile is True


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_ensembles_of_binary_or_regression_teachers(xs, kind):
    """One-unit members: sigmoid probabilities averaged (never a softmax over one value),
    or the mean of regression values."""
    from keras_distill.teachers import Ensemble

    activation = "sigmoid" if kind == "binary" else None
    members = [mlp(1, 1, "a", activation=activation), mlp(1, 4, "b", activation=activation)]
    if kind == "regression":
        with pytest.raises(ValueError, match="task='binary'\\) or task='regression'"):
            Ensemble(members)
    ensemble = Ensemble(members, weights=[1, 3], task="auto" if kind == "binary" else kind)
    outs = [m.predict(xs[:64], verbose=0) for m in members]
    expected = 0.25 * outs[0] + 0.75 * outs[1]
    np.testing.assert_allclose(ensemble.predict(xs[:64], verbose=0), expected, atol=1e-5)
    student = mlp(1, 7, "s")
    d = Distiller(ensemble, student, alpha=0.0)
    assert [o.kind for o in d.output_kinds] == [kind]
    d.compile("sgd")
    got = d.evaluate(xs[:64], batch_size=64, verbose=0, return_dict=True)
    s = student.predict(xs[:64], verbose=0).astype("float64")
    if kind == "binary":
        t = np.log(expected) - np.log1p(-expected)
        reference = np_bernoulli_kl(t.astype("float64"), s, 4.0).mean()
    else:
        reference = ((expected - s) ** 2).mean()
    assert got["distillation_loss"] == pytest.approx(reference, rel=1e-4)


@pytest.mark.parametrize("architecture", ["gru", "attention", "conv1d"])
def test_taggers_of_every_architecture_distill_per_position(architecture):
    """RNN, attention and Conv1D taggers (batch, steps, classes), with padded steps: a short
    distillation alone halves the loss on the valid steps (the masked mean itself is checked
    against NumPy in test_positions_average_over_valid_positions)."""
    rng = np.random.default_rng(5)
    steps, classes = 10, 3
    x = rng.normal(size=(256, steps, 4)).astype("float32")
    y = rng.integers(0, classes, size=(256, steps)).astype("int32")
    y[:, 7:] = -1

    def tagger(name, seed):
        inp = keras.Input((steps, 4))
        init = keras.initializers.GlorotUniform(seed=seed)
        if architecture == "gru":
            h = keras.layers.GRU(8, return_sequences=True, kernel_initializer=init)(inp)
        elif architecture == "attention":
            h = keras.layers.MultiHeadAttention(2, 4, kernel_initializer=init)(inp, inp)
        else:
            h = keras.layers.Conv1D(8, 3, padding="same", kernel_initializer=init)(inp)
        return keras.Model(inp, keras.layers.Dense(classes, kernel_initializer=init)(h),
                           name=name)

    teacher, student = tagger("t", 1), tagger("s", 2)
    d = Distiller(teacher, student, alpha=0.0)
    d.compile(keras.optimizers.Adam(1e-2))
    before = d.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    d.fit(x, y, epochs=4, batch_size=32, verbose=0)
    after = d.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    assert d.output_kinds[0].positions == 1
    assert before > 0 and after < 0.5 * before


def test_a_visibly_linear_teacher_is_read_as_logits_even_in_0_1(xs):
    """Logits that all happen to lie in [0, 1] are not taken for sigmoid probabilities when
    the teacher's last layer is visibly linear (Dense without activation)."""
    inp = keras.Input((INPUTS,))
    teacher = keras.Model(inp, keras.layers.Dense(
        1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(0.8))(inp))
    student = mlp(1, 7, "s")
    d = Distiller(teacher, student, task="binary", alpha=0.0)
    d.compile("sgd")
    got = d.evaluate(xs[:64], batch_size=64, verbose=0, return_dict=True)
    s = student.predict(xs[:64], verbose=0).astype("float64")
    assert int(d._teacher_kind.numpy()) == 0
    expected = np_bernoulli_kl(np.full_like(s, 0.8), s, 4.0).mean()
    assert got["distillation_loss"] == pytest.approx(expected, rel=1e-5)


def test_what_the_fuzz_found_stays_fixed(tmp_path):
    """Found by tests/test_fuzz.py: compiled metrics without labels; one weight per sample on
    an output with positions; a class index out of range in a dataset; export labels with -1
    or of shape (N, steps, 1)."""
    import tensorflow as tf

    from keras_distill import export

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype("float32")
    xs = rng.normal(size=(6, 5, 3)).astype("float32")

    def dense():
        inp = keras.Input((4,))
        return keras.Model(inp, keras.layers.Dense(3)(inp))

    def tagger():
        inp = keras.Input((5, 3))
        return keras.Model(inp, keras.layers.Conv1D(3, 1)(inp))

    d = Distiller(dense(), dense(), task="multiclass")
    d.compile("adam", metrics=["accuracy"])
    assert sorted(d.fit(x, batch_size=3, verbose=0).history) == [
        "distillation_loss", "loss", "student_loss"]

    d = Distiller(tagger(), tagger())
    d.compile("sgd")
    y = rng.integers(0, 3, (6, 5))
    weighted = d.evaluate(xs, y, sample_weight=np.full(6, 2.0, "float32"), verbose=0,
                          return_dict=True)
    plain = d.evaluate(xs, y, verbose=0, return_dict=True)
    # each position weighted by its sample's weight, as for flat outputs
    assert weighted["distillation_loss"] == pytest.approx(2 * plain["distillation_loss"],
                                                          rel=1e-5)

    d = Distiller(dense(), dense())
    d.compile("adam")
    ds = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 2, 3, 0, 1]))).batch(3)
    with pytest.raises(ValueError, match=r"class index 3, outside \[0, 2\]"):
        d.fit(ds, verbose=0)

    report = export(dense(), tmp_path / "a", formats=("tflite",), quantization=("float32",),
                    eval_data=(x, np.array([0, -1, 2, 1, 0, 2])))
    assert report.ok
    report = export(tagger(), tmp_path / "b", formats=("tflite",), quantization=("float32",),
                    eval_data=(xs, rng.integers(0, 3, (6, 5, 1))))
    assert report.ok
