"""Fine-tuning and linear evaluation (SimCLR Sec. 4.2, App. B.5; SimCLRv2 Sec. 2).

`Classifier` puts a linear classifier (`LinearClassifier`, named
`head_supervised` as in the reference) on a pretrained encoder, optionally
after the first layers of the projection head (SimCLRv2 fine-tunes "from the
middle" of the head), and freezes what should not train. Train it with plain
Keras on `(images, labels)` or `{"image", "label"}` batches (see
`tf_simclr.data.supervised_dataset`):

    model = Classifier(encoder, num_classes=10, fine_tune_after_block=4)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    model.fit(dataset, epochs=90)
    model.evaluate(eval_dataset)  # loss, top1, top5

Freezing (the reference's `--fine_tune_after_block`) sets `layer.trainable =
False` on the frozen layers. In Keras 3 a frozen BatchNormalization also runs
in inference mode when called with `training=True`, so a frozen layer gets no
gradient *and* keeps its moving statistics. Layers are only ever frozen, never
unfrozen, and the encoder and head objects are frozen in place (they are
shared, not copied). The head is frozen when the model is built, and Keras
fixes the trainable variables at `compile` time: a model whose encoder declares
its input (`ResNet`, `keras.applications`) is built when it is created; call
any other once (`model(images)`) before `compile`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# ResNet block groups (`NUM_BLOCK_GROUPS`): `fine_tune_after_block=NUM_BLOCK_GROUPS`
# freezes the whole encoder.
from tf_simclr.choices import BOUNDS, NUM_BLOCK_GROUPS
from tf_simclr.models.fit_compat import BuiltBeforeFit, input_shape_of, multi_worker_logs
from tf_simclr.models.heads import LinearClassifier, ProjectionHead
from tf_simclr.models.resnet import ResNet
from tf_simclr.models.serialization import deserialize_parts, serialize_parts
from tf_simclr.models.steps import replica_scaled_step

_TOP_K = 5


def _frozen_prefixes(fine_tune_after_block: int) -> tuple[str, ...]:
    """Layer-name prefixes of the `ResNet` layers frozen by `fine_tune_after_block` >= 0."""
    return ("stem_",) + tuple(f"block_group{g}_" for g in range(1, fine_tune_after_block + 1))


def _unpack(data) -> tuple[tf.Tensor, tf.Tensor]:
    """`(images, labels)` from a `(images, labels)` tuple or an `{"image", "label"}` dict."""
    if isinstance(data, dict):
        return data["image"], data["label"]
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise ValueError(
        "Classifier expects batches `(images, labels)` or `{'image': ..., 'label': ...}`, "
        f"got {type(data).__name__}"
        + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        + "."
    )


@keras.saving.register_keras_serializable(package="tf_simclr")
class Classifier(BuiltBeforeFit):
    """Encoder (+ first head layers) + linear classifier, with reference freezing semantics.

    Args:
      encoder: images `[B, H, W, 3]` in [0, 1] -> features `[B, D]`; a
        `tf_simclr.models.ResNet` or any Keras model (e.g.
        `keras.applications.ResNet50(include_top=False, pooling="avg")`).
      num_classes: number of logits C (>= 1).
      head: the pretrained projection head, or None. Needed for
        `ft_proj_selector > 0`; when given, its output is also reported.
      ft_proj_selector: what the classifier reads: 0 the encoder output (the
        representation the paper evaluates), k > 0 the output of head layer k,
        i.e. `head.call_with_hiddens(features)[k]` (SimCLRv2: k = 1 of a
        3-layer head). Head layers 1..k are then part of the fine-tuned
        network; layers after k are unused by the classifier and frozen.
      fine_tune_after_block: which part of the encoder trains.
        -1: everything (full fine-tuning);
        k in 0..3: the stem and block groups 1..k are frozen (layers named
          `stem_*` and `block_group{1..k}_*`), only for a `ResNet` encoder;
        4: the whole encoder *and the whole head* are frozen, only the linear
          classifier trains: the linear evaluation protocol. (Deviation: the
          reference stops gradients only inside the ResNet, so with
          `ft_proj_selector > 0` its head layers would still train; here 4
          always means "a linear classifier on a fixed representation".)
      zero_init_logits_layer: zero-initialise the classifier kernel (the
        reference flag of the same name); else RandomNormal(0.01).

    Call:
      images: float `[B, H, W, 3]` in [0, 1] (an `{"image", ...}` dict is also
        accepted, so `predict` works on evaluation batches).
      Returns a dict: `embedding` `[B, D]` encoder output; `logits` `[B, C]`;
      with a head also `projection` `[B, P]`, the head output computed in
      inference mode (it is only reported, never trained here).

    Training (`fit`) minimises the softmax cross-entropy of the logits,
    computed in float32, and reports `loss`, `top1` and `top5` (top-min(5, C)
    accuracy) plus any metrics given to `compile`; `evaluate` reports the same.
    `compile(loss=...)` may only repeat that loss (a sparse categorical
    cross-entropy on logits).
    """

    def __init__(
        self,
        encoder: keras.Model,
        num_classes: int,
        head: ProjectionHead | None = None,
        ft_proj_selector: int = 0,
        fine_tune_after_block: int = -1,
        zero_init_logits_layer: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes!r}.")
        if fine_tune_after_block not in BOUNDS["fine_tune_after_block"]:
            raise ValueError(
                f"`fine_tune_after_block` must be in [-1, {NUM_BLOCK_GROUPS}] (-1: train "
                f"everything, {NUM_BLOCK_GROUPS}: only the linear classifier), "
                f"got {fine_tune_after_block!r}."
            )
        if 0 <= fine_tune_after_block < NUM_BLOCK_GROUPS and not isinstance(encoder, ResNet):
            raise ValueError(
                f"`fine_tune_after_block={fine_tune_after_block}` freezes block groups by the "
                "layer names of tf_simclr.models.ResNet (`stem_*`, `block_group{g}_*`); this "
                f"encoder is a {type(encoder).__name__}, so only -1 (train everything) and "
                f"{NUM_BLOCK_GROUPS} (train only the classifier) are possible."
            )
        if ft_proj_selector < 0:
            raise ValueError(f"`ft_proj_selector` must be >= 0, got {ft_proj_selector!r}.")
        if ft_proj_selector > 0 and head is None:
            raise ValueError(
                f"`ft_proj_selector={ft_proj_selector}` reads a projection-head layer, "
                "but no `head` was given."
            )
        if head is not None and ft_proj_selector > head.num_linear_layers:
            raise ValueError(
                f"`ft_proj_selector` must be in [0, {head.num_linear_layers}] for a "
                f"{head.mode!r} head with {head.num_linear_layers} layer(s), "
                f"got {ft_proj_selector!r}."
            )

        # === Config ===
        self.encoder = encoder
        self.num_classes = num_classes
        self.head = head
        self.ft_proj_selector = ft_proj_selector
        self.fine_tune_after_block = fine_tune_after_block
        self.zero_init_logits_layer = zero_init_logits_layer

        # === Layers ===
        # float32 under any dtype policy: the logits feed a softmax cross-entropy.
        self.supervised_head = LinearClassifier(
            num_classes, zero_init=zero_init_logits_layer, dtype="float32", name="head_supervised"
        )

        # === Metrics ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.top1 = keras.metrics.SparseCategoricalAccuracy(name="top1")
        self.top5 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=min(_TOP_K, num_classes), name="top5"
        )

        self._freeze_encoder()
        # Built (and the head frozen) now when the encoder declares its input, as
        # ResNet and keras.applications models do; otherwise by the first call or `fit`.
        images_shape = input_shape_of(encoder)
        if images_shape is not None:
            self.build(images_shape)

    # --- Freezing --------------------------------------------------------------------

    def _freeze_encoder(self) -> None:
        k = self.fine_tune_after_block
        if k == NUM_BLOCK_GROUPS:
            self.encoder.trainable = False
        elif k >= 0:  # a ResNet (checked in __init__)
            prefixes = _frozen_prefixes(k)
            for layer in self.encoder.layers:
                if layer.name.startswith(prefixes):
                    layer.trainable = False

    def _freeze_head(self) -> None:
        """Freezes the head layers the classifier does not train (needs a built head)."""
        if self.head is None:
            return
        first_frozen = (
            0 if self.fine_tune_after_block == NUM_BLOCK_GROUPS else self.ft_proj_selector
        )
        for dense, bn in list(zip(self.head.denses, self.head.bns, strict=True))[first_frozen:]:
            dense.trainable = False
            bn.trainable = False

    def build(self, images_shape):
        if isinstance(images_shape, dict):  # built by a call on an {"image", ...} batch
            images_shape = images_shape["image"]
        features_shape = tuple(self.encoder.compute_output_shape(tuple(images_shape)))
        if self.head is not None and not self.head.built:
            self.head.build(features_shape)
        if not self.supervised_head.built:
            if self.ft_proj_selector > 0:
                units = self.head.denses[self.ft_proj_selector - 1].units
                self.supervised_head.build((*features_shape[:-1], units))
            else:
                self.supervised_head.build(features_shape)
        self._freeze_head()

    # --- Forward ---------------------------------------------------------------------

    def call(self, images, training=False):
        if isinstance(images, dict):
            images = images["image"]
        return self.outputs_from_features(self.encoder(images, training=training), training)

    def outputs_from_features(self, features, training=False) -> dict:
        """`call`'s outputs from the encoder's output `features` `[B, D]`."""
        outputs = {"embedding": features}
        classifier_inputs = features
        if self.head is not None:
            hiddens = self.head.call_with_hiddens(features, training=False)
            outputs["projection"] = hiddens[-1]
            if self.ft_proj_selector > 0:
                if training:
                    # Frozen head layers (after the selector) run in inference mode anyway.
                    hiddens = self.head.call_with_hiddens(features, training=True)
                classifier_inputs = hiddens[self.ft_proj_selector]
        outputs["logits"] = self.supervised_head(classifier_inputs, training=training)
        return outputs

    # --- Training --------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Keras `compile`; the loss is built in, so `loss` may only restate it."""
        if loss is not None and not (
            isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
            and getattr(loss, "from_logits", False)
        ):
            raise ValueError(
                "Classifier always minimises the softmax cross-entropy of its logits; pass "
                "no loss or `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`, "
                f"got {loss!r}."
            )
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile() when loading a model that overrides it; ours only
        # checks `loss`, so compiling from the saved config is safe.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)  # to receive the saved slots

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean softmax cross-entropy (float32 scalar) of this replica's batch."""
        logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
        logits = tf.cast(logits, tf.float32)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(y, tf.int64), logits=logits
            )
        )

    @property
    def metrics(self):
        own = [self.loss_tracker, self.top1, self.top5]
        # Metrics given to compile() (Keras holds them in one "compile_metrics"
        # object); Keras' own "loss" tracker is replaced by ours.
        compiled = [m for m in super().metrics if m not in own and m.name != "loss"]
        return own + compiled

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates top1/top5 and compiled metrics from the logits; returns all results."""
        if y is None and isinstance(x, dict):  # Keras' own symbolic build passes dict batches
            y = x["label"]
        logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
        self.top1.update_state(y, logits)
        self.top5.update_state(y, logits)
        return super().compute_metrics(x, y, logits, sample_weight)

    def _update_loss(self, loss, labels) -> None:
        # Weighted by the batch size, so the epoch loss is the mean over examples
        # (exact over a last partial batch and over unequal replica shards).
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(labels)[0])

    def train_step(self, data):
        images, labels = _unpack(data)

        def forward():
            outputs = self(images, training=True)
            loss = self.compute_loss(y=labels, y_pred=outputs)
            return loss, (loss, outputs)

        (loss, outputs), learning_rate = replica_scaled_step(self, forward)
        self._update_loss(loss, labels)
        logs = self.compute_metrics(images, labels, outputs)
        logs["learning_rate"] = learning_rate
        return multi_worker_logs(logs)

    def test_step(self, data):
        images, labels = _unpack(data)
        outputs = self(images, training=False)
        self._update_loss(self.compute_loss(y=labels, y_pred=outputs, training=False), labels)
        return self.compute_metrics(images, labels, outputs)

    # --- Serialization ---------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **serialize_parts(encoder=self.encoder, head=self.head),
                "num_classes": self.num_classes,
                "ft_proj_selector": self.ft_proj_selector,
                "fine_tune_after_block": self.fine_tune_after_block,
                "zero_init_logits_layer": self.zero_init_logits_layer,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_parts(config, "encoder", "head"))


def freeze_report(model: keras.Model) -> dict[str, list[str]]:
    """Which layers of `model` train: `{"trainable": [...], "frozen": [...]}`.

    Lists the paths of the layers that own variables, in model order. A layer
    trains when at least one of its variables is in `model.trainable_variables`
    (a trainable BatchNormalization trains gamma and beta; its moving
    statistics never are trainable variables), and is frozen otherwise. For
    logging, e.g. `len(freeze_report(model)["frozen"])`.
    """
    layer_of = lambda variable: variable.path.rsplit("/", 1)[0]
    trainable = dict.fromkeys(layer_of(v) for v in model.trainable_variables)
    every = dict.fromkeys(layer_of(v) for v in model.weights)
    return {
        "trainable": [name for name in every if name in trainable],
        "frozen": [name for name in every if name not in trainable],
    }
