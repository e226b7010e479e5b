"""Cost of the label-free monitor relative to a pretraining step, in one process.

    PYTHONPATH=. python benchmarks/label_free_cost.py [--width=0.25] [--batch=256]
        [--images=256] [--image_size=32] [--repeats=5]

Builds the proof recipe's model (ResNet-18, CIFAR stem) as run.py does, times a
pretraining step on random images (Keras' train function, after warm-up) and one
measurement of `LabelFreeMonitor` (inference over 2 x `--images` views plus the four
measures), alternating, and prints the median of each and the cost per step of
`--label_free_monitor_steps` = 10, 100, 500.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from tf_simclr import builders, step_plan, training
    from tf_simclr.callbacks import LabelFreeMonitor
    from tf_simclr.config import Config

    config = Config(
        mode="train",
        dataset="cifar10",
        model_dir="/tmp/unused",
        image_size=args.image_size,
        resnet_depth=18,
        width_multiplier=args.width,
        train_batch_size=args.batch,
        train_steps=1000,
    )
    model = builders.build_pretrain_model(config, 10)
    plan = step_plan.StepPlan.from_config(config, 50000)
    training.compile_model(config, model, plan)
    rng = np.random.default_rng(0)
    shape = (args.batch, args.image_size, args.image_size, 3)
    batch = {
        "view1": rng.uniform(0, 1, shape).astype(np.float32),
        "view2": rng.uniform(0, 1, shape).astype(np.float32),
        "label": rng.integers(0, 10, args.batch).astype(np.int32),
    }
    views = rng.uniform(0, 1, (2, args.images, args.image_size, args.image_size, 3))
    monitor = LabelFreeMonitor(views[0].astype(np.float32), views[1].astype(np.float32))
    monitor.set_model(model)

    import tensorflow as tf

    data = iter(tf.data.Dataset.from_tensors(batch).repeat())
    model.make_train_function()

    def step():
        model.train_function(data)

    for fn in (step, monitor.measure):  # warm-up: trace and compile
        fn()
        fn()
    times = {"step": [], "measure": []}
    for _ in range(args.repeats):
        for name, fn in (("step", step), ("measure", monitor.measure)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    step_s, measure_s = (statistics.median(times[k]) for k in ("step", "measure"))
    print(f"train step (batch {args.batch}): {step_s * 1000:.0f} ms median of {args.repeats}")
    print(f"one measurement ({2 * args.images} views): {measure_s * 1000:.0f} ms")
    print(f"measurement / step: {measure_s / step_s:.2f}")
    for every in (10, 100, 500):
        print(
            f"--label_free_monitor_steps={every}: +{100 * measure_s / step_s / every:.2f}% per step"
        )


if __name__ == "__main__":
    main()
