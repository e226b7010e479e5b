"""--mode=embed and tf_simclr.eval.embed: a folder of images to one embedding row per image."""

import csv
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tests.test_export import built, tiny_simclr
from tests.test_official import rebuild_checkpoint
from tf_simclr.data import augment
from tf_simclr.errors import ArgumentError
from tf_simclr.eval import embed

SIZE = 16


def jpeg(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_jpeg(pixels).numpy())


@pytest.fixture
def folder(tmp_path):
    """split/: two class folders (one with a sub-folder), a loose image, a text file, an
    empty file, and a JPEG that passes the scan (header and end marker) but not the decoder."""
    root = tmp_path / "images" / "all"
    for i, relative in enumerate(
        ["cat/0.jpg", "cat/1.jpg", "cat/deep/2.jpg", "dog/0.jpg", "x.jpg"]
    ):
        jpeg(root / relative, i)
    (root / "notes.txt").write_text("not an image")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9")
    return root


@pytest.fixture(scope="module")
def model():
    return built(tiny_simclr(0), SIZE)


def test_each_row_is_its_image_through_the_eval_view(model, folder):
    result = embed.embed_folder(model, str(folder), SIZE, batch_size=2, progress=False)
    assert result.paths == ["cat/0.jpg", "cat/1.jpg", "cat/deep/2.jpg", "dog/0.jpg", "x.jpg"]
    assert result.labels == ["cat", "cat", "cat", "dog", ""]
    assert result.skipped["not_image"] == 1 and result.skipped["empty"] == 1
    assert result.skipped["undecodable"] == 1
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (5, 64)
    for row, relative in zip(result.vectors, result.paths, strict=True):
        image = tf.io.decode_jpeg((folder / relative).read_bytes())
        view = augment.eval_view(image, SIZE)[None]
        np.testing.assert_allclose(row, model(view)["embedding"][0], rtol=1e-5, atol=1e-6)
    projection = embed.embed_folder(model, str(folder), SIZE, "projection", progress=False)
    assert projection.vectors.shape == (5, 8)


def test_the_package_level_embed_writes_what_embed_folder_returns(model, folder, tmp_path):
    import tf_simclr

    result = tf_simclr.embed(model, str(folder), SIZE, str(tmp_path / "out"), progress=False)
    assert isinstance(result, tf_simclr.Embeddings)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "embeddings.npy"), result.vectors)


def test_two_replicas_give_the_rows_of_one(folder, mirrored_strategy, model):
    with mirrored_strategy.scope():
        twin = built(tiny_simclr(0), SIZE)
    twin.set_weights(model.get_weights())
    one = embed.embed_folder(model, str(folder), SIZE, batch_size=3, progress=False)
    two = embed.embed_folder(twin, str(folder), SIZE, batch_size=3, progress=False)
    assert two.paths == one.paths
    np.testing.assert_allclose(two.vectors, one.vectors, rtol=1e-5, atol=1e-6)


def test_files_written_and_neighbours_equal_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    result = embed.Embeddings(
        rng.normal(size=(7, 5)).astype(np.float32),
        [f"d/{i}.jpg" for i in range(7)],
        ["d"] * 6 + [""],
        {},
    )
    out = tmp_path / "out"
    files = embed.write_embeddings(result, str(out), neighbours=3)
    assert sorted(os.listdir(out)) == ["embeddings.npy", "neighbours.csv", "paths.csv"]
    assert sorted(files) == sorted(str(out / f) for f in os.listdir(out))
    np.testing.assert_array_equal(np.load(out / "embeddings.npy"), result.vectors)
    rows = list(csv.reader((out / "paths.csv").open()))
    assert rows[0] == ["path", "label"] and rows[1:] == [
        [p, label] for p, label in zip(result.paths, result.labels, strict=True)
    ]
    unit = result.vectors / np.linalg.norm(result.vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    expected = np.argsort(-cosine, axis=1)[:, :3]
    some, some_cosines = embed.nearest_neighbours(result.vectors, 3, rows=[4, 1])
    np.testing.assert_array_equal(some, expected[[4, 1]])
    np.testing.assert_allclose(some_cosines[:, 0], cosine[[4, 1], expected[[4, 1], 0]], atol=1e-5)
    got = list(csv.DictReader((out / "neighbours.csv").open()))
    assert len(got) == 21
    for i, path in enumerate(result.paths):
        mine = [r for r in got if r["path"] == path]
        assert [r["neighbour"] for r in mine] == [result.paths[j] for j in expected[i]]
        assert float(mine[0]["cosine"]) == pytest.approx(cosine[i, expected[i, 0]], abs=1e-5)


def test_a_crash_while_writing_leaves_nothing_and_keeps_the_old_output(tmp_path, monkeypatch):
    result = embed.Embeddings(np.ones((2, 3), np.float32), ["a", "b"], ["", ""], {})
    out = tmp_path / "out"
    embed.write_embeddings(result, str(out))
    before = (out / "paths.csv").read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(embed.csv, "writer", crash)
    with pytest.raises(OSError, match="disk full"):
        embed.write_embeddings(result, str(out))
    assert os.listdir(tmp_path) == ["out"] and (out / "paths.csv").read_text() == before


def test_parquet_holds_path_label_and_embedding(tmp_path):
    parquet = pytest.importorskip("pyarrow.parquet")
    result = embed.Embeddings(np.eye(3, dtype=np.float32), ["a", "b", "c"], ["x", "", "y"], {})
    embed.write_embeddings(result, str(tmp_path / "out"), format="parquet")
    table = parquet.read_table(tmp_path / "out" / "embeddings.parquet").to_pydict()
    assert table["path"] == ["a", "b", "c"] and table["label"] == ["x", "", "y"]
    np.testing.assert_array_equal(np.array(table["embedding"]), np.eye(3))


def test_bad_arguments_are_argument_errors(model, tmp_path, folder):
    with pytest.raises(ArgumentError, match="^folder=.*not a directory"):
        embed.embed_folder(model, str(tmp_path / "missing"), SIZE)
    with pytest.raises(ArgumentError, match="^key=.*embedding"):
        embed.embed_folder(model, str(folder), SIZE, key="logits", progress=False)
    with pytest.raises(ArgumentError, match="^neighbours=9"):
        embed.nearest_neighbours(np.ones((3, 2)), 9)


def test_embed_mode_with_our_run_and_with_a_reference_checkpoint(
    session_train_test_folder, tmp_path, capsys
):
    run = tmp_path / "run"
    data = ["--dataset=image_folder", f"--data_dir={session_train_test_folder}"]
    code, stderr = _harness.run_in_process(
        [*_harness.TINY_FLAGS, *data, f"--model_dir={run}", "--train_steps=1"], capsys
    )
    assert code == 0, stderr
    out = tmp_path / "emb"
    embed_flags = ["--mode=embed", *data, "--eval_split=test", f"--embed_output={out}"]
    code, stderr = _harness.run_in_process(
        [*embed_flags, f"--model_dir={run}", "--embed_neighbours=3"], capsys
    )
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == [
        "embeddings.npy",
        "neighbours.csv",
        "neighbours.png",
        "paths.csv",
    ]
    vectors = np.load(out / "embeddings.npy")
    paths = [r["path"] for r in csv.DictReader((out / "paths.csv").open())]
    assert vectors.shape == (8, 64) and paths[0] == "cat/0.jpg"
    # Our exported SavedModel as --checkpoint gives the same rows.
    saved = next(pathlib.Path(run, "saved_model").iterdir())
    out2 = tmp_path / "emb2"
    code, stderr = _harness.run_in_process(
        [
            "--mode=embed",
            *data,
            "--eval_split=test",
            f"--embed_output={out2}",
            f"--checkpoint={saved}",
        ],
        capsys,
    )
    assert code == 0, stderr
    np.testing.assert_allclose(np.load(out2 / "embeddings.npy"), vectors, rtol=1e-5, atol=1e-6)
    # A reference (published-layout) checkpoint: imported, then embedded.
    reference = tmp_path / "reference"
    rebuild_checkpoint("r18_cifar_1x", str(reference))
    out3 = tmp_path / "emb3"
    code, stderr = _harness.run_in_process(
        [
            "--mode=embed",
            *data,
            "--eval_split=test",
            f"--embed_output={out3}",
            f"--checkpoint={reference}",
            "--image_size=32",
        ],
        capsys,
    )
    assert code == 0, stderr
    assert np.load(out3 / "embeddings.npy").shape == (8, 512)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_dir=/nonexistent"], "--embed_output: is required with --mode=embed"),
        (["--embed_output=/tmp/x"], "--model_dir: --mode=embed needs the model"),
        (["--embed_output=/tmp/x", "--model_dir=/m", "--dataset="], "--dataset: --mode=embed"),
    ],
)
def test_embed_flag_errors_are_one_line(flags, message, capsys):
    code, stderr = _harness.run_in_process(
        ["--mode=embed", "--dataset=image_folder", *flags], capsys
    )
    assert code == 2 and message in stderr.strip().splitlines()[-1], stderr


def test_a_tfds_split_is_embedded_with_index_paths_and_class_names(model):
    import tensorflow_datasets as tfds

    from tf_simclr.data import make_source

    with tfds.testing.mock_data(num_examples=6):
        source = make_source("cifar10", "test", shuffle_files=False)
        result = embed.embed_source(model, source, SIZE, batch_size=4, progress=False)
        images = [e["image"] for e in source.dataset]
    assert result.paths == [f"test/{i}" for i in range(6)]
    assert set(result.labels) <= set(source.class_names) and all(result.labels)
    assert result.vectors.shape == (6, 64) and result.skipped == {"undecodable": 0}
    view = augment.eval_view(images[3], SIZE)[None]
    np.testing.assert_allclose(result.vectors[3], model(view)["embedding"][0], atol=1e-5)
