"""Training views of a few images: `view_pairs` (the arrays) and `plot_views` (the grid)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_simclr.data import AugmentConfig, simclr_view
from tf_simclr.errors import ArgumentError
from tf_simclr.summaries import check_images, class_name, images_labels_and_names
from tf_simclr.viz.figure import below_title, displayable, pyplot, save


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
    originals, labels, class_names = images_labels_and_names(images, n)
    check_images(originals, "images")
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
            ax.imshow(displayable(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                title = "original" if c == 0 else f"view {(c + 1) // 2}{'ab'[(c + 1) % 2]}"
                ax.set_title(title, fontsize=9)
        name = class_name(None if labels is None else labels[i], class_names)
        if name:
            axes[i, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(describe_augment(augment_config), fontsize=9)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2, rect=below_title(fig))
    return save(fig, path)
