"""`run(config)`: what `run.py --mode=...` does, as one library function.

- train: `tf_simclr.train.train`, then export a SavedModel;
- eval: evaluate the latest checkpoint in `model_dir` on `eval_split`;
- train_then_eval: train, evaluate, export;
- export: a SavedModel of the latest checkpoint.

In a multi-worker job every worker trains; only the chief evaluates and exports.

Evaluation of a pretrained model reports the online probe's top-1/top-5 (when
it has one) and weighted kNN top-1 on encoder features; of a fine-tuned model,
the classifier's top-1/top-5. Results go to the log and to
`model_dir/eval_results.json` (and `eval_<split>_<step>.json`).
"""

from __future__ import annotations

import json
import os
import time

import tensorflow as tf
from absl import logging

from tf_simclr import builders, distribute, evaluate, export, train
from tf_simclr.config import Config, ConfigError
from tf_simclr.data import eval_dataset


def _restore_latest(config: Config, strategy, num_classes: int):
    """The model of `config` with the latest checkpoint of model_dir loaded; and its step."""
    latest = tf.train.latest_checkpoint(config.model_dir) if config.model_dir else None
    if latest is None:
        raise ConfigError("model_dir", "holds no checkpoint (train first)", config.model_dir)
    with strategy.scope():
        model = builders.build_model(config, num_classes)
    status = tf.train.Checkpoint(model=model).restore(latest)
    try:
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ConfigError(
            "model_dir",
            f"checkpoint {os.path.basename(latest)} does not fit the model of these flags "
            f"(use the flags it was trained with; see config.json): {str(e)[:300]}",
        ) from e
    status.expect_partial()
    step = int(latest.rsplit("-", 1)[1])
    return model, step


def run_eval(config: Config, strategy) -> dict:
    source = builders.eval_source(config)
    model, step = _restore_latest(config, strategy, _num_classes(config))
    began = time.time()
    dataset = eval_dataset(source, config.image_size, config.eval_batch_size)
    results: dict = {
        "global_step": step,
        "eval_split": config.eval_split,
        "train_mode": config.train_mode,
    }
    if config.train_mode == "finetune" or getattr(model, "probe", None) is not None:
        prefix = "" if config.train_mode == "finetune" else "probe_"
        metrics = evaluate.evaluate_classifier(model, dataset)
        results.update({f"{prefix}{k}": v for k, v in metrics.items()})
    if config.train_mode == "pretrain" and config.eval_knn:
        if source.num_classes == 0:
            logging.warning("kNN evaluation skipped: the eval split has no labels")
        else:
            features = frozen_features(config, model, verbose=config.verbose)
            results["knn_top1"] = knn_top1(config, features, source.num_classes)
    results["eval_seconds"] = time.time() - began
    logging.info("Evaluation at step %d on %s: %s", step, config.eval_split, results)
    for name in ("eval_results.json", f"eval_{config.eval_split}_{step}.json"):
        with open(os.path.join(config.model_dir, name.replace("/", "_")), "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
    return results


def frozen_features(config: Config, model, verbose: int = 0) -> dict:
    """{"train": (x, y), "test": (x, y)}: encoder features of the whole train split and
    of the eval split, with the eval preprocessing (no augmentation)."""
    splits = {
        "train": builders.train_source(config, subset=False),
        "test": builders.eval_source(config),
    }
    return {
        name: evaluate.extract_features(
            model,
            eval_dataset(source, config.image_size, config.eval_batch_size),
            verbose=verbose,
        )
        for name, source in splits.items()
    }


def knn_top1(config: Config, features: dict, num_classes: int) -> float:
    """Weighted kNN top-1 of the test features against the train features."""
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    return evaluate.knn_accuracy(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=num_classes,
        k=config.knn_k,
        temperature=config.knn_temperature,
    )


def run_export(config: Config, strategy) -> str:
    model, step = _restore_latest(config, strategy, _num_classes(config))
    path = export.export_saved_model(
        model, os.path.join(config.model_dir, "saved_model"), step, config.image_size
    )
    logging.info("Exported SavedModel for step %d to %s", step, path)
    return path


def _num_classes(config: Config) -> int:
    """Classes of the classifier or online probe the training run built."""
    return builders.train_source(config, subset=False).num_classes


def run(config: Config) -> dict:
    """Validate, build the strategy, dispatch on `config.mode`."""
    config.validate()
    strategy = builders.build_strategy(config)
    result: dict = {}
    if config.mode in ("train", "train_then_eval"):
        result["train"] = train.train(config, strategy)
    if not distribute.is_chief(strategy):
        return result  # evaluation and export are the chief's
    if distribute.task(strategy)[0] is not None:
        # The chief evaluates and exports alone: without the other workers, so without
        # their collectives (the checkpoint holds everything).
        strategy = tf.distribute.get_strategy()
    if config.mode in ("eval", "train_then_eval"):
        result["eval"] = run_eval(config, strategy)
    if config.mode in ("train", "train_then_eval", "export"):
        result["export"] = run_export(config, strategy)
    return result
