"""The CLI on streamed data: an image folder read on demand from disk to the teacher, the
Distiller, calibration and verification (a lazy array refuses to become one array, so any
stage that loaded the whole set would fail the run), with the teacher's outputs in a store."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_distill import cli, store
from keras_distill.data import is_lazy, load
from keras_distill.io import load_model

CLASSES, PER_CLASS, SIZE = 4, 45, 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder of PNGs, one class a bright vertical band at its own place."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    band = SIZE // CLASSES
    for c in range(CLASSES):
        os.makedirs(root / f"class_{c}")
        for i in range(PER_CLASS):
            image = (rng.random((SIZE, SIZE, 3)) * 70).astype(np.uint8)
            image[:, c * band:(c + 1) * band] += 160
            Image.fromarray(image).save(root / f"class_{c}" / f"{i:03d}.png")
    return str(root)


@pytest.fixture(scope="module")
def run_dir(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["run", "--data", folder, "--epochs", "3", "--teacher-epochs", "6",
                     "--teacher-allow-weak", "--cache-teacher", "--formats", "tflite",
                     "--quantization", "float32,int8", "--out-dir", str(out), "--quiet"])
    assert code == 0
    return out


def test_a_run_streams_an_image_folder_end_to_end(folder, run_dir):
    data = load(folder)
    assert is_lazy(data.x_train) and is_lazy(data.x_test)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["n_train"] == len(data.x_train)
    assert manifest["data"]["n_test"] == len(data.x_test)
    # the teacher's outputs went to a store in the cache folder, written whole
    stores = [p for p in (run_dir / "cache").iterdir() if (p / "store.json").exists()]
    assert len(stores) == 1
    written = store.TeacherStore.open(stores[0])
    assert written.meta["complete"] and written.meta["samples"] == len(data.x_train)
    assert not [p for p in stores[0].iterdir() if p.name.endswith(".partial")]
    # every artifact ran on the streamed test split, and the students learnt the bands
    rows = {r["file"]: r for r in manifest["artifacts"]}
    int8 = [r for name, r in rows.items() if name.endswith("int8.tflite")]
    assert int8 and int8[0]["status"] == "ok" and int8[0]["test_accuracy"] > 0.9
    assert int8[0]["export_metrics"]["n_samples"] == len(data.x_test)


def test_distill_reads_a_store_written_before_and_refuses_one_for_other_data(
        folder, run_dir, tmp_path, capsys):
    data = load(folder)
    teacher = load_model(run_dir / "teacher.keras")
    written = store.write(teacher, data.x_train, tmp_path / "store", top_k=2, temperature=4.0)
    assert written.nbytes() < written.full_nbytes()
    out = tmp_path / "distilled"
    code = cli.main(["distill", "--teacher", str(run_dir / "teacher.keras"), "--data", folder,
                     "--teacher-outputs", str(tmp_path / "store"), "--epochs", "2",
                     "--teacher-allow-weak", "--out-dir", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and f"teacher outputs: read from {tmp_path / 'store'}" in printed
    assert (out / "student_distilled.keras").exists()
    # a store of the validation split is not the training split's
    store.write(teacher, data.x_val, tmp_path / "other")
    code = cli.main(["distill", "--teacher", str(run_dir / "teacher.keras"), "--data", folder,
                     "--teacher-outputs", str(tmp_path / "other"), "--epochs", "1",
                     "--teacher-allow-weak", "--out-dir", str(tmp_path / "refused"),
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "samples but the inputs have" in err


def test_export_reads_only_the_calibration_samples_of_a_dataset(tmp_path):
    """representative_data as a stream: only calibration_samples rows are read from it (an
    endless dataset would never end otherwise), and the int8 artifact is verified."""
    import keras
    import tensorflow as tf

    from keras_distill import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    read = []

    def rows():
        rng = np.random.default_rng(0)
        while True:
            read.append(1)
            yield rng.normal(size=(6,)).astype(np.float32)

    endless = tf.data.Dataset.from_generator(
        rows, output_signature=tf.TensorSpec((6,), tf.float32)).batch(32)
    x = np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32)
    report = export(model, tmp_path, formats=("tflite",), quantization=("int8",),
                    representative_data=endless, calibration_samples=100,
                    eval_data=(x, model.predict(x, verbose=0).argmax(-1)))
    assert report.get("tflite", "int8").ok
    assert 100 <= len(read) <= 100 + 3 * 32  # a few batches read ahead at most
