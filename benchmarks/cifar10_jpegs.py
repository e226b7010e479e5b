"""CIFAR-10 as JPEG folders for the benchmarks: `find_cifar10` (the `--data_dir` given,
or `../shared/data/cifar10-jpg.tar.gz` beside the checkout, extracted once into a cache).

Used by the pipeline part of `run_benchmarks.py`, by `precision_quality.py` and by
`export_formats.py`.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile

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
