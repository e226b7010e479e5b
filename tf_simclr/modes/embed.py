"""`--mode=embed`: the embeddings of a folder of images (or a TFDS split), one row per image.

The model is `--checkpoint` when given (our model_dir, ckpt-N or SavedModel, or a
published reference SavedModel or checkpoint), else `--model_dir`; it is rebuilt from its
description (or, for a reference model, from its variables and imported) under the run's
strategy, so several devices share the work. The images are `--data_dir/--eval_split`,
searched recursively, for `--dataset=image_folder`, else the TFDS split `--eval_split`.
`--embed_output` receives `embeddings.npy` and `paths.csv` (or `embeddings.parquet`),
and `neighbours.csv` with `--embed_neighbours`; see `tf_simclr.eval.embed`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from absl import logging

from tf_simclr import builders
from tf_simclr.config import Config, ConfigError, flags_for
from tf_simclr.data import augment
from tf_simclr.eval import embed


def run(resolved, strategy: tf.distribute.Strategy) -> dict:
    """Embeds the images of a `resolver.Resolved` with its model (`--checkpoint`, else
    `--model_dir`); returns a summary (files, counts)."""
    config = resolved.config
    location = resolved.checkpoint or resolved.model_dir
    description = location.described()
    # Our models record their input size; a reference model's is the --image_size flag.
    image_size = config.image_size if location.reference else description["model"]["image_size"]
    model, what = location.load(config.replace(checkpoint=""), strategy)
    logging.info("Embedding with %s (%s) at %d px", location.path, what, image_size)

    with flags_for(key="embed_key", batch_size="eval_batch_size", folder="data_dir"):
        if config.dataset == "image_folder":
            folder = os.path.join(config.data_dir, config.eval_split)
            if not os.path.isdir(folder):
                raise ConfigError("eval_split", f"{folder} is not a directory", config.eval_split)
            result = embed.embed_folder(
                model, folder, image_size, config.embed_key, config.eval_batch_size
            )
        else:
            source = builders.eval_source(config)
            result = embed.embed_source(
                model, source, image_size, config.embed_key, config.eval_batch_size
            )
    with flags_for(format="embed_format", neighbours="embed_neighbours"):
        files = embed.write_embeddings(
            result, config.embed_output, config.embed_format, config.embed_neighbours
        )
    if config.embed_neighbours and config.dataset == "image_folder":
        files.append(_neighbours_picture(result, folder, config, image_size))
    skipped = {k: v for k, v in result.skipped.items() if v}
    logging.info(
        "Wrote %d embeddings of %d dimensions to %s (skipped %d images%s)",
        len(result.paths),
        result.vectors.shape[1] if len(result.paths) else 0,
        os.path.abspath(config.embed_output),
        sum(skipped.values()),
        f": {skipped}" if skipped else "",
    )
    return {
        "output": os.path.abspath(config.embed_output),
        "files": files,
        "num_images": len(result.paths),
        "dimensions": int(result.vectors.shape[1]) if len(result.paths) else 0,
        "skipped": result.skipped,
    }


# Query rows in the neighbours picture, spread evenly over the images.
PICTURE_QUERIES = 6


def _neighbours_picture(
    result: embed.Embeddings, folder: str, config: Config, image_size: int
) -> str | None:
    """`neighbours.png` in the output: a few images beside their nearest neighbours
    (`viz.draw_neighbours`); None, said in the log, without matplotlib."""
    from tf_simclr import viz

    try:
        viz.pyplot()
    except ImportError as e:
        logging.info("No neighbours picture: %s", e)
        return None
    k = min(config.embed_neighbours, 8)
    queries = np.linspace(0, len(result.paths) - 1, min(PICTURE_QUERIES, len(result.paths)))
    queries = queries.astype(int)
    indices, cosines = embed.nearest_neighbours(result.vectors, k, rows=queries)
    names = sorted({label for label in result.labels if label})
    labels = np.array([names.index(label) if label else -1 for label in result.labels])

    def load(i):
        path = os.path.join(folder, *result.paths[i].split("/"))
        image = tf.io.decode_image(tf.io.read_file(path), 3, expand_animations=False)
        return augment.eval_view(image, image_size).numpy()

    needed = sorted({*queries, *indices.ravel()})
    images = {i: load(i) for i in needed}
    gallery = [images.get(i) for i in range(max(needed) + 1)]
    picture = os.path.join(os.path.abspath(config.embed_output), "neighbours.png")
    tmp = picture + ".tmp.png"
    viz.draw_neighbours(
        [images[i] for i in queries],
        gallery,
        indices,
        cosines,
        query_labels=labels[queries],
        gallery_labels=labels,
        class_names=names,
        path=tmp,
    )
    os.replace(tmp, picture)
    return picture
