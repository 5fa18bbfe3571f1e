"""One command per output folder at a time: a lock file holding the owner's process id.

Two ``keras-distill`` commands writing the same folder at once would interleave their files.
Each command that writes an output folder holds :func:`folder_lock` while it runs: the lock is
the file ``.keras-distill.lock`` in that folder, created atomically (``O_CREAT | O_EXCL``) with
the owner's process id, host, command and start time, and removed when the command ends. A
second command refuses with :class:`FolderLocked`, naming the first. A lock whose process is
gone (a run killed with ``kill -9``, a machine that rebooted) is stale: it is removed, and the
new command proceeds.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with folder_lock(folder, "run"):
    ...     try:
    ...         with folder_lock(folder, "export"):
    ...             pass
    ...     except FolderLocked as err:
    ...         print("refused:", "run" in str(err))
    refused: True
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket

#: The lock file's name, in the output folder.
LOCK_NAME = ".keras-distill.lock"


class FolderLocked(RuntimeError):
    """Another live command holds the output folder."""


def pid_alive(pid):
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    except OSError:
        return False
    return True


def read_lock(folder):
    """The lock's record (``pid``, ``host``, ``command``, ``started``), or None when there is
    none; a lock file that cannot be read gives ``{}``."""
    path = os.path.join(os.fspath(folder), LOCK_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _stale(record):
    """A lock whose owner is gone: another process on this host that no longer runs, or a
    record that cannot be read. A lock from another host is never taken as stale (its process
    cannot be checked from here)."""
    if not record:
        return True
    pid = record.get("pid")
    if not isinstance(pid, int):
        return True
    if record.get("host") != socket.gethostname():
        return False
    return pid != os.getpid() and not pid_alive(pid)


@contextlib.contextmanager
def folder_lock(folder, command):
    """Hold ``folder`` for ``command`` while the ``with`` block runs.

    Args:
        folder: the output folder (it must exist).
        command: what holds it, for the message another command gets (e.g. ``"run"``).

    Raises:
        FolderLocked: a live command holds the folder; the message names its process id,
            command, host and start time, and the way out.
    """
    folder = os.fspath(folder)
    path = os.path.join(folder, LOCK_NAME)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(folder)
            if holder is None:
                continue  # released meanwhile: try again
            if _stale(holder):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            raise FolderLocked(_message(folder, holder)) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        break
    else:
        raise FolderLocked(f"Could not take the lock {path!r}: other commands keep taking it. "
                           "Use another output folder (--out-dir).")
    try:
        yield record
    finally:
        if read_lock(folder) == record:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _message(folder, holder):
    return (f"The output folder {folder!r} is in use by another keras-distill command "
            f"({holder.get('command', '?')!r}, process {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, started {holder.get('started', '?')}). Wait for it to "
            "finish, or write to another folder (--out-dir). If that process is gone, delete "
            f"{os.path.join(folder, LOCK_NAME)!r}.")
