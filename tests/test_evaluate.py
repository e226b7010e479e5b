"""Tests of tf_simclr.evaluate: kNN against a brute-force restatement, exact classifier
metrics, feature extraction and both linear-evaluation variants on tiny data."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr import eval as evaluate
from tf_simclr.data import Source, eval_dataset
from tf_simclr.models import Classifier, ResNet

SIZE = 16


def brute_force_knn(train_x, train_y, test_x, num_classes, k, temperature):
    """InstDisc's weighted kNN, one test row at a time, in float64."""
    train = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    predictions = []
    for row in test_x:
        sims = train @ (row / np.linalg.norm(row))
        nearest = np.argsort(-sims, kind="stable")[: min(k, len(train))]
        votes = np.zeros(num_classes)
        for i in nearest:
            votes[train_y[i]] += np.exp(sims[i] / temperature)
        predictions.append(np.argmax(votes))
    return np.array(predictions)


@pytest.mark.parametrize(("k", "temperature"), [(7, 0.5), (1, 0.1), (1000, 0.1)])
def test_knn_matches_brute_force(k, temperature):
    """k=1000 exceeds the 60 training rows: every row votes."""
    rng = np.random.default_rng(0)
    train_x = rng.normal(size=(60, 5)).astype(np.float32)
    train_y = rng.integers(0, 4, 60)
    test_x = rng.normal(size=(21, 5)).astype(np.float32)
    test_y = rng.integers(0, 4, 21)
    want = brute_force_knn(train_x, train_y, test_x, 4, k, temperature)
    # batch_size 8: three batches, the last one partial.
    got = evaluate.knn_predict(train_x, train_y, test_x, 4, k, temperature, batch_size=8)
    np.testing.assert_array_equal(got, want)
    assert len(set(want)) > 1  # a non-trivial case
    accuracy = evaluate.knn_accuracy(train_x, train_y, test_x, test_y, 4, k, temperature, 8)
    assert accuracy == pytest.approx(np.mean(want == test_y))


def test_knn_separable_clusters_are_perfect():
    rng = np.random.default_rng(1)
    centres = np.eye(3, 8) * 5

    def cluster(n):
        labels = np.repeat(np.arange(3), n)
        return centres[labels] + rng.normal(scale=0.3, size=(3 * n, 8)), labels

    train_x, train_y = cluster(20)
    test_x, test_y = cluster(10)
    assert evaluate.knn_accuracy(train_x, train_y, test_x, test_y, 3, k=5) == 1.0
    # Shifted labels: the same neighbours now vote for the wrong class.
    assert evaluate.knn_accuracy(train_x, train_y, test_x, (test_y + 1) % 3, 3, k=5) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k"),
        ({"temperature": 0.0}, "temperature"),
        ({"num_classes": 2}, r"\[0, 2\)"),
        ({"test_features": np.zeros((3, 4))}, "dimension"),
        ({"test_labels": np.zeros(2)}, "one label per test row"),
    ],
)
def test_knn_rejects_bad_arguments(kwargs, message):
    args = {
        "train_features": np.ones((4, 3)),
        "train_labels": np.array([0, 1, 2, 0]),
        "test_features": np.ones((3, 3)),
        "test_labels": np.zeros(3),
        "num_classes": 3,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        evaluate.knn_accuracy(**args)


def tiny_source(num=10, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num, SIZE, SIZE, 3), dtype=np.uint8)
    labels = (np.arange(num) % num_classes).astype(np.int64)
    return Source(
        dataset=tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}),
        num_examples=num,
        num_classes=num_classes,
        class_names=tuple(str(c) for c in range(num_classes)),
        name="synthetic",
        split="train",
    )


def tiny_encoder():
    return ResNet(18, width_multiplier=0.125, cifar_stem=True)


def all_images(source):
    return np.stack([ex["image"] for ex in source.dataset.as_numpy_iterator()]) / 255.0


def test_extract_features_from_an_encoder_and_from_a_model():
    source = tiny_source()
    encoder = tiny_encoder()
    dataset = eval_dataset(source, SIZE, batch_size=4)  # 4 + 4 + 2
    features, labels = evaluate.extract_features(encoder, dataset, verbose=1)
    assert features.shape == (10, 64) and features.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == [i % 3 for i in range(10)]
    want = encoder(all_images(source).astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(features, want, rtol=1e-4, atol=1e-5)

    model = Classifier(encoder, 3)
    from_model, _ = evaluate.extract_features(model, dataset)
    np.testing.assert_allclose(from_model, features, rtol=1e-5, atol=1e-6)


def test_frozen_features_of_named_sources_feed_knn_top1():
    """The kNN evaluation's helpers (`--mode=eval`, scripts/feature_eval.py, ablations):
    per name the features `extract_features` gives, then `knn_accuracy` of test vs train."""
    train, test = tiny_source(), tiny_source(num=7, seed=1)
    encoder = tiny_encoder()
    features = evaluate.frozen_features(encoder, {"train": train, "test": test}, SIZE, 4)
    assert set(features) == {"train", "test"}
    for name, source in (("train", train), ("test", test)):
        want = evaluate.extract_features(encoder, eval_dataset(source, SIZE, batch_size=4))
        np.testing.assert_array_equal(features[name][0], want[0])
        np.testing.assert_array_equal(features[name][1], want[1])
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    want = evaluate.knn_accuracy(train_x, train_y, test_x, test_y, 3, k=3, temperature=0.5)
    assert evaluate.knn_top1(features, 3, k=3, temperature=0.5) == want


def test_evaluate_classifier_is_exact_over_the_whole_split():
    keras.utils.set_random_seed(0)
    source = tiny_source(num=11, num_classes=7)
    model = Classifier(tiny_encoder(), 7)
    model(tf.zeros([1, SIZE, SIZE, 3]))
    model.supervised_head.dense.kernel.assign(
        np.random.default_rng(0).normal(size=(64, 7)).astype(np.float32)  # spread the logits
    )
    result = evaluate.evaluate_classifier(model, eval_dataset(source, SIZE, batch_size=4))

    logits = model(all_images(source).astype(np.float32))["logits"].numpy().astype(np.float64)
    labels = np.arange(11) % 7
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert result["num_examples"] == 11
    assert result["top1"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert result["top5"] == pytest.approx(
        np.mean([y in t for y, t in zip(labels, top5, strict=True)])
    )
    assert result["loss"] == pytest.approx(-log_probs[np.arange(11), labels].mean(), rel=1e-5)
    assert 0 < result["top5"] < 1  # neither trivially 0 nor 1

    model.compile(optimizer="sgd")
    keras_result = model.evaluate(eval_dataset(source, SIZE, 4), verbose=0, return_dict=True)
    for key in ("top1", "top5", "loss"):
        assert keras_result[key] == pytest.approx(result[key], rel=1e-5)


def test_linear_eval_trains_only_the_classifier_and_restores_the_encoder():
    keras.utils.set_random_seed(0)
    encoder = tiny_encoder()
    before = [w.copy() for w in encoder.get_weights()]
    trainable_before = len(encoder.trainable_variables)
    result = evaluate.linear_eval(
        encoder,
        tiny_source(num=16, num_classes=2),
        tiny_source(num=6, num_classes=2, seed=1),
        image_size=SIZE,
        num_classes=2,
        epochs=2,
        batch_size=8,
        learning_rate=0.1,
        weight_decay=1e-4,
    )
    assert result["steps"] == 4 and result["test_examples"] == 6
    for key in ("train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "seconds"):
        assert np.isfinite(result[key]), key
    assert result["test_top5"] == 1.0  # 2 classes
    for a, b in zip(before, encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # weights and BN statistics
    assert len(encoder.trainable_variables) == trainable_before and encoder.trainable


def test_linear_eval_on_features_separates_clusters():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 16)) * 3

    def cluster(n):
        labels = np.repeat(np.arange(4), n)
        return centres[labels] + rng.normal(size=(4 * n, 16)), labels

    train_x, train_y = cluster(25)
    test_x, test_y = cluster(10)
    result = evaluate.linear_eval_on_features(
        train_x, train_y, test_x, test_y, 4, epochs=10, batch_size=16, learning_rate=0.5
    )
    assert result["steps"] == 10 * 7  # ceil(100 / 16) per epoch
    assert result["test_top1"] == 1.0 and result["test_examples"] == 40
    assert result["train_top1"] > 0.9 and result["test_loss"] < 0.5


def test_feature_extraction_reports_progress_in_a_log(caplog, monkeypatch):
    """Not a terminal (a log file, CI): log lines naming what is extracted, not a bar."""
    import logging

    from tf_simclr.eval import features

    monkeypatch.setattr(features.sys.stdout, "isatty", lambda: False, raising=False)
    caplog.set_level(logging.INFO, logger="absl")
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image": tf.ones([10, 4]), "label": tf.zeros([10], tf.int64)}
    ).batch(4)
    encoder = keras.Sequential([keras.Input([4]), keras.layers.Dense(2)])
    progress = features.Progress(dataset, verbose=1, description="features of toy", every_seconds=0)
    assert progress.bar is None and progress.total == 3
    x, y = evaluate.extract_features(encoder, dataset, verbose=1, description="features of toy")
    assert x.shape == (10, 2) and y.shape == (10,)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("features")]
    assert lines and lines[-1].startswith("features of toy: 3/3 batches"), lines
    caplog.clear()
    evaluate.extract_features(encoder, dataset, verbose=0)
    assert not [r for r in caplog.records if r.getMessage().startswith("features")]
