"""The Distiller's view of each output: its kind, its losses, its labels, masks and means.

One :class:`Head` per output of the student. The Distiller computes every loss term per
output (and per position, for outputs with steps) and reduces it here:

- a flat output ``(batch, units)`` averages over the batch; an integer label of −1 marks an
  unlabeled sample, left out of the label loss but still distilled;
- an output with positions ``(batch, steps, units)`` averages over its valid positions;
  a label of −1, or a ``sample_weight`` of 0 at that position (the Keras convention for
  padding), marks a padded position, left out of every term.

Example:
    >>> import numpy as np
    >>> from keras_distill.outputs import Output
    >>> head = Head(0, Output("tags", "multiclass", 4, positions=1), [])
    >>> y = np.array([[1, 2, -1]])
    >>> label_w, distill_w = head.weights(y, None)
    >>> np.asarray(distill_w).tolist()
    [[1.0, 1.0, 0.0]]
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from keras_distill import losses as losses_lib
from keras_distill import outputs as outputs_lib
from keras_distill import teachers as teachers_lib


@dataclasses.dataclass
class Head:
    """One output of the Distiller.

    Attributes:
        index: the output's place in ``keras.tree.flatten`` order.
        output: its :class:`keras_distill.outputs.Output` (name, kind, units, positions).
        terms: ``[(loss, weight, term name)]``, its distillation losses.
        label_loss: the student's loss on this output's labels (None: the kind's default).
    """

    index: int
    output: outputs_lib.Output
    terms: list
    label_loss: object = None

    @property
    def name(self):
        return self.output.name

    def shaped_labels(self, y, logits):
        """Labels in the form the losses take: binary, multi-label and regression labels of
        one value per position get the output's last axis; class indices stay indices."""
        if y is None:
            return None
        if self.output.kind == outputs_lib.MULTICLASS:
            if len(y.shape) == len(logits.shape) and y.shape[-1] == 1:
                return ops.squeeze(y, -1)
            return y
        y = ops.cast(y, "float32")
        if len(y.shape) == len(logits.shape) - 1:
            y = ops.expand_dims(y, -1)
        return y

    def weights(self, y, sample_weight):
        """``(label weights, distillation weights)``, one per position (None: all 1)."""
        valid = None
        if y is not None and "int" in str(y.dtype) and self.output.is_classification:
            per_position = y if len(y.shape) == 1 + self.output.positions else y[..., 0]
            valid = ops.cast(per_position >= 0, "float32")
        sw = None
        if sample_weight is not None:
            sw = ops.cast(sample_weight, "float32")
            target_rank = 1 + self.output.positions
            while len(sw.shape) > target_rank:
                sw = ops.squeeze(sw, -1)
            while len(sw.shape) < target_rank:  # one weight per sample, for every position
                sw = ops.expand_dims(sw, -1)
        label_w = _times(valid, sw)
        # Flat outputs: an unlabeled sample is still distilled. With positions, -1 is padding.
        distill_w = _times(valid, sw) if self.output.positions else sw
        return label_w, distill_w

    def mean(self, values, weights, batch):
        """The mean of per-position ``values``: over the batch for a flat output, else over
        the positions whose weight is not zero."""
        values = ops.cast(values, "float32")
        if weights is not None:
            values = values * ops.broadcast_to(weights, ops.shape(values))
        total = ops.sum(values)
        if not self.output.positions:
            return total / batch
        if weights is None:
            count = ops.cast(ops.size(values), "float32")
        else:
            count = ops.sum(ops.cast(ops.broadcast_to(weights, ops.shape(values)) > 0,
                                     "float32"))
        return total / ops.maximum(count, 1.0)

    def label_values(self, y, logits):
        """The student's loss on the labels at every position (not reduced)."""
        fn = self.label_loss or default_label_loss(self.output, y, logits)
        if isinstance(fn, keras.losses.Loss):
            return fn.call(y, logits)
        return fn(y, logits)


def _times(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a * b


def default_label_loss(output, y, logits):
    """The kind's label loss, from logits: cross-entropy (sparse for class indices,
    categorical for one-hot rows), binary cross-entropy per label, or squared error."""
    if output.kind == outputs_lib.MULTICLASS:
        if y is not None and len(y.shape) == len(logits.shape) and y.shape[-1] == output.units:
            return keras.losses.CategoricalCrossentropy(from_logits=True)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if output.kind in (outputs_lib.BINARY, outputs_lib.MULTILABEL):
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


def parse_losses(losses, loss_weights, names, temperature):
    """The Distiller's ``losses`` and ``loss_weights`` as one list of ``[index, loss, weight]``.

    ``losses`` is None (each output's default), a loss or a list of losses (one output), or a
    dict by output name of a loss or a list; ``loss_weights`` follows the same form (a number
    per loss; in a dict, a number for one loss or a list for several). ``index`` is the
    output's place, or None for a loss on features (``FeatureHint``); ``loss`` is None where
    the output's default is meant (see :func:`complete`).
    """
    several = len(names) > 1
    if losses is not None and not isinstance(losses, (list, tuple, dict)):
        losses = [losses]
    if isinstance(losses, (list, tuple)) and not losses:
        raise ValueError("losses is empty; pass at least one distillation loss or None.")
    per_output = outputs_lib.per_output(losses, names, "losses", lists=False)
    if isinstance(loss_weights, dict) or several:
        weights = outputs_lib.per_output(loss_weights, names, "loss_weights", lists=False)
    else:
        weights = [loss_weights]
    items = []
    for index, (given, weight) in enumerate(zip(per_output, weights)):
        given = [None] if given is None else _as_list(given)
        if not given:
            raise ValueError(f"losses for output {names[index]!r} is empty; pass at least one "
                             "distillation loss, or None for the default.")
        weight_list = _checked_weights(weight, len(given), names[index], several)
        for loss, w in zip(given, weight_list):
            if loss is not None:
                loss = losses_lib.get(loss).with_temperature(temperature)
            items.append([None if loss is not None and loss.uses_features else index, loss, w])
    return items


def complete(items, outputs, temperature):
    """``items`` with every default filled in for its output's kind, each loss checked
    against its kind (``keras_distill.losses.check_kind``)."""
    done = []
    for index, loss, weight in items:
        if index is not None:
            output = outputs[index]
            if loss is None:
                loss = losses_lib.default_for(output.kind).with_temperature(temperature)
            losses_lib.check_kind(loss, output.kind, output.name)
        done.append([index, loss, weight])
    return done


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _checked_weights(weights, count, name, several):
    where = f" for output {name!r}" if several else ""
    if weights is None:
        weights = [1.0] * count
    elif isinstance(weights, (int, float)) and not isinstance(weights, bool) and count == 1:
        weights = [weights]
    if not isinstance(weights, (list, tuple)) or len(weights) != count:
        raise ValueError(
            f"loss_weights must be a list with one weight per loss{where}: {count} loss(es) "
            f"but loss_weights={weights!r}.")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ValueError(f"loss_weights must be numbers >= 0; got {weights!r}.")
    return [float(w) for w in weights]


def clean_labels(head, y, logits):
    """Labels as the losses take them, with the marks of unlabeled samples (−1) set to 0
    (their weight is 0)."""
    if "int" in str(y.dtype) and head.output.is_classification:
        y = ops.maximum(y, 0)
    return head.shaped_labels(y, logits)


def label_sample(x, y):
    """Labels to detect output kinds from: ``y`` (NumPy), or a tf.data dataset's first batch."""
    import numpy as np
    import tensorflow as tf

    if y is not None:
        labels, _ = teachers_lib.split_targets(y)
        if labels is None:
            return None
        return keras.tree.map_structure(lambda a: a if isinstance(a, np.ndarray) else (
            np.asarray(a) if hasattr(a, "__array__") else a), labels)
    if isinstance(x, tf.data.Dataset):
        for batch in x.take(1):
            _, labels, _ = keras.utils.unpack_x_y_sample_weight(batch)
            labels, _ = teachers_lib.split_targets(labels)
            return None if labels is None else keras.tree.map_structure(np.asarray, labels)
    return None


def metrics_for_kinds(metrics, heads):
    """Compiled metrics with ``"accuracy"`` and ``"auc"`` of binary and multi-label outputs
    read from logits (Keras would threshold logits at 0.5, or take them for probabilities)."""
    if metrics is None:
        return None
    names = [h.name for h in heads]
    if len(heads) > 1 and not isinstance(metrics, dict):
        metrics = {name: metrics for name in names}
    if isinstance(metrics, dict):
        per = outputs_lib.per_output(metrics, names, "metrics")
        return {h.name: metric_list(m, h) for h, m in zip(heads, per) if m is not None}
    return metric_list(metrics, heads[0])


def metric_list(metrics, head):
    items = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    if head.output.kind not in (outputs_lib.BINARY, outputs_lib.MULTILABEL):
        return list(items)
    converted = []
    for m in items:
        if m in ("accuracy", "acc", "binary_accuracy"):
            m = keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")
        elif m == "auc":
            m = keras.metrics.AUC(from_logits=True, name="auc")
        converted.append(m)
    return converted


def losses_config(items, names, declared):
    """``losses`` and ``loss_weights`` for ``get_config``, as given: a list (one output) or
    dicts by output name; None for the kinds' defaults."""
    if not declared:
        return {"losses": None, "loss_weights": None}
    serialize = keras.saving.serialize_keras_object
    if len(names) == 1:
        return {"losses": [serialize(loss) for _, loss, _ in items],
                "loss_weights": [w for _, _, w in items]}
    losses, weights = {}, {}
    for index, loss, w in items:
        name = names[index or 0]  # a loss on features may sit with any output
        losses.setdefault(name, []).append(serialize(loss))
        weights.setdefault(name, []).append(w)
    return {"losses": losses, "loss_weights": weights}


def metric_inputs(heads, labels, y_pred, sample_weight):
    """``(labels, predictions, sample_weight)`` for the compiled metrics: unlabeled rows of a
    flat output dropped (plain metrics ignore sample weights), padded positions weighted 0."""
    import tensorflow as tf

    if len(heads) != 1:
        return labels, y_pred, sample_weight
    label_w, _ = heads[0].weights(labels, sample_weight)
    if label_w is None:
        return labels, y_pred, sample_weight
    if not heads[0].output.positions and sample_weight is None:
        keep = tf.reshape(label_w > 0, (-1,))
        return tf.boolean_mask(labels, keep), tf.boolean_mask(y_pred, keep), None
    if "int" in str(labels.dtype):
        labels = tf.maximum(labels, 0)
    return labels, y_pred, label_w


def augmented(augment, mixup, x):
    """``(x, mix)``: a training batch augmented (``augment``, a layer or function) and mixed
    up (``mixup``: the Beta(mixup, mixup) weight), the same inputs for teacher and student;
    ``mix`` is ``(lam, perm)`` or None."""
    import tensorflow as tf

    if augment is not None:
        try:
            x = augment(x, training=True)
        except TypeError:
            x = augment(x)
    mix = None
    if mixup > 0:
        batch = tf.shape(x)[0]
        a = tf.random.gamma((), mixup)
        b = tf.random.gamma((), mixup)
        lam = a / (a + b)
        perm = tf.random.shuffle(tf.range(batch))
        x = lam * x + (1.0 - lam) * tf.gather(x, perm)
        mix = (lam, perm)
    return x, mix
