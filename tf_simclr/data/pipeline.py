"""Input pipelines: a `Source` in, batched `tf.data.Dataset`s out.

Pretraining batches hold two augmented views of every image
(``{"view1", "view2", "label"}``, SimCLR section 2.1); fine-tuning and
linear-evaluation batches hold one augmented view (``{"image", "label"}``);
evaluation batches hold one centre-cropped image (``{"image", "label"}``).
Which dataset the examples come from is the source's business; how they are
augmented is ``tf_simclr.data.augment``'s. Batch sizes are global: under a
``tf.distribute`` strategy either Keras splits each batch across the replicas,
or (``input_context``, one pipeline per worker) each worker builds its share.

Training pipelines augment in one of three places (``augment_impl``), with the
same distribution of views:

- ``"per_image"``: ``augment.simclr_view`` per image in ``Dataset.map``, then batch;
- ``"batched"``: batch the decoded images (padding mixed sizes), then
  ``augment_batch.simclr_view_batch`` on whole batches (one XLA program per
  batch; faster than per-image on a CPU, see docs/performance.md);
- ``"device"`` (pretraining only): batches of decoded uint8 images, augmented
  inside the train step on the accelerator (``SimCLR(augment=...)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tensorflow as tf

from tf_simclr.choices import AUGMENT_IMPLS, BOUNDS
from tf_simclr.data.augment import AugmentConfig, eval_view, simclr_view, two_views
from tf_simclr.data.augment_batch import simclr_view_batch, two_views_batch
from tf_simclr.data.sources import DataError, Source

_MIN_SHUFFLE_BUFFER = 1000


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per pass over ``num_examples`` (the remainder is dropped).

    Raises:
      DataError: (argument ``batch_size``) when the batch is larger than the split.
    """
    if batch_size not in BOUNDS["train_batch_size"]:
        raise DataError("batch_size", "must be a positive integer", batch_size)
    steps = num_examples // batch_size
    if steps == 0:
        raise DataError(
            "batch_size",
            f"larger than the {num_examples} examples in the split; "
            f"use at most {num_examples} or a larger split",
            batch_size,
        )
    return steps


def _pretrain_views(example: dict[str, tf.Tensor], cfg: AugmentConfig) -> dict[str, tf.Tensor]:
    return two_views(example, cfg)


def _supervised_view(example: dict[str, tf.Tensor], cfg: AugmentConfig) -> dict[str, tf.Tensor]:
    return {"image": simclr_view(example["image"], cfg), "label": example["label"]}


def _pretrain_views_batch(batch: dict[str, tf.Tensor], cfg: AugmentConfig) -> dict[str, tf.Tensor]:
    # tf.data runs on the host CPU: the ops one image at a time, in cache.
    return two_views_batch(batch, cfg, one_by_one=True)


def _supervised_view_batch(batch: dict[str, tf.Tensor], cfg: AugmentConfig) -> dict[str, tf.Tensor]:
    image = simclr_view_batch(batch["image"], cfg, sizes=batch.get("size"), one_by_one=True)
    return {"image": image, "label": batch["label"]}


def _batch_images(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
    """Batches ``{"image", "label"}`` before augmentation.

    Images of one static size are stacked. Otherwise each batch is padded to
    its largest image (bottom and right) and ``"size"`` (int32 ``[B, 2]``)
    keeps each image's true height and width, which the batched crop uses.
    """
    if ds.element_spec["image"].shape[:2].is_fully_defined():
        return ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda ex: {**ex, "size": tf.shape(ex["image"])[:2]})
    return ds.padded_batch(batch_size, drop_remainder=drop_remainder)


def _one_size(source: Source) -> tf.data.Dataset:
    """The source's examples with a static image shape, for ``augment_impl="device"``.

    The train step is traced for one input shape, so every image must have
    the same size. A source that does not declare it (an image folder) is
    taken to have the size of its first image; an image of another size
    stops the pipeline with an error naming both shapes.
    """
    ds = source.dataset
    if ds.element_spec["image"].shape.is_fully_defined():
        return ds
    first = next(iter(ds.take(1)))["image"].shape

    def check(ex):
        return {**ex, "image": tf.ensure_shape(ex["image"], first)}

    return ds.map(check, num_parallel_calls=tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=16)
def _traced(augment: Callable, cfg: AugmentConfig) -> Callable:
    """`augment` with `cfg` as a `tf.function`, one per (augment, cfg) and process.

    Training builds one pipeline per epoch; tracing the augmentation graph anew for
    each would cost seconds per epoch. The map of each pipeline calls this function,
    which is traced once per input signature.
    """
    return tf.function(lambda example: augment(example, cfg))


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of ``epoch``: a function of (seed, epoch) only, so a resumed run
    rebuilds any epoch's order without replaying the epochs before it."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def _training_batches(
    source: Source,
    augment: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]] | None,
    batch_size: int,
    *,
    shuffle_buffer: int | None,
    seed: int | None,
    cache: bool,
    drop_remainder: bool,
    repeat: bool,
    epoch: int | None = None,
    skip_steps: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    augment_impl: str = "per_image",
) -> tf.data.Dataset:
    """Validate, (cache), shuffle, (one epoch or repeat), (shard), (skip), augment, batch.

    ``augment`` maps one example (``"per_image"``) or one batch (``"batched"``);
    with ``"device"`` it is None and the batches hold the decoded images. The
    shared body of `pretrain_dataset` and `supervised_dataset`; see
    `pretrain_dataset` for the other arguments.
    """
    if augment_impl not in AUGMENT_IMPLS:
        allowed = ", ".join(AUGMENT_IMPLS)
        raise DataError("augment_impl", f"is not one of: {allowed}", augment_impl)
    if batch_size not in BOUNDS["train_batch_size"]:
        raise DataError("batch_size", "must be a positive integer", batch_size)
    if shuffle_buffer is not None and shuffle_buffer not in BOUNDS["shuffle_buffer"]:
        bound = BOUNDS["shuffle_buffer"]
        raise DataError("shuffle_buffer", f"must be {bound} (None: automatic)", shuffle_buffer)
    if drop_remainder and source.num_examples < batch_size:
        raise DataError(
            "batch_size",
            f"larger than the {source.num_examples} examples in {source.name} "
            f"split {source.split!r}; no full batch could be formed",
            batch_size,
        )
    if shuffle_buffer is None:
        shuffle_buffer = min(source.num_examples, max(10 * batch_size, _MIN_SHUFFLE_BUFFER))
    if skip_steps and epoch is None:
        raise ValueError("skip_steps applies to one epoch (give epoch)")
    pipelines, pipeline_id, local_batch = 1, 0, batch_size
    if input_context is not None:
        pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        # Per-replica batch; the replicas of one input pipeline take consecutive batches.
        local_batch = input_context.get_per_replica_batch_size(batch_size)
        if pipelines > 1 and not drop_remainder:
            raise ValueError("sharding over input pipelines needs drop_remainder=True")

    ds = _one_size(source) if augment_impl == "device" else source.dataset
    if cache:
        ds = ds.cache()
    if epoch is None:
        ds = ds.shuffle(max(1, shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
    else:
        ds = ds.shuffle(
            max(1, shuffle_buffer),
            seed=None if seed is None else epoch_seed(seed, epoch),
            reshuffle_each_iteration=False,
        )
        if drop_remainder:
            # Whole global batches only: every shard of the epoch has the same number
            # of batches.
            ds = ds.take(source.num_examples // batch_size * batch_size)
    if pipelines > 1:
        # Every pipeline shuffles identically (same seeds) and keeps every
        # `pipelines`-th example, so the replicas' batches of one step together hold
        # the global batch a single pipeline would have formed.
        ds = ds.shard(pipelines, pipeline_id)
    if skip_steps:
        # Resume inside an epoch: drop this pipeline's share of the batches already
        # trained on (before augmentation, which is the expensive part).
        ds = ds.skip(skip_steps * batch_size // pipelines)
    if augment_impl == "per_image":
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(local_batch, drop_remainder=drop_remainder)
    else:
        ds = _batch_images(ds, local_batch, drop_remainder)
        if augment_impl == "batched":
            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # No autotuning thread: deleting an iterator (every `model.fit` ends by deleting its
    # own, in its last epoch or stopped inside one) joins that thread, which TensorFlow
    # 2.21 sometimes does not wake from its timed wait (its period doubles up to 60 s):
    # 3 of 10 runs stopped mid-epoch waited 8.4-21 s idle (benchmarks/stall.py,
    # docs/performance.md). AUTOTUNE then means min(16, cores) parallel calls and a
    # prefetch buffer that grows while the consumer waits (on this CPU the pipeline
    # outruns the step 140-256x, docs/performance.md).
    options.autotune.enabled = False
    if seed is None:
        # Unseeded runs let parallel map calls finish out of order (faster, and
        # nothing is reproducible anyway). Seeded runs keep tf.data's default
        # deterministic order so that a seed reproduces the same batches.
        options.deterministic = False
    return ds.with_options(options)


def pretrain_dataset(
    source: Source,
    augment_cfg: AugmentConfig,
    batch_size: int,
    *,
    shuffle_buffer: int | None = None,
    seed: int | None = None,
    cache: bool = False,
    drop_remainder: bool = True,
    repeat: bool = True,
    epoch: int | None = None,
    skip_steps: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    augment_impl: str = "per_image",
) -> tf.data.Dataset:
    """Batches of two augmented views per image for contrastive pretraining.

    Args:
      source: un-augmented examples.
      augment_cfg: the SimCLR augmentation settings; ``image_size`` is S.
      batch_size: global batch size B (number of images, so 2B views).
      shuffle_buffer: examples in the shuffle buffer; default
        ``min(num_examples, max(10 * batch_size, 1000))``.
      seed: shuffle seed. With a seed the pipeline keeps element order
        deterministic; without one it lets parallel map calls finish out of
        order, which is faster and harmless when nothing is reproducible anyway.
      cache: keep the decoded, un-augmented examples in memory after the first
        pass. The cache sits before augmentation so every epoch still draws
        fresh views; only use it when the decoded split fits in RAM. With
        ``epoch`` every call builds a new cache: cache ``source.dataset`` once
        instead (as `tf_simclr.train` does).
      drop_remainder: drop the last partial batch so every batch has B images
        (a smaller final batch would change the number of negatives).
      repeat: repeat forever (size training with ``steps_per_epoch``),
        reshuffling on every pass. Ignored with ``epoch``.
      epoch: build only this epoch, shuffled with a seed made of ``seed`` and
        ``epoch`` (`epoch_seed`): the same order in every process, in every
        worker and after a restart, without replaying the epochs before it.
        With ``drop_remainder`` it is ``num_examples // B`` whole batches.
        (The seed also combines with TensorFlow's global seed, which
        `tf_simclr.train` sets to the same ``--seed``.)
      skip_steps: with ``epoch``, leave out its first ``skip_steps`` batches (a
        run resumed inside an epoch sees the batches an uninterrupted one
        would; augmentations are drawn afresh).
      input_context: under `tf.distribute` (`distribute_datasets_from_function`),
        this input pipeline's place: the dataset then yields per-replica batches
        of ``B / num_replicas_in_sync``, built from every
        ``num_input_pipelines``-th example of the shared seeded order, so the
        per-replica batches of one step make up the global batch a single
        pipeline would have formed (needs ``drop_remainder`` and a seed).
      augment_impl: where to augment (module docstring): ``"per_image"``,
        ``"batched"`` or ``"device"``.

    Returns:
      A dataset of ``{"view1": float32 [B, S, S, 3] in [0, 1], "view2": same,
      "label": int64 [B]}`` (label -1 when unlabeled). With ``"device"``:
      ``{"image": uint8 [B, H, W, 3], "label": int64 [B]}``, the decoded
      images (all of one size), for a `SimCLR` model built with
      ``augment=augment_cfg``.

    Raises:
      DataError: (argument ``batch_size``) if ``batch_size`` is not positive,
        or if ``drop_remainder`` and the split has fewer than B examples;
        (argument ``augment_impl``) for an unknown ``augment_impl``.
    """
    augment = {
        "per_image": _traced(_pretrain_views, augment_cfg),
        "batched": _traced(_pretrain_views_batch, augment_cfg),
    }.get(augment_impl)
    return _training_batches(
        source,
        augment,
        batch_size,
        augment_impl=augment_impl,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        cache=cache,
        drop_remainder=drop_remainder,
        repeat=repeat,
        epoch=epoch,
        skip_steps=skip_steps,
        input_context=input_context,
    )


def supervised_dataset(
    source: Source,
    augment_cfg: AugmentConfig,
    batch_size: int,
    *,
    shuffle_buffer: int | None = None,
    seed: int | None = None,
    cache: bool = False,
    drop_remainder: bool = True,
    repeat: bool = True,
    epoch: int | None = None,
    skip_steps: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    augment_impl: str = "per_image",
) -> tf.data.Dataset:
    """Batches of one augmented view per image for fine-tuning and linear evaluation.

    Shuffling, caching, batching and their arguments are those of
    `pretrain_dataset`; ``augment_impl`` is ``"per_image"`` or ``"batched"``.
    Fine-tuning and the linear evaluation protocol use random crop and flip
    only (SimCLR Appendix B.5), i.e. an ``AugmentConfig`` with
    ``color_jitter=False, grayscale=False, blur=False``; any config is accepted.

    Returns:
      A dataset of ``{"image": float32 [B, S, S, 3] in [0, 1], "label": int64 [B]}``.

    Raises:
      DataError: as `pretrain_dataset`; also for ``augment_impl="device"``.
    """
    if augment_impl == "device":
        raise DataError("augment_impl", "device augmentation is for pretraining only", augment_impl)
    view = _supervised_view_batch if augment_impl == "batched" else _supervised_view
    return _training_batches(
        source,
        _traced(view, augment_cfg),
        batch_size,
        augment_impl=augment_impl,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        cache=cache,
        drop_remainder=drop_remainder,
        repeat=repeat,
        epoch=epoch,
        skip_steps=skip_steps,
        input_context=input_context,
    )


def eval_dataset(
    source: Source,
    image_size: int,
    batch_size: int,
    *,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batches of centre-cropped images for linear evaluation or inference.

    Order follows the source; no shuffling or repetition, and the last partial
    batch is kept so every example is evaluated exactly once.

    Args:
      source: un-augmented examples.
      image_size: output side S.
      batch_size: global batch size B.
      cache: keep the decoded examples in memory after the first pass (before
        the deterministic preprocessing, for the same memory as pretraining).

    Returns:
      A dataset of ``{"image": float32 [B, S, S, 3] in [0, 1], "label": int64 [B]}``.
    """
    if batch_size not in BOUNDS["eval_batch_size"]:
        raise DataError("batch_size", "must be a positive integer", batch_size)
    ds = source.dataset
    if cache:
        ds = ds.cache()
    ds = ds.map(
        lambda ex: {"image": eval_view(ex["image"], image_size), "label": ex["label"]},
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(batch_size, drop_remainder=False)
    return ds.prefetch(tf.data.AUTOTUNE)
