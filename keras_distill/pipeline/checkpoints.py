"""Interrupted runs: what ``keras-distill run --resume`` continues.

``<out_dir>/.backup`` holds the configuration of the run (``config.toml``, ``state.json``), the
stages it finished (their ``.keras`` files, in ``state.json``) and, for the fit in progress,
its training state (``keras_distill.pipeline.backup.EpochBackup``), saved at the end of every
epoch. A resumed run reuses the finished models and continues the interrupted fit after its
last completed epoch.
``.backup`` is the one folder a run creates and removes: it goes once the reports are written.
"""

from __future__ import annotations

import json
import os
import shutil

from keras_distill import io

#: Hidden folder of an unfinished run (what ``--resume`` continues); removed at the end.
BACKUP_DIR = ".backup"
STATE_FILE = "state.json"
CONFIG = "config.toml"


class Checkpoints:
    """``<out_dir>/.backup`` of one run.

    Args:
        out_dir: the run's output folder.
        cfg: the configuration; with ``resume``, it must match the interrupted run's.
        resume: continue the interrupted run; otherwise a stale folder is cleared.
        log: called with the line that says what is reused.
        enabled: False for jobs that are not resumable (nothing is written).
    """

    def __init__(self, out_dir, cfg=None, *, resume=False, log=print, enabled=True):
        self.out_dir = out_dir
        self.root = os.path.join(out_dir, BACKUP_DIR)
        self.enabled = enabled
        self.done = {}
        if not enabled:
            return
        fingerprint = _fingerprint(cfg)
        if resume:
            self.done = self._interrupted_state(fingerprint)
            finished = [s for s, f in self.done.items()
                        if os.path.isfile(os.path.join(out_dir, f))]
            log(f"Resuming the interrupted run in {out_dir}: "
                + (f"reusing {', '.join(finished)}." if finished else "no model had finished."))
        elif os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.root, exist_ok=True)
        self._state = {"config": fingerprint, "done": self.done}
        self._write()
        io.atomic_write_text(os.path.join(self.root, CONFIG), cfg.to_toml(
            title="keras-distill configuration of the interrupted run "
                  "(keras-distill run --config this-file --resume)"))

    @classmethod
    def disabled(cls, out_dir):
        """Checkpoints of a job that does not resume: it writes nothing."""
        return cls(out_dir, enabled=False)

    def _interrupted_state(self, fingerprint):
        try:
            with open(os.path.join(self.root, STATE_FILE), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            raise ValueError(
                f"--resume: there is no interrupted run to resume in {self.out_dir} (no "
                f"{BACKUP_DIR}/{STATE_FILE}: the last run there finished, or none started). "
                "Run again without --resume.") from None
        _check_same_run(state.get("config", {}), fingerprint, self.out_dir)
        return dict(state.get("done", {}))

    def _write(self):
        io.atomic_write_text(os.path.join(self.root, STATE_FILE),
                             json.dumps(self._state, indent=2) + "\n")

    def finished(self, stage):
        """The file of a stage the interrupted run finished, or None."""
        file = self.done.get(stage)
        if file and os.path.isfile(os.path.join(self.out_dir, file)):
            return os.path.join(self.out_dir, file)
        return None

    def finish(self, stage, path):
        """Record that ``stage`` finished and its model is saved at ``path``."""
        if self.enabled:
            self.done[stage] = os.path.relpath(path, self.out_dir)
            self._write()

    def callbacks(self, stage):
        """``[EpochBackup]`` for the fit of ``stage``, saving every epoch (none when
        disabled)."""
        if not self.enabled:
            return []
        from keras_distill.pipeline.backup import EpochBackup

        return [EpochBackup(os.path.join(self.root, stage))]

    def initial_epoch(self, stage):
        """The epoch the fit of ``stage`` restarts after (0: from the start)."""
        from keras_distill.pipeline.backup import saved_epoch

        return saved_epoch(os.path.join(self.root, stage))

    def close(self):
        """The run finished: remove ``.backup``."""
        if self.enabled and os.path.exists(self.root):
            shutil.rmtree(self.root, ignore_errors=True)


def _fingerprint(cfg):
    from keras_distill.config import RESUME_FREE_KEYS

    return {k: v for k, v in cfg.flat(absolute_paths=True).items() if k not in RESUME_FREE_KEYS}


def _check_same_run(then, now, out_dir):
    diff = [k for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)]
    if not diff:
        return
    shown = "; ".join(f"{k} = {json.dumps(then.get(k))} then, {json.dumps(now.get(k))} now"
                      for k in diff[:4]) + ("; ..." if len(diff) > 4 else "")
    raise ValueError(
        f"--resume: the interrupted run in {out_dir} had another configuration ({shown}). "
        f"Resume it with the same settings (keras-distill run --config "
        f"{os.path.join(out_dir, BACKUP_DIR, CONFIG)} --resume), or run without --resume to "
        "start afresh.")
