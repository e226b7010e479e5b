"""`--mode=eval`: the latest checkpoint of `model_dir`, evaluated on `eval_split`.

The model is rebuilt from `model_dir/model.json` (see `tf_simclr.run_dir`), so only the
data it is evaluated on must be on disk. A pretrained model reports its online probe's
top-1/top-5 (when it has one) and weighted kNN top-1 on encoder features
(`tf_simclr.eval.knn`, against the features of `train_split`, all of it or
`--knn_train_examples` of it); a fine-tuned or distilled one its classifier's
top-1/top-5 (`--eval_steps` > 0: on that many batches only, the first ones of the
split's files in a seeded order, so a fair sample even of a folder stored class by
class; the results then say `partial_eval` and how many of the split's
`split_num_examples` they scored). Results go to the log, to
`model_dir/eval_results.json` and `eval_<name>_<step>.json`, and to TensorBoard
(`model_dir/eval_<name>/`), where <name> is `--eval_name` or the split. With
`--eval_projector`, the encoder features of every eval image also go to TensorBoard's
embedding projector (`tf_simclr.summaries.write_dataset_projector`: vectors, labels, a sprite
of the images) in that directory. `--eval_continuous` evaluates each new checkpoint
until the run's last step.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import tensorflow as tf
from absl import logging

from tf_simclr import builders, checkpoints, locations, run_dir, step_plan
from tf_simclr.callbacks import write_scalars
from tf_simclr.config import Config, ConfigError, flags_for
from tf_simclr.data import eval_dataset
from tf_simclr.eval import evaluate_classifier, frozen_features, knn_top1


def knn_features(config: Config, model, verbose: int = 0) -> dict:
    """`{"train": (x, y), "test": (x, y)}`: encoder features of the train split (capped by
    `--knn_train_examples`) and of the eval split (`builders.knn_sources`), with the eval
    preprocessing (`tf_simclr.eval.frozen_features`)."""
    with flags_for(batch_size="eval_batch_size"):
        return frozen_features(
            model,
            builders.knn_sources(config),
            config.image_size,
            config.eval_batch_size,
            verbose=verbose,
        )


def run(config: Config, strategy: tf.distribute.Strategy) -> dict:
    """Evaluates the latest checkpoint of `config.model_dir` (with `--eval_continuous`,
    each new one until the last step, see `run_continuous`); returns the results."""
    if config.eval_continuous:
        return run_continuous(config, strategy)
    return evaluate_checkpoint(config, strategy, config.model_dir)


def last_step(config: Config) -> int:
    """The step a trainer of `config` stops at: --train_steps, else that of --train_epochs
    over the training split (the evaluator's flags decide, as in the reference)."""
    if config.train_steps:
        return config.train_steps
    return step_plan.StepPlan.from_config(
        config, builders.train_source(config).num_examples
    ).total_steps


def run_continuous(
    config: Config,
    strategy: tf.distribute.Strategy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Evaluates each new checkpoint of `config.model_dir` until the last step is evaluated.

    The reference's evaluator job (`--mode=eval` of its `run.py`): beside a trainer,
    it looks for a new latest checkpoint every `--eval_poll_secs` seconds and
    evaluates it; checkpoints written while an evaluation runs are skipped (only
    the latest counts). A checkpoint the trainer deletes (`--keep_checkpoint_max`)
    before it could be read is skipped with a warning. Stops after evaluating a
    checkpoint at or beyond `last_step(config)`, or when no new checkpoint came
    for `--eval_timeout_secs` (> 0). `sleep` and `clock` are for tests.

    Returns the results of the last evaluation, with `evaluated_steps` (all steps
    evaluated, in order) and `skipped_steps` (deleted before they were read).
    """
    target = last_step(config)
    logging.info("Evaluating each new checkpoint of %s until step %d", config.model_dir, target)
    results: dict = {}
    evaluated: list[int] = []
    skipped: list[int] = []
    seen = -1
    waiting_since = clock()
    while True:
        latest = locations.latest_checkpoint(config.model_dir)
        step = checkpoints.step_of(latest) if latest else -1
        if step > seen:
            seen = step
            try:
                results = evaluate_checkpoint(config, strategy, latest)
                evaluated.append(step)
            except (ConfigError, tf.errors.OpError):
                if locations.complete(latest):
                    raise  # there, but unreadable: a real error
                logging.warning(
                    "%s was deleted before it could be evaluated (the trainer keeps "
                    "--keep_checkpoint_max checkpoints); waiting for the next one",
                    latest,
                )
                skipped.append(step)
            if step >= target:
                break
            waiting_since = clock()
            continue  # a newer checkpoint may have come during the evaluation
        if config.eval_timeout_secs and clock() - waiting_since >= config.eval_timeout_secs:
            logging.warning(
                "No new checkpoint in %s for %g s (--eval_timeout_secs); last evaluated "
                "step: %s of %d",
                config.model_dir,
                config.eval_timeout_secs,
                evaluated[-1] if evaluated else "none",
                target,
            )
            break
        sleep(config.eval_poll_secs)
    return {**results, "evaluated_steps": evaluated, "skipped_steps": skipped}


def evaluate_checkpoint(config: Config, strategy: tf.distribute.Strategy, location: str) -> dict:
    """Evaluates the model of `location` (a model_dir: its latest checkpoint, or a
    `ckpt-N` prefix in it) on --eval_split; writes and returns the results."""
    # Data: only what is evaluated on.
    source = builders.eval_source(config)
    # Model: rebuilt from model.json, restored from the checkpoint.
    model, step, config = run_dir.load_model(location, config, strategy)
    began = time.time()
    with flags_for(batch_size="eval_batch_size"):
        whole = eval_dataset(source, config.image_size, config.eval_batch_size)
    dataset = whole
    if config.eval_steps:
        dataset = whole.take(config.eval_steps)  # the reference's --eval_steps batches
    results: dict = {
        "global_step": step,
        "eval_split": config.eval_split,
        "train_mode": config.train_mode,
    }
    if config.eval_name:
        results["eval_name"] = config.eval_name
    classifier = config.train_mode in ("finetune", "distill")  # a distilled student is one
    if classifier or getattr(model, "probe", None) is not None:
        prefix = "" if classifier else "probe_"
        metrics = evaluate_classifier(model, dataset, verbose=config.verbose)
        results.update({f"{prefix}{k}": v for k, v in metrics.items()})
        # Say when the numbers are of a sample (--eval_steps), and of how many.
        results["split_num_examples"] = source.num_examples
        results["partial_eval"] = metrics["num_examples"] < source.num_examples
        if results["partial_eval"]:
            logging.warning(
                "Partial evaluation: %d of the %d images of %s (--eval_steps=%d, a seeded "
                "random sample); --eval_steps=0 scores them all",
                metrics["num_examples"],
                source.num_examples,
                config.eval_split,
                config.eval_steps,
            )
    if config.train_mode == "pretrain" and config.eval_knn:
        if source.num_classes == 0:
            logging.warning("kNN evaluation skipped: the eval split has no labels")
        else:
            features = knn_features(config, model, verbose=config.verbose)
            results["knn_top1"] = knn_top1(
                features, source.num_classes, k=config.knn_k, temperature=config.knn_temperature
            )
    results["eval_seconds"] = time.time() - began
    logging.info("Evaluation at step %d on %s: %s", step, config.eval_split, results)
    # TensorBoard too, beside the training scalars: eval_<name>/<metric> at the step.
    name = (config.eval_name or config.eval_split).replace("/", "_")
    if config.eval_projector:
        from tf_simclr import summaries

        written = summaries.write_dataset_projector(
            os.path.join(config.model_dir, f"eval_{name}"),
            model,
            whole,  # every eval image, whatever --eval_steps says
            source.num_examples,
            source.class_names,
        )
        logging.info("Wrote the embedding projector files: %s", written["config"])
    write_scalars(os.path.join(config.model_dir, f"eval_{name}"), step, results, f"eval_{name}")
    for filename in ("eval_results.json", f"eval_{name}_{step}.json"):
        with open(os.path.join(config.model_dir, filename), "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
    return results
