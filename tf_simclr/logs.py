"""A log a user can read: library lines that say nothing actionable are dropped.

A short run on two replicas logged ~140 `cross_device_ops` lines, each split load five
TFDS lines (one of them "fields info.[module_name] differ on disk and in the code"), and
every export a warning that captured variables were renamed in the signature. None of
them tells the user anything to do. `quiet_library_logs()` filters them out of the
`absl` and `tensorflow` loggers, unless absl's verbosity is above INFO
(`run.py --verbosity=1`, or `-v 1`), which brings every line back.
"""

from __future__ import annotations

import logging as std_logging
import os

from absl import logging

# INFO (and DEBUG) lines dropped: all of TFDS (it logs five lines per split loaded; our own
# line names the split and its size), and, by the file name of the logging call, those
# starting with the prefix (or one of the prefixes; "": all).
_INFO_NOISE = {
    "cross_device_ops.py": "",  # one line per collective op built under a MirroredStrategy
    "functional_saver.py": "Sharding callback duration",
    "fingerprinting_utils.py": "Writing fingerprint",
    "builder_impl.py": "Assets written to",
    # tf.saved_model renames the captured variables among a signature's inputs; harmless.
    "signature_serialization.py": "Function `",
    # Loading a SavedModel written without a fingerprint (the reference's): nothing to do.
    "load.py": ("Fingerprint not found", "path_and_singleprint metric could not be logged"),
}

# WARNING lines dropped, the same way. Loading a reference SavedModel (--mode=import, a
# reference --checkpoint or --teacher) warns once per function with a custom gradient,
# ~200 lines for a ResNet-18: we only run that module forward, to compare or to teach; the
# model that trains is ours, whose gradients are its own.
_WARNING_NOISE = {
    "function_deserialization.py": "Importing a function (",
}


# TFDS warns this when it looks for a dataset that is not prepared; our error says what to do.
_TFDS_WARNINGS = ("Variant folder",)


class _LibraryNoise(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        if logging.get_verbosity() > logging.INFO:
            return True  # --verbosity=1 or more: everything
        path = record.pathname or ""
        tfds = f"{os.sep}tensorflow_datasets{os.sep}" in path
        if record.levelno > std_logging.WARNING:
            return True
        if record.levelno == std_logging.WARNING:
            if tfds:
                return not record.getMessage().startswith(_TFDS_WARNINGS)
            prefix = _WARNING_NOISE.get(os.path.basename(path))
            return prefix is None or not record.getMessage().startswith(prefix)
        if tfds:
            return False
        prefix = _INFO_NOISE.get(os.path.basename(path))
        return prefix is None or not record.getMessage().startswith(prefix)


_FILTER = _LibraryNoise()


def quiet_library_logs() -> None:
    """Drops the library lines above from the `absl` and `tensorflow` loggers (idempotent)."""
    for name in ("absl", "tensorflow"):
        logger = std_logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
