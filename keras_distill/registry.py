"""The library's registries: names of presets, losses, formats, quantization modes and data sets.

One source of truth for every module that offers a choice and for the configuration schema
(``keras_distill.config``), which derives its keys' allowed values and defaults from here.
This module imports only the standard library, so that ``keras-distill --help`` stays free of
TensorFlow.

Example:
    >>> from keras_distill import registry
    >>> registry.DEFAULT_QUANTIZATION
    ('float32', 'float16', 'dynamic', 'int8')
"""

from __future__ import annotations

#: Export formats of ``keras_distill.export``.
FORMATS = ("tflite", "onnx", "micro")
#: TFLite quantization modes, in the order artifacts are produced.
QUANTIZATION_MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
#: What the library's ``export()`` and the CLI produce unless told otherwise (int16x8 is
#: opt-in: few devices run it faster than int8, and TFLite Micro lacks many of its kernels).
DEFAULT_QUANTIZATION = ("float32", "float16", "dynamic", "int8")
#: Modes that need calibration data (unless the model is quantization-aware).
CALIBRATED_MODES = ("int8", "int16x8")

#: Model presets (``keras_distill.presets``) and the keyword arguments each accepts.
PRESET_ARGS = {
    "teacher_cnn": ("width", "dropout"),
    "student_cnn": ("width",),
    "student_mlp": ("units",),
    "teacher_mlp": ("units", "dropout"),
    "resnet8": ("width",),
    "ds_cnn": ("filters", "blocks"),
    "mobilenet_v1": ("alpha",),
    "fc_autoencoder": ("units", "bottleneck"),
    "student_scaled": ("width", "max_features"),
}

#: Images of more pixels than this get ``student_scaled`` instead of ``student_cnn`` where the
#: student is left at its default (``student_cnn`` flattens a half-resolution feature map).
LARGE_IMAGE_PIXELS = 32 * 32


def reference_preset_for(input_shape, task="multiclass", *, output_units=None):
    """The name of the ``REFERENCE_PRESETS`` architecture that fits data of ``input_shape``
    (one sample's shape), or ``None``.

    * spectrogram-like features of one channel, at least 16 frames and twice as many frames
      as coefficients (MLPerf Tiny's 49x10x1 MFCCs): ``"ds_cnn"``;
    * RGB images of at least 32x32: ``"resnet8"`` up to 64 pixels a side, else
      ``"mobilenet_v1"``;
    * feature vectors (one axis) with ``task="regression"`` and ``output_units`` equal to
      their size (reconstructing the input): ``"fc_autoencoder"``;
    * anything else (small or grayscale images such as the digits, tabular data, a
      regression on images): ``None``, the ``PRESETS`` fit.

    Example:
        >>> reference_preset_for((49, 10, 1)), reference_preset_for((32, 32, 3))
        ('ds_cnn', 'resnet8')
        >>> reference_preset_for((96, 96, 3)), reference_preset_for((8, 8, 1))
        ('mobilenet_v1', None)
        >>> reference_preset_for((640,), "regression", output_units=640)
        'fc_autoencoder'
    """
    shape = tuple(input_shape)
    if len(shape) == 1:
        return "fc_autoencoder" if task == "regression" and output_units == shape[0] else None
    if len(shape) != 3 or task == "regression":
        return None
    height, width, channels = shape
    if channels == 1 and height >= 16 and height >= 2 * width:
        return "ds_cnn"
    if channels == 3 and min(height, width) >= 32:
        return "resnet8" if max(height, width) <= 64 else "mobilenet_v1"
    return None


#: Distillation losses by name (``keras_distill.losses``) and the arguments each accepts.
LOSS_ARGS = {
    "soft_target_kl": ("temperature",),
    "kl": ("temperature",),
    "hard_target_ce": (),
    "logit_mse": (),
    "mse": (),
    "decoupled_kd": ("alpha", "beta", "temperature"),
    "dkd": ("alpha", "beta", "temperature"),
    "feature_hint": ("teacher_layer", "student_layer"),
    "bernoulli_kl": ("temperature",),
    "huber": ("delta",),
    "teacher_bounded": ("margin",),
}
#: Loss arguments without a default.
REQUIRED_LOSS_ARGS = {"feature_hint": ("teacher_layer", "student_layer")}

#: Data sets bundled with a package (no download).
BUNDLED_DATASETS = ("digits", "breast_cancer", "diabetes")
#: Image-classification data sets of ``keras.datasets`` (downloaded on first use).
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
#: Channels of images read from a folder.
COLOR_MODES = ("grayscale", "rgb", "rgba")

#: Output kinds (``keras_distill.outputs``): what a model's output means and how it is distilled.
OUTPUT_KINDS = ("multiclass", "binary", "multilabel", "regression")
#: The values of ``Distiller(task=...)`` and of the configuration's ``task`` key.
TASKS = ("auto", *OUTPUT_KINDS)

#: How a student shrunk from the teacher is initialized (``keras_distill.students``).
TRANSFER_METHODS = ("select", "first", "none")
#: What an ensemble of teachers averages (``keras_distill.teachers.Ensemble``).
ENSEMBLE_AVERAGES = ("probabilities", "logits")
#: Which student ``keras-distill run`` exports.
EXPORT_STUDENT = ("auto", "distilled", "baseline")
#: The commands of the command line: the jobs of ``keras_distill.pipeline``, and ``label``
#: (a teacher's outputs into a store with Apache Beam, ``keras_distill.store.beam``).
COMMANDS = ("run", "distill", "export", "evaluate", "search", "label")
#: The output folder of ``keras-distill search`` when ``out_dir`` is not set (not run's
#: ``exported``, whose teacher.keras it would replace).
SEARCH_OUT_DIR = "search"
#: The commands that read the configuration (``--config`` and its keys' flags); ``label``
#: takes its own flags.
CONFIGURED_COMMANDS = ("run", "distill", "export", "evaluate", "search")
