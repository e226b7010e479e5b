"""The kNN monitor callback: kNN top-1 of the model's frozen features after an epoch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.callbacks import KNNMonitor


class MeanColour(keras.Model):
    """A stand-in model whose `embedding` is each image's mean colour."""

    def call(self, images, training=False):
        return {"embedding": tf.reduce_mean(images, axis=[1, 2])}


def tinted(labels, seed):
    """Images whose class c has a bright channel c: classes apart in mean colour."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (len(labels), 4, 4, 3)).astype("float32")
    images[np.arange(len(labels)), :, :, labels] += 0.6
    return images


def batches(images, labels):
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}).batch(8)


def test_knn_top1_of_the_frozen_features_goes_into_the_epoch_logs(capsys):
    train_labels = np.arange(30) % 3
    test_labels = np.arange(12) % 3
    train = batches(tinted(train_labels, 0), train_labels)
    monitor = KNNMonitor(train, batches(tinted(test_labels, 1), test_labels), 3, k=5, every=2)
    monitor.set_model(MeanColour())
    logs = {}
    monitor.on_epoch_end(0, logs)
    assert logs == {}  # every=2: not after the first epoch
    monitor.on_epoch_end(1, logs)
    assert logs["knn_top1"] == 1.0
    assert "Epoch 2: kNN top-1 1.0000" in capsys.readouterr().out
    # Test labels that the features do not predict: the accuracy says so.
    wrong = (test_labels + 1) % 3
    monitor = KNNMonitor(train, batches(tinted(test_labels, 1), wrong), 3, k=5)
    monitor.set_model(MeanColour())
    monitor.on_epoch_end(0, logs)
    assert logs["knn_top1"] == 0.0
    with pytest.raises(ValueError, match="every"):
        KNNMonitor(train, train, 3, every=0)
