"""Built-in model presets, sized for small data: images such as the bundled digits (the CNNs),
or feature vectors such as breast_cancer and diabetes (the MLPs, which take any input shape).

Each returns an untrained Functional ``keras.Model`` whose output is linear: **logits** (no
softmax or sigmoid), or regression values, as the Distiller expects of a student.
``num_classes`` is the output's width (``Splits.output_units``: 1 for a binary logit or one
regression target). The presets' names and keyword arguments are those of
``keras_distill.registry.PRESET_ARGS`` (what the configuration accepts).

Example:
    >>> sorted(PRESETS)
    ['student_cnn', 'student_mlp', 'teacher_cnn', 'teacher_mlp']
"""

from __future__ import annotations

import keras
from keras import layers


def teacher_cnn(input_shape=(8, 8, 1), num_classes=10, *, width=32, dropout=0.3,
                name="teacher"):
    """A CNN teacher: three conv blocks with batch normalization and a dense head.

    About 66k parameters at the default ``width=32`` for 8x8x1 inputs. Batch normalization
    uses momentum 0.9 so that its statistics settle within the few hundred steps that small
    datasets give.

    Example:
        >>> model = teacher_cnn((8, 8, 1), 10)
        >>> model.output_shape
        (None, 10)
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((width, 2 * width)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", use_bias=False, name="conv3")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn3")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(4 * width, activation="relu", name="features")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def student_cnn(input_shape=(8, 8, 1), num_classes=10, *, width=8, name="student"):
    """A small CNN student: two conv layers, pooling and one dense layer.

    About 3.8k parameters at the default ``width=8`` for 8x8x1 inputs. Every op
    it uses runs in full-integer int8 on LiteRT and TensorFlow Lite Micro.

    Example:
        >>> model = student_cnn((8, 8, 1), 10)
        >>> model.output_shape
        (None, 10)
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def student_mlp(input_shape=(8, 8, 1), num_classes=10, *, units=32, name="student_mlp"):
    """A multilayer-perceptron student: flatten, one hidden layer, logits.

    Example:
        >>> student_mlp((8, 8, 1), 10, units=16).count_params()  # 64·16 + 16 + 16·10 + 10
        1210
        >>> student_mlp((30,), 1).output_shape  # feature vectors, one logit
        (None, 1)
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def teacher_mlp(input_shape=(30,), num_classes=2, *, units=64, dropout=0.1, name="teacher"):
    """A multilayer-perceptron teacher for feature vectors (tabular data): flatten, two
    ReLU hidden layers of ``units`` with dropout, and a linear output ``"logits"`` of
    ``num_classes`` units (1 for a binary logit or one regression target).

    Example:
        >>> model = teacher_mlp((30,), 1)
        >>> model.output_shape, model.count_params()  # 30·64 + 64 + 64·64 + 64 + 64 + 1
        ((None, 1), 6209)
    """
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Flatten(name="flatten")(inputs)
    for i in (1, 2):
        x = layers.Dense(units, activation="relu", name=f"hidden{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


#: The presets by name (their function's name), in the order of ``registry.PRESET_ARGS``.
PRESETS = {fn.__name__: fn for fn in (teacher_cnn, student_cnn, student_mlp, teacher_mlp)}
