"""TensorFlow Lite Micro at run time: reading a ``<name>_model_data.cc`` back, trying arena sizes,
and measuring the tensor arena a model needs.

:func:`measure_arena` finds the smallest ``arena_size`` with which the real TFLM interpreter
(``tflite_micro.python.tflite_micro.runtime``) allocates **and** runs the model. The tflite-micro
Python package *segfaults* on some too-small arenas (a failed tail allocation), so every probe
runs in a child process; a crash there counts as "too small". The minimum is found to the byte,
then rounded up to ``granularity`` (1 KiB) and checked again in fresh processes: the reported
arena works, and the arena minus 1 KiB fails. The host is 64-bit, so pointers and TFLM's
bookkeeping structs are larger than on a 32-bit MCU: the figure is an upper bound there.

Where tflite-micro is not installed (it has wheels for Linux x86-64 only), :func:`estimate_arena`
estimates the arena from the flatbuffer instead, without running it: TFLM's greedy plan of the
non-constant tensors, plus its bookkeeping, plus a margin (an :class:`ArenaEstimate`).
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

#: Why the arena is estimated and the micro artifact not run, where tflite-micro is absent.
RUNTIME_MISSING = ("tflite-micro (TensorFlow Lite Micro's Python interpreter) is not installed; "
                   "it has wheels for Linux x86-64 only")
#: :func:`estimate_arena` multiplies its sum by this much. Without it the sum is 1.05x to 1.8x
#: the measured arena (the small models' fixed bookkeeping is overestimated most); with it,
#: 1.3x to 2.2x on 13 models measured when it was chosen (CNNs, dense, depthwise, residual,
#: Conv1D, transpose conv, two heads; tests/test_micro_without_runtime.py checks three).
ESTIMATE_MARGIN = 1.25

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


@dataclasses.dataclass
class ArenaEstimate:
    """The tensor arena of a model *estimated* from its flatbuffer, without running it
    (:func:`estimate_arena`): where tflite-micro is not installed, nothing can measure it.

    Attributes:
        arena_size: the arena to allocate: ``estimate_bytes`` rounded up to ``granularity``.
        estimate_bytes: ``(planned_bytes + bookkeeping_bytes) * margin``.
        planned_bytes: TFLM's greedy plan of the non-constant tensors and of the scratch
            buffers allowed for (the arena's head), 16-byte aligned, plus the planner's own
            temporary records.
        bookkeeping_bytes: what TFLM keeps for the whole run (the tail), at 64-bit host sizes:
            a record per tensor, per op and per model input/output, an allowance per op for its
            data plus 8 bytes per quantization channel, variable tensors, the allocator.
        margin: the factor over the sum (:data:`ESTIMATE_MARGIN`).
        granularity: the rounding step (1024).
        estimated: always True (a measured arena is an :class:`ArenaMeasurement`).
        host: how it was found, and that it was not measured.
        reason: why it was not measured.
    """

    arena_size: int
    estimate_bytes: int
    planned_bytes: int
    bookkeeping_bytes: int
    margin: float = ESTIMATE_MARGIN
    granularity: int = ARENA_GRANULARITY
    estimated: bool = True
    host: str = ""
    reason: str = RUNTIME_MISSING

    def __post_init__(self):
        if not self.host:
            self.host = (
                "estimated from the model's tensors (TFLM's greedy plan of the non-constant "
                f"tensors, its bookkeeping at 64-bit host sizes, a {self.margin:g}x margin), "
                "not measured: above the measured arena, by 1.3x to 2.2x, on the models "
                "checked; check it on the device, or export on Linux x86-64 to measure it")

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
        if not line.startswith("@@ok"):
            # a failed allocation can leave the TFLM runtime of that process failing every
            # later size (measured: a model whose first probe was too small then failed up
            # to 1 GiB, and ran at 4 KiB in a fresh process): the next probe gets a new one
            self.close()
            return False
        return True


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
            "installed; it has wheels for Linux x86-64 only. Running a micro artifact (to "
            "verify or evaluate it, or to measure its tensor arena) needs it: do that on Linux "
            "x86-64 (pip install tflite-micro). Elsewhere export still writes the .cc/.h, its "
            "arena estimated, not measured, and the artifact not run.")


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
                f"(LiteRT) instead. TFLM said: {detail}", op=op, layer=layer, mode="micro",
                detail=f"TFLM said: {detail}")
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
                    died = (f"; the probing process died on {prober.crashes} of "
                            f"{prober.probes} sizes" if prober.crashes else "")
                    _, message = probe_arena(model_bytes, 1 << 20)
                    raise RuntimeError("TensorFlow Lite Micro arena search passed 1 GiB"
                                       + died + (f"; with 1 MiB TFLM says: {message}"
                                                 if message else "") + ".")
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


# --- the arena estimated from the flatbuffer, without TFLM -----------------------------------

_ALIGN = 16  # TFLM aligns every arena buffer to 16 bytes
# The tail: what TFLM keeps for the whole run, in bytes on a 64-bit host (the sizes of its
# structs, as RecordingMicroAllocator reports them; smaller on a 32-bit MCU).
_EVAL_TENSOR = 24  # TfLiteEvalTensor, one per tensor of every subgraph
_IO_TENSOR = 96  # TfLiteTensor (64) and its quantization (32), per input and output
_NODE = 64  # NodeAndRegistration, one per op
_OP_DATA = 128  # an op's kernel data (OpDataConv and the like: 40-100 bytes), per op
_PER_CHANNEL = 8  # an int32 multiplier and shift per quantization channel of an op's constants
_ALLOCATOR = 1024  # the allocator, planner and interpreter objects (about 650 bytes measured)
# The planner's temporary records while it plans, in the head: one per tensor, one per buffer.
_ALLOCATION_INFO = 32
_PLANNER_ENTRY = 40
# Ops whose reference kernels request no scratch buffer; every other op is allowed one of
# 4 bytes per element of its largest non-constant tensor, alive while it runs (MEAN, SUM,
# TRANSPOSE_CONV... keep int32 accumulators there), and 4x that for the recurrent ones.
_NO_SCRATCH = frozenset({
    "ABS", "ADD", "ARG_MAX", "ARG_MIN", "AVERAGE_POOL_2D", "BATCH_TO_SPACE_ND", "CAST",
    "CEIL", "CONCATENATION", "CONV_2D", "COS", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "DIV", "ELU", "EQUAL", "EXP", "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV",
    "FLOOR_MOD", "FULLY_CONNECTED", "GATHER", "GATHER_ND", "GREATER", "GREATER_EQUAL",
    "HARD_SWISH", "L2_NORMALIZATION", "L2_POOL_2D", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG",
    "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR", "LOGISTIC", "LOG_SOFTMAX", "MAXIMUM",
    "MAX_POOL_2D", "MINIMUM", "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL", "PACK", "PAD", "PADV2",
    "PRELU", "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "ROUND", "RSQRT", "SELECT_V2", "SHAPE", "SIN", "SLICE",
    "SOFTMAX", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "UNPACK",
    "ZEROS_LIKE"})
_RECURRENT = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "SVDF",
                        "UNIDIRECTIONAL_SEQUENCE_RNN", "LSTM"})


def estimate_arena(model_bytes, *, granularity=ARENA_GRANULARITY, margin=ESTIMATE_MARGIN):
    """Estimate the tensor arena TFLM needs for ``model_bytes`` from its tensors, without
    running it (where tflite-micro, which measures it, is not installed).

    The head is planned as TFLM's ``GreedyMemoryPlanner`` does: every non-constant tensor
    lives from the op that makes it (0 for an input) to the last op that reads it (the end for
    an output); the buffers, 16-byte aligned and largest first, each take the lowest offset
    free over their lifetime; scratch buffers are allowed for the ops whose reference kernels
    may ask for one; the planner's temporary records are added on top. The tail adds TFLM's
    bookkeeping at 64-bit host sizes. The sum times ``margin``, rounded up to
    ``granularity``, was above the measured arena on every model checked (see
    ``tests/test_micro_without_runtime.py``); kernels other than TFLM's reference ones
    (CMSIS-NN, ESP-NN) may ask for more scratch.

    Args:
        model_bytes: the int8, batch-1 ``.tflite`` flatbuffer.
        granularity: rounding step in bytes (default 1024).
        margin: the factor over the sum (default :data:`ESTIMATE_MARGIN`, 1.25).

    Returns:
        An :class:`ArenaEstimate`.

    Example:
        >>> estimate_arena(int8_batch1_bytes).arena_size  # doctest: +SKIP
        5120
    """
    if not isinstance(granularity, int) or granularity < 1:
        raise ValueError(f"granularity must be a positive int; got {granularity!r}.")
    if not margin >= 1:
        raise ValueError(f"margin must be at least 1; got {margin!r}.")
    model = _read_flatbuffer(model_bytes)
    planned, bookkeeping = 0, _ALLOCATOR
    for graph in model["subgraphs"]:  # subgraphs planned apart: their sum bounds a joint plan
        head, tail = _estimate_subgraph(graph)
        planned += head
        bookkeeping += tail
    total = int(-(-(planned + bookkeeping) * margin // 1))
    return ArenaEstimate(arena_size=-(-total // granularity) * granularity, estimate_bytes=total,
                         planned_bytes=planned, bookkeeping_bytes=bookkeeping, margin=margin,
                         granularity=granularity)


def _estimate_subgraph(graph):
    """``(head, tail)`` bytes of one subgraph (see :func:`estimate_arena`)."""
    tensors, ops = graph["tensors"], graph["ops"]
    buffers = _tensor_buffers(graph) + _scratch_buffers(graph)
    head = _greedy_plan(buffers) + _ALLOCATION_INFO * len(tensors) + _PLANNER_ENTRY * len(buffers)
    channels = sum(max((tensors[i]["channels"] for i in op["inputs"] if tensors[i]["constant"]),
                       default=0) for op in ops)
    variables = sum(_aligned(t["bytes"]) for t in tensors if t["variable"])
    io = len(set(graph["inputs"]) | set(graph["outputs"]))
    tail = (_EVAL_TENSOR * len(tensors) + _IO_TENSOR * io + (_NODE + _OP_DATA) * len(ops)
            + _PER_CHANNEL * channels + variables)
    return head, tail


def _tensor_buffers(graph):
    """``(bytes, first op, last op)`` of each non-constant, non-variable tensor: from the op
    that makes it (0 for an input) to the last op that reads it (the last op for an output)."""
    tensors, ops = graph["tensors"], graph["ops"]
    lifetimes = {i: [0, 0] for i in graph["inputs"] if not tensors[i]["constant"]}
    for step, op in enumerate(ops):
        for i in op["outputs"] + op["intermediates"]:
            if not tensors[i]["constant"]:
                lifetimes.setdefault(i, [step, step])
        for i in op["inputs"] + op["intermediates"]:
            if i in lifetimes:
                lifetimes[i][1] = max(lifetimes[i][1], step)
    for i in graph["outputs"]:
        if i in lifetimes:
            lifetimes[i][1] = max(len(ops) - 1, 0)
    return [(_aligned(tensors[i]["bytes"]), start, end)  # in tensor order, as TFLM lists them
            for i, (start, end) in sorted(lifetimes.items()) if not tensors[i]["variable"]]


def _scratch_buffers(graph):
    """The scratch buffers allowed for: one per op not in ``_NO_SCRATCH``, alive while it runs."""
    tensors, buffers = graph["tensors"], []
    for step, op in enumerate(graph["ops"]):
        if op["op"] in _NO_SCRATCH:
            continue
        largest = max((tensors[i]["elements"] for i in op["inputs"] + op["outputs"]
                       if not tensors[i]["constant"]), default=0)
        buffers.append((_aligned(4 * largest * (4 if op["op"] in _RECURRENT else 1)),
                        step, step))
    return buffers


def _aligned(n):
    return -(-int(n) // _ALIGN) * _ALIGN


def _greedy_plan(buffers):
    """The arena bytes TFLM's greedy planner needs for ``buffers`` (``(bytes, first step,
    last step)``, in TFLM's order): largest first (equal sizes last listed first, as its
    planner orders them), each at the lowest offset free over its lifetime."""
    placed = []  # (offset, bytes, first, last)
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], -i))
    for size, start, end in (buffers[i] for i in order):
        offset = 0
        for o, n, _, _ in sorted(p for p in placed if p[2] <= end and start <= p[3]):
            if offset + size <= o:
                break
            offset = max(offset, o + n)
        placed.append((offset, size, start, end))
    return max((o + n for o, n, _, _ in placed), default=0)


_DTYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "INT32": 4, "UINT32": 4, "UINT8": 1,
                "INT8": 1, "INT16": 2, "UINT16": 2, "INT64": 8, "UINT64": 8, "FLOAT64": 8,
                "BOOL": 1, "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 1, "UINT4": 1, "INT2": 1}


def _read_flatbuffer(model_bytes):
    """The subgraphs of a ``.tflite`` flatbuffer: per tensor its ``bytes``, ``elements``,
    quantization ``channels`` and whether it is ``constant`` or ``variable``; per op its name
    and tensor indices (``-1``, an omitted optional input, left out)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # ai-edge-litert has no wheel for this platform: TensorFlow's copy
        from tensorflow.lite.python import schema_py_generated as schema
    import numpy as np

    model = schema.ModelT.InitFromPackedBuf(bytes(model_bytes), 0)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [op_names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM")
             for c in model.operatorCodes or []]
    buffers = model.buffers or []

    def constant(t):
        b = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
        return b is not None and (b.data is not None and len(b.data) > 0
                                  or bool(getattr(b, "offset", 0)))

    def tensor(t):
        elements = int(np.prod([max(int(d), 1) for d in t.shape])) if t.shape is not None else 1
        q = t.quantization
        return {"bytes": elements * _DTYPE_BYTES.get(types.get(t.type), 8),
                "elements": elements, "constant": constant(t), "variable": bool(t.isVariable),
                "channels": 0 if q is None or q.scale is None or len(q.scale) < 2
                else len(q.scale)}

    def indices(values):
        return [int(i) for i in (values if values is not None else []) if i >= 0]

    subgraphs = []
    for g in model.subgraphs or []:
        subgraphs.append({
            "tensors": [tensor(t) for t in g.tensors or []],
            "inputs": indices(g.inputs), "outputs": indices(g.outputs),
            "ops": [{"op": codes[o.opcodeIndex], "inputs": indices(o.inputs),
                     "outputs": indices(o.outputs), "intermediates": indices(o.intermediates)}
                    for o in g.operators or []]})
    return {"subgraphs": subgraphs}
