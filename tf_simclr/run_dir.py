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

What kind of location a path is (`tf_simclr.locations`) and what the command line's
locations hold (ours, described here, or a published reference model, described by its
variables) is decided once, by `tf_simclr.resolver`.

`write_imported` writes a published reference model as a model_dir of ours (what
`--mode=import` and the cache of `tf_simclr.presets` hold).
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf
from absl import logging

from tf_simclr import __version__, builders, checkpoints, export, locations, official, precision
from tf_simclr.config import Config, ConfigError, flags_for, save_config

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


def description_path(location: str | locations.Found) -> str:
    """Where the description of a model_dir, a `ckpt-N` prefix or a SavedModel lives."""
    found = location if isinstance(location, locations.Found) else locations.find(location)
    if found.kind == locations.SAVED_MODEL:
        return os.path.join(found.target, export.DESCRIPTION_FILE)
    if found.kind == locations.CHECKPOINT:
        return os.path.join(os.path.dirname(found.path) or ".", MODEL_FILE)
    return os.path.join(found.path, MODEL_FILE)


def read(location: str | locations.Found, flag: str = "model_dir") -> dict | None:
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
        raise ConfigError(flag, f"{path} is not a model description ({e})", _path(location)) from e
    return description


def _path(location: str | locations.Found) -> str:
    return location.path if isinstance(location, locations.Found) else location


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


# --- A published reference model imported as a model_dir of ours (`--mode=import`) -----


def imported_config(config: Config, architecture: official.Architecture) -> Config:
    """`config` with the architecture of an imported model."""
    image_size = config.image_size
    if config.cifar_stem != architecture.cifar_stem:
        image_size = 32 if architecture.cifar_stem else 224
    return config.replace(
        **architecture_fields(architecture, config),
        train_mode="pretrain",
        ft_proj_selector=architecture.ft_proj_selector,
        lineareval_while_pretraining=architecture.num_classes > 0,
        fine_tune_after_block=-1,
        image_size=image_size,
    )


def write_imported(
    config: Config,
    strategy: tf.distribute.Strategy,
    source: official.ReferenceVariables,
    architecture: official.Architecture,
) -> dict:
    """Imports the reference model `source` (read from `config.checkpoint`) of
    `architecture` into the new directory `config.model_dir`; returns what was written."""
    config = imported_config(config, architecture)
    config.validate()

    # Our model, built as every mode builds it, and the variables copied in.
    with strategy.scope():
        model = builders.build_pretrain_model(config, architecture.num_classes)
    with flags_for(path="checkpoint"):
        result = official.import_official(
            config.checkpoint, model=model, source=source, architecture=architecture
        )
    config = config.replace(ft_proj_selector=result.architecture.ft_proj_selector)

    # A self-describing model_dir: config, description, checkpoint ckpt-0, SavedModel.
    tf.io.gfile.makedirs(config.model_dir)
    save_config(config, config.model_dir)
    description = describe(config, architecture.num_classes)
    description["imported_from"] = {
        "source": os.path.abspath(config.checkpoint),
        "kind": result.source.kind,
        "architecture": architecture.name(),
        "max_relative_difference": result.max_relative_difference,
    }
    write(os.path.join(config.model_dir, MODEL_FILE), description)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model),
        config.model_dir,
        config.keep_checkpoint_max,
        checkpoint_name=checkpoints.CHECKPOINT_NAME,
    )
    checkpoint = manager.save(checkpoint_number=0)
    saved_model = export.export_saved_model(
        model,
        os.path.join(config.model_dir, "saved_model"),
        0,
        config.image_size,
        description=description,
    )
    difference = result.max_relative_difference
    logging.info(
        "Imported %s (%s, %s) into %s in %.1f s%s",
        config.checkpoint,
        result.source.kind,
        architecture.name(),
        config.model_dir,
        result.seconds,
        "" if difference is None else f"; largest relative difference to it {difference:.2g}",
    )
    return {
        "architecture": architecture.name(),
        "checkpoint": checkpoint,
        "saved_model": saved_model,
        "max_relative_difference": result.max_relative_difference,
        "differences": result.differences,
        "seconds": result.seconds,
    }
