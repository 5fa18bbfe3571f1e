"""The teacher-output store: top-k representation, shards written whole, resumable writes,
datasets and the rule of determinism, and fit reading a store."""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_distill import Distiller, store, teachers
from keras_distill.data.lazy import InMemory
from keras_distill.losses import SoftTargetKL
from keras_distill.store import topk
from keras_distill.store.determinism import NonDeterministicDataset

CLASSES = 12


def _kl(p, q_logits, temperature):
    """KL(p || softmax(q / T)) · T², averaged over samples, in float64."""
    q = q_logits / temperature
    logq = q - q.max(1, keepdims=True)
    logq = logq - np.log(np.exp(logq).sum(1, keepdims=True))
    p = np.asarray(p, np.float64)
    return float(np.mean(np.sum(np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - logq), 0),
                                1)) * temperature ** 2)


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(256, CLASSES)) * 3).astype(np.float32)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("form", ["logits", "probabilities"])
def test_topk_loss_equals_reference_restricted_the_same_way(logits, temperature, form):
    """SoftTargetKL on the decoded top-k outputs equals KL against the teacher's distribution
    with its top k kept and the rest's mass spread evenly, from the full outputs (at the
    stored temperature)."""
    k = 4
    outputs = logits if form == "logits" else tf.nn.softmax(logits).numpy()
    decoded = topk.decode(topk.encode(outputs, k, temperature, form), CLASSES, temperature,
                          form)
    student = np.random.default_rng(1).normal(size=logits.shape).astype(np.float32)
    teacher_logits = np.log(np.maximum(decoded, 1e-38)) if form == "probabilities" else decoded
    ours = float(SoftTargetKL(temperature)(teacher_logits, student))
    reference = _kl(topk.restricted(outputs, k, temperature, form), student, temperature)
    assert ours == pytest.approx(reference, rel=2e-3, abs=1e-4)
    full = _kl(tf.nn.softmax(logits / temperature).numpy(), student, temperature)
    assert abs(full - reference) > 1e-3  # the restriction is not the full distribution


def test_topk_keeps_the_top_classes_and_the_rest_mass(logits):
    enc = topk.encode(logits, 3, 2.0)
    p = tf.nn.softmax(logits / 2.0).numpy().astype(np.float64)
    top = np.argsort(-p, 1)[:, :3]
    np.testing.assert_array_equal(enc["top_index"], top)
    np.testing.assert_allclose(np.exp(enc["top_logp"].astype(np.float64)),
                               np.take_along_axis(p, top, 1), rtol=2e-3, atol=1e-6)
    rest = 1 - np.take_along_axis(p, top, 1).sum(1)
    np.testing.assert_allclose(np.exp(enc["rest_logp"].astype(np.float64)), rest, rtol=1e-5)
    assert enc["top_index"].dtype == np.uint8 and enc["top_logp"].dtype == np.float16
    with pytest.raises(ValueError, match="top_k must be in"):
        topk.encode(logits, CLASSES, 1.0)


def test_sizes_against_full_float32():
    assert topk.nbytes_per_sample(1000) == 4000
    assert topk.nbytes_per_sample(1000, 10) == 44  # 10 float16 + 10 uint16 + a float32
    assert topk.nbytes_per_sample(10, 3) == 13


def _teacher(units=CLASSES, activation="softmax", seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(units, activation=activation)])


def _student(units=CLASSES):
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(units)])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    return rng.normal(size=(300, 6)).astype(np.float32), rng.integers(0, CLASSES, 300)


def test_store_round_trip_and_resume(tmp_path, data):
    x, _ = data
    teacher = _teacher()
    path = tmp_path / "s"
    written = store.write(teacher, x, path, shard_size=128)
    assert written.shard_count() == 3 and written.meta["samples"] == 300
    np.testing.assert_allclose(written.outputs()[:], teacher.predict(x, verbose=0), atol=1e-6)
    # a lost shard, and the leftovers of a crash while writing another: the rewrite computes
    # only the lost one and never reads the half-written folder
    first = os.stat(path / "shard-00000" / "0.logits.npy").st_mtime_ns
    shutil.rmtree(path / "shard-00001")
    os.makedirs(path / "shard-00002.partial")
    np.save(path / "shard-00002.partial" / "0.logits.npy", np.full((128, CLASSES), 9.0))
    meta = written.meta | {"complete": False}
    written.meta = meta
    written._save()
    with pytest.raises(store.StoreError, match="not complete"):
        store.TeacherStore.open(path).outputs()
    again = store.write(teacher, x, path, shard_size=128)
    assert os.stat(path / "shard-00000" / "0.logits.npy").st_mtime_ns == first
    np.testing.assert_allclose(again.outputs()[:], teacher.predict(x, verbose=0), atol=1e-6)
    # another teacher's outputs are never mixed in
    with pytest.raises(store.StoreError, match="another teacher or other data"):
        store.write(_teacher(seed=5), x, path, shard_size=128)


def test_fit_on_a_store_matches_the_live_teacher(tmp_path, data):
    """Full float32 store: the cached distillation loss equals the live teacher's (a softmax
    teacher, whose logits the Distiller reads before the softmax when live)."""
    x, y = data
    teacher = _teacher()
    written = store.write(teacher, x, tmp_path / "s")
    d = Distiller(teacher, _student())
    d.compile(optimizer="sgd")
    live = d.evaluate(x, y, verbose=0, return_dict=True)
    d2 = Distiller(None, _student())
    d2.student.set_weights(d.student.get_weights())
    d2.compile(optimizer="sgd")
    ds = tf.data.Dataset.from_tensor_slices(
        (x, {"labels": y, "teacher_outputs": written.outputs()[:]})).batch(64)
    cached = d2.evaluate(ds, verbose=0, return_dict=True)
    assert cached["distillation_loss"] == pytest.approx(live["distillation_loss"], rel=1e-5)
    history = d2.fit(x, y, cache_teacher=str(tmp_path / "s"), epochs=3, batch_size=64,
                     verbose=0)
    losses = history.history["distillation_loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    with pytest.raises(store.StoreError, match="written for other inputs"):
        d2.fit(x + 1, y, cache_teacher=str(tmp_path / "s"), epochs=1, verbose=0)
    with pytest.raises(store.StoreError, match="holds 300 samples but the inputs have 299"):
        d2.fit(x[:299], y[:299], cache_teacher=str(tmp_path / "s"), epochs=1, verbose=0)


def test_fit_with_lazy_inputs_and_top_k(tmp_path, data):
    x, y = data
    d = Distiller(_teacher(), _student())
    d.compile(optimizer="adam")
    history = d.fit(InMemory(x), y, epochs=2, batch_size=50, cache_teacher=True,
                    cache_dir=tmp_path, cache_top_k=3, verbose=0)
    assert d.cache_info["reused"] is False and np.isfinite(history.history["loss"]).all()
    written = store.TeacherStore.open(d.cache_info["path"])
    assert written.meta["top_k"] == 3 and written.meta["temperature"] == d.temperature
    assert written.nbytes() < 0.5 * written.full_nbytes()
    d.fit(InMemory(x), y, epochs=1, batch_size=50, cache_teacher=True, cache_dir=tmp_path,
          cache_top_k=3, verbose=0)
    assert d.cache_info["reused"] is True


def test_dataset_cache_is_reused_and_recomputed_when_the_data_changes(tmp_path, data):
    x, y = data
    d = Distiller(_teacher(), _student())
    d.compile(optimizer="adam")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(40)
    history = d.fit(ds, epochs=2, cache_teacher=True, cache_dir=tmp_path, verbose=0)
    assert d.cache_info["reused"] is False and np.isfinite(history.history["loss"]).all()
    written = store.TeacherStore.open(d.cache_info["path"])
    assert written.meta["samples"] == 300 and store.writer.batch_sizes(written)[-1] == 20
    np.testing.assert_allclose(written.outputs()[:], d.teacher.predict(x, verbose=0),
                               atol=1e-6)
    d.fit(ds, epochs=1, cache_teacher=True, cache_dir=tmp_path, verbose=0)
    assert d.cache_info["reused"] is True
    changed = tf.data.Dataset.from_tensor_slices((x[::-1].copy(), y)).batch(40)
    d.fit(changed, epochs=1, cache_teacher=True, cache_dir=tmp_path, verbose=0)
    np.testing.assert_allclose(store.TeacherStore.open(d.cache_info["path"]).outputs()[:],
                               d.teacher.predict(x[::-1], verbose=0), atol=1e-6)


def _unseeded(ds):
    tf.random.set_seed(None)  # no global seed either: the shuffle's order is random
    return ds


@pytest.mark.parametrize("make, match", [
    (lambda ds: ds.shuffle(300), "reshuffles on every iteration"),
    (lambda ds: _unseeded(ds).shuffle(300, reshuffle_each_iteration=False),
     "shuffle without a seed"),
    (lambda ds: ds.map(lambda a, b: (a + tf.random.uniform(tf.shape(a)), b)),
     "random or stateful operation"),
])
def test_non_deterministic_datasets_are_refused(data, make, match):
    x, y = data
    d = Distiller(_teacher(), _student())
    d.compile(optimizer="adam")
    ds = make(tf.data.Dataset.from_tensor_slices((x, y))).batch(40)
    with pytest.raises(NonDeterministicDataset, match=match):
        d.fit(ds, epochs=1, cache_teacher=True, verbose=0)
    seeded = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        300, seed=3, reshuffle_each_iteration=False).batch(40)
    store.check(seeded)  # a fixed order passes


def test_cache_outputs_for_lazy_inputs_and_datasets(tmp_path, data):
    x, y = data
    teacher = _teacher()
    expected = teacher.predict(x, verbose=0)
    lazy = teachers.cache_outputs(teacher, InMemory(x), y, batch_size=64, shuffle=False,
                                  cache_dir=tmp_path)
    got = np.concatenate([t["teacher_outputs"].numpy() for _, t in lazy])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    paired = teachers.cache_outputs(teacher, ds, shuffle=False, cache_dir=tmp_path, top_k=3)
    batches = list(paired)
    assert [len(b[0]) for b in batches] == [64, 64, 64, 64, 44]
    labels = np.concatenate([t["labels"].numpy() for _, t in batches])
    np.testing.assert_array_equal(labels, y)
    decoded = np.concatenate([t["teacher_outputs"].numpy() for _, t in batches])
    np.testing.assert_allclose(decoded, topk.restricted(expected, 3, 1.0, "probabilities"),
                               atol=2e-3)
    d = Distiller(None, _student())
    d.compile(optimizer="adam")
    history = d.fit(teachers.cache_outputs(teacher, ds, cache_dir=tmp_path, top_k=3, seed=1),
                    epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_two_writers_of_one_shard_never_mix(tmp_path):
    """A retried Beam bundle writes a shard a second time while the first is in flight: each
    writer has its own .partial folder, the first complete shard stays, a rewrite that must
    replace (changed inputs) does."""
    written = store.TeacherStore.create(tmp_path / "s", key="k", shard_size=4)
    other = tmp_path / "s" / "shard-00000.partial-999-other"  # another writer, in flight
    os.makedirs(other)
    first = [{"logits": np.ones((4, 3), np.float32)}]
    written.write_shard(0, first)
    assert other.exists()  # untouched
    written.write_shard(0, [{"logits": np.zeros((4, 3), np.float32)}])
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "shard-00000" / "0.logits.npy"),
                                  first[0]["logits"])
    written.write_shard(0, [{"logits": np.zeros((4, 3), np.float32)}], replace=True)
    assert np.load(tmp_path / "s" / "shard-00000" / "0.logits.npy").max() == 0
    assert not [p for p in os.listdir(tmp_path / "s") if ".partial-" in p and "other" not in p]
    store.TeacherStore.create(tmp_path / "s", key="k", shard_size=4)  # a resumed write
    assert not other.exists()  # leftovers of an interrupted write are removed on resume


def test_the_same_weights_have_the_same_key_in_memory_and_from_a_file(tmp_path):
    teacher = _teacher()
    teacher.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    assert store.teacher_fingerprint(teacher) == store.teacher_fingerprint(loaded)
    assert store.teacher_fingerprint(teacher) != store.teacher_fingerprint(_teacher(seed=3))


def test_a_dataset_store_is_refused_for_another_dataset_and_a_rewrite_is_incomplete(tmp_path,
                                                                                     data):
    x, y = data
    teacher = _teacher()
    a = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
    b = tf.data.Dataset.from_tensor_slices((x[::-1].copy(), y)).batch(50)
    written = store.write_dataset(teacher, a, tmp_path / "s", shard_size=100)
    d = Distiller(None, _student())
    d.compile(optimizer="adam")
    with pytest.raises(store.StoreError, match=r"other inputs \(shards \[0, 1, 2\]"):
        d.fit(b, epochs=1, cache_teacher=str(tmp_path / "s"), verbose=0)
    with pytest.raises(store.StoreError, match="in other batches"):
        d.fit(a.unbatch().batch(60), epochs=1, cache_teacher=str(tmp_path / "s"), verbose=0)
    d.fit(a, epochs=1, cache_teacher=str(tmp_path / "s"), verbose=0)  # its own dataset

    class Interrupted(Exception):
        pass

    class Stops:  # a teacher killed after one shard of dataset b
        calls = 0

        def predict(self, rows, **kwargs):
            Stops.calls += 1
            if Stops.calls > 2:
                raise Interrupted
            return teacher.predict(rows, **kwargs)

        weights = teacher.weights

        def get_config(self):
            return teacher.get_config()

    with pytest.raises(Interrupted):
        store.write_dataset(Stops(), b, tmp_path / "s", shard_size=100, key=written.meta["key"])
    with pytest.raises(store.StoreError, match="not complete"):
        store.open_store(tmp_path / "s")


def test_the_key_tells_teachers_with_the_same_weights_apart(tmp_path):
    def mlp(activation):
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation=activation),
                                 keras.layers.Dense(4)])

    relu, tanh = mlp("relu"), mlp("tanh")
    assert [w.numpy().tolist() for w in relu.weights] == [w.numpy().tolist() for w in tanh.weights]
    assert store.teacher_fingerprint(relu) != store.teacher_fingerprint(tanh)
    one = teachers.Ensemble([relu, mlp("relu")], weights=[9, 1])
    other = teachers.Ensemble([relu, mlp("relu")], weights=[1, 9], average="logits")
    assert store.teacher_fingerprint(one) != store.teacher_fingerprint(other)
    frozen = mlp("relu")
    frozen.trainable = False  # what the Distiller does to its teacher
    assert store.teacher_fingerprint(frozen) == store.teacher_fingerprint(relu)


def test_a_store_of_another_teacher_is_refused_and_a_top_k_one_warns_at_another_temperature(
        tmp_path, data):
    x, y = data
    store.write(_teacher(), x, tmp_path / "s", top_k=3, temperature=1.0)
    other = Distiller(_teacher(seed=7), _student(), temperature=4.0)
    other.compile(optimizer="adam")
    with pytest.raises(store.StoreError, match="outputs of another teacher"):
        other.fit(x, y, cache_teacher=str(tmp_path / "s"), epochs=1, verbose=0)
    same = Distiller(_teacher(), _student(), temperature=4.0)
    same.compile(optimizer="adam")
    with pytest.warns(UserWarning, match="stored at temperature 1; at this Distiller's 4"):
        same.fit(x, y, cache_teacher=str(tmp_path / "s"), epochs=1, verbose=0)
    with pytest.raises(store.StoreError, match="written with top_k=3 at temperature 1.0"):
        store.write(_teacher(), x, tmp_path / "s", top_k=2, temperature=1.0)


def test_resume_keeps_the_store_shard_size_and_streams_read_a_bounded_chunk(tmp_path, data):
    x, _ = data
    teacher = _teacher()
    store.write(teacher, x, tmp_path / "s", shard_size=40)
    shutil.rmtree(tmp_path / "s" / "shard-00003")
    meta = store.TeacherStore.open(tmp_path / "s")
    meta.meta["complete"] = False
    meta._save()
    again = store.write(teacher, x, tmp_path / "s", shard_size=100)  # resumed: 40 kept
    assert again.meta["shard_size"] == 40 and again.written == 1
    np.testing.assert_allclose(again.outputs()[:], teacher.predict(x, verbose=0), atol=1e-6)

    class Counted(InMemory):
        largest = 0

        def _read(self, indices):
            Counted.largest = max(Counted.largest, len(indices))
            return super()._read(indices)

    big = Counted(np.zeros((300, 64, 64, 3), np.float32))  # 48 KiB a row
    from keras_distill.data import stream

    cnn = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(2)])
    old, stream.CHUNK_BYTES = stream.CHUNK_BYTES, 2**20  # 1 MiB: 21 rows
    try:
        assert stream.predict(cnn, big).shape == (300, 2)
    finally:
        stream.CHUNK_BYTES = old
    assert Counted.largest <= 21


@pytest.mark.slow
def test_reading_many_shards_keeps_a_bounded_number_of_files_open(tmp_path, data):
    x, _ = data
    written = store.write(_teacher(), x, tmp_path / "s", shard_size=2, top_k=2)  # 150 shards
    reader = store.TeacherStore.open(tmp_path / "s")
    assert np.isfinite(reader.outputs()[:]).all()
    assert len(reader._maps) <= store.shards.OPEN_MAPS < 3 * written.shard_count()


@pytest.mark.slow
def test_two_processes_create_the_same_store_at_once(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\nfrom keras_distill.store.shards import TeacherStore\n"
        "for i in range(40):\n"
        "    TeacherStore.create(f'{sys.argv[1]}/{i}', key='k').describe(data='fp')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert all(store.TeacherStore.open(tmp_path / str(i)).meta["key"] == "k" for i in range(40))


def test_datasets_that_cannot_be_cached_are_refused(data):
    x, y = data
    d = Distiller(_teacher(), _student())
    d.compile(optimizer="adam")
    endless = tf.data.Dataset.from_tensor_slices((x, y)).batch(50).repeat()
    with pytest.raises(ValueError, match="repeats forever"):
        d.fit(endless, steps_per_epoch=3, epochs=1, cache_teacher=True, verbose=0)
    loose = tf.data.Dataset.from_tensor_slices((x, y)).map(
        lambda a, b: (a * 2, b), num_parallel_calls=2, deterministic=False).batch(50)
    with pytest.raises(NonDeterministicDataset, match="deterministic=False"):
        d.fit(loose, epochs=1, cache_teacher=True, verbose=0)


def test_a_nan_in_a_streamed_batch_is_one_clear_error(data):
    x, y = data
    bad = x.copy()
    bad[7, 2] = np.nan
    d = Distiller(_teacher(), _student())
    d.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"^the data has NaN or infinite values in rows \[7\]"):
        d.fit(InMemory(bad), y, epochs=1, batch_size=50, shuffle=False, verbose=0)
