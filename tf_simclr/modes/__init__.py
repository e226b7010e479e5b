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
anything runs, `tf_simclr.resolver` decides once what `--model_dir`, `--checkpoint` and
`--teacher` are and adopts the architecture saved there; the modes that read those
locations (the training modes, `embed`, `import_official`) take that `Resolved` result,
`evaluate` and `export` the completed config (they read the model_dir as training left it).

A new mode is one new module here plus one entry in `TRAIN_MODES` or `MODES`
(`tf_simclr.choices`, where the command line reads them without importing this package).
"""

from __future__ import annotations

from tf_simclr.choices import MODES, TRAIN_MODES, TRAINING_MODES  # noqa: F401


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

    from tf_simclr import builders, distribute, logs, resolver, run_dir
    from tf_simclr.modes import distill, evaluate, export, finetune, import_official, pretrain

    logs.quiet_library_logs()  # absl --verbosity=1 brings the dropped lines back
    config.validate()
    if config.mode == "preview":
        # Draws the flags' views; no model, no strategy, no saved architecture to adopt.
        from tf_simclr.modes import preview

        return {"preview": preview.run(config)}
    resolved = resolver.resolve(
        config, run_dir.given_fields(config) if given is None else frozenset(given)
    )
    config = resolved.config
    strategy = builders.build_strategy(config)
    result: dict = {}
    if config.mode == "import":
        if distribute.is_chief(strategy):
            result["import"] = import_official.run(resolved, strategy)
        return result
    if config.mode == "embed":
        from tf_simclr.modes import embed

        if distribute.is_chief(strategy):
            result["embed"] = embed.run(resolved, strategy)
        return result
    if config.mode in TRAINING_MODES:
        train = {"pretrain": pretrain.run, "finetune": finetune.run, "distill": distill.run}[
            config.train_mode
        ]
        result["train"] = train(resolved, strategy)
    if not distribute.is_chief(strategy):
        return result  # evaluation and export are the chief's
    if distribute.task(strategy)[0] is not None:
        # The chief evaluates and exports alone: without the other workers, so without
        # their collectives (the checkpoint holds everything).
        strategy = tf.distribute.get_strategy()
    if config.mode in ("eval", "train_then_eval"):
        result["eval"] = evaluate.run(config, strategy)
    if config.mode in (*TRAINING_MODES, "export"):
        result["export"] = export.run(config, strategy)
    return result
