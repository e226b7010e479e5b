"""Config -> objects: the one place that maps `Config` fields onto constructor arguments.

Everything here is a thin translation; the objects themselves (`ResNet`,
`SimCLR`, `Classifier`, `LARS`, ...) take plain arguments and know nothing of
`Config`, so notebooks build them directly.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_simclr import distribute, precision
from tf_simclr.config import Config, ConfigError, flags_for
from tf_simclr.data import (
    AugmentConfig,
    DeviceViews,
    Source,
    balanced_prefix,
    finetune_augment,
    make_source,
)
from tf_simclr.data.subsets import subset_source, unlabel_outside_subset
from tf_simclr.models import Classifier, ProjectionHead, ResNet, SimCLR
from tf_simclr.optim import WarmupCosineDecay, build_optimizer, scaled_learning_rate


def augment_config(config: Config) -> AugmentConfig:
    """Training augmentation. Pretraining: the full SimCLR recipe (paper Appendix A);
    fine-tuning and linear evaluation: random crop and flip only (paper Appendix B.5)."""
    if config.train_mode in ("finetune", "distill"):
        return finetune_augment(config.image_size)
    return AugmentConfig(
        image_size=config.image_size,
        crop=config.use_crop,
        flip=config.use_flip,
        color_jitter=config.use_color_jitter,
        color_jitter_strength=config.color_jitter_strength,
        color_jitter_impl=config.color_jitter_impl,
        grayscale=config.use_grayscale,
        blur=config.use_blur,
    )


IMAGENET_SUBSETS = "imagenet2012_subset"


def train_source(config: Config, subset: bool = True) -> Source:
    """The training split, reduced to a class-balanced label subset when asked (for
    distillation: all of it, labelled only on the subset); `subset=False`: the whole
    split, e.g. to know its classes."""
    dataset, split = config.dataset, config.train_split
    if split.startswith(IMAGENET_SUBSETS + "/"):
        # The official semi-supervised ImageNet subsets (SimCLRv2): a TFDS dataset of its
        # own whose "train" split holds the 1% / 10% of labelled images.
        dataset, split = split, "train"
    with flags_for(split="train_split"):
        source = make_source(
            dataset,
            split,
            data_dir=config.data_dir or None,
            shuffle_files=True,
            seed=config.seed,
            download=config.download,
        )
    if subset and (config.label_fraction or config.labels_per_class):
        if source.num_classes == 0:
            raise ConfigError("label_fraction", "needs a labelled dataset")
        # Distillation trains on every image; only the subset keeps its labels.
        choose = unlabel_outside_subset if config.train_mode == "distill" else subset_source
        source = choose(
            source,
            fraction=config.label_fraction or None,
            per_class=config.labels_per_class or None,
            seed=config.seed,
        )
    return source


def eval_source(config: Config) -> Source:
    """The evaluation split, its files in a seeded order (`--seed`): the whole split scores
    the same in any order, and the first `--eval_steps` batches are then a fair sample
    (an image folder's own order is by class)."""
    with flags_for(split="eval_split"):
        return make_source(
            config.dataset,
            config.eval_split,
            data_dir=config.data_dir or None,
            shuffle_files=True,
            seed=config.seed,
            download=config.download,
        )


def knn_train_source(config: Config) -> Source:
    """The train split the kNN evaluation compares against: all of it, or with
    `--knn_train_examples=N` the first N // classes examples of each class in the seeded
    file order of `train_source` (only those are read)."""
    source = train_source(config, subset=False)
    if config.knn_train_examples and source.num_classes:
        per_class = max(1, config.knn_train_examples // source.num_classes)
        source = balanced_prefix(source, per_class)
    return source


def knn_sources(config: Config) -> dict[str, Source]:
    """`{"train": knn_train_source, "test": eval_source}`: what
    `tf_simclr.eval.frozen_features` reads for the kNN evaluation (`tf_simclr.eval.knn_top1`)."""
    return {"train": knn_train_source(config), "test": eval_source(config)}


def build_strategy(config: Config) -> tf.distribute.Strategy:
    """`--strategy` and the TPU flags -> the strategy (`distribute.build_strategy`)."""
    with flags_for(TF_CONFIG="strategy", tpu_address="tpu_name"):
        return distribute.build_strategy(
            config.strategy,
            use_tpu=config.use_tpu,
            tpu_address=config.tpu_address,
            tpu_zone=config.tpu_zone,
            gcp_project=config.gcp_project,
        )


def _synchronized(config: Config) -> bool:
    return config.global_bn and distribute.num_replicas() > 1


def build_encoder(config: Config) -> ResNet:
    return ResNet(
        depth=config.resnet_depth,
        width_multiplier=config.width_multiplier,
        cifar_stem=config.cifar_stem,
        sk_ratio=config.sk_ratio,
        se_ratio=config.se_ratio,
        batch_norm_decay=config.batch_norm_decay,
        synchronized_bn=_synchronized(config),
        dtype=precision.resolve(config.precision),
        name="encoder",
    )


def build_head(config: Config) -> ProjectionHead:
    return ProjectionHead(
        mode=config.proj_head_mode,
        out_dim=config.proj_out_dim,
        num_layers=config.num_proj_layers,
        batch_norm_decay=config.batch_norm_decay,
        synchronized_bn=_synchronized(config),
        # float32 whatever --precision: the head is a small share of the FLOPs and its
        # output becomes the contrastive logits (only the encoder uses the policy).
        dtype="float32",
        name="projection_head",
    )


def _build(model: keras.Model, image_size: int) -> keras.Model:
    model(tf.zeros([1, image_size, image_size, 3]))  # create the variables
    return model


def build_pretrain_model(config: Config, num_classes: int) -> SimCLR:
    """SimCLR of `config`, built; the online probe has `num_classes` (0: none)."""
    model = SimCLR(
        build_encoder(config),
        build_head(config),
        num_classes=num_classes if config.lineareval_while_pretraining else 0,
        temperature=config.temperature,
        hidden_norm=config.hidden_norm,
        ft_proj_selector=config.proj_selector,
        augment=DeviceViews(augment_config(config)) if config.augment_impl == "device" else None,
        augment_seed=config.seed,
        name="simclr",
    )
    return _build(model, config.image_size)


def build_classifier(config: Config, num_classes: int) -> Classifier:
    """Fine-tuning / linear-evaluation model of `config`, built."""
    model = Classifier(
        build_encoder(config),
        num_classes,
        head=build_head(config) if config.proj_selector > 0 else None,
        ft_proj_selector=config.proj_selector,
        fine_tune_after_block=config.fine_tune_after_block,
        zero_init_logits_layer=config.zero_init_logits_layer,
        name="classifier",
    )
    return _build(model, config.image_size)


def build_model(config: Config, num_classes: int) -> SimCLR | Classifier:
    """The model a run of `config` saves: SimCLR, or a Classifier (fine-tuned, or the
    student of a distillation)."""
    if config.train_mode in ("finetune", "distill"):
        return build_classifier(config, num_classes)
    return build_pretrain_model(config, num_classes)


def init_parts(model: SimCLR | Classifier) -> dict:
    """What a fine-tune run loads from a pretrain checkpoint (`--checkpoint`)."""
    parts = {"encoder": model.encoder}
    if getattr(model, "head", None) is not None:
        parts["head"] = model.head
    return parts


def build_training_optimizer(
    config: Config, warmup_steps: int, total_steps: int
) -> keras.optimizers.Optimizer:
    """`--optimizer` with the warmup + cosine schedule peaking at the scaled learning rate."""
    peak = scaled_learning_rate(
        config.learning_rate, config.train_batch_size, config.learning_rate_scaling
    )
    schedule = WarmupCosineDecay(peak, warmup_steps, total_steps)
    optimizer = build_optimizer(
        config.optimizer, schedule, momentum=config.momentum, weight_decay=config.weight_decay
    )
    if precision.resolve(config.precision) == "mixed_float16":
        # Dynamic loss scaling: float16 gradients of a float32-scale loss underflow.
        # `train_step` calls `scale_loss`; `apply` unscales, and skips the step (halving
        # the scale) when a gradient is not finite. The inner optimizer's `iterations`
        # is the step count, so skipped steps are not counted.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
