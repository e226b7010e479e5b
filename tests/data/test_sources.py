"""Tests for tf_simclr.data.sources on tiny synthetic data."""

import logging
import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_simclr.data import sources
from tf_simclr.data.sources import DataError

# The real probe (conftest replaces `sources.network_reachable` for every test, after this
# module is imported).
REAL_NETWORK_PROBE = sources.network_reachable

# ---------------------------------------------------------------------------
# Tiny TFDS builders, prepared locally (no network) in a temporary data_dir.
# Defining a builder class registers it under its snake_case name.
#
# `code_path = None`: TFDS only uses it to find a checksums file, which these
# builders do not need. Leaving it to TFDS breaks `download_and_prepare` for a
# class defined in a dotted module (pytest --import-mode=importlib names this
# file `tests.data.test_sources`): TFDS 4.9.10 then imports the optional
# `importlib_resources` package, which is not installed.
# ---------------------------------------------------------------------------


class TfSimclrTestGray(tfds.core.GeneratorBasedBuilder):
    """10 train / 4 test grayscale 8x8 images; pixel value = example index."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 10), "test": self._generate_examples(10, 14)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"image": np.full((8, 8, 1), i, np.uint8), "label": i % 3}


class TfSimclrTestRgbaUnlabeled(tfds.core.GeneratorBasedBuilder):
    """3 RGBA images without labels."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(4, 4, 4))}),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(3):
            image = np.zeros((4, 4, 4), np.uint8)
            image[..., :3] = 10 * (i + 1)
            image[..., 3] = 255
            yield i, {"image": image}


class TfSimclrTestOffline(TfSimclrTestGray):
    """Preparing it fails the way a download without network does."""

    def _split_generators(self, dl_manager):
        raise ConnectionError("network is unreachable")


def test_tfds_mock_cifar10():
    with tfds.testing.mock_data(num_examples=6):
        source = sources.tfds_source("cifar10", "train")
        examples = list(source.dataset.as_numpy_iterator())
        test_source = sources.tfds_source("cifar10", "test")
    assert source.num_examples == 6
    assert len(examples) == 6
    assert source.num_classes == 10
    assert len(source.class_names) == 10  # the mock has no label file, so names are "0".."9"
    assert (source.name, source.split) == ("cifar10", "train")
    assert source.dataset.element_spec["image"].shape == (32, 32, 3)
    for ex in examples:
        assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
        assert ex["label"].dtype == np.int64 and 0 <= ex["label"] < 10
    assert test_source.split == "test" and test_source.num_examples == 6
    # mock_data ignores split slicing (every split yields num_examples), so
    # slicing is checked on a locally prepared builder in test_tfds_split_slicing.


def test_tfds_unknown_dataset_name():
    with pytest.raises(DataError) as info:
        sources.tfds_source("no_such_dataset_xyz", "train")
    err = info.value
    assert err.argument == "dataset"
    assert "not a TFDS dataset name" in str(err) and "image_folder" in str(err)
    assert "\n" not in str(err) and str(err).startswith("dataset='no_such_dataset_xyz': ")


def test_tfds_prepares_and_tiles_grayscale(tmp_path):
    data_dir = str(tmp_path)
    assert not tfds.builder("tf_simclr_test_gray", data_dir=data_dir).is_prepared()
    source = sources.tfds_source("tf_simclr_test_gray", "train", data_dir=data_dir)
    assert tfds.builder("tf_simclr_test_gray", data_dir=data_dir).is_prepared()
    assert source.num_examples == 10
    assert (source.num_classes, source.class_names) == (3, ("a", "b", "c"))
    examples = list(source.dataset.as_numpy_iterator())
    assert len(examples) == 10
    seen = set()
    for ex in examples:
        image = ex["image"]
        assert image.shape == (8, 8, 3) and image.dtype == np.uint8
        index = int(image[0, 0, 0])
        np.testing.assert_array_equal(image, np.full((8, 8, 3), index, np.uint8))
        assert ex["label"] == index % 3
        seen.add(index)
    assert seen == set(range(10))


def test_tfds_split_slicing(tmp_path):
    source = sources.tfds_source("tf_simclr_test_gray", "train[:50%]", data_dir=str(tmp_path))
    assert source.num_examples == 5
    assert len(list(source.dataset)) == 5
    both = sources.tfds_source("tf_simclr_test_gray", "train+test", data_dir=str(tmp_path))
    assert both.num_examples == 14


def test_tfds_shuffle_files_keeps_examples(tmp_path):
    source = sources.tfds_source(
        "tf_simclr_test_gray", "train", data_dir=str(tmp_path), shuffle_files=True, seed=3
    )
    values = sorted(int(ex["image"][0, 0, 0]) for ex in source.dataset.as_numpy_iterator())
    assert values == list(range(10))


@pytest.mark.parametrize(
    "split, reason",
    [("validation", "Should be one of ['train', 'test']"), ("train[abc]", "Unrecognized split")],
)
def test_tfds_bad_split_blames_split(tmp_path, split, reason):
    with pytest.raises(DataError) as info:
        sources.tfds_source("tf_simclr_test_gray", split, data_dir=str(tmp_path))
    assert info.value.argument == "split"
    assert str(info.value).startswith(f"split={split!r}: ")
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_tfds_unlabeled_rgba(tmp_path):
    source = sources.tfds_source("tf_simclr_test_rgba_unlabeled", "train", data_dir=str(tmp_path))
    assert (source.num_examples, source.num_classes, source.class_names) == (3, 0, ())
    examples = list(source.dataset.as_numpy_iterator())
    assert [int(ex["label"]) for ex in examples] == [-1, -1, -1]
    assert sorted(int(ex["image"][0, 0, 0]) for ex in examples) == [10, 20, 30]
    assert all(ex["image"].shape == (4, 4, 3) for ex in examples)


def test_tfds_not_prepared_and_download_fails(tmp_path):
    data_dir = tmp_path / "new"  # download_and_prepare creates it, the failure removes it
    with pytest.raises(DataError) as info:
        sources.tfds_source("tf_simclr_test_offline", "train", data_dir=str(data_dir))
    err = info.value
    assert err.argument == "data_dir"
    assert str(data_dir) in str(err)
    assert "could not be downloaded" in str(err) and "network is unreachable" in str(err)
    assert "README 'Offline'" in str(err)
    assert not data_dir.exists()


def test_tfds_offline_fails_at_once_creates_nothing_and_says_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "network_reachable", lambda *args, **kwargs: False)
    empty = tmp_path / "empty"
    empty.mkdir()
    began = time.monotonic()
    for data_dir in (empty, tmp_path / "missing"):
        with pytest.raises(DataError) as info:
            sources.make_source("cifar10", "train", data_dir=str(data_dir))
        assert info.value.argument == "data_dir" and info.value.value == str(data_dir)
        message = str(info.value)
        assert "no network" in message and "README 'Offline'" in message, message
        assert "\n" not in message
    assert time.monotonic() - began < 10  # TFDS's own retries took 214 s
    assert list(empty.iterdir()) == [] and not (tmp_path / "missing").exists()
    # --download=false: no probe, no download, the same advice.
    monkeypatch.setattr(sources, "network_reachable", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(DataError) as info:
        sources.make_source("cifar10", "train", data_dir=str(empty), download="false")
    assert info.value.argument == "download" and "README 'Offline'" in str(info.value)
    assert list(empty.iterdir()) == []


def test_network_probe_gives_up_quickly_on_a_name_that_cannot_resolve(monkeypatch):
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    began = time.monotonic()
    assert REAL_NETWORK_PROBE("tf-simclr-test.invalid", timeout=2.0) is False
    assert time.monotonic() - began < 5


# ---------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------


def _write(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _rng_image(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def labeled_root(tmp_path):
    """root/train/{cat,dog}/... with 3 decodable images and 5 bad files.

    Returns (root, expected) where expected maps (height, width) of each
    decodable image to (label, RGB pixels or None for lossy JPEG).
    """
    root = tmp_path / "images"
    train = root / "train"
    rgb = _rng_image((10, 12, 3), 0)
    gray = _rng_image((14, 9, 1), 1)
    rgba = _rng_image((7, 11, 4), 2)
    jpeg = tf.io.encode_jpeg(rgb).numpy()
    _write(str(train / "cat" / "rgb.JPG"), jpeg)
    _write(str(train / "cat" / "gray.png"), tf.io.encode_png(gray).numpy())
    _write(str(train / "dog" / "rgba.png"), tf.io.encode_png(rgba).numpy())
    _write(str(train / "dog" / "empty.jpg"), b"")
    _write(str(train / "dog" / "notes.txt"), b"not an image")
    _write(str(train / "dog" / "garbage.jpg"), b"this is not a jpeg at all")
    big = tf.io.encode_jpeg(_rng_image((40, 40, 3), 3)).numpy()
    _write(str(train / "dog" / "truncated.jpg"), big[: len(big) // 2])
    png = tf.io.encode_png(_rng_image((40, 40, 3), 4)).numpy()
    _write(str(train / "dog" / "truncated.png"), png[:-20])  # cut inside the IEND chunk
    # Complete files with a few bytes after their end marker are kept.
    _write(str(train / "cat" / "padded.jpg"), tf.io.encode_jpeg(rgb[:5]).numpy() + b"\0" * 8)
    _write(str(train / "loose.png"), tf.io.encode_png(rgb).numpy())  # outside class folders
    _write(str(train / "cat" / ".DS_Store"), b"hidden, ignored")
    expected = {
        (10, 12): (0, None),
        (5, 12): (0, None),
        (14, 9): (0, np.repeat(gray, 3, axis=-1)),
        (7, 11): (1, rgba[..., :3]),
    }
    return str(root), expected


def test_scan_image_folder_counts(labeled_root):
    root, _ = labeled_root
    paths, labels, class_names, skipped = sources.scan_image_folder(os.path.join(root, "train"))
    assert class_names == ("cat", "dog")
    names = [os.path.basename(p) for p in paths]
    assert names == ["gray.png", "padded.jpg", "rgb.JPG", "rgba.png"]
    assert labels == [0, 0, 0, 1]
    assert skipped == {
        "empty": 1,
        "not_image": 1,
        "bad_header": 1,
        "truncated": 2,  # a valid header, but the JPEG / PNG ends before its end marker
        "unreadable": 0,
        "outside_class": 1,
    }


def test_image_folder_yields_decodable_images(labeled_root, caplog):
    root, expected = labeled_root
    caplog.set_level(logging.INFO, logger="absl")
    source = sources.image_folder_source(root, "train")
    summaries = [r.getMessage() for r in caplog.records if "image folder" in r.getMessage()]
    assert summaries == [
        f"image folder {os.path.join(root, 'train')}: 4 images, 2 classes, skipped 6 "
        "(1 empty, 1 not an image, 1 bad header, 2 truncated, 1 outside class folders)"
    ]
    assert (source.num_classes, source.class_names) == (2, ("cat", "dog"))
    assert source.num_examples == 4  # counted before decoding
    assert (source.name, source.split) == ("image_folder", "train")
    examples = list(source.dataset.as_numpy_iterator())  # must not raise
    assert len(examples) == 4  # every counted image decodes: none is dropped later
    for ex in examples:
        image = ex["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        label, pixels = expected[image.shape[:2]]
        assert ex["label"] == label and ex["label"].dtype == np.int64
        if pixels is not None:
            np.testing.assert_array_equal(image, pixels)
    assert {ex["image"].shape[:2] for ex in examples} == set(expected)


def test_image_folder_shuffle_files_is_seeded(labeled_root):
    root, _ = labeled_root

    def order(seed):
        source = sources.image_folder_source(root, "train", shuffle_files=True, seed=seed)
        return [ex["image"].shape[:2] for ex in source.dataset.as_numpy_iterator()]

    first = order(7)
    assert first == order(7)
    assert sorted(first) == sorted([(10, 12), (5, 12), (14, 9), (7, 11)])


def test_image_folder_unlabeled(tmp_path):
    split_dir = tmp_path / "unlabeled"
    _write(str(split_dir / "a.png"), tf.io.encode_png(_rng_image((5, 6, 3), 0)).numpy())
    _write(str(split_dir / "b.jpeg"), tf.io.encode_jpeg(_rng_image((8, 4, 3), 1)).numpy())
    source = sources.make_source(
        "image_folder", "unlabeled", data_dir=str(tmp_path), shuffle_files=False
    )  # the stored order: sorted by name
    assert (source.num_examples, source.num_classes, source.class_names) == (2, 0, ())
    examples = list(source.dataset.as_numpy_iterator())
    assert [int(ex["label"]) for ex in examples] == [-1, -1]
    assert [ex["image"].shape for ex in examples] == [(5, 6, 3), (8, 4, 3)]


def test_image_folder_missing_root(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(DataError) as info:
        sources.image_folder_source(missing, "train")
    assert info.value.argument == "data_dir"
    assert str(info.value).startswith(f"data_dir={missing!r}: directory does not exist")
    assert "<label>/<image>" in str(info.value)


def test_image_folder_missing_split(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError) as info:
        sources.image_folder_source(str(tmp_path), "val")
    assert info.value.argument == "split" and info.value.value == "val"
    assert "<data_dir>/<split>/<label>/<image>" in str(info.value)


def test_image_folder_without_images(tmp_path):
    _write(str(tmp_path / "train" / "readme.txt"), b"hello")
    _write(str(tmp_path / "train" / "blank.png"), b"")
    with pytest.raises(DataError) as info:
        sources.image_folder_source(str(tmp_path), "train")
    assert info.value.argument == "split"
    assert "no usable images" in str(info.value) and "1 empty, 1 not an image" in str(info.value)


def test_make_source_image_folder_needs_data_dir():
    with pytest.raises(DataError) as info:
        sources.make_source("image_folder", "train", data_dir="")
    assert info.value.argument == "data_dir"
    assert "required for an image folder" in str(info.value)
    assert "<data_dir>/<split>/<label>/<image>" in str(info.value)


def test_make_source_dispatches_to_tfds(tmp_path):
    source = sources.make_source("tf_simclr_test_gray", "test", data_dir=str(tmp_path))
    assert (source.name, source.num_examples, source.num_classes) == ("tf_simclr_test_gray", 4, 3)
