"""The configuration keys: :data:`SCHEMA`, one :class:`Key` per key, is the one list of them.

Allowed names and defaults come from :mod:`keras_distill.registry`, so the schema offers what
the library has. ``keras_distill.config.example_toml()`` (or ``keras-distill run
--print-config``) writes every key with its default and help.

Example:
    >>> key = SCHEMA["teacher.epochs"]
    >>> key.flag, key.default, key.help_section
    ('--teacher-epochs', None, 'teacher')
"""

from __future__ import annotations

import dataclasses

from keras_distill import registry
from keras_distill.config import checks
from keras_distill.targets import TARGETS

#: Tables that may be written as a string, and the key that string sets.
SHORTHAND = {"data": "data.source", "teacher": "teacher.model", "student": "student.model"}
#: Keys kept for later versions (refused with a message saying so). None at present.
RESERVED = {}
#: Keys that may change between an interrupted run and its ``--resume`` (they act after
#: training, or not at all on the results).
RESUME_FREE_KEYS = ("out_dir", "quiet", "formats", "quantization", "calibration_samples",
                    "export_student", "target", "max_accuracy_drop")
#: ``teacher.epochs`` when not set, for a preset (a ``.keras`` file gets 0: used as it is).
DEFAULT_TEACHER_EPOCHS = 20


def flag_name(path):
    """The command-line flag of a key.

    Example:
        >>> flag_name("out_dir"), flag_name("teacher.epochs"), flag_name("teacher.model")
        ('--out-dir', '--teacher-epochs', '--teacher')
    """
    for short, target in SHORTHAND.items():
        if path == target:
            return f"--{short}"
    return "--" + path.replace(".", "-").replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Key:
    """One configuration key.

    Attributes:
        path: dotted name, e.g. ``"teacher.epochs"``.
        kind: how a command-line string is parsed: ``"int"``, ``"float"``, ``"bool"``,
            ``"str"``, ``"list"`` (comma-separated), ``"int_list"``, ``"float_list"`` or
            ``"table"`` (file only).
        default: the value when neither file nor flag sets it (``None``: decided at run time,
            see ``help``).
        check: cleans a value or raises :class:`~keras_distill.config.checks.NotAllowed`
            with a description of the allowed values.
        help: one line for ``--help`` and ``example_toml()``.
        commands: the subcommands that read it.
        is_path: a path, resolved relative to the config file's folder.
        group: the section of ``--help`` that lists the flag, where it is not the key's
            table (see :attr:`help_section`).
    """

    path: str
    kind: str
    default: object
    check: object
    help: str
    commands: tuple = registry.CONFIGURED_COMMANDS
    is_path: bool = False
    group: str | None = None

    @property
    def flag(self):
        return flag_name(self.path)

    @property
    def help_section(self):
        """The section of ``--help`` that lists the flag: :attr:`group`, else the key's table
        (``"training"`` at the top level)."""
        return self.group or self.path.rpartition(".")[0] or "training"


def _either(names):
    """``"a, b or c"``."""
    return ", ".join(names[:-1]) + " or " + names[-1]


_TRAINING = ("run", "distill")
_EXPORTING = ("run", "export")
_RUN = ("run",)
_SEARCH = ("search",)
#: Keys of training and export that ``search`` reads too (the teacher it trains, the
#: distillation of every candidate, the device and the int8 budget of the chosen one).
_SEARCH_READS = ("epochs", "batch_size", "learning_rate", "temperature", "alpha", "target",
                 "max_accuracy_drop", "teacher.model", "teacher.epochs",
                 "teacher.learning_rate", "teacher.preset_args", "teacher.allow_weak")

_TOP_LEVEL = [
    Key("seed", "int", 0, checks.integer_at_least(0),
        "seed of data splits, weight initialization and shuffling", group="general"),
    Key("out_dir", "str", "exported", checks.nonempty_string, "output folder", is_path=True,
        group="general"),
    Key("epochs", "int", 30, checks.integer_at_least(1),
        "epochs of each student (baseline and distilled)", _TRAINING),
    Key("batch_size", "int", 64, checks.integer_at_least(1), "batch size of all training",
        _TRAINING),
    Key("learning_rate", "float", 3e-3, checks.positive_number,
        "Adam learning rate of the students", _TRAINING),
    Key("temperature", "float", 4.0, checks.positive_number,
        "softening temperature of the distillation losses", _TRAINING),
    Key("alpha", "float", 0.1, checks.number(0, 1),
        "weight of the loss on true labels (0 = distill only, 1 = ignore the teacher)",
        _TRAINING),
    Key("losses", "list", ["soft_target_kl"], checks.losses,
        "distillation losses: " + ", ".join(registry.LOSS_ARGS), _TRAINING),
    Key("loss_weights", "float_list", None, checks.loss_weights,
        "one weight per loss (default: all 1)", _TRAINING),
    Key("export_student", "str", "auto", checks.one_of(registry.EXPORT_STUDENT),
        "student to export: auto (best validation accuracy), distilled or baseline", _RUN,
        group="export"),
    Key("formats", "list", list(registry.FORMATS),
        checks.subset_of(registry.FORMATS, allow_empty=True),
        "export formats (empty: no export)", _EXPORTING, group="export"),
    Key("quantization", "list", list(registry.DEFAULT_QUANTIZATION),
        checks.subset_of(registry.QUANTIZATION_MODES, allow_empty=False),
        "TFLite quantization modes: " + ", ".join(registry.QUANTIZATION_MODES), _EXPORTING,
        group="export"),
    Key("calibration_samples", "int", 300, checks.integer_at_least(1),
        "training samples that calibrate " + " / ".join((*registry.CALIBRATED_MODES, "micro")),
        _EXPORTING, group="export"),
    Key("target", "str", None, checks.one_of(tuple(TARGETS)),
        "a device the micro artifact must fit (its measured arena in RAM, the model in flash): "
        + ", ".join(TARGETS), _EXPORTING, group="export"),
    Key("max_accuracy_drop", "float", None, checks.number(0),
        "int8 budget: the most the int8 model may lose against float on validation data "
        "(0.01 = one point of accuracy; regression: relative MAE increase); over it, the "
        "layers int8 hurts most stay float (<name>_int8_mixed.tflite), then int16x8 is tried",
        _EXPORTING, group="export"),
    Key("proxy_epochs", "int", 10, checks.integer_at_least(1),
        "search: distillation epochs of every candidate that fits the target (the front's "
        "best are then distilled for --epochs)", _SEARCH, group="search"),
    Key("quiet", "bool", False, checks.boolean, "no Keras progress bars", group="general"),
    Key("safe_mode", "bool", True, checks.boolean,
        "refuse .keras files with Lambda layers (they can run arbitrary code; "
        "--allow-unsafe = --no-safe-mode)", group="general"),
    Key("cache_teacher", "bool", False, checks.boolean,
        "store the teacher's outputs in <out_dir>/cache, reused by later runs on the same "
        "teacher and data (without it, data in memory are labelled once per run, in memory; "
        "streamed data by the teacher at every step)", _TRAINING, group="teacher"),
    Key("teacher_outputs", "str", None, checks.nonempty_string,
        "a teacher-output store written before (keras-distill label, or cache_teacher): the "
        "distilled student reads the teacher's outputs from it instead of running the teacher",
        _TRAINING, is_path=True, group="teacher"),
    Key("prune", "float", 0.0, checks.number(0, 1, high_open=True),
        "target sparsity of magnitude pruning of both students during training (0 = off)",
        _TRAINING, group="compression"),
    Key("qat", "bool", False, checks.boolean,
        "quantization-aware fine-tuning of the exported student, then its int8 artifacts "
        "(student_qat_*) next to the post-training ones", _RUN, group="compression"),
    Key("qat_epochs", "int", 5, checks.integer_at_least(1),
        "epochs of quantization-aware fine-tuning", _RUN, group="compression"),
    Key("qat_learning_rate", "float", None, checks.positive_number,
        "Adam learning rate of quantization-aware fine-tuning (default: learning_rate / 10)",
        _RUN, group="compression"),
    Key("task", "str", "auto", checks.one_of(registry.TASKS),
        "what the model's output holds: " + _either(registry.TASKS)
        + " (auto: taken from the data, e.g. 'binary' for breast_cancer, 'regression' for "
        "diabetes)", group="data"),
]

_DATA = [
    Key("data.source", "str", "digits", checks.data_source,
        ", ".join(repr(d) for d in registry.BUNDLED_DATASETS) + ", a keras.datasets name ("
        + ", ".join(registry.KERAS_DATASETS) + "), a .npz file, TFRecord files (a file, glob "
        "or folder) or a folder of images (one subfolder per class) or of x_train.npy / "
        "y_train.npy; files are read on demand", is_path=True),
    Key("data.validation_fraction", "float", 0.15, checks.fraction,
        "fraction of the data held out for validation, where the data has none"),
    Key("data.test_fraction", "float", 0.2, checks.fraction,
        "fraction of the data held out for testing, where the data has none"),
    Key("data.image_size", "int_list", None, checks.image_size,
        "[height, width] of images read from a folder (default: the first image's size)"),
    Key("data.color_mode", "str", "rgb", checks.one_of(registry.COLOR_MODES),
        "channels of images read from a folder"),
]

_TEACHER = [
    Key("teacher.model", "str", "teacher_cnn", checks.model,
        "teacher: a preset name or a .keras file", _TRAINING, is_path=True),
    Key("teacher.models", "list", None, checks.teacher_models,
        "an ensemble of teachers instead of teacher.model: presets and/or .keras files",
        _TRAINING, is_path=True),
    Key("teacher.weights", "float_list", None, checks.teacher_weights,
        "ensemble: one weight per teacher of teacher.models (default: equal)", _TRAINING),
    Key("teacher.average", "str", "probabilities", checks.one_of(registry.ENSEMBLE_AVERAGES),
        "ensemble: what is averaged, the teachers' probabilities or their logits", _TRAINING),
    Key("teacher.epochs", "int", None, checks.integer_at_least(0),
        f"teacher training epochs (default: {DEFAULT_TEACHER_EPOCHS} for a preset, 0 for a "
        ".keras file)", _TRAINING),
    Key("teacher.learning_rate", "float", 3e-3, checks.positive_number,
        "Adam learning rate of the teacher", _TRAINING),
    Key("teacher.preset_args", "table", {}, checks.preset_args,
        "keyword arguments of the teacher preset, e.g. {width = 32}", _TRAINING),
    Key("teacher.allow_weak", "bool", False, checks.boolean,
        "distill even from a teacher that cannot teach (below 1.5x chance accuracy or the "
        "student trained alone; regression: R2 <= 0), instead of stopping with its measured "
        "cause", _TRAINING),
]

_STUDENT = [
    Key("student.model", "str", "student_cnn", checks.model,
        "student: a preset name or a .keras file (its architecture and initial weights)",
        _TRAINING, is_path=True),
    Key("student.preset_args", "table", {}, checks.preset_args,
        "keyword arguments of the student preset, e.g. {width = 8}", _TRAINING),
    Key("student.from_teacher", "table", None, checks.from_teacher,
        "instead of student.model: the teacher shrunk (keras_distill.students.shrink) and "
        "initialized from it, e.g. {width = 0.25, transfer = \"select\"} (transfer: "
        + _either(registry.TRANSFER_METHODS)
        + "; depth = n keeps n repetitions of repeated blocks)",
        _TRAINING),
]

#: Every key, by dotted path, in the order ``example_toml()`` and ``--help`` list them.
SCHEMA = {k.path: (dataclasses.replace(k, commands=(*k.commands, *_SEARCH))
                   if k.path in _SEARCH_READS else k)
          for k in [*_TOP_LEVEL, *_DATA, *_TEACHER, *_STUDENT]}
