"""`--train_mode=distill`: SimCLRv2's third step (Sec. 2.3, eq. 2).

Data: every image of the training split with crop + flip views, labels ignored
(or, with `--distill_label_weight`, kept on the `--label_fraction` /
`--labels_per_class` subset). Model: the student of the architecture flags
(`Classifier`: smaller than the teacher, or the same for self-distillation),
and the teacher from `--teacher` (one of our fine-tuned model_dirs, checkpoints
or SavedModels, or a published SimCLR model, imported on the fly), frozen and in
inference mode. Restore: resume the student from `model_dir`, else initialise its
encoder from `--checkpoint` (a pretrained run), else fresh. Fit: `Distiller`
minimises the cross-entropy against the teacher's softened predictions. Save: the
student alone, so `model_dir` is a classifier run that `--mode=eval`,
`--mode=export` and fine-tuning take as any other.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import builders, records, run_dir, step_plan, training
from tf_simclr.config import ConfigError
from tf_simclr.data import supervised_dataset
from tf_simclr.models import Distiller


def load_teacher(resolved, strategy: tf.distribute.Strategy, num_classes: int):
    """The teacher of `--teacher` (`resolved.teacher`, a `resolver.Location`), rebuilt and
    restored; checked against the student's classes and preprocessing.

    `--teacher` is one of our model_dirs, checkpoints or SavedModels (rebuilt from its
    description), or a published reference model (its architecture inferred from its
    variables and imported, `tf_simclr.official`).
    """
    config, location = resolved.config, resolved.teacher
    if location is None:
        raise ConfigError("teacher", "--train_mode=distill needs the teacher to distil")
    description = location.described()
    saved = description["model"]
    has_logits = saved["train_mode"] != "pretrain" or saved["lineareval_while_pretraining"]
    if not has_logits or description["num_classes"] < 1:
        raise ConfigError("teacher", "has no classifier (fine-tune it first)", location.path)
    if description["num_classes"] != num_classes:
        raise ConfigError(
            "teacher",
            f"predicts {description['num_classes']} classes, the training data has "
            f"{num_classes} (another --dataset?)",
            location.path,
        )
    if location.reference:
        # A reference model records no image size, only the stem it was trained with.
        run_dir.check_stem(config, description, f"--teacher={location.path}")
    elif saved["image_size"] != config.image_size:
        raise ConfigError(
            "image_size",
            f"the teacher was trained at --image_size={saved['image_size']}; teacher and "
            "student must see the same input preprocessing",
            config.image_size,
        )
    teacher_config = config.replace(train_mode="finetune", checkpoint="", teacher="")
    teacher, what = location.load(teacher_config, strategy)
    teacher.trainable = False
    logging.info("Teacher: %s (%s, %d classes)", location.path, what, num_classes)
    return teacher


def run(resolved, strategy: tf.distribute.Strategy) -> dict:
    """Distils `--teacher` into the student of `resolved` (a `resolver.Resolved`); returns
    the final training logs."""
    config = resolved.config
    step_plan.check_replicas(config, strategy)
    keras.utils.set_random_seed(config.seed)  # see modes.pretrain

    # Data.
    source = builders.train_source(config)
    if source.num_classes == 0:
        raise ConfigError("train_mode", "distill needs the number of classes; this data has none")
    plan = step_plan.StepPlan.from_config(config, source.num_examples)
    datasets = training.epoch_datasets(config, strategy, source, supervised_dataset)

    # Models and optimizer: the teacher (frozen), the student, the distiller training it.
    teacher = load_teacher(resolved, strategy, source.num_classes)
    with strategy.scope():
        student = builders.build_classifier(config, source.num_classes)
        distiller = Distiller(
            student,
            teacher,
            temperature=config.distill_temperature,
            label_weight=config.distill_label_weight,
            name="distiller",
        )
        optimizer = training.compile_model(config, distiller, plan)

    # Restore the student (resume, else initialise from --checkpoint, else fresh), fit the
    # distiller and save the student.
    with training.start(
        resolved,
        strategy,
        student,
        optimizer,
        plan,
        source,
        "Distilling",
        trainer=distiller,
        init_parts=builders.init_parts(student),
    ) as run_state:
        result = training.fit(run_state, datasets)
    result["teacher_share"] = _teacher_share(distiller, datasets, result)
    return records.save_result(config, strategy, result)


def _teacher_share(distiller: Distiller, datasets, result: dict, batches: int = 3) -> float | None:
    """The share of a training step spent on the teacher's forward pass, estimated by timing
    the teacher alone on a training batch against the run's mean step time (logged)."""
    steps = result["global_step"] - result.get("start_step", 0)
    if steps <= 0 or not result.get("seconds"):
        return None
    forward = tf.function(lambda images: distiller.teacher_logits(images), reduce_retracing=True)
    strategy = distiller.distribute_strategy
    batch = next(iter(datasets(0, 0)))
    timed = []
    for i in range(batches + 1):  # the first call traces
        began = time.time()
        strategy.run(forward, args=(batch["image"],))
        if i:
            timed.append(time.time() - began)
    share = min(1.0, (sum(timed) / len(timed)) / (result["seconds"] / steps))
    logging.info(
        "Teacher predictions took about %.0f%% of each training step (one forward pass, "
        "timed alone, %d calls)",
        100 * share,
        batches,
    )
    return share
