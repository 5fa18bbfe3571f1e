"""One command per output folder: real processes contend for the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from keras_distill import locks

HOLD = textwrap.dedent("""
    import sys, time
    from keras_distill.locks import folder_lock
    folder, ready = sys.argv[1], sys.argv[2]
    with folder_lock(folder, "run"):
        open(ready, "w").close()
        time.sleep(30)
""")

TRY = textwrap.dedent("""
    import sys
    from keras_distill.locks import folder_lock, FolderLocked
    try:
        with folder_lock(sys.argv[1], "export"):
            print("ACQUIRED")
    except FolderLocked as err:
        print("REFUSED", err)
""")


def _python(code, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(path, timeout=30.0):
    start = time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


def test_a_second_process_is_refused_naming_the_first_then_proceeds(tmp_path):
    ready = tmp_path / "ready"
    holder = _python(HOLD, tmp_path, ready)
    try:
        _wait_for(ready)
        record = locks.read_lock(tmp_path)
        assert record["pid"] == holder.pid and record["command"] == "run"
        second = _python(TRY, tmp_path)
        out, err = second.communicate(timeout=60)
        assert out.startswith("REFUSED"), (out, err)
        assert f"process {holder.pid}" in out and "'run'" in out and "--out-dir" in out
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (kill -9): its lock is stale, and the next command proceeds
    assert locks.read_lock(tmp_path)["pid"] == holder.pid
    third = _python(TRY, tmp_path)
    out, err = third.communicate(timeout=60)
    assert out.strip() == "ACQUIRED", (out, err)
    assert locks.read_lock(tmp_path) is None  # released on exit


def test_the_lock_is_released_when_the_command_fails(tmp_path):
    with pytest.raises(KeyError), locks.folder_lock(tmp_path, "run"):
        assert os.path.exists(tmp_path / locks.LOCK_NAME)
        raise KeyError("boom")
    assert not os.path.exists(tmp_path / locks.LOCK_NAME)


def test_a_lock_from_another_host_is_never_taken_as_stale(tmp_path):
    (tmp_path / locks.LOCK_NAME).write_text(json.dumps(
        {"pid": 1, "host": "elsewhere.example", "command": "run", "started": "then"}))
    with pytest.raises(locks.FolderLocked, match="elsewhere.example"), \
            locks.folder_lock(tmp_path, "export"):
        pass
    assert locks.read_lock(tmp_path)["host"] == "elsewhere.example"  # left alone


def test_an_unreadable_lock_file_is_stale(tmp_path):
    (tmp_path / locks.LOCK_NAME).write_text("{not json")
    with locks.folder_lock(tmp_path, "run") as record:
        assert locks.read_lock(tmp_path) == record
    assert locks.read_lock(tmp_path) is None
