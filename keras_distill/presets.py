"""Built-in model presets, sized for small data: images such as the bundled digits (the CNNs),
or feature vectors such as breast_cancer and diabetes (the MLPs, which take any input shape).

Each returns an untrained Functional ``keras.Model`` whose output is linear: **logits** (no
softmax or sigmoid), or regression values, as the Distiller expects of a student.
``num_classes`` is the output's width (``Splits.output_units``: 1 for a binary logit or one
regression target). The presets' names and keyword arguments are those of
``keras_distill.registry.PRESET_ARGS`` (what the configuration accepts).

The MLPerf Tiny reference architectures (https://github.com/mlcommons/tiny,
``benchmark/training/*``) are in ``REFERENCE_PRESETS``: ``resnet8`` (image classification),
``ds_cnn`` (keyword spotting), ``mobilenet_v1`` (visual wake words) and ``fc_autoencoder``
(anomaly detection), with ``student_scaled``, a small CNN student that shrinks its feature map
with the input. They keep the reference layers (convolutions with bias, then batch
normalization) but leave out their softmax, dropout and L2 regularizers, and every op they use
converts to full-integer int8 TFLite and runs on TensorFlow Lite Micro.
``reference_preset_for`` names the reference preset that fits a data shape; ``keras-distill
run`` takes it for a teacher left at its default, and ``student_scaled`` for a default student
of images larger than ``LARGE_IMAGE_PIXELS``.

Example:
    >>> list(PRESETS)[:4]
    ['teacher_cnn', 'student_cnn', 'student_mlp', 'teacher_mlp']
    >>> list(REFERENCE_PRESETS)
    ['resnet8', 'ds_cnn', 'mobilenet_v1', 'fc_autoencoder', 'student_scaled']
"""

from __future__ import annotations

import keras
from keras import layers

from keras_distill.registry import LARGE_IMAGE_PIXELS, reference_preset_for  # noqa: F401


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




def _conv_bn_relu(x, filters, kernel, strides, name, *, activation=True):
    """Conv2D (``"same"`` padding, with bias as in MLPerf Tiny) + BN, then ReLU if asked."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if activation else x


def _separable_block(x, filters, strides, name):
    """A depthwise-separable block: DepthwiseConv2D 3x3 + BN + ReLU, Conv2D 1x1 + BN + ReLU."""
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    return _conv_bn_relu(x, filters, 1, 1, f"{name}_pw")


def _check_image_shape(input_shape, what):
    if len(input_shape) != 3:
        raise ValueError(f"{what} takes images (height, width, channels), not {input_shape}")


def resnet8(input_shape=(32, 32, 3), num_classes=10, *, width=16, name="resnet8"):
    """The MLPerf Tiny image-classification ResNet-8 (CIFAR-10).

    A 3x3 conv of ``width`` filters + BN + ReLU, three residual stacks of ``width``,
    ``2·width`` and ``4·width`` filters (strides 1, 2, 2; each two 3x3 convs with BN, a 1x1
    conv shortcut where the shape changes, ``layers.Add``, ReLU), global average pooling and
    a linear ``"logits"`` layer. 78,666 parameters at 32x32x3 and 10 classes (the count does
    not depend on the image size).

    Example:
        >>> model = resnet8()
        >>> model.output_shape, model.count_params()
        ((None, 10), 78666)
    """
    _check_image_shape(input_shape, "resnet8")
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(inputs, width, 3, 1, "stem")
    for i, (filters, strides) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2))):
        stack = f"stack{i + 1}"
        y = _conv_bn_relu(x, filters, 3, strides, f"{stack}_a")
        y = _conv_bn_relu(y, filters, 3, 1, f"{stack}_b", activation=False)
        if strides != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=strides, padding="same",
                              name=f"{stack}_shortcut")(x)
        x = layers.Add(name=f"{stack}_add")([x, y])
        x = layers.ReLU(name=f"{stack}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def ds_cnn(input_shape=(49, 10, 1), num_classes=12, *, filters=64, blocks=4, name="ds_cnn"):
    """The MLPerf Tiny keyword-spotting DS-CNN (Speech Commands, 49x10 MFCC features).

    A 10x4 conv of stride 2 + BN + ReLU, ``blocks`` depthwise-separable blocks
    (DepthwiseConv2D 3x3 + BN + ReLU, Conv2D 1x1 + BN + ReLU) of ``filters`` channels,
    global average pooling and a linear ``"logits"`` layer. 24,908 parameters at the defaults
    (49x10x1, 12 classes; the count does not depend on the input's size).

    Example:
        >>> model = ds_cnn()
        >>> model.output_shape, model.count_params()
        ((None, 12), 24908)
    """
    _check_image_shape(input_shape, "ds_cnn")
    inputs = keras.Input(shape=input_shape, name="features")
    x = _conv_bn_relu(inputs, filters, (10, 4), 2, "stem")
    for i in range(blocks):
        x = _separable_block(x, filters, 1, f"block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


#: MobileNetV1's 13 depthwise-separable blocks: (filters at alpha 1, stride).
_MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet_v1(input_shape=(96, 96, 3), num_classes=2, *, alpha=0.25, name="mobilenet_v1"):
    """The MLPerf Tiny visual-wake-words MobileNetV1 (96x96 RGB, person / no person).

    A 3x3 conv of ``32·alpha`` filters, stride 2, + BN + ReLU; the 13 depthwise-separable
    blocks of MobileNetV1 (64 to 1024 filters times ``alpha``, strides 1, 2, 1, 2, 1, 2, 1,
    1, 1, 1, 1, 2, 1); global average pooling and a linear ``"logits"`` layer. 221,794
    parameters at ``alpha=0.25`` and 2 classes (the count does not depend on the image
    size).

    Example:
        >>> model = mobilenet_v1()
        >>> model.output_shape, model.count_params()
        ((None, 2), 221794)
    """
    _check_image_shape(input_shape, "mobilenet_v1")
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(inputs, max(1, int(32 * alpha)), 3, 2, "stem")
    for i, (filters, strides) in enumerate(_MOBILENET_V1_BLOCKS):
        x = _separable_block(x, max(1, int(filters * alpha)), strides, f"block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def fc_autoencoder(input_shape=(640,), num_classes=640, *, units=128, bottleneck=8,
                   name="fc_autoencoder"):
    """The MLPerf Tiny anomaly-detection autoencoder (ToyADMOS, 5 frames of 128 mel bins).

    Four Dense(``units``) + BN + ReLU layers, a Dense(``bottleneck``) + BN + ReLU code, four
    Dense(``units``) + BN + ReLU layers and a linear ``"logits"`` layer of ``num_classes``
    values: a regression that reconstructs the input (``num_classes`` equal to its size; the
    reconstruction error is the anomaly score). 269,992 parameters at the defaults.

    Example:
        >>> model = fc_autoencoder()
        >>> model.output_shape, model.count_params()
        ((None, 640), 269992)
    """
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Flatten(name="flatten")(inputs)
    sizes = (units,) * 4 + (bottleneck,) + (units,) * 4
    for i, size in enumerate(sizes):
        x = layers.Dense(size, name=f"dense{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def student_scaled(input_shape=(8, 8, 1), num_classes=10, *, width=8, max_features=256,
                   name="student"):
    """A small CNN student whose dense layer stays small at any image size (at least 8x8).

    A 3x3 conv of ``width`` filters, then 3x3 convs of stride 2 and ``2·width`` filters
    (all ReLU) until the feature map holds at most ``max_features`` values (height · width ·
    channels), then flatten and a linear ``"logits"`` layer. Each halving adds one conv, so
    the size grows with the logarithm of the image's: 3,818 parameters at 8x8x1 and 10
    classes (like ``student_cnn``), 12,122 at 96x96x3.

    Raises:
        ValueError: an input that is not an image, or ``max_features < 2·width``.

    Example:
        >>> student_scaled((8, 8, 1), 10).count_params()
        3818
        >>> model = student_scaled((96, 96, 3), 10)
        >>> model.get_layer("logits").input.shape, model.count_params()
        ((None, 144), 12122)
    """
    _check_image_shape(input_shape, "student_scaled")
    if max_features < 2 * width:
        raise ValueError(f"max_features ({max_features}) must be at least 2·width "
                         f"({2 * width})")
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inputs)
    i = 1
    while x.shape[1] * x.shape[2] * x.shape[3] > max_features:
        i += 1
        x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu",
                          name=f"conv{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


#: The reference presets by name (their function's name).
REFERENCE_PRESETS = {fn.__name__: fn for fn in (resnet8, ds_cnn, mobilenet_v1, fc_autoencoder,
                                                student_scaled)}
#: Every preset by name (their function's name), in the order of ``registry.PRESET_ARGS``.
PRESETS = {**{fn.__name__: fn for fn in (teacher_cnn, student_cnn, student_mlp, teacher_mlp)},
           **REFERENCE_PRESETS}
