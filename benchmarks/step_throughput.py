"""The `step` part of `run_benchmarks.py`: SimCLR pretraining step throughput.

The model run.py builds (ResNet + projection head + LARS, `tf_simclr.builders` from a
`Config`), fed a fixed in-memory batch, timed for each `--precision` (timing windows
interleaved), with achieved FLOP/s as a ratio of float32 and bfloat16 matmul FLOP/s
measured in the same process just before and after, the ResNet's 3x3 convolutions
alone as a ceiling, and each precision's speed-up over float32 (`bench_step`).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

import keras
import tensorflow as tf

from tf_simclr import builders
from tf_simclr.config import Config
from tf_simclr.models import SimCLR


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
