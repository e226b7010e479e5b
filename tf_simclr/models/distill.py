"""Distillation (SimCLRv2 Sec. 2.3, eq. 2): a student learns the teacher's softened predictions.

    loss = -sum_y softmax(t / T)_y * log softmax(s / T)_y        (per image, averaged)
         + label_weight * cross_entropy(labels, s)               (labelled images only)

with t the teacher's and s the student's logits and T the temperature. The
paper's main results use T = 1 and no label term, on every training image with
its label ignored ("self-training on unlabelled data").

`Distiller` trains the student only. The teacher runs in inference mode
(BatchNorm statistics fixed), receives no gradient, and is held outside the
Keras and TensorFlow object graphs, so it appears in neither
`trainable_variables` nor checkpoints of the student.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_simclr.models.fit_compat import BuiltBeforeFit, multi_worker_logs
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
    (how often the student's top class is the teacher's), `learning_rate`.
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
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if label_weight < 0:
            raise ValueError(f"label_weight must be >= 0, got {label_weight}")
        self.student = student
        self._teacher = _Untracked(teacher)
        self.temperature = temperature
        self.label_weight = label_weight
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")
        self.label_tracker = keras.metrics.Mean(name="label_loss")
        self.agreement = keras.metrics.Mean(name="agreement")

    @property
    def teacher(self) -> keras.Model:
        return self._teacher.model

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

    def train_step(self, data):
        if isinstance(data, (tuple, list)):  # `(batch, None, None)` from train_on_batch
            data = data[0] if isinstance(data[0], dict) else {"image": data[0], "label": data[1]}
        images, labels = data["image"], tf.cast(data["label"], tf.int64)
        teacher_logits = self.teacher_logits(images)

        def forward():
            student_logits = tf.cast(self.student(images, training=True)["logits"], tf.float32)
            distill = distillation_loss(teacher_logits, student_logits, self.temperature)
            if self.label_weight == 0:
                return distill, (student_logits, distill, None)
            labelled = tf.cast(labels >= 0, tf.float32)
            cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.maximum(labels, 0), logits=student_logits
            )
            supervised = tf.reduce_sum(cross_entropy * labelled) / tf.maximum(
                tf.reduce_sum(labelled), 1.0
            )
            return distill + self.label_weight * supervised, (student_logits, distill, supervised)

        (student_logits, distill, supervised), learning_rate = replica_scaled_step(self, forward)
        total = distill if supervised is None else distill + self.label_weight * supervised
        self.loss_tracker.update_state(total)
        self.distill_tracker.update_state(distill)
        if supervised is not None:
            self.label_tracker.update_state(supervised)
        same = tf.equal(tf.argmax(student_logits, -1), tf.argmax(teacher_logits, -1))
        self.agreement.update_state(tf.reduce_mean(tf.cast(same, tf.float32)))
        logs = {m.name: m.result() for m in self.metrics}
        logs["learning_rate"] = learning_rate
        return multi_worker_logs(logs)
