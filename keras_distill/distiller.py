"""The Distiller: a ``keras.Model`` that trains a student to imitate a teacher.

``compile``, ``fit``, ``evaluate``, ``predict`` and Keras callbacks work as with any Keras
model. ``call`` (and so ``predict``) returns the student's logits; ``distiller.student`` is the
trained student, a plain Keras model with no teacher inside.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_distill import guard
from keras_distill import hints as hints_lib
from keras_distill import losses as losses_lib
from keras_distill import teachers as teachers_lib
from keras_distill.backend import require_tensorflow
from keras_distill.data import check_training_arrays
from keras_distill.graph import model_shape, shapes_compatible

TEACHER_OUTPUTS = ("auto", "logits", "probabilities")


def _one_hot(y, logits):
    """Whether labels ``y`` are one-hot rows for ``logits`` (else class indices)."""
    return (len(y.shape) == len(logits.shape) and y.shape[-1] == logits.shape[-1]
            and logits.shape[-1] != 1)


def _flat_weights(sample_weight):
    return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


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


def _distillation_losses(losses, temperature):
    """The loss objects, each given ``temperature`` unless it has its own."""
    if losses is None:
        losses = [losses_lib.SoftTargetKL()]
    elif not isinstance(losses, (list, tuple)):
        losses = [losses]
    if not losses:
        raise ValueError("losses is empty; pass at least one distillation loss or None.")
    return [losses_lib.get(loss).with_temperature(temperature) for loss in losses]


def _checked_loss_weights(loss_weights, count):
    if loss_weights is None:
        loss_weights = [1.0] * count
    if not isinstance(loss_weights, (list, tuple)) or len(loss_weights) != count:
        raise ValueError(
            f"loss_weights must be a list with one weight per loss: {count} loss(es) "
            f"but loss_weights={loss_weights!r}."
        )
    for w in loss_weights:
        if not isinstance(w, (int, float)) or not w >= 0:  # also rejects NaN
            raise ValueError(f"loss_weights must be numbers >= 0; got {loss_weights!r}.")
    return [float(w) for w in loss_weights]


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
        student: a Keras model that outputs logits (no softmax), with the teacher's input and
            output shapes.
        temperature: softening temperature (> 0) for every loss that takes one and was not
            given its own. Default 4.0.
        alpha: weight of the student's loss on the true labels, in [0, 1]. Default 0.1.
        losses: distillation losses: ``keras_distill.losses.DistillationLoss`` instances or
            names (``"soft_target_kl"``, ``"hard_target_ce"``, ``"logit_mse"``,
            ``"decoupled_kd"``). Default ``[SoftTargetKL()]``.
        loss_weights: one non-negative weight per loss. Default all 1.
        teacher_outputs: ``"logits"``, ``"probabilities"`` (the teacher ends in softmax) or
            ``"auto"``: a visible final softmax means probabilities; otherwise the first batch
            decides (non-negative rows that sum to 1 are probabilities). Probabilities are
            turned into log-probabilities, never treated as logits.
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
    data with ``keras_distill.data.with_unlabeled``).

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
                 teacher_average="probabilities", augment=None, mixup=0.0, **kwargs):
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
        # Stored as `distillation_losses`: keras.Model owns the attribute name `losses`.
        self.distillation_losses = _distillation_losses(losses, self.temperature)
        self.loss_weights = _checked_loss_weights(loss_weights, len(self.distillation_losses))
        self._term_names = self._unique_names([loss.name for loss in self.distillation_losses])

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
        elif teachers_lib.outputs_probabilities(student):
            self._check_models(student, student)  # raises the softmax error
        self.teacher = teacher
        self.student = student

        # Whether the teacher outputs probabilities: -1 undecided, 0 logits, 1 probabilities.
        # A variable, so that "auto" is decided once, inside the compiled step, and saved.
        kind = {"logits": 0, "probabilities": 1}.get(teacher_outputs, -1)
        if teacher_outputs == "auto" and teacher is not None and \
                teachers_lib.outputs_probabilities(teacher):
            kind = 1
        self._teacher_kind = keras.Variable(kind, dtype="int32", trainable=False,
                                            name="teacher_output_kind",
                                            aggregation="only_first_replica")
        self._build_hints()
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
        t_out, s_out = model_shape(teacher, "output_shape"), model_shape(student, "output_shape")
        if not shapes_compatible(t_out, s_out):
            raise ValueError(
                f"teacher and student disagree on the outputs: teacher output shape {t_out}, "
                f"student output shape {s_out}. Give the student one logit per teacher class."
            )
        if teachers_lib.outputs_probabilities(student):
            raise ValueError(
                f"The student {student.name!r} ends in a softmax, but distillation needs its "
                "logits. Remove the softmax from its last layer (e.g. Dense(n) instead of "
                "Dense(n, activation='softmax')); apply softmax at inference if needed."
            )

    def _build_hints(self):
        """Multi-output views of teacher and student that also return the hinted features."""
        hints = [loss for loss in self.distillation_losses if loss.uses_features]
        self.hint_adapters = []
        self._teacher_taps = self._student_taps = None
        if not hints:
            return
        adapters, teacher_view, student_view = hints_lib.feature_views(
            self.teacher, self.student, hints)
        self.hint_adapters.extend(adapters)
        # Untracked views: they share the layers (and weights) of teacher and student.
        object.__setattr__(self, "_teacher_taps", teacher_view)
        object.__setattr__(self, "_student_taps", student_view)

    # ---------------------------------------------------------------------------------------
    # compile / call
    # ---------------------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configure training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: the student's loss on the true labels. Default: cross-entropy from logits,
                sparse for integer labels and categorical for one-hot labels. Cross-entropy
                names (``"sparse_categorical_crossentropy"``, ...) mean their from-logits form,
                since the student outputs logits.
            metrics: metrics on the student's predictions, e.g. ``["accuracy"]``.
            **kwargs: passed to ``keras.Model.compile`` (``steps_per_execution``,
                ``jit_compile``, ``run_eagerly``...). ``loss_weights`` is a constructor
                argument of the Distiller, not of ``compile``.
        """
        if "loss_weights" in kwargs:
            raise ValueError(
                "compile() got loss_weights: distillation loss weights belong to the "
                "constructor: Distiller(teacher, student, losses=[...], loss_weights=[...])."
            )
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)
        self.student_loss_fn = losses_lib.student_label_loss(loss)
        self._compile_config.config["loss"] = loss
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
        """The student's logits."""
        return self.student(inputs, training=training)

    # ---------------------------------------------------------------------------------------
    # the step
    # ---------------------------------------------------------------------------------------

    def _teacher_forward(self, x, cached=None):
        if cached is not None:
            return ops.stop_gradient(self._as_logits(cached)), []
        if self.teacher is None:
            raise ValueError(
                "This Distiller has no Keras teacher, and the batch carries no teacher "
                "outputs. Train on keras_distill.teachers.cache_outputs(teacher, x, y), or "
                "call fit(..., cache_teacher=True) with a FileTeacher.")
        if self._teacher_taps is not None:
            out, *feats = self._teacher_taps(x, training=False)
        else:
            out, feats = self.teacher(x, training=False), []
        return ops.stop_gradient(self._as_logits(out)), [ops.stop_gradient(f) for f in feats]

    def _student_forward(self, x, training):
        if self._student_taps is not None:
            out, *feats = self._student_taps(x, training=training)
        else:
            out, feats = self.student(x, training=training), []
        return out, feats

    def _as_logits(self, out):
        """Teacher outputs as logits: probabilities become log-probabilities."""
        out = ops.cast(out, "float32")
        if self.teacher_outputs == "logits":
            return out
        log_probs = teachers_lib.to_log_probs(out)
        if self.teacher_outputs == "probabilities":
            return log_probs
        kind = self._teacher_kind
        looks_like_probs = teachers_lib.looks_like_probabilities(out)
        decided = ops.where(kind < 0, ops.cast(looks_like_probs, "int32"), kind)
        kind.assign(decided)
        return ops.where(decided == 1, log_probs, out)

    @staticmethod
    def _labeled_mask(y, logits, sample_weight):
        """For integer labels, weight 0 where the label is < 0 (unlabeled); else unchanged."""
        if _one_hot(y, logits) or "int" not in str(y.dtype):
            return y, sample_weight
        flat = ops.reshape(y, (-1,))
        mask = ops.cast(flat >= 0, "float32")
        if sample_weight is not None:
            mask = mask * _flat_weights(sample_weight)
        return ops.reshape(ops.maximum(y, 0), ops.shape(y)), mask

    def _student_loss(self, y, logits, sample_weight):
        y, sample_weight = self._labeled_mask(y, logits, sample_weight)
        fn = self.student_loss_fn
        if fn is None:
            fn = (keras.losses.CategoricalCrossentropy(from_logits=True) if _one_hot(y, logits)
                  else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if isinstance(fn, keras.losses.Loss):
            value = fn(y, logits, sample_weight=sample_weight)
            if fn.reduction == "sum_over_batch_size":
                # Keras divides this reduction by the number of replicas under tf.distribute;
                # every term here is a per-replica mean, scaled once in train_step.
                import tensorflow as tf

                value = value * tf.distribute.get_strategy().num_replicas_in_sync
            return value
        per_sample = ops.cast(fn(y, logits), "float32")  # a plain function of (y, logits)
        if sample_weight is not None:
            per_sample = per_sample * _flat_weights(sample_weight)
        return ops.sum(per_sample) / ops.cast(ops.shape(logits)[0], "float32")

    def _terms(self, x, y, sample_weight, training, cached=None, mix=None):
        """Forward passes and every loss term, in float32."""
        t_logits, t_feats = self._teacher_forward(x, cached)
        s_logits, s_feats = self._student_forward(x, training)
        s32 = ops.cast(s_logits, "float32")
        weights = None
        if sample_weight is not None:
            weights = _flat_weights(sample_weight)
        batch = ops.cast(ops.shape(s32)[0], "float32")

        terms, feat_i = [], 0
        for loss in self.distillation_losses:
            if loss.uses_features:
                s_feat = s_feats[feat_i]
                adapter = self.hint_adapters[feat_i]
                if adapter is not None:
                    s_feat = adapter(s_feat, training=training)
                per_sample = loss.compute(t_feats[feat_i], ops.cast(s_feat, "float32"))
                feat_i += 1
            else:
                per_sample = loss.compute(t_logits, s32, labels=y)
            if weights is not None:
                per_sample = per_sample * weights
            terms.append(ops.sum(per_sample) / batch)
        distill = sum(w * t for w, t in zip(self.loss_weights, terms))
        if y is None:
            student_loss = ops.zeros((), "float32")
            total = distill
        else:
            student_loss = ops.cast(self._student_loss(y, s32, sample_weight), "float32")
            if mix is not None:  # mixup: the mixed input's label loss mixes both labels
                lam, perm = mix
                other = ops.take(y, perm, axis=0)
                other_w = None if sample_weight is None else ops.take(sample_weight, perm, 0)
                student_loss = lam * student_loss + (1.0 - lam) * ops.cast(
                    self._student_loss(other, s32, other_w), "float32")
            total = self.alpha * student_loss + (1.0 - self.alpha) * distill
        # Components first, the total last: a non-finite value is reported by its source.
        named = {"student_loss": student_loss}
        if len(terms) > 1:
            named.update(zip(self._term_names, terms))
        named.update(distillation_loss=distill, loss=total)
        return s_logits, named

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Update the compiled metrics on the student's predictions and the true labels.

        Cached teacher outputs in ``y`` are set aside, and unlabeled samples (integer labels
        below zero) are left out.
        """
        import tensorflow as tf

        labels, _ = teachers_lib.split_targets(y)
        if labels is not None and self._compile_metrics is not None:
            _, mask = self._labeled_mask(labels, y_pred, None)
            if mask is not None:  # drop unlabeled rows (plain metrics ignore sample weights)
                keep = tf.reshape(mask > 0, (-1,))
                labels, y_pred = tf.boolean_mask(labels, keep), tf.boolean_mask(y_pred, keep)
                if sample_weight is not None:
                    sample_weight = tf.boolean_mask(sample_weight, keep)
            self._compile_metrics.update_state(labels, y_pred, sample_weight)
        return self.get_metrics_result()

    def _update(self, named, y, y_pred, sample_weight):
        # Weighted by batch size, as Keras does: epoch values are per-sample means, whatever
        # the batch size (a short last batch does not count as much as a full one).
        batch = ops.shape(y_pred)[0]
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
        check_training_arrays(x, y, self.student, "fit")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            check_training_arrays(validation[0], validation[1], self.student, "validation_data")
        if cache_teacher:
            x, y = self._with_cached_outputs(x, y, cache_dir, teacher_batch_size)
        elif self.teacher is None and not isinstance(x, tf.data.Dataset) and not (
                isinstance(y, dict) and teachers_lib.TEACHER_OUTPUTS_KEY in y):
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
        check_training_arrays(x, y, self.student, "evaluate")
        return super().evaluate(x, y, *args, **kwargs)

    def _with_cached_outputs(self, x, y, cache_dir, batch_size):
        import tensorflow as tf

        if self.augment is not None or self.mixup > 0:
            raise ValueError(
                "cache_teacher=True cannot be combined with augment or mixup: augmented inputs "
                "change every epoch, so the teacher must see each one. Turn the cache off, or "
                "the augmentation.")
        if isinstance(x, tf.data.Dataset) or not hasattr(x, "shape") or isinstance(y, dict):
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
            "losses": [keras.saving.serialize_keras_object(loss)
                       for loss in self.distillation_losses],
            "loss_weights": list(self.loss_weights),
            "teacher_outputs": self.teacher_outputs,
            "mixup": self.mixup,
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
        config["losses"] = [keras.saving.deserialize_keras_object(loss)
                            for loss in config["losses"]]
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
