"""The ``search`` job: a teacher, then the most accurate student that fits a device.

``keras-distill search --target cortex-m4-256k`` loads the data (the bundled digits by
default), trains the teacher preset (or loads ``--teacher FILE.keras``), saves it as
``<out_dir>/teacher.keras`` (``out_dir`` is ``search`` unless set), and runs
:func:`keras_distill.search.search` into ``out_dir``:
``search.json`` (every candidate, resumable), ``search.md`` (the table), ``front.png`` and the
chosen student's export in ``<out_dir>/exported/``. A rerun with the same settings resumes: the
saved teacher is reused and no finished candidate is trained again.
"""

from __future__ import annotations

import os

from keras_distill import io
from keras_distill.pipeline import tasks
from keras_distill.pipeline.models import (
    build,
    compile_supervised,
    load_data,
    load_model,
    steps_per_execution,
    teacher_path,
)
from keras_distill.registry import SEARCH_OUT_DIR


def search(cfg, *, log=None):
    """The search job for the configuration ``cfg`` (its ``target`` is required).

    Returns:
        The :class:`keras_distill.search.SearchResult`.

    Raises:
        ValueError: no ``target``, a task other than multiclass, or an ``out_dir`` holding a
            search with other settings.
    """
    from keras_distill import locks
    from keras_distill import search as search_lib
    from keras_distill.targets import TARGETS

    log = log if log is not None else (lambda message: print(message, flush=True))
    if cfg["target"] is None:
        raise ValueError(f"search needs a device: --target NAME (one of {', '.join(TARGETS)}), "
                         "or target = \"...\" in the config file.")
    # its own folder by default: not run's ./exported, whose teacher.keras it would replace
    out_dir = io.output_folder(DEFAULT_OUT_DIR if cfg.origin("out_dir") == "default" else
                               cfg["out_dir"])
    with locks.folder_lock(out_dir, "search"):
        cfg, data = tasks.resolve(cfg, load_data(cfg))
        if data.task != tasks.MULTICLASS:
            raise ValueError(f"search supports multiclass data; {data.name} is {data.task}.")
        log(f"Data: {data.summary()}.")
        teacher = _teacher(cfg, data, out_dir, log)
        return search_lib.search(
            teacher, data, cfg["target"], out_dir=out_dir,
            max_accuracy_drop=cfg["max_accuracy_drop"], proxy_epochs=cfg["proxy_epochs"],
            epochs=cfg["epochs"], temperature=cfg["temperature"], alpha=cfg["alpha"],
            learning_rate=cfg["learning_rate"], batch_size=cfg["batch_size"], seed=cfg["seed"],
            context={k: cfg[k] for k in TEACHER_KEYS}, log=log)


#: The folder of a search when ``out_dir`` is not set.
DEFAULT_OUT_DIR = SEARCH_OUT_DIR
#: How the teacher is made: a rerun with other values does not resume (it is refused).
TEACHER_KEYS = ("teacher.model", "teacher.epochs", "teacher.learning_rate",
                "teacher.preset_args", "data.source", "seed", "batch_size")


def _teacher(cfg, data, out_dir, log):
    """The trained teacher: ``<out_dir>/teacher.keras`` of an earlier search with the same
    settings, else trained (a preset, or a file trained ``teacher.epochs``) and saved there."""
    import keras

    from keras_distill.search import STATE

    path = teacher_path(cfg, out_dir)  # never the input file it trains further
    if os.path.isfile(path) and os.path.isfile(os.path.join(out_dir, STATE)):
        log(f"Teacher: {path}, from the search being resumed.")
        return load_model(path, role="teacher")
    keras.utils.set_random_seed(cfg["seed"])
    teacher = build(cfg, "teacher", data, "teacher")
    epochs = cfg.teacher_epochs()
    if epochs:
        log(f"Teacher: training {cfg['teacher.model']} ({teacher.count_params():,} parameters) "
            f"for {epochs} epochs.")
        compile_supervised(teacher, cfg["teacher.learning_rate"], data.task,
                           steps_per_execution(cfg, "teacher"))
        teacher.fit(data.x_train, data.y_train, epochs=epochs, batch_size=cfg["batch_size"],
                    verbose=0 if cfg["quiet"] else 2)
    io.save_model(teacher, path)
    return teacher
