"""The error of data that cannot be loaded."""


class DataError(ValueError):
    """Data that cannot be loaded: a missing file or key, bad shapes, no network."""

    __module__ = "keras_distill.data"  # where users import it from; tracebacks say so too
