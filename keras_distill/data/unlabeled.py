"""Unlabeled samples mixed with labeled ones: the label :data:`UNLABELED` (-1)."""

from __future__ import annotations

import numpy as np

UNLABELED = -1


def with_unlabeled(x_labeled, y_labeled, x_unlabeled, *, shuffle=True, seed=0):
    """Labeled and unlabeled inputs in one pair of arrays, for ``Distiller.fit``.

    Unlabeled samples get the label ``-1``: the Distiller distills them from the teacher but
    leaves them out of the label loss and of the metrics.

    Args:
        x_labeled: ``(N, ...)`` inputs with labels.
        y_labeled: ``(N,)`` integer class indices.
        x_unlabeled: ``(M, ...)`` inputs without labels, same sample shape.
        shuffle: mix the two parts (recommended: every batch then holds both).
        seed: seed of the shuffle.

    Returns:
        ``(x, y)`` with ``N + M`` rows.

    Example:
        >>> import numpy as np
        >>> x, y = with_unlabeled(np.zeros((2, 3)), np.array([4, 5]), np.ones((3, 3)),
        ...                       shuffle=False)
        >>> y.tolist()
        [4, 5, -1, -1, -1]
    """
    x_labeled, x_unlabeled = np.asarray(x_labeled), np.asarray(x_unlabeled)
    y_labeled = np.asarray(y_labeled)
    if x_labeled.shape[1:] != x_unlabeled.shape[1:]:
        raise ValueError(
            f"with_unlabeled: labeled samples have shape {x_labeled.shape[1:]} but unlabeled "
            f"ones {x_unlabeled.shape[1:]}; both must have the models' input shape.")
    if y_labeled.shape != (len(x_labeled),) or not np.issubdtype(y_labeled.dtype, np.integer):
        raise ValueError(
            "with_unlabeled: y_labeled must be integer class indices of shape "
            f"({len(x_labeled)},); got {y_labeled.dtype} of shape {y_labeled.shape}.")
    if (y_labeled < 0).any():
        raise ValueError("with_unlabeled: y_labeled has negative labels; -1 marks unlabeled "
                         "samples, pass those in x_unlabeled instead.")
    x = np.concatenate([x_labeled, x_unlabeled.astype(x_labeled.dtype)])
    y = np.concatenate([y_labeled.astype("int32"),
                        np.full(len(x_unlabeled), UNLABELED, "int32")])
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(x))
        x, y = x[order], y[order]
    return x, y
