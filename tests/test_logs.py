"""The library lines `tf_simclr.logs` drops, and that --verbosity=1 brings them back."""

import logging
import os

import pytest
from absl import logging as absl_logging

from tf_simclr import logs


def record(path, level, message, name="absl"):
    return logging.LogRecord(name, level, path, 1, message, None, None)


TFDS = os.path.join("site-packages", "tensorflow_datasets", "core", "dataset_info.py")
CROSS_DEVICE = os.path.join("tensorflow", "python", "distribute", "cross_device_ops.py")
SIGNATURES = os.path.join("tensorflow", "python", "saved_model", "signature_serialization.py")
OURS = os.path.join("tf_simclr", "training.py")


@pytest.fixture
def verbosity():
    before = absl_logging.get_verbosity()
    yield absl_logging.set_verbosity
    absl_logging.set_verbosity(before)


def test_noise_is_dropped_and_what_a_user_needs_is_kept(verbosity):
    verbosity(absl_logging.INFO)
    noise = [
        record(TFDS, logging.INFO, "For 'cifar10/3.0.2': fields info.[module_name] differ"),
        record(CROSS_DEVICE, logging.INFO, "Collective all_reduce tensors: 1 all_reduces"),
        record(SIGNATURES, logging.INFO, "Function `serve_uint8` contains input name(s)"),
        record(TFDS, logging.WARNING, "Variant folder /d/cifar10/3.0.2 has no dataset_info.json"),
    ]
    kept = [
        record(OURS, logging.INFO, "Finished epoch 1/5"),
        record(TFDS, logging.WARNING, "a TFDS warning stays"),
        record(CROSS_DEVICE, logging.WARNING, "so does a warning of the runtime"),
        record(SIGNATURES, logging.INFO, "another line of that file"),
    ]
    noise_filter = logs._LibraryNoise()
    assert [noise_filter.filter(r) for r in noise] == [False] * len(noise)
    assert [noise_filter.filter(r) for r in kept] == [True] * len(kept)
    # --verbosity=1: everything.
    verbosity(absl_logging.DEBUG)
    assert [noise_filter.filter(r) for r in noise] == [True] * len(noise)


def test_quiet_library_logs_installs_its_filter_once_on_absl_and_tensorflow():
    logs.quiet_library_logs()
    logs.quiet_library_logs()
    for name in ("absl", "tensorflow"):
        assert logging.getLogger(name).filters.count(logs._FILTER) == 1
