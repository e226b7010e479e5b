"""Embeddings of a folder of images (or a TFDS split): one row per image, with its path.

For the user with images and no labels: `embed_folder(model, folder, image_size)` runs
every image under `folder` (recursively; `split/<label>/...` gives labels, loose images
have none) through the model's evaluation preprocessing (`data.augment.eval_view`:
centre crop above 32 px, resize) and returns an `Embeddings`; `write_embeddings` saves
it as

- `embeddings.npy`: float32 `[N, D]`, row i = image i;
- `paths.csv`: header `path,label`, row i = image i's path relative to the folder
  (`/` separators) and its label (empty when it has none);
- or, with `format="parquet"` (needs `pyarrow`), one `embeddings.parquet` holding
  `path`, `label` and `embedding` (a list of D floats) per row;
- with `neighbours=K`, `neighbours.csv`: each image's K nearest other images by
  cosine similarity (`path,rank,neighbour,cosine`).

The output directory is written under a temporary name and renamed when complete: a
killed run leaves no directory that looks finished. Images the scan rejects (empty,
not an image, truncated; `data.scan_image_tree`) and images that fail to decode are
skipped and counted, as in training.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import sys
import time
import uuid

import keras
import numpy as np
import tensorflow as tf

from tf_simclr.choices import EMBED_FORMATS, EMBED_KEYS
from tf_simclr.data import Source, augment, scan_image_tree
from tf_simclr.errors import ArgumentError


@dataclasses.dataclass
class Embeddings:
    """Row i of `vectors` is the image `paths[i]` (relative), labelled `labels[i]` ("":
    none). `skipped`: images left out, per reason ("undecodable": failed to decode)."""

    vectors: np.ndarray
    paths: list[str]
    labels: list[str]
    skipped: dict[str, int]


def _progress(total: int):
    """A Keras progress bar with images/s on a terminal; a final line only otherwise (no
    control characters in log files)."""
    return keras.utils.Progbar(total, verbose=1 if sys.stdout.isatty() else 2, unit_name="image")


def embed_dataset(
    model: keras.Model,
    dataset: tf.data.Dataset,
    total: int,
    key: str = "embedding",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """`(vectors [M, D] float32, index [M] int64)` of batches `{"image", "index"}` of
    preprocessed float32 images. Under the strategy the model was built in: each batch is
    split across its replicas (`index` travels with the rows). `total` sizes the progress
    bar."""
    if key not in EMBED_KEYS:
        raise ArgumentError("key", f"must be one of {EMBED_KEYS}", key)
    strategy = model.distribute_strategy

    @tf.function
    def forward(images):
        outputs = model(images, training=False)
        if not isinstance(outputs, dict) or key not in outputs:
            have = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
            raise ArgumentError("key", f"the model has no output {key!r} (it has {have})", key)
        return tf.cast(outputs[key], tf.float32)

    def local(values):
        return np.concatenate([np.asarray(v) for v in strategy.experimental_local_results(values)])

    bar = _progress(total) if progress else None
    vectors, indices, done, began = [], [], 0, time.perf_counter()
    for batch in strategy.experimental_distribute_dataset(dataset):
        vectors.append(local(strategy.run(forward, args=(batch["image"],))))
        indices.append(local(batch["index"]))
        done += len(indices[-1])
        if bar is not None:
            rate = done / max(time.perf_counter() - began, 1e-9)
            bar.update(done, [("images/s", rate)])
    if not vectors:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(vectors), np.concatenate(indices)


def embed_folder(
    model: keras.Model,
    folder: str,
    image_size: int,
    key: str = "embedding",
    batch_size: int = 256,
    progress: bool = True,
) -> Embeddings:
    """The embeddings of every image under `folder` (see the module docstring).

    Args:
      model: `call(images, training)` -> dict with `key` (e.g. `SimCLR`, `Classifier`),
        built; under a strategy when it was built in one.
      folder: the images, searched recursively.
      image_size: the model's input side; images get `augment.eval_view`.
      key: "embedding" (the encoder output) or "projection" (the head's).
      batch_size: images per inference call.
      progress: show a progress bar.
    """
    if not os.path.isdir(folder):
        raise ArgumentError("folder", "is not a directory", folder)
    if batch_size < 1:
        raise ArgumentError("batch_size", "must be a positive integer", batch_size)
    relative, labels, skipped = scan_image_tree(folder)
    if not relative:
        raise ArgumentError("folder", f"holds no usable image (skipped {skipped})", folder)
    files = [os.path.join(folder, *p.split("/")) for p in relative]

    def load(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return {"image": augment.eval_view(image, image_size), "index": index}

    dataset = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(files), dtype=np.int64), files))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()  # a file the scan accepted that still fails to decode
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    vectors, index = embed_dataset(model, dataset, len(files), key, progress)
    skipped = {**skipped, "undecodable": len(files) - len(index)}
    return Embeddings(
        vectors=vectors,
        paths=[relative[i] for i in index],
        labels=[labels[i] for i in index],
        skipped=skipped,
    )


def embed_source(
    model: keras.Model,
    source: Source,
    image_size: int,
    key: str = "embedding",
    batch_size: int = 256,
    progress: bool = True,
) -> Embeddings:
    """The embeddings of every example of `source` (e.g. a TFDS split), as `embed_folder`;
    the path of example i is `"<split>/<i>"`, its label the class name ("" for none)."""
    if batch_size < 1:
        raise ArgumentError("batch_size", "must be a positive integer", batch_size)

    def load(index, example):
        return {"image": augment.eval_view(example["image"], image_size), "index": index}

    dataset = (
        source.dataset.enumerate()
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    labels = np.concatenate(
        [np.atleast_1d(b.numpy()) for b in source.dataset.map(lambda e: e["label"]).batch(4096)]
    )
    vectors, index = embed_dataset(model, dataset, source.num_examples, key, progress)
    names = source.class_names
    return Embeddings(
        vectors=vectors,
        paths=[f"{source.split}/{i}" for i in index],
        labels=[names[labels[i]] if names and labels[i] >= 0 else "" for i in index],
        skipped={"undecodable": source.num_examples - len(index)},
    )


def nearest_neighbours(
    vectors: np.ndarray, k: int, chunk: int = 1024, rows: np.ndarray | None = None
):
    """`(indices [M, k], cosines [M, k])`: for each of the rows `rows` (default all N), its
    k most cosine-similar other rows, most similar first (itself excluded); computed
    `chunk` rows at a time."""
    n = len(vectors)
    if not 1 <= k < n:
        raise ArgumentError("neighbours", f"must be in [1, {n - 1}] for {n} images", k)
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    indices = np.zeros((len(rows), k), np.int64)
    cosines = np.zeros((len(rows), k), np.float32)
    for start in range(0, len(rows), chunk):
        queries = rows[start : start + chunk]
        similarity = unit[queries] @ unit.T
        similarity[np.arange(len(queries)), queries] = -np.inf  # not its own neighbour
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(similarity, top, 1), axis=1)
        indices[start : start + chunk] = np.take_along_axis(top, order, 1)
        cosines[start : start + chunk] = np.take_along_axis(
            similarity, indices[start : start + chunk], 1
        )
    return indices, cosines


def write_embeddings(
    embeddings: Embeddings, output_dir: str, format: str = "npy", neighbours: int = 0
) -> list[str]:
    """Writes `embeddings` into `output_dir` (see the module docstring); returns the files
    written. The directory appears complete or not at all; an existing one is replaced."""
    if format not in EMBED_FORMATS:
        raise ArgumentError("format", f"must be one of {EMBED_FORMATS}", format)
    if format == "parquet":
        try:
            import pyarrow
            import pyarrow.parquet
        except ImportError:
            raise ArgumentError(
                "format", "parquet needs pyarrow: pip install pyarrow", format
            ) from None
    output_dir = os.path.abspath(output_dir)
    parent, name = os.path.split(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        written = []
        if format == "npy":
            np.save(os.path.join(tmp, "embeddings.npy"), embeddings.vectors.astype(np.float32))
            with open(os.path.join(tmp, "paths.csv"), "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["path", "label"])
                writer.writerows(zip(embeddings.paths, embeddings.labels, strict=True))
            written += ["embeddings.npy", "paths.csv"]
        else:
            table = pyarrow.table(
                {
                    "path": embeddings.paths,
                    "label": embeddings.labels,
                    "embedding": list(embeddings.vectors.astype(np.float32)),
                }
            )
            pyarrow.parquet.write_table(table, os.path.join(tmp, "embeddings.parquet"))
            written.append("embeddings.parquet")
        if neighbours:
            indices, cosines = nearest_neighbours(embeddings.vectors, neighbours)
            with open(os.path.join(tmp, "neighbours.csv"), "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["path", "rank", "neighbour", "cosine"])
                for i, path in enumerate(embeddings.paths):
                    for rank, (j, cosine) in enumerate(zip(indices[i], cosines[i], strict=True)):
                        writer.writerow([path, rank + 1, embeddings.paths[j], f"{cosine:.6f}"])
            written.append("neighbours.csv")
        if os.path.exists(output_dir):
            old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(output_dir, old)
            os.rename(tmp, output_dir)
            shutil.rmtree(old)
        else:
            os.rename(tmp, output_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return [os.path.join(output_dir, f) for f in written]


def embed(
    model: keras.Model,
    folder: str,
    image_size: int,
    output_dir: str | None = None,
    key: str = "embedding",
    batch_size: int = 256,
    format: str = "npy",
    neighbours: int = 0,
    progress: bool = True,
) -> Embeddings:
    """`tf_simclr.embed`: `embed_folder`, then, with `output_dir`, `write_embeddings`.

    Example (a model of ours from a `.keras` file, or `tf_simclr.load_official(...)`)::

        import tf_simclr
        model = tf_simclr.load_official("r50_1x_sk1/saved_model")
        result = tf_simclr.embed(model, "my_images", 224, output_dir="my_embeddings")
        result.vectors.shape, result.paths[:3]
    """
    result = embed_folder(model, folder, image_size, key, batch_size, progress)
    if output_dir is not None:
        write_embeddings(result, output_dir, format, neighbours)
    return result
