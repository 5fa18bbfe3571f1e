"""A known upstream limit, recorded: ``fit`` under ``MultiWorkerMirroredStrategy`` (two workers).

Keras 3's ``model.fit`` fails under ``tf.distribute.MultiWorkerMirroredStrategy`` inside its own
data handling ("Attempt to convert a value (PerReplica:...)", keras-team/keras#20585), and so
does the Distiller's, which is a ``keras.Model``. ``MirroredStrategy`` (one machine, several
devices) works: ``tests/test_teachers.py::test_mirrored_strategy_matches_one_device``.

The test starts two workers on localhost, each running a plain Keras ``fit`` and a Distiller
``fit`` for one epoch, and reads what each case did. The known failure is an xfail (the limit,
recorded); success on both workers is an XPASS in the summary (upstream fixed it: update the
README's "Multiple devices"), never a failure; any other error or a hang fails, with the
workers' stderr. About 7 s here (two CPU workers), so not marked slow.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

TIMEOUT_S = 120
MARKER = "MULTIWORKER_OUTCOME "
#: What keras-team/keras#20585 looks like: Keras's data handling meets the strategy's values.
KNOWN_SIGNATURES = ("PerReplica", "Attempt to convert a value")
CASES = ("keras_fit", "distiller_fit")

WORKER = textwrap.dedent('''
    import json, os, sys
    ports, index = [int(p) for p in sys.argv[1].split(",")], int(sys.argv[2])
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in ports]},
        "task": {"type": "worker", "index": index}})
    import numpy as np
    import tensorflow as tf
    import keras

    def outcome(fn):
        try:
            fn()
            return {"ok": True}
        except Exception as err:  # noqa: BLE001 - the outcome is the report
            lines = str(err).strip().splitlines()
            return {"ok": False, "type": type(err).__name__,
                    "message": lines[0] if lines else "", "last": lines[-1] if lines else ""}

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64).astype("int32")

    def dense(units, name):
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Dense(units)(hidden), name=name)

    def keras_fit():
        with strategy.scope():
            model = dense(3, "plain")
            model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)

    def distiller_fit():
        from keras_distill import Distiller
        with strategy.scope():
            distiller = Distiller(dense(3, "teacher"), dense(3, "student"))
            distiller.compile(keras.optimizers.SGD(0.1))
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)

    result = {"worker": index, "replicas": strategy.num_replicas_in_sync,
              "keras_fit": outcome(keras_fit), "distiller_fit": outcome(distiller_fit)}
    print("MULTIWORKER_OUTCOME " + json.dumps(result), flush=True)
''')


def _free_ports(n):
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_workers(script, tmp_path):
    """Start both workers; return (hung, [(returncode, stdout, stderr)] per worker). After
    TIMEOUT_S both are killed and hung is True."""
    ports = ",".join(str(p) for p in _free_ports(2))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "KERAS_BACKEND": "tensorflow"}
    env.pop("TF_CONFIG", None)
    procs, logs = [], []
    for index in range(2):
        out = open(tmp_path / f"worker{index}.out", "w+")  # noqa: SIM115 - closed below
        err = open(tmp_path / f"worker{index}.err", "w+")  # noqa: SIM115 - closed below
        logs.append((out, err))
        procs.append(subprocess.Popen([sys.executable, str(script), ports, str(index)],
                                      stdout=out, stderr=err, env=env, text=True))
    deadline, hung = time.monotonic() + TIMEOUT_S, False
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for proc, (out, err) in zip(procs, logs):
        out.seek(0)
        err.seek(0)
        results.append((proc.returncode, out.read(), err.read()))
        out.close()
        err.close()
    return hung, results


def _tail(results, chars=3000):
    return "\n".join(f"--- worker {i} (exit {code}) stderr tail ---\n{err[-chars:]}"
                     for i, (code, _, err) in enumerate(results))


def _outcome(stdout):
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    return None


def _known(case):
    if case["ok"]:
        return False
    text = case["message"] + " " + case["last"]
    return any(s in text for s in KNOWN_SIGNATURES)


def _line(name, case):
    return f"{name}: ok" if case["ok"] else \
        f"{name}: {case['type']}: {case['message']} ... {case['last']}"


# Only the imperative pytest.xfail below is an expected failure (raises=): a hang or another
# error fails the test, and success is reported as XPASS, never as a failure (strict=False).
@pytest.mark.xfail(strict=False, raises=pytest.xfail.Exception,
                   reason="known limit keras-team/keras#20585: Keras 3 fit under "
                   "MultiWorkerMirroredStrategy fails in its data handling (PerReplica). "
                   "XPASS = upstream fixed: MultiWorkerMirroredStrategy fit works now; update "
                   "README 'Multiple devices'")
def test_multiworker_fit_known_limit(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    hung, results = _run_workers(script, tmp_path)
    if hung:
        pytest.fail(f"the two workers did not finish within {TIMEOUT_S} s (both killed)\n"
                    + _tail(results), pytrace=False)
    outcomes = [_outcome(out) for _, out, _ in results]
    if any(o is None for o in outcomes) or any(code != 0 for code, _, _ in results):
        pytest.fail("a worker crashed before reporting its outcome\n" + _tail(results),
                    pytrace=False)
    report = "\n".join(f"worker {o['worker']} ({o['replicas']} replicas) " + _line(n, o[n])
                       for o in outcomes for n in CASES)
    plain = [o["keras_fit"] for o in outcomes]
    distilled = [o["distiller_fit"] for o in outcomes]
    if all(c["ok"] for c in plain + distilled):
        assert all(o["replicas"] == 2 for o in outcomes), report
        warnings.warn("upstream fixed keras-team/keras#20585: MultiWorkerMirroredStrategy fit "
                      "works now (plain Keras and Distiller, two workers); update README "
                      "'Multiple devices' and this test", UserWarning, stacklevel=1)
        return  # reported as XPASS
    if all(_known(c) for c in plain) and all(c["ok"] or _known(c) for c in distilled):
        pytest.xfail("known limit keras-team/keras#20585 (MultiWorkerMirroredStrategy): "
                     + _line("keras_fit", plain[0]))
    pytest.fail("neither success nor the known keras-team/keras#20585 failure (a plain Keras "
                "fit that works while the Distiller's fails is ours to fix)\n" + report + "\n"
                + _tail(results), pytrace=False)
