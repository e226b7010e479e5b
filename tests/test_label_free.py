"""Label-free monitors: RankMe, alignment, uniformity, embedding std, and their callback."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tests.test_export import tiny_simclr
from tf_simclr.callbacks import LabelFreeMonitor
from tf_simclr.eval import label_free


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_rankme_equals_a_numpy_restatement_and_its_bounds():
    x = np.random.default_rng(0).normal(size=(64, 16)) @ np.diag(np.linspace(0.1, 3, 16))
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum() + 1e-7
    assert label_free.rankme(x) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    # Rank 1 -> 1; k equal singular values -> k.
    assert label_free.rankme(np.outer(np.arange(1, 9), np.ones(5))) == pytest.approx(1, abs=1e-4)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(32, 6)))
    assert label_free.rankme(q) == pytest.approx(6, rel=1e-5)


def test_alignment_and_uniformity_equal_numpy_restatements():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
    ua, ub = unit_rows(a), unit_rows(b)
    assert label_free.alignment(a, b) == pytest.approx(
        np.mean(np.sum((ua - ub) ** 2, axis=1)), rel=1e-9
    )
    assert label_free.alignment(a, 3 * a) == pytest.approx(0, abs=1e-12)
    assert label_free.alignment(a, -a) == pytest.approx(4, rel=1e-9)
    pairs = [np.sum((ua[i] - ua[j]) ** 2) for i in range(12) for j in range(i + 1, 12)]
    assert label_free.uniformity(a) == pytest.approx(np.log(np.mean(np.exp(-2 * np.array(pairs)))))
    assert label_free.uniformity(np.ones((6, 3))) == pytest.approx(0, abs=1e-9)


def test_embedding_std_is_zero_at_collapse_and_about_one_over_sqrt_d_when_spread():
    assert label_free.embedding_std(np.tile([[1.0, 2.0, 3.0]], (10, 1))) == pytest.approx(0)
    spread = np.random.default_rng(3).normal(size=(4000, 64))
    assert label_free.embedding_std(spread) == pytest.approx(1 / 8, rel=0.02)


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        label_free.rankme(np.ones(4))
    with pytest.raises(ValueError, match="same shape"):
        label_free.alignment(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        label_free.uniformity(np.ones((1, 2)))


class Collapsed(keras.Model):
    """Every image to the same embedding and projection."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(8)

    def call(self, images, training=False):
        constant = self.dense(tf.ones([tf.shape(images)[0], 3]))
        return {"embedding": constant, "projection": constant}


class Spread(keras.Model):
    """Embeddings are the flattened images (random views: spread, unaligned)."""

    def call(self, images, training=False):
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        return {"embedding": flat, "projection": flat[:, :16]}


def views(n=32, size=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, (n, size, size, 3)).astype(np.float32) for _ in range(2)]


def test_monitor_tells_a_collapsed_model_from_a_spread_one():
    view1, view2 = views()
    collapsed, spread = Collapsed(), Spread()
    for model in (collapsed, spread):
        model(view1)
    monitor = LabelFreeMonitor(view1, view2, batch_size=20)  # two inference calls
    monitor.set_model(collapsed)
    low = monitor.measure()
    assert low["rankme"] == pytest.approx(1, abs=1e-3)
    assert low["embedding_std"] == pytest.approx(0, abs=1e-6)
    assert low["alignment"] == pytest.approx(0, abs=1e-9)
    assert low["uniformity"] == pytest.approx(0, abs=1e-9)
    other = LabelFreeMonitor(view1, view2, batch_size=20)
    other.set_model(spread)
    high = other.measure()
    assert high["rankme"] > 20 and high["embedding_std"] > 0.02
    both = np.concatenate([view1, view2]).reshape(64, -1)
    assert high["rankme"] == pytest.approx(label_free.rankme(both), rel=1e-5)
    assert high["alignment"] == pytest.approx(
        label_free.alignment(view1.reshape(32, -1)[:, :16], view2.reshape(32, -1)[:, :16]),
        rel=1e-5,
    )


def test_monitor_writes_scalars_at_the_start_and_every_n_steps(tmp_path):
    view1, view2 = views(n=8, size=16)
    model = tiny_simclr(0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    monitor = LabelFreeMonitor(view1, view2, every=2, log_dir=str(tmp_path))
    data = tf.data.Dataset.from_tensors(
        {"view1": view1, "view2": view2, "label": np.zeros(8, np.int32)}
    ).repeat()
    history = model.fit(data, steps_per_epoch=5, epochs=1, callbacks=[monitor], verbose=0)
    assert set(history.history) >= {"label_free_rankme", "label_free_uniformity"}
    assert sorted(_harness.scalars(tmp_path, "label_free/rankme")) == [0, 2, 4]


def test_monitor_rejects_bad_arguments():
    view1, view2 = views()
    with pytest.raises(ValueError, match="every"):
        LabelFreeMonitor(view1, view2, every=0)
    with pytest.raises(ValueError, match="same shape"):
        LabelFreeMonitor(view1, view2[:4])


def test_pretraining_flag_writes_the_monitor_scalars(session_train_test_folder, tmp_path, capsys):
    model_dir = tmp_path / "run"
    flags = [
        *_harness.TINY_FLAGS,
        "--dataset=image_folder",
        f"--data_dir={session_train_test_folder}",
        f"--model_dir={model_dir}",
        "--train_steps=3",
        "--label_free_monitor_steps=2",
        "--label_free_monitor_images=6",
    ]
    code, stderr = _harness.run_in_process(flags, capsys)
    assert code == 0, stderr
    rankme = _harness.scalars(model_dir / "train", "label_free/rankme")
    assert sorted(rankme) == [0, 2] and all(1 <= v <= 12 for v in rankme.values())
    assert sorted(_harness.scalars(model_dir / "train", "label_free/alignment")) == [0, 2]
    code, stderr = _harness.run_in_process(
        [*flags, "--train_mode=finetune", "--model_dir=" + str(tmp_path / "ft")], capsys
    )
    assert code == 2 and "--label_free_monitor_steps" in stderr.splitlines()[-1], stderr
