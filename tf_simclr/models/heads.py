"""Projection head and linear classifier on top of encoder features.

Both follow the official google-research/simclr `model.py` (`ProjectionHead`,
`SupervisedHead`, `LinearLayer`), with explicit constructor arguments in place
of the reference's global flags.
"""

from __future__ import annotations

import keras

from tf_simclr.choices import BOUNDS, PROJECTION_HEAD_MODES
from tf_simclr.models.batch_norm import FusedBatchNormalization, check_batch_norm_decay


def _dense_init() -> keras.initializers.Initializer:
    # Reference LinearLayer: RandomNormal(stddev=0.01) kernels.
    return keras.initializers.RandomNormal(stddev=0.01)


@keras.saving.register_keras_serializable(package="tf_simclr")
class ProjectionHead(keras.layers.Layer):
    """SimCLR projection head g(.) (SimCLR Section 2.1; SimCLRv2 Section 2).

    Each "linear layer" is a Dense followed by BatchNormalization, as in the
    reference `LinearLayer(use_bn=True)`: the Dense has a bias only when there
    is no BN, and the BN has a learned offset (`center`) only when the layer is
    meant to have a bias.

    Modes:
        - `"none"`: identity; the encoder features are the projections.
        - `"linear"`: one linear layer to `out_dim` (no bias, BN without
          center).
        - `"nonlinear"`: `num_layers` linear layers. All but the last map to
          `hidden_dim`, use a bias (BN with center) and are followed by ReLU;
          the last maps to `out_dim` without bias or ReLU (BN without center).
          SimCLRv1 uses `num_layers=2`, SimCLRv2 uses 3.

    Args:
        mode: One of `"none"`, `"linear"`, `"nonlinear"`.
        out_dim: Projection dimension (paper default 128).
        num_layers: Number of linear layers in `"nonlinear"` mode (>= 1).
        hidden_dim: Width of the hidden layers; None uses the input feature
            dimension, as the reference does.
        batch_norm_decay: BatchNormalization momentum (reference 0.9).
        batch_norm_epsilon: BatchNormalization epsilon (reference 1e-5).
        synchronized_bn: Create every BN with `synchronized=True` (global BN
            across replicas, SimCLR Section 2.3).
        dtype: Keras dtype policy of the head and its sublayers (None: the
            global policy). SimCLR builds it in float32: it is a small share of
            the FLOPs, and its output becomes the contrastive logits.

    Call:
        inputs: float `[B, D]` encoder features.
        Returns float `[B, out_dim]` projections (`[B, D]` in `"none"` mode).
    """

    def __init__(
        self,
        mode: str = "nonlinear",
        out_dim: int = 128,
        num_layers: int = 3,
        hidden_dim: int | None = None,
        batch_norm_decay: float = 0.9,
        batch_norm_epsilon: float = 1e-5,
        synchronized_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in PROJECTION_HEAD_MODES:
            raise ValueError(
                f"Unknown projection head mode {mode!r}; expected one of {PROJECTION_HEAD_MODES}."
            )
        if out_dim not in BOUNDS["proj_out_dim"]:
            raise ValueError(f"`out_dim` must be {BOUNDS['proj_out_dim']}, got {out_dim!r}.")
        if num_layers not in BOUNDS["num_proj_layers"]:
            raise ValueError(
                f"`num_layers` must be {BOUNDS['num_proj_layers']}, got {num_layers!r}."
            )
        if hidden_dim is not None and hidden_dim < 1:
            raise ValueError(f"`hidden_dim` must be None or >= 1, got {hidden_dim!r}.")
        check_batch_norm_decay(batch_norm_decay)
        if not batch_norm_epsilon > 0:
            raise ValueError(f"`batch_norm_epsilon` must be > 0, got {batch_norm_epsilon!r}.")

        # === Config ===
        self.mode = mode
        self.out_dim = out_dim
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.batch_norm_decay = batch_norm_decay
        self.batch_norm_epsilon = batch_norm_epsilon
        self.synchronized_bn = synchronized_bn

        # === Layers ===
        # Created in `build` because the hidden width may depend on the input
        # feature dimension. Layer j is `bns[j](denses[j](x))`.
        self.denses: list[keras.layers.Dense] = []
        self.bns: list[FusedBatchNormalization] = []

    @property
    def num_linear_layers(self) -> int:
        """Number of Dense+BN layers: 0 (none), 1 (linear) or `num_layers`."""
        return {"none": 0, "linear": 1, "nonlinear": self.num_layers}[self.mode]

    def output_dim(self, input_dim: int) -> int:
        """Feature dimension of the projection for `input_dim` input features."""
        return input_dim if self.mode == "none" else self.out_dim

    def _make_linear(self, units: int, use_bias: bool, name: str):
        dense = keras.layers.Dense(
            units,
            # With BN the bias is redundant; BN's beta (center) replaces it.
            use_bias=False,
            kernel_initializer=_dense_init(),
            dtype=self.dtype_policy,
            name=f"{name}_dense",
        )
        bn = FusedBatchNormalization(
            momentum=self.batch_norm_decay,
            epsilon=self.batch_norm_epsilon,
            center=use_bias,
            scale=True,
            synchronized=self.synchronized_bn,
            dtype=self.dtype_policy,
            name=f"{name}_bn",
        )
        return dense, bn

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError("ProjectionHead needs a known feature dimension, got None.")
        hidden_dim = self.hidden_dim if self.hidden_dim is not None else int(input_dim)

        layers = []
        if self.mode == "linear":
            layers.append(self._make_linear(self.out_dim, use_bias=False, name="l_0"))
        elif self.mode == "nonlinear":
            for j in range(self.num_layers):
                last = j == self.num_layers - 1
                layers.append(
                    self._make_linear(
                        self.out_dim if last else hidden_dim, use_bias=not last, name=f"nl_{j}"
                    )
                )

        shape = tuple(input_shape)
        for dense, bn in layers:
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
            bn.build(shape)
        self.denses = [dense for dense, _ in layers]
        self.bns = [bn for _, bn in layers]
        # Also one attribute per layer: TensorFlow checkpoints follow attributes that hold
        # a layer, not Keras' tracked lists, so without these `tf.train.Checkpoint(model=...)`
        # saved none of the head's variables under the model (only through the optimizer's
        # variable list, which holds no BatchNorm statistics).
        for dense, bn in layers:
            setattr(self, dense.name, dense)
            setattr(self, bn.name, bn)

    def call_with_hiddens(self, inputs, training=None) -> list:
        """Returns `[inputs, h_1, ..., h_L]`; `h_L` is the projection.

        Hidden layers' outputs are taken after their ReLU. SimCLRv2 fine-tunes
        from a middle layer of the head, i.e. `hiddens[ft_proj_selector]`.
        """
        if not self.built:
            self.build(inputs.shape)
        hiddens = [inputs]
        last = len(self.denses) - 1
        for j, (dense, bn) in enumerate(zip(self.denses, self.bns, strict=True)):
            x = bn(dense(hiddens[-1]), training=training)
            # Only "nonlinear" mode has more than one layer; all but the last
            # are followed by ReLU.
            if j != last:
                x = keras.ops.relu(x)
            hiddens.append(x)
        return hiddens

    def call(self, inputs, training=None):
        if self.mode == "none":
            return inputs
        return self.call_with_hiddens(inputs, training=training)[-1]

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.output_dim(input_shape[-1]))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "out_dim": self.out_dim,
                "num_layers": self.num_layers,
                "hidden_dim": self.hidden_dim,
                "batch_norm_decay": self.batch_norm_decay,
                "batch_norm_epsilon": self.batch_norm_epsilon,
                "synchronized_bn": self.synchronized_bn,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tf_simclr")
class LinearClassifier(keras.layers.Layer):
    """Linear classifier with bias (reference `SupervisedHead`).

    Used for the online linear probe during pre-training and as the
    classification head when fine-tuning. Its Dense sublayer is named
    `classifier` and the layer defaults to the reference's name
    `head_supervised`, so its variables are selectable by either path.

    Args:
        num_classes: Number of output logits (>= 1).
        zero_init: If True the kernel starts at zero (the reference's
            `zero_init_logits_layer`, used for fine-tuning); otherwise
            RandomNormal(stddev=0.01). The bias always starts at zero.
        dtype: Keras dtype policy (None: the global policy). `SimCLR` and
            `Classifier` pass float32, so logits are float32 under any policy.

    Call:
        inputs: float `[B, D]` features.
        Returns float `[B, num_classes]` logits.
    """

    def __init__(
        self,
        num_classes: int,
        zero_init: bool = False,
        name: str = "head_supervised",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes!r}.")

        # === Config ===
        self.num_classes = num_classes
        self.zero_init = zero_init

        # === Layers ===
        self.dense = keras.layers.Dense(
            num_classes,
            use_bias=True,
            kernel_initializer="zeros" if zero_init else _dense_init(),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="classifier",
        )

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        return self.dense(inputs)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.num_classes)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "zero_init": self.zero_init})
        return config
