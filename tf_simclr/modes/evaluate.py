"""`--mode=eval`: the latest checkpoint of `model_dir`, evaluated on `eval_split`.

The model is rebuilt from `model_dir/model.json` (see `tf_simclr.run_dir`), so
only the data it is evaluated on must be on disk. A pretrained model reports
its online probe's top-1/top-5 (when it has one) and weighted kNN top-1 on
encoder features (`tf_simclr.eval.knn`, against the features of the whole
`train_split`); a fine-tuned or distilled one its classifier's top-1/top-5. Results go to
the log, to `model_dir/eval_results.json` and `eval_<split>_<step>.json`, and to
TensorBoard (`model_dir/eval_<split>/`). With `--eval_projector`, the encoder features
of every eval image also go to TensorBoard's embedding projector (`tf_simclr.viz.
write_dataset_projector`: vectors, labels, a sprite of the images) in that directory.
"""

from __future__ import annotations

import json
import os
import time

import tensorflow as tf
from absl import logging

from tf_simclr import builders, run_dir
from tf_simclr.callbacks import write_scalars
from tf_simclr.config import Config, flags_for
from tf_simclr.data import eval_dataset
from tf_simclr.eval import evaluate_classifier, extract_features, knn_accuracy


def frozen_features(config: Config, model, verbose: int = 0) -> dict:
    """`{"train": (x, y), "test": (x, y)}`: encoder features of the whole train split and of
    the eval split, with the eval preprocessing (no augmentation)."""
    splits = {
        "train": builders.train_source(config, subset=False),
        "test": builders.eval_source(config),
    }
    with flags_for(batch_size="eval_batch_size"):
        return {
            name: extract_features(
                model,
                eval_dataset(source, config.image_size, config.eval_batch_size),
                verbose=verbose,
            )
            for name, source in splits.items()
        }


def knn_top1(config: Config, features: dict, num_classes: int) -> float:
    """Weighted kNN top-1 of the test features against the train features."""
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    return knn_accuracy(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=num_classes,
        k=config.knn_k,
        temperature=config.knn_temperature,
    )


def run(config: Config, strategy: tf.distribute.Strategy) -> dict:
    """Evaluates the latest checkpoint of `config.model_dir`; returns the results."""
    # Data: only what is evaluated on.
    source = builders.eval_source(config)
    # Model: rebuilt from model.json, restored from the latest checkpoint.
    model, step, config = run_dir.load_model(config.model_dir, config, strategy)
    began = time.time()
    with flags_for(batch_size="eval_batch_size"):
        dataset = eval_dataset(source, config.image_size, config.eval_batch_size)
    results: dict = {
        "global_step": step,
        "eval_split": config.eval_split,
        "train_mode": config.train_mode,
    }
    classifier = config.train_mode in ("finetune", "distill")  # a distilled student is one
    if classifier or getattr(model, "probe", None) is not None:
        prefix = "" if classifier else "probe_"
        metrics = evaluate_classifier(model, dataset, verbose=config.verbose)
        results.update({f"{prefix}{k}": v for k, v in metrics.items()})
    if config.train_mode == "pretrain" and config.eval_knn:
        if source.num_classes == 0:
            logging.warning("kNN evaluation skipped: the eval split has no labels")
        else:
            features = frozen_features(config, model, verbose=config.verbose)
            results["knn_top1"] = knn_top1(config, features, source.num_classes)
    results["eval_seconds"] = time.time() - began
    logging.info("Evaluation at step %d on %s: %s", step, config.eval_split, results)
    # TensorBoard too, beside the training scalars: eval_<split>/<metric> at the step.
    split = config.eval_split.replace("/", "_")
    if config.eval_projector:
        from tf_simclr import viz

        written = viz.write_dataset_projector(
            os.path.join(config.model_dir, f"eval_{split}"),
            model,
            dataset,
            source.num_examples,
            source.class_names,
        )
        logging.info("Wrote the embedding projector files: %s", written["config"])
    write_scalars(os.path.join(config.model_dir, f"eval_{split}"), step, results, f"eval_{split}")
    for name in ("eval_results.json", f"eval_{config.eval_split}_{step}.json"):
        with open(os.path.join(config.model_dir, name.replace("/", "_")), "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
    return results
