"""The micro artifact where tflite-micro is not installed (it has wheels for Linux x86-64 only).

The package imports, and ``export(..., formats=("micro",))`` writes the ``.cc`` / ``.h`` with a
tensor arena estimated from the model's tensors, says so in the header, the manifest and the
report, and leaves the artifact unverified (not passed, not failed). The absence is simulated in
a child process (``sys.modules["tflite_micro"] = None`` before ``keras_distill`` is imported, so
that ``import tflite_micro`` raises ``ImportError`` as on macOS); the estimate it wrote is then
compared here with the arena TensorFlow Lite Micro measures for the same bytes.

Measured on this machine (``estimate_bytes`` / TFLM's measured minimum, ``min_bytes``):
digits ``student_cnn`` (width 8) 5000 / 2784 B (1.80x), the dense model 4580 / 2896 B (1.58x),
the depthwise one 14350 / 9560 B (1.50x); 1.31x to 2.20x on 13 models in all (see
``keras_distill.verify.micro.ESTIMATE_MARGIN``). The tests assert an upper bound within 2.5x.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from keras_distill.export.steps import MICRO_UNCHECKED
from keras_distill.verify import micro

#: The estimate is at least the measured arena and at most this many times it.
MAX_RATIO = 2.5
MODELS = ("cnn", "dense", "depthwise")

_CHILD = r"""
import json, os, sys, warnings

sys.modules["tflite_micro"] = None  # as where it has no wheel: `import tflite_micro` fails
try:
    import tflite_micro  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("tflite_micro is still importable")

import keras_distill  # noqa: F401  (the package imports)
from keras_distill import export
from keras_distill.verify.micro import runtime_available

assert not runtime_available()

import keras
import numpy as np
from keras import layers

from keras_distill.data import load_digits
from keras_distill.presets import student_cnn

digits = load_digits(seed=0)
keras.utils.set_random_seed(0)


def dense():
    inputs = keras.Input(digits.input_shape, name="image")
    x = layers.Flatten()(inputs)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="dense")


def depthwise():  # larger activations: the plan, not the bookkeeping, dominates the arena
    inputs = keras.Input((32, 32, 1), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    for filters in (16, 32):
        x = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
        x = layers.Conv2D(filters, 1, activation="relu6")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="depthwise")


models = {"cnn": student_cnn(digits.input_shape, digits.num_classes, width=8),
          "dense": dense(), "depthwise": depthwise()}
summary = {}
images = np.random.default_rng(0).uniform(0, 1, (140, 32, 32, 1)).astype("float32")
for name, model in models.items():
    data = {"representative_data": digits.x_train[:100],
            "eval_data": (digits.x_test[:40], digits.y_test[:40])}
    if name == "depthwise":
        data = {"representative_data": images[:100], "eval_data": images[100:]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export(model, os.path.join(sys.argv[1], name), name="s", formats=("micro",),
                        **data)
    summary[name] = {"ok": report.ok, "failed": [a.key for a in report.failed],
                     "unverified": [a.key for a in report.unverified],
                     "path": report.path("micro"),
                     "warnings": [str(w.message) for w in caught]}
assert sys.modules.get("tflite_micro") is None, "something imported tflite_micro"
print("@@" + json.dumps(summary))
"""


@pytest.fixture(scope="module")
def without_runtime(tmp_path_factory):
    """Three exports made in a child process without tflite-micro: ``(folder, summary)``."""
    out = tmp_path_factory.mktemp("no_tflite_micro")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out)], capture_output=True,
                          text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@@"))
    return out, json.loads(line[2:])


def _artifact(out, name):
    manifest = json.loads((out / name / "manifest.json").read_text())
    (record,) = manifest["artifacts"]
    return record


def test_micro_export_writes_the_source_with_an_estimated_arena(without_runtime):
    out, summary = without_runtime
    for name in MODELS:
        folder, result = out / name, summary[name]
        assert sorted(os.listdir(folder)) == ["manifest.json", "report.md", "s_model_data.cc",
                                              "s_model_data.h"], name
        # not passed, not failed: unverified, and said why
        assert result["failed"] == [] and result["unverified"] == ["micro/int8"]
        assert result["ok"] is False and result["path"] == str(folder / "s_model_data.cc")
        assert any("written but not verified" in w and "Linux x86-64 only" in w
                   for w in result["warnings"]), result["warnings"]
        record = _artifact(out, name)
        assert record["status"] == "unverified" and record["error"] is None
        assert record["files"] == ["s_model_data.h", "s_model_data.cc"]
        assert record["metrics"] == {"verified": False, "reason": micro.RUNTIME_MISSING,
                                     "unchecked": MICRO_UNCHECKED}
        assert "Linux x86-64 only" in micro.RUNTIME_MISSING
        arena = record["details"]["arena"]
        assert arena["estimated"] is True and "min_bytes" not in arena  # nothing measured
        assert arena["reason"] == micro.RUNTIME_MISSING
        assert "not measured" in arena["host"]
        assert arena["arena_size"] % 1024 == 0
        assert arena["arena_size"] - 1024 < arena["estimate_bytes"] <= arena["arena_size"]
        assert arena["estimate_bytes"] >= (arena["planned_bytes"] + arena["bookkeeping_bytes"]
                                           ) * arena["margin"] - 1
        # what a firmware build needs is there, as with the measured arena
        details = record["details"]
        assert details["inputs"][0]["dtype"] == "int8" and details["input_dtype"] == "int8"
        assert details["micro_op_resolver"] and details["ops"]
        assert record["sha256"] and record["size_bytes"] > 0
        # the header, and the bytes read back from the .cc
        h = (folder / "s_model_data.h").read_text()
        assert f"constexpr unsigned int s_tensor_arena_size = {arena['arena_size']};" in h
        assert "ESTIMATED from the model's tensors, NOT MEASURED" in h
        assert "Linux x86-64 only" in h and "Measured with" not in h
        data, info = micro.read_c_source(folder / "s_model_data.cc")
        assert info["arena_size"] == arena["arena_size"] and len(data) == record["size_bytes"]
        import hashlib

        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        # the report: no scores, the arena marked estimated, a section saying why
        md = (folder / "report.md").read_text()
        assert f"| {arena['arena_size']} (estimated) | unverified |" in md
        assert "## Not verified" in md and "## Failures" not in md
        assert "Linux x86-64 only" in md


def test_the_estimated_source_compiles(without_runtime, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    out, _ = without_runtime
    cc = out / "cnn" / "s_model_data.cc"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", str(cc), "-o",
                    str(tmp_path / "s.o")], check=True, capture_output=True)


def test_the_estimate_is_an_upper_bound_of_the_measured_arena(without_runtime):
    """Here tflite-micro is installed: TFLM measures the same bytes the child exported."""
    if not micro.runtime_available():
        pytest.skip("tflite-micro is not installed: nothing to measure the estimate against")
    out, _ = without_runtime
    for name in MODELS:
        data, _ = micro.read_c_source(out / name / "s_model_data.cc")
        estimate = _artifact(out, name)["details"]["arena"]
        assert micro.estimate_arena(data).to_dict() == estimate  # the same in any process
        measured = micro.measure_arena(data)
        assert estimate["estimate_bytes"] >= measured.min_bytes, name
        assert estimate["arena_size"] >= measured.arena_size, name
        ratio = estimate["estimate_bytes"] / measured.min_bytes
        assert ratio <= MAX_RATIO, (name, estimate, measured)
        ok, message = micro.probe_arena(data, estimate["arena_size"])  # the estimate runs
        assert ok, message


def test_the_plan_is_tflms_head(without_runtime):
    """The greedy plan of the non-constant tensors is the arena head TFLM reports, to the
    byte, for these models (none has an op that asks for a scratch buffer)."""
    if not micro.runtime_available():
        pytest.skip("tflite-micro is not installed")
    out, _ = without_runtime
    for name in MODELS:
        data, _ = micro.read_c_source(out / name / "s_model_data.cc")
        ok, message = micro.probe_arena(data, 1 << 20, verbose=True)
        assert ok, message
        head = int(re.search(r"Arena allocation head (\d+) bytes", message).group(1))
        (graph,) = micro._read_flatbuffer(data)["subgraphs"]
        tensors = micro._tensor_buffers(graph)
        assert micro._greedy_plan(tensors) == head, name
        assert micro._greedy_plan(tensors + micro._scratch_buffers(graph)) >= head


def test_greedy_plan_by_hand():
    # a (64 B, op 0), b (512 B, ops 0-1), c (128 B, ops 1-2), d (256 B, ops 2-3): b at 0,
    # d at 0 (b is dead by then), c above b (512), a above b too (alive with b at op 0)
    buffers = [(64, 0, 0), (512, 0, 1), (128, 1, 2), (256, 2, 3)]
    assert micro._greedy_plan(buffers) == 640
    assert micro._greedy_plan([]) == 0
    # equal sizes: the last listed is placed first, as TFLM's planner does (listed first,
    # the 2048 B of ops 0-1 would sit at 3072 and the other at 5120: 7168 B). TFLM's head for
    # these four tensors of a depthwise model was 8192 B.
    assert micro._greedy_plan([(3072, 0, 0), (2048, 0, 1), (2048, 1, 2), (4096, 2, 3)]) == 8192


def test_estimate_arguments_are_checked():
    with pytest.raises(ValueError, match="granularity"):
        micro.estimate_arena(b"", granularity=0)
    with pytest.raises(ValueError, match="margin"):
        micro.estimate_arena(b"", margin=0.5)
