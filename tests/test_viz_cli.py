"""The pictures on the command line: --mode=preview, --summary_images, --eval_projector."""

import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins import projector

from tests import _harness

TINY = ["--dataset=image_folder", *_harness.TINY_FLAGS, "--warmup_epochs=0", "--verbose=0"]


def run_cli(capsys, *args):
    """run.py's parse_flags + main in this process (a fresh one costs a TensorFlow import;
    test_run.py checks the real process): (exit code, stderr)."""
    return _harness.run_in_process(list(args), capsys)


def test_preview_writes_the_views_png(tmp_path, image_folder, capsys):
    out = tmp_path / "pictures" / "views.png"
    code, stderr = run_cli(
        capsys,
        "--mode=preview",
        *TINY,
        f"--data_dir={image_folder}",
        "--preview_images=3",
        "--use_color_jitter=false",
        f"--preview_file={out}",
    )
    assert code == 0, stderr[-2000:]
    image = tf.io.decode_png(tf.io.read_file(str(out))).numpy()
    assert image.shape[0] > 100 and image.shape[2] in (3, 4)
    assert not (tmp_path / "model").exists()  # nothing but the picture


def test_preview_defaults_to_model_dir_and_checks_its_flags(tmp_path, image_folder, capsys):
    code, stderr = run_cli(
        capsys, "--mode=preview", *TINY, f"--data_dir={image_folder}", f"--model_dir={tmp_path}/m"
    )
    assert code == 0, stderr[-2000:]
    assert (tmp_path / "m" / "views.png").stat().st_size > 1000
    assert sorted(os.listdir(tmp_path / "m")) == ["views.png"]
    code, stderr = run_cli(
        capsys, "--mode=preview", *TINY, f"--model_dir={tmp_path}/m", "--preview_images=0"
    )
    assert code == 2 and "--preview_images" in stderr


def event_images(log_dir, tag):
    """{step: [image, ...]} of the image summary `tag` in the event files of `log_dir`."""
    found = {}
    for path in sorted(pathlib.Path(log_dir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    # An image summary: [width, height, png, png, ...] as strings.
                    encoded = tf.make_ndarray(value.tensor)[2:]
                    found[event.step] = [tf.io.decode_png(png).numpy() for png in encoded]
    return found


def test_summary_images_and_the_eval_projector(tmp_path, train_test_folder, capsys):
    model_dir = tmp_path / "run"
    code, stderr = run_cli(
        capsys,
        "--mode=train_then_eval",
        *TINY,
        f"--data_dir={train_test_folder}",
        "--eval_split=test",
        "--train_steps=4",
        "--summary_images=3",
        "--eval_projector",
        "--eval_knn=false",
        f"--model_dir={model_dir}",
    )
    assert code == 0, stderr[-2000:]
    # The views: at the start (step 0) and every 3 steps, 4 images, each 16 px beside two
    # views with 1 px gaps.
    views = event_images(model_dir / "train", "train/views")
    assert sorted(views) == [0, 3]
    assert len(views[0]) == 4 and views[0][0].shape == (16, 3 * 16 + 2, 3)

    log_dir = model_dir / "eval_test"
    config = text_format.Parse(
        (log_dir / "projector_config.pbtxt").read_text(), projector.ProjectorConfig()
    )
    (embedding,) = config.embeddings
    vectors = np.loadtxt(log_dir / embedding.tensor_path, delimiter="\t", ndmin=2)
    assert vectors.shape[0] == 8  # the eval split: 2 classes x 4 images
    assert vectors.shape[1] == list(embedding.tensor_shape)[1] > 1
    metadata = (log_dir / embedding.metadata_path).read_text().splitlines()
    assert metadata[0] == "label\tclass" and sorted(metadata[1:]) == ["0\tcat"] * 4 + ["1\tdog"] * 4
    sprite = tf.io.decode_png(tf.io.read_file(str(log_dir / embedding.sprite.image_path)))
    assert list(embedding.sprite.single_image_dim) == [16, 16]
    assert sprite.shape == (3 * 16, 3 * 16, 3)  # ceil(sqrt(8)) = 3 thumbnails a side


@pytest.mark.parametrize("flag", ["--summary_images=-1"])
def test_bad_picture_flags_exit_2(tmp_path, flag, capsys):
    code, stderr = run_cli(
        capsys, "--mode=train", *TINY, "--data_dir=x", f"--model_dir={tmp_path}", flag
    )
    assert code == 2 and flag.split("=")[0] in stderr
