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
checks this on two logical CPU devices. Under MultiWorkerMirroredStrategy the
same `all_gather` spans the replicas of all workers (`tests/test_multi_worker.py`
shows a 2-process job computing the single-process loss).

The second half of the module builds the strategy from `--strategy` (the one
place strategies are built) and says which process of a multi-worker job is
the chief.
"""

import json
import os
import socket

import tensorflow as tf

from tf_simclr.choices import STRATEGY_NAMES
from tf_simclr.errors import UNSET, ArgumentError


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


def tf_config_tasks(environ: dict | None = None) -> int:
    """Number of tasks (all jobs) in the cluster that TF_CONFIG describes; 0 without one."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError) as e:
        raise ArgumentError("TF_CONFIG", f"is not valid JSON: {e}") from e
    return sum(len(tasks) for tasks in cluster.values())


def resolve_strategy_name(
    name: str, use_tpu: bool = False, tpu_address: str = "", environ: dict | None = None
) -> str:
    """The concrete strategy `auto` stands for (other names are returned as they are).

    auto: tpu when a TPU is asked for (`use_tpu` or a `tpu_address`); else
    multi_worker_mirrored when TF_CONFIG describes several tasks; else mirrored
    when there are several local GPUs; else default.
    """
    if name != "auto":
        return name
    if use_tpu or tpu_address:
        return "tpu"
    if tf_config_tasks(environ) > 1:
        return "multi_worker_mirrored"
    # Physical devices: listing logical ones would initialise the runtime, after which
    # MultiWorkerMirroredStrategy can no longer configure its collectives.
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


# One instance per kind and process: two MirroredStrategy (or MultiWorkerMirroredStrategy)
# objects allocate the same collective instance keys, and their collectives then collide;
# a TPU system is initialised once.
_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}


def build_strategy(
    name: str,
    *,
    use_tpu: bool = False,
    tpu_address: str = "",
    tpu_zone: str = "",
    gcp_project: str = "",
) -> tf.distribute.Strategy:
    """The tf.distribute strategy named `name` (the one place strategies are built).

    - auto: see `resolve_strategy_name`.
    - default: no distribution (the default strategy).
    - one_device: the first GPU, else the CPU.
    - mirrored: MirroredStrategy over all local GPUs, or over all logical CPU
      devices when there is no GPU (see `configure_cpu_devices`).
    - multi_worker_mirrored: MultiWorkerMirroredStrategy over the cluster in
      TF_CONFIG (every worker runs the same command). A worker that dies is
      detected at once when its connections close, else by the coordination
      service's heartbeats; the others then fail with `tf.errors.UnavailableError` (see
      `tf_simclr.errors.WorkerLost`) instead of waiting forever.
    - tpu: TPUStrategy on the TPU at `tpu_address` (a name, `local` or
      grpc://host:8470; empty: from the GCE metadata), `tpu_zone`, `gcp_project`.

    Raises:
        ArgumentError: (argument `tpu_address`) when the TPU cannot be found or
            reached, with one line saying why; (`TF_CONFIG`) for a malformed
            TF_CONFIG environment variable.
    """
    name = resolve_strategy_name(name, use_tpu, tpu_address)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = tuple(d.name for d in (gpus or tf.config.list_logical_devices("CPU")))
        key = ("mirrored", devices)
        if key not in _STRATEGIES:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
        return _STRATEGIES[key]
    if name == "multi_worker_mirrored":
        key = ("multi_worker_mirrored",)
        if key not in _STRATEGIES:
            tf_config_tasks()  # a clear error for malformed TF_CONFIG
            _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES[key]
    if name == "tpu":
        key = ("tpu", tpu_address, tpu_zone, gcp_project)
        if key not in _STRATEGIES:
            _STRATEGIES[key] = _tpu_strategy(tpu_address, tpu_zone, gcp_project)
        return _STRATEGIES[key]
    raise ValueError(f"unknown strategy {name!r}; one of {', '.join(STRATEGY_NAMES)}")


TPU_CONNECT_TIMEOUT = 30.0  # seconds to wait for a TPU's gRPC port before giving up


def _tpu_strategy(address: str, zone: str, project: str) -> tf.distribute.TPUStrategy:
    """TPUClusterResolver + initialize_tpu_system + TPUStrategy, as the reference does.

    Every failure becomes a one-line ArgumentError: no TPU name and no GCE
    metadata, an unknown name (the Cloud TPU API is unreachable or does not
    know it), a gRPC address that does not answer (TensorFlow would otherwise
    wait for it forever), a machine without TPU devices.
    """
    shown = address or "(from the GCE metadata)"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=address or None, zone=zone or None, project=project or None
        )
        master = resolver.master()
        if master.startswith("grpc://"):
            _check_reachable(master[len("grpc://") :], TPU_CONNECT_TIMEOUT)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as e:  # noqa: BLE001 - any failure here means "no usable TPU"
        detail = " ".join(str(e).split())[:300] or type(e).__name__
        raise ArgumentError(
            "tpu_address",
            f"cannot use the TPU {shown} ({type(e).__name__}: {detail}); check the TPU "
            "name, zone and project (--tpu_name, --tpu_zone, --gcp_project), or train "
            "without a TPU",
            address or UNSET,
        ) from e


def _check_reachable(host_port: str, timeout: float) -> None:
    host, _, port = host_port.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(f"nothing answers at {host_port} within {timeout:.0f} s") from e


# --- Multi-worker roles -----------------------------------------------------------------


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None]:
    """(task_type, task_id) of this process in a multi-worker job; (None, None) otherwise."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, None
    resolver = strategy.cluster_resolver
    return resolver.task_type, resolver.task_id


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, summaries and results.

    The chief is the `chief` task, or worker 0 when the cluster has no chief
    (the TF_CONFIG convention). Single-process strategies are always chief.
    """
    task_type, task_id = task(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    jobs = strategy.cluster_resolver.cluster_spec().jobs
    return task_type == "worker" and task_id == 0 and "chief" not in jobs
