"""`--mode=import`: a published SimCLR model (reference TF2 SavedModel or checkpoint) as a
self-describing model_dir of ours.

    python run.py --mode=import --checkpoint=r50_1x_sk1/saved_model --model_dir=runs/r50_1x_sk1

reads `--checkpoint` (a reference SavedModel directory, model_dir or `ckpt-N` prefix),
infers its architecture and copies its variables into our `SimCLR` (`tf_simclr.official`;
a SavedModel is also run against ours), then writes what a training run would
(`run_dir.write_imported`, which `tf_simclr.presets` uses for its cache too):
`config.json`, `model.json` (the inferred architecture), the checkpoint `ckpt-0` and
the SavedModel `saved_model/0/`. `--mode=eval`, `--mode=export` and
`--train_mode=finetune --checkpoint=<model_dir>` then take the directory like any other.
The architecture flags are ignored (the source decides them); `--image_size` is kept when
it selects the source's stem (<= 32: CIFAR), else 32 or 224.
"""

from __future__ import annotations

import tensorflow as tf

from tf_simclr import run_dir
from tf_simclr.config import ConfigError


def run(resolved, strategy: tf.distribute.Strategy) -> dict:
    """Imports `--checkpoint` into `--model_dir` (a `resolver.Resolved`); returns what was
    written."""
    config, location = resolved.config, resolved.checkpoint
    if location is None:
        raise ConfigError(
            "checkpoint", "--mode=import needs the reference SavedModel or checkpoint to import"
        )
    if resolved.model_dir.description is not None or resolved.model_dir.has_checkpoint:
        raise ConfigError(
            "model_dir", "already holds a model; import into a new directory", config.model_dir
        )
    return run_dir.write_imported(config, strategy, location.source, location.architecture)
