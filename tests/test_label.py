"""keras-distill label: the Apache Beam pipeline writes the store the single-process path
writes (same key, same outputs), resumes shard by shard, feeds ``Distiller.fit``, and fails
with one line naming the fix. Apache Beam is imported only by ``keras_distill.store.beam``'s
functions."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_distill import cli
from keras_distill.data import load
from keras_distill.io import load_model
from keras_distill.store import (
    StoreError,
    TeacherStore,
    data_fingerprint,
    store_key,
    teacher_fingerprint,
    write,
)
from keras_distill.store.beam import label

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The DirectRunner on two worker processes.
TWO_WORKERS = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
#: digits' 1167 training samples in shards of 300: four shards, the last of 267.
SHARD = 300
SAMPLES = 1167


def shard_dir(store, i):
    return os.path.join(store, f"shard-{i:05d}")


def main(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def small_cnn(shape, heads=None):
    x = keras.Input(shape)
    h = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, activation="relu")(x))
    if heads is None:
        return keras.Model(x, keras.layers.Dense(10)(h))  # logits
    return keras.Model(x, {name: keras.layers.Dense(units, activation=act, name=name)(h)
                           for name, (units, act) in heads.items()})


@pytest.fixture(scope="module")
def data():
    return load("digits")


@pytest.fixture(scope="module")
def teacher_file(data, tmp_path_factory):
    """A digits teacher (logits), trained a little and saved as .keras."""
    keras.utils.set_random_seed(0)
    model = small_cnn(data.input_shape)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train, data.y_train, epochs=3, batch_size=64, verbose=0)
    path = str(tmp_path_factory.mktemp("teacher") / "teacher.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def references(teacher_file, data, tmp_path_factory):
    """The single-process stores of the same teacher (loaded from its file): full, top-3."""
    teacher = load_model(teacher_file)
    folder = tmp_path_factory.mktemp("references")
    return {k: write(teacher, data.x_train, str(folder / f"top{k}"), top_k=k, temperature=2.0,
                     shard_size=SHARD) for k in (None, 3)}


# --- the same store as the single-process path ----------------------------------------------


@pytest.mark.slow  # two worker processes start TensorFlow: about 20 s a run on 2 cores
@pytest.mark.parametrize("top_k", [None, 3], ids=["full", "top3"])
def test_two_beam_workers_write_the_single_process_store(teacher_file, data, references,
                                                         tmp_path, top_k):
    out = str(tmp_path / "store")
    result = label(teacher_file, "digits", out, top_k=top_k, temperature=2.0,
                   shard_size=SHARD, pipeline_args=TWO_WORKERS)
    reference, store = references[top_k], result.store
    d_fp = data_fingerprint(data.x_train)
    assert store.meta["key"] == reference.meta["key"] == store_key(
        teacher_fingerprint(load_model(teacher_file)), d_fp, top_k, 2.0)
    assert store.meta["description"] == {
        "data": d_fp, "teacher": teacher_file, "source": "digits", "split": "train",
        "teacher_fingerprint": teacher_fingerprint(load_model(teacher_file))}
    assert (result.samples, result.shards, result.written) == (SAMPLES, 4, [0, 1, 2, 3])
    assert store.meta["samples"] == SAMPLES and store.meta["complete"]
    assert store.meta["outputs"] == reference.meta["outputs"] == [
        {"shape": [10], "form": "logits", "top_k": top_k, "kind": "multiclass"}]
    np.testing.assert_allclose(store.outputs()[:], reference.outputs()[:], atol=1e-5)
    field = "logits" if top_k is None else "top_logp"
    last = np.load(os.path.join(shard_dir(out, 3), f"0.{field}.npy"))
    assert last.shape == (SAMPLES - 3 * SHARD, 10 if top_k is None else 3)
    assert last.dtype == (np.float32 if top_k is None else np.float16)


def test_several_outputs_in_process(data, tmp_path):
    """A dict teacher (softmax classes and sigmoid labels): each output stored as the single
    process stores it, top-k on the multiclass one only."""
    keras.utils.set_random_seed(1)
    teacher = small_cnn(data.input_shape, {"zeta": (10, "softmax"), "alpha": (3, "sigmoid")})
    path = str(tmp_path / "two_heads.keras")
    teacher.save(path)
    result = label(path, "digits", str(tmp_path / "beam"), top_k=3, shard_size=SHARD)
    reference = write(load_model(path), data.x_train, str(tmp_path / "ref"), top_k=3,
                      shard_size=SHARD, kinds=["multilabel", "multiclass"])  # sorted names
    assert result.store.meta["key"] == reference.meta["key"]
    assert [(o["form"], o["top_k"], o["kind"]) for o in result.store.meta["outputs"]] == [
        ("logits", None, "multilabel"), ("probabilities", 3, "multiclass")]
    ours, theirs = result.store.outputs(), reference.outputs()
    assert sorted(ours) == ["alpha", "zeta"]
    for name in ours:
        np.testing.assert_allclose(ours[name][:], theirs[name][:], atol=1e-5)


# --- resuming -------------------------------------------------------------------------------


def test_an_interrupted_store_recomputes_only_its_missing_shard(teacher_file, references,
                                                                tmp_path):
    out = str(tmp_path / "store")
    label(teacher_file, "digits", out, temperature=2.0, shard_size=SHARD)

    def stamps():
        return {i: os.stat(os.path.join(shard_dir(out, i), "0.logits.npy")).st_mtime_ns
                for i in range(4) if os.path.isdir(shard_dir(out, i))}

    before = stamps()
    # As a crash leaves it: shard 1 half-written (its .partial folder holds nonsense), the
    # store not finished.
    shutil.rmtree(shard_dir(out, 1))
    os.makedirs(shard_dir(out, 1) + ".partial")
    np.save(os.path.join(shard_dir(out, 1) + ".partial", "0.logits.npy"),
            np.full((SHARD, 10), 1e6, np.float32))
    with open(os.path.join(out, "store.json")) as f:
        meta = json.load(f)
    meta.update(complete=False, samples=None)
    with open(os.path.join(out, "store.json"), "w") as f:
        json.dump(meta, f)
    with pytest.raises(StoreError, match="not complete"):
        TeacherStore.open(out).outputs()

    again = label(teacher_file, "digits", out, temperature=2.0, shard_size=SHARD)
    assert again.written == [1]
    after = stamps()
    assert {i: after[i] for i in (0, 2, 3)} == {i: before[i] for i in (0, 2, 3)}
    assert after[1] != before[1] and not os.path.exists(shard_dir(out, 1) + ".partial")
    outputs = again.store.outputs()[:]
    assert np.abs(outputs).max() < 1e3  # nothing of the .partial folder was read
    np.testing.assert_allclose(outputs, references[None].outputs()[:], atol=1e-5)
    assert label(teacher_file, "digits", out, temperature=2.0, shard_size=SHARD).written == []


def test_a_worker_reading_other_data_fails_the_pipeline_with_one_error(teacher_file,
                                                                       tmp_path):
    from keras_distill.store import beam

    out = str(tmp_path / "store")
    TeacherStore.create(out, key="k", shard_size=SHARD)
    job = {"teacher": teacher_file, "source": "digits", "split": "train", "data_options": {},
           "samples": SAMPLES, "fingerprint": "not-these-inputs", "store": out,
           "shard_size": SHARD, "batch_size": 64, "allow_unsafe": False}
    with pytest.raises(beam.LabelError) as info:
        beam.run_pipeline(beam.pipeline_options("DirectRunner"), [0, 1], job)
    assert str(info.value) == (
        "the Beam pipeline failed: a worker read other data from 'digits' than the launcher "
        "(other values): every worker must read the same files, at the same path. The shards "
        "written so far are kept: run the same command again to finish.")
    assert sorted(os.listdir(out)) == ["store.json"]


# --- training on it ---------------------------------------------------------------------------


def _distill_from(store, data):
    from keras_distill import Distiller

    keras.utils.set_random_seed(7)
    student = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(),
                                keras.layers.Dense(10)])
    distiller = Distiller(None, student, temperature=2.0, alpha=0.1)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(data.x_train, data.y_train, cache_teacher=store, epochs=2,
                            batch_size=64, shuffle=False, verbose=0)
    return distiller, history.history["loss"]


def test_the_distiller_trains_from_a_beam_store(teacher_file, data, references, tmp_path):
    out = str(tmp_path / "store")
    label(teacher_file, "digits", out, temperature=2.0, shard_size=SHARD)
    distiller, losses = _distill_from(out, data)
    assert np.isfinite(losses).all() and losses[1] < losses[0], losses
    assert distiller.cache_info == {"key": references[None].meta["key"],
                                    "path": out, "reused": True}
    # the same training as from the single-process store
    _, single = _distill_from(references[None].path, data)
    np.testing.assert_allclose(losses, single, rtol=1e-4)
    with pytest.raises(StoreError, match="holds 1167 samples but the inputs have 270"):
        distiller.fit(data.x_val, data.y_val, cache_teacher=out, epochs=1, verbose=0)


# --- the command line -------------------------------------------------------------------------


def test_the_command_writes_a_top_k_store_and_prints_its_summary(teacher_file, tmp_path,
                                                                 capsys):
    out = str(tmp_path / "store")
    argv = ["label", "--teacher", teacher_file, "--data", "digits", "--out", out,
            "--shard-size", SHARD, "--top-k", 3, "--direct_num_workers", "1"]  # a Beam option
    code, printed, err = main(argv, capsys)
    assert code == 0, err
    store = TeacherStore.open(out)
    assert (store.meta["top_k"], store.meta["samples"], store.meta["complete"]) == (3, SAMPLES,
                                                                                   True)
    size, full = store.nbytes(), store.full_nbytes()
    assert full == 4 * 10 * SAMPLES and size < 0.5 * full  # 13 bytes a sample, not 40
    assert f"Labelled {SAMPLES} samples in 4 shard(s) (4 computed) with DirectRunner" in printed
    assert f"{100 * size / full:.1f}% of the 45.6 KiB of full float32 outputs" in printed
    assert f"Wrote {out}/" in printed
    code, printed, _ = main(argv, capsys)
    assert code == 0 and "(0 computed, 4 already in the store)" in printed


def test_command_errors_are_one_line_naming_the_fix(teacher_file, tmp_path, capsys):
    def failed(argv, code):
        got, _, err = main(argv, capsys)
        assert got == code and err.count("\n") == 1 and err.startswith("keras-distill: error:")
        return err

    out = str(tmp_path / "store")
    base = ["label", "--data", "digits", "--out", out, "--shard-size", SHARD]
    err = failed([*base, "--teacher", tmp_path / "missing.keras"], 1)
    assert "teacher file not found" in err and "model.save('teacher.keras')" in err
    err = failed(["label", "--teacher", teacher_file, "--data", "nope", "--out", out], 1)
    assert "Unknown data source 'nope': expected 'digits'" in err and "image folder" in err
    wide = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])
    wide.save(tmp_path / "wide.keras")
    err = failed([*base, "--teacher", tmp_path / "wide.keras"], 1)
    assert "does not take the inputs of 'digits' (samples of shape (8, 8, 1)" in err
    assert "input: [(16, 16, 1)]" in err and "label the data the teacher was trained on" in err
    assert not os.path.exists(out)  # no store is left behind
    err = failed([*base, "--teacher", teacher_file, "--top_k", "3"], 2)
    assert "--top_k" in err and "--top-k" in err
    code, _, err = main(["run", "--direct_num_workers", "2"], capsys)  # only label passes them
    assert code == 2 and "unrecognized arguments: --direct_num_workers 2" in err

    other = load_model(teacher_file)  # another teacher: other weights
    other.set_weights([w + 0.01 for w in other.get_weights()])
    other_file = str(tmp_path / "other.keras")
    other.save(other_file)
    assert main([*base, "--teacher", other_file], capsys)[0] == 0
    err = failed([*base, "--teacher", teacher_file], 1)
    assert "holds the outputs of another teacher or other data" in err
    assert "choose another folder or delete it" in err


def test_help_without_tensorflow_and_the_package_without_apache_beam():
    code = """
import contextlib, io, json, sys
from keras_distill import cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    help_code = cli.main(["label", "--help"])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "apache_beam"})
import keras_distill.store, keras_distill.store.beam
beam = sorted(m for m in sys.modules if m.split(".")[0] == "apache_beam")
sys.modules["apache_beam"] = None  # as if it were not installed
err = io.StringIO()
with contextlib.redirect_stderr(err):
    missing = cli.main(["label", "--teacher", "t.keras", "--data", "digits", "--out", "s"])
print(json.dumps([help_code, "--top-k" in out.getvalue(), heavy, beam, missing,
                  err.getvalue()]))
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True)
    help_code, flags, heavy, beam, missing, err = json.loads(run.stdout.splitlines()[-1])
    assert (help_code, flags, heavy, beam, missing) == (0, True, [], [], 1)
    assert 'keras-distill label needs Apache Beam: pip install -e ".[beam]"' in err
