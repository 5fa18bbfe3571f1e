"""The ``keras-distill`` command: argument parsing only; the work is in ``keras_distill.pipeline``.

Usage::

    keras-distill run                          # digits: teacher, baseline, distilled, export
    keras-distill run --config run.toml --epochs 10 --out-dir out
    keras-distill run --print-config > run.toml  # every key, resolved, as TOML
    keras-distill run --qat --prune 0.5        # pruned, then quantization-aware int8 too
    keras-distill run --resume                 # continue a run that was interrupted (Ctrl-C)
    keras-distill distill --teacher teacher.keras --student student_cnn --data digits
    keras-distill export exported/student_distilled.keras --formats tflite --quantization int8
    keras-distill evaluate exported/            # every artifact in the folder, on test data
    keras-distill label --teacher teacher.keras --data digits --out store --top-k 5 \
        --direct_num_workers 2 --direct_running_mode multi_processing   # Apache Beam

Every configuration key has a flag of the same name (``out_dir`` ↔ ``--out-dir``,
``teacher.epochs`` ↔ ``--teacher-epochs``; ``--data``, ``--teacher``, ``--student`` set
``data.source``, ``teacher.model``, ``student.model``); a flag overrides the ``--config`` file.
``--allow-unsafe`` is another spelling of ``--no-safe-mode``. See ``keras_distill.config``.

``label`` takes its own flags (no ``--config``); arguments it does not know are Apache Beam
pipeline options (``--runner`` picks the runner).

``run --resume`` continues the run interrupted in ``--out-dir`` (same settings): finished
models are reused and the interrupted fit goes on from its last completed epoch.

Exit codes: 0 success; 2 usage error (unknown flag, bad flag value); 1 failure (bad config
file, missing file, failed artifact...), reported on one line of stderr (``--debug`` shows the
traceback); 130 interrupted (Ctrl-C).

Only the standard library is imported at module level, so ``--help`` does not load TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from keras_distill import config, registry
from keras_distill.locks import FolderLocked

PROG = "keras-distill"

_SHORT_HELP = {
    "run": "the whole job: teacher, baseline and distilled student, export, reports",
    "distill": "distill a student from a teacher into a .keras file",
    "export": "export a .keras model to TFLite, ONNX and TFLite Micro, verified",
    "evaluate": "run artifacts in their runtimes on test data",
    "search": "find, distill and export the most accurate student that fits a device",
    "label": "write a teacher's outputs on a data set into a store, with Apache Beam",
}
_DESCRIPTIONS = {
    "run": "Train a teacher, train the student alone (baseline) and distill it, export the "
           "better student to TFLite / ONNX / TFLite Micro, verify every artifact and write "
           "report.md, manifest.json, report.png and curves.png. With no arguments: the bundled "
           "digits data, teacher_cnn and student_cnn, into ./exported. Feature vectors (--data "
           "breast_cancer, a binary task; --data diabetes, a regression) get teacher_mlp and "
           "student_mlp, and the metrics of their task.",
    "distill": "Distill a student (a preset or a .keras file) from a teacher (a .keras file, or "
               "a preset trained first) and save <out_dir>/student_distilled.keras.",
    "export": "Export a .keras model to TFLite (the --quantization modes), ONNX and TFLite "
              "Micro, calibrated on the training split and verified on the test split.",
    "evaluate": "Run an artifact (.tflite, .onnx, *_model_data.cc) or every artifact in a "
                "folder in its runtime on the test split: accuracy, agreement, size, latency.",
    "search": "Train a teacher (or load --teacher FILE.keras), then search students for the "
              "device --target: every candidate (student_cnn over width, depth and input "
              "resolution for images, student_mlp for vectors, the teacher shrunk) is "
              "converted to int8 and measured in TFLite Micro before training; those that fit "
              "are distilled for --proxy-epochs, the Pareto front of validation accuracy "
              "against RAM and flash is distilled for --epochs, and the best that fits is "
              "exported (with --max-accuracy-drop as its int8 budget) into <out_dir>/exported. "
              "Writes search.md, search.json and front.png; a rerun with the same settings "
              "resumes.",
    "label": "Run a .keras teacher over one split of a data source with an Apache Beam "
             "pipeline and write its outputs (in full, or top-k) into a teacher-output store, "
             "shard by shard; an interrupted run resumes where it stopped. Train on the store "
             "with Distiller.fit(x, y, cache_teacher=STORE). Arguments label does not know "
             "are Beam pipeline options (--direct_num_workers 2 --direct_running_mode "
             "multi_processing, --project, --temp_location...). Needs the beam extra: "
             'pip install -e ".[beam]".',
}
_METAVARS = {"data.source": "SOURCE", "teacher.model": "MODEL", "student.model": "MODEL",
             "int": "N", "float": "X", "list": "A,B", "int_list": "H,W", "float_list": "W,W"}
_ALLOW_UNSAFE_HELP = ("load .keras files with Lambda layers (code that runs when the file is "
                      "loaded): only for files you trust [same as --no-safe-mode]")


def _version():
    from keras_distill import __version__

    return __version__


def _add_key_flags(parser, command):
    """One flag per configuration key that ``command`` reads, in the key's --help section."""
    sections = {}
    for path, key in config.SCHEMA.items():
        if command not in key.commands or key.kind == "table":
            continue
        title = key.help_section
        if title not in sections:
            sections[title] = parser.add_argument_group(f"{title} options")
        section = sections[title]
        default = key.default
        if (command, path) == ("search", "out_dir"):  # its own folder, not run's
            default = registry.SEARCH_OUT_DIR
        if isinstance(default, list):
            default = ",".join(d["name"] if isinstance(d, dict) else str(d) for d in default)
        help_text = f"{key.help} [key {path}" + (
            "]" if default is None else f"; default: {default}]")
        if key.kind == "bool":
            section.add_argument(key.flag, dest=path, action=argparse.BooleanOptionalAction,
                                 default=argparse.SUPPRESS, help=help_text)
        else:
            metavar = _METAVARS.get(path) or ("PATH" if key.is_path else _METAVARS.get(
                key.kind, "NAME"))
            section.add_argument(key.flag, dest=path, metavar=metavar,
                                 default=argparse.SUPPRESS, help=help_text)
        if path == "safe_mode":
            section.add_argument("--allow-unsafe", dest=path, action="store_false",
                                 default=argparse.SUPPRESS, help=_ALLOW_UNSAFE_HELP)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}")
    return value


def _image_size(text):
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH; got {text!r}")
    return [_positive_int(p) for p in parts]


def _add_label_flags(p):
    """``label``'s own flags (it reads no configuration file)."""
    p.add_argument("--teacher", required=True, metavar="TEACHER.keras",
                   help="the teacher's .keras file")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="the data: digits, a keras.datasets name, a .npz file or an image "
                        "folder (every worker reads it at this path)")
    p.add_argument("--out", required=True, metavar="STORE",
                   help="the store's folder (new, or an interrupted store to resume)")
    p.add_argument("--split", default="train", choices=("train", "validation", "test"),
                   help="the split to label [default: train]")
    p.add_argument("--top-k", type=_positive_int, metavar="K",
                   help="keep the K most likely classes of multiclass outputs (and the rest's "
                        "total) [default: every value, float32]")
    p.add_argument("--temperature", type=_positive_float, default=1.0, metavar="T",
                   help="the temperature top-k probabilities are stored at; use the "
                        "Distiller's [default: 1.0]")
    p.add_argument("--task", default="auto", choices=registry.TASKS,
                   help="what the outputs are (top-k applies to multiclass) [default: auto]")
    p.add_argument("--shard-size", type=_positive_int, default=4096, metavar="N",
                   help="samples a shard, the unit of work and of resuming [default: 4096]")
    p.add_argument("--batch-size", type=_positive_int, default=256, metavar="N",
                   help="samples a teacher call [default: 256]")
    p.add_argument("--runner", default="DirectRunner",
                   help="the Beam runner: DirectRunner, DataflowRunner, FlinkRunner, "
                        "SparkRunner... [default: DirectRunner]")
    data = p.add_argument_group("data options (as for training, so the inputs are the same)")
    data.add_argument("--seed", type=int, help="seed of the splits [default: 0]")
    data.add_argument("--validation-fraction", type=float, metavar="X",
                      help="validation fraction, where the data has none [default: 0.15]")
    data.add_argument("--test-fraction", type=float, metavar="X",
                      help="test fraction, where the data has none [default: 0.2]")
    data.add_argument("--image-size", type=_image_size, metavar="H,W",
                      help="size of images read from a folder [default: the first image's]")
    data.add_argument("--color-mode", choices=registry.COLOR_MODES,
                      help="channels of images read from a folder [default: rgb]")
    p.add_argument("--allow-unsafe", action="store_true",
                   help="load a teacher with Lambda layers (code that runs when the file is "
                        "loaded): only for files you trust")


def build_parser():
    """The argument parser (no TensorFlow import)."""
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="Knowledge distillation for Keras 3, and export of the student to TFLite, "
                    "ONNX and TensorFlow Lite Micro, verified in each runtime.",
        epilog="Each command has its own --help. Configuration keys and flags: "
               "every key has a flag of the same name (out_dir <-> --out-dir, teacher.epochs "
               "<-> --teacher-epochs); a flag overrides the --config file.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in registry.COMMANDS:
        # no abbreviations: --epoch must not silently mean --epochs
        p = sub.add_parser(command, help=_SHORT_HELP[command], allow_abbrev=False,
                           description=_DESCRIPTIONS[command])
        if command == "export":
            p.add_argument("model", metavar="MODEL.keras", help="the Keras model to export")
        if command == "evaluate":
            p.add_argument("path", metavar="ARTIFACT_OR_FOLDER",
                           help="a .tflite, .onnx or *_model_data.cc file, or a folder of them")
        if command == "label":
            _add_label_flags(p)
            p.add_argument("--debug", action="store_true",
                           help="show Beam's and its workers' logs, and the full traceback of "
                                "an error")
            continue
        p.add_argument("--config", metavar="FILE.toml",
                       help="TOML configuration file (flags override it)")
        if command == "run":
            p.add_argument("--print-config", action="store_true",
                           help="print the resolved configuration as TOML and exit")
            p.add_argument("--resume", action="store_true",
                           help="continue the run interrupted in the output folder, with the "
                                "same settings: finished models are reused, the interrupted "
                                "training goes on from its last completed epoch")
        if command == "export":
            p.add_argument("--name", help="base name of the files (default: the model file's "
                                          "name)")
        if command == "evaluate":
            p.add_argument("--reference", metavar="MODEL.keras",
                           help="compare outputs with this model (default: teacher.keras next "
                                "to the artifacts, if any)")
            p.add_argument("--json", action="store_true", help="print the results as JSON")
        p.add_argument("--debug", action="store_true",
                       help="show the full traceback of an error")
        _add_key_flags(p, command)
    return parser


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------


def _error(message, code):
    message = " ".join(str(message).split())
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _silenced_native_stderr(enabled=True):
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines (absl, CUDA stub)
    bypass Python's logging. Python exceptions still propagate after it is restored."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _start_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        with _silenced_native_stderr():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401


def _job(cfg, job, /, *args, **kwargs):
    """``keras_distill.pipeline.<job>(cfg, ...)``; with ``quiet``, TensorFlow's native lines
    are silenced too."""
    from keras_distill import pipeline

    with _silenced_native_stderr(cfg["quiet"]):
        return getattr(pipeline, job)(cfg, *args, **kwargs)


def _failed(errors, what="failed", see=""):
    """Exit code 1 with one line naming the failed artifacts, or 0 when there are none."""
    if not errors:
        return 0
    return _error(f"{len(errors)} artifact(s) {what}: {'; '.join(errors)}{see}", 1)


def _print_table(result, end=""):
    """The job's table and, for tasks other than multiclass, what its metric columns are."""
    print(f"\n{result.table()}")
    if result.task != "multiclass":
        print(result.caption())
    print(end, end="")


def _run(args, cfg):
    from keras_distill import pipeline

    result = _job(cfg, "run", command=" ".join([PROG, *args.argv]), resume=args.resume)
    _print_table(result, end="\n")
    print(f"Exported: {result.selected}. {result.reason}")
    for note in result.manifest.get("notes", []):
        if note.startswith("Distillation "):  # what distillation gained, or why not
            print(note)
    files = f"{pipeline.REPORT}, {pipeline.MANIFEST}, {pipeline.PLOT}"
    if "curves.png" in result.manifest.get("files", []):
        files += ", curves.png"
    print(f"Wrote {result.out_dir}/ ({files}, the .keras models and the artifacts).")
    return _failed(result.errors, see=f" (see {result.out_dir}/{pipeline.REPORT}).")


def _search(args, cfg):
    from keras_distill import search

    result = _job(cfg, "search")
    print(f"\n{result.table()}\n")
    if result.chosen is None:
        failed = sum(c.status == "failed" for c in result.candidates)
        return _error(f"no candidate fits {result.target} as exported ({failed} of "
                      f"{len(result.candidates)} failed; the status column of "
                      f"{result.out_dir}/{search.TABLE} says why for each): try a larger "
                      "target, or keras_distill.search.search with smaller widths.", 1)
    d = result.deployed
    print(f"Chosen: {result.chosen.name} ({result.chosen.params:,} parameters), validation "
          f"accuracy {result.chosen.final_accuracy:.4f}. Flash {d['file']} ({d['mode']}, "
          f"{d['model_bytes']:,} bytes; tensor arena {d['arena']:,} bytes).")
    from keras_distill import targets

    print(targets.describe(d["fit"]))
    print(f"Wrote {result.out_dir}/ ({search.TABLE}, {search.STATE}, {search.PLOT}, "
          f"{search.EXPORTED}/) in {result.seconds:.0f} s.")
    failed = [] if result.export is None else [
        f"{a.format} {a.quantization}: {a.error}" for a in result.export.failed]
    return _failed(failed, see=f" (see {result.out_dir}/{search.EXPORTED}/report.md).")


def _distill(args, cfg):
    result = _job(cfg, "distill")
    _print_table(result)
    print(f"\nSaved the distilled student to {result.path}.")
    return 0


def _export(args, cfg):
    result = _job(cfg, "export", args.model, name=args.name)
    _print_table(result)
    print(f"\nWrote {result.out_dir}/ (artifacts, manifest.json, report.md, report.png).")
    return _failed(result.errors, see=".")


def _evaluate(args, cfg):
    result = _job(cfg, "evaluate", args.path, reference=args.reference)
    if args.json:
        from keras_distill.verify import to_json

        print(to_json(result.results))
    else:
        _print_table(result)
    return _failed([f"{r['file']}: {r['error']}" for r in result.errors],
                   what="could not be run")


_DATA_OPTIONS = ("seed", "validation_fraction", "test_fraction", "image_size", "color_mode")


def _label(args, cfg=None):
    from keras_distill.store import beam

    data_options = {k: getattr(args, k) for k in _DATA_OPTIONS if getattr(args, k) is not None}
    try:
        with _silenced_native_stderr(not args.debug):  # the workers' TensorFlow start-up
            result = beam.label(
                args.teacher, args.data, args.out, split=args.split, top_k=args.top_k,
                temperature=args.temperature, task=args.task, shard_size=args.shard_size,
                batch_size=args.batch_size, runner=args.runner, pipeline_args=args.beam_args,
                data_options=data_options, allow_unsafe=args.allow_unsafe,
                quiet=not args.debug)
    except beam.UnknownOptions as exc:
        return _error(exc, 2)
    except ImportError as exc:
        if args.debug:
            raise
        return _error(exc, 1)
    print(result.summary())
    return 0


_COMMANDS = {"run": _run, "distill": _distill, "export": _export, "evaluate": _evaluate,
             "search": _search,
             "label": _label}


def main(argv=None):
    """Entry point of the ``keras-distill`` console script.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 1 failure, 2 usage error.

    Example:
        >>> main(["run", "--epochs", "0"])  # doctest: +SKIP
        keras-distill: error: --epochs: epochs = 0 is not allowed; expected an integer >= 1.
        2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "label":  # label passes them to Apache Beam
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_usage(sys.stderr)
        commands = ", ".join(registry.COMMANDS[:-1]) + " or " + registry.COMMANDS[-1]
        return _error(f"choose a command: {commands} (see --help).", 2)
    args.argv = argv
    if args.command == "label":
        args.beam_args = extra
        _start_tensorflow()
        return _guarded(args, None)

    overrides = {k: v for k, v in vars(args).items() if k in config.SCHEMA}
    try:
        cfg = config.load(args.config, overrides)
    except config.ConfigError as exc:
        return _error(exc, 2 if exc.usage else 1)
    if getattr(args, "print_config", False):
        from keras_distill.pipeline.tasks import resolve_without_tensorflow

        try:  # the data's defaults (MLP presets for feature vectors, the task's loss)
            cfg = resolve_without_tensorflow(cfg)
        except ValueError as exc:
            return _error(exc, 1)
        print(cfg.to_toml(), end="")
        return 0

    _start_tensorflow()
    return _guarded(args, cfg)


def _guarded(args, cfg):
    """Run the command; Ctrl-C and user mistakes are one line of stderr."""
    try:
        return _COMMANDS[args.command](args, cfg)
    except KeyboardInterrupt:
        if args.command == "run":
            return _error(f"interrupted. The finished models and the last completed epoch are "
                          f"kept in {os.path.abspath(cfg['out_dir'])}/.backup: add --resume to "
                          "the same command to continue.", 130)
        if args.command == "label":
            return _error(f"interrupted. The finished shards are kept in {args.out}: run the "
                          "same command again to resume.", 130)
        return _error("interrupted.", 130)
    except (ValueError, OSError, FloatingPointError, FolderLocked) as exc:
        # User mistakes (bad data or model files, unwritable folders, a folder in use by
        # another command, ...): one line.
        if args.debug:
            raise
        return _error(exc, 1)


if __name__ == "__main__":
    sys.exit(main())
