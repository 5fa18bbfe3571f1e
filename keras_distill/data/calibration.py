"""Samples of the training inputs for int8 calibration."""

from __future__ import annotations

import numpy as np


def representative_samples(x, n=200, *, seed=0) -> np.ndarray:
    """A random subset of ``x`` (at most ``n`` rows) for int8 calibration."""
    from keras_distill.data.lazy import is_lazy

    x = x if is_lazy(x) else np.asarray(x)  # lazy: only the chosen rows are read
    if len(x) == 0:
        raise ValueError("representative_samples: x is empty; pass some training inputs.")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[: min(n, len(x))]
    return x[np.sort(idx)]
