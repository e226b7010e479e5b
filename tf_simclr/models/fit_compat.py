"""Workarounds that let `model.fit` run under MultiWorkerMirroredStrategy (Keras 3).

Both are for bugs of Keras 3's TensorFlow trainer with several workers
(keras-team/keras issues 20329 and 20585, open as of Keras 3.15); both are
no-ops without several workers. `tests/test_multi_worker.py` runs such a job.

1. At the start of every `fit`, the trainer takes the first batch
and, when the model lives under a strategy, all-reduces it with
`strategy.reduce("MEAN", batch)` to build the model symbolically. Under
MultiWorkerMirroredStrategy that reduce fails for any nested batch (our
`{"view1", "view2", "label"}` dicts) with "Attempt to convert a value ({...
PerReplica ...}) to a Tensor". The symbolic build has nothing to do for a
model that is built and compiled before `fit` (as `tf_simclr.builders` does),
so `BuiltBeforeFit` skips it.
2. The trainer averages the logs of `train_step` over the replicas with
`strategy.reduce("MEAN", value, axis=0)` when there are several workers, which
fails for the scalar logs every model returns ("Invalid reduction dimension 0
for input with 0 dimensions"). `multi_worker_logs` gives each log the shape
`[1]` there, so the reduce yields the scalar mean over the replicas, as the
single-worker path does.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class BuiltBeforeFit(keras.Model):
    """A `keras.Model` that skips Keras's pre-`fit` symbolic build when nothing is unbuilt."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Exactly the conditions under which Keras's `_symbolic_build` builds something.
        unbuilt = (
            not all(layer.built for layer in self._flatten_layers())
            or (self.optimizer is not None and not self.optimizer.built)
            or (self._compile_metrics is not None and not self._compile_metrics.built)
            or (self._compile_loss is not None and not self._compile_loss.built)
        )
        if unbuilt:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def _several_workers() -> bool:
    """Whether Keras treats the current strategy as multi-worker (chief + worker tasks > 1)."""
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, ())) for job in ("chief", "worker")) > 1


def multi_worker_logs(logs: dict) -> dict:
    """`train_step` logs as Keras can average them: scalars, or `[1]` with several workers."""
    if not _several_workers():
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}
