"""Shared pytest setup: quiet TensorFlow logs, split the CPU into logical devices.

Four logical CPU devices are configured before TensorFlow initialises its
runtime so that MirroredStrategy tests can run real cross-replica code on a
single CPU. Single-device code keeps using the first device.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(4)]
)
