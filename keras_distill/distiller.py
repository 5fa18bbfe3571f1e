"""The Distiller: a ``keras.Model`` that trains a student to imitate a teacher.

``compile``, ``fit``, ``evaluate``, ``predict`` and Keras callbacks work as with any Keras
model. ``call`` (and so ``predict``) returns the student's logits; ``distiller.student`` is the
trained student, a plain Keras model with no teacher inside.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_distill import guard
from keras_distill import heads as heads_lib
from keras_distill import hints as hints_lib
from keras_distill import losses as losses_lib
from keras_distill import outputs as outputs_lib
from keras_distill import teachers as teachers_lib
from keras_distill.backend import require_tensorflow
from keras_distill.data import check_training_arrays
from keras_distill.graph import model_shape, shapes_compatible

TEACHER_OUTPUTS = ("auto", "logits", "probabilities")


def _flat_weights(sample_weight):
    return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


def _clean(head, y, logits):
    """Labels as the losses take them, with the marks of unlabeled samples (−1) set to 0
    (their weight is 0)."""
    if "int" in str(y.dtype) and head.output.is_classification:
        y = ops.maximum(y, 0)
    return head.shaped_labels(y, logits)


def _label_sample(x, y):
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


def _metrics_for_kinds(metrics, heads):
    """Compiled metrics with ``"accuracy"`` and ``"auc"`` of binary and multi-label outputs
    read from logits (Keras would threshold logits at 0.5, or take them for probabilities)."""
    if metrics is None:
        return None
    names = [h.name for h in heads]
    if len(heads) > 1 and not isinstance(metrics, dict):
        metrics = {name: metrics for name in names}
    if isinstance(metrics, dict):
        per = outputs_lib.per_output(metrics, names, "metrics")
        return {h.name: _metric_list(m, h) for h, m in zip(heads, per) if m is not None}
    return _metric_list(metrics, heads[0])


def _metric_list(metrics, head):
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


def _keras_and_file_teacher(teacher, teacher_weights, teacher_average):
    """``(Keras teacher or None, FileTeacher or None)`` from the ``teacher`` argument."""
    if isinstance(teacher, (list, tuple)):
        teacher = teachers_lib.Ensemble(teacher, weights=teacher_weights,
                                        average=teacher_average, name="teacher_ensemble")
    elif teacher_weights is not None:
        raise ValueError("teacher_weights is for a list of teachers; got one teacher.")
    if isinstance(teacher, teachers_lib.FileTeacher):
        return None, teacher
    if teacher is not None and not isinstance(teacher, keras.layers.Layer):
        raise ValueError(
            f"teacher must be a keras.Model, a list of models, a "
            f"keras_distill.teachers.FileTeacher or None; got {type(teacher).__name__}.")
    return teacher, None


def _checked_alpha(alpha):
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}.") from None
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"alpha must be in [0, 1] (the weight of the loss on true labels; 0 = distill "
            f"only, 1 = ignore the teacher); got {alpha!r}."
        )
    return alpha


#: Output names the Distiller refuses: they are the keys of the cached-outputs carrier.
_RESERVED_OUTPUT_NAMES = (teachers_lib.LABELS_KEY, teachers_lib.TEACHER_OUTPUTS_KEY)


@keras.saving.register_keras_serializable(package="keras_distill")
class Distiller(keras.Model):
    """Knowledge distillation as a Keras model (Hinton et al., 2015).

    Each training step runs the teacher in inference mode (``training=False``, outside the
    gradient tape) and the student in training mode, and minimizes::

        alpha · student_loss(labels, student) + (1 − alpha) · Σᵢ wᵢ · lossᵢ(teacher, student)

    Only the student's weights (and the adapters of ``FeatureHint`` losses) are updated; the
    teacher's weights and BatchNormalization statistics are left bit-for-bit unchanged. When a
    batch has no labels, the step distills from the teacher alone (``Σᵢ wᵢ · lossᵢ``).

    Args:
        teacher: a Keras model that outputs logits or probabilities (it is frozen:
            ``teacher.trainable = False``); a list of models, combined by
            ``keras_distill.teachers.Ensemble``; a ``keras_distill.teachers.FileTeacher``
            (a SavedModel, ``.tflite`` or ``.onnx`` file, used through
            ``fit(..., cache_teacher=True)``); or None, when every batch carries the teacher's
            outputs (``keras_distill.teachers.cache_outputs``).
        student: a Keras model that outputs logits (no softmax or sigmoid) or, for regression,
            values, with the teacher's input and output shapes. It may have several outputs
            (a dict or list, named as the teacher's).
        temperature: softening temperature (> 0) for every loss that takes one and was not
            given its own. Default 4.0.
        alpha: weight of the student's loss on the true labels, in [0, 1]. Default 0.1.
        losses: distillation losses: ``keras_distill.losses.DistillationLoss`` instances or
            names (``"soft_target_kl"``, ``"bernoulli_kl"``, ``"logit_mse"``, ``"huber"``,
            ...), one or a list; for a model with several outputs, a dict by output name.
            Default: the output kind's loss (``keras_distill.losses.default_for``): soft-target
            KL for multi-class, Bernoulli KL for binary and multi-label, MSE to the teacher's
            outputs for regression. A loss that does not fit its output's kind is refused.
        loss_weights: one non-negative weight per loss (a dict by output name, with
            ``losses`` as a dict). Default all 1.
        teacher_outputs: for classification outputs: ``"logits"``, ``"probabilities"`` (the
            teacher ends in softmax or sigmoid) or ``"auto"``. Where the teacher shows its
            logits (a final ``Softmax`` or sigmoid ``Activation`` layer, or a final ``Dense``
            with that activation) they are read before the activation, which is exact.
            Otherwise probabilities become log-probabilities (softmax) or
            ``log p − log(1 − p)`` (sigmoid), never treated as logits; with ``"auto"`` and
            nothing visible, the first batch decides (rows of non-negative values that sum to 1
            are softmax probabilities; for binary and multi-label outputs, values all in [0, 1]
            are sigmoid probabilities).
        task: what each output holds: ``"auto"`` (detected from the teacher's final
            activation, the student's compiled loss or the labels), ``"multiclass"``,
            ``"binary"``, ``"multilabel"``, ``"regression"``, or a dict of them by output name
            (``keras_distill.outputs``). When nothing tells (a linear output, no loss, no
            labels) the Distiller raises a ValueError saying what to declare.
        teacher_weights: with a list of teachers, one weight per teacher (default equal).
        teacher_average: with a list of teachers, ``"probabilities"`` (default) or
            ``"logits"``: what the ensemble averages.
        augment: a function or Keras layer applied to each training batch before the teacher
            and the student see it, so both see the same augmented inputs (Beyer et al., 2022).
            It is called as ``augment(x, training=True)`` when it accepts ``training``.
        mixup: if > 0, mix pairs of training inputs with weights drawn from
            Beta(mixup, mixup); the teacher labels the mixed inputs, and the label loss mixes
            the two labels with the same weight.

    Labels below zero mark unlabeled samples in a batch of integer labels: they add nothing
    to the label loss or to the metrics, and are still distilled (mix labeled and unlabeled
    data with ``keras_distill.data.with_unlabeled``). Outputs with positions (a tagger's
    ``(batch, steps, classes)``) are distilled per position and averaged over the valid ones;
    a label of −1 or a ``sample_weight`` of 0 there marks padding, left out of every term.

    Example:
        >>> import keras
        >>> from keras_distill import Distiller
        >>> from keras_distill.data import load_digits
        >>> from keras_distill.presets import teacher_cnn, student_cnn
        >>> data = load_digits()
        >>> teacher = teacher_cnn(data.input_shape, 10)   # train it first, as usual
        >>> distiller = Distiller(teacher, student_cnn(data.input_shape, 10),
        ...                       temperature=4.0, alpha=0.1)
        >>> distiller.compile(optimizer="adam", metrics=["accuracy"])
        >>> history = distiller.fit(data.x_train, data.y_train, epochs=1, verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'distillation_loss', 'loss', 'student_loss']
    """

    def __init__(self, teacher, student, *, temperature=4.0, alpha=0.1, losses=None,
                 loss_weights=None, teacher_outputs="auto", teacher_weights=None,
                 teacher_average="probabilities", augment=None, mixup=0.0, task="auto",
                 **kwargs):
        require_tensorflow("Distiller")
        super().__init__(**kwargs)
        teacher, file_teacher = _keras_and_file_teacher(teacher, teacher_weights,
                                                        teacher_average)
        # A teacher that only gives outputs (a file, or none), and the non-finite guard's
        # state: kept out of Keras tracking.
        object.__setattr__(self, "file_teacher", file_teacher)
        object.__setattr__(self, "_guard", guard.Guard())
        if not isinstance(student, keras.Model):
            raise ValueError(  # noqa: TRY004 (a ValueError, as for every other argument)
                f"student must be a keras.Model; got {type(student).__name__}.")
        if teacher is student:
            raise ValueError("teacher and student are the same model; pass two models.")
        self.temperature = losses_lib.check_temperature(temperature)
        self.alpha = _checked_alpha(alpha)
        if teacher_outputs not in TEACHER_OUTPUTS:
            raise ValueError(
                f"teacher_outputs must be one of {TEACHER_OUTPUTS}; got {teacher_outputs!r}."
            )
        self.teacher_outputs = teacher_outputs
        self.task = task
        self._output_names = outputs_lib.names(student)
        reserved = sorted(set(self._output_names) & set(_RESERVED_OUTPUT_NAMES))
        if reserved:
            raise ValueError(
                f"The student has outputs named {reserved}: those names mark cached teacher "
                "outputs in the targets ({'labels': ..., 'teacher_outputs': ...}). Rename the "
                "outputs (the keys of the model's output dict, or their layers).")
        # [output index or None (a loss on features), loss or None (the kind's default), weight]
        self._loss_items = heads_lib.parse_losses(losses, loss_weights, self._output_names,
                                                  self.temperature)
        self._declared_losses = losses is not None

        if not isinstance(mixup, (int, float)) or mixup < 0:
            raise ValueError(f"mixup must be a number >= 0 (0 turns it off); got {mixup!r}.")
        if augment is not None and not callable(augment):
            raise ValueError(f"augment must be a function or a Keras layer; got {augment!r}.")
        self.augment = augment
        self.mixup = float(mixup)

        if getattr(student, "built", False) and not student.trainable_weights:
            raise ValueError(
                f"The student {student.name!r} has no trainable weights (is "
                "student.trainable False, e.g. copied from a frozen teacher?). Set "
                "student.trainable = True before distilling.")
        if teacher is not None:
            self._check_models(teacher, student)
            teacher.trainable = False
        self._check_student_outputs(student)
        self.teacher = teacher
        self.student = student
        self._teacher_setup(teacher)
        self._build_hints()
        # Output kinds: resolved now when the models tell, else at compile (from the loss) or
        # at the first fit / evaluate (from the labels).
        self._heads = None
        self._compile_args = None
        self._try_resolve()
        # Teacher, student and adapters are built: so is the Distiller (BackupAndRestore and
        # summary() need that before fit).
        self.built = bool(getattr(student, "built", False))

    # ---------------------------------------------------------------------------------------
    # construction helpers
    # ---------------------------------------------------------------------------------------

    @staticmethod
    def _unique_names(names):
        seen, out = {}, []
        for name in names:
            count = seen.get(name, 0)
            seen[name] = count + 1
            out.append(name if count == 0 else f"{name}_{count}")
        return out

    def _check_models(self, teacher, student):
        t_in, s_in = model_shape(teacher, "input_shape"), model_shape(student, "input_shape")
        if not shapes_compatible(t_in, s_in):
            raise ValueError(
                f"teacher and student take different inputs: teacher input shape {t_in}, "
                f"student input shape {s_in}. Both must read the same data."
            )
        t_outs = outputs_lib._names_and_shapes(teacher)
        s_outs = outputs_lib._names_and_shapes(student)
        if len(s_outs) > 1 or len(t_outs) > 1:
            if len(t_outs) != len(s_outs) or (
                    isinstance(getattr(student, "_outputs_struct", None), dict)
                    and [n for n, _ in t_outs] != [n for n, _ in s_outs]):
                raise ValueError(
                    f"teacher and student have different outputs: teacher {dict(t_outs)}, "
                    f"student {dict(s_outs)}. Give the student the teacher's outputs, with "
                    "the same names.")
            for (name, t_shape), (_, s_shape) in zip(t_outs, s_outs):
                if not shapes_compatible(t_shape, s_shape):
                    raise ValueError(
                        f"teacher and student disagree on the output {name!r}: teacher shape "
                        f"{t_shape}, student shape {s_shape}.")
            return
        t_out, s_out = model_shape(teacher, "output_shape"), model_shape(student, "output_shape")
        if not shapes_compatible(t_out, s_out):
            raise ValueError(
                f"teacher and student disagree on the outputs: teacher output shape {t_out}, "
                f"student output shape {s_out}. Give the student one logit per teacher class."
            )

    def _check_student_outputs(self, student):
        declared = outputs_lib.per_output(
            self.task if isinstance(self.task, dict) else
            {n: self.task for n in self._output_names}, self._output_names, "task")
        for name, activation, kind in zip(self._output_names, outputs_lib.activations(student),
                                          declared):
            if activation is None or kind == outputs_lib.REGRESSION:
                continue
            raise ValueError(
                f"The student {student.name!r} ends in a {activation} (output {name!r}), but "
                f"distillation needs its logits. Remove the {activation} from its last layer "
                f"(e.g. Dense(n) instead of Dense(n, activation='{activation}')); apply "
                f"{activation} at inference if needed.")

    def _teacher_setup(self, teacher):
        """How the teacher's outputs become logits: read before a visible final activation
        (exact), converted from probabilities, or decided on the first batch."""
        count = len(self._output_names)
        activations = outputs_lib.activations(teacher) if teacher is not None else []
        activations = (list(activations) + [None] * count)[:count]
        sources = None if teacher is None or hasattr(teacher, "output_activation") else \
            teachers_lib.logit_sources(teacher)
        self._teacher_activations = activations
        forms, tensors, dense_heads = [], [], []
        for i in range(count):
            source = sources[i] if sources and i < len(sources) else None
            exact = activations[i] is not None and source is not None and (
                source[1] is not None or source[0] is not teacher.outputs[i])
            if exact:
                forms.append("logits")
            elif self.teacher_outputs != "auto":
                forms.append(self.teacher_outputs)
            else:
                forms.append("probabilities" if activations[i] is not None else "auto")
            tensors.append(source[0] if exact else (teacher.outputs[i] if sources else None))
            dense_heads.append(source[1] if exact else None)
        self._teacher_forms = forms
        object.__setattr__(self, "_teacher_dense_heads", dense_heads)
        # A view of the teacher that outputs the tensors its logits are read from, when any
        # output's logits lie before its final activation.
        any_exact = any(f == "logits" and a is not None for f, a in zip(forms, activations))
        object.__setattr__(self, "_teacher_logit_tensors", tensors if any_exact else None)
        # Whether the teacher outputs probabilities, per output: -1 undecided, 0 logits,
        # 1 probabilities. Variables, so that "auto" is decided once, inside the compiled
        # step, and saved.
        self._teacher_kind_vars = []
        for i in range(count):
            value = {"logits": 0, "probabilities": 1}.get(self.teacher_outputs, -1)
            if self.teacher_outputs == "auto" and activations[i] is not None:
                value = 1
            self._teacher_kind_vars.append(keras.Variable(
                value, dtype="int32", trainable=False,
                name="teacher_output_kind" if i == 0 else f"teacher_output_kind_{i}",
                aggregation="only_first_replica"))

    @property
    def _teacher_kind(self):
        """The first output's: -1 undecided, 0 logits, 1 probabilities."""
        return self._teacher_kind_vars[0]

    def _build_hints(self):
        """Multi-output views of teacher and student that also return the hinted features
        (and the teacher's logits before a final activation)."""
        hints = [loss for index, loss, _ in self._loss_items if index is None]
        self.hint_adapters = []
        self._teacher_taps = self._student_taps = None
        logit_tensors = self._teacher_logit_tensors
        if not hints:
            if logit_tensors is not None:
                object.__setattr__(self, "_teacher_taps",
                                   keras.Model(self.teacher.inputs, list(logit_tensors)))
            return
        adapters, teacher_view, student_view = hints_lib.feature_views(
            self.teacher, self.student, hints, teacher_outputs=logit_tensors)
        self.hint_adapters.extend(adapters)
        # Untracked views: they share the layers (and weights) of teacher and student.
        object.__setattr__(self, "_teacher_taps", teacher_view)
        object.__setattr__(self, "_student_taps", student_view)

    # ---------------------------------------------------------------------------------------
    # output kinds
    # ---------------------------------------------------------------------------------------

    def _try_resolve(self, loss=None, labels=None, final=False):
        """Resolve every output's kind (once); ``final``: raise when nothing tells."""
        if self._heads is not None:
            return True
        teacher_activations = self._teacher_activations
        if self.teacher is None and self.teacher_outputs == "probabilities":
            teacher_activations = None
        task = self.task
        if task == "auto" and getattr(self.teacher, "task", None) in outputs_lib.KINDS:
            task = self.teacher.task  # an Ensemble's declared kind
        try:
            resolved = outputs_lib.resolve(self.student, self.teacher, task, loss=loss,
                                           labels=labels,
                                           teacher_activations=teacher_activations)
        except outputs_lib.AmbiguousOutput:
            if final:
                raise
            return False
        self._set_heads(resolved)
        return True

    def _set_heads(self, resolved):
        items = heads_lib.complete(self._loss_items, resolved, self.temperature)
        self._loss_items = items
        self._heads = [heads_lib.Head(i, o, [(loss, w) for index, loss, w in items
                                             if index == i]) for i, o in enumerate(resolved)]
        several = len(resolved) > 1
        names = [loss.name if index is None or not several
                 else f"{resolved[index].name}_{loss.name}" for index, loss, _ in items]
        self._term_names = self._unique_names(names)
        if self._compile_args is not None:
            self._finish_compile()

    @property
    def output_kinds(self):
        """The :class:`keras_distill.outputs.Output` of every output, or None until known."""
        return None if self._heads is None else [h.output for h in self._heads]

    @property
    def distillation_losses(self):
        """Every distillation loss (the outputs' defaults once their kinds are known)."""
        return [loss for _, loss, _ in self._loss_items if loss is not None]

    @property
    def loss_weights(self):
        return [w for _, loss, w in self._loss_items if loss is not None]

    def _resolve_from_data(self, x, y, where):
        if self._heads is not None:
            return
        if hasattr(x, "shape") and hasattr(x, "__len__") and len(x) == 0:
            raise ValueError(f"{where}: x is empty (0 samples); pass some data.")
        labels = _label_sample(x, y)
        loss = None if self._compile_args is None else self._compile_args["loss"]
        try:
            self._try_resolve(loss=loss, labels=labels, final=True)
        except outputs_lib.AmbiguousOutput as err:
            check_training_arrays(x, y, self.student, where)  # bad data is named first
            raise ValueError(f"{where}: {err}") from None

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configure training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: the student's loss on the true labels (for several outputs, a dict by output
                name or a list). Default: the output kind's loss from logits: cross-entropy
                (sparse for integer labels, categorical for one-hot labels), binary
                cross-entropy for binary and multi-label outputs, mean squared error for
                regression. Cross-entropy names (``"sparse_categorical_crossentropy"``, ...)
                mean their from-logits form, since the student outputs logits. The loss is
                averaged per sample (or valid position); its own reduction is not used.
            metrics: metrics on the student's predictions, e.g. ``["accuracy"]`` (for several
                outputs, a dict by output name). ``"accuracy"`` and ``"auc"`` of a binary or
                multi-label output are read from logits (a logit above 0 is a positive).
            **kwargs: passed to ``keras.Model.compile`` (``steps_per_execution``,
                ``jit_compile``, ``run_eagerly``...). ``loss_weights`` is a constructor
                argument of the Distiller, not of ``compile``.
        """
        if "loss_weights" in kwargs:
            raise ValueError(
                "compile() got loss_weights: distillation loss weights belong to the "
                "constructor: Distiller(teacher, student, losses=[...], loss_weights=[...])."
            )
        per_output = outputs_lib.per_output(loss, self._output_names, "compile(loss=...)")
        label_losses = [losses_lib.student_label_loss(item) for item in per_output]
        self._compile_args = {"optimizer": optimizer, "loss": loss, "metrics": metrics,
                              "label_losses": label_losses, "kwargs": kwargs}
        if self._heads is None:
            self._try_resolve(loss=loss)
        if self._heads is None:  # finished at the first fit / evaluate, once labels are seen
            super().compile(optimizer=optimizer, loss=None, metrics=None, **kwargs)
            self._compile_config.config["loss"] = loss
            self._compile_config.config["metrics"] = metrics
            self._trackers = {}
            return
        self._finish_compile()

    def _finish_compile(self):
        """compile(), once every output's kind is known: label losses and metrics per kind."""
        args = self._compile_args
        for head, fn in zip(self._heads, args["label_losses"]):
            head.label_loss = fn
        metrics = _metrics_for_kinds(args["metrics"], self._heads)
        with self.distribute_strategy.scope():  # compile may finish at fit, outside the scope
            super().compile(optimizer=args["optimizer"], loss=None, metrics=metrics,
                            **args["kwargs"])
        self._compile_config.config["loss"] = args["loss"]
        self._compile_config.config["metrics"] = args["metrics"]
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ["loss", "student_loss", "distillation_loss",
                         *(self._term_names if len(self._term_names) > 1 else [])]
        }

    @property
    def metrics(self):
        trackers = list(getattr(self, "_trackers", {}).values())
        compiled = [self._compile_metrics] if self._compile_metrics is not None else []
        return trackers + compiled

    def call(self, inputs, training=None):
        """The student's logits (or values, for regression outputs)."""
        return self.student(inputs, training=training)

    # ---------------------------------------------------------------------------------------
    # the step
    # ---------------------------------------------------------------------------------------

    def _flat(self, value):
        """One entry per output, in output order, from a tensor, a list or a dict by name."""
        if value is None:
            return [None] * len(self._output_names)
        if isinstance(value, dict):
            return [value.get(name) for name in self._output_names]
        if isinstance(value, (list, tuple)) and len(self._output_names) > 1:
            return list(value) + [None] * (len(self._output_names) - len(value))
        return [value] + [None] * (len(self._output_names) - 1)

    def _packed(self, flat):
        """Student outputs in the student's own structure (a tensor, a dict or a list)."""
        if len(flat) == 1:
            return flat[0]
        if isinstance(getattr(self.student, "_outputs_struct", None), dict):
            return dict(zip(self._output_names, flat))
        return list(flat)

    def _teacher_forward(self, x, cached=None):
        count = len(self._output_names)
        if cached is not None:
            outs = self._flat(cached)
            return [ops.stop_gradient(self._as_logits(o, i)) for i, o in enumerate(outs)], []
        if self.teacher is None:
            raise ValueError(
                "This Distiller has no Keras teacher, and the batch carries no teacher "
                "outputs. Train on keras_distill.teachers.cache_outputs(teacher, x, y), or "
                "call fit(..., cache_teacher=True) with a FileTeacher.")
        if self._teacher_taps is not None:
            out = self._teacher_taps(x, training=False)
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            outs, feats = out[:count], out[count:]
            outs = [o if head is None else teachers_lib.dense_logits(head, o)
                    for o, head in zip(outs, self._teacher_dense_heads)]
        else:
            outs, feats = self._flat(self.teacher(x, training=False)), []
        logits = [ops.stop_gradient(self._as_logits(o, i)) for i, o in enumerate(outs)]
        return logits, [ops.stop_gradient(f) for f in feats]

    def _student_forward(self, x, training):
        count = len(self._output_names)
        if self._student_taps is not None:
            out = self._student_taps(x, training=training)
            return list(out[:count]), list(out[count:])
        return self._flat(self.student(x, training=training)), []

    def _as_logits(self, out, index):
        """A teacher output as logits: probabilities become log-probabilities (softmax) or
        log-odds (sigmoid); regression values are used as they are."""
        out = ops.cast(out, "float32")
        kind = self._heads[index].output.kind
        form = self._teacher_forms[index]
        if kind == outputs_lib.REGRESSION or form == "logits":
            return out
        multiclass = kind == outputs_lib.MULTICLASS
        converted = teachers_lib.to_log_probs(out) if multiclass else \
            teachers_lib.sigmoid_to_logits(out)
        if form == "probabilities":
            return converted
        variable = self._teacher_kind_vars[index]
        looks = teachers_lib.looks_like_probabilities(out) if multiclass else \
            teachers_lib.looks_like_sigmoid(out)
        decided = ops.where(variable < 0, ops.cast(looks, "int32"), variable)
        variable.assign(decided)
        return ops.where(decided == 1, converted, out)

    def _label_terms(self, labels, logits, sample_weight, batch):
        """The student's loss on the labels, summed over the outputs that have labels."""
        total = ops.zeros((), "float32")
        for head, y, z in zip(self._heads, labels, logits):
            if y is None:
                continue
            label_w, _ = head.weights(y, sample_weight)
            values = head.label_values(_clean(head, y, z), z)
            total = total + head.mean(values, label_w, batch)
        return total

    def _terms(self, x, y, sample_weight, training, cached=None, mix=None):
        """Forward passes and every loss term, in float32."""
        if self._heads is None:
            raise ValueError(
                "The Distiller does not know what its outputs hold yet: call fit / evaluate "
                "(which read the labels), or declare Distiller(..., task=...).")
        t_logits, t_feats = self._teacher_forward(x, cached)
        s_logits, s_feats = self._student_forward(x, training)
        s32 = [ops.cast(s, "float32") for s in s_logits]
        labels = self._flat(y)
        batch = ops.cast(ops.shape(s32[0])[0], "float32")
        flat_weights = None
        if sample_weight is not None and len(sample_weight.shape) == 1:
            flat_weights = _flat_weights(sample_weight)

        terms, feat_i = [], 0
        for index, loss, _ in self._loss_items:
            if index is None:  # a loss on features: one value per sample
                s_feat = s_feats[feat_i]
                adapter = self.hint_adapters[feat_i]
                if adapter is not None:
                    s_feat = adapter(s_feat, training=training)
                per_sample = loss.compute(t_feats[feat_i], ops.cast(s_feat, "float32"))
                feat_i += 1
                if flat_weights is not None:
                    per_sample = per_sample * flat_weights
                terms.append(ops.sum(per_sample) / batch)
                continue
            head = self._heads[index]
            y_out = labels[index]
            clean = None if y_out is None else _clean(head, y_out, s32[index])
            per_position = loss.compute(t_logits[index], s32[index], labels=clean)
            _, distill_w = head.weights(y_out, sample_weight)
            terms.append(head.mean(per_position, distill_w, batch))
        distill = sum(w * t for (_, _, w), t in zip(self._loss_items, terms))
        if all(label is None for label in labels):
            student_loss = ops.zeros((), "float32")
            total = distill
        else:
            student_loss = self._label_terms(labels, s32, sample_weight, batch)
            if mix is not None:  # mixup: the mixed input's label loss mixes both labels
                lam, perm = mix
                other = [None if label is None else ops.take(label, perm, axis=0)
                         for label in labels]
                other_w = None if sample_weight is None else ops.take(sample_weight, perm, 0)
                student_loss = lam * student_loss + (1.0 - lam) * self._label_terms(
                    other, s32, other_w, batch)
            total = self.alpha * student_loss + (1.0 - self.alpha) * distill
        # Components first, the total last: a non-finite value is reported by its source.
        named = {"student_loss": student_loss}
        if len(terms) > 1:
            named.update(zip(self._term_names, terms))
        named.update(distillation_loss=distill, loss=total)
        return self._packed(s_logits), named

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Update the compiled metrics on the student's predictions and the true labels.

        Cached teacher outputs in ``y`` are set aside, and unlabeled samples and padded
        positions (integer labels below zero) are left out.
        """
        import tensorflow as tf

        labels, _ = teachers_lib.split_targets(y)
        if labels is None or self._compile_metrics is None:
            return self.get_metrics_result()
        if len(self._heads) == 1:
            head = self._heads[0]
            label_w, _ = head.weights(labels, sample_weight)
            if not head.output.positions and label_w is not None and sample_weight is None:
                # drop unlabeled rows (plain metrics ignore sample weights)
                keep = tf.reshape(label_w > 0, (-1,))
                labels, y_pred = tf.boolean_mask(labels, keep), tf.boolean_mask(y_pred, keep)
            else:
                if label_w is not None:
                    sample_weight = label_w
                if "int" in str(labels.dtype):
                    labels = tf.maximum(labels, 0)
            self._compile_metrics.update_state(labels, y_pred, sample_weight)
            return self.get_metrics_result()
        self._compile_metrics.update_state(labels, y_pred, sample_weight)
        return self.get_metrics_result()

    def _update(self, named, y, y_pred, sample_weight):
        # Weighted by batch size, as Keras does: epoch values are per-sample means, whatever
        # the batch size (a short last batch does not count as much as a full one).
        batch = ops.shape(keras.tree.flatten(y_pred)[0])[0]
        for name, value in named.items():
            self._trackers[name].update_state(value, sample_weight=batch)
        return self.compute_metrics(None, y, y_pred, sample_weight)

    def _augment(self, x, y, sample_weight):
        """Augmentation and mixup of a training batch: the same inputs for both models."""
        import tensorflow as tf

        if self.augment is not None:
            try:
                x = self.augment(x, training=True)
            except TypeError:
                x = self.augment(x)
        mix = None
        if self.mixup > 0:
            batch = tf.shape(x)[0]
            a = tf.random.gamma((), self.mixup)
            b = tf.random.gamma((), self.mixup)
            lam = a / (a + b)
            perm = tf.random.shuffle(tf.range(batch))
            x = lam * x + (1.0 - lam) * tf.gather(x, perm)
            mix = (lam, perm)
        return x, mix

    def train_step(self, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels, cached = teachers_lib.split_targets(y)
        if cached is not None and (self.augment is not None or self.mixup > 0):
            raise ValueError(
                "Cached teacher outputs cannot be used with augment or mixup: the teacher must "
                "see the augmented inputs. Drop the cache, or the augmentation.")
        x, mix = self._augment(x, labels, sample_weight)
        variables = self._student_variables()
        with tf.GradientTape() as tape:
            y_pred, named = self._terms(x, labels, sample_weight, training=True, cached=cached,
                                        mix=mix)
            # Under tf.distribute each replica sees part of the batch and gradients are summed.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(named["loss"] / replicas)
        grads = tape.gradient(scaled, variables)
        self._apply(named, grads, variables)
        return self._update(named, y, y_pred, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels, cached = teachers_lib.split_targets(y)
        y_pred, named = self._terms(x, labels, sample_weight, training=False, cached=cached)
        return self._update(named, y, y_pred, sample_weight)

    def _apply(self, named, grads, variables):
        """Loss terms and gradients are checked before the update (``keras_distill.guard``):
        a non-finite step never reaches the weights."""
        guard.guarded_apply(self._guard, self.optimizer, named, grads, variables)

    def _student_variables(self):
        return self.student.trainable_variables + [
            v for a in self.hint_adapters if a is not None for v in a.trainable_variables
        ]

    def fit(self, x=None, y=None, *args, cache_teacher=False, cache_dir=None,
            teacher_batch_size=256, **kwargs):
        """``keras.Model.fit``, plus teacher outputs computed once.

        Args:
            x, y, *args, **kwargs: as for ``keras.Model.fit``.
            cache_teacher: run the teacher once per sample of ``x`` (NumPy inputs) before
                training and reuse its outputs every epoch, instead of running it every step.
                Only valid when the inputs do not change between epochs (no ``augment`` or
                ``mixup``). ``self.cache_info`` then says where the outputs came from.
            cache_dir: with ``cache_teacher``, a folder where the outputs are stored, keyed to
                the teacher's weights and the data (a stale cache is never reused).
            teacher_batch_size: batch size of the teacher's one pass.

        A loss term or gradient that becomes NaN or infinite stops training with a
        ``FloatingPointError`` naming it; that step is not applied (``keras_distill.guard``).
        """
        import tensorflow as tf

        if isinstance(x, tf.data.Dataset) and int(x.cardinality()) == 0:
            raise ValueError("fit: the dataset is empty (0 batches); pass some data.")
        self._resolve_from_data(x, y, "fit")
        self._check_arrays(x, y, "fit")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            self._check_arrays(validation[0], validation[1], "validation_data")
        if cache_teacher:
            x, y = self._with_cached_outputs(x, y, cache_dir, teacher_batch_size)
        elif self.teacher is None and not isinstance(x, tf.data.Dataset) and not \
                teachers_lib.is_carrier(y):
            raise ValueError(
                "This Distiller has no Keras teacher: call fit(..., cache_teacher=True) (with a "
                "FileTeacher) or train on keras_distill.teachers.cache_outputs(...).")
        callbacks = [guard.StopOnNonFinite(self._guard), *(kwargs.pop("callbacks", None) or [])]
        try:
            return super().fit(x, y, *args, callbacks=callbacks, **kwargs)
        except tf.errors.InvalidArgumentError as err:
            stopped = guard.error_from(err)
            if stopped is None:
                raise
            raise stopped from None

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``, with the same checks of NumPy inputs as ``fit``."""
        self._resolve_from_data(x, y, "evaluate")
        self._check_arrays(x, y, "evaluate")
        return super().evaluate(x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self._resolve_from_data(x, y, "train_on_batch")
        return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        self._resolve_from_data(x, y, "test_on_batch")
        return super().test_on_batch(x, y, *args, **kwargs)

    def _check_arrays(self, x, y, where):
        check_training_arrays(x, y, self.student, where, outputs=self.output_kinds)

    def _with_cached_outputs(self, x, y, cache_dir, batch_size):
        import tensorflow as tf

        if self.augment is not None or self.mixup > 0:
            raise ValueError(
                "cache_teacher=True cannot be combined with augment or mixup: augmented inputs "
                "change every epoch, so the teacher must see each one. Turn the cache off, or "
                "the augmentation.")
        if isinstance(x, tf.data.Dataset) or not hasattr(x, "shape") or teachers_lib.is_carrier(y):
            raise ValueError(
                "cache_teacher=True needs NumPy arrays x (and y). For a tf.data pipeline, build "
                "the cached dataset with keras_distill.teachers.cache_outputs(teacher, x, y) "
                "and fit on it.")
        teacher = self.file_teacher or self.teacher
        if teacher is None:
            raise ValueError("cache_teacher=True needs a teacher (a Keras model or FileTeacher).")
        outputs, info = teachers_lib.teacher_outputs(teacher, x, batch_size=batch_size,
                                                     cache_dir=cache_dir)
        self.cache_info = info
        return x, teachers_lib.targets_with_outputs(outputs, y)

    # ---------------------------------------------------------------------------------------
    # serialization
    # ---------------------------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "teacher": (None if self.teacher is None
                        else keras.saving.serialize_keras_object(self.teacher)),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            "alpha": self.alpha,
            **self._losses_config(),
            "teacher_outputs": self.teacher_outputs,
            "task": (self.task if self._heads is None
                     else outputs_lib.to_config(self.output_kinds)),
            "mixup": self.mixup,
            # A Keras layer is saved; a plain function is not (pass it again after loading).
            "augment": (keras.saving.serialize_keras_object(self.augment)
                        if isinstance(self.augment, keras.layers.Layer) else None),
        }

    def _losses_config(self):
        """``losses`` and ``loss_weights`` as given: a list (one output) or dicts by output
        name; None for the kinds' defaults."""
        if not self._declared_losses:
            return {"losses": None, "loss_weights": None}
        serialize = keras.saving.serialize_keras_object
        if len(self._output_names) == 1:
            items = [(loss, w) for _, loss, w in self._loss_items]
            return {"losses": [serialize(loss) for loss, _ in items],
                    "loss_weights": [w for _, w in items]}
        losses, weights = {}, {}
        for index, loss, w in self._loss_items:
            name = self._output_names[index or 0]
            losses.setdefault(name, []).append(serialize(loss))
            weights.setdefault(name, []).append(w)
        return {"losses": losses, "loss_weights": weights}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student", "augment"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        losses = config.get("losses")
        if isinstance(losses, list):
            config["losses"] = [keras.saving.deserialize_keras_object(loss) for loss in losses]
        elif isinstance(losses, dict):
            config["losses"] = {name: [keras.saving.deserialize_keras_object(loss)
                                       for loss in items] for name, items in losses.items()}
        return cls(**config)

    def get_compile_config(self):
        return self._compile_config.serialize() if self.compiled else {}

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        keep = ("optimizer", "loss", "metrics", "run_eagerly", "steps_per_execution",
                "jit_compile")
        self.compile(**{k: v for k, v in config.items() if k in keep})
        if self.built:
            self.optimizer.build(self._student_variables())
