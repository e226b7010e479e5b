"""The `pipeline` part of `run_benchmarks.py`: the two-view augmentation input pipeline alone.

Read from a real image folder (CIFAR-10 JPEGs at 32 px; upscaled copies of them at
224 px with blur), per-image vs batched augmentation (`augment_impl`), with and without
the cache of decoded images (`--cache_dataset`), plus a per-stage breakdown of the
augmentation and the per-image path's fixed cost (`bench_pipeline`).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

import tensorflow as tf

from benchmarks.cifar10_jpegs import CIFAR_ARCHIVE, find_cifar10
from tf_simclr.data.augment import AugmentConfig, simclr_view
from tf_simclr.data.augment_batch import simclr_view_batch
from tf_simclr.data.pipeline import pretrain_dataset
from tf_simclr.data.sources import make_source

# Side of the tiny views that measure the per-image path's fixed (per-op) cost: blur
# still runs (kernel 10% of the side, radius 1), the pixel work is ~1/100 of 224 px.
FIXED_COST_SIDE = 24


def upscaled_folder(cifar_root: str, workdir: str, count: int, size: int = 256) -> str:
    """`count` CIFAR training images resized to `size` px, as JPEGs in `workdir/train/`."""
    classes = sorted(os.listdir(os.path.join(cifar_root, "train")))
    per_class = max(1, count // len(classes))
    for name in classes:
        src = os.path.join(cifar_root, "train", name)
        dst = os.path.join(workdir, "train", name)
        os.makedirs(dst, exist_ok=True)
        for file in sorted(os.listdir(src))[:per_class]:
            image = tf.io.decode_jpeg(tf.io.read_file(os.path.join(src, file)), channels=3)
            image = tf.image.resize(image, [size, size], method="bicubic")
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            tf.io.write_file(os.path.join(dst, file), tf.io.encode_jpeg(image, quality=90))
    return workdir


def subset_folder(cifar_root: str, workdir: str, count: int) -> str:
    """`count` CIFAR training images (equal per class), symlinked into `workdir/train/`."""
    classes = sorted(os.listdir(os.path.join(cifar_root, "train")))
    per_class = max(1, count // len(classes))
    for name in classes:
        src = os.path.join(cifar_root, "train", name)
        dst = os.path.join(workdir, "train", name)
        os.makedirs(dst, exist_ok=True)
        for file in sorted(os.listdir(src))[:per_class]:
            os.symlink(os.path.join(src, file), os.path.join(dst, file))
    return workdir


def pipeline_images_per_s(
    data_dir: str,
    augment: AugmentConfig,
    batch_size: int,
    warmup: int,
    batches: int,
    augment_impl: str = "per_image",
    cache: bool = False,
) -> tuple[float, float]:
    """Source images (each yields 2 views) of `pretrain_dataset` over an image folder,
    per second of wall-clock time and per second of this process's CPU time.

    The second is images per CPU-core-second: under contention it stays put where
    wall-clock rates fall, and it does not favour a path for running more threads
    (which wins a larger share of a contended CPU). With `cache`, the warm-up first
    reads one whole epoch, so the timed batches come from the cache of decoded images.
    """
    source = make_source("image_folder", "train", data_dir=data_dir)
    dataset = pretrain_dataset(
        source, augment, batch_size, seed=0, cache=cache, augment_impl=augment_impl
    )
    if cache:
        warmup += -(-source.num_examples // batch_size)
    iterator = iter(dataset)
    for _ in range(warmup):  # shuffle buffer, prefetch queue, XLA compilation, (cache)
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del iterator  # stop its background threads before the next measurement
    images = batch_size * batches
    return images / wall, images / cpu


# (impl, cache) variants of the pipeline, each measured `rounds` times, interleaved.
PIPELINE_VARIANTS = (
    ("per_image", False),
    ("batched", False),
    ("per_image", True),
    ("batched", True),
)


def compare_pipelines(
    data_dir: str, augment: AugmentConfig, batch_size: int, batches: int, rounds: int
) -> dict:
    """Median images/s (wall) and images per CPU-second of each `PIPELINE_VARIANTS`
    entry; rounds alternate the variants so that a change in background load hits all
    of them alike."""
    names = [f"{impl}{'_cached' if cache else ''}" for impl, cache in PIPELINE_VARIANTS]
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for _ in range(rounds):
        for name, (impl, cache) in zip(names, PIPELINE_VARIANTS, strict=True):
            w, c = pipeline_images_per_s(data_dir, augment, batch_size, 3, batches, impl, cache)
            wall[name].append(w)
            cpu[name].append(c)
    result = {"rounds_wall": wall, "rounds_cpu": cpu}
    for name in names:
        result[name] = statistics.median(wall[name])
        result[name + "_per_cpu_second"] = statistics.median(cpu[name])
    for unit in ("", "_per_cpu_second"):
        b, p = result["batched" + unit], result["per_image" + unit]
        bc, pc = result["batched_cached" + unit], result["per_image_cached" + unit]
        result["batched_over_per_image" + unit] = b / p
        result["batched_over_per_image_cached" + unit] = bc / pc
        result["cached_over_uncached_per_image" + unit] = pc / p
        result["cached_over_uncached_batched" + unit] = bc / b
    return result


def _ms_per_image_in_tf_data(dataset: tf.data.Dataset, batch_size: int, batches: int = 3):
    """Best of 3 rounds of `batches` batches of `dataset`: (wall, CPU) ms per image.

    Two warm-up batches first (tracing, XLA compilation, the map's parallelism ramping
    up); each round times the batches together, since the parallel map works ahead.
    """
    iterator = iter(dataset)
    for _ in range(2):
        next(iterator)
    wall, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(iterator)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    del iterator
    per_image = 1000 / (batches * batch_size)
    return min(wall) * per_image, min(cpu) * per_image


def decoded_images(data_dir: str, count: int) -> tf.Tensor:
    """The first `count` training images of an image folder of equal-sized images,
    decoded: uint8 `[count, H, W, 3]`."""
    source = make_source("image_folder", "train", data_dir=data_dir)
    return tf.stack([ex["image"] for ex in source.dataset.take(count)])


def stage_ms_per_image(
    augment: AugmentConfig, images: tf.Tensor, stages: tuple[str, ...] = ()
) -> dict:
    """Milliseconds per image of each augmentation stage, per-image vs batched path,
    of wall-clock time and of CPU time (all cores summed).

    On a batch of real decoded images in memory (no decode, no files: random pixels
    would be unfair to the per-image path, whose HSV kernels branch on which channel
    is largest), each path run as the pipeline runs it: `augment.simclr_view` in a
    parallel `tf.data` map over single images, then batched; `simclr_view_batch` in a
    parallel `tf.data` map over whole batches. Each stage is a view with only that
    component on, at probability 1, on top of the resize of the whole image to the
    view size ("resize": everything off), so a stage's own cost is its row minus
    "resize". "whole view" is the full recipe with its probabilities, and "whole view,
    batch-wide" the same with the batched path's batch-wide ops (`one_by_one=False`,
    the accelerator variant) instead of its default on a CPU. `stages` picks some
    (default all).

    Args:
      augment: the recipe; `image_size` is the view size.
      images: uint8 `[N, H, W, 3]` (`decoded_images`); N is the batch size.
      stages: names of the stages to time; empty: all.
    """
    off = dict(crop=False, flip=False, color_jitter=False, grayscale=False, blur=False)
    only = lambda **on: dataclasses.replace(augment, **{**off, **on})  # noqa: E731
    table = {
        "resize": (only(), None),
        "crop": (only(crop=True, flip=True), None),
        "color_jitter": (only(color_jitter=True, color_jitter_prob=1.0), None),
        "grayscale": (only(grayscale=True, grayscale_prob=1.0), None),
        "whole view": (augment, None),
        "whole view, batch-wide": (augment, False),
    }
    if augment.blur:
        table["blur"] = (only(blur=True, blur_prob=1.0), None)
    parallel = tf.data.AUTOTUNE
    batch_size = images.shape[0]
    result = {}
    for name, (cfg, one_by_one) in table.items():
        if stages and name not in stages:
            continue
        paths = {
            "per_image": tf.data.Dataset.from_tensor_slices(images)
            .repeat()
            .map(lambda i, cfg=cfg: simclr_view(i, cfg), num_parallel_calls=parallel)
            .batch(batch_size),
            "batched": tf.data.Dataset.from_tensors(images)
            .repeat()
            .map(
                lambda x, cfg=cfg, flag=one_by_one: simclr_view_batch(x, cfg, one_by_one=flag),
                num_parallel_calls=parallel,
            ),
        }
        row = {}
        for path, dataset in paths.items():
            row[path], row[path + "_cpu"] = _ms_per_image_in_tf_data(dataset, batch_size)
        row["speedup"] = row["per_image"] / row["batched"]
        row["speedup_cpu"] = row["per_image_cpu"] / row["batched_cpu"]
        result[name] = row
    return result


def per_image_fixed_cost(augment: AugmentConfig, images: tf.Tensor, large: dict) -> dict:
    """The per-image path's cost that does not grow with the pixels, and its share.

    The whole view of the same recipe (same ops, blur included) at a tiny image size,
    where the pixel work is ~1/100 of 224 px: what remains is per-op and per-element
    overhead, the only cost that batching as such removes. `large` is the recipe's
    "whole view" row of `stage_ms_per_image`; "share_cpu" is the tiny view's CPU time
    over the large one's, and "batching_ceiling_cpu" = 1 / (1 - share) the speed-up a
    batched path would reach by removing all of it with per-pixel work as fast as the
    per-image kernels. `images` (uint8 `[N, H, W, 3]`) are resized to the tiny size.
    """
    side = FIXED_COST_SIDE
    tiny_images = tf.cast(tf.round(tf.image.resize(images, [side, side])), tf.uint8)
    tiny_cfg = dataclasses.replace(augment, image_size=side)
    tiny = stage_ms_per_image(tiny_cfg, tiny_images, ("whole view",))["whole view"]
    share = tiny["per_image_cpu"] / large["per_image_cpu"]
    return {
        "image_size": side,
        "per_image": tiny["per_image"],
        "per_image_cpu": tiny["per_image_cpu"],
        "share_cpu": share,
        "batching_ceiling_cpu": 1 / max(1 - share, 1e-9),
    }


def bench_pipeline(
    workdir: str, quick: bool, train_images_per_s: float | None, data_dir: str = ""
) -> dict:
    """CIFAR recipe at 32 px and ImageNet recipe at 224 px: per-image vs batched
    augmentation, with and without `--cache_dataset`, per core and vs training."""
    cifar_root = find_cifar10(data_dir)
    if cifar_root is None:
        reason = f"no --data_dir, and {CIFAR_ARCHIVE} not found"
        print(f"[pipeline] skipped: {reason}")
        return {"skipped": reason}
    cores = os.cpu_count() or 1
    rounds = 1 if quick else 2
    cifar_cfg = AugmentConfig(image_size=32, blur=False, color_jitter_strength=0.5)
    imagenet_cfg = AugmentConfig(image_size=224)
    small_root = subset_folder(cifar_root, os.path.join(workdir, "small"), 2000 if quick else 10000)
    cifar = compare_pipelines(small_root, cifar_cfg, 256, 5 if quick else 20, rounds)
    big_root = upscaled_folder(cifar_root, os.path.join(workdir, "big"), 200 if quick else 500)
    imagenet = compare_pipelines(big_root, imagenet_cfg, 32, 3 if quick else 8, rounds)
    big_images = decoded_images(big_root, 16 if quick else 32)
    result = {
        "cpu_count": cores,
        "cifar32": cifar,
        "imagenet224": imagenet,
        "stages_ms_per_image_224": stage_ms_per_image(imagenet_cfg, big_images),
        "stages_ms_per_image_32": stage_ms_per_image(cifar_cfg, decoded_images(small_root, 256)),
        # The default pipeline (per-image, no cache), as before.
        "cifar32_images_per_s": cifar["per_image"],
        "imagenet224_images_per_s": imagenet["per_image"],
    }
    result["fixed_cost_224"] = per_image_fixed_cost(
        imagenet_cfg, big_images, result["stages_ms_per_image_224"]["whole view"]
    )
    for recipe in ("cifar32", "imagenet224"):
        for variant in ("per_image", "batched", "per_image_cached", "batched_cached"):
            result[recipe][f"{variant}_per_core"] = result[recipe][variant] / cores
    if train_images_per_s:
        result["cifar32_over_train_step"] = cifar["per_image"] / train_images_per_s
        result["cifar32_batched_over_train_step"] = cifar["batched"] / train_images_per_s
    return result
