"""Query images beside their nearest gallery images by cosine similarity of the encoder
features: `nearest_neighbours` (the search), `plot_neighbours` (features, search and
figure), `draw_neighbours` (the figure of neighbours already found)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tf_simclr.errors import ArgumentError
from tf_simclr.eval.features import extract_features
from tf_simclr.summaries import class_name, images_labels_and_names
from tf_simclr.viz.figure import displayable, pyplot, save


def nearest_neighbours(
    query_features: np.ndarray, gallery_features: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` gallery rows most cosine-similar to each query row.

    Returns:
      indices int `[Q, k]` and similarities float32 `[Q, k]`, most similar first.
    """
    queries = np.asarray(query_features, np.float32)
    gallery = np.asarray(gallery_features, np.float32)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ArgumentError(
            "features", f"need [Q, D] and [N, D]; got {queries.shape} and {gallery.shape}"
        )
    if not 1 <= k <= gallery.shape[0]:
        raise ArgumentError("k", f"must be in [1, {gallery.shape[0]}] (the gallery size)", k)
    queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    gallery = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    similarity = queries @ gallery.T
    # Stable sort on the negated similarity: ties keep the gallery order.
    indices = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return indices, np.take_along_axis(similarity, indices, axis=1)


def _load_model(model_or_saved_model):
    if isinstance(model_or_saved_model, (str, os.PathLike)):
        path = os.fspath(model_or_saved_model)
        if not tf.saved_model.contains_saved_model(path):
            raise ArgumentError(
                "model_or_saved_model",
                "not a SavedModel directory (export one with --mode=export: "
                "model_dir/saved_model/<step>)",
                path,
            )
        return tf.saved_model.load(path)
    return model_or_saved_model


def _image_batches(images, labels, batch_size: int, argument: str):
    """(dataset of {"image", "label"} batches, images uint8/float array, labels or None)."""
    if isinstance(images, tf.data.Dataset):
        taken, taken_labels, _ = images_labels_and_names(images, None)
        images = np.stack(taken)
        labels = taken_labels if labels is None else labels
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ArgumentError(argument, f"must be images [N, S, S, 3]; got shape {images.shape}")
    floats = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ArgumentError(
                f"{argument}_labels", f"{labels.shape[0]} labels for {images.shape[0]} images"
            )
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image": floats.astype(np.float32), "label": np.zeros(len(images), np.int64)}
    ).batch(batch_size)
    return dataset, images, labels


def plot_neighbours(
    model_or_saved_model,
    queries,
    gallery,
    k: int = 8,
    *,
    query_labels: np.ndarray | None = None,
    gallery_labels: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    batch_size: int = 256,
    path: str | None = None,
):
    """Each query image (a row) beside its `k` nearest gallery images.

    Similarity is the cosine of the encoder features (`"embedding"`), the
    representation SimCLR evaluates; the gallery is typically training images
    and the queries held-out ones. Each neighbour is captioned with its cosine
    similarity and, when labels are known, its class, green when it matches the
    query's and red otherwise.

    Args:
      model_or_saved_model: a Keras model or encoder (what
        `tf_simclr.eval.extract_features` takes: `SimCLR`, `Classifier`, an
        encoder), a loaded SavedModel exported by tf_simclr, or the path of one
        (`model_dir/saved_model/<step>`).
      queries: images `[Q, S, S, 3]` at the model's input size (float in [0, 1]
        or uint8), or a `tf.data.Dataset` of `{"image", "label"}` batches such as
        `tf_simclr.data.eval_dataset(...).take(1)` (its labels are used).
      gallery: the images to search, the same way (e.g. `eval_dataset` of a few
        thousand training images).
      k: neighbours per query, >= 1.
      query_labels, gallery_labels: int `[Q]` / `[N]` (instead of the datasets').
      class_names: names of the class indices.
      batch_size: images per forward pass.
      path: write the figure there as a PNG.

    Returns:
      the matplotlib Figure: `Q * (1 + k)` image panels.
    """
    model = _load_model(model_or_saved_model)
    query_data, query_images, query_labels = _image_batches(
        queries, query_labels, batch_size, "queries"
    )
    gallery_data, gallery_images, gallery_labels = _image_batches(
        gallery, gallery_labels, batch_size, "gallery"
    )
    query_features, _ = extract_features(model, query_data)
    gallery_features, _ = extract_features(model, gallery_data)
    indices, similarity = nearest_neighbours(query_features, gallery_features, k)
    return draw_neighbours(
        query_images,
        gallery_images,
        indices,
        similarity,
        query_labels=query_labels,
        gallery_labels=gallery_labels,
        class_names=class_names,
        path=path,
    )


def draw_neighbours(
    query_images,
    gallery_images,
    indices: np.ndarray,
    similarity: np.ndarray,
    *,
    query_labels: np.ndarray | None = None,
    gallery_labels: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    path: str | None = None,
):
    """The figure of `plot_neighbours` from neighbours already found: row i shows
    `query_images[i]` and `gallery_images[indices[i, j]]` captioned `similarity[i, j]`
    (images `[H, W, 3]`, float in [0, 1] or uint8; labels as in `plot_neighbours`)."""
    k = indices.shape[1]
    plt = pyplot()
    rows, cols = len(query_images), 1 + k
    height = 1.35 * rows + 0.4
    fig, axes = plt.subplots(rows, cols, figsize=(1.15 * cols, height), squeeze=False, dpi=100)
    # Room for a caption above every panel (tight_layout lets them overlap the row above).
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.55 / height, hspace=0.3, wspace=0.06
    )
    for i in range(rows):
        query_label = None if query_labels is None else int(query_labels[i])
        axes[i, 0].imshow(displayable(query_images[i]), interpolation="nearest")
        axes[i, 0].set_title(class_name(query_label, class_names) or "query", fontsize=8)
        for ax in axes[i, 0].spines.values():
            ax.set_linewidth(2.5)
        for j in range(k):
            ax = axes[i, 1 + j]
            index = indices[i, j]
            ax.imshow(displayable(gallery_images[index]), interpolation="nearest")
            caption, colour = f"{similarity[i, j]:.2f}", "black"
            if gallery_labels is not None:
                label = int(gallery_labels[index])
                caption = f"{class_name(label, class_names) or label} {caption}"
                if query_label is not None and query_label >= 0:
                    colour = "tab:green" if label == query_label else "tab:red"
            ax.set_title(caption, fontsize=7, color=colour)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"query (left) and its {k} nearest neighbours by cosine similarity", fontsize=9)
    return save(fig, path)
