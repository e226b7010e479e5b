"""Where does the pretraining step spend its time? Op-type breakdown from the TF profiler.

Builds the step benchmark's model (`run_benchmarks.build_pretrain_model`), runs two
warm-up steps, profiles `--steps` steps with `tf.profiler.experimental`, and prints the
self time per TensorFlow op type (TensorFlow's `framework_op_stats` tool; "IDLE" is
time the executor's threads waited). Used for the analysis in docs/performance.md.

    PYTHONPATH=. python benchmarks/profile_step.py --precision=float32 --width=0.25 --batch_size=128
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import tempfile
import time

import tensorflow as tf
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

from benchmarks.run_benchmarks import StepConfig, build_pretrain_model, fixed_batch_dataset


def op_type_self_times(xplane_path: str) -> dict[str, float]:
    """Total self time in microseconds per op type, from a profiler `.xplane.pb` file."""
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data([xplane_path], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"could not convert {xplane_path}")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    totals: collections.Counter = collections.Counter()
    for row in table["rows"]:
        values = dict(
            zip(columns, [cell.get("v") if cell else None for cell in row["c"]], strict=True)
        )
        totals[values["type"]] += values["total_self_time"]
    return dict(totals)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    cfg = StepConfig(width=args.width, batch_size=args.batch_size, precision=args.precision)
    model = build_pretrain_model(cfg)
    dataset = fixed_batch_dataset(cfg.batch_size, cfg.image_size)
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
        seconds = (time.perf_counter() - start) / args.steps
        tf.profiler.experimental.stop()
        path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
        totals = op_type_self_times(path)
    busy = sum(v for k, v in totals.items() if k != "IDLE")
    print(f"{args.precision} ResNet-18 w{args.width} B={args.batch_size}: {seconds:.3f} s/step")
    print(f"op self time per step (excluding IDLE): {busy / args.steps / 1e3:.1f} ms")
    for name, micros in sorted(totals.items(), key=lambda kv: -kv[1])[: args.top]:
        share = "" if name == "IDLE" else f"{100 * micros / busy:5.1f}% of busy"
        print(f"  {name:36s} {micros / args.steps / 1e3:9.1f} ms/step  {share}")


if __name__ == "__main__":
    main()
