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

from tf_simclr import builders, records, step_plan, training
from tf_simclr.config import ConfigError
from tf_simclr.data import supervised_dataset


def run(resolved, strategy: tf.distribute.Strategy) -> dict:
    """Fine-tunes per `resolved` (a `resolver.Resolved`) under `strategy`; returns the final
    training logs."""
    config = resolved.config
    step_plan.check_replicas(config, strategy)
    keras.utils.set_random_seed(config.seed)  # see modes.pretrain

    # Data.
    source = builders.train_source(config)
    if source.num_classes == 0:
        raise ConfigError("train_mode", "finetune needs labels; this dataset has none")
    plan = step_plan.StepPlan.from_config(config, source.num_examples)
    datasets = training.epoch_datasets(config, strategy, source, supervised_dataset)

    # Model and optimizer.
    with strategy.scope():
        model = builders.build_classifier(config, source.num_classes)
        optimizer = training.compile_model(config, model, plan)

    # Restore (resume, else initialise from --checkpoint, else fresh), fit and save.
    with training.start(
        resolved,
        strategy,
        model,
        optimizer,
        plan,
        source,
        "Fine-tuning",
        init_parts=builders.init_parts(model),
        classifier=model.supervised_head,
    ) as run_state:
        result = training.fit(run_state, datasets)
    return records.save_result(config, strategy, result)
