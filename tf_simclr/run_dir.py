"""A self-describing model directory: what rebuilds a run's model, without its data or flags.

At step 0 every training run writes `model_dir/model.json`: the architecture
part of its config (`MODEL_FIELDS`), the number of classes, whether the
encoder has the CIFAR stem, and for the record the dataset it was trained on.
Every export copies it into the SavedModel (`assets.extra/tf_simclr_model.json`).
Whatever rebuilds a model (`--mode=eval`, `--mode=export`, `--checkpoint=DIR`
for fine-tuning, the scripts) reads it from there, so

- `run.py --mode=export --model_dir=DIR` needs no other flag and no training data;
- a flag given on the command line that contradicts the saved architecture is
  a `ConfigError` naming the flag and both values;
- a model_dir written before this file existed still works from the flags
  (`read` returns None and the caller logs that).

`load_model` is the one function that rebuilds and restores a model from a
model_dir, a `ckpt-N` prefix or one of our exported SavedModels.

A published reference model (google-research/simclr's TF2 SavedModel or checkpoint: no
description, the reference's variable names) describes itself through its variables:
`describe_reference` infers its architecture (`tf_simclr.official`), so `--checkpoint`
may name one directly, and `init_model` imports it on the fly.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import __version__, builders, checkpoints, export, official, precision
from tf_simclr.config import Config, ConfigError, flags_for

MODEL_FILE = "model.json"
FORMAT_VERSION = 1

# What builds the encoder and the projection head (all a fine-tune run takes from its
# --checkpoint), then what else shapes the model of a run.
ENCODER_FIELDS = ("resnet_depth", "width_multiplier", "sk_ratio", "se_ratio")
HEAD_FIELDS = ("proj_head_mode", "proj_out_dim", "num_proj_layers")
MODEL_FIELDS = (
    "train_mode",
    *ENCODER_FIELDS,
    *HEAD_FIELDS,
    "ft_proj_selector",
    "lineareval_while_pretraining",
    "fine_tune_after_block",
    "image_size",
)
# Recorded, and adopted when the command line does not say otherwise.
DATA_FIELDS = ("dataset", "data_dir", "train_split")


def describe(config: Config, num_classes: int) -> dict:
    """The description of the model that `config` builds with `num_classes` classes."""
    return {
        "format_version": FORMAT_VERSION,
        "tf_simclr_version": __version__,  # the release that wrote it
        "model": {name: getattr(config, name) for name in MODEL_FIELDS},
        "cifar_stem": config.cifar_stem,
        "num_classes": int(num_classes),
        "data": {name: getattr(config, name) for name in DATA_FIELDS},
        # The dtype policy trained in ("auto" resolved), which eval and export adopt.
        "precision": precision.resolve(config.precision),
    }


def write(path: str, description: dict) -> str:
    """Writes `description` to `path` atomically (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(description, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def description_path(location: str) -> str:
    """Where the description of a model_dir, a `ckpt-N` prefix or a SavedModel lives."""
    if checkpoints.is_saved_model(location):
        return os.path.join(location, export.DESCRIPTION_FILE)
    if tf.io.gfile.isdir(location):
        return os.path.join(location, MODEL_FILE)
    return os.path.join(os.path.dirname(location) or ".", MODEL_FILE)


def read(location: str, flag: str = "model_dir") -> dict | None:
    """The description of `location` (see `description_path`), or None if it has none.

    A file that exists but cannot be read as a description is a ConfigError on `flag`.
    """
    path = description_path(location)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            description = json.load(f)
        if description.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {description.get('format_version')!r}")
        if "num_classes" not in description or "train_mode" not in description["model"]:
            raise ValueError("missing num_classes or the model's train_mode")
        # A field added after the description was written has its default value.
        defaults = {f.name: f.default for f in dataclasses.fields(Config)}
        for name in MODEL_FIELDS:
            description["model"].setdefault(name, defaults[name])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(flag, f"{path} is not a model description ({e})", location) from e
    return description


def given_fields(config: Config) -> frozenset[str]:
    """For library callers: the fields of `config` that differ from the defaults.

    `run.py` passes the flags actually present on the command line instead.
    """
    return frozenset(
        f.name for f in dataclasses.fields(Config) if getattr(config, f.name) != f.default
    )


def adopt(
    config: Config,
    description: dict,
    given: frozenset[str],
    fields: tuple[str, ...],
    source: str,
    flag: str = "model_dir",
) -> Config:
    """`config` with `fields` taken from `description`; a given field that differs is an error.

    Args:
      config: today's configuration.
      description: a `read` result.
      given: the fields set explicitly (on the command line).
      fields: which fields to take (`MODEL_FIELDS`, or the encoder and head ones).
      source: the location described, for messages.
      flag: the flag that named `source`.
    """
    saved = description["model"]
    changes = {}
    for name in fields:
        value = saved[name]
        if value == getattr(config, name):
            continue
        if name in given:
            raise ConfigError(
                name,
                f"contradicts the model in --{flag}={source}, which has --{name}={value}; "
                "drop the flag (the saved architecture is used) or use another directory",
                getattr(config, name),
            )
        changes[name] = value
    if changes:
        logging.info(
            "Model of %s: %s",
            source,
            ", ".join(f"--{k}={v}" for k, v in sorted(changes.items())),
        )
    return config.replace(**changes)


def adopt_data(config: Config, description: dict, given: frozenset[str]) -> Config:
    """`config` with the recorded dataset, its directory and training split where the
    command line gives none (evaluation and export need no other data flag)."""
    data = description.get("data", {})
    changes = {
        name: data[name]
        for name in ("dataset", "data_dir", "train_split")
        if name in data and name not in given and data[name] != getattr(config, name)
    }
    if "dataset" in given and config.dataset != data.get("dataset"):
        # Another dataset: the recorded directory and split are not its own.
        changes.pop("data_dir", None)
        changes.pop("train_split", None)
    return config.replace(**changes)


def adopt_precision(config: Config, description: dict, given: frozenset[str]) -> Config:
    """`config` with the recorded dtype policy (the one training resolved) unless
    `--precision` is given; a description without one (written before it was recorded)
    leaves today's value."""
    recorded = description.get("precision")
    if recorded is None or "precision" in given or recorded == config.precision:
        return config
    logging.info("Precision: %s, as recorded in %s (--precision to override)", recorded, MODEL_FILE)
    return config.replace(precision=recorded)


def check_stem(config: Config, description: dict, source: str) -> None:
    """A fine-tune run's image size must give the encoder the stem it was trained with."""
    if description["cifar_stem"] != config.cifar_stem:
        stem = "CIFAR (image_size <= 32)" if description["cifar_stem"] else "ImageNet"
        raise ConfigError(
            "image_size",
            f"the encoder in {source} has the {stem} stem; use an --image_size that "
            "selects the same stem",
            config.image_size,
        )


def load_model(
    location: str,
    config: Config | None = None,
    strategy: tf.distribute.Strategy | None = None,
    flag: str = "model_dir",
):
    """Rebuilds and restores the model of a model_dir, a `ckpt-N` prefix or our SavedModel.

    The architecture comes from the saved description; without one (directories
    written before descriptions existed) from `config`, which is then required.

    Args:
      location: a model_dir (its latest checkpoint), a `ckpt-N` prefix, or a
        SavedModel directory exported by tf_simclr.
      config: the configuration to complete (all non-architecture fields).
      strategy: built under this strategy's scope (default: the current one).
      flag: the flag that named `location`, for error messages.

    Returns:
      `(model, step, config)`: the built model with the variables restored, the
      training step they were saved at, and the config the model was built from.
    """
    config = config or Config(model_dir=location)
    description = read(location, flag)
    if description is None:
        logging.info("%s has no %s: rebuilding its model from the flags", location, MODEL_FILE)
        num_classes = builders.train_source(config, subset=False).num_classes
    else:
        config = config.replace(**description["model"])
        num_classes = description["num_classes"]
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = builders.build_model(config, num_classes)
    with flags_for(path=flag):
        step = checkpoints.restore_model(model, location)
    return model, step, config


def has_head(description: dict) -> bool:
    """Whether the described model has a projection head (SimCLRv1's published models
    have none)."""
    return description["model"]["proj_head_mode"] != "none"


def architecture_fields(architecture: official.Architecture, config: Config) -> dict:
    """The `Config` fields of a reference model's architecture (encoder and head)."""
    return {
        "resnet_depth": architecture.depth,
        "width_multiplier": architecture.width_multiplier,
        "sk_ratio": architecture.sk_ratio,
        "se_ratio": architecture.se_ratio,
        "proj_head_mode": architecture.proj_head_mode,
        # Without a head (SimCLRv1) the head's sizes are unused: today's values stay.
        "proj_out_dim": architecture.proj_out_dim or config.proj_out_dim,
        "num_proj_layers": architecture.num_proj_layers or config.num_proj_layers,
    }


def is_reference(location: str, flag: str = "checkpoint") -> bool:
    """Whether `location` is a reference model: no tf_simclr description, and the
    reference's variable names (`official.is_reference`)."""
    return read(location, flag) is None and official.is_reference(location)


def describe_reference(location: str, config: Config, flag: str = "checkpoint") -> dict | None:
    """The description (as `read` gives it) of the reference model at `location`, its
    architecture inferred from its variables; None if `location` is not one."""
    if not is_reference(location, flag):
        return None
    with flags_for(path=flag):
        architecture = official.infer_architecture(official.read_source(location))
    model = {name: getattr(config, name) for name in MODEL_FIELDS}
    model.update(architecture_fields(architecture, config))
    return {
        "format_version": FORMAT_VERSION,
        "tf_simclr_version": __version__,
        "model": model,
        "cifar_stem": architecture.cifar_stem,
        "num_classes": architecture.num_classes,
        "reference": architecture.name(),
    }


def describe_any(location: str, config: Config, flag: str = "checkpoint") -> tuple[dict, bool]:
    """`(description, is_reference)` of the model at `location`: ours (model.json, or the
    description inside our SavedModel) or a reference model's (inferred from its
    variables). Neither: a ConfigError naming `flag`."""
    description = read(location, flag)
    if description is not None:
        return description, False
    description = describe_reference(location, config, flag)
    if description is None:
        raise ConfigError(
            flag,
            "has no tf_simclr model description (model.json, or assets.extra in an export) "
            "and is no reference SimCLR model; give a model_dir, checkpoint or SavedModel "
            "written by tf_simclr, or a published SimCLR SavedModel or checkpoint",
            location,
        )
    return description, True


def load_described(
    location: str,
    description: dict,
    reference: bool,
    config: Config,
    strategy: tf.distribute.Strategy,
    flag: str = "checkpoint",
) -> tuple[keras.Model, str]:
    """The model `describe_any` described, built under `strategy` and restored: ours by
    `load_model`; a reference model built as `--mode=import` builds it (a pretraining
    model whose probe is the reference's supervised head, if any) and imported
    (`official.import_official`). Returns `(model, what was loaded)` for the log."""
    if not reference:
        model, step, _ = load_model(location, config, strategy, flag)
        return model, f"step {step}"
    num_classes = description["num_classes"]
    built = config.replace(
        **{
            **description["model"],
            "train_mode": "pretrain",
            "lineareval_while_pretraining": num_classes > 0,
        }
    )
    with strategy.scope():
        model = builders.build_pretrain_model(built, num_classes)
    with flags_for(path=flag):
        imported = official.import_official(location, model=model)
    return model, f"imported {imported.source.kind}, {imported.architecture.name()}"


def init_model(config: Config) -> keras.Model | None:
    """The model of a `--checkpoint` that is a SavedModel or a reference model (imported,
    `official.load_official`), rebuilt and restored; else None (a checkpoint's parts are
    read straight from it)."""
    if not config.checkpoint:
        return None
    if is_reference(config.checkpoint):
        logging.info("Importing the reference model %s", config.checkpoint)
        # Outside any strategy, like the SavedModel below: its values are copied into the parts.
        with flags_for(path="checkpoint"):
            return official.load_official(config.checkpoint)
    if not checkpoints.is_saved_model(config.checkpoint):
        return None
    if read(config.checkpoint, "checkpoint") is None:
        raise ConfigError(
            "checkpoint",
            "this SavedModel has no tf_simclr model description (exported before they "
            "existed, or not by tf_simclr) and is no reference SimCLR model; give the "
            "model_dir it was exported from",
            config.checkpoint,
        )
    # Outside any strategy: only its values are needed, copied into the parts.
    model, _, _ = load_model(config.checkpoint, config, flag="checkpoint")
    return model
