"""The run's per-epoch backup (keras_distill.pipeline.backup.EpochBackup): a fit interrupted
after an epoch and resumed from it ends with the same weights as an uninterrupted fit."""

import json

import keras
import numpy as np
import pytest

from keras_distill.pipeline.backup import EpochBackup, saved_epoch


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def _model(units=8):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_a_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    x, y = _data()
    whole = _model()
    whole.fit(x, y, epochs=5, batch_size=16, verbose=0, shuffle=False)

    interrupted = _model()
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(x, y, epochs=5, batch_size=16, verbose=0, shuffle=False,
                        callbacks=[EpochBackup(str(tmp_path)), _StopAfter(2)])
    assert saved_epoch(str(tmp_path)) == 2
    assert json.loads((tmp_path / "training_metadata.json").read_text()) == {"epoch": 2}

    resumed = _model()  # a fresh process would build the same model
    history = resumed.fit(x, y, epochs=5, batch_size=16, verbose=0, shuffle=False,
                          callbacks=[EpochBackup(str(tmp_path))])
    assert history.epoch == [2, 3, 4]  # continued after epoch 2
    assert int(resumed.optimizer.iterations.numpy()) == 5 * 6
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not tmp_path.exists()  # removed when the fit finished


def test_a_backup_of_another_model_is_refused(tmp_path):
    x, y = _data()
    with pytest.raises(KeyboardInterrupt):
        _model().fit(x, y, epochs=3, verbose=0, callbacks=[EpochBackup(str(tmp_path)),
                                                           _StopAfter(1)])
    with pytest.raises(ValueError, match="saved by another model. Remove the folder"):
        _model(units=4).fit(x, y, epochs=3, verbose=0, callbacks=[EpochBackup(str(tmp_path))])
    assert saved_epoch(str(tmp_path / "none")) == 0
