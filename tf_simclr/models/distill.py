"""Distillation (SimCLRv2 Sec. 2.3, eq. 2): a student learns the teacher's softened predictions.

    loss = -sum_y softmax(t / T)_y * log softmax(s / T)_y        (per image, averaged)
         + label_weight * cross_entropy(labels, s)               (labelled images only)

with t the teacher's and s the student's logits and T the temperature. The
paper's main results use T = 1 and no label term, on every training image with
its label ignored ("self-training on unlabelled data").

`Distiller` trains the student only. The teacher runs in inference mode
(BatchNorm statistics fixed), receives no gradient, and is held outside the
Keras and TensorFlow object graphs, so it appears in neither
`trainable_variables` nor the checkpoints and weights files of the distiller.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_simclr.choices import BOUNDS
from tf_simclr.models.fit_compat import BuiltBeforeFit, input_shape_of, multi_worker_logs
from tf_simclr.models.steps import replica_scaled_step


class _Untracked:
    """Holds a model without making it a tracked dependency of its owner."""

    def __init__(self, model: keras.Model):
        self.model = model


def distillation_loss(teacher_logits, student_logits, temperature: float) -> tf.Tensor:
    """Mean over the batch of the cross-entropy of softmax(t/T) against softmax(s/T).

    Args:
      teacher_logits, student_logits: float `[B, C]`.
      temperature: T > 0.

    Returns:
      float32 scalar.
    """
    teacher = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    student = tf.cast(student_logits, tf.float32) / temperature
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=teacher, logits=student))


class Distiller(BuiltBeforeFit):
    """Trains `student` on `teacher`'s predictions; `call` is the student's.

    Args:
      student: a model returning a dict with `"logits"` `[B, C]` (a `Classifier`).
      teacher: any model returning `"logits"` `[B, C]` with the same C (a fine-tuned
        `Classifier`, or a `SimCLR` with its probe); never trained.
      temperature: T of both softmaxes (> 0; the paper: 1).
      label_weight: weight of the supervised cross-entropy on the images whose label
        is >= 0 (labels of -1 count as unlabelled); 0 ignores the labels.

    Batches are `{"image": [B, S, S, 3] in [0, 1], "label": [B]}` (labels may be -1).
    Logs: `loss`, `distill_loss`, `label_loss` (with a label weight), `agreement`
    (how often the student's top class is the teacher's), `learning_rate`;
    `evaluate` reports the same (the student in inference mode), without the rate.

    The distiller is built when its student is (a `Classifier` on our `ResNet` is built
    when created), else by `fit`; its weights are the student's, so `save_weights`,
    `load_weights` and `keras.callbacks.BackupAndRestore` store and restore the student
    (and the optimizer) and never the teacher. For the same reason it is not saved as a
    whole (`.keras`): save `distiller.student`.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        temperature: float = 1.0,
        label_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # The bounds of the flags that feed them: --distill_temperature, --distill_label_weight.
        if temperature not in BOUNDS["distill_temperature"]:
            raise ValueError(
                f"temperature must be {BOUNDS['distill_temperature']}, got {temperature}"
            )
        if label_weight not in BOUNDS["distill_label_weight"]:
            raise ValueError(
                f"label_weight must be {BOUNDS['distill_label_weight']}, got {label_weight}"
            )
        self.student = student
        self._teacher = _Untracked(teacher)
        self.temperature = temperature
        self.label_weight = label_weight
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")
        self.label_tracker = keras.metrics.Mean(name="label_loss")
        self.agreement = keras.metrics.Mean(name="agreement")
        # Built now when the student is, as SimCLR and Classifier are: `load_weights`
        # refuses an unbuilt model, e.g. a new distiller restoring a saved one.
        if student.built:
            self.build(input_shape_of(getattr(student, "encoder", student)))

    def build(self, images_shape=None):
        if not self.student.built:
            self.student.build(images_shape)

    def get_config(self):
        raise NotImplementedError(
            "A Distiller is not saved as a whole: its teacher is held outside it on "
            "purpose. Save the student (`distiller.student.save(path)`), or the "
            "distiller's weights (`save_weights`, the student's only)."
        )

    @property
    def teacher(self) -> keras.Model:
        return self._teacher.model

    def __dir__(self):
        # Keras's weights files (`save_weights`, `BackupAndRestore`) save every Keras
        # object that `dir()` names, properties included: without this, the teacher.
        return [name for name in super().__dir__() if name != "teacher"]

    @property
    def metrics(self):
        tracked = [self.loss_tracker, self.distill_tracker, self.agreement]
        return tracked + ([self.label_tracker] if self.label_weight > 0 else [])

    def call(self, images, training=False):
        return self.student(images, training=training)

    def teacher_logits(self, images) -> tf.Tensor:
        """The teacher's float32 logits, in inference mode and without gradient."""
        outputs = self.teacher(images, training=False)
        return tf.stop_gradient(tf.cast(outputs["logits"], tf.float32))

    def _unpack(self, data) -> tuple[tf.Tensor, tf.Tensor]:
        if isinstance(data, (tuple, list)):  # `(batch, None, None)` from train_on_batch
            data = data[0] if isinstance(data[0], dict) else {"image": data[0], "label": data[1]}
        return data["image"], tf.cast(data["label"], tf.int64)

    def _loss_terms(self, images, labels, teacher_logits, training: bool):
        """(total loss, (total loss, student logits, distillation loss, label loss or None))."""
        student_logits = tf.cast(self.student(images, training=training)["logits"], tf.float32)
        distill = distillation_loss(teacher_logits, student_logits, self.temperature)
        if self.label_weight == 0:
            return distill, (distill, student_logits, distill, None)
        labelled = tf.cast(labels >= 0, tf.float32)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(labels, 0), logits=student_logits
        )
        supervised = tf.reduce_sum(cross_entropy * labelled) / tf.maximum(
            tf.reduce_sum(labelled), 1.0
        )
        total = distill + self.label_weight * supervised
        return total, (total, student_logits, distill, supervised)

    def _update_metrics(self, total, student_logits, distill, supervised, teacher_logits) -> dict:
        self.loss_tracker.update_state(total)
        self.distill_tracker.update_state(distill)
        if supervised is not None:
            self.label_tracker.update_state(supervised)
        same = tf.equal(tf.argmax(student_logits, -1), tf.argmax(teacher_logits, -1))
        self.agreement.update_state(tf.reduce_mean(tf.cast(same, tf.float32)))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        images, labels = self._unpack(data)
        teacher_logits = self.teacher_logits(images)
        forward = lambda: self._loss_terms(images, labels, teacher_logits, training=True)
        terms, learning_rate = replica_scaled_step(self, forward)
        logs = self._update_metrics(*terms, teacher_logits)
        logs["learning_rate"] = learning_rate
        return multi_worker_logs(logs)

    def test_step(self, data):
        images, labels = self._unpack(data)
        teacher_logits = self.teacher_logits(images)
        _, terms = self._loss_terms(images, labels, teacher_logits, training=False)
        return self._update_metrics(*terms, teacher_logits)
