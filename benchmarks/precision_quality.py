"""Does mixed_bfloat16 train as well as float32? Loss curves of short real runs.

Trains the same small SimCLR (ResNet-18 at width 0.25, CIFAR stem, 32 px, batch 256,
LARS, the CIFAR-10 recipe of `experiments/cifar10_r18w025_proof.flags`) for 200 steps
on the CIFAR-10 JPEG folder, once per `--runs` entry `precision:seed`, and records the
NT-Xent loss of every step. The difference between float32 and mixed_bfloat16 at the
same seed is compared with the difference between two float32 seeds (run-to-run
noise: other weight initialisation and data order).

    PYTHONPATH=. python benchmarks/precision_quality.py      # ~30 min on 2 shared cores

Writes `benchmarks/results/precision_quality.json`; docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import keras
import numpy as np

from benchmarks.run_benchmarks import CIFAR_ARCHIVE, find_cifar10
from tf_simclr import builders
from tf_simclr.config import Config
from tf_simclr.data import pretrain_dataset

WINDOW = 20  # steps per point of the smoothed curves


class PerStepLoss(keras.callbacks.Callback):
    """Records each step's own loss: the running-mean metrics are reset before every step."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []
        self.seconds: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        for metric in self.model.metrics:
            metric.reset_state()
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.seconds.append(time.perf_counter() - self._start)


def run_config(data_dir: str, precision: str, seed: int, steps: int) -> Config:
    return Config(
        model_dir="/tmp/unused",
        dataset="image_folder",
        data_dir=data_dir,
        image_size=32,
        resnet_depth=18,
        width_multiplier=0.25,
        num_proj_layers=2,
        train_batch_size=256,
        train_steps=steps,
        warmup_epochs=0.1,  # ~20 of the 200 steps (195 steps per epoch)
        optimizer="lars",
        learning_rate=1.0,
        weight_decay=1e-4,
        temperature=0.5,
        use_blur=False,
        color_jitter_strength=0.5,
        precision=precision,
        seed=seed,
    )


def train_curve(config: Config) -> dict:
    """Per-step losses of `config.train_steps` steps, with the builders `modes.pretrain` uses."""
    source = builders.train_source(config)
    dataset = pretrain_dataset(
        source, builders.augment_config(config), config.train_batch_size, seed=config.seed
    )
    steps_per_epoch = source.num_examples // config.train_batch_size
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    keras.utils.set_random_seed(config.seed)
    model = builders.build_pretrain_model(config, source.num_classes)
    optimizer = builders.build_training_optimizer(config, warmup, config.train_steps)
    model.compile(optimizer=optimizer)
    recorder = PerStepLoss()
    began = time.perf_counter()
    model.fit(
        dataset,
        epochs=1,
        steps_per_epoch=config.train_steps,
        callbacks=[recorder],
        verbose=0,
        shuffle=False,
    )
    return {
        "precision": config.precision,
        "seed": config.seed,
        "losses": recorder.losses,
        "median_step_seconds": statistics.median(recorder.seconds[5:]),
        "wall_seconds": time.perf_counter() - began,
    }


def window_means(losses: list[float]) -> np.ndarray:
    values = np.asarray(losses)
    return values[: len(values) // WINDOW * WINDOW].reshape(-1, WINDOW).mean(1)


def compare(a: dict, b: dict) -> dict:
    """How far apart two loss curves are: on 20-step means, and at the end."""
    wa, wb = window_means(a["losses"]), window_means(b["losses"])
    return {
        "pair": f"{a['precision']}:{a['seed']} vs {b['precision']}:{b['seed']}",
        "mean_abs_window_diff": float(np.abs(wa - wb).mean()),
        "max_abs_window_diff": float(np.abs(wa - wb).max()),
        "last_window_diff": float(wa[-1] - wb[-1]),
    }


def data_dir(flag: str = "") -> str:
    """The CIFAR-10 image folder: `--data_dir`, else the shared archive, extracted once."""
    folder = find_cifar10(flag)
    if folder is None:
        raise SystemExit(f"need --data_dir or {CIFAR_ARCHIVE} (see ../shared/data/README.md)")
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="float32:0,float32:1,mixed_bfloat16:0,mixed_bfloat16:1")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--data_dir", default="", help="CIFAR-10 JPEG folder; default: the shared archive"
    )
    parser.add_argument("--output", default="benchmarks/results/precision_quality.json")
    args = parser.parse_args(argv)
    root = data_dir(args.data_dir)
    runs = []
    for entry in args.runs.split(","):
        precision, seed = entry.split(":")
        print(f"[quality] {precision} seed {seed} ...", flush=True)
        runs.append(train_curve(run_config(root, precision, int(seed), args.steps)))
        last = window_means(runs[-1]["losses"])[-1]
        print(f"  last {WINDOW}-step mean loss {last:.4f}", flush=True)
    by_key = {(r["precision"], r["seed"]): r for r in runs}
    comparisons = []
    for seed in sorted({r["seed"] for r in runs}):
        if ("float32", seed) in by_key and ("mixed_bfloat16", seed) in by_key:
            comparisons.append(compare(by_key["float32", seed], by_key["mixed_bfloat16", seed]))
    for precision in ("float32", "mixed_bfloat16"):
        seeds = sorted(s for p, s in by_key if p == precision)
        if len(seeds) >= 2:
            comparisons.append(compare(by_key[precision, seeds[0]], by_key[precision, seeds[1]]))
    result = {
        "setting": "ResNet-18 w0.25, CIFAR stem, 32 px, batch 256, LARS lr 1.0, wd 1e-4, "
        "temperature 0.5, 2-layer head, CIFAR-10 JPEG folder, per-step NT-Xent loss",
        "steps": args.steps,
        "window": WINDOW,
        "runs": runs,
        "comparisons": comparisons,
        "load_average_at_end": os.getloadavg(),
    }
    for c in comparisons:
        print(
            f"{c['pair']}: mean |diff| of {WINDOW}-step means {c['mean_abs_window_diff']:.4f}, "
            f"max {c['max_abs_window_diff']:.4f}, last window {c['last_window_diff']:+.4f}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
