"""TensorFlow Lite Micro at run time: reading a ``<name>_model_data.cc`` back, trying arena sizes,
and measuring the tensor arena a model needs.

:func:`measure_arena` finds the smallest ``arena_size`` with which the real TFLM interpreter
(``tflite_micro.python.tflite_micro.runtime``) allocates **and** runs the model. The tflite-micro
Python package *segfaults* on some too-small arenas (a failed tail allocation), so every probe
runs in a child process; a crash there counts as "too small". The minimum is found to the byte,
then rounded up to ``granularity`` (1 KiB) and checked again in fresh processes: the reported
arena works, and the arena minus 1 KiB fails. The host is 64-bit, so pointers and TFLM's
bookkeeping structs are larger than on a 32-bit MCU: the figure is an upper bound there.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tempfile

#: Arena sizes are reported rounded up to this many bytes.
ARENA_GRANULARITY = 1024
_MAX_ARENA = 1 << 30

# Runs in a child process: reads arena sizes from stdin, answers "@@ok" or "@@fail <why>".
# Quiet mode sends TFLM's own C-level prints to /dev/null so only answers reach the pipe.
_PROBE_SCRIPT = r"""
import os, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
verbose = sys.argv[2] == "verbose"
answers = os.fdopen(os.dup(1), "w")
if not verbose:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
for line in sys.stdin:
    size = int(line)
    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=size)
        detail = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
        interpreter.invoke()
        interpreter.get_output(0)
        if verbose:
            sys.stdout.flush()
            interpreter.print_allocations()
        del interpreter
        answer = "ok"
    except Exception as exc:
        answer = "fail " + " ".join(str(exc).split())
    answers.write("@@" + answer + "\n")
    answers.flush()
"""


@dataclasses.dataclass
class ArenaMeasurement:
    """The tensor arena a model needs in TensorFlow Lite Micro, measured on this host.

    Attributes:
        arena_size: the arena to allocate: ``min_bytes`` rounded up to ``granularity``.
        min_bytes: the smallest arena, in bytes, with which the interpreter allocated and ran.
        granularity: the rounding step (1024).
        probes: how many arena sizes were tried.
        host: a note on where it was measured (an upper bound for 32-bit MCUs).
    """

    arena_size: int
    min_bytes: int
    granularity: int = ARENA_GRANULARITY
    probes: int = 0
    host: str = ("measured with the tflite-micro Python interpreter on a 64-bit host; an upper "
                 "bound for a 32-bit MCU")

    def to_dict(self):
        return dataclasses.asdict(self)


def read_c_source(path):
    """Read back the model bytes (and the recorded arena) from a ``_model_data.cc`` / ``.h``.

    Args:
        path: the ``.cc`` file, or its ``.h`` (the ``.cc`` beside it is read).

    Returns:
        ``(model_bytes, info)`` where ``info`` has ``arena_size`` (or ``None``) and
        ``model_data_len``.
    """
    path = os.fspath(path)
    if path.endswith(".h"):
        path = path[:-2] + ".cc"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"_model_data\[\]\s*=\s*\{(.*?)\};", text, re.DOTALL)
    if match is None:
        raise ValueError(f"{path!r} has no '<name>_model_data[] = {{...}};' array.")
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{1,2})", match.group(1)))
    length = re.search(r"_model_data_len\s*=\s*(\d+)", text)
    if length and int(length.group(1)) != len(data):
        raise ValueError(f"{path!r}: the array has {len(data)} bytes but _model_data_len says "
                         f"{length.group(1)}.")
    arena = re.search(r"tensor_arena_size\s*=\s*(\d+)", text)
    return data, {"arena_size": int(arena.group(1)) if arena else None,
                  "model_data_len": len(data)}


class _Prober:
    """A child process that tries arena sizes; restarted when a probe crashes it."""

    def __init__(self, model_path):
        self._model_path = model_path
        self._proc = None
        self.probes = 0
        self.crashes = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def works(self, size):
        self.probes += 1
        if self._proc is None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _PROBE_SCRIPT, self._model_path, "quiet"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, env=_child_env())
        try:
            self._proc.stdin.write(f"{int(size)}\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line.startswith("@@"):  # the child died: a crash on a too-small arena
            self.crashes += 1
            self._proc.wait()
            self._proc = None
            return False
        return line.startswith("@@ok")


def _child_env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def runtime_available():
    """Whether TensorFlow Lite Micro's Python interpreter (``tflite-micro``) is installed."""
    import importlib.util

    return importlib.util.find_spec("tflite_micro") is not None


def require_runtime():
    """Raise unless the TFLite Micro interpreter is installed.

    Raises:
        RuntimeError: naming the package, the platforms it has wheels for, and what to do.
    """
    if not runtime_available():
        raise RuntimeError(
            "TensorFlow Lite Micro's Python interpreter (the tflite-micro package) is not "
            "installed; it has wheels for Linux x86-64 only. The micro artifact needs it to "
            "measure its tensor arena and to verify it: drop 'micro' from formats on this "
            "machine (the .tflite files run on Android and desktops), or export on Linux x86-64 "
            "(pip install tflite-micro).")


def probe_arena(model_bytes, arena_size, *, verbose=False):
    """Try one arena size in a fresh child process.

    Args:
        model_bytes: a ``.tflite`` flatbuffer.
        arena_size: the arena to try, in bytes.
        verbose: also capture TFLM's own messages (and its allocation summary).

    Returns:
        ``(ok, message)``: ``ok`` is True when the interpreter allocated and ran the model;
        ``message`` holds the exception text, TFLM's output when ``verbose``, or the signal
        that killed the child.
    """
    with tempfile.TemporaryDirectory(prefix="keras_distill_tflm_") as tmp:
        model_path = os.path.join(tmp, "model.tflite")
        with open(model_path, "wb") as f:
            f.write(model_bytes)
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_SCRIPT, model_path, "verbose" if verbose else "quiet"],
            input=f"{int(arena_size)}\n", capture_output=True, text=True, env=_child_env(),
            timeout=600, check=False)
    answers = [line[2:] for line in proc.stdout.splitlines() if line.startswith("@@")]
    other = "\n".join(line for line in (proc.stdout + "\n" + proc.stderr).splitlines()
                      if not line.startswith("@@")).strip()
    if not answers:
        return False, f"the TFLM interpreter crashed (exit status {proc.returncode}). {other}"
    ok = answers[-1] == "ok"
    message = "" if ok else answers[-1][len("fail "):]
    if verbose and other:
        message = (message + "\n" + other).strip()
    return ok, message


def check_ops(model_bytes, *, layer_names=(), arena_size=None):
    """Run the model once in TFLM with a generous arena; raise if an op is not supported.

    Args:
        model_bytes: a ``.tflite`` flatbuffer.
        layer_names: Keras layer names, to name the layer of a failing op.
        arena_size: the generous arena to try first; default ``max(256 KiB, 20 x model)``,
            doubled while allocation alone fails.

    Returns:
        The arena (bytes) TFLM's recording allocator reported using, a starting point for
        :func:`measure_arena`; ``None`` if it did not print one.

    Raises:
        UnsupportedOpError: TFLM has no kernel for an op (named, with its layer), or an op
            failed to prepare or run.
        RuntimeError: the model did not run even with a 1 GiB arena.
    """
    from keras_distill.verify.litert import UnsupportedOpError, layer_for_tensor, list_ops

    size = arena_size or max(256 * 1024, 20 * len(model_bytes))
    while True:
        ok, message = probe_arena(model_bytes, size, verbose=True)
        if ok:
            used = re.search(r"Arena allocation total (\d+) bytes", message)
            return int(used.group(1)) if used else None
        missing = re.search(r"Didn't find op for (?:builtin|custom) opcode '([^']+)'", message)
        node = re.search(r"Node (\w+) \(number (\d+)\) failed to (prepare|invoke)", message)
        if missing or node:
            ops = list_ops(model_bytes)
            if missing:
                op = missing.group(1)
                index = next((i for i, o in enumerate(ops) if o["op"] == op), None)
                why = "TensorFlow Lite Micro has no kernel for it"
            else:
                op, index = node.group(1), int(node.group(2))
                why = f"its TFLM kernel failed to {node.group(3)}"
            layer = None
            if index is not None and index < len(ops):
                tensors = ops[index]["outputs"] or ops[index]["inputs"]
                layer = layer_for_tensor(tensors[0]["name"], layer_names) if tensors else None
            detail = " ".join(message.split())[:300]
            raise UnsupportedOpError(
                f"Op {op} in layer {layer!r} cannot run on TensorFlow Lite Micro: {why}. "
                "Replace the layer with TFLM-supported ops, or deploy the .tflite files "
                f"(LiteRT) instead. TFLM said: {detail}", op=op, layer=layer, mode="micro")
        if size >= _MAX_ARENA:
            raise RuntimeError(f"TensorFlow Lite Micro could not run the model even with a "
                               f"{size}-byte arena: {' '.join(message.split())[:300]}")
        size *= 2


def measure_arena(model_bytes, *, granularity=ARENA_GRANULARITY, layer_names=()):
    """The smallest tensor arena with which TFLM allocates and runs ``model_bytes``.

    Every probe runs in a child process (a too-small arena can crash the interpreter). The
    exact minimum in bytes is found by bisection, rounded up to ``granularity``, and checked in
    fresh processes: ``arena_size`` works and ``arena_size - granularity`` does not.

    Args:
        model_bytes: the int8, batch-1 ``.tflite`` flatbuffer.
        granularity: rounding step in bytes (default 1024).
        layer_names: Keras layer names, for error messages.

    Returns:
        An :class:`ArenaMeasurement`.

    Raises:
        UnsupportedOpError: an op TFLM cannot run (see :func:`check_ops`).

    Example:
        >>> measure_arena(int8_batch1_bytes).arena_size  # doctest: +SKIP
        3072
    """
    if not isinstance(granularity, int) or granularity < 1:
        raise ValueError(f"granularity must be a positive int; got {granularity!r}.")
    require_runtime()
    hint = check_ops(model_bytes, layer_names=layer_names)
    with tempfile.TemporaryDirectory(prefix="keras_distill_tflm_") as tmp:
        model_path = os.path.join(tmp, "model.tflite")
        with open(model_path, "wb") as f:
            f.write(model_bytes)
        with _Prober(model_path) as prober:
            lo, hi = 0, hint or 4096  # lo always fails (0 bytes cannot hold anything)
            while not prober.works(hi):
                lo, hi = hi, hi * 2
                if hi > _MAX_ARENA:
                    raise RuntimeError("TensorFlow Lite Micro arena search passed 1 GiB.")
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if prober.works(mid):
                    hi = mid
                else:
                    lo = mid
            probes = prober.probes
    arena = -(-hi // granularity) * granularity
    # Confirm in fresh processes, as a user would see it.
    ok, message = probe_arena(model_bytes, arena)
    probes += 1
    if not ok:
        raise RuntimeError(f"TFLM arena search found {hi} bytes, but {arena} bytes failed in "
                           f"a fresh interpreter: {message}")
    while arena > granularity:
        probes += 1
        if not probe_arena(model_bytes, arena - granularity)[0]:
            break
        arena -= granularity  # not monotone after all: keep the smaller arena that works
        hi = min(hi, arena)
    return ArenaMeasurement(arena_size=arena, min_bytes=hi, granularity=granularity,
                            probes=probes)
