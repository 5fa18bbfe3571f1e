"""Tests for keras_distill/compress/prune.py: magnitude pruning, schedules, sparsity reports,
gzip sizes, and sparsity that survives stripping, QAT and TFLite conversion."""

import keras
import numpy as np
import pytest
from helpers import randomize_bn
from test_qat import compile_classifier, interpreter_for, to_tflite, weight_tensors

from keras_distill.compress import (
    PruningCallback,
    gzip_size,
    keep_sparsity,
    prune,
    quantize_aware,
    sparsity_report,
    strip_pruning,
)
from keras_distill.compress.fake_quant import _quantize_kernel_by_rounding
from keras_distill.presets import student_cnn, student_mlp, teacher_cnn


def test_polynomial_and_constant_schedules():
    _, callback = prune(student_mlp(), target_sparsity=0.8, begin_step=10, end_step=110,
                        frequency=5)
    assert callback.sparsity_at(0) == 0.0
    assert callback.sparsity_at(10) == pytest.approx(0.0)
    assert callback.sparsity_at(60) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert callback.sparsity_at(110) == pytest.approx(0.8)
    assert callback.sparsity_at(500) == pytest.approx(0.8)
    assert [s for s in range(130) if callback._should_update(s)] == list(range(10, 111, 5))
    _, constant = prune(student_mlp(), 0.5, schedule="constant", begin_step=3, frequency=4)
    assert [constant.sparsity_at(s) for s in (0, 2, 3, 50)] == [0, 0, 0.5, 0.5]
    for bad in ({"target_sparsity": 1.0}, {"schedule": "cubic"}, {"frequency": 0},
                {"begin_step": 5, "end_step": 2}, {"layers": ["nope"]}):
        with pytest.raises(ValueError):
            prune(student_mlp(), **bad)


def test_pruning_reaches_the_target_and_survives_strip_and_tflite(digits):
    keras.utils.set_random_seed(0)
    base = compile_classifier(student_cnn(), 3e-3)
    base.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64, verbose=0)
    dense_acc = base.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    dense_bytes = to_tflite(base, int8=False)

    model, callback = prune(base, target_sparsity=0.75, frequency=5)
    assert model is base
    history = model.fit(digits.x_train, digits.y_train, epochs=6, batch_size=64, verbose=0,
                        callbacks=[callback])
    assert len(history.history["loss"]) == 6
    steps = 6 * int(np.ceil(len(digits.x_train) / 64))
    assert callback.step == steps
    assert callback.resolved_end_step == int(0.75 * steps) - 1
    report = sparsity_report(model)
    assert set(report.layers) == {"conv1", "conv2", "logits"}
    for name in report.layers:
        assert abs(report[name] - 0.75) <= 0.01, (name, report[name])
    assert "conv1" in str(report)
    pruned_acc = model.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    assert pruned_acc >= dense_acc - 0.05, (pruned_acc, dense_acc)

    plain = strip_pruning(model, callback)
    assert plain is not model
    np.testing.assert_array_equal(plain.predict(digits.x_test[:32], verbose=0),
                                  model.predict(digits.x_test[:32], verbose=0))
    assert abs(sparsity_report(plain).overall - 0.75) <= 0.01

    tflite = to_tflite(plain, int8=False)
    interpreter = interpreter_for(tflite)
    kernels = weight_tensors(interpreter)
    assert len(kernels) == 3
    for tensor in kernels:
        values = interpreter.get_tensor(tensor["index"])
        assert values.dtype == np.float32
        assert abs(np.mean(values == 0) - 0.75) <= 0.01
    # zeros pay off once compressed
    assert len(tflite) == pytest.approx(len(dense_bytes), rel=0.05)
    assert gzip_size(tflite) < 0.7 * gzip_size(dense_bytes)


def test_pruning_callback_finds_the_student_of_a_distiller_like_model(digits):
    class Wrapper(keras.Model):  # stands in for the Distiller: it trains `.student`
        def __init__(self, student):
            super().__init__()
            self.student = student

        def call(self, x, training=False):
            return self.student(x, training=training)

    keras.utils.set_random_seed(0)
    student = student_mlp()
    wrapper = compile_classifier(Wrapper(student), 3e-3)
    callback = PruningCallback(target_sparsity=0.5, schedule="constant", frequency=3)
    wrapper.fit(digits.x_train[:512], digits.y_train[:512], epochs=2, batch_size=64,
                verbose=0, callbacks=[callback])
    report = sparsity_report(student)
    assert report["hidden"] == pytest.approx(0.5, abs=0.01)
    assert report["logits"] == pytest.approx(0.5, abs=0.01)


def test_masks_from_zeros_keeps_the_current_zeros(digits):
    model = student_mlp(digits.input_shape, 10)
    kernel = model.get_layer("hidden").kernel
    values = kernel.numpy()
    values[:, ::2] = 0.0
    kernel.assign(values)
    _, callback = prune(model, target_sparsity=0.5)
    callback.masks_from_zeros()
    kernel.assign(np.ones_like(values))
    callback.apply_masks()
    np.testing.assert_array_equal(kernel.numpy()[:, ::2], 0.0)
    np.testing.assert_array_equal(kernel.numpy()[:, 1::2], 1.0)


def test_sparsity_survives_strip_and_quantize_aware():
    model = teacher_cnn(width=8)
    randomize_bn(model)
    model, callback = prune(model, target_sparsity=0.6, schedule="constant")
    callback.update_masks()  # magnitude masks at the target, without training
    plain = strip_pruning(model, callback)
    before = sparsity_report(plain)
    assert before.overall == pytest.approx(0.6, abs=0.01)
    qat = quantize_aware(plain)
    after = sparsity_report(qat)
    # BN folding scales whole output channels and int8 is symmetric: zeros stay zeros
    for name in ("conv1", "conv2", "conv3", "features", "logits"):
        assert after[name] >= before[name] - 1e-9
        weights = qat.get_layer(name).kernel.numpy()
        original = plain.get_layer(name).get_weights()[0]
        assert np.all(weights[original == 0] == 0)
        quantized = np.asarray(_quantize_kernel_by_rounding(weights, 8))
        assert np.mean(quantized == 0) >= before[name] - 1e-9


@pytest.mark.slow
def test_sparsity_survives_qat_fine_tuning_and_int8_conversion(digits):
    keras.utils.set_random_seed(0)
    model = compile_classifier(teacher_cnn(width=8), 3e-3)
    model, callback = prune(model, target_sparsity=0.6, schedule="constant", frequency=5)
    model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64, verbose=0,
              callbacks=[callback])
    plain = strip_pruning(model, callback)
    before = sparsity_report(plain)
    # BN folding scales whole output channels: every zero stays a zero
    qat = quantize_aware(plain)
    folded = sparsity_report(qat)
    for name in ("conv1", "conv2", "conv3", "features", "logits"):
        assert folded[name] >= before[name] - 1e-9 and folded[name] >= 0.59
    keeper = keep_sparsity(qat)
    compile_classifier(qat, 1e-3).fit(digits.x_train, digits.y_train, epochs=1, batch_size=64,
                            verbose=0, callbacks=[keeper])
    after = sparsity_report(qat)
    for name in folded.layers:
        assert after[name] >= folded[name] - 1e-9
    # symmetric int8 keeps exact zeros in the converted weights
    interpreter = interpreter_for(to_tflite(qat, int8=True))
    for tensor in weight_tensors(interpreter):
        values = interpreter.get_tensor(tensor["index"])
        assert values.dtype == np.int8 and np.mean(values == 0) >= 0.59


def test_gzip_size_of_bytes_and_files(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    assert gzip_size(bytes(10_000)) < 100
    assert gzip_size(noise) > 9_000
    path = tmp_path / "blob.bin"
    path.write_bytes(noise)
    assert gzip_size(path) == gzip_size(noise) == gzip_size(str(path))
    assert gzip_size(bytearray(noise)) == gzip_size(noise)
    with pytest.raises(ValueError, match="directory"):
        gzip_size(tmp_path)
    with pytest.raises(TypeError):
        gzip_size(123)
