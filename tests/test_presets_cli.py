"""Published model names wherever the command line takes a model location (issue 25):
`--mode=import --checkpoint=NAME`, `--mode=embed --checkpoint=NAME`, and pretraining that
continues from a published model on your own images (`--train_mode=pretrain
--checkpoint=NAME`). The bucket is a folder here (`TF_SIMCLR_MODEL_ROOT`); the HTTP
transfers are `tests/test_presets.py`'s."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tests.test_presets import FIXTURE, NAME, REGISTRY, bucket, cache  # noqa: F401 (fixtures)
from tf_simclr.presets import download, registry


@pytest.fixture
def named(bucket, cache, monkeypatch):  # noqa: F811
    """NAME is a published model of the package's registry, served from the bucket folder."""
    monkeypatch.setattr(registry, "_PRESETS", REGISTRY)
    monkeypatch.setenv("TF_SIMCLR_MODEL_ROOT", str(bucket))
    return download.paths(FIXTURE)


def model_variables(model_dir):
    """{path: value} of the encoder's and head's variables of a model_dir's latest
    checkpoint, rebuilt from its model.json."""
    from tf_simclr import run_dir

    model, _, _ = run_dir.load_model(str(model_dir))
    return {v.path: v.numpy() for part in (model.encoder, model.head) for v in part.weights}


def test_import_and_embed_take_a_name(named, session_train_test_folder, tmp_path, capsys):
    downloads, model_dir = named
    imported = tmp_path / "imported"
    code, stderr = _harness.run_in_process(
        ["--mode=import", f"--checkpoint={NAME}", f"--model_dir={imported}"], capsys
    )
    assert code == 0, stderr
    assert (imported / "model.json").exists() and tf.io.gfile.isdir(downloads)
    # Embedding with the name: the cached model_dir, made once.
    data = ["--dataset=image_folder", f"--data_dir={session_train_test_folder}"]
    out = tmp_path / "emb"
    flags = ["--mode=embed", *data, "--eval_split=test", f"--embed_output={out}"]
    code, stderr = _harness.run_in_process(
        [*flags, f"--checkpoint={NAME.replace('/', '_')}"], capsys
    )
    assert code == 0, stderr
    assert np.load(out / "embeddings.npy").shape == (8, 512)
    assert (pathlib.Path(model_dir) / "model.json").exists()


def test_pretraining_continues_from_a_published_model(
    named, session_train_test_folder, tmp_path, capsys
):
    _, model_dir = named
    flags = [
        "--train_mode=pretrain",
        f"--checkpoint={NAME}",
        "--dataset=image_folder",
        f"--data_dir={session_train_test_folder}",
        "--image_size=32",
        "--train_batch_size=4",
        "--use_blur=false",
        "--train_steps=2",
        "--weight_decay=0",
        "--warmup_epochs=0",
    ]
    # Learning rate 0: the weights after the steps are those the run started from.
    still = tmp_path / "still"
    code, stderr = _harness.run_in_process(
        [*flags, "--learning_rate=0", f"--model_dir={still}"], capsys
    )
    assert code == 0, stderr
    imported = model_variables(model_dir)
    trainable = {k for k in imported if "moving_" not in k}
    assert len(trainable) > 50 and any("head" in k for k in trainable), sorted(trainable)[:5]
    started = model_variables(still)
    for key in trainable:
        np.testing.assert_array_equal(started[key], imported[key], err_msg=key)
    # With a learning rate, every trainable variable of the encoder and head moves.
    moved = tmp_path / "moved"
    code, stderr = _harness.run_in_process(
        [*flags, "--learning_rate=0.5", f"--model_dir={moved}"], capsys
    )
    assert code == 0, stderr
    after = model_variables(moved)
    unmoved = [k for k in trainable if np.array_equal(after[k], imported[k])]
    assert unmoved == []


def test_an_unknown_name_is_a_missing_path(named, tmp_path, capsys):
    code, stderr = _harness.run_in_process(
        [
            "--mode=embed",
            "--dataset=image_folder",
            f"--data_dir={tmp_path}",
            f"--embed_output={tmp_path / 'out'}",
            "--checkpoint=simclrv2/pretrained/r18_9x_sk0",
        ],
        capsys,
    )
    assert code == 2 and "--checkpoint" in stderr.strip().splitlines()[-1], stderr


def test_load_official_takes_a_name_or_a_path(named, monkeypatch):
    import tf_simclr
    from tests import test_official

    by_name = tf_simclr.load_official(NAME)
    test_official.assert_matches_reference(by_name, "r18_cifar_1x")
    downloads, _ = named
    by_path = tf_simclr.load_official(str(pathlib.Path(downloads) / "saved_model"))
    for a, b in zip(by_name.weights, by_path.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
