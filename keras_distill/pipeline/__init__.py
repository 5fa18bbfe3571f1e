"""The jobs behind the command line, as library functions: ``run``, ``distill``, ``export``,
``evaluate``, ``search`` (``search_job.py``: the most accurate student that fits a device).

Each takes a resolved :class:`keras_distill.config.Config` (see ``keras_distill.config`` for the
keys) and returns a result object; ``keras_distill.cli`` only parses arguments and prints.

``run`` is the whole job: load the data and settle its task (``tasks.py``: multiclass, binary,
multi-label or regression, from the data or the ``task`` key; MLP presets for feature
vectors); train a teacher (or the teachers of an ensemble); train the student alone (the
baseline) and distill the same student, from the same initial weights and with the same
shuffling, so that the teacher is the only difference; pick the student with the better
validation score of the task (accuracy; micro-F1 for multi-label; MAE for regression); (with ``qat``) fine-tune it quantization-aware; export it to
every format and quantization mode in one export, each artifact verified once in its runtime
from the file on disk, against Keras and the teacher; write ``report.md``, ``manifest.json``,
``report.png``, ``config.toml`` and the ``.keras`` models.
Optional stages: a student shrunk from the teacher and initialized from its weights
(``student.from_teacher``), magnitude pruning of both students (``prune``), teacher outputs
computed once (``cache_teacher``), and quantization-aware fine-tuning of the exported student
with int8 artifacts of its own (``qat``).

**Interruptions.** Every fit saves its state (weights, optimizer, epoch:
``keras_distill.pipeline.backup.EpochBackup``) in ``<out_dir>/.backup/<stage>`` at the end of
every epoch; every finished model is recorded in ``<out_dir>/.backup/state.json`` with the
configuration. ``run(cfg, resume=True)``
(``keras-distill run --resume``) reuses the finished models, continues the interrupted fit from
its last saved epoch, and refuses a configuration that differs in anything but the export keys.
A resumed run ends with the same weights as an uninterrupted one (tested): the order in which
Keras shuffles an epoch does not depend on the epochs before it, and pruning masks are restored
from the zeros of the saved weights.
A run without ``resume`` clears ``.backup``. An earlier run's ``manifest.json`` and ``report.md``
are removed when a run starts, and the run writes its own once, last, so a folder never holds a
manifest that describes files which are not there; ``.backup`` is removed once they are written.

**Layout.** ``jobs.py`` (the four jobs), ``tasks.py`` (the task and what follows from it:
defaults, losses, scores, the selection metric), ``stages.py`` (one training stage helper, the
teachers), ``students.py`` (baseline, distilled and QAT students, selection), ``checkpoints.py``
(``--resume``), ``models.py`` (loading, building, measuring), ``manifest.py`` (rows, records,
``manifest.json``), ``results.py`` (what the jobs return).

**Reproducibility.** With the same ``seed``, two runs on the same machine give bit-identical
weights and the same accuracies, agreements and sizes (not latencies): every stage re-seeds
Python, NumPy and TensorFlow (``keras.utils.set_random_seed``) before it builds or fits a model.
TensorFlow's CPU kernels are deterministic for a given number of threads, so nothing else is
set (``tf.config.experimental.enable_op_determinism()`` is not needed on CPU, and does not
remove the dependence on the thread count). A machine with another number of cores sums in
another order and ends with other weights (the teacher, with its BatchNormalization, first);
set ``TF_NUM_INTRAOP_THREADS=1`` to compare runs across machines.

Example:
    >>> from keras_distill import config, pipeline
    >>> cfg = config.load(None, {"epochs": "2", "teacher.epochs": "2", "formats": "tflite",
    ...                          "quantization": "float32,int8", "out_dir": "out"})
    >>> stages = []
    >>> result = pipeline.run(cfg, on_stage=stages.append)  # doctest: +SKIP
    >>> [(s.name, s.epochs_run) for s in stages]  # doctest: +SKIP
    [('teacher', 2), ('student_baseline', 2), ('student_distilled', 2)]
    >>> result.selected, sorted(result.manifest["models"])  # doctest: +SKIP
    ('student_distilled', ['student_baseline', 'student_distilled', 'teacher'])
"""


from keras_distill.io import save_model
from keras_distill.pipeline.checkpoints import BACKUP_DIR, STATE_FILE
from keras_distill.pipeline.jobs import (
    BASELINE_FILE,
    CONFIG,
    DISTILLED_FILE,
    EXPORT_NAME,
    MANIFEST,
    PLOT,
    QAT_FILE,
    REPORT,
    distill,
    evaluate,
    export,
    run,
)
from keras_distill.pipeline.models import TEACHER_FILE, check_fits_data, load_data, load_model
from keras_distill.pipeline.results import (
    DistillResult,
    EvaluateResult,
    ExportResult,
    ModelInfo,
    RunResult,
)
from keras_distill.pipeline.search_job import search
from keras_distill.pipeline.stages import (
    CACHE_DIR,
    QAT_LEARNING_RATE_FACTOR,
    Stage,
)
from keras_distill.pipeline.students import select_student

__all__ = [
    "BACKUP_DIR",
    "BASELINE_FILE",
    "CACHE_DIR",
    "CONFIG",
    "DISTILLED_FILE",
    "EXPORT_NAME",
    "MANIFEST",
    "PLOT",
    "QAT_FILE",
    "QAT_LEARNING_RATE_FACTOR",
    "REPORT",
    "STATE_FILE",
    "TEACHER_FILE",
    "DistillResult",
    "EvaluateResult",
    "ExportResult",
    "ModelInfo",
    "RunResult",
    "Stage",
    "check_fits_data",
    "distill",
    "evaluate",
    "export",
    "load_data",
    "load_model",
    "run",
    "save_model",
    "search",
    "select_student",
]
