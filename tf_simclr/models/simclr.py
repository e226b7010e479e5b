"""The SimCLR Keras model: encoder + projection head + optional linear probe.

Train it with plain `model.fit(dataset)`: `train_step` is overridden to run one
forward pass over both views, the NT-Xent loss and the online linear probe. It
logs `loss` (NT-Xent), `probe_loss`, `weight_decay` and `total_loss` (their sum,
as the reference logs it; see `steps.reference_weight_decay`).
The dataset yields `{"view1": [B, S, S, 3], "view2": [B, S, S, 3], "label": [B]}`
float images in [0, 1] (see `tf_simclr.data.pretrain_dataset`), or, for a model
built with `augment=AugmentConfig(...)`, `{"image": [B, H, W, 3], "label": [B]}`
decoded images that the train step augments itself, on the accelerator
(`pretrain_dataset(..., augment_impl="device")` with
`SimCLR(..., augment=tf_simclr.data.DeviceViews(augment_config))`).

Any Keras model mapping images to a feature vector `[B, D]` can serve as the
encoder, e.g. `keras.applications.ResNet50(include_top=False, weights=None,
pooling="avg")`; `tf_simclr.models.ResNet` is the reference architecture.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from tf_simclr import losses
from tf_simclr.choices import BOUNDS
from tf_simclr.models.fit_compat import BuiltBeforeFit, input_shape_of, multi_worker_logs
from tf_simclr.models.heads import LinearClassifier, ProjectionHead
from tf_simclr.models.serialization import deserialize_parts, serialize_parts
from tf_simclr.models.steps import reference_weight_decay, replica_scaled_step


@keras.saving.register_keras_serializable(package="tf_simclr")
class SimCLR(BuiltBeforeFit):
    """SimCLR pretraining model (Chen et al. 2020, Sec. 2.1; SimCLRv2 head).

    Args:
      encoder: images `[B, H, W, 3]` in [0, 1] -> features `[B, D]`.
      head: the projection head g(.) (`ProjectionHead(mode="none")` for the
        paper's "no projection" ablation).
      num_classes: classes of the online linear probe; 0 disables the probe
        (unlabeled data).
      temperature: NT-Xent temperature tau.
      hidden_norm: l2-normalise projections (cosine similarity).
      ft_proj_selector: which output of `head.call_with_hiddens` the probe
        reads: 0 is the encoder output (the representation the paper
        evaluates), k > 0 the output of head layer k.
      augment: if given, `train_step` takes batches of decoded images
        (`{"image", "label"}`) and makes the two views itself by calling
        `augment(batch, seed)` -> `{"view1", "view2", "label"}`, e.g.
        `tf_simclr.data.DeviceViews(AugmentConfig(...))`. A serializable
        object (`get_config`) keeps the model serializable.
      augment_seed: seed of those views (see `device_views`).
    """

    def __init__(
        self,
        encoder: keras.Model,
        head: ProjectionHead,
        num_classes: int = 0,
        temperature: float = 0.1,
        hidden_norm: bool = True,
        ft_proj_selector: int = 0,
        augment: Callable[[dict, tf.Tensor], dict] | None = None,
        augment_seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(augment, dict):  # a serialized augment object (from get_config)
            augment = keras.saving.deserialize_keras_object(augment)
        if augment is not None and not callable(augment):
            raise TypeError(
                "augment must be a callable (batch, seed) -> views, e.g. "
                f"tf_simclr.data.DeviceViews(AugmentConfig(...)); got {type(augment).__name__}"
            )
        if temperature not in BOUNDS["temperature"]:
            raise ValueError(f"temperature must be {BOUNDS['temperature']}, got {temperature}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.encoder = encoder
        self.head = head
        self.num_classes = num_classes
        self.temperature = temperature
        self.hidden_norm = hidden_norm
        self.ft_proj_selector = ft_proj_selector
        self.augment = augment
        self.augment_seed = augment_seed
        # Named head_supervised like the reference so optimizers can find it by path;
        # float32 under any global dtype policy (its logits feed a softmax).
        self.probe = (
            LinearClassifier(num_classes, dtype="float32", name="head_supervised")
            if num_classes > 0
            else None
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.contrast_acc = keras.metrics.Mean(name="contrast_acc")
        self.contrast_entropy = keras.metrics.Mean(name="contrast_entropy")
        self.probe_loss = keras.metrics.Mean(name="probe_loss")
        self.probe_acc = keras.metrics.SparseCategoricalAccuracy(name="probe_acc")
        # As the reference logs them: the weight-decay loss term and contrastive + probe +
        # that term (see `reference_weight_decay`).
        self.weight_decay = keras.metrics.Mean(name="weight_decay")
        self.total_loss = keras.metrics.Mean(name="total_loss")
        # Built now when the encoder declares its input (ResNet, keras.applications), so
        # standard callbacks and `save` work on a model that was never called; otherwise
        # built by the first call, or by `fit` from the first batch's spec.
        images_shape = input_shape_of(encoder)
        if images_shape is not None:
            self.build(images_shape)

    def build(self, images_shape):
        """Builds the encoder, head and probe for images `[B, H, W, 3]`."""
        # A symbolic forward pass (KerasTensors: no computation) builds what is unbuilt.
        images = keras.KerasTensor(images_shape, dtype="float32")
        features = self.encoder(images, training=False)
        hiddens = self.head.call_with_hiddens(features, training=False)
        if self.probe is not None:
            self.probe(hiddens[self.ft_proj_selector], training=False)

    def _images_spec(self, inputs_spec):
        """The views' spec in a `{"view1", "view2", "label"}` batch; for a model that
        augments on the device, the spec of the views `augment` makes of the batch."""
        if not isinstance(inputs_spec, dict):
            return super()._images_spec(inputs_spec)
        if self.augment is not None and "image" in inputs_spec:
            seed = tf.TensorSpec([2], tf.int64)
            views = tf.function(self.augment).get_concrete_function(inputs_spec, seed)
            inputs_spec = views.structured_outputs
            inputs_spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in inputs_spec.items()}
        return inputs_spec.get("view1")

    @property
    def metrics(self):
        tracked = [self.loss_tracker, self.contrast_acc, self.contrast_entropy]
        if self.probe is not None:
            tracked += [self.probe_loss, self.probe_acc]
        return tracked + [self.weight_decay, self.total_loss]

    def call(self, images, training=False):
        """images `[B, H, W, 3]` in [0, 1] -> dict of `embedding` `[B, D]`,
        `projection` `[B, out_dim]` and, with a probe, `logits` `[B, classes]`."""
        return self.outputs_from_features(self.encoder(images, training=training), training)

    def outputs_from_features(self, features, training=False) -> dict:
        """`call`'s outputs from the encoder's output `features` `[B, D]`."""
        hiddens = self.head.call_with_hiddens(features, training=training)
        outputs = {"embedding": features, "projection": hiddens[-1]}
        if self.probe is not None:
            outputs["logits"] = self.probe(hiddens[self.ft_proj_selector], training=training)
        return outputs

    def device_views(self, data: dict) -> dict:
        """`{"image", "label"}` -> `{"view1", "view2", "label"}` with `self.augment`.

        The views are drawn from stateless random ops whose seed is
        (`augment_seed`, optimizer step) folded with the replica id: each step
        and each replica gets its own views (replicas hold different images,
        but must not share random draws either), and a resumed run draws the
        same views as an uninterrupted one.
        """
        step = tf.cast(self.optimizer.iterations, tf.int64)
        seed = tf.stack([tf.constant(self.augment_seed, tf.int64), step])
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int64))
        return self.augment(data, seed)

    def train_step(self, data):
        if self.augment is not None:
            data = self.device_views(data)
        view1, view2 = data["view1"], data["view2"]
        n = tf.shape(view1)[0]
        weight_decay = reference_weight_decay(self)  # of the weights this step starts from

        def forward():
            # One forward pass over both views, so BatchNorm sees all 2N images.
            features = self.encoder(tf.concat([view1, view2], 0), training=True)
            hiddens = self.head.call_with_hiddens(features, training=True)
            proj = hiddens[-1]
            contrast = losses.nt_xent(
                proj[:n], proj[n:], temperature=self.temperature, hidden_norm=self.hidden_norm
            )
            if self.probe is None:
                return contrast.loss, (contrast, None, None, None)
            labels = tf.concat([data["label"], data["label"]], 0)
            # Stop-gradient: the probe measures the representation without shaping it.
            logits = self.probe(tf.stop_gradient(hiddens[self.ft_proj_selector]), training=True)
            logits = tf.cast(logits, tf.float32)
            probe_loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
            return contrast.loss + probe_loss, (contrast, labels, logits, probe_loss)

        (contrast, labels, logits, probe_loss), learning_rate = replica_scaled_step(self, forward)

        self.loss_tracker.update_state(contrast.loss)
        self.contrast_acc.update_state(
            losses.contrastive_accuracy(contrast.logits, contrast.labels)
        )
        self.contrast_entropy.update_state(losses.contrastive_entropy(contrast.logits))
        total = contrast.loss + weight_decay
        if self.probe is not None:
            self.probe_loss.update_state(probe_loss)
            self.probe_acc.update_state(labels, logits)
            total += probe_loss
        self.weight_decay.update_state(weight_decay)
        self.total_loss.update_state(total)
        logs = {m.name: m.result() for m in self.metrics}
        logs["learning_rate"] = learning_rate
        return multi_worker_logs(logs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **serialize_parts(encoder=self.encoder, head=self.head),
                "num_classes": self.num_classes,
                "temperature": self.temperature,
                "hidden_norm": self.hidden_norm,
                "ft_proj_selector": self.ft_proj_selector,
                "augment": (
                    None
                    if self.augment is None
                    else keras.saving.serialize_keras_object(self.augment)
                ),
                "augment_seed": self.augment_seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_parts(config, "encoder", "head"))
