"""The Distiller class: a ``keras.Model`` that trains a student to imitate a teacher.

``compile``, ``fit``, ``evaluate``, ``predict`` and Keras callbacks work as with any Keras
model. ``call`` (and so ``predict``) returns the student's logits; ``distiller.student`` is the
trained student, a plain Keras model with no teacher inside.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_distill import guard, precision
from keras_distill import hints as hints_lib
from keras_distill import losses as losses_lib
from keras_distill import outputs as outputs_lib
from keras_distill import teachers as teachers_lib
from keras_distill.backend import require_tensorflow
from keras_distill.data import check_training_arrays
from keras_distill.distiller import checks, xla
from keras_distill.distiller import heads as heads_lib
from keras_distill.distiller.loops import FitLoops
from keras_distill.distiller.teacher_logits import TeacherLogits

TEACHER_OUTPUTS = ("auto", "logits", "probabilities")


def _flat_weights(sample_weight):
    return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


@keras.saving.register_keras_serializable(package="keras_distill")
class Distiller(FitLoops, keras.Model):
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
        teacher_dtype: ``None`` (default: the teacher's own precision), ``"bfloat16"`` or
            ``"float16"``: run the teacher's forward pass in that precision, through a copy of
            it (``keras_distill.precision``); its outputs are cast to float32 before
            any loss. Opt-in: cheaper where the hardware computes in that dtype, at a small
            change in the teacher's outputs.

    A label of −1 marks an unlabeled sample in a batch of integer labels: it adds nothing
    to the label loss or to the metrics, and is still distilled (mix labeled and unlabeled
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
                 teacher_dtype=None, **kwargs):
        require_tensorflow("Distiller")
        super().__init__(**kwargs)
        teacher, file_teacher = checks.keras_and_file_teacher(teacher, teacher_weights,
                                                              teacher_average)
        # A teacher that only gives outputs (a file, or none), and the non-finite guard's
        # state: kept out of Keras tracking.
        object.__setattr__(self, "file_teacher", file_teacher)
        object.__setattr__(self, "_guard", guard.Guard())
        checks.check_student(student, teacher)
        self.temperature = losses_lib.check_temperature(temperature)
        self.alpha = checks.checked_alpha(alpha)
        if teacher_outputs not in TEACHER_OUTPUTS:
            raise ValueError(
                f"teacher_outputs must be one of {TEACHER_OUTPUTS}; got {teacher_outputs!r}."
            )
        self.teacher_outputs = teacher_outputs
        self.task = task
        self._output_names = outputs_lib.names(student)
        checks.check_student_outputs(student, self._output_names, task)
        # [output index or None (a loss on features), loss or None (the kind's default), weight]
        self._loss_items = heads_lib.parse_losses(losses, loss_weights, self._output_names,
                                                  self.temperature)
        self._declared_losses = losses is not None
        checks.check_augmentation(augment, mixup)
        self.augment = augment
        self.mixup = float(mixup)
        if teacher is not None:
            checks.check_models(teacher, student)
            teacher.trainable = False
        self.teacher = teacher
        self.student = student
        self.teacher_dtype = precision.check_teacher_dtype(teacher_dtype, teacher)
        # What runs forward: the teacher, or its copy in teacher_dtype (untracked: not saved).
        object.__setattr__(self, "_forward_teacher", None if teacher is None else
                           precision.teacher_copy(teacher, teacher_dtype))
        # Untracked (its variables are tracked below, so that they are saved).
        object.__setattr__(self, "_reader", TeacherLogits(
            self._forward_teacher, len(self._output_names), teacher_outputs))
        self._teacher_kind_vars = list(self._reader.variables)
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
        logit_tensors = self._reader.tensors
        if not hints:
            if logit_tensors is not None:
                object.__setattr__(self, "_teacher_taps", keras.Model(
                    self._forward_teacher.inputs, list(logit_tensors)))
            return
        adapters, teacher_view, student_view = hints_lib.feature_views(
            self._forward_teacher, self.student, hints, teacher_outputs=logit_tensors)
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
        teacher_activations = self._reader.activations
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
        self._term_names = checks.unique_names(names)
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
        labels = heads_lib.label_sample(x, y)
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
                ``run_eagerly``...). ``loss_weights`` is a constructor argument of the
                Distiller, not of ``compile``. ``jit_compile``: ``"auto"`` (default: XLA on a
                GPU or TPU, off on CPUs, where it does not pay), ``"try"`` (XLA on any
                device), each falling back to no XLA with a warning when XLA cannot compile
                the step; or True / False (``keras_distill.distiller.xla``).
        """
        if "loss_weights" in kwargs:
            raise ValueError(
                "compile() got loss_weights: distillation loss weights belong to the "
                "constructor: Distiller(teacher, student, losses=[...], loss_weights=[...])."
            )
        requested_jit = kwargs.get("jit_compile", "auto")
        kwargs["jit_compile"], fallback = xla.choose(self, requested_jit,
                                                     kwargs.get("run_eagerly", False))
        object.__setattr__(self, "_xla_fallback", fallback)
        per_output = outputs_lib.per_output(loss, self._output_names, "compile(loss=...)")
        label_losses = [losses_lib.student_label_loss(item) for item in per_output]
        self._compile_args = {"optimizer": optimizer, "loss": loss, "metrics": metrics,
                              "label_losses": label_losses, "kwargs": kwargs,
                              "jit_compile": requested_jit}
        if self._heads is None:
            self._try_resolve(loss=loss)
        if self._heads is None:  # finished at the first fit / evaluate, once labels are seen
            super().compile(optimizer=optimizer, loss=None, metrics=None, **kwargs)
            self._compile_config.config["loss"] = loss
            self._compile_config.config["metrics"] = metrics
            self._compile_config.config["jit_compile"] = requested_jit  # saved as asked
            self._trackers = {}
            return
        self._finish_compile()

    def _finish_compile(self):
        """compile(), once every output's kind is known: label losses and metrics per kind."""
        args = self._compile_args
        for head, fn in zip(self._heads, args["label_losses"]):
            head.label_loss = fn
        metrics = heads_lib.metrics_for_kinds(args["metrics"], self._heads)
        with self.distribute_strategy.scope():  # compile may finish at fit, outside the scope
            super().compile(optimizer=args["optimizer"], loss=None, metrics=metrics,
                            **args["kwargs"])
        self._compile_config.config["loss"] = args["loss"]
        self._compile_config.config["metrics"] = args["metrics"]
        self._compile_config.config["jit_compile"] = args["jit_compile"]  # saved as asked
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ["loss", "student_loss", "distillation_loss",
                         *(self._term_names if len(self._term_names) > 1 else [])]
        }

    @property
    def metrics(self):
        trackers = list(getattr(self, "_trackers", {}).values())
        compiled = self._compile_metrics
        # without labels the compiled metrics are never updated, nor built: left out
        built = compiled is not None and getattr(compiled, "built", True)
        return trackers + ([compiled] if built else [])

    def call(self, inputs, training=None):
        """The student's logits (or values, for regression outputs)."""
        return self.student(inputs, training=training)

    # ---------------------------------------------------------------------------------------
    # the step
    # ---------------------------------------------------------------------------------------

    def _flat(self, value):
        """One entry per output, in output order (``keras_distill.outputs.by_output``)."""
        return outputs_lib.by_output(value, self._output_names)

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
            if self.hint_adapters:
                raise ValueError(
                    "Cached teacher outputs cannot feed feature-hint losses (FeatureHint): "
                    "they hold the teacher's outputs, not its features. Train without the "
                    "cache, or without the hint loss.")
            outs = self._flat(cached)
            return [ops.stop_gradient(self._as_logits(o, i, cached=True))
                    for i, o in enumerate(outs)], []
        if self.teacher is None:
            raise ValueError(
                "This Distiller has no Keras teacher, and the batch carries no teacher "
                "outputs. Train on keras_distill.teachers.cache_outputs(teacher, x, y), or "
                "call fit(..., cache_teacher=True) with a FileTeacher; validation_data needs "
                "them too: (x_val, keras_distill.teachers.targets_with_outputs(outputs, "
                "y_val)).")
        if self._teacher_taps is not None:
            out = self._teacher_taps(x, training=False)
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            outs, feats = out[:count], out[count:]
            outs = self._reader.from_view(outs)
        else:
            outs, feats = self._flat(self._forward_teacher(x, training=False)), []
        logits = [ops.stop_gradient(self._as_logits(o, i)) for i, o in enumerate(outs)]
        return logits, [ops.stop_gradient(ops.cast(f, "float32")) for f in feats]

    def _student_forward(self, x, training):
        count = len(self._output_names)
        if self._student_taps is not None:
            out = self._student_taps(x, training=training)
            return list(out[:count]), list(out[count:])
        return self._flat(self.student(x, training=training)), []

    def _as_logits(self, out, index, cached=False):
        return self._reader.as_logits(out, index, self._heads[index].output.kind, cached)

    def _label_terms(self, labels, logits, sample_weight, batch):
        """The student's loss on the labels, summed over the outputs that have labels."""
        total = ops.zeros((), "float32")
        for head, y, z in zip(self._heads, labels, logits):
            if y is None:
                continue
            label_w, _ = head.weights(y, sample_weight)
            values = head.label_values(heads_lib.clean_labels(head, y, z), z)
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
            clean = None if y_out is None else heads_lib.clean_labels(head, y_out, s32[index])
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
        labels, _ = teachers_lib.split_targets(y)
        if labels is not None and self._compile_metrics is not None:
            labels, y_pred, sample_weight = heads_lib.metric_inputs(self._heads, labels, y_pred,
                                                                    sample_weight)
            self._compile_metrics.update_state(labels, y_pred, sample_weight)
        return self.get_metrics_result()

    def _update(self, named, y, y_pred, sample_weight):
        # Weighted by batch size, as Keras does: epoch values are per-sample means, whatever
        # the batch size (a short last batch does not count as much as a full one).
        batch = ops.shape(keras.tree.flatten(y_pred)[0])[0]
        for name, value in named.items():
            self._trackers[name].update_state(value, sample_weight=batch)
        return self.compute_metrics(None, y, y_pred, sample_weight)

    def train_step(self, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels, cached = teachers_lib.split_targets(y)
        if cached is not None and (self.augment is not None or self.mixup > 0):
            raise ValueError(
                "Cached teacher outputs cannot be used with augment or mixup: the teacher must "
                "see the augmented inputs. Drop the cache, or the augmentation.")
        x, mix = heads_lib.augmented(self.augment, self.mixup, x)
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
            **heads_lib.losses_config(self._loss_items, self._output_names,
                                      self._declared_losses),
            "teacher_outputs": self.teacher_outputs,
            "task": (self.task if self._heads is None
                     else outputs_lib.to_config(self.output_kinds)),
            "mixup": self.mixup,
            "teacher_dtype": self.teacher_dtype,
            # A Keras layer is saved; a plain function is not (pass it again after loading).
            "augment": (keras.saving.serialize_keras_object(self.augment)
                        if isinstance(self.augment, keras.layers.Layer) else None),
        }

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
