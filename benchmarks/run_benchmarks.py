"""Performance benchmarks for tf_simclr on the machine at hand (see docs/performance.md).

Three parts, each selectable with `--parts`:

- `step`: SimCLR pretraining step throughput (ResNet + projection head + LARS, fed a
  fixed in-memory batch) for each `--precision` (timing windows interleaved), with
  achieved FLOP/s as a ratio of float32 and bfloat16 matmul FLOP/s measured in the same
  process just before and after, and each precision's speed-up over float32.
- `pipeline`: the two-view augmentation input pipeline alone, read from a real image
  folder (CIFAR-10 JPEGs at 32 px; upscaled copies of them at 224 px with blur),
  per-image vs batched augmentation (`augment_impl`), with and without the cache of
  decoded images (`--cache_dataset`), plus a per-stage breakdown of the augmentation.
- `memory`: peak resident memory (VmHWM) of a short training run per batch size, each
  in its own subprocess.

Bare seconds are noisy: other processes may share the CPU. Compare the ratios, which
are measured within one process run.

    PYTHONPATH=. python benchmarks/run_benchmarks.py            # full run, < ~10 min
    PYTHONPATH=. python benchmarks/run_benchmarks.py --quick    # smoke run, ~1-2 min

The model is the one run.py builds (`tf_simclr.builders`, from a `Config`). The
pipeline part reads CIFAR-10 JPEGs from `--data_dir`, or else from
`../shared/data/cifar10-jpg.tar.gz` extracted once into a cache (`find_cifar10`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import keras
import tensorflow as tf

from tf_simclr import builders
from tf_simclr.config import Config
from tf_simclr.data.augment import AugmentConfig, simclr_view
from tf_simclr.data.augment_batch import simclr_view_batch
from tf_simclr.data.pipeline import pretrain_dataset
from tf_simclr.data.sources import make_source
from tf_simclr.models import SimCLR

PARTS = ("step", "pipeline", "memory")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# The real CIFAR-10 copy beside the checkout (../shared), as on the development machines.
CIFAR_ARCHIVE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "..",
    "shared",
    "data",
    "cifar10-jpg.tar.gz",
)
# Where `find_cifar10` extracts the archive once (reused by later runs).
CIFAR_CACHE = os.path.join(tempfile.gettempdir(), "tf_simclr_cache", "cifar10_jpg")
# Side of the tiny views that measure the per-image path's fixed (per-op) cost: blur
# still runs (kernel 10% of the side, radius 1), the pixel work is ~1/100 of 224 px.
FIXED_COST_SIDE = 24
NOISE_NOTE = (
    "Bare seconds are noisy (other processes may share the CPU); compare the same-process ratios."
)


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """One pretraining-step measurement: model size, batch and timing windows."""

    depth: int = 18
    width: float = 1.0
    image_size: int = 32
    cifar_stem: bool = True
    batch_size: int = 256
    precision: str = "float32"
    jit_compile: bool = False
    warmup_steps: int = 1
    windows: int = 3
    steps_per_window: int = 2

    def __post_init__(self):
        if self.cifar_stem != (self.image_size <= 32):
            raise ValueError("cifar_stem must be image_size <= 32 (the rule of Config.cifar_stem)")


# --- Reference matmul -------------------------------------------------------------------


def matmul_flops_per_second(n: int = 4096, dtype=tf.float32, repeats: int = 3) -> float:
    """Median FLOP/s of one `[n, n] @ [n, n]` matmul (2 n^3 FLOPs) over `repeats` runs."""
    a = tf.random.stateless_uniform([n, n], seed=[1, 2], dtype=tf.float32)
    b = tf.random.stateless_uniform([n, n], seed=[3, 4], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)

    @tf.function
    def product(x, y):
        # Reduce to a scalar so fetching the result does not copy 64 MB.
        return tf.reduce_sum(tf.cast(tf.linalg.matmul(x, y), tf.float32))

    product(a, b).numpy()  # trace and warm up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(seconds)


def conv_stage_flops_per_second(
    batch: int, size: int, width: float, dtype=tf.float32, repeats: int = 3
) -> dict:
    """FLOP/s of the ResNet's 3x3 convolutions alone: a ceiling for the step's FLOP/s.

    One stride-1 3x3 'same' convolution per stage shape of the CIFAR-stem ResNet
    (`[batch, size / 2^k, size / 2^k, 64 * width * 2^k]`, k = 0..3, the same FLOPs per
    stage), forward plus both gradients (input and filter: 3x the forward FLOPs), as the
    step runs them (oneDNN kernels, graph mode). Stages are timed separately; the
    combined rate is total FLOPs over total time. The step also runs batch norm, ReLU,
    residual adds and the optimizer, which do not count as FLOPs, so it cannot beat this.
    """
    stages, total_flops, total_seconds = [], 0.0, 0.0
    for k in range(4):
        side, channels = max(1, size // 2**k), max(1, int(round(64 * width * 2**k)))
        x = tf.cast(tf.random.stateless_uniform([batch, side, side, channels], [k, 1]), dtype)
        w = tf.cast(tf.random.stateless_uniform([3, 3, channels, channels], [k, 2]), dtype)

        @tf.function
        def forward_backward(x, w):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = tf.nn.conv2d(x, w, strides=1, padding="SAME")
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            dx, dw = tape.gradient(loss, [x, w])
            return tf.reduce_sum(tf.cast(dx, tf.float32)) + tf.reduce_sum(tf.cast(dw, tf.float32))

        forward_backward(x, w).numpy()  # trace, warm up
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward_backward(x, w).numpy()
            seconds.append(time.perf_counter() - start)
        flops = 3 * 2.0 * batch * side * side * channels * channels * 9
        stages.append({"shape": [batch, side, side, channels], "flops_per_s": flops / min(seconds)})
        total_flops += flops
        total_seconds += min(seconds)
    return {"stages": stages, "flops_per_s": total_flops / total_seconds}


# --- Pretraining step -------------------------------------------------------------------


def model_config(cfg: StepConfig) -> Config:
    """The run.py `Config` of the measured model: ResNet + 3-layer head + online probe,
    LARS at a constant-looking rate (cosine decay over a million steps), no weight decay."""
    return Config(
        model_dir="",
        resnet_depth=cfg.depth,
        width_multiplier=cfg.width,
        image_size=cfg.image_size,
        train_batch_size=cfg.batch_size,
        temperature=0.5,
        optimizer="lars",
        learning_rate=1.0,
        weight_decay=0.0,
        precision=cfg.precision,
        jit_compile=cfg.jit_compile,
    )


def build_pretrain_model(cfg: StepConfig, num_classes: int = 10) -> SimCLR:
    """SimCLR compiled with its training optimizer, as run.py builds them for `--precision`
    (encoder in the dtype policy, the rest float32, loss scaling for float16)."""
    config = model_config(cfg)
    model = builders.build_pretrain_model(config, num_classes)
    optimizer = builders.build_training_optimizer(config, warmup_steps=0, total_steps=10**6)
    model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
    return model


def forward_flops_per_image(model: SimCLR, image_size: int) -> int:
    """Forward FLOPs of encoder + projection head on one image, by TF's graph profiler.

    The profiler counts the registered float ops of the traced inference graph
    (convolutions and matmuls as 2 x MACs, plus element-wise adds/multiplies it knows);
    batch normalisation and ReLU are not counted, so this slightly undercounts.
    """

    @tf.function
    def forward(images):
        features = model.encoder(images, training=False)
        return model.head(features, training=False)

    concrete = forward.get_concrete_function(
        tf.TensorSpec([1, image_size, image_size, 3], tf.float32)
    )
    options = (
        tf.compat.v1.profiler.ProfileOptionBuilder(
            tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        )
        .with_empty_output()
        .build()
    )
    stats = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
    return int(stats.total_float_ops)


def fixed_batch_dataset(batch_size: int, image_size: int) -> tf.data.Dataset:
    """One random two-view batch in memory, repeated: the step sees no input cost."""
    shape = [batch_size, image_size, image_size, 3]
    batch = {
        "view1": tf.random.stateless_uniform(shape, seed=[0, 1]),
        "view2": tf.random.stateless_uniform(shape, seed=[0, 2]),
        "label": tf.random.stateless_uniform([batch_size], seed=[0, 3], maxval=10, dtype=tf.int64),
    }
    return tf.data.Dataset.from_tensors(batch).repeat()


def seconds_per_step(model: keras.Model, dataset: tf.data.Dataset, cfg: StepConfig) -> list[float]:
    """Seconds per step of each timing window (after `cfg.warmup_steps` untimed steps)."""
    model.fit(dataset, epochs=1, steps_per_epoch=cfg.warmup_steps, verbose=0)
    return [time_window(model, dataset, cfg) for _ in range(cfg.windows)]


class _StepClock(keras.callbacks.Callback):
    """Wall-clock time from the first training batch's start to the last one's end."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.end = time.perf_counter()


def time_window(model: keras.Model, dataset: tf.data.Dataset, cfg: StepConfig) -> float:
    """Seconds per step over one `fit` of `cfg.steps_per_window` steps.

    Timed from the first step's start to the last step's end, not around the `fit`
    call: on these VMs some `fit` calls spend seconds outside their steps (set-up or
    tear-down, about 5 s in 4 of 6 calls on 2026-12-01, which made whole-call windows
    come out at 10.24 s whatever the precision), a cost a real run pays once, not per
    step.
    """
    clock = _StepClock()
    model.fit(dataset, epochs=1, steps_per_epoch=cfg.steps_per_window, verbose=0, callbacks=[clock])
    return (clock.end - clock.start) / cfg.steps_per_window


def bench_step(cfg: StepConfig, precisions: list[str]) -> dict:
    """Step throughput per precision and achieved FLOP/s relative to same-process matmuls.

    The models of all `precisions` are built and warmed up first; their timing windows
    then alternate (f32, bf16, f32, bf16, ...) so that a change in the machine's load
    hits all of them alike, and the speed-up over float32 is a same-run ratio.
    """
    matmul_before = matmul_flops_per_second()
    bf16_before = matmul_flops_per_second(dtype=tf.bfloat16)
    dataset = fixed_batch_dataset(cfg.batch_size, cfg.image_size)
    models, fwd = {}, None
    for precision in precisions:
        keras.utils.set_random_seed(0)
        models[precision] = build_pretrain_model(dataclasses.replace(cfg, precision=precision))
        if fwd is None:  # the FLOP count does not depend on the dtype
            fwd = forward_flops_per_image(models[precision], cfg.image_size)
        models[precision].fit(dataset, epochs=1, steps_per_epoch=cfg.warmup_steps, verbose=0)
    windows = {precision: [] for precision in precisions}
    for _ in range(cfg.windows):
        for precision in precisions:
            windows[precision].append(time_window(models[precision], dataset, cfg))
    # The step's 3x3 convolutions alone, per precision (its compute dtype), at 2B images
    # (two views).
    conv = {
        precision: conv_stage_flops_per_second(
            2 * cfg.batch_size,
            cfg.image_size,
            cfg.width,
            tf.as_dtype(keras.DTypePolicy(precision).compute_dtype),
        )
        for precision in precisions
    }
    matmul_after = matmul_flops_per_second()
    bf16_after = matmul_flops_per_second(dtype=tf.bfloat16)

    # Backward ~ 2x forward (gradients w.r.t. activations and weights); 2B views per step.
    step_flops = 3 * fwd * 2 * cfg.batch_size
    matmul_ref = statistics.mean([matmul_before, matmul_after])
    bf16_ref = statistics.mean([bf16_before, bf16_after])
    per_precision = {}
    for precision in precisions:
        step_seconds = statistics.median(windows[precision])
        per_precision[precision] = {
            "window_seconds_per_step": windows[precision],
            "seconds_per_step": step_seconds,
            "source_images_per_s": cfg.batch_size / step_seconds,
            "step_flops_per_s": step_flops / step_seconds,
            "step_over_matmul_f32": step_flops / step_seconds / matmul_ref,
            "step_over_matmul_bf16": step_flops / step_seconds / bf16_ref,
            "conv3x3": conv[precision],
            "conv3x3_over_matmul_f32": conv[precision]["flops_per_s"] / matmul_ref,
            "step_over_conv3x3": step_flops / step_seconds / conv[precision]["flops_per_s"],
        }
    if "float32" in per_precision:
        base = per_precision["float32"]["seconds_per_step"]
        for result in per_precision.values():
            result["speedup_over_float32"] = base / result["seconds_per_step"]
            result["conv3x3_speedup_over_float32"] = (
                result["conv3x3"]["flops_per_s"]
                / per_precision["float32"]["conv3x3"]["flops_per_s"]
            )
    first = per_precision[precisions[0]]
    return {
        "config": dataclasses.asdict(dataclasses.replace(cfg, precision=",".join(precisions))),
        "encoder_params": int(models[precisions[0]].encoder.count_params()),
        "forward_flops_per_image": fwd,
        "flop_count_method": "tf.compat.v1.profiler float_operation on traced encoder+head",
        "step_flops": step_flops,
        "precisions": per_precision,
        # The first precision's numbers at the top level, as before.
        **{k: v for k, v in first.items() if k != "speedup_over_float32"},
        "matmul_f32_flops_per_s_before": matmul_before,
        "matmul_f32_flops_per_s_after": matmul_after,
        "matmul_bf16_flops_per_s_before": bf16_before,
        "matmul_bf16_flops_per_s_after": bf16_after,
        "matmul_bf16_flops_per_s": bf16_ref,
        "bf16_over_f32_matmul": bf16_ref / matmul_ref,
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
        },
    }


# --- Input pipeline ---------------------------------------------------------------------


def find_cifar10(data_dir: str = "") -> str | None:
    """A directory holding CIFAR-10's `train/<class>/*.jpg` (and `test/`), or None.

    `data_dir` (a `--data_dir` flag) when given, which must hold `train/`; else the
    archive beside the checkout (`CIFAR_ARCHIVE`) extracted into `CIFAR_CACHE` (once:
    later calls reuse it); None when there is no archive either.
    """
    if data_dir:
        if not os.path.isdir(os.path.join(data_dir, "train")):
            raise SystemExit(f"--data_dir={data_dir} holds no train/ folder of CIFAR-10 JPEGs")
        return data_dir
    if os.path.isdir(os.path.join(CIFAR_CACHE, "train")):
        return CIFAR_CACHE
    if not os.path.exists(CIFAR_ARCHIVE):
        return None
    os.makedirs(os.path.dirname(CIFAR_CACHE), exist_ok=True)
    partial = tempfile.mkdtemp(prefix="cifar10_jpg.", dir=os.path.dirname(CIFAR_CACHE))
    with tarfile.open(CIFAR_ARCHIVE) as archive:
        archive.extractall(partial, filter="data")
    try:
        os.rename(partial, CIFAR_CACHE)  # complete, or not there at all
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    return CIFAR_CACHE


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


# --- Peak memory ------------------------------------------------------------------------


def vm_hwm_bytes() -> int:
    """This process's peak resident set size (VmHWM) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(cfg: StepConfig) -> None:
    """Runs a short training (warm-up + one window) and prints its peak RSS as JSON."""
    model = build_pretrain_model(cfg)
    seconds_per_step(model, fixed_batch_dataset(cfg.batch_size, cfg.image_size), cfg)
    print(json.dumps({"batch_size": cfg.batch_size, "vm_hwm_bytes": vm_hwm_bytes()}))


def bench_memory(cfg: StepConfig, batch_sizes: list[int]) -> dict:
    """Peak RSS per batch size, each measured in a fresh subprocess."""
    results = {}
    for batch in batch_sizes:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            f"--memory_child_batch={batch}",
            f"--depth={cfg.depth}",
            f"--width={cfg.width}",
            f"--image_size={cfg.image_size}",
            f"--jit_compile={cfg.jit_compile}",
            f"--precision={cfg.precision}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            results[str(batch)] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        child = json.loads(done.stdout.strip().splitlines()[-1])
        results[str(batch)] = {
            "vm_hwm_gib": child["vm_hwm_bytes"] / 2**30,
            # Max over all children waited for so far: a cross-check, not per child.
            "children_ru_maxrss_gib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            / 2**20,
        }
    return results


# --- Report -----------------------------------------------------------------------------


def print_table(results: dict) -> None:
    rows = []
    step = results.get("step")
    if step:
        c = step["config"]
        rows += [
            (
                "step config",
                f"ResNet-{c['depth']} w{c['width']} {c['image_size']}px B={c['batch_size']} "
                f"jit={c['jit_compile']}",
            ),
            ("forward GFLOP / image", f"{step['forward_flops_per_image'] / 1e9:.4f}"),
        ]
        for precision, p in step["precisions"].items():
            rows += [
                (f"[{precision}] seconds / step (median)", f"{p['seconds_per_step']:.3f}"),
                (f"[{precision}] source images / s", f"{p['source_images_per_s']:.1f}"),
                (f"[{precision}] step GFLOP/s", f"{p['step_flops_per_s'] / 1e9:.1f}"),
                (
                    f"[{precision}] step / f32 matmul [f32 target >= 0.75]",
                    f"{p['step_over_matmul_f32']:.3f}",
                ),
                (f"[{precision}] step / bf16 matmul", f"{p['step_over_matmul_bf16']:.3f}"),
                (
                    f"[{precision}] 3x3 convs alone (fwd+bwd) / f32 matmul",
                    f"{p['conv3x3_over_matmul_f32']:.3f} (stages: "
                    + ", ".join(f"{st['flops_per_s'] / 1e9:.0f}" for st in p["conv3x3"]["stages"])
                    + " GFLOP/s)",
                ),
                (f"[{precision}] step / 3x3 convs alone", f"{p['step_over_conv3x3']:.3f}"),
            ]
            if precision != "float32" and "speedup_over_float32" in p:
                target = " [bf16 target >= 1.6]" if precision == "mixed_bfloat16" else ""
                rows.append(
                    (
                        f"[{precision}] speed-up over float32{target}",
                        f"{p['speedup_over_float32']:.2f}",
                    )
                )
        rows += [
            ("f32 matmul GFLOP/s before", f"{step['matmul_f32_flops_per_s_before'] / 1e9:.1f}"),
            ("f32 matmul GFLOP/s after", f"{step['matmul_f32_flops_per_s_after'] / 1e9:.1f}"),
            (
                "bf16 matmul GFLOP/s before / after",
                f"{step['matmul_bf16_flops_per_s_before'] / 1e9:.1f} / "
                f"{step['matmul_bf16_flops_per_s_after'] / 1e9:.1f}",
            ),
            ("bf16 / f32 matmul", f"{step['bf16_over_f32_matmul']:.2f}"),
        ]
    pipe = results.get("pipeline")
    if pipe and "skipped" not in pipe:
        for recipe, label in (("cifar32", "32px"), ("imagenet224", "224px+blur")):
            r = pipe[recipe]
            for variant in ("per_image", "batched", "per_image_cached", "batched_cached"):
                rows.append(
                    (
                        f"pipeline {label} {variant}: images/s (/ core), per CPU-s",
                        f"{r[variant]:.1f} ({r[variant + '_per_core']:.1f}), "
                        f"{r[variant + '_per_cpu_second']:.1f}",
                    )
                )
            target = " [target >= 2]" if recipe == "imagenet224" else ""
            for name, key in (
                (f"batched / per_image{target}", "batched_over_per_image"),
                ("batched / per_image, cached", "batched_over_per_image_cached"),
                ("cached / uncached, per_image", "cached_over_uncached_per_image"),
                ("cached / uncached, batched", "cached_over_uncached_batched"),
            ):
                rows.append(
                    (
                        f"pipeline {label} {name}: wall, CPU",
                        f"{r[key]:.2f}, {r[key + '_per_cpu_second']:.2f}",
                    )
                )
        for key, label in (
            ("stages_ms_per_image_224", "224px"),
            ("stages_ms_per_image_32", "32px"),
        ):
            for stage, row in pipe[key].items():
                rows.append(
                    (
                        f"stage {label} {stage}: ms/image per_image, batched (wall; CPU)",
                        f"{row['per_image']:.3f}, {row['batched']:.3f} ({row['speedup']:.2f}x); "
                        f"{row['per_image_cpu']:.3f}, {row['batched_cpu']:.3f} "
                        f"({row['speedup_cpu']:.2f}x)",
                    )
                )
        fixed = pipe.get("fixed_cost_224")
        if fixed:
            rows.append(
                (
                    f"224px recipe at {fixed['image_size']} px, per_image: ms/image (wall; CPU)",
                    f"{fixed['per_image']:.3f}; {fixed['per_image_cpu']:.3f} = "
                    f"{100 * fixed['share_cpu']:.1f}% of 224 px, batching ceiling "
                    f"{fixed['batching_ceiling_cpu']:.2f}x",
                )
            )
        if "cifar32_over_train_step" in pipe:
            rows.append(
                (
                    "pipeline 32px / train step [target >= 5] (per_image, batched)",
                    f"{pipe['cifar32_over_train_step']:.1f}, "
                    f"{pipe['cifar32_batched_over_train_step']:.1f}",
                )
            )
    elif pipe:
        rows.append(("pipeline", f"skipped: {pipe['skipped']}"))
    for batch, mem in (results.get("memory") or {}).items():
        value = f"{mem['vm_hwm_gib']:.2f}" if "vm_hwm_gib" in mem else f"error {mem['error']}"
        rows.append((f"peak RSS GiB, batch {batch}", value))
    width = max(len(name) for name, _ in rows) if rows else 0
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for line in missed_targets(results):
        print(line)
    print(NOISE_NOTE)


def missed_targets(results: dict) -> list[str]:
    """One paragraph per issue-5 target this run missed, saying what limits it, from
    ceilings measured in the same run (see docs/performance.md for the analysis)."""
    lines = []
    step = (results.get("step") or {}).get("precisions", {})
    f32 = step.get("float32")
    if f32 and f32["step_over_matmul_f32"] < 0.75:
        conv = f32["conv3x3_over_matmul_f32"]
        missed = (
            f"MISSED float32 step / matmul >= 0.75 ({f32['step_over_matmul_f32']:.2f}): the "
            f"step's 3x3 convolutions alone, forward and both gradients at its stage shapes, "
            f"reach {conv:.2f} of the matmul rate in this run"
        )
        if conv < 0.75:
            missed += (
                ", a ceiling below the target set by TensorFlow's oneDNN convolution kernels; "
                "batch norm, ReLU, residual adds and LARS add time but no counted FLOPs."
            )
        else:
            missed += (
                f", and the step reaches {f32['step_over_conv3x3']:.2f} of that: the rest "
                "of the step (batch norm forward and backward, ReLU, residual adds, strided "
                "and 1x1 convolutions, LARS) takes time without counted FLOPs, and the step's "
                "ops share the cores (see docs/performance.md for a profile)."
            )
        lines.append(missed)
    bf16 = step.get("mixed_bfloat16")
    if bf16 and "speedup_over_float32" in bf16 and bf16["speedup_over_float32"] < 1.6:
        lines.append(
            f"MISSED mixed_bfloat16 >= 1.6x float32 ({bf16['speedup_over_float32']:.2f}x): the "
            f"3x3 convolutions alone speed up {bf16['conv3x3_speedup_over_float32']:.2f}x in "
            "bfloat16 at these shapes, and batch-norm statistics, head, loss and optimizer "
            "stay float32."
        )
    pipe = results.get("pipeline") or {}
    big = pipe.get("imagenet224")
    ops = pipe.get("stages_ms_per_image_224", {}).get("whole view")
    fixed = pipe.get("fixed_cost_224")
    if big and ops and big["batched_over_per_image_per_cpu_second"] < 2:
        missed = (
            "MISSED 224 px batched / per_image >= 2 "
            f"({big['batched_over_per_image']:.2f} wall, "
            f"{big['batched_over_per_image_per_cpu_second']:.2f} per CPU-s): the augmentation "
            f"ops alone (whole view, no decode, both paths in tf.data) are "
            f"{ops['speedup_cpu']:.2f}x faster batched per CPU-s"
        )
        if ops["speedup_cpu"] < 2:
            missed += ", a ceiling below the target"
            if fixed:
                missed += (
                    f". The per-image path's fixed cost (the same recipe at "
                    f"{fixed['image_size']} px) is {100 * fixed['share_cpu']:.0f}% of its CPU "
                    f"time at 224 px: batching as such removes at most that (a ceiling of "
                    f"{fixed['batching_ceiling_cpu']:.2f}x), so a 2x needs per-pixel work twice "
                    "as fast as TF's per-image kernels (bicubic resize, AdjustHue, "
                    "AdjustSaturation, depthwise blur); decode costs both paths the same."
                )
            else:
                missed += "; decode costs both paths the same."
        else:
            missed += "; the rest is lost to decode and tf.data's per-element work."
        lines.append(missed)
    if "cifar32_over_train_step" in pipe and pipe["cifar32_over_train_step"] < 5:
        lines.append(
            f"MISSED pipeline 32 px >= 5x training ({pipe['cifar32_over_train_step']:.1f}x)."
        )
    return lines


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of " + str(PARTS))
    parser.add_argument("--output", default="benchmarks/results/latest.json")
    parser.add_argument("--quick", action="store_true", help="tiny width, few steps")
    parser.add_argument(
        "--data_dir",
        default="",
        help="CIFAR-10 JPEG folder (train/<class>/*.jpg) for the pipeline part; default: "
        "../shared/data/cifar10-jpg.tar.gz, extracted once into " + CIFAR_CACHE,
    )
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--width", type=float, default=None, help="default 1.0 (quick: 0.125)")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument(
        "--precision",
        default="float32,mixed_bfloat16",
        help="comma list of float32, mixed_bfloat16, mixed_float16: each is timed in the "
        "same run (windows interleaved); the memory part uses the first",
    )
    parser.add_argument("--jit_compile", type=lambda s: s.lower() in ("1", "true"), default=False)
    parser.add_argument("--intra_op_threads", type=int, default=0, help="0: TF's default")
    parser.add_argument("--inter_op_threads", type=int, default=0, help="0: TF's default")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--steps_per_window", type=int, default=2)
    parser.add_argument("--memory_batches", default="256,512")
    parser.add_argument("--memory_child_batch", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    width = args.width if args.width is not None else (0.125 if args.quick else 1.0)
    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    precisions = [p for p in args.precision.split(",") if p]
    unknown = set(precisions) - set(PRECISIONS)
    if unknown or not precisions:
        raise SystemExit(f"unknown --precision {sorted(unknown)}; choose from {PRECISIONS}")
    cfg = StepConfig(
        depth=args.depth,
        width=width,
        image_size=args.image_size,
        cifar_stem=args.image_size <= 32,  # as run.py
        batch_size=args.batch_size,
        precision=precisions[0],
        jit_compile=args.jit_compile,
        windows=2 if args.quick else args.windows,
        steps_per_window=args.steps_per_window,
    )
    if args.memory_child_batch:
        memory_child(dataclasses.replace(cfg, batch_size=args.memory_child_batch, windows=1))
        return
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}; choose from {PARTS}")

    results = {"machine": machine_info(), "quick": args.quick, "note": NOISE_NOTE}
    start = time.perf_counter()
    if "step" in parts:
        print("[step] measuring ...", flush=True)
        results["step"] = bench_step(cfg, precisions)
    if "pipeline" in parts:
        print("[pipeline] measuring ...", flush=True)
        train_rate = results["step"]["source_images_per_s"] if "step" in results else None
        with tempfile.TemporaryDirectory() as workdir:
            results["pipeline"] = bench_pipeline(workdir, args.quick, train_rate, args.data_dir)
    if "memory" in parts:
        print("[memory] measuring ...", flush=True)
        batches = [int(b) for b in args.memory_batches.split(",") if b]
        results["memory"] = bench_memory(cfg, batches)
    results["wall_seconds"] = time.perf_counter() - start
    results["machine"]["load_average_at_end"] = os.getloadavg()

    print_table(results)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
