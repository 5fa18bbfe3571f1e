"""Run code that can crash natively (the TFLite converter and calibrator, the runtimes) in a
child process, so that a segfault, an abort or a hang becomes an exception for that one task
instead of the end of the user's notebook kernel or CLI run.

One long-lived worker process (a fresh interpreter: it inherits no TensorFlow threads) serves
every isolated call of the process: it pays for importing TensorFlow once, and is started
again, transparently, after a crash or a time-out. A task is a function named by its import
path (``"package.module:function"``) with picklable arguments and result; an exception it
raises reaches the caller as the same type with the same message and attributes. A crash
raises :class:`NativeCrash`, naming the signal, the stage and the remedy the caller gives.

``KERAS_DISTILL_ISOLATE=0`` runs the tasks in-process instead (faster, and what a debugger
wants; a crash then takes the process down).

Example:
    >>> from keras_distill import isolation
    >>> isolation.call("keras_distill.export.tflite:convert", saved_model_dir, "int8",
    ...                representative_data=x[:300], stage="int8 calibration")
    ... # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from multiprocessing.connection import Connection

#: Seconds one task may run before its worker is killed (``KERAS_DISTILL_TASK_TIMEOUT``).
DEFAULT_TIMEOUT = 900.0


class NativeCrash(RuntimeError):
    """A task killed its process (a signal or an abnormal exit) or ran past its time limit.

    Attributes:
        stage: what was being done (``"int8 calibration"``, ``"TFLite Micro run"``...).
        signal: the signal's name (``"SIGSEGV"``), ``"timeout"``, or ``None`` for an exit code.
        exitcode: the child's exit code (negative for a signal).
    """

    def __init__(self, message, *, stage=None, signal=None, exitcode=None):
        super().__init__(message)
        self.stage, self.signal, self.exitcode = stage, signal, exitcode

    def to_dict(self):
        return {"stage": self.stage, "signal": self.signal, "exitcode": self.exitcode}


def enabled():
    """Whether isolated calls run in the worker (``KERAS_DISTILL_ISOLATE`` is not ``0``)."""
    return os.environ.get("KERAS_DISTILL_ISOLATE", "1").strip().lower() not in (
        "0", "false", "no", "off")


def call(target, *args, stage, remedy="", timeout=None, **kwargs):
    """``target(*args, **kwargs)`` in the worker process; its result, or its exception.

    Args:
        target: ``"module:function"``, importable in a fresh interpreter.
        stage: what the task does, for the message of a crash.
        remedy: what the user can do when it crashes (appended to the message).
        timeout: seconds before the task counts as hung (default ``DEFAULT_TIMEOUT`` or
            ``KERAS_DISTILL_TASK_TIMEOUT``).

    Raises:
        NativeCrash: the task crashed its process or hung; the worker is replaced.
        Exception: whatever the task raised, with its type, message and attributes.
    """
    if not enabled():
        return _resolve(target)(*args, **kwargs)
    if timeout is None:
        timeout = float(os.environ.get("KERAS_DISTILL_TASK_TIMEOUT", DEFAULT_TIMEOUT))
    with _LOCK:
        return _worker().run(target, args, kwargs, stage=stage, remedy=remedy,
                             timeout=timeout)


def warm_up():
    """Start the worker now (it imports TensorFlow while the caller does other work)."""
    if enabled():
        with _LOCK:
            _worker().start()


def shutdown(wait=True):
    """Stop the worker (started again by the next :func:`call`).

    Args:
        wait: wait for it to exit (up to 10 s). At the exit of this process it is only told to
            stop, and ends on its own: waiting for TensorFlow's teardown there took 0.6 s of
            every CLI run.
    """
    global _WORKER
    with _LOCK:
        if _WORKER is not None:
            _WORKER.stop(wait=wait)
            _WORKER = None


# ------------------------------------------------------------------------------------------


_LOCK = threading.RLock()
_WORKER = None


def _worker():
    global _WORKER
    if _WORKER is None or _WORKER.pid != os.getpid():  # a forked parent gets its own worker
        _WORKER = _Worker()
    return _WORKER


class _Worker:
    """The child: ``python -c`` (not ``multiprocessing``'s spawn, which re-runs the user's
    ``__main__`` and fails in a script without an ``if __name__ == "__main__"`` guard),
    talking over two pipes of its own (the child's stdout and stderr stay the user's)."""

    def __init__(self):
        self.pid = os.getpid()
        self._proc = self._send = self._recv = None

    def start(self):
        if self._proc is not None and self._proc.poll() is None:
            return
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from keras_distill.isolation import _main; _main()",
                 str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, env=env)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)

    def stop(self, wait=True):
        if self._proc is None:
            return
        try:
            self._send.send(None)
            if not wait:
                self._close()
                return
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close()

    def _close(self):
        for conn in (self._send, self._recv):
            try:
                conn.close()
            except OSError:
                pass
        self._proc = self._send = self._recv = None

    def run(self, target, args, kwargs, *, stage, remedy, timeout):
        self.start()
        answered, reply = False, None
        try:
            self._send.send((target, args, kwargs))
            answered = self._recv.poll(timeout)  # also True when the child dies (EOF)
            reply = self._recv.recv() if answered else None
        except (EOFError, OSError):
            reply = None
        except BaseException:  # Ctrl-C while waiting: a reply may still come; end the worker
            self._proc.kill()
            self._proc.wait()
            self._close()
            raise
        if reply is None:
            raise self._crashed(stage, remedy, timeout, hung=not answered)
        status, value = reply
        if status == "ok":
            return value
        raise _rebuild(value)

    def _crashed(self, stage, remedy, timeout, *, hung):
        proc = self._proc
        if hung:
            proc.kill()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        self._close()
        if hung:
            what, sig = f"did not finish within {timeout:g} s (killed)", "timeout"
        elif code is not None and code < 0:
            sig = signal.Signals(-code).name
            what = f"crashed the process with {sig} ({signal.strsignal(-code)})"
        else:
            sig = None
            what = f"ended the process with exit code {code}"
        message = (f"{stage} {what}; it ran in keras-distill's worker process, so this "
                   f"process and the other artifacts are unaffected.")
        if remedy:
            message += f" {remedy}"
        return NativeCrash(message, stage=stage, signal=sig, exitcode=code)


def _resolve(target):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _main():
    """The worker's entry point: ``argv`` holds its two pipes' file descriptors."""
    _serve(Connection(int(sys.argv[1]), writable=False),
           Connection(int(sys.argv[2]), readable=False))


def _serve(inbox, outbox):
    """The worker's loop: receive ``(target, args, kwargs)``, send ``("ok", result)`` or
    ``("error", description)``; ``None`` ends it."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import tensorflow  # noqa: F401 - paid once, while the parent prepares the first task
    except ImportError:
        pass
    while True:
        try:
            task = inbox.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        target, args, kwargs = task
        try:
            reply = ("ok", _resolve(target)(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = ("error", _describe(exc))
        try:
            outbox.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            outbox.send(("error", _describe(exc)))


def _describe(exc):
    """What rebuilds ``exc`` in the parent: its type by name, args, attributes, traceback."""
    # an attribute that does not pickle stays behind
    attrs = {key: value for key, value in vars(exc).items() if _picklable(value)}
    return {"module": type(exc).__module__, "type": type(exc).__qualname__,
            "args": tuple(str(a) if not _picklable(a) else a for a in exc.args),
            "attrs": attrs, "traceback": "".join(traceback.format_exception(exc))}


def _picklable(value):
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def _rebuild(description):
    """The child's exception as the same type (a plain RuntimeError if it cannot be made)."""
    try:
        cls = getattr(importlib.import_module(description["module"]), description["type"])
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(cls)
        exc = cls.__new__(cls)
        BaseException.__init__(exc, *description["args"])
        exc.__dict__.update(description["attrs"])
    except Exception:  # noqa: BLE001
        exc = RuntimeError(f"{description['type']}: "
                           f"{description['args'][0] if description['args'] else ''}")
    exc.__notes__ = [f"Raised in keras-distill's worker process:\n{description['traceback']}"]
    return exc


atexit.register(shutdown, wait=False)
