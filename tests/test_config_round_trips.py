"""Issue 23: every public Keras constructor (layers, models, optimizers, schedules) keeps
every argument through get_config -> from_config, each given a value other than its
default (`_harness.assert_config_round_trip`: a dropped argument of a default value would
round-trip unseen, e.g. the LARS/AdamL2 weight-decay exclusions).

Not here: `Distiller`, which refuses get_config on purpose (its teacher is held outside it).
"""

import keras
import pytest

from tests import _harness
from tf_simclr import layers
from tf_simclr.data import AugmentConfig, DeviceViews
from tf_simclr.models import Classifier, ProjectionHead, ResNet, SimCLR
from tf_simclr.models.batch_norm import FusedBatchNormalization
from tf_simclr.models.heads import LinearClassifier
from tf_simclr.optim import LARS, AdamL2, WarmupCosineDecay

# Keras' own BatchNormalization arguments, which FusedBatchNormalization passes on.
KERAS_BN_ARGUMENTS = (
    "axis",
    "beta_initializer",
    "gamma_initializer",
    "moving_mean_initializer",
    "moving_variance_initializer",
    "beta_regularizer",
    "gamma_regularizer",
    "beta_constraint",
    "gamma_constraint",
    "renorm",
    "renorm_clipping",
    "renorm_momentum",
)


def encoder():
    return ResNet(18, width_multiplier=0.125, cifar_stem=True, name="encoder")


def head():
    return ProjectionHead("nonlinear", out_dim=8, num_layers=2, name="head")


CASES = {
    "LARS": lambda: (
        LARS,
        dict(
            learning_rate=0.25,  # a schedule: tests/optim/test_lars.py
            momentum=0.5,
            weight_decay=1e-3,
            trust_coefficient=0.01,
            nesterov=True,
            layer_adaptation=False,
            exclude_from_weight_decay=("kernel_x", "head"),
            exclude_from_layer_adaptation=("probe",),
            name="my_lars",
        ),
    ),
    "AdamL2": lambda: (
        AdamL2,
        dict(
            learning_rate=0.01,
            weight_decay=1e-3,
            exclude_from_weight_decay=("kernel_x",),
            name="my_adam",
        ),
    ),
    "WarmupCosineDecay": lambda: (
        WarmupCosineDecay,
        dict(peak_learning_rate=0.5, warmup_steps=7, total_steps=30),
    ),
    "ResNet": lambda: (
        ResNet,
        dict(
            depth=18,
            width_multiplier=0.125,
            cifar_stem=True,
            batch_norm_decay=0.95,
            batch_norm_epsilon=1e-3,
            synchronized_bn=True,
            sk_ratio=0.0625,
            se_ratio=0.25,
            dtype="mixed_bfloat16",
            name="my_resnet",
        ),
    ),
    "ProjectionHead": lambda: (
        ProjectionHead,
        dict(
            mode="linear",
            out_dim=16,
            num_layers=2,
            hidden_dim=12,
            batch_norm_decay=0.95,
            batch_norm_epsilon=1e-3,
            synchronized_bn=True,
        ),
    ),
    "LinearClassifier": lambda: (
        LinearClassifier,
        dict(num_classes=5, zero_init=True, name="my_probe"),
    ),
    "FusedBatchNormalization": lambda: (
        FusedBatchNormalization,
        dict(momentum=0.9, epsilon=1e-4, center=False, scale=False, synchronized=True),
    ),
    "SimCLR": lambda: (
        SimCLR,
        dict(
            encoder=encoder(),
            head=head(),
            num_classes=5,
            temperature=0.5,
            hidden_norm=False,
            ft_proj_selector=1,
            augment=DeviceViews(AugmentConfig(image_size=16, blur=False)),
            augment_seed=3,
        ),
    ),
    "Classifier": lambda: (
        Classifier,
        dict(
            encoder=encoder(),
            num_classes=5,
            head=head(),
            ft_proj_selector=1,
            fine_tune_after_block=2,
            zero_init_logits_layer=True,
        ),
    ),
    "DeviceViews": lambda: (
        DeviceViews,
        dict(config=AugmentConfig(image_size=24, crop=False, color_jitter_strength=0.5)),
    ),
    # SimCLR's augmentations as Keras layers (tf_simclr.layers).
    "RandomResizedCrop": lambda: (
        layers.RandomResizedCrop,
        dict(size=24, area_range=(0.2, 0.9), aspect_ratio_range=(0.5, 2.0), seed=3),
    ),
    "RandomColorJitter": lambda: (
        layers.RandomColorJitter,
        dict(strength=0.5, rate=0.6, impl="simclrv1", seed=3),
    ),
    "RandomGrayscale": lambda: (layers.RandomGrayscale, dict(rate=0.4, seed=3)),
    "RandomGaussianBlur": lambda: (
        layers.RandomGaussianBlur,
        dict(rate=0.3, kernel_fraction=0.2, sigma_range=(0.2, 1.5), seed=3),
    ),
    "RandomApply": lambda: (
        layers.RandomApply,
        dict(layer=layers.RandomGrayscale(rate=1.0), rate=0.7, seed=3),
    ),
    "SimCLRAugment": lambda: (
        layers.SimCLRAugment,
        dict(
            image_size=24,
            crop=False,
            crop_area_range=(0.2, 0.9),
            aspect_ratio_range=(0.5, 2.0),
            flip=False,
            color_jitter=False,
            color_jitter_strength=0.5,
            color_jitter_prob=0.6,
            color_jitter_impl="simclrv1",
            grayscale=False,
            grayscale_prob=0.4,
            blur=False,
            blur_prob=0.3,
            seed=3,
        ),
    ),
}
NOT_COVERED = {"FusedBatchNormalization": KERAS_BN_ARGUMENTS}


@pytest.mark.parametrize("name", sorted(CASES))
def test_get_config_round_trip_keeps_every_argument(name):
    cls, arguments = CASES[name]()
    _harness.assert_config_round_trip(cls, NOT_COVERED.get(name, ()), **arguments)


def test_every_registered_class_of_ours_is_covered():
    ours = {
        key.split(">", 1)[1]
        for key in keras.saving.get_custom_objects()
        if key.startswith("tf_simclr>") and not key.split(">", 1)[1].startswith("_")
    }
    assert ours <= set(CASES), sorted(ours - set(CASES))
