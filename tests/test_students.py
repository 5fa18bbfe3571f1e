"""Tests for keras_distill/students.py: shrink, repeated blocks, weight transfer, linear, probe."""

import keras
import numpy as np
import pytest
from helpers import randomize_bn
from keras import layers

from keras_distill import students
from keras_distill.presets import student_mlp, teacher_cnn
from keras_distill.students import (
    linear,
    probe,
    repeated_blocks,
    shrink,
    transfer_weights,
)


def _chain_model(blocks=3, width=8):
    """stem conv, then `blocks` identical [Conv, BN, ReLU] blocks, GAP, logits."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
    for i in range(blocks):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"c{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"r{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="chain")


def _residual_model(blocks=3, width=8, post_relu=False):
    """stem conv, then `blocks` residual blocks x + ReLU(Conv(x)) (then a ReLU), GAP, logits."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
    if post_relu:
        x = layers.ReLU(name="stem_relu")(x)
    for i in range(blocks):
        y = layers.Conv2D(width, 3, padding="same", name=f"rc{i}")(x)
        y = layers.ReLU(name=f"rr{i}")(y)
        x = layers.Add(name=f"add{i}")([x, y])
        if post_relu:
            x = layers.ReLU(name=f"out{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="residual")


# ---------------------------------------------------------------------------------------
# shrink
# ---------------------------------------------------------------------------------------


def test_shrink_teacher_cnn_shapes_and_parameter_count():
    teacher = teacher_cnn((8, 8, 1), 10)
    student = shrink(teacher, width=0.5)
    assert isinstance(student, keras.Model) and student.name == "teacher_shrunk"
    assert [layer.name for layer in student.layers] == [layer.name for layer in teacher.layers]
    assert [student.get_layer(n).filters for n in ("conv1", "conv2", "conv3")] == [16, 32, 32]
    assert student.get_layer("features").units == 64
    assert student.get_layer("logits").units == 10  # the output layer keeps its units
    assert student.output_shape == (None, 10)
    # By hand: 3x3 convolutions without bias, BN has 4 vectors, Dense has a bias.
    expected = (
        3 * 3 * 1 * 16 + 4 * 16  # conv1 + bn1
        + 3 * 3 * 16 * 32 + 4 * 32  # conv2 + bn2
        + 3 * 3 * 32 * 32 + 4 * 32  # conv3 + bn3
        + 32 * 64 + 64  # features
        + 64 * 10 + 10  # logits
    )
    assert expected == 17050
    assert student.count_params() == expected
    assert teacher.count_params() == 65834  # the teacher is untouched
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    assert student.predict(x, verbose=0).shape == (4, 10)


def test_shrink_rounds_half_up_with_a_minimum_of_one():
    inputs = keras.Input((4,))
    x = layers.Dense(5, name="a")(inputs)  # 2.5 -> 3
    x = layers.Dense(1, name="b")(x)  # 0.5 -> 1
    x = layers.Dense(3, name="c")(x)  # 1.5 -> 2
    x = layers.Dense(7, name="out")(x)
    outputs = layers.Activation("softmax", name="probs")(x)  # the walk back finds "out"
    student = shrink(keras.Model(inputs, outputs), width=0.5)
    assert [student.get_layer(n).units for n in "abc"] == [3, 1, 2]
    assert student.get_layer("out").units == 7
    tiny = shrink(keras.Model(inputs, outputs), width=0.01)
    assert [tiny.get_layer(n).units for n in "abc"] == [1, 1, 1]


def test_shrink_sequential():
    teacher = keras.Sequential([keras.Input((10,)), layers.Dense(16, activation="relu"),
                                layers.Dropout(0.1), layers.Dense(3)], name="seq")
    student = shrink(teacher, width=0.25)
    assert isinstance(student, keras.Sequential)
    assert [layer.output.shape[-1] for layer in student.layers] == [4, 4, 3]
    assert student.count_params() == 10 * 4 + 4 + 4 * 3 + 3


def test_shrink_refuses_subclassed_teacher_and_names_the_fix():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="subclassed") as info:
        shrink(model)
    assert "Functional" in str(info.value) and "by hand" in str(info.value)
    with pytest.raises(ValueError, match="subclassed"):
        transfer_weights(model, model)


@pytest.mark.parametrize("width", [0, -1, 1.5, "half"])
def test_shrink_rejects_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        shrink(teacher_cnn(), width=width)


@pytest.mark.parametrize("depth", [0, -2, 0.0, 1.5])
def test_shrink_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        shrink(_chain_model(), depth=depth)


def test_repeated_blocks_chain_and_residual():
    assert repeated_blocks(_chain_model(3)) == [
        [["c0", "bn0", "r0"], ["c1", "bn1", "r1"], ["c2", "bn2", "r2"]]
    ]
    assert repeated_blocks(_residual_model(3)) == [
        [["rc0", "rr0", "add0"], ["rc1", "rr1", "add1"], ["rc2", "rr2", "add2"]]
    ]
    # ResNet style (a ReLU after each add): blocks start at their convolution
    assert repeated_blocks(_residual_model(3, post_relu=True)) == [
        [[f"rc{i}", f"rr{i}", f"add{i}", f"out{i}"] for i in range(3)]
    ]
    # Conv 1->32, 32->64, then a pool: no block keeps its shape and repeats.
    assert repeated_blocks(teacher_cnn()) == []
    # The first Dense changes the shape (10 -> 16), so only the next two repeat.
    seq = keras.Sequential([keras.Input((10,))] + [layers.Dense(16, activation="relu",
                                                                name=f"d{i}") for i in range(3)])
    assert repeated_blocks(seq) == [[["d1"], ["d2"]]]


@pytest.mark.parametrize("depth, kept", [(1, 1), (2, 2), (5, 3), (0.5, 2), (0.34, 1), (1.0, 3)])
def test_shrink_depth_keeps_the_first_repetitions(depth, kept):
    teacher = _chain_model(3)
    student = shrink(teacher, width=1.0, depth=depth)
    names = [layer.name for layer in student.layers]
    for i in range(3):
        assert (f"c{i}" in names) == (i < kept)
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    assert student.predict(x, verbose=0).shape == (2, 10)


def test_shrink_depth_on_residual_blocks_and_transfer():
    teacher = _residual_model(3)
    student = shrink(teacher, width=0.5, depth=1)
    names = [layer.name for layer in student.layers]
    assert names == ["image", "stem", "rc0", "rr0", "add0", "gap", "logits"]
    assert student.get_layer("rc0").filters == 4
    report = transfer_weights(teacher, student, method="select")
    # The two inputs of add0 (stem's output and rc0's output) share one selection.
    assert np.array_equal(report["rc0"].output_indices, report["stem"].output_indices)
    assert np.array_equal(report["logits"].input_indices, report["stem"].output_indices)


def test_shrink_depth_without_repeated_blocks_is_an_error():
    with pytest.raises(ValueError, match="no repeated blocks"):
        shrink(teacher_cnn(), depth=1)


# ---------------------------------------------------------------------------------------
# transfer_weights
# ---------------------------------------------------------------------------------------


def _top(kernel, k):
    norms = np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), axis=0)
    return np.sort(np.argsort(-norms, kind="stable")[:k])


def test_transfer_select_is_consistent_across_layers(trained_teacher):
    teacher = trained_teacher
    student = shrink(teacher, width=0.5)
    report = transfer_weights(teacher, student, method="select")
    assert report.match == "name"
    assert report.sliced == ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "features",
                             "logits"]
    assert report.copied == [] and report.skipped == []

    t = {layer.name: layer.get_weights() for layer in teacher.layers}
    s = {layer.name: layer.get_weights() for layer in student.layers}
    i1 = _top(t["conv1"][0], 16)
    i2 = _top(t["conv2"][0], 32)
    i3 = _top(t["conv3"][0], 32)
    i4 = _top(t["features"][0], 64)
    for name, idx in (("conv1", i1), ("conv2", i2), ("conv3", i3), ("features", i4)):
        np.testing.assert_array_equal(report[name].output_indices, idx)
    # each layer's inputs are its producer's selected outputs
    np.testing.assert_array_equal(s["conv1"][0], t["conv1"][0][..., i1])
    np.testing.assert_array_equal(s["conv2"][0], t["conv2"][0][:, :, i1, :][..., i2])
    np.testing.assert_array_equal(s["conv3"][0], t["conv3"][0][:, :, i2, :][..., i3])
    np.testing.assert_array_equal(s["features"][0], t["features"][0][i3][:, i4])
    np.testing.assert_array_equal(s["features"][1], t["features"][1][i4])
    np.testing.assert_array_equal(s["logits"][0], t["logits"][0][i4])
    np.testing.assert_array_equal(s["logits"][1], t["logits"][1])
    # BatchNormalization (gamma, beta, moving mean, moving variance) follows its channels
    for bn, idx in (("bn1", i1), ("bn2", i2), ("bn3", i3)):
        assert len(s[bn]) == 4
        for sw, tw in zip(s[bn], t[bn]):
            np.testing.assert_array_equal(sw, tw[idx])
    text = str(report)
    assert "0 copied, 8 sliced, 0 skipped" in text and "16 of 32 outputs (select)" in text


def test_transfer_first_takes_leading_channels():
    teacher = teacher_cnn()
    randomize_bn(teacher)
    student = shrink(teacher, width=0.25)
    report = transfer_weights(teacher, student, method="first")
    np.testing.assert_array_equal(report["conv2"].output_indices, np.arange(16))
    np.testing.assert_array_equal(student.get_layer("conv2").get_weights()[0],
                                  teacher.get_layer("conv2").get_weights()[0][:, :, :8, :16])
    np.testing.assert_array_equal(student.get_layer("bn2").get_weights()[3],
                                  teacher.get_layer("bn2").get_weights()[3][:16])


def test_transfer_full_width_copies_everything_and_reproduces_the_teacher():
    teacher = teacher_cnn()
    randomize_bn(teacher)
    student = shrink(teacher, width=1.0)
    report = transfer_weights(teacher, student)
    assert report.copied == [layer.name for layer in teacher.layers if layer.weights]
    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(student.predict(x, verbose=0), teacher.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_transfer_through_flatten_maps_channels_to_features():
    inputs = keras.Input((4, 4, 1))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.Flatten(name="flat")(x)
    outputs = layers.Dense(3, name="out")(x)
    teacher = keras.Model(inputs, outputs)
    student = shrink(teacher, width=0.5)
    report = transfer_weights(teacher, student, method="select")
    idx = report["conv"].output_indices
    expected_rows = (np.arange(16)[:, None] * 8 + idx[None, :]).reshape(-1)
    np.testing.assert_array_equal(report["out"].input_indices, expected_rows)
    np.testing.assert_array_equal(student.get_layer("out").get_weights()[0],
                                  teacher.get_layer("out").get_weights()[0][expected_rows])
    # the same function computed on the selected channels: student == teacher restricted
    t_conv = keras.Model(teacher.inputs, teacher.get_layer("conv").output)
    s_conv = keras.Model(student.inputs, student.get_layer("conv").output)
    x = np.random.default_rng(0).random((2, 4, 4, 1), dtype=np.float32)
    np.testing.assert_allclose(s_conv.predict(x, verbose=0),
                               t_conv.predict(x, verbose=0)[..., idx], rtol=1e-5, atol=1e-6)


def test_transfer_matches_by_order_and_reports_skips():
    teacher = student_mlp(units=32)
    inputs = keras.Input((8, 8, 1))
    x = layers.Flatten()(inputs)
    x = layers.Dense(16, activation="relu", name="h")(x)
    x = layers.Dense(10, name="o")(x)
    x = layers.Dense(10, name="extra")(x)
    student = keras.Model(inputs, x)
    report = transfer_weights(teacher, student, method="first")
    assert report.match == "order"
    assert [(t.name, t.teacher_name, t.status) for t in report.layers] == [
        ("h", "hidden", "sliced"), ("o", "logits", "sliced"), ("extra", None, "skipped")]
    np.testing.assert_array_equal(student.get_layer("o").get_weights()[0],
                                  teacher.get_layer("logits").get_weights()[0][:16])
    assert "no teacher layer" in str(report)
    with pytest.raises(ValueError, match="method"):
        transfer_weights(teacher, student, method="random")


def test_transfer_skips_a_student_wider_than_its_teacher():
    small = keras.Sequential([keras.Input((4,)), layers.Dense(2, name="d")])
    big = keras.Sequential([keras.Input((4,)), layers.Dense(8, name="d")])
    report = transfer_weights(small, big)
    assert report["d"].status == "skipped" and "exceed" in report["d"].reason


# ---------------------------------------------------------------------------------------
# linear and probe
# ---------------------------------------------------------------------------------------


def test_linear_is_logistic_regression_and_trains(digits):
    model = linear(digits.input_shape, digits.num_classes)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Flatten", "Dense"]
    assert model.count_params() == 64 * 10 + 10
    assert model.get_layer("logits").activation is keras.activations.linear
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=15, batch_size=64, verbose=0)
    accuracy = model.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    assert accuracy > 0.88, accuracy  # chance is 0.1
    with pytest.raises(ValueError, match="num_classes"):
        linear((8, 8, 1), 1)


def test_probe_trains_its_head_only(trained_teacher, digits):
    teacher_weights = [w.copy() for w in trained_teacher.get_weights()]
    teacher_trainable = [layer.trainable for layer in trained_teacher.layers]
    model = probe(trained_teacher, "gap")
    features = model.get_layer("features")
    assert not features.trainable
    assert len(model.trainable_weights) == 2  # the head's kernel and bias
    frozen_before = [w.copy() for w in features.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=64, verbose=0)
    accuracy = model.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    assert accuracy > 0.85, accuracy
    for before, after in zip(frozen_before, features.get_weights()):
        np.testing.assert_array_equal(before, after)  # BN statistics included
    for before, after in zip(teacher_weights, trained_teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert [layer.trainable for layer in trained_teacher.layers] == teacher_trainable


def test_probe_on_a_spatial_layer_flattens_and_unknown_names_are_listed(trained_teacher):
    model = probe(trained_teacher, "pool", num_classes=3)
    assert model.output_shape == (None, 3)
    assert model.get_layer("probe_logits").get_weights()[0].shape == (4 * 4 * 64, 3)
    with pytest.raises(ValueError, match="no layer 'nope'") as info:
        probe(trained_teacher, "nope")
    assert "conv1" in str(info.value) and "gap" in str(info.value)


def test_module_exports():
    assert set(students.__all__) >= {"shrink", "transfer_weights", "linear", "probe",
                                     "TransferReport", "repeated_blocks"}


def test_shrink_of_a_frozen_teacher_is_trainable_and_distills(digits, trained_teacher):
    """A Distiller freezes its teacher; a student shrunk from it afterwards must still train."""
    import keras

    from keras_distill import Distiller

    trained_teacher.trainable = False
    student = shrink(trained_teacher, width=0.25)
    assert student.trainable and len(student.trainable_weights) > 0
    transfer_weights(trained_teacher, student, method="first")
    d = Distiller(trained_teacher, student)
    d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    before = d.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)["accuracy"]
    d.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    after = d.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)["accuracy"]
    assert after > max(0.6, before + 0.05), (before, after)
