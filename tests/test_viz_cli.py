"""The pictures on the command line: --mode=preview, --summary_images, --eval_projector."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins import projector

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    "--dataset=image_folder",
    "--resnet_depth=18",
    "--width_multiplier=0.125",
    "--image_size=16",
    "--train_batch_size=4",
    "--proj_out_dim=8",
    "--num_proj_layers=2",
    "--warmup_epochs=0",
    "--use_blur=false",
    "--verbose=0",
]


def run_cli(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_preview_writes_the_views_png(tmp_path, image_folder):
    out = tmp_path / "pictures" / "views.png"
    done = run_cli(
        "--mode=preview",
        *TINY,
        f"--data_dir={image_folder}",
        "--preview_images=3",
        "--use_color_jitter=false",
        f"--preview_file={out}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    image = tf.io.decode_png(tf.io.read_file(str(out))).numpy()
    assert image.shape[0] > 100 and image.shape[2] in (3, 4)
    assert not (tmp_path / "model").exists()  # nothing but the picture


def test_preview_defaults_to_model_dir_and_bad_input_exits_2(tmp_path, image_folder):
    done = run_cli(
        "--mode=preview", *TINY, f"--data_dir={image_folder}", f"--model_dir={tmp_path}/m"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "m" / "views.png").stat().st_size > 1000
    assert sorted(os.listdir(tmp_path / "m")) == ["views.png"]
    done = run_cli("--mode=preview", *TINY, f"--data_dir={tmp_path}/none", "--preview_file=x.png")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith("run.py: error: --data_dir="), done.stderr
    done = run_cli("--mode=preview", *TINY, f"--model_dir={tmp_path}/m", "--preview_images=0")
    assert done.returncode == 2 and "--preview_images" in done.stderr


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


def test_summary_images_and_the_eval_projector(tmp_path, train_test_folder):
    model_dir = tmp_path / "run"
    done = run_cli(
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
    assert done.returncode == 0, done.stderr[-2000:]
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
def test_bad_picture_flags_exit_2(tmp_path, flag):
    done = run_cli("--mode=train", *TINY, "--data_dir=x", f"--model_dir={tmp_path}", flag)
    assert done.returncode == 2 and flag.split("=")[0] in done.stderr
