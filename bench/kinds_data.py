"""Generated, seeded data sets for the benchmark sections of the output kinds without a bundled
set: a multi-label set (``make_multilabel``) and a sequence-tagging set (``make_tagging``).

Both are pure NumPy, need no network, and return ``keras_distill.data.Splits`` (60% train,
20% validation, 20% test), so the benchmark code treats them like the bundled sets.

Example:
    >>> data = make_multilabel(seed=0)
    >>> data.x_train.shape[1:], data.y_train.shape[1:], data.task
    ((12,), (6,), 'multilabel')
"""

from __future__ import annotations

import numpy as np

from keras_distill.data import Splits, split, standardize


def make_multilabel(*, samples=4000, features=12, labels=6, components=4, noise=0.1,
                    seed=0) -> Splits:
    """Inputs from a Gaussian mixture, ``labels`` yes/no labels that are nonlinear functions
    of the inputs, each label flipped with probability ``noise``.

    Inputs: a mixture of ``components`` Gaussians in ``features`` dimensions (means drawn
    from N(0, 1.5²), unit covariance), standardized on the training split. Label ``j`` is
    ``sin(2·a_j·x) + (b_j·x)(c_j·x) > q_j``, with ``a_j, b_j, c_j`` random unit directions and
    ``q_j`` the label's quantile at a base rate drawn from [0.25, 0.6]; then each label of each
    sample is flipped with probability ``noise`` (the test labels too: the best possible
    per-label accuracy is about ``1 − noise``).

    Returns:
        ``Splits`` with ``task="multilabel"``; ``y`` float32 ``(N, labels)`` of 0 and 1.
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.5, (components, features))
    which = rng.integers(0, components, samples)
    x = means[which] + rng.normal(0.0, 1.0, (samples, features))
    a, b, c = (_unit_rows(rng, labels, features) for _ in range(3))
    score = np.sin(2.0 * x @ a.T) + (x @ b.T) * (x @ c.T)
    rates = rng.uniform(0.25, 0.6, labels)
    thresholds = np.array([np.quantile(score[:, j], 1.0 - rates[j]) for j in range(labels)])
    y = (score > thresholds).astype("float32")
    flip = rng.random(y.shape) < noise
    y = np.where(flip, 1.0 - y, y).astype("float32")
    x_train, y_train, x_val, y_val, x_test, y_test = split(
        x, y, validation_fraction=0.2, test_fraction=0.2, seed=seed, stratify=False)
    (x_train, x_val, x_test), _, _ = standardize(x_train, x_val, x_test)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes=labels,
                  class_names=[f"label {j}" for j in range(labels)],
                  name=f"generated multilabel (noise {noise:.0%})", task="multilabel")


def make_tagging(*, sequences=3000, steps=24, min_length=8, vocabulary=16, tags=6,
                 window=2, noise=0.1, seed=0) -> Splits:
    """Token sequences of variable length, one tag per token that depends on the token's
    neighbours (``window`` on each side); padded positions have label −1.

    Inputs are one-hot tokens ``(N, steps, vocabulary)``, all zeros at padded positions.
    Lengths are uniform in ``[min_length, steps]``. The tag at position ``i`` is the argmax
    over tags of ``Σ_{o=−window..window} W_o[t_{i+o}] + P[t_{i−1}, t_{i+1}]`` (random
    tables; tokens outside the sequence contribute 0): an additive part over the window and
    an interaction of the two neighbours, which a linear tagger cannot represent. Then
    ``noise`` of the valid positions get a uniformly random tag (test labels too).

    Returns:
        ``Splits`` with ``task="multiclass"`` and labels ``(N, steps)`` int32, −1 = padding.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, steps + 1, sequences)
    tokens = rng.integers(0, vocabulary, (sequences, steps))
    valid = np.arange(steps)[None, :] < lengths[:, None]
    # Token index `vocabulary` is "outside the sequence": zero rows in every table.
    tokens = np.where(valid, tokens, vocabulary)
    tables = rng.normal(0.0, 1.0, (2 * window + 1, vocabulary + 1, tags))
    tables[:, vocabulary] = 0.0
    pairs = rng.normal(0.0, 1.5, (vocabulary + 1, vocabulary + 1, tags))
    pairs[vocabulary, :] = pairs[:, vocabulary] = 0.0
    padded = np.pad(tokens, ((0, 0), (window, window)), constant_values=vocabulary)
    score = np.zeros((sequences, steps, tags))
    for k, offset in enumerate(range(-window, window + 1)):
        score += tables[k][padded[:, window + offset: window + offset + steps]]
    score += pairs[padded[:, window - 1: window - 1 + steps],
                   padded[:, window + 1: window + 1 + steps]]
    y = score.argmax(-1)
    noisy = rng.random(y.shape) < noise
    y = np.where(noisy, rng.integers(0, tags, y.shape), y)
    y = np.where(valid, y, -1).astype("int32")
    x = np.eye(vocabulary + 1, vocabulary, dtype="float32")[tokens]  # "outside" -> zeros
    parts = split(x, y, validation_fraction=0.2, test_fraction=0.2, seed=seed, stratify=False)
    return Splits(*parts, num_classes=tags, class_names=[f"tag {j}" for j in range(tags)],
                  name=f"generated tagging (steps {steps}, noise {noise:.0%})",
                  task="multiclass")


def _unit_rows(rng, rows, columns):
    m = rng.normal(0.0, 1.0, (rows, columns))
    return m / np.linalg.norm(m, axis=1, keepdims=True)
