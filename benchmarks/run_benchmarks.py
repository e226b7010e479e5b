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

This file is the runner (flags, the parts in order, the JSON); each part is a module
beside it: `step_throughput.py`, `pipeline_throughput.py`, `peak_memory.py`, and
`benchmark_report.py` prints the table and the missed targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time

import keras
import tensorflow as tf

# The parts are modules of this folder, imported as `benchmarks.<part>`: from the checkout
# (PYTHONPATH=., as documented), or when this file is run directly, from its parent.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _CHECKOUT not in sys.path:
    sys.path.append(_CHECKOUT)

from benchmarks.benchmark_report import NOISE_NOTE, print_table  # noqa: E402
from benchmarks.cifar10_jpegs import CIFAR_ARCHIVE, CIFAR_CACHE, find_cifar10  # noqa: E402
from benchmarks.peak_memory import bench_memory, memory_child  # noqa: E402
from benchmarks.pipeline_throughput import bench_pipeline  # noqa: E402
from benchmarks.step_throughput import (  # noqa: E402
    StepConfig,
    bench_step,
    build_pretrain_model,
    fixed_batch_dataset,
)

# Imported from here by the other benchmarks (profile_step.py, precision_quality.py,
# export_formats.py); their homes are the modules above.
__all__ = [
    "CIFAR_ARCHIVE",
    "StepConfig",
    "build_pretrain_model",
    "find_cifar10",
    "fixed_batch_dataset",
    "main",
]

PARTS = ("step", "pipeline", "memory")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


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
