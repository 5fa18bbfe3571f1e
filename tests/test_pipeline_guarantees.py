"""Guarantees of the jobs: one command per output folder, and no distillation from a teacher
that cannot teach."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import keras
import pytest

from keras_distill import config, locks, pipeline
from keras_distill.teacher_check import TeacherCannotTeach

HOLD = textwrap.dedent("""
    import sys, time
    from keras_distill.locks import folder_lock
    with folder_lock(sys.argv[1], "run"):
        open(sys.argv[2], "w").close()
        time.sleep(60)
""")


def test_a_second_command_on_the_same_folder_is_refused_naming_the_first(tmp_path):
    out, ready = tmp_path / "out", tmp_path / "ready"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(ready)])
    try:
        start = time.monotonic()
        while not ready.exists():
            assert time.monotonic() - start < 60, "the first command did not start"
            time.sleep(0.05)
        second = subprocess.run(
            [sys.executable, "-m", "keras_distill.cli", "run", "--out-dir", str(out),
             "--epochs", "1", "--quiet"], capture_output=True, text=True, timeout=300,
            check=False)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 1, second.stderr[-2000:]
    assert f"process {holder.pid}" in second.stderr and "in use" in second.stderr
    assert "Traceback" not in second.stderr
    assert sorted(os.listdir(out)) == [locks.LOCK_NAME]  # the second wrote nothing


def _cfg(out_dir, teacher, **extra):
    values = {"epochs": "2", "teacher.model": str(teacher), "teacher.epochs": "0",
              "formats": "tflite", "quantization": "float32", "out_dir": str(out_dir),
              "quiet": True, **extra}
    return config.load(None, values)


@pytest.fixture
def untrained_teacher(tmp_path):
    from keras_distill.presets import teacher_cnn

    keras.utils.set_random_seed(0)
    path = tmp_path / "untrained.keras"
    teacher_cnn((8, 8, 1), 10).save(path)
    return path


def test_a_teacher_at_chance_level_stops_the_run_before_any_student_trains(
        tmp_path, untrained_teacher):
    out = tmp_path / "run"
    with pytest.raises(TeacherCannotTeach, match=r"validation accuracy 0\.\d+, below 1\.5× "
                                                 r"chance \(0\.1500\).*--teacher-allow-weak"):
        pipeline.run(_cfg(out, untrained_teacher), log=lambda _m: None)
    assert not any(name.startswith("student") for name in os.listdir(out))
    assert not (out / locks.LOCK_NAME).exists()  # released


@pytest.mark.slow
def test_allow_weak_distills_anyway_and_says_so(tmp_path, untrained_teacher):
    lines = []
    result = pipeline.run(_cfg(tmp_path / "run", untrained_teacher, **{
        "teacher.allow_weak": True}), log=lines.append)
    assert result.distilled is not None
    assert any("cannot teach" in line and "Distilling anyway" in line for line in lines)
