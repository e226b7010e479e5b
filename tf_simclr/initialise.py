"""Where a training run's weights start: resumed, initialised from `--checkpoint`, or fresh.

`restore` applies the precedence of `checkpoints.restore_or_initialize` with the
`--checkpoint` located by `tf_simclr.resolver`: our checkpoint (its parts read straight
from it), our SavedModel or a published reference model (rebuilt or imported, its parts
copied), and for a fine-tune run's classifier the checkpoint's online probe when it fits
(`probe_part`, `--init_classifier_from_probe`).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import checkpoints
from tf_simclr.config import Config, ConfigError, flags_for


def restore(
    resolved,
    manager: tf.train.CheckpointManager,
    init_parts: dict | None,
    classifier: keras.layers.Layer | None = None,
) -> str:
    """Resume from `model_dir`; else, given `init_parts` (e.g. the encoder and head),
    initialise them from `--checkpoint` (`resolved.checkpoint`, a `resolver.Location`: a
    checkpoint, a model_dir, our SavedModel or a published reference model), and
    `classifier` (a fine-tune run's) from its probe per `--init_classifier_from_probe`
    (`probe_part`); else start fresh. Returns "resumed", "initialized" or "fresh" (see
    `checkpoints.restore_or_initialize`)."""
    config = resolved.config
    location = resolved.checkpoint if init_parts else None
    with flags_for(resume_dir="model_dir", init_checkpoint="checkpoint"):
        initial = None
        if location is not None and not resolved.model_dir.has_checkpoint:
            initial = location.init_model(config)
            if classifier is not None:
                init_parts = {**init_parts, **probe_part(config, classifier, location, initial)}
        return checkpoints.restore_or_initialize(
            manager,
            location.path if location is not None else "",
            init_parts,
            resume_dir=config.model_dir,
            init_model=initial,
        )


def probe_part(
    config: Config, classifier: keras.layers.Layer, location, initial: keras.Model | None = None
) -> dict:
    """`{saved name: classifier}` when the fine-tune classifier starts from the linear
    classifier saved in `--checkpoint` (its online probe), else `{}`.

    The reference restores its `supervised_head` with the encoder, so it fine-tunes
    from the probe; `--init_classifier_from_probe` decides here: `auto` loads it when
    its shapes fit (the same number of classes and input width) and
    `--zero_init_logits_layer` is off, else keeps the fresh classifier with a log
    line; `true` makes a misfit a ConfigError; `false` never loads it. `location` is
    the `--checkpoint` (`resolver.Location`), `initial` its model when it was rebuilt
    (our SavedModel, a reference model).
    """
    mode = config.init_classifier_from_probe
    if mode == "false":
        logging.info("Classifier: fresh (--init_classifier_from_probe=false)")
        return {}
    if config.zero_init_logits_layer:  # `true` with it is rejected by Config.validate
        logging.info("Classifier: zero-initialised (--zero_init_logits_layer), not the probe")
        return {}
    saved = checkpoints.saved_classifier(location.path, initial)
    wanted = [list(w.shape) for w in classifier.weights]
    reason = None
    if saved is None:
        reason = "it has no online probe (--lineareval_while_pretraining=false?)"
    elif saved[1] != wanted:
        reason = (
            f"its probe has kernel and bias shapes {saved[1]}, this classifier {wanted} "
            "(another number of classes, or another --ft_proj_selector width)"
        )
    if reason is not None:
        if mode == "true":
            raise ConfigError("init_classifier_from_probe", f"true, but --checkpoint: {reason}")
        logging.info("Classifier: fresh, not from --checkpoint=%s: %s", config.checkpoint, reason)
        return {}
    description = None if location.reference else location.description
    read = None if description is None else description["model"]["ft_proj_selector"]
    if read is not None and read != config.proj_selector:
        logging.warning(
            "Classifier: starts from the probe of --checkpoint, which read projection-head "
            "layer %d, while this classifier reads layer %d (--ft_proj_selector); same "
            "shapes, so loaded as the reference does (--init_classifier_from_probe=false "
            "to start fresh)",
            read,
            config.proj_selector,
        )
    logging.info("Classifier: starts from the probe of %s", config.checkpoint)
    return {saved[0]: classifier}
