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

import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_image_folder(root, split="train", classes=("cat", "dog"), per_class=8, size=16, seed=0):
    """Writes root/split/<class>/<i>.jpg colour images (class-dependent tint); returns root."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = pathlib.Path(root, split, name)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            pixels[..., c % 3] = 255 - (pixels[..., c % 3] // 4)
            folder.joinpath(f"{i}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return pathlib.Path(root)


@pytest.fixture(autouse=True, scope="session")
def _network_answers():
    """Tests run offline: TFDS datasets "downloaded" here are mocks or local builders that
    need no network, so `download="auto"` may go ahead. Session-wide, so that module- and
    session-scoped fixtures get it too. Tests of the offline path set the probe to False
    themselves; `tests/data/test_sources.py` tests the probe itself."""
    from tf_simclr.data import sources

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sources, "network_reachable", lambda *args, **kwargs: True)
        yield


@pytest.fixture
def training_events(tmp_path):
    """`tmp_path/run/train` event files as training writes them: five `train/*` scalars at
    steps 10, 20, 30 (value step / 100) and one image summary; returns `tmp_path/run`."""
    model_dir = tmp_path / "run"
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
    with writer.as_default():
        for step in (10, 20, 30):
            for name in ("loss", "contrast_acc", "probe_acc", "learning_rate", "probe_loss"):
                tf.summary.scalar(f"train/{name}", step / 100, step=step)
        tf.summary.image("train/views", np.zeros([1, 4, 4, 3], np.float32), step=10)
    writer.close()
    return model_dir


@pytest.fixture
def image_folder(tmp_path):
    """A tiny labelled image folder: train/{cat,dog}/*.jpg, 16 px, 8 images per class."""
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def train_test_folder(tmp_path):
    """A tiny image folder with a train split (8 per class) and a test split (4 per class)."""
    root = write_image_folder(tmp_path / "images", "train")
    return write_image_folder(root, "test", per_class=4, seed=1)


@pytest.fixture(scope="session")
def session_train_test_folder(tmp_path_factory):
    """`train_test_folder` made once per session, for module-scoped runs (do not modify)."""
    root = write_image_folder(tmp_path_factory.mktemp("session_images"), "train")
    return write_image_folder(root, "test", per_class=4, seed=1)


# Bigger than the pipelines' default shuffle buffer (at least 1000 examples): read in the
# folder's order, a class fills the whole buffer and every early batch holds that class only.
CLASS_SORTED_CLASSES, CLASS_SORTED_PER_CLASS = 8, 1100


@pytest.fixture(scope="session")
def class_sorted_folder(tmp_path_factory):
    """root/{train,test}/<class>/<i>.jpg, 8 classes of 1,100 (train) and 200 (test) 8 px
    images: a folder scanned in class order whose classes each outnumber the default shuffle
    buffer. One JPEG per class, written under every name of the class (cheap)."""
    root = tmp_path_factory.mktemp("class_sorted")
    for split, per_class in (("train", CLASS_SORTED_PER_CLASS), ("test", 200)):
        for c in range(CLASS_SORTED_CLASSES):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            pixels = np.full((8, 8, 3), 30 * c, np.uint8)
            data = tf.io.encode_jpeg(pixels).numpy()
            for i in range(per_class):
                (folder / f"{i:04d}.jpg").write_bytes(data)
    return root


@pytest.fixture(scope="session")
def make_image_folder():
    """`write_image_folder` itself, for other classes, sizes or counts (tests cannot import
    conftest)."""
    return write_image_folder


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One 2-replica MirroredStrategy shared by all tests.

    Several MirroredStrategy objects in one process allocate the same collective
    instance keys, and their all-gathers then collide ("Collective instance 100
    expected type ..."), so tests share a single instance.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(scope="session")
def mirrored_strategy_4():
    """One 4-replica MirroredStrategy, with collective keys apart from the 2-replica one.

    `_collective_key_base` is TensorFlow's own hook for tests that need several
    MirroredStrategy objects in one process (tensorflow/python/distribute/
    strategy_combinations.py moves it the same way): each strategy numbers its
    collective groups from 1 + this base.
    """
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(4)])


# 4 replicas: slow (the two 4-replica SimCLR tests took 68 s of a 1330 s suite run); the
# 2-replica runs check the same gathering and scaling in the default suite.
@pytest.fixture(
    params=[2, pytest.param(4, marks=pytest.mark.slow)], ids=["2_replicas", "4_replicas"]
)
def replicated_strategy(request):
    """The 2- and then the 4-replica MirroredStrategy (tests run once with each)."""
    return request.getfixturevalue(
        "mirrored_strategy" if request.param == 2 else "mirrored_strategy_4"
    )


def _worst_relative_step(init_a, after_a, init_b, after_b):
    """Largest per-tensor ||step_a - step_b|| / ||step_a|| of two runs from the same weights.

    With plain SGD at learning rate 1 a step is minus the gradient, so this compares
    gradients of, e.g., a replicated and a single-device run.
    """
    worst = 0.0
    for a0, a, b0, b in zip(init_a, after_a, init_b, after_b, strict=True):
        np.testing.assert_array_equal(a0, b0)
        scale = max(np.linalg.norm(a - a0), 1e-8)
        worst = max(worst, float(np.linalg.norm((a - a0) - (b - b0)) / scale))
    return worst


@pytest.fixture
def worst_relative_step():
    """The `_worst_relative_step` comparison (a fixture: tests cannot import conftest)."""
    return _worst_relative_step
