"""Cross-replica helpers for code that runs inside `strategy.run`.

Everything that needs to know about other replicas goes through this module, so
the rest of the library can be written per replica.

Gradients: `cross_replica_concat` is built on `ReplicaContext.all_gather`,
whose gradient all-reduces (sums) the upstream gradient over replicas and then
keeps the local slice. Under `tf.distribute.MirroredStrategy` the gradient that
replica `r` sees for its input `x_r` is therefore `d(sum_q loss_q) / d x_r`: the
gradient of the *sum* of the per-replica losses. Together with the optimizer's
all-reduce SUM of variable gradients this gives the single-device gradient of
`sum_q loss_q`, which is why a per-replica loss is divided by the replica count
exactly once (see `tf_simclr.losses.nt_xent`). `tests/test_distribute.py`
checks this on two logical CPU devices.
"""

import tensorflow as tf


def num_replicas() -> int:
    """Number of replicas in sync of the current strategy (1 without a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_id() -> tf.Tensor:
    """Index of the current replica as a scalar int32 tensor (0 without a strategy).

    Raises:
        RuntimeError: when called in a cross-replica context (inside
            `strategy.scope()` but outside `strategy.run`) of a strategy with
            more than one replica, where there is no "current" replica.
    """
    if num_replicas() == 1:
        return tf.constant(0, tf.int32)
    return tf.cast(_replica_context().replica_id_in_sync_group, tf.int32)


def cross_replica_concat(x: tf.Tensor) -> tf.Tensor:
    """Concatenates `x` from all replicas along axis 0, in replica-id order.

    Args:
        x: a tensor of shape `[n, ...]` on each replica. `n` may differ between
            replicas (e.g. the last, partial batch), the other dimensions must
            agree.

    Returns:
        A tensor of shape `[sum_r n_r, ...]`, identical on every replica, whose
        rows `[sum_{q<r} n_q, sum_{q<=r} n_q)` are replica `r`'s `x`. With one
        replica (or no strategy) this is `x` itself. The result is
        differentiable; see the module docstring for what its gradient means.

    Raises:
        RuntimeError: in a cross-replica context with more than one replica.
    """
    if num_replicas() == 1:
        return x
    return _replica_context().all_gather(x, axis=0)


def _replica_context() -> tf.distribute.ReplicaContext:
    context = tf.distribute.get_replica_context()
    if context is None:
        raise RuntimeError(
            "Cross-replica helpers must be called inside `strategy.run` (a replica "
            "context), not directly under `strategy.scope()`."
        )
    return context


# --- Strategies -------------------------------------------------------------------------


def configure_cpu_devices(count: int) -> None:
    """Splits the CPU into `count` logical devices (0 or 1: leave as is).

    Lets MirroredStrategy and cross-replica code really run on one CPU. Must be
    called before TensorFlow initialises its devices (before any op runs).
    """
    if count <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


_MIRRORED: dict[tuple[str, ...], tf.distribute.Strategy] = {}


def build_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named `name` (the one place strategies are built).

    auto: MirroredStrategy over all GPUs when there are several, else the
    default strategy. mirrored: MirroredStrategy over all GPUs, or over all
    logical CPU devices when there is no GPU (see `configure_cpu_devices`).
    """
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = tuple(d.name for d in (gpus or tf.config.list_logical_devices("CPU")))
        # One instance per device set and process: two MirroredStrategy objects allocate
        # the same collective instance keys, and their collectives then collide.
        if devices not in _MIRRORED:
            _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
        return _MIRRORED[devices]
    raise ValueError(f"unknown strategy {name!r}")
