"""ResNet v1 encoder following the official google-research/simclr `resnet.py`.

The encoder maps images to pooled features and nothing else; projection heads
and classifiers live in `tf_simclr.models.heads`.

Inputs are float images of shape `[B, H, W, 3]` with values in `[0, 1]`. As in
the reference implementation, SimCLR feeds `[0, 1]` images straight into the
network without mean/std normalisation (the first BatchNormalization absorbs
the scale). Outputs are globally average-pooled features `[B, feature_dim]`.

Layer names encode the position in the network so that callers can select
parameters by path:

- `stem_conv`, `stem_bn`, ... for the stem;
- `block_group{g}_block{b}_{conv1,bn1,...,shortcut_conv,shortcut_bn,...}` for
  residual block `b` of stage `g` (g in 1..4), so a stage is selected by the
  name prefix `block_group{g}` (used to freeze "everything up to block N");
- with `sk_ratio > 0` (SimCLRv2's ResNet-SK): `stem_conv{1,2,3}`/`stem_bn{1,2,3}`
  for the ResNet-D stem, `..._shortcut_pool` before the projection conv, and
  `..._sk_conv`, `..._sk_bn`, `..._sk_gate_conv1`, `..._sk_gate_bn`,
  `..._sk_gate_conv2`, `..._sk_mix` in place of a bottleneck's `conv2`/`bn2`;
- with `se_ratio > 0`: `..._se_pool`, `..._se_reduce`, `..._se_relu`,
  `..._se_expand`, `..._se_gate`, `..._se_scale` after the last BN of the
  residual branch;
- every BatchNormalization layer name contains `bn` (LARS excludes BN
  variables from weight decay and trust-ratio adaptation by path).

BatchNormalization layers are `FusedBatchNormalization`, the Keras layer
computed with TensorFlow's fused kernel (same variables and semantics, about
half the step time of the Keras ops on a CPU; see `batch_norm.py`).

Deviations from the reference, all deliberate:

- The width multiplier may be fractional (e.g. 0.125) so tests and smoke runs
  can use tiny networks; channels are `max(1, round(base * width_multiplier))`.
  The reference only uses integer multipliers, for which this is identical.
- The reference's `stop_gradient` after block group N (fine-tuning) is not
  built into the graph; callers freeze layers by the `block_group{g}` prefix.
- The reference's DropBlock (off in every published model) is not implemented.
- Under a `mixed_*` policy the SK and SE global means and the SK softmax are
  computed in float32 (the reference has no mixed precision).

Selective kernels (`sk_ratio > 0`) follow the reference exactly: the ResNet-D
stem and average-pool shortcuts (He et al. 2019, "Bag of Tricks", Fig. 2) in
every network, basic-block ResNet-18/34 included, and the selective-kernel 3x3
conv (Li et al. 2019) in bottleneck blocks only; the reference's basic block
has no SK conv. SimCLRv2 (Chen et al. 2020, Section 4) uses sk_ratio 0.0625.
"""

from __future__ import annotations

import keras

# PRECISIONS: the Keras dtype policies the encoder can compute in; BLOCKS_PER_GROUP: the
# blocks per stage of each supported depth.
from tf_simclr.choices import BLOCKS_PER_GROUP, BOUNDS, PRECISIONS  # noqa: F401
from tf_simclr.models.batch_norm import FusedBatchNormalization, check_batch_norm_decay

# Depths below this use the basic (two 3x3 convs) block, others the bottleneck.
_MIN_BOTTLENECK_DEPTH = 50
_GROUP_FILTERS = (64, 128, 256, 512)
_GROUP_STRIDES = (1, 2, 2, 2)
_STEM_FILTERS = 64
_BOTTLENECK_EXPANSION = 4
# Fewest channels of the selective-kernel gate's hidden layer (reference `min_dim`).
_SK_MIN_GATE_CHANNELS = 32


def min_image_size(cifar_stem: bool) -> int:
    """Smallest input height/width the encoder is meant to be used with.

    The CIFAR stem keeps full resolution and the three strided stages divide it
    by 8; the ImageNet stem (stride-2 conv + stride-2 max-pool) divides by 32.
    Below these sizes the last stage would see less than one pixel per output
    position. Checking the size is left to the caller.
    """
    return 8 if cifar_stem else 32


def scaled_channels(base: int, width_multiplier: float) -> int:
    """Number of channels for a layer with `base` channels at width 1."""
    return max(1, int(round(base * width_multiplier)))


@keras.saving.register_keras_serializable(package="tf_simclr")
class ResNet(keras.Model):
    """ResNet v1 encoder (SimCLR reference variant) returning pooled features.

    Args:
        depth: One of 18, 34, 50, 101, 152, 200. 18 and 34 use basic blocks,
            50 and deeper use bottleneck blocks.
        width_multiplier: Channel multiplier (> 0); 1.0 is the standard ResNet,
            SimCLR also uses 2 and 4. Fractions give tiny test networks.
        cifar_stem: If True, the stem is a 3x3 stride-1 conv without max-pool
            (SimCLR paper, Appendix B.9, CIFAR-10); else the ImageNet stem
            (7x7 stride-2 conv + 3x3 stride-2 max-pool).
        batch_norm_decay: BatchNormalization momentum for the moving
            statistics (reference default 0.9).
        batch_norm_epsilon: BatchNormalization epsilon (reference 1e-5).
        synchronized_bn: If True, every BatchNormalization is created with
            `synchronized=True`, i.e. batch statistics are aggregated across
            replicas under a `tf.distribute` strategy ("global BN", SimCLR
            paper Section 2.3).
        sk_ratio: Selective-kernel ratio (>= 0). 0 gives the plain ResNet v1;
            > 0 (SimCLRv2 uses 0.0625) gives the ResNet-D stem (three 3x3
            convs) and average-pool projection shortcuts, and replaces the 3x3
            conv of each bottleneck block by a selective-kernel conv whose gate
            has `max(int(filters * sk_ratio), 32)` hidden channels.
        se_ratio: Squeeze-excitation ratio (>= 0). > 0 adds an SE layer with
            `max(1, int(filters * se_ratio))` hidden channels at the end of
            every residual branch (`filters` is the block's base width, also
            in bottleneck blocks, as in the reference). 0 disables it.
        dtype: Keras dtype policy (a name such as `"mixed_bfloat16"` or a
            `keras.DTypePolicy`) given to every layer; None takes the global
            policy. Under a `mixed_*` policy weights stay float32 and the
            convolutions compute in bfloat16/float16; BatchNormalization
            computes its statistics in float32 (fused kernel), and
            the final average pooling is always float32, so the features are
            float32 whatever the policy.
        name: Model name.

    Call:
        images: float `[B, H, W, 3]` in `[0, 1]`, H and W at least
            `min_image_size(cifar_stem)`.
        Returns float32 `[B, feature_dim]`.

    Attributes:
        feature_dim: Channels of the output, `512 * w` for depths 18/34 and
            `2048 * w` for 50 and deeper (w = width multiplier).
    """

    def __init__(
        self,
        depth: int,
        width_multiplier: float = 1.0,
        cifar_stem: bool = False,
        batch_norm_decay: float = 0.9,
        batch_norm_epsilon: float = 1e-5,
        synchronized_bn: bool = False,
        sk_ratio: float = 0.0,
        se_ratio: float = 0.0,
        dtype: str | keras.DTypePolicy | None = None,
        name: str = "resnet",
        **kwargs,
    ):
        if depth not in BLOCKS_PER_GROUP:
            raise ValueError(
                f"Unsupported ResNet depth {depth!r}; allowed depths are "
                f"{sorted(BLOCKS_PER_GROUP)}."
            )
        bound = BOUNDS["width_multiplier"]
        if width_multiplier not in bound:
            raise ValueError(f"`width_multiplier` must be {bound}, got {width_multiplier!r}.")
        check_batch_norm_decay(batch_norm_decay)
        if not batch_norm_epsilon > 0:
            raise ValueError(f"`batch_norm_epsilon` must be > 0, got {batch_norm_epsilon!r}.")
        # (`field`, not `name`: that is the layer's name argument, passed on below.)
        for field, value in (("sk_ratio", sk_ratio), ("se_ratio", se_ratio)):
            if value not in BOUNDS[field]:
                raise ValueError(f"{field} must be {BOUNDS[field]}, got {value}")

        # Resolved now, so the policy is fixed at construction, not at first call.
        policy = keras.dtype_policies.get(dtype) if dtype is not None else None
        policy = policy or keras.config.dtype_policy()
        bottleneck = depth >= _MIN_BOTTLENECK_DEPTH
        builder = _Builder(
            width_multiplier=width_multiplier,
            batch_norm_decay=batch_norm_decay,
            batch_norm_epsilon=batch_norm_epsilon,
            synchronized_bn=synchronized_bn,
            sk_ratio=sk_ratio,
            se_ratio=se_ratio,
            dtype=policy,
        )

        # === Functional model ===
        inputs = keras.Input(shape=(None, None, 3), name="images")
        x = builder.stem(inputs, cifar_stem)
        for group, (num_blocks, base_filters, stride) in enumerate(
            zip(BLOCKS_PER_GROUP[depth], _GROUP_FILTERS, _GROUP_STRIDES, strict=True), start=1
        ):
            block_fn = builder.bottleneck_block if bottleneck else builder.basic_block
            for block in range(num_blocks):
                x = block_fn(
                    x,
                    filters=scaled_channels(base_filters, width_multiplier),
                    # The reference strides only the first block of a group and
                    # gives it a projection shortcut even when the shapes
                    # already match (group 1 of ResNet-18/34).
                    strides=stride if block == 0 else 1,
                    use_projection=block == 0,
                    prefix=f"block_group{group}_block{block}_",
                )
        # float32 features under any policy: the mean over the last feature map is
        # taken in float32, and the head, probe and loss downstream read float32.
        outputs = keras.layers.GlobalAveragePooling2D(dtype="float32", name="avg_pool")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        # A functional model ignores `dtype`; record the policy its layers use.
        self.dtype_policy = policy

        # === Config ===
        self.depth = depth
        self.width_multiplier = width_multiplier
        self.cifar_stem = cifar_stem
        self.batch_norm_decay = batch_norm_decay
        self.batch_norm_epsilon = batch_norm_epsilon
        self.synchronized_bn = synchronized_bn
        self.sk_ratio = sk_ratio
        self.se_ratio = se_ratio
        expansion = _BOTTLENECK_EXPANSION if bottleneck else 1
        self.feature_dim = expansion * scaled_channels(_GROUP_FILTERS[-1], width_multiplier)

    def get_config(self) -> dict:
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "depth": self.depth,
            "width_multiplier": self.width_multiplier,
            "cifar_stem": self.cifar_stem,
            "batch_norm_decay": self.batch_norm_decay,
            "batch_norm_epsilon": self.batch_norm_epsilon,
            "synchronized_bn": self.synchronized_bn,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        # Written only when used, so a plain ResNet's config is the same as
        # before these options existed (and equal to the configs saved then).
        if self.sk_ratio:
            config["sk_ratio"] = self.sk_ratio
        if self.se_ratio:
            config["se_ratio"] = self.se_ratio
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> ResNet:
        return cls(**config)

    # --- Intermediate outputs, under the reference's names ------------------------------

    def endpoint_layers(self) -> dict[str, str]:
        """The reference SavedModel's intermediate outputs -> the layer that computes each.

        `initial_conv` is the stem's last convolution (before its BN), `initial_max_pool`
        the stem's output (the CIFAR stem has no pooling: its ReLU), `block_group{g}` the
        output of group g's last block.
        """
        if self.cifar_stem:
            names = {"initial_conv": "stem_conv", "initial_max_pool": "stem_relu"}
        elif self.sk_ratio:
            names = {"initial_conv": "stem_conv3", "initial_max_pool": "stem_pool"}
        else:
            names = {"initial_conv": "stem_conv", "initial_max_pool": "stem_pool"}
        for group, blocks in enumerate(BLOCKS_PER_GROUP[self.depth], start=1):
            names[f"block_group{group}"] = f"block_group{group}_block{blocks - 1}_out"
        return names

    def call_with_endpoints(self, images, training=False) -> dict:
        """One forward pass returning the reference's named outputs (`endpoint_layers`) and
        `final_avg_pool`, the features `call` returns. Feature maps are `[B, h, w, C]` in the
        compute dtype; `final_avg_pool` is float32 `[B, feature_dim]`."""
        names = self.endpoint_layers()
        # A functional model over the same layers (no new variables), built per call and
        # not kept: an attribute would be tracked as part of the encoder.
        # Its input is the tensor, not the list `self.inputs`: called with one tensor, a model
        # whose inputs are a list warns that the structures differ, at every call.
        probe = keras.Model(
            self.input, [self.get_layer(name).output for name in names.values()] + self.outputs
        )
        values = probe(images, training=training)
        return dict(zip([*names, "final_avg_pool"], values, strict=True))


class _Builder:
    """Creates the layers of one ResNet with shared BN/width/SK/SE settings."""

    def __init__(
        self,
        width_multiplier: float,
        batch_norm_decay: float,
        batch_norm_epsilon: float,
        synchronized_bn: bool,
        sk_ratio: float,
        se_ratio: float,
        dtype: keras.DTypePolicy,
    ):
        self.width_multiplier = width_multiplier
        self.batch_norm_decay = batch_norm_decay
        self.batch_norm_epsilon = batch_norm_epsilon
        self.synchronized_bn = synchronized_bn
        self.sk_ratio = sk_ratio
        self.se_ratio = se_ratio
        self.dtype = dtype

    def conv(self, x, filters: int, kernel_size: int, strides: int, name: str):
        """Conv without bias using the reference's "fixed padding".

        For strides > 1 the input is zero-padded by `kernel_size - 1` in total
        (`(kernel_size - 1) // 2` before) and the conv uses VALID padding, so
        the padding does not depend on the input size; stride 1 uses SAME.
        """
        if strides > 1:
            x = self.fixed_padding(x, kernel_size, name=f"{name}_pad")
            padding = "valid"
        else:
            padding = "same"
        return _Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=False,
            # The reference uses tf.keras VarianceScaling() with its defaults
            # (scale 1, fan_in, truncated normal).
            kernel_initializer=keras.initializers.VarianceScaling(),
            dtype=self.dtype,
            name=name,
        )(x)

    def fixed_padding(self, x, kernel_size: int, name: str):
        """Zero-pads by `kernel_size - 1`, `(kernel_size - 1) // 2` of it before."""
        pad_total = kernel_size - 1
        if pad_total == 0:
            return x
        pad_begin = pad_total // 2
        pad_end = pad_total - pad_begin
        return keras.layers.ZeroPadding2D(
            padding=((pad_begin, pad_end), (pad_begin, pad_end)), dtype=self.dtype, name=name
        )(x)

    def batch_norm(self, x, name: str, zero_gamma: bool = False):
        """BatchNormalization; `zero_gamma` starts a residual branch at zero."""
        return FusedBatchNormalization(
            axis=-1,
            momentum=self.batch_norm_decay,
            epsilon=self.batch_norm_epsilon,
            center=True,
            scale=True,
            gamma_initializer="zeros" if zero_gamma else "ones",
            synchronized=self.synchronized_bn,
            dtype=self.dtype,
            name=name,
        )(x)

    def relu(self, x, name: str):
        return keras.layers.Activation("relu", dtype=self.dtype, name=name)(x)

    def stem(self, x, cifar_stem: bool):
        filters = scaled_channels(_STEM_FILTERS, self.width_multiplier)
        if cifar_stem:
            # The reference keeps this stem with SK too.
            x = self.conv(x, filters, kernel_size=3, strides=1, name="stem_conv")
        elif self.sk_ratio > 0:
            # ResNet-D stem: 3x3 convs with 32w, 32w, 64w channels (stride 2 on
            # the first) in place of the 7x7; BN-ReLU after each.
            half = max(1, filters // 2)
            x = self.conv(x, half, kernel_size=3, strides=2, name="stem_conv1")
            x = self.relu(self.batch_norm(x, name="stem_bn1"), name="stem_relu1")
            x = self.conv(x, half, kernel_size=3, strides=1, name="stem_conv2")
            x = self.relu(self.batch_norm(x, name="stem_bn2"), name="stem_relu2")
            x = self.conv(x, filters, kernel_size=3, strides=1, name="stem_conv3")
            x = self.relu(self.batch_norm(x, name="stem_bn3"), name="stem_relu3")
            return self.stem_pool(x)
        else:
            x = self.conv(x, filters, kernel_size=7, strides=2, name="stem_conv")
        x = self.batch_norm(x, name="stem_bn")
        x = self.relu(x, name="stem_relu")
        if not cifar_stem:
            x = self.stem_pool(x)
        return x

    def stem_pool(self, x):
        return keras.layers.MaxPooling2D(
            pool_size=3, strides=2, padding="same", dtype=self.dtype, name="stem_pool"
        )(x)

    def shortcut(self, x, filters: int, strides: int, use_projection: bool, prefix: str):
        if not use_projection:
            return x
        if self.sk_ratio > 0:
            # ResNet-D: a 2x2 average pool does the striding, then a stride-1
            # 1x1 conv. Strided: fixed padding (0 before, 1 after) and VALID;
            # stride 1 (group 1): SAME, which averages over the valid pixels only.
            if strides > 1:
                x = self.fixed_padding(x, kernel_size=2, name=f"{prefix}shortcut_pad")
            x = keras.layers.AveragePooling2D(
                pool_size=2,
                strides=strides,
                padding="same" if strides == 1 else "valid",
                dtype=self.dtype,
                name=f"{prefix}shortcut_pool",
            )(x)
            strides = 1
        x = self.conv(x, filters, kernel_size=1, strides=strides, name=f"{prefix}shortcut_conv")
        return self.batch_norm(x, name=f"{prefix}shortcut_bn")

    def selective_kernel_conv(self, x, filters: int, strides: int, prefix: str):
        """Selective-kernel 3x3 conv with BN-ReLU, `filters` output channels.

        One 3x3 conv with `2 * filters` channels (BN-ReLU) gives two streams,
        its first and second halves. A gate on the global mean of their sum
        (1x1 conv to `max(int(filters * sk_ratio), 32)` channels, BN-ReLU, 1x1
        conv to `2 * filters`) gives per-channel logits for each stream; the
        output is the softmax-weighted (over the two streams) sum of the streams.
        """
        x = self.conv(x, 2 * filters, kernel_size=3, strides=strides, name=f"{prefix}sk_conv")
        x = self.relu(self.batch_norm(x, name=f"{prefix}sk_bn"), name=f"{prefix}sk_relu")
        gate = _StreamSumMean(dtype=self.dtype, name=f"{prefix}sk_pool")(x)
        gate_filters = max(int(filters * self.sk_ratio), _SK_MIN_GATE_CHANNELS)
        gate = self.conv(
            gate, gate_filters, kernel_size=1, strides=1, name=f"{prefix}sk_gate_conv1"
        )
        gate = self.batch_norm(gate, name=f"{prefix}sk_gate_bn")
        gate = self.relu(gate, name=f"{prefix}sk_gate_relu")
        logits = self.conv(
            gate, 2 * filters, kernel_size=1, strides=1, name=f"{prefix}sk_gate_conv2"
        )
        return _StreamSoftmaxMix(dtype=self.dtype, name=f"{prefix}sk_mix")([x, logits])

    def squeeze_excitation(self, x, filters: int, prefix: str):
        """x * sigmoid(expand(relu(reduce(mean_hw(x))))), 1x1 convs with bias."""
        # Mean in float32 under any policy, as the final pooling.
        se = keras.layers.GlobalAveragePooling2D(
            keepdims=True, dtype="float32", name=f"{prefix}se_pool"
        )(x)
        se = self.se_conv(se, max(1, int(filters * self.se_ratio)), name=f"{prefix}se_reduce")
        se = self.relu(se, name=f"{prefix}se_relu")
        se = self.se_conv(se, x.shape[-1], name=f"{prefix}se_expand")
        se = keras.layers.Activation("sigmoid", dtype=self.dtype, name=f"{prefix}se_gate")(se)
        return keras.layers.Multiply(dtype=self.dtype, name=f"{prefix}se_scale")([x, se])

    def se_conv(self, x, filters: int, name: str):
        """The reference's SE convs: 1x1 with bias, VarianceScaling kernels."""
        return keras.layers.Conv2D(
            filters,
            kernel_size=1,
            padding="same",
            use_bias=True,
            kernel_initializer=keras.initializers.VarianceScaling(),
            dtype=self.dtype,
            name=name,
        )(x)

    def basic_block(self, x, filters: int, strides: int, use_projection: bool, prefix: str):
        """Two 3x3 convs (stride on the first); output has `filters` channels.

        The reference's basic block has no SK conv; `sk_ratio > 0` changes only
        its projection shortcut (ResNet-D).
        """
        shortcut = self.shortcut(x, filters, strides, use_projection, prefix)
        x = self.conv(x, filters, kernel_size=3, strides=strides, name=f"{prefix}conv1")
        x = self.batch_norm(x, name=f"{prefix}bn1")
        x = self.relu(x, name=f"{prefix}relu1")
        x = self.conv(x, filters, kernel_size=3, strides=1, name=f"{prefix}conv2")
        return self.residual_output(x, shortcut, filters, f"{prefix}bn2", prefix)

    def bottleneck_block(self, x, filters: int, strides: int, use_projection: bool, prefix: str):
        """1x1 -> 3x3 (strided; SK if sk_ratio > 0) -> 1x1 with `4 * filters` channels."""
        filters_out = _BOTTLENECK_EXPANSION * filters
        shortcut = self.shortcut(x, filters_out, strides, use_projection, prefix)
        x = self.conv(x, filters, kernel_size=1, strides=1, name=f"{prefix}conv1")
        x = self.batch_norm(x, name=f"{prefix}bn1")
        x = self.relu(x, name=f"{prefix}relu1")
        if self.sk_ratio > 0:
            x = self.selective_kernel_conv(x, filters, strides, prefix)
        else:
            x = self.conv(x, filters, kernel_size=3, strides=strides, name=f"{prefix}conv2")
            x = self.batch_norm(x, name=f"{prefix}bn2")
            x = self.relu(x, name=f"{prefix}relu2")
        x = self.conv(x, filters_out, kernel_size=1, strides=1, name=f"{prefix}conv3")
        # SE hidden width from `filters`, not `filters_out`, as the reference.
        return self.residual_output(x, shortcut, filters, f"{prefix}bn3", prefix)

    def residual_output(self, x, shortcut, filters: int, bn_name: str, prefix: str):
        """The end of every block: the branch's last BN, SE (`se_ratio > 0`, hidden width
        from `filters`), + shortcut, ReLU."""
        # Zero gamma: the block starts as relu(shortcut) (Goyal et al. 2017).
        x = self.batch_norm(x, name=bn_name, zero_gamma=True)
        if self.se_ratio > 0:
            x = self.squeeze_excitation(x, filters, prefix)
        x = keras.layers.Add(dtype=self.dtype, name=f"{prefix}add")([x, shortcut])
        return self.relu(x, name=f"{prefix}out")


@keras.saving.register_keras_serializable(package="tf_simclr")
class _Conv2D(keras.layers.Conv2D):
    """`Conv2D` that computes a strided 1x1 VALID conv of fewer than 16 input channels as a
    subsampling, then a stride-1 1x1 conv.

    The two are the same function (a 1x1 kernel at stride s reads every s-th pixel), but
    oneDNN's filter gradient of the strided 1x1 conv in TensorFlow 2.21 corrupts the heap
    when the input has 1 to 15 channels, the batch is odd and the image size even
    (`Conv2DBackpropFilter`, e.g. batch 3, 32x32x8 -> 16; the process aborts with
    "malloc(): ..." or dies silently; 16 and more channels were fine in every shape tried).
    Tiny encoders' projection shortcuts have such shapes (`tests/models/test_resnet.py`);
    wider ones keep the stock kernel.
    """

    def convolution_op(self, inputs, kernel):
        if (
            self.kernel_size == (1, 1)
            and self.padding == "valid"
            and self.strides != (1, 1)
            and inputs.shape[-1] < 16
        ):
            rows, cols = self.strides
            inputs = inputs[:, ::rows, ::cols, :]  # channels_last, as the builder makes it
            return keras.ops.conv(inputs, kernel, strides=1, padding="valid")
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="tf_simclr")
class _StreamSumMean(keras.layers.Layer):
    """Global mean of the sum of the two channel halves (the SK gate's input).

    Call:
        streams: `[B, H, W, 2F]`, the two streams concatenated on channels.
        Returns `[B, 1, 1, F]` in the compute dtype; the mean is taken in float32.
    """

    def call(self, streams):
        first, second = keras.ops.split(keras.ops.cast(streams, "float32"), 2, axis=-1)
        mean = keras.ops.mean(first + second, axis=(1, 2), keepdims=True)
        return keras.ops.cast(mean, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, input_shape[-1] // 2)


@keras.saving.register_keras_serializable(package="tf_simclr")
class _StreamSoftmaxMix(keras.layers.Layer):
    """Sum of the two streams weighted by a per-channel softmax over the streams.

    Call:
        inputs: `[streams, logits]`, streams `[B, H, W, 2F]` and logits
            `[B, 1, 1, 2F]`, each the two streams' halves concatenated.
        Returns `[B, H, W, F]` in the compute dtype; the softmax is float32.
    """

    def call(self, inputs):
        streams, logits = inputs
        logits = keras.ops.stack(keras.ops.split(keras.ops.cast(logits, "float32"), 2, axis=-1))
        weights = keras.ops.cast(keras.ops.softmax(logits, axis=0), streams.dtype)
        streams = keras.ops.stack(keras.ops.split(streams, 2, axis=-1))
        return keras.ops.sum(streams * weights, axis=0)

    def compute_output_shape(self, input_shape):
        streams_shape, _ = input_shape
        return (*streams_shape[:-1], streams_shape[-1] // 2)
