"""The `memory` part of `run_benchmarks.py`: peak resident memory (VmHWM) of a short
training run per batch size, each in its own subprocess (`run_benchmarks.py
--memory_child_batch=B`, which calls `memory_child`)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

from benchmarks.step_throughput import (
    StepConfig,
    build_pretrain_model,
    fixed_batch_dataset,
    seconds_per_step,
)

# The runner: the child parses the same flags (`--memory_child_batch` picks this part).
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_benchmarks.py")


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
            RUNNER,
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
