"""`--train_mode=finetune`: supervised fine-tuning, and linear evaluation (SimCLR Sec. 4.2).

Data: the (optionally class-balanced, `--label_fraction` / `--labels_per_class`)
labelled training split with crop + flip views. Model: `Classifier` on the
encoder (and, with `--ft_proj_selector`, the first head layers, SimCLRv2);
`--fine_tune_after_block=4` freezes the whole encoder: linear evaluation, the
same model as `tf_simclr.eval.linear`. Restore: resume from `model_dir`, else
the encoder (and head) from `--checkpoint` (a model_dir, a `ckpt-N` prefix or
one of our exported SavedModels) and, as the reference, the classifier from
its online probe when it fits (`--init_classifier_from_probe`), else fresh.
Fit and save as pretraining.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_simclr import builders, checkpoints, training
from tf_simclr.config import Config, ConfigError
from tf_simclr.data import supervised_dataset


def run(config: Config, strategy: tf.distribute.Strategy) -> dict:
    """Fine-tunes per `config` under `strategy`; returns the final training logs."""
    training.check_replicas(config, strategy)
    keras.utils.set_random_seed(config.seed)  # see modes.pretrain

    # Data.
    source = builders.train_source(config)
    if source.num_classes == 0:
        raise ConfigError("train_mode", "finetune needs labels; this dataset has none")
    training.check_init_checkpoint(config)
    plan = training.StepPlan.from_config(config, source.num_examples)
    datasets = training.epoch_datasets(config, strategy, source, supervised_dataset)

    # Model and optimizer.
    with strategy.scope():
        model = builders.build_classifier(config, source.num_classes)
        optimizer = training.compile_model(config, model, plan)

    with training.run_directory(config, strategy, model, optimizer) as write_dir:
        # Restore: resume, else initialise from --checkpoint, else fresh.
        manager = checkpoints.manager_for(model, optimizer, write_dir, config.keep_checkpoint_max)
        training.restore(
            config, manager, builders.init_parts(model), classifier=model.supervised_head
        )
        start = int(optimizer.iterations.numpy())
        training.describe_run(config, strategy, source.num_classes)
        training.log_start(config, strategy, "Fine-tuning", source, plan, start, write_dir)

        # Fit and save.
        result = training.fit(config, model, optimizer, manager, plan, start, write_dir, datasets)
    return training.save_result(config, strategy, result)
