"""LARS for Keras 3, and the optimizer factory used by training.

LARS (You et al. 2017, "Large Batch Training of Convolutional Networks") is the
optimizer of the SimCLR paper's default setting; the update below restates the
reference `lars_optimizer.py` of google-research/simclr.

Weight decay here is *coupled*: `wd * w` is added to the gradient, as an L2
term in the loss would do, and for LARS it is added before the trust ratio is
computed. Keras 3's own `weight_decay` argument is the *decoupled* kind
(`w -= lr * wd * w` applied separately, in `Optimizer.apply`); the classes here
switch it off and keep their own value, so decay is never applied twice.

Variables are excluded from decay and from layer adaptation by `re.search` of
regular expressions against the Keras 3 variable *path* (for example
"resnet/block_group1_block0_bn1/gamma"); `variable.name` is only "gamma".
"""

import re
from collections.abc import Sequence

import keras
from keras import ops

from tf_simclr.choices import BOUNDS, OPTIMIZERS

# Batch-norm parameters and biases: no weight decay and no layer adaptation, as
# in the reference (which excludes "batch_normalization" and "bias").
DEFAULT_EXCLUDE = (
    r"(^|/)(bias|beta|gamma)$",  # any bias, any normalisation scale / offset
    r"batch_norm",  # default Keras BatchNormalization layer names
    r"(^|/|_)bn\d*(/|_|$)",  # "..._bn1/", "bn_0/", "conv2_block1_1_bn/" (keras.applications)
)


def variable_path(variable) -> str:
    """The Keras 3 path of a variable ("model/layer/kernel"), without a ":0" suffix."""
    path = getattr(variable, "path", None) or variable.name
    return re.sub(r":\d+$", "", path)


def matches_any(path: str, patterns: Sequence[str]) -> bool:
    """Whether any regular expression in `patterns` is found (`re.search`) in `path`."""
    return any(re.search(pattern, path) for pattern in patterns)


def _l2_loss(weight_decay: float, exclusions: Sequence[str], variables):
    decayed = [
        ops.sum(ops.square(ops.cast(v, "float32")))
        for v in variables
        if not matches_any(variable_path(v), exclusions)
    ]
    if weight_decay == 0 or not decayed:
        return ops.convert_to_tensor(0.0, "float32")
    return weight_decay * ops.sum(ops.stack(decayed)) / 2


class _CoupledWeightDecay:
    """Coupled (L2) weight decay for a Keras optimizer: `weight_decay * w` added to the
    gradient of every variable whose path matches none of the exclusions (LARS, AdamL2).

    Keras' own `weight_decay` (decoupled) stays None; the coupled value is
    `coupled_weight_decay`, serialised as `weight_decay`.
    """

    def _set_weight_decay(self, weight_decay: float, exclusions: Sequence[str]) -> None:
        if weight_decay not in BOUNDS["weight_decay"]:
            raise ValueError(f"weight_decay must be {BOUNDS['weight_decay']}, got {weight_decay}.")
        self.coupled_weight_decay = float(weight_decay)
        self.weight_decay_exclusions = tuple(exclusions)

    def _build_weight_decay(self, paths: Sequence[str]) -> None:
        # Decided once per variable, by index: under tf.distribute, `update_step`
        # receives per-device tf.Variables, which have no Keras path.
        self._use_weight_decay_flags = [
            self.coupled_weight_decay > 0 and not matches_any(p, self.weight_decay_exclusions)
            for p in paths
        ]

    def uses_weight_decay(self, variable) -> bool:
        """Whether `variable` (one the optimizer was built with) is decayed."""
        return self._use_weight_decay_flags[self._get_variable_index(variable)]

    def _decayed(self, gradient, variable, index: int):
        """`gradient` (cast to the variable's dtype), plus the decay term if `variable` has it."""
        gradient = ops.cast(gradient, variable.dtype)
        if self._use_weight_decay_flags[index]:
            gradient = gradient + ops.cast(self.coupled_weight_decay, variable.dtype) * variable
        return gradient

    def l2_loss(self, variables):
        """The L2 loss term equivalent to this optimizer's coupled decay of `variables`:
        `weight_decay * sum(||w||^2) / 2` over those it decays (float32 scalar), whose
        gradient is the `weight_decay * w` added here. For logging (`total_loss`)."""
        return _l2_loss(self.coupled_weight_decay, self.weight_decay_exclusions, variables)

    def get_config(self) -> dict:
        config = super().get_config()
        config["weight_decay"] = self.coupled_weight_decay  # Keras' own (decoupled) is None
        config["exclude_from_weight_decay"] = list(self.weight_decay_exclusions)
        return config


@keras.saving.register_keras_serializable(package="tf_simclr")
class LARS(_CoupledWeightDecay, keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling with momentum and coupled weight decay.

    For each variable `w` with gradient `g`:

        g' = g + weight_decay * w                  (unless excluded from decay)
        trust_ratio = trust_coefficient * ||w|| / ||g'||
                      (1 if either norm is 0, or if excluded from adaptation)
        v = momentum * v + learning_rate * trust_ratio * g'
        w = w - (momentum * v + learning_rate * trust_ratio * g' if nesterov else v)

    With `layer_adaptation=False` this is (Nesterov) momentum SGD with an L2
    weight-decay term, the reference's `--optimizer=momentum`.

    `self.weight_decay` is Keras' decoupled decay and is always None here; the
    coupled value lives in `self.coupled_weight_decay` and is serialised as
    `weight_decay`. Dense gradients only.

    Args:
        learning_rate: float or `LearningRateSchedule`.
        momentum: momentum coefficient in [0, 1] (0.9 in the paper).
        weight_decay: coupled weight decay, >= 0 (1e-6 in the paper).
        trust_coefficient: LARS `eeta` (0.001 in the reference).
        nesterov: use Nesterov momentum.
        layer_adaptation: scale the step by the trust ratio.
        exclude_from_weight_decay: regular expressions; variables whose path
            matches any of them get no weight decay.
        exclude_from_layer_adaptation: regular expressions for variables that
            get no trust ratio; None means the same as `exclude_from_weight_decay`.
        name: optimizer name.
        **kwargs: other arguments of `keras.optimizers.Optimizer` (clipnorm,
            use_ema, loss_scale_factor, ...), but not its `weight_decay`.
    """

    def __init__(
        self,
        learning_rate,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        nesterov: bool = False,
        layer_adaptation: bool = True,
        exclude_from_weight_decay: Sequence[str] = DEFAULT_EXCLUDE,
        exclude_from_layer_adaptation: Sequence[str] | None = None,
        name: str = "lars",
        **kwargs,
    ):
        # Keras' decoupled decay is off (None); ours is added to the gradient.
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if momentum not in BOUNDS["momentum"]:
            raise ValueError(f"momentum must be {BOUNDS['momentum']}, got {momentum}.")
        self._set_weight_decay(weight_decay, exclude_from_weight_decay)
        if trust_coefficient <= 0:
            raise ValueError(f"trust_coefficient must be > 0, got {trust_coefficient}.")
        self.momentum = float(momentum)
        self.trust_coefficient = float(trust_coefficient)
        self.nesterov = bool(nesterov)
        self.layer_adaptation = bool(layer_adaptation)
        self.layer_adaptation_exclusions = (
            None if exclude_from_layer_adaptation is None else tuple(exclude_from_layer_adaptation)
        )

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        # The base method configures Keras' decoupled decay, which LARS does not use.
        raise NotImplementedError(
            "LARS takes its exclusions as the `exclude_from_weight_decay` constructor "
            "argument (regular expressions matched against variable paths)."
        )

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        adaptation_exclusions = (
            self.weight_decay_exclusions
            if self.layer_adaptation_exclusions is None
            else self.layer_adaptation_exclusions
        )
        # Decided once per variable, as the decay (see `_build_weight_decay`).
        paths = [variable_path(v) for v in variables]
        self._build_weight_decay(paths)
        self._use_layer_adaptation_flags = [
            self.layer_adaptation and not matches_any(p, adaptation_exclusions) for p in paths
        ]

    def uses_layer_adaptation(self, variable) -> bool:
        """Whether `variable` (one the optimizer was built with) gets a trust ratio."""
        return self._use_layer_adaptation_flags[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        gradient = self._decayed(gradient, variable, index)

        scaled_lr = learning_rate
        if self._use_layer_adaptation_flags[index]:
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            both_positive = ops.logical_and(w_norm > 0, g_norm > 0)
            safe_g_norm = ops.where(g_norm > 0, g_norm, ops.ones_like(g_norm))
            trust_ratio = ops.where(
                both_positive,
                ops.cast(self.trust_coefficient, dtype) * w_norm / safe_g_norm,
                ops.ones_like(w_norm),
            )
            scaled_lr = learning_rate * trust_ratio

        momentum = ops.cast(self.momentum, dtype)
        velocity = self.momentums[index]
        next_velocity = momentum * velocity + scaled_lr * gradient
        self.assign(velocity, next_velocity)
        if self.nesterov:
            update = momentum * next_velocity + scaled_lr * gradient
        else:
            update = next_velocity
        self.assign_sub(variable, update)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "trust_coefficient": self.trust_coefficient,
                "nesterov": self.nesterov,
                "layer_adaptation": self.layer_adaptation,
                "exclude_from_layer_adaptation": (
                    None
                    if self.layer_adaptation_exclusions is None
                    else list(self.layer_adaptation_exclusions)
                ),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tf_simclr")
class AdamL2(_CoupledWeightDecay, keras.optimizers.Adam):
    """Adam with coupled (L2) weight decay: `g + weight_decay * w` enters the moments.

    Keras' Adam only offers decoupled decay (that is AdamW). Adding the decay to
    the gradient gives the same update as an L2 term in the loss, which is what
    the reference's `--optimizer=adam` does.

    Args:
        learning_rate: float or `LearningRateSchedule`.
        weight_decay: coupled weight decay, >= 0.
        exclude_from_weight_decay: regular expressions matched (`re.search`)
            against variable paths; matching variables are not decayed.
        name: optimizer name.
        **kwargs: other `keras.optimizers.Adam` arguments (beta_1, epsilon, ...).
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay: float = 0.0,
        exclude_from_weight_decay: Sequence[str] = DEFAULT_EXCLUDE,
        name: str = "adam",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        self._set_weight_decay(weight_decay, exclude_from_weight_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._build_weight_decay([variable_path(v) for v in variables])

    def update_step(self, gradient, variable, learning_rate):
        gradient = self._decayed(gradient, variable, self._get_variable_index(variable))
        super().update_step(gradient, variable, learning_rate)


def build_optimizer(
    name: str,
    learning_rate,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> keras.optimizers.Optimizer:
    """The optimizer called `name`, as the reference's `--optimizer` flag.

    Args:
        name: one of `OPTIMIZERS`:
            "lars": `LARS` (the paper's default);
            "momentum": Nesterov momentum SGD with coupled weight decay (`LARS`
                without layer adaptation), as the reference;
            "adam": Adam with coupled (L2) weight decay (`AdamL2`);
            "adamw": Keras AdamW (decoupled decay: `weight_decay` is *not*
                interchangeable with the coupled value of the other three).
            Batch-norm parameters and biases are never decayed. (Deviation: for
            "momentum" and "adam" the reference adds an L2 loss over every
            non-batch-norm variable, biases included; bias decay is negligible
            and one exclusion rule for all optimizers is simpler.)
        learning_rate: float or `LearningRateSchedule`.
        momentum: momentum of "lars" and "momentum"; unused by Adam(W), which
            keep Keras' default betas, as the reference.
        weight_decay: see `name`.

    Raises:
        ValueError: for an unknown name.
    """
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = float(learning_rate)
    if name == "lars":
        # As the reference: the supervised head (online probe, classifier) is decayed
        # but not trust-ratio adapted.
        return LARS(
            learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
            exclude_from_layer_adaptation=DEFAULT_EXCLUDE + ("head_supervised",),
        )
    if name == "momentum":
        return LARS(
            learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=True,
            layer_adaptation=False,
            name="momentum",
        )
    if name == "adam":
        return AdamL2(learning_rate, weight_decay=weight_decay)
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
        # Keras matches these names as substrings of `variable.name` ("gamma").
        optimizer.exclude_from_weight_decay(var_names=["bias", "beta", "gamma"])
        return optimizer
    raise ValueError(f"Unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}.")
