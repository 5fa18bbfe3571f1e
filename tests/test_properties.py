"""Property-based tests (Hypothesis) of the distillation losses and of the config parser.

Losses (keras_distill.losses): KL and DKD are non-negative and exactly zero when the student
equals the teacher; every loss and its gradient stay finite for logits up to 1e4 in magnitude
(mixed signs included); SoftTargetKL, HardTargetCE and DecoupledKD do not change when a constant
is added to a row of logits; the T² scaling relation holds; KL matches a float64 NumPy
reference.

Config (keras_distill.config.load): random bad configurations, from a file or from flags, fail
with ConfigError (a ValueError) whose message names the key, and never with anything else.
"""

import datetime
import json
import math
import os
import uuid

import numpy as np
import pytest
from helpers import np_kl
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keras_distill import config as config_lib
from keras_distill import losses

# Keras ops are eager calls of a few ms: keep example counts modest.
LOSS_SETTINGS = settings(max_examples=30, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
CONFIG_SETTINGS = settings(max_examples=100, deadline=None, database=None,
                           suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# strategies: logits
# ---------------------------------------------------------------------------------------------

temperatures = st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0, 20.0])


@st.composite
def logit_pairs(draw, bound=1e4, dyadic=False, min_classes=2):
    """(teacher, student) float32 logits of one shape. ``dyadic``: multiples of 1/8, so that
    adding an integer constant is exact in float32 and only the loss itself can differ."""
    batch = draw(st.integers(1, 4))
    classes = draw(st.integers(min_classes, 10))
    if dyadic:
        elements = st.integers(-8 * int(bound), 8 * int(bound)).map(lambda i: i / 8.0)
    else:
        elements = st.one_of(
            st.floats(-bound, bound, width=32),
            st.sampled_from([bound, -bound, 0.0]),  # saturated logits, mixed signs
        )
    shape = (batch, classes)
    t = np.array(draw(st.lists(elements, min_size=batch * classes, max_size=batch * classes)),
                 "float32").reshape(shape)
    s = np.array(draw(st.lists(elements, min_size=batch * classes, max_size=batch * classes)),
                 "float32").reshape(shape)
    return t, s


def _np(x):
    return np.asarray(x, dtype="float64")


def _labels_for(t, data):
    return np.array(data.draw(st.lists(st.integers(0, t.shape[1] - 1), min_size=len(t),
                                       max_size=len(t))), "int32")


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


@LOSS_SETTINGS
@given(pair=logit_pairs(), temperature=temperatures)
def test_kl_is_non_negative_and_finite(pair, temperature):
    t, s = pair
    kl = _np(losses.soft_target_kl(t, s, temperature))
    assert kl.shape == (len(t),) and np.isfinite(kl).all()
    # float32 rounding may give -tiny where KL is ~0; never a real negative value
    assert (kl >= -1e-5 * temperature ** 2).all(), kl


@LOSS_SETTINGS
@given(pair=logit_pairs(), temperature=temperatures, data=st.data())
def test_dkd_is_non_negative_and_finite(pair, temperature, data):
    t, s = pair
    labels = data.draw(st.none() | st.just(_labels_for(t, data)))
    dkd = _np(losses.decoupled_kd(t, s, labels, 1.0, 8.0, temperature))
    assert np.isfinite(dkd).all()
    assert (dkd >= -1e-4 * temperature ** 2).all(), dkd


@LOSS_SETTINGS
@given(pair=logit_pairs(), temperature=temperatures)
def test_zero_when_student_equals_teacher(pair, temperature):
    z = pair[0]
    assert (_np(losses.soft_target_kl(z, z, temperature)) == 0).all()
    assert (_np(losses.decoupled_kd(z, z, None, 1.0, 8.0, temperature)) == 0).all()
    assert (_np(losses.logit_mse(z, z)) == 0).all()
    assert float(losses.SoftTargetKL(temperature=temperature)(z, z)) == 0.0


@LOSS_SETTINGS
@given(pair=logit_pairs(bound=1e4), temperature=temperatures, data=st.data())
def test_losses_and_gradients_finite_for_extreme_logits(pair, temperature, data):
    import tensorflow as tf

    t, s = pair
    labels = _labels_for(t, data)
    fns = {
        "soft_target_kl": lambda z: losses.soft_target_kl(t, z, temperature),
        "hard_target_ce": lambda z: losses.hard_target_ce(t, z),
        "logit_mse": lambda z: losses.logit_mse(t, z),
        "decoupled_kd": lambda z: losses.decoupled_kd(t, z, None, 1.0, 8.0, temperature),
        "decoupled_kd_labels": lambda z: losses.decoupled_kd(t, z, labels, 1.0, 8.0,
                                                             temperature),
    }
    for name, fn in fns.items():
        z = tf.Variable(s)
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(fn(z))
        grad = tape.gradient(value, z)
        assert np.isfinite(float(value)), name
        assert np.isfinite(grad.numpy()).all(), name


@LOSS_SETTINGS
@given(pair=logit_pairs(bound=64, dyadic=True), temperature=temperatures, data=st.data())
def test_invariant_to_a_constant_added_to_a_row(pair, temperature, data):
    t, s = pair
    rows = len(t)
    shift = st.lists(st.integers(-1000, 1000), min_size=rows, max_size=rows)
    ct = np.array(data.draw(shift), "float32")[:, None]
    cs = np.array(data.draw(shift), "float32")[:, None]
    labels = _labels_for(t, data)
    t2, s2 = t + ct, s + cs
    tol = {"rtol": 1e-4, "atol": 1e-4 * temperature ** 2}
    np.testing.assert_allclose(losses.soft_target_kl(t2, s2, temperature),
                               losses.soft_target_kl(t, s, temperature), **tol)
    np.testing.assert_allclose(losses.hard_target_ce(t2, s2), losses.hard_target_ce(t, s),
                               rtol=1e-4, atol=1e-4)
    for lab in (None, labels):
        np.testing.assert_allclose(losses.decoupled_kd(t2, s2, lab, 1.0, 8.0, temperature),
                                   losses.decoupled_kd(t, s, lab, 1.0, 8.0, temperature), **tol)
    for cls in (losses.SoftTargetKL(temperature), losses.HardTargetCE(),
                losses.DecoupledKD(temperature=temperature)):
        np.testing.assert_allclose(float(cls(t2, s2)), float(cls(t, s)), **tol)


@LOSS_SETTINGS
@given(pair=logit_pairs(bound=50), temperature=temperatures)
def test_t_squared_scaling(pair, temperature):
    """loss(t, s, T) = T² · loss(t/T, s/T, 1): the T² factor and nothing else."""
    t, s = pair
    tol = {"rtol": 1e-3, "atol": 1e-4 * temperature ** 2}
    np.testing.assert_allclose(
        losses.soft_target_kl(t, s, temperature),
        temperature ** 2 * _np(losses.soft_target_kl(t / temperature, s / temperature, 1.0)),
        **tol)
    np.testing.assert_allclose(
        losses.decoupled_kd(t, s, None, 1.0, 8.0, temperature),
        temperature ** 2 * _np(losses.decoupled_kd(t / temperature, s / temperature, None,
                                                   1.0, 8.0, 1.0)), **tol)


@LOSS_SETTINGS
@given(pair=logit_pairs(bound=30), temperature=temperatures)
def test_kl_matches_float64_reference(pair, temperature):
    t, s = pair
    np.testing.assert_allclose(losses.soft_target_kl(t, s, temperature),
                               np_kl(_np(t), _np(s), temperature), rtol=1e-3,
                               atol=1e-4 * temperature ** 2)


# ---------------------------------------------------------------------------------------------
# strategies: configurations
# ---------------------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2 ** 63), 2 ** 63 - 1),  # TOML integers are 64-bit
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.sampled_from(["digits", "mnist", "teacher_cnn", "student_mlp", "kl", "dkd", "int8",
                     "tflite", "auto", "rgb", "feature_hint", "model.keras", ".", "-1", "0",
                     "1e400", "nan", "true", "", " "]),
    st.dates(),
    st.datetimes(),
)
junk = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(_text, st.sampled_from(["name", "width", "temperature",
                                                      "teacher_layer", "student_layer",
                                                      "source", "model"])), inner,
                    max_size=3)), max_leaves=8)
known_keys = st.sampled_from(sorted(config_lib.SCHEMA))
sections = sorted({p.split(".")[0] for p in config_lib.SCHEMA if "." in p})


def _toml(value):
    """A TOML value: inline tables and arrays, quoted keys (tomllib reads; nobody writes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(value)


def _document(doc):
    return "".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}\n" for k, v in doc.items())


def _nest(flat):
    """{"teacher.epochs": 3} -> {"teacher": {"epochs": 3}}."""
    doc = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                return None
        node[leaf] = value
    return doc


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("configs")


def _load_file(folder, doc):
    import tomllib

    text = _document(doc)
    tomllib.loads(text)  # the test's own writer must produce valid TOML
    path = os.path.join(folder, f"{uuid.uuid4().hex}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        return config_lib.load(path)
    finally:
        os.remove(path)


def _assert_names_key(err, expected=None):
    assert isinstance(err, config_lib.ConfigError) and isinstance(err, ValueError)
    assert err.key is not None, str(err)
    # the key as written, or its repr (which escapes unprintable characters)
    assert err.key in str(err) or repr(err.key) in str(err), (err.key, str(err))
    if expected is not None:
        assert err.key == expected or err.key.startswith(expected + ".") or \
            expected.startswith(err.key), (err.key, expected, str(err))


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------


@CONFIG_SETTINGS
@given(key=known_keys, value=junk)
def test_file_with_a_bad_value_fails_with_configerror_naming_the_key(config_dir, key, value):
    doc = _nest({key: value})
    try:
        _load_file(config_dir, doc)
    except config_lib.ConfigError as err:
        _assert_names_key(err, key if key not in ("losses", "loss_weights") else None)


@CONFIG_SETTINGS
@given(key=known_keys, value=st.one_of(junk, _text.map(str)))
def test_flag_with_a_bad_value_fails_with_configerror_naming_the_key(key, value):
    try:
        config_lib.load(None, {key: value})
    except config_lib.ConfigError as err:
        if config_lib.SCHEMA[key].kind != "table":  # tables are not command-line flags
            assert err.usage, str(err)  # a command-line mistake: exit code 2
        _assert_names_key(err)


@CONFIG_SETTINGS
@given(doc=st.dictionaries(st.one_of(_text, st.sampled_from(sections), known_keys), junk,
                           max_size=5))
def test_random_nested_documents_never_crash(config_dir, doc):
    try:
        _load_file(config_dir, doc)
    except config_lib.ConfigError as err:
        _assert_names_key(err)


@CONFIG_SETTINGS
@given(section=st.sampled_from(["", *sections]),
       leaf=st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"),
                                  whitelist_characters="_-"), min_size=1, max_size=15),
       value=junk)
def test_unknown_keys_are_named(config_dir, section, leaf, value):
    path = f"{section}.{leaf}" if section else leaf
    assume(path not in config_lib.SCHEMA and path not in config_lib.RESERVED)
    assume(not (not section and leaf in sections))
    with pytest.raises(config_lib.ConfigError) as info:
        _load_file(config_dir, _nest({path: value}))
    _assert_names_key(info.value, path)
    assert "unknown key" in str(info.value) and config_dir.name in str(info.value)


BAD_VALUES = {
    "epochs": st.integers(-(2 ** 63), 0),
    "teacher.epochs": st.integers(-(2 ** 63), -1),
    "batch_size": st.integers(-(2 ** 31), 0),
    "temperature": st.one_of(st.just(0), st.just(0.0), st.just(-0.0),
                             st.floats(max_value=0.0), st.just(float("nan"))),
    "learning_rate": st.floats(max_value=0.0),
    "alpha": st.one_of(st.floats(min_value=1.0, exclude_min=True),
                       st.floats(max_value=0.0, exclude_max=True)),
    "calibration_samples": st.integers(max_value=0),
    "data.test_fraction": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0)),
    "seed": st.integers(max_value=-1),
    "quiet": st.one_of(st.integers(), _text),
    "safe_mode": st.one_of(st.integers(), st.sampled_from(["false", "no", "0"])),
    "formats": st.just(["tflite", "pdf"]),
    "quantization": st.just([]),
}


@CONFIG_SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_documented_bad_values_are_refused(config_dir, key, data):
    value = data.draw(BAD_VALUES[key])
    with pytest.raises(config_lib.ConfigError) as info:
        _load_file(config_dir, _nest({key: value}))
    _assert_names_key(info.value, key)
    assert "is not allowed; expected" in str(info.value)
    with pytest.raises(config_lib.ConfigError) as info:
        config_lib.load(None, {key: value})
    _assert_names_key(info.value, key)


# --- found by the properties above: integers too large for a float ------------------------

HUGE = 10 ** 400  # a valid TOML integer for tomllib, too large for a float


@pytest.mark.parametrize("doc", [f"learning_rate = {HUGE}", f"loss_weights = [{HUGE}]",
                                 f"losses = [{{name = 'kl', temperature = {HUGE}}}]",
                                 f"[teacher]\nweights = [{HUGE}]"],
                         ids=["learning_rate", "loss_weights", "losses", "teacher.weights"])
def test_huge_integers_are_configerrors(config_dir, doc):
    path = config_dir / "huge.toml"
    path.write_text(doc)
    with pytest.raises(config_lib.ConfigError) as info:
        config_lib.load(path)
    _assert_names_key(info.value)
