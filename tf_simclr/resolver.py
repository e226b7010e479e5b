"""Resolve once, then run: what `--model_dir`, `--checkpoint` and `--teacher` are.

`resolve(config, given)` runs once per command (`modes.run` calls it) before any model
is built, and is the only code that looks at those locations:

1. a published model's name (`tf_simclr.presets`) becomes its cached model_dir (or, to
   import it, its downloaded files);
2. each location is found (`tf_simclr.locations`: a new or empty directory, a model_dir
   with checkpoints, a `ckpt-N` prefix, a SavedModel) and described: ours by its
   `model.json` or the description inside our SavedModel (`tf_simclr.run_dir`), a
   published reference model by its variables (architecture inferred,
   `tf_simclr.official`); a `--checkpoint` or `--teacher` that holds no model is a
   `ConfigError` here, before anything is built or written;
3. the config adopts the described architecture: `model_dir`'s when it has a
   description (and, to evaluate or export, its dataset), else a training run's
   `--checkpoint`'s encoder and head; a given flag that contradicts it is an error.

The modes take the `Resolved` result (the completed config and each `Location`) and
load a model through `Location.load`, never from a path.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import __version__, builders, locations, official, precision, presets, run_dir
from tf_simclr.choices import TRAINING_MODES
from tf_simclr.config import Config, flags_for
from tf_simclr.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Location:
    """A location of the command line (`flag`), found and described once.

    `description` is ours (`run_dir.read`), inferred from a reference model's variables
    (`reference` True, `architecture` and `source` kept for the import), or None: a new
    model_dir, or a model_dir / checkpoint written before descriptions existed.
    """

    path: str
    flag: str
    found: locations.Found
    description: dict | None = None
    reference: bool = False
    architecture: official.Architecture | None = None
    source: official.ReferenceVariables | None = None

    @property
    def has_checkpoint(self) -> bool:
        """Whether it holds a checkpoint to resume or read parts from."""
        return self.found.is_checkpoint

    @property
    def has_head(self) -> bool:
        """Whether its model has a projection head (SimCLRv1's published models have none);
        True when unknown."""
        return self.description is None or run_dir.has_head(self.description)

    def described(self) -> dict:
        """The description; a ConfigError naming the flag when there is none."""
        if self.description is None:
            raise ConfigError(
                self.flag,
                "has no tf_simclr model description (model.json, or assets.extra in an "
                "export) and is no reference SimCLR model; give a model_dir, checkpoint or "
                "SavedModel written by tf_simclr, or a published SimCLR SavedModel or "
                "checkpoint",
                self.path,
            )
        return self.description

    def load(self, config: Config, strategy: tf.distribute.Strategy | None = None):
        """`(model, what was loaded)`: the model built under `strategy` (default: the
        current one) and restored. Ours from its description (`run_dir.load_model`); a
        reference model built as `--mode=import` builds it (a pretraining model whose
        probe is the reference's supervised head, if any) and imported from the source
        read when it was located."""
        strategy = strategy or tf.distribute.get_strategy()
        if not self.reference:
            self.described()
            model, step, _ = run_dir.load_model(self.path, config, strategy, self.flag)
            return model, f"step {step}"
        built = config.replace(
            **run_dir.architecture_fields(self.architecture, config),
            train_mode="pretrain",
            lineareval_while_pretraining=self.architecture.num_classes > 0,
        )
        with strategy.scope():
            model = builders.build_pretrain_model(built, self.architecture.num_classes)
        with flags_for(path=self.flag):
            imported = official.import_official(
                self.path, model=model, source=self.source, architecture=self.architecture
            )
        return model, f"imported {imported.source.kind}, {imported.architecture.name()}"

    def init_model(self, config: Config) -> keras.Model | None:
        """The model a training run copies its parts from, outside any strategy (only its
        values are needed): a reference model or our SavedModel, rebuilt and restored;
        None for our checkpoints (their parts are read straight from them)."""
        if self.found.kind != locations.SAVED_MODEL and not self.reference:
            return None
        if self.reference:
            logging.info("Importing the reference model %s", self.path)
        return self.load(config.replace(checkpoint="", teacher=""))[0]


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What a command runs on: the completed config and its locations (None: not given,
    or not used by this mode)."""

    config: Config
    model_dir: Location
    checkpoint: Location | None = None
    teacher: Location | None = None


def locate(
    path: str, flag: str, config: Config, new: bool = False, described: bool = False
) -> Location:
    """The `Location` of `path` given as `--flag`; see the module docstring.

    `new`: a location that does not exist yet (or an empty directory) is fine (a
    `--model_dir` to train into); else it is a ConfigError. `described`: the model must
    describe itself (a teacher, a model to embed with: rebuilt whole from its description),
    else it is a ConfigError."""
    found = locations.find(path)
    description = run_dir.read(found, flag)
    if description is not None:
        return Location(path, flag, found, description)
    if found.kind in (locations.MISSING, locations.DIRECTORY) and new:
        return Location(path, flag, found)
    if described and not found.reference:
        Location(path, flag, found).described()  # says what is missing
    if found.kind in (locations.MISSING, locations.DIRECTORY):
        with flags_for(path=flag):
            found.checkpoint("path")  # says why there is nothing to read
    if found.reference:
        return _reference(path, flag, found, config)
    if found.kind == locations.SAVED_MODEL:
        raise ConfigError(
            flag,
            "this SavedModel has no tf_simclr model description (exported before they "
            "existed, or not by tf_simclr) and is no reference SimCLR model; give the "
            "model_dir it was exported from",
            path,
        )
    return Location(path, flag, found)  # ours, written before descriptions existed


def _reference(path: str, flag: str, found: locations.Found, config: Config) -> Location:
    """A reference model's location, described (as `run_dir.read` describes ours) by the
    architecture its variables give."""
    with flags_for(path=flag):
        source = official.read_source(path)
        architecture = official.infer_architecture(source)
    model = {name: getattr(config, name) for name in run_dir.MODEL_FIELDS}
    model.update(run_dir.architecture_fields(architecture, config))
    description = {
        "format_version": run_dir.FORMAT_VERSION,
        "tf_simclr_version": __version__,
        "model": model,
        "cifar_stem": architecture.cifar_stem,
        "num_classes": architecture.num_classes,
        "reference": architecture.name(),
    }
    return Location(path, flag, found, description, True, architecture, source)


def resolve(config: Config, given: frozenset[str]) -> Resolved:
    """`config` completed from the saved model descriptions it refers to, with its locations.

    - `model_dir` holds a description: its architecture (and, to evaluate or export, its
      dataset) is used; a given flag that contradicts it is an error.
    - else, training (fine-tuning, distilling, or continuing pretraining) from a
      `--checkpoint` that has one, or that is a published reference model (its
      architecture inferred): its encoder and head.
    - else (directories written before descriptions existed): the flags, as given.

    `--precision=auto` becomes the policy chosen for this machine (`tf_simclr.precision`);
    evaluation and export use the one recorded in model.json unless the flag is given.
    """
    # A published model's name in --checkpoint / --teacher: its cached model_dir (or, to
    # import, its downloaded files) from here on.
    config = presets.resolve_names(config)
    model_dir = locate(config.model_dir, "model_dir", config, new=True)
    if config.mode == "import":
        # The source is a reference model, read as one (its own errors say what else it
        # is); it decides the architecture (modes.import_official): nothing to adopt.
        config.validate()
        source = None
        if config.checkpoint:
            found = locations.find(config.checkpoint)
            source = _reference(config.checkpoint, "checkpoint", found, config)
        return Resolved(config, model_dir, source)
    checkpoint = teacher = None
    if config.checkpoint and config.mode in (*TRAINING_MODES, "embed"):
        checkpoint = locate(
            config.checkpoint, "checkpoint", config, described=config.mode == "embed"
        )
    if config.teacher and config.mode in TRAINING_MODES and config.train_mode == "distill":
        teacher = locate(config.teacher, "teacher", config, described=True)

    description = model_dir.description
    evaluating = config.mode in ("eval", "export")
    if description is not None:
        config = _last_layer_of(config, description, given)
        config = run_dir.adopt(config, description, given, run_dir.MODEL_FIELDS, config.model_dir)
        if evaluating:
            config = run_dir.adopt_data(config, description, given)
            config = run_dir.adopt_precision(config, description, given)
    elif evaluating and model_dir.found.kind == locations.MISSING:
        raise ConfigError(
            "model_dir",
            f"does not exist: --mode={config.mode} reads a trained model_dir (its latest "
            "checkpoint and model.json)",
            config.model_dir,
        )
    elif evaluating:
        logging.info(
            "%s has no %s (written before model descriptions): the model is rebuilt from the flags",
            config.model_dir,
            run_dir.MODEL_FILE,
        )
    elif checkpoint is not None and checkpoint.description is not None and config.mode != "embed":
        # Fine-tuning, distilling, or pretraining on (continuing from) a --checkpoint.
        source = checkpoint.description
        fields = run_dir.ENCODER_FIELDS
        if run_dir.has_head(source) or config.train_mode != "pretrain":
            fields += run_dir.HEAD_FIELDS
        config = run_dir.adopt(config, source, given, fields, config.checkpoint, "checkpoint")
        run_dir.check_stem(config, source, config.checkpoint)
    # --ft_proj_selector=-1 (the last head layer) of the head now known, so that
    # model.json records the layer's index.
    config = config.replace(ft_proj_selector=config.proj_selector)
    # --precision=auto: this machine's policy (logged), which config.json then records.
    config = config.replace(precision=precision.resolve(config.precision))
    config.validate()
    return Resolved(config, model_dir, checkpoint, teacher)


def _last_layer_of(config: Config, description: dict, given: frozenset[str]) -> Config:
    """`config` with --ft_proj_selector=-1 resolved for the head of the saved `description`
    (the head flags on the command line win; a contradiction is reported by `adopt`)."""
    if config.ft_proj_selector != -1:
        return config
    saved = description["model"]
    head = {k: saved[k] for k in ("proj_head_mode", "num_proj_layers") if k not in given}
    return config.replace(ft_proj_selector=config.replace(**head).last_proj_layer)
