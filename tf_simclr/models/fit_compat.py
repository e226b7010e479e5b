"""Building before `fit`, and workarounds that let `model.fit` run under
MultiWorkerMirroredStrategy (Keras 3).

Our models' `train_step` calls the encoder and heads, never the model itself, so
Keras' first call never builds the model: `model.built` stayed False through
`fit`, and standard callbacks refused it (`BackupAndRestore`: "Model ... is
unbuilt"; `ModelCheckpoint(save_weights_only=True)`: "has not yet been built").
`BuiltBeforeFit` builds the model from the shape of the images in the first
batch's spec (no data is read) before any callback runs. (SimCLR and Classifier
with an encoder that declares its input, e.g. our ResNet, are built when created.)

The two workarounds are for bugs of Keras 3's TensorFlow trainer with several workers
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


def input_shape_of(encoder: keras.Model) -> tuple | None:
    """The images shape an encoder declares (`keras.Input`), e.g. `(None, None, None, 3)`.

    None for an encoder that declares none (a subclassed model not yet called).
    """
    if not encoder.built:
        return None
    try:
        inputs = encoder.inputs
    except AttributeError:
        return None
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape)


def _batch_inputs_spec(iterator=None, data_batch=None):
    """The spec of `x` in a batch (`x`, `(x, y)` or `(x, y, w)`), or None if unknown."""
    if data_batch is not None:
        batch = tf.nest.map_structure(
            lambda t: None if t is None else tf.TensorSpec(t.shape, t.dtype), data_batch
        )
    else:
        try:
            batch = iterator.data_adapter.get_tf_dataset().element_spec
        except (AttributeError, TypeError, ValueError):  # not a tf.data pipeline: Keras' way
            return None
    if isinstance(batch, (tuple, list)):
        return batch[0] if batch else None
    return batch


class BuiltBeforeFit(keras.Model):
    """A `keras.Model` that is built before `fit`'s callbacks run.

    Subclasses say which images their first batch holds (`_images_spec`); the
    model is then built with `build(images_shape)`. Keras's own pre-`fit`
    symbolic build is skipped when nothing is left unbuilt.
    """

    def _images_spec(self, inputs_spec) -> tf.TensorSpec | None:
        """The spec of the images `[B, H, W, 3]` the model is called on, from the batch's `x`."""
        if isinstance(inputs_spec, dict):
            inputs_spec = inputs_spec.get("image")
        return inputs_spec if isinstance(inputs_spec, tf.TensorSpec) else None

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not self.built:
            images = self._images_spec(_batch_inputs_spec(iterator, data_batch))
            if images is not None:
                with self.distribute_strategy.scope():
                    self.build(tuple(images.shape))
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
