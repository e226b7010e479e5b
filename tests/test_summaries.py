"""tf_simclr.summaries: what training writes to TensorBoard beside its scalars (projector
files), and the scalars read back."""

import os

import numpy as np
import tensorflow as tf

from tf_simclr import summaries


def test_read_scalars_by_tag_and_step(training_events):
    scalars = summaries.read_scalars(str(training_events))
    assert "train/views" not in scalars and len(scalars) == 5  # the image is not a scalar


def read_projector(log_dir):
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    with open(os.path.join(log_dir, summaries.PROJECTOR_CONFIG)) as f:
        config = text_format.Parse(f.read(), projector.ProjectorConfig())
    (embedding,) = config.embeddings
    vectors = np.loadtxt(os.path.join(log_dir, embedding.tensor_path), delimiter="\t", ndmin=2)
    with open(os.path.join(log_dir, embedding.metadata_path)) as f:
        metadata = f.read().splitlines()
    sprite = tf.io.decode_png(tf.io.read_file(os.path.join(log_dir, embedding.sprite.image_path)))
    return embedding, vectors, metadata, sprite.numpy()


def test_write_projector_files_load(tmp_path):
    features = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    images = (np.arange(5)[:, None, None, None] * 50 * np.ones([5, 16, 16, 3])).astype(np.uint8)
    summaries.write_projector(str(tmp_path), features, [0, 1, 1, 0, 1], images, ("cat", "dog"))
    embedding, vectors, metadata, sprite = read_projector(tmp_path)
    assert list(embedding.tensor_shape) == [5, 3]
    np.testing.assert_allclose(vectors, features, rtol=1e-5)
    assert metadata == ["label\tclass", "0\tcat", "1\tdog", "1\tdog", "0\tcat", "1\tdog"]
    assert list(embedding.sprite.single_image_dim) == [16, 16]
    assert sprite.shape == (3 * 16, 3 * 16, 3)  # ceil(sqrt(5)) = 3 thumbnails a side
    assert sprite[16 + 5, 16 + 5, 0] == 4 * 50  # image 4: second row, second column


def test_sprite_thumbnails_shrink_to_fit_8192_pixels():
    assert summaries.sprite_side(10_000, 32) == 32  # 100 x 32 = 3200 px
    assert summaries.sprite_side(50_000, 224) == 36  # 224 a side: 224 * 36 = 8064 px
