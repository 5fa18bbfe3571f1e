"""The top-k representation of a teacher's class distribution (as in FKD, Shen & Xing 2022).

For each sample, at the stored temperature ``T``, the store keeps:

- ``top_logp``: the log-probabilities ``log p_i`` of the ``k`` most likely classes,
  ``p = softmax(z / T)``, in float16;
- ``top_index``: their class indices (uint8 up to 256 classes, uint16 up to 65,536, else
  int32);
- ``rest_logp``: the log of the probability left to the other ``C - k`` classes, in float32.

Decoded (:func:`decode`), the representation is the teacher's distribution with the rest spread
evenly over the other classes: ``p̂_i = p_i`` for the top ``k`` and ``p̂_j = p_rest / (C - k)``
for the others. :func:`decode` returns logits ``ẑ`` with ``softmax(ẑ / T) = p̂``, so every
distillation loss runs on them unchanged. The loss on the representation is therefore the
loss against ``p̂``: **exact at the stored temperature** (the top ``k`` probabilities and the
rest's total are the teacher's, up to float16 rounding of ``log p_i``); the unknown is only
how the rest's mass is shared among its classes. At another temperature ``T'``, ``softmax(ẑ /
T')`` is not the teacher's ``softmax(z / T')`` restricted the same way (the rest's logits are
taken as equal); ``bench/distill_quality.py`` measures that error.

Logits and probabilities alike: the form of the teacher's outputs (``"logits"`` or
``"probabilities"``) is kept, and :func:`decode` returns that form.
"""

from __future__ import annotations

import numpy as np

#: Log-probabilities are floored here so decoded logits stay finite.
LOG_FLOOR = -80.0


def index_dtype(classes):
    """The smallest unsigned dtype holding class indices ``0..classes-1``."""
    return np.dtype("uint8") if classes <= 256 else np.dtype(
        "uint16") if classes <= 65536 else np.dtype("int32")


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def to_logits(outputs, form):
    """Outputs of ``form`` (``"logits"`` or ``"probabilities"``) as float64 logits."""
    outputs = np.asarray(outputs, np.float64)
    return np.log(np.maximum(outputs, 1e-38)) if form == "probabilities" else outputs


def encode(outputs, k, temperature=1.0, form="logits"):
    """``{"top_logp", "top_index", "rest_logp"}`` of class outputs ``(N, C)``.

    Example:
        >>> enc = encode(np.log([[0.6, 0.3, 0.05, 0.05]]), k=2)
        >>> enc["top_index"].tolist(), np.exp(enc["rest_logp"].astype(float)).round(3).tolist()
        ([[0, 1]], [0.1])
    """
    z = to_logits(outputs, form)
    if z.ndim != 2:
        raise ValueError(f"top-k outputs must be (samples, classes); got shape {z.shape}.")
    classes = z.shape[1]
    if not 0 < k < classes:
        raise ValueError(f"top_k must be in [1, {classes - 1}] for {classes} classes; got {k}. "
                         "Store every class with top_k=None.")
    logp = _log_softmax(z / temperature)
    top = np.argpartition(-logp, k - 1, axis=1)[:, :k]
    top_logp = np.take_along_axis(logp, top, axis=1)
    order = np.argsort(-top_logp, axis=1, kind="stable")
    top, top_logp = np.take_along_axis(top, order, 1), np.take_along_axis(top_logp, order, 1)
    others = logp.copy()
    np.put_along_axis(others, top, -np.inf, axis=1)
    peak = others.max(axis=1)
    rest_logp = peak + np.log(np.exp(others - peak[:, None]).sum(axis=1))
    return {"top_logp": np.maximum(top_logp, LOG_FLOOR).astype(np.float16),
            "top_index": top.astype(index_dtype(classes)),
            "rest_logp": np.maximum(rest_logp, LOG_FLOOR).astype(np.float32)}


def decode(fields, classes, temperature=1.0, form="logits"):
    """Outputs ``(N, classes)`` of ``form`` from :func:`encode`'s fields: logits ``ẑ`` with
    ``softmax(ẑ / T) = p̂`` (see the module docstring), or ``softmax(ẑ)`` for probabilities.

    Example:
        >>> p = np.array([[0.6, 0.3, 0.05, 0.05]])
        >>> decoded = decode(encode(np.log(p), k=2), 4)
        >>> np.exp(decoded - np.log(np.exp(decoded).sum())).astype(float).round(3).tolist()
        [[0.6, 0.3, 0.05, 0.05]]
    """
    top_logp = np.asarray(fields["top_logp"], np.float32)
    top = np.asarray(fields["top_index"]).astype(np.int64)
    rest_logp = np.asarray(fields["rest_logp"], np.float32)
    k = top_logp.shape[1]
    tail = rest_logp - np.float32(np.log(classes - k))
    z = np.repeat(tail[:, None], classes, axis=1)
    np.put_along_axis(z, top, top_logp, axis=1)
    z *= np.float32(temperature)
    if form == "probabilities":
        z = np.exp(_log_softmax(z.astype(np.float64))).astype(np.float32)
    return z.astype(np.float32)


def restricted(outputs, k, temperature=1.0, form="logits"):
    """The reference: the teacher's distribution at ``temperature`` from its full outputs,
    its top ``k`` classes kept and the rest's mass spread evenly over the other classes, in
    float64 (what :func:`decode` of :func:`encode` represents, without float16 rounding).

    Example:
        >>> restricted(np.log([[0.6, 0.3, 0.06, 0.04]]), 2).round(3).tolist()
        [[0.6, 0.3, 0.05, 0.05]]
    """
    p = np.exp(_log_softmax(to_logits(outputs, form) / temperature))
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    keep = np.zeros_like(p, bool)
    np.put_along_axis(keep, top, True, axis=1)
    rest = np.where(keep, 0.0, p).sum(axis=1, keepdims=True) / (p.shape[1] - k)
    return np.where(keep, p, rest)


def nbytes_per_sample(classes, k=None):
    """Bytes one sample's outputs take: ``4 * classes`` in float32, or top-k's
    ``2k + k * index bytes + 4``.

    Example:
        >>> nbytes_per_sample(1000), nbytes_per_sample(1000, 10)
        (4000, 44)
    """
    if k is None:
        return 4 * classes
    return 2 * k + k * index_dtype(classes).itemsize + 4
