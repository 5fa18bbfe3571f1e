"""Teacher outputs at scale: a store written by an Apache Beam pipeline (``keras-distill label``).

:func:`label` runs a ``.keras`` teacher over one split of a data source and writes the same
store as :func:`keras_distill.store.write` (same key, same outputs, same shards), with the work
spread over Beam workers: the DirectRunner's processes on one machine, or Dataflow, Flink or
Spark workers. The pipeline::

    Create(shards not yet written)             the store resumes: finished shards are skipped
      -> ShardRows        (index, row) of each shard's samples (the data is loaded once per
                          worker, in setup, and checked against the launcher's fingerprint)
      -> RunInference     KeyedModelHandler(TFModelHandlerNumpy): batches of rows through the
                          teacher (loaded once per worker by keras_distill.io.load_model)
      -> key by shard     index // shard_size
      -> GroupByKey
      -> WriteShard       sorted by index, encoded (full float32 or top-k), written whole
                          (TeacherStore.write_shard: a ``.partial`` folder renamed)

How each output is encoded (its form, logits or probabilities, and its top-k) is decided once,
in the launching process, from a first batch of the teacher's outputs, and recorded in the
store before the pipeline starts, so that every worker encodes the same way.

Workers read the data source and write the store by path: with a runner on other machines,
both must be on a file system every worker mounts at the same path.

Apache Beam is imported only by the functions here (``pip install -e ".[beam]"``).

Example:
    >>> result = label("teacher.keras", "digits", "teacher-store", top_k=5,
    ...                pipeline_args=["--direct_num_workers", "2",
    ...                               "--direct_running_mode", "multi_processing"])
    ... # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time

import numpy as np

from keras_distill.store.shards import StoreError, TeacherStore, encode_output

#: The splits of a data source, and their inputs' and labels' attributes in ``Splits``.
SPLITS = {"train": ("x_train", "y_train"), "validation": ("x_val", "y_val"),
          "test": ("x_test", "y_test")}
INSTALL = 'pip install -e ".[beam]"'
#: The pipeline's DoFns: defined on first use (they subclass ``beam.DoFn``), see __getattr__.
_DOFNS = ("ShardRows", "WriteShard")


class LabelError(ValueError):
    """``label`` cannot run as asked (bad arguments, options Beam does not know, a failed
    pipeline); the message names the cause and the fix."""


class UnknownOptions(LabelError):
    """Arguments that neither ``label`` nor any Beam pipeline option reads (a usage error)."""


@dataclasses.dataclass
class LabelResult:
    """What :func:`label` did.

    Attributes:
        store: the complete :class:`~keras_distill.store.shards.TeacherStore`.
        samples: rows labelled (the split's size).
        shards: shards in the store.
        written: the shards this call computed (the others were there already).
        seconds: wall-clock time of the call.
        runner: the Beam runner.
    """

    store: TeacherStore
    samples: int
    shards: int
    written: list
    seconds: float
    runner: str

    def summary(self):
        """Lines for the command line: samples, shards, size against float32, time, place."""
        full, size = self.store.full_nbytes(), self.store.nbytes()
        reused = self.shards - len(self.written)
        computed = f"{len(self.written)} computed" + (
            f", {reused} already in the store" if reused else "")
        share = f"{100 * size / max(full, 1):.1f}%"
        done = (f"Labelled {self.samples} samples in {self.shards} shard(s) ({computed}) "
                f"with {self.runner} in {self.seconds:.1f} s.")
        sized = f"Store size: {_mib(size)}, {share} of the {_mib(full)} of full float32 outputs."
        where = (f"Wrote {self.store.path}/ (train on it: Distiller.fit(x, y, "
                 f"cache_teacher={self.store.path!r})).")
        return f"{done}\n{sized}\n{where}"


def _mib(n):
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


# ------------------------------------------------------------------------------------------
# the launcher
# ------------------------------------------------------------------------------------------


def label(teacher_path, data_source, out, *, split="train", top_k=None, temperature=1.0,
          task="auto", shard_size=4096, batch_size=256, runner="DirectRunner",
          pipeline_args=(), data_options=None, allow_unsafe=False, quiet=True):
    """Write the outputs of the teacher at ``teacher_path`` on a data source's ``split`` into
    a store at ``out`` with an Apache Beam pipeline; shards already there are kept.

    Args:
        teacher_path: a ``.keras`` file (loaded by :func:`keras_distill.io.load_model`).
        data_source: what :func:`keras_distill.data.load` reads (``"digits"``, a ``.npz``
            file, an image folder...).
        out: the store's folder (new, or a store of this teacher and data to resume).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        top_k: keep the ``top_k`` most likely classes of multiclass outputs, or None.
        temperature: the temperature top-k probabilities are stored at.
        task: ``"auto"`` (from the teacher's final activation, else the split's labels) or an
            output kind (``keras_distill.registry.OUTPUT_KINDS``); top-k applies to
            multiclass outputs.
        shard_size: samples a shard (a unit of work, written whole).
        batch_size: rows a teacher call.
        runner: a Beam runner (``"DirectRunner"``, ``"DataflowRunner"``, ``"FlinkRunner"``...).
        pipeline_args: further Beam pipeline options as command-line strings
            (``["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]``).
        data_options: keyword arguments of :func:`keras_distill.data.load` (``seed``,
            ``validation_fraction``, ``image_size``...), the same as for training.
        allow_unsafe: load a teacher with ``Lambda`` layers (code in the file).
        quiet: hold back Beam's INFO and WARNING log lines, here and in the workers (unless
            ``pipeline_args`` sets ``--default_sdk_harness_log_level``).

    Returns:
        :class:`LabelResult`.

    Raises:
        ImportError: Apache Beam is not installed.
        LabelError, StoreError, DataError (``ValueError``), FileNotFoundError: the message
            names the cause and the fix.
    """
    started = time.perf_counter()
    _check_arguments(split, top_k, temperature, shard_size, batch_size)
    if quiet and not any(str(a).startswith("--default_sdk_harness_log_level")
                         for a in pipeline_args):
        pipeline_args = [*pipeline_args, "--default_sdk_harness_log_level=ERROR"]
    options = pipeline_options(runner, pipeline_args)
    from keras_distill.store.writer import (
        data_fingerprint,
        describe_outputs,
        store_key,
        teacher_fingerprint,
    )

    teacher = load_teacher(teacher_path, allow_unsafe)
    x, y = load_split(data_source, split, data_options)
    n = len(x)
    if n == 0:
        raise LabelError(f"the {split} split of {data_source!r} is empty; choose another "
                         "--split or data source.")
    d_fp, t_fp = data_fingerprint(x), teacher_fingerprint(teacher)
    key = store_key(t_fp, d_fp, top_k, temperature)
    # how each output is stored, decided before the store is made (nothing is left behind
    # when the teacher does not take these inputs)
    first = _first_outputs(teacher, x[:min(n, batch_size)], teacher_path, data_source)
    described = describe_outputs(first, output_kinds(teacher, task, y, top_k), top_k)
    store = TeacherStore.create(out, key=key, shard_size=shard_size, top_k=top_k,
                                temperature=temperature, description={
                                    "data": d_fp, "teacher": str(teacher_path),
                                    "teacher_fingerprint": t_fp,
                                    "source": str(data_source), "split": split})
    store.set_outputs(*described)
    pending = [i for i in range(store.shard_count(n)) if not store.has_shard(i)]
    if pending:
        job = {"teacher": os.path.abspath(teacher_path), "source": data_source,
               "split": split, "data_options": dict(data_options or {}), "samples": n,
               "fingerprint": d_fp, "store": os.path.abspath(store.path),
               "shard_size": store.meta["shard_size"],
               "batch_size": int(batch_size), "allow_unsafe": bool(allow_unsafe)}
        with quiet_logging(quiet):
            run_pipeline(options, pending, job)
    store.finish(n)
    return LabelResult(store, n, store.shard_count(n), pending, time.perf_counter() - started,
                       runner)


def _first_outputs(teacher, x, teacher_path, data_source):
    """The teacher's outputs on a first batch (how to encode them), or an error naming both
    shapes when the teacher does not take these inputs."""
    x = np.asarray(x)
    try:
        return teacher.predict(x, batch_size=len(x), verbose=0)
    except (ValueError, TypeError) as exc:
        expected = [tuple(t.shape[1:]) for t in getattr(teacher, "inputs", None) or []]
        raise LabelError(
            f"the teacher {teacher_path} does not take the inputs of {data_source!r} (samples "
            f"of shape {x.shape[1:]}; the teacher's input: {expected or 'unknown'}; "
            f"{str(exc).strip().splitlines()[0][:200]}): label the data the teacher was "
            "trained on, read the same way (--image-size, --color-mode).") from None


def _check_arguments(split, top_k, temperature, shard_size, batch_size):
    if split not in SPLITS:
        raise LabelError(f"split must be one of {tuple(SPLITS)}; got {split!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 1):
        raise LabelError(f"top_k must be an integer >= 1 or None (every value); got {top_k!r}.")
    if not temperature > 0:
        raise LabelError(f"temperature must be > 0; got {temperature!r}.")
    for name, value in (("shard_size", shard_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LabelError(f"{name} must be an integer >= 1; got {value!r}.")


@contextlib.contextmanager
def quiet_logging(enabled=True):
    """Beam's log lines (INFO and WARNING: batching statistics, optional GCP clients missing)
    held back while it runs; errors still show."""
    loggers = [logging.getLogger(), logging.getLogger("apache_beam")]
    levels = [lg.level for lg in loggers]
    if enabled:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def beam_module():
    """``apache_beam``, or an ImportError that says how to install it."""
    try:
        with quiet_logging():
            import apache_beam
    except ImportError:
        raise ImportError(f"keras-distill label needs Apache Beam: {INSTALL} (or pip install "
                          "apache-beam tensorflow-hub).") from None
    return apache_beam


def pipeline_options(runner, pipeline_args=()):
    """Beam ``PipelineOptions`` of ``runner`` and ``pipeline_args``; arguments that no Beam
    option reads are refused (Beam itself would drop them with a log line)."""
    beam_module()
    from apache_beam.options.pipeline_options import PipelineOptions

    args = [str(a) for a in pipeline_args]
    if not runner or not isinstance(runner, str):
        raise LabelError(f"runner must be a Beam runner's name (DirectRunner, DataflowRunner, "
                         f"FlinkRunner, SparkRunner...); got {runner!r}.")
    parsers = []
    options = PipelineOptions(args, runner=runner)
    with quiet_logging():  # Beam's "Discarding unparseable args": refused below instead
        options.get_all_options(add_extra_args_fn=parsers.append)
    unknown = [a for a in parsers[0].parse_known_args(args)[1] if a.startswith("-")]
    if unknown:
        raise UnknownOptions(
            f"{' '.join(unknown)}: neither an option of keras-distill label nor an Apache Beam "
            "pipeline option; check the spelling (label's own flags use dashes: --top-k, "
            "--shard-size; Beam's use underscores: --direct_num_workers).")
    return options


def load_teacher(path, allow_unsafe=False):
    """The teacher model from a ``.keras`` file (also each worker's ``create_model_fn``)."""
    from keras_distill.io import load_model

    if not os.path.exists(path):
        raise FileNotFoundError(f"teacher file not found: {path}; pass the .keras file the "
                                "teacher was saved to (model.save('teacher.keras')).")
    return load_model(path, allow_unsafe=allow_unsafe, compile=False)


def load_split(source, split, data_options=None):
    """``(x, y)`` of one split of a data source."""
    from keras_distill.data import load

    data = load(source, **(data_options or {}))
    x_name, y_name = SPLITS[split]
    return getattr(data, x_name), getattr(data, y_name)


def output_kinds(teacher, task, labels, top_k):
    """Each output's kind, one string or a list (``describe_outputs``' ``kinds``): declared,
    else from the teacher's final activation, else from the labels. Top-k needs to know;
    without it an output nothing tells about is recorded as of unknown kind (None)."""
    from keras_distill import outputs as outputs_lib

    try:
        kinds = [o.kind for o in outputs_lib.resolve(teacher, teacher, task, labels=labels)]
    except outputs_lib.AmbiguousOutput as exc:
        if top_k is None:
            return None
        raise LabelError(f"top_k needs each output's kind: {exc} On the command line: "
                         "--task multiclass (or another kind).") from None
    return kinds[0] if len(kinds) == 1 else kinds


# ------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------


def run_pipeline(options, shards, job):
    """Run the pipeline over ``shards`` (indices) of ``job`` (what the workers need: the
    teacher, the data, the store). A failure is raised as one :class:`LabelError`."""
    beam = beam_module()
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    try:
        from apache_beam.ml.inference.tensorflow_inference import (
            ModelType,
            TFModelHandlerNumpy,
        )
    except ImportError as exc:  # it imports tensorflow_hub
        raise ImportError(f"Beam's TensorFlow model handler cannot be imported ({exc}): "
                          f"{INSTALL} (or pip install tensorflow-hub).") from None

    # SAVED_WEIGHTS: the model comes from create_model_fn (our loader: safe mode, our
    # layers, errors naming the file), then Beam reads its weights again from the same file.
    handler = TFModelHandlerNumpy(
        model_uri=job["teacher"], model_type=ModelType.SAVED_WEIGHTS,
        create_model_fn=functools.partial(load_teacher, job["teacher"], job["allow_unsafe"]),
        inference_fn=functools.partial(predict_rows, batch_size=job["batch_size"]),
        min_batch_size=job["batch_size"],
        max_batch_size=job["batch_size"])
    rows, writer = __getattr__("ShardRows")(job), __getattr__("WriteShard")(job)
    try:
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "Shards" >> beam.Create(shards)
                 | "Rows" >> beam.ParDo(rows)
                 | "Teacher" >> RunInference(KeyedModelHandler(handler))
                 | "ByShard" >> beam.Map(by_shard, job["shard_size"])
                 | "Group" >> beam.GroupByKey()
                 | "Write" >> beam.ParDo(writer))
    except Exception as exc:  # runners wrap the workers' errors in their own types
        raise LabelError(f"the Beam pipeline failed: {_cause(exc)}. The shards written so far "
                         "are kept: run the same command again to finish.") from exc


def _cause(exc):
    """The workers' error, from the last ``Name: message`` line of a runner's report."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))
              and not line.startswith(("RuntimeError: Pipeline", "Traceback"))]
    text = (causes or lines or [type(exc).__name__])[-1].split(" [while running")[0]
    name, _, message = text.partition(": ")
    if message and name.replace(".", "").replace("_", "").isalnum():
        text = message  # "keras_distill.store.beam.LabelError: ..." -> "..."
    return text.rstrip(".")[:400]


def predict_rows(model, batch, inference_args, model_id=None, batch_size=None):
    """Beam's ``inference_fn``: one teacher call on the stacked rows; each result holds the
    row's outputs as a tuple of NumPy arrays, one per output (in ``keras.tree.flatten``
    order, as the store records them). A short batch is padded to ``batch_size`` rows (copies
    of its first), so that the teacher is traced for one input shape only."""
    import keras
    from apache_beam.ml.inference.base import PredictionResult

    x = np.stack(batch)
    if batch_size and len(x) < batch_size:
        x = np.concatenate([x, np.repeat(x[:1], batch_size - len(x), axis=0)])
    outputs = model.predict_on_batch(x)
    leaves = [np.asarray(leaf)[:len(batch)] for leaf in keras.tree.flatten(outputs)]
    return [PredictionResult(row, tuple(leaf[i] for leaf in leaves), model_id)
            for i, row in enumerate(batch)]


def by_shard(element, shard_size):
    """``(index, PredictionResult)`` to ``(shard, (index, outputs))`` (the input dropped)."""
    index, result = element
    return int(index) // shard_size, (int(index), result.inference)


def _define_dofns():
    """The pipeline's DoFns, defined once Beam is imported (this module must import without
    it), and kept as module attributes so that Beam pickles them by reference."""
    beam = beam_module()

    class ShardRows(beam.DoFn):
        """Shard ``i`` to its samples ``(index, row)``, read a batch at a time."""

        def __init__(self, job):
            self.job = job

        def setup(self):
            from keras_distill.store.writer import data_fingerprint

            job = self.job
            self.x, _ = load_split(job["source"], job["split"], job["data_options"])
            what = f"{len(self.x)} samples, not {job['samples']}" if len(self.x) != \
                job["samples"] else "other values" if data_fingerprint(self.x) != \
                job["fingerprint"] else None
            if what is not None:
                raise LabelError(
                    f"a worker read other data from {job['source']!r} than the launcher "
                    f"({what}): every worker must read the same files, at the same path.")

        def process(self, shard):
            size, n, step = self.job["shard_size"], self.job["samples"], self.job["batch_size"]
            end = min((shard + 1) * size, n)
            for start in range(shard * size, end, step):
                rows = np.asarray(self.x[start:min(start + step, end)])
                for offset, row in enumerate(rows):
                    yield start + offset, row

    class WriteShard(beam.DoFn):
        """``(shard, [(index, outputs), ...])`` to the shard's folder in the store."""

        def __init__(self, job):
            self.job = job

        def setup(self):
            self.store = TeacherStore.open(self.job["store"])

        def process(self, element):
            shard, items = element
            items = sorted(items, key=lambda item: item[0])
            size, n = self.job["shard_size"], self.job["samples"]
            expected = list(range(shard * size, min((shard + 1) * size, n)))
            if [index for index, _ in items] != expected:
                raise StoreError(f"shard {shard} got {len(items)} samples, not the "
                                 f"{len(expected)} of {expected[0]}..{expected[-1]}: a runner "
                                 "lost or repeated elements.")
            infos, temperature = self.store.meta["outputs"], self.store.meta["temperature"]
            fields = [encode_output(np.stack([outputs[j] for _, outputs in items]), info,
                                    temperature) for j, info in enumerate(infos)]
            self.store.write_shard(shard, fields)

    for cls in (ShardRows, WriteShard):
        cls.__qualname__ = cls.__name__
        globals()[cls.__name__] = cls


def __getattr__(name):
    if name in _DOFNS:
        if name not in globals():
            _define_dofns()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["INSTALL", "SPLITS", "LabelError", "LabelResult", "UnknownOptions", "beam_module",
           "label", "load_split", "load_teacher", "output_kinds", "pipeline_options"]
