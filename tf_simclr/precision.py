"""`--precision=auto`: the dtype policy this machine trains fastest in, decided once.

`choose` is the decision, a pure function of what the hardware offers:

- GPUs present (the model runs on them): `mixed_float16` when every GPU has compute
  capability >= 7.0 (Volta and later: tensor cores for float16), else `float32`;
- no GPU: `mixed_bfloat16` when the CPU has AVX512-BF16 or AMX-BF16 (oneDNN's bfloat16
  convolutions and matmuls; without them bfloat16 is emulated and slower than float32),
  else `float32`.

`resolve` applies it to a `--precision` value ("auto" -> one of `PRECISIONS`, anything
else unchanged) and logs the decision once per process. The CPU's features come from
the `flags` lines of /proc/cpuinfo (Linux; elsewhere none are known, so float32), the
GPUs' from `tf.config.experimental.get_device_details`.
"""

from __future__ import annotations

import functools

import tensorflow as tf
from absl import logging

from tf_simclr.choices import PRECISIONS

AUTO = "auto"
# /proc/cpuinfo flags of CPUs with native bfloat16 dot products. AMX-BF16 implies the
# tile registers (`amx_tile`); a CPU with tiles but only AMX-INT8 gains nothing here.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Volta (7.0) and later have float16 tensor cores.
MIN_FLOAT16_CAPABILITY = (7, 0)


def choose(
    cpu_flags: frozenset[str] | set[str], gpu_capabilities: list[tuple[int, int]]
) -> tuple[str, str]:
    """`(policy, reason)`: the dtype policy for this hardware and why, for the log.

    Args:
      cpu_flags: the CPU's feature flags as /proc/cpuinfo spells them (`avx512_bf16`).
      gpu_capabilities: `(major, minor)` compute capability of each GPU; [] without GPUs.
    """
    if gpu_capabilities:
        gpus = f"{len(gpu_capabilities)} GPU{'s' if len(gpu_capabilities) > 1 else ''}"
        lowest = min(gpu_capabilities)
        if lowest >= MIN_FLOAT16_CAPABILITY:
            return "mixed_float16", f"{gpus}, compute capability {lowest[0]}.{lowest[1]} >= 7.0"
        return "float32", f"{gpus}, compute capability {lowest[0]}.{lowest[1]} < 7.0"
    found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags]
    if found:
        names = " and ".join(flag.upper().replace("_", "-") for flag in found)
        return "mixed_bfloat16", f"CPU with {names}, no GPU"
    return "float32", "no AVX512-BF16/AMX, no GPU"


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (the first `flags` line of `path`); empty if unreadable."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def gpu_capabilities() -> list[tuple[int, int]]:
    """`(major, minor)` compute capability of each visible GPU (TensorFlow's view)."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


@functools.cache
def _auto() -> str:
    policy, reason = choose(cpu_flags(), gpu_capabilities())
    logging.info("Precision: auto -> %s (%s)", policy, reason)
    return policy


def resolve(precision: str) -> str:
    """`precision` with "auto" replaced by this machine's policy (`choose`; logged once)."""
    if precision == AUTO:
        return _auto()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {PRECISIONS}, got {precision!r}")
    return precision
