"""The error of a bad configuration."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration: unknown key, bad value or unreadable file.

    Attributes:
        key: the key at fault (dotted, e.g. ``"teacher.epochs"``), or ``None``.
        where: the file, or the flag, the value came from.
        usage: ``True`` when the mistake is on the command line (exit code 2), ``False`` when it
            is in a file (exit code 1).
    """

    __module__ = "keras_distill.config"  # where users import it from; tracebacks say so too

    def __init__(self, message, *, key=None, where=None, usage=False):
        super().__init__(message)
        self.key, self.where, self.usage = key, where, usage
