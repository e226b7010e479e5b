"""What `run.py --mode=... --train_mode=...` does: one module per mode, each with `run`.

- `pretrain`: SimCLR contrastive pretraining (`--train_mode=pretrain`);
- `finetune`: supervised fine-tuning, or linear evaluation with the encoder
  frozen (`--train_mode=finetune`);
- `distill`: a student trained on a teacher's predictions on unlabelled images
  (`--train_mode=distill`, SimCLRv2's third step);
- `evaluate`: the latest checkpoint of `model_dir` on `eval_split` (`--mode=eval`);
- `export`: a SavedModel of the latest checkpoint (`--mode=export`);
- `import_official`: a published SimCLR model (the reference's TF2 SavedModel or
  checkpoint, `--checkpoint`) as a model_dir of ours (`--mode=import`);
- `preview`: a PNG of training views for the data and augmentation flags
  (`--mode=preview`; trains nothing);
- `embed`: the embeddings of a folder of images, one row per image with its path
  (`--mode=embed`).

`run(config)` below is the one dispatcher: `train` runs the training mode and
exports, `train_then_eval` trains, evaluates and exports. In a multi-worker
job every worker trains; only the chief evaluates and exports. Before
anything runs, the architecture saved in `model_dir/model.json` (or in the
`--checkpoint` a fine-tune run starts from) is adopted: see `tf_simclr.run_dir`.

A new mode is one new module here plus one entry in `TRAIN_MODES` or `MODES`
(`tf_simclr.choices`, where the command line reads them without importing this package).
"""

from __future__ import annotations

from tf_simclr.choices import MODES, TRAIN_MODES  # noqa: F401


def resolve(config, given: frozenset[str]):
    """`config` completed from the saved model description it refers to (if any).

    - `model_dir` holds a `model.json`: its architecture (and, to evaluate or
      export, its dataset) is used; a given flag that contradicts it is an error.
    - else, fine-tuning (or distilling) from a `--checkpoint` that has one, or that is a
      published reference model (its architecture inferred): its encoder and head.
    - else (directories written before model.json existed): the flags, as given.

    `--precision=auto` becomes the policy chosen for this machine (`tf_simclr.precision`);
    evaluation and export use the one recorded in model.json unless the flag is given.
    """
    import tensorflow as tf
    from absl import logging

    from tf_simclr import precision, presets, run_dir
    from tf_simclr.errors import ConfigError

    # A published model's name in --checkpoint / --teacher: its cached model_dir (or, to
    # import, its downloaded files) from here on.
    config = presets.resolve_names(config)
    if config.mode == "import":
        # The source decides the architecture (modes.import_official); nothing to adopt.
        config.validate()
        return config
    exists = bool(config.model_dir) and tf.io.gfile.isdir(config.model_dir)
    description = run_dir.read(config.model_dir) if exists else None
    if description is not None:
        config = _last_layer_of(config, description, given)
        config = run_dir.adopt(config, description, given, run_dir.MODEL_FIELDS, config.model_dir)
        if config.mode in ("eval", "export"):
            config = run_dir.adopt_data(config, description, given)
            config = run_dir.adopt_precision(config, description, given)
    elif config.mode in ("eval", "export") and not exists:
        raise ConfigError(
            "model_dir",
            f"does not exist: --mode={config.mode} reads a trained model_dir (its latest "
            "checkpoint and model.json)",
            config.model_dir,
        )
    elif config.mode in ("eval", "export"):
        logging.info(
            "%s has no %s (written before model descriptions): the model is rebuilt from the flags",
            config.model_dir,
            run_dir.MODEL_FILE,
        )
    elif config.checkpoint and config.mode in ("train", "train_then_eval"):
        # Fine-tuning, distilling, or pretraining on (continuing from) a --checkpoint.
        source = run_dir.read(config.checkpoint, "checkpoint")
        if source is None:  # a published reference model: its variables describe it
            source = run_dir.describe_reference(config.checkpoint, config)
        if source is not None:
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
    return config


def _last_layer_of(config, description: dict, given: frozenset[str]):
    """`config` with --ft_proj_selector=-1 resolved for the head of the saved `description`
    (the head flags on the command line win; a contradiction is reported by `adopt`)."""
    if config.ft_proj_selector != -1:
        return config
    saved = description["model"]
    head = {k: saved[k] for k in ("proj_head_mode", "num_proj_layers") if k not in given}
    return config.replace(ft_proj_selector=config.replace(**head).last_proj_layer)


def run(config, given: frozenset[str] | None = None) -> dict:
    """Validates `config`, adopts the saved architecture, builds the strategy, dispatches.

    Args:
      config: a `tf_simclr.config.Config`.
      given: the fields set explicitly (`run.py`: the flags on the command line);
        None: those that differ from the defaults.

    Returns:
      `{"train": ..., "eval": ..., "export": ...}`, the parts that ran.
    """
    import tensorflow as tf

    from tf_simclr import builders, distribute, logs, run_dir
    from tf_simclr.modes import distill, evaluate, export, finetune, import_official, pretrain

    logs.quiet_library_logs()  # absl --verbosity=1 brings the dropped lines back
    config.validate()
    if config.mode == "preview":
        # Draws the flags' views; no model, no strategy, no saved architecture to adopt.
        from tf_simclr.modes import preview

        return {"preview": preview.run(config)}
    config = resolve(config, run_dir.given_fields(config) if given is None else frozenset(given))
    strategy = builders.build_strategy(config)
    result: dict = {}
    if config.mode == "import":
        if distribute.is_chief(strategy):
            result["import"] = import_official.run(config, strategy)
        return result
    if config.mode == "embed":
        from tf_simclr.modes import embed

        if distribute.is_chief(strategy):
            result["embed"] = embed.run(config, strategy)
        return result
    if config.mode in ("train", "train_then_eval"):
        train = {"pretrain": pretrain.run, "finetune": finetune.run, "distill": distill.run}[
            config.train_mode
        ]
        result["train"] = train(config, strategy)
    if not distribute.is_chief(strategy):
        return result  # evaluation and export are the chief's
    if distribute.task(strategy)[0] is not None:
        # The chief evaluates and exports alone: without the other workers, so without
        # their collectives (the checkpoint holds everything).
        strategy = tf.distribute.get_strategy()
    if config.mode in ("eval", "train_then_eval"):
        result["eval"] = evaluate.run(config, strategy)
    if config.mode in ("train", "train_then_eval", "export"):
        result["export"] = export.run(config, strategy)
    return result
