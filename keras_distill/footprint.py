"""What an int8 micro artifact costs beyond its arena and model bytes: TFLite Micro's code in
flash, the interpreter's own RAM, and an inference's latency, each with where its numbers
come from.

:mod:`keras_distill.targets` compares the measured tensor arena and the model's bytes with a
device's RAM and flash, and says that TFLite Micro's own code and the interpreter's static RAM
are not counted. This module gives those numbers:

* :func:`code_size`: flash taken by the TFLM framework (interpreter, allocator, planner) plus
  one entry per builtin kernel the model registers;
* :func:`static_ram`: RAM outside the arena: the ``MicroInterpreter`` and op-resolver objects,
  the framework's globals and the worst-case stack of ``Invoke()``;
* :func:`latency`: multiply-accumulates per kernel family (:func:`op_macs`, the per-op form of
  :func:`keras_distill.export.micro.macs`) times cycles per MAC for the target's core, divided
  by its clock.

Every number carries its source in the tables below. Three kinds of source are used and each
entry says which it is:

* *published*: a document or result file, named with its path or table;
* *measured here*: a reproducible build, described in :data:`MEASUREMENT` (the toolchain, the
  commits and the method), for numbers that no document gives, such as the per-kernel code size
  (the TFLM maintainers publish none: tensorflow/tflite-micro issue #2611 asks for such a list);
* *derived*: arithmetic on published numbers, with the arithmetic spelled out, for what no
  measurement covers (e.g. the Cortex-M7 and Cortex-M0+ cycles per MAC).

Example:
    >>> r = code_size(["CONV_2D", "FULLY_CONNECTED", "SOFTMAX"], "nrf52840")
    >>> r["bytes"] == RUNTIME_CODE_BYTES + 31540 + 20208 + 11228
    True
    >>> code_size(["CONV_2D", "MY_CUSTOM_OP"])["unknown_ops"]
    ['MY_CUSTOM_OP']
"""

from __future__ import annotations

import dataclasses
import statistics

from keras_distill import targets

# ---------------------------------------------------------------------------------------------
# How the "measured here" numbers were obtained.
# ---------------------------------------------------------------------------------------------

#: The build behind every "measured here" number (code size, object sizes, stack depth).
MEASUREMENT = (
    "measured here: tensorflow/tflite-micro commit 90b983c2b3f1480642e040bbd2ddb37b998f3424 "
    "built with its own Makefile (TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp "
    "OPTIMIZED_KERNEL_DIR=cmsis_nn BUILD_TYPE=release: -Os framework, -O2 kernels, "
    "TF_LITE_STRIP_ERROR_STRINGS) with the dependencies its download scripts pin (CMSIS-NN "
    "4ab83cc3, CMSIS_6 5782d6f8, flatbuffers v25.9.23) and Debian's arm-none-eabi-gcc 12.2.1, "
    "newlib-nano, linked with --gc-sections. Following the method of tflite-micro's "
    "tensorflow/lite/micro/examples/memory_footprint/README.md (TFLM Code Size FAQ): the "
    "framework is size(interpreter program, no kernel registered) - size(InitializeTarget-only "
    "program); a kernel is size(interpreter program + MicroMutableOpResolver::Add<Op>()) - "
    "size(interpreter program); flash = text + data of arm-none-eabi-size.")

# ---------------------------------------------------------------------------------------------
# 1. Code size in flash
# ---------------------------------------------------------------------------------------------

#: TFLM framework code (interpreter, allocator, memory planner, flatbuffer reading, no kernel),
#: bytes of flash on a Cortex-M4 build with CMSIS-NN.
RUNTIME_CODE_BYTES = 11652
RUNTIME_CODE_SOURCE = (
    f"{MEASUREMENT}. Framework: 12,768 - 1,116 = 11,652 bytes. Cross-check (published): the "
    "same README's 'Sample code size of the TFLM Framework' gives 9,732 bytes for the bluepill "
    "(Cortex-M3) build of 2021 and 20,411 bytes on x86-64")

#: Flash added by registering one builtin kernel (``MicroMutableOpResolver::Add<Op>()``) on the
#: Cortex-M4 + CMSIS-NN build of :data:`MEASUREMENT`, bytes. A registration links every type the
#: kernel supports (float, int8, int16), as the application's linker sees it.
OP_CODE_BYTES = {
    "CONV_2D": 31540, "DEPTHWISE_CONV_2D": 21444, "FULLY_CONNECTED": 20208,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 19288, "TRANSPOSE_CONV": 16960, "SVDF": 14900,
    "ADD": 14688, "BATCH_MATMUL": 14516, "SUB": 12812, "GREATER": 12736, "MUL": 12716,
    "STRIDED_SLICE": 11616, "SOFTMAX": 11228, "EQUAL": 11200, "DIV": 10560, "LESS": 10080,
    "SQUARED_DIFFERENCE": 9536, "LOG_SOFTMAX": 9376, "TANH": 8552, "MEAN": 8416,
    "LOGISTIC": 8200, "MAXIMUM": 7456, "MINIMUM": 7456, "PRELU": 7424, "SUM": 7392,
    "SELECT_V2": 6976, "MAX_POOL_2D": 6600, "AVERAGE_POOL_2D": 6408, "QUANTIZE": 5632,
    "RSQRT": 5028, "REDUCE_MAX": 4864, "HARD_SWISH": 4840, "LEAKY_RELU": 4776, "RELU": 4712,
    "PAD": 4672, "PAD_V2": 4672, "ABS": 4224, "CONCATENATION": 3968,
    "RESIZE_NEAREST_NEIGHBOR": 3360, "RESIZE_BILINEAR": 3200, "SLICE": 3136,
    "DEQUANTIZE": 3104, "ELU": 2908, "EMBEDDING_LOOKUP": 2872, "TRANSPOSE": 2720,
    "RELU6": 2664, "L2_NORMALIZATION": 2596, "GATHER": 2528, "CAST": 2528,
    "SPACE_TO_DEPTH": 2240, "DEPTH_TO_SPACE": 2240, "GATHER_ND": 2112,
    "SPACE_TO_BATCH_ND": 2112, "ARG_MAX": 2080, "ARG_MIN": 2080, "SPLIT_V": 1984,
    "BATCH_TO_SPACE_ND": 1952, "SPLIT": 1920, "EXP": 1852, "PACK": 1664, "FILL": 1504,
    "UNPACK": 1472, "RESHAPE": 1440, "SQUEEZE": 1376, "EXPAND_DIMS": 1344, "MIRROR_PAD": 1120,
    "ZEROS_LIKE": 928, "NEG": 928, "SQRT": 868, "SHAPE": 704,
}
OP_CODE_SOURCE = (
    f"{MEASUREMENT}. Each entry is one kernel registered alone, so it includes the support code "
    "(quantization helpers, reference ops, libm) it shares with other kernels: a sum over "
    "several kernels is an upper bound. Measured together (same build): CONV_2D + MAX_POOL_2D "
    "+ RESHAPE + FULLY_CONNECTED add 49,388 bytes (sum of entries 59,788, +21%); with SOFTMAX "
    "56,904 (sum 71,016); CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, RESHAPE, SOFTMAX, "
    "FULLY_CONNECTED, ADD, QUANTIZE, DEQUANTIZE add 85,500 (sum 115,692, +35%)")

#: Kernels measured together on the same build (see :data:`OP_CODE_SOURCE`): op set -> bytes.
COMBINED_CODE_BYTES = {
    frozenset({"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"}): 49388,
    frozenset({"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}): 56904,
    frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX",
               "FULLY_CONNECTED", "ADD", "QUANTIZE", "DEQUANTIZE"}): 85500,
}

#: Code size assumed for a kernel missing from :data:`OP_CODE_BYTES` (a custom op, or one not
#: measured): the median of the measured entries. An estimate: such ops are listed in
#: ``unknown_ops``.
DEFAULT_OP_CODE_BYTES = int(statistics.median(OP_CODE_BYTES.values()))

# ---------------------------------------------------------------------------------------------
# 2. Interpreter RAM outside the arena
# ---------------------------------------------------------------------------------------------

#: ``sizeof(tflite::MicroInterpreter)`` on the 32-bit Cortex-M4 build, bytes (symbol size).
INTERPRETER_OBJECT_BYTES = 208
#: ``sizeof(tflite::MicroMutableOpResolver<N>)`` = base + per_op * N on that build, bytes:
#: measured 48, 156, 192 and 336 bytes for N = 1, 4, 5 and 9.
OP_RESOLVER_BASE_BYTES, OP_RESOLVER_PER_OP_BYTES = 12, 36
#: The framework's other .data + .bss: 1,576 bytes added over the InitializeTarget-only program,
#: less the 1,024-byte arena, the interpreter (208) and a one-op resolver (48). Includes the
#: error-reporter buffer and newlib's atexit records that static objects with destructors use.
FRAMEWORK_GLOBALS_BYTES = 296
#: Worst-case stack of ``MicroInterpreter::Invoke()`` down to the kernel call (the call graph
#: from GCC's -fcallgraph-info=su, indirect calls cut), bytes.
INVOKE_STACK_BYTES = 176
#: Worst-case stack below a kernel's entry points (the deepest function of its source file,
#: through CMSIS-NN), bytes, same analysis. ``AllocateTensors()`` reaches 168 bytes before a
#: kernel's Prepare, so Invoke's path is the deeper one.
KERNEL_STACK_BYTES = {
    "CONV_2D": 1264, "DEPTHWISE_CONV_2D": 1256, "FULLY_CONNECTED": 720, "SOFTMAX": 328,
    "MAX_POOL_2D": 424, "AVERAGE_POOL_2D": 424, "ADD": 744, "MUL": 704, "RESHAPE": 32,
    "QUANTIZE": 16, "DEQUANTIZE": 104, "UNIDIRECTIONAL_SEQUENCE_LSTM": 1136, "SVDF": 624,
    "TRANSPOSE_CONV": 1408, "BATCH_MATMUL": 992, "LOGISTIC": 160, "TANH": 144, "MEAN": 272,
    "SUM": 272, "REDUCE_MAX": 272, "CONCATENATION": 472, "STRIDED_SLICE": 384, "GATHER": 108,
}
#: Stack assumed for a kernel missing from :data:`KERNEL_STACK_BYTES`: the deepest one measured.
DEFAULT_KERNEL_STACK_BYTES = max(KERNEL_STACK_BYTES.values())
STATIC_RAM_SOURCE = (
    f"{MEASUREMENT}. Objects: symbol sizes (arm-none-eabi-nm -S) of a static MicroInterpreter "
    "and MicroMutableOpResolver<N> for N = 1, 4, 5, 9; globals: the .data + .bss difference "
    "less those objects and the arena. Stack: static worst case from GCC -fcallgraph-info=su "
    "over the whole library, the kernel reached through TfLiteRegistration::invoke added by "
    "hand; interrupt handlers and the application's own frames are not included. TFLM's "
    "persistent buffers (tensors, node data, scratch) live in the arena, which the micro "
    "artifact measures")

# ---------------------------------------------------------------------------------------------
# 3. Latency: clocks and cycles per MAC
# ---------------------------------------------------------------------------------------------

#: Each target's CPU core and clock: ``name -> (core, MHz, source)``; ``MHz`` None: no fixed clock.
CLOCKS = {
    "nrf52840": ("cortex-m4", 64.0,
                 ("Nordic nRF52840 Product Specification v1.7, Key features: Arm Cortex-M4 with "
                  "FPU, 64 MHz")),
    "cortex-m4-256k": ("cortex-m4", 64.0,
                       "Arduino Nano 33 BLE Sense datasheet: nRF52840, Cortex-M4F at 64 MHz"),
    "cortex-m7-512k": ("cortex-m7", 216.0,
                       ("ST STM32F767ZI datasheet (DS11532), Features: Arm Cortex-M7, up to "
                        "216 MHz")),
    "rp2040": ("cortex-m0plus", 133.0,
               "RP2040 datasheet, Key features: dual Cortex-M0+ at up to 133 MHz"),
    "esp32-s3": ("xtensa-lx7", 240.0,
                 "ESP32-S3 datasheet, Product overview: Xtensa LX7 dual-core, up to 240 MHz"),
    "android-cpu": ("cortex-a", None,
                    ("no fixed clock: phone CPUs scale their frequency (DVFS) and LiteRT runs "
                     "several threads")),
}

#: Kernel family of each op whose MACs :func:`op_macs` counts.
FAMILY = {"CONV_2D": "conv", "TRANSPOSE_CONV": "conv", "DEPTHWISE_CONV_2D": "depthwise_conv",
          "FULLY_CONNECTED": "fully_connected", "BATCH_MATMUL": "fully_connected"}
FAMILIES = ("conv", "depthwise_conv", "fully_connected")


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One published whole-model latency: MLPerf Tiny median throughput on a board."""

    model: str
    throughput: float  # inferences per second (median)
    mhz: float


#: MLPerf Tiny models' multiply-accumulates per family, counted by :func:`op_macs` on the int8
#: models of github.com/mlcommons/tiny (commit 1afd2c98, benchmark/training/.../trained_models:
#: ad01_int8, pretrainedResnet_quant, kws_ref_model, vww_96_int8).
MLPERF_TINY_MACS = {
    "ad": {"conv": 0, "depthwise_conv": 0, "fully_connected": 264192},
    "ic": {"conv": 12500992, "depthwise_conv": 0, "fully_connected": 640},
    "kws": {"conv": 2368000, "depthwise_conv": 288000, "fully_connected": 768},
    "vww": {"conv": 6690816, "depthwise_conv": 798336, "fully_connected": 512},
}
#: TFLite Micro v2.3.1 with CMSIS-NN on NUCLEO-L4R5ZI (Cortex-M4F, 120 MHz): MLPerf Tiny v0.5
#: closed/reference (github.com/mlcommons/tiny_results_v0.5, results/Nucleo-L4R5ZI/<model>/
#: performance/results.txt; systems/Nucleo_L4R5ZI_System_Description.json; TAGS=cmsis-nn in
#: code/reference_submissions/*/setup_example.sh).
TFLM_M4 = (Benchmark("ad", 99.487, 120.0), Benchmark("ic", 1.420, 120.0),
           Benchmark("kws", 5.497, 120.0), Benchmark("vww", 1.665, 120.0))
#: One engine (Bosch HALE 1.0) on three cores, MLPerf Tiny v1.1 closed/bosch
#: (github.com/mlcommons/tiny_results_v1.1 commit c32ef94d, results/<board>/<model>/performance/
#: results.txt): the ratio of its cycles per inference between cores.
HALE = {
    "cortex-m4": (Benchmark("ad", 176.699, 120.0), Benchmark("ic", 5.586, 120.0),
                  Benchmark("kws", 15.954, 120.0), Benchmark("vww", 5.533, 120.0)),
    "cortex-m7": (Benchmark("ad", 587.335, 216.0), Benchmark("ic", 16.242, 216.0),
                  Benchmark("kws", 54.293, 216.0), Benchmark("vww", 17.490, 216.0)),
    "cortex-m0plus": (Benchmark("ad", 21.484, 64.0), Benchmark("ic", 0.599, 64.0),
                      Benchmark("kws", 1.472, 64.0), Benchmark("vww", 0.535, 64.0)),
}


def _cycles(bench):
    return bench.mhz * 1e6 / bench.throughput


def _per_family_from_models(benches):
    """Cycles per MAC per family from whole-model latencies: fully connected from AD (FC only),
    conv from IC (conv, less its FC at the AD rate), depthwise from KWS + VWW together (less
    their conv and FC at those rates). Every other op's time is folded into these rates."""
    b = {x.model: _cycles(x) for x in benches}
    m = MLPERF_TINY_MACS
    fc = b["ad"] / m["ad"]["fully_connected"]
    conv = (b["ic"] - fc * m["ic"]["fully_connected"]) / m["ic"]["conv"]
    rest = sum(b[k] - conv * m[k]["conv"] - fc * m[k]["fully_connected"] for k in ("kws", "vww"))
    dw = rest / sum(m[k]["depthwise_conv"] for k in ("kws", "vww"))
    return {"conv": conv, "depthwise_conv": dw, "fully_connected": fc}


def _core_ratio(core):
    """Per family, HALE's cycles per inference on ``core`` over those on the Cortex-M4: FC from
    AD, conv from IC, depthwise from KWS + VWW."""
    mine = {x.model: _cycles(x) for x in HALE[core]}
    m4 = {x.model: _cycles(x) for x in HALE["cortex-m4"]}
    return {"fully_connected": mine["ad"] / m4["ad"], "conv": mine["ic"] / m4["ic"],
            "depthwise_conv": (mine["kws"] + mine["vww"]) / (m4["kws"] + m4["vww"])}


_M4 = _per_family_from_models(TFLM_M4)
_SRC_M4 = ("derived from MLPerf Tiny v0.5 closed/reference: TFLite Micro v2.3.1 + CMSIS-NN on "
           "NUCLEO-L4R5ZI (Cortex-M4F, 120 MHz), median throughput of AD 99.487, IC 1.420, "
           "KWS 5.497, VWW 1.665 inf/s (tiny_results_v0.5 results/Nucleo-L4R5ZI/*/performance/"
           "results.txt), divided into the models' MACs per family (mlcommons/tiny int8 models "
           "counted by keras_distill.footprint.op_macs): FC = AD cycles / AD MACs; conv = IC "
           "less its FC; depthwise = KWS + VWW less their conv and FC. Other ops are folded in. "
           "TFLM of 2020: later CMSIS-NN kernels are faster, so an upper bound")
_SRC_RATIO = ("derived: the Cortex-M4 rates ({m4}) times the ratio of cycles per inference of "
              "one engine, Bosch HALE 1.0, on {board} vs NUCLEO-L4R5ZI (MLPerf Tiny v1.1 "
              "closed/bosch, tiny_results_v1.1 results/*/*/performance/results.txt): FC from "
              "AD, conv from IC, depthwise from KWS + VWW. An estimate: it assumes TFLM scales "
              "between cores as HALE does")

#: ESP-NN's kernel table on ESP32-S3 (github.com/espressif/esp-nn README.md, 'Kernelwise
#: performance for s8 versions', 240 MHz, cycles of the optimized kernel; MACs by hand from each
#: row's shapes): family -> [(cycles, MACs, row)].
ESP_NN_ROWS = {
    "conv": [(461398, 10 * 10 * 64 * 64, "input(10,10), filter(64x1x1x64)"),
             (43578, 8 * 8 * 16 * 16, "input(8,8), filter(16x1x1x16)"),
             (643689, 8 * 8 * 64 * 3 * 3 * 3, "input(10,10), filter(64x3x3x3), no pad")],
    "depthwise_conv": [(191931, 16 * 16 * 16 * 3 * 3, "input(18,18), filter 1x3x3x16, no pad")],
    "fully_connected": [(4439, 265 * 3, "len 265, ch 3")],
}


def _esp_nn():
    return {f: sum(c for c, _, _ in rows) / sum(m for _, m, _ in rows)
            for f, rows in ESP_NN_ROWS.items()}


def _fmt(rates):
    return ", ".join(f"{f} {rates[f]:.2f}" for f in FAMILIES)


#: Cycles per int8 MAC for each core and kernel family, with the source: ``core -> (rates,
#: source)``; ``rates`` None where no source gives them.
CYCLES_PER_MAC = {
    "cortex-m4": (_M4, _SRC_M4),
    "cortex-m7": ({f: _M4[f] * r for f, r in _core_ratio("cortex-m7").items()},
                  _SRC_RATIO.format(m4=_fmt(_M4), board="DISCO-F746NG (Cortex-M7, 216 MHz)")),
    "cortex-m0plus": ({f: _M4[f] * r for f, r in _core_ratio("cortex-m0plus").items()},
                      _SRC_RATIO.format(m4=_fmt(_M4), board="NUCLEO-G0B1RE (Cortex-M0+, 64 MHz)")),
    "xtensa-lx7": (_esp_nn(),
                   ("ESP-NN README.md (github.com/espressif/esp-nn), 'Kernelwise performance for "
                    "s8 versions' on ESP32-S3 at 240 MHz: optimized-kernel cycles over the MACs "
                    "of each row's shapes, summed per family (conv: the three convolution rows; "
                    "depthwise: the 18x18 3x3x16 row; FC: the 265x3 row). Kernel time only: "
                    "TFLM's own overhead and the other ops are not included")),
    "cortex-a": (None,
                 ("not sourced: no published per-MAC cycle count for LiteRT's XNNPACK kernels on "
                  "phone cores; its latency depends on the phone, threads and frequency scaling")),
}


# ---------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------

def _core(target):
    if target is None:
        return "cortex-m4"
    name = targets.get(target).name
    if name not in CLOCKS:
        raise ValueError(f"No core or clock known for target {name!r}; known: "
                         f"{', '.join(CLOCKS)}.")
    return CLOCKS[name][0]


def _op_names(ops):
    names = [op["op"] if isinstance(op, dict) else str(op) for op in ops]
    return list(dict.fromkeys(names))  # registered once each, in first-seen order


def code_size(ops, target=None):
    """Flash taken by TFLite Micro for a model's ops: the framework plus one entry per kernel.

    Args:
        ops: op names (``["CONV_2D", ...]``) or ``tflite.list_ops`` output; each op counts once.
        target: a name of :data:`keras_distill.targets.TARGETS`, a ``Target`` or ``None`` (the
            Cortex-M4 build the numbers were measured on).

    Returns:
        ``{"bytes", "runtime", "per_op", "unknown_ops", "upper_bound", "estimated", "source"}``:
        ``bytes`` = ``runtime`` + the sum of ``per_op``; an op missing from
        :data:`OP_CODE_BYTES` gets :data:`DEFAULT_OP_CODE_BYTES` and is named in
        ``unknown_ops``. ``upper_bound``: kernels share support code, so the sum overstates a
        build of several kernels (by 20-35% in the measured combinations). ``estimated``: the
        target's core is not the measured Cortex-M4 class. On ``android-cpu`` (LiteRT, not
        TFLM) ``bytes`` is None.

    Example:
        >>> r = code_size(["RESHAPE", "RESHAPE"])
        >>> r["bytes"] == RUNTIME_CODE_BYTES + OP_CODE_BYTES["RESHAPE"], r["unknown_ops"]
        (True, [])
    """
    core = _core(target)
    names = _op_names(ops)
    if core == "cortex-a":
        return {"bytes": None, "runtime": None, "per_op": {}, "unknown_ops": [],
                "upper_bound": False, "estimated": True,
                "source": "not applicable: android-cpu runs LiteRT, not TFLite Micro (LiteRT's "
                          "guide: ~1 MB with all ops linked on 32-bit Arm, under 300 KB with "
                          "the ops of common image classifiers)"}
    per_op = {n: OP_CODE_BYTES.get(n, DEFAULT_OP_CODE_BYTES) for n in names}
    unknown = [n for n in names if n not in OP_CODE_BYTES]
    source = f"runtime: {RUNTIME_CODE_SOURCE}; kernels: {OP_CODE_SOURCE}"
    if unknown:
        source += (f"; {', '.join(unknown)}: not measured, {DEFAULT_OP_CODE_BYTES} bytes each "
                   "assumed (the median of the measured kernels)")
    estimated = core not in ("cortex-m4", "cortex-m7")
    if estimated:
        source += (f"; ESTIMATE for {core}: the Cortex-M4 numbers are used, but its instruction "
                   "set and kernels differ (Cortex-M0+: Thumb-1, CMSIS-NN's plain-C paths; "
                   "Xtensa: ESP-NN kernels)")
    elif core == "cortex-m7":
        source += "; Cortex-M7: same ARMv7E-M instruction set and CMSIS-NN paths as measured"
    return {"bytes": RUNTIME_CODE_BYTES + sum(per_op.values()), "runtime": RUNTIME_CODE_BYTES,
            "per_op": per_op, "unknown_ops": unknown, "upper_bound": len(names) > 1,
            "estimated": estimated, "source": source}


def static_ram(target=None, ops=None):
    """RAM the interpreter needs outside the tensor arena.

    Args:
        target: a target name, a ``Target`` or ``None`` (the measured Cortex-M4 build).
        ops: the model's ops (names or ``tflite.list_ops`` output), to size the op resolver and
            pick the deepest kernel stack; ``None``: one op, and the CONV_2D kernel's stack.

    Returns:
        ``{"bytes", "interpreter", "op_resolver", "globals", "stack", "estimated", "source"}``
        in bytes: ``bytes`` is the sum of the four parts (``bytes`` None on ``android-cpu``).

    Example:
        >>> r = static_ram()
        >>> r["bytes"] == 208 + 48 + 296 + 176 + 1264
        True
    """
    core = _core(target)
    if core == "cortex-a":
        return {"bytes": None, "interpreter": None, "op_resolver": None, "globals": None,
                "stack": None, "estimated": True,
                "source": "not applicable: android-cpu runs LiteRT, not TFLite Micro"}
    names = _op_names(ops) if ops is not None else ["CONV_2D"]
    resolver = OP_RESOLVER_BASE_BYTES + OP_RESOLVER_PER_OP_BYTES * max(len(names), 1)
    stack = INVOKE_STACK_BYTES + max(
        (KERNEL_STACK_BYTES.get(n, DEFAULT_KERNEL_STACK_BYTES) for n in names), default=0)
    parts = {"interpreter": INTERPRETER_OBJECT_BYTES, "op_resolver": resolver,
             "globals": FRAMEWORK_GLOBALS_BYTES, "stack": stack}
    source = STATIC_RAM_SOURCE
    estimated = core not in ("cortex-m4", "cortex-m7")
    if estimated:
        source += (f"; ESTIMATE for {core}: the 32-bit Cortex-M4 sizes are used (object sizes "
                   "match on any 32-bit target; stack frames depend on the compiler and kernels)")
    return {"bytes": sum(parts.values()), **parts, "estimated": estimated, "source": source}


def op_macs(listed):
    """Multiply-accumulates of each op of ``tflite.list_ops`` output, in order: the per-op form
    of :func:`keras_distill.export.micro.macs` (same rules; their sum is equal).

    Example:
        >>> conv = {"op": "CONV_2D", "inputs": [{"shape": [1, 8, 8, 1]},
        ...         {"shape": [8, 3, 3, 1]}], "outputs": [{"shape": [1, 8, 8, 8]}]}
        >>> op_macs([conv, {"op": "RESHAPE", "inputs": [], "outputs": []}])
        [4608, 0]
    """
    result = []
    for op in listed:
        shapes = [t["shape"] for t in op["inputs"]]
        out = op["outputs"][0]["shape"] if op["outputs"] else []
        kind, n = op["op"], 0
        if kind == "CONV_2D" and len(shapes) >= 2:
            n = _product(out) * _product(shapes[1][1:])  # filter (Co, Kh, Kw, Ci)
        elif kind == "DEPTHWISE_CONV_2D" and len(shapes) >= 2:
            n = _product(out) * _product(shapes[1][1:3])  # filter (1, Kh, Kw, C·m)
        elif kind == "FULLY_CONNECTED" and len(shapes) >= 2:
            n = _product(out) * shapes[1][-1]  # weights (out, in)
        elif kind == "TRANSPOSE_CONV" and len(shapes) >= 3:
            n = _product(shapes[2]) * _product(shapes[1][:3])  # (shape, filter, input)
        elif kind == "BATCH_MATMUL" and len(shapes) >= 2:
            n = _product(out) * shapes[0][-1]
        result.append(int(n))
    return result


def _product(values):
    result = 1
    for v in values:
        result *= max(int(v), 1)
    return result


def latency(listed_ops, target, *, core=None, mhz=None):
    """Estimated time of one inference: MACs per kernel family × cycles per MAC ÷ clock.

    Args:
        listed_ops: ``tflite.list_ops`` output of the batch-1 int8 model.
        target: a name of :data:`CLOCKS` or a ``Target`` (then give ``core`` and ``mhz``).
        core: override the target's core (a key of :data:`CYCLES_PER_MAC`).
        mhz: override the target's clock.

    Returns:
        ``{"ms", "cycles", "macs", "per_family", "source", "assumptions"}``; ``per_family`` maps
        each family to ``{"macs", "cycles_per_mac", "cycles"}``. ``ms`` and ``cycles`` are None
        where the core has no sourced rate or the target no fixed clock (``assumptions`` says
        why).

    Example:
        >>> fc = {"op": "FULLY_CONNECTED", "inputs": [{"shape": [1, 64]},
        ...       {"shape": [10, 64]}], "outputs": [{"shape": [1, 10]}]}
        >>> r = latency([fc], "nrf52840")
        >>> r["macs"], round(r["cycles"] / 640, 2) == round(CYCLES_PER_MAC["cortex-m4"][0]
        ...                                                 ["fully_connected"], 2)
        (640, True)
    """
    name = targets.get(target).name if not isinstance(target, str) else target
    known = CLOCKS.get(name)
    if known is None and (core is None or mhz is None):
        raise ValueError(f"No core or clock known for target {name!r}: pass core= and mhz= "
                         f"(cores: {', '.join(CYCLES_PER_MAC)}).")
    core = core or known[0]
    mhz = mhz if mhz is not None else known[1]
    clock_source = known[2] if known and mhz == known[1] else f"clock {mhz} MHz as given"
    if core not in CYCLES_PER_MAC:
        raise ValueError(f"Unknown core {core!r}; known: {', '.join(CYCLES_PER_MAC)}.")
    rates, rate_source = CYCLES_PER_MAC[core]
    macs = dict.fromkeys(FAMILIES, 0)
    for op, n in zip(listed_ops, op_macs(listed_ops)):
        if op["op"] in FAMILY:
            macs[FAMILY[op["op"]]] += n
    assumptions = [
        ("only convolutions, depthwise and transposed convolutions, fully connected layers and "
         "batched matrix products are timed (by their MACs); transposed convolutions take the "
         "conv rate and batched matrix products the fully-connected rate"),
        (f"cycles per MAC of the {core} are per kernel family, not per layer shape: small or "
         "odd shapes run slower, large well-aligned ones faster"),
        ("cycles per MAC carry over from the benchmark board to the target unchanged: the "
         "board's memory system (flash wait states, caches; PSRAM in ESP-NN's conv rows) is "
         "in them, the target's own is not modelled"),
    ]
    per_family = {f: {"macs": macs[f], "cycles_per_mac": None if rates is None else rates[f],
                      "cycles": None if rates is None else macs[f] * rates[f]}
                  for f in FAMILIES}
    source = f"cycles per MAC: {rate_source}; clock: {clock_source}"
    if rates is None or mhz is None:
        why = ("no sourced cycles per MAC for " + core) if rates is None else "no fixed clock"
        assumptions.insert(0, f"no estimate: {why}")
        cycles = None if rates is None else sum(p["cycles"] for p in per_family.values())
        return {"ms": None, "cycles": cycles, "macs": sum(macs.values()),
                "per_family": per_family, "source": source, "assumptions": assumptions}
    cycles = sum(p["cycles"] for p in per_family.values())
    return {"ms": cycles / (mhz * 1e3), "cycles": cycles, "macs": sum(macs.values()),
            "per_family": per_family, "source": source, "assumptions": assumptions}
