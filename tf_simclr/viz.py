"""Pictures of a SimCLR run: augmented views, embedding maps, nearest neighbours, curves.

A self-supervised run is judged by eye long before any number: are the two
views sensible, do the classes separate, do neighbours look alike.

- `plot_views(images, augment, n)`: each original beside pairs of its training views;
- `plot_embeddings(features, labels)`: a 2-D map of frozen features coloured by class
  (PCA with numpy; t-SNE with scikit-learn, when installed and asked for);
- `plot_neighbours(model, queries, gallery, k)`: query images and their k nearest
  gallery images by cosine similarity of the encoder features;
- `plot_training(model_dir)`: the training scalars of a run's TensorBoard events.

Each `plot_*` returns the matplotlib `Figure` (a notebook shows it inline) and,
given `path`, writes it there as a PNG. matplotlib is an optional extra
(``pip install 'tf_simclr[viz]'``): it is imported by the first `plot_*` call, never
by ``import tf_simclr`` or ``import tf_simclr.viz``, and without a display
(outside a notebook) figures are drawn with the Agg backend.

The rest needs no matplotlib, so training uses it too: `view_pairs` (the arrays
`plot_views` draws), `view_strip` (one image per example for a TensorBoard image
summary), `project_2d`, `nearest_neighbours`, `read_scalars`, and
`write_projector` (the files of TensorBoard's embedding projector).
"""

from __future__ import annotations

import glob
import math
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from tf_simclr.data import AugmentConfig, Source, simclr_view
from tf_simclr.errors import ArgumentError
from tf_simclr.eval.features import extract_features

# The training scalars `plot_training` draws, in panel order (`train/<logs key>` as
# written by `tf_simclr.callbacks.ScalarSummaries`).
TRAINING_PANELS = ("train/loss", "train/contrast_acc", "train/probe_acc", "train/learning_rate")
PROJECTOR_CONFIG = "projector_config.pbtxt"
# TensorBoard's projector accepts sprite images up to 8192 x 8192 pixels.
_MAX_SPRITE_SIDE = 8192
_INSTALL_HINT = "pip install 'tf_simclr[viz]' (or pip install matplotlib)"


def pyplot():
    """matplotlib.pyplot, with the Agg backend when there is no display to draw on.

    Raises:
      ImportError: without matplotlib, saying how to install it.
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            f"tf_simclr.viz needs matplotlib to draw figures: {_INSTALL_HINT}"
        ) from None
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    # A notebook kernel (ipykernel) and an explicit MPLBACKEND choose their own backend.
    if (
        headless
        and sys.platform.startswith("linux")
        and not os.environ.get("MPLBACKEND")
        and "ipykernel" not in sys.modules
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _below_title(fig) -> tuple[float, float, float, float]:
    """The tight_layout rectangle that leaves a third of an inch on top for the suptitle."""
    return (0.0, 0.0, 1.0, 1.0 - 0.33 / fig.get_figheight())


def _save(fig, path: str | None):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=fig.dpi, bbox_inches="tight", pad_inches=0.05)
    return fig


# ---------------------------------------------------------------------------
# Images in
# ---------------------------------------------------------------------------


def _take_images(images, n: int | None) -> tuple[list[np.ndarray], np.ndarray | None, tuple]:
    """(up to n images as arrays [H, W, 3], their labels or None, class names) from a
    `Source`, a `tf.data.Dataset` (of `{"image", "label"}` or `(image, label)`, batched
    or not), or an array/list of images."""
    class_names: tuple = ()
    if isinstance(images, Source):
        class_names = images.class_names
        images = images.dataset
    if isinstance(images, tf.data.Dataset):
        spec = images.element_spec
        image_spec = spec["image"] if isinstance(spec, Mapping) else spec
        if isinstance(image_spec, tuple):
            image_spec = image_spec[0]
        if image_spec.shape.rank == 4:
            images = images.unbatch()
        taken, labels = [], []
        for element in images.take(-1 if n is None else n):
            if isinstance(element, Mapping):
                image, label = element["image"], element.get("label")
            elif isinstance(element, tuple):
                image, label = element[0], element[1] if len(element) > 1 else None
            else:
                image, label = element, None
            taken.append(np.asarray(image))
            labels.append(-1 if label is None else int(label))
        if not taken:
            raise ArgumentError("images", "the dataset is empty")
        has_labels = any(label >= 0 for label in labels)
        return taken, np.asarray(labels) if has_labels else None, class_names
    array = [np.asarray(image) for image in images[: n if n is not None else len(images)]]
    if not array:
        raise ArgumentError("images", "no images given")
    return array, None, class_names


def _check_images(images: list[np.ndarray], argument: str) -> None:
    for image in images:
        if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
            raise ArgumentError(
                argument, f"images must be [H, W, 3] (or 1 or 4 channels); got {image.shape}"
            )


def _displayable(image) -> np.ndarray:
    """float [H, W, 3] in [0, 1] from uint8 0-255 or float [0, 1], 1-4 channels."""
    image = np.asarray(image)
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(float)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.clip(image[..., :3], 0.0, 1.0)


def _class_name(label, class_names: Sequence[str]) -> str:
    if label is None or label < 0:
        return ""
    return class_names[label] if label < len(class_names) else str(label)


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------


def view_pairs(
    images, augment: AugmentConfig, n: int = 8, pairs: int = 3, seed: int | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None, tuple]:
    """Training views of the first `n` images: `pairs` independent pairs each.

    Args:
      images: a `tf_simclr.data.Source`, a `tf.data.Dataset` of `{"image", "label"}`
        (or `(image, label)`; batched or not), or images `[N, H, W, 3]` (uint8
        0-255 or float in [0, 1]; a list may mix sizes).
      augment: the augmentation to show (`tf_simclr.data.AugmentConfig`).
      n: originals (>= 1; fewer when there are fewer images).
      pairs: pairs of views per original (>= 1).
      seed: when given, `tf.random.set_seed(seed)` first (TensorFlow's global seed)
        so the same call draws the same views.

    Returns:
      `(originals, views, labels, class_names)`: the originals (uint8 or float
      arrays as given), views float32 `[n, pairs, 2, S, S, 3]` in [0, 1] with S =
      `augment.image_size`, labels int `[n]` (None when unknown), class names.
    """
    if n < 1:
        raise ArgumentError("n", "must be >= 1", n)
    if pairs < 1:
        raise ArgumentError("pairs", "must be >= 1", pairs)
    originals, labels, class_names = _take_images(images, n)
    _check_images(originals, "images")
    if seed is not None:
        tf.random.set_seed(seed)
    one_view = tf.function(lambda image: simclr_view(image, augment), reduce_retracing=True)
    views = np.zeros([len(originals), pairs, 2, augment.image_size, augment.image_size, 3])
    for i, image in enumerate(originals):
        image = tf.constant(image)
        for j in range(pairs):
            for v in range(2):
                views[i, j, v] = one_view(image).numpy()
    return originals, views.astype(np.float32), labels, class_names


def describe_augment(augment: AugmentConfig) -> str:
    """One line naming what `augment` does, e.g. "32 px: crop 0.08-1, flip, colour s=0.5 ..."."""

    def switch(on: bool, name: str, detail: str = "") -> str:
        return f"{name}{detail}" if on else f"no {name}"

    crop = f" {augment.crop_area_range[0]:g}-{augment.crop_area_range[1]:g} of the area"
    parts = [
        switch(augment.crop, "crop", crop),
        switch(augment.flip, "flip"),
        switch(
            augment.color_jitter,
            "colour jitter",
            f" s={augment.color_jitter_strength:g} p={augment.color_jitter_prob:g}",
        ),
        switch(augment.grayscale, "grayscale", f" p={augment.grayscale_prob:g}"),
        switch(augment.blur, "blur", f" p={augment.blur_prob:g}"),
    ]
    return f"{augment.image_size} px: " + ", ".join(parts)


def plot_views(
    dataset_or_source,
    augment_config: AugmentConfig,
    n: int = 8,
    *,
    pairs: int = 3,
    seed: int | None = None,
    path: str | None = None,
):
    """A grid of `n` originals (rows), each beside `pairs` pairs of its training views.

    What the encoder is asked to match: the two views of a pair are a positive
    pair (SimCLR Section 2.1), drawn with `augment_config` exactly as training
    draws them (`tf_simclr.data.simclr_view`; `--augment_impl=batched` and
    `device` draw from the same distribution). Use it to check ablation
    settings before a long run. The title lists the augmentation; a row is
    labelled with its class when the data has labels.

    Args:
      dataset_or_source: a `tf_simclr.data.Source`, a `tf.data.Dataset` of
        `{"image", "label"}` (batched or not), or images `[N, H, W, 3]` (uint8
        0-255 or float in [0, 1]).
      augment_config: the `tf_simclr.data.AugmentConfig` to show.
      n: rows (originals); fewer when the data has fewer images.
      pairs: pairs of views per original.
      seed: when given, sets TensorFlow's global seed first (reproducible picture).
      path: write the figure there as a PNG.

    Returns:
      the matplotlib Figure: `n * (1 + 2 * pairs)` image panels.
    """
    originals, views, labels, class_names = view_pairs(
        dataset_or_source, augment_config, n, pairs, seed
    )
    plt = pyplot()
    rows, cols = len(originals), 1 + 2 * pairs
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.25 * cols, 1.25 * rows + 0.5), squeeze=False, dpi=100
    )
    for i, original in enumerate(originals):
        panels = [original] + [views[i, j, v] for j in range(pairs) for v in range(2)]
        for c, (ax, image) in enumerate(zip(axes[i], panels, strict=True)):
            ax.imshow(_displayable(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                title = "original" if c == 0 else f"view {(c + 1) // 2}{'ab'[(c + 1) % 2]}"
                ax.set_title(title, fontsize=9)
        name = _class_name(None if labels is None else labels[i], class_names)
        if name:
            axes[i, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(describe_augment(augment_config), fontsize=9)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2, rect=_below_title(fig))
    return _save(fig, path)


def view_strips(images: Sequence[np.ndarray], augment: AugmentConfig) -> np.ndarray:
    """Each image resized beside two fresh training views of it, as one picture per image.

    For a TensorBoard image summary (`--summary_images`): float32
    `[N, S, 3 * S + 2 * gap, 3]` in [0, 1], S = `augment.image_size`, white gaps.
    """
    size = augment.image_size
    gap = max(1, size // 16)
    white = np.ones([size, gap, 3], np.float32)
    strips = []
    for image in images:
        image = tf.constant(image)
        float_image = tf.image.convert_image_dtype(image[..., :3], tf.float32)
        if image.shape[-1] == 1:
            float_image = tf.image.grayscale_to_rgb(float_image)
        resized = tf.image.resize(float_image, [size, size], antialias=True)
        panels = [np.clip(resized.numpy(), 0, 1), simclr_view(image, augment).numpy()]
        panels.append(simclr_view(image, augment).numpy())
        strips.append(np.concatenate([panels[0], white, panels[1], white, panels[2]], axis=1))
    return np.stack(strips).astype(np.float32)


def take_images(dataset_or_source, n: int) -> list[np.ndarray]:
    """The first `n` images of a `Source`, dataset or array, as numpy arrays."""
    images, _, _ = _take_images(dataset_or_source, n)
    _check_images(images, "images")
    return images


# ---------------------------------------------------------------------------
# Embedding maps
# ---------------------------------------------------------------------------


def project_2d(
    features: np.ndarray, method: str = "pca", normalize: bool = True, seed: int = 0
) -> tuple[np.ndarray, str]:
    """2-D coordinates `[N, 2]` of features `[N, D]`, and the axis caption.

    Args:
      features: float `[N, D]`, N >= 2.
      method: "pca" (numpy SVD, always available) or "tsne" (scikit-learn's
        `TSNE`, initialised with PCA; needs `pip install scikit-learn`).
      normalize: l2-normalise each row first: SimCLR compares features by cosine
        similarity, so directions, not norms, carry the structure.
      seed: t-SNE's random state.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ArgumentError("features", f"must be [N, D] with N >= 2; got shape {x.shape}")
    if method not in ("pca", "tsne"):
        raise ArgumentError("method", "must be 'pca' or 'tsne'", method)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise ImportError(
                "method='tsne' needs scikit-learn: pip install scikit-learn "
                "(method='pca' needs nothing more)"
            ) from None
        perplexity = float(min(30.0, max(1.0, (x.shape[0] - 1) / 3)))
        points = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return points, "t-SNE"
    x = x - x.mean(axis=0)
    _, singular, components = np.linalg.svd(x, full_matrices=False)
    points = x @ components[:2].T
    if points.shape[1] < 2:  # D == 1
        points = np.concatenate([points, np.zeros_like(points)], axis=1)
    variance = singular**2 / max(float(np.sum(singular**2)), 1e-12)
    shares = [f"{100 * v:.0f}%" for v in variance[:2]] + ["0%"] * (2 - len(variance[:2]))
    return points, f"PCA (PC1 {shares[0]}, PC2 {shares[1]} of the variance)"


def _class_colours(num_classes: int):
    plt = pyplot()
    if num_classes <= 10:
        cmap = plt.get_cmap("tab10")
        return [cmap(i) for i in range(num_classes)]
    if num_classes <= 20:
        cmap = plt.get_cmap("tab20")
        return [cmap(i) for i in range(num_classes)]
    cmap = plt.get_cmap("hsv")
    return [cmap(i / num_classes) for i in range(num_classes)]


def plot_embeddings(
    features: np.ndarray | Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    class_names: Sequence[str] = (),
    method: str = "pca",
    normalize: bool = True,
    seed: int = 0,
    path: str | None = None,
):
    """A 2-D map of frozen features, one dot per example, coloured by its class.

    Args:
      features: float `[N, D]` (e.g. `tf_simclr.eval.extract_features`), or a
        mapping `{title: [N, D]}` of feature sets of the same N examples, drawn
        side by side (e.g. `{"pretrained": ..., "random init": ...}`).
      labels: int `[N]`, class indices; -1 (unlabelled) is drawn grey.
      class_names: the legend's names, one per class index.
      method: "pca" (always available) or "tsne" (scikit-learn); see `project_2d`.
      normalize: l2-normalise the features first (cosine geometry).
      seed: t-SNE's random state.
      path: write the figure there as a PNG.

    Returns:
      the matplotlib Figure: one panel per feature set, with a legend of the
      classes (none beyond 20 classes).
    """
    sets = dict(features) if isinstance(features, Mapping) else {"": features}
    labels = np.asarray(labels).reshape(-1)
    for title, x in sets.items():
        if np.shape(x)[0] != labels.shape[0]:
            raise ArgumentError(
                "labels",
                f"{labels.shape[0]} labels for {np.shape(x)[0]} feature rows"
                + (f" ({title})" if title else ""),
            )
    projected = {title: project_2d(x, method, normalize, seed) for title, x in sets.items()}
    plt = pyplot()
    num_classes = int(max(labels.max(initial=-1) + 1, len(class_names)))
    colours = _class_colours(max(num_classes, 1))
    fig, axes = plt.subplots(
        1, len(sets), figsize=(4.4 * len(sets) + 1.2, 4.6), squeeze=False, dpi=100
    )
    size = 12 if labels.shape[0] <= 2000 else 4
    for ax, (title, (points, caption)) in zip(axes[0], projected.items(), strict=True):
        unlabelled = labels < 0
        if unlabelled.any():
            ax.scatter(*points[unlabelled].T, s=size, c="0.6", alpha=0.5, lw=0, label="no label")
        for c in range(num_classes):
            mine = labels == c
            if mine.any():
                name = _class_name(c, class_names)
                ax.scatter(*points[mine].T, s=size, color=colours[c], alpha=0.7, lw=0, label=name)
        ax.set_title(f"{title}\n{caption}" if title else caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0, -1].get_legend_handles_labels()
    if handles and num_classes <= 20:
        axes[0, -1].legend(
            handles,
            names,
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
            fontsize=8,
            markerscale=2.5 if size < 10 else 1.5,
            frameon=False,
        )
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Nearest neighbours
# ---------------------------------------------------------------------------


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
        taken, taken_labels, _ = _take_images(images, None)
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
        axes[i, 0].imshow(_displayable(query_images[i]), interpolation="nearest")
        axes[i, 0].set_title(_class_name(query_label, class_names) or "query", fontsize=8)
        for ax in axes[i, 0].spines.values():
            ax.set_linewidth(2.5)
        for j in range(k):
            ax = axes[i, 1 + j]
            index = indices[i, j]
            ax.imshow(_displayable(gallery_images[index]), interpolation="nearest")
            caption, colour = f"{similarity[i, j]:.2f}", "black"
            if gallery_labels is not None:
                label = int(gallery_labels[index])
                caption = f"{_class_name(label, class_names) or label} {caption}"
                if query_label is not None and query_label >= 0:
                    colour = "tab:green" if label == query_label else "tab:red"
            ax.set_title(caption, fontsize=7, color=colour)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"query (left) and its {k} nearest neighbours by cosine similarity", fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------


def read_scalars(model_dir: str, subdir: str = "train") -> dict[str, list[tuple[int, float]]]:
    """`{tag: [(step, value), ...]}` from every event file under `model_dir/subdir`, by step.

    A step written twice (a resumed run) keeps the later value.
    """
    series: dict[str, dict[int, float]] = {}
    pattern = os.path.join(model_dir, subdir, "events.out.tfevents.*")
    for path in sorted(glob.glob(pattern)):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    tensor = tf.make_ndarray(value.tensor)
                    if tensor.ndim != 0 or tensor.dtype.kind not in "fiu":
                        continue  # an image or text summary, not a scalar
                    number = float(tensor)
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                series.setdefault(value.tag, {})[event.step] = number
    return {tag: sorted(points.items()) for tag, points in series.items()}


def plot_training(
    model_dir: str, *, path: str | None = None, tags: Sequence[str] = TRAINING_PANELS
):
    """The training scalars of a run: one panel per tag in `tags` the run wrote.

    Reads the TensorBoard events `run.py` writes to `model_dir/train`
    (`--train_summary_steps`): by default the contrastive loss, the contrastive
    accuracy, the online probe's accuracy and the learning rate. The values are
    Keras' running means within each epoch, so curves step at epoch boundaries.

    Returns:
      the matplotlib Figure, one panel per tag found.

    Raises:
      ArgumentError (`model_dir`): no events with any of `tags`.
    """
    series = read_scalars(model_dir)
    panels = [tag for tag in tags if tag in series]
    if not panels:
        raise ArgumentError(
            "model_dir",
            f"no training scalars ({', '.join(tags)}) in event files under "
            f"{os.path.join(model_dir, 'train')}",
            model_dir,
        )
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, tag in zip(axes[0], panels, strict=True):
        steps, values = zip(*series[tag], strict=True)
        ax.plot(steps, values, lw=1.2)
        ax.set_title(tag.split("/", 1)[-1], fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------
# TensorBoard embedding projector
# ---------------------------------------------------------------------------


def sprite_side(num_images: int, image_size: int) -> int:
    """Thumbnail side so that `num_images` thumbnails fit TensorBoard's 8192 px sprite."""
    per_row = math.ceil(math.sqrt(max(num_images, 1)))
    return max(1, min(image_size, _MAX_SPRITE_SIDE // per_row))


def thumbnails(images, side: int) -> np.ndarray:
    """uint8 `[N, side, side, 3]` from images `[N, H, W, 3]` (uint8, or float in [0, 1])."""
    images = tf.convert_to_tensor(images)
    floats = tf.image.convert_image_dtype(images, tf.float32)
    small = tf.image.resize(floats, [side, side], antialias=True)
    return tf.image.convert_image_dtype(tf.clip_by_value(small, 0.0, 1.0), tf.uint8).numpy()


def write_projector(
    log_dir: str,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    images: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    name: str = "embedding",
) -> dict[str, str]:
    """The files of TensorBoard's embedding projector for `features`, in `log_dir`.

    Writes `vectors.tsv` (one row of `features` per line), `metadata.tsv` (the
    label, and the class name when `class_names` are given, one line per row), a
    sprite image `sprite.png` of `images` (thumbnails in row-major order, the
    sprite at most 8192 px a side) and `projector_config.pbtxt` pointing at them.
    `tensorboard --logdir <a parent of log_dir>` shows it under "Projector".

    Args:
      log_dir: the directory (created).
      features: float `[N, D]`.
      labels: int `[N]` or None.
      images: `[N, H, W, 3]` (uint8, or float in [0, 1]) or None; resized to the
        thumbnail side (`sprite_side`) unless already that size.
      class_names: names of the label indices.
      name: the tensor name the projector shows.

    Returns:
      `{"config", "vectors", "metadata", "sprite"}` paths (metadata and sprite only
      when given).
    """
    from tensorboard.plugins import projector

    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ArgumentError("features", f"must be [N, D] with N >= 1; got {features.shape}")
    count = features.shape[0]
    tf.io.gfile.makedirs(log_dir)
    written = {"vectors": os.path.join(log_dir, "vectors.tsv")}
    with tf.io.gfile.GFile(written["vectors"], "w") as f:
        f.write("\n".join("\t".join(f"{v:.6g}" for v in row) for row in features) + "\n")
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = name
    embedding.tensor_shape.extend(features.shape)
    embedding.tensor_path = "vectors.tsv"
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != count:
            raise ArgumentError("labels", f"{labels.shape[0]} labels for {count} feature rows")
        written["metadata"] = os.path.join(log_dir, "metadata.tsv")
        with tf.io.gfile.GFile(written["metadata"], "w") as f:
            if class_names:  # several columns: the projector wants a header row
                f.write("label\tclass\n")
                rows = [f"{int(y)}\t{_class_name(int(y), class_names)}" for y in labels]
            else:
                rows = [f"{int(y)}" for y in labels]
            f.write("\n".join(rows) + "\n")
        embedding.metadata_path = "metadata.tsv"
    if images is not None:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[0] != count:
            raise ArgumentError(
                "images", f"need [{count}, H, W, 3] (one per feature row); got {images.shape}"
            )
        side = sprite_side(count, max(images.shape[1], images.shape[2]))
        if images.shape[1:3] != (side, side) or images.dtype != np.uint8:
            images = thumbnails(images, side)
        per_row = math.ceil(math.sqrt(count))
        sprite = np.full([per_row * side, per_row * side, 3], 255, np.uint8)
        for i, image in enumerate(images):
            r, c = divmod(i, per_row)
            sprite[r * side : (r + 1) * side, c * side : (c + 1) * side] = image[..., :3]
        written["sprite"] = os.path.join(log_dir, "sprite.png")
        tf.io.write_file(written["sprite"], tf.io.encode_png(sprite))
        embedding.sprite.image_path = "sprite.png"
        embedding.sprite.single_image_dim.extend([side, side])
    projector.visualize_embeddings(log_dir, config)
    written["config"] = os.path.join(log_dir, PROJECTOR_CONFIG)
    return written


def write_dataset_projector(
    log_dir: str,
    model,
    dataset: tf.data.Dataset,
    num_examples: int,
    class_names: Sequence[str] = (),
) -> dict[str, str]:
    """`write_projector` for every example of `dataset`: encoder features, labels, sprite.

    Args:
      log_dir: where the files go.
      model: as for `tf_simclr.eval.extract_features`.
      dataset: `{"image": float [B, S, S, 3] in [0, 1], "label": [B]}` batches
        (`tf_simclr.data.eval_dataset`).
      num_examples: about how many examples `dataset` holds (sizes the
        thumbnails, which are made batch by batch to bound memory).
      class_names: names of the label indices.
    """
    from tf_simclr.eval.features import images_and_labels, inference_fn

    forward = inference_fn(model, "embedding")
    side: int | None = None
    features, labels, small = [], [], []
    for batch in dataset:
        images, batch_labels = images_and_labels(batch)
        if side is None:
            side = sprite_side(num_examples, int(images.shape[1]))
        features.append(np.asarray(forward(images), np.float32))
        labels.append(np.asarray(batch_labels, np.int64))
        small.append(thumbnails(images, side))
    if not features:
        raise ArgumentError("dataset", "is empty")
    features_array = np.concatenate(features)
    # The sprite side must fit the count actually read.
    side = sprite_side(features_array.shape[0], side)
    images_array = np.concatenate(small)
    if images_array.shape[1] != side:
        images_array = thumbnails(images_array, side)
    return write_projector(
        log_dir, features_array, np.concatenate(labels), images_array, class_names
    )
