"""A 2-D map of frozen features coloured by class: `project_2d` (the coordinates, PCA
with numpy or t-SNE with scikit-learn) and `plot_embeddings` (the figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tf_simclr.errors import ArgumentError
from tf_simclr.summaries import class_name
from tf_simclr.viz.figure import pyplot, save


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
                name = class_name(c, class_names)
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
    return save(fig, path)
